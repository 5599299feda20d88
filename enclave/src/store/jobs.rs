//! Jobs, output reviews and releases.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::access::{ChargeRefusal, charge_on};
use super::identity::{enum_from_str, json_from_str, json_to_string};
use super::seal::{
    GRANTS, JOB_REVIEWS, JOBS, KeyValue, PRIVACY_LEDGER, RELEASES, Sealer, check_row, reseal,
};
use super::{Store, now_rfc3339};
use crate::access::Usage;
use crate::keyring::WrappedKey;
use crate::{Error, Result};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Running in the domain.
    Running,
    /// Finished and checked; about to be released or queued for review.
    Checked,
    /// Waiting for output review.
    PendingReview,
    /// Released: the result can be downloaded with its certificate.
    Released,
    /// Refused by a reviewer (or by the checks).
    Rejected,
    /// Failed while running (error code and message say why, without data).
    Failed,
    /// Cancelled by its requester or an admin.
    Cancelled,
}

impl JobStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Checked => "checked",
            JobStatus::PendingReview => "pending_review",
            JobStatus::Released => "released",
            JobStatus::Rejected => "rejected",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// No transition leaves these.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Released | JobStatus::Rejected | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A dataset version a job read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDataset {
    pub dataset_id: String,
    pub version: u64,
    /// SHA-256 of the version's data file.
    pub sha256: String,
}

/// A stored job. The candidate result itself is a sealed file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub grant_id: String,
    pub requester_id: String,
    pub requester_username: String,
    /// `sql` or `model`.
    pub kind: String,
    /// The SQL, or a model job's input SQL.
    pub query_text: String,
    pub status: JobStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub plan_summary: Option<String>,
    /// The policy's lineage facts (`query::PlanFacts`).
    pub facts: Option<serde_json::Value>,
    pub datasets: Vec<JobDataset>,
    /// The disclosure checks (`disclosure::CheckReport`).
    pub checks: Option<serde_json::Value>,
    pub rows_scanned: u64,
    pub result_rows: Option<u64>,
    pub suppressed_groups: Option<u64>,
    pub result_sha256: Option<String>,
    pub reviewers_required: u32,
    pub cpu_seconds: f64,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub revision: i64,
    /// Model jobs: the component's SHA-256.
    pub model_sha256: Option<String>,
    /// Model jobs: the params string handed to `run`.
    pub model_params: Option<String>,
    /// Differentially private jobs: ε and δ spent, budget left, mechanisms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::dp::DpReport>,
}

/// One output-review vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub job_id: String,
    pub reviewer_id: String,
    pub reviewer_username: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
    pub at: String,
}

/// One released file (sealed on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFile {
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
    pub wrapped_key: WrappedKey,
}

/// A candidate result sealed for its job (and a model job's sealed log).
#[derive(Debug, Clone, Copy)]
pub struct SealedResult<'a> {
    pub sealed: &'a [u8],
    pub key: &'a WrappedKey,
    pub log: Option<(&'a [u8], &'a WrappedKey)>,
    /// The sealed unit sketches of its rows (differencing).
    pub fingerprints: Option<(&'a [u8], &'a WrappedKey)>,
}

/// A stored release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRecord {
    pub id: String,
    pub job_id: String,
    pub grant_id: String,
    /// The signed certificate, verbatim.
    pub certificate_json: String,
    #[serde(skip)]
    pub files: Vec<ReleaseFile>,
    pub released_at: String,
}

const JOB_COLUMNS: &str = "id, grant_id, requester_id, requester_username, kind, query_text, status, \
     error_code, error_message, plan_summary, facts_json, datasets_json, checks_json, rows_scanned, \
     result_rows, suppressed_groups, result_sha256, reviewers_required, cpu_seconds, \
     submitted_at, started_at, finished_at, revision, model_sha256, model_params, dp_json";

/// Placeholders for every column of [`JOB_COLUMNS`].
fn job_placeholders() -> String {
    vec!["?"; JOB_COLUMNS.split(", ").count()].join(", ")
}

