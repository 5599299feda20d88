//! Accounts, organisations, API tokens and privileged account requests.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OrganisationType;

/// What an account change did.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AccountOutcome {
    /// Done. The one-time code is for the account's owner, shown this once:
    /// it signs in once into a session that can only set the owner's
    /// password, which also asks for their 身份证号.
    Done {
        #[schema(value_type = Object)]
        user: User,
        one_time_code: String,
        /// RFC 3339 UTC.
        code_expires_at: String,
    },
    /// Waiting for another administrator.
    Requested {
        #[schema(value_type = Object)]
        request: AccountRequestRecord,
    },
    /// Refused by another administrator.
    Refused {
        #[schema(value_type = Object)]
        request: AccountRequestRecord,
    },
}

impl From<enclave::domain::AccountOutcome> for AccountOutcome {
    fn from(v: enclave::domain::AccountOutcome) -> Self {
        match v {
            enclave::domain::AccountOutcome::Done {
                user,
                one_time_code,
                code_expires_at,
            } => Self::Done {
                user: user.into(),
                one_time_code,
                code_expires_at,
            },
            enclave::domain::AccountOutcome::Requested { request } => Self::Requested {
                request: request.into(),
            },
            enclave::domain::AccountOutcome::Refused { request } => Self::Refused {
                request: request.into(),
            },
        }
    }
}

/// What an account may do; authorization decides per action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Applies for and uses data.
    Researcher,
    /// Acts for one or more provider agencies (reviews, imports).
    Steward,
    /// Operates the platform.
    Admin,
    /// Reads the audit log.
    Auditor,
}

impl From<enclave::identity::Role> for Role {
    fn from(v: enclave::identity::Role) -> Self {
        match v {
            enclave::identity::Role::Researcher => Self::Researcher,
            enclave::identity::Role::Steward => Self::Steward,
            enclave::identity::Role::Admin => Self::Admin,
            enclave::identity::Role::Auditor => Self::Auditor,
        }
    }
}

impl From<Role> for enclave::identity::Role {
    fn from(v: Role) -> Self {
        match v {
            Role::Researcher => Self::Researcher,
            Role::Steward => Self::Steward,
            Role::Admin => Self::Admin,
            Role::Auditor => Self::Auditor,
        }
    }
}

/// Credit-list entries (XM:24) that bar an account from conditional data.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CreditFlag {
    /// On the dishonest-debtor list (失信被执行人).
    DishonestDebtor,
    /// On the abnormal-operation list (经营异常名录).
    AbnormalOperation,
    /// On the serious-violation list (严重违法失信名单).
    SeriousViolation,
}

impl From<enclave::identity::CreditFlag> for CreditFlag {
    fn from(v: enclave::identity::CreditFlag) -> Self {
        match v {
            enclave::identity::CreditFlag::DishonestDebtor => Self::DishonestDebtor,
            enclave::identity::CreditFlag::AbnormalOperation => Self::AbnormalOperation,
            enclave::identity::CreditFlag::SeriousViolation => Self::SeriousViolation,
        }
    }
}

impl From<CreditFlag> for enclave::identity::CreditFlag {
    fn from(v: CreditFlag) -> Self {
        match v {
            CreditFlag::DishonestDebtor => Self::DishonestDebtor,
            CreditFlag::AbnormalOperation => Self::AbnormalOperation,
            CreditFlag::SeriousViolation => Self::SeriousViolation,
        }
    }
}

/// A real-name account. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// UUID v7.
    pub id: String,
    pub username: String,
    pub real_name: String,
    /// The organisation's id; the rules compare this, never the name.
    pub organisation_id: String,
    /// The organisation's name, as registered.
    pub organisation: String,
    pub organisation_type: OrganisationType,
    pub role: Role,
    /// Provider agencies a steward acts for; empty for other roles.
    pub provider_agencies: Vec<String>,
    /// Real-name verification done.
    pub verified: bool,
    /// Bound to a person by a checked 身份证号 (only its keyed hash is kept).
    pub person_bound: bool,
    /// The next session may only change the password.
    pub must_change_password: bool,
    pub credit_flags: Vec<CreditFlag>,
    pub disabled: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<enclave::identity::User> for User {
    fn from(v: enclave::identity::User) -> Self {
        Self {
            id: v.id,
            username: v.username,
            real_name: v.real_name,
            organisation_id: v.organisation_id,
            organisation: v.organisation,
            organisation_type: v.organisation_type.into(),
            role: v.role.into(),
            provider_agencies: v.provider_agencies,
            verified: v.verified,
            person_bound: v.person_bound,
            must_change_password: v.must_change_password,
            credit_flags: v.credit_flags.into_iter().map(Into::into).collect(),
            disabled: v.disabled,
            created_at: v.created_at,
        }
    }
}

