//! Turning a column as read from the file into the manifest's type.
//!
//! Text is parsed here, not by Arrow's cast kernels: their errors quote the
//! offending value, and their date parser accepts more shapes than the manifest
//! format promises. Typed columns (Parquet, Arrow IPC) go through Arrow's cast
//! in "safe" mode, which turns a value that does not fit into a null; comparing
//! null masks before and after finds the row without ever printing the value.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    PrimitiveArray, StringArray, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};

use super::quality::is_string;
use super::spec::ColumnSpec;

/// Why a column could not be converted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConvertError {
    /// The file's type cannot be stored as the manifest's type without loss.
    Type(DataType),
    /// The value at this index of the batch is not valid for the target type;
    /// the string says what was expected (no value).
    Row(usize, String),
}

/// True when a column of type `from` may be converted to the manifest type `to`.
/// Only conversions that keep every value are allowed (no float → int, no
/// timestamp → date).
pub(crate) fn convertible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || *from == Null || is_string(from) {
        return true;
    }
    if let Dictionary(_, value) = from {
        return convertible(value, to);
    }
    let int = from.is_integer();
    match to {
        Utf8 | LargeUtf8 | Utf8View => int,
        Int64 => int,
        Float64 => int || from.is_floating() || matches!(from, Decimal128(..) | Decimal256(..)),
        Boolean => false,
        Date32 => matches!(from, Date32 | Date64),
        Timestamp(..) => matches!(from, Date32 | Date64 | Timestamp(..)),
        _ => false,
    }
}

/// Short description of what a valid value of `t` looks like.
pub(crate) fn expected(t: &DataType) -> String {
    match t {
        DataType::Int64 => "not a valid int64 (a whole number)".into(),
        DataType::Float64 => "not a valid float64 (a finite number)".into(),
        DataType::Boolean => "not a valid bool (true or false)".into(),
        DataType::Date32 => "not a valid date (expected YYYY-MM-DD)".into(),
        DataType::Timestamp(..) => {
            "not a valid timestamp (expected RFC 3339 or YYYY-MM-DD HH:MM:SS)".into()
        }
        other => format!("not a valid {other}"),
    }
}

/// Converts `array` to the column's manifest type.
pub(crate) fn convert(array: &ArrayRef, col: &ColumnSpec) -> Result<ArrayRef, ConvertError> {
    let to = &col.data_type;
    let from = array.data_type();
    if !convertible(from, to) {
        return Err(ConvertError::Type(from.clone()));
    }
    if *from == DataType::Null {
        return Ok(new_null_array(to, array.len()));
    }
    if let DataType::Dictionary(_, value) = from {
        let unpacked = cast_with_options(array, value, &CastOptions::default())
            .map_err(|_| ConvertError::Type(from.clone()))?;
        return convert(&unpacked, col);
    }
    if is_string(from) && !is_string(to) {
        let text = if *from == DataType::Utf8 {
            Arc::clone(array)
        } else {
            cast_with_options(array, &DataType::Utf8, &CastOptions::default())
                .map_err(|_| ConvertError::Type(from.clone()))?
        };
        return parse_text(text.as_string::<i32>(), to);
    }
    let out = if from == to {
        Arc::clone(array)
    } else {
        cast_with_options(
            array,
            to,
            &CastOptions {
                safe: true,
                ..Default::default()
            },
        )
        .map_err(|_| ConvertError::Type(from.clone()))?
    };
    // A safe cast turns a value that does not fit into a null.
    if out.null_count() != array.null_count()
        && let Some(i) = (0..array.len()).find(|&i| array.is_valid(i) && out.is_null(i))
    {
        return Err(ConvertError::Row(
            i,
            format!("the value does not fit in {to}"),
        ));
    }
    if *to == DataType::Float64 {
        let a = out.as_primitive::<Float64Type>();
        if let Some(i) = (0..a.len()).find(|&i| a.is_valid(i) && !a.value(i).is_finite()) {
            return Err(ConvertError::Row(i, expected(to)));
        }
    }
    Ok(out)
}

