//! A job's own DataFusion session: only the grant's views exist in it.
//!
//! Each granted dataset is registered under its catalog id as a view over an
//! unregistered table of the granted version: the view keeps only the granted
//! columns and rows (row filter, consent semi-join), and the raw table has no
//! name a query could use. Only allowlisted functions are registered; no
//! table functions, no table factories (so no `CREATE EXTERNAL TABLE`), no
//! `information_schema`, no URL tables. SQL is planned, checked against
//! `SQLOptions` denying DDL, DML and statements, then against the plan policy.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::common::{Column, JoinType, ScalarValue, TableReference};
use datafusion::datasource::{ViewTable, provider_as_source};
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::policy::{self, PlanFacts};
use super::rewrite::{self, RewriteOptions, Rewritten};
use super::sanitize::public_error;
use super::{GrantedTable, functions};
use crate::access::{RowCondition, RowFilter};
use crate::catalog::{DisclosurePolicy, Manifest};
use crate::keyring::Keyring;
use crate::storage;
use crate::{Error, Result};

/// One dataset of a grant, resolved to a version, for [`QuerySession::open`].
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub dataset_id: String,
    pub version: u64,
    /// `…/datasets/<id>/v<N>`.
    pub version_dir: PathBuf,
    /// SHA-256 of the version's data file.
    pub version_sha256: String,
    pub manifest: Manifest,
    /// The dataset's manifest revision (`manifest` is that revision).
    pub manifest_revision: u64,
    /// The effective (grade-tightened) policy.
    pub policy: DisclosurePolicy,
    /// Output reviewers needed for this dataset's grade.
    pub reviewers_required: u32,
    /// Granted columns, in grant order.
    pub columns: Vec<String>,
    pub row_filter: RowFilter,
    /// The consent table's version directory, when the filter needs it.
    pub consent_dir: Option<PathBuf>,
    /// The version's quality report shows one row per privacy unit.
    pub units_unique: bool,
}

/// Resource limits of one job's session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Memory the job's operators may hold; beyond it they spill or fail.
    pub memory_bytes: usize,
    /// Parallelism of the job.
    pub target_partitions: usize,
    /// Where spill files go (inside the data directory, never the OS temp dir).
    pub spill_dir: PathBuf,
    /// Caches shared by every job of the process (decrypted Parquet footers,
    /// file statistics), so a job does not re-read and re-decrypt them.
    pub caches: Option<Arc<CacheManager>>,
    /// Version tables already opened, by directory (versions never change).
    pub tables: Option<Arc<TableCache>>,
}

/// Opened version tables by directory; shared across jobs.
pub type TableCache = std::sync::Mutex<
    std::collections::HashMap<PathBuf, Arc<dyn datafusion::catalog::TableProvider>>,
>;

async fn open_table(
    ctx: &SessionContext,
    cache: Option<&Arc<TableCache>>,
    dir: &std::path::Path,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    if let Some(t) = cache.and_then(|c| c.lock().expect("table cache lock").get(dir).cloned()) {
        return Ok(t);
    }
    let t = storage::version_table(&ctx.state(), dir).await?;
    if let Some(c) = cache {
        c.lock()
            .expect("table cache lock")
            .insert(dir.to_path_buf(), Arc::clone(&t));
    }
    Ok(t)
}

/// A planned, checked and rewritten query.
#[derive(Debug, Clone)]
pub struct PlannedQuery {
    /// The plan as the user wrote it (before the threshold rewrite).
    pub logical: LogicalPlan,
    pub facts: PlanFacts,
    pub rewritten: Rewritten,
    /// A differentially private query: how its noisy release is made.
    pub dp: Option<Arc<crate::dp::plan::DpPlan>>,
}

impl PlannedQuery {
    /// A short plan summary for reviewers: the logical plan, indented.
    pub fn summary(&self) -> String {
        let text = self.logical.display_indent().to_string();
        // Raw table names are the platform's business.
        text.replace("__anyu_raw_", "")
    }
}

/// A job's session.
pub struct QuerySession {
    ctx: SessionContext,
    /// Sketches of output groups' units are keyed with this.
    fingerprint: super::fingerprint::FingerprintKey,
    tables: Vec<GrantedTable>,
    aggregate_only: bool,
    max_output_rows: u64,
}

