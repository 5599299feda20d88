//! Projects, applications, their review and materials.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Budgets, UsageMethod};

/// What a researcher states to open a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Short title, 2 to 200 characters.
    pub title: String,
    /// The application scenario in words (SZ:41), 10 to 5000 characters.
    pub scenario_description: String,
    /// One of [`SCENARIO_CATEGORIES`], e.g. `academic_research` or an emergency
    /// category of SZ:26 such as `public_health_emergency`.
    pub scenario_category: String,
    /// Usernames of further researchers on the project (same organisation).
    #[serde(default)]
    pub members: Vec<String>,
}

impl From<enclave::access::NewProject> for NewProject {
    fn from(v: enclave::access::NewProject) -> Self {
        Self {
            title: v.title,
            scenario_description: v.scenario_description,
            scenario_category: v.scenario_category,
            members: v.members,
        }
    }
}

impl From<NewProject> for enclave::access::NewProject {
    fn from(v: NewProject) -> Self {
        Self {
            title: v.title,
            scenario_description: v.scenario_description,
            scenario_category: v.scenario_category,
            members: v.members,
        }
    }
}

/// How a grant follows a dataset's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// Always the newest version (a new import is used at once).
    #[default]
    Latest,
    /// The newest version when the grant is created, for reproducible work.
    Pinned,
}

impl From<enclave::access::VersionPolicy> for VersionPolicy {
    fn from(v: enclave::access::VersionPolicy) -> Self {
        match v {
            enclave::access::VersionPolicy::Latest => Self::Latest,
            enclave::access::VersionPolicy::Pinned => Self::Pinned,
        }
    }
}

impl From<VersionPolicy> for enclave::access::VersionPolicy {
    fn from(v: VersionPolicy) -> Self {
        match v {
            VersionPolicy::Latest => Self::Latest,
            VersionPolicy::Pinned => Self::Pinned,
        }
    }
}

/// Rows a grant may see: every condition must hold (AND). Built into the
/// grant's view as a DataFusion expression, never as SQL text.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    /// Conditions on columns, all of which must hold.
    #[serde(default)]
    pub conditions: Vec<RowCondition>,
    /// Only data subjects in the dataset's consent table (GD:41).
    #[serde(default)]
    pub consented_only: bool,
}

impl From<enclave::access::RowFilter> for RowFilter {
    fn from(v: enclave::access::RowFilter) -> Self {
        Self {
            conditions: v.conditions.into_iter().map(Into::into).collect(),
            consented_only: v.consented_only,
        }
    }
}

impl From<RowFilter> for enclave::access::RowFilter {
    fn from(v: RowFilter) -> Self {
        Self {
            conditions: v.conditions.into_iter().map(Into::into).collect(),
            consented_only: v.consented_only,
        }
    }
}

/// One condition of a [`RowFilter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RowCondition {
    /// The column equals one of the values (string, int64 and bool columns).
    In {
        /// Column name.
        column: String,
        /// Allowed values, typed as the column (strings, integers or booleans).
        #[schema(value_type = Vec<Object>)]
        values: Vec<serde_json::Value>,
    },
    /// The column lies in an inclusive numeric range (int64 and float64 columns).
    Range {
        /// Column name.
        column: String,
        /// Smallest value kept.
        #[serde(default)]
        min: Option<f64>,
        /// Largest value kept.
        #[serde(default)]
        max: Option<f64>,
    },
    /// The column lies in an inclusive date range (date columns).
    DateRange {
        /// Column name.
        column: String,
        /// First day kept.
        #[serde(default)]
        from: Option<NaiveDate>,
        /// Last day kept.
        #[serde(default)]
        to: Option<NaiveDate>,
    },
}

impl From<enclave::access::RowCondition> for RowCondition {
    fn from(v: enclave::access::RowCondition) -> Self {
        match v {
            enclave::access::RowCondition::In { column, values } => Self::In { column, values },
            enclave::access::RowCondition::Range { column, min, max } => {
                Self::Range { column, min, max }
            }
            enclave::access::RowCondition::DateRange { column, from, to } => {
                Self::DateRange { column, from, to }
            }
        }
    }
}

