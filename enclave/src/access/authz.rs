//! Authorization in one place: [`authorize`] decides every (principal, action,
//! object) triple. Deny by default: a combination not listed is refused.
//!
//! Handlers never compare roles themselves; they name the [`Action`] they are
//! about to perform and call `authorize`. A test enumerates every HTTP route ×
//! every role (and anonymous) against the expected matrix, so a new route
//! cannot skip this function unnoticed.

use serde::Serialize;

use crate::identity::{Principal, Role, Scope, TokenKind};

/// Something a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Liveness, the API description.
    ReadPublic,
    /// Browse and search the catalog: metadata and quality summaries.
    ReadCatalog,
    /// Exchange a username and password for a session.
    Login,
    /// End one's own session.
    Logout,
    /// Read one's own account.
    ReadOwnAccount,
    /// List and manage accounts.
    ManageUsers,
    /// Read audit events.
    ReadAudit,
    /// File a public complaint about open data (SZ:65).
    FileComplaint,
    /// Read and answer complaints.
    HandleComplaints,
    /// The authority's dashboard figures.
    ViewOverview,
    /// List and revoke one's own API tokens.
    ManageOwnCredentials,
    /// Create an API token (from a login session, the password re-entered).
    CreateApiToken,
    /// Change one's own password (from a login session; the one thing a
    /// forced-change session may do).
    ChangePassword,
    /// Open a research project.
    CreateProject,
    /// Read a project.
    ReadProject,
    /// List projects, applications or grants (each caller sees what they may read).
    ListWork,
    /// Write an application under a project.
    CreateApplication,
    /// Edit, upload materials to, or submit one's own application.
    EditApplication,
    /// Read an application, its history and materials.
    ReadApplication,
    /// Completeness check and joint review of an application (SZ:42, XM:23).
    ReviewApplication,
    /// Sign the use agreement of one's own approved application.
    SignAgreement,
    /// Read a grant.
    ReadGrant,
    /// Suspend, reinstate or revoke a grant (SZ:63).
    ManageGrant,
    /// File a usage report on one's own grant (SZ:43(1)).
    ReportUsage,
    /// Submit a query under one's own grant.
    SubmitJob,
    /// Read a job's state, counts and verdicts (never values).
    ReadJob,
    /// Read what the data decided of a job before its release: checks,
    /// counts, the candidate's hash, exact times (its reviewers, the platform).
    ReadJobChecks,
    /// Cancel a queued or running job.
    CancelJob,
    /// Review a result before release (output checking).
    ReviewOutput,
    /// Read a release's certificate.
    ReadRelease,
    /// Download a released result.
    DownloadRelease,
    /// Bring a WebAssembly model into the domain (SZ:44).
    UploadModel,
    /// Read a model's record and approvals (researchers: their own uploads).
    ReadModel,
    /// Approve or refuse a model for a dataset of one's provider.
    ApproveModel,
}

impl Action {
    /// Stable name, used in audit records of denials.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadPublic => "read_public",
            Action::ReadCatalog => "read_catalog",
            Action::Login => "login",
            Action::Logout => "logout",
            Action::ReadOwnAccount => "read_own_account",
            Action::ManageUsers => "manage_users",
            Action::ReadAudit => "read_audit",
            Action::FileComplaint => "file_complaint",
            Action::HandleComplaints => "handle_complaints",
            Action::ViewOverview => "view_overview",
            Action::ManageOwnCredentials => "manage_own_credentials",
            Action::CreateApiToken => "create_api_token",
            Action::ChangePassword => "change_password",
            Action::CreateProject => "create_project",
            Action::ReadProject => "read_project",
            Action::ListWork => "list_work",
            Action::CreateApplication => "create_application",
            Action::EditApplication => "edit_application",
            Action::ReadApplication => "read_application",
            Action::ReviewApplication => "review_application",
            Action::SignAgreement => "sign_agreement",
            Action::ReadGrant => "read_grant",
            Action::ManageGrant => "manage_grant",
            Action::ReportUsage => "report_usage",
            Action::SubmitJob => "submit_job",
            Action::ReadJob => "read_job",
            Action::ReadJobChecks => "read_job_checks",
            Action::CancelJob => "cancel_job",
            Action::ReviewOutput => "review_output",
            Action::ReadRelease => "read_release",
            Action::DownloadRelease => "download_release",
            Action::UploadModel => "upload_model",
            Action::ReadModel => "read_model",
            Action::ApproveModel => "approve_model",
        }
    }
}

/// What a credential needs for an action, besides the role's permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any valid credential (a session or an API token of any scope).
    AnyCredential,
    /// A session, or an API token carrying this scope.
    Scope(Scope),
    /// A login session: an API token never does this (a token cannot mint
    /// tokens, change the password or sign an agreement).
    Session,
}

