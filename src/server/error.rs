//! The one error type at the HTTP boundary.
//!
//! Every error response has the same JSON shape, `{"error": {"code", "message"}}`,
//! with a stable `code`. Unexpected errors (store, engine, I/O, bugs) become a
//! 500 that says only "internal error"; their detail goes to the log, where the
//! request id ties it to the request.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<serde_json::Value>,
    /// Seconds for a `Retry-After` header (429, 503).
    retry_after: Option<u64>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `bad_request`, `internal`.
    pub code: String,
    /// Human-readable explanation; never contains data values.
    pub message: String,
    /// Machine-readable detail where the error has any (e.g. the list of
    /// eligibility refusals of `ineligible`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` header.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure the caller cannot act on: logged in full, answered as "internal error".
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<enclave::Error> for ApiError {
    fn from(e: enclave::Error) -> Self {
        use enclave::Error as E;
        if !e.is_public() {
            return ApiError::internal(&e);
        }
        if let E::MetadataTampered { .. } = &e {
            // The operator's problem; the caller learns only that it is not theirs.
            tracing::error!(error = %e, "metadata integrity check failed");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.code(),
                "the platform's records failed an integrity check; the operator has been alerted",
            );
        }
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            E::Forbidden => StatusCode::FORBIDDEN,
            E::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            E::Conflict(_) => StatusCode::CONFLICT,
            E::Manifest(_) | E::InvalidData(_) | E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            E::Workflow(w) => {
                use enclave::access::WorkflowErrorCode as W;
                match w.code {
                    W::IllegalTransition | W::ApprovalNotNeeded | W::PeriodNotEnded => {
                        StatusCode::CONFLICT
                    }
                    W::ReasonRequired => StatusCode::BAD_REQUEST,
                    W::NotApplicant
                    | W::SelfReview
                    | W::SameOrganisation
                    | W::DuplicateApprover
                    | W::NotEligibleReviewer
                    | W::NotAuthorized => StatusCode::FORBIDDEN,
                }
            }
            E::Ineligible(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::Denied { code, .. } if *code == "too_many_jobs" => StatusCode::TOO_MANY_REQUESTS,
            E::Denied { .. } => StatusCode::FORBIDDEN,
            E::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            // Key and audit failures are operator problems, not the caller's.
            E::Crypto(_) | E::Audit(_) => return ApiError::internal(&e),
            _ => return ApiError::internal(&e),
        };
        let mut api = ApiError::new(status, e.code(), e.to_string());
        api.details = e.details();
        if let E::TooManyAttempts { retry_after_secs } | E::Busy { retry_after_secs } = e {
            api.retry_after = Some(retry_after_secs);
        }
        api
    }
}

// A malformed body or query string is the caller's mistake: 400 with the
// extractor's explanation (which names the field, and quotes only the caller's input).
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "payload_too_large",
                "the body is larger than the limit",
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                e.status(),
                "payload_too_large",
                "the body is larger than the limit",
            )
        } else {
            ApiError::bad_request(e.body_text())
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
