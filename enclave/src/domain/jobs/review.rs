//! Output review: the queue, the reviewer's packet (the candidate, the
//! verdicts, the differencing pairs side by side) and the blind votes.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::Grant;
use crate::access::authz::{self, Action};
use crate::access::output_review;
use crate::audit::Outcome;
use crate::disclosure::{self};
use crate::domain::{Actor, Domain};
use crate::identity::Principal;
use crate::release::{self};
use crate::storage::blob;
use crate::store::{JobRecord, JobStatus, ReviewRecord};
use crate::{Error, Result};

use super::{JobView, job_object};

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
    /// The arithmetic that would expose someone, in words (for the reviewer:
    /// "row 3 of this result against row 7 of job … differ by 1 person").
    pub explanation: String,
}

/// What subtracting the two rows of `pair` gives away.
fn explain(pair: &disclosure::differencing::Pair, this_job: &str, other_status: &str) -> String {
    let other = if pair.other_job_id == this_job {
        "this result".to_string()
    } else {
        format!("job {} ({other_status})", pair.other_job_id)
    };
    let persons = match pair.units_differing {
        1 => "1 person".to_string(),
        n => format!("{n} persons"),
    };
    format!(
        "row {} of this result and row {} of {other} are computed over the same persons but \
         {persons} ({} records): the difference of their values is what {persons} contribute",
        pair.row, pair.other_row, pair.records_differing
    )
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approve,
    Reject,
}

/// Whether `p` reviews outputs under `grant`.
pub(super) fn reviews_for(p: &Principal, grant: &Grant) -> bool {
    authz::reviews_outputs(p, &grant.providers())
}

/// A JSON value for one cell (for reviewers).
pub(super) fn cell_json(col: &ArrayRef, row: usize) -> serde_json::Value {
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

pub(super) fn rows_json(batches: &[RecordBatch]) -> Vec<serde_json::Value> {
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

impl Domain {
    /// Jobs waiting for `p`'s review.
    pub async fn review_queue<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<JobRecord>> {
        let p = self.list_for(caller.into(), "reviews").await?;
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
    pub(super) async fn differencing_pairs(
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
            &blob::SealedFor::Differencing(&job.id).aad(),
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
                explanation: explain(&pair, &job.id, other.status.as_str()),
            });
        }
        Ok(out)
    }

    /// The review packet of a job: query, plan, verdicts, the candidate
    /// result, the grant's earlier releases; other votes only after voting.
    /// Audited as `job.review_read`.
    pub async fn review_packet<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ReviewPacket> {
        let (p, job, _) = self
            .authorized_job(caller.into(), Action::ReviewOutput, id)
            .await?;
        let requester = self.identity.get_user_by_id(&job.requester_id).await?;
        output_review::check_output_reviewer(p, &requester)?;
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
        self.store
            .record_packet_read(id, &p.user_id, job.revision, &crate::store::now_rfc3339())
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
    pub async fn review_job<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        decision: ReviewDecision,
        comment: &str,
    ) -> Result<JobView> {
        let (p, mut job, grant) = self
            .authorized_job(caller.into(), Action::ReviewOutput, id)
            .await?;
        let requester = self.identity.get_user_by_id(&job.requester_id).await?;
        output_review::check_output_reviewer(p, &requester)?;
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
        let read = self.store.packet_read(id, &p.user_id).await?;
        output_review::check_packet_read(read, job.revision)?;
        let mut earlier_voters = Vec::new();
        for v in self.store.reviews(id).await? {
            earlier_voters.push(self.identity.get_user_by_id(&v.reviewer_id).await?);
        }
        output_review::check_one_vote_per_person(p, &earlier_voters)?;
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
            return self.view_of(job).await;
        }
        let votes = self.store.reviews(id).await?;
        let approvals: Vec<&ReviewRecord> =
            votes.iter().filter(|v| v.decision == "approve").collect();
        let mut voters = Vec::with_capacity(approvals.len());
        for v in &approvals {
            voters.push(self.identity.get_user_by_id(&v.reviewer_id).await?);
        }
        let counted: Vec<output_review::Approval> = voters
            .iter()
            .map(|u| output_review::Approval {
                role: u.role,
                provider_agencies: &u.provider_agencies,
                person: &u.person,
                organisation_id: &u.organisation_id,
            })
            .collect();
        if output_review::approvals_release(&counted, job.reviewers_required, &grant.providers()) {
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
        self.view_of(job).await
    }
}
