//! The small-count rules of a model's output (a model is a black box
//! between its input rows and its table, so its output is judged by its
//! shape and by the sizes it reports):
//! - every input column the model reads is filled (non-null) by at least the
//!   threshold of persons: `CASE WHEN <one person> THEN value END` would
//!   otherwise hand a model one person's values, whatever it computes;
//! - an output number equal to a value fewer than the threshold of input
//!   persons hold (a rare exact value: a maximum, a lone salary) goes to
//!   review, the cell and the input column named;
//! - an output has at most `persons ÷ threshold` rows: k-means with k equal
//!   to the number of persons would otherwise release every input row;
//! - a column that reports a group size (`GROUP_SIZE_COLUMNS`: `n`, `size`,
//!   `count`, `n_obs`) must show at least the threshold in every row: a
//!   describe whose `n` is 1 is one person's value.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use super::{CellVerdict, CheckInput, ModelFacts, Verdict};

/// Output columns a model names for the size of the group a row describes.
pub const GROUP_SIZE_COLUMNS: &[&str] = &["n", "size", "count", "n_obs"];

/// Rows the output may have: one per `threshold` persons of the input. When
/// the count stopped at its cap, the cap is what is known.
pub fn max_rows(model: &ModelFacts, threshold: u64) -> u64 {
    model.units.min(model.units_cap) / threshold.max(1)
}

/// The whole result fails for each input column fewer than the threshold of
/// persons fill (the name is the query's, never a value).
pub fn thin_columns(input: &CheckInput<'_>, model: &ModelFacts) -> Vec<CellVerdict> {
    let t = input.policy.threshold;
    if model.aggregated_input {
        return Vec::new();
    }
    model
        .thin_columns
        .iter()
        .map(|c| CellVerdict {
            row: None,
            column: None,
            verdict: Verdict::Fail,
            reason: format!(
                "the model reads input column `{c}`, which fewer than {t} persons fill (non-null)"
            ),
        })
        .collect()
}

/// An output number that fewer than the threshold of input persons hold in
/// `column` (as f64 bits, -0 as 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RareValue {
    pub column: String,
    pub bits: u64,
}

/// A number as the rare-value search compares it: f64 bits, -0 folded into 0,
/// NaN never equal to anything.
pub fn number_key(v: f64) -> Option<u64> {
    if v.is_nan() {
        return None;
    }
    Some(if v == 0.0 {
        0f64.to_bits()
    } else {
        v.to_bits()
    })
}

/// A numeric column as f64 (`None` for other types).
pub fn as_f64(col: &dyn Array) -> Option<Float64Array> {
    let numeric = col.data_type().is_numeric() && !matches!(col.data_type(), DataType::Float16);
    if !numeric {
        return None;
    }
    let c = cast(col, &DataType::Float64).ok()?;
    c.as_any().downcast_ref::<Float64Array>().cloned()
}

/// Every output cell equal to a rare input value, for review.
pub fn rare_values(input: &CheckInput<'_>, model: &ModelFacts) -> Vec<CellVerdict> {
    let t = input.policy.threshold;
    if model.rare_values.is_empty() {
        return Vec::new();
    }
    let mut by_key: HashMap<u64, &str> = HashMap::new();
    for r in &model.rare_values {
        by_key.entry(r.bits).or_insert(&r.column);
    }
    let mut cells = Vec::new();
    let mut offset = 0u64;
    for batch in input.batches {
        for (ci, field) in batch.schema().fields().iter().enumerate() {
            let Some(values) = as_f64(batch.column(ci)) else {
                continue;
            };
            for (r, v) in values.iter().enumerate() {
                let Some(source) = v.and_then(number_key).and_then(|k| by_key.get(&k)) else {
                    continue;
                };
                cells.push(CellVerdict {
                    row: Some(offset + r as u64),
                    column: Some(field.name().clone()),
                    verdict: Verdict::Review,
                    reason: format!(
                        "equals a value that fewer than {t} persons hold in input column `{source}`"
                    ),
                });
            }
        }
        offset += batch.num_rows() as u64;
    }
    cells
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
            thin_columns: Vec::new(),
            rare_values: Vec::new(),
        };
        assert_eq!(max_rows(&m(35, 1000), 10), 3);
        assert_eq!(max_rows(&m(9, 1000), 10), 0);
        // Counting stopped at the cap: the cap is what is known.
        assert_eq!(max_rows(&m(1000, 1000), 10), 100);
    }
}