impl From<RowCondition> for enclave::access::RowCondition {
    fn from(v: RowCondition) -> Self {
        match v {
            RowCondition::In { column, values } => Self::In { column, values },
            RowCondition::Range { column, min, max } => Self::Range { column, min, max },
            RowCondition::DateRange { column, from, to } => Self::DateRange { column, from, to },
        }
    }
}

/// One dataset an application asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    /// Catalog id.
    pub dataset_id: String,
    /// The exact columns needed (minimum authorisation, HZ:25).
    pub columns: Vec<String>,
    /// Follow new versions, or pin the current one.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Only these rows (e.g. one district).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_filter: Option<RowFilter>,
}

impl From<enclave::access::DatasetRequest> for DatasetRequest {
    fn from(v: enclave::access::DatasetRequest) -> Self {
        Self {
            dataset_id: v.dataset_id,
            columns: v.columns,
            version_policy: v.version_policy.into(),
            row_filter: v.row_filter.map(Into::into),
        }
    }
}

impl From<DatasetRequest> for enclave::access::DatasetRequest {
    fn from(v: DatasetRequest) -> Self {
        Self {
            dataset_id: v.dataset_id,
            columns: v.columns,
            version_policy: v.version_policy.into(),
            row_filter: v.row_filter.map(Into::into),
        }
    }
}

/// Domain admission details (入驻申请, SZ:44).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionDetails {
    /// Whether the researcher brings own data into the domain.
    pub brings_own_data: bool,
    /// What that data is; required when `brings_own_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_data_description: Option<String>,
    /// Tools and languages to be used inside the domain.
    pub development_environment: String,
    /// CPU cores needed.
    pub cpu_cores: u32,
    /// Memory needed, GiB.
    pub memory_gib: u32,
    /// Storage needed, GiB.
    pub storage_gib: u32,
    /// Commitment to the domain's rules (SZ:44); must be true.
    pub accepts_domain_rules: bool,
}

impl From<enclave::access::AdmissionDetails> for AdmissionDetails {
    fn from(v: enclave::access::AdmissionDetails) -> Self {
        Self {
            brings_own_data: v.brings_own_data,
            own_data_description: v.own_data_description,
            development_environment: v.development_environment,
            cpu_cores: v.cpu_cores,
            memory_gib: v.memory_gib,
            storage_gib: v.storage_gib,
            accepts_domain_rules: v.accepts_domain_rules,
        }
    }
}

impl From<AdmissionDetails> for enclave::access::AdmissionDetails {
    fn from(v: AdmissionDetails) -> Self {
        Self {
            brings_own_data: v.brings_own_data,
            own_data_description: v.own_data_description,
            development_environment: v.development_environment,
            cpu_cores: v.cpu_cores,
            memory_gib: v.memory_gib,
            storage_gib: v.storage_gib,
            accepts_domain_rules: v.accepts_domain_rules,
        }
    }
}

/// The body of an application, as the researcher writes and edits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDraft {
    /// The project applied under.
    pub project_id: String,
    /// Datasets and the exact columns needed.
    pub datasets: Vec<DatasetRequest>,
    /// One of SZ:27's methods, allowed by every requested dataset.
    pub usage_method: UsageMethod,
    /// Purpose of use, 10 to 5000 characters.
    pub purpose: String,
    /// Research or education purpose (GD:26: required of universities and institutes).
    pub purpose_is_research: bool,
    /// First day of use (China Standard Time).
    pub period_start: NaiveDate,
    /// Last day of use, inclusive.
    pub period_end: NaiveDate,
    /// Security measures the researcher commits to, 10 to 5000 characters.
    pub security_measures: String,
    /// Domain admission details (SZ:44).
    pub admission: AdmissionDetails,
    /// The use-agreement version the researcher accepts; must be the current one.
    pub agreement_version: u32,
}

