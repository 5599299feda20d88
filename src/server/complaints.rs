//! `/api/complaints`: the public files complaints about open data (SZ:65);
//! the platform authority answers them within 10 working days.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use enclave::access::authz::Action;
use serde::Deserialize;

use super::AppState;
use super::auth::{Caller, JsonBody};
use super::error::{ApiResult, ErrorBody};
use super::wire::{ComplaintView, NewComplaint};

pub fn route_complaints() -> Router<AppState> {
    Router::new()
        .route("/api/complaints", post(file_complaint))
        .route("/api/admin/complaints", get(list_complaints))
        .route("/api/admin/complaints/{id}/answer", post(answer_complaint))
}

/// File a complaint (anyone, signed in or not).
#[utoipa::path(post, path = "/api/complaints", tag = "complaints",
    request_body = NewComplaint,
    responses(
        (status = 201, description = "Filed; `due_date` is 10 working days later", body = ComplaintView),
        (status = 400, description = "Missing or oversized field", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn file_complaint(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewComplaint>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ComplaintView>)> {
    let Json(new) = body?;
    let view = state
        .domain
        .file_complaint(caller.principal(), new.into())
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// All complaints, open first, with overdue flags (administrators).
#[utoipa::path(get, path = "/api/admin/complaints", tag = "complaints",
    responses(
        (status = 200, description = "Complaints", body = [ComplaintView]),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list_complaints(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ComplaintView>>> {
    Ok(Json(super::wire::list(
        state.domain.complaints(caller.principal()).await?,
    )))
}

/// The answer to a complaint.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    answer: String,
}

/// Answer an open complaint (administrators).
#[utoipa::path(post, path = "/api/admin/complaints/{id}/answer", tag = "complaints",
    params(("id" = String, Path, description = "Complaint id")),
    request_body = Answer,
    responses(
        (status = 200, description = "Answered", body = ComplaintView),
        (status = 404, description = "No such complaint", body = ErrorBody),
        (status = 409, description = "Already answered", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(complaint = %id))]
pub async fn answer_complaint(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<Answer>,
) -> ApiResult<Json<ComplaintView>> {
    caller
        .signed_in(&state, Action::HandleComplaints, "complaints")
        .await?;
    let Json(a) = body.read()??;
    Ok(Json(
        state
            .domain
            .answer_complaint(caller.principal(), &id, &a.answer)
            .await?
            .into(),
    ))
}
