//! The one door: every front end (the JSON API today; a console, a Python
//! client, Flight SQL tomorrow) reaches data through a [`Domain`] method, and
//! each such method asks [`Domain::authorize`] right after it loads its object.
//!
//! The order is the same everywhere: an anonymous caller is refused (401)
//! before any lookup, so ids reveal nothing; then the object is loaded (404);
//! then `authz::authorize` decides (403). Every refusal is an `authz.denied`
//! audit event.

use crate::access::authz::{self, Action, Decision, Denial, Object};
use crate::identity::Principal;
use crate::{Error, Result};

use super::{Actor, Domain};

/// Who asks for a platform-wide action (accounts, the catalog, complaints,
/// the audit log): the operator at the host's command line, trusted as the
/// holder of the data directory, or the caller of a front end, whom
/// [`Domain::authorize`] judges like any other.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    /// The host's operator (`Actor::operator()`), or the platform itself.
    Host(&'a Actor),
    /// A front end's caller: `None` when anonymous.
    Caller(Option<&'a Principal>),
}

impl<'a> From<&'a Actor> for By<'a> {
    fn from(a: &'a Actor) -> Self {
        By::Host(a)
    }
}

impl<'a> From<Option<&'a Principal>> for By<'a> {
    fn from(p: Option<&'a Principal>) -> Self {
        By::Caller(p)
    }
}

impl<'a> From<&'a Principal> for By<'a> {
    fn from(p: &'a Principal) -> Self {
        By::Caller(Some(p))
    }
}

/// `kind:id` for audit records of a request, keeping an id taken from a
/// request path only when it looks like one (callers choose path segments).
pub fn audit_object(kind: &str, id: &str) -> String {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        format!("{kind}:{id}")
    } else {
        format!("{kind}:<malformed>")
    }
}

impl Domain {
    /// The principal of a signed-in caller; an anonymous one is refused and
    /// audited before any object is looked up.
    pub async fn signed_in<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
        audit_object: &str,
    ) -> Result<&'a Principal> {
        match caller {
            Some(p) => Ok(p),
            None => {
                self.deny(None, action, audit_object, Denial::Unauthenticated)
                    .await?;
                Err(unauthenticated())
            }
        }
    }

    /// The principal of a signed-in caller allowed `action` on the platform
    /// as a whole (uploading a model, opening a project, listing work …).
    pub(crate) async fn allowed_on_platform<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
        audit_object: &str,
    ) -> Result<&'a Principal> {
        let p = self.signed_in(caller, action, audit_object).await?;
        self.authorize(Some(p), action, &Object::Platform, audit_object)
            .await?;
        Ok(p)
    }

    /// The principal of a caller who may list `what` (`jobs`, `grants` …);
    /// each listing then keeps what [`authz::may_read`] allows.
    pub(crate) async fn list_for<'a>(
        &self,
        caller: Option<&'a Principal>,
        what: &str,
    ) -> Result<&'a Principal> {
        self.allowed_on_platform(caller, Action::ListWork, what)
            .await
    }

    /// The actor of a platform-wide `action`, once a front end's caller is
    /// allowed it (the host's operator always is).
    pub(crate) async fn acting(
        &self,
        by: By<'_>,
        action: Action,
        audit_object: &str,
    ) -> Result<Actor> {
        match by {
            By::Host(actor) => Ok(actor.clone()),
            By::Caller(caller) => {
                self.authorize(caller, action, &Object::Platform, audit_object)
                    .await?;
                Ok(Actor::caller(caller))
            }
        }
    }

    /// Asks the authorization function — this is its only caller — and
    /// records a refusal.
    pub async fn authorize(
        &self,
        caller: Option<&Principal>,
        action: Action,
        object: &Object<'_>,
        audit_object: &str,
    ) -> Result<()> {
        match authz::authorize(caller, action, object) {
            Decision::Allow => Ok(()),
            Decision::Deny(denial) => {
                self.deny(caller, action, audit_object, denial).await?;
                Err(match denial {
                    Denial::Unauthenticated => unauthenticated(),
                    Denial::Forbidden => Error::Forbidden,
                    Denial::PasswordChangeRequired => Error::Denied {
                        code: "password_change_required",
                        message: "set your own password first (POST /api/me/password); \
                                  until then this session can do nothing else"
                            .into(),
                    },
                })
            }
        }
    }
}

fn unauthenticated() -> Error {
    Error::Unauthenticated("sign in first".into())
}