impl From<enclave::access::ApplicationDraft> for ApplicationDraft {
    fn from(v: enclave::access::ApplicationDraft) -> Self {
        Self {
            project_id: v.project_id,
            datasets: v.datasets.into_iter().map(Into::into).collect(),
            usage_method: v.usage_method.into(),
            purpose: v.purpose,
            purpose_is_research: v.purpose_is_research,
            period_start: v.period_start,
            period_end: v.period_end,
            security_measures: v.security_measures,
            admission: v.admission.into(),
            agreement_version: v.agreement_version,
        }
    }
}

impl From<ApplicationDraft> for enclave::access::ApplicationDraft {
    fn from(v: ApplicationDraft) -> Self {
        Self {
            project_id: v.project_id,
            datasets: v.datasets.into_iter().map(Into::into).collect(),
            usage_method: v.usage_method.into(),
            purpose: v.purpose,
            purpose_is_research: v.purpose_is_research,
            period_start: v.period_start,
            period_end: v.period_end,
            security_measures: v.security_measures,
            admission: v.admission.into(),
            agreement_version: v.agreement_version,
        }
    }
}

/// Which eligibility rule refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The account is not real-name verified.
    NotVerified,
    /// The dataset is `not_open`.
    DatasetNotOpen,
    /// The organisation type is not among the dataset's allowed types.
    OrganisationTypeNotAllowed,
    /// The organisation is on a credit list the dataset excludes.
    CreditFlag,
    /// The scenario is not among the dataset's allowed scenarios.
    ScenarioNotAllowed,
    /// The scenario is among the dataset's forbidden scenarios.
    ScenarioForbidden,
    /// The usage method is not one the dataset allows.
    UsageMethodNotAllowed,
    /// No column was requested.
    NoColumns,
    /// A requested column does not exist in the dataset.
    UnknownColumn,
    /// A university or research institute asked for a non-research purpose (GD:26).
    ResearchOnly,
}

impl From<enclave::access::RefusalCode> for RefusalCode {
    fn from(v: enclave::access::RefusalCode) -> Self {
        match v {
            enclave::access::RefusalCode::NotVerified => Self::NotVerified,
            enclave::access::RefusalCode::DatasetNotOpen => Self::DatasetNotOpen,
            enclave::access::RefusalCode::OrganisationTypeNotAllowed => {
                Self::OrganisationTypeNotAllowed
            }
            enclave::access::RefusalCode::CreditFlag => Self::CreditFlag,
            enclave::access::RefusalCode::ScenarioNotAllowed => Self::ScenarioNotAllowed,
            enclave::access::RefusalCode::ScenarioForbidden => Self::ScenarioForbidden,
            enclave::access::RefusalCode::UsageMethodNotAllowed => Self::UsageMethodNotAllowed,
            enclave::access::RefusalCode::NoColumns => Self::NoColumns,
            enclave::access::RefusalCode::UnknownColumn => Self::UnknownColumn,
            enclave::access::RefusalCode::ResearchOnly => Self::ResearchOnly,
        }
    }
}

/// One failed eligibility rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refusal {
    /// Which rule.
    pub code: RefusalCode,
    /// Why, for the applicant.
    pub reason: String,
}

impl From<enclave::access::Refusal> for Refusal {
    fn from(v: enclave::access::Refusal) -> Self {
        Self {
            code: v.code.into(),
            reason: v.reason,
        }
    }
}

/// A person as the workflow sees them: who, and for which organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    /// Account id.
    pub user_id: String,
    /// Organisation id.
    pub organisation: String,
}

impl From<enclave::access::Person> for Person {
    fn from(v: enclave::access::Person) -> Self {
        Self {
            user_id: v.user_id,
            organisation: v.organisation,
        }
    }
}

/// The capacity a reviewer acts in. The caller establishes it from the account's
/// roles; the workflow checks it fits the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "capacity", rename_all = "snake_case")]
pub enum ReviewCapacity {
    /// Steward of a provider agency (开放主体).
    ProviderSteward {
        /// The provider, as manifests name it.
        provider: String,
    },
    /// Platform administrator (the platform authority of SZ:42).
    PlatformAdmin,
}

