//! Jobs: a researcher's SQL under a grant, run inside the domain, checked,
//! and released directly or after output review, with a signed certificate.
//! One file per stage (right-hand column):
//!
//! ```text
//!  submit ─▶ authorize (SubmitJob) ─▶ QuerySession (grant's views; warm.rs)   submit.rs
//!         ─▶ plan: statement + policy + rewrite + total::check
//!         │     refused ─▶ 422, audited `job.submit` denied (no job, no budget spent)
//!         ▼
//!  queued (job row + budget slot + plan shape: one transaction) ─▶ worker      runner.rs
//!  running ─▶ execute the plan without sketches (memory pool + spill,        runner.rs
//!          deadline, cancel)   ‖ state write ‖ `job.start`
//!          ─▶ [differencing lock] unit counts vs earlier cells: a candidate ─▶   lazy.rs
//!             [unlock] the eager plan (sketches), earlier results sketched again
//!  checked ─▶ echo search; [differencing lock] rows' unit sketches vs earlier    checks.rs
//!          results of the grant or researcher; disclosure rules; failing cells
//!          suppressed; candidate sealed ─▶ one transaction: job + sealed candidate
//!          + sealed sketches + CPU time  [lock released]  ‖ `job.check` {verdict, next}
//!          ─▶ auto-release (all pass, policy allows) ─▶ released + certificate      releases.rs
//!          └▶ pending_review ─▶ packet read, blind votes (provider stewards,      review.rs
//!               admins; never the requester or their organisation)
//!               ─▶ approvals ≥ reviewers_required, one a provider's steward
//!               ─▶ released (releases.rs);  any reject ─▶ rejected
//!  failed / cancelled on errors, deadline, cancellation; interrupted jobs      runner.rs
//!  fail at restart
//!  what each caller sees of a job at any stage                                 views.rs
//! ```
//!
//! The researcher never sees values before release, nor anything the data
//! decided (counts, verdicts, hashes, exact times): `views.rs`. Reviewers see
//! the candidate result. Writes and their audit events run side by side (`‖`)
//! and both finish before anything is acknowledged or the next step starts.

mod checks;
mod lazy;
mod releases;
mod review;
mod runner;
mod submit;
mod views;
mod warm;

pub(in crate::domain) use checks::visible_schema;
pub use review::{
    CampaignPacket, DifferencingPair, DifferencingTracker, ForResearcher, ReviewDecision,
    ReviewPacket,
};
pub use views::{JobSight, JobView, OwnJob};
pub use warm::WarmStats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::Domain;
use crate::Error;
use crate::query::{self, Guard};

/// Limits of the job path (`[jobs]` in the configuration).
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Jobs running at once on this node.
    pub workers: usize,
    /// Queued or running jobs one researcher may have.
    pub per_user: usize,
    /// Memory one job may hold before spilling or failing.
    pub memory_bytes: usize,
    /// Wall-clock limit of one job.
    pub deadline: Duration,
    /// Parallelism inside one job.
    pub target_partitions: usize,
    /// Longest accepted SQL text, in bytes.
    pub max_sql_bytes: usize,
    /// Variants (sets of constants) of one plan shape under one grant from
    /// which each job of the shape is flagged for review (oracle campaigns).
    pub campaign_flag_at: u64,
    /// Variants from which each further job writes a suspension request
    /// (`grant.suspension_requested`) to the audit log.
    pub campaign_suspend_at: u64,
    /// Run a job's plan without the differencing sketches and compute them
    /// only when a comparison needs them (off: every job computes them, as
    /// the property test's reference).
    pub lazy_sketches: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            workers: 2,
            per_user: 4,
            memory_bytes: 4 << 30,
            deadline: Duration::from_secs(600),
            target_partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_sql_bytes: 64 * 1024,
            campaign_flag_at: 5,
            campaign_suspend_at: 10,
            lazy_sketches: true,
        }
    }
}

/// A running job's handles.
struct Running {
    /// Cancels the job from anywhere; counts its rows scanned.
    guard: Arc<Guard>,
    /// When it left the queue. The `running` state lives here, not in the
    /// store: a crash leaves the job `queued` there, and the next start fails it.
    started: Option<Instant>,
}

/// The worker pool and the running jobs.
pub(crate) struct JobRunner {
    /// Queries run here, not on the runtime serving HTTP: a CPU-bound
    /// operator can hold a thread for seconds without yielding.
    runtime: Option<tokio::runtime::Runtime>,
    permits: Arc<Semaphore>,
    running: std::sync::Mutex<HashMap<String, Running>>,
    /// Woken on every job state change (long polls).
    changed: tokio::sync::Notify,
    /// Decrypted footers and statistics, shared by all jobs' sessions.
    caches: Option<Arc<datafusion::execution::cache::cache_manager::CacheManager>>,
    /// Version tables already opened.
    tables: Arc<query::TableCache>,
    /// Held from loading earlier results' sketches until this result's are
    /// stored: two jobs checked at once cannot each miss the other. Guards
    /// the earlier results' cells kept in memory.
    differencing: Arc<tokio::sync::Mutex<lazy::EarlierCells>>,
    /// Grants' idle query sessions, kept between their jobs.
    warm: warm::WarmSessions,
}

impl JobRunner {
    pub(crate) fn new(workers: usize, threads: usize) -> JobRunner {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("anyu-query")
            .enable_all()
            .build()
            .map_err(
                |e| tracing::error!(error = %e, "no query runtime; queries share the server's"),
            )
            .ok();
        JobRunner {
            runtime,
            permits: Arc::new(Semaphore::new(workers.max(1))),
            running: std::sync::Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            caches: datafusion::execution::cache::cache_manager::CacheManager::try_new(
                &Default::default(),
            )
            .ok(),
            tables: Arc::default(),
            differencing: Arc::default(),
            warm: warm::WarmSessions::default(),
        }
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        // Dropping a runtime from inside another one would block it.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A refused budget charge as the caller sees it.
fn charge_error(r: &crate::store::ChargeRefusal) -> Error {
    match r {
        crate::store::ChargeRefusal::Budget(b) => Error::Denied {
            code: "budget_exhausted",
            message: format!("the grant's {b} budget would be exceeded"),
        },
        crate::store::ChargeRefusal::NotActive(s) => Error::Denied {
            code: "grant_not_active",
            message: format!("the grant is {}", s.as_str()),
        },
    }
}

fn job_object(id: &str) -> String {
    format!("job:{id}")
}

impl Domain {
    /// The job runner's limits.
    fn job_options(&self) -> &JobOptions {
        &self.options.jobs
    }

    /// How many SQL jobs opened a session and how many reused a warm one.
    pub fn warm_sessions(&self) -> WarmStats {
        self.jobs.warm.stats()
    }

    /// Drops `grant_id`'s warm sessions: its state changed.
    pub(in crate::domain) fn forget_warm_sessions(&self, grant_id: &str) {
        self.jobs.warm.forget_grant(grant_id);
    }

    /// Drops every warm session: a version or consent table was added.
    pub(in crate::domain) fn forget_all_warm_sessions(&self) {
        self.jobs.warm.forget_all();
    }
}
