//! # disclosure — output checks on every result
//!
//! ACRO-compatible semantics: each [`DisclosureRule`] looks at the result and
//! returns a machine-readable verdict per cell — `pass`, `fail` or `review` —
//! with the reason. The job path runs every rule of [`default_rules`] and
//! never needs to know which rules exist, so the follow-up rules (dominance,
//! differencing, differential privacy) plug in as more `DisclosureRule`s.
//!
//! ```text
//!  result batches + hidden per-group counts + PlanFacts + policy + echo findings
//!       ─▶ FrequencyRule   cells built from fewer records than `frequency_threshold` (ACRO
//!                          safe_threshold), and counts of rows or persons under it
//!       ─▶ ContributorsRule  cells the plan withheld: fewer persons contribute to the
//!                          aggregate than the threshold (estimators: degrees of freedom)
//!       ─▶ ZerosRule       zero counts, when `zeros_are_disclosive`
//!       ─▶ MaxRowsRule     more rows than `max_output_rows`
//!       ─▶ EchoRule        a cell equal to a value of an identifier / quasi-identifier column read
//!       ─▶ ExtremeRule     MIN/MAX of a sensitive column (one person's value): review
//!       ─▶ FilteredRule    statistics over a FILTER subset of a group: review
//!       ─▶ DominanceRule   magnitude cells (SUM, AVG, medians, percentiles, variances,
//!                          covariances, regressions): (n, k) over per-person contributions
//!                          of the value argument; negative or missing values: review
//!       ─▶ PRatioRule      the same cells: p-ratio over per-person contributions;
//!                          negative values: review
//!       ─▶ DegreesOfFreedomRule  model rows whose `df_resid` is under `dof_threshold`
//!       ─▶ ModelUnitsRule  a model whose input covers fewer persons than the threshold, an
//!                         output with more rows than persons ÷ threshold, a reported
//!                         group size (`n`, `size`, …) under the threshold
//!       ─▶ DpRule          a differentially private result: one verdict per noisy column
//!                          (mechanism, scale, ε) and one for the group selection
//!       ─▶ DifferencingRule  rows whose persons differ from those of a row of an earlier
//!                          result (same grant or researcher) or of this one, or from a sum
//!                          or difference of two, by fewer than the threshold: review; an
//!                          aggregate inside the query doing so: the whole result ([`differencing`])
//!       ─▶ CampaignRule    one of many jobs of the grant whose plans differ only in their
//!                          constants (a search over a bound): the whole result to review
//!       ─▶ CheckReport { verdict: worst of all, per rule: failing/review cells }
//! ```
//!
//! Only non-passing cells are listed; every other cell of the result passed
//! every rule (the report says how many cells were checked).
//!
//! A differentially private result is checked by `max_rows` and `dp` only:
//! the other rules read exact counts, contributions or values, and acting on
//! them would make the release depend on the data outside the privacy
//! accounting. Each of them reports a `pass` saying so; small groups are
//! already removed by the noisy selection.

pub mod acro;
pub mod differencing;
pub mod model_output;
pub mod sketch;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, UInt64Array};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::catalog::DisclosurePolicy;
use crate::query::{CellKind, PlanFacts};

/// A verdict on a cell, a rule or a result. Ordered: `Pass < Review < Fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Review,
    Fail,
}

/// One cell's verdict under one rule. `row`/`column` are `None` for
/// verdicts on the whole result (e.g. too many rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellVerdict {
    pub row: Option<u64>,
    pub column: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
}

/// What one rule found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    pub rule: String,
    /// Worst verdict of the rule.
    pub verdict: Verdict,
    /// The cells that did not pass.
    pub cells: Vec<CellVerdict>,
}

/// Every rule's findings on one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Worst verdict over all rules.
    pub verdict: Verdict,
    pub rows: u64,
    /// Cells checked (rows × visible columns).
    pub cells_checked: u64,
    /// Groups the aggregation threshold removed before the checks.
    pub suppressed_groups: u64,
    pub rules: Vec<RuleReport>,
}

