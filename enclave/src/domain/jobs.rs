//! Jobs: a researcher's SQL under a grant, run inside the domain, checked,
//! and released directly or after output review, with a signed certificate.
//!
//! ```text
//!  submit ─▶ usable_grant ─▶ QuerySession (grant's views) ─▶ plan: statement + policy + rewrite
//!         │     refused ─▶ 422, audited `job.submit` denied (no job, no budget spent)
//!         ▼
//!  queued (job row + budget slot: one transaction) ─▶ worker permit
//!  running ─▶ execute (memory pool + spill, deadline, cancel)   ‖ state write ‖ `job.start`
//!  checked ─▶ echo search; [differencing lock] rows' unit sketches vs earlier results of
//!          the grant or researcher; disclosure rules; failing cells suppressed; candidate sealed
//!          ─▶ one transaction: job + sealed candidate + sealed sketches + CPU time
//!             [lock released]  ‖ `job.check` {verdict, next}
//!          ─▶ auto-release (all pass, policy allows) ─▶ released + certificate (`job.release`)
//!          └▶ pending_review ─▶ blind votes (provider stewards, admins; never the requester
//!               or their organisation) ─▶ approvals ≥ reviewers_required, one a provider's
//!               steward ─▶ released;  any reject ─▶ rejected
//!  failed / cancelled on errors, deadline, cancellation; interrupted jobs fail at restart
//! ```
//!
//! The researcher never sees values before release: job status shows counts
//! and verdicts only; reviewers see the candidate result. Writes and their
//! audit events run side by side (`‖`) and both finish before anything is
//! acknowledged or the next step starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use super::access::shown_id;
use super::{Actor, Domain, ModelRequest};
use crate::access::{Grant, GrantedVersion};
use crate::audit::Outcome;
use crate::catalog::UsageMethod;
use crate::disclosure::{self, CheckInput, CheckReport, EchoHit, Verdict};
use crate::identity::{Principal, Role};
use crate::query::{
    self, CellKind, GrantedTable, Guard, PlannedQuery, QuerySession, SessionLimits, TableSpec,
};
use crate::release::{self, Certificate, ResultFormat};
use crate::storage::blob;
use crate::store::{
    JobDataset, JobRecord, JobStatus, ReleaseFile, ReleaseRecord, ReviewRecord, SealedResult,
};
use crate::{Error, Result};

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
    /// stored: two jobs checked at once cannot each miss the other.
    differencing: Arc<tokio::sync::Mutex<()>>,
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

/// A job as its requester sees it: state, progress, counts and verdicts — never values.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    /// Seconds since it started (running) or its run time (finished).
    pub elapsed_seconds: Option<f64>,
    /// The release, once released.
    pub release_id: Option<String>,
}

/// What an output reviewer sees.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReviewPacket {
    pub job: JobRecord,
    /// The candidate result (failing cells suppressed), as rows of JSON objects.
    #[schema(value_type = Vec<Object>)]
    pub result: Vec<serde_json::Value>,
    /// The grant's earlier releases: id, query, rows, time.
    #[schema(value_type = Vec<Object>)]
    pub earlier_releases: Vec<serde_json::Value>,
    /// A model job's log (model output: may hold data; never released).
    pub model_log: Option<String>,
    /// Rows of this result whose persons differ from those of another row
    /// (an earlier result's, or this one's) by fewer than the threshold,
    /// side by side. Never shown to the researcher.
    pub differencing: Vec<DifferencingPair>,
    /// The caller's own vote, if any.
    pub my_vote: Option<ReviewRecord>,
    /// Every vote — shown only once the caller voted or the review is over (blind review).
    pub votes: Option<Vec<ReviewRecord>>,
    pub approvals_required: u32,
}

/// Two rows whose persons differ by fewer than the threshold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DifferencingPair {
    /// The row of this result, and its cells.
    pub row: u64,
    #[schema(value_type = Object)]
    pub cells: serde_json::Value,
    /// The other row: its job (this one's for a pair inside the result),
    /// that job's query and state, and the row's cells.
    pub other_job_id: String,
    pub other_query: String,
    pub other_status: String,
    pub other_row: u64,
    #[schema(value_type = Object)]
    pub other_cells: serde_json::Value,
    /// Persons whose records differ between the rows, and by how many records.
    pub units_differing: u64,
    pub records_differing: u64,
}

/// A result's sealed sketches, with the lock that keeps the comparison and
/// the storing of them one step.
pub(super) struct Differenced {
    sealed: Vec<u8>,
    key: crate::keyring::WrappedKey,
    pairs_found: u64,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approve,
    Reject,
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

pub(super) fn visible_schema(schema: &SchemaRef) -> (SchemaRef, Vec<usize>) {
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).name().starts_with(query::RESERVED_PREFIX))
        .collect();
    (
        Arc::new(schema.project(&keep).expect("indices in range")),
        keep,
    )
}

fn i64_column(batches: &[RecordBatch], name: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for b in batches {
        let i = b.schema().index_of(name).ok()?;
        let a = b
            .column(i)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()?;
        out.extend((0..a.len()).map(|r| a.value(r).max(0) as u64));
    }
    Some(out)
}

/// Per output row, the dominance statistics named by `st`.
fn contribution_stats(
    batches: &[RecordBatch],
    st: &query::rewrite::DominanceStats,
) -> Option<Vec<disclosure::ContributionStats>> {
    use datafusion::arrow::array::{Float64Array, Int64Array};
    let mut out = Vec::new();
    for b in batches {
        let f = |name: &str| -> Option<&Float64Array> {
            b.column(b.schema().index_of(name).ok()?)
                .as_any()
                .downcast_ref::<Float64Array>()
        };
        let (top_n, top2, max, min, total) = (
            f(&st.top_n)?,
            f(&st.top2)?,
            f(&st.max)?,
            f(&st.min)?,
            f(&st.total)?,
        );
        let count = b
            .column(b.schema().index_of(&st.count).ok()?)
            .as_any()
            .downcast_ref::<Int64Array>()?;
        let get = |a: &Float64Array, r: usize| (!a.is_null(r)).then(|| a.value(r));
        for r in 0..b.num_rows() {
            out.push(disclosure::ContributionStats {
                top_n: get(top_n, r),
                top2: get(top2, r),
                max: get(max, r),
                min: get(min, r),
                total: get(total, r),
                non_null: count.value(r).max(0) as u64,
            });
        }
    }
    Some(out)
}

/// Per output row, its units' sketch and count (`None` for a row without one).
fn row_prints(
    batches: &[RecordBatch],
    hidden: &query::HiddenColumns,
) -> Option<disclosure::differencing::ResultPrints> {
    use datafusion::arrow::array::BinaryArray;
    let name = hidden.fingerprint.as_ref()?;
    let mut counts = vec![0u64; batches.iter().map(|b| b.num_rows()).sum()];
    for u in &hidden.units {
        for (c, n) in counts.iter_mut().zip(i64_column(batches, u)?) {
            *c += n;
        }
    }
    let mut rows = Vec::with_capacity(counts.len());
    for b in batches {
        let col = b.column(b.schema().index_of(name).ok()?);
        let a = col.as_any().downcast_ref::<BinaryArray>()?;
        for r in 0..a.len() {
            let print = (!a.is_null(r))
                .then(|| disclosure::sketch::Sketch::from_bytes(a.value(r)))
                .flatten()
                .map(|sketch| disclosure::differencing::RowPrint {
                    units: counts[rows.len()],
                    sketch,
                });
            rows.push(print);
        }
    }
    Some(disclosure::differencing::ResultPrints { rows })
}

