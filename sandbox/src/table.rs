//! Arrow on the host side, `anyu:model/types` on the guest side.
//!
//! Input: [`InputSource`] yields arrow batches; each is checked against the
//! declared schema, sliced to at most `batch_rows` rows and copied into a
//! WIT `table`. Output: the guest's `table` is counted against the output
//! limits before any arrow array is built, then turned into one
//! [`RecordBatch`].

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, RecordBatch,
    RecordBatchOptions, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef};

use crate::bindings::anyu::model::types::{Column, ColumnData, ColumnType, Field, Table};
use crate::error::{Result, SandboxError};

/// Where a model's input comes from: a schema and a stream of batches.
///
/// Supported column types: `Float64`, `Int64`, `Utf8`, `LargeUtf8`,
/// `Utf8View`, `Boolean` (all nullable). Others are refused with
/// [`SandboxError::InvalidInput`] before the model starts.
pub trait InputSource: Send {
    /// The schema every batch has.
    fn schema(&self) -> SchemaRef;
    /// The next batch, `None` at the end. An error ends the job with that
    /// error (use [`SandboxError::InvalidInput`] or [`SandboxError::Internal`]).
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
}

/// An [`InputSource`] over batches held in memory.
#[derive(Debug)]
pub struct BatchesInput {
    schema: SchemaRef,
    batches: std::vec::IntoIter<RecordBatch>,
}

impl BatchesInput {
    /// The given batches, in order, all of `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        BatchesInput {
            schema,
            batches: batches.into_iter(),
        }
    }
}

impl InputSource for BatchesInput {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        Ok(self.batches.next())
    }
}

/// Whether a model can read a column of this type (`anyu:model` column types).
pub fn readable(dt: &DataType) -> bool {
    column_type(dt).is_some()
}

fn column_type(dt: &DataType) -> Option<ColumnType> {
    match dt {
        DataType::Float64 => Some(ColumnType::F64),
        DataType::Int64 => Some(ColumnType::I64),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(ColumnType::Str),
        DataType::Boolean => Some(ColumnType::Bool),
        _ => None,
    }
}

/// The WIT schema of an arrow schema, or the first unsupported column.
pub(crate) fn wit_schema(schema: &Schema) -> Result<Vec<Field>> {
    schema
        .fields()
        .iter()
        .map(|f| match column_type(f.data_type()) {
            Some(ty) => Ok(Field {
                name: f.name().clone(),
                ty,
            }),
            None => Err(SandboxError::InvalidInput {
                reason: format!(
                    "column `{}` has type {}; models read Float64, Int64, Utf8 and Boolean",
                    f.name(),
                    f.data_type()
                ),
            }),
        })
        .collect()
}

/// Hands the guest batches of at most `batch_rows` rows.
pub(crate) struct InputReader {
    source: Box<dyn InputSource>,
    schema: SchemaRef,
    pending: Option<(RecordBatch, usize)>,
    batch_rows: usize,
    done: bool,
    pub(crate) rows: u64,
}

