//! `/api/projects` and `/api/applications`: the researcher's projects and
//! applications, the reviewers' completeness check and joint review, materials,
//! and the use agreement (SZ:41-44, XM:23).
//!
//! Every handler: parse → one `Domain` call, which answers 401, 404 and 403
//! in that order (an anonymous caller is refused before a body is read).

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use enclave::access::authz::Action;
use enclave::domain::ReviewStep;
use enclave::domain::audit_object;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{BytesBody, Caller, JsonBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::wire::{
    AgreementText, ApplicationDraft, ApplicationSummary, ApplicationView, Grant, MaterialRecord,
    NewProject, ProjectRecord, ReviewConditions,
};

pub fn route_applications(material_limit: usize) -> Router<AppState> {
    Router::new()
        .route("/api/projects", get(list_projects).post(create_project))
        .route("/api/projects/{id}", get(get_project))
        .route(
            "/api/applications",
            get(list_applications).post(create_application),
        )
        .route(
            "/api/applications/{id}",
            get(get_application).put(update_application),
        )
        .route("/api/applications/{id}/submit", post(submit))
        .route(
            "/api/applications/{id}/completeness/start",
            post(start_completeness),
        )
        .route(
            "/api/applications/{id}/completeness/pass",
            post(pass_completeness),
        )
        .route("/api/applications/{id}/approve", post(approve))
        .route("/api/applications/{id}/reject", post(reject))
        .route("/api/applications/{id}/return", post(return_application))
        .route(
            "/api/applications/{id}/materials",
            // Materials are larger than the API's default body limit.
            post(upload_material).layer(DefaultBodyLimit::max(material_limit)),
        )
        .route(
            "/api/applications/{id}/materials/{material_id}",
            get(download_material),
        )
        .route("/api/applications/{id}/agreement", get(agreement))
        .route("/api/applications/{id}/agreement/sign", post(sign))
        .route("/api/applications/{id}/agreement/receipt", get(receipt))
}

/// The 401 of an anonymous caller, before a body is read.
async fn signed_in(state: &AppState, caller: &Caller, action: Action, id: &str) -> ApiResult<()> {
    caller
        .signed_in(state, action, &audit_object("application", id))
        .await?;
    Ok(())
}

/// Open a research project (researchers).
#[utoipa::path(post, path = "/api/projects", tag = "applications",
    request_body = NewProject,
    responses(
        (status = 201, description = "Created", body = ProjectRecord),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 403, description = "Not a researcher", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<NewProject>,
) -> ApiResult<(StatusCode, Json<ProjectRecord>)> {
    caller
        .signed_in(&state, Action::CreateProject, "projects")
        .await?;
    let Json(new) = body.read()??;
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .domain
                .create_project(caller.principal(), new.into())
                .await?
                .into(),
        ),
    ))
}

