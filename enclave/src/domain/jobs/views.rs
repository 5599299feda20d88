//! What each caller sees of a job. Its reviewers, the platform and auditors
//! see the stored record; its requester sees only what the query and the
//! grant decide until a person releases the result: no count, hash or
//! verdict, a failure's code only where the query text explains it, and the
//! run time in coarse steps (ARCHITECTURE.md "What a researcher sees").

use serde::Serialize;

use crate::Result;
use crate::access::Grant;
use crate::access::authz::{self, Object};
use crate::domain::Domain;
use crate::identity::Principal;
use crate::store::{JobDataset, JobRecord, JobStatus};

/// A job as stored, with its progress: for its reviewers, admins and auditors.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    /// Seconds since it started (running) or its run time (finished).
    pub elapsed_seconds: Option<f64>,
    /// The release, once released.
    pub release_id: Option<String>,
}

/// A job as its requester sees it.
#[derive(Debug, Clone, Serialize)]
pub struct OwnJob {
    pub id: String,
    pub grant_id: String,
    /// `sql` or `model`.
    pub kind: String,
    pub query_text: String,
    pub status: JobStatus,
    /// Why it failed, where the query, a limit or a person explains it; any
    /// other failure while running is `query_failed`.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub plan_summary: Option<String>,
    pub datasets: Vec<JobDataset>,
    pub submitted_at: String,
    /// Run time rounded up to a step (1, 10, 60, 600, 3600 s …): the step
    /// is all a researcher learns of how long the data took.
    pub elapsed_seconds: Option<f64>,
    pub model_sha256: Option<String>,
    pub model_params: Option<String>,
    /// Differentially private jobs: ε and δ spent, budget left, mechanisms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::dp::DpReport>,
    /// The release, once released.
    pub release_id: Option<String>,
    /// Rows of the released result, once released.
    pub result_rows: Option<u64>,
}

/// What a caller sees of a job: the stored record, or the requester's view.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum JobSight {
    Full(Box<JobView>),
    Own(Box<OwnJob>),
}

impl JobSight {
    pub fn id(&self) -> &str {
        match self {
            JobSight::Full(v) => &v.job.id,
            JobSight::Own(o) => &o.id,
        }
    }

    pub fn status(&self) -> JobStatus {
        match self {
            JobSight::Full(v) => v.job.status,
            JobSight::Own(o) => o.status,
        }
    }

    /// The stored record, when the caller may see it.
    pub fn full(self) -> Option<JobView> {
        match self {
            JobSight::Full(v) => Some(*v),
            JobSight::Own(_) => None,
        }
    }
}

/// Failure codes a requester may read: each follows from the query text, a
/// resource limit the grant sets, or a person's act — not from a value.
const PLAN_FAILURES: &[&str] = &[
    "cancelled",
    "interrupted",
    "rejected_by_reviewer",
    "deadline_exceeded",
    "memory_limit",
    "budget_exhausted",
    "grant_not_active",
    "model_not_approved",
];

/// The steps a requester's elapsed time is rounded up to.
const TIME_STEPS: &[f64] = &[1.0, 10.0, 60.0, 600.0, 3600.0];

fn coarse_seconds(secs: f64) -> f64 {
    TIME_STEPS
        .iter()
        .copied()
        .find(|step| secs <= *step)
        .unwrap_or_else(|| (secs / 3600.0).ceil() * 3600.0)
}

impl From<JobView> for OwnJob {
    fn from(v: JobView) -> OwnJob {
        let j = v.job;
        let released = v.release_id.is_some();
        let (error_code, error_message) = match j.error_code {
            Some(code) if PLAN_FAILURES.contains(&code.as_str()) => (Some(code), j.error_message),
            Some(_) => (
                Some("query_failed".to_string()),
                Some("the query failed while running".to_string()),
            ),
            None => (None, None),
        };
        OwnJob {
            id: j.id,
            grant_id: j.grant_id,
            kind: j.kind,
            query_text: j.query_text,
            status: j.status,
            error_code,
            error_message,
            plan_summary: j.plan_summary,
            datasets: j.datasets,
            submitted_at: j.submitted_at,
            elapsed_seconds: v.elapsed_seconds.map(coarse_seconds),
            model_sha256: j.model_sha256,
            model_params: j.model_params,
            dp: j.dp,
            release_id: v.release_id,
            result_rows: if released { j.result_rows } else { None },
        }
    }
}

impl Domain {
    /// A job with its progress, as stored.
    pub(super) async fn view_of(&self, mut job: JobRecord) -> Result<JobView> {
        let id = job.id.clone();
        let id = id.as_str();
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

    /// `view` as `p` may see it.
    pub(super) fn sight(p: &Principal, grant: &Grant, view: JobView) -> JobSight {
        let providers = grant.providers();
        let object = Object::Job {
            requester_id: &view.job.requester_id,
            providers: &providers,
        };
        if authz::may_read_job_checks(p, &object) {
            JobSight::Full(Box::new(view))
        } else {
            JobSight::Own(Box::new(OwnJob::from(view)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rounded_up_to_a_step() {
        assert_eq!(coarse_seconds(0.45), 1.0);
        assert_eq!(coarse_seconds(1.0), 1.0);
        assert_eq!(coarse_seconds(1.2), 10.0);
        assert_eq!(coarse_seconds(13.6), 60.0);
        assert_eq!(coarse_seconds(4000.0), 7200.0);
    }
}
