//! Jobs, output review and releases.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

impl From<enclave::domain::ReviewPacket> for ReviewPacket {
    fn from(v: enclave::domain::ReviewPacket) -> Self {
        Self {
            job: v.job.into(),
            result: v.result,
            earlier_releases: v.earlier_releases,
            model_log: v.model_log,
            differencing: v.differencing.into_iter().map(Into::into).collect(),
            trackers: v.trackers.into_iter().map(Into::into).collect(),
            campaign: v.campaign.map(Into::into),
            my_vote: v.my_vote.map(Into::into),
            votes: v.votes.map(|x| x.into_iter().map(Into::into).collect()),
            approvals_required: v.approvals_required,
        }
    }
}

/// Two rows whose persons differ by fewer than the threshold.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DifferencingPair {
    /// The row of this result (an inner cell's index when `inner`), and its cells.
    pub row: u64,
    /// `row` is an aggregate computed inside the query (no cells of its own).
    pub inner: bool,
    #[schema(value_type = Object)]
    pub cells: serde_json::Value,
    /// The other row: its job (this one's for a pair inside the result),
    /// that job's query and state, and the row's cells.
    pub other_job_id: String,
    pub other_query: String,
    pub other_status: String,
    pub other_row: u64,
    pub other_inner: bool,
    #[schema(value_type = Object)]
    pub other_cells: serde_json::Value,
    /// Persons whose records differ between the rows, and by how many records.
    pub units_differing: u64,
    pub records_differing: u64,
    /// The arithmetic that would expose someone, in words (for the reviewer:
    /// "row 3 of this result against row 7 of job … differ by 1 person").
    pub explanation: String,
}

impl From<enclave::domain::DifferencingPair> for DifferencingPair {
    fn from(v: enclave::domain::DifferencingPair) -> Self {
        Self {
            row: v.row,
            inner: v.inner,
            cells: v.cells,
            other_job_id: v.other_job_id,
            other_query: v.other_query,
            other_status: v.other_status,
            other_row: v.other_row,
            other_inner: v.other_inner,
            other_cells: v.other_cells,
            units_differing: v.units_differing,
            records_differing: v.records_differing,
            explanation: v.explanation,
        }
    }
}

/// A three-term tracker: `A − B − C` is fewer than the threshold of persons.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DifferencingTracker {
    /// A, B and C: job, row (or inner cell), and the cells of a row.
    #[schema(value_type = Vec<Object>)]
    pub terms: Vec<serde_json::Value>,
    pub units_differing: u64,
    pub records_differing: u64,
    /// The arithmetic, in words ("row 0 of job … minus row 1 of job … minus
    /// row 0 of this result is 1 person's …").
    pub explanation: String,
}

impl From<enclave::domain::DifferencingTracker> for DifferencingTracker {
    fn from(v: enclave::domain::DifferencingTracker) -> Self {
        Self {
            terms: v.terms,
            units_differing: v.units_differing,
            records_differing: v.records_differing,
            explanation: v.explanation,
        }
    }
}

/// The jobs of one shape (same plan up to constants) under the grant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignPacket {
    pub jobs: Vec<String>,
    /// Distinct sets of constants among them.
    pub variants: u64,
    /// From this many variants each job is flagged.
    pub flag_at: u64,
}

impl From<enclave::domain::CampaignPacket> for CampaignPacket {
    fn from(v: enclave::domain::CampaignPacket) -> Self {
        Self {
            jobs: v.jobs,
            variants: v.variants,
            flag_at: v.flag_at,
        }
    }
}

/// A reviewer's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approve,
    Reject,
}

impl From<enclave::domain::ReviewDecision> for ReviewDecision {
    fn from(v: enclave::domain::ReviewDecision) -> Self {
        match v {
            enclave::domain::ReviewDecision::Approve => Self::Approve,
            enclave::domain::ReviewDecision::Reject => Self::Reject,
        }
    }
}

impl From<ReviewDecision> for enclave::domain::ReviewDecision {
    fn from(v: ReviewDecision) -> Self {
        match v {
            ReviewDecision::Approve => Self::Approve,
            ReviewDecision::Reject => Self::Reject,
        }
    }
}

/// A job as stored, with its progress: for its reviewers, admins and auditors.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    /// Seconds since it started (running) or its run time (finished).
    pub elapsed_seconds: Option<f64>,
    /// The release, once released.
    pub release_id: Option<String>,
}

impl From<enclave::domain::JobView> for JobView {
    fn from(v: enclave::domain::JobView) -> Self {
        Self {
            job: v.job.into(),
            elapsed_seconds: v.elapsed_seconds,
            release_id: v.release_id,
        }
    }
}

/// A job as its requester sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
    pub dp: Option<DpReport>,
    /// The release, once released.
    pub release_id: Option<String>,
    /// Rows of the released result, once released.
    pub result_rows: Option<u64>,
}

