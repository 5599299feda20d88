//! Writing a version (streaming, atomic) and reading it back directly.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

use super::layout::{
    DATA_FILE, ENCRYPTED_MAGIC, KEY_FILE, TMP_PREFIX, VERSION_KEY_FORMAT, VersionKey,
    decryption_properties, tail_len, version_aad, version_dir,
};
use crate::keyring::{Keyring, SecretKey, WrappedKey, sync_dir};
use crate::{Error, Result};

/// Maximum rows per row group. DataFusion parallelises a file scan by byte range
/// and gives each partition the row groups whose middle lies in it, so row groups
/// are the unit of scan parallelism: a 10M-row version yields 20 (an even split
/// over 2 cores), a 1M-row one still 2. Fewer, larger groups would leave cores
/// idle on mid-sized datasets; much smaller ones grow the footer and per-group
/// overhead.
pub const ROW_GROUP_MAX_ROWS: usize = 512 * 1024;

/// Maximum encoded bytes per row group. The writer buffers a whole row group
/// before writing it, so this bounds import memory for wide rows.
pub const ROW_GROUP_MAX_BYTES: usize = 128 * 1024 * 1024;

/// A finished, immutable dataset version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFile {
    /// The version directory `<datasets_root>/<dataset_id>/v<N>`.
    pub dir: PathBuf,
    /// `dir/data.parquet`.
    pub data_path: PathBuf,
    /// The version number N.
    pub version: u64,
    /// Rows written.
    pub rows: u64,
    /// Size of `data.parquet` in bytes.
    pub bytes: u64,
    /// SHA-256 of `data.parquet`, lowercase hex.
    pub sha256: String,
}