fn differencing_aad(job_id: &str) -> String {
    format!("anyu:differencing:{job_id}")
}

/// Whether `p` reviews outputs under `grant`: an admin, or a steward of one
/// of its providers.
fn reviews_for(p: &Principal, grant: &Grant) -> bool {
    match p.role {
        Role::Admin => true,
        Role::Steward => grant
            .providers()
            .iter()
            .any(|x| p.provider_agencies.contains(x)),
        _ => false,
    }
}

/// A JSON value for one cell (for reviewers).
fn cell_json(col: &ArrayRef, row: usize) -> serde_json::Value {
    use datafusion::arrow::array::{BooleanArray as B, Float64Array, Int64Array};
    if col.is_null(row) {
        return serde_json::Value::Null;
    }
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return serde_json::json!(a.value(row));
    }
    if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
        return serde_json::json!(a.value(row));
    }
    if let Some(a) = col.as_any().downcast_ref::<B>() {
        return serde_json::json!(a.value(row));
    }
    serde_json::Value::String(
        datafusion::arrow::util::display::array_value_to_string(col, row).unwrap_or_default(),
    )
}

fn rows_json(batches: &[RecordBatch]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let mut m = serde_json::Map::new();
            for (i, f) in b.schema().fields().iter().enumerate() {
                m.insert(f.name().clone(), cell_json(b.column(i), r));
            }
            out.push(serde_json::Value::Object(m));
        }
    }
    out
}

fn ipc_decode(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader =
        datafusion::arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|_| Error::Internal("a sealed result does not decode".into()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::Internal("a sealed result does not decode".into()))?;
    Ok((schema, batches))
}

impl Domain {
    /// The job runner's limits.
    fn job_options(&self) -> &JobOptions {
        &self.options.jobs
    }

