//! The four download formats of a released result, encoded deterministically.
//!
//! The same schema and rows give the same bytes on every run and machine, so a
//! certificate's hashes can be recomputed from the result alone. Batches are first
//! re-cut into slices of [`BATCH_ROWS`] rows, so the bytes do not depend on how the
//! query engine happened to partition its output either.
//!
//! | format | bytes |
//! |---|---|
//! | `csv` | RFC 4180 CSV with a header row (arrow-csv defaults; NULL is an empty field) |
//! | `parquet` | unencrypted Parquet, SNAPPY, chunk statistics, `created_by` = `anyu` |
//! | `arrow_ipc` | Arrow IPC *file* format |
//! | `json` | one JSON array of objects; NULL fields are omitted, NaN and ±∞ are `null` |

use std::fmt;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::{csv, ipc, json};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Rows per re-cut batch (and per IPC record batch), part of the byte format.
pub const BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group, part of the byte format.
const ROW_GROUP_ROWS: usize = 1024 * 1024;

/// A download format of a released result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    Csv,
    Parquet,
    ArrowIpc,
    Json,
}

impl ResultFormat {
    /// Every format, in the order certificates list them.
    pub const ALL: [ResultFormat; 4] = [
        ResultFormat::Csv,
        ResultFormat::Parquet,
        ResultFormat::ArrowIpc,
        ResultFormat::Json,
    ];

    /// The canonical name: `csv`, `parquet`, `arrow_ipc`, `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultFormat::Csv => "csv",
            ResultFormat::Parquet => "parquet",
            ResultFormat::ArrowIpc => "arrow_ipc",
            ResultFormat::Json => "json",
        }
    }

    /// File name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ResultFormat::Csv => "csv",
            ResultFormat::Parquet => "parquet",
            ResultFormat::ArrowIpc => "arrow",
            ResultFormat::Json => "json",
        }
    }

    /// Media type for downloads.
    pub fn mime(self) -> &'static str {
        match self {
            ResultFormat::Csv => "text/csv; charset=utf-8",
            ResultFormat::Parquet => "application/vnd.apache.parquet",
            ResultFormat::ArrowIpc => "application/vnd.apache.arrow.file",
            ResultFormat::Json => "application/json",
        }
    }

    /// Parses a canonical name or an extension, case-insensitively.
    pub fn parse(s: &str) -> Result<ResultFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(ResultFormat::Csv),
            "parquet" => Ok(ResultFormat::Parquet),
            "arrow_ipc" | "arrow" => Ok(ResultFormat::ArrowIpc),
            "json" => Ok(ResultFormat::Json),
            _ => Err(Error::InvalidArgument(
                "unknown result format; expected csv, parquet, arrow_ipc or json".into(),
            )),
        }
    }
}

impl fmt::Display for ResultFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Encodes `batches` (all of `schema`) as `format`. Deterministic; see the module docs.
///
/// Column types must be booleans, integers, floats, strings, dates, timestamps or
/// decimals; anything else is refused naming the column.
pub fn encode(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: ResultFormat,
) -> Result<Vec<u8>> {
    let batches = normalize(schema, batches)?;
    let fail = |kind: &'static str| {
        Error::InvalidData(format!("the result cannot be written as {format}: {kind}"))
    };
    match format {
        ResultFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            if batches.is_empty() {
                // The header alone still tells the columns.
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| fail(arrow_kind(&e)))?;
            }
            for b in &batches {
                w.write(b).map_err(|e| fail(arrow_kind(&e)))?;
            }
            Ok(w.into_inner())
        }
        ResultFormat::Json => {
            let mut w = json::ArrayWriter::new(Vec::new());
            for b in &batches {
                w.write(b).map_err(|e| fail(arrow_kind(&e)))?;
            }
            w.finish().map_err(|e| fail(arrow_kind(&e)))?;
            Ok(w.into_inner())
        }
        ResultFormat::ArrowIpc => {
            let mut w = ipc::writer::FileWriter::try_new(Vec::new(), schema)
                .map_err(|e| fail(arrow_kind(&e)))?;
            for b in &batches {
                w.write(b).map_err(|e| fail(arrow_kind(&e)))?;
            }
            w.finish().map_err(|e| fail(arrow_kind(&e)))?;
            w.into_inner().map_err(|e| fail(arrow_kind(&e)))
        }
        ResultFormat::Parquet => {
            let mut w =
                ArrowWriter::try_new(Vec::new(), schema.clone(), Some(parquet_properties()))
                    .map_err(|e| fail(parquet_kind(&e)))?;
            for b in &batches {
                w.write(b).map_err(|e| fail(parquet_kind(&e)))?;
            }
            w.into_inner().map_err(|e| fail(parquet_kind(&e)))
        }
    }
}

/// Fixed settings: every one that could vary the bytes is pinned here rather
/// than left to the crate's defaults.
fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_dictionary_enabled(true)
        .set_bloom_filter_enabled(false)
        .set_created_by("anyu".to_string())
        .build()
}

/// Checks the column types and batch schemas, then re-cuts the rows into
/// slices of [`BATCH_ROWS`].
fn normalize(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    for field in schema.fields() {
        if !supported(field.data_type()) {
            return Err(Error::InvalidArgument(format!(
                "result column `{}` has type {}, which cannot be released",
                shown(field.name()),
                field.data_type()
            )));
        }
    }
    for (i, b) in batches.iter().enumerate() {
        if b.schema().fields() != schema.fields() {
            return Err(Error::InvalidArgument(format!(
                "result batch {i} does not have the result schema"
            )));
        }
    }
    let all = concat_batches(schema, batches).map_err(|e| {
        Error::Internal(format!("concatenating result batches: {}", arrow_kind(&e)))
    })?;
    let rows = all.num_rows();
    Ok((0..rows)
        .step_by(BATCH_ROWS)
        .map(|start| all.slice(start, BATCH_ROWS.min(rows - start)))
        .collect())
}

fn supported(t: &DataType) -> bool {
    use DataType::*;
    matches!(
        t,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Utf8
            | LargeUtf8
            | Utf8View
            | Date32
            | Date64
            | Timestamp(_, _)
            | Decimal128(_, _)
            | Decimal256(_, _)
    )
}

/// Arrow and parquet messages can quote values; only the kind is reported.
fn arrow_kind(e: &ArrowError) -> &'static str {
    match e {
        ArrowError::NotYetImplemented(_) => "not supported by the writer",
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "a value cannot be formatted",
        ArrowError::SchemaError(_) | ArrowError::InvalidArgumentError(_) => "schema mismatch",
        ArrowError::MemoryError(_) => "out of memory",
        ArrowError::IoError(_, _) => "I/O error",
        _ => "writer error",
    }
}

fn parquet_kind(e: &ParquetError) -> &'static str {
    match e {
        ParquetError::NYI(_) => "not supported by the writer",
        ParquetError::ArrowError(_) => "a value cannot be converted",
        ParquetError::EOF(_) => "unexpected end of data",
        _ => "writer error",
    }
}

/// A column name, shortened and escaped for a message.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().count() > 64 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in ResultFormat::ALL {
            assert_eq!(ResultFormat::parse(f.as_str()).unwrap(), f);
            assert_eq!(ResultFormat::parse(f.extension()).unwrap(), f);
            assert_eq!(
                serde_json::to_value(f).unwrap(),
                serde_json::Value::String(f.as_str().into())
            );
        }
        assert!(ResultFormat::parse("xlsx").is_err());
    }
}