fn opt_u64(row: &SqliteRow, col: &str) -> Result<Option<u64>> {
    let v: Option<i64> = row.try_get(col)?;
    v.map(|v| u64::try_from(v).map_err(|_| Error::Internal(format!("stored {col} is negative"))))
        .transpose()
}

fn i64_of(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Internal(format!("{what} too large to store")))
}

fn opt_json(row: &SqliteRow, col: &str) -> Result<Option<serde_json::Value>> {
    let v: Option<String> = row.try_get(col)?;
    v.as_deref().map(|s| json_from_str(s, col)).transpose()
}

fn job_from_row(row: &SqliteRow) -> Result<JobRecord> {
    let datasets: String = row.try_get("datasets_json")?;
    let reviewers: i64 = row.try_get("reviewers_required")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        grant_id: row.try_get("grant_id")?,
        requester_id: row.try_get("requester_id")?,
        requester_username: row.try_get("requester_username")?,
        kind: row.try_get("kind")?,
        query_text: row.try_get("query_text")?,
        status: enum_from_str(row.try_get("status")?, "job status")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        plan_summary: row.try_get("plan_summary")?,
        facts: opt_json(row, "facts_json")?,
        datasets: json_from_str(&datasets, "job datasets")?,
        checks: opt_json(row, "checks_json")?,
        rows_scanned: opt_u64(row, "rows_scanned")?.unwrap_or(0),
        result_rows: opt_u64(row, "result_rows")?,
        suppressed_groups: opt_u64(row, "suppressed_groups")?,
        result_sha256: row.try_get("result_sha256")?,
        reviewers_required: u32::try_from(reviewers)
            .map_err(|_| Error::Internal("stored reviewer count out of range".into()))?,
        cpu_seconds: row.try_get("cpu_seconds")?,
        submitted_at: row.try_get("submitted_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        revision: row.try_get("revision")?,
        model_sha256: row.try_get("model_sha256")?,
        model_params: row.try_get("model_params")?,
        dp: opt_json(row, "dp_json")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| Error::Internal("stored dp_json does not parse".into()))?,
    })
}

impl Store {
    fn sealed_job(&self, row: &SqliteRow) -> Result<JobRecord> {
        self.sealer.check(&JOBS, row)?;
        job_from_row(row)
    }

    fn sealed_release(&self, row: &SqliteRow) -> Result<ReleaseRecord> {
        self.sealer.check(&RELEASES, row)?;
        release_from_row(row)
    }
}

fn release_from_row(row: &SqliteRow) -> Result<ReleaseRecord> {
    let files: String = row.try_get("files_json")?;
    Ok(ReleaseRecord {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        grant_id: row.try_get("grant_id")?,
        certificate_json: row.try_get("certificate_json")?,
        files: json_from_str(&files, "release files")?,
        released_at: row.try_get("released_at")?,
    })
}

