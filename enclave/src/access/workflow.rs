//! The application and grant state machines (REQUIREMENTS.md §4).
//!
//! ```text
//! application:  draft ─submit─▶ submitted ─start_completeness_check─▶ completeness_check
//!   completeness_check ─completeness_passed─▶ under_review      ─return─▶ returned
//!   under_review ─approve (until every required approval is in)─▶ approved
//!                ─reject─▶ rejected (final)   ─return─▶ returned ─submit─▶ submitted
//!   approved ─sign_agreement─▶ agreement_signed (final; the caller creates the grant)
//! grant:  active ─suspend─▶ suspended ─reinstate─▶ active
//!         active | suspended ─revoke─▶ revoked (final)
//!         active | suspended ─expire (system, at the period's end)─▶ expired (final)
//! ```
//!
//! Pure functions: the caller loads facts and state, calls [`apply`] or
//! [`apply_grant`], and persists the returned state (and audits the event).
//! Error messages name states, events and roles, never people or organisations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{GradePolicy, GradeScale, Manifest};

/// Minimum length, in characters after trimming, of a written reason.
pub const MIN_REASON_CHARS: usize = 5;

/// A person as the workflow sees them: who, and for which organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Account id.
    pub user_id: String,
    /// Organisation id.
    pub organisation: String,
    /// The person behind the account (keyed hash of the 身份证号), filled in
    /// by the caller before a step and never stored or shown; empty, the
    /// account stands for the person.
    #[serde(skip)]
    pub person: String,
}

/// Who acts, for "two different people" rules: the person, else the account.
fn who<'a>(person: &'a str, user_id: &'a str) -> &'a str {
    if person.is_empty() { user_id } else { person }
}

impl Person {
    /// The person the rules count.
    pub fn who(&self) -> &str {
        who(&self.person, &self.user_id)
    }
}

/// The capacity a reviewer acts in. The caller establishes it from the account's
/// roles; the workflow checks it fits the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Someone acting on an application as a reviewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    /// Account id.
    pub user_id: String,
    /// Organisation id.
    pub organisation: String,
    /// The person behind the account (see [`Person::person`]); never stored.
    #[serde(skip)]
    pub person: String,
    /// Capacity acted in.
    pub capacity: ReviewCapacity,
}

impl Reviewer {
    /// The person the rules count.
    pub fn who(&self) -> &str {
        who(&self.person, &self.user_id)
    }

    /// The same reviewer, standing for `person`.
    pub fn as_person(mut self, person: impl Into<String>) -> Self {
        self.person = person.into();
        self
    }

    /// A provider steward.
    pub fn steward(
        user_id: impl Into<String>,
        organisation: impl Into<String>,
        provider: impl Into<String>,
    ) -> Self {
        Reviewer {
            user_id: user_id.into(),
            organisation: organisation.into(),
            person: String::new(),
            capacity: ReviewCapacity::ProviderSteward {
                provider: provider.into(),
            },
        }
    }

    /// A platform administrator.
    pub fn admin(user_id: impl Into<String>, organisation: impl Into<String>) -> Self {
        Reviewer {
            user_id: user_id.into(),
            organisation: organisation.into(),
            person: String::new(),
            capacity: ReviewCapacity::PlatformAdmin,
        }
    }
}

/// How many approvals an application needs and whether the platform co-reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRequirement {
    /// Distinct approvers needed in total (at least 1).
    pub reviewers_required: u32,
    /// Whether a platform administrator must approve besides the provider.
    pub joint_review: bool,
}

impl ReviewRequirement {
    /// The requirement of one grade.
    pub fn from_grade(grade: &GradePolicy) -> Self {
        ReviewRequirement {
            reviewers_required: grade.reviewers_required.max(1),
            joint_review: grade.joint_review,
        }
    }

