//! `/api/models`: researchers' WebAssembly models entering the domain, and
//! stewards' approvals of them per dataset. Runs are jobs (`/api/jobs` with
//! `model`).

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use enclave::access::authz::Action;
use enclave::domain::audit_object;
use serde::Deserialize;

use super::AppState;
use super::auth::{BytesBody, Caller, JsonBody};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::wire::{ModelDecision, ModelRecord, ModelView};

pub fn route_models(max_component_bytes: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/api/models",
            get(list_models)
                // Components are larger than JSON bodies; the limit is the intake limit.
                .post(upload_model)
                .layer(DefaultBodyLimit::max(max_component_bytes)),
        )
        .route("/api/models/{sha256}", get(get_model))
        .route("/api/models/{sha256}/approvals", post(decide_model))
        .route(
            "/api/models/{sha256}/approvals/{id}/withdraw",
            post(withdraw_model_decision),
        )
}

/// The uploader's name for the model.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelName {
    /// 1 to 100 characters.
    name: String,
}

/// Upload a WebAssembly component targeting `anyu:model/model@0.2.0` or the
/// superseded 0.1.0 (the body is the `.wasm` file; `info.world` says which).
/// It is validated against the world (unknown imports and versions refused),
/// size-limited, hashed (SHA-256 is its identity) and compiled; uploading the
/// same bytes again returns the same model.
#[utoipa::path(post, path = "/api/models", tag = "models",
    params(ModelName),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, description = "Taken in", body = ModelView),
              (status = 413, description = "Larger than the intake limit", body = ErrorBody),
              (status = 422, description = "Refused: malformed, not a component, wrong world, forbidden import (code says which)", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn upload_model(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ModelName>, QueryRejection>,
    body: BytesBody,
) -> ApiResult<(StatusCode, Json<ModelView>)> {
    caller
        .signed_in(&state, Action::UploadModel, "models")
        .await?;
    let Query(q) = query?;
    let body = body.read()?.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "component_too_large",
                "the component is larger than the intake limit",
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    let view = state
        .domain
        .upload_model(caller.principal(), &q.name, body.to_vec())
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// Models the caller may see: a researcher's own uploads; every model for
/// stewards, admins and auditors (models are code, not data).
#[utoipa::path(get, path = "/api/models", tag = "models",
    responses((status = 200, description = "Models, newest first", body = [ModelRecord])))]
#[tracing::instrument(skip_all)]
pub async fn list_models(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ModelRecord>>> {
    Ok(Json(super::wire::list(
        state.domain.models_for(caller.principal()).await?,
    )))
}

/// One model with the stewards' decisions per dataset.
#[utoipa::path(get, path = "/api/models/{sha256}", tag = "models",
    params(("sha256" = String, Path, description = "The component's SHA-256")),
    responses((status = 200, description = "The model", body = ModelView),
              (status = 404, description = "No such model (or not yours)", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn get_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha256): Path<String>,
) -> ApiResult<Json<ModelView>> {
    Ok(Json(
        state
            .domain
            .model_view(caller.principal(), &sha256)
            .await?
            .into(),
    ))
}

/// A steward's decision on running a model on one of their provider's datasets.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelDecisionBody {
    dataset_id: String,
    decision: ModelDecision,
    /// Required (at least 5 characters) for a rejection.
    #[serde(default)]
    comment: String,
}

/// Approve or reject a model for a dataset (a steward of its provider).
/// Datasets whose policy says `models_need_approval` run only approved models.
#[utoipa::path(post, path = "/api/models/{sha256}/approvals", tag = "models",
    params(("sha256" = String, Path, description = "The component's SHA-256")),
    request_body = ModelDecisionBody,
    responses((status = 200, description = "Recorded", body = ModelView),
              (status = 403, description = "Not a steward of the dataset's provider", body = ErrorBody),
              (status = 404, description = "No such model", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn decide_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha256): Path<String>,
    body: JsonBody<ModelDecisionBody>,
) -> ApiResult<Json<ModelView>> {
    let object = audit_object("model", &sha256);
    caller
        .signed_in(&state, Action::ApproveModel, &object)
        .await?;
    let Json(b) = body.read()??;
    if !enclave::catalog::is_dataset_id(&b.dataset_id) {
        return Err(ApiError::bad_request("dataset_id: no such dataset"));
    }
    Ok(Json(
        state
            .domain
            .decide_model(
                caller.principal(),
                &sha256,
                &b.dataset_id,
                b.decision.into(),
                &b.comment,
            )
            .await?
            .into(),
    ))
}

/// Withdraw one's own decision on a model (a rejection blocks the model's
/// runs on that dataset until its author withdraws it).
#[utoipa::path(post, path = "/api/models/{sha256}/approvals/{id}/withdraw", tag = "models",
    params(("sha256" = String, Path, description = "The component's SHA-256"),
           ("id" = String, Path, description = "The decision's id")),
    responses((status = 200, description = "Withdrawn", body = ModelView),
              (status = 403, description = "Not the decision's author", body = ErrorBody),
              (status = 404, description = "No such decision", body = ErrorBody),
              (status = 409, description = "Already withdrawn", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn withdraw_model_decision(
    State(state): State<AppState>,
    caller: Caller,
    Path((sha256, id)): Path<(String, String)>,
) -> ApiResult<Json<ModelView>> {
    Ok(Json(
        state
            .domain
            .withdraw_model_decision(caller.principal(), &sha256, &id)
            .await?
            .into(),
    ))
}
