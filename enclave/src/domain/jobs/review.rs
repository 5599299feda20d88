//! Output review: the queue, the reviewer's packet (the candidate, the
//! verdicts, the differencing pairs side by side) and the blind votes.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Serialize)]
pub struct ReviewPacket {
    pub job: JobRecord,
    /// The candidate result (failing cells suppressed), as rows of JSON objects.
    pub result: Vec<serde_json::Value>,
    /// The grant's earlier releases: id, query, rows, time.
    pub earlier_releases: Vec<serde_json::Value>,
    /// A model job's log (model output: may hold data; never released).
    pub model_log: Option<String>,
    /// Rows of this result whose persons differ from those of another row
    /// (an earlier result's, or this one's) by fewer than the threshold,
    /// side by side. Never shown to the researcher.
    pub differencing: Vec<DifferencingPair>,
    /// Three cells (at least one of this result) where the first minus the
    /// other two is fewer than the threshold of persons, with the arithmetic.
    pub trackers: Vec<DifferencingTracker>,
    /// The jobs of this grant whose plans are the same as this one's up to
    /// their constants (an oracle campaign when many), oldest first.
    pub campaign: Option<CampaignPacket>,
    /// The caller's own vote, if any.
    pub my_vote: Option<ReviewRecord>,
    /// Every vote — shown only once the caller voted or the review is over (blind review).
    pub votes: Option<Vec<ReviewRecord>>,
    pub approvals_required: u32,
}

/// Two rows whose persons differ by fewer than the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct DifferencingPair {
    /// The row of this result (an inner cell's index when `inner`), and its cells.
    pub row: u64,
    /// `row` is an aggregate computed inside the query (no cells of its own).
    pub inner: bool,
    pub cells: serde_json::Value,
    /// The other row: its job (this one's for a pair inside the result),
    /// that job's query and state, and the row's cells.
    pub other_job_id: String,
    pub other_query: String,
    pub other_status: String,
    pub other_row: u64,
    pub other_inner: bool,
    pub other_cells: serde_json::Value,
    /// Persons whose records differ between the rows, and by how many records.
    pub units_differing: u64,
    pub records_differing: u64,
    /// The arithmetic that would expose someone, in words (for the reviewer:
    /// "row 3 of this result against row 7 of job … differ by 1 person").
    pub explanation: String,
}

/// What a packet says instead of the query of a job the reviewer may not read.
pub const OTHER_GRANT: &str = "a job of another grant";

/// A three-term tracker: `A − B − C` is fewer than the threshold of persons.
#[derive(Debug, Clone, Serialize)]
pub struct DifferencingTracker {
    /// A, B and C: job, row (or inner cell), and the cells of a row.
    pub terms: Vec<serde_json::Value>,
    pub units_differing: u64,
    pub records_differing: u64,
    /// The arithmetic, in words ("row 0 of job … minus row 1 of job … minus
    /// row 0 of this result is 1 person's …").
    pub explanation: String,
}

/// The jobs of one shape (same plan up to constants) under the grant.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignPacket {
    pub jobs: Vec<String>,
    /// Distinct sets of constants among them.
    pub variants: u64,
    /// From this many variants each job is flagged.
    pub flag_at: u64,
}

fn persons(n: u64) -> String {
    match n {
        1 => "1 person".to_string(),
        n => format!("{n} persons"),
    }
}

/// A cell in words: "row 3 of this result", "inner aggregate `sum(x)` (group 0)
/// of job … (released)".
fn place(
    row: u64,
    inner: bool,
    label: Option<&str>,
    job: &str,
    this_job: &str,
    status: &str,
) -> String {
    let whose = if job == this_job {
        "this result".to_string()
    } else {
        format!("job {job} ({status})")
    };
    if inner {
        match label {
            Some(l) => format!(
                "the aggregate `{l}` computed inside the query (inner cell {row}) of {whose}"
            ),
            None => format!("an aggregate computed inside the query (inner cell {row}) of {whose}"),
        }
    } else {
        format!("row {row} of {whose}")
    }
}