    /// The strictest requirement over the grades of `manifests`. A grade the
    /// scale does not know counts as the scale's strictest, never looser.
    pub fn for_datasets(grades: &GradeScale, manifests: &[&Manifest]) -> Self {
        let mut req = ReviewRequirement {
            reviewers_required: 1,
            joint_review: false,
        };
        for m in manifests {
            let g = grades
                .get(&m.dataset.grade)
                .cloned()
                .unwrap_or_else(|| grades.strictest());
            let r = Self::from_grade(&g);
            req.reviewers_required = req.reviewers_required.max(r.reviewers_required);
            req.joint_review |= r.joint_review;
        }
        req
    }
}

/// The distinct providers of `manifests`, sorted.
pub fn providers_of(manifests: &[&Manifest]) -> Vec<String> {
    let mut providers: Vec<String> = manifests
        .iter()
        .map(|m| m.dataset.provider.clone())
        .collect();
    providers.sort();
    providers.dedup();
    providers
}

/// The fixed facts of an application the workflow rules depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationFacts {
    /// Who applied.
    pub applicant: Person,
    /// Provider agencies of the requested datasets, each needing a steward's approval.
    pub providers: Vec<String>,
    /// Approvals needed.
    pub review: ReviewRequirement,
}

impl ApplicationFacts {
    /// Facts for an application by `applicant` for the datasets of `manifests`.
    pub fn new(applicant: Person, manifests: &[&Manifest], grades: &GradeScale) -> Self {
        ApplicationFacts {
            applicant,
            providers: providers_of(manifests),
            review: ReviewRequirement::for_datasets(grades, manifests),
        }
    }

    /// What `approvals` still lack.
    pub fn progress(&self, approvals: &[Reviewer]) -> ReviewProgress {
        let stewards_missing: Vec<String> = self
            .providers
            .iter()
            .filter(|p| {
                !approvals.iter().any(|a| {
                    matches!(&a.capacity, ReviewCapacity::ProviderSteward { provider } if provider == *p)
                })
            })
            .cloned()
            .collect();
        let admin_missing = self.review.joint_review
            && !approvals
                .iter()
                .any(|a| a.capacity == ReviewCapacity::PlatformAdmin);
        let specific = stewards_missing.len() + usize::from(admin_missing);
        let required = self.review.reviewers_required as usize;
        let further = required.saturating_sub(approvals.len() + specific);
        ReviewProgress {
            approvals: approvals.len(),
            stewards_missing,
            admin_missing,
            further_approvals_missing: further,
        }
    }
}

/// What an application under review still needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl ReviewProgress {
    /// The outstanding approvals in words, without naming anyone.
    fn describe_missing(&self) -> String {
        let mut parts = Vec::new();
        match self.stewards_missing.len() {
            0 => {}
            1 => parts.push("a provider steward's approval".to_owned()),
            n => parts.push(format!("approvals by stewards of {n} providers")),
        }
        if self.admin_missing {
            parts.push("the platform administrator's approval".to_owned());
        }
        match self.further_approvals_missing {
            0 => {}
            1 => parts.push("one more approval".to_owned()),
            n => parts.push(format!("{n} more approvals")),
        }
        parts.join(" and ")
    }

    /// True when every required approval is in.
    pub fn is_complete(&self) -> bool {
        self.stewards_missing.is_empty()
            && !self.admin_missing
            && self.further_approvals_missing == 0
    }
}

/// State of an application. Serialized with a `state` tag in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The state names, without their data (database column, listings, messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl ApplicationStatus {
    /// Every status, in workflow order.
    pub const ALL: [ApplicationStatus; 8] = [
        ApplicationStatus::Draft,
        ApplicationStatus::Submitted,
        ApplicationStatus::CompletenessCheck,
        ApplicationStatus::UnderReview,
        ApplicationStatus::Approved,
        ApplicationStatus::Rejected,
        ApplicationStatus::Returned,
        ApplicationStatus::AgreementSigned,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationStatus::Draft => "draft",
            ApplicationStatus::Submitted => "submitted",
            ApplicationStatus::CompletenessCheck => "completeness_check",
            ApplicationStatus::UnderReview => "under_review",
            ApplicationStatus::Approved => "approved",
            ApplicationStatus::Rejected => "rejected",
            ApplicationStatus::Returned => "returned",
            ApplicationStatus::AgreementSigned => "agreement_signed",
        }
    }

    /// True for states no event leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ApplicationStatus::Rejected | ApplicationStatus::AgreementSigned
        )
    }
}