impl Store {
    /// Stores a new job.
    pub async fn insert_job(&self, j: &JobRecord) -> Result<()> {
        let q = format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({})",
            job_placeholders()
        );
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        bind_job(sqlx::query(&q), j)?.execute(&mut *tx).await?;
        reseal(&mut tx, &self.sealer, &JOBS, &[KeyValue::Text(&j.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One job, or `None`.
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, {} FROM jobs WHERE id = ?",
            JOBS.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_job(r)).transpose()
    }

    /// Every job, newest first.
    pub async fn list_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, {} FROM jobs ORDER BY submitted_at DESC, id",
            JOBS.select("")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_job(r)).collect()
    }

    /// Jobs in `status`.
    pub async fn jobs_in(&self, status: JobStatus) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS}, {} FROM jobs WHERE status = ? ORDER BY submitted_at, id",
            JOBS.select("")
        ))
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_job(r)).collect()
    }

    /// Writes `j` over the stored job if its revision is still `j.revision`;
    /// returns the new revision. A concurrent change is [`Error::Conflict`].
    pub async fn save_job(&self, j: &JobRecord) -> Result<i64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        update_job(&mut tx, &self.sealer, j).await?;
        tx.commit().await?;
        Ok(j.revision + 1)
    }

    /// A new job, and the charge for it, in one transaction: the job exists
    /// exactly when its charge was taken. A refused charge stores nothing.
    /// A DP job's report gets the budget left after this very charge.
    /// `shape` is the job's plan shape and variant ([`Self::record_job_shape`]).
    pub async fn insert_job_charged(
        &self,
        j: &mut JobRecord,
        charge: &Usage,
        budgets: &crate::access::Budgets,
        shape: Option<&(String, String)>,
    ) -> Result<std::result::Result<(), ChargeRefusal>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(used) = charge_on(&mut tx, &self.sealer, &j.grant_id, charge).await? else {
            drop(tx);
            return Ok(Err(self.charge_refusal(&j.grant_id, charge).await?));
        };
        // Privacy loss is also the researcher's, across all their grants.
        let mut researcher_left = None;
        if let Some(cap) = j.dp.as_ref().and_then(|d| d.researcher_cap.clone()) {
            let Some((epsilon_used, delta_used)) =
                charge_researcher(&mut tx, &self.sealer, &cap, &j.requester_id, charge).await?
            else {
                drop(tx);
                return Ok(Err(ChargeRefusal::Budget(RESEARCHER_BUDGET)));
            };
            researcher_left = Some(crate::dp::BudgetLeft {
                epsilon: (cap.epsilon - epsilon_used).max(0.0),
                delta: (cap.delta - delta_used).max(0.0),
            });
        }
        if let Some(dp) = &mut j.dp {
            dp.set_budget_left(budgets, &used, researcher_left);
        }
        let q = format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({})",
            job_placeholders()
        );
        bind_job(sqlx::query(&q), j)?.execute(&mut *tx).await?;
        reseal(&mut tx, &self.sealer, &JOBS, &[KeyValue::Text(&j.id)]).await?;
        if let Some((shape, variant)) = shape {
            insert_shape(&mut tx, &j.id, &j.grant_id, shape, variant).await?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The checked job with its sealed candidate result and the CPU time it
    /// used (added to the grant, saturating at the budget), in one transaction.
    pub async fn finish_job(
        &self,
        j: &JobRecord,
        result: Option<SealedResult<'_>>,
        cpu_seconds: f64,
    ) -> Result<i64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        update_job(&mut tx, &self.sealer, j).await?;
        if let Some(r) = result {
            let (log, log_key) = match r.log {
                Some((sealed, key)) => (Some(sealed), Some(json_to_string(key, "log key")?)),
                None => (None, None),
            };
            sqlx::query(
                "INSERT INTO job_results (job_id, sealed, wrapped_key_json, sha256, log_sealed, log_key_json) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&j.id)
            .bind(r.sealed)
            .bind(json_to_string(r.key, "result key")?)
            .bind(j.result_sha256.as_deref().unwrap_or(""))
            .bind(log)
            .bind(log_key)
            .execute(&mut *tx)
            .await?;
            if let Some((sealed, key)) = r.fingerprints {
                sqlx::query(
                    "INSERT INTO job_fingerprints (job_id, grant_id, requester_id, sealed, wrapped_key_json) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&j.id)
                .bind(&j.grant_id)
                .bind(&j.requester_id)
                .bind(sealed)
                .bind(json_to_string(key, "fingerprint key")?)
                .execute(&mut *tx)
                .await?;
            }
        }
        if cpu_seconds > 0.0 && cpu_seconds.is_finite() {
            let key = [KeyValue::Text(&j.grant_id)];
            check_row(&mut tx, &self.sealer, &GRANTS, &key).await?;
            sqlx::query(
                "UPDATE grants SET cpu_seconds_used = min(cpu_seconds_used + ?, \
                 json_extract(grant_json, '$.budgets.cpu_seconds')) WHERE id = ?",
            )
            .bind(cpu_seconds)
            .bind(&j.grant_id)
            .execute(&mut *tx)
            .await?;
            reseal(&mut tx, &self.sealer, &GRANTS, &key).await?;
        }
        tx.commit().await?;
        Ok(j.revision + 1)
    }

    /// The sealed unit sketches of every other result of `grant_id` or of
    /// `requester_id` that is released or may be (checked, pending review):
    /// (job id, sealed, key), oldest first.
    pub async fn earlier_fingerprints(
        &self,
        grant_id: &str,
        requester_id: &str,
        except_job: &str,
    ) -> Result<Vec<(String, Vec<u8>, WrappedKey)>> {
        let rows = sqlx::query(
            "SELECT f.job_id, f.sealed, f.wrapped_key_json FROM job_fingerprints f \
             JOIN jobs j ON j.id = f.job_id \
             WHERE (f.grant_id = ? OR f.requester_id = ?) AND f.job_id <> ? \
               AND j.status IN ('checked', 'pending_review', 'released') \
             ORDER BY j.submitted_at, j.id",
        )
        .bind(grant_id)
        .bind(requester_id)
        .bind(except_job)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let key: String = r.try_get("wrapped_key_json")?;
                Ok((
                    r.try_get("job_id")?,
                    r.try_get("sealed")?,
                    json_from_str(&key, "fingerprint key")?,
                ))
            })
            .collect()
    }

    /// Replaces a job's sealed sketches (its cells sketched after the fact,
    /// when a later comparison needed them).
    pub async fn update_fingerprints(
        &self,
        job_id: &str,
        sealed: &[u8],
        key: &WrappedKey,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE job_fingerprints SET sealed = ?, wrapped_key_json = ? WHERE job_id = ?",
        )
        .bind(sealed)
        .bind(json_to_string(key, "fingerprint key")?)
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ids of [`Self::earlier_fingerprints`], without the records.
    pub async fn earlier_fingerprint_ids(
        &self,
        grant_id: &str,
        requester_id: &str,
        except_job: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT f.job_id FROM job_fingerprints f \
             JOIN jobs j ON j.id = f.job_id \
             WHERE (f.grant_id = ? OR f.requester_id = ?) AND f.job_id <> ? \
               AND j.status IN ('checked', 'pending_review', 'released') \
             ORDER BY j.submitted_at, j.id",
        )
        .bind(grant_id)
        .bind(requester_id)
        .bind(except_job)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|r| Ok(r.try_get("job_id")?)).collect()
    }

    /// A job's own sealed sketches, if it has them.
    pub async fn job_fingerprints(&self, job_id: &str) -> Result<Option<(Vec<u8>, WrappedKey)>> {
        let row =
            sqlx::query("SELECT sealed, wrapped_key_json FROM job_fingerprints WHERE job_id = ?")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| -> Result<(Vec<u8>, WrappedKey)> {
            let key: String = r.try_get("wrapped_key_json")?;
            Ok((
                r.try_get("sealed")?,
                json_from_str(&key, "fingerprint key")?,
            ))
        })
        .transpose()
    }

    /// A job's sealed candidate result and its wrapped key.
    pub async fn job_result(&self, job_id: &str) -> Result<Option<(Vec<u8>, WrappedKey)>> {
        let row = sqlx::query("SELECT sealed, wrapped_key_json FROM job_results WHERE job_id = ?")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| -> Result<(Vec<u8>, WrappedKey)> {
            let key: String = r.try_get("wrapped_key_json")?;
            Ok((r.try_get("sealed")?, json_from_str(&key, "result key")?))
        })
        .transpose()
    }

    /// A model job's sealed log and its wrapped key, if it has one.
    pub async fn job_log(&self, job_id: &str) -> Result<Option<(Vec<u8>, WrappedKey)>> {
        let row = sqlx::query(
            "SELECT log_sealed, log_key_json FROM job_results WHERE job_id = ? AND log_sealed IS NOT NULL",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<(Vec<u8>, WrappedKey)> {
            let key: String = r.try_get("log_key_json")?;
            Ok((r.try_get("log_sealed")?, json_from_str(&key, "log key")?))
        })
        .transpose()
    }

    /// Queued or running jobs of a researcher.
    pub async fn active_jobs_of(&self, requester_id: &str) -> Result<u64> {
        let row = sqlx::query(
            "SELECT count(*) AS n FROM jobs WHERE requester_id = ? AND status IN ('queued', 'running')",
        )
        .bind(requester_id)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n.max(0) as u64)
    }

    /// Records a review vote; a second vote by the same reviewer is a conflict.
    pub async fn insert_review(&self, r: &ReviewRecord) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "INSERT INTO job_reviews (job_id, reviewer_id, reviewer_username, decision, comment, at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.job_id)
        .bind(&r.reviewer_id)
        .bind(&r.reviewer_username)
        .bind(&r.decision)
        .bind(&r.comment)
        .bind(&r.at)
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {
                let key = [KeyValue::Text(&r.job_id), KeyValue::Text(&r.reviewer_id)];
                reseal(&mut tx, &self.sealer, &JOB_REVIEWS, &key).await?;
                tx.commit().await?;
                Ok(())
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::Conflict(
                "you have already reviewed this result".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The review votes on a job, oldest first.
    /// Records that `reviewer_id` fetched the packet of `job_id` at `revision`.
    pub async fn record_packet_read(
        &self,
        job_id: &str,
        reviewer_id: &str,
        revision: i64,
        at: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_review_reads (job_id, reviewer_id, job_revision, at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (job_id, reviewer_id) DO UPDATE SET job_revision = excluded.job_revision, at = excluded.at",
        )
        .bind(job_id)
        .bind(reviewer_id)
        .bind(revision)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a job's plan shape and variant ([`crate::query::shape`]).
    pub async fn record_job_shape(
        &self,
        job_id: &str,
        grant_id: &str,
        shape: &str,
        variant: &str,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_shape(&mut conn, job_id, grant_id, shape, variant).await
    }

    /// The jobs of `job_id`'s grant with its plan shape (oldest first) and
    /// how many distinct variants (constants) they hold; `None` for a job
    /// without a recorded shape.
    pub async fn shape_campaign(&self, job_id: &str) -> Result<Option<(u64, Vec<String>)>> {
        let rows = sqlx::query(
            "SELECT s.job_id, s.variant FROM job_shapes s \
             JOIN job_shapes me ON me.grant_id = s.grant_id AND me.shape = s.shape \
             JOIN jobs j ON j.id = s.job_id \
             WHERE me.job_id = ? ORDER BY j.submitted_at, j.id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut jobs = Vec::new();
        let mut variants = std::collections::BTreeSet::new();
        for r in rows {
            jobs.push(r.try_get::<String, _>("job_id")?);
            variants.insert(r.try_get::<String, _>("variant")?);
        }
        Ok(Some((variants.len() as u64, jobs)))
    }

    /// The revision of `job_id` whose packet `reviewer_id` last fetched.
    pub async fn packet_read(&self, job_id: &str, reviewer_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT job_revision FROM job_review_reads WHERE job_id = ? AND reviewer_id = ?",
        )
        .bind(job_id)
        .bind(reviewer_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("job_revision")).transpose()?)
    }

    pub async fn reviews(&self, job_id: &str) -> Result<Vec<ReviewRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT *, {} FROM job_reviews WHERE job_id = ? ORDER BY at, reviewer_id",
            JOB_REVIEWS.select("")
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        self.sealer.check_all(&JOB_REVIEWS, &rows)?;
        rows.iter()
            .map(|row| -> Result<ReviewRecord> {
                Ok(ReviewRecord {
                    job_id: row.try_get("job_id")?,
                    reviewer_id: row.try_get("reviewer_id")?,
                    reviewer_username: row.try_get("reviewer_username")?,
                    decision: row.try_get("decision")?,
                    comment: row.try_get("comment")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    /// Claims `job` for release before anything is sealed or charged: one
    /// conditional UPDATE that moves its revision on while it is still
    /// `checked` or `pending_review` at `revision`. A racing decision (a
    /// rejection, a second release) then fails its own revision check; the
    /// loser of the race gets `false` here and does nothing.
    pub async fn claim_job_for_release(&self, id: &str, revision: i64) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let key = [KeyValue::Text(id)];
        check_row(&mut tx, &self.sealer, &JOBS, &key).await?;
        let n = sqlx::query(
            "UPDATE jobs SET revision = revision + 1 \
             WHERE id = ? AND revision = ? AND status IN ('checked', 'pending_review')",
        )
        .bind(id)
        .bind(revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            reseal(&mut tx, &self.sealer, &JOBS, &key).await?;
            tx.commit().await?;
        }
        Ok(n == 1)
    }

    /// Stores a release, marks its job released (revision-checked) and
    /// charges the released rows to the grant, in one transaction: the
    /// budget is charged exactly when the release exists.
    pub async fn insert_release(
        &self,
        r: &ReleaseRecord,
        job: &JobRecord,
        charge: &Usage,
    ) -> Result<std::result::Result<(), ChargeRefusal>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let key = [KeyValue::Text(&job.id)];
        check_row(&mut tx, &self.sealer, &JOBS, &key).await?;
        let n = sqlx::query(
            "UPDATE jobs SET status = 'released', finished_at = ?, revision = revision + 1 \
             WHERE id = ? AND revision = ?",
        )
        .bind(now_rfc3339())
        .bind(&job.id)
        .bind(job.revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(Error::Conflict(
                "the job changed meanwhile; reload it and try again".into(),
            ));
        }
        reseal(&mut tx, &self.sealer, &JOBS, &key).await?;
        if charge_on(&mut tx, &self.sealer, &r.grant_id, charge)
            .await?
            .is_none()
        {
            drop(tx);
            return Ok(Err(self.charge_refusal(&r.grant_id, charge).await?));
        }
        sqlx::query(
            "INSERT INTO releases (id, job_id, grant_id, certificate_json, files_json, released_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.job_id)
        .bind(&r.grant_id)
        .bind(&r.certificate_json)
        .bind(json_to_string(&r.files, "release files")?)
        .bind(&r.released_at)
        .execute(&mut *tx)
        .await?;
        reseal(&mut tx, &self.sealer, &RELEASES, &[KeyValue::Text(&r.id)]).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// One release, or `None`.
    pub async fn release(&self, id: &str) -> Result<Option<ReleaseRecord>> {
        let row = sqlx::query(&format!(
            "SELECT *, {} FROM releases WHERE id = ?",
            RELEASES.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_release(r)).transpose()
    }

    /// The release of a job, if any.
    pub async fn release_of_job(&self, job_id: &str) -> Result<Option<ReleaseRecord>> {
        let row = sqlx::query(&format!(
            "SELECT *, {} FROM releases WHERE job_id = ?",
            RELEASES.select("")
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_release(r)).transpose()
    }

    /// The releases of a grant, oldest first.
    pub async fn releases_of_grant(&self, grant_id: &str) -> Result<Vec<ReleaseRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT *, {} FROM releases WHERE grant_id = ? ORDER BY released_at, id",
            RELEASES.select("")
        ))
        .bind(grant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_release(r)).collect()
    }

    /// Every release, newest first.
    pub async fn list_releases(&self) -> Result<Vec<ReleaseRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT *, {} FROM releases ORDER BY released_at DESC, id",
            RELEASES.select("")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_release(r)).collect()
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Writes `j` over its stored row (revision-checked) with a new MAC; the
/// stored row must carry a valid one.
async fn update_job(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    j: &JobRecord,
) -> Result<()> {
    let key = [KeyValue::Text(&j.id)];
    check_row(&mut *conn, sealer, &JOBS, &key).await?;
    // The model and DP columns never change after submission.
    let sets: Vec<String> = JOB_COLUMNS
        .split(", ")
        .take_while(|c| *c != "revision")
        .filter(|c| *c != "id")
        .map(|c| format!("{c} = ?"))
        .collect();
    let q = format!(
        "UPDATE jobs SET {}, revision = revision + 1 WHERE id = ? AND revision = ?",
        sets.join(", ")
    );
    let n = bind_job_fields(sqlx::query(&q), j)?
        .bind(&j.id)
        .bind(j.revision)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::Conflict(
            "the job changed meanwhile; reload it and try again".into(),
        ));
    }
    reseal(conn, sealer, &JOBS, &key).await
}

fn bind_job<'q>(q: Query<'q>, j: &'q JobRecord) -> Result<Query<'q>> {
    // The model and DP columns follow `revision` in [`JOB_COLUMNS`].
    let dp =
        j.dp.as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| Error::Internal("a DP report always serializes".into()))?;
    bind_job_fields(q.bind(&j.id), j).map(|q| {
        q.bind(j.revision)
            .bind(&j.model_sha256)
            .bind(&j.model_params)
            .bind(dp)
    })
}

/// Binds every column of [`JOB_COLUMNS`] but `id` and `revision`, in order.
fn bind_job_fields<'q>(q: Query<'q>, j: &'q JobRecord) -> Result<Query<'q>> {
    let opt_json = |v: &Option<serde_json::Value>, what| {
        v.as_ref().map(|v| json_to_string(v, what)).transpose()
    };
    Ok(q.bind(&j.grant_id)
        .bind(&j.requester_id)
        .bind(&j.requester_username)
        .bind(&j.kind)
        .bind(&j.query_text)
        .bind(j.status.as_str())
        .bind(&j.error_code)
        .bind(&j.error_message)
        .bind(&j.plan_summary)
        .bind(opt_json(&j.facts, "job facts")?)
        .bind(json_to_string(&j.datasets, "job datasets")?)
        .bind(opt_json(&j.checks, "job checks")?)
        .bind(i64_of(j.rows_scanned, "rows scanned")?)
        .bind(
            j.result_rows
                .map(|v| i64_of(v, "result rows"))
                .transpose()?,
        )
        .bind(
            j.suppressed_groups
                .map(|v| i64_of(v, "suppressed groups"))
                .transpose()?,
        )
        .bind(&j.result_sha256)
        .bind(i64::from(j.reviewers_required))
        .bind(j.cpu_seconds)
        .bind(&j.submitted_at)
        .bind(&j.started_at)
        .bind(&j.finished_at))
}

/// Names the per-researcher budget in a refusal ("the grant's … budget").
const RESEARCHER_BUDGET: &str =
    "epsilon and delta (the dataset's, shared by all of the researcher's grants on it)";

/// Adds `charge`'s ε and δ to the researcher's spending on the dataset, in
/// one conditional UPDATE like the grant's: the spending after it, or `None`
/// when it would pass `cap`.
async fn charge_researcher(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    cap: &crate::dp::ResearcherCap,
    researcher: &str,
    charge: &Usage,
) -> Result<Option<(f64, f64)>> {
    let at = now_rfc3339();
    let created = sqlx::query(
        "INSERT INTO privacy_ledger (dataset_id, researcher_id, epsilon_used, delta_used, updated_at) \
         VALUES (?1, ?2, 0, 0, ?3) ON CONFLICT (dataset_id, researcher_id) DO NOTHING",
    )
    .bind(&cap.dataset_id)
    .bind(researcher)
    .bind(&at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let key = [KeyValue::Text(&cap.dataset_id), KeyValue::Text(researcher)];
    // A row just created has no MAC yet: seal it; an old one is checked.
    if created == 1 {
        reseal(conn, sealer, &PRIVACY_LEDGER, &key).await?;
    }
    check_row(conn, sealer, &PRIVACY_LEDGER, &key).await?;
    // The tolerances match the grant's charge.
    let row = sqlx::query(
        "UPDATE privacy_ledger SET epsilon_used = epsilon_used + ?1, delta_used = delta_used + ?2, \
         updated_at = ?3 WHERE dataset_id = ?4 AND researcher_id = ?5 \
         AND epsilon_used + ?1 <= ?6 + 1e-9 AND delta_used + ?2 <= ?7 * (1 + 1e-9) \
         RETURNING epsilon_used, delta_used",
    )
    .bind(charge.epsilon)
    .bind(charge.delta)
    .bind(&at)
    .bind(&cap.dataset_id)
    .bind(researcher)
    .bind(cap.epsilon)
    .bind(cap.delta)
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_some() {
        reseal(conn, sealer, &PRIVACY_LEDGER, &key).await?;
    }
    Ok(row.map(|r| (r.get::<f64, _>(0), r.get::<f64, _>(1))))
}

async fn insert_shape(
    conn: &mut sqlx::SqliteConnection,
    job_id: &str,
    grant_id: &str,
    shape: &str,
    variant: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO job_shapes (job_id, grant_id, shape, variant) VALUES (?, ?, ?, ?) \
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(job_id)
    .bind(grant_id)
    .bind(shape)
    .bind(variant)
    .execute(conn)
    .await?;
    Ok(())
}