/// What subtracting the two cells of `pair` gives away.
fn explain(
    pair: &disclosure::differencing::Pair,
    this_job: &str,
    other_status: &str,
    labels: (Option<&str>, Option<&str>),
) -> String {
    let this = place(pair.row, pair.inner, labels.0, this_job, this_job, "");
    let other = place(
        pair.other_row,
        pair.other_inner,
        labels.1,
        &pair.other_job_id,
        this_job,
        other_status,
    );
    let n = persons(pair.units_differing);
    format!(
        "{this} and {other} are computed over the same persons but {n} ({} records): {this} \
         minus {other} is what {n} contribute",
        pair.records_differing
    )
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// What a rejecting reviewer tells the researcher (both optional).
#[derive(Debug, Clone, Default)]
pub struct ForResearcher {
    /// Why, from the list the researcher reads in words; default `other`.
    pub reason: Option<output_review::RejectionReason>,
    /// Words addressed to the researcher, shown as written (at most 500
    /// characters): the reviewer writes them knowing who reads them.
    pub note: Option<String>,
}

impl Domain {
    /// The providers of the datasets `job` read: whose consent its release needs.
    pub(super) async fn providers_read(&self, job: &JobRecord) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for d in &job.datasets {
            let record = self
                .store
                .dataset(&d.dataset_id)
                .await?
                .ok_or_else(|| Error::Internal("a job read an unknown dataset".into()))?;
            let provider = record.manifest.dataset.provider.clone();
            if !out.contains(&provider) {
                out.push(provider);
            }
        }
        Ok(out)
    }

    /// Jobs waiting for `p`'s review.
    pub async fn review_queue<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<JobRecord>> {
        let p = self.list_for(caller.into(), "reviews").await?;
        let mut out = Vec::new();
        for j in self.store.jobs_in(JobStatus::PendingReview).await? {
            let g = self.grant(&j.grant_id).await?;
            if reviews_for(p, &g)
                && j.requester_id != p.user_id
                && output_review::check_output_steward(p, &self.providers_read(&j).await?).is_ok()
            {
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
    ) -> Result<(Vec<DifferencingPair>, Vec<DifferencingTracker>)> {
        let Some((sealed, key)) = self.store.job_fingerprints(&job.id).await? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let json = blob::open(
            &self.keyring,
            &key,
            &blob::SealedFor::Differencing(&job.id).aad(),
            &sealed,
        )?;
        let stored: disclosure::differencing::Stored = serde_json::from_slice(&json)
            .map_err(|_| Error::Internal("a result's sealed sketches do not decode".into()))?;
        let Some(findings) = stored.findings.clone() else {
            return Ok((Vec::new(), Vec::new()));
        };
        // The label of this result's inner cell `k`.
        let label = |k: u64| -> Option<&str> {
            let a = stored.inner.get(k as usize)?.aggregation;
            stored
                .inner_aggregations
                .get(a as usize)
                .map(String::as_str)
        };
        let mut others: HashMap<String, (JobRecord, Vec<serde_json::Value>, String)> =
            HashMap::new();
        let mut wanted: Vec<String> = findings
            .pairs
            .iter()
            .map(|p| p.other_job_id.clone())
            .collect();
        wanted.extend(
            findings
                .trackers
                .iter()
                .flat_map(|t| t.terms.iter().map(|c| c.job_id.clone())),
        );
        for id in wanted {
            if others.contains_key(&id) {
                continue;
            }
            let other = self.job(&id).await?;
            let (rows, query) = if other.id == job.id {
                (result.to_vec(), other.query_text.clone())
            } else if other.grant_id == job.grant_id {
                let rows = rows_json(&self.candidate(&other).await?.1);
                (rows, other.query_text.clone())
            } else {
                // Another grant's job: its text and cells only for those who
                // may read that job (and review its outputs).
                let g = self.grant(&other.grant_id).await?;
                let providers = g.providers();
                let readable = authz::may_read(
                    p,
                    &authz::Object::Job {
                        requester_id: &g.holder_id,
                        providers: &providers,
                    },
                );
                if readable && reviews_for(p, &g) {
                    let rows = rows_json(&self.candidate(&other).await?.1);
                    (rows, other.query_text.clone())
                } else if readable {
                    (Vec::new(), other.query_text.clone())
                } else {
                    (Vec::new(), OTHER_GRANT.to_string())
                }
            };
            others.insert(other.id.clone(), (other, rows, query));
        }
        let cell = |rows: &[serde_json::Value], r: u64, inner: bool| {
            if inner {
                return serde_json::Value::Null;
            }
            rows.get(r as usize)
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        let mut out = Vec::new();
        for pair in findings.pairs {
            let (other, rows, query) = &others[&pair.other_job_id];
            let other_label = (other.id == job.id && pair.other_inner)
                .then(|| label(pair.other_row))
                .flatten();
            out.push(DifferencingPair {
                row: pair.row,
                inner: pair.inner,
                cells: cell(result, pair.row, pair.inner),
                other_job_id: other.id.clone(),
                other_query: query.clone(),
                other_status: other.status.as_str().to_string(),
                other_row: pair.other_row,
                other_inner: pair.other_inner,
                other_cells: cell(rows, pair.other_row, pair.other_inner),
                units_differing: pair.units_differing,
                records_differing: pair.records_differing,
                explanation: explain(
                    &pair,
                    &job.id,
                    other.status.as_str(),
                    (pair.inner.then(|| label(pair.row)).flatten(), other_label),
                ),
            });
        }
        let mut trackers = Vec::new();
        for t in findings.trackers {
            let mut terms = Vec::new();
            let mut words = Vec::new();
            for c in &t.terms {
                let (other, rows, query) = &others[&c.job_id];
                let l = (other.id == job.id && c.inner)
                    .then(|| label(c.row))
                    .flatten();
                words.push(place(
                    c.row,
                    c.inner,
                    l,
                    &c.job_id,
                    &job.id,
                    other.status.as_str(),
                ));
                terms.push(serde_json::json!({
                    "job_id": c.job_id,
                    "query": query,
                    "status": other.status.as_str(),
                    "row": c.row,
                    "inner": c.inner,
                    "cells": cell(rows, c.row, c.inner),
                }));
            }
            let n = persons(t.units_differing);
            trackers.push(DifferencingTracker {
                explanation: format!(
                    "{} minus {} minus {} is computed over {n} ({} records): the arithmetic gives \
                     what {n} contribute",
                    words[0], words[1], words[2], t.records_differing
                ),
                terms,
                units_differing: t.units_differing,
                records_differing: t.records_differing,
            });
        }
        Ok((out, trackers))
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
        output_review::check_output_steward(p, &self.providers_read(&job).await?)?;
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
        let (differencing, trackers) = self.differencing_pairs(p, &job, &result).await?;
        let campaign = match self.store.shape_campaign(&job.id).await? {
            Some((variants, jobs)) if jobs.len() > 1 => Some(CampaignPacket {
                jobs,
                variants,
                flag_at: self.job_options().campaign_flag_at,
            }),
            _ => None,
        };
        Ok(ReviewPacket {
            model_log,
            differencing,
            trackers,
            campaign,
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
        self.review_job_for(caller, id, decision, comment, ForResearcher::default())
            .await
    }

    /// [`Domain::review_job`] with what a rejection tells the researcher:
    /// a reason from the list and a note addressed to them (the comment is
    /// for the reviewers and the record only).
    pub async fn review_job_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        decision: ReviewDecision,
        comment: &str,
        to_researcher: ForResearcher,
    ) -> Result<JobView> {
        let note = to_researcher.note.as_deref().map(str::trim);
        if note.is_some_and(|n| n.chars().count() > output_review::MAX_NOTE_CHARS) {
            return Err(Error::InvalidArgument(format!(
                "note_to_researcher: at most {} characters",
                output_review::MAX_NOTE_CHARS
            )));
        }
        if decision == ReviewDecision::Approve
            && (to_researcher.reason.is_some() || note.is_some_and(|n| !n.is_empty()))
        {
            return Err(Error::InvalidArgument(
                "reason and note_to_researcher belong to a rejection".into(),
            ));
        }
        let (p, mut job, _) = self
            .authorized_job(caller.into(), Action::ReviewOutput, id)
            .await?;
        let requester = self.identity.get_user_by_id(&job.requester_id).await?;
        output_review::check_output_reviewer(p, &requester)?;
        let providers = self.providers_read(&job).await?;
        output_review::check_output_steward(p, &providers)?;
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
            let reason = to_researcher
                .reason
                .unwrap_or(output_review::RejectionReason::Other);
            job.error_message = Some(output_review::rejection_message(reason, note));
            job.finished_at = Some(crate::store::now_rfc3339());
            self.set_job(&mut job).await?;
            self.record(
                &Actor::user(p),
                "job.reject",
                job_object(id),
                Outcome::Success,
                serde_json::json!({
                    "reason": reason.as_str(),
                    "note_chars": note.map_or(0, |n| n.chars().count()),
                }),
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
        if output_review::approvals_release(&counted, job.reviewers_required, &providers) {
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