impl ApplicationState {
    /// The state's name.
    pub fn status(&self) -> ApplicationStatus {
        match self {
            ApplicationState::Draft => ApplicationStatus::Draft,
            ApplicationState::Submitted => ApplicationStatus::Submitted,
            ApplicationState::CompletenessCheck => ApplicationStatus::CompletenessCheck,
            ApplicationState::UnderReview { .. } => ApplicationStatus::UnderReview,
            ApplicationState::Approved { .. } => ApplicationStatus::Approved,
            ApplicationState::Rejected { .. } => ApplicationStatus::Rejected,
            ApplicationState::Returned { .. } => ApplicationStatus::Returned,
            ApplicationState::AgreementSigned { .. } => ApplicationStatus::AgreementSigned,
        }
    }
}

/// Something that happens to an application. Serialized with an `event` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApplicationEvent {
    /// The applicant submits (from draft) or resubmits (from returned).
    Submit {
        /// Who submits; must be the applicant.
        by: Person,
    },
    /// A reviewer starts the completeness check.
    StartCompletenessCheck {
        /// Who checks.
        by: Reviewer,
    },
    /// The materials are complete; review starts.
    CompletenessPassed {
        /// Who checked.
        by: Reviewer,
    },
    /// One approval of the (joint) review.
    Approve {
        /// Who approves, in which capacity.
        by: Reviewer,
    },
    /// Refusal, with a written reason (SZ:42).
    Reject {
        /// Who rejects.
        by: Reviewer,
        /// Why.
        reason: String,
    },
    /// Sent back for changes, with a written reason (XM:23).
    Return {
        /// Who returns it.
        by: Reviewer,
        /// Why.
        reason: String,
    },
    /// The applicant signs the use agreement (SZ:43).
    SignAgreement {
        /// Who signs; must be the applicant.
        by: Person,
    },
}

impl ApplicationEvent {
    /// Stable snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            ApplicationEvent::Submit { .. } => "submit",
            ApplicationEvent::StartCompletenessCheck { .. } => "start_completeness_check",
            ApplicationEvent::CompletenessPassed { .. } => "completeness_passed",
            ApplicationEvent::Approve { .. } => "approve",
            ApplicationEvent::Reject { .. } => "reject",
            ApplicationEvent::Return { .. } => "return",
            ApplicationEvent::SignAgreement { .. } => "sign_agreement",
        }
    }

    /// The event as a verb phrase taking "an application" as its object.
    fn verb(&self) -> &'static str {
        match self {
            ApplicationEvent::Submit { .. } => "submit",
            ApplicationEvent::StartCompletenessCheck { .. } => "start the completeness check of",
            ApplicationEvent::CompletenessPassed { .. } => "pass the completeness check of",
            ApplicationEvent::Approve { .. } => "approve",
            ApplicationEvent::Reject { .. } => "reject",
            ApplicationEvent::Return { .. } => "return",
            ApplicationEvent::SignAgreement { .. } => "sign the agreement of",
        }
    }
}

/// A successful step: where from, by which event, where to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// State before.
    pub from: ApplicationStatus,
    /// Event name ([`ApplicationEvent::name`]).
    pub event: String,
    /// State after; persist it.
    pub to: ApplicationState,
}

/// Why a workflow step was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowErrorCode {
    /// The event is not allowed in the current state.
    IllegalTransition,
    /// Only the applicant may do this.
    NotApplicant,
    /// A reviewer acted on their own application.
    SelfReview,
    /// A reviewer from the applicant's organisation acted on the application.
    SameOrganisation,
    /// The same person tried to give a second approval.
    DuplicateApprover,
    /// The reviewer's capacity does not fit (e.g. steward of another provider).
    NotEligibleReviewer,
    /// Every approval this capacity could give is already in.
    ApprovalNotNeeded,
    /// A written reason is missing or too short.
    ReasonRequired,
    /// The actor may not act on this grant this way.
    NotAuthorized,
    /// The grant's period has not ended yet.
    PeriodNotEnded,
}