/// Counts and hashes everything written to the data file, so the caller gets the
/// file's digest without reading it back.
struct HashingFile {
    file: File,
    digest: ring::digest::Context,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The data key of a version being written; `key.json` is written at the end,
/// when the file's digests are known.
struct PendingKey {
    dek: SecretKey,
    wrapped_key: WrappedKey,
    dataset_id: String,
}

/// Streams record batches into a new dataset version.
///
/// Nothing is visible under `v<N>` until [`finish`](Self::finish) succeeds. If the
/// writer is dropped or [`abort`](Self::abort)ed first, its temporary directory is
/// removed, so a failed import leaves nothing behind.
pub struct VersionWriter {
    tmp_dir: PathBuf,
    final_dir: PathBuf,
    dataset_dir: PathBuf,
    version: u64,
    schema: SchemaRef,
    writer: Option<ArrowWriter<HashingFile>>,
    /// `None` for plaintext benchmark versions.
    key: Option<PendingKey>,
    rows: u64,
    done: bool,
}

impl std::fmt::Debug for VersionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionWriter")
            .field("tmp_dir", &self.tmp_dir)
            .field("final_dir", &self.final_dir)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl VersionWriter {
    /// Starts writing version `version` of `dataset_id`, encrypted with a fresh data
    /// key wrapped by `keyring`. Fails with [`Error::Conflict`] if the version exists.
    pub fn create(
        keyring: &Keyring,
        datasets_root: &Path,
        dataset_id: &str,
        version: u64,
        schema: SchemaRef,
    ) -> Result<VersionWriter> {
        let mut w = VersionWriter::start(datasets_root, dataset_id, version, &schema)?;
        let aad = version_aad(dataset_id, version);
        let dek = SecretKey::generate();
        let wrapped_key = keyring.wrap_data_key(dek.as_bytes(), &aad)?;
        let encryption = FileEncryptionProperties::builder(dek.as_bytes().to_vec())
            .with_footer_key_metadata(keyring.key_id().as_bytes().to_vec())
            .with_aad_prefix(aad)
            .with_aad_prefix_storage(false)
            .build()
            .map_err(|e| Error::Internal(format!("building encryption properties: {e}")))?;
        let props = writer_properties()
            .with_file_encryption_properties(encryption)
            .build();
        w.open_data_file(schema, props)?;
        w.key = Some(PendingKey {
            dek,
            wrapped_key,
            dataset_id: dataset_id.to_string(),
        });
        Ok(w)
    }

    /// **Benchmarks only.** Same layout and writer settings as [`create`](Self::create)
    /// but *unencrypted*, so a benchmark can compare encrypted and plaintext scans
    /// like for like. The version holds a `PLAINTEXT-BENCHMARK-ONLY` marker and no
    /// `key.json`; [`register_version`](super::register_version) and
    /// [`read_version_batches`] refuse it (so a planted plaintext file can never pass
    /// for a dataset); register it with
    /// [`register_plaintext_version_for_benchmark`](super::register_plaintext_version_for_benchmark).
    /// Never use this for datasets; exists only with the `plaintext-benchmark` feature.
    #[cfg(feature = "plaintext-benchmark")]
    pub fn create_plaintext(
        datasets_root: &Path,
        dataset_id: &str,
        version: u64,
        schema: SchemaRef,
    ) -> Result<VersionWriter> {
        let mut w = VersionWriter::start(datasets_root, dataset_id, version, &schema)?;
        write_file(
            &w.tmp_dir.join(super::PLAINTEXT_MARKER_FILE),
            b"unencrypted benchmark data; not a dataset version\n",
        )?;
        w.open_data_file(schema, writer_properties().build())?;
        Ok(w)
    }

    fn start(
        datasets_root: &Path,
        dataset_id: &str,
        version: u64,
        schema: &SchemaRef,
    ) -> Result<VersionWriter> {
        let final_dir = version_dir(datasets_root, dataset_id, version)?;
        if final_dir.symlink_metadata().is_ok() {
            return Err(version_exists(dataset_id, version));
        }
        let dataset_dir = datasets_root.join(dataset_id);
        if !dataset_dir.exists() {
            fs::create_dir_all(&dataset_dir)
                .map_err(Error::io("create directory", &dataset_dir))?;
            sync_dir(datasets_root)?;
        }
        let tmp_dir = dataset_dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
        create_private_dir(&tmp_dir)?;
        Ok(VersionWriter {
            tmp_dir,
            final_dir,
            dataset_dir,
            version,
            schema: Arc::clone(schema),
            writer: None,
            key: None,
            rows: 0,
            done: false,
        })
    }

    fn open_data_file(&mut self, schema: SchemaRef, props: WriterProperties) -> Result<()> {
        let path = self.tmp_dir.join(DATA_FILE);
        let file = new_file(&path)?;
        let sink = HashingFile {
            file,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            bytes: 0,
        };
        let writer =
            ArrowWriter::try_new(sink, schema, Some(props)).map_err(|e| write_error(e, &path))?;
        self.writer = Some(writer);
        Ok(())
    }

    /// Appends a batch. Its schema must equal the writer's. Memory stays bounded by
    /// one row group ([`ROW_GROUP_MAX_ROWS`], [`ROW_GROUP_MAX_BYTES`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        check_batch(&self.schema, batch, self.rows)?;
        let path = self.tmp_dir.join(DATA_FILE);
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Internal("version writer used after failure".into()))?;
        if let Err(e) = writer.write(batch) {
            // A failed write can leave a half-written row group: poison the writer.
            self.writer = None;
            return Err(write_error(e, &path));
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer, fsyncs, and renames the temporary directory to `v<N>`.
    pub fn finish(mut self) -> Result<VersionFile> {
        let path = self.tmp_dir.join(DATA_FILE);
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Internal("version writer used after failure".into()))?;
        let sink = writer.into_inner().map_err(|e| write_error(e, &path))?;
        let HashingFile {
            file,
            digest,
            bytes,
        } = sink;
        file.sync_all().map_err(Error::io("fsync", &path))?;
        drop(file);
        let sha256 = hex::encode(digest.finish());
        make_read_only(&path)?;
        if let Some(pending) = self.key.take() {
            let (tail_len, tail_sha256) = footer_digest(&path, bytes)?;
            let mut key = VersionKey {
                format: VERSION_KEY_FORMAT,
                dataset_id: pending.dataset_id,
                version: self.version,
                algorithm: "AES_GCM_V1".into(),
                wrapped_key: pending.wrapped_key,
                data_len: bytes,
                data_sha256: sha256.clone(),
                tail_len,
                tail_sha256,
                mac: String::new(),
            };
            key.seal(&pending.dek);
            let mut json = serde_json::to_vec_pretty(&key)
                .map_err(|e| Error::Internal(format!("serialising key.json: {e}")))?;
            json.push(b'\n');
            let key_path = self.tmp_dir.join(KEY_FILE);
            write_file(&key_path, &json)?;
            make_read_only(&key_path)?;
        }
        sync_dir(&self.tmp_dir)?;

        if self.final_dir.symlink_metadata().is_ok() {
            return Err(version_exists_at(&self.final_dir));
        }
        // Renaming onto a non-empty directory fails, so a finished version (never
        // empty) cannot be replaced even by a concurrent writer.
        fs::rename(&self.tmp_dir, &self.final_dir).map_err(|e| {
            if matches!(
                e.kind(),
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty
            ) {
                version_exists_at(&self.final_dir)
            } else {
                Error::io("rename", &self.final_dir)(e)
            }
        })?;
        self.done = true;
        sync_dir(&self.dataset_dir)?;
        Ok(VersionFile {
            data_path: self.final_dir.join(DATA_FILE),
            dir: self.final_dir.clone(),
            version: self.version,
            rows: self.rows,
            bytes,
            sha256,
        })
    }