/// The projects the caller may read.
#[utoipa::path(get, path = "/api/projects", tag = "applications",
    responses((status = 200, description = "Projects", body = [ProjectRecord]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_projects(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ProjectRecord>>> {
    Ok(Json(super::wire::list(
        state.domain.projects_for(caller.principal()).await?,
    )))
}

/// One project.
#[utoipa::path(get, path = "/api/projects/{id}", tag = "applications",
    params(("id" = String, Path, description = "Project id")),
    responses((status = 200, description = "The project", body = ProjectRecord),
              (status = 404, description = "No such project", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(project = %id))]
pub async fn get_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ProjectRecord>> {
    Ok(Json(
        state
            .domain
            .read_project(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// Write a draft application under a project the caller belongs to.
#[utoipa::path(post, path = "/api/applications", tag = "applications",
    request_body = ApplicationDraft,
    responses(
        (status = 201, description = "Draft created", body = ApplicationView),
        (status = 400, description = "Invalid field (named by its path)", body = ErrorBody),
        (status = 403, description = "Not a member of the project", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub async fn create_application(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonBody<ApplicationDraft>,
) -> ApiResult<(StatusCode, Json<ApplicationView>)> {
    caller
        .signed_in(&state, Action::CreateApplication, "applications")
        .await?;
    let Json(draft) = body.read()??;
    let view = state
        .domain
        .create_application(caller.principal(), draft.into())
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// The applications the caller may read, with due dates and overdue flags.
#[utoipa::path(get, path = "/api/applications", tag = "applications",
    responses((status = 200, description = "Applications", body = [ApplicationSummary]),
              (status = 401, description = "Not signed in", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn list_applications(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApplicationSummary>>> {
    Ok(Json(super::wire::list(
        state.domain.applications_for(caller.principal()).await?,
    )))
}

/// One application: body, state, due date, review progress, history,
/// materials, eligibility while editable, grant.
#[utoipa::path(get, path = "/api/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    responses((status = 200, description = "The application", body = ApplicationView),
              (status = 404, description = "No such application", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn get_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApplicationView>> {
    Ok(Json(
        state
            .domain
            .application_view(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// Replace the body of a draft or returned application (the applicant).
#[utoipa::path(put, path = "/api/applications/{id}", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    request_body = ApplicationDraft,
    responses((status = 200, description = "Updated", body = ApplicationView),
              (status = 400, description = "Invalid field", body = ErrorBody),
              (status = 409, description = "Not editable in its state", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn update_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<ApplicationDraft>,
) -> ApiResult<Json<ApplicationView>> {
    signed_in(&state, &caller, Action::EditApplication, &id).await?;
    let Json(draft) = body.read()??;
    Ok(Json(
        state
            .domain
            .update_application(caller.principal(), &id, draft.into())
            .await?
            .into(),
    ))
}

/// Submit (or resubmit) an application. Every eligibility rule runs first;
/// refusals come back together as `ineligible` with `details`.
#[utoipa::path(post, path = "/api/applications/{id}/submit", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    responses((status = 200, description = "Submitted; completeness due in 3 working days", body = ApplicationView),
              (status = 409, description = "Illegal transition", body = ErrorBody),
              (status = 422, description = "Not eligible: every reason in `details`", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApplicationView>> {
    Ok(Json(
        state
            .domain
            .submit_application(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// A reviewer step on an application.
async fn review(
    state: AppState,
    caller: Caller,
    id: String,
    step: ReviewStep,
) -> ApiResult<Json<ApplicationView>> {
    Ok(Json(
        state
            .domain
            .review_application(caller.principal(), &id, step)
            .await?
            .into(),
    ))
}

/// Start the completeness check (a steward of a requested dataset's provider, or an admin).
#[utoipa::path(post, path = "/api/applications/{id}/completeness/start", tag = "review",
    params(("id" = String, Path, description = "Application id")),
    responses((status = 200, description = "Completeness check under way", body = ApplicationView),
              (status = 403, description = "Not a reviewer of this application, or separation of duties", body = ErrorBody),
              (status = 409, description = "Illegal transition", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn start_completeness(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApplicationView>> {
    review(state, caller, id, ReviewStep::StartCompletenessCheck).await
}

/// The materials are complete: the joint review starts (due in 10 working days).
#[utoipa::path(post, path = "/api/applications/{id}/completeness/pass", tag = "review",
    params(("id" = String, Path, description = "Application id")),
    responses((status = 200, description = "Under review", body = ApplicationView),
              (status = 403, description = "Not a reviewer of this application, or separation of duties", body = ErrorBody),
              (status = 409, description = "Illegal transition", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn pass_completeness(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApplicationView>> {
    review(state, caller, id, ReviewStep::CompletenessPassed).await
}

/// One approval of the joint review.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The provider a steward approves for (default: one still missing).
    #[serde(default)]
    provider: Option<String>,
    /// Row filters and budget caps the grant must respect.
    #[serde(default)]
    conditions: ReviewConditions,
}

/// Approve (joint review: each provider's steward and, by grade, a platform admin).
#[utoipa::path(post, path = "/api/applications/{id}/approve", tag = "review",
    params(("id" = String, Path, description = "Application id")),
    request_body = Approval,
    responses((status = 200, description = "Approval recorded; `approved` once all are in", body = ApplicationView),
              (status = 403, description = "Self-review, same organisation, second approval by one person", body = ErrorBody),
              (status = 409, description = "Illegal transition or approval not needed", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: BytesBody,
) -> ApiResult<Json<ApplicationView>> {
    signed_in(&state, &caller, Action::ReviewApplication, &id).await?;
    let body = body.read()??;
    // An empty body is an approval without conditions.
    let a: Approval = if body.iter().all(u8::is_ascii_whitespace) {
        Approval::default()
    } else {
        // Like the JSON extractor: the message quotes only the caller's own input.
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid approval body: {e}")))?
    };
    review(
        state,
        caller,
        id,
        ReviewStep::Approve {
            provider: a.provider,
            conditions: a.conditions.into(),
        },
    )
    .await
}

/// A written reason (at least 5 characters).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    reason: String,
}

/// Reject, with a written reason (SZ:42). Final.
#[utoipa::path(post, path = "/api/applications/{id}/reject", tag = "review",
    params(("id" = String, Path, description = "Application id")),
    request_body = Reason,
    responses((status = 200, description = "Rejected", body = ApplicationView),
              (status = 400, description = "Reason missing", body = ErrorBody),
              (status = 409, description = "Illegal transition", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<Reason>,
) -> ApiResult<Json<ApplicationView>> {
    signed_in(&state, &caller, Action::ReviewApplication, &id).await?;
    let Json(r) = body.read()??;
    review(state, caller, id, ReviewStep::Reject { reason: r.reason }).await
}

/// Return to the applicant for changes, with a written reason (XM:23).
#[utoipa::path(post, path = "/api/applications/{id}/return", tag = "review",
    params(("id" = String, Path, description = "Application id")),
    request_body = Reason,
    responses((status = 200, description = "Returned", body = ApplicationView),
              (status = 400, description = "Reason missing", body = ErrorBody),
              (status = 409, description = "Illegal transition", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn return_application(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<Reason>,
) -> ApiResult<Json<ApplicationView>> {
    signed_in(&state, &caller, Action::ReviewApplication, &id).await?;
    let Json(r) = body.read()??;
    review(state, caller, id, ReviewStep::Return { reason: r.reason }).await
}

/// The file name of an uploaded material.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MaterialName {
    /// File name, 1 to 200 characters, no path separators.
    name: String,
}

/// Upload a material (PDF, PNG, JPEG or plain text; the body is the file, the
/// `Content-Type` header its type). Stored encrypted and hashed.
#[utoipa::path(post, path = "/api/applications/{id}/materials", tag = "applications",
    params(("id" = String, Path, description = "Application id"), MaterialName),
    request_body(content = Vec<u8>, content_type = "application/pdf"),
    responses((status = 201, description = "Stored", body = MaterialRecord),
              (status = 400, description = "Type, size or name refused", body = ErrorBody),
              (status = 413, description = "Larger than the limit", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn upload_material(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<MaterialName>, QueryRejection>,
    headers: HeaderMap,
    body: BytesBody,
) -> ApiResult<(StatusCode, Json<MaterialRecord>)> {
    signed_in(&state, &caller, Action::EditApplication, &id).await?;
    let Query(q) = query?;
    let body = body.read()?.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "payload_too_large",
                "the material is larger than the limit",
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let m = state
        .domain
        .add_material(caller.principal(), &id, &q.name, content_type, &body)
        .await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

/// Download a material (the applicant and the application's reviewers). Audited.
#[utoipa::path(get, path = "/api/applications/{id}/materials/{material_id}", tag = "applications",
    params(("id" = String, Path, description = "Application id"),
           ("material_id" = String, Path, description = "Material id")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
              (status = 404, description = "No such material", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn download_material(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, material_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let (m, bytes) = state
        .domain
        .material_content(caller.principal(), &id, &material_id)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, m.content_type.clone()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"material-{}\"", m.id),
            ),
        ],
        bytes,
    ))
}

/// The agreement text to sign (the applicant, once approved); once signed,
/// the text as signed with its receipt.
#[utoipa::path(get, path = "/api/applications/{id}/agreement", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    responses((status = 200, description = "Text and its SHA-256; once signed, with `signed_at` and `receipt`", body = AgreementText),
              (status = 409, description = "Not approved yet", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn agreement(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AgreementText>> {
    Ok(Json(
        state
            .domain
            .agreement_text(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// What the applicant signs: the hash of the text they were shown.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    agreement_sha256: String,
}

/// The countersigned receipt and the grant it opened.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Signed {
    #[schema(value_type = Object)]
    receipt: enclave::access::agreement::SignedReceipt,
    grant: Grant,
}

/// Sign the use agreement (SZ:42-43): the grant is created at once.
#[utoipa::path(post, path = "/api/applications/{id}/agreement/sign", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    request_body = Signature,
    responses((status = 201, description = "Signed; grant active", body = Signed),
              (status = 409, description = "Not approved, or the text changed", body = ErrorBody),
              (status = 422, description = "No longer eligible", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: JsonBody<Signature>,
) -> ApiResult<(StatusCode, Json<Signed>)> {
    signed_in(&state, &caller, Action::SignAgreement, &id).await?;
    let Json(s) = body.read()??;
    let (receipt, grant) = state
        .domain
        .sign_agreement(caller.principal(), &id, &s.agreement_sha256)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Signed {
            receipt,
            grant: grant.into(),
        }),
    ))
}

/// The signed receipt (`anyu verify-receipt` checks it).
#[utoipa::path(get, path = "/api/applications/{id}/agreement/receipt", tag = "applications",
    params(("id" = String, Path, description = "Application id")),
    responses((status = 200, description = "Receipt JSON", body = Object),
              (status = 404, description = "Not signed", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(application = %id))]
pub async fn receipt(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let json = state
        .domain
        .agreement_receipt(caller.principal(), &id)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"receipt-{id}.json\""),
            ),
        ],
        json,
    ))
}
