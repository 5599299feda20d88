//! Account types shared by the identity service and the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::catalog::OrganisationType;
use crate::{Error, Result};

/// What an account may do; authorization decides per action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Researcher, Role::Steward, Role::Admin, Role::Auditor];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Researcher => "researcher",
            Role::Steward => "steward",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "role must be one of researcher, steward, admin, auditor".into(),
                )
            })
    }
}

/// Credit-list entries (XM:24) that bar an account from conditional data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditFlag {
    /// On the dishonest-debtor list (失信被执行人).
    DishonestDebtor,
    /// On the abnormal-operation list (经营异常名录).
    AbnormalOperation,
    /// On the serious-violation list (严重违法失信名单).
    SeriousViolation,
}

impl CreditFlag {
    /// Every flag.
    pub const ALL: [CreditFlag; 3] = [
        CreditFlag::DishonestDebtor,
        CreditFlag::AbnormalOperation,
        CreditFlag::SeriousViolation,
    ];

    /// The manifest requirement this flag violates.
    pub fn violates(self) -> crate::catalog::CreditRequirement {
        use crate::catalog::CreditRequirement as R;
        match self {
            CreditFlag::DishonestDebtor => R::NotDishonestDebtor,
            CreditFlag::AbnormalOperation => R::NotAbnormalOperation,
            CreditFlag::SeriousViolation => R::NotSeriousViolation,
        }
    }

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CreditFlag::DishonestDebtor => "dishonest_debtor",
            CreditFlag::AbnormalOperation => "abnormal_operation",
            CreditFlag::SeriousViolation => "serious_violation",
        }
    }
}

/// A real-name account. Never carries the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Who the account stands for in "two different people" rules: the keyed
    /// hash of its 身份证号, or `account:<id>` for an account made before
    /// persons were bound. Never shown.
    #[serde(skip)]
    pub person: String,
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An interactive login session (`anyu_s_…`).
    Session,
    /// A long-lived API token for scripts and the CLI (`anyu_t_…`).
    Api,
}

/// What an API token may be used for; the account's role still decides
/// within it. A login session carries every scope. Which scope each action
/// needs is decided by `access::authz` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Jobs, Scope::Review, Scope::Admin];

    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Jobs => "jobs",
            Scope::Review => "review",
            Scope::Admin => "admin",
        }
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Scope> {
        Scope::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument("scope must be one of read, jobs, review, admin".into())
            })
    }
}

/// Who is making a request, as handlers and authorization see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub role: Role,
    /// The organisation's id: "same organisation" rules compare this.
    pub organisation_id: String,
    pub organisation: String,
    pub organisation_type: OrganisationType,
    pub provider_agencies: Vec<String>,
    pub token_kind: TokenKind,
    /// What the credential may be used for: every scope for a session, the
    /// token's own for an API token.
    pub scopes: Vec<Scope>,
    /// The person behind the account (see [`User::person`]). Never shown.
    #[serde(skip)]
    pub person: String,
    /// A session that may do nothing but change the password.
    pub must_change_password: bool,
}

impl Principal {
    pub(crate) fn new(user: User, token_kind: TokenKind, scopes: Vec<Scope>) -> Principal {
        Principal {
            user_id: user.id,
            username: user.username,
            role: user.role,
            organisation_id: user.organisation_id,
            organisation: user.organisation,
            organisation_type: user.organisation_type,
            provider_agencies: user.provider_agencies,
            token_kind,
            scopes,
            person: user.person,
            must_change_password: user.must_change_password,
        }
    }
}

/// An API token's metadata; the token itself is shown only once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