/// What an API token may be used for; the account's role still decides
/// within it. A login session carries every scope. Which scope each action
/// needs is decided by `access::authz` alone.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read what the role may read: listings, jobs, releases, downloads, the audit log.
    Read,
    /// A researcher's work: projects, applications, jobs, models, usage reports.
    Jobs,
    /// Reviews: applications, outputs, models, grant suspension.
    Review,
    /// Platform administration: accounts, complaints.
    Admin,
}

impl From<enclave::identity::Scope> for Scope {
    fn from(v: enclave::identity::Scope) -> Self {
        match v {
            enclave::identity::Scope::Read => Self::Read,
            enclave::identity::Scope::Jobs => Self::Jobs,
            enclave::identity::Scope::Review => Self::Review,
            enclave::identity::Scope::Admin => Self::Admin,
        }
    }
}

impl From<Scope> for enclave::identity::Scope {
    fn from(v: Scope) -> Self {
        match v {
            Scope::Read => Self::Read,
            Scope::Jobs => Self::Jobs,
            Scope::Review => Self::Review,
            Scope::Admin => Self::Admin,
        }
    }
}

/// An API token's metadata; the token itself is shown only once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenInfo {
    /// UUID v7.
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: String,
    /// RFC 3339 UTC. `None` only on tokens made before tokens expired by default.
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// What the token may be used for.
    pub scopes: Vec<Scope>,
}

impl From<enclave::identity::ApiTokenInfo> for ApiTokenInfo {
    fn from(v: enclave::identity::ApiTokenInfo) -> Self {
        Self {
            id: v.id,
            user_id: v.user_id,
            name: v.name,
            created_at: v.created_at,
            expires_at: v.expires_at,
            revoked_at: v.revoked_at,
            scopes: v.scopes.into_iter().map(Into::into).collect(),
        }
    }
}

/// An organisation accounts belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Organisation {
    /// UUID v7.
    pub id: String,
    /// The name as registered (NFKC, invisible characters removed).
    pub name: String,
    /// 统一社会信用代码; `None` for individuals and for organisations migrated
    /// from the free-text column until an administrator records it.
    pub credit_code: Option<String>,
    pub organisation_type: OrganisationType,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<enclave::identity::Organisation> for Organisation {
    fn from(v: enclave::identity::Organisation) -> Self {
        Self {
            id: v.id,
            name: v.name,
            credit_code: v.credit_code,
            organisation_type: v.organisation_type.into(),
            created_at: v.created_at,
        }
    }
}

/// What an administrator supplies to register an organisation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisation {
    pub name: String,
    /// 统一社会信用代码, 18 characters; required except for individuals.
    #[serde(default)]
    pub credit_code: Option<String>,
    pub organisation_type: OrganisationType,
}

impl From<enclave::identity::NewOrganisation> for NewOrganisation {
    fn from(v: enclave::identity::NewOrganisation) -> Self {
        Self {
            name: v.name,
            credit_code: v.credit_code,
            organisation_type: v.organisation_type.into(),
        }
    }
}

impl From<NewOrganisation> for enclave::identity::NewOrganisation {
    fn from(v: NewOrganisation) -> Self {
        Self {
            name: v.name,
            credit_code: v.credit_code,
            organisation_type: v.organisation_type.into(),
        }
    }
}

/// A privileged account change waiting for (or decided by) a second administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountRequestRecord {
    pub id: String,
    /// `create_user` or `reset_password`.
    pub kind: String,
    pub username: String,
    /// Account id of the requester, or `cli:<user>` for the host's operator.
    pub requested_by: String,
    pub requested_by_name: String,
    /// `pending`, `approved` or `refused`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_by_name: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

impl From<enclave::store::AccountRequestRecord> for AccountRequestRecord {
    fn from(v: enclave::store::AccountRequestRecord) -> Self {
        Self {
            id: v.id,
            kind: v.kind,
            username: v.username,
            requested_by: v.requested_by,
            requested_by_name: v.requested_by_name,
            status: v.status,
            decided_by: v.decided_by,
            decided_by_name: v.decided_by_name,
            created_at: v.created_at,
            decided_at: v.decided_at,
        }
    }
}
