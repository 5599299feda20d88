//! `anyu:model@0.1.0`: every column a list of options, lowered and lifted
//! value by value. Kept so that components built against it still run.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray, StringViewArray,
};

use crate::bindings::v0_1::anyu::model::{input, log, types};
use crate::error::Result;
use crate::host::RunState;
use crate::input::Kind;
use crate::output::{self, Shape};
use types::{Column, ColumnData, ColumnType, Field, Table};

impl types::Host for RunState {}

impl input::Host for RunState {
    fn schema(&mut self) -> wasmtime::Result<Vec<Field>> {
        Ok(self
            .input_columns()?
            .into_iter()
            .map(|(name, kind)| Field {
                name,
                ty: column_type(kind),
            })
            .collect())
    }

    fn next_batch(&mut self) -> wasmtime::Result<Option<Table>> {
        Ok(self.next_slice()?.map(|b| to_wit(&b)))
    }
}

impl log::Host for RunState {
    fn write(&mut self, line: String) -> wasmtime::Result<()> {
        self.log.line(&line);
        Ok(())
    }
}

fn column_type(kind: Kind) -> ColumnType {
    match kind {
        Kind::F64 => ColumnType::F64,
        Kind::I64 => ColumnType::I64,
        Kind::Str => ColumnType::Str,
        Kind::Bool => ColumnType::Bool,
    }
}

fn to_wit(batch: &RecordBatch) -> Table {
    let columns = batch
        .schema()
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

fn shape(c: &Column) -> Shape<'_> {
    let (rows, bytes) = match &c.data {
        ColumnData::F64(v) => (v.len(), 8 * v.len() as u64),
        ColumnData::I64(v) => (v.len(), 8 * v.len() as u64),
        ColumnData::Boolean(v) => (v.len(), v.len() as u64),
        ColumnData::Str(v) => (
            v.len(),
            output::string_bytes(v.len(), v.iter().flatten().map(String::len).sum()),
        ),
    };
    Shape {
        name: &c.name,
        rows,
        bytes,
    }
}

/// Checks the guest's table against the limits and turns it into a batch.
pub(crate) fn from_wit(table: Table, max_cells: u64, max_bytes: u64) -> Result<RecordBatch> {
    let shapes: Vec<Shape<'_>> = table.columns.iter().map(shape).collect();
    let rows = output::check(&shapes, max_cells, max_bytes)?;
    let columns = table
        .columns
        .into_iter()
        .map(|c| {
            let array: ArrayRef = match c.data {
                ColumnData::F64(v) => Arc::new(Float64Array::from(v)),
                ColumnData::I64(v) => Arc::new(Int64Array::from(v)),
                ColumnData::Boolean(v) => Arc::new(BooleanArray::from(v)),
                ColumnData::Str(v) => Arc::new(StringArray::from(v)),
            };
            (c.name, array)
        })
        .collect();
    output::batch(columns, rows)
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
        assert!(from_wit(t(), 4, 28).is_err());
        let b = from_wit(t(), 4, 29).unwrap();
        assert_eq!(b.column(0).null_count(), 1);
        assert_eq!(b.column(1).null_count(), 1);
    }

    #[test]
    fn invalid_tables_are_refused_by_structure() {
        let uneven = Table {
            columns: vec![
                col("a", ColumnData::I64(vec![Some(1)])),
                col("b", ColumnData::I64(vec![])),
            ],
        };
        assert_eq!(
            from_wit(uneven, 100, 100).unwrap_err().code(),
            "invalid_output"
        );
    }
}