/// Parses text into `to`. Leading and trailing white space is ignored; a blank
/// cell is a missing value.
fn parse_text(a: &StringArray, to: &DataType) -> Result<ArrayRef, ConvertError> {
    fn run<B, T>(
        a: &StringArray,
        to: &DataType,
        mut builder: B,
        mut append: impl FnMut(&mut B, Option<T>),
        parse: impl Fn(&str) -> Option<T>,
        finish: impl FnOnce(B) -> ArrayRef,
    ) -> Result<ArrayRef, ConvertError> {
        for i in 0..a.len() {
            let s = if a.is_valid(i) { a.value(i).trim() } else { "" };
            if s.is_empty() {
                append(&mut builder, None);
                continue;
            }
            match parse(s) {
                Some(v) => append(&mut builder, Some(v)),
                None => return Err(ConvertError::Row(i, expected(to))),
            }
        }
        Ok(finish(builder))
    }
    let n = a.len();
    match to {
        DataType::Int64 => run(
            a,
            to,
            Int64Builder::with_capacity(n),
            |b, v| b.append_option(v),
            |s| s.parse::<i64>().ok(),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Float64 => run(
            a,
            to,
            Float64Builder::with_capacity(n),
            |b, v| b.append_option(v),
            |s| s.parse::<f64>().ok().filter(|v| v.is_finite()),
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Boolean => run(
            a,
            to,
            BooleanBuilder::with_capacity(n),
            |b, v| b.append_option(v),
            parse_bool,
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Date32 => run(
            a,
            to,
            Date32Builder::with_capacity(n),
            |b, v| b.append_option(v),
            parse_date_days,
            |mut b| Arc::new(b.finish()),
        ),
        DataType::Timestamp(unit, tz) => {
            let zone = match tz.as_deref() {
                None => None,
                Some(name) => Some(
                    name.parse::<Tz>()
                        .map_err(|_| ConvertError::Type(DataType::Utf8))?,
                ),
            };
            let parse = |s: &str| parse_timestamp(s, zone.as_ref()).and_then(|t| to_unit(t, unit));
            run(
                a,
                to,
                Vec::<Option<i64>>::with_capacity(n),
                |b, v| b.push(v),
                parse,
                |b| timestamp_array(b, unit, tz.clone()),
            )
        }
        other => Err(ConvertError::Type(other.clone())),
    }
}

fn timestamp_array(values: Vec<Option<i64>>, unit: &TimeUnit, tz: Option<Arc<str>>) -> ArrayRef {
    match unit {
        TimeUnit::Second => Arc::new(
            values
                .into_iter()
                .collect::<PrimitiveArray<TimestampSecondType>>()
                .with_timezone_opt(tz),
        ),
        TimeUnit::Millisecond => Arc::new(
            values
                .into_iter()
                .collect::<PrimitiveArray<TimestampMillisecondType>>()
                .with_timezone_opt(tz),
        ),
        TimeUnit::Microsecond => Arc::new(
            values
                .into_iter()
                .collect::<PrimitiveArray<TimestampMicrosecondType>>()
                .with_timezone_opt(tz),
        ),
        TimeUnit::Nanosecond => Arc::new(
            values
                .into_iter()
                .collect::<PrimitiveArray<TimestampNanosecondType>>()
                .with_timezone_opt(tz),
        ),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["true", "t", "1", "yes"];
    const FALSE: [&str; 4] = ["false", "f", "0", "no"];
    if TRUE.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Days since 1970-01-01 of a strict `YYYY-MM-DD` date.
fn parse_date_days(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// A timestamp as a naive date-time on the target's clock: RFC 3339 values are
/// converted to UTC; values without an offset are taken as wall-clock time in
/// the column's time zone (kept as written when the column has none).
fn parse_timestamp(s: &str, zone: Option<&Tz>) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()?;
    match zone {
        None => Some(naive),
        Some(z) => z
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.naive_utc()),
    }
}

fn to_unit(t: NaiveDateTime, unit: &TimeUnit) -> Option<i64> {
    let t = t.and_utc();
    match unit {
        TimeUnit::Second => Some(t.timestamp()),
        TimeUnit::Millisecond => Some(t.timestamp_millis()),
        TimeUnit::Microsecond => Some(t.timestamp_micros()),
        TimeUnit::Nanosecond => t.timestamp_nanos_opt(),
    }
}
