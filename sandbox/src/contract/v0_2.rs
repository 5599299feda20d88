//! `anyu:model@0.2.0`: a column is a plain list of values plus an optional
//! validity bitmap, strings one byte buffer with offsets; laid out like
//! Arrow's arrays, so each column crosses as a block copy or two.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, BooleanArray, Float64Array, GenericStringArray,
    Int64Array, LargeStringArray, OffsetSizeTrait, PrimitiveArray, RecordBatch, StringArray,
    StringViewArray,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};

use crate::bindings::v0_2::anyu::model::{input, log, types};
use crate::error::{Result, SandboxError};
use crate::host::RunState;
use crate::input::Kind;
use crate::output::{self, Shape, invalid};
use types::{Column, ColumnData, ColumnType, Field, Strings, Table};

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
        match self.next_slice()? {
            None => Ok(None),
            Some(b) => to_wit(&b).map(Some).map_err(|e| self.fail_input(e)),
        }
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

fn to_wit(batch: &RecordBatch) -> Result<Table> {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| {
            Ok(Column {
                name: f.name().clone(),
                data: data_to_wit(f.name(), a.as_ref())?,
                validity: validity(a.nulls()),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Table { columns })
}

/// The bitmap from bit 0 (a sliced array's bits start mid-byte), or `None`
/// without nulls.
fn validity(nulls: Option<&NullBuffer>) -> Option<Vec<u8>> {
    let n = nulls.filter(|n| n.null_count() > 0)?;
    let bits = n.inner().sliced();
    Some(bits.as_slice()[..n.len().div_ceil(8)].to_vec())
}

/// Sets every null slot to zero (`false`): a placeholder never carries the
/// value Arrow happened to keep there.
fn zero_nulls<T: Copy + Default>(values: &mut [T], nulls: Option<&NullBuffer>) {
    if let Some(n) = nulls.filter(|n| n.null_count() > 0) {
        for (v, valid) in values.iter_mut().zip(n.iter()) {
            if !valid {
                *v = T::default();
            }
        }
    }
}

fn numbers<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>) -> Vec<T::Native> {
    let mut v = a.values().to_vec();
    zero_nulls(&mut v, a.nulls());
    v
}

fn data_to_wit(name: &str, a: &dyn Array) -> Result<ColumnData> {
    let any = a.as_any();
    // The reader checked every batch against a supported schema.
    Ok(if let Some(a) = any.downcast_ref::<Float64Array>() {
        ColumnData::F64(numbers(a))
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        ColumnData::I64(numbers(a))
    } else if let Some(a) = any.downcast_ref::<BooleanArray>() {
        let mut v: Vec<bool> = a.values().iter().collect();
        zero_nulls(&mut v, a.nulls());
        ColumnData::Boolean(v)
    } else if let Some(a) = any.downcast_ref::<StringArray>() {
        ColumnData::Str(contiguous(name, a)?)
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        ColumnData::Str(contiguous(name, a)?)
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        ColumnData::Str(gathered(name, a.iter(), a.len())?)
    } else {
        unreachable!("input schema checked before the model starts")
    })
}

fn too_long(name: &str) -> SandboxError {
    SandboxError::InvalidInput {
        reason: format!("column `{name}` holds over 4 GiB of strings in one batch"),
    }
}

/// An Arrow string array's own offsets and bytes, rebased to 0: one copy
/// of each. With nulls, gathered value by value so placeholders are empty.
fn contiguous<O: OffsetSizeTrait>(name: &str, a: &GenericStringArray<O>) -> Result<Strings> {
    if a.null_count() > 0 {
        return gathered(name, a.iter(), a.len());
    }
    let offsets = a.value_offsets();
    let (first, last) = (offsets[0].as_usize(), offsets[a.len()].as_usize());
    let offsets = offsets
        .iter()
        .map(|o| u32::try_from(o.as_usize() - first))
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| too_long(name))?;
    Ok(Strings {
        offsets,
        bytes: a.value_data()[first..last].to_vec(),
    })
}

fn gathered<'a>(
    name: &str,
    values: impl Iterator<Item = Option<&'a str>>,
    rows: usize,
) -> Result<Strings> {
    let mut offsets = Vec::with_capacity(rows + 1);
    let mut bytes = Vec::new();
    offsets.push(0);
    for v in values {
        bytes.extend_from_slice(v.unwrap_or("").as_bytes());
        offsets.push(u32::try_from(bytes.len()).map_err(|_| too_long(name))?);
    }
    Ok(Strings { offsets, bytes })
}