impl WorkflowErrorCode {
    /// Stable snake_case code, part of the public API.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowErrorCode::IllegalTransition => "illegal_transition",
            WorkflowErrorCode::NotApplicant => "not_applicant",
            WorkflowErrorCode::SelfReview => "self_review",
            WorkflowErrorCode::SameOrganisation => "same_organisation",
            WorkflowErrorCode::DuplicateApprover => "duplicate_approver",
            WorkflowErrorCode::NotEligibleReviewer => "not_eligible_reviewer",
            WorkflowErrorCode::ApprovalNotNeeded => "approval_not_needed",
            WorkflowErrorCode::ReasonRequired => "reason_required",
            WorkflowErrorCode::NotAuthorized => "not_authorized",
            WorkflowErrorCode::PeriodNotEnded => "period_not_ended",
        }
    }
}

/// A refused workflow step: a stable code and a message naming the state, the
/// event and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WorkflowError {
    /// Which rule refused.
    pub code: WorkflowErrorCode,
    /// Full explanation.
    pub message: String,
}

impl WorkflowError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    fn new(code: WorkflowErrorCode, message: String) -> Self {
        WorkflowError { code, message }
    }
}

fn refuse(
    code: WorkflowErrorCode,
    state: ApplicationStatus,
    event: &ApplicationEvent,
    why: impl std::fmt::Display,
) -> WorkflowError {
    WorkflowError::new(
        code,
        format!(
            "cannot {} an application in state `{}`: {why}",
            event.verb(),
            state.as_str()
        ),
    )
}

/// Why `event` cannot happen in `state` (only called for illegal pairs).
fn illegal_why(state: ApplicationStatus, event: &ApplicationEvent) -> &'static str {
    use ApplicationEvent as E;
    use ApplicationStatus as S;
    match (state, event) {
        (S::Draft, _) => "it has not been submitted",
        (S::Submitted, E::Submit { .. }) => "it is already submitted",
        (S::Submitted, _) => "its completeness check has not started",
        (S::CompletenessCheck, E::StartCompletenessCheck { .. }) => {
            "its completeness check is already under way"
        }
        (S::CompletenessCheck, E::Submit { .. }) => "it is already submitted",
        (S::CompletenessCheck, _) => "its completeness check has not passed",
        (S::UnderReview, E::SignAgreement { .. }) => "it has not been approved",
        (S::UnderReview, _) => "it is already under review",
        (S::Approved, _) => "it is already approved; only the agreement can be signed",
        (S::Rejected, _) => "it was rejected, which is final",
        (S::Returned, _) => "it was returned to the applicant and must be resubmitted first",
        (S::AgreementSigned, _) => "its agreement is already signed, which is final",
    }
}