impl std::fmt::Debug for QuerySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySession")
            .field(
                "tables",
                &self
                    .tables
                    .iter()
                    .map(|t| &t.dataset_id)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn scalar_literal(v: &serde_json::Value) -> Result<Expr> {
    Ok(match v {
        serde_json::Value::String(s) => lit(s.clone()),
        serde_json::Value::Bool(b) => lit(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => lit(i),
            None => lit(n.as_f64().unwrap_or(f64::NAN)),
        },
        _ => {
            return Err(Error::Internal(
                "a stored row filter holds a value of no column type".into(),
            ));
        }
    })
}

fn date_literal(d: chrono::NaiveDate) -> Expr {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    lit(ScalarValue::Date32(Some((d - epoch).num_days() as i32)))
}

/// The filter's conditions as one predicate over the raw table's columns.
fn filter_expr(raw: &str, filter: &RowFilter) -> Result<Option<Expr>> {
    let col = |name: &str| Expr::Column(Column::new(Some(TableReference::bare(raw)), name));
    let mut parts = Vec::new();
    for c in &filter.conditions {
        match c {
            RowCondition::In { column, values } => {
                let list = values
                    .iter()
                    .map(scalar_literal)
                    .collect::<Result<Vec<_>>>()?;
                parts.push(col(column).in_list(list, false));
            }
            RowCondition::Range { column, min, max } => {
                if let Some(v) = min {
                    parts.push(col(column).gt_eq(lit(*v)));
                }
                if let Some(v) = max {
                    parts.push(col(column).lt_eq(lit(*v)));
                }
            }
            RowCondition::DateRange { column, from, to } => {
                if let Some(d) = from {
                    parts.push(col(column).gt_eq(date_literal(*d)));
                }
                if let Some(d) = to {
                    parts.push(col(column).lt_eq(date_literal(*d)));
                }
            }
        }
    }
    Ok(parts.into_iter().reduce(Expr::and))
}

/// The allowlisted functions, filtered once per process.
struct Allowed {
    scalar: Vec<Arc<datafusion::logical_expr::ScalarUDF>>,
    aggregate: Vec<Arc<datafusion::logical_expr::AggregateUDF>>,
    window: Vec<Arc<datafusion::logical_expr::WindowUDF>>,
}

fn allowed() -> &'static Allowed {
    static ALLOWED: std::sync::OnceLock<Allowed> = std::sync::OnceLock::new();
    ALLOWED.get_or_init(|| Allowed {
        scalar: SessionStateDefaults::default_scalar_functions()
            .into_iter()
            .filter(|f| functions::scalar_allowed(f.name()))
            .collect(),
        aggregate: SessionStateDefaults::default_aggregate_functions()
            .into_iter()
            .filter(|f| functions::aggregate_allowed(f.name()))
            .collect(),
        window: SessionStateDefaults::default_window_functions()
            .into_iter()
            .filter(|f| functions::window_allowed(f.name()))
            .collect(),
    })
}

