//! Immutable, encrypted dataset versions.
//!
//! ## Layout
//!
//! ```text
//! <datasets_root>/<dataset_id>/v<N>/data.parquet   Parquet, Modular Encryption (AES_GCM_V1)
//! <datasets_root>/<dataset_id>/v<N>/key.json       data key wrapped by the master key, digests, MAC
//! <datasets_root>/<dataset_id>/.tmp-<uuid>/        a version being written (removed on failure)
//! ```
//!
//! A version is written into a temporary directory, fsynced, and renamed to `v<N>`
//! in one step, so readers see either no version or a complete one. A finished
//! version directory is never empty, and renaming onto a non-empty directory fails,
//! so an existing version can never be replaced ([`Error::Conflict`](crate::Error::Conflict)).
//!
//! ## Encryption
//!
//! Every version has its own random 256-bit data key (DEK). It encrypts the footer
//! and every column (uniform encryption, AES-GCM for all modules, so every page and
//! the footer are authenticated). The footer's key metadata holds only the master
//! [key id](crate::keyring::Keyring::key_id). The AAD prefix `anyu:<dataset>@v<N>`
//! is not stored in the file: a file only opens as the version it was written as.
//! The DEK is wrapped under the master key with the same AAD and stored in
//! `key.json` ([`VersionKey`]).
//!
//! ## Integrity
//!
//! What a reader uses is authenticated before it is decoded:
//! - every page header, page and the footer by AES-GCM (parquet);
//! - the leading magic, and the whole footer region (plaintext crypto metadata,
//!   footer length) against a digest in `key.json`, checked on every file open;
//! - `key.json` itself by a MAC keyed from the DEK, so only a holder of the master
//!   key can produce one.
//!
//! Page indexes and Bloom filters are not written, so no unread region can hide a
//! change. The only bytes a read does not check are the 4-byte length prefixes of
//! data pages, which the parquet reader ignores (sizes come from the authenticated
//! page header): changing them cannot change a result. [`verify_version`] checks
//! the SHA-256 of every byte for audits. Row-group statistics (in the encrypted
//! footer) still allow pruning.
//!
//! [`engine_error`] turns DataFusion errors that carry these failures back into
//! [`Error::Crypto`](crate::Error::Crypto) with a public message.
//!
//! ## Reading
//!
//! [`session_context`] returns a DataFusion context whose runtime knows the
//! [`KeyringEncryptionFactory`]; [`register_version`] registers one version as a
//! table that fetches its keys through that factory. [`read_version_batches`]
//! reads a version directly with the parquet crate.

pub mod blob;
mod engine;
mod layout;
mod writer;

#[cfg(feature = "plaintext-benchmark")]
pub use engine::register_plaintext_version_for_benchmark;
pub use engine::{
    ENCRYPTION_FACTORY_ID, KeyringEncryptionFactory, engine_error, install_encryption_factory,
    plaintext_benchmark_build, register_version, session_context, session_context_with_config,
    version_table,
};
pub use layout::{
    DATA_FILE, KEY_FILE, PLAINTEXT_MARKER_FILE, VERSION_KEY_FORMAT, VersionKey,
    decryption_properties, next_version, remove_stale_temp_dirs, validate_dataset_id,
    verify_version, version_aad, version_dir,
};
pub use writer::{
    ROW_GROUP_MAX_BYTES, ROW_GROUP_MAX_ROWS, VersionFile, VersionWriter, read_version_batches,
};
