//! Models: researchers' WebAssembly components entering the domain
//! (SZ:27(3), SZ:44), stewards' approvals, and model jobs.
//!
//! ```text
//!  upload ─▶ sandbox intake (size, SHA-256, world check, compile → artifact cache)
//!         ─▶ models/<sha256>.wasm + models row (owner) ─▶ `model.upload`
//!  steward ─▶ approve | reject (sha256, dataset of their provider) ─▶ `model.approve`
//!  job {grant, model, input SQL, params}
//!     ─▶ input planned like any query (row-level input where the usage method
//!        is model_results or in_domain), supported column types, approvals
//!     ─▶ worker: DataFusion stream (guarded) ─▶ channel ─▶ blocking thread:
//!        ModelHost::run (fresh store, epoch deadline, memory charged to the
//!        job's DataFusion pool) ─▶ one table + log
//!     ─▶ checks: echo, degrees of freedom, persons behind the input, rows, zeros
//!     ─▶ sealed candidate + sealed log ─▶ always output review ─▶ release
//! ```
//!
//! Models never release directly: their output has no lineage to check, so
//! a person always looks at it (the log too, which is never released).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::jobs::visible_schema;
use super::{Actor, By, Domain, audit_object};
use crate::access::Grant;
use crate::access::authz::{self, Action, Object};
use crate::audit::Outcome;
use crate::catalog::{OpenType, dummy};
use crate::disclosure::{self, CheckInput, ModelFacts};
use crate::identity::Principal;
use crate::query::guard::Tripped;
use crate::query::{self, CellKind, Guard, OutputColumn, PlanFacts, PlannedQuery, QuerySession};
use crate::storage::blob;
use crate::store::{JobRecord, ModelApprovalRecord, ModelRecord};
use crate::{Error, Result};

/// Limits of models (`[models]` in the configuration).
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Largest linear memory of one model, in bytes (the job's memory
    /// budget, shared with its input query, usually binds first).
    pub max_memory_bytes: usize,
    /// Largest result table, in cells.
    pub max_output_cells: u64,
    /// Largest job log, in bytes.
    pub max_log_bytes: usize,
    /// Rows per input batch handed to a model.
    pub batch_rows: usize,
    /// Longest params string.
    pub max_params_bytes: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            max_component_bytes: 64 << 20,
            max_memory_bytes: 1 << 30,
            max_output_cells: 1_000_000,
            max_log_bytes: 64 << 10,
            batch_rows: 8192,
            max_params_bytes: 4096,
        }
    }
}

impl ModelOptions {
    /// The sandbox host these limits describe, its compiled artifacts in `cache_dir`.
    pub fn host_config(
        &self,
        cache_dir: Option<std::path::PathBuf>,
        concurrent_runs: usize,
    ) -> sandbox::HostConfig {
        sandbox::HostConfig {
            cache_dir,
            max_component_bytes: self.max_component_bytes,
            max_memory_bytes: self.max_memory_bytes,
            max_concurrent_runs: u32::try_from(concurrent_runs.max(1)).unwrap_or(u32::MAX),
            ..sandbox::HostConfig::default()
        }
    }

    /// The limits of one run: the job's deadline and memory, these caps.
    pub fn run_limits(
        &self,
        deadline: std::time::Duration,
        memory: Arc<dyn sandbox::MemoryBudget>,
    ) -> sandbox::RunLimits {
        let mut limits = sandbox::RunLimits::new(deadline, memory);
        limits.max_output_cells = self.max_output_cells;
        limits.max_log_bytes = self.max_log_bytes;
        limits.batch_rows = self.batch_rows;
        limits
    }
}

/// The model part of a job request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// SHA-256 of a component the caller uploaded.
    pub sha256: String,
    /// Handed to the model's `run` as it is.
    pub params: String,
}

/// A model with its approvals.
#[derive(Debug, Clone, Serialize)]
pub struct ModelView {
    #[serde(flatten)]
    pub model: ModelRecord,
    /// Stewards' decisions, by dataset (the newest per dataset counts).
    pub approvals: Vec<ModelApprovalRecord>,
}

/// A steward's decision on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelDecision {
    Approve,
    Reject,
}

