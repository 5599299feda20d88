//! Anyu's per-cell verdicts in ACRO 1.0's vocabulary — the one place the two
//! are mapped (used by the agreement test, `enclave/tests/suite/acro.rs`).
//!
//! ACRO (`acro.crosstab`, `sdcchecks.py`) judges every cell of a crosstab by
//! checks, each with a status (`fail`, or `review`) and a per-cell mask; a
//! cell's outcome lists the checks whose mask marks it, or `ok`. Anyu's rules
//! give each cell a [`Verdict`]. The mapping:
//!
//! | ACRO | Anyu |
//! |---|---|
//! | `ok` | [`Verdict::Pass`] |
//! | a check with status `review` marks the cell | [`Verdict::Review`] |
//! | a check with status `fail` marks the cell | [`Verdict::Fail`] |
//! | (no equivalent) | a group the aggregation threshold dropped, or a key combination with no rows: no output row; counts as `fail` |
//!
//! and the checks behind them ([`acro_check`]):
//!
//! | ACRO check | Anyu rule |
//! |---|---|
//! | `MinimumThresholdCheck` (`safe_threshold`, rows per cell) | `frequency` (`frequency_threshold`, rows per group) |
//! | `PresenceOfZeroCheck` (`zeros_are_disclosive`; frequency tables) | `zeros` |
//! | `NKCheck` (`safe_nk_n`, `safe_nk_k`) | `dominance` |
//! | `PPercentCheck` (`safe_pratio_p`) | `p_ratio` |
//! | `MissingCheck` (only with `check_missing_values`) | `dominance`, as review |
//!
//! Semantics that differ, deliberately:
//! - **Small groups.** Anyu first drops groups with fewer than `threshold`
//!   distinct persons inside the plan (they never reach the result); ACRO keeps
//!   the cell and marks it. Both mean the cell is not released: `fail`.
//! - **Persons, not rows.** ACRO counts rows for its threshold and takes each
//!   row as a contributor for dominance; Anyu's aggregation threshold counts
//!   distinct privacy units and dominance sums each unit's rows first. With
//!   one row per unit (PUMS: one row per `pid`) the two coincide; with
//!   repeated units Anyu is stricter. The frequency rule counts rows, as ACRO.
//! - **Negative values.** ACRO skips both dominance checks for the *whole
//!   table* when any cell has a negative value, marking only those cells for
//!   review (the other cells are then never checked for dominance); Anyu
//!   reviews the cells with negative values and still checks every other cell.
//! - **Missing values.** ACRO's default configuration does not check them
//!   (`check_missing_values: False`); Anyu always sends a SUM/AVG cell with
//!   missing values to review.
//! - **Empty key combinations.** ACRO's crosstab is the full product of the
//!   categories, with zero cells; SQL `GROUP BY` only yields groups with rows.

use super::Verdict;

/// ACRO's status word for an Anyu verdict (`pass`, `review`, `fail`).
pub fn acro_status(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Review => "review",
        Verdict::Fail => "fail",
    }
}

/// The verdict a cell gets when its group is not in the result at all
/// (dropped by the aggregation threshold, or no rows): it is not released.
pub const ABSENT_CELL: Verdict = Verdict::Fail;

/// The ACRO check an Anyu rule corresponds to, when there is one.
pub fn acro_check(rule: &str) -> Option<&'static str> {
    Some(match rule {
        "frequency" => "MinimumThresholdCheck",
        "zeros" => "PresenceOfZeroCheck",
        "dominance" => "NKCheck",
        "p_ratio" => "PPercentCheck",
        _ => return None,
    })
}

/// The ACRO configuration keys and the Anyu policy fields they correspond to:
/// `safe_threshold` ↔ `frequency_threshold`, `safe_nk_n`/`safe_nk_k` ↔
/// `nk.n`/`nk.k`, `safe_pratio_p` ↔ `p_ratio`, `zeros_are_disclosive` ↔
/// `zeros_are_disclosive`. Returns the differences, by ACRO key.
pub fn config_differences(
    policy: &crate::catalog::DisclosurePolicy,
    acro: &serde_json::Value,
) -> Vec<String> {
    let mut out = Vec::new();
    let num = |k: &str| acro.get(k).and_then(serde_json::Value::as_f64);
    let mut cmp = |k: &str, ours: f64| {
        if num(k) != Some(ours) {
            out.push(format!("{k}: ACRO {:?}, Anyu {ours}", num(k)));
        }
    };
    cmp("safe_threshold", policy.frequency_threshold as f64);
    cmp("safe_nk_n", f64::from(policy.nk.n));
    cmp("safe_nk_k", policy.nk.k);
    cmp("safe_pratio_p", policy.p_ratio);
    let zeros = acro
        .get("zeros_are_disclosive")
        .and_then(serde_json::Value::as_bool);
    if zeros != Some(policy.zeros_are_disclosive) {
        out.push(format!(
            "zeros_are_disclosive: ACRO {zeros:?}, Anyu {}",
            policy.zeros_are_disclosive
        ));
    }
    out
}
