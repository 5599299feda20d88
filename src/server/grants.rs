//! `/api/grants`: reading grants, suspension, reinstatement and revocation by
//! the provider's steward or the platform (SZ:63), and usage reports (SZ:43(1)).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use enclave::access::authz::Action;
use enclave::domain::GrantChange;
use enclave::domain::audit_object;
use serde::Deserialize;

use super::AppState;
use super::auth::{Caller, JsonBody};
use super::error::{ApiResult, ErrorBody};
use super::wire::{Grant, GrantView, NewUsageReport, UsageReportRecord};

pub fn route_grants() -> Router<AppState> {
    Router::new()
        .route("/api/grants", get(list_grants))
        .route("/api/grants/{id}", get(get_grant))
        .route("/api/grants/{id}/suspend", post(suspend))
        .route("/api/grants/{id}/reinstate", post(reinstate))
        .route("/api/grants/{id}/revoke", post(revoke))
        .route(
            "/api/grants/{id}/reports",
            get(list_reports).post(file_report),
        )
}

/// The grants the caller may read.
#[utoipa::path(get, path = "/api/grants", tag = "grants",
    responses((status = 200, description = "Grants", body = [Grant]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Grant>>> {
    Ok(Json(super::wire::list(
        state.domain.grants_for(caller.principal()).await?,
    )))
}

/// One grant with its history and whether it is usable now.
#[utoipa::path(get, path = "/api/grants/{id}", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, description = "The grant", body = GrantView),
              (status = 404, description = "No such grant", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn get_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<GrantView>> {
    Ok(Json(
        state
            .domain
            .grant_view(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// A written reason (at least 5 characters).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantReason {
    /// Why, in words (at least 5 characters); kept in the grant's history.
    reason: String,
}

async fn change(
    state: AppState,
    caller: Caller,
    id: String,
    change: GrantChange,
) -> ApiResult<Json<GrantView>> {
    Ok(Json(
        state
            .domain
            .change_grant(caller.principal(), &id, change)
            .await?
            .into(),
    ))
}

/// The 401 of an anonymous caller comes before a body is read.
async fn signed_in(state: &AppState, caller: &Caller, action: Action, id: &str) -> ApiResult<()> {
    caller
        .signed_in(state, action, &audit_object("grant", id))
        .await?;
    Ok(())
}

/// Suspend a grant pending rectification (the provider's steward or an admin, SZ:63).
#[utoipa::path(post, path = "/api/grants/{id}/suspend", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    request_body = GrantReason,
    responses((status = 200, description = "Suspended", body = GrantView),
              (status = 400, description = "Reason missing", body = ErrorBody),
              (status = 409, description = "Illegal transition", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<GrantReason>,
) -> ApiResult<Json<GrantView>> {
    signed_in(&state, &caller, Action::ManageGrant, &id).await?;
    let Json(r) = body.read()??;
    change(state, caller, id, GrantChange::Suspend { reason: r.reason }).await
}

/// Lift a suspension, with a written reason (the suspending side, or an
/// admin for a steward's suspension).
#[utoipa::path(post, path = "/api/grants/{id}/reinstate", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    request_body = GrantReason,
    responses((status = 200, description = "Active again", body = GrantView),
              (status = 400, description = "Reason missing", body = ErrorBody),
              (status = 409, description = "Not suspended", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn reinstate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<GrantReason>,
) -> ApiResult<Json<GrantView>> {
    signed_in(&state, &caller, Action::ManageGrant, &id).await?;
    let Json(r) = body.read()??;
    change(
        state,
        caller,
        id,
        GrantChange::Reinstate { reason: r.reason },
    )
    .await
}

/// End a grant for good (not rectified, or use beyond scope, HZ:25).
#[utoipa::path(post, path = "/api/grants/{id}/revoke", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    request_body = GrantReason,
    responses((status = 200, description = "Revoked", body = GrantView),
              (status = 400, description = "Reason missing", body = ErrorBody),
              (status = 409, description = "Already final", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<GrantReason>,
) -> ApiResult<Json<GrantView>> {
    signed_in(&state, &caller, Action::ManageGrant, &id).await?;
    let Json(r) = body.read()??;
    change(state, caller, id, GrantChange::Revoke { reason: r.reason }).await
}

/// The usage reports of a grant.
#[utoipa::path(get, path = "/api/grants/{id}/reports", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, description = "Reports", body = [UsageReportRecord]),
              (status = 404, description = "No such grant", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn list_reports(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<UsageReportRecord>>> {
    Ok(Json(super::wire::list(
        state.domain.usage_reports(caller.principal(), &id).await?,
    )))
}

/// File a usage report (the grant's holder; SZ:43(1)).
#[utoipa::path(post, path = "/api/grants/{id}/reports", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    request_body = NewUsageReport,
    responses((status = 201, description = "Filed", body = UsageReportRecord),
              (status = 400, description = "Invalid field", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn file_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<NewUsageReport>,
) -> ApiResult<(StatusCode, Json<UsageReportRecord>)> {
    signed_in(&state, &caller, Action::ReportUsage, &id).await?;
    let Json(r) = body.read()??;
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .domain
                .file_usage_report(caller.principal(), &id, r.into())
                .await?
                .into(),
        ),
    ))
}
