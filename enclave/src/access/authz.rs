//! Authorization in one place: [`authorize`] decides every (principal, action,
//! object) triple. Deny by default: a combination not listed is refused.
//!
//! Handlers never compare roles themselves; they name the [`Action`] they are
//! about to perform and call `authorize`. A test enumerates every HTTP route ×
//! every role (and anonymous) against the expected matrix, so a new route
//! cannot skip this function unnoticed.

use serde::Serialize;

use crate::identity::{Principal, Role};

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
        }
    }
}

/// What the action is performed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object<'a> {
    /// The platform as a whole (catalog, accounts, audit log).
    Platform,
    /// One account.
    User { user_id: &'a str },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    /// No valid credentials were presented, and the action needs them.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
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
    let allowed = match (action, p.role, object) {
        (A::Logout, _, Object::Platform) => true,
        (A::ReadOwnAccount, _, Object::User { user_id }) => *user_id == p.user_id,
        (A::ManageUsers, Role::Admin, _) => true,
        (A::ReadAudit, Role::Auditor | Role::Admin, Object::Platform) => true,
        // The platform authority answers the public (SZ:65).
        (A::HandleComplaints | A::ViewOverview, Role::Admin, Object::Platform) => true,
        _ => false,
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(Denial::Forbidden)
    }
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
            organisation: "org".into(),
            organisation_type: OrganisationType::University,
            provider_agencies: Vec::new(),
            token_kind: TokenKind::Session,
        }
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
