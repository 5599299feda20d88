//! `/api/admin/*` (platform administrators) and `/api/audit/*` (auditors).

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use enclave::access::authz::Action;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};
use super::wire::{AuditFilter, AuditRecord, Overview, PlatformKeys, User};

pub fn route_admin() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users))
        .route("/api/admin/overview", get(overview))
        .route("/api/audit/events", get(list_audit_events))
        .route("/api/audit/head", get(signed_head))
        .route("/api/platform/keys", get(platform_keys))
}

/// All accounts (administrators only).
#[utoipa::path(get, path = "/api/admin/users", tag = "admin",
    responses(
        (status = 200, description = "Accounts", body = [Object]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(super::wire::list(
        state.domain.users(caller.principal()).await?,
    )))
}

/// Platform figures: datasets, accounts, open and overdue complaints, audit head.
#[utoipa::path(get, path = "/api/admin/overview", tag = "admin",
    responses(
        (status = 200, description = "Dashboard figures", body = Overview),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn overview(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Overview>> {
    Ok(Json(
        state.domain.overview(caller.principal()).await?.into(),
    ))
}

/// Audit events in sequence order (auditors and administrators). Reading the
/// log is itself audited.
#[utoipa::path(get, path = "/api/audit/events", tag = "audit",
    params(AuditFilter),
    responses(
        (status = 200, description = "Events", body = [AuditRecord]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an auditor", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list_audit_events(
    State(state): State<AppState>,
    caller: Caller,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    caller.signed_in(&state, Action::ReadAudit, "audit").await?;
    let Query(filter) = filter?;
    Ok(Json(super::wire::list(
        state
            .domain
            .audit_events(caller.principal(), &filter.into())
            .await?,
    )))
}

/// The signed head of the audit log as it stands: keep it outside the host;
/// `anyu audit verify --head FILE` proves the log still holds it (a restored
/// older copy does not). Auditors and administrators; reading is audited.
#[utoipa::path(get, path = "/api/audit/head", tag = "audit",
    responses(
        (status = 200, description = "The signed head record", body = Object),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an auditor", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn signed_head(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(state.domain.signed_head(caller.principal()).await?))
}

/// The platform's public signing key (anyone): pin it to verify receipts,
/// release certificates and the audit log away from this host.
#[utoipa::path(get, path = "/api/platform/keys", tag = "system",
    responses((status = 200, description = "The current public key, its fingerprint, and the keys it replaced with the seq of each rotation", body = PlatformKeys)))]
#[tracing::instrument(skip_all)]
pub async fn platform_keys(State(state): State<AppState>) -> ApiResult<Json<PlatformKeys>> {
    Ok(Json(state.domain.platform_keys().await?.into()))
}
