//! Account management: `/api/admin/users/*` for administrators, and the
//! caller's own credentials under `/api/me/*` (API tokens, password).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use enclave::access::authz::Action;
use enclave::identity::{NewUser, PasswordChange as Change};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Caller, JsonBody};
use super::error::{ApiResult, ErrorBody};
use super::wire::{
    AccountOutcome, AccountRequestRecord, ApiTokenInfo, CreditFlag, NewOrganisation, Organisation,
    Role, Scope, User,
};

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
        .route("/api/admin/users/{username}/person", post(bind_person))
        .route(
            "/api/admin/organisations",
            get(list_organisations).post(create_organisation),
        )
        .route(
            "/api/admin/organisations/{id}/credit-code",
            post(set_credit_code),
        )
        .route("/api/admin/account-requests", get(list_account_requests))
        .route(
            "/api/admin/account-requests/{id}/approve",
            post(approve_account_request),
        )
        .route(
            "/api/admin/account-requests/{id}/refuse",
            post(refuse_account_request),
        )
        .route("/api/me/tokens", get(list_tokens).post(create_token))
        .route("/api/me/tokens/{id}", delete(revoke_token))
        .route("/api/me/password", post(change_password))
}

/// A new account. No password: the platform makes a one-time code for the
/// owner, who sets their own password with it (and their 身份证号).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    real_name: String,
    /// An organisation registered under `/api/admin/organisations`.
    organisation_id: String,
    /// 身份证号 of the person; checked, only its keyed hash is kept.
    resident_id: String,
    role: Role,
    #[serde(default)]
    provider_agencies: Vec<String>,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    credit_flags: Vec<CreditFlag>,
}

/// The 401 of an anonymous caller, before a body is read.
async fn admin(state: &AppState, caller: &Caller, what: &str) -> ApiResult<()> {
    caller.signed_in(state, Action::ManageUsers, what).await?;
    Ok(())
}

/// 201 with the one-time code when done, 202 when another administrator
/// must approve.
fn outcome_status(o: &enclave::domain::AccountOutcome) -> StatusCode {
    use enclave::domain::AccountOutcome as O;
    match o {
        O::Done { .. } => StatusCode::CREATED,
        O::Requested { .. } => StatusCode::ACCEPTED,
        O::Refused { .. } => StatusCode::OK,
    }
}

/// Create an account (administrators). A steward or an administrator is a
/// request another administrator approves (202).
#[utoipa::path(post, path = "/api/admin/users", tag = "admin",
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created; the one-time code is for the owner, shown once", body = AccountOutcome),
        (status = 202, description = "Waiting for another administrator", body = AccountOutcome),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<AccountOutcome>)> {
    admin(&state, &caller, "users").await?;
    let Json(c) = body.read()??;
    let outcome = state
        .domain
        .open_account(
            caller.principal(),
            NewUser {
                username: c.username,
                password: String::new(),
                real_name: c.real_name,
                organisation_id: c.organisation_id,
                resident_id: c.resident_id,
                role: c.role.into(),
                provider_agencies: c.provider_agencies,
                verified: c.verified,
                credit_flags: super::wire::list(c.credit_flags),
                must_change_password: true,
            },
        )
        .await?;
    Ok((outcome_status(&outcome), Json(outcome.into())))
}

/// The person behind an account made before persons were bound.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindPerson {
    /// 身份证号; checked, only its keyed hash is kept.
    resident_id: String,
}

/// Bind an older account to its person (administrators).
#[utoipa::path(post, path = "/api/admin/users/{username}/person", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    request_body = BindPerson,
    responses((status = 200, description = "Bound", body = Object),
              (status = 409, description = "Already bound", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn bind_person(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    body: JsonBody<BindPerson>,
) -> ApiResult<Json<User>> {
    admin(&state, &caller, "users").await?;
    let Json(b) = body.read()??;
    Ok(Json(
        state
            .domain
            .bind_person(caller.principal(), &username, &b.resident_id)
            .await?
            .into(),
    ))
}

/// Organisations accounts belong to (administrators).
#[utoipa::path(get, path = "/api/admin/organisations", tag = "admin",
    responses((status = 200, description = "Organisations", body = [Organisation])))]
