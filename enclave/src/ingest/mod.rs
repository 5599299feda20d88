//! Importing a data file as a new, immutable, encrypted dataset version.
//!
//! ```text
//!  file ─▶ source (CSV / NDJSON as text, Parquet / Arrow IPC typed; columns matched by name)
//!       ─▶ convert (to the manifest's types; a bad value refuses the file, by column and row)
//!       ─▶ quality (nulls, 身份证号 / credit-code checks, bounds, categories, repeated units)
//!       ─▶ storage::VersionWriter (encrypted Parquet, renamed into place on success)
//! ```
//!
//! One batch is in memory at a time ([`ImportOptions::batch_size`] rows), plus the
//! writer's current row group and the privacy-unit counter (12 bytes per distinct
//! unit in a table at most 3/4 full), so memory does not grow with the file.
//!
//! **Refused** ([`Error::InvalidData`], nothing written): an empty file or one with
//! no header row or no data rows; missing, extra or repeated columns; a value that
//! does not parse as its column's type; a column type that cannot be converted
//! without loss; a null in a non-nullable column; a missing or blank privacy unit;
//! a malformed file. **Reported but accepted** (in the [`QualityReport`]): nulls in
//! nullable columns, invalid identifiers, out-of-bounds numbers, values outside the
//! categories, and privacy units on more than one row.
//!
//! Messages name columns and 1-based row numbers, never values. Rows are counted
//! from the first data record (a CSV header is not a row; NDJSON messages also give
//! the file line). Text formats: CSV must be UTF-8 with a header row, an empty cell
//! is a missing value; dates are `YYYY-MM-DD`; timestamps are RFC 3339 (converted
//! to UTC) or `YYYY-MM-DD HH:MM:SS[.fff]` (taken as written); booleans are
//! `true`/`false` (also `t`/`f`, `1`/`0`, `yes`/`no`); numbers may be padded with
//! spaces.
//!
//! An Arrow IPC *stream* cut exactly between two messages cannot be told from a
//! complete one (the end-of-stream marker is optional); the IPC *file* format and
//! Parquet carry a footer, so truncation is always detected there.

mod convert;
mod quality;
mod source;
mod spec;

use std::path::Path;

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

pub use quality::{ColumnQuality, PrivacyUnitQuality, QUALITY_REPORT_FORMAT, QualityReport};

use crate::catalog::Manifest;
use crate::keyring::Keyring;
use crate::storage::{VersionFile, VersionWriter, next_version};
use crate::{Error, Result};
use convert::ConvertError;
use quality::QualityAccumulator;
use spec::TableSpec;

/// Format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// Comma-separated values, UTF-8, header row required.
    Csv,
    /// Apache Parquet (unencrypted).
    Parquet,
    /// Arrow IPC, file format (`ARROW1` magic) or stream format.
    ArrowIpc,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
}

impl InputFormat {
    /// The format implied by a file's extension: `.csv`, `.parquet`,
    /// `.arrow`/`.ipc`/`.feather`, `.ndjson`/`.jsonl`/`.json`.
    pub fn from_path(p: &Path) -> Result<InputFormat> {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(InputFormat::Csv),
            "parquet" | "pq" => Ok(InputFormat::Parquet),
            "arrow" | "ipc" | "feather" | "arrows" => Ok(InputFormat::ArrowIpc),
            "ndjson" | "jsonl" | "json" => Ok(InputFormat::Ndjson),
            _ => Err(Error::InvalidArgument(format!(
                "cannot tell the format of {} from its extension; name it (csv, parquet, arrow, ndjson)",
                p.display()
            ))),
        }
    }

    /// Parses a format name: `csv`, `parquet`, `arrow` (or `ipc`, `arrow_ipc`,
    /// `feather`), `ndjson` (or `jsonl`, `json`); case-insensitive.
    pub fn parse(s: &str) -> Result<InputFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(InputFormat::Csv),
            "parquet" => Ok(InputFormat::Parquet),
            "arrow" | "ipc" | "arrow_ipc" | "arrow-ipc" | "feather" => Ok(InputFormat::ArrowIpc),
            "ndjson" | "jsonl" | "json" => Ok(InputFormat::Ndjson),
            other => Err(Error::InvalidArgument(format!(
                "unknown input format `{}`; expected csv, parquet, arrow or ndjson",
                source::shown(other)
            ))),
        }
    }

    /// The canonical name (`csv`, `parquet`, `arrow_ipc`, `ndjson`).
    pub fn as_str(&self) -> &'static str {
        match self {
            InputFormat::Csv => "csv",
            InputFormat::Parquet => "parquet",
            InputFormat::ArrowIpc => "arrow_ipc",
            InputFormat::Ndjson => "ndjson",
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to run an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Input format; `None` takes it from the file extension.
    pub format: Option<InputFormat>,
    /// Rows per batch read, checked and written at a time (bounds memory).
    pub batch_size: usize,
    /// Row numbers listed per problem in the quality report.
    pub max_error_rows: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            format: None,
            batch_size: 65_536,
            max_error_rows: 20,
        }
    }
}