impl From<enclave::domain::OwnJob> for OwnJob {
    fn from(v: enclave::domain::OwnJob) -> Self {
        Self {
            id: v.id,
            grant_id: v.grant_id,
            kind: v.kind,
            query_text: v.query_text,
            status: v.status.into(),
            error_code: v.error_code,
            error_message: v.error_message,
            plan_summary: v.plan_summary,
            datasets: v.datasets.into_iter().map(Into::into).collect(),
            submitted_at: v.submitted_at,
            elapsed_seconds: v.elapsed_seconds,
            model_sha256: v.model_sha256,
            model_params: v.model_params,
            dp: v.dp.map(Into::into),
            release_id: v.release_id,
            result_rows: v.result_rows,
        }
    }
}

/// What a caller sees of a job: the stored record, or the requester's view.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum JobSight {
    Full(Box<JobView>),
    Own(Box<OwnJob>),
}

impl From<enclave::domain::JobSight> for JobSight {
    fn from(v: enclave::domain::JobSight) -> Self {
        match v {
            enclave::domain::JobSight::Full(a0) => Self::Full(Box::new((*a0).into())),
            enclave::domain::JobSight::Own(a0) => Self::Own(Box::new((*a0).into())),
        }
    }
}

/// What a researcher asks for.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DpOptions {
    /// Privacy loss ε of this query (all of it is charged).
    pub epsilon: f64,
    /// δ available to group selection (only what is spent is charged).
    #[serde(default)]
    pub delta: f64,
    /// Lowers the policy's groups per privacy unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_groups_contributed: Option<u32>,
    /// Lowers the policy's rows per privacy unit and group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_group: Option<u32>,
}

impl From<enclave::dp::DpOptions> for DpOptions {
    fn from(v: enclave::dp::DpOptions) -> Self {
        Self {
            epsilon: v.epsilon,
            delta: v.delta,
            max_groups_contributed: v.max_groups_contributed,
            max_rows_per_group: v.max_rows_per_group,
        }
    }
}

impl From<DpOptions> for enclave::dp::DpOptions {
    fn from(v: DpOptions) -> Self {
        Self {
            epsilon: v.epsilon,
            delta: v.delta,
            max_groups_contributed: v.max_groups_contributed,
            max_rows_per_group: v.max_rows_per_group,
        }
    }
}

/// The privacy facts of one DP result: enough to compute confidence intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DpReport {
    /// ε spent (charged to the grant).
    pub epsilon: f64,
    /// δ spent (charged to the grant).
    pub delta: f64,
    /// The budget left after this charge: the grant's, or the researcher's
    /// on the dataset across all their grants where that is less.
    pub budget_left: Option<BudgetLeft>,
    /// `dataset.column` of the privacy unit.
    pub privacy_unit: String,
    /// Groups one unit may contribute to (after bounding).
    pub max_groups_contributed: u32,
    /// Rows one unit may contribute to one group (after bounding).
    pub max_rows_per_group: u32,
    /// How groups were chosen; absent without GROUP BY (one row, always released).
    pub selection: Option<Selection>,
    /// Per aggregate output column.
    pub columns: Vec<DpColumn>,
}

impl From<enclave::dp::DpReport> for DpReport {
    fn from(v: enclave::dp::DpReport) -> Self {
        Self {
            epsilon: v.epsilon,
            delta: v.delta,
            budget_left: v.budget_left.map(Into::into),
            privacy_unit: v.privacy_unit,
            max_groups_contributed: v.max_groups_contributed,
            max_rows_per_group: v.max_rows_per_group,
            selection: v.selection.map(Into::into),
            columns: v.columns.into_iter().map(Into::into).collect(),
        }
    }
}

/// ε and δ the grant has left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLeft {
    pub epsilon: f64,
    pub delta: f64,
}

impl From<enclave::dp::BudgetLeft> for BudgetLeft {
    fn from(v: enclave::dp::BudgetLeft) -> Self {
        Self {
            epsilon: v.epsilon,
            delta: v.delta,
        }
    }
}

/// Noisy group selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// `laplace_threshold` (opendp `make_laplace_threshold`).
    pub mechanism: String,
    /// What is counted per group: distinct privacy units after bounding.
    pub counts: String,
    /// Scale of the discrete Laplace noise on each group's unit count.
    pub scale: f64,
    /// A group is released when its noisy unit count is at least this.
    pub threshold: i64,
    pub epsilon: f64,
    pub delta: f64,
}

impl From<enclave::dp::Selection> for Selection {
    fn from(v: enclave::dp::Selection) -> Self {
        Self {
            mechanism: v.mechanism,
            counts: v.counts,
            scale: v.scale,
            threshold: v.threshold,
            epsilon: v.epsilon,
            delta: v.delta,
        }
    }
}

