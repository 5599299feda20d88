//! Streaming readers: each yields batches of the file's columns in manifest
//! order, as read (text for CSV and NDJSON, the file's types for Parquet and
//! Arrow IPC). Converting and checking them is the caller's job.
//!
//! Errors from the underlying libraries are never passed on: their text can quote
//! the data. Messages are rebuilt from what is known (column names, row numbers).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::csv::ReaderBuilder as CsvReaderBuilder;
use datafusion::arrow::csv::reader::{Decoder as CsvDecoder, Format as CsvFormat};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::{
    FileReader as IpcFileReader, StreamReader as IpcStreamReader,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::InputFormat;
use super::convert::convertible;
use super::spec::TableSpec;
use crate::{Error, Result};

/// Longest NDJSON line accepted; bounds memory on a file without newlines.
pub(crate) const MAX_JSON_LINE: usize = 16 * 1024 * 1024;

/// Read buffer size for sequential formats.
const READ_BUFFER: usize = 1024 * 1024;

/// Maps a batch index to the row number reported to the user.
#[derive(Debug, Clone)]
pub(crate) struct RowLocator {
    /// 1-based row number of the batch's first row.
    first_row: u64,
    /// File line of each row, for NDJSON (blank lines make them differ).
    lines: Option<Vec<u64>>,
}

impl RowLocator {
    /// The 1-based row number of batch index `i`.
    pub(crate) fn row(&self, i: usize) -> u64 {
        self.first_row + i as u64
    }

    /// "row N", or "row N (line M)" when the file line differs.
    pub(crate) fn describe(&self, i: usize) -> String {
        let row = self.row(i);
        match self.lines.as_ref().and_then(|l| l.get(i)) {
            Some(&line) if line != row => format!("row {row} (line {line})"),
            _ => format!("row {row}"),
        }
    }
}

/// One batch of the file: its columns in manifest order, before conversion.
pub(crate) struct RawBatch {
    pub columns: Vec<ArrayRef>,
    pub rows: usize,
    pub at: RowLocator,
}

/// A streaming reader of one input file.
pub(crate) trait Source {
    /// The next batch, or `None` at the end of the file.
    fn next_batch(&mut self) -> Result<Option<RawBatch>>;

    /// After the last batch: SHA-256 (hex) and size of the whole file.
    fn finish(self: Box<Self>) -> Result<(String, u64)>;
}

/// Opens `path` as `format` and checks its columns against the manifest.
pub(crate) fn open(
    format: InputFormat,
    path: &Path,
    spec: &TableSpec,
    batch_size: usize,
) -> Result<Box<dyn Source>> {
    let len = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            return Err(Error::InvalidArgument(format!(
                "{} is not a file",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!("data file {}", path.display())));
        }
        Err(e) => return Err(Error::io("read", path)(e)),
    };
    if len == 0 {
        return Err(Error::InvalidData("the file is empty".into()));
    }
    Ok(match format {
        InputFormat::Csv => Box::new(CsvSource::open(path, spec, batch_size)?),
        InputFormat::Ndjson => Box::new(JsonSource::open(path, spec, batch_size)?),
        InputFormat::Parquet => Box::new(TypedSource::parquet(path, spec, batch_size)?),
        InputFormat::ArrowIpc => Box::new(TypedSource::ipc(path, spec)?),
    })
}