impl From<enclave::access::ReviewCapacity> for ReviewCapacity {
    fn from(v: enclave::access::ReviewCapacity) -> Self {
        match v {
            enclave::access::ReviewCapacity::ProviderSteward { provider } => {
                Self::ProviderSteward { provider }
            }
            enclave::access::ReviewCapacity::PlatformAdmin => Self::PlatformAdmin,
        }
    }
}

/// Someone acting on an application as a reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reviewer {
    /// Account id.
    pub user_id: String,
    /// Organisation id.
    pub organisation: String,
    /// Capacity acted in.
    pub capacity: ReviewCapacity,
}

impl From<enclave::access::Reviewer> for Reviewer {
    fn from(v: enclave::access::Reviewer) -> Self {
        Self {
            user_id: v.user_id,
            organisation: v.organisation,
            capacity: v.capacity.into(),
        }
    }
}

/// How many approvals an application needs and whether the platform co-reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRequirement {
    /// Distinct approvers needed in total (at least 1).
    pub reviewers_required: u32,
    /// Whether a platform administrator must approve besides the provider.
    pub joint_review: bool,
}

impl From<enclave::access::ReviewRequirement> for ReviewRequirement {
    fn from(v: enclave::access::ReviewRequirement) -> Self {
        Self {
            reviewers_required: v.reviewers_required,
            joint_review: v.joint_review,
        }
    }
}

/// The fixed facts of an application the workflow rules depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplicationFacts {
    /// Who applied.
    pub applicant: Person,
    /// Provider agencies of the requested datasets, each needing a steward's approval.
    pub providers: Vec<String>,
    /// Approvals needed.
    pub review: ReviewRequirement,
}

impl From<enclave::access::ApplicationFacts> for ApplicationFacts {
    fn from(v: enclave::access::ApplicationFacts) -> Self {
        Self {
            applicant: v.applicant.into(),
            providers: v.providers,
            review: v.review.into(),
        }
    }
}

/// What an application under review still needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewProgress {
    /// Approvals recorded.
    pub approvals: usize,
    /// Providers whose steward has not approved yet.
    pub stewards_missing: Vec<String>,
    /// Whether the platform administrator's approval is still needed.
    pub admin_missing: bool,
    /// Approvals needed beyond the named ones (from any eligible reviewer).
    pub further_approvals_missing: usize,
}

impl From<enclave::access::ReviewProgress> for ReviewProgress {
    fn from(v: enclave::access::ReviewProgress) -> Self {
        Self {
            approvals: v.approvals,
            stewards_missing: v.stewards_missing,
            admin_missing: v.admin_missing,
            further_approvals_missing: v.further_approvals_missing,
        }
    }
}

/// State of an application. Serialized with a `state` tag in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApplicationState {
    /// Being written by the applicant.
    Draft,
    /// Submitted, waiting for the completeness check.
    Submitted,
    /// Completeness check (XM:23) under way.
    CompletenessCheck,
    /// Under (joint) review; approvals given so far.
    UnderReview {
        /// Approvals recorded, in order.
        approvals: Vec<Reviewer>,
    },
    /// Every required approval is in; waiting for the applicant's signature.
    Approved {
        /// The approvals.
        approvals: Vec<Reviewer>,
    },
    /// Refused; final.
    Rejected {
        /// Who rejected.
        by: Reviewer,
        /// The written reason.
        reason: String,
    },
    /// Sent back to the applicant for changes; may be resubmitted.
    Returned {
        /// Who returned it.
        by: Reviewer,
        /// The written reason.
        reason: String,
    },
    /// The use agreement is signed; final for the application (the grant follows).
    AgreementSigned {
        /// The approvals.
        approvals: Vec<Reviewer>,
    },
}