/// One noisy output column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DpColumn {
    pub column: String,
    /// `count`, `sum` or `avg`.
    pub aggregate: String,
    /// `discrete_laplace` (opendp `make_laplace` on integers).
    pub mechanism: String,
    /// Clamping bounds of the argument (SUM, AVG).
    pub bounds: Option<[f64; 2]>,
    /// Noise scale b in the column's units (standard deviation = b·√2); for
    /// AVG the scale of its noisy sum.
    pub scale: f64,
    /// AVG only: scale of its noisy count (the denominator).
    pub count_scale: Option<f64>,
    /// L1 sensitivity over all groups, in the column's units (AVG: of the sum).
    pub sensitivity: f64,
    /// ε spent on this column.
    pub epsilon: f64,
}

impl From<enclave::dp::DpColumn> for DpColumn {
    fn from(v: enclave::dp::DpColumn) -> Self {
        Self {
            column: v.column,
            aggregate: v.aggregate,
            mechanism: v.mechanism,
            bounds: v.bounds,
            scale: v.scale,
            count_scale: v.count_scale,
            sensitivity: v.sensitivity,
            epsilon: v.epsilon,
        }
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

impl From<enclave::store::JobStatus> for JobStatus {
    fn from(v: enclave::store::JobStatus) -> Self {
        match v {
            enclave::store::JobStatus::Queued => Self::Queued,
            enclave::store::JobStatus::Running => Self::Running,
            enclave::store::JobStatus::Checked => Self::Checked,
            enclave::store::JobStatus::PendingReview => Self::PendingReview,
            enclave::store::JobStatus::Released => Self::Released,
            enclave::store::JobStatus::Rejected => Self::Rejected,
            enclave::store::JobStatus::Failed => Self::Failed,
            enclave::store::JobStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// A dataset version a job read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobDataset {
    pub dataset_id: String,
    pub version: u64,
    /// SHA-256 of the version's data file.
    pub sha256: String,
}

impl From<enclave::store::JobDataset> for JobDataset {
    fn from(v: enclave::store::JobDataset) -> Self {
        Self {
            dataset_id: v.dataset_id,
            version: v.version,
            sha256: v.sha256,
        }
    }
}

/// A stored job. The candidate result itself is a sealed file.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
    #[schema(value_type = Option<Object>)]
    pub facts: Option<serde_json::Value>,
    pub datasets: Vec<JobDataset>,
    /// The disclosure checks (`disclosure::CheckReport`).
    #[schema(value_type = Option<Object>)]
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
    pub dp: Option<DpReport>,
}

impl From<enclave::store::JobRecord> for JobRecord {
    fn from(v: enclave::store::JobRecord) -> Self {
        Self {
            id: v.id,
            grant_id: v.grant_id,
            requester_id: v.requester_id,
            requester_username: v.requester_username,
            kind: v.kind,
            query_text: v.query_text,
            status: v.status.into(),
            error_code: v.error_code,
            error_message: v.error_message,
            plan_summary: v.plan_summary,
            facts: v.facts,
            datasets: v.datasets.into_iter().map(Into::into).collect(),
            checks: v.checks,
            rows_scanned: v.rows_scanned,
            result_rows: v.result_rows,
            suppressed_groups: v.suppressed_groups,
            result_sha256: v.result_sha256,
            reviewers_required: v.reviewers_required,
            cpu_seconds: v.cpu_seconds,
            submitted_at: v.submitted_at,
            started_at: v.started_at,
            finished_at: v.finished_at,
            revision: v.revision,
            model_sha256: v.model_sha256,
            model_params: v.model_params,
            dp: v.dp.map(Into::into),
        }
    }
}

/// One output-review vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRecord {
    pub job_id: String,
    pub reviewer_id: String,
    pub reviewer_username: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
    pub at: String,
}

impl From<enclave::store::ReviewRecord> for ReviewRecord {
    fn from(v: enclave::store::ReviewRecord) -> Self {
        Self {
            job_id: v.job_id,
            reviewer_id: v.reviewer_id,
            reviewer_username: v.reviewer_username,
            decision: v.decision,
            comment: v.comment,
            at: v.at,
        }
    }
}

/// A stored release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReleaseRecord {
    pub id: String,
    pub job_id: String,
    pub grant_id: String,
    /// The signed certificate, verbatim.
    pub certificate_json: String,
    pub released_at: String,
}

impl From<enclave::store::ReleaseRecord> for ReleaseRecord {
    fn from(v: enclave::store::ReleaseRecord) -> Self {
        Self {
            id: v.id,
            job_id: v.job_id,
            grant_id: v.grant_id,
            certificate_json: v.certificate_json,
            released_at: v.released_at,
        }
    }
}