impl CheckReport {
    /// `(row, column)` of every failing cell (suppressed in the candidate result).
    pub fn failing_cells(&self) -> Vec<(u64, String)> {
        self.rules
            .iter()
            .flat_map(|r| r.cells.iter())
            .filter(|c| c.verdict == Verdict::Fail)
            .filter_map(|c| Some((c.row?, c.column.clone()?)))
            .collect()
    }

    /// Whether any verdict applies to the whole result.
    pub fn fails_as_a_whole(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| r.cells.iter())
            .any(|c| c.verdict == Verdict::Fail && c.row.is_none())
    }
}

/// A cell found equal to a value of an identifying column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoHit {
    pub row: u64,
    pub column: String,
    /// `dataset.column` that holds the same value.
    pub source: String,
}

/// What the rules look at.
pub struct CheckInput<'a> {
    /// The result's visible columns.
    pub batches: &'a [RecordBatch],
    /// Records behind each output row, when the query shape lets them be counted.
    pub rows_per_group: Option<Vec<u64>>,
    pub facts: &'a PlanFacts,
    /// The strictest policy over the datasets read.
    pub policy: &'a DisclosurePolicy,
    pub echo: &'a [EchoHit],
    /// Groups the threshold removed.
    pub suppressed_groups: u64,
    /// Per magnitude aggregate computed on the output rows: its contribution statistics.
    pub contributions: &'a [Contributions],
    /// Set when the result is a model's output rather than a query's.
    pub model: Option<&'a ModelFacts>,
    /// Set when the result is differentially private.
    pub dp: Option<&'a crate::dp::DpReport>,
    /// Set when the result's rows were compared with earlier results.
    pub differencing: Option<&'a differencing::Findings>,
    /// Cells the plan withheld for too few contributors ([`withheld`]).
    pub withheld: &'a [Withheld],
    /// Jobs of the grant with this query's plan up to its constants.
    pub campaign: Option<&'a Campaign>,
}

/// The jobs of one grant whose plans are the same up to their constants
/// (an oracle campaign when there are many: a search over a bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Jobs of this shape, this one included.
    pub jobs: u64,
    /// Distinct sets of constants among them.
    pub variants: u64,
    /// Variants from which the shape is flagged.
    pub flag_at: u64,
}

/// The cells of one aggregate the plan withheld (set to NULL right above the
/// aggregation) because fewer persons contribute to them than it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// The visible column carrying the aggregate; `None` when the query
    /// transformed it before output.
    pub column: Option<String>,
    /// The aggregate also needed degrees of freedom.
    pub dof: bool,
    /// Per output row: whether the cell was withheld.
    pub rows: Vec<bool>,
}

/// The withheld cells recorded in the result's hidden columns.
pub fn withheld(
    hidden: Option<&crate::query::HiddenColumns>,
    batches: &[RecordBatch],
) -> Vec<Withheld> {
    use datafusion::arrow::array::BooleanArray;
    let Some(h) = hidden else {
        return Vec::new();
    };
    h.kept
        .iter()
        .filter_map(|k| {
            let mut rows = Vec::new();
            for b in batches {
                let col = b.column(b.schema().index_of(&k.kept).ok()?);
                let a = col.as_any().downcast_ref::<BooleanArray>()?;
                rows.extend((0..a.len()).map(|r| a.is_null(r) || !a.value(r)));
            }
            Some(Withheld {
                column: k.column.clone(),
                dof: k.dof,
                rows,
            })
        })
        .collect()
}

/// What the checks know about a model run (its output has no lineage: the
/// model is a black box between its input rows and its table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    /// Distinct privacy units in the model's input, counted up to
    /// `units_cap` (enough to decide the rule); input rows when the data has
    /// no privacy unit.
    pub units: u64,
    /// Counting stopped here.
    pub units_cap: u64,
    /// Whether the input was aggregated (every group already thresholded).
    pub aggregated_input: bool,
    /// Input columns the model reads that fewer than the threshold of
    /// persons fill (non-null): a column masked down to one person.
    pub thin_columns: Vec<String>,
    /// Numbers of the output that equal a value fewer than the threshold of
    /// input persons hold, with the input column holding it.
    pub rare_values: Vec<model_output::RareValue>,
}

