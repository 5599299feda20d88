//! Projects, applications, materials, review and signing: the access workflow
//! of REQUIREMENTS §3-4 persisted, with one audit event per state change.
//!
//! ```text
//!  create_project ─▶ create_application (draft) ─▶ update / add_material
//!    ─▶ submit (validate + eligibility + workflow; completeness due in 3 working days)
//!    ─▶ review: start_completeness_check ─▶ completeness_passed (review due in 10)
//!       ─▶ approve × (steward per provider [+ admin] [+ more by grade]) | reject | return
//!    ─▶ agreement_text ─▶ sign_agreement ─▶ receipt + grant (one transaction)
//! ```
//!
//! Authorization (who may attempt a step) is decided by the HTTP layer through
//! `access::authz`; the rules here decide whether the step is legal.

use chrono::{NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};

use super::{Actor, Domain, audit_object, china_standard_time};
use crate::access::agreement::{self, AgreementTerms, SignedReceipt};
use crate::access::authz::{self, Action, Object};
use crate::access::{
    ApplicantFacts, ApplicationDraft, ApplicationEvent, ApplicationFacts, ApplicationState,
    ApplicationStatus, Budgets, Grant, GrantState, GrantedDataset, GrantedVersion, MaterialType,
    NewProject, Person, Refusal, RequestFacts, ReviewProgress, Reviewer, RowFilter,
    SCENARIO_CATEGORIES, VersionPolicy, apply, check_eligibility,
};
use crate::audit::Outcome;
use crate::catalog::{Manifest, OpenType, UsageMethod, is_dataset_id};
use crate::identity::{Principal, Role, User};
use crate::storage::blob;
use crate::store::{
    AgreementRecord, ApplicationEventRecord, ApplicationRecord, DatasetRecord, MaterialRecord,
    NewApplicationEvent, ProjectRecord,
};
use crate::{Error, Result};

/// A reviewer step on an application.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewStep {
    /// Start the completeness check (XM:23).
    StartCompletenessCheck,
    /// The materials are complete; the joint review starts.
    CompletenessPassed,
    /// One approval, acting for `provider` (stewards; default: a provider of
    /// the application they steward whose approval is still missing), with
    /// conditions narrowing what the grant will allow.
    Approve {
        provider: Option<String>,
        conditions: ReviewConditions,
    },
    /// Refuse, with a written reason (SZ:42).
    Reject { reason: String },
    /// Send back for changes, with a written reason (XM:23).
    Return { reason: String },
}

/// Conditions a reviewer attaches to an approval (minimum authorisation,
/// HZ:25). They only ever narrow: filters are ANDed, budgets capped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConditions {
    /// Row filters added per dataset.
    #[serde(default)]
    pub row_filters: Vec<DatasetFilter>,
    /// Caps on the grant's budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Budgets>,
}

/// A row filter for one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetFilter {
    /// Catalog id; must be one the application requests.
    pub dataset_id: String,
    /// The rows kept.
    pub filter: RowFilter,
}

impl ReviewConditions {
    fn is_empty(&self) -> bool {
        self.row_filters.is_empty() && self.budgets.is_none()
    }
}

/// An application as its readers see it: the record, its deadline, review
/// progress, history, materials and (while editable) what eligibility says.
#[derive(Debug, Clone, Serialize)]
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

/// One row of an application listing.
#[derive(Debug, Clone, Serialize)]
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

/// The agreement an approved application's applicant is asked to sign.
#[derive(Debug, Clone, Serialize)]
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
    pub receipt: Option<serde_json::Value>,
}

