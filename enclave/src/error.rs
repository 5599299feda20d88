//! The one error type of the `enclave` crate.
//!
//! Messages never contain data values: a bad cell is reported by column and row
//! number, never by its content. Each variant maps to a stable `code()` that the
//! HTTP layer puts in its JSON error body.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A catalog manifest failed to parse or validate.
    #[error(transparent)]
    Manifest(#[from] crate::catalog::ManifestError),

    /// Input data does not fit its manifest (wrong columns, bad type, unreadable file).
    /// The message names columns and row numbers, never values.
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// A caller passed an argument the operation cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("{0} not found")]
    NotFound(String),

    /// The operation conflicts with existing state (e.g. already initialised).
    #[error("conflict: {0}")]
    Conflict(String),

    /// The caller is not (or no longer) authenticated; the text is fixed per
    /// cause and never says which of username or password was wrong.
    #[error("{0}")]
    Unauthenticated(String),

    /// The caller is known but the authorization function refused the
    /// action on this object.
    #[error("your role does not allow this")]
    Forbidden,

    /// Too many failed logins for this username or from this client: wait
    /// before the next attempt. Unknown and known usernames alike.
    #[error("too many attempts; try again later")]
    TooManyAttempts { retry_after_secs: u64 },

    /// Too many password checks under way; nothing was checked.
    #[error("the platform is busy; try again shortly")]
    Busy { retry_after_secs: u64 },

    /// Decryption or key handling failed: wrong key, tampered file, unreadable key file.
    #[error("crypto: {0}")]
    Crypto(String),

    /// The audit chain does not verify.
    #[error("audit: {0}")]
    Audit(String),

    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(#[from] sqlx::Error),

    /// The query engine failed. Its text can contain data values, so callers
    /// facing users must not show it; see [`Error::is_public`].
    #[error("query engine: {0}")]
    Engine(#[from] datafusion::error::DataFusionError),

    /// A workflow step was refused: an illegal transition, separation of duties,
    /// a missing reason. The code says which rule.
    #[error(transparent)]
    Workflow(#[from] crate::access::WorkflowError),

    /// Eligibility refused an application; every failing rule is listed.
    #[error("the application is not eligible: {}", describe_refusals(.0))]
    Ineligible(Vec<crate::access::Refusal>),

    /// A rule refused the action (a grant not active, a budget spent …).
    /// `code` is stable and part of the public API.
    #[error("{message}")]
    Denied { code: &'static str, message: String },

    /// The query policy refused a query (a forbidden statement, function or
    /// use of an identifier …). `code` is stable and part of the public API.
    #[error("{message}")]
    Refused { code: &'static str, message: String },

    /// A row of the metadata store failed its MAC check: someone wrote the
    /// database without the master key. Names the table and the row's key,
    /// never a value.
    #[error("metadata_tampered: {table} row {row} failed its integrity check")]
    MetadataTampered { table: &'static str, row: String },

    /// A bug: an invariant the code relies on did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe_refusals(r: &[crate::access::Refusal]) -> String {
    r.iter()
        .map(|r| r.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// Stable machine-readable code, part of the public API.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Manifest(_) => "invalid_manifest",
            Error::InvalidData(_) => "invalid_data",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden => "forbidden",
            Error::TooManyAttempts { .. } => "too_many_attempts",
            Error::Busy { .. } => "busy",
            Error::Crypto(_) => "crypto_error",
            Error::Audit(_) => "audit_error",
            Error::Io { .. } => "io_error",
            Error::Store(_) => "store_error",
            Error::Engine(_) => "engine_error",
            Error::Workflow(e) => e.code(),
            Error::Ineligible(_) => "ineligible",
            Error::Denied { code, .. } => code,
            Error::Refused { code, .. } => code,
            Error::MetadataTampered { .. } => "metadata_tampered",
            Error::Internal(_) => "internal",
        }
    }

    /// True when the message is safe to show to the caller. Engine, store, I/O and
    /// internal errors are logged, and the caller sees only "internal error".
    pub fn is_public(&self) -> bool {
        !matches!(
            self,
            Error::Engine(_) | Error::Store(_) | Error::Io { .. } | Error::Internal(_)
        )
    }

    /// Machine-readable detail for the caller, where the error has any: the
    /// list of refusals of [`Error::Ineligible`].
    pub fn details(&self) -> Option<serde_json::Value> {
        match self {
            Error::Ineligible(r) => serde_json::to_value(r).ok(),
            _ => None,
        }
    }

    /// Helper for building [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