impl Action {
    /// What a credential needs for this action. Every action is listed, so a
    /// new one must be placed here before it compiles.
    pub fn needs(self) -> Needs {
        use Action as A;
        match self {
            A::ReadPublic | A::ReadCatalog | A::Login | A::FileComplaint => Needs::AnyCredential,
            A::Logout | A::ManageOwnCredentials => Needs::AnyCredential,
            A::CreateApiToken | A::ChangePassword | A::SignAgreement => Needs::Session,
            A::ReadOwnAccount
            | A::ReadAudit
            | A::ViewOverview
            | A::ReadProject
            | A::ListWork
            | A::ReadApplication
            | A::ReadGrant
            | A::ReadJob
            | A::ReadJobChecks
            | A::ReadRelease
            | A::DownloadRelease
            | A::ReadModel => Needs::Scope(Scope::Read),
            A::CreateProject
            | A::CreateApplication
            | A::EditApplication
            | A::ReportUsage
            | A::SubmitJob
            | A::CancelJob
            | A::UploadModel => Needs::Scope(Scope::Jobs),
            A::ReviewApplication | A::ManageGrant | A::ReviewOutput | A::ApproveModel => {
                Needs::Scope(Scope::Review)
            }
            A::ManageUsers | A::HandleComplaints => Needs::Scope(Scope::Admin),
        }
    }
}

/// Whether the caller's credential (not its role) allows `action`.
fn credential_allows(p: &Principal, action: Action) -> bool {
    match (action.needs(), p.token_kind) {
        (Needs::AnyCredential, _) | (_, TokenKind::Session) => true,
        (Needs::Scope(scope), TokenKind::Api) => p.scopes.contains(&scope),
        (Needs::Session, TokenKind::Api) => false,
    }
}

/// What the action is performed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object<'a> {
    /// The platform as a whole (catalog, accounts, audit log).
    Platform,
    /// One account.
    User { user_id: &'a str },
    /// A research project.
    Project {
        /// Account id of its owner.
        owner_id: &'a str,
        /// Account ids of its other members.
        members: &'a [String],
    },
    /// An application.
    Application {
        /// Account id of the applicant.
        applicant_id: &'a str,
        /// Providers of the requested datasets.
        providers: &'a [String],
        /// False while it is a draft nobody else should see.
        submitted: bool,
    },
    /// A grant.
    Grant {
        /// Account id of the researcher holding it.
        holder_id: &'a str,
        /// Providers of the granted datasets.
        providers: &'a [String],
    },
    /// A catalog dataset (for decisions a provider's steward makes on it).
    Dataset {
        /// The dataset's provider agency.
        providers: &'a [String],
    },
    /// An upload of a model (the same bytes uploaded by two researchers are
    /// two uploads).
    Model {
        /// Account id of the researcher who uploaded it.
        owner_id: &'a str,
    },
    /// A job (query) or its release, under a grant.
    Job {
        /// Account id of the researcher who submitted it (the grant's holder).
        requester_id: &'a str,
        /// Providers of the grant's datasets.
        providers: &'a [String],
    },
}

