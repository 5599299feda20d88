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
//!
//!  front end (HTTP, CLI) ─▶ Domain method(caller, …): 401 ─▶ load ─▶ 404 ─▶ authorize ─▶ 403
//!  (access::authz, the only place comparing roles and ownership; refusals audited)
//!
//!  job life cycle (domain/jobs/, a file per stage):
//!   submit ─▶ grant's views + plan + policy + threshold rewrite (query) ─▶ queued
//!    ─▶ runner: execute under deadline, memory, cancel ─▶ checks: echo, disclosure rules,
//!       differencing sketches (query::fingerprint, disclosure::sketch) ─▶ sealed candidate
//!    ─▶ review: blind votes (access::output_review) ─▶ releases: certificate, sealed files
//!   SQL jobs run the plan above; DP jobs the dp module's noisy plan; model jobs stream the
//!   input query's rows into the sandbox (domain/models.rs) and check the model's output
//!   the same way. The requester sees only what the query decides until release.
//! ```
//!
//! ## Modules
//!
//! | module | owns |
//! |---|---|
//! | [`catalog`] | manifest format, validation, catalog queries |
//! | [`access`] | eligibility rules, application and grant state machines (joint review, separation of duties) |
//! | [`disclosure`] | output checks (`DisclosureRule`s): frequency, zeros, row count, echo, extremes, dominance, degrees of freedom, differencing — per-cell verdicts |
//! | [`dp`] | differentially private queries: the clause, contribution bounding, the noisy release (opendp) |
//! | [`identity`] | accounts, roles, Argon2id passwords, sessions, scoped API tokens, login throttle |
//! | [`ids`] | 身份证号 (ISO 7064 MOD 11-2) and 统一社会信用代码 (GB 32100) check characters |
//! | [`query`] | SQL inside the domain: per-job sessions over the grant's views, plan policy, the threshold rewrite |
//! | [`keyring`] | master key, data-key wrapping (AES-256-GCM), platform Ed25519 signing key |
//! | [`release`] | released results: deterministic CSV / Parquet / Arrow IPC / JSON downloads, Ed25519-signed release certificates |
//! | [`storage`] | encrypted Parquet dataset versions and their DataFusion registration |
//! | [`ingest`] | streaming import of CSV / Parquet / Arrow IPC / NDJSON with a quality report |
//! | [`store`] | the metadata database (SQLite through sqlx, migrations) |
//! | [`audit`] | the tamper-evident audit log |
//! | [`calendar`] | mainland-China working-day calendar and due dates in working days |
//! | [`domain`] | [`Domain`]: one data directory; the one door every front end calls, authorizing inside |

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
mod strict_json;

pub use domain::{Actor, DataDir, Domain, DomainOptions, NotOpenListing};
pub use error::{Error, Result};