impl QuerySession {
    /// Builds the session and the grant's views.
    pub async fn open(
        keyring: Arc<Keyring>,
        specs: Vec<TableSpec>,
        aggregate_only: bool,
        limits: &SessionLimits,
    ) -> Result<QuerySession> {
        std::fs::create_dir_all(&limits.spill_dir)
            .map_err(Error::io("create directory", &limits.spill_dir))?;
        let mut caches = CacheManagerConfig::default();
        if let Some(shared) = &limits.caches {
            caches = caches
                .with_file_metadata_cache(Some(shared.get_file_metadata_cache()))
                .with_file_statistics_cache(shared.get_file_statistic_cache())
                .with_list_files_cache(shared.get_list_files_cache());
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(caches)
            // Greedy, not fair-share: one large aggregation may use the whole
            // budget (a fair pool splits it over every spillable operator and
            // makes the biggest spill early). Operators that can spill still do
            // when the budget runs out; others fail with a clear error.
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(limits.memory_bytes)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![limits.spill_dir.clone()])),
            )
            .build_arc()
            .map_err(storage::engine_error)?;
        let fingerprint = super::fingerprint::FingerprintKey::from_keyring(&keyring);
        storage::install_encryption_factory(&runtime, keyring);
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(limits.target_partitions.max(1))
            .with_create_default_catalog_and_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_expr_planners(SessionStateDefaults::default_expr_planners())
            .with_scalar_functions(allowed().scalar.clone())
            .with_aggregate_functions(allowed().aggregate.clone())
            .with_window_functions(allowed().window.clone())
            .build();
        let ctx = SessionContext::new_with_state(state);
        let max_output_rows = specs
            .iter()
            .map(|s| s.policy.max_output_rows)
            .min()
            .unwrap_or(0);
        let mut tables = Vec::new();
        for spec in specs {
            let raw_name = GrantedTable::raw_name_of(&spec.dataset_id);
            let raw = open_table(&ctx, limits.tables.as_ref(), &spec.version_dir).await?;
            let mut builder =
                LogicalPlanBuilder::scan(raw_name.as_str(), provider_as_source(raw), None)?;
            if let Some(pred) = filter_expr(&raw_name, &spec.row_filter)? {
                builder = builder.filter(pred)?;
            }
            if spec.row_filter.consented_only {
                let (dir, unit) = match (
                    &spec.consent_dir,
                    spec.manifest.dataset.privacy_unit.as_deref(),
                ) {
                    (Some(d), Some(u)) => (d, u),
                    _ => {
                        return Err(Error::Conflict(
                            "the grant needs a consent table the dataset does not have".into(),
                        ));
                    }
                };
                let consent_name = format!("__anyu_consent_{}", spec.dataset_id);
                let consent = open_table(&ctx, limits.tables.as_ref(), dir).await?;
                let consent_plan = LogicalPlanBuilder::scan(
                    consent_name.as_str(),
                    provider_as_source(consent),
                    None,
                )?
                .build()?;
                builder = builder.join(
                    consent_plan,
                    JoinType::LeftSemi,
                    (
                        vec![Column::new(
                            Some(TableReference::bare(raw_name.as_str())),
                            unit,
                        )],
                        vec![Column::new(
                            Some(TableReference::bare(consent_name.as_str())),
                            unit,
                        )],
                    ),
                    None,
                )?;
            }
            let cols: Vec<Expr> = spec
                .columns
                .iter()
                .map(|c| {
                    Expr::Column(Column::new(
                        Some(TableReference::bare(raw_name.as_str())),
                        c,
                    ))
                })
                .collect();
            let view = builder.project(cols)?.build()?;
            ctx.register_table(
                spec.dataset_id.as_str(),
                Arc::new(ViewTable::new(view.clone(), None)),
            )
            .map_err(storage::engine_error)?;
            tables.push(GrantedTable {
                dataset_id: spec.dataset_id,
                version: spec.version,
                version_sha256: spec.version_sha256,
                manifest: spec.manifest,
                policy: spec.policy,
                reviewers_required: spec.reviewers_required,
                columns: spec.columns,
                view,
                units_unique: spec.units_unique,
            });
        }
        Ok(QuerySession {
            ctx,
            fingerprint,
            tables,
            aggregate_only,
            max_output_rows,
        })
    }

    /// The session's tables.
    pub fn tables(&self) -> &[GrantedTable] {
        &self.tables
    }

    /// The DataFusion context (for execution).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Memory the session's operators hold now (none once a job's streams are done).
    pub fn memory_reserved(&self) -> usize {
        self.ctx.runtime_env().memory_pool.reserved()
    }

    /// Largest result any of the datasets allows.
    pub fn max_output_rows(&self) -> u64 {
        self.max_output_rows
    }

    /// Plans `sql`, checks it (statements, then plan policy) and rewrites it
    /// with the aggregation threshold. The result carries `max_output_rows + 1`
    /// as a limit, so an oversized result is detected without being built.
    pub async fn plan(&self, sql: &str) -> Result<PlannedQuery> {
        self.plan_limited(sql, &self.options()).await
    }

    /// [`Self::plan`] with the dominance statistics or the unit sketches
    /// left out: only for `anyu-bench acro`, which measures what each costs
    /// over the plain threshold path. A job never runs such a plan.
    #[doc(hidden)]
    pub async fn plan_for_bench(
        &self,
        sql: &str,
        dominance: bool,
        differencing: bool,
    ) -> Result<PlannedQuery> {
        let options = RewriteOptions {
            dominance,
            fingerprint: differencing.then(|| self.fingerprint.clone()),
            sketches: differencing,
        };
        self.plan_limited(sql, &options).await
    }

    fn options(&self) -> RewriteOptions {
        RewriteOptions {
            dominance: true,
            fingerprint: Some(self.fingerprint.clone()),
            sketches: true,
        }
    }

    async fn plan_limited(&self, sql: &str, options: &RewriteOptions) -> Result<PlannedQuery> {
        let mut planned = self.plan_unlimited(sql, None, options).await?;
        let limit = usize::try_from(self.max_output_rows.saturating_add(1)).unwrap_or(usize::MAX);
        planned.rewritten.plan = LogicalPlanBuilder::from(planned.rewritten.plan)
            .limit(0, Some(limit))?
            .build()?;
        Ok(planned)
    }

    /// Plans a model's input: the same statement check, policy and rewrite
    /// as [`Self::plan`], without the output-row limit (rows flow into the
    /// model, not out of the domain).
    pub async fn plan_input(&self, sql: &str) -> Result<PlannedQuery> {
        self.plan_unlimited(sql, None, &self.options()).await
    }

    /// Plans a differentially private query (`sql` without its DP clause):
    /// the same statement check and policy, then the DP shape check and
    /// rewrite ([`crate::dp::plan`]). No row limit: cutting groups before
    /// the noisy selection would depend on the data; the row check runs on
    /// the released groups.
    pub async fn plan_dp(&self, sql: &str, opts: &crate::dp::DpOptions) -> Result<PlannedQuery> {
        self.plan_unlimited(sql, Some(opts), &self.options()).await
    }

    async fn plan_unlimited(
        &self,
        sql: &str,
        dp: Option<&crate::dp::DpOptions>,
        options: &RewriteOptions,
    ) -> Result<PlannedQuery> {
        let state = self.ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state
            .sql_to_statement(sql, &dialect)
            .map_err(public_error)?;
        // Only a query, decided on the parsed statement before any planning.
        let is_query = matches!(
            &statement,
            datafusion::sql::parser::Statement::Statement(s)
                if matches!(s.as_ref(), datafusion::sql::sqlparser::ast::Statement::Query(_))
        );
        if !is_query {
            return Err(policy::refuse(
                "statement_not_allowed",
                "only queries run in the domain: DDL, DML and statements are refused",
            ));
        }
        let logical = state
            .statement_to_plan(statement)
            .await
            .map_err(public_error)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&logical)
            .map_err(|_| {
                policy::refuse(
                    "statement_not_allowed",
                    "only queries run in the domain: DDL, DML and statements are refused",
                )
            })?;
        let facts = policy::check(&logical, &self.tables, self.aggregate_only)?;
        super::total::check(&logical)?;
        if let Some(opts) = dp {
            let dp = crate::dp::plan::plan_dp(&logical, &facts, &self.tables, opts)?;
            let rewritten = Rewritten {
                plan: dp.plan.clone(),
                dropped: Default::default(),
                hidden: None,
                thresholded: 0,
                strategies: vec!["dp"],
                units: Vec::new(),
                inner: Default::default(),
                inner_aggregations: Vec::new(),
                stable: true,
            };
            return Ok(PlannedQuery {
                logical,
                facts,
                rewritten,
                dp: Some(Arc::new(dp)),
            });
        }
        if let Some(t) = self
            .tables
            .iter()
            .find(|t| t.policy.dp.required && facts.datasets.contains(&t.dataset_id))
        {
            return Err(policy::refuse(
                "dp_required",
                format!(
                    "dataset `{}` answers only differentially private queries: SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = …, delta = …) …",
                    t.dataset_id
                ),
            ));
        }
        let rewritten = rewrite::rewrite(&logical, &self.tables, &facts, options)?;
        Ok(PlannedQuery {
            logical,
            facts,
            rewritten,
            dp: None,
        })
    }
}

impl GrantedTable {
    /// The unregistered raw table's name inside this dataset's view.
    pub fn raw_name(&self) -> String {
        Self::raw_name_of(&self.dataset_id)
    }

    fn raw_name_of(dataset_id: &str) -> String {
        format!("__anyu_raw_{dataset_id}")
    }
}