fn check_reason(
    state: ApplicationStatus,
    event: &ApplicationEvent,
    reason: &str,
) -> Result<String, WorkflowError> {
    let trimmed = reason.trim();
    if trimmed.chars().count() < MIN_REASON_CHARS {
        return Err(refuse(
            WorkflowErrorCode::ReasonRequired,
            state,
            event,
            format_args!("a written reason of at least {MIN_REASON_CHARS} characters is required"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Separation of duties and capacity checks every reviewer action goes through.
fn check_reviewer(
    app: &ApplicationFacts,
    state: ApplicationStatus,
    event: &ApplicationEvent,
    by: &Reviewer,
) -> Result<(), WorkflowError> {
    if by.user_id == app.applicant.user_id || by.who() == app.applicant.who() {
        return Err(refuse(
            WorkflowErrorCode::SelfReview,
            state,
            event,
            "nobody may review their own application",
        ));
    }
    if by.organisation == app.applicant.organisation {
        return Err(refuse(
            WorkflowErrorCode::SameOrganisation,
            state,
            event,
            "nobody from the applicant's organisation may review it",
        ));
    }
    if let ReviewCapacity::ProviderSteward { provider } = &by.capacity
        && !app.providers.contains(provider)
    {
        return Err(refuse(
            WorkflowErrorCode::NotEligibleReviewer,
            state,
            event,
            "the reviewer is a steward of a provider whose data the application does not request",
        ));
    }
    Ok(())
}

fn check_applicant(
    app: &ApplicationFacts,
    state: ApplicationStatus,
    event: &ApplicationEvent,
    by: &Person,
) -> Result<(), WorkflowError> {
    if by.user_id != app.applicant.user_id {
        return Err(refuse(
            WorkflowErrorCode::NotApplicant,
            state,
            event,
            "only the applicant may do this",
        ));
    }
    Ok(())
}

/// Records one approval: refuses a second approval by the same person and an
/// approval that no outstanding requirement needs.
fn approve(
    app: &ApplicationFacts,
    event: &ApplicationEvent,
    approvals: &[Reviewer],
    by: &Reviewer,
) -> Result<ApplicationState, WorkflowError> {
    let state = ApplicationStatus::UnderReview;
    if approvals
        .iter()
        .any(|a| a.user_id == by.user_id || a.who() == by.who())
    {
        return Err(refuse(
            WorkflowErrorCode::DuplicateApprover,
            state,
            event,
            "this reviewer has already approved it; the approvals must come from different people",
        ));
    }
    let before = app.progress(approvals);
    let fills_named = match &by.capacity {
        ReviewCapacity::ProviderSteward { provider } => before.stewards_missing.contains(provider),
        ReviewCapacity::PlatformAdmin => before.admin_missing,
    };
    if !fills_named && before.further_approvals_missing == 0 {
        let capacity = match &by.capacity {
            ReviewCapacity::ProviderSteward { .. } => "this provider's steward",
            ReviewCapacity::PlatformAdmin => "a platform administrator",
        };
        return Err(refuse(
            WorkflowErrorCode::ApprovalNotNeeded,
            state,
            event,
            format_args!(
                "no further approval by {capacity} is needed; the review still needs {}",
                before.describe_missing()
            ),
        ));
    }
    let mut approvals = approvals.to_vec();
    approvals.push(by.clone());
    if app.progress(&approvals).is_complete() {
        Ok(ApplicationState::Approved { approvals })
    } else {
        Ok(ApplicationState::UnderReview { approvals })
    }
}

/// Applies `event` to an application in `state`. Returns the new state, or why
/// the step is refused: an illegal (state, event) pair first, then who may act
/// (applicant, separation of duties, capacity), then the reason text.
pub fn apply(
    app: &ApplicationFacts,
    state: &ApplicationState,
    event: &ApplicationEvent,
) -> Result<Transition, WorkflowError> {
    use ApplicationEvent as E;
    use ApplicationState as S;
    let from = state.status();
    let to = match (state, event) {
        (S::Draft | S::Returned { .. }, E::Submit { by }) => {
            check_applicant(app, from, event, by)?;
            S::Submitted
        }
        (S::Submitted, E::StartCompletenessCheck { by }) => {
            check_reviewer(app, from, event, by)?;
            S::CompletenessCheck
        }
        (S::CompletenessCheck, E::CompletenessPassed { by }) => {
            check_reviewer(app, from, event, by)?;
            S::UnderReview {
                approvals: Vec::new(),
            }
        }
        (S::UnderReview { approvals }, E::Approve { by }) => {
            check_reviewer(app, from, event, by)?;
            approve(app, event, approvals, by)?
        }
        (S::UnderReview { .. }, E::Reject { by, reason }) => {
            check_reviewer(app, from, event, by)?;
            let reason = check_reason(from, event, reason)?;
            S::Rejected {
                by: by.clone(),
                reason,
            }
        }
        (S::CompletenessCheck | S::UnderReview { .. }, E::Return { by, reason }) => {
            check_reviewer(app, from, event, by)?;
            let reason = check_reason(from, event, reason)?;
            S::Returned {
                by: by.clone(),
                reason,
            }
        }
        (S::Approved { approvals }, E::SignAgreement { by }) => {
            check_applicant(app, from, event, by)?;
            S::AgreementSigned {
                approvals: approvals.clone(),
            }
        }
        _ => {
            return Err(refuse(
                WorkflowErrorCode::IllegalTransition,
                from,
                event,
                illegal_why(from, event),
            ));
        }
    };
    Ok(Transition {
        from,
        event: event.name().to_owned(),
        to,
    })
}

/// Who acts on a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl GrantActor {
    fn role(&self) -> &'static str {
        match self {
            GrantActor::Steward { .. } => "steward",
            GrantActor::Admin { .. } => "admin",
            GrantActor::Monitoring => "monitoring",
            GrantActor::System => "system",
        }
    }
}

/// The fixed facts of a grant the workflow rules depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFacts {
    /// Providers of the granted datasets; their stewards may act on the grant.
    pub providers: Vec<String>,
    /// End of the validity period (exclusive).
    pub valid_until: DateTime<Utc>,
}

/// State of a grant. Reinstating returns a suspended grant to `active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Grant state names, without their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// See [`GrantState::Active`].
    Active,
    /// See [`GrantState::Suspended`].
    Suspended,
    /// See [`GrantState::Revoked`].
    Revoked,
    /// See [`GrantState::Expired`].
    Expired,
}

impl GrantStatus {
    /// Every status.
    pub const ALL: [GrantStatus; 4] = [
        GrantStatus::Active,
        GrantStatus::Suspended,
        GrantStatus::Revoked,
        GrantStatus::Expired,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Suspended => "suspended",
            GrantStatus::Revoked => "revoked",
            GrantStatus::Expired => "expired",
        }
    }
}

