//! Grants, their history and usage reports.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{GrantState, RowFilter, UsageMethod};

/// Which version of a dataset a grant reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum GrantedVersion {
    /// The newest version at query time.
    Latest,
    /// Exactly this version.
    Pinned {
        /// Version number.
        version: u64,
    },
}

impl From<enclave::access::GrantedVersion> for GrantedVersion {
    fn from(v: enclave::access::GrantedVersion) -> Self {
        match v {
            enclave::access::GrantedVersion::Latest => Self::Latest,
            enclave::access::GrantedVersion::Pinned { version } => Self::Pinned { version },
        }
    }
}

/// One dataset of a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GrantedDataset {
    /// Catalog id.
    pub dataset_id: String,
    /// Its provider, whose steward watches the grant.
    pub provider: String,
    /// Version policy.
    pub version: GrantedVersion,
    /// The columns the grant's view exposes.
    pub columns: Vec<String>,
    /// Rows the view keeps; the requested filter AND every reviewer's.
    pub row_filter: RowFilter,
}

impl From<enclave::access::GrantedDataset> for GrantedDataset {
    fn from(v: enclave::access::GrantedDataset) -> Self {
        Self {
            dataset_id: v.dataset_id,
            provider: v.provider,
            version: v.version.into(),
            columns: v.columns,
            row_filter: v.row_filter.into(),
        }
    }
}

/// Limits on what a grant may consume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Jobs (queries and model runs) in the grant's life.
    pub jobs: u64,
    /// Differential-privacy epsilon.
    pub epsilon: f64,
    /// Differential-privacy delta.
    pub delta: f64,
    /// CPU seconds of all jobs together.
    pub cpu_seconds: f64,
    /// Result rows released.
    pub released_rows: u64,
}

impl From<enclave::access::Budgets> for Budgets {
    fn from(v: enclave::access::Budgets) -> Self {
        Self {
            jobs: v.jobs,
            epsilon: v.epsilon,
            delta: v.delta,
            cpu_seconds: v.cpu_seconds,
            released_rows: v.released_rows,
        }
    }
}

impl From<Budgets> for enclave::access::Budgets {
    fn from(v: Budgets) -> Self {
        Self {
            jobs: v.jobs,
            epsilon: v.epsilon,
            delta: v.delta,
            cpu_seconds: v.cpu_seconds,
            released_rows: v.released_rows,
        }
    }
}

/// What a grant has consumed; also the shape of one charge against it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Jobs run.
    pub jobs: u64,
    /// Epsilon spent.
    pub epsilon: f64,
    /// Delta spent.
    pub delta: f64,
    /// CPU seconds used.
    pub cpu_seconds: f64,
    /// Result rows released.
    pub released_rows: u64,
}

impl From<enclave::access::Usage> for Usage {
    fn from(v: enclave::access::Usage) -> Self {
        Self {
            jobs: v.jobs,
            epsilon: v.epsilon,
            delta: v.delta,
            cpu_seconds: v.cpu_seconds,
            released_rows: v.released_rows,
        }
    }
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    /// UUID v7.
    pub id: String,
    /// The application it came from.
    pub application_id: String,
    /// The project.
    pub project_id: String,
    /// Account id of the researcher who holds it.
    pub holder_id: String,
    /// Username of the holder.
    pub holder_username: String,
    /// The holder's organisation.
    pub organisation: String,
    /// Scenario category of the project.
    pub scenario_category: String,
    /// Usage method (SZ:27).
    pub usage_method: UsageMethod,
    /// Datasets, columns, versions and row filters.
    pub datasets: Vec<GrantedDataset>,
    /// First day (China Standard Time).
    pub period_start: NaiveDate,
    /// Last day, inclusive.
    pub period_end: NaiveDate,
    /// Start of validity, RFC 3339 UTC (period_start 00:00 CST).
    pub valid_from: DateTime<Utc>,
    /// End of validity, exclusive, RFC 3339 UTC (the day after period_end, 00:00 CST).
    pub valid_until: DateTime<Utc>,
    /// Current state.
    pub state: GrantState,
    /// Limits.
    pub budgets: Budgets,
    /// Consumed so far.
    pub usage: Usage,
    /// SHA-256 of the signed agreement text.
    pub agreement_sha256: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// Bumped on every change (optimistic concurrency).
    pub revision: i64,
}

impl From<enclave::access::Grant> for Grant {
    fn from(v: enclave::access::Grant) -> Self {
        Self {
            id: v.id,
            application_id: v.application_id,
            project_id: v.project_id,
            holder_id: v.holder_id,
            holder_username: v.holder_username,
            organisation: v.organisation,
            scenario_category: v.scenario_category,
            usage_method: v.usage_method.into(),
            datasets: v.datasets.into_iter().map(Into::into).collect(),
            period_start: v.period_start,
            period_end: v.period_end,
            valid_from: v.valid_from,
            valid_until: v.valid_until,
            state: v.state.into(),
            budgets: v.budgets.into(),
            usage: v.usage.into(),
            agreement_sha256: v.agreement_sha256,
            created_at: v.created_at,
            updated_at: v.updated_at,
            revision: v.revision,
        }
    }
}

