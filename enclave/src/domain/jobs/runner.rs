//! Running a job: the worker permit, execution on the query runtime under
//! its limits, state writes, CPU charging, failures, and recovery at start.

use std::sync::Arc;
use std::time::Instant;

use crate::access::Grant;
use crate::audit::Outcome;
use crate::domain::{Actor, Domain};
use crate::query::{self, Guard, PlannedQuery, QuerySession};
use crate::store::{JobRecord, JobStatus};
use crate::{Error, Result};

use super::job_object;

impl Domain {
    pub(super) async fn set_job(&self, job: &mut JobRecord) -> Result<()> {
        job.revision = self.store.save_job(job).await?;
        self.jobs.changed.notify_waiters();
        Ok(())
    }

    /// Ends a job as failed or cancelled, with a value-free reason; audited.
    pub(super) async fn end_job(&self, job: &mut JobRecord, e: &Error) -> Result<()> {
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

    pub(super) async fn run_job(
        &self,
        id: &str,
        grant: &Grant,
        session: QuerySession,
        planned: PlannedQuery,
        guard: Arc<Guard>,
        origin: SessionOrigin,
    ) -> Result<()> {
        let SessionOrigin { replay, taken } = origin;
        let Some((permit, mut job, started)) =
            self.start_job(id, &guard, serde_json::json!({})).await?
        else {
            return Ok(());
        };
        // Counts first: the sketches only if a comparison needs them.
        let key = query::fingerprint::FingerprintKey::from_keyring(&self.keyring);
        let lazy = self
            .job_options()
            .lazy_sketches
            .then(|| super::lazy::lazy_plan(&session, &planned, &key))
            .flatten();
        let (ran, eager) = match lazy {
            Some(lazy) => (lazy, Some(planned)),
            None => (planned, None),
        };
        let executed = self
            .execute_on_query_runtime(session, ran, Arc::clone(&guard))
            .await;
        let (session, ran, executed) = executed?;
        let differenced = match executed.map_err(query::job_failure) {
            Ok(executed) => {
                self.difference_lazily(&job, session, ran, executed, eager, &guard, &replay)
                    .await
            }
            Err(e) => Err(e),
        };
        drop(permit);
        let elapsed = match &differenced {
            Ok((_, _, e, _)) => e.elapsed.as_secs_f64(),
            Err(_) => self.time_since_start(id).unwrap_or(0.0),
        };
        job.cpu_seconds = elapsed;
        job.rows_scanned = guard
            .rows_scanned
            .load(std::sync::atomic::Ordering::Relaxed);
        // Time spent is charged whatever the outcome (saturating at the budget).
        let (outcome, checked) = match differenced {
            Err(e) => (self.fail_job(id, grant, elapsed, &e).await, None),
            Ok((session, planned, executed, differencing)) => {
                let outcome = match self
                    .check_result(&session, &planned, &executed, &mut job, differencing)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => self.fail_job(id, grant, elapsed, &e).await,
                };
                (outcome, Some(session))
            }
        };
        // A checked job's session serves the grant's next job.
        if let (Ok(()), Some(t), Some(session)) = (&outcome, taken, checked) {
            self.jobs.warm.give_back(t, session);
        }
        // Committed long ago (the later events commit after it); checked for errors.
        started.await?;
        outcome
    }

    /// Waits for a worker and marks the job started; `None` when it was
    /// cancelled while queued (then ended here) or is no longer queued. The
    /// `job.start` event (with `details`) is queued and commits while the job
    /// runs; every later event of the job commits after it (the log keeps
    /// order). The caller awaits the returned future for its outcome.
    pub(in crate::domain) async fn start_job(
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
    pub(in crate::domain) async fn fail_job(
        &self,
        id: &str,
        grant: &Grant,
        cpu_seconds: f64,
        e: &Error,
    ) -> Result<()> {
        let spent = cpu_seconds.max(self.time_since_start(id).unwrap_or(0.0));
        let charged = self.charge_cpu(&grant.id, spent).await;
        let mut job = self.job(id).await?;
        // Kept on the record: a cancelled or failed job shows what it cost.
        job.cpu_seconds = charged;
        self.end_job(&mut job, e).await
    }

    /// Seconds since the job took its worker: what it has cost the domain so
    /// far (execution, checks, sketches, sealing), which the grant is charged.
    pub(in crate::domain) fn time_since_start(&self, id: &str) -> Option<f64> {
        self.jobs
            .running
            .lock()
            .expect("job map lock")
            .get(id)
            .and_then(|r| r.started)
            .map(|t| t.elapsed().as_secs_f64())
    }

    /// The runtime queries (and model inputs) run on, when it could be built.
    pub(in crate::domain) fn jobs_runtime(&self) -> Option<&tokio::runtime::Runtime> {
        self.jobs.runtime.as_ref()
    }

    /// Runs a query on the query runtime and hands the session back.
    pub(super) async fn execute_on_query_runtime(
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
    /// Returns the seconds charged.
    pub(super) async fn charge_cpu(&self, grant_id: &str, seconds: f64) -> f64 {
        let left = match self.grant(grant_id).await {
            Ok(g) => (g.budgets.cpu_seconds - g.usage.cpu_seconds).max(0.0),
            Err(_) => return 0.0,
        };
        let charge = crate::access::Usage {
            cpu_seconds: seconds.min(left),
            ..Default::default()
        };
        match self.store.charge_grant(grant_id, &charge).await {
            Ok(_) => charge.cpu_seconds,
            Err(e) => {
                tracing::error!(error = %e, "charging CPU time failed");
                0.0
            }
        }
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
}

/// Where a job's session came from: how to re-run its plan later (lazy
/// sketches) and the warm slot to give it back to (SQL jobs).
pub(super) struct SessionOrigin {
    pub replay: super::lazy::Replay,
    pub taken: Option<super::warm::Taken>,
}
