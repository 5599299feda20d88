//! `/api/jobs`, `/api/reviews`, `/api/releases`: queries inside the domain,
//! output review, and signed releases.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use enclave::access::authz::{Action, Object};
use enclave::domain::{JobView, ModelRequest, ReviewDecision, ReviewPacket};
use enclave::release::ResultFormat;
use enclave::store::{JobRecord, ReleaseRecord};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Caller, audit_object, require};
use super::error::{ApiError, ApiResult, ErrorBody};

pub fn route_jobs() -> Router<AppState> {
    Router::new()
        .route("/api/jobs", get(list_jobs).post(submit_job))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/jobs/{id}/review", get(review_packet).post(review))
        .route("/api/reviews", get(review_queue))
        .route("/api/releases", get(list_releases))
        .route("/api/releases/{id}", get(get_release))
        .route("/api/releases/{id}/certificate", get(certificate))
        .route("/api/releases/{id}/result", get(download))
}

/// A query to run under a grant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    grant_id: String,
    /// One SQL query over the grant's datasets (their catalog ids are the
    /// table names). For a model job: the query whose rows are the model's input.
    sql: String,
    /// A model job: the SHA-256 of one of your uploaded models.
    #[serde(default)]
    model: Option<String>,
    /// A model job: the string handed to the model's `run`.
    #[serde(default)]
    params: Option<String>,
    /// Differentially private: ε, δ and optional contribution limits (the
    /// same as `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (…)` in the SQL).
    #[serde(default)]
    dp: Option<enclave::dp::DpOptions>,
}

