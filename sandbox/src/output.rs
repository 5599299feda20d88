//! The checks every result table passes, whatever its contract version:
//! counted against the output limits before any Arrow array is built, then
//! its structure (names, equal lengths); then one [`RecordBatch`].

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, Schema};

use crate::error::{Result, SandboxError};

/// What the limits and structure checks need of one result column.
pub(crate) struct Shape<'a> {
    pub(crate) name: &'a str,
    pub(crate) rows: usize,
    /// Bytes the output limit counts for its values (see
    /// [`crate::RunLimits::max_output_bytes`]), the name not included.
    pub(crate) bytes: u64,
}

/// Checks the columns against the limits, then their names and lengths;
/// returns the number of rows.
pub(crate) fn check(columns: &[Shape<'_>], max_cells: u64, max_bytes: u64) -> Result<usize> {
    let mut cells: u64 = 0;
    let mut bytes: u64 = 0;
    for c in columns {
        cells = cells.saturating_add(c.rows as u64);
        bytes = bytes
            .saturating_add(c.name.len() as u64)
            .saturating_add(c.bytes);
    }
    if cells > max_cells {
        return Err(SandboxError::OutputTooLarge {
            limit: max_cells,
            unit: "cells",
        });
    }
    if bytes > max_bytes {
        return Err(SandboxError::OutputTooLarge {
            limit: max_bytes,
            unit: "bytes",
        });
    }
    let rows = columns.first().map_or(0, |c| c.rows);
    let mut names = HashSet::new();
    for (i, c) in columns.iter().enumerate() {
        if c.name.is_empty() {
            return Err(invalid(format!("column {i} has an empty name")));
        }
        if !names.insert(c.name) {
            return Err(invalid(format!("column name `{}` appears twice", c.name)));
        }
        if c.rows != rows {
            return Err(invalid(format!(
                "column `{}` has {} rows, the first column {rows}",
                c.name, c.rows
            )));
        }
    }
    Ok(rows)
}

pub(crate) fn invalid(reason: String) -> SandboxError {
    SandboxError::InvalidOutput { reason }
}

/// Bytes counted for a string column: the UTF-8 length plus 4 per value.
pub(crate) fn string_bytes(rows: usize, utf8_len: usize) -> u64 {
    (utf8_len as u64).saturating_add(4 * rows as u64)
}

/// One batch of `rows` rows from named, checked columns (all nullable).
pub(crate) fn batch(columns: Vec<(String, ArrayRef)>, rows: usize) -> Result<RecordBatch> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns
        .into_iter()
        .map(|(name, a)| (Field::new(name, a.data_type().clone(), true), a))
        .unzip();
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| crate::error::internal("building the output batch", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, rows: usize, bytes: u64) -> Shape<'_> {
        Shape { name, rows, bytes }
    }

    #[test]
    fn limits_count_cells_and_bytes_names_included() {
        // 4 cells; bytes: 1 + 16 + 1 + 11 = 29
        let t = [shape("a", 2, 16), shape("b", 2, 11)];
        assert_eq!(check(&t, 4, 29).unwrap(), 2);
        assert!(matches!(
            check(&t, 3, 29),
            Err(SandboxError::OutputTooLarge { unit: "cells", .. })
        ));
        assert!(matches!(
            check(&t, 4, 28),
            Err(SandboxError::OutputTooLarge { unit: "bytes", .. })
        ));
    }

    #[test]
    fn invalid_tables_are_refused_by_structure() {
        for t in [
            vec![shape("a", 1, 8), shape("b", 0, 0)],
            vec![shape("a", 0, 0), shape("a", 0, 0)],
            vec![shape("", 0, 0)],
        ] {
            assert!(matches!(
                check(&t, 100, 100),
                Err(SandboxError::InvalidOutput { .. })
            ));
        }
    }
}
