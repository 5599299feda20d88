//! `/api/catalog`: search and detail. Metadata and quality summaries only —
//! never rows of any dataset.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use enclave::catalog::CatalogQuery;
use enclave::release::ResultFormat;
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::wire::{CatalogDetail, CatalogListing, OpenType};

pub fn route_catalog() -> Router<AppState> {
    Router::new()
        .route("/api/catalog", get(list_catalog))
        .route("/api/catalog/{id}", get(get_catalog_entry))
        .route("/api/catalog/{id}/dummy", get(dummy_data))
}

/// What a dataset id looks like, for error messages.
const DATASET_ID_RULE: &str =
    "a dataset id is 2-64 characters of a-z, 0-9 and _, starting with a letter";

/// Catalog search parameters; all optional and combined with AND.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CatalogParams {
    /// Free text, matched against ids, titles, summaries, providers, tags and columns.
    q: Option<String>,
    /// Provider agency (开放主体), exact match.
    provider: Option<String>,
    /// `unconditional`, `conditional` or `not_open`.
    open_type: Option<OpenType>,
    /// Grade, e.g. `L3`.
    grade: Option<String>,
}

/// Search the catalog.
#[utoipa::path(
    get, path = "/api/catalog", tag = "catalog",
    params(CatalogParams),
    responses(
        (status = 200, description = "Matching datasets", body = [CatalogListing]),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(q))]
pub async fn list_catalog(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<CatalogParams>, QueryRejection>,
) -> ApiResult<Json<Vec<CatalogListing>>> {
    let Query(params) = params?;
    tracing::Span::current().record("q", params.q.as_deref().unwrap_or(""));
    let query = CatalogQuery {
        text: params.q.filter(|s| !s.trim().is_empty()),
        provider: params.provider,
        open_type: params.open_type.map(Into::into),
        grade: params.grade,
    };
    Ok(Json(super::wire::list(
        state.domain.catalog(caller.principal(), &query).await?,
    )))
}

/// One dataset's catalog entry: metadata, versions and quality summaries.
#[utoipa::path(
    get, path = "/api/catalog/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Dataset id")),
    responses(
        (status = 200, description = "The catalog entry", body = CatalogDetail),
        (status = 404, description = "No such dataset (or not listed)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(dataset = %id))]
pub async fn get_catalog_entry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<CatalogDetail>> {
    if !enclave::catalog::is_dataset_id(&id) {
        return Err(ApiError::bad_request(DATASET_ID_RULE));
    }
    Ok(Json(
        state
            .domain
            .catalog_entry(caller.principal(), &id)
            .await?
            .into(),
    ))
}

/// Dummy-data parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DummyParams {
    /// Rows, 1 to 100,000 (default 1,000).
    rows: Option<usize>,
    /// Seed of the generator (default 1): the same seed gives the same sample.
    seed: Option<u64>,
    /// `csv` (default), `parquet`, `arrow` or `json`.
    format: Option<String>,
}

/// Dummy data (as OpenSAFELY does): a synthetic sample shaped like the
/// dataset — its columns, types, bounds, categories and identifier formats
/// (with valid check characters) — generated from the manifest alone, never
/// from real rows. For developing queries and models outside the domain.
#[utoipa::path(
    get, path = "/api/catalog/{id}/dummy", tag = "catalog",
    params(("id" = String, Path, description = "Dataset id"), DummyParams),
    responses(
        (status = 200, description = "The sample", content_type = "text/csv"),
        (status = 404, description = "No such dataset (or not open)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(dataset = %id))]
pub async fn dummy_data(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<DummyParams>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    if !enclave::catalog::is_dataset_id(&id) {
        return Err(ApiError::bad_request(DATASET_ID_RULE));
    }
    let Query(params) = params?;
    let rows = params.rows.unwrap_or(1000);
    if rows == 0 || rows > enclave::catalog::dummy::MAX_DUMMY_ROWS {
        return Err(ApiError::bad_request("rows: 1 to 100000"));
    }
    let format = ResultFormat::parse(params.format.as_deref().unwrap_or("csv"))?;
    let batch = state
        .domain
        .dummy_data(caller.principal(), &id, rows, params.seed.unwrap_or(1))
        .await?;
    let bytes = enclave::release::encode(&batch.schema(), &[batch], format)?;
    Ok((
        [
            (header::CONTENT_TYPE, format.mime().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-dummy.{}\"", format.extension()),
            ),
        ],
        bytes,
    ))
}
