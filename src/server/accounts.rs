//! Account management: `/api/admin/users/*` for administrators, and the
//! caller's own credentials under `/api/me/*` (API tokens, password).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use enclave::access::authz::Action;
use enclave::catalog::OrganisationType;
use enclave::identity::{ApiTokenInfo, CreditFlag, NewUser, Role, Scope, User};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Caller, JsonBody};
use super::error::{ApiResult, ErrorBody};

pub fn route_accounts() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", post(create_user))
        .route("/api/admin/users/{username}/disable", post(disable_user))
        .route("/api/admin/users/{username}/enable", post(enable_user))
        .route(
            "/api/admin/users/{username}/verification",
            post(set_verification),
        )
        .route(
            "/api/admin/users/{username}/credit-flags",
            post(set_credit_flags),
        )
        .route(
            "/api/admin/users/{username}/reset-password",
            post(reset_password),
        )
        .route("/api/me/tokens", get(list_tokens).post(create_token))
        .route("/api/me/tokens/{id}", delete(revoke_token))
        .route("/api/me/password", post(change_password))
}

/// A new account. Without `password` one is generated and returned once.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    #[serde(default)]
    password: Option<String>,
    real_name: String,
    organisation: String,
    organisation_type: OrganisationType,
    role: Role,
    #[serde(default)]
    provider_agencies: Vec<String>,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    credit_flags: Vec<CreditFlag>,
}

/// An account, and its password when the platform generated one (shown once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserWithPassword {
    #[schema(value_type = Object)]
    user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// The 401 of an anonymous caller, before a body is read.
async fn admin(state: &AppState, caller: &Caller, what: &str) -> ApiResult<()> {
    caller.signed_in(state, Action::ManageUsers, what).await?;
    Ok(())
}

/// Create an account (administrators).
#[utoipa::path(post, path = "/api/admin/users", tag = "admin",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = UserWithPassword),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserWithPassword>)> {
    admin(&state, &caller, "users").await?;
    let Json(c) = body.read()??;
    let (password, generated) = match c.password {
        Some(p) => (p, false),
        None => (enclave::identity::generate_password(), true),
    };
    let user = state
        .domain
        .create_user(
            caller.principal(),
            NewUser {
                username: c.username,
                password: password.clone(),
                real_name: c.real_name,
                organisation: c.organisation,
                organisation_type: c.organisation_type,
                role: c.role,
                provider_agencies: c.provider_agencies,
                verified: c.verified,
                credit_flags: c.credit_flags,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserWithPassword {
            user,
            password: generated.then_some(password),
        }),
    ))
}

