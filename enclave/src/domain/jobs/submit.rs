//! Submitting a job (the grant's session, the plan, the policy, the queue)
//! and what callers read of jobs: views, long polls, listings, cancellation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access::authz::{self, Action, Object};
use crate::access::{Grant, GrantedVersion};
use crate::audit::Outcome;
use crate::catalog::UsageMethod;
use crate::domain::access::shown_id;
use crate::domain::{Actor, Domain, ModelRequest, audit_object};
use crate::identity::Principal;
use crate::query::{Guard, QuerySession, SessionLimits, TableSpec};
use crate::store::{JobDataset, JobRecord, JobStatus};
use crate::{Error, Result};

use super::warm::{Taken, WarmKey};
use super::{JobSight, OwnJob, Running, charge_error, job_object};

impl Domain {
    /// The tables a grant opens, resolved to versions now.
    pub(super) async fn table_specs(&self, grant: &Grant) -> Result<Vec<TableSpec>> {
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
            // Only a view keeping consented rows reads the consent table.
            let consent_dir = if d.row_filter.consented_only {
                self.store
                    .latest_consent(&d.dataset_id)
                    .await?
                    .map(|c| self.dir.root().join(&c.dir))
            } else {
                None
            };
            specs.push(TableSpec {
                dataset_id: d.dataset_id.clone(),
                version: version.version,
                version_dir: self.dir.root().join(&version.dir),
                version_sha256: version.sha256.clone(),
                policy: record.manifest.effective_policy(&self.options.grades),
                reviewers_required: grade.reviewers_required.max(1),
                manifest_revision: record.manifest_revision,
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
    pub(super) async fn query_session_for(
        &self,
        grant: &Grant,
        model_input: bool,
    ) -> Result<QuerySession> {
        Ok(self.replayable_session(grant, model_input).await?.0)
    }

    /// [`Self::query_session_for`], with what re-running a plan in it later
    /// needs (its tables as resolved now).
    pub(super) async fn replayable_session(
        &self,
        grant: &Grant,
        model_input: bool,
    ) -> Result<(QuerySession, super::lazy::Replay)> {
        let specs = self.table_specs(grant).await?;
        let replay = self.replay_of(grant, &specs, model_input);
        Ok((self.open_session(grant, specs, model_input).await?, replay))
    }

    /// A SQL job's session: the grant's idle warm session when it was built
    /// from exactly what the grant resolves to now, else a new one; with
    /// what re-running a plan in it later needs.
    async fn job_session(
        &self,
        grant: &Grant,
    ) -> Result<(QuerySession, Taken, super::lazy::Replay)> {
        let specs = self.table_specs(grant).await?;
        let replay = self.replay_of(grant, &specs, false);
        let (warm, taken) = self.jobs.warm.take(&WarmKey::new(grant, &specs));
        let session = match warm {
            Some(s) => s,
            None => self.open_session(grant, specs, false).await?,
        };
        Ok((session, taken, replay))
    }

    /// How to rebuild a session over `specs` later, for re-running a plan.
    fn replay_of(
        &self,
        grant: &Grant,
        specs: &[TableSpec],
        model_input: bool,
    ) -> super::lazy::Replay {
        super::lazy::Replay::new(
            self.dir.root(),
            specs,
            aggregate_only(grant, specs, model_input),
        )
    }

    async fn open_session(
        &self,
        grant: &Grant,
        specs: Vec<TableSpec>,
        model_input: bool,
    ) -> Result<QuerySession> {
        let aggregate_only = aggregate_only(grant, &specs, model_input);
        let o = self.job_options();
        QuerySession::open(
            Arc::clone(&self.keyring),
            specs,
            aggregate_only,
            &SessionLimits {
                memory_bytes: o.memory_bytes,
                target_partitions: o.target_partitions,
                spill_dir: self.dir.spill(),
                caches: self.jobs.caches.clone(),
                tables: Some(Arc::clone(&self.jobs.tables)),
            },
        )
        .await
    }

    /// Submits `sql` under `grant_id`. The query is planned and checked now:
    /// a refusal answers at once (audited, no job, no budget spent). Accepted
    /// queries become a queued job that runs in the background.
    pub async fn submit_job<'a>(
        self: &Arc<Self>,
        caller: impl Into<Option<&'a Principal>>,
        grant_id: &str,
        sql: &str,
    ) -> Result<OwnJob> {
        self.submit(caller.into(), grant_id, sql, None, None).await
    }

    /// Submits `sql` under `grant_id`, differentially private when `dp` is
    /// given or the SQL starts `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (…)`.
    /// ε (and the δ the group selection spends) is charged with the job,
    /// before anything runs, and stays charged whatever happens next.
    pub async fn submit_query<'a>(
        self: &Arc<Self>,
        caller: impl Into<Option<&'a Principal>>,
        grant_id: &str,
        sql: &str,
        dp: Option<crate::dp::DpOptions>,
    ) -> Result<OwnJob> {
        self.submit(caller.into(), grant_id, sql, None, dp).await
    }

    /// Submits a model run under `grant_id`: `input_sql` goes through the
    /// same policy as any query (row-level input allowed where the grant's
    /// usage method is `model_results` or `in_domain`), the model must be the
    /// caller's and approved for every dataset whose policy says so.
    pub async fn submit_model_job<'a>(
        self: &Arc<Self>,
        caller: impl Into<Option<&'a Principal>>,
        grant_id: &str,
        model: &ModelRequest,
        input_sql: &str,
    ) -> Result<OwnJob> {
        self.submit(caller.into(), grant_id, input_sql, Some(model), None)
            .await
    }