/// Output columns a model names so that ACRO's degrees-of-freedom rule can
/// check them (see `sandbox/wit/anyu-model.wit`).
pub const DOF_COLUMNS: &[&str] = &["df_resid", "dof"];

/// Per-person contributions behind one magnitude aggregate of the result.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions {
    /// The visible column carrying the aggregate; `None` when the query
    /// transformed it (then every magnitude column is reviewed).
    pub column: Option<String>,
    /// One entry per output row; `None` when contributions per person were
    /// not computed for this query shape.
    pub cells: Option<Vec<ContributionStats>>,
}

/// One cell's contribution statistics (contributions = per-person sums).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ContributionStats {
    /// Sum of the n largest contributions.
    pub top_n: Option<f64>,
    /// Sum of the two largest contributions.
    pub top2: Option<f64>,
    /// The largest contribution.
    pub max: Option<f64>,
    /// The smallest value of any row.
    pub min: Option<f64>,
    /// The cell's total.
    pub total: Option<f64>,
    /// Rows with a value.
    pub non_null: u64,
}

impl CheckInput<'_> {
    fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    fn column_names(&self) -> Vec<String> {
        self.batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_else(|| self.facts.output.iter().map(|o| o.name.clone()).collect())
    }

    fn kind(&self, column: &str) -> CellKind {
        self.facts
            .output
            .iter()
            .find(|o| o.name == column)
            .map_or(CellKind::RowValue, |o| o.kind)
    }

    /// Value columns: everything but group keys and constants.
    fn value_columns(&self) -> Vec<String> {
        self.column_names()
            .into_iter()
            .filter(|c| !matches!(self.kind(c), CellKind::GroupKey | CellKind::Constant))
            .collect()
    }
}

/// An output check. Implementations must be deterministic and must not put
/// cell values into reasons.
pub trait DisclosureRule: Send + Sync {
    /// Stable rule name, e.g. `frequency`.
    fn name(&self) -> &'static str;
    /// The rule's findings.
    fn check(&self, input: &CheckInput<'_>) -> RuleReport;
}

fn report(rule: &str, cells: Vec<CellVerdict>) -> RuleReport {
    RuleReport {
        rule: rule.to_string(),
        verdict: cells
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Pass),
        cells,
    }
}

/// ACRO `safe_threshold`: a cell built from fewer records fails.
pub struct FrequencyRule;

impl DisclosureRule for FrequencyRule {
    fn name(&self) -> &'static str {
        "frequency"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let t = input.policy.frequency_threshold;
        let mut cells = Vec::new();
        // A model's rows are not groups of records; its own rules cover it.
        if input.facts.row_level || input.rows() == 0 || input.model.is_some() {
            return report(self.name(), cells);
        }
        let value_cols = input.value_columns();
        match &input.rows_per_group {
            Some(counts) => {
                for (row, n) in counts.iter().enumerate() {
                    if *n < t {
                        for c in &value_cols {
                            cells.push(CellVerdict {
                                row: Some(row as u64),
                                column: Some(c.clone()),
                                verdict: Verdict::Fail,
                                reason: format!("built from {n} records, under the threshold of {t}"),
                            });
                        }
                    }
                }
            }
            None => cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Review,
                reason: "the records behind each row cannot be counted through this query's shape (e.g. a UNION or join of aggregates); every aggregation inside was thresholded".into(),
            }),
        }
        // A count of rows or persons below the threshold is itself a small cell
        // (e.g. `COUNT(*) FILTER (WHERE …)` inside a large group). Zero is the zeros rule's.
        let mut offset = 0u64;
        for b in input.batches {
            for (i, f) in b.schema().fields().iter().enumerate() {
                let people =
                    input.facts.output.iter().any(|o| {
                        o.name == *f.name() && o.kind == CellKind::Count && o.counts_people
                    });
                if !people {
                    continue;
                }
                for row in 0..b.num_rows() {
                    if let Some(v) = count_value(b.column(i).as_ref(), row)
                        && v > 0
                        && v < i128::from(t)
                    {
                        cells.push(CellVerdict {
                            row: Some(offset + row as u64),
                            column: Some(f.name().clone()),
                            verdict: Verdict::Fail,
                            reason: format!("a count under the threshold of {t}"),
                        });
                    }
                }
            }
            offset += b.num_rows() as u64;
        }
        report(self.name(), cells)
    }
}