/// The host, created on first use (CLI commands that never run a model
/// should not reserve the pooling allocator's address space).
#[derive(Default)]
pub(crate) struct ModelSlot(Mutex<Option<Arc<sandbox::ModelHost>>>);

/// Charges a model's memory to its job's DataFusion memory pool.
struct PoolBudget(Mutex<MemoryReservation>);

impl sandbox::MemoryBudget for PoolBudget {
    fn try_grow(&self, bytes: usize) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_grow(bytes)
            .is_ok()
    }
    fn shrink(&self, bytes: usize) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shrink(bytes);
    }
}

/// A model's input: batches from the query runtime, hidden columns
/// stripped, persons counted on the way.
struct StreamInput {
    schema: SchemaRef,
    keep: Vec<usize>,
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch>>,
    units: Arc<Mutex<UnitCount>>,
    guard: Arc<Guard>,
}

/// Output rows a model's counted input can allow (`disclosure::model_output`).
const MODEL_ROWS_COUNTED: u64 = 100;

/// Distinct privacy units per unit column, counted up to `cap` (enough to
/// decide the rules, and bounded memory however large the input); and per
/// input column the model reads, the persons filling it, up to `threshold`.
struct UnitCount {
    columns: Vec<usize>,
    seen: Vec<HashSet<String>>,
    rows: u64,
    cap: u64,
    /// The model's input columns (`StreamInput::keep`), with their fillers.
    read: Vec<usize>,
    fillers: Vec<HashSet<String>>,
    threshold: u64,
    error: Option<Error>,
}

impl UnitCount {
    fn new(columns: Vec<usize>, read: Vec<usize>, cap: u64, threshold: u64) -> UnitCount {
        UnitCount {
            seen: vec![HashSet::new(); columns.len()],
            fillers: vec![HashSet::new(); read.len()],
            columns,
            read,
            rows: 0,
            cap,
            threshold,
            error: None,
        }
    }

    /// The persons behind row `r`: its unit values, or the row itself when
    /// the data has no privacy unit.
    fn person(&self, batch: &RecordBatch, r: usize) -> String {
        if self.columns.is_empty() {
            return (self.rows + r as u64).to_string();
        }
        let mut key = String::new();
        for &c in &self.columns {
            if let Ok(v) = array_value_to_string(batch.column(c), r) {
                key.push_str(&v);
            }
            key.push('\u{1f}');
        }
        key
    }

    fn add(&mut self, batch: &RecordBatch) {
        for (i, &c) in self.read.iter().enumerate() {
            if self.fillers[i].len() as u64 >= self.threshold {
                continue;
            }
            let col = batch.column(c);
            for r in 0..col.len() {
                if col.is_null(r) {
                    continue;
                }
                let who = self.person(batch, r);
                self.fillers[i].insert(who);
                if self.fillers[i].len() as u64 >= self.threshold {
                    break;
                }
            }
        }
        self.rows += batch.num_rows() as u64;
        for (i, &c) in self.columns.iter().enumerate() {
            if self.seen[i].len() as u64 >= self.cap {
                continue;
            }
            let col = batch.column(c);
            for r in 0..col.len() {
                if col.is_null(r) {
                    continue;
                }
                if let Ok(v) = array_value_to_string(col, r) {
                    self.seen[i].insert(v);
                }
                if self.seen[i].len() as u64 >= self.cap {
                    break;
                }
            }
        }
    }

    fn units(&self) -> u64 {
        if self.columns.is_empty() {
            return self.rows.min(self.cap);
        }
        self.seen.iter().map(|s| s.len() as u64).min().unwrap_or(0)
    }

    /// Names of the read columns fewer than `threshold` persons fill.
    fn thin_columns(&self, schema: &SchemaRef) -> Vec<String> {
        self.read
            .iter()
            .zip(&self.fillers)
            .filter(|(_, f)| (f.len() as u64) < self.threshold)
            .map(|(&c, _)| schema.field(c).name().clone())
            .collect()
    }
}