impl GrantState {
    /// The state's name.
    pub fn status(&self) -> GrantStatus {
        match self {
            GrantState::Active => GrantStatus::Active,
            GrantState::Suspended { .. } => GrantStatus::Suspended,
            GrantState::Revoked { .. } => GrantStatus::Revoked,
            GrantState::Expired => GrantStatus::Expired,
        }
    }
}

/// Something that happens to a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GrantEvent {
    /// Suspend (steward, admin or monitoring), with a reason.
    Suspend {
        /// Who.
        by: GrantActor,
        /// Why.
        reason: String,
    },
    /// Lift a suspension (the suspending side, or an admin for a
    /// steward's), with a reason.
    Reinstate {
        /// Who.
        by: GrantActor,
        /// Why the suspension can end (what was rectified).
        #[serde(default)]
        reason: String,
    },
    /// End the grant early (steward or admin), with a reason.
    Revoke {
        /// Who.
        by: GrantActor,
        /// Why.
        reason: String,
    },
    /// End the grant at its period's end (system only).
    Expire {
        /// Who; must be [`GrantActor::System`].
        by: GrantActor,
        /// Now.
        at: DateTime<Utc>,
    },
}

impl GrantEvent {
    /// Stable snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            GrantEvent::Suspend { .. } => "suspend",
            GrantEvent::Reinstate { .. } => "reinstate",
            GrantEvent::Revoke { .. } => "revoke",
            GrantEvent::Expire { .. } => "expire",
        }
    }

    fn actor(&self) -> &GrantActor {
        match self {
            GrantEvent::Suspend { by, .. }
            | GrantEvent::Reinstate { by, .. }
            | GrantEvent::Revoke { by, .. }
            | GrantEvent::Expire { by, .. } => by,
        }
    }
}

/// A successful grant step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTransition {
    /// State before.
    pub from: GrantStatus,
    /// Event name ([`GrantEvent::name`]).
    pub event: String,
    /// State after; persist it.
    pub to: GrantState,
}

fn refuse_grant(
    code: WorkflowErrorCode,
    state: GrantStatus,
    event: &GrantEvent,
    why: impl std::fmt::Display,
) -> WorkflowError {
    WorkflowError::new(
        code,
        format!(
            "cannot {} a grant in state `{}`: {why}",
            event.name(),
            state.as_str()
        ),
    )
}

