//! DataFusion integration: the keyring as a Parquet `EncryptionFactory`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::config::{EncryptionFactoryOptions, TableParquetOptions};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;

use super::layout::{DATA_FILE, decryption_properties};
use super::writer::{arrow_is_crypto, parquet_is_crypto};
use crate::keyring::Keyring;
use crate::{Error, Result};

/// Id under which [`KeyringEncryptionFactory`] is registered in a DataFusion runtime.
pub const ENCRYPTION_FACTORY_ID: &str = "anyu";

/// Supplies decryption properties for dataset versions: for a file
/// `<…>/<dataset>/v<N>/data.parquet` it unwraps the data key in the `key.json`
/// next to it. Writing through DataFusion is refused: versions are written only by
/// [`VersionWriter`](super::VersionWriter).
#[derive(Debug)]
pub struct KeyringEncryptionFactory {
    keyring: Arc<Keyring>,
}

impl KeyringEncryptionFactory {
    /// A factory using `keyring`'s master key.
    pub fn new(keyring: Arc<Keyring>) -> KeyringEncryptionFactory {
        KeyringEncryptionFactory { keyring }
    }
}

#[async_trait]
impl EncryptionFactory for KeyringEncryptionFactory {
    async fn get_file_encryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        _schema: &SchemaRef,
        _file_path: &object_store::path::Path,
    ) -> datafusion::error::Result<Option<Arc<FileEncryptionProperties>>> {
        Err(DataFusionError::External(Box::new(Error::InvalidArgument(
            "dataset versions are immutable and cannot be written through the query engine".into(),
        ))))
    }

    async fn get_file_decryption_properties(
        &self,
        _config: &EncryptionFactoryOptions,
        file_path: &object_store::path::Path,
    ) -> datafusion::error::Result<Option<Arc<FileDecryptionProperties>>> {
        let keyring = Arc::clone(&self.keyring);
        let file_path = file_path.clone();
        // Reading key.json is blocking file I/O; keep it off the async workers.
        let props = tokio::task::spawn_blocking(move || {
            let path = local_path(&file_path)?;
            let dir = path.parent().ok_or_else(|| {
                Error::InvalidArgument("data file path has no parent directory".into())
            })?;
            decryption_properties(&keyring, dir)
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(props))
    }
}

/// Converts a DataFusion error into the storage error it carries, if any: a wrong
/// keyring, a missing or altered key file, or a data file failing authentication
/// become [`Error::Crypto`] / [`Error::NotFound`] (public messages) instead of an
/// opaque [`Error::Engine`]. Use it on errors from queries over registered versions.
pub fn engine_error(e: DataFusionError) -> Error {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = current {
        if let Some(ours) = err.downcast_ref::<Error>()
            && let Some(copy) = copy_public(ours)
        {
            return copy;
        }
        let crypto = err
            .downcast_ref::<parquet::errors::ParquetError>()
            .is_some_and(parquet_is_crypto)
            || err
                .downcast_ref::<datafusion::arrow::error::ArrowError>()
                .is_some_and(arrow_is_crypto)
            || err.is::<ring::error::Unspecified>();
        if crypto {
            return Error::Crypto(
                "a data file failed authentication: it was modified, or belongs to another version"
                    .into(),
            );
        }
        current = err.source();
    }
    Error::Engine(e)
}

/// Copies the variants whose message is public (and a plain string).
fn copy_public(e: &Error) -> Option<Error> {
    Some(match e {
        Error::Crypto(m) => Error::Crypto(m.clone()),
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::InvalidData(m) => Error::InvalidData(m.clone()),
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        _ => return None,
    })
}

/// Converts an object-store path of the local file system (relative to `/`) back
/// into a file system path.
fn local_path(location: &object_store::path::Path) -> Result<PathBuf> {
    object_store::local::LocalFileSystem::new()
        .path_to_filesystem(location)
        .map_err(|e| Error::InvalidArgument(format!("not a local file path: {e}")))
}

/// Registers [`KeyringEncryptionFactory`] under [`ENCRYPTION_FACTORY_ID`] in an
/// existing runtime (for callers that build their own, e.g. with a memory limit).
pub fn install_encryption_factory(runtime: &RuntimeEnv, keyring: Arc<Keyring>) {
    runtime.register_parquet_encryption_factory(
        ENCRYPTION_FACTORY_ID,
        Arc::new(KeyringEncryptionFactory::new(keyring)),
    );
}