/// A successful import.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// The manifest's dataset id.
    pub dataset_id: String,
    /// The new version number.
    pub version: u64,
    /// The written version.
    pub file: VersionFile,
    /// What the checks found.
    pub quality: QualityReport,
    /// SHA-256 of the input file (lowercase hex), for provenance.
    pub source_sha256: String,
    /// Size of the input file in bytes.
    pub source_bytes: u64,
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes: the
/// figure an import reports beside its row count, to show its memory stays bounded.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Imports `data_path` as the next version of `manifest`'s dataset under
/// `datasets_root`, encrypted under `keyring`.
///
/// Synchronous and streaming (run it in `spawn_blocking`). Atomic: on any error
/// no version directory and no temporary directory remain.
pub fn import(
    keyring: &Keyring,
    datasets_root: &Path,
    manifest: &Manifest,
    data_path: &Path,
    opts: &ImportOptions,
) -> Result<ImportOutcome> {
    if opts.batch_size == 0 {
        return Err(Error::InvalidArgument(
            "batch size must be at least 1".into(),
        ));
    }
    let spec = TableSpec::from_manifest(manifest)?;
    let format = match opts.format {
        Some(f) => f,
        None => InputFormat::from_path(data_path)?,
    };
    let dataset_id = manifest.id();
    let mut source = source::open(format, data_path, &spec, opts.batch_size)?;

    let dataset_dir = datasets_root.join(dataset_id);
    let dataset_dir_existed = dataset_dir.exists();
    let version = next_version(datasets_root, dataset_id)?;
    let mut writer = VersionWriter::create(
        keyring,
        datasets_root,
        dataset_id,
        version,
        spec.schema.clone(),
    )?;
    let mut quality = QualityAccumulator::new(&spec, opts.max_error_rows);

    let result = (|| -> Result<(String, u64)> {
        while let Some(raw) = source.next_batch()? {
            let columns = spec
                .columns
                .iter()
                .zip(&raw.columns)
                .map(|(col, array)| {
                    convert::convert(array, col).map_err(|e| match e {
                        ConvertError::Type(from) => Error::InvalidData(format!(
                            "column `{}` has type {from} in the file, which cannot be stored as {} without loss",
                            col.name, col.data_type
                        )),
                        ConvertError::Row(i, what) => Error::InvalidData(format!(
                            "column `{}`, {}: {what}",
                            col.name,
                            raw.at.describe(i)
                        )),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            quality.observe(&spec, &columns, &raw.at)?;
            let batch = RecordBatch::try_new(spec.schema.clone(), columns).map_err(|_| {
                Error::Internal(format!(
                    "a converted batch of {} rows does not fit the schema",
                    raw.rows
                ))
            })?;
            writer.write(&batch)?;
        }
        if writer.rows() == 0 {
            return Err(Error::InvalidData("the file has no data rows".into()));
        }
        source.finish()
    })();

    let (source_sha256, source_bytes) = match result {
        Ok(digest) => digest,
        Err(e) => {
            writer.abort();
            if !dataset_dir_existed {
                // Only removes the directory if the failed import left it empty.
                let _ = std::fs::remove_dir(&dataset_dir);
            }
            return Err(e);
        }
    };
    let file = writer.finish()?;
    let quality = quality.finish(&spec);
    tracing::info!(
        dataset = dataset_id,
        version,
        rows = file.rows,
        bytes = file.bytes,
        passed = quality.passed,
        "imported dataset version"
    );
    Ok(ImportOutcome {
        dataset_id: dataset_id.to_string(),
        version,
        file,
        quality,
        source_sha256,
        source_bytes,
    })
}