fn rows(d: &ColumnData) -> usize {
    match d {
        ColumnData::F64(v) => v.len(),
        ColumnData::I64(v) => v.len(),
        ColumnData::Boolean(v) => v.len(),
        ColumnData::Str(s) => s.offsets.len().saturating_sub(1),
    }
}

fn shape(c: &Column) -> Shape<'_> {
    let rows = rows(&c.data);
    let bytes = match &c.data {
        ColumnData::F64(_) | ColumnData::I64(_) => 8 * rows as u64,
        ColumnData::Boolean(_) => rows as u64,
        ColumnData::Str(s) => output::string_bytes(rows, s.bytes.len()),
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
            let array = array(&c.name, c.data, c.validity, rows)?;
            Ok((c.name, array))
        })
        .collect::<Result<_>>()?;
    output::batch(columns, rows)
}

/// The guest's bitmap, checked, its bits past the last row cleared; `None`
/// when no row is null.
fn nulls(name: &str, validity: Option<Vec<u8>>, rows: usize) -> Result<Option<NullBuffer>> {
    let Some(mut bits) = validity else {
        return Ok(None);
    };
    if bits.len() != rows.div_ceil(8) {
        return Err(invalid(format!(
            "column `{name}` has a validity bitmap of {} bytes for {rows} rows",
            bits.len()
        )));
    }
    let tail = rows % 8;
    if tail != 0
        && let Some(last) = bits.last_mut()
    {
        *last &= (1u8 << tail) - 1;
    }
    let n = NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows));
    Ok((n.null_count() > 0).then_some(n))
}

fn array(name: &str, data: ColumnData, validity: Option<Vec<u8>>, rows: usize) -> Result<ArrayRef> {
    let nulls = nulls(name, validity, rows)?;
    Ok(match data {
        ColumnData::F64(v) => primitive::<Float64Type>(v, nulls),
        ColumnData::I64(v) => primitive::<Int64Type>(v, nulls),
        ColumnData::Boolean(mut v) => {
            zero_nulls(&mut v, nulls.as_ref());
            Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls))
        }
        ColumnData::Str(s) => Arc::new(strings(name, s, nulls)?),
    })
}

fn primitive<T: ArrowPrimitiveType>(mut v: Vec<T::Native>, nulls: Option<NullBuffer>) -> ArrayRef {
    zero_nulls(&mut v, nulls.as_ref());
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(v), nulls))
}