impl sandbox::InputSource for StreamInput {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> sandbox::Result<Option<RecordBatch>> {
        if self.guard.is_cancelled() {
            // The job reports the cancellation; this only stops the guest.
            return Err(sandbox::SandboxError::InvalidInput {
                reason: "the job was cancelled".into(),
            });
        }
        match self.rx.blocking_recv() {
            None => Ok(None),
            Some(Ok(b)) => {
                let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
                units.add(&b);
                drop(units);
                b.project(&self.keep)
                    .map(Some)
                    .map_err(|_| sandbox::SandboxError::Internal)
            }
            Some(Err(e)) => {
                // The query's own error (deadline, cancel, engine) is reported as the job's.
                self.units.lock().unwrap_or_else(|e| e.into_inner()).error = Some(e);
                Err(sandbox::SandboxError::Internal)
            }
        }
    }
}

/// Output numbers searched for in the model's input, at most (a model's
/// output is small: rows per persons ÷ threshold, a few columns).
const RARE_CANDIDATES: usize = 10_000;

/// The output numbers that equal a value fewer than `threshold` persons of
/// the model's input hold, per numeric input column: a second, aggregated
/// look at the same input (plans are deterministic, versions immutable),
/// counting the persons behind each candidate value only.
async fn rare_values(
    session: &QuerySession,
    planned: &PlannedQuery,
    output: &sandbox::ModelOutput,
    threshold: u64,
    guard: &Arc<Guard>,
) -> Result<Vec<disclosure::model_output::RareValue>> {
    use datafusion::common::Column;
    use datafusion::functions_aggregate::expr_fn::{count, count_distinct};
    use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, lit};
    use disclosure::model_output::{RareValue, as_f64, number_key};

    let mut candidates = std::collections::BTreeSet::new();
    'fill: for batch in &output.batches {
        for col in batch.columns() {
            for v in as_f64(col.as_ref()).iter().flat_map(|a| a.iter()) {
                if let Some(k) = v.and_then(number_key) {
                    candidates.insert(k);
                    if candidates.len() >= RARE_CANDIDATES {
                        break 'fill;
                    }
                }
            }
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let plan = &planned.rewritten.plan;
    let schema = plan.schema();
    let unit = planned
        .rewritten
        .units
        .iter()
        .find_map(|(c, _)| schema.index_of_column_by_name(None, c))
        .map(|i| Expr::Column(Column::from(schema.qualified_field(i))));
    let persons = match unit {
        Some(u) => count_distinct(u),
        None => count(lit(1)),
    };
    let list: Vec<Expr> = candidates.iter().map(|b| lit(f64::from_bits(*b))).collect();
    let (_, keep) = visible_schema(schema.inner());
    let mut rare = Vec::new();
    for i in keep {
        let (qualifier, field) = schema.qualified_field(i);
        let numeric = field.data_type().is_numeric();
        if !numeric {
            continue;
        }
        let value = cast(
            Expr::Column(Column::from((qualifier, field))),
            datafusion::arrow::datatypes::DataType::Float64,
        );
        let look = LogicalPlanBuilder::from(plan.clone())
            .filter(value.clone().in_list(list.clone(), false))
            .and_then(|b| b.aggregate(vec![value.alias("v")], vec![persons.clone().alias("n")]))
            .and_then(|b| b.build())
            .map_err(|e| Error::Internal(format!("rare-value plan: {e}")))?;
        let (_, mut stream) = query::run::stream_plan(session, &look, guard).await?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query::sanitize::runtime_error)?;
            let (Some(v), Some(n)) = (as_f64(batch.column(0)), as_f64(batch.column(1))) else {
                continue;
            };
            for r in 0..batch.num_rows() {
                let held_by_few = v.is_valid(r) && n.is_valid(r) && (n.value(r) as u64) < threshold;
                if let Some(bits) = number_key(v.value(r)).filter(|_| held_by_few) {
                    rare.push(RareValue {
                        column: field.name().clone(),
                        bits,
                    });
                }
            }
        }
    }
    Ok(rare)
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A sandbox error as the domain reports it: the sandbox's stable code and
/// its value-free message (never the guest's own error text).
fn sandbox_error(e: sandbox::SandboxError) -> Error {
    match e {
        sandbox::SandboxError::Internal => Error::Internal("sandbox failure (see log)".into()),
        e => Error::Refused {
            code: e.code(),
            message: e.to_string(),
        },
    }
}

impl Domain {
    /// `DATA_DIR/models/`: uploaded components (`<sha256>.wasm`) and the
    /// compiled-artifact cache (`cache/`).
    fn models_dir(&self) -> std::path::PathBuf {
        self.dir.models()
    }

