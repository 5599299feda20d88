//! Released results: the download formats and the signed release certificate.
//!
//! A result that passed the disclosure controls is *released*: encoded in four
//! formats and covered by one Ed25519-signed certificate that anyone holding the
//! platform public key can verify offline (`anyu verify-release RESULT CERT`).
//! This module is pure: no database, no HTTP, no job logic; the caller stores
//! the files and the certificate and audits the release.
//!
//! ## Architecture
//!
//! ```text
//!  query result (schema + RecordBatches, disclosure checks passed)
//!       │
//!       ▼
//!  export::encode × 4  (re-cut into fixed batches, deterministic bytes)
//!       ├─ csv        header row, NULL = empty field
//!       ├─ parquet    unencrypted, SNAPPY, chunk statistics, created_by "anyu"
//!       ├─ arrow_ipc  Arrow IPC file
//!       └─ json       array of objects
//!       │
//!       ▼  result_files ─▶ format_entries / result_section (length + SHA-256 each)
//!  Certificate { ids, researcher, query, datasets (version + file SHA-256),
//!                result, checks, reviewers, released_at, citation }
//!       │
//!       ▼  certificate::sign: validate ─▶ canonical JSON (sorted keys, no
//!       │                     whitespace, without platform_signature) ─▶ Ed25519
//!       ▼
//!  certificate.json + result files ─▶ researcher ─▶ certificate::verify(json, key, file)
//!       format ─▶ key id ─▶ signature ─▶ rules ─▶ file length + SHA-256 ─▶ which format
//! ```
//!
//! The certificate format is documented in [`certificate`]; the byte formats of
//! the downloads in [`export`].

pub mod certificate;
pub mod export;

pub use certificate::{
    CERTIFICATE_FORMAT, Certificate, ColumnEntry, DatasetEntry, FormatEntry, ModelSection,
    QueryKind, QuerySection, Researcher, ResultSection, ReviewDecision, Reviewer, VerifiedRelease,
    certificate_time, format_entries, result_files, result_section, sha256_hex, sign, verify,
};
pub use export::{ResultFormat, encode};
