//! # enclave — the Anyu secure data domain
//!
//! Everything that decides what may happen to conditionally open data lives here;
//! the `anyu` binary only translates HTTP and CLI calls into calls of this crate.
//!
//! ## Architecture
//!
//! ```text
//!  manifest.toml ─▶ catalog::Manifest::parse ──────────────┐ (validated, versioned format)
//!  data file ─▶ ingest (stream batches) ─▶ quality report  │
//!                   │                                      ▼
//!                   └─▶ storage (Parquet Modular Encryption,   store (SQLite: datasets,
//!                        data keys wrapped by keyring)  ─▶      versions, reports)
//!                                                          │
//!  DataFusion SessionContext ◀─ storage::register_version (EncryptionFactory = keyring)
//!
//!  every state change ─▶ audit::AuditLog (SHA-256 hash chain, Ed25519 checkpoints)
//! ```
//!
//! ## Modules
//!
//! | module | owns |
//! |---|---|
//! | [`catalog`] | manifest format, validation, catalog queries |
//! | [`access`] | eligibility rules, application and grant state machines (joint review, separation of duties) |
//! | [`disclosure`] | output checks (`DisclosureRule`s): frequency, zeros, row count, echo, extremes — per-cell verdicts |
//! | [`identity`] | accounts, roles, Argon2id passwords, sessions, API tokens, login lockout |
//! | [`ids`] | 身份证号 (ISO 7064 MOD 11-2) and 统一社会信用代码 (GB 32100) check characters |
//! | [`query`] | SQL inside the domain: per-job sessions over the grant's views, plan policy, the threshold rewrite |
//! | [`keyring`] | master key, data-key wrapping (AES-256-GCM), platform Ed25519 signing key |
//! | [`release`] | released results: deterministic CSV / Parquet / Arrow IPC / JSON downloads, Ed25519-signed release certificates |
//! | [`storage`] | encrypted Parquet dataset versions and their DataFusion registration |
//! | [`ingest`] | streaming import of CSV / Parquet / Arrow IPC / NDJSON with a quality report |
//! | [`store`] | the metadata database (SQLite through sqlx, migrations) |
//! | [`audit`] | the tamper-evident audit log |
//! | [`calendar`] | mainland-China working-day calendar and due dates in working days |
//! | [`domain`] | [`Domain`]: one data directory; the entry point the CLI and server call |

pub mod access;
pub mod audit;
pub mod calendar;
pub mod catalog;
pub mod disclosure;
pub mod domain;
pub mod dp;
mod error;
pub mod identity;
pub mod ids;
pub mod ingest;
pub mod keyring;
pub mod query;
pub mod release;
pub mod storage;
pub mod store;

pub use domain::{Actor, DataDir, Domain, DomainOptions, NotOpenListing};
pub use error::{Error, Result};