fn date_str(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn person(p: &Principal) -> Person {
    Person {
        user_id: p.user_id.clone(),
        organisation: p.organisation_id.clone(),
        person: p.person.clone(),
    }
}

/// The object part of audit events for an application.
fn app_object(id: &str) -> String {
    format!("application:{id}")
}

impl ApplicationRecord {
    /// The due date of the current step, and whether today is past it.
    pub(crate) fn deadline(&self, today: NaiveDate) -> (Option<String>, bool) {
        let due = match self.status {
            ApplicationStatus::Submitted | ApplicationStatus::CompletenessCheck => {
                self.completeness_due.clone()
            }
            ApplicationStatus::UnderReview => self.review_due.clone(),
            _ => None,
        };
        // YYYY-MM-DD compares correctly as text.
        let overdue = due.as_deref().is_some_and(|d| date_str(today).as_str() > d);
        (due, overdue)
    }
}

impl Domain {
    /// Opens a project for `owner` (a researcher). Members must be enabled
    /// researchers of the owner's organisation. Audited as `project.create`.
    pub async fn create_project<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        new: NewProject,
    ) -> Result<ProjectRecord> {
        let owner = self
            .allowed_on_platform(caller.into(), Action::CreateProject, "projects")
            .await?;
        new.validate()?;
        let mut members = Vec::new();
        // One answer for every reason a name cannot be a member: telling an
        // unknown name from a steward, a disabled account or another
        // organisation's researcher would let a researcher probe accounts.
        for (i, username) in new.members.iter().enumerate() {
            let refused = || {
                Error::InvalidArgument(format!(
                    "members[{i}]: must name an active researcher of the owner's organisation"
                ))
            };
            let user = self
                .identity
                .get_user(username)
                .await
                .map_err(|_| refused())?;
            if user.role != Role::Researcher
                || user.disabled
                || user.organisation_id != owner.organisation_id
            {
                return Err(refused());
            }
            if user.id != owner.user_id && !members.contains(&user.id) {
                members.push(user.id);
            }
        }
        let now = crate::store::now_rfc3339();
        let project = ProjectRecord {
            id: uuid::Uuid::now_v7().to_string(),
            owner_id: owner.user_id.clone(),
            organisation: owner.organisation.clone(),
            title: new.title.trim().to_string(),
            scenario_description: new.scenario_description.trim().to_string(),
            scenario_category: new.scenario_category.clone(),
            members,
            created_at: now.clone(),
            updated_at: now,
        };
        self.store.insert_project(&project).await?;
        self.record(
            &Actor::user(owner),
            "project.create",
            format!("project:{}", project.id),
            Outcome::Success,
            serde_json::json!({
                "scenario_category": project.scenario_category,
                "members": project.members.len(),
            }),
        )
        .await?;
        Ok(project)
    }

    /// One project.
    pub async fn project(&self, id: &str) -> Result<ProjectRecord> {
        self.store
            .project(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("project `{}`", shown_id(id))))
    }

    /// The projects `p` may read: a researcher's own and those they are a
    /// member of; everything for admins and auditors; none for stewards.
    pub async fn projects_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<ProjectRecord>> {
        let p = self.list_for(caller.into(), "projects").await?;
        let mut projects = self.store.list_projects().await?;
        projects.retain(|x| authz::may_read(p, &project_object(x)));
        Ok(projects)
    }

    /// One project, as `caller` may read it.
    pub async fn read_project<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ProjectRecord> {
        let object = audit_object("project", id);
        let p = self
            .signed_in(caller.into(), Action::ReadProject, &object)
            .await?;
        let project = self.project(id).await?;
        self.authorize(
            Some(p),
            Action::ReadProject,
            &project_object(&project),
            &object,
        )
        .await?;
        Ok(project)
    }

    /// The catalog records of the requested datasets, in request order. A
    /// dataset that the catalog hides answers exactly like an unknown one.
    async fn requested_datasets(&self, draft: &ApplicationDraft) -> Result<Vec<DatasetRecord>> {
        let mut out = Vec::with_capacity(draft.datasets.len());
        for (i, d) in draft.datasets.iter().enumerate() {
            let not_found = || {
                Error::InvalidArgument(format!(
                    "datasets[{i}].dataset_id: no such dataset in the catalog"
                ))
            };
            if !is_dataset_id(&d.dataset_id) {
                return Err(not_found());
            }
            let record = self
                .store
                .dataset(&d.dataset_id)
                .await?
                .filter(|r| self.visible(r))
                .ok_or_else(not_found)?;
            out.push(record);
        }
        Ok(out)
    }

    /// Structural checks of a draft plus the consent tables its filters need;
    /// returns the datasets' providers.
    async fn check_draft(
        &self,
        draft: &ApplicationDraft,
        records: &[DatasetRecord],
    ) -> Result<Vec<String>> {
        let manifests: Vec<&Manifest> = records.iter().map(|r| &r.manifest).collect();
        draft.validate(
            &manifests,
            self.today(),
            self.options.access.limits,
            agreement::current().version,
        )?;
        for (i, d) in draft.datasets.iter().enumerate() {
            if d.row_filter.as_ref().is_some_and(|f| f.consented_only)
                && self.store.latest_consent(&d.dataset_id).await?.is_none()
            {
                return Err(Error::InvalidArgument(format!(
                    "datasets[{i}].row_filter.consented_only: the dataset has no consent table"
                )));
            }
        }
        Ok(crate::access::workflow::providers_of(&manifests))
    }

    /// Writes a new draft application under `project`. Audited as `application.create`.
    pub async fn create_application<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        draft: ApplicationDraft,
    ) -> Result<ApplicationView> {
        let applicant = self
            .signed_in(caller.into(), Action::CreateApplication, "applications")
            .await?;
        let project = self
            .project(&draft.project_id)
            .await
            .map_err(|_| Error::InvalidArgument("project_id: no such project".into()))?;
        self.authorize(
            Some(applicant),
            Action::CreateApplication,
            &project_object(&project),
            &audit_object("project", &project.id),
        )
        .await?;
        let project = &project;
        let records = self.requested_datasets(&draft).await?;
        let providers = self.check_draft(&draft, &records).await?;
        let now = crate::store::now_rfc3339();
        let record = ApplicationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            project_id: project.id.clone(),
            applicant_id: applicant.user_id.clone(),
            status: ApplicationStatus::Draft,
            state: ApplicationState::Draft,
            draft,
            providers,
            facts: None,
            submitted_at: None,
            completeness_due: None,
            review_due: None,
            revision: 1,
            created_at: now.clone(),
            updated_at: now,
        };
        self.store
            .insert_application(
                &record,
                &NewApplicationEvent::new(
                    "create",
                    &applicant.user_id,
                    &applicant.username,
                    ApplicationStatus::Draft,
                    ApplicationStatus::Draft,
                ),
            )
            .await?;
        self.record(
            &Actor::user(applicant),
            "application.create",
            app_object(&record.id),
            Outcome::Success,
            serde_json::json!({
                "project_id": record.project_id,
                "datasets": record.draft.datasets.iter().map(|d| &d.dataset_id).collect::<Vec<_>>(),
                "usage_method": record.draft.usage_method,
            }),
        )
        .await?;
        self.view_of_application(self.application(&record.id).await?)
            .await
    }

    /// One application record.
    pub async fn application(&self, id: &str) -> Result<ApplicationRecord> {
        self.store
            .application(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("application `{}`", shown_id(id))))
    }

    /// The application `id`, once `caller` may perform `action` on it (401,
    /// then 404, then 403).
    async fn authorized_application<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
        id: &str,
    ) -> Result<(&'a Principal, ApplicationRecord)> {
        let object = audit_object("application", id);
        let p = self.signed_in(caller, action, &object).await?;
        let a = self.application(id).await?;
        self.authorize(Some(p), action, &application_object(&a), &object)
            .await?;
        Ok((p, a))
    }

    /// The application with its deadline, progress, history, materials,
    /// live eligibility (while editable) and grant, as `caller` may read it.
    pub async fn application_view<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ApplicationView> {
        let (_, application) = self
            .authorized_application(caller.into(), Action::ReadApplication, id)
            .await?;
        self.view_of_application(application).await
    }

    async fn view_of_application(&self, application: ApplicationRecord) -> Result<ApplicationView> {
        let id = application.id.clone();
        let id = id.as_str();
        let (due_date, overdue) = application.deadline(self.today());
        let progress = match (&application.state, &application.facts) {
            (ApplicationState::UnderReview { approvals }, Some(f)) => Some(f.progress(approvals)),
            _ => None,
        };
        let eligibility = match application.status {
            ApplicationStatus::Draft | ApplicationStatus::Returned => self
                .eligibility(&application)
                .await?
                .err()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut materials = self.store.materials(id).await?;
        for m in &mut materials {
            m.wrapped_key = None;
        }
        Ok(ApplicationView {
            history: self.store.application_events(id).await?,
            materials,
            grant_id: self.store.grant_for_application(id).await?.map(|g| g.id),
            application,
            due_date,
            overdue,
            progress,
            eligibility,
        })
    }

    /// The applications `p` may read, newest first: a researcher's own; a
    /// steward's submitted ones involving their providers; every submitted one
    /// for admins and auditors.
    pub async fn applications_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<ApplicationSummary>> {
        let p = self.list_for(caller.into(), "applications").await?;
        let today = self.today();
        Ok(self
            .store
            .list_applications()
            .await?
            .into_iter()
            .filter(|a| authz::may_read(p, &application_object(a)))
            .map(|a| {
                let (due_date, overdue) = a.deadline(today);
                ApplicationSummary {
                    datasets: a
                        .draft
                        .datasets
                        .iter()
                        .map(|d| d.dataset_id.clone())
                        .collect(),
                    usage_method: a.draft.usage_method,
                    id: a.id,
                    project_id: a.project_id,
                    applicant_id: a.applicant_id,
                    status: a.status,
                    providers: a.providers,
                    submitted_at: a.submitted_at,
                    due_date,
                    overdue,
                    updated_at: a.updated_at,
                }
            })
            .collect())
    }

    /// Replaces the body of a draft or returned application. Audited as `application.edit`.
    pub async fn update_application<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        draft: ApplicationDraft,
    ) -> Result<ApplicationView> {
        let (applicant, mut a) = self
            .authorized_application(caller.into(), Action::EditApplication, id)
            .await?;
        if !matches!(
            a.status,
            ApplicationStatus::Draft | ApplicationStatus::Returned
        ) {
            return self
                .refuse_step(
                    applicant,
                    &a.id,
                    "application.edit",
                    Error::Conflict(format!(
                        "an application in state `{}` cannot be edited; only drafts and returned applications can",
                        a.status.as_str()
                    )),
                )
                .await;
        }
        if draft.project_id != a.project_id {
            return Err(Error::InvalidArgument(
                "project_id: an application cannot move to another project".into(),
            ));
        }
        let records = self.requested_datasets(&draft).await?;
        a.providers = self.check_draft(&draft, &records).await?;
        a.draft = draft;
        let status = a.status;
        self.store
            .save_application(
                &a,
                &NewApplicationEvent::new(
                    "edit",
                    &applicant.user_id,
                    &applicant.username,
                    status,
                    status,
                ),
            )
            .await?;
        self.record(
            &Actor::user(applicant),
            "application.edit",
            app_object(id),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        self.view_of_application(self.application(id).await?).await
    }

    /// Audits a refused step (outcome `denied`) and returns the error.
    async fn refuse_step<T>(&self, by: &Principal, id: &str, action: &str, e: Error) -> Result<T> {
        let mut details = serde_json::json!({ "error_code": e.code() });
        if let Error::Ineligible(refusals) = &e {
            details["refusals"] =
                serde_json::json!(refusals.iter().map(|r| r.code.as_str()).collect::<Vec<_>>());
        }
        self.record(
            &Actor::user(by),
            action,
            app_object(id),
            Outcome::Denied,
            details,
        )
        .await?;
        Err(e)
    }

    /// Every eligibility rule over every requested dataset, with the account's
    /// current facts. Refusal reasons are prefixed with the dataset id when
    /// the application requests more than one.
    async fn eligibility(
        &self,
        a: &ApplicationRecord,
    ) -> Result<std::result::Result<(), Vec<Refusal>>> {
        let user: User = self.identity.get_user_by_id(&a.applicant_id).await?;
        let project = self.project(&a.project_id).await?;
        let applicant = ApplicantFacts {
            organisation_type: user.organisation_type,
            credit_flags: user.credit_flags.clone(),
            verified: user.verified,
        };
        let several = a.draft.datasets.len() > 1;
        let mut refusals = Vec::new();
        for d in &a.draft.datasets {
            let Some(record) = self.store.dataset(&d.dataset_id).await? else {
                return Err(Error::Conflict(format!(
                    "dataset `{}` left the catalog",
                    d.dataset_id
                )));
            };
            let request = RequestFacts {
                scenario_category: project.scenario_category.clone(),
                usage_method: a.draft.usage_method,
                columns: d.columns.clone(),
                purpose_is_research: a.draft.purpose_is_research,
            };
            if let Err(rs) = check_eligibility(&applicant, &request, &record.manifest) {
                for mut r in rs {
                    if several {
                        r.reason = format!("{}: {}", d.dataset_id, r.reason);
                    }
                    // The account-level rule is the same for every dataset: report it once.
                    if !refusals
                        .iter()
                        .any(|x: &Refusal| x.code == r.code && x.reason == r.reason)
                    {
                        refusals.push(r);
                    }
                }
            }
        }
        Ok(if refusals.is_empty() {
            Ok(())
        } else {
            Err(refusals)
        })
    }

    /// The facts the workflow fixes at submission.
    async fn application_facts(&self, a: &ApplicationRecord) -> Result<ApplicationFacts> {
        let user = self.identity.get_user_by_id(&a.applicant_id).await?;
        let mut manifests = Vec::new();
        for d in &a.draft.datasets {
            let r = self.store.dataset(&d.dataset_id).await?.ok_or_else(|| {
                Error::Conflict(format!("dataset `{}` left the catalog", d.dataset_id))
            })?;
            manifests.push(r.manifest);
        }
        let refs: Vec<&Manifest> = manifests.iter().collect();
        Ok(ApplicationFacts::new(
            Person {
                user_id: user.id,
                organisation: user.organisation_id,
                person: user.person,
            },
            &refs,
            &self.options.grades,
        ))
    }

    /// Submits (or resubmits) an application: the draft is re-validated, every
    /// eligibility rule runs, then the workflow's `submit`. The completeness
    /// check is due in `completeness_working_days` working days.
    pub async fn submit_application<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ApplicationView> {
        const ACTION: &str = "application.submit";
        let (applicant, mut a) = self
            .authorized_application(caller.into(), Action::EditApplication, id)
            .await?;
        // Legality first: submitting a submitted application is an illegal transition.
        let facts = match a.facts.clone() {
            Some(f) => f,
            None => self.application_facts(&a).await?,
        };
        if let Err(e) = apply(
            &facts,
            &a.state,
            &ApplicationEvent::Submit {
                by: person(applicant),
            },
        ) {
            return self.refuse_step(applicant, id, ACTION, e.into()).await;
        }
        let records = self.requested_datasets(&a.draft).await;
        let checked = match records {
            Ok(r) => self.check_draft(&a.draft, &r).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            return self.refuse_step(applicant, id, ACTION, e).await;
        }
        if let Err(refusals) = self.eligibility(&a).await? {
            return self
                .refuse_step(applicant, id, ACTION, Error::Ineligible(refusals))
                .await;
        }
        // Facts are fixed now, from the datasets as they are at submission.
        let facts = self.application_facts(&a).await?;
        let t = apply(
            &facts,
            &a.state,
            &ApplicationEvent::Submit {
                by: person(applicant),
            },
        )?;
        let today = self.today();
        let due = self
            .options
            .calendar
            .add_working_days(today, self.options.access.completeness_working_days);
        a.state = t.to.clone();
        a.facts = Some(facts);
        a.submitted_at = Some(crate::store::now_rfc3339());
        a.completeness_due = Some(date_str(due));
        a.review_due = None;
        self.store
            .save_application(
                &a,
                &NewApplicationEvent::new(
                    "submit",
                    &applicant.user_id,
                    &applicant.username,
                    t.from,
                    t.to.status(),
                ),
            )
            .await?;
        self.record(
            &Actor::user(applicant),
            ACTION,
            app_object(id),
            Outcome::Success,
            serde_json::json!({ "from": t.from, "completeness_due": date_str(due) }),
        )
        .await?;
        self.view_of_application(self.application(id).await?).await
    }

    /// The reviewer `p` acts as on `a`: an admin as the platform; a steward
    /// for `provider`, or for the first provider of the application they
    /// steward whose approval is still missing.
    fn reviewer_for(
        &self,
        p: &Principal,
        a: &ApplicationRecord,
        provider: Option<&str>,
    ) -> Result<Reviewer> {
        match p.role {
            Role::Admin => Ok(Reviewer::admin(&p.user_id, &p.organisation_id).as_person(&p.person)),
            Role::Steward => {
                let chosen = match provider {
                    Some(x) => {
                        if !p.provider_agencies.iter().any(|a| a == x) {
                            return Err(Error::InvalidArgument(
                                "provider: you do not steward that provider".into(),
                            ));
                        }
                        x.to_string()
                    }
                    None => {
                        let mine: Vec<&String> = a
                            .providers
                            .iter()
                            .filter(|x| p.provider_agencies.contains(x))
                            .collect();
                        let missing = match (&a.state, &a.facts) {
                            (ApplicationState::UnderReview { approvals }, Some(f)) => {
                                f.progress(approvals).stewards_missing
                            }
                            _ => Vec::new(),
                        };
                        mine.iter()
                            .find(|x| missing.contains(x))
                            .or(mine.first())
                            .map(|x| (*x).clone())
                            .ok_or_else(|| {
                                Error::Internal("steward reviewer without a provider".into())
                            })?
                    }
                };
                Ok(Reviewer::steward(&p.user_id, &p.organisation_id, chosen).as_person(&p.person))
            }
            Role::Researcher | Role::Auditor => Err(Error::Internal(
                "a non-reviewer reached the review path".into(),
            )),
        }
    }

    /// Checks an approval's conditions: filters on requested datasets of the
    /// reviewer's provider (any for admins), valid for the dataset, consent
    /// tables present; budgets well-formed.
    async fn check_conditions(
        &self,
        a: &ApplicationRecord,
        reviewer: &Reviewer,
        c: &ReviewConditions,
    ) -> Result<()> {
        for (i, f) in c.row_filters.iter().enumerate() {
            let field = format!("conditions.row_filters[{i}]");
            if !a
                .draft
                .datasets
                .iter()
                .any(|d| d.dataset_id == f.dataset_id)
            {
                return Err(Error::InvalidArgument(format!(
                    "{field}.dataset_id: the application does not request that dataset"
                )));
            }
            let record =
                self.store.dataset(&f.dataset_id).await?.ok_or_else(|| {
                    Error::Conflict("a requested dataset left the catalog".into())
                })?;
            if let crate::access::ReviewCapacity::ProviderSteward { provider } = &reviewer.capacity
                && *provider != record.manifest.dataset.provider
            {
                return Err(Error::InvalidArgument(format!(
                    "{field}.dataset_id: a steward may add filters only to their provider's datasets"
                )));
            }
            f.filter
                .validate(&format!("{field}.filter"), &record.manifest)?;
            if f.filter.consented_only && self.store.latest_consent(&f.dataset_id).await?.is_none()
            {
                return Err(Error::InvalidArgument(format!(
                    "{field}.filter.consented_only: the dataset has no consent table"
                )));
            }
        }
        if let Some(b) = &c.budgets {
            b.validate("conditions.budgets")?;
        }
        Ok(())
    }

    /// A reviewer step: completeness check, approval, rejection or return.
    /// Audited as `application.<event>`; refusals with outcome `denied`.
    pub async fn review_application<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        step: ReviewStep,
    ) -> Result<ApplicationView> {
        let (p, mut a) = self
            .authorized_application(caller.into(), Action::ReviewApplication, id)
            .await?;
        let provider = match &step {
            ReviewStep::Approve { provider, .. } => provider.as_deref(),
            _ => None,
        };
        let reviewer = self.reviewer_for(p, &a, provider)?;
        let (event, conditions) = match step {
            ReviewStep::StartCompletenessCheck => (
                ApplicationEvent::StartCompletenessCheck {
                    by: reviewer.clone(),
                },
                None,
            ),
            ReviewStep::CompletenessPassed => (
                ApplicationEvent::CompletenessPassed {
                    by: reviewer.clone(),
                },
                None,
            ),
            ReviewStep::Approve { conditions, .. } => (
                ApplicationEvent::Approve {
                    by: reviewer.clone(),
                },
                Some(conditions),
            ),
            ReviewStep::Reject { reason } => (
                ApplicationEvent::Reject {
                    by: reviewer.clone(),
                    reason,
                },
                None,
            ),
            ReviewStep::Return { reason } => (
                ApplicationEvent::Return {
                    by: reviewer.clone(),
                    reason,
                },
                None,
            ),
        };
        let action = format!("application.{}", event.name());
        let Some(mut facts) = a.facts.clone() else {
            // Never submitted: every reviewer event is illegal on a draft.
            let e = apply(&self.application_facts(&a).await?, &a.state, &event)
                .err()
                .map(Error::from)
                .unwrap_or_else(|| Error::Internal("a draft accepted a review step".into()));
            return self.refuse_step(p, id, &action, e).await;
        };
        // Who the applicant is (organisation, person) is read as it stands
        // now: facts fixed before organisations were entities named free text.
        let applicant = self.identity.get_user_by_id(&a.applicant_id).await?;
        facts.applicant.organisation = applicant.organisation_id;
        facts.applicant.person = applicant.person;
        // Persons are never stored with the approvals: look them up.
        if let ApplicationState::UnderReview { approvals } = &mut a.state {
            for r in approvals.iter_mut() {
                r.person = self.identity.get_user_by_id(&r.user_id).await?.person;
            }
        }
        let t = match apply(&facts, &a.state, &event) {
            Ok(t) => t,
            Err(e) => return self.refuse_step(p, id, &action, e.into()).await,
        };
        if let Some(c) = &conditions
            && let Err(e) = self.check_conditions(&a, &reviewer, c).await
        {
            return self.refuse_step(p, id, &action, e).await;
        }
        let reason = match &event {
            ApplicationEvent::Reject { .. } | ApplicationEvent::Return { .. } => match &t.to {
                ApplicationState::Rejected { reason, .. }
                | ApplicationState::Returned { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            _ => None,
        };
        let mut details = serde_json::json!({ "from": t.from, "to": t.to.status() });
        if t.to.status() == ApplicationStatus::UnderReview
            && t.from == ApplicationStatus::CompletenessCheck
        {
            let due = self
                .options
                .calendar
                .add_working_days(self.today(), self.options.access.review_working_days);
            a.review_due = Some(date_str(due));
            details["review_due"] = serde_json::json!(date_str(due));
        }
        let (capacity, provider) = match &reviewer.capacity {
            crate::access::ReviewCapacity::ProviderSteward { provider } => {
                ("provider_steward", Some(provider.clone()))
            }
            crate::access::ReviewCapacity::PlatformAdmin => ("platform_admin", None),
        };
        details["capacity"] = serde_json::json!(capacity);
        let conditions_json = conditions
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| Error::Internal(format!("review conditions do not serialize: {e}")))?;
        if conditions_json.is_some() {
            details["conditions"] = serde_json::json!(true);
        }
        a.state = t.to.clone();
        self.store
            .save_application(
                &a,
                &NewApplicationEvent {
                    event: &t.event,
                    actor_id: &p.user_id,
                    actor_username: &p.username,
                    capacity: Some(capacity),
                    provider: provider.as_deref(),
                    from_status: t.from,
                    to_status: t.to.status(),
                    reason: reason.as_deref(),
                    conditions: conditions_json.as_ref(),
                },
            )
            .await?;
        self.record(
            &Actor::user(p),
            &action,
            app_object(id),
            Outcome::Success,
            details,
        )
        .await?;
        self.view_of_application(self.application(id).await?).await
    }

    /// The agreement terms of an approved application, with versions resolved
    /// as the grant will pin them.
    async fn agreement_terms(&self, a: &ApplicationRecord) -> Result<AgreementTerms> {
        let user = self.identity.get_user_by_id(&a.applicant_id).await?;
        let project = self.project(&a.project_id).await?;
        let mut datasets = Vec::new();
        for d in &a.draft.datasets {
            let v = self
                .granted_version(&d.dataset_id, d.version_policy)
                .await?;
            datasets.push(match v {
                GrantedVersion::Latest => format!("{}@latest", d.dataset_id),
                GrantedVersion::Pinned { version } => format!("{}@v{version}", d.dataset_id),
            });
        }
        let category = SCENARIO_CATEGORIES
            .iter()
            .find(|(s, _)| *s == project.scenario_category)
            .map_or(project.scenario_category.as_str(), |(_, zh)| zh);
        Ok(AgreementTerms {
            application_id: a.id.clone(),
            applicant_name: user.real_name,
            organisation: user.organisation,
            datasets,
            period_start: a.draft.period_start,
            period_end: a.draft.period_end,
            scenario: format!("{category}：{}", project.title),
        })
    }

    async fn granted_version(
        &self,
        dataset_id: &str,
        policy: VersionPolicy,
    ) -> Result<GrantedVersion> {
        Ok(match policy {
            VersionPolicy::Latest => GrantedVersion::Latest,
            VersionPolicy::Pinned => {
                let record = self.store.dataset(dataset_id).await?.ok_or_else(|| {
                    Error::Conflict("a requested dataset left the catalog".into())
                })?;
                let version = record.latest_version.map(|v| v.version).ok_or_else(|| {
                    Error::Conflict(format!("dataset `{dataset_id}` has no version yet to pin"))
                })?;
                GrantedVersion::Pinned { version }
            }
        })
    }

    /// The agreement text the applicant of an approved application signs.
    pub async fn agreement_text<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<AgreementText> {
        let (_, a) = self
            .authorized_application(caller.into(), Action::SignAgreement, id)
            .await?;
        if a.status == ApplicationStatus::AgreementSigned {
            return self.signed_agreement_text(&a.id).await;
        }
        if a.status != ApplicationStatus::Approved {
            return Err(Error::Conflict(format!(
                "the agreement is offered once the application is approved; it is `{}`",
                a.status.as_str()
            )));
        }
        let template = agreement::current();
        let text = agreement::render(template, &self.agreement_terms(&a).await?);
        Ok(AgreementText {
            application_id: a.id,
            agreement_version: template.version,
            language: template.language.to_string(),
            sha256: agreement::sha256_hex(&text),
            text,
            signed_at: None,
            receipt: None,
        })
    }

    /// The agreement as it was signed: re-rendered from the terms the receipt
    /// signed (so later changes to the application or the template do not
    /// show), with the receipt itself.
    async fn signed_agreement_text(&self, id: &str) -> Result<AgreementText> {
        let stored = self
            .store
            .agreement(id)
            .await?
            .ok_or_else(|| Error::NotFound("signed agreement of this application".into()))?;
        let receipt: SignedReceipt = serde_json::from_str(&stored.receipt_json)
            .map_err(|_| Error::Internal("a stored receipt does not parse".into()))?;
        let template = agreement::by_version(receipt.agreement_version).ok_or_else(|| {
            Error::Internal("the signed agreement's version is unknown to this build".into())
        })?;
        let text = agreement::render(template, &receipt.terms);
        if agreement::sha256_hex(&text) != receipt.agreement_sha256 {
            return Err(Error::Internal(
                "the signed agreement no longer renders to its signed hash".into(),
            ));
        }
        Ok(AgreementText {
            application_id: id.to_string(),
            agreement_version: receipt.agreement_version,
            language: template.language.to_string(),
            sha256: receipt.agreement_sha256.clone(),
            text,
            signed_at: Some(receipt.signed_at.clone()),
            receipt: serde_json::from_str(&stored.receipt_json).ok(),
        })
    }

    /// Signs the use agreement of an approved application (SZ:42-43):
    /// `agreement_sha256` must be the hash of the text the applicant was shown.
    /// Eligibility is checked again; then, in one transaction, the application
    /// becomes `agreement_signed`, the countersigned receipt is stored and the
    /// grant is created. Audited as `agreement.sign` and `grant.create`.
    pub async fn sign_agreement<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        agreement_sha256: &str,
    ) -> Result<(SignedReceipt, Grant)> {
        const ACTION: &str = "agreement.sign";
        let (applicant, mut a) = self
            .authorized_application(caller.into(), Action::SignAgreement, id)
            .await?;
        let Some(facts) = a.facts.clone() else {
            return self
                .refuse_step(
                    applicant,
                    id,
                    ACTION,
                    Error::Conflict("the application has not been submitted".into()),
                )
                .await;
        };
        let event = ApplicationEvent::SignAgreement {
            by: person(applicant),
        };
        let t = match apply(&facts, &a.state, &event) {
            Ok(t) => t,
            Err(e) => return self.refuse_step(applicant, id, ACTION, e.into()).await,
        };
        if let Err(refusals) = self.eligibility(&a).await? {
            return self
                .refuse_step(applicant, id, ACTION, Error::Ineligible(refusals))
                .await;
        }
        let template = agreement::current();
        let terms = self.agreement_terms(&a).await?;
        let text = agreement::render(template, &terms);
        if agreement::sha256_hex(&text) != agreement_sha256.trim() {
            return self
                .refuse_step(
                    applicant,
                    id,
                    ACTION,
                    Error::Conflict(
                        "the agreement text changed since it was shown; fetch it again and sign that text"
                            .into(),
                    ),
                )
                .await;
        }
        let user = self.identity.get_user_by_id(&applicant.user_id).await?;
        // The grant first, so the receipt can sign what it allows.
        let grant = self.new_grant(&a, &agreement::sha256_hex(&text)).await?;
        let usage_method = serde_json::to_value(grant.usage_method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let receipt = agreement::sign_receipt(
            &self.keyring,
            template,
            &terms,
            &user.id,
            &user.username,
            self.now(),
            &text,
            Some(agreement::ReceiptConditions {
                grant_id: grant.id.clone(),
                usage_method,
                conditions_sha256: grant.conditions_sha256(),
            }),
        )?;
        a.state = t.to.clone();
        let agreement_record = AgreementRecord {
            application_id: a.id.clone(),
            user_id: user.id.clone(),
            agreement_version: receipt.agreement_version,
            agreement_sha256: agreement_sha256.to_string(),
            signed_at: receipt.signed_at.clone(),
            receipt_json: receipt.to_json(),
        };
        self.store
            .sign_agreement(
                &a,
                &NewApplicationEvent::new(
                    &t.event,
                    &applicant.user_id,
                    &applicant.username,
                    t.from,
                    t.to.status(),
                ),
                &agreement_record,
                &grant,
            )
            .await?;
        let actor = Actor::user(applicant);
        self.record(
            &actor,
            ACTION,
            app_object(id),
            Outcome::Success,
            serde_json::json!({
                "agreement_version": receipt.agreement_version,
                "agreement_sha256": receipt.agreement_sha256,
            }),
        )
        .await?;
        self.record(
            &actor,
            "grant.create",
            format!("grant:{}", grant.id),
            Outcome::Success,
            serde_json::json!({
                "application_id": a.id,
                "datasets": grant.datasets.iter().map(|d| &d.dataset_id).collect::<Vec<_>>(),
                "valid_from": grant.valid_from,
                "valid_until": grant.valid_until,
            }),
        )
        .await?;
        Ok((receipt, grant))
    }

    /// The grant a signed agreement opens: requested columns and versions,
    /// the requested filter AND every approver's, budgets capped by the
    /// datasets' DP budgets and every approver's caps.
    async fn new_grant(&self, a: &ApplicationRecord, agreement_sha256: &str) -> Result<Grant> {
        let user = self.identity.get_user_by_id(&a.applicant_id).await?;
        let project = self.project(&a.project_id).await?;
        // Approvals since the last submission carry the conditions in force.
        let history = self.store.application_events(&a.id).await?;
        let since = history
            .iter()
            .rposition(|e| e.event == "submit")
            .map_or(0, |i| i + 1);
        let conditions: Vec<ReviewConditions> = history[since..]
            .iter()
            .filter(|e| e.event == "approve")
            .filter_map(|e| e.conditions.clone())
            .map(|c| {
                serde_json::from_value(c).map_err(|e| {
                    Error::Internal(format!("stored review conditions unreadable: {e}"))
                })
            })
            .collect::<Result<_>>()?;

        let mut budgets = self.options.access.default_budgets;
        let mut datasets = Vec::new();
        for d in &a.draft.datasets {
            let record =
                self.store.dataset(&d.dataset_id).await?.ok_or_else(|| {
                    Error::Conflict("a requested dataset left the catalog".into())
                })?;
            if record.manifest.dataset.open_type == OpenType::NotOpen {
                return Err(Error::Conflict(format!(
                    "dataset `{}` is no longer open",
                    d.dataset_id
                )));
            }
            let dp = record.manifest.disclosure.dp;
            budgets.epsilon = budgets.epsilon.min(dp.epsilon_budget);
            budgets.delta = budgets.delta.min(dp.delta_budget);
            let mut filter = d.row_filter.clone().unwrap_or_default();
            for c in &conditions {
                for f in c
                    .row_filters
                    .iter()
                    .filter(|f| f.dataset_id == d.dataset_id)
                {
                    filter = filter.and(&f.filter);
                }
            }
            if filter.consented_only && self.store.latest_consent(&d.dataset_id).await?.is_none() {
                return Err(Error::Conflict(format!(
                    "dataset `{}` has no consent table, which the grant's filter needs",
                    d.dataset_id
                )));
            }
            datasets.push(GrantedDataset {
                dataset_id: d.dataset_id.clone(),
                provider: record.manifest.dataset.provider.clone(),
                version: self
                    .granted_version(&d.dataset_id, d.version_policy)
                    .await?,
                columns: d.columns.clone(),
                row_filter: filter,
            });
        }
        for c in &conditions {
            if let Some(b) = &c.budgets {
                budgets = budgets.min(b);
            }
        }
        let cst = china_standard_time();
        let midnight = |d: NaiveDate| -> Result<chrono::DateTime<chrono::Utc>> {
            cst.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
                .single()
                .map(|t| t.with_timezone(&chrono::Utc))
                .ok_or_else(|| Error::Internal("CST midnight is ambiguous".into()))
        };
        let end_next = a
            .draft
            .period_end
            .succ_opt()
            .ok_or_else(|| Error::InvalidArgument("period_end is out of range".into()))?;
        let now = crate::store::now_rfc3339();
        Ok(Grant {
            id: uuid::Uuid::now_v7().to_string(),
            application_id: a.id.clone(),
            project_id: a.project_id.clone(),
            holder_id: user.id,
            holder_username: user.username,
            organisation: user.organisation,
            scenario_category: project.scenario_category,
            usage_method: a.draft.usage_method,
            datasets,
            period_start: a.draft.period_start,
            period_end: a.draft.period_end,
            valid_from: midnight(a.draft.period_start)?,
            valid_until: midnight(end_next)?,
            state: GrantState::Active,
            budgets,
            usage: Default::default(),
            agreement_sha256: agreement_sha256.to_string(),
            created_at: now.clone(),
            updated_at: now,
            revision: 1,
        })
    }

    /// The signed receipt of an application's agreement.
    pub async fn agreement_receipt<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<String> {
        self.authorized_application(caller.into(), Action::ReadApplication, id)
            .await?;
        self.store
            .agreement(id)
            .await?
            .map(|a| a.receipt_json)
            .ok_or_else(|| Error::NotFound("signed agreement of this application".into()))
    }

    /// Stores an uploaded material, encrypted, while the application is a
    /// draft or returned. Type is checked against the content; size and count
    /// are limited. Audited as `application.material.upload`.
    pub async fn add_material<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<MaterialRecord> {
        const ACTION: &str = "application.material.upload";
        let (applicant, a) = self
            .authorized_application(caller.into(), Action::EditApplication, id)
            .await?;
        if !matches!(
            a.status,
            ApplicationStatus::Draft | ApplicationStatus::Returned
        ) {
            return self
                .refuse_step(
                    applicant,
                    id,
                    ACTION,
                    Error::Conflict(
                        "materials can be added only to drafts and returned applications".into(),
                    ),
                )
                .await;
        }
        crate::access::application::validate_material_name(name)?;
        let max = self.options.access.max_material_bytes;
        if bytes.is_empty() || bytes.len() as u64 > max {
            return Err(Error::InvalidArgument(format!(
                "a material must be 1 to {max} bytes"
            )));
        }
        let types = crate::access::application::MATERIAL_TYPES;
        let kind = match MaterialType::from_content_type(content_type) {
            Some(kind) => kind,
            // No type said (curl's default, octet-stream): the content decides.
            None if MaterialType::is_generic(content_type) => MaterialType::sniff(bytes)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "the content is none of the accepted types: {types}"
                    ))
                })?,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "content type not accepted; send the header `Content-Type:` with one of: {types}"
                )));
            }
        };
        if !kind.matches(bytes) {
            return Err(Error::InvalidArgument(
                "the content is not of the declared type".into(),
            ));
        }
        let existing = self.store.materials(id).await?;
        if existing.len() >= self.options.access.max_materials {
            return Err(Error::Conflict(format!(
                "an application holds at most {} materials",
                self.options.access.max_materials
            )));
        }
        let material_id = uuid::Uuid::now_v7().to_string();
        let aad = blob::SealedFor::Material(&material_id).aad();
        let (key, sealed) = blob::seal(&self.keyring, &aad, bytes)?;
        let path = self.dir.materials().join(format!("{material_id}.bin"));
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes));
        let record = MaterialRecord {
            id: material_id,
            application_id: id.to_string(),
            name: name.to_string(),
            content_type: kind.mime().to_string(),
            bytes: bytes.len() as u64,
            sha256,
            wrapped_key: Some(key),
            uploaded_by: applicant.user_id.clone(),
            uploaded_at: crate::store::now_rfc3339(),
        };
        let write = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || blob::write_new_file(&path, &sealed))
                .await
                .map_err(|e| Error::Internal(format!("material write task failed: {e}")))?
        };
        write?;
        if let Err(e) = self.store.insert_material(&record).await {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.record(
            &Actor::user(applicant),
            ACTION,
            app_object(id),
            Outcome::Success,
            serde_json::json!({
                "material_id": record.id,
                "content_type": record.content_type,
                "bytes": record.bytes,
                "sha256": record.sha256,
            }),
        )
        .await?;
        let mut shown = record;
        shown.wrapped_key = None;
        Ok(shown)
    }

    /// A material's decrypted content. Audited as `application.material.read`.
    pub async fn material_content<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        material_id: &str,
    ) -> Result<(MaterialRecord, Vec<u8>)> {
        let (reader, _) = self
            .authorized_application(caller.into(), Action::ReadApplication, id)
            .await?;
        let m = self
            .store
            .materials(id)
            .await?
            .into_iter()
            .find(|m| m.id == material_id)
            .ok_or_else(|| Error::NotFound("material".into()))?;
        let key = m
            .wrapped_key
            .clone()
            .ok_or_else(|| Error::Internal("stored material without key".into()))?;
        let path = self.dir.materials().join(format!("{}.bin", m.id));
        let sealed = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let aad = blob::SealedFor::Material(&m.id).aad();
        let plain = blob::open(&self.keyring, &key, &aad, &sealed)?;
        let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &plain));
        if digest != m.sha256 {
            return Err(Error::Crypto(
                "material content does not match its hash".into(),
            ));
        }
        self.record(
            &Actor::user(reader),
            "application.material.read",
            app_object(id),
            Outcome::Success,
            serde_json::json!({ "material_id": m.id }),
        )
        .await?;
        Ok((m, plain))
    }
}

fn project_object(p: &ProjectRecord) -> Object<'_> {
    Object::Project {
        owner_id: &p.owner_id,
        members: &p.members,
    }
}

fn application_object(a: &ApplicationRecord) -> Object<'_> {
    Object::Application {
        applicant_id: &a.applicant_id,
        providers: &a.providers,
        submitted: a.status != ApplicationStatus::Draft,
    }
}

/// An id from the caller, shown in messages only when it looks like one.
pub(crate) fn shown_id(id: &str) -> &str {
    if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        id
    } else {
        "<malformed id>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_ids() {
        assert_eq!(shown_id("0190-abc"), "0190-abc");
        assert_eq!(shown_id("a'b"), "<malformed id>");
        assert_eq!(shown_id(""), "<malformed id>");
    }
}