/// Disable an account and end its sessions (administrators).
#[utoipa::path(post, path = "/api/admin/users/{username}/disable", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    responses((status = 200, description = "Disabled", body = Object),
              (status = 404, description = "No such account", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn disable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<User>> {
    admin(&state, &caller, "users").await?;
    Ok(Json(
        state
            .domain
            .disable_user(caller.principal(), &username)
            .await?,
    ))
}

/// Re-enable a disabled account (administrators).
#[utoipa::path(post, path = "/api/admin/users/{username}/enable", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    responses((status = 200, description = "Enabled", body = Object),
              (status = 404, description = "No such account", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn enable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<User>> {
    admin(&state, &caller, "users").await?;
    Ok(Json(
        state
            .domain
            .enable_user(caller.principal(), &username)
            .await?,
    ))
}

/// The outcome of real-name verification.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    verified: bool,
}

/// Record real-name verification (SZ:30; administrators).
#[utoipa::path(post, path = "/api/admin/users/{username}/verification", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    request_body = Verification,
    responses((status = 200, description = "Recorded", body = Object),
              (status = 404, description = "No such account", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn set_verification(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    body: JsonBody<Verification>,
) -> ApiResult<Json<User>> {
    admin(&state, &caller, "users").await?;
    let Json(v) = body.read()??;
    Ok(Json(
        state
            .domain
            .set_verified(caller.principal(), &username, v.verified)
            .await?,
    ))
}

/// Credit lists the account's organisation is on (XM:24).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditFlags {
    flags: Vec<CreditFlag>,
}

/// Replace an account's credit flags (administrators).
#[utoipa::path(post, path = "/api/admin/users/{username}/credit-flags", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    request_body = CreditFlags,
    responses((status = 200, description = "Recorded", body = Object),
              (status = 404, description = "No such account", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn set_credit_flags(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    body: JsonBody<CreditFlags>,
) -> ApiResult<Json<User>> {
    admin(&state, &caller, "users").await?;
    let Json(f) = body.read()??;
    Ok(Json(
        state
            .domain
            .set_credit_flags(caller.principal(), &username, &f.flags)
            .await?,
    ))
}

/// Set a generated password and end the account's sessions (administrators).
#[utoipa::path(post, path = "/api/admin/users/{username}/reset-password", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    responses((status = 200, description = "The new password, shown once", body = UserWithPassword),
              (status = 404, description = "No such account", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<Json<UserWithPassword>> {
    admin(&state, &caller, "users").await?;
    let password = enclave::identity::generate_password();
    let user = state
        .domain
        .reset_password(caller.principal(), &username, &password)
        .await?;
    Ok(Json(UserWithPassword {
        user,
        password: Some(password),
    }))
}

/// The 401 of an anonymous caller, before a body is read.
async fn own(state: &AppState, caller: &Caller) -> ApiResult<()> {
    caller
        .signed_in(state, Action::ManageOwnCredentials, "me")
        .await?;
    Ok(())
}

/// The caller's API tokens (never the secrets).
#[utoipa::path(get, path = "/api/me/tokens", tag = "auth",
    responses((status = 200, description = "Tokens", body = [Object]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApiTokenInfo>>> {
    Ok(Json(state.domain.api_tokens(caller.principal()).await?))
}

/// A new API token: its name, scopes, optional expiry, and the caller's
/// password re-entered.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    /// The caller's password, checked again (a stolen session alone mints nothing).
    password: String,
    /// What the token may do, within the account's role: `read`, `jobs`, `review`, `admin`.
    scopes: Vec<Scope>,
    /// RFC 3339; omitted: the platform's default lifetime (90 days unless configured).
    #[serde(default)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A new API token: `token` is shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    token: String,
    #[schema(value_type = Object)]
    info: ApiTokenInfo,
}

/// Create an API token for scripts and the CLI (`Authorization: Bearer anyu_t_…`),
/// from a login session with the password re-entered; an API token cannot.
#[utoipa::path(post, path = "/api/me/tokens", tag = "auth",
    request_body = NewToken,
    responses((status = 201, description = "Created; the token is shown once", body = CreatedToken),
              (status = 400, description = "Invalid name, scopes or expiry", body = ErrorBody),
              (status = 401, description = "Password wrong", body = ErrorBody),
              (status = 403, description = "Called with an API token", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    own(&state, &caller).await?;
    let Json(t) = body.read()??;
    let (token, info) = state
        .domain
        .create_api_token(
            caller.principal(),
            &t.password,
            &t.name,
            &t.scopes,
            t.expires_at,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(delete, path = "/api/me/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "Revoked", body = Object),
              (status = 404, description = "No such token of yours", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(token = %id))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiTokenInfo>> {
    Ok(Json(
        state
            .domain
            .revoke_api_token(caller.principal(), &id)
            .await?,
    ))
}

/// The current and the new password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
    /// Also revoke every API token of the account (default: keep them).
    #[serde(default)]
    revoke_api_tokens: bool,
}

/// Change the caller's password (from a login session); every other session
/// ends, and every API token too when `revoke_api_tokens` is set.
#[utoipa::path(post, path = "/api/me/password", tag = "auth",
    request_body = PasswordChange,
    responses((status = 204, description = "Changed"),
              (status = 400, description = "New password too short", body = ErrorBody),
              (status = 401, description = "Current password wrong", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    own(&state, &caller).await?;
    let Json(c) = body.read()??;
    state
        .domain
        .change_password(
            caller.principal(),
            &c.current_password,
            &c.new_password,
            caller.token(),
            c.revoke_api_tokens,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