    /// Discards everything written; no version is created.
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for VersionWriter {
    fn drop(&mut self) {
        if !self.done {
            self.writer = None; // close the file before removing it
            if let Err(e) = fs::remove_dir_all(&self.tmp_dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %self.tmp_dir.display(), error = %e,
                    "could not remove temporary version directory");
            }
        }
    }
}

/// The parquet writer matches columns by position only; check names, types and
/// declared non-nullness ourselves so a wrong batch cannot produce a wrong file.
fn check_batch(schema: &SchemaRef, batch: &RecordBatch, rows_before: u64) -> Result<()> {
    let got = batch.schema();
    if got.fields().len() != schema.fields().len() {
        return Err(Error::InvalidData(format!(
            "batch has {} columns, the version has {}",
            got.fields().len(),
            schema.fields().len()
        )));
    }
    for (i, (want, have)) in schema.fields().iter().zip(got.fields()).enumerate() {
        if want.name() != have.name() || want.data_type() != have.data_type() {
            return Err(Error::InvalidData(format!(
                "batch column {} is `{}` {}, the version expects `{}` {}",
                i + 1,
                have.name(),
                have.data_type(),
                want.name(),
                want.data_type()
            )));
        }
        let column = batch.column(i);
        if !want.is_nullable() && column.null_count() > 0 {
            let first = (0..column.len()).find(|&r| column.is_null(r)).unwrap_or(0);
            return Err(Error::InvalidData(format!(
                "column `{}` is not nullable but row {} is null",
                want.name(),
                rows_before + first as u64 + 1
            )));
        }
    }
    Ok(())
}

/// Writer settings shared by encrypted and benchmark versions.
fn writer_properties() -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_MAX_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_MAX_BYTES))
        // Chunk statistics live in the (encrypted) footer and allow row-group pruning.
        // No page index and no Bloom filters: every byte of the file is then read by a
        // full scan, so any tampering is detected by the scan.
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_bloom_filter_enabled(false)
        .set_created_by(format!("anyu {}", env!("CARGO_PKG_VERSION")))
}

/// Reads a version directly with the parquet crate (for tests and tools); queries go
/// through DataFusion instead. Decryption or integrity failures surface as errors
/// from the constructor or the iterator.
pub fn read_version_batches(
    keyring: &Keyring,
    version_dir: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch>> + use<>> {
    let path = version_dir.join(DATA_FILE);
    let props = decryption_properties(keyring, version_dir)?;
    let file = File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("data file {}", path.display()))
        } else {
            Error::io("open", &path)(e)
        }
    })?;
    let options = ArrowReaderOptions::new().with_file_decryption_properties(props);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
        .map_err(|e| read_error(&e.to_string(), parquet_is_crypto(&e), &path))?
        .with_batch_size(8192)
        .build()
        .map_err(|e| read_error(&e.to_string(), parquet_is_crypto(&e), &path))?;
    Ok(reader.map(move |r| r.map_err(|e| read_error(&e.to_string(), arrow_is_crypto(&e), &path))))
}