/// A column name from the file as shown in a message: shortened, control
/// characters escaped.
pub(crate) fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().count() > 64 {
        s.push('…');
    }
    s
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{}`", shown(n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For each manifest column, the index of the file column of that name.
/// Columns match by name in any order; missing, extra and repeated names are errors.
pub(crate) fn match_columns(spec: &TableSpec, file_names: &[&str]) -> Result<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in file_names.iter().enumerate() {
        if seen.insert(name, i).is_some() {
            return Err(Error::InvalidData(format!(
                "column `{}` appears more than once in the file",
                shown(name)
            )));
        }
    }
    let missing: Vec<&str> = spec
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !seen.contains_key(n))
        .collect();
    let extra: Vec<&str> = file_names
        .iter()
        .copied()
        .filter(|n| spec.index_of(n).is_none())
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing manifest columns {}", list(&missing)));
    }
    if !extra.is_empty() {
        problems.push(format!("columns not in the manifest {}", list(&extra)));
    }
    if !problems.is_empty() {
        return Err(Error::InvalidData(format!(
            "the file's columns do not match the manifest: {}",
            problems.join("; ")
        )));
    }
    Ok(spec.columns.iter().map(|c| seen[c.name.as_str()]).collect())
}

/// Hashes and counts everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    digest: ring::digest::Context,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.digest.finish()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 and size of a whole file, read in one streaming pass.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64)> {
    let file = File::open(path).map_err(Error::io("open", path))?;
    let mut r = HashingReader::new(file);
    std::io::copy(&mut r, &mut std::io::sink()).map_err(Error::io("read", path))?;
    Ok(r.finish())
}

// ---------------------------------------------------------------------------- CSV

/// CSV with a header row, read as text with Arrow's push decoder.
struct CsvSource {
    path: PathBuf,
    reader: BufReader<HashingReader<File>>,
    decoder: CsvDecoder,
    /// File column index of each manifest column.
    mapping: Vec<usize>,
    /// File column names, for UTF-8 errors that name a field by position.
    file_names: Vec<String>,
    rows: u64,
}

impl CsvSource {
    fn open(path: &Path, spec: &TableSpec, batch_size: usize) -> Result<Self> {
        let header_file = File::open(path).map_err(Error::io("open", path))?;
        let (header, _) = CsvFormat::default()
            .with_header(true)
            .infer_schema(header_file, Some(0))
            .map_err(|_| {
                Error::InvalidData(
                    "the header row cannot be read (the file must be UTF-8 CSV with a header row)"
                        .into(),
                )
            })?;
        let file_names: Vec<String> = header
            .fields()
            .iter()
            .map(|f| f.name().trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        if file_names.is_empty() || file_names.iter().all(String::is_empty) {
            return Err(Error::InvalidData("the file has no header row".into()));
        }
        let names: Vec<&str> = file_names.iter().map(String::as_str).collect();
        let mapping = match_columns(spec, &names)?;

        let text_schema: SchemaRef = Arc::new(Schema::new(
            (0..file_names.len())
                .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let decoder = CsvReaderBuilder::new(text_schema)
            .with_header(true)
            .with_batch_size(batch_size)
            .build_decoder();
        let file = File::open(path).map_err(Error::io("open", path))?;
        Ok(CsvSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(READ_BUFFER, HashingReader::new(file)),
            decoder,
            mapping,
            file_names,
            rows: 0,
        })
    }

    /// Rebuilds a CSV syntax error from its numbers. Arrow counts the header as
    /// line 1, so data row = line - 1.
    fn error(&self, e: ArrowError) -> Error {
        let msg = match &e {
            ArrowError::CsvError(m) => m.as_str(),
            _ => "",
        };
        let line = number_after(msg, "for line ").map(|l| l.saturating_sub(1));
        let text = match (line, msg.starts_with("incorrect number of fields")) {
            (Some(row), true) => {
                let expected = number_after(msg, "expected ").unwrap_or(0);
                let got = number_after(msg, "got more than ")
                    .map(|n| format!("more than {n}"))
                    .or_else(|| number_after(msg, "got ").map(|n| n.to_string()))
                    .unwrap_or_else(|| "a different number of".into());
                format!("row {row}: {got} fields, but the header has {expected}")
            }
            (Some(row), false) if msg.contains("invalid UTF-8") => {
                let column = number_after(msg, "field ")
                    .and_then(|f| self.file_names.get((f as usize).checked_sub(1)?))
                    .map(|n| format!(", column `{}`", shown(n)))
                    .unwrap_or_default();
                format!(
                    "row {row}{column}: the text is not valid UTF-8 (convert the file to UTF-8, e.g. from GBK)"
                )
            }
            _ => format!("malformed CSV after row {}", self.rows),
        };
        Error::InvalidData(text)
    }
}

/// The number that directly follows `prefix` in an (Arrow) message.
fn number_after(msg: &str, prefix: &str) -> Option<u64> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Source for CsvSource {
    fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(Error::io("read", &self.path))?;
            let decoded = self.decoder.decode(buf).map_err(|e| self.error(e))?;
            if decoded == 0 {
                break;
            }
            self.reader.consume(decoded);
        }
        let Some(batch) = self.decoder.flush().map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let at = RowLocator {
            first_row: self.rows + 1,
            lines: None,
        };
        self.rows += batch.num_rows() as u64;
        Ok(Some(RawBatch {
            columns: self
                .mapping
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect(),
            rows: batch.num_rows(),
            at,
        }))
    }

    fn finish(self: Box<Self>) -> Result<(String, u64)> {
        let mut reader = self.reader;
        // The decoder stops at the end of input; read any rest so the digest covers the file.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(Error::io("read", &self.path))?;
        Ok(reader.into_inner().finish())
    }
}

// ------------------------------------------------------------------------- NDJSON

/// Newline-delimited JSON objects, one record a line. Keys are matched to the
/// manifest's columns; a missing key is a missing value; scalars are read as text
/// and converted like CSV cells.
struct JsonSource {
    path: PathBuf,
    reader: BufReader<HashingReader<File>>,
    index: HashMap<String, usize>,
    names: Vec<String>,
    batch_size: usize,
    line: Vec<u8>,
    line_no: u64,
    rows: u64,
    /// Whether each manifest column appeared as a key in any record.
    seen: Vec<bool>,
    eof: bool,
}

impl JsonSource {
    fn open(path: &Path, spec: &TableSpec, batch_size: usize) -> Result<Self> {
        let file = File::open(path).map_err(Error::io("open", path))?;
        Ok(JsonSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(READ_BUFFER, HashingReader::new(file)),
            index: spec
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name.clone(), i))
                .collect(),
            names: spec.columns.iter().map(|c| c.name.clone()).collect(),
            batch_size,
            line: Vec::new(),
            line_no: 0,
            rows: 0,
            seen: vec![false; spec.columns.len()],
            eof: false,
        })
    }

    /// Reads the next non-blank line into `self.line`; false at the end.
    fn next_line(&mut self) -> Result<bool> {
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(MAX_JSON_LINE as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(Error::io("read", &self.path))?;
            if n == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            if self.line.len() > MAX_JSON_LINE {
                return Err(Error::InvalidData(format!(
                    "line {}: longer than {} MiB",
                    self.line_no,
                    MAX_JSON_LINE >> 20
                )));
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
    }
}

impl Source for JsonSource {
    fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        if self.eof {
            return Ok(None);
        }
        let width = self.names.len();
        let mut builders: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
        let mut lines = Vec::new();
        let mut filled = vec![false; width];
        let mut text = String::new();
        while lines.len() < self.batch_size {
            if !self.next_line()? {
                self.eof = true;
                break;
            }
            let line_no = self.line_no;
            let value: serde_json::Value = serde_json::from_slice(&self.line).map_err(|e| {
                Error::InvalidData(format!(
                    "line {line_no}, column {}: not valid JSON",
                    e.column()
                ))
            })?;
            let serde_json::Value::Object(record) = value else {
                return Err(Error::InvalidData(format!(
                    "line {line_no}: expected a JSON object (one record per line)"
                )));
            };
            filled.fill(false);
            for (key, v) in &record {
                let Some(&i) = self.index.get(key.as_str()) else {
                    return Err(Error::InvalidData(format!(
                        "line {line_no}: field `{}` is not a column of the manifest",
                        shown(key)
                    )));
                };
                filled[i] = true;
                self.seen[i] = true;
                let b = &mut builders[i];
                match v {
                    serde_json::Value::Null => b.append_null(),
                    serde_json::Value::String(s) => b.append_value(s),
                    serde_json::Value::Bool(x) => b.append_value(if *x { "true" } else { "false" }),
                    serde_json::Value::Number(n) => {
                        use std::fmt::Write;
                        text.clear();
                        let _ = write!(text, "{n}");
                        b.append_value(&text);
                    }
                    serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                        return Err(Error::InvalidData(format!(
                            "line {line_no}, column `{}`: a nested JSON value; expected a scalar",
                            self.names[i]
                        )));
                    }
                }
            }
            for (b, _) in builders.iter_mut().zip(&filled).filter(|(_, f)| !**f) {
                b.append_null();
            }
            lines.push(line_no);
        }
        if self.eof && self.rows + lines.len() as u64 > 0 && self.seen.contains(&false) {
            let missing: Vec<&str> = self
                .names
                .iter()
                .zip(&self.seen)
                .filter(|(_, s)| !**s)
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(Error::InvalidData(format!(
                "the file's columns do not match the manifest: missing manifest columns {} (no record has them)",
                list(&missing)
            )));
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let rows = lines.len();
        let at = RowLocator {
            first_row: self.rows + 1,
            lines: Some(lines),
        };
        self.rows += rows as u64;
        Ok(Some(RawBatch {
            columns: builders
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef)
                .collect(),
            rows,
            at,
        }))
    }

    fn finish(self: Box<Self>) -> Result<(String, u64)> {
        let mut reader = self.reader;
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(Error::io("read", &self.path))?;
        Ok(reader.into_inner().finish())
    }
}

// ----------------------------------------------------------- Parquet, Arrow IPC

/// A typed columnar file read batch by batch (Parquet or Arrow IPC).
struct TypedSource {
    what: &'static str,
    batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>>>,
    mapping: Vec<usize>,
    rows: u64,
    /// Digest of the file, taken in a separate pass before reading.
    digest: (String, u64),
}

impl TypedSource {
    fn parquet(path: &Path, spec: &TableSpec, batch_size: usize) -> Result<Self> {
        let digest = hash_file(path)?;
        let mut file = File::open(path).map_err(Error::io("open", path))?;
        let mut head = [0u8; 4];
        let mut tail = [0u8; 4];
        let magic_ok = digest.1 >= 12
            && file.read_exact(&mut head).is_ok()
            && file.seek(SeekFrom::End(-4)).is_ok()
            && file.read_exact(&mut tail).is_ok()
            && &head == b"PAR1"
            && &tail == b"PAR1";
        if !magic_ok {
            return Err(Error::InvalidData(
                "not a Parquet file, or a truncated one (the PAR1 markers are missing)".into(),
            ));
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|_| {
            Error::InvalidData("the Parquet file's metadata (footer) is unreadable".into())
        })?;
        let schema = Arc::clone(builder.schema());
        let mapping = check_schema(spec, &schema)?;
        let reader = builder
            .with_batch_size(batch_size)
            .build()
            .map_err(|_| Error::InvalidData("the Parquet file cannot be read".into()))?;
        Ok(TypedSource {
            what: "Parquet",
            batches: Box::new(reader),
            mapping,
            rows: 0,
            digest,
        })
    }

    fn ipc(path: &Path, spec: &TableSpec) -> Result<Self> {
        let digest = hash_file(path)?;
        let mut file = File::open(path).map_err(Error::io("open", path))?;
        let mut magic = [0u8; 6];
        let is_file_format = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
        file.seek(SeekFrom::Start(0))
            .map_err(Error::io("read", path))?;
        let unreadable = |kind: &str| {
            Error::InvalidData(format!(
                "not a readable Arrow IPC {kind} (corrupt or truncated)"
            ))
        };
        let (schema, batches): (SchemaRef, Box<dyn Iterator<Item = _>>) = if is_file_format {
            let r = IpcFileReader::try_new(BufReader::new(file), None)
                .map_err(|_| unreadable("file"))?;
            (r.schema(), Box::new(r))
        } else {
            let r = IpcStreamReader::try_new(BufReader::with_capacity(READ_BUFFER, file), None)
                .map_err(|_| unreadable("stream"))?;
            (r.schema(), Box::new(r))
        };
        let mapping = check_schema(spec, &schema)?;
        Ok(TypedSource {
            what: "Arrow IPC",
            batches,
            mapping,
            rows: 0,
            digest,
        })
    }
}

/// Matches typed fields to manifest columns and checks every type converts.
fn check_schema(spec: &TableSpec, schema: &Schema) -> Result<Vec<usize>> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mapping = match_columns(spec, &names)?;
    for (col, &i) in spec.columns.iter().zip(&mapping) {
        let from = schema.field(i).data_type();
        if !convertible(from, &col.data_type) {
            return Err(Error::InvalidData(format!(
                "column `{}` has type {from} in the file, which cannot be stored as {} without loss",
                col.name, col.data_type
            )));
        }
    }
    Ok(mapping)
}

impl Source for TypedSource {
    fn next_batch(&mut self) -> Result<Option<RawBatch>> {
        let batch = match self.batches.next() {
            None => return Ok(None),
            Some(Ok(b)) => b,
            Some(Err(_)) => {
                return Err(Error::InvalidData(format!(
                    "the {} file is corrupt or truncated after row {}",
                    self.what, self.rows
                )));
            }
        };
        let at = RowLocator {
            first_row: self.rows + 1,
            lines: None,
        };
        self.rows += batch.num_rows() as u64;
        Ok(Some(RawBatch {
            columns: self
                .mapping
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect(),
            rows: batch.num_rows(),
            at,
        }))
    }

    fn finish(self: Box<Self>) -> Result<(String, u64)> {
        Ok(self.digest)
    }
}