/// Applies `event` to a grant in `state`: legality of the pair first, then the
/// actor, then the reason or the period.
pub fn apply_grant(
    grant: &GrantFacts,
    state: &GrantState,
    event: &GrantEvent,
) -> Result<GrantTransition, WorkflowError> {
    use GrantEvent as E;
    use GrantStatus as S;
    let from = state.status();
    let legal = matches!(
        (from, event),
        (S::Active, E::Suspend { .. })
            | (S::Suspended, E::Reinstate { .. })
            | (
                S::Active | S::Suspended,
                E::Revoke { .. } | E::Expire { .. }
            )
    );
    if !legal {
        let why = match (from, event) {
            (S::Revoked, _) => "it was revoked, which is final",
            (S::Expired, _) => "it has expired, which is final",
            (S::Suspended, E::Suspend { .. }) => "it is already suspended",
            (_, E::Reinstate { .. }) => "it is not suspended",
            _ => "the event does not apply",
        };
        return Err(refuse_grant(
            WorkflowErrorCode::IllegalTransition,
            from,
            event,
            why,
        ));
    }

    let actor = event.actor();
    let allowed = match event {
        E::Suspend { .. } => matches!(
            actor,
            GrantActor::Steward { .. } | GrantActor::Admin { .. } | GrantActor::Monitoring
        ),
        E::Reinstate { .. } | E::Revoke { .. } => {
            matches!(actor, GrantActor::Steward { .. } | GrantActor::Admin { .. })
        }
        E::Expire { .. } => matches!(actor, GrantActor::System),
    };
    if !allowed {
        let who = match event {
            E::Suspend { .. } => "a steward, an admin or monitoring",
            E::Reinstate { .. } | E::Revoke { .. } => "a steward or an admin",
            E::Expire { .. } => "the system",
        };
        return Err(refuse_grant(
            WorkflowErrorCode::NotAuthorized,
            from,
            event,
            format_args!("only {who} may do this, not {}", actor.role()),
        ));
    }
    if let GrantActor::Steward { provider, .. } = actor
        && !grant.providers.contains(provider)
    {
        return Err(refuse_grant(
            WorkflowErrorCode::NotAuthorized,
            from,
            event,
            "the steward does not steward a provider of this grant's data",
        ));
    }

    // A suspension is lifted by the side that imposed it: an admin's only by
    // an admin; a steward's by a steward of the same provider or an admin.
    if let (E::Reinstate { by, .. }, GrantState::Suspended { by: suspender, .. }) = (event, state) {
        let may = match (suspender, by) {
            (GrantActor::Admin { .. }, by) => matches!(by, GrantActor::Admin { .. }),
            (GrantActor::Steward { provider: p, .. }, GrantActor::Steward { provider, .. }) => {
                p == provider
            }
            _ => true,
        };
        if !may {
            return Err(refuse_grant(
                WorkflowErrorCode::NotAuthorized,
                from,
                event,
                "only the side that suspended the grant (or an admin, for a steward's suspension) may reinstate it",
            ));
        }
    }

    let reason = |r: &str| {
        let t = r.trim();
        if t.chars().count() < MIN_REASON_CHARS {
            Err(refuse_grant(
                WorkflowErrorCode::ReasonRequired,
                from,
                event,
                format_args!(
                    "a written reason of at least {MIN_REASON_CHARS} characters is required"
                ),
            ))
        } else {
            Ok(t.to_owned())
        }
    };
    let to = match event {
        E::Suspend { by, reason: r } => GrantState::Suspended {
            by: by.clone(),
            reason: reason(r)?,
        },
        E::Reinstate { reason: r, .. } => {
            reason(r)?;
            GrantState::Active
        }
        E::Revoke { by, reason: r } => GrantState::Revoked {
            by: by.clone(),
            reason: reason(r)?,
        },
        E::Expire { at, .. } => {
            if *at < grant.valid_until {
                return Err(refuse_grant(
                    WorkflowErrorCode::PeriodNotEnded,
                    from,
                    event,
                    "its validity period has not ended yet",
                ));
            }
            GrantState::Expired
        }
    };
    Ok(GrantTransition {
        from,
        event: event.name().to_owned(),
        to,
    })
}