/// ACRO `zeros_are_disclosive`: a zero count reveals that nobody has the attribute.
pub struct ZerosRule;

fn count_value(col: &dyn Array, row: usize) -> Option<i128> {
    if col.is_null(row) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return Some(i128::from(a.value(row)));
    }
    if let Some(a) = col.as_any().downcast_ref::<UInt64Array>() {
        return Some(i128::from(a.value(row)));
    }
    None
}

impl DisclosureRule for ZerosRule {
    fn name(&self) -> &'static str {
        "zeros"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = Vec::new();
        if !input.policy.zeros_are_disclosive {
            return report(self.name(), cells);
        }
        let mut offset = 0u64;
        for b in input.batches {
            for (i, f) in b.schema().fields().iter().enumerate() {
                if input.kind(f.name()) != CellKind::Count {
                    continue;
                }
                for row in 0..b.num_rows() {
                    if count_value(b.column(i).as_ref(), row) == Some(0) {
                        cells.push(CellVerdict {
                            row: Some(offset + row as u64),
                            column: Some(f.name().clone()),
                            verdict: Verdict::Fail,
                            reason: "a zero count is disclosive (zeros_are_disclosive)".into(),
                        });
                    }
                }
            }
            offset += b.num_rows() as u64;
        }
        report(self.name(), cells)
    }
}

/// A result may have at most `max_output_rows` rows.
pub struct MaxRowsRule;

impl DisclosureRule for MaxRowsRule {
    fn name(&self) -> &'static str {
        "max_rows"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let max = input.policy.max_output_rows;
        let mut cells = Vec::new();
        if input.rows() > max {
            cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Fail,
                reason: format!("the result has more than {max} rows (max_output_rows)"),
            });
        }
        report(self.name(), cells)
    }
}

/// No output value equals a value of an identifier or quasi-identifier
/// column the query read (the job path finds the hits inside the domain).
pub struct EchoRule;

impl DisclosureRule for EchoRule {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let numeric = |column: &str| {
            input.batches.first().is_some_and(|b| {
                b.schema()
                    .field_with_name(column)
                    .is_ok_and(|f| f.data_type().is_numeric())
            })
        };
        let cells = input
            .echo
            .iter()
            .map(|h| {
                // A model's number can equal someone's age by chance (a cluster
                // size, a rounded mean): a person decides. Text never does.
                let verdict = if input.model.is_some() && numeric(&h.column) {
                    Verdict::Review
                } else {
                    Verdict::Fail
                };
                CellVerdict {
                    row: Some(h.row),
                    column: Some(h.column.clone()),
                    verdict,
                    reason: format!(
                        "the value equals a value of identifying column `{}`",
                        h.source
                    ),
                }
            })
            .collect();
        report(self.name(), cells)
    }
}

/// `MIN`/`MAX` of a sensitive column is one contributor's exact value.
pub struct ExtremeRule;

impl DisclosureRule for ExtremeRule {
    fn name(&self) -> &'static str {
        "extreme_values"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        review_columns(
            self.name(),
            input,
            |o| o.extreme_of_sensitive,
            "the minimum or maximum of a sensitive column is one contributor's own value",
        )
    }
}

/// A statistic computed with a FILTER clause covers a subset of its group.
/// Its contributors are counted (the `contributors` rule withholds a subset
/// under the threshold); what a person still judges is the condition itself,
/// which can be written to select a few people.
pub struct FilteredRule;

impl DisclosureRule for FilteredRule {
    fn name(&self) -> &'static str {
        "filtered_aggregate"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        review_columns(
            self.name(),
            input,
            |o| o.filtered && matches!(o.kind, CellKind::Magnitude | CellKind::Extreme),
            "computed over a FILTER subset of the group: enough persons contribute, but a reviewer judges whether the condition singles anyone out",
        )
    }
}

/// Every released aggregate value rests on at least `threshold` persons who
/// contribute to it (a non-null argument passing the FILTER; for SUM and AVG
/// a non-zero total), estimators also on `dof_threshold` degrees of freedom.
/// The plan already withheld the others (NULL); this rule names them.
pub struct ContributorsRule;

