//! Access rules: who may apply for which data, and the application and grant
//! workflows with joint review and separation of duties (REQUIREMENTS.md §3-4).
//!
//! Pure rules only: no database, no HTTP. The caller loads the facts and the
//! current state, calls [`check_eligibility`], [`apply`] or [`apply_grant`], then
//! persists the returned state and writes the audit event.

pub mod agreement;
pub mod authz;
pub mod eligibility;
pub mod workflow;

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
