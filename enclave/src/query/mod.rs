//! # query — SQL inside the domain
//!
//! A researcher's SQL runs in a session of its own in which only the grant's
//! datasets exist, as views that already apply the grant's columns and rows.
//! Policy is enforced on DataFusion's LogicalPlan, never on SQL text.
//!
//! ## Architecture
//!
//! ```text
//!  Grant ─▶ TableSpec per dataset (version, columns, row filter, consent, policy)
//!       ─▶ QuerySession::open: own SessionContext, memory pool + spill dir,
//!          allowlisted functions, one ViewTable per dataset over an unnamed raw table
//!  SQL ─▶ create_logical_plan ─▶ SQLOptions (no DDL / DML / statements)
//!      ─▶ policy::check   (lineage of every output column; codes per refusal)
//!      ─▶ rewrite::rewrite (privacy units carried up; threshold filter per
//!                           aggregation; hidden per-group counts, dominance
//!                           statistics and unit sketches on the output)
//!      ─▶ total::check (no match pattern computed from data)
//!      ─▶ LIMIT max_output_rows + 1
//!      ─▶ run::execute: optimize ─▶ total::total (bad input gives NULL, never
//!         a failure) ─▶ physical plan (deadline, cancellation, rows scanned)
//!  errors ─▶ sanitize (planning text kept; run-time failures: one generic code)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`fingerprint`] | the differencing sketch of each group's privacy units |
//! | [`functions`] | the scalar, aggregate and window function allowlists |
//! | [`policy`] | plan checks and the lineage facts the disclosure rules use |
//! | [`rewrite`] | the aggregation-threshold rewrite |
//! | [`session`] | the per-job session and its views |
//! | [`run`] | execution with deadline, cancellation and progress |
//! | [`guard`] | the per-batch deadline / cancellation check between operators |
//! | [`sanitize`] | engine errors into value-free public errors |
//! | [`total`] | total semantics: no failure that depends on a row's value |

pub mod fingerprint;
pub mod functions;
pub mod guard;
pub mod policy;
pub mod rewrite;
pub mod run;
pub mod sanitize;
pub mod session;
pub mod shape;
pub mod top_n;
pub mod total;

pub use guard::Guard;
pub use policy::{BaseColumn, CellKind, OutputColumn, PlanFacts, RESERVED_PREFIX};
pub use rewrite::{HiddenColumns, ROWS_COLUMN, Rewritten, UNITS_COLUMN};
pub use run::{Executed, execute};
pub use sanitize::job_failure;
pub use session::{PlannedQuery, QuerySession, SessionLimits, TableCache, TableSpec};

use datafusion::logical_expr::LogicalPlan;

use crate::catalog::{DisclosurePolicy, Manifest};

/// A granted dataset inside a session.
#[derive(Debug, Clone)]
pub struct GrantedTable {
    pub dataset_id: String,
    pub version: u64,
    /// SHA-256 of the version's data file (certificates name it).
    pub version_sha256: String,
    pub manifest: Manifest,
    /// The effective (grade-tightened) policy.
    pub policy: DisclosurePolicy,
    /// Output reviewers needed for the dataset's grade.
    pub reviewers_required: u32,
    /// Granted columns.
    pub columns: Vec<String>,
    /// The view's plan as registered (granted columns over the filtered raw scan).
    pub view: LogicalPlan,
    /// One row per privacy unit in the version.
    pub units_unique: bool,
}
