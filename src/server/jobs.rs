//! `/api/jobs`, `/api/reviews`, `/api/releases`: queries inside the domain,
//! output review, and signed releases.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use enclave::access::authz::Action;
use enclave::domain::ModelRequest;
use enclave::domain::audit_object;
use enclave::release::ResultFormat;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Caller, JsonBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::wire::{
    JobRecord, JobSight, JobView, OwnJob, ReleaseRecord, ReviewDecision, ReviewPacket,
};

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
    dp: Option<super::wire::DpOptions>,
}

/// Submit SQL under a grant. The query is checked at once (422 with a stable
/// code when the policy refuses it); accepted queries run in the background.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs",
    request_body = NewJob,
    responses(
        (status = 202, description = "Queued", body = OwnJob),
        (status = 403, description = "Not your grant, grant not usable, budget spent, too many jobs", body = ErrorBody),
        (status = 422, description = "Refused by the query policy (code says which rule)", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewJob>,
) -> ApiResult<(StatusCode, Json<OwnJob>)> {
    caller.signed_in(&state, Action::SubmitJob, "jobs").await?;
    let Json(j) = body.read()??;
    let p = caller.principal();
    let view = match j.model {
        None if j.params.is_some() => {
            return Err(ApiError::bad_request("params: only with a model"));
        }
        None => {
            state
                .domain
                .submit_query(p, &j.grant_id, &j.sql, j.dp.map(Into::into))
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
                .submit_model_job(p, &j.grant_id, &model, &j.sql)
                .await?
        }
    };
    Ok((StatusCode::ACCEPTED, Json(view.into())))
}

/// The jobs the caller may read.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    responses((status = 200, description = "Jobs, each as the caller may see it", body = [JobSight]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<JobSight>>> {
    Ok(Json(super::wire::list(
        state.domain.jobs_for(caller.principal()).await?,
    )))
}

/// A job. Its requester sees what the query and the grant decide (state,
/// plan, coarse time; counts, verdicts and hashes never before release);
/// its reviewers, admins and auditors see the stored record.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), WaitQuery),
    responses((status = 200, description = "The job", body = JobSight),
              (status = 404, description = "No such job", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<JobSight>> {
    let Query(q) = query?;
    let p = caller.principal();
    let sight = match q.wait {
        Some(secs) => {
            let secs = secs.min(25);
            state
                .domain
                .wait_job(p, &id, std::time::Duration::from_secs(secs))
                .await?
        }
        None => state.domain.job_view(p, &id).await?,
    };
    Ok(Json(sight.into()))
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
    responses((status = 200, description = "Cancellation requested", body = JobSight),
              (status = 409, description = "Already finished", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<JobSight>> {
    Ok(Json(
        state
            .domain
            .cancel_job(caller.principal(), &id)
            .await?
            .into(),
    ))
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
    Ok(Json(super::wire::list(
        state.domain.review_queue(caller.principal()).await?,
    )))
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
    Ok(Json(
        state
            .domain
            .review_packet(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// A review vote.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    decision: ReviewDecision,
    /// Required (at least 5 characters) for a rejection; for the reviewers
    /// and the record only.
    #[serde(default)]
    comment: String,
    /// A rejection's reason, which the researcher reads in words:
    /// `disclosure_risk`, `differencing`, `outside_purpose`, `not_meaningful`
    /// or `other` (the default).
    #[serde(default)]
    reason: Option<String>,
    /// Words to the researcher with a rejection (at most 500 characters),
    /// shown to them as written, without the reviewer's name.
    #[serde(default)]
    note_to_researcher: Option<String>,
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
    body: JsonBody<Vote>,
) -> ApiResult<Json<JobView>> {
    caller
        .signed_in(&state, Action::ReviewOutput, &audit_object("job", &id))
        .await?;
    let Json(v) = body.read()??;
    let to_researcher = enclave::domain::ForResearcher {
        reason: v
            .reason
            .as_deref()
            .map(enclave::access::output_review::RejectionReason::parse)
            .transpose()?,
        note: v.note_to_researcher,
    };
    Ok(Json(
        state
            .domain
            .review_job_for(
                caller.principal(),
                &id,
                v.decision.into(),
                &v.comment,
                to_researcher,
            )
            .await?
            .into(),
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

fn release_view(r: enclave::store::ReleaseRecord) -> ReleaseView {
    let certificate = serde_json::from_str(&r.certificate_json).unwrap_or_default();
    ReleaseView {
        release: r.into(),
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
    Ok(Json(
        state
            .domain
            .releases_for(caller.principal())
            .await?
            .into_iter()
            .map(release_view)
            .collect(),
    ))
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
    let r = state.domain.read_release(caller.principal(), &id).await?;
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
    let r = state.domain.read_release(caller.principal(), &id).await?;
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
    caller
        .signed_in(
            &state,
            Action::DownloadRelease,
            &audit_object("release", &id),
        )
        .await?;
    let Query(q) = query?;
    let format = ResultFormat::parse(q.format.as_deref().unwrap_or("csv"))?;
    let bytes = state
        .domain
        .release_file(caller.principal(), &id, format)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, format.mime().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"release-{}.{}\"",
                    id,
                    format.extension()
                ),
            ),
            (
                header::HeaderName::from_static("x-anyu-certificate"),
                format!("/api/releases/{id}/certificate"),
            ),
        ],
        bytes,
    ))
}