impl From<enclave::access::ApplicationState> for ApplicationState {
    fn from(v: enclave::access::ApplicationState) -> Self {
        match v {
            enclave::access::ApplicationState::Draft => Self::Draft,
            enclave::access::ApplicationState::Submitted => Self::Submitted,
            enclave::access::ApplicationState::CompletenessCheck => Self::CompletenessCheck,
            enclave::access::ApplicationState::UnderReview { approvals } => Self::UnderReview {
                approvals: approvals.into_iter().map(Into::into).collect(),
            },
            enclave::access::ApplicationState::Approved { approvals } => Self::Approved {
                approvals: approvals.into_iter().map(Into::into).collect(),
            },
            enclave::access::ApplicationState::Rejected { by, reason } => Self::Rejected {
                by: by.into(),
                reason,
            },
            enclave::access::ApplicationState::Returned { by, reason } => Self::Returned {
                by: by.into(),
                reason,
            },
            enclave::access::ApplicationState::AgreementSigned { approvals } => {
                Self::AgreementSigned {
                    approvals: approvals.into_iter().map(Into::into).collect(),
                }
            }
        }
    }
}

/// The state names, without their data (database column, listings, messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    /// See [`ApplicationState::Draft`].
    Draft,
    /// See [`ApplicationState::Submitted`].
    Submitted,
    /// See [`ApplicationState::CompletenessCheck`].
    CompletenessCheck,
    /// See [`ApplicationState::UnderReview`].
    UnderReview,
    /// See [`ApplicationState::Approved`].
    Approved,
    /// See [`ApplicationState::Rejected`].
    Rejected,
    /// See [`ApplicationState::Returned`].
    Returned,
    /// See [`ApplicationState::AgreementSigned`].
    AgreementSigned,
}

impl From<enclave::access::ApplicationStatus> for ApplicationStatus {
    fn from(v: enclave::access::ApplicationStatus) -> Self {
        match v {
            enclave::access::ApplicationStatus::Draft => Self::Draft,
            enclave::access::ApplicationStatus::Submitted => Self::Submitted,
            enclave::access::ApplicationStatus::CompletenessCheck => Self::CompletenessCheck,
            enclave::access::ApplicationStatus::UnderReview => Self::UnderReview,
            enclave::access::ApplicationStatus::Approved => Self::Approved,
            enclave::access::ApplicationStatus::Rejected => Self::Rejected,
            enclave::access::ApplicationStatus::Returned => Self::Returned,
            enclave::access::ApplicationStatus::AgreementSigned => Self::AgreementSigned,
        }
    }
}

/// Who acts on a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "actor", rename_all = "snake_case")]
pub enum GrantActor {
    /// A steward of a provider.
    Steward {
        /// Account id.
        user_id: String,
        /// The provider stewarded.
        provider: String,
    },
    /// A platform administrator.
    Admin {
        /// Account id.
        user_id: String,
    },
    /// Automated usage monitoring (may only suspend).
    Monitoring,
    /// The platform itself (may only expire).
    System,
}

impl From<enclave::access::GrantActor> for GrantActor {
    fn from(v: enclave::access::GrantActor) -> Self {
        match v {
            enclave::access::GrantActor::Steward { user_id, provider } => {
                Self::Steward { user_id, provider }
            }
            enclave::access::GrantActor::Admin { user_id } => Self::Admin { user_id },
            enclave::access::GrantActor::Monitoring => Self::Monitoring,
            enclave::access::GrantActor::System => Self::System,
        }
    }
}

/// State of a grant. Reinstating returns a suspended grant to `active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GrantState {
    /// Usable.
    Active,
    /// Not usable until reinstated (SZ:63: rectification).
    Suspended {
        /// Who suspended it.
        by: GrantActor,
        /// Why.
        reason: String,
    },
    /// Ended early; final.
    Revoked {
        /// Who revoked it.
        by: GrantActor,
        /// Why.
        reason: String,
    },
    /// The period ended; final.
    Expired,
}

impl From<enclave::access::GrantState> for GrantState {
    fn from(v: enclave::access::GrantState) -> Self {
        match v {
            enclave::access::GrantState::Active => Self::Active,
            enclave::access::GrantState::Suspended { by, reason } => Self::Suspended {
                by: by.into(),
                reason,
            },
            enclave::access::GrantState::Revoked { by, reason } => Self::Revoked {
                by: by.into(),
                reason,
            },
            enclave::access::GrantState::Expired => Self::Expired,
        }
    }
}

