//! Authentication at the HTTP boundary and the routes of `/api/auth`, `/api/me`.
//!
//! [`Caller`] resolves an `Authorization: Bearer …` header to a principal (or
//! anonymous when the header is absent; a present but invalid token is a 401,
//! never a silent downgrade to anonymous). Handlers hand the principal to one
//! `Domain` method, which authorizes (see `enclave::domain::authorization`);
//! nothing here compares roles.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use enclave::access::authz::Action;
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
    /// The caller as the domain's methods take it: `None` when anonymous.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
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
        Ok(state
            .domain
            .signed_in(self.principal(), action, audit_object)
            .await?)
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
    // A presented but invalid token is still a 401 here, never anonymous.
    _caller: Caller,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<LoginResponse>> {
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
    let token = caller.token().unwrap_or_default();
    state.domain.logout(caller.principal(), token).await?;
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
    Ok(Json(state.domain.me(caller.principal()).await?))
}