/// Submit SQL under a grant. The query is checked at once (422 with a stable
/// code when the policy refuses it); accepted queries run in the background.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs",
    request_body = NewJob,
    responses(
        (status = 202, description = "Queued", body = JobView),
        (status = 403, description = "Not your grant, grant not usable, budget spent, too many jobs", body = ErrorBody),
        (status = 422, description = "Refused by the query policy (code says which rule)", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<NewJob>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<JobView>)> {
    caller.signed_in(&state, Action::SubmitJob, "jobs").await?;
    let Json(j) = body?;
    let grant = state
        .domain
        .grant(&j.grant_id)
        .await
        .map_err(|_| ApiError::bad_request("grant_id: no such grant"))?;
    let providers = grant.providers();
    require(
        &state,
        &caller,
        Action::SubmitJob,
        Object::Grant {
            holder_id: &grant.holder_id,
            providers: &providers,
        },
        &audit_object("grant", &grant.id),
    )
    .await?;
    let p = caller.required()?;
    let view = match j.model {
        None if j.params.is_some() => {
            return Err(ApiError::bad_request("params: only with a model"));
        }
        None => {
            state
                .domain
                .submit_query(p, &grant.id, &j.sql, j.dp)
                .await?
        }
        Some(_) if j.dp.is_some() => {
            return Err(ApiError::bad_request(
                "dp: a model job cannot be differentially private",
            ));
        }
        Some(sha256) => {
            let model = ModelRequest {
                sha256,
                params: j.params.unwrap_or_default(),
            };
            state
                .domain
                .submit_model_job(p, &grant.id, &model, &j.sql)
                .await?
        }
    };
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Signed in, the job exists, `action` allowed on it.
async fn authorized_job(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: &str,
) -> ApiResult<JobRecord> {
    let object = audit_object("job", id);
    caller.signed_in(state, action, &object).await?;
    let job = state.domain.job(id).await?;
    let providers = state.domain.grant(&job.grant_id).await?.providers();
    require(
        state,
        caller,
        action,
        Object::Job {
            requester_id: &job.requester_id,
            providers: &providers,
        },
        &object,
    )
    .await?;
    Ok(job)
}

/// The jobs the caller may read.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    responses((status = 200, description = "Jobs", body = [JobRecord]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<JobRecord>>> {
    require(&state, &caller, Action::ListWork, Object::Platform, "jobs").await?;
    let p = caller.required()?;
    Ok(Json(state.domain.jobs_for(p).await?))
}

/// A job: state, elapsed time, rows scanned, groups suppressed, verdicts — never values.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), WaitQuery),
    responses((status = 200, description = "The job", body = JobView),
              (status = 404, description = "No such job", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<JobView>> {
    authorized_job(&state, &caller, Action::ReadJob, &id).await?;
    let Query(q) = query?;
    Ok(Json(match q.wait {
        Some(secs) => {
            let secs = secs.min(25);
            state
                .domain
                .wait_job(&id, std::time::Duration::from_secs(secs))
                .await?
        }
        None => state.domain.job_view(&id).await?,
    }))
}

/// Long polling.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait up to this many seconds (at most 25) for the job to finish running.
    #[serde(default)]
    wait: Option<u64>,
}

/// Cancel a queued or running job (its requester or an admin).
#[utoipa::path(post, path = "/api/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "Cancellation requested", body = JobView),
              (status = 409, description = "Already finished", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    authorized_job(&state, &caller, Action::CancelJob, &id).await?;
    let p = caller.required()?;
    Ok(Json(state.domain.cancel_job(p, &id).await?))
}

/// Results waiting for the caller's review.
#[utoipa::path(get, path = "/api/reviews", tag = "jobs",
    responses((status = 200, description = "Pending reviews", body = [JobRecord]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn review_queue(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<JobRecord>>> {
    require(
        &state,
        &caller,
        Action::ListWork,
        Object::Platform,
        "reviews",
    )
    .await?;
    let p = caller.required()?;
    Ok(Json(state.domain.review_queue(p).await?))
}

/// The review packet: SQL, plan, verdicts per cell, the candidate result,
/// the grant's earlier releases; other reviewers' votes only after voting.
#[utoipa::path(get, path = "/api/jobs/{id}/review", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "Review packet", body = ReviewPacket),
              (status = 403, description = "Not a reviewer of this result", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn review_packet(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReviewPacket>> {
    authorized_job(&state, &caller, Action::ReviewOutput, &id).await?;
    let p = caller.required()?;
    Ok(Json(state.domain.review_packet(p, &id).await?))
}

/// A review vote.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    decision: ReviewDecision,
    /// Required (at least 5 characters) for a rejection.
    #[serde(default)]
    comment: String,
}

/// Approve or reject a result. From L3 two different reviewers must approve.
#[utoipa::path(post, path = "/api/jobs/{id}/review", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    request_body = Vote,
    responses((status = 200, description = "Vote recorded; released once enough approvals are in", body = JobView),
              (status = 403, description = "Own result, same organisation, not a reviewer", body = ErrorBody),
              (status = 409, description = "Not waiting for review, or already voted", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<Vote>, JsonRejection>,
) -> ApiResult<Json<JobView>> {
    authorized_job(&state, &caller, Action::ReviewOutput, &id).await?;
    let Json(v) = body?;
    let p = caller.required()?;
    Ok(Json(
        state
            .domain
            .review_job(p, &id, v.decision, &v.comment)
            .await?,
    ))
}

/// A release without its files.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReleaseView {
    #[serde(flatten)]
    release: ReleaseRecord,
    /// The signed certificate as JSON.
    #[schema(value_type = Object)]
    certificate: serde_json::Value,
}

fn release_view(r: ReleaseRecord) -> ReleaseView {
    let certificate = serde_json::from_str(&r.certificate_json).unwrap_or_default();
    ReleaseView {
        release: r,
        certificate,
    }
}

/// The releases the caller may read.
#[utoipa::path(get, path = "/api/releases", tag = "jobs",
    responses((status = 200, description = "Releases", body = [ReleaseView]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_releases(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ReleaseView>>> {
    require(
        &state,
        &caller,
        Action::ListWork,
        Object::Platform,
        "releases",
    )
    .await?;
    let p = caller.required()?;
    Ok(Json(
        state
            .domain
            .releases_for(p)
            .await?
            .into_iter()
            .map(release_view)
            .collect(),
    ))
}

async fn authorized_release(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: &str,
) -> ApiResult<ReleaseRecord> {
    let object = audit_object("release", id);
    caller.signed_in(state, action, &object).await?;
    let r = state.domain.release(id).await?;
    let grant = state.domain.grant(&r.grant_id).await?;
    let providers = grant.providers();
    require(
        state,
        caller,
        action,
        Object::Job {
            requester_id: &grant.holder_id,
            providers: &providers,
        },
        &object,
    )
    .await?;
    Ok(r)
}

/// One release with its certificate.
#[utoipa::path(get, path = "/api/releases/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Release id")),
    responses((status = 200, description = "The release", body = ReleaseView),
              (status = 404, description = "No such release", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(release = %id))]
pub async fn get_release(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReleaseView>> {
    let r = authorized_release(&state, &caller, Action::ReadRelease, &id).await?;
    Ok(Json(release_view(r)))
}

/// The signed certificate (`anyu verify-release RESULT CERT` checks it).
#[utoipa::path(get, path = "/api/releases/{id}/certificate", tag = "jobs",
    params(("id" = String, Path, description = "Release id")),
    responses((status = 200, description = "Certificate JSON", body = Object),
              (status = 404, description = "No such release", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(release = %id))]
pub async fn certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let r = authorized_release(&state, &caller, Action::ReadRelease, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"release-{}.certificate.json\"", r.id),
            ),
        ],
        r.certificate_json,
    ))
}

/// Which download.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// csv, parquet, arrow or json (default csv).
    #[serde(default)]
    format: Option<String>,
}

/// Download a released result. Audited.
#[utoipa::path(get, path = "/api/releases/{id}/result", tag = "jobs",
    params(("id" = String, Path, description = "Release id"), FormatQuery),
    responses((status = 200, description = "The file; its SHA-256 is in the certificate", content_type = "application/octet-stream"),
              (status = 404, description = "No such release", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(release = %id))]
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<FormatQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let r = authorized_release(&state, &caller, Action::DownloadRelease, &id).await?;
    let Query(q) = query?;
    let format = ResultFormat::parse(q.format.as_deref().unwrap_or("csv"))?;
    let p = caller.required()?;
    let bytes = state.domain.release_file(p, &r.id, format).await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.mime().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"release-{}.{}\"",
                    r.id,
                    format.extension()
                ),
            ),
            (
                header::HeaderName::from_static("x-anyu-certificate"),
                format!("/api/releases/{}/certificate", r.id),
            ),
        ],
        bytes,
    ))
}