    pub(crate) fn model_host(&self) -> Result<Arc<sandbox::ModelHost>> {
        let mut slot = self.models.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = slot.as_ref() {
            return Ok(Arc::clone(h));
        }
        // A slot per job worker, with headroom: a slot is freed only when its store drops.
        let config = self.options.models.host_config(
            Some(self.models_dir().join("cache")),
            self.options.jobs.workers.max(1) + 2,
        );
        let host = Arc::new(sandbox::ModelHost::new(config).map_err(sandbox_error)?);
        *slot = Some(Arc::clone(&host));
        Ok(host)
    }

    /// Takes in a researcher's component: validated against the `anyu:model`
    /// world by the sandbox (unknown imports refused), size-limited, hashed,
    /// compiled into the artifact cache, stored and owned. Audited as
    /// `model.upload` (a refusal too, with its code).
    pub async fn upload_model<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<ModelView> {
        let p = self
            .allowed_on_platform(caller.into(), Action::UploadModel, "models")
            .await?;
        let actor = Actor::user(p);
        let name = name.trim().to_string();
        let size = bytes.len();
        let refuse = |e: Error| async move {
            self.record(
                &actor,
                "model.upload",
                "model:-",
                Outcome::Denied,
                serde_json::json!({ "error_code": e.code(), "size": size }),
            )
            .await?;
            Err::<ModelView, Error>(e)
        };
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return refuse(Error::InvalidArgument(
                "name: 1 to 100 characters, no control characters".into(),
            ))
            .await;
        }
        let host = self.model_host()?;
        // The component moves into the task and back: up to 64 MiB, never copied.
        let (intake, bytes) = tokio::task::spawn_blocking(move || (host.intake(&bytes), bytes))
            .await
            .map_err(|e| Error::Internal(format!("intake task failed: {e}")))?;
        let info = match intake {
            Ok(i) => i,
            Err(e) => return refuse(sandbox_error(e)).await,
        };
        let dir = self.models_dir();
        let path = dir.join(format!("{}.wasm", info.sha256));
        if !path.exists() {
            tokio::task::spawn_blocking(move || -> Result<()> {
                std::fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
                blob::write_new_file(&path, &bytes)
            })
            .await
            .map_err(|e| Error::Internal(format!("model write task failed: {e}")))??;
        }
        let record = ModelRecord {
            sha256: info.sha256.clone(),
            owner_id: p.user_id.clone(),
            owner_username: p.username.clone(),
            name,
            size: info.size as u64,
            info: serde_json::json!({
                "imports": info.imports,
                "exports": info.exports,
                "uses_wasi": info.uses_wasi,
                "world": info.contract.world(),
            }),
            uploaded_at: crate::store::now_rfc3339(),
        };
        let new = self.store.insert_model(&record).await?;
        self.record(
            &Actor::user(p),
            "model.upload",
            format!("model:{}", info.sha256),
            Outcome::Success,
            serde_json::json!({
                "size": info.size,
                "imports": info.imports,
                "uses_wasi": info.uses_wasi,
                "new": new,
            }),
        )
        .await?;
        self.model_view(p, &info.sha256).await
    }

    /// One model as `caller` may see it: researchers their own uploads;
    /// stewards, admins and auditors any (a model is code, not data). An
    /// upload the caller may not see answers like an unknown one.
    pub async fn model_view<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        sha256: &str,
    ) -> Result<ModelView> {
        let object = audit_object("model", sha256);
        let p = self
            .allowed_on_platform(caller.into(), Action::ReadModel, &object)
            .await?;
        let not_found = || Error::NotFound("model".into());
        if !valid_sha(sha256) {
            return Err(not_found());
        }
        let model = self
            .store
            .model_uploads(sha256)
            .await?
            .into_iter()
            .find(|m| {
                authz::may_read(
                    p,
                    &Object::Model {
                        owner_id: &m.owner_id,
                    },
                )
            })
            .ok_or_else(not_found)?;
        Ok(ModelView {
            approvals: self.store.model_approvals(sha256).await?,
            model,
        })
    }

    /// The models `p` may see, newest first.
    pub async fn models_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<ModelRecord>> {
        let p = self
            .allowed_on_platform(caller.into(), Action::ReadModel, "models")
            .await?;
        let mut models = self.store.list_models(None).await?;
        models.retain(|m| {
            authz::may_read(
                p,
                &Object::Model {
                    owner_id: &m.owner_id,
                },
            )
        });
        Ok(models)
    }

    /// A steward's decision on running model `sha256` on `dataset_id`, a
    /// dataset of the caller's provider. Audited as `model.approve` or
    /// `model.reject`.
    pub async fn decide_model<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        sha256: &str,
        dataset_id: &str,
        decision: ModelDecision,
        comment: &str,
    ) -> Result<ModelView> {
        let object = audit_object("model", sha256);
        let p = self
            .signed_in(caller.into(), Action::ApproveModel, &object)
            .await?;
        // An unknown dataset has no provider: the same 403 as another provider's.
        let providers: Vec<String> = self
            .store
            .dataset(dataset_id)
            .await?
            .map(|d| vec![d.manifest.dataset.provider.clone()])
            .unwrap_or_default();
        let target = Object::Dataset {
            providers: &providers,
        };
        self.authorize(Some(p), Action::ApproveModel, &target, &object)
            .await?;
        let uploads = if valid_sha(sha256) {
            self.store.model_uploads(sha256).await?
        } else {
            Vec::new()
        };
        if uploads.is_empty() {
            return Err(Error::NotFound("model".into()));
        }
        // Separation of duties, as in application and output review: nobody
        // decides on code their own organisation brought in.
        for u in &uploads {
            let uploader = self.store.user_by_id(&u.owner_id).await?;
            if u.owner_id == p.user_id || uploader.is_some_and(|o| o.organisation == p.organisation)
            {
                let refusal = Error::Denied {
                    code: "same_organisation",
                    message: "nobody from the uploader's organisation may decide on a model".into(),
                };
                self.record(
                    &Actor::user(p),
                    "model.decide",
                    format!("model:{sha256}"),
                    Outcome::Denied,
                    serde_json::json!({ "dataset_id": dataset_id, "code": refusal.code() }),
                )
                .await?;
                return Err(refusal);
            }
        }
        let comment = comment.trim();
        if comment.chars().count() > 2000
            || (decision == ModelDecision::Reject && comment.chars().count() < 5)
        {
            return Err(Error::InvalidArgument(
                "comment: up to 2000 characters; a rejection needs a reason of at least 5".into(),
            ));
        }
        let (word, action) = match decision {
            ModelDecision::Approve => ("approve", "model.approve"),
            ModelDecision::Reject => ("reject", "model.reject"),
        };
        self.store
            .put_model_approval(&ModelApprovalRecord {
                id: uuid::Uuid::now_v7().to_string(),
                sha256: sha256.to_string(),
                dataset_id: dataset_id.to_string(),
                decision: word.into(),
                reviewer_id: p.user_id.clone(),
                reviewer_username: p.username.clone(),
                comment: comment.to_string(),
                at: crate::store::now_rfc3339(),
                withdrawn_at: None,
            })
            .await?;
        self.record(
            &Actor::user(p),
            action,
            format!("model:{sha256}"),
            Outcome::Success,
            serde_json::json!({ "dataset_id": dataset_id }),
        )
        .await?;
        self.model_view(p, sha256).await
    }

    /// Withdraws decision `decision_id` on model `sha256`: only its author
    /// may. Audited as `model.withdraw`.
    pub async fn withdraw_model_decision<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        sha256: &str,
        decision_id: &str,
    ) -> Result<ModelView> {
        let object = audit_object("model", sha256);
        let p = self
            .signed_in(caller.into(), Action::ApproveModel, &object)
            .await?;
        let decisions = if valid_sha(sha256) {
            self.store.model_approvals(sha256).await?
        } else {
            Vec::new()
        };
        let Some(d) = decisions.iter().find(|d| d.id == decision_id) else {
            return Err(Error::NotFound("model decision".into()));
        };
        if d.reviewer_id != p.user_id {
            self.record(
                &Actor::user(p),
                "model.withdraw",
                format!("model:{sha256}"),
                Outcome::Denied,
                serde_json::json!({ "decision_id": decision_id, "code": "not_author" }),
            )
            .await?;
            return Err(Error::Denied {
                code: "not_author",
                message: "only the steward who made a decision may withdraw it".into(),
            });
        }
        let at = crate::store::now_rfc3339();
        if !self
            .store
            .withdraw_model_approval(sha256, decision_id, &p.user_id, &at)
            .await?
        {
            return Err(Error::Conflict("the decision is already withdrawn".into()));
        }
        self.record(
            &Actor::user(p),
            "model.withdraw",
            format!("model:{sha256}"),
            Outcome::Success,
            serde_json::json!({ "decision_id": decision_id, "dataset_id": d.dataset_id }),
        )
        .await?;
        self.model_view(p, sha256).await
    }

    /// The request names a model the caller uploaded, with sane params.
    pub(super) async fn check_model_request(&self, p: &Principal, m: &ModelRequest) -> Result<()> {
        if m.params.len() > self.options.models.max_params_bytes {
            return Err(Error::InvalidArgument(format!(
                "params must be at most {} bytes",
                self.options.models.max_params_bytes
            )));
        }
        if !valid_sha(&m.sha256) || self.store.model_of(&m.sha256, &p.user_id).await?.is_none() {
            return Err(Error::InvalidArgument(
                "model: no model with this SHA-256 among your uploads".into(),
            ));
        }
        Ok(())
    }

    /// The planned input has only types a model reads, and the model is
    /// approved for every dataset read whose policy asks for approval.
    pub(super) async fn check_model_input(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        m: &ModelRequest,
    ) -> Result<()> {
        for f in planned.rewritten.plan.schema().fields() {
            if f.name().starts_with(query::RESERVED_PREFIX) {
                continue;
            }
            if !sandbox::readable(f.data_type()) {
                return Err(Error::Refused {
                    code: "invalid_input",
                    message: format!(
                        "input column `{}` has type {}; models read DOUBLE, BIGINT, VARCHAR and BOOLEAN (use CAST)",
                        f.name(),
                        f.data_type()
                    ),
                });
            }
        }
        let approvals = self.store.model_approvals(&m.sha256).await?;
        for t in session.tables() {
            if !planned.facts.datasets.contains(&t.dataset_id) || !t.policy.models_need_approval {
                continue;
            }
            let live = || {
                approvals
                    .iter()
                    .filter(|a| a.dataset_id == t.dataset_id && a.withdrawn_at.is_none())
            };
            // A rejection blocks until its author withdraws it, whatever
            // approvals came later.
            if live().any(|a| a.decision == "reject") {
                return Err(Error::Denied {
                    code: "model_rejected",
                    message: format!(
                        "a steward rejected this model for dataset `{}`; it runs only once they withdraw the rejection",
                        t.dataset_id
                    ),
                });
            }
            if !live().any(|a| a.decision == "approve") {
                return Err(Error::Denied {
                    code: "model_not_approved",
                    message: format!(
                        "dataset `{}` requires a steward of its provider to approve this model before it runs",
                        t.dataset_id
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs a model job: the input query streams into the model on a
    /// blocking thread; its table goes through the checks and always to review.
    pub(super) async fn run_model_job(
        &self,
        id: &str,
        grant: &Grant,
        session: QuerySession,
        planned: PlannedQuery,
        guard: Arc<Guard>,
        model: ModelRequest,
    ) -> Result<()> {
        let details = serde_json::json!({ "model_sha256": model.sha256 });
        let Some((permit, mut job, started_event)) = self.start_job(id, &guard, details).await?
        else {
            return Ok(());
        };
        let started = Instant::now();
        let ran = self
            .run_model(&session, &planned, Arc::clone(&guard), &model)
            .await;
        drop(permit);
        job.cpu_seconds = started.elapsed().as_secs_f64();
        job.rows_scanned = guard
            .rows_scanned
            .load(std::sync::atomic::Ordering::Relaxed);
        let outcome = match ran {
            Ok((output, mut facts)) => {
                let threshold = facts.units_cap / MODEL_ROWS_COUNTED;
                let rare = if facts.aggregated_input {
                    Ok(Vec::new())
                } else {
                    rare_values(&session, &planned, &output, threshold, &guard).await
                };
                let checked = match rare {
                    Ok(rare) => {
                        facts.rare_values = rare;
                        self.check_model_output(&session, &planned, &output, &facts, &mut job)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(()) => Ok(()),
                    Err(e) => self.fail_job(id, grant, job.cpu_seconds, &e).await,
                }
            }
            Err(e) => self.fail_job(id, grant, job.cpu_seconds, &e).await,
        };
        started_event.await?;
        outcome
    }

    /// Streams the input into the model and waits for its table.
    async fn run_model(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        guard: Arc<Guard>,
        model: &ModelRequest,
    ) -> Result<(sandbox::ModelOutput, ModelFacts)> {
        let host = self.model_host()?;
        self.ensure_loaded(&host, &model.sha256).await?;
        let deadline = guard.deadline().saturating_duration_since(Instant::now());
        let (schema, mut stream) = query::run::stream(session, planned, &guard).await?;
        let (visible, keep) = visible_schema(&schema);
        let unit_columns: Vec<usize> = planned
            .rewritten
            .units
            .iter()
            .filter_map(|(c, _)| schema.index_of(c).ok())
            .collect();
        let aggregated_input = planned.rewritten.hidden.is_some();
        // Enough persons to allow MODEL_ROWS_COUNTED output rows (one per
        // threshold persons), with bounded memory however large the input.
        let threshold = session
            .tables()
            .iter()
            .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
            .map(|t| t.policy.threshold)
            .max()
            .unwrap_or(10)
            .max(1);
        let cap = threshold * MODEL_ROWS_COUNTED;
        let units = Arc::new(Mutex::new(UnitCount::new(
            unit_columns,
            keep.clone(),
            cap,
            threshold,
        )));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let feed_guard = Arc::clone(&guard);
        let feed = async move {
            while let Some(next) = stream.next().await {
                let item = next.map_err(|e| match feed_guard.tripped() {
                    Some(why) => query::run::stopped(why, deadline),
                    None => query::sanitize::runtime_error(e),
                });
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        };
        let feeder = match self.jobs_runtime() {
            Some(rt) => rt.spawn(feed),
            None => tokio::spawn(feed),
        };
        let memory = {
            let pool = Arc::clone(&session.context().runtime_env().memory_pool);
            let reservation = MemoryConsumer::new("anyu-model").register(&pool);
            Arc::new(PoolBudget(Mutex::new(reservation)))
        };
        let cancel_guard = Arc::clone(&guard);
        let limits = self
            .options
            .models
            .run_limits(deadline, memory)
            .with_cancel(Arc::new(move || cancel_guard.is_cancelled()));
        let input = StreamInput {
            schema: visible,
            keep,
            rx,
            units: Arc::clone(&units),
            guard: Arc::clone(&guard),
        };
        let (sha, params) = (model.sha256.clone(), model.params.clone());
        let run_guard = Arc::clone(&guard);
        let run = tokio::task::spawn_blocking(move || {
            let out = host.run(&sha, Box::new(input), &params, limits);
            // Cancelled or past the deadline while the guest ran: the job says so.
            let tripped = if run_guard.is_cancelled() {
                Some(Tripped::Cancelled)
            } else if Instant::now() >= run_guard.deadline()
                || matches!(out, Err(sandbox::SandboxError::Timeout { .. }))
            {
                Some(Tripped::Deadline)
            } else {
                None
            };
            (out, tripped)
        });
        let (out, tripped) = run
            .await
            .map_err(|e| Error::Internal(format!("model task failed: {e}")))?;
        feeder.abort();
        let mut counted = units.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = counted.error.take() {
            return Err(e);
        }
        if let Some(why) = tripped.filter(|_| out.is_err()) {
            return Err(query::run::stopped(why, deadline));
        }
        let output = out.map_err(sandbox_error)?;
        Ok((
            output,
            ModelFacts {
                units: counted.units(),
                units_cap: cap,
                aggregated_input,
                thin_columns: counted.thin_columns(&schema),
                rare_values: Vec::new(),
            },
        ))
    }

    /// Loads a model into the host from its stored bytes when neither the
    /// host nor the artifact cache has it (a restart with a new engine).
    async fn ensure_loaded(&self, host: &Arc<sandbox::ModelHost>, sha: &str) -> Result<()> {
        if host.info(sha).is_some() {
            return Ok(());
        }
        let path = self.models_dir().join(format!("{sha}.wasm"));
        let host = Arc::clone(host);
        let sha = sha.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let bytes = std::fs::read(&path).map_err(Error::io("read model", &path))?;
            let info = host.intake(&bytes).map_err(sandbox_error)?;
            if info.sha256 != sha {
                return Err(Error::Crypto(
                    "a stored model does not match its hash".into(),
                ));
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("model load task failed: {e}")))?
    }

    /// Checks a model's table and seals it with the log for review.
    async fn check_model_output(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        output: &sandbox::ModelOutput,
        model: &ModelFacts,
        job: &mut JobRecord,
    ) -> Result<()> {
        // The model is a black box: every output column may hold anything.
        let facts = PlanFacts {
            output: output
                .schema
                .fields()
                .iter()
                .map(|f| OutputColumn {
                    name: f.name().clone(),
                    kind: CellKind::RowValue,
                    sources: Default::default(),
                    extreme_of_sensitive: false,
                    counts_people: false,
                    filtered: false,
                })
                .collect(),
            datasets: planned.facts.datasets.clone(),
            identifying_columns: planned.facts.identifying_columns.clone(),
            row_level: false,
            per_unit: Default::default(),
        };
        let model_planned = PlannedQuery {
            logical: planned.logical.clone(),
            facts,
            rewritten: planned.rewritten.clone(),
            dp: None,
        };
        let policies: Vec<&crate::catalog::DisclosurePolicy> = session
            .tables()
            .iter()
            .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
            .map(|t| &t.policy)
            .collect();
        let policy = disclosure::strictest(&policies);
        let echo = self
            .echo_hits(session, &model_planned, &output.batches)
            .await?;
        let campaign = self.campaign(&job.id).await?;
        let report = disclosure::check(
            &disclosure::default_rules(),
            &CheckInput {
                batches: &output.batches,
                rows_per_group: None,
                facts: &model_planned.facts,
                policy: &policy,
                echo: &echo,
                suppressed_groups: 0,
                contributions: &[],
                model: Some(model),
                dp: None,
                differencing: None,
                withheld: &[],
                campaign: campaign.as_ref(),
            },
        );
        let log = format!(
            "{}{}",
            output.log,
            if output.log_truncated {
                "\n[log truncated at its limit]\n"
            } else {
                ""
            }
        );
        // Models never release without a person: auto-release is off.
        self.seal_checked(
            job,
            &output.schema,
            &output.batches,
            report,
            0,
            false,
            Some(&log),
            None,
        )
        .await
    }

    /// A model job's log, for its reviewers.
    pub(super) async fn model_log(&self, job: &JobRecord) -> Result<Option<String>> {
        if job.model_sha256.is_none() {
            return Ok(None);
        }
        let Some((sealed, key)) = self.store.job_log(&job.id).await? else {
            return Ok(None);
        };
        let aad = blob::SealedFor::ModelLog(&job.id).aad();
        let bytes = blob::open(&self.keyring, &key, &aad, &sealed)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Dummy data of a catalog dataset (conditional or unconditional, as the
    /// caller may see it): generated from the manifest alone, never from
    /// rows. Audited as `catalog.dummy`.
    pub async fn dummy_data<'a>(
        &self,
        by: impl Into<By<'a>>,
        dataset_id: &str,
        rows: usize,
        seed: u64,
    ) -> Result<RecordBatch> {
        let actor = &self
            .acting(by.into(), Action::ReadCatalog, "catalog")
            .await?;
        // Not-open datasets have no dummy data: they answer like unknown ids.
        let record = self.store.dataset(dataset_id).await?;
        let Some(manifest) = record
            .map(|r| r.manifest)
            .filter(|m| m.dataset.open_type != OpenType::NotOpen)
        else {
            return Err(Error::NotFound(format!("dataset `{dataset_id}`")));
        };
        let rows = rows.min(dummy::MAX_DUMMY_ROWS);
        let batch = dummy::dummy_batch(&manifest, rows, seed);
        self.record(
            actor,
            "catalog.dummy",
            format!("dataset:{dataset_id}"),
            Outcome::Success,
            serde_json::json!({ "rows": rows, "seed": seed }),
        )
        .await?;
        Ok(batch)
    }
}
