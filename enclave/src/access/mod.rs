//! Access rules: who may apply for which data, and the application and grant
//! workflows with joint review and separation of duties (REQUIREMENTS.md §3-4).
//!
//! Pure rules and types only: no database, no HTTP. The caller (the
//! [`Domain`](crate::Domain)) loads the facts and the current state, calls
//! [`check_eligibility`], [`apply`] or [`apply_grant`], then persists the
//! returned state and writes the audit event.
//!
//! ```text
//!  NewProject ─▶ ApplicationDraft ─validate─▶ check_eligibility ─▶ apply(Submit)
//!     ─▶ completeness ─▶ joint review (apply(Approve) per reviewer) ─▶ approved
//!     ─▶ agreement::sign_receipt ─▶ Grant (datasets, columns, row filter, budgets)
//!     ─▶ Grant::check_usable before every job; apply_grant for suspend/revoke/expire
//! ```

pub mod agreement;
pub mod application;
pub mod authz;
pub mod eligibility;
pub mod grant;
pub mod output_review;
pub mod workflow;

pub use application::{
    AdmissionDetails, ApplicationDraft, ApplicationLimits, DatasetRequest, MaterialType,
    NewProject, RowCondition, RowFilter, SCENARIO_CATEGORIES, VersionPolicy, is_scenario_category,
};
pub use grant::{
    Budgets, Grant, GrantedDataset, GrantedVersion, NewUsageReport, OutputKind, ReportOutput, Usage,
};

pub use eligibility::{
    ACCIDENT_DISASTER, ApplicantFacts, CreditFlag, EMERGENCY, EMERGENCY_CATEGORIES,
    NATURAL_DISASTER, PUBLIC_HEALTH_EMERGENCY, PUBLIC_SAFETY, Refusal, RefusalCode, RequestFacts,
    check_eligibility, is_emergency,
};
pub use workflow::{
    ApplicationEvent, ApplicationFacts, ApplicationState, ApplicationStatus, GrantActor,
    GrantEvent, GrantFacts, GrantState, GrantStatus, GrantTransition, MIN_REASON_CHARS, Person,
    ReviewCapacity, ReviewProgress, ReviewRequirement, Reviewer, Transition, WorkflowError,
    WorkflowErrorCode, apply, apply_grant,
};