pub(crate) fn parquet_is_crypto(e: &ParquetError) -> bool {
    match e {
        ParquetError::External(inner) => inner.is::<ring::error::Unspecified>(),
        other => looks_like_crypto(&other.to_string()),
    }
}

pub(crate) fn arrow_is_crypto(e: &ArrowError) -> bool {
    match e {
        ArrowError::ExternalError(inner) => match inner.downcast_ref::<ParquetError>() {
            Some(p) => parquet_is_crypto(p),
            None => looks_like_crypto(&inner.to_string()),
        },
        other => looks_like_crypto(&other.to_string()),
    }
}

/// ring reports every failed AES-GCM open as `Unspecified`.
fn looks_like_crypto(msg: &str) -> bool {
    msg.contains("Unspecified") || msg.contains("key metadata") || msg.contains("decrypt")
}

/// Classifies a read failure. Every module of the file is authenticated before it
/// is decoded, so the parquet message describes structure, never cell values.
fn read_error(msg: &str, crypto: bool, path: &Path) -> Error {
    if crypto {
        Error::Crypto(format!(
            "data file {} failed authentication: it was modified, or belongs to another version",
            path.display()
        ))
    } else {
        Error::InvalidData(format!(
            "data file {} is corrupt or not a readable version: {msg}",
            path.display()
        ))
    }
}

fn write_error(e: ParquetError, path: &Path) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => Error::io("write", path)(*io),
            Err(other) => Error::InvalidData(format!("writing dataset version: {other}")),
        },
        ParquetError::ArrowError(msg) => {
            Error::InvalidData(format!("writing dataset version: {msg}"))
        }
        other => Error::InvalidData(format!("writing dataset version: {other}")),
    }
}

fn version_exists(dataset_id: &str, version: u64) -> Error {
    Error::Conflict(format!(
        "version {version} of dataset {dataset_id} already exists"
    ))
}

fn version_exists_at(dir: &Path) -> Error {
    Error::Conflict(format!("dataset version {} already exists", dir.display()))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(Error::io("create directory", dir))
}

fn new_file(path: &Path) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(Error::io("create", path))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = new_file(path)?;
    f.write_all(bytes).map_err(Error::io("write", path))?;
    f.sync_all().map_err(Error::io("fsync", path))
}

/// Length and SHA-256 of the footer region of a finished file.
fn footer_digest(path: &Path, len: u64) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(Error::io("open", path))?;
    let mut last8 = [0u8; 8];
    if len < 12 {
        return Err(Error::Internal(
            "parquet writer produced a truncated file".into(),
        ));
    }
    f.seek(SeekFrom::Start(len - 8))
        .map_err(Error::io("seek", path))?;
    f.read_exact(&mut last8).map_err(Error::io("read", path))?;
    let tail_len = tail_len(&last8);
    if tail_len > len || &last8[4..] != ENCRYPTED_MAGIC {
        return Err(Error::Internal(
            "parquet writer produced an unexpected footer".into(),
        ));
    }
    f.seek(SeekFrom::Start(len - tail_len))
        .map_err(Error::io("seek", path))?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail).map_err(Error::io("read", path))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &tail);
    Ok((tail_len, hex::encode(digest.as_ref())))
}

/// Finished version files are read-only: versions are immutable.
fn make_read_only(path: &Path) -> Result<()> {
    let mut perms = fs::metadata(path)
        .map_err(Error::io("stat", path))?
        .permissions();
    perms.set_readonly(true);
    fs::set_permissions(path, perms).map_err(Error::io("set permissions of", path))
}
