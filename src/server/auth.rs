//! Authentication at the HTTP boundary and the routes of `/api/auth`, `/api/me`.
//!
//! [`Caller`] resolves an `Authorization: Bearer …` header to a principal (or
//! anonymous when the header is absent; a present but invalid token is a 401,
//! never a silent downgrade to anonymous). Handlers then call [`require`],
//! which asks `enclave::access::authz::authorize` — the one place that decides
//! — and audits every refusal.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use enclave::access::authz::{Action, Decision, Denial, Object, authorize};
use enclave::identity::{Principal, User};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};

/// The authenticated caller of a request, if any.
pub struct Caller {
    pub principal: Option<Principal>,
    /// The bearer token as presented (needed to end the session).
    token: Option<String>,
}

impl Caller {
    /// The caller as the audit log records it.
    pub fn actor(&self) -> enclave::Actor {
        enclave::Actor::caller(self.principal.as_ref())
    }

    /// The principal of a request that [`require`] already allowed; a missing
    /// one would be a bug, answered as a 500.
    pub fn required(&self) -> ApiResult<&Principal> {
        self.principal
            .as_ref()
            .ok_or_else(|| ApiError::internal("an authorized request has no principal"))
    }

    /// The bearer token as presented.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The principal, or a 401 for an anonymous caller (audited), before any
    /// object is looked up, so that anonymous callers learn nothing about ids.
    pub async fn signed_in(
        &self,
        state: &AppState,
        action: Action,
        audit_object: &str,
    ) -> ApiResult<&Principal> {
        match &self.principal {
            Some(p) => Ok(p),
            None => {
                state
                    .domain
                    .deny(None, action, audit_object, Denial::Unauthenticated)
                    .await?;
                Err(ApiError::unauthenticated("sign in first"))
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller {
                principal: None,
                token: None,
            });
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
            })?;
        let principal = state.domain.authenticate(token).await?;
        Ok(Caller {
            principal: Some(principal),
            token: Some(token.to_string()),
        })
    }
}

/// `kind:id` for audit records, with an id from the path kept only when it
/// looks like one (callers choose path segments).
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

/// Asks the authorization function; a refusal is audited and answered 401/403.
pub async fn require(
    state: &AppState,
    caller: &Caller,
    action: Action,
    object: Object<'_>,
    audit_object: &str,
) -> ApiResult<()> {
    match authorize(caller.principal.as_ref(), action, &object) {
        Decision::Allow => Ok(()),
        Decision::Deny(denial) => {
            state
                .domain
                .deny(caller.principal.as_ref(), action, audit_object, denial)
                .await?;
            Err(match denial {
                Denial::Unauthenticated => ApiError::unauthenticated("sign in first"),
                Denial::Forbidden => ApiError::forbidden("your role does not allow this"),
            })
        }
    }
}

pub fn route_auth() -> Router<AppState> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
}

/// Username and password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// A new session. The token is shown once; send it as `Authorization: Bearer <token>`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    token: String,
    expires_at: String,
    #[schema(value_type = Object)]
    user: User,
}

/// Start a session.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 401, description = "Invalid username or password", body = ErrorBody),
        (status = 429, description = "Account temporarily locked", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<LoginResponse>> {
    require(&state, &caller, Action::Login, Object::Platform, "auth").await?;
    let Json(req) = body?;
    let s = state.domain.login(&req.username, &req.password).await?;
    Ok(Json(LoginResponse {
        token: s.token,
        expires_at: s.expires_at,
        user: s.user,
    }))
}

/// End the current session.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    require(&state, &caller, Action::Logout, Object::Platform, "auth").await?;
    if let (Some(p), Some(token)) = (&caller.principal, &caller.token) {
        state.domain.logout(p, token).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/me", tag = "auth",
    responses(
        (status = 200, description = "The caller's account", body = Object),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<User>> {
    let user_id = caller
        .principal
        .as_ref()
        .map(|p| p.user_id.clone())
        .unwrap_or_default();
    require(
        &state,
        &caller,
        Action::ReadOwnAccount,
        Object::User { user_id: &user_id },
        "me",
    )
    .await?;
    Ok(Json(
        state.domain.identity().get_user_by_id(&user_id).await?,
    ))
}