impl DisclosureRule for ContributorsRule {
    fn name(&self) -> &'static str {
        "contributors"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let (t, dof) = (input.policy.threshold, input.policy.dof_threshold);
        let mut cells = Vec::new();
        for w in input.withheld {
            let reason = if w.dof {
                format!(
                    "withheld: fewer than {} persons contribute to this estimate ({dof} degrees of freedom and the threshold of {t} needed)",
                    dof.saturating_add(1).max(t)
                )
            } else {
                format!(
                    "withheld: fewer than {t} persons contribute to this value (non-null and FILTER-passing; for SUM and AVG a non-zero total)"
                )
            };
            match &w.column {
                Some(column) => {
                    for (row, _) in w.rows.iter().enumerate().filter(|(_, w)| **w) {
                        cells.push(CellVerdict {
                            row: Some(row as u64),
                            column: Some(column.clone()),
                            verdict: Verdict::Fail,
                            reason: reason.clone(),
                        });
                    }
                }
                None if w.rows.iter().any(|w| *w) => cells.push(CellVerdict {
                    row: None,
                    column: None,
                    verdict: Verdict::Review,
                    reason: format!("a value computed from an aggregate was {reason}"),
                }),
                None => {}
            }
        }
        report(self.name(), cells)
    }
}

/// Which of ACRO's two dominance rules a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dominance {
    /// (n, k): the n largest contributors hold at least k of the total.
    Nk,
    /// p-ratio: (total − largest − second) / largest < p.
    PRatio,
}

/// One magnitude cell under one of the dominance rules, as ACRO's `NKCheck`
/// and `PPercentCheck` judge it, but over per-person contributions: negative
/// row values (dominance undefined) go to review under both rules; the (n, k)
/// rule also sends cells with missing values to review (ACRO's
/// `MissingCheck`, which ACRO runs only when `check_missing_values` is set).
fn dominance_cell(
    rule: Dominance,
    policy: &DisclosurePolicy,
    s: &ContributionStats,
    rows: Option<u64>,
) -> Option<(Verdict, String)> {
    if s.min.is_some_and(|m| m < 0.0) {
        return Some((
            Verdict::Review,
            "negative values: dominance is not defined for this cell".into(),
        ));
    }
    let (n, k, p) = (policy.nk.n, policy.nk.k, policy.p_ratio);
    let total = s.total.unwrap_or(0.0);
    match rule {
        Dominance::Nk => {
            // As ACRO: 0/0 is not dominated.
            if total > 0.0 && s.top_n.unwrap_or(0.0) / total >= k {
                return Some((
                    Verdict::Fail,
                    format!(
                        "dominance (n={n}, k={k}): the {n} largest contributors hold at least {:.0}% of the total",
                        k * 100.0
                    ),
                ));
            }
            if rows.is_some_and(|r| s.non_null < r) {
                return Some((
                    Verdict::Review,
                    "missing values were left out of this cell".into(),
                ));
            }
            None
        }
        Dominance::PRatio => {
            // As ACRO: with a largest contribution of 0 the ratio is the
            // remainder itself; no contribution at all is not dominated.
            let top1 = s.max.unwrap_or(f64::NAN);
            let rest = total - s.top2.unwrap_or(0.0);
            let ratio = if top1 == 0.0 { rest } else { rest / top1 };
            (!ratio.is_nan() && ratio < p).then(|| {
                (
                    Verdict::Fail,
                    format!(
                        "p-ratio (p={p}): the other contributors hold less than {:.0}% of the largest one's amount",
                        p * 100.0
                    ),
                )
            })
        }
    }
}

/// The findings of one dominance rule over every magnitude cell whose
/// per-person contributions were computed.
fn dominance_cells(rule: Dominance, input: &CheckInput<'_>) -> Vec<CellVerdict> {
    let mut cells = Vec::new();
    for c in input.contributions {
        let (Some(column), Some(stats)) = (&c.column, &c.cells) else {
            continue;
        };
        for (row, s) in stats.iter().enumerate() {
            let n_rows = input
                .rows_per_group
                .as_ref()
                .and_then(|r| r.get(row))
                .copied();
            if let Some((verdict, reason)) = dominance_cell(rule, input.policy, s, n_rows) {
                cells.push(CellVerdict {
                    row: Some(row as u64),
                    column: Some(column.clone()),
                    verdict,
                    reason,
                });
            }
        }
    }
    cells
}