#[tracing::instrument(skip_all)]
pub async fn list_organisations(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Organisation>>> {
    Ok(Json(super::wire::list(
        state.domain.organisations(caller.principal()).await?,
    )))
}

/// Register an organisation (administrators): the name is normalised (two
/// spellings of one name are refused), the 统一社会信用代码 checked and unique.
#[utoipa::path(post, path = "/api/admin/organisations", tag = "admin",
    request_body = NewOrganisation,
    responses((status = 201, description = "Registered", body = Organisation),
              (status = 400, description = "Invalid name or credit code", body = ErrorBody),
              (status = 409, description = "Name or credit code already registered", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn create_organisation(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewOrganisation>,
) -> ApiResult<(StatusCode, Json<Organisation>)> {
    admin(&state, &caller, "organisations").await?;
    let Json(o) = body.read()??;
    let org = state
        .domain
        .create_organisation(caller.principal(), o.into())
        .await?;
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// A credit code for an organisation migrated without one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditCode {
    credit_code: String,
}

/// Record the credit code of an organisation that has none (administrators).
#[utoipa::path(post, path = "/api/admin/organisations/{id}/credit-code", tag = "admin",
    params(("id" = String, Path, description = "Organisation id")),
    request_body = CreditCode,
    responses((status = 200, description = "Recorded", body = Organisation),
              (status = 409, description = "Already recorded, or another's", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(organisation = %id))]
pub async fn set_credit_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<CreditCode>,
) -> ApiResult<Json<Organisation>> {
    admin(&state, &caller, "organisations").await?;
    let Json(c) = body.read()??;
    Ok(Json(
        state
            .domain
            .set_organisation_credit_code(caller.principal(), &id, &c.credit_code)
            .await?
            .into(),
    ))
}

/// Privileged account changes and their decisions (administrators).
#[utoipa::path(get, path = "/api/admin/account-requests", tag = "admin",
    responses((status = 200, description = "Requests, newest first", body = [Object])))]
#[tracing::instrument(skip_all)]
pub async fn list_account_requests(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<AccountRequestRecord>>> {
    Ok(Json(super::wire::list(
        state.domain.account_requests(caller.principal()).await?,
    )))
}

/// Approve another administrator's account request; the one-time code
/// (for the owner) is returned to the approver.
#[utoipa::path(post, path = "/api/admin/account-requests/{id}/approve", tag = "admin",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 201, description = "Done", body = AccountOutcome),
              (status = 403, description = "Own request", body = ErrorBody),
              (status = 409, description = "Already decided", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn approve_account_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<AccountOutcome>)> {
    let outcome = state
        .domain
        .decide_account_request(caller.principal(), &id, true)
        .await?;
    Ok((outcome_status(&outcome), Json(outcome.into())))
}

/// Refuse another administrator's account request.
#[utoipa::path(post, path = "/api/admin/account-requests/{id}/refuse", tag = "admin",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "Refused", body = AccountOutcome),
              (status = 403, description = "Own request", body = ErrorBody),
              (status = 409, description = "Already decided", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn refuse_account_request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AccountOutcome>> {
    Ok(Json(
        state
            .domain
            .decide_account_request(caller.principal(), &id, false)
            .await?
            .into(),
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
            .await?
            .into(),
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
            .await?
            .into(),
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
            .await?
            .into(),
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
            .set_credit_flags(caller.principal(), &username, &super::wire::list(f.flags))
            .await?
            .into(),
    ))
}

/// Replace an account's password by a one-time code for its owner, end its
/// sessions and revoke its API tokens (administrators). Never returns a
/// password; a steward's or an administrator's reset waits for another
/// administrator (202).
#[utoipa::path(post, path = "/api/admin/users/{username}/reset-password", tag = "admin",
    params(("username" = String, Path, description = "Username")),
    responses((status = 201, description = "The one-time code, for the owner, shown once", body = AccountOutcome),
              (status = 202, description = "Waiting for another administrator", body = AccountOutcome),
              (status = 404, description = "No such account", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(username = %username))]
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
) -> ApiResult<(StatusCode, Json<AccountOutcome>)> {
    admin(&state, &caller, "users").await?;
    let outcome = state
        .domain
        .reset_password(caller.principal(), &username)
        .await?;
    Ok((outcome_status(&outcome), Json(outcome.into())))
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
    Ok(Json(super::wire::list(
        state.domain.api_tokens(caller.principal()).await?,
    )))
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
            &super::wire::list(t.scopes),
            t.expires_at,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: info.into(),
        }),
    ))
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
            .await?
            .into(),
    ))
}

/// The current password (or the one-time code) and the new one.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
    /// Also revoke every API token of the account (default: keep them).
    #[serde(default)]
    revoke_api_tokens: bool,
    /// 身份证号; required to finish a forced change (a new account, a reset).
    #[serde(default)]
    resident_id: Option<String>,
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
    caller
        .signed_in(&state, Action::ChangePassword, "me")
        .await?;
    let Json(c) = body.read()??;
    state
        .domain
        .change_password(
            caller.principal(),
            &Change {
                current: &c.current_password,
                new: &c.new_password,
                resident_id: c.resident_id.as_deref(),
            },
            caller.token(),
            c.revoke_api_tokens,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
