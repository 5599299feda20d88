//! Authentication at the HTTP boundary and the routes of `/api/auth`, `/api/me`.
//!
//! [`Caller`] resolves an `Authorization: Bearer …` header to a principal (or
//! anonymous when the header is absent; a present but invalid token is a 401,
//! never a silent downgrade to anonymous). Handlers hand the principal to one
//! `Domain` method, which authorizes (see `enclave::domain::authorization`);
//! nothing here compares roles.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use enclave::access::authz::Action;
use enclave::identity::Principal;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::wire::User;

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

/// The caller's network address as the accept loop saw it ("unknown" when
/// the router runs without one, as in unit tests).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            super::connections::client_ip(&parts.extensions)
                .map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
        ))
    }
}

/// A body extractor `E` that runs only when the caller presented credentials.
/// An anonymous caller's body is left unread: the handler's `signed_in` answers
/// 401 first (an invalid token is refused earlier still, by [`Caller`]), so
/// nobody can make the server read megabytes without signing in.
pub struct SignedBody<E>(Option<E>);

/// A JSON body of a route that needs a signed-in caller.
pub type JsonBody<T> = SignedBody<Result<Json<T>, JsonRejection>>;

/// A raw body of a route that needs a signed-in caller.
pub type BytesBody = SignedBody<Result<axum::body::Bytes, BytesRejection>>;

impl<S: Send + Sync, E: FromRequest<S>> FromRequest<S> for SignedBody<E> {
    type Rejection = E::Rejection;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        if !req
            .headers()
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(SignedBody(None));
        }
        E::from_request(req, state)
            .await
            .map(|e| SignedBody(Some(e)))
    }
}

impl<E> SignedBody<E> {
    /// The body. Handlers call this after `signed_in`, so the 401 here is
    /// only a second line.
    pub fn read(self) -> ApiResult<E> {
        self.0
            .ok_or_else(|| ApiError::unauthenticated("sign in first"))
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
        (status = 429, description = "Too many failed attempts for this username or from this client (Retry-After)", body = ErrorBody),
        (status = 503, description = "Too many password checks under way (Retry-After)", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    // A presented but invalid token is still a 401 here, never anonymous.
    _caller: Caller,
    client: ClientAddr,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> ApiResult<Json<LoginResponse>> {
    let Json(req) = body?;
    let s = state
        .domain
        .login(&req.username, &req.password, &client.0)
        .await?;
    Ok(Json(LoginResponse {
        token: s.token,
        expires_at: s.expires_at,
        user: s.user.into(),
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
    Ok(Json(state.domain.me(caller.principal()).await?.into()))
}