/// A usage report the grant holder files (SZ:43(1), GD:46).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUsageReport {
    /// First day the report covers.
    pub period_start: NaiveDate,
    /// Last day it covers.
    pub period_end: NaiveDate,
    /// What the data was used for and what came of it, 10 to 10000 characters.
    pub summary: String,
    /// Papers, patents, products or reports that used the data (SZ:43(4)).
    #[serde(default)]
    pub outputs: Vec<ReportOutput>,
}

impl From<enclave::access::NewUsageReport> for NewUsageReport {
    fn from(v: enclave::access::NewUsageReport) -> Self {
        Self {
            period_start: v.period_start,
            period_end: v.period_end,
            summary: v.summary,
            outputs: v.outputs.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<NewUsageReport> for enclave::access::NewUsageReport {
    fn from(v: NewUsageReport) -> Self {
        Self {
            period_start: v.period_start,
            period_end: v.period_end,
            summary: v.summary,
            outputs: v.outputs.into_iter().map(Into::into).collect(),
        }
    }
}

/// One product of the data's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportOutput {
    /// Kind of output.
    pub kind: OutputKind,
    /// Title, 1 to 500 characters.
    pub title: String,
    /// DOI, patent number, URL or other reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl From<enclave::access::ReportOutput> for ReportOutput {
    fn from(v: enclave::access::ReportOutput) -> Self {
        Self {
            kind: v.kind.into(),
            title: v.title,
            reference: v.reference,
        }
    }
}

impl From<ReportOutput> for enclave::access::ReportOutput {
    fn from(v: ReportOutput) -> Self {
        Self {
            kind: v.kind.into(),
            title: v.title,
            reference: v.reference,
        }
    }
}

/// Kinds of [`ReportOutput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A paper or thesis.
    Paper,
    /// A patent.
    Patent,
    /// A product or service.
    Product,
    /// A policy or research report.
    Report,
    /// Anything else.
    Other,
}

impl From<enclave::access::OutputKind> for OutputKind {
    fn from(v: enclave::access::OutputKind) -> Self {
        match v {
            enclave::access::OutputKind::Paper => Self::Paper,
            enclave::access::OutputKind::Patent => Self::Patent,
            enclave::access::OutputKind::Product => Self::Product,
            enclave::access::OutputKind::Report => Self::Report,
            enclave::access::OutputKind::Other => Self::Other,
        }
    }
}

impl From<OutputKind> for enclave::access::OutputKind {
    fn from(v: OutputKind) -> Self {
        match v {
            OutputKind::Paper => Self::Paper,
            OutputKind::Patent => Self::Patent,
            OutputKind::Product => Self::Product,
            OutputKind::Report => Self::Report,
            OutputKind::Other => Self::Other,
        }
    }
}

/// A grant with its history and whether it can be used right now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: Grant,
    /// Active and inside its validity window now.
    pub usable: bool,
    pub history: Vec<GrantEventRecord>,
}

impl From<enclave::domain::GrantView> for GrantView {
    fn from(v: enclave::domain::GrantView) -> Self {
        Self {
            grant: v.grant.into(),
            usable: v.usable,
            history: v.history.into_iter().map(Into::into).collect(),
        }
    }
}

/// One step in a grant's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GrantEventRecord {
    pub seq: i64,
    pub event: String,
    /// Username, `monitoring` or `system`.
    pub actor: String,
    pub from_status: String,
    pub to_status: String,
    pub reason: Option<String>,
    pub at: String,
}

impl From<enclave::store::GrantEventRecord> for GrantEventRecord {
    fn from(v: enclave::store::GrantEventRecord) -> Self {
        Self {
            seq: v.seq,
            event: v.event,
            actor: v.actor,
            from_status: v.from_status,
            to_status: v.to_status,
            reason: v.reason,
            at: v.at,
        }
    }
}

/// A stored usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageReportRecord {
    pub id: String,
    pub grant_id: String,
    pub author_id: String,
    #[serde(flatten)]
    pub report: NewUsageReport,
    pub submitted_at: String,
}

impl From<enclave::store::UsageReportRecord> for UsageReportRecord {
    fn from(v: enclave::store::UsageReportRecord) -> Self {
        Self {
            id: v.id,
            grant_id: v.grant_id,
            author_id: v.author_id,
            report: v.report.into(),
            submitted_at: v.submitted_at,
        }
    }
}