/// Conditions a reviewer attaches to an approval (minimum authorisation,
/// HZ:25). They only ever narrow: filters are ANDed, budgets capped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewConditions {
    /// Row filters added per dataset.
    #[serde(default)]
    pub row_filters: Vec<DatasetFilter>,
    /// Caps on the grant's budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Budgets>,
}

impl From<enclave::domain::ReviewConditions> for ReviewConditions {
    fn from(v: enclave::domain::ReviewConditions) -> Self {
        Self {
            row_filters: v.row_filters.into_iter().map(Into::into).collect(),
            budgets: v.budgets.map(Into::into),
        }
    }
}

impl From<ReviewConditions> for enclave::domain::ReviewConditions {
    fn from(v: ReviewConditions) -> Self {
        Self {
            row_filters: v.row_filters.into_iter().map(Into::into).collect(),
            budgets: v.budgets.map(Into::into),
        }
    }
}

/// A row filter for one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetFilter {
    /// Catalog id; must be one the application requests.
    pub dataset_id: String,
    /// The rows kept.
    pub filter: RowFilter,
}

impl From<enclave::domain::DatasetFilter> for DatasetFilter {
    fn from(v: enclave::domain::DatasetFilter) -> Self {
        Self {
            dataset_id: v.dataset_id,
            filter: v.filter.into(),
        }
    }
}

impl From<DatasetFilter> for enclave::domain::DatasetFilter {
    fn from(v: DatasetFilter) -> Self {
        Self {
            dataset_id: v.dataset_id,
            filter: v.filter.into(),
        }
    }
}

/// An application as its readers see it: the record, its deadline, review
/// progress, history, materials and (while editable) what eligibility says.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApplicationView {
    #[serde(flatten)]
    pub application: ApplicationRecord,
    /// The current step's due date (completeness or review), CST.
    pub due_date: Option<String>,
    /// The current step is past its due date.
    pub overdue: bool,
    /// What the review still needs (under review).
    pub progress: Option<ReviewProgress>,
    pub history: Vec<ApplicationEventRecord>,
    pub materials: Vec<MaterialRecord>,
    /// Eligibility refusals as things stand, for drafts and returned applications.
    pub eligibility: Vec<Refusal>,
    /// The grant, once the agreement is signed.
    pub grant_id: Option<String>,
}

impl From<enclave::domain::ApplicationView> for ApplicationView {
    fn from(v: enclave::domain::ApplicationView) -> Self {
        Self {
            application: v.application.into(),
            due_date: v.due_date,
            overdue: v.overdue,
            progress: v.progress.map(Into::into),
            history: v.history.into_iter().map(Into::into).collect(),
            materials: v.materials.into_iter().map(Into::into).collect(),
            eligibility: v.eligibility.into_iter().map(Into::into).collect(),
            grant_id: v.grant_id,
        }
    }
}

/// One row of an application listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApplicationSummary {
    pub id: String,
    pub project_id: String,
    pub applicant_id: String,
    pub status: ApplicationStatus,
    pub datasets: Vec<String>,
    pub usage_method: UsageMethod,
    pub providers: Vec<String>,
    pub submitted_at: Option<String>,
    pub due_date: Option<String>,
    pub overdue: bool,
    pub updated_at: String,
}

impl From<enclave::domain::ApplicationSummary> for ApplicationSummary {
    fn from(v: enclave::domain::ApplicationSummary) -> Self {
        Self {
            id: v.id,
            project_id: v.project_id,
            applicant_id: v.applicant_id,
            status: v.status.into(),
            datasets: v.datasets,
            usage_method: v.usage_method.into(),
            providers: v.providers,
            submitted_at: v.submitted_at,
            due_date: v.due_date,
            overdue: v.overdue,
            updated_at: v.updated_at,
        }
    }
}