    pub(super) async fn submit(
        self: &Arc<Self>,
        caller: Option<&Principal>,
        grant_id: &str,
        sql: &str,
        model: Option<&ModelRequest>,
        dp: Option<crate::dp::DpOptions>,
    ) -> Result<OwnJob> {
        const ACTION: &str = "job.submit";
        let p = self.signed_in(caller, Action::SubmitJob, "jobs").await?;
        let grant = self
            .grant(grant_id)
            .await
            .map_err(|_| Error::InvalidArgument("grant_id: no such grant".into()))?;
        let providers = grant.providers();
        let object = Object::Grant {
            holder_id: &grant.holder_id,
            providers: &providers,
        };
        self.authorize(
            Some(p),
            Action::SubmitJob,
            &object,
            &audit_object("grant", &grant.id),
        )
        .await?;
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
            Err::<OwnJob, Error>(e)
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
        if let Err(e) = grant.check_usable(self.now()) {
            return refused(e).await;
        }
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
        let opened = match model {
            None => self
                .job_session(&grant)
                .await
                .map(|(s, t, r)| (s, Some(t), r)),
            Some(_) => self
                .replayable_session(&grant, true)
                .await
                .map(|(s, r)| (s, None, r)),
        };
        let (session, taken, replay) = match opened {
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
            Err(e) => {
                // Planning leaves the session as it was.
                if let Some(t) = taken {
                    self.jobs.warm.give_back(t, session);
                }
                return refused(model_input_refusal(e, &grant, model.is_some())).await;
            }
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
        let shape = self.plan_shape(&session, &planned);
        let (inserted, recorded) = tokio::join!(
            self.store
                .insert_job_charged(&mut job, &slot, &grant.budgets, Some(&shape)),
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
        // Its shape was stored with it, whatever happens next: a failing or
        // timed job is a bit of a campaign too.
        if let Err(e) = self.note_campaign(&job).await {
            tracing::error!(job = %job.id, error = %e, "the job's campaign was not checked");
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
                        .run_job(
                            &id,
                            &grant_for_run,
                            session,
                            planned,
                            guard,
                            super::runner::SessionOrigin { replay, taken },
                        )
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
        Ok(OwnJob::from(self.view_of(self.job(&job.id).await?).await?))
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        self.store
            .job(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("job `{}`", shown_id(id))))
    }

    /// The job `id` and its grant, once `caller` may perform `action` on it
    /// (401, then 404, then 403). Also returns the signed-in principal.
    pub(super) async fn authorized_job<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
        id: &str,
    ) -> Result<(&'a Principal, JobRecord, Grant)> {
        let object = audit_object("job", id);
        let p = self.signed_in(caller, action, &object).await?;
        let job = self.job(id).await?;
        let grant = self.grant(&job.grant_id).await?;
        let providers = grant.providers();
        let target = Object::Job {
            requester_id: &job.requester_id,
            providers: &providers,
        };
        self.authorize(Some(p), action, &target, &object).await?;
        Ok((p, job, grant))
    }

    /// A job with its progress, as `caller` may see it.
    pub async fn job_view<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<JobSight> {
        let (p, job, grant) = self
            .authorized_job(caller.into(), Action::ReadJob, id)
            .await?;
        Ok(Self::sight(p, &grant, self.view_of(job).await?))
    }

    /// Waits until the job leaves `queued`/`running`/`checked` or `timeout`
    /// passes, then returns it (a long poll for clients and benchmarks).
    pub async fn wait_job<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        timeout: Duration,
    ) -> Result<JobSight> {
        let (p, job, grant) = self
            .authorized_job(caller.into(), Action::ReadJob, id)
            .await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first = Some(job);
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = self.jobs.changed.notified();
            let current = match first.take() {
                Some(j) => j,
                None => self.job(id).await?,
            };
            let view = self.view_of(current).await?;
            let settled = !matches!(
                view.job.status,
                JobStatus::Queued | JobStatus::Running | JobStatus::Checked
            );
            if settled || tokio::time::Instant::now() >= deadline {
                return Ok(Self::sight(p, &grant, view));
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
    pub async fn jobs_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<JobSight>> {
        let p = self.list_for(caller.into(), "jobs").await?;
        let jobs = self.store.list_jobs().await?;
        let mut out = Vec::new();
        for j in jobs {
            let grant = self.grant(&j.grant_id).await?;
            let providers = grant.providers();
            let object = Object::Job {
                requester_id: &j.requester_id,
                providers: &providers,
            };
            if authz::may_read(p, &object) {
                out.push(Self::sight(p, &grant, self.view_of(j).await?));
            }
        }
        Ok(out)
    }

    /// Cancels a queued or running job, or withdraws one waiting for review;
    /// audited as `job.cancel`.
    pub async fn cancel_job<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<JobSight> {
        let (p, job, grant) = self
            .authorized_job(caller.into(), Action::CancelJob, id)
            .await?;
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
        let view = self.view_of(self.job(id).await?).await?;
        Ok(Self::sight(p, &grant, view))
    }
}

/// A model whose input is row-level on a grant whose usage method allows
/// only aggregates is refused by the plan policy as `row_level_output`; say
/// that the grant's usage method decided it, and which methods would allow it.
fn model_input_refusal(e: Error, grant: &Grant, model: bool) -> Error {
    let forbids_rows = !matches!(
        grant.usage_method,
        UsageMethod::ModelResults | UsageMethod::InDomain
    );
    match e {
        Error::Refused { code, .. } if model && forbids_rows && code == "row_level_output" => {
            Error::Refused {
                code,
                message: format!(
                    "this grant's usage method is `{}`: a model reads individual rows only under \
                     `model_results` or `in_domain` (apply for a grant with one of them), so its \
                     input here must aggregate many rows",
                    serde_json::to_value(grant.usage_method)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ),
            }
        }
        e => e,
    }
}

/// Whether a session on `grant` over `specs` may output only aggregates:
/// rows may flow into a model (never out) where the usage method lets a
/// model work on the data inside the domain.
fn aggregate_only(grant: &Grant, specs: &[TableSpec], model_input: bool) -> bool {
    if model_input {
        !matches!(
            grant.usage_method,
            UsageMethod::ModelResults | UsageMethod::InDomain
        )
    } else {
        matches!(
            grant.usage_method,
            UsageMethod::Invisible | UsageMethod::ModelResults
        ) || specs.iter().any(|s| !s.policy.row_level_output)
    }
}
