//! The small-count rules of a model's output (a model is a black box
//! between its input rows and its table, so its output is judged by its
//! shape and by the sizes it reports):
//! - an output has at most `persons ÷ threshold` rows: k-means with k equal
//!   to the number of persons would otherwise release every input row;
//! - a column that reports a group size (`GROUP_SIZE_COLUMNS`: `n`, `size`,
//!   `count`, `n_obs`) must show at least the threshold in every row: a
//!   describe whose `n` is 1 is one person's value.

use datafusion::arrow::array::{Array, Int64Array, UInt64Array};

use super::{CellVerdict, CheckInput, ModelFacts, Verdict};

/// Output columns a model names for the size of the group a row describes.
pub const GROUP_SIZE_COLUMNS: &[&str] = &["n", "size", "count", "n_obs"];

/// Rows the output may have: one per `threshold` persons of the input. When
/// the count stopped at its cap, the cap is what is known.
pub fn max_rows(model: &ModelFacts, threshold: u64) -> u64 {
    model.units.min(model.units_cap) / threshold.max(1)
}

/// The whole result fails when it has more rows than its input's persons allow.
pub fn too_many_rows(input: &CheckInput<'_>, model: &ModelFacts) -> Option<CellVerdict> {
    let t = input.policy.threshold;
    let allowed = max_rows(model, t);
    (!model.aggregated_input && input.rows() > allowed).then(|| CellVerdict {
        row: None,
        column: None,
        verdict: Verdict::Fail,
        reason: format!(
            "the model's output has more rows than its input's persons allow (one row per {t} persons)"
        ),
    })
}

/// Every row whose reported group size is under the threshold fails, whole.
pub fn small_groups(input: &CheckInput<'_>) -> Vec<CellVerdict> {
    let t = input.policy.threshold;
    super::fail_rows(input, GROUP_SIZE_COLUMNS, |col, row| {
        size(col, row)
            .filter(|n| *n < t)
            .map(|_| format!("the row describes a group of fewer than {t} (a group-size column)"))
    })
}

fn size(col: &dyn Array, row: usize) -> Option<u64> {
    if col.is_null(row) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return Some(a.value(row).max(0) as u64);
    }
    col.as_any()
        .downcast_ref::<UInt64Array>()
        .map(|a| a.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_persons_counted() {
        let m = |units, cap| ModelFacts {
            units,
            units_cap: cap,
            aggregated_input: false,
        };
        assert_eq!(max_rows(&m(35, 1000), 10), 3);
        assert_eq!(max_rows(&m(9, 1000), 10), 0);
        // Counting stopped at the cap: the cap is what is known.
        assert_eq!(max_rows(&m(1000, 1000), 10), 100);
    }
}