/// A DataFusion context with default configuration able to read dataset versions
/// encrypted under `keyring`.
pub fn session_context(keyring: Arc<Keyring>) -> SessionContext {
    session_context_with_config(keyring, SessionConfig::new())
}

/// [`session_context`] with a given configuration (e.g. target partitions).
pub fn session_context_with_config(keyring: Arc<Keyring>, config: SessionConfig) -> SessionContext {
    let ctx = SessionContext::new_with_config(config);
    install_encryption_factory(&ctx.runtime_env(), keyring);
    ctx
}

/// Registers version directory `version_dir` (`…/<dataset>/v<N>`) as table
/// `table_name`. Keys come from the context's [`KeyringEncryptionFactory`]; a wrong
/// keyring or a tampered file fails here (the footer is read to get the schema) or
/// when the query runs.
pub async fn register_version(
    ctx: &SessionContext,
    table_name: &str,
    version_dir: &Path,
) -> Result<()> {
    let mut options = ctx.state().table_options().parquet.clone();
    options.crypto.factory_id = Some(ENCRYPTION_FACTORY_ID.to_string());
    register_parquet(ctx, table_name, version_dir, options).await
}

/// **Benchmarks only.** Registers a version written by
/// [`VersionWriter::create_plaintext`](super::VersionWriter::create_plaintext)
/// with exactly the table settings of [`register_version`] minus decryption.
/// Refuses directories that are not marked as plaintext benchmark versions.
/// Exists only with the `plaintext-benchmark` feature, which the product never enables.
#[cfg(feature = "plaintext-benchmark")]
pub async fn register_plaintext_version_for_benchmark(
    ctx: &SessionContext,
    table_name: &str,
    version_dir: &Path,
) -> Result<()> {
    if !version_dir.join(super::PLAINTEXT_MARKER_FILE).exists() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a plaintext benchmark version",
            version_dir.display()
        )));
    }
    let options = ctx.state().table_options().parquet.clone();
    register_parquet(ctx, table_name, version_dir, options).await
}

/// Whether this build can write and register plaintext benchmark versions
/// (the `plaintext-benchmark` feature); the product binary checks it is not.
pub fn plaintext_benchmark_build() -> bool {
    cfg!(feature = "plaintext-benchmark")
}

/// The table of version directory `version_dir`, decrypted through the
/// state's [`KeyringEncryptionFactory`], without registering it anywhere: the
/// query path wraps it in a grant's view, so the raw table has no name a
/// query could use.
pub async fn version_table(
    state: &SessionState,
    version_dir: &Path,
) -> Result<Arc<dyn TableProvider>> {
    let mut options = state.table_options().parquet.clone();
    options.crypto.factory_id = Some(ENCRYPTION_FACTORY_ID.to_string());
    Ok(Arc::new(parquet_table(state, version_dir, options).await?))
}

async fn register_parquet(
    ctx: &SessionContext,
    table_name: &str,
    version_dir: &Path,
    options: TableParquetOptions,
) -> Result<()> {
    let table = parquet_table(&ctx.state(), version_dir, options).await?;
    ctx.register_table(table_name, Arc::new(table))
        .map_err(engine_error)?;
    Ok(())
}

async fn parquet_table(
    state: &SessionState,
    version_dir: &Path,
    mut options: TableParquetOptions,
) -> Result<ListingTable> {
    let data_path = version_dir.join(DATA_FILE);
    let data_path = std::fs::canonicalize(&data_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("data file {}", data_path.display()))
        } else {
            Error::io("open", &data_path)(e)
        }
    })?;
    let path_str = data_path.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("path {} is not UTF-8", data_path.display()))
    })?;
    // Explicit decryption keys in the session would bypass the factory.
    options.crypto.file_decryption = None;
    let format = ParquetFormat::default().with_options(options);
    let listing = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
    let url = ListingTableUrl::parse(path_str).map_err(engine_error)?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(listing)
        .infer_schema(state)
        .await
        .map_err(engine_error)?;
    ListingTable::try_new(config).map_err(engine_error)
}
