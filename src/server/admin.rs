//! `/api/admin/*` (platform administrators) and `/api/audit/*` (auditors).

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use enclave::access::authz::Action;
use enclave::audit::{AuditFilter, AuditRecord};
use enclave::domain::Overview;
use enclave::identity::User;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiResult, ErrorBody};

pub fn route_admin() -> Router<AppState> {
    Router::new()
        .route("/api/admin/users", get(list_users))
        .route("/api/admin/overview", get(overview))
        .route("/api/audit/events", get(list_audit_events))
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
    Ok(Json(state.domain.users(caller.principal()).await?))
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
    Ok(Json(state.domain.overview(caller.principal()).await?))
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
    Ok(Json(
        state
            .domain
            .audit_events(caller.principal(), &filter)
            .await?,
    ))
}
