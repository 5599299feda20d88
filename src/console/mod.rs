//! The console: Anyu in a browser, server-rendered HTML in Simplified Chinese
//! (default) or English, under `/console`. It is one more client of `Domain`,
//! like the API in `crate::server`: each page or action is the same `Domain`
//! call an API route makes, so the same authorization, audit and refusals;
//! no rule, no SQL of its own. See ARCHITECTURE.md "The console".

mod assets;
mod i18n;
mod pages;
mod templates;
mod web;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::server::AppState;
pub use web::Settings;

/// The Content-Security-Policy of every console answer: only this origin's
/// scripts and styles (no inline script or style, no `eval`), no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
base-uri 'none'";

/// Security headers of the console's answers. Pages carry data for one
/// visitor: `no-store` unless the handler set a lifetime (assets).
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The console's routes, mounted by `server::router`.
pub fn router(settings: Settings) -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route("/console/assets/{file}", get(assets::serve))
        .route("/console/lang", post(pages::set_lang))
        .route(
            "/console/signin",
            get(pages::signin_form).post(pages::signin),
        )
        .route("/console/signout", post(pages::signout))
        .route("/console/catalog", get(pages::catalog))
        .route("/console/catalog/{id}", get(pages::dataset))
        .route("/console/grants", get(pages::grants))
        .route("/console/grants/{id}", get(pages::workbench))
        .route("/console/grants/{id}/jobs", post(pages::submit))
        .route("/console/jobs/{id}", get(pages::job))
        .route("/console/jobs/{id}/state", get(pages::job_fragment))
        .route("/console/releases/{id}/download", get(pages::download))
        .route(
            "/console/releases/{id}/certificate",
            get(pages::certificate),
        )
        .route("/console/reviews", get(pages::reviews))
        .route(
            "/console/reviews/{id}",
            get(pages::review).post(pages::vote),
        )
        .route("/console/audit", get(pages::audit))
        .layer(axum::Extension(settings))
        .layer(axum::middleware::from_fn(headers))
}