fn strings(name: &str, s: Strings, nulls: Option<NullBuffer>) -> Result<StringArray> {
    let bad = |what: &str| invalid(format!("column `{name}`: {what}"));
    if s.offsets.is_empty() {
        return match s.bytes.is_empty() {
            true => Ok(StringArray::from(Vec::<&str>::new())),
            false => Err(bad("string bytes without offsets")),
        };
    }
    let tight = s.offsets[0] == 0
        && s.offsets.last().map(|&o| o as usize) == Some(s.bytes.len())
        && s.offsets.windows(2).all(|w| w[0] <= w[1]);
    if !tight {
        return Err(bad(
            "string offsets do not run from 0 up to the end of the bytes",
        ));
    }
    let offsets: ScalarBuffer<i32> = s
        .offsets
        .iter()
        .map(|&o| i32::try_from(o))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("over 2 GiB of strings"))?;
    let a = StringArray::try_new(OffsetBuffer::new(offsets), Buffer::from_vec(s.bytes), nulls)
        .map_err(|_| bad("a string is not valid UTF-8"))?;
    // Whatever the guest left behind a null stays here.
    Ok(match a.null_count() {
        0 => a,
        _ => a.iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Schema};

    use super::*;

    fn col(name: &str, data: ColumnData, validity: Option<Vec<u8>>) -> Column {
        Column {
            name: name.into(),
            data,
            validity,
        }
    }

    fn strs(values: &[&str]) -> Strings {
        let mut s = Strings {
            offsets: vec![0],
            bytes: vec![],
        };
        for v in values {
            s.bytes.extend_from_slice(v.as_bytes());
            s.offsets.push(s.bytes.len() as u32);
        }
        s
    }

    #[test]
    fn output_limits_count_like_0_1() {
        // The same table as 0.1's test: [1.0, null] and ["xyz", null].
        let t = || Table {
            columns: vec![
                col("a", ColumnData::F64(vec![1.0, 7.0]), Some(vec![0b01])),
                col("b", ColumnData::Str(strs(&["xyz", ""])), Some(vec![0b01])),
            ],
        };
        // 4 cells; bytes: 1 + 16 + 1 + (4 + 3) + 4 = 29
        let b = from_wit(t(), 4, 29).unwrap();
        assert!(from_wit(t(), 3, 29).is_err());
        assert!(from_wit(t(), 4, 28).is_err());
        let a = b.column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![Some(1.0), None]);
        // The 7.0 behind the null does not leave the host.
        assert_eq!(a.values()[1], 0.0);
    }

    #[test]
    fn nothing_hides_behind_nulls_or_past_the_last_row() {
        let t = Table {
            columns: vec![
                col(
                    "n",
                    ColumnData::I64(vec![1, 99, 3]),
                    Some(vec![0b1111_1101]),
                ),
                col(
                    "s",
                    ColumnData::Str(strs(&["a", "secret", "c"])),
                    Some(vec![0b101]),
                ),
                col(
                    "b",
                    ColumnData::Boolean(vec![true, true, true]),
                    Some(vec![0b101]),
                ),
            ],
        };
        let b = from_wit(t, 100, 100).unwrap();
        let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.values().to_vec(), vec![1, 0, 3]);
        assert_eq!(n.nulls().unwrap().buffer().as_slice()[0], 0b101);
        let s = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(s.value_data(), b"ac");
        let bl = b.column(2).as_any().downcast_ref::<BooleanArray>().unwrap();
        assert!(!bl.values().value(1));
    }

    fn raw(offsets: &[u32], bytes: &[u8]) -> ColumnData {
        ColumnData::Str(Strings {
            offsets: offsets.to_vec(),
            bytes: bytes.to_vec(),
        })
    }

    #[test]
    fn malformed_columns_are_invalid_output() {
        let cases = [
            // Nine rows need two bytes of bitmap.
            (ColumnData::F64(vec![1.0; 9]), Some(vec![0xff])),
            (raw(&[1, 2], b"ab"), None),
            (raw(&[0, 1], b"ab"), None),
            (raw(&[0, 2, 1, 2], b"ab"), None),
            (raw(&[0, 1], &[0xff]), None),
            // The offset splits `é`.
            (raw(&[0, 1, 2], "é".as_bytes()), None),
            (raw(&[], b"a"), None),
        ];
        for (data, validity) in cases {
            let t = Table {
                columns: vec![col("v", data, validity)],
            };
            assert_eq!(from_wit(t, 100, 100).unwrap_err().code(), "invalid_output");
        }
        let empty = Table {
            columns: vec![col("v", raw(&[], b""), None)],
        };
        assert_eq!(from_wit(empty, 100, 100).unwrap().num_rows(), 0);
    }

    #[test]
    fn input_is_arrow_laid_out_with_zeroed_placeholders() {
        let schema = Arc::new(Schema::new(vec![
            ArrowField::new("f", DataType::Float64, true),
            ArrowField::new("s", DataType::Utf8, true),
            ArrowField::new("l", DataType::LargeUtf8, true),
            ArrowField::new("b", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    None,
                    Some(3.0),
                    None,
                    Some(5.0),
                    Some(6.0),
                    Some(7.0),
                    Some(8.0),
                    None,
                    Some(10.0),
                ])),
                Arc::new(StringArray::from(vec![
                    "a", "bb", "ccc", "", "é", "f", "g", "h", "i", "j",
                ])),
                Arc::new(LargeStringArray::from(vec![
                    Some("x"),
                    None,
                    Some("z"),
                    Some("w"),
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some("v"),
                ])),
                Arc::new(BooleanArray::from(vec![true; 10])),
            ],
        )
        .unwrap();
        // A slice from row 3: Arrow's bits then start mid-byte.
        let t = to_wit(&batch.slice(3, 7)).unwrap();
        let [f, s, l, b] = &t.columns[..] else {
            panic!("four columns")
        };
        assert_eq!(
            f.data,
            ColumnData::F64(vec![0.0, 5.0, 6.0, 7.0, 8.0, 0.0, 10.0])
        );
        assert_eq!(f.validity, Some(vec![0b101_1110]));
        match &s.data {
            ColumnData::Str(st) => {
                assert_eq!(st.offsets, vec![0, 0, 2, 3, 4, 5, 6, 7]);
                assert_eq!(st.bytes, "éfghij".as_bytes());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.validity, None);
        match &l.data {
            ColumnData::Str(st) => {
                assert_eq!(st.offsets, vec![0, 1, 1, 1, 1, 1, 1, 2]);
                assert_eq!(st.bytes, b"wv");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.validity, Some(vec![0b100_0001]));
        assert_eq!(b.data, ColumnData::Boolean(vec![true; 7]));
    }
}