impl InputReader {
    pub(crate) fn new(source: Box<dyn InputSource>, batch_rows: usize) -> Result<Self> {
        let schema = source.schema();
        wit_schema(&schema)?;
        Ok(InputReader {
            source,
            schema,
            pending: None,
            batch_rows: batch_rows.max(1),
            done: false,
            rows: 0,
        })
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn check(&self, batch: &RecordBatch) -> Result<()> {
        let got = batch.schema();
        if got.fields().len() != self.schema.fields().len() {
            return Err(SandboxError::InvalidInput {
                reason: format!(
                    "a batch has {} columns, the schema {}",
                    got.fields().len(),
                    self.schema.fields().len()
                ),
            });
        }
        for (want, have) in self.schema.fields().iter().zip(got.fields()) {
            if want.data_type() != have.data_type() {
                return Err(SandboxError::InvalidInput {
                    reason: format!(
                        "column `{}` is {} in a batch but {} in the schema",
                        want.name(),
                        have.data_type(),
                        want.data_type()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The next slice as a WIT table.
    pub(crate) fn next(&mut self) -> Result<Option<Table>> {
        loop {
            if let Some((batch, offset)) = self.pending.take() {
                let len = (batch.num_rows() - offset).min(self.batch_rows);
                let slice = batch.slice(offset, len);
                if offset + len < batch.num_rows() {
                    self.pending = Some((batch, offset + len));
                }
                self.rows += len as u64;
                return Ok(Some(to_wit(&self.schema, &slice)));
            }
            if self.done {
                return Ok(None);
            }
            match self.source.next_batch()? {
                None => self.done = true,
                Some(batch) => {
                    self.check(&batch)?;
                    if batch.num_rows() > 0 {
                        self.pending = Some((batch, 0));
                    }
                }
            }
        }
    }
}

fn to_wit(schema: &Schema, batch: &RecordBatch) -> Table {
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| Column {
            name: f.name().clone(),
            data: column_to_wit(a.as_ref()),
        })
        .collect();
    Table { columns }
}

fn strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ColumnData {
    ColumnData::Str(it.map(|s| s.map(str::to_owned)).collect())
}

fn column_to_wit(a: &dyn Array) -> ColumnData {
    let any = a.as_any();
    // The reader checked every batch against a supported schema.
    if let Some(a) = any.downcast_ref::<Float64Array>() {
        ColumnData::F64(a.iter().collect())
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        ColumnData::I64(a.iter().collect())
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        ColumnData::Boolean(a.iter().collect())
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        strings(a.iter())
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        strings(a.iter())
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        strings(a.iter())
    } else {
        unreachable!("input schema checked before the model starts")
    }
}

fn data_len(d: &ColumnData) -> usize {
    match d {
        ColumnData::F64(v) => v.len(),
        ColumnData::I64(v) => v.len(),
        ColumnData::Str(v) => v.len(),
        ColumnData::Boolean(v) => v.len(),
    }
}

/// Bytes the output limit counts for a column (see [`crate::RunLimits`]).
fn data_bytes(d: &ColumnData) -> u64 {
    match d {
        ColumnData::F64(v) => 8 * v.len() as u64,
        ColumnData::I64(v) => 8 * v.len() as u64,
        ColumnData::Boolean(v) => v.len() as u64,
        ColumnData::Str(v) => v
            .iter()
            .map(|s| 4 + s.as_ref().map_or(0, |s| s.len() as u64))
            .sum(),
    }
}

/// Checks the guest's table against the limits and turns it into a batch.
pub(crate) fn from_wit(table: Table, max_cells: u64, max_bytes: u64) -> Result<RecordBatch> {
    let mut cells: u64 = 0;
    let mut bytes: u64 = 0;
    for c in &table.columns {
        cells = cells.saturating_add(data_len(&c.data) as u64);
        bytes = bytes
            .saturating_add(c.name.len() as u64)
            .saturating_add(data_bytes(&c.data));
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
    let rows = table.columns.first().map_or(0, |c| data_len(&c.data));
    let mut names = HashSet::new();
    for (i, c) in table.columns.iter().enumerate() {
        if c.name.is_empty() {
            return Err(SandboxError::InvalidOutput {
                reason: format!("column {i} has an empty name"),
            });
        }
        if !names.insert(c.name.as_str()) {
            return Err(SandboxError::InvalidOutput {
                reason: format!("column name `{}` appears twice", c.name),
            });
        }
        if data_len(&c.data) != rows {
            return Err(SandboxError::InvalidOutput {
                reason: format!(
                    "column `{}` has {} rows, the first column {rows}",
                    c.name,
                    data_len(&c.data)
                ),
            });
        }
    }
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for c in table.columns {
        let (dt, array): (DataType, ArrayRef) = match c.data {
            ColumnData::F64(v) => (DataType::Float64, Arc::new(Float64Array::from(v))),
            ColumnData::I64(v) => (DataType::Int64, Arc::new(Int64Array::from(v))),
            ColumnData::Boolean(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v))),
            ColumnData::Str(v) => (DataType::Utf8, Arc::new(StringArray::from(v))),
        };
        fields.push(ArrowField::new(c.name, dt, true));
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| crate::error::internal("building the output batch", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, data: ColumnData) -> Column {
        Column {
            name: name.into(),
            data,
        }
    }

    #[test]
    fn output_limits_count_cells_and_bytes() {
        let t = || Table {
            columns: vec![
                col("a", ColumnData::F64(vec![Some(1.0), None])),
                col("b", ColumnData::Str(vec![Some("xyz".into()), None])),
            ],
        };
        // 4 cells; bytes: 1 + 16 + 1 + (4 + 3) + 4 = 29
        assert!(from_wit(t(), 4, 29).is_ok());
        assert!(matches!(
            from_wit(t(), 3, 29),
            Err(SandboxError::OutputTooLarge { unit: "cells", .. })
        ));
        assert!(matches!(
            from_wit(t(), 4, 28),
            Err(SandboxError::OutputTooLarge { unit: "bytes", .. })
        ));
    }

    #[test]
    fn invalid_tables_are_refused_by_structure() {
        let uneven = Table {
            columns: vec![
                col("a", ColumnData::I64(vec![Some(1)])),
                col("b", ColumnData::I64(vec![])),
            ],
        };
        assert!(matches!(
            from_wit(uneven, 100, 100),
            Err(SandboxError::InvalidOutput { .. })
        ));
        let dup = Table {
            columns: vec![
                col("a", ColumnData::I64(vec![])),
                col("a", ColumnData::I64(vec![])),
            ],
        };
        assert!(matches!(
            from_wit(dup, 100, 100),
            Err(SandboxError::InvalidOutput { .. })
        ));
    }

    #[test]
    fn input_is_sliced_and_checked() {
        let schema = Arc::new(Schema::new(vec![ArrowField::new(
            "x",
            DataType::Int64,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from((0..10).collect::<Vec<i64>>()))],
        )
        .unwrap();
        let src = BatchesInput::new(schema, vec![batch]);
        let mut r = InputReader::new(Box::new(src), 4).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| r.next().unwrap())
            .map(|t| data_len(&t.columns[0].data))
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(r.rows, 10);

        let bad = Arc::new(Schema::new(vec![ArrowField::new(
            "d",
            DataType::Date32,
            true,
        )]));
        let err = InputReader::new(Box::new(BatchesInput::new(bad, vec![])), 4)
            .err()
            .unwrap();
        assert_eq!(err.code(), "invalid_input");
    }
}