    /// The tables a grant opens, resolved to versions now.
    async fn table_specs(&self, grant: &Grant) -> Result<Vec<TableSpec>> {
        let mut specs = Vec::new();
        for d in &grant.datasets {
            let record = self
                .store
                .dataset(&d.dataset_id)
                .await?
                .ok_or_else(|| Error::Conflict("a granted dataset left the catalog".into()))?;
            // The newest version comes with the record; older ones are looked up.
            let wanted = match d.version {
                GrantedVersion::Latest => None,
                GrantedVersion::Pinned { version } => Some(version),
            };
            let versions = match (&record.latest_version, wanted) {
                (Some(v), None) => vec![v.clone()],
                (Some(v), Some(w)) if v.version == w => vec![v.clone()],
                _ => self.store.versions(&d.dataset_id).await?,
            };
            let version = match wanted {
                None => versions.iter().max_by_key(|v| v.version),
                Some(w) => versions.iter().find(|v| v.version == w),
            }
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "dataset `{}` has no data version yet",
                    d.dataset_id
                ))
            })?;
            let grade = self
                .options
                .grades
                .get(&record.manifest.dataset.grade)
                .cloned()
                .unwrap_or_else(|| self.options.grades.strictest());
            let consent_dir = match self.store.latest_consent(&d.dataset_id).await? {
                Some(c) => Some(self.dir.root().join(&c.dir)),
                None => None,
            };
            specs.push(TableSpec {
                dataset_id: d.dataset_id.clone(),
                version: version.version,
                version_dir: self.dir.root().join(&version.dir),
                version_sha256: version.sha256.clone(),
                policy: record.manifest.effective_policy(&self.options.grades),
                reviewers_required: grade.reviewers_required.max(1),
                columns: d.columns.clone(),
                row_filter: d.row_filter.clone(),
                consent_dir,
                units_unique: version
                    .quality
                    .privacy_unit
                    .as_ref()
                    .is_some_and(|p| p.rows_with_duplicate_unit == 0),
                manifest: record.manifest,
            });
        }
        Ok(specs)
    }

    /// Opens a grant's query session.
    pub async fn query_session(&self, grant: &Grant) -> Result<QuerySession> {
        self.query_session_for(grant, false).await
    }

    /// Opens a grant's session for a query, or for a model's input: rows may
    /// flow into a model (never out) where the usage method lets a model
    /// work on the data inside the domain.
    async fn query_session_for(&self, grant: &Grant, model_input: bool) -> Result<QuerySession> {
        let specs = self.table_specs(grant).await?;
        let aggregate_only = if model_input {
            !matches!(
                grant.usage_method,
                UsageMethod::ModelResults | UsageMethod::InDomain
            )
        } else {
            matches!(
                grant.usage_method,
                UsageMethod::Invisible | UsageMethod::ModelResults
            ) || specs.iter().any(|s| !s.policy.row_level_output)
        };
        let o = self.job_options();
        QuerySession::open(
            Arc::clone(&self.keyring),
            specs,
            aggregate_only,
            &SessionLimits {
                memory_bytes: o.memory_bytes,
                target_partitions: o.target_partitions,
                spill_dir: self.dir.root().join("spill"),
                caches: self.jobs.caches.clone(),
                tables: Some(Arc::clone(&self.jobs.tables)),
            },
        )
        .await
    }

    /// Submits `sql` under `grant_id`. The query is planned and checked now:
    /// a refusal answers at once (audited, no job, no budget spent). Accepted
    /// queries become a queued job that runs in the background.
    pub async fn submit_job(
        self: &Arc<Self>,
        p: &Principal,
        grant_id: &str,
        sql: &str,
    ) -> Result<JobView> {
        self.submit(p, grant_id, sql, None, None).await
    }

    /// Submits `sql` under `grant_id`, differentially private when `dp` is
    /// given or the SQL starts `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (…)`.
    /// ε (and the δ the group selection spends) is charged with the job,
    /// before anything runs, and stays charged whatever happens next.
    pub async fn submit_query(
        self: &Arc<Self>,
        p: &Principal,
        grant_id: &str,
        sql: &str,
        dp: Option<crate::dp::DpOptions>,
    ) -> Result<JobView> {
        self.submit(p, grant_id, sql, None, dp).await
    }

    /// Submits a model run under `grant_id`: `input_sql` goes through the
    /// same policy as any query (row-level input allowed where the grant's
    /// usage method is `model_results` or `in_domain`), the model must be the
    /// caller's and approved for every dataset whose policy says so.
    pub async fn submit_model_job(
        self: &Arc<Self>,
        p: &Principal,
        grant_id: &str,
        model: &ModelRequest,
        input_sql: &str,
    ) -> Result<JobView> {
        self.submit(p, grant_id, input_sql, Some(model), None).await
    }

    async fn submit(
        self: &Arc<Self>,
        p: &Principal,
        grant_id: &str,
        sql: &str,
        model: Option<&ModelRequest>,
        dp: Option<crate::dp::DpOptions>,
    ) -> Result<JobView> {
        const ACTION: &str = "job.submit";
        let actor = Actor::user(p);
        let refused = |e: Error| async move {
            self.record(
                &actor,
                ACTION,
                format!("grant:{}", shown_id(grant_id)),
                Outcome::Denied,
                serde_json::json!({ "error_code": e.code() }),
            )
            .await?;
            Err::<JobView, Error>(e)
        };
        if sql.trim().is_empty() || sql.len() > self.job_options().max_sql_bytes {
            return refused(Error::InvalidArgument(format!(
                "sql must be 1 to {} bytes",
                self.job_options().max_sql_bytes
            )))
            .await;
        }
        // The DP clause is cut out on tokens; or the job's `dp` parameter.
        let (clause, body) = match crate::dp::clause::split(sql) {
            Ok(x) => x,
            Err(e) => return refused(e).await,
        };
        let dp = match (clause, dp) {
            (Some(_), Some(_)) => {
                return refused(Error::Refused {
                    code: "dp_options_invalid",
                    message:
                        "give the DP options in the SQL or as the job's dp parameter, not both"
                            .into(),
                })
                .await;
            }
            (a, b) => a.or(b),
        };
        if dp.is_some() && model.is_some() {
            return refused(Error::Refused {
                code: "dp_unsupported_query",
                message: "a model job cannot be differentially private".into(),
            })
            .await;
        }
        let grant = match self.usable_grant(p, grant_id).await {
            Ok(g) => g,
            Err(e) => return refused(e).await,
        };
        let active = self.store.active_jobs_of(&p.user_id).await?;
        if active >= self.job_options().per_user as u64 {
            return refused(Error::Denied {
                code: "too_many_jobs",
                message: format!(
                    "at most {} jobs may be queued or running per researcher",
                    self.job_options().per_user
                ),
            })
            .await;
        }
        if grant.usage.cpu_seconds >= grant.budgets.cpu_seconds {
            return refused(Error::Denied {
                code: "budget_exhausted",
                message: "the grant's cpu_seconds budget is spent".into(),
            })
            .await;
        }
        if let Some(m) = model
            && let Err(e) = self.check_model_request(p, m).await
        {
            return refused(e).await;
        }
        let session = match self.query_session_for(&grant, model.is_some()).await {
            Ok(s) => s,
            Err(e) => return refused(e).await,
        };
        let planned = match (model, &dp) {
            (None, None) => session.plan(sql).await,
            (None, Some(o)) => session.plan_dp(&body, o).await,
            (Some(_), _) => session.plan_input(sql).await,
        };
        let planned = match planned {
            Ok(p) => p,
            Err(e) => return refused(e).await,
        };
        if let Some(m) = model
            && let Err(e) = self.check_model_input(&session, &planned, m).await
        {
            return refused(e).await;
        }
        let tables = session.tables();
        let job = JobRecord {
            id: uuid::Uuid::now_v7().to_string(),
            grant_id: grant.id.clone(),
            requester_id: p.user_id.clone(),
            requester_username: p.username.clone(),
            kind: if model.is_some() { "model" } else { "sql" }.into(),
            query_text: sql.to_string(),
            status: JobStatus::Queued,
            error_code: None,
            error_message: None,
            plan_summary: Some(planned.summary()),
            facts: serde_json::to_value(&planned.facts).ok(),
            datasets: tables
                .iter()
                .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
                .map(|t| JobDataset {
                    dataset_id: t.dataset_id.clone(),
                    version: t.version,
                    sha256: t.version_sha256.clone(),
                })
                .collect(),
            checks: None,
            rows_scanned: 0,
            result_rows: None,
            suppressed_groups: None,
            result_sha256: None,
            reviewers_required: tables
                .iter()
                .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
                .map(|t| t.reviewers_required)
                .max()
                .unwrap_or(1),
            cpu_seconds: 0.0,
            submitted_at: crate::store::now_rfc3339(),
            started_at: None,
            finished_at: None,
            revision: 1,
            model_sha256: model.map(|m| m.sha256.clone()),
            model_params: model.map(|m| m.params.clone()),
            dp: planned.dp.as_ref().map(|d| d.report.clone()),
        };
        let mut job = job;
        // The job and its slot in the budget, together; only queries that run are charged.
        let slot = crate::access::Usage {
            jobs: 1,
            epsilon: job.dp.as_ref().map_or(0.0, |d| d.epsilon),
            delta: job.dp.as_ref().map_or(0.0, |d| d.delta),
            ..Default::default()
        };
        if let Some(budget) = grant.usage.exceeds(&slot, &grant.budgets) {
            return refused(charge_error(&crate::store::ChargeRefusal::Budget(budget))).await;
        }
        // The job (with its budget slot) and its event are written side by side.
        let actor = Actor::user(p);
        let object = job_object(&job.id);
        let details = serde_json::json!({
            "grant_id": grant.id,
            "kind": job.kind,
            "datasets": job.datasets,
            "sql_sha256": crate::release::sha256_hex(sql.as_bytes()),
            "model_sha256": job.model_sha256,
            "thresholded_aggregations": planned.rewritten.thresholded,
            "differentially_private": job.dp.is_some(),
            "charged": slot,
        });
        let (inserted, recorded) = tokio::join!(
            self.store
                .insert_job_charged(&mut job, &slot, &grant.budgets),
            self.record(&actor, ACTION, object, Outcome::Success, details)
        );
        recorded?;
        if let Err(r) = inserted? {
            // A concurrent job took the last of the budget: say so about this job.
            let e = charge_error(&r);
            self.record(
                &Actor::user(p),
                ACTION,
                job_object(&job.id),
                Outcome::Failure,
                serde_json::json!({ "error_code": e.code() }),
            )
            .await?;
            return Err(e);
        }
        let guard = Guard::new(Instant::now() + self.job_options().deadline);
        self.jobs.running.lock().expect("job map lock").insert(
            job.id.clone(),
            Running {
                guard: Arc::clone(&guard),
                started: None,
            },
        );
        let domain = Arc::clone(self);
        let id = job.id.clone();
        let grant_for_run = grant.clone();
        let model = model.cloned();
        tokio::spawn(async move {
            let result = match model {
                None => {
                    domain
                        .run_job(&id, &grant_for_run, session, planned, guard)
                        .await
                }
                Some(m) => {
                    domain
                        .run_model_job(&id, &grant_for_run, session, planned, guard, m)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::error!(job = %id, error = %e, "job bookkeeping failed");
            }
            domain
                .jobs
                .running
                .lock()
                .expect("job map lock")
                .remove(&id);
        });
        self.job_view(&job.id).await
    }

    async fn set_job(&self, job: &mut JobRecord) -> Result<()> {
        job.revision = self.store.save_job(job).await?;
        self.jobs.changed.notify_waiters();
        Ok(())
    }

    /// Ends a job as failed or cancelled, with a value-free reason; audited.
    async fn end_job(&self, job: &mut JobRecord, e: &Error) -> Result<()> {
        let cancelled = e.code() == "cancelled";
        job.status = if cancelled {
            JobStatus::Cancelled
        } else {
            JobStatus::Failed
        };
        job.error_code = Some(e.code().to_string());
        job.error_message = Some(if e.is_public() {
            e.to_string()
        } else {
            "internal error".into()
        });
        job.finished_at = Some(crate::store::now_rfc3339());
        self.set_job(job).await?;
        self.record(
            &Actor::system(),
            if cancelled {
                "job.cancelled"
            } else {
                "job.fail"
            },
            job_object(&job.id),
            Outcome::Failure,
            serde_json::json!({ "error_code": e.code() }),
        )
        .await?;
        Ok(())
    }

    async fn run_job(
        &self,
        id: &str,
        grant: &Grant,
        session: QuerySession,
        planned: PlannedQuery,
        guard: Arc<Guard>,
    ) -> Result<()> {
        let Some((permit, mut job, started)) =
            self.start_job(id, &guard, serde_json::json!({})).await?
        else {
            return Ok(());
        };
        let executed = self
            .execute_on_query_runtime(session, planned, Arc::clone(&guard))
            .await;
        drop(permit);
        let (session, planned, executed) = executed?;
        let elapsed = match &executed {
            Ok(e) => e.elapsed.as_secs_f64(),
            Err(_) => self
                .jobs
                .running
                .lock()
                .expect("job map lock")
                .get(id)
                .and_then(|r| r.started)
                .map_or(0.0, |t| t.elapsed().as_secs_f64()),
        };
        job.cpu_seconds = elapsed;
        job.rows_scanned = guard
            .rows_scanned
            .load(std::sync::atomic::Ordering::Relaxed);
        // Time spent is charged whatever the outcome (saturating at the budget).
        let outcome = match executed {
            Err(e) => self.fail_job(id, grant, elapsed, &e).await,
            Ok(executed) => match self
                .check_result(&session, &planned, &executed, &mut job)
                .await
            {
                Ok(()) => Ok(()),
                Err(e) => self.fail_job(id, grant, elapsed, &e).await,
            },
        };
        // Committed long ago (the later events commit after it); checked for errors.
        started.await?;
        outcome
    }

    /// Waits for a worker and marks the job started; `None` when it was
    /// cancelled while queued (then ended here) or is no longer queued. The
    /// `job.start` event (with `details`) is queued and commits while the job
    /// runs; every later event of the job commits after it (the log keeps
    /// order). The caller awaits the returned future for its outcome.
    pub(super) async fn start_job(
        &self,
        id: &str,
        guard: &Arc<Guard>,
        details: serde_json::Value,
    ) -> Result<
        Option<(
            tokio::sync::OwnedSemaphorePermit,
            JobRecord,
            impl std::future::Future<Output = Result<crate::audit::AuditRecord>> + use<>,
        )>,
    > {
        let permits = Arc::clone(&self.jobs.permits);
        let permit = tokio::select! {
            p = permits.acquire_owned() => p.map_err(|_| Error::Internal("job pool closed".into()))?,
            _ = guard.cancelled() => {
                let mut job = self.job(id).await?;
                self.end_job(&mut job, &Error::Denied { code: "cancelled", message: "the job was cancelled".into() }).await?;
                return Ok(None);
            }
        };
        // The deadline counts from the start, not from the queue.
        guard.set_deadline(Instant::now() + self.job_options().deadline);
        let mut job = self.job(id).await?;
        if job.status != JobStatus::Queued {
            return Ok(None);
        }
        job.started_at = Some(crate::store::now_rfc3339());
        if let Some(r) = self.jobs.running.lock().expect("job map lock").get_mut(id) {
            r.started = Some(Instant::now());
        }
        self.jobs.changed.notify_waiters();
        let started = self
            .audit
            .enqueue(
                Actor::system()
                    .event("job.start", job_object(id))
                    .details(details),
            )
            .await?;
        Ok(Some((permit, job, started)))
    }

    /// Ends a job that failed after it started: its time is charged
    /// (saturating at the budget) and it is marked failed or cancelled.
    pub(super) async fn fail_job(
        &self,
        id: &str,
        grant: &Grant,
        cpu_seconds: f64,
        e: &Error,
    ) -> Result<()> {
        self.charge_cpu(&grant.id, cpu_seconds).await;
        let mut job = self.job(id).await?;
        self.end_job(&mut job, e).await
    }

    /// The runtime queries (and model inputs) run on, when it could be built.
    pub(super) fn jobs_runtime(&self) -> Option<&tokio::runtime::Runtime> {
        self.jobs.runtime.as_ref()
    }

    /// Runs a query on the query runtime and hands the session back.
    async fn execute_on_query_runtime(
        &self,
        session: QuerySession,
        planned: PlannedQuery,
        guard: Arc<Guard>,
    ) -> Result<(QuerySession, PlannedQuery, Result<query::Executed>)> {
        let run = async move {
            let r = query::execute(&session, &planned, guard).await;
            (session, planned, r)
        };
        match &self.jobs.runtime {
            Some(rt) => rt
                .spawn(run)
                .await
                .map_err(|e| Error::Internal(format!("query task failed: {e}"))),
            None => Ok(run.await),
        }
    }

    /// Adds CPU time to a grant, saturating at its budget (failed jobs).
    async fn charge_cpu(&self, grant_id: &str, seconds: f64) {
        let left = match self.grant(grant_id).await {
            Ok(g) => (g.budgets.cpu_seconds - g.usage.cpu_seconds).max(0.0),
            Err(_) => return,
        };
        let charge = crate::access::Usage {
            cpu_seconds: seconds.min(left),
            ..Default::default()
        };
        if let Err(e) = self.store.charge_grant(grant_id, &charge).await {
            tracing::error!(error = %e, "charging CPU time failed");
        }
    }

    /// Finds cells equal to a value of an identifying column the query read,
    /// searching inside the domain (through the grant's views).
    pub(super) async fn echo_hits(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        batches: &[RecordBatch],
    ) -> Result<Vec<EchoHit>> {
        const MAX_VALUES: usize = 1000;
        let mut hits = Vec::new();
        let Some(first) = batches.first() else {
            return Ok(hits);
        };
        let schema = first.schema();
        for (ci, field) in schema.fields().iter().enumerate() {
            let kind = planned
                .facts
                .output
                .iter()
                .find(|o| o.name == *field.name())
                .map_or(CellKind::RowValue, |o| o.kind);
            // Counts and statistics over thresholded groups are not values of anyone.
            if !matches!(kind, CellKind::Extreme | CellKind::RowValue) {
                continue;
            }
            for b in &planned.facts.identifying_columns {
                let Some(t) = session.tables().iter().find(|t| t.dataset_id == b.dataset) else {
                    continue;
                };
                if t.policy.row_level_output {
                    continue;
                }
                let Some(col) = t.manifest.column(&b.column) else {
                    continue;
                };
                let col_type = col.data_type.arrow_type();
                let is_text = |t: &DataType| {
                    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                };
                let comparable = col_type == *field.data_type()
                    || (is_text(&col_type) && is_text(field.data_type()))
                    || (col_type == DataType::Int64 && *field.data_type() == DataType::Float64);
                if !comparable {
                    continue;
                }
                // Distinct candidate values of this output column, as literals of the column's type.
                let mut values: Vec<(ScalarValue, Vec<u64>)> = Vec::new();
                let mut offset = 0u64;
                for batch in batches {
                    let a = batch.column(ci);
                    for r in 0..batch.num_rows() {
                        if a.is_null(r) {
                            continue;
                        }
                        let Ok(mut v) = ScalarValue::try_from_array(a, r) else {
                            continue;
                        };
                        if col_type == DataType::Int64 && *field.data_type() == DataType::Float64 {
                            match v {
                                ScalarValue::Float64(Some(f))
                                    if f.fract() == 0.0 && f.abs() < 9e15 =>
                                {
                                    v = ScalarValue::Int64(Some(f as i64));
                                }
                                _ => continue,
                            }
                        }
                        let row = offset + r as u64;
                        if let Some(i) = values.iter().position(|(x, _)| *x == v) {
                            values[i].1.push(row);
                        } else if values.len() < MAX_VALUES {
                            values.push((v, vec![row]));
                        }
                    }
                    offset += batch.num_rows() as u64;
                }
                if values.is_empty() {
                    continue;
                }
                let found = self.values_present(session, t, &b.column, &values).await?;
                for (v, rows) in &values {
                    if found.contains(v) {
                        for row in rows {
                            hits.push(EchoHit {
                                row: *row,
                                column: field.name().clone(),
                                source: b.to_string(),
                            });
                        }
                    }
                }
            }
        }
        Ok(hits)
    }

    /// Which of `values` occur in `column` of the grant's view of `t`.
    async fn values_present(
        &self,
        session: &QuerySession,
        t: &GrantedTable,
        column: &str,
        values: &[(ScalarValue, Vec<u64>)],
    ) -> Result<Vec<ScalarValue>> {
        let col = Expr::Column(Column::new(
            Some(TableReference::bare(t.raw_name())),
            column,
        ));
        let list: Vec<Expr> = values.iter().map(|(v, _)| lit(v.clone())).collect();
        let plan = LogicalPlanBuilder::from(t.view.clone())
            .filter(col.clone().in_list(list, false))
            .and_then(|b| b.project(vec![col]))
            .and_then(|b| b.distinct())
            .and_then(|b| b.build())
            .map_err(query::sanitize::public_error)?;
        let batches = session
            .context()
            .execute_logical_plan(plan)
            .await
            .map_err(query::sanitize::runtime_error)?
            .collect()
            .await
            .map_err(query::sanitize::runtime_error)?;
        let mut found = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                if let Ok(v) = ScalarValue::try_from_array(b.column(0), r) {
                    found.push(v);
                }
            }
        }
        Ok(found)
    }

    /// Runs the disclosure rules, seals the candidate (failing cells
    /// suppressed) and decides: release, review or reject.
    async fn check_result(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        executed: &query::Executed,
        job: &mut JobRecord,
    ) -> Result<()> {
        if let Some(dp) = &planned.dp {
            return self
                .check_dp_result(session, planned, dp, executed, job)
                .await;
        }
        let (schema, keep) = visible_schema(&executed.schema);
        let visible: Vec<RecordBatch> = executed
            .batches
            .iter()
            .map(|b| {
                b.project(&keep)
                    .map_err(|e| Error::Internal(format!("projecting the result: {e}")))
            })
            .collect::<Result<_>>()?;
        let rows_per_group = planned
            .rewritten
            .hidden
            .as_ref()
            .and_then(|h| i64_column(&executed.batches, &h.rows));
        let policies: Vec<&crate::catalog::DisclosurePolicy> = session
            .tables()
            .iter()
            .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
            .map(|t| &t.policy)
            .collect();
        let policy = disclosure::strictest(&policies);
        let echo = self.echo_hits(session, planned, &visible).await?;
        let contributions: Vec<disclosure::Contributions> = planned
            .rewritten
            .hidden
            .as_ref()
            .map(|h| {
                h.dominance
                    .iter()
                    .map(|d| disclosure::Contributions {
                        column: d.column.clone(),
                        cells: d
                            .stats
                            .as_ref()
                            .and_then(|st| contribution_stats(&executed.batches, st)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let prints = planned
            .rewritten
            .hidden
            .as_ref()
            .and_then(|h| row_prints(&executed.batches, h));
        let (findings, differenced) = match prints {
            Some(prints) => {
                let (f, d) = self.difference(job, &prints, policy.threshold).await?;
                (Some(f), Some(d))
            }
            None => (None, None),
        };
        let report = disclosure::check(
            &disclosure::default_rules(),
            &CheckInput {
                batches: &visible,
                rows_per_group,
                facts: &planned.facts,
                policy: &policy,
                echo: &echo,
                suppressed_groups: executed.dropped_groups,
                contributions: &contributions,
                model: None,
                dp: None,
                differencing: findings.as_ref(),
                withheld: &disclosure::withheld(
                    planned.rewritten.hidden.as_ref(),
                    &executed.batches,
                ),
            },
        );
        let auto = policy.auto_release;
        self.seal_checked(
            job,
            &schema,
            &visible,
            report,
            executed.dropped_groups,
            auto,
            None,
            differenced,
        )
        .await
    }

    /// Compares this result's rows with every earlier result of the grant or
    /// the researcher, and seals its sketches for later ones. The returned
    /// lock is held until they are stored.
    async fn difference(
        &self,
        job: &JobRecord,
        prints: &disclosure::differencing::ResultPrints,
        threshold: u64,
    ) -> Result<(disclosure::differencing::Findings, Differenced)> {
        use disclosure::differencing::{self as diff, Earlier, Stored};
        let lock = Arc::clone(&self.jobs.differencing).lock_owned().await;
        let mut earlier = Vec::new();
        let mut unreadable = 0;
        for (id, sealed, key) in self
            .store
            .earlier_fingerprints(&job.grant_id, &job.requester_id, &job.id)
            .await?
        {
            let opened = blob::open(
                &self.keyring,
                &key,
                differencing_aad(&id).as_bytes(),
                &sealed,
            )
            .ok()
            .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
            .and_then(|s| s.prints());
            match opened {
                Some(prints) => earlier.push(Earlier { job_id: id, prints }),
                None => {
                    tracing::error!(job = %id, "a result's sealed sketches do not open");
                    unreadable += 1;
                }
            }
        }
        let mut findings =
            diff::compare(&job.id, prints, &earlier, threshold, diff::DEFAULT_BUDGET);
        // What cannot be compared is not passed as compared.
        findings.complete &= unreadable == 0;
        let json = serde_json::to_vec(&Stored::new(prints, Some(findings.clone())))
            .map_err(|e| Error::Internal(format!("encoding sketches: {e}")))?;
        let (key, sealed) = blob::seal(&self.keyring, differencing_aad(&job.id).as_bytes(), &json)?;
        let pairs_found = findings.pairs_found;
        Ok((
            findings,
            Differenced {
                sealed,
                key,
                pairs_found,
                _lock: lock,
            },
        ))
    }

    /// A differentially private result: the noisy release is made from the
    /// exact partials (which never leave this function), then checked by the
    /// rules that apply to noisy output, sealed and released or reviewed.
    async fn check_dp_result(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        dp: &crate::dp::plan::DpPlan,
        executed: &query::Executed,
        job: &mut JobRecord,
    ) -> Result<()> {
        let (schema, noisy) = dp.release(&executed.schema, &executed.batches)?;
        let policies: Vec<&crate::catalog::DisclosurePolicy> = session
            .tables()
            .iter()
            .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
            .map(|t| &t.policy)
            .collect();
        let policy = disclosure::strictest(&policies);
        let report_dp = job.dp.clone().unwrap_or_else(|| dp.report.clone());
        let report = disclosure::check(
            &disclosure::default_rules(),
            &CheckInput {
                batches: &noisy,
                rows_per_group: None,
                facts: &planned.facts,
                policy: &policy,
                echo: &[],
                // How many groups selection dropped is not private: never reported.
                suppressed_groups: 0,
                contributions: &[],
                model: None,
                dp: Some(&report_dp),
                differencing: None,
                withheld: &[],
            },
        );
        self.seal_checked(
            job,
            &schema,
            &noisy,
            report,
            0,
            policy.auto_release,
            None,
            None,
        )
        .await
    }

    /// Suppresses failing cells, seals the candidate (and a model's log) into
    /// the job's transaction beside `job.check` (with the rows' sketches, whose
    /// lock is let go once they are stored), and releases at once when
    /// everything passed and `auto_release` allows it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn seal_checked(
        &self,
        job: &mut JobRecord,
        schema: &SchemaRef,
        visible: &[RecordBatch],
        report: CheckReport,
        suppressed_groups: u64,
        auto_release: bool,
        log: Option<&str>,
        differenced: Option<Differenced>,
    ) -> Result<()> {
        let (schema, candidate) = suppress(schema, visible, &report)?;
        let ipc = release::encode(&schema, &candidate, ResultFormat::ArrowIpc)?;
        let aad = format!("anyu:result:{}", job.id);
        let (key, sealed) = blob::seal(&self.keyring, aad.as_bytes(), &ipc)?;
        job.result_rows = Some(report.rows);
        job.suppressed_groups = Some(suppressed_groups);
        job.result_sha256 = Some(release::sha256_hex(&ipc));
        job.checks = serde_json::to_value(&report).ok();
        // Checked, and where it goes next: one write, with the sealed candidate
        // and the CPU time, beside its event.
        let release_now =
            !report.fails_as_a_whole() && report.verdict == Verdict::Pass && auto_release;
        job.status = if report.fails_as_a_whole() {
            job.error_code = Some("disclosure_check_failed".into());
            job.error_message = Some(
                "the result as a whole fails the disclosure checks and cannot be released".into(),
            );
            job.finished_at = Some(crate::store::now_rfc3339());
            JobStatus::Rejected
        } else if release_now {
            JobStatus::Checked
        } else {
            JobStatus::PendingReview
        };
        let sealed_log = match log {
            Some(text) => {
                let aad = format!("anyu:log:{}", job.id);
                Some(blob::seal(&self.keyring, aad.as_bytes(), text.as_bytes())?)
            }
            None => None,
        };
        let system = Actor::system();
        let (saved, recorded) = tokio::join!(
            self.store.finish_job(
                job,
                Some(SealedResult {
                    sealed: &sealed,
                    key: &key,
                    log: sealed_log.as_ref().map(|(k, b)| (b.as_slice(), k)),
                    fingerprints: differenced.as_ref().map(|d| (d.sealed.as_slice(), &d.key)),
                }),
                job.cpu_seconds
            ),
            self.record(
                &system,
                "job.check",
                job_object(&job.id),
                Outcome::Success,
                serde_json::json!({
                    "verdict": report.verdict,
                    "rows": report.rows,
                    "suppressed_groups": suppressed_groups,
                    "rows_scanned": job.rows_scanned,
                    "cpu_seconds": job.cpu_seconds,
                    "next": job.status,
                    "approvals_required": job.reviewers_required,
                    "differencing_pairs": differenced.as_ref().map(|d| d.pairs_found),
                }),
            )
        );
        drop(differenced);
        job.revision = saved?;
        recorded?;
        self.jobs.changed.notify_waiters();
        if release_now {
            self.release_job(job, Vec::new()).await?;
        }
        Ok(())
    }

    async fn candidate(&self, job: &JobRecord) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (sealed, key) = self
            .store
            .job_result(&job.id)
            .await?
            .ok_or_else(|| Error::Conflict("the job has no result".into()))?;
        let aad = format!("anyu:result:{}", job.id);
        let ipc = blob::open(&self.keyring, &key, aad.as_bytes(), &sealed)?;
        if Some(release::sha256_hex(&ipc)) != job.result_sha256 {
            return Err(Error::Crypto(
                "the sealed result does not match its hash".into(),
            ));
        }
        ipc_decode(&ipc)
    }

    /// Releases a checked or reviewed job: the four formats sealed, the
    /// certificate signed, the released-rows budget charged. Audited as `job.release`.
    async fn release_job(
        &self,
        job: &mut JobRecord,
        reviewers: Vec<release::Reviewer>,
    ) -> Result<ReleaseRecord> {
        let (schema, batches) = self.candidate(job).await?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let grant = self.grant(&job.grant_id).await?;
        let charge = crate::access::Usage {
            released_rows: rows,
            ..Default::default()
        };
        if let Err(r) = self.store.charge_grant(&grant.id, &charge).await? {
            return Err(charge_error(&r));
        }
        let files = release::result_files(&schema, &batches)?;
        let release_id = uuid::Uuid::now_v7().to_string();
        let dir = self.dir.root().join("releases").join(&release_id);
        let mut stored = Vec::new();
        for (format, bytes) in &files {
            let aad = format!("anyu:release:{release_id}:{}", format.as_str());
            let (key, sealed) = blob::seal(&self.keyring, aad.as_bytes(), bytes)?;
            let path = dir.join(format!("{}.bin", format.as_str()));
            tokio::task::spawn_blocking(move || blob::write_new_file(&path, &sealed))
                .await
                .map_err(|e| Error::Internal(format!("release write task failed: {e}")))??;
            stored.push(ReleaseFile {
                format: format.as_str().to_string(),
                bytes: bytes.len() as u64,
                sha256: release::sha256_hex(bytes),
                wrapped_key: key,
            });
        }
        let user = self.identity.get_user_by_id(&job.requester_id).await?;
        let providers = grant.providers().join("、");
        let now = release::certificate_time(self.now());
        let cert = release::sign(
            &self.keyring,
            Certificate {
                format: release::CERTIFICATE_FORMAT.into(),
                release_id: release_id.clone(),
                job_id: job.id.clone(),
                grant_id: grant.id.clone(),
                application_id: grant.application_id.clone(),
                researcher: release::Researcher {
                    user_id: user.id.clone(),
                    username: user.username.clone(),
                    organisation: user.organisation.clone(),
                },
                query: release::QuerySection {
                    kind: if job.model_sha256.is_some() {
                        release::QueryKind::Model
                    } else {
                        release::QueryKind::Sql
                    },
                    text: job.query_text.clone(),
                    plan_summary: job.plan_summary.clone().unwrap_or_default(),
                    model: job.model_sha256.as_ref().map(|sha| release::ModelSection {
                        sha256: sha.clone(),
                        params: job.model_params.clone().unwrap_or_default(),
                    }),
                },
                datasets: job
                    .datasets
                    .iter()
                    .map(|d| release::DatasetEntry {
                        dataset_id: d.dataset_id.clone(),
                        version: d.version,
                        sha256: d.sha256.clone(),
                    })
                    .collect(),
                result: release::result_section(&schema, &batches, &files),
                checks: job.checks.clone().unwrap_or_else(|| serde_json::json!({})),
                reviewers,
                dp: job.dp.clone(),
                released_at: now.clone(),
                citation: format!(
                    "数据来源：{providers}；经安域公共数据安全域审核发布（发布编号 {release_id}）"
                ),
                platform_key_id: String::new(),
                platform_signature: String::new(),
            },
        )?;
        let record = ReleaseRecord {
            id: release_id.clone(),
            job_id: job.id.clone(),
            grant_id: grant.id.clone(),
            certificate_json: cert.to_json(),
            files: stored,
            released_at: now,
        };
        self.store.insert_release(&record, job).await?;
        self.record(
            &Actor::system(),
            "job.release",
            job_object(&job.id),
            Outcome::Success,
            serde_json::json!({
                "release_id": release_id,
                "rows": rows,
                "reviewers": cert.reviewers.iter().map(|r| &r.username).collect::<Vec<_>>(),
                "formats": cert.result.formats,
                "charged": charge,
            }),
        )
        .await?;
        *job = self.job(&job.id).await?;
        Ok(record)
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        self.store
            .job(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job `{}`", shown_id(id))))
    }

    /// A job with its progress.
    pub async fn job_view(&self, id: &str) -> Result<JobView> {
        let mut job = self.job(id).await?;
        let running = {
            let map = self.jobs.running.lock().expect("job map lock");
            map.get(id).and_then(|r| {
                r.started.map(|t| {
                    (
                        t.elapsed().as_secs_f64(),
                        r.guard
                            .rows_scanned
                            .load(std::sync::atomic::Ordering::Relaxed),
                    )
                })
            })
        };
        let elapsed = match (job.status, running) {
            (JobStatus::Queued | JobStatus::Running, Some((secs, scanned))) => {
                job.status = JobStatus::Running;
                job.rows_scanned = scanned;
                Some(secs)
            }
            (s, _) if s.is_final() || s == JobStatus::PendingReview => Some(job.cpu_seconds),
            _ => None,
        };
        if job.dp.is_some() {
            // Rows scanned can follow the rows a filter keeps (pruned row
            // groups): an exact count outside the privacy accounting.
            job.rows_scanned = 0;
        }
        Ok(JobView {
            release_id: self.store.release_of_job(id).await?.map(|r| r.id),
            job,
            elapsed_seconds: elapsed,
        })
    }

    /// Waits until the job leaves `queued`/`running`/`checked` or `timeout`
    /// passes, then returns it (a long poll for clients and benchmarks).
    pub async fn wait_job(&self, id: &str, timeout: Duration) -> Result<JobView> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = self.jobs.changed.notified();
            let view = self.job_view(id).await?;
            let settled = !matches!(
                view.job.status,
                JobStatus::Queued | JobStatus::Running | JobStatus::Checked
            );
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(view);
            }
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(200)),
                changed,
            )
            .await;
        }
    }

    /// The jobs `p` may read: a researcher's own; everything for admins and auditors;
    /// a steward's over their providers' grants.
    pub async fn jobs_for(&self, p: &Principal) -> Result<Vec<JobRecord>> {
        let jobs = self.store.list_jobs().await?;
        let mut out = Vec::new();
        for j in jobs {
            let visible = match p.role {
                Role::Researcher => j.requester_id == p.user_id,
                Role::Admin | Role::Auditor => true,
                Role::Steward => self
                    .grant(&j.grant_id)
                    .await?
                    .providers()
                    .iter()
                    .any(|x| p.provider_agencies.contains(x)),
            };
            if visible {
                out.push(j);
            }
        }
        Ok(out)
    }

    /// Cancels a queued or running job, or withdraws one waiting for review;
    /// audited as `job.cancel`.
    pub async fn cancel_job(&self, p: &Principal, id: &str) -> Result<JobView> {
        let job = self.job(id).await?;
        // A result waiting for review can be withdrawn too.
        if job.status.is_final() || job.status == JobStatus::Checked {
            return Err(Error::Conflict(format!(
                "a job in state `{}` cannot be cancelled",
                job.status.as_str()
            )));
        }
        let signalled = self
            .jobs
            .running
            .lock()
            .expect("job map lock")
            .get(id)
            .map(|r| {
                r.guard.cancel();
                true
            })
            .unwrap_or(false);
        self.record(
            &Actor::user(p),
            "job.cancel",
            job_object(id),
            Outcome::Success,
            serde_json::json!({ "signalled": signalled }),
        )
        .await?;
        if !signalled {
            // Not in this process (e.g. after a restart): end it here.
            let mut job = job;
            self.end_job(
                &mut job,
                &Error::Denied {
                    code: "cancelled",
                    message: "the job was cancelled".into(),
                },
            )
            .await?;
        }
        self.job_view(id).await
    }

    /// Marks jobs left queued or running by a previous process as failed
    /// (their sessions died with it). Run at start.
    pub async fn recover_jobs(&self) -> Result<usize> {
        let mut n = 0;
        for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Checked] {
            for mut job in self.store.jobs_in(status).await? {
                let running = self
                    .jobs
                    .running
                    .lock()
                    .expect("job map lock")
                    .contains_key(&job.id);
                if running {
                    continue;
                }
                self.end_job(
                    &mut job,
                    &Error::Denied {
                        code: "interrupted",
                        message: "the platform restarted while the job ran; submit it again".into(),
                    },
                )
                .await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether `p` may review job outputs under `grant`: a steward of one of
    /// its providers or an admin, never the requester or their organisation.
    fn check_reviewer(&self, p: &Principal, job: &JobRecord, requester_org: &str) -> Result<()> {
        if p.user_id == job.requester_id {
            return Err(Error::Denied {
                code: "self_review",
                message: "nobody may review their own result".into(),
            });
        }
        if p.organisation == requester_org {
            return Err(Error::Denied {
                code: "same_organisation",
                message: "nobody from the requester's organisation may review the result".into(),
            });
        }
        Ok(())
    }

    /// Jobs waiting for `p`'s review.
    pub async fn review_queue(&self, p: &Principal) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for j in self.store.jobs_in(JobStatus::PendingReview).await? {
            let g = self.grant(&j.grant_id).await?;
            if reviews_for(p, &g) && j.requester_id != p.user_id {
                out.push(j);
            }
        }
        Ok(out)
    }

    /// The pairs the differencing rule found for `job`, side by side: this
    /// result's row (`result`, as the reviewer sees it) and the other one.
    /// Another grant's row shows its cells only to those who review that
    /// grant's outputs too (its providers' data is not theirs otherwise).
    async fn differencing_pairs(
        &self,
        p: &Principal,
        job: &JobRecord,
        result: &[serde_json::Value],
    ) -> Result<Vec<DifferencingPair>> {
        let Some((sealed, key)) = self.store.job_fingerprints(&job.id).await? else {
            return Ok(Vec::new());
        };
        let json = blob::open(
            &self.keyring,
            &key,
            differencing_aad(&job.id).as_bytes(),
            &sealed,
        )?;
        let stored: disclosure::differencing::Stored = serde_json::from_slice(&json)
            .map_err(|_| Error::Internal("a result's sealed sketches do not decode".into()))?;
        let Some(findings) = stored.findings else {
            return Ok(Vec::new());
        };
        let mut others: HashMap<String, (JobRecord, Vec<serde_json::Value>)> = HashMap::new();
        let mut out = Vec::new();
        for pair in findings.pairs {
            if !others.contains_key(&pair.other_job_id) {
                let other = self.job(&pair.other_job_id).await?;
                let rows = if other.id == job.id {
                    result.to_vec()
                } else if reviews_for(p, &self.grant(&other.grant_id).await?) {
                    rows_json(&self.candidate(&other).await?.1)
                } else {
                    Vec::new()
                };
                others.insert(other.id.clone(), (other, rows));
            }
            let (other, rows) = &others[&pair.other_job_id];
            let cell = |rows: &[serde_json::Value], r: u64| {
                rows.get(r as usize)
                    .cloned()
                    .unwrap_or(serde_json::Value::Null)
            };
            out.push(DifferencingPair {
                row: pair.row,
                cells: cell(result, pair.row),
                other_job_id: other.id.clone(),
                other_query: other.query_text.clone(),
                other_status: other.status.as_str().to_string(),
                other_row: pair.other_row,
                other_cells: cell(rows, pair.other_row),
                units_differing: pair.units_differing,
                records_differing: pair.records_differing,
            });
        }
        Ok(out)
    }

    /// The review packet of a job: query, plan, verdicts, the candidate
    /// result, the grant's earlier releases; other votes only after voting.
    /// Audited as `job.review_read`.
    pub async fn review_packet(&self, p: &Principal, id: &str) -> Result<ReviewPacket> {
        let job = self.job(id).await?;
        let requester = self.identity.get_user_by_id(&job.requester_id).await?;
        self.check_reviewer(p, &job, &requester.organisation)?;
        let (_, batches) = self.candidate(&job).await?;
        let votes = self.store.reviews(id).await?;
        let my_vote = votes.iter().find(|v| v.reviewer_id == p.user_id).cloned();
        let show_all = my_vote.is_some() || job.status != JobStatus::PendingReview;
        let mut earlier = Vec::new();
        for r in self.store.releases_of_grant(&job.grant_id).await? {
            let j = self.job(&r.job_id).await?;
            earlier.push(serde_json::json!({
                "release_id": r.id, "job_id": j.id, "query": j.query_text,
                "rows": j.result_rows, "released_at": r.released_at,
            }));
        }
        self.record(
            &Actor::user(p),
            "job.review_read",
            job_object(id),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        let model_log = self.model_log(&job).await?;
        let result = rows_json(&batches);
        let differencing = self.differencing_pairs(p, &job, &result).await?;
        Ok(ReviewPacket {
            model_log,
            differencing,
            result,
            earlier_releases: earlier,
            my_vote,
            votes: show_all.then_some(votes),
            approvals_required: job.reviewers_required,
            job,
        })
    }

    /// One reviewer's vote. A rejection ends the review; enough approvals
    /// (from different people, at least one a steward of the data's provider)
    /// release the result. Audited as `job.review`.
    pub async fn review_job(
        &self,
        p: &Principal,
        id: &str,
        decision: ReviewDecision,
        comment: &str,
    ) -> Result<JobView> {
        let mut job = self.job(id).await?;
        let requester = self.identity.get_user_by_id(&job.requester_id).await?;
        self.check_reviewer(p, &job, &requester.organisation)?;
        if job.status != JobStatus::PendingReview {
            return Err(Error::Conflict(format!(
                "a job in state `{}` is not waiting for review",
                job.status.as_str()
            )));
        }
        let comment = comment.trim();
        if comment.chars().count() > 5000
            || (decision == ReviewDecision::Reject && comment.chars().count() < 5)
        {
            return Err(Error::InvalidArgument(
                "comment: up to 5000 characters; a rejection needs a reason of at least 5".into(),
            ));
        }
        let vote = ReviewRecord {
            job_id: id.to_string(),
            reviewer_id: p.user_id.clone(),
            reviewer_username: p.username.clone(),
            decision: match decision {
                ReviewDecision::Approve => "approve",
                ReviewDecision::Reject => "reject",
            }
            .into(),
            comment: comment.to_string(),
            at: release::certificate_time(self.now()),
        };
        self.store.insert_review(&vote).await?;
        self.record(
            &Actor::user(p),
            "job.review",
            job_object(id),
            Outcome::Success,
            serde_json::json!({ "decision": vote.decision }),
        )
        .await?;
        if decision == ReviewDecision::Reject {
            job.status = JobStatus::Rejected;
            job.error_code = Some("rejected_by_reviewer".into());
            job.error_message = Some("an output reviewer refused the release".into());
            job.finished_at = Some(crate::store::now_rfc3339());
            self.set_job(&mut job).await?;
            self.record(
                &Actor::user(p),
                "job.reject",
                job_object(id),
                Outcome::Success,
                serde_json::json!({}),
            )
            .await?;
            return self.job_view(id).await;
        }
        let votes = self.store.reviews(id).await?;
        let approvals: Vec<&ReviewRecord> =
            votes.iter().filter(|v| v.decision == "approve").collect();
        let grant = self.grant(&job.grant_id).await?;
        let mut steward_approved = false;
        for v in &approvals {
            let u = self.identity.get_user_by_id(&v.reviewer_id).await?;
            steward_approved |= u.role == Role::Steward
                && grant
                    .providers()
                    .iter()
                    .any(|x| u.provider_agencies.contains(x));
        }
        if approvals.len() as u32 >= job.reviewers_required && steward_approved {
            let reviewers = approvals
                .iter()
                .map(|v| release::Reviewer {
                    user_id: v.reviewer_id.clone(),
                    username: v.reviewer_username.clone(),
                    decision: release::ReviewDecision::Approve,
                    at: v.at.clone(),
                })
                .collect();
            self.release_job(&mut job, reviewers).await?;
        }
        self.job_view(id).await
    }

    /// One release.
    pub async fn release(&self, id: &str) -> Result<ReleaseRecord> {
        self.store
            .release(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release `{}`", shown_id(id))))
    }

    /// The releases `p` may read.
    pub async fn releases_for(&self, p: &Principal) -> Result<Vec<ReleaseRecord>> {
        let mut out = Vec::new();
        for r in self.store.list_releases().await? {
            let g = self.grant(&r.grant_id).await?;
            let visible = match p.role {
                Role::Researcher => g.holder_id == p.user_id,
                Role::Steward => g
                    .providers()
                    .iter()
                    .any(|x| p.provider_agencies.contains(x)),
                Role::Admin | Role::Auditor => true,
            };
            if visible {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A released file, decrypted and checked against the certificate's hash.
    /// Audited as `release.download`.
    pub async fn release_file(
        &self,
        p: &Principal,
        id: &str,
        format: ResultFormat,
    ) -> Result<Vec<u8>> {
        let r = self.release(id).await?;
        let f = r
            .files
            .iter()
            .find(|f| f.format == format.as_str())
            .ok_or_else(|| Error::NotFound("release file".into()))?;
        let path = self
            .dir
            .root()
            .join("releases")
            .join(&r.id)
            .join(format!("{}.bin", format.as_str()));
        let sealed = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let aad = format!("anyu:release:{}:{}", r.id, format.as_str());
        let bytes = blob::open(&self.keyring, &f.wrapped_key, aad.as_bytes(), &sealed)?;
        if release::sha256_hex(&bytes) != f.sha256 {
            return Err(Error::Crypto(
                "the released file does not match its certificate".into(),
            ));
        }
        self.record(
            &Actor::user(p),
            "release.download",
            format!("release:{}", r.id),
            Outcome::Success,
            serde_json::json!({ "format": format.as_str(), "bytes": bytes.len() }),
        )
        .await?;
        Ok(bytes)
    }
}

/// The result with every failing cell set to null.
fn suppress(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    report: &CheckReport,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let failing = report.failing_cells();
    if failing.is_empty() {
        return Ok((Arc::clone(schema), batches.to_vec()));
    }
    // Suppressed columns become nullable.
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let nullable = Arc::new(Schema::new(fields));
    let mut out = Vec::new();
    let mut offset = 0u64;
    for b in batches {
        let n = b.num_rows() as u64;
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let mask: BooleanArray = (0..n)
                .map(|r| {
                    Some(
                        failing
                            .iter()
                            .any(|(row, c)| *row == offset + r && c == f.name()),
                    )
                })
                .collect();
            let col = b.column(i);
            cols.push(if mask.true_count() > 0 {
                nullif(col.as_ref(), &mask)
                    .map_err(|e| Error::Internal(format!("suppressing cells: {e}")))?
            } else {
                Arc::clone(col)
            });
        }
        out.push(
            RecordBatch::try_new(Arc::clone(&nullable), cols)
                .map_err(|e| Error::Internal(format!("suppressing cells: {e}")))?,
        );
        offset += n;
    }
    Ok((nullable, out))
}
