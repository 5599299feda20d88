//! The model's input on the host side: an [`InputSource`] of Arrow batches,
//! checked against its declared schema and sliced to at most `batch_rows`
//! rows. Each contract version turns the slices into its own WIT tables.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};

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

/// The column types of `anyu:model`, the same in every contract version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    F64,
    I64,
    Str,
    Bool,
}

/// Whether a model can read a column of this type (`anyu:model` column types).
pub fn readable(dt: &DataType) -> bool {
    kind(dt).is_some()
}

fn kind(dt: &DataType) -> Option<Kind> {
    match dt {
        DataType::Float64 => Some(Kind::F64),
        DataType::Int64 => Some(Kind::I64),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Str),
        DataType::Boolean => Some(Kind::Bool),
        _ => None,
    }
}

/// The name and kind of every column, or the first unsupported column.
pub(crate) fn columns(schema: &Schema) -> Result<Vec<(String, Kind)>> {
    schema
        .fields()
        .iter()
        .map(|f| match kind(f.data_type()) {
            Some(k) => Ok((f.name().clone(), k)),
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

/// Hands out slices of at most `batch_rows` rows.
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
        columns(&schema)?;
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

    /// The next slice: every column of a type [`readable`] accepts, as the
    /// schema says.
    pub(crate) fn next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some((batch, offset)) = self.pending.take() {
                let len = (batch.num_rows() - offset).min(self.batch_rows);
                let slice = batch.slice(offset, len);
                if offset + len < batch.num_rows() {
                    self.pending = Some((batch, offset + len));
                }
                self.rows += len as u64;
                return Ok(Some(slice));
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::Field;

    use super::*;

    #[test]
    fn input_is_sliced_and_checked() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from((0..10).collect::<Vec<i64>>()))],
        )
        .unwrap();
        let src = BatchesInput::new(schema, vec![batch]);
        let mut r = InputReader::new(Box::new(src), 4).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| r.next().unwrap())
            .map(|b| b.num_rows())
            .collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(r.rows, 10);

        let bad = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let err = InputReader::new(Box::new(BatchesInput::new(bad, vec![])), 4)
            .err()
            .unwrap();
        assert_eq!(err.code(), "invalid_input");
    }
}