/// The agreement an approved application's applicant is asked to sign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgreementText {
    pub application_id: String,
    pub agreement_version: u32,
    pub language: String,
    /// The rendered text (Markdown).
    pub text: String,
    /// SHA-256 of `text`; send it back to sign exactly this text.
    pub sha256: String,
    /// Once signed: when, and the platform-countersigned receipt
    /// (`anyu verify-receipt` checks it, `--text` against `text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<serde_json::Value>,
}

impl From<enclave::domain::AgreementText> for AgreementText {
    fn from(v: enclave::domain::AgreementText) -> Self {
        Self {
            application_id: v.application_id,
            agreement_version: v.agreement_version,
            language: v.language,
            text: v.text,
            sha256: v.sha256,
            signed_at: v.signed_at,
            receipt: v.receipt,
        }
    }
}

/// A stored project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProjectRecord {
    pub id: String,
    pub owner_id: String,
    pub organisation: String,
    pub title: String,
    pub scenario_description: String,
    pub scenario_category: String,
    /// Account ids of the members besides the owner.
    pub members: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<enclave::store::ProjectRecord> for ProjectRecord {
    fn from(v: enclave::store::ProjectRecord) -> Self {
        Self {
            id: v.id,
            owner_id: v.owner_id,
            organisation: v.organisation,
            title: v.title,
            scenario_description: v.scenario_description,
            scenario_category: v.scenario_category,
            members: v.members,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A stored application.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApplicationRecord {
    pub id: String,
    pub project_id: String,
    pub applicant_id: String,
    pub status: ApplicationStatus,
    pub state: ApplicationState,
    pub draft: ApplicationDraft,
    /// Providers of the requested datasets.
    pub providers: Vec<String>,
    /// Fixed at submission: applicant, providers, approvals needed.
    pub facts: Option<ApplicationFacts>,
    pub submitted_at: Option<String>,
    /// Completeness check due by the end of this day (CST, XM:23).
    pub completeness_due: Option<String>,
    /// Review due by the end of this day (CST, SZ:42).
    pub review_due: Option<String>,
    pub revision: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<enclave::store::ApplicationRecord> for ApplicationRecord {
    fn from(v: enclave::store::ApplicationRecord) -> Self {
        Self {
            id: v.id,
            project_id: v.project_id,
            applicant_id: v.applicant_id,
            status: v.status.into(),
            state: v.state.into(),
            draft: v.draft.into(),
            providers: v.providers,
            facts: v.facts.map(Into::into),
            submitted_at: v.submitted_at,
            completeness_due: v.completeness_due,
            review_due: v.review_due,
            revision: v.revision,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// One step in an application's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApplicationEventRecord {
    pub seq: i64,
    pub event: String,
    pub actor_id: String,
    pub actor_username: String,
    /// `provider_steward` or `platform_admin` for reviewer steps.
    pub capacity: Option<String>,
    /// The provider a steward acted for.
    pub provider: Option<String>,
    pub from_status: String,
    pub to_status: String,
    pub reason: Option<String>,
    /// Conditions a reviewer attached to an approval.
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<serde_json::Value>,
    pub at: String,
}

impl From<enclave::store::ApplicationEventRecord> for ApplicationEventRecord {
    fn from(v: enclave::store::ApplicationEventRecord) -> Self {
        Self {
            seq: v.seq,
            event: v.event,
            actor_id: v.actor_id,
            actor_username: v.actor_username,
            capacity: v.capacity,
            provider: v.provider,
            from_status: v.from_status,
            to_status: v.to_status,
            reason: v.reason,
            conditions: v.conditions,
            at: v.at,
        }
    }
}

/// An uploaded material's metadata; the content is an encrypted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MaterialRecord {
    pub id: String,
    pub application_id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: u64,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

impl From<enclave::store::MaterialRecord> for MaterialRecord {
    fn from(v: enclave::store::MaterialRecord) -> Self {
        Self {
            id: v.id,
            application_id: v.application_id,
            name: v.name,
            content_type: v.content_type,
            bytes: v.bytes,
            sha256: v.sha256,
            uploaded_by: v.uploaded_by,
            uploaded_at: v.uploaded_at,
        }
    }
}