/// ACRO's (n, k) dominance rule (`safe_nk_n`, `safe_nk_k`) on magnitude
/// cells, over per-person contributions: the n largest hold at least k of
/// the total — fail; negative values (dominance undefined) and missing values
/// go to review. Cells whose contributions could not be computed (the query
/// transformed the sum, or its shape hides persons) go to review here too.
pub struct DominanceRule;

impl DisclosureRule for DominanceRule {
    fn name(&self) -> &'static str {
        "dominance"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = dominance_cells(Dominance::Nk, input);
        let rows = input.rows();
        let traced: Vec<&str> = input
            .contributions
            .iter()
            .filter_map(|c| c.column.as_deref())
            .collect();
        let untraced = input.contributions.iter().any(|c| c.column.is_none());
        for c in input.contributions {
            let (Some(column), None) = (&c.column, &c.cells) else {
                continue;
            };
            for row in 0..rows {
                cells.push(CellVerdict {
                    row: Some(row),
                    column: Some(column.clone()),
                    verdict: Verdict::Review,
                    reason: "contributions per person could not be computed for this query shape"
                        .into(),
                });
            }
        }
        if untraced {
            // A SUM/AVG was transformed before output: the magnitude columns
            // not traced to one are looked at by a person.
            let mut more = review_columns(
                self.name(),
                input,
                |o| o.kind == CellKind::Magnitude && !traced.contains(&o.name.as_str()),
                "computed from a sum whose contributors cannot be checked for dominance",
            )
            .cells;
            cells.append(&mut more);
        }
        report(self.name(), cells)
    }
}

/// ACRO's p-ratio rule (`safe_pratio_p`) on magnitude cells, over per-person
/// contributions: (total − largest − second) / largest < p — fail; negative
/// values go to review. A separate rule from (n, k), as in ACRO, so a report
/// says which of the two a cell failed.
pub struct PRatioRule;

impl DisclosureRule for PRatioRule {
    fn name(&self) -> &'static str {
        "p_ratio"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        report(self.name(), dominance_cells(Dominance::PRatio, input))
    }
}

/// ACRO `safe_dof_threshold`: a model statistic estimated with fewer
/// residual degrees of freedom than the threshold fails, with its whole row.
pub struct DegreesOfFreedomRule;

impl DisclosureRule for DegreesOfFreedomRule {
    fn name(&self) -> &'static str {
        "degrees_of_freedom"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        if input.model.is_none() {
            return report(self.name(), Vec::new());
        }
        let t = input.policy.dof_threshold;
        let cells = fail_rows(input, DOF_COLUMNS, |col, row| match number(col, row) {
            Some(dof) if dof >= t as f64 => None,
            Some(_) => Some(format!(
                "estimated with fewer than {t} residual degrees of freedom (safe_dof_threshold)"
            )),
            None => Some("the degrees of freedom are missing".to_string()),
        });
        report(self.name(), cells)
    }
}

/// Fails the whole of every row whose value in one of `columns` `failing`
/// judges (it returns the reason): how a model's own statistics are checked.
fn fail_rows(
    input: &CheckInput<'_>,
    columns: &[&str],
    failing: impl Fn(&dyn Array, usize) -> Option<String>,
) -> Vec<CellVerdict> {
    let names = input.column_names();
    let mut cells = Vec::new();
    let mut offset = 0u64;
    for b in input.batches {
        for (i, f) in b.schema().fields().iter().enumerate() {
            if !columns.contains(&f.name().as_str()) {
                continue;
            }
            let col = b.column(i);
            for row in 0..b.num_rows() {
                if let Some(reason) = failing(col.as_ref(), row) {
                    cells.extend(names.iter().map(|c| CellVerdict {
                        row: Some(offset + row as u64),
                        column: Some(c.clone()),
                        verdict: Verdict::Fail,
                        reason: reason.clone(),
                    }));
                }
            }
        }
        offset += b.num_rows() as u64;
    }
    cells
}