/// Whether a steward acts for one of `providers`.
fn stewards_any(p: &Principal, providers: &[String]) -> bool {
    p.provider_agencies.iter().any(|a| providers.contains(a))
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    /// No valid credentials were presented, and the action needs them.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// The session may only change the account's password (a new account,
    /// a reset) until it is changed.
    PasswordChangeRequired,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Decides whether `principal` (None = anonymous) may perform `action` on `object`.
pub fn authorize(principal: Option<&Principal>, action: Action, object: &Object<'_>) -> Decision {
    use Action as A;
    // Public actions need no identity at all.
    if matches!(
        action,
        A::ReadPublic | A::ReadCatalog | A::Login | A::FileComplaint
    ) {
        return Decision::Allow;
    }
    let Some(p) = principal else {
        return Decision::Deny(Denial::Unauthenticated);
    };
    // Whoever set a one-time code knows it: until the owner sets their own
    // password, the session does nothing else.
    if p.must_change_password
        && !matches!(action, A::ChangePassword | A::Logout | A::ReadOwnAccount)
    {
        return Decision::Deny(Denial::PasswordChangeRequired);
    }
    if !credential_allows(p, action) {
        return Decision::Deny(Denial::Forbidden);
    }
    let allowed = match (action, p.role, object) {
        (A::Logout, _, Object::Platform) => true,
        (A::ReadOwnAccount, _, Object::User { user_id }) => *user_id == p.user_id,
        (A::ManageUsers, Role::Admin, _) => true,
        (A::ReadAudit, Role::Auditor | Role::Admin, Object::Platform) => true,
        // The platform authority answers the public (SZ:65).
        (A::HandleComplaints | A::ViewOverview, Role::Admin, Object::Platform) => true,
        (
            A::ManageOwnCredentials | A::CreateApiToken | A::ChangePassword,
            _,
            Object::User { user_id },
        ) => *user_id == p.user_id,
        // Listing is open to every signed-in role; the domain filters by what each may read.
        (A::ListWork, _, Object::Platform) => true,
        (A::CreateProject, Role::Researcher, Object::Platform) => true,
        // An application is written under a project its applicant belongs to.
        (A::CreateApplication, Role::Researcher, Object::Project { owner_id, members }) => {
            *owner_id == p.user_id || members.contains(&p.user_id)
        }
        (A::ReadProject, Role::Researcher, Object::Project { owner_id, members }) => {
            *owner_id == p.user_id || members.contains(&p.user_id)
        }
        (A::ReadProject, Role::Admin | Role::Auditor, Object::Project { .. }) => true,
        (
            A::EditApplication | A::SignAgreement,
            Role::Researcher,
            Object::Application { applicant_id, .. },
        ) => *applicant_id == p.user_id,
        (A::ReadApplication, Role::Researcher, Object::Application { applicant_id, .. }) => {
            *applicant_id == p.user_id
        }
        // Reviewers see an application once it is submitted; drafts stay private.
        (
            A::ReadApplication | A::ReviewApplication,
            Role::Steward,
            Object::Application {
                providers,
                submitted: true,
                ..
            },
        ) => stewards_any(p, providers),
        (
            A::ReadApplication | A::ReviewApplication,
            Role::Admin,
            Object::Application {
                submitted: true, ..
            },
        ) => true,
        (
            A::ReadApplication,
            Role::Auditor,
            Object::Application {
                submitted: true, ..
            },
        ) => true,
        (A::ReadGrant | A::ReportUsage, Role::Researcher, Object::Grant { holder_id, .. }) => {
            *holder_id == p.user_id
        }
        (A::ReadGrant | A::ManageGrant, Role::Steward, Object::Grant { providers, .. }) => {
            stewards_any(p, providers)
        }
        (A::ReadGrant | A::ManageGrant, Role::Admin, Object::Grant { .. }) => true,
        (A::ReadGrant, Role::Auditor, Object::Grant { .. }) => true,
        (A::SubmitJob, Role::Researcher, Object::Grant { holder_id, .. }) => {
            *holder_id == p.user_id
        }
        (
            A::ReadJob | A::CancelJob | A::ReadRelease | A::DownloadRelease,
            Role::Researcher,
            Object::Job { requester_id, .. },
        ) => *requester_id == p.user_id,
        (
            A::ReadJob | A::ReviewOutput | A::ReadRelease | A::DownloadRelease,
            Role::Steward,
            Object::Job { providers, .. },
        ) => stewards_any(p, providers),
        (
            A::ReadJob | A::CancelJob | A::ReviewOutput | A::ReadRelease | A::DownloadRelease,
            Role::Admin,
            Object::Job { .. },
        ) => true,
        (A::UploadModel, Role::Researcher, Object::Platform) => true,
        // Models are code, not data: every signed-in role may look, but a
        // researcher sees only their own uploads.
        (A::ReadModel, _, Object::Platform) => true,
        (A::ReadModel, Role::Researcher, Object::Model { owner_id }) => *owner_id == p.user_id,
        (A::ReadModel, Role::Steward | Role::Admin | Role::Auditor, Object::Model { .. }) => true,
        (A::ApproveModel, Role::Steward, Object::Dataset { providers }) => {
            stewards_any(p, providers)
        }
        // Auditors follow what was released, not the data itself.
        (A::ReadJob | A::ReadRelease, Role::Auditor, Object::Job { .. }) => true,
        // What the data decided is seen by those who review it, never by the
        // requester before release (a count, a hash or a time is a channel).
        (A::ReadJobChecks, Role::Steward, Object::Job { providers, .. }) => {
            stewards_any(p, providers)
        }
        (A::ReadJobChecks, Role::Admin | Role::Auditor, Object::Job { .. }) => true,
        _ => false,
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(Denial::Forbidden)
    }
}

/// Whether `p` reviews the outputs of jobs over `providers`' data.
pub fn reviews_outputs(p: &Principal, providers: &[String]) -> bool {
    let object = Object::Job {
        requester_id: "",
        providers,
    };
    authorize(Some(p), Action::ReviewOutput, &object).is_allowed()
}

/// Whether `p` sees what the data decided of a job before its release.
pub fn may_read_job_checks(p: &Principal, job: &Object<'_>) -> bool {
    authorize(Some(p), Action::ReadJobChecks, job).is_allowed()
}

/// Whether `p` may read `object`: the filter of every listing, so a list
/// never shows what the object's own route would refuse.
pub fn may_read(p: &Principal, object: &Object<'_>) -> bool {
    let action = match object {
        Object::Project { .. } => Action::ReadProject,
        Object::Application { .. } => Action::ReadApplication,
        Object::Grant { .. } => Action::ReadGrant,
        Object::Job { .. } => Action::ReadJob,
        Object::Model { .. } => Action::ReadModel,
        Object::Platform | Object::User { .. } | Object::Dataset { .. } => return false,
    };
    authorize(Some(p), action, object).is_allowed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::OrganisationType;
    use crate::identity::TokenKind;

    fn principal(role: Role) -> Principal {
        Principal {
            user_id: "u1".into(),
            username: "someone".into(),
            role,
            organisation_id: "org".into(),
            organisation: "org".into(),
            organisation_type: OrganisationType::University,
            provider_agencies: Vec::new(),
            token_kind: TokenKind::Session,
            scopes: Scope::ALL.to_vec(),
            person: "p1".into(),
            must_change_password: false,
        }
    }

    #[test]
    fn a_forced_change_session_only_changes_the_password() {
        let mut p = principal(Role::Admin);
        p.must_change_password = true;
        let me = Object::User { user_id: "u1" };
        assert!(authorize(Some(&p), Action::ChangePassword, &me).is_allowed());
        assert!(authorize(Some(&p), Action::ReadOwnAccount, &me).is_allowed());
        for action in [
            Action::ManageUsers,
            Action::ManageOwnCredentials,
            Action::ListWork,
        ] {
            let object = if action == Action::ManageOwnCredentials {
                me
            } else {
                Object::Platform
            };
            assert_eq!(
                authorize(Some(&p), action, &object),
                Decision::Deny(Denial::PasswordChangeRequired),
                "{action:?}"
            );
        }
    }

    fn api_token(role: Role, scopes: &[Scope]) -> Principal {
        Principal {
            token_kind: TokenKind::Api,
            scopes: scopes.to_vec(),
            ..principal(role)
        }
    }

    #[test]
    fn an_api_token_acts_only_within_its_scopes() {
        let me = Object::User { user_id: "u1" };
        let read = api_token(Role::Admin, &[Scope::Read]);
        assert!(authorize(Some(&read), Action::ReadAudit, &Object::Platform).is_allowed());
        assert_eq!(
            authorize(Some(&read), Action::ManageUsers, &Object::Platform),
            Decision::Deny(Denial::Forbidden)
        );
        let admin = api_token(Role::Admin, &[Scope::Admin]);
        assert!(authorize(Some(&admin), Action::ManageUsers, &Object::Platform).is_allowed());
        assert!(!authorize(Some(&admin), Action::ReadAudit, &Object::Platform).is_allowed());
        // A scope never widens the role.
        let researcher = api_token(Role::Researcher, &Scope::ALL);
        assert!(!authorize(Some(&researcher), Action::ManageUsers, &Object::Platform).is_allowed());
        // No token, whatever its scopes, mints tokens or changes the password.
        for action in [Action::CreateApiToken, Action::ChangePassword] {
            assert!(!authorize(Some(&researcher), action, &me).is_allowed());
            assert!(authorize(Some(&principal(Role::Researcher)), action, &me).is_allowed());
        }
        // Revoking one's own token needs no particular scope.
        let jobs = api_token(Role::Researcher, &[Scope::Jobs]);
        assert!(authorize(Some(&jobs), Action::ManageOwnCredentials, &me).is_allowed());
    }

    #[test]
    fn anonymous_only_reaches_public_actions() {
        for action in [Action::ReadPublic, Action::ReadCatalog, Action::Login] {
            assert!(authorize(None, action, &Object::Platform).is_allowed());
        }
        for action in [Action::Logout, Action::ManageUsers, Action::ReadAudit] {
            assert_eq!(
                authorize(None, action, &Object::Platform),
                Decision::Deny(Denial::Unauthenticated)
            );
        }
    }

    #[test]
    fn own_account_only() {
        let p = principal(Role::Researcher);
        assert!(
            authorize(
                Some(&p),
                Action::ReadOwnAccount,
                &Object::User { user_id: "u1" }
            )
            .is_allowed()
        );
        assert_eq!(
            authorize(
                Some(&p),
                Action::ReadOwnAccount,
                &Object::User { user_id: "u2" }
            ),
            Decision::Deny(Denial::Forbidden)
        );
    }

    #[test]
    fn roles() {
        for role in [Role::Researcher, Role::Steward, Role::Admin, Role::Auditor] {
            let p = principal(role);
            let manage = authorize(Some(&p), Action::ManageUsers, &Object::Platform).is_allowed();
            let audit = authorize(Some(&p), Action::ReadAudit, &Object::Platform).is_allowed();
            assert_eq!(manage, role == Role::Admin, "{role:?}");
            assert_eq!(
                audit,
                matches!(role, Role::Admin | Role::Auditor),
                "{role:?}"
            );
        }
    }
}