fn number(col: &dyn Array, row: usize) -> Option<f64> {
    if col.is_null(row) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
        return Some(a.value(row)).filter(|v| !v.is_nan());
    }
    count_value(col, row).map(|v| v as f64)
}

/// A model's output must rest on at least `threshold` persons: fewer fails
/// the whole result (a model over three people describes those three); it
/// may have one row per `threshold` persons, and every group size it reports
/// must reach the threshold ([`model_output`]).
pub struct ModelUnitsRule;

impl DisclosureRule for ModelUnitsRule {
    fn name(&self) -> &'static str {
        "model_units"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = Vec::new();
        if let Some(m) = input.model {
            let t = input.policy.threshold;
            if !m.aggregated_input && m.units < t {
                cells.push(CellVerdict {
                    row: None,
                    column: None,
                    verdict: Verdict::Fail,
                    reason: format!(
                        "the model's input covers fewer than {t} distinct persons (aggregation threshold)"
                    ),
                });
            }
            cells.extend(model_output::thin_columns(input, m));
            cells.extend(model_output::rare_values(input, m));
            cells.extend(model_output::too_many_rows(input, m));
            cells.extend(model_output::small_groups(input));
        }
        report(self.name(), cells)
    }
}

/// Every cell of the output columns `pick` selects, for review.
fn review_columns(
    rule: &str,
    input: &CheckInput<'_>,
    pick: impl Fn(&crate::query::OutputColumn) -> bool,
    reason: &str,
) -> RuleReport {
    let cols: Vec<&str> = input
        .facts
        .output
        .iter()
        .filter(|o| pick(o))
        .map(|o| o.name.as_str())
        .collect();
    let mut cells = Vec::new();
    for row in 0..input.rows() {
        for c in &cols {
            cells.push(CellVerdict {
                row: Some(row),
                column: Some((*c).to_string()),
                verdict: Verdict::Review,
                reason: reason.to_string(),
            });
        }
    }
    report(rule, cells)
}

/// A differentially private result: every noisy column and the group
/// selection, each with its mechanism and parameters (verdict `pass`).
pub struct DpRule;

impl DisclosureRule for DpRule {
    fn name(&self) -> &'static str {
        "dp"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = Vec::new();
        let Some(dp) = input.dp else {
            return report(self.name(), cells);
        };
        if let Some(s) = &dp.selection {
            cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Pass,
                reason: format!(
                    "groups released only when their noisy count of persons reaches {} (Laplace threshold, scale {}, ε {}, δ {:e})",
                    s.threshold, s.scale, s.epsilon, s.delta
                ),
            });
        }
        for c in &dp.columns {
            cells.push(CellVerdict {
                row: None,
                column: Some(c.column.clone()),
                verdict: Verdict::Pass,
                reason: format!(
                    "every cell: {} with discrete Laplace noise of scale {} (ε {}; sensitivity {})",
                    c.aggregate.to_uppercase(),
                    c.scale,
                    c.epsilon,
                    c.sensitivity
                ),
            });
        }
        report(self.name(), cells)
    }
}

/// Rows whose persons differ from another released or pending row's by
/// fewer than the threshold: the difference of the two could single
/// someone out, so a reviewer compares them (the pair is in the review
/// packet; the reason never says which result or by how many).
pub struct DifferencingRule;

impl DisclosureRule for DifferencingRule {
    fn name(&self) -> &'static str {
        "differencing"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = Vec::new();
        let Some(f) = input.differencing else {
            return report(self.name(), cells);
        };
        let t = f.threshold;
        let value_cols = input.value_columns();
        for row in &f.rows_flagged {
            for c in &value_cols {
                cells.push(CellVerdict {
                    row: Some(*row),
                    column: Some(c.clone()),
                    verdict: Verdict::Review,
                    reason: format!(
                        "the persons behind this row differ from those behind a row of an earlier result (of this grant or researcher) or of this one, or from a sum or difference of two such rows, by fewer than {t}: the arithmetic could single someone out (the review packet shows it)"
                    ),
                });
            }
        }
        if !f.inner_flagged.is_empty() {
            cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Review,
                reason: format!(
                    "an aggregate computed inside the query (a subquery, CTE, derived table, join or UNION input) whose value reaches the output is over persons who differ from those behind another cell (of this result or an earlier one), or a sum or difference of two, by fewer than {t}: the result as a whole is reviewed (the review packet shows the arithmetic)"
                ),
            });
        }
        if !f.complete {
            cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Review,
                reason: "too many earlier rows of similar size (or inner cells) to compare within one check: a reviewer looks at the result".into(),
            });
        }
        report(self.name(), cells)
    }
}

/// Many jobs of one grant whose plans differ only in their constants: each
/// job of the shape is flagged from the `flag_at`-th variant on (a binary
/// search over a bound learns a bit per job, through the result, a failure
/// or the run time).
pub struct CampaignRule;

impl DisclosureRule for CampaignRule {
    fn name(&self) -> &'static str {
        "campaign"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = Vec::new();
        if let Some(c) = input.campaign
            && c.variants >= c.flag_at
        {
            cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Review,
                reason: format!(
                    "oracle campaign: this query is one of {} jobs of this grant whose plans are the same up to their constants ({} different sets of constants); a search over a bound learns one bit per job",
                    c.jobs, c.variants
                ),
            });
        }
        report(self.name(), cells)
    }
}

/// Rules that also run on a differentially private result.
const DP_RULES: &[&str] = &["max_rows", "dp"];

/// The rules every result goes through, in report order.
pub fn default_rules() -> Vec<Box<dyn DisclosureRule>> {
    vec![
        Box::new(FrequencyRule),
        Box::new(ContributorsRule),
        Box::new(ZerosRule),
        Box::new(MaxRowsRule),
        Box::new(EchoRule),
        Box::new(ExtremeRule),
        Box::new(FilteredRule),
        Box::new(DominanceRule),
        Box::new(PRatioRule),
        Box::new(DegreesOfFreedomRule),
        Box::new(ModelUnitsRule),
        Box::new(DpRule),
        Box::new(DifferencingRule),
        Box::new(CampaignRule),
    ]
}

/// Runs `rules` over `input`.
pub fn check(rules: &[Box<dyn DisclosureRule>], input: &CheckInput<'_>) -> CheckReport {
    let reports: Vec<RuleReport> = rules
        .iter()
        .map(|r| {
            if input.dp.is_some() && !DP_RULES.contains(&r.name()) {
                RuleReport {
                    rule: r.name().to_string(),
                    verdict: Verdict::Pass,
                    cells: vec![CellVerdict {
                        row: None,
                        column: None,
                        verdict: Verdict::Pass,
                        reason:
                            "not applied: the result is differentially private (see the dp rule)"
                                .into(),
                    }],
                }
            } else {
                r.check(input)
            }
        })
        .collect();
    let rows = input.rows();
    CheckReport {
        verdict: reports
            .iter()
            .map(|r| r.verdict)
            .max()
            .unwrap_or(Verdict::Pass),
        rows,
        cells_checked: rows * input.column_names().len() as u64,
        suppressed_groups: input.suppressed_groups,
        rules: reports,
    }
}

/// The strictest combination of the policies of the datasets read.
pub fn strictest(policies: &[&DisclosurePolicy]) -> DisclosurePolicy {
    let mut p = policies.first().map(|p| (*p).clone()).unwrap_or_default();
    for q in policies.iter().skip(1) {
        p.threshold = p.threshold.max(q.threshold);
        p.frequency_threshold = p.frequency_threshold.max(q.frequency_threshold);
        p.zeros_are_disclosive |= q.zeros_are_disclosive;
        p.max_output_rows = p.max_output_rows.min(q.max_output_rows);
        p.auto_release &= q.auto_release;
        p.row_level_output &= q.row_level_output;
        p.dof_threshold = p.dof_threshold.max(q.dof_threshold);
        p.nk.n = p.nk.n.max(q.nk.n);
        p.nk.k = p.nk.k.min(q.nk.k);
        p.p_ratio = p.p_ratio.max(q.p_ratio);
        p.models_need_approval |= q.models_need_approval;
    }
    p
}
