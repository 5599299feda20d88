//! The HTTP API (axum). Handlers authenticate (from the access issue on),
//! call one `enclave` function and map its error; no business rule lives here.
//!
//! Routes are grouped per area in `route_*()` functions; `/api/openapi.json`
//! is generated from the handlers' `#[utoipa::path]` annotations.

mod accounts;
mod admin;
mod applications;
mod auth;
mod catalog;
mod complaints;
pub mod connections;
pub mod error;
mod grants;
mod jobs;
mod models;
mod rate;
mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use enclave::audit::Outcome;
use enclave::{Actor, Domain};
use tokio::sync::oneshot;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::config::Config;
use error::{ApiError, ErrorBody};

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    pub domain: Arc<Domain>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Anyu (安域) API", description = "Secure data domain for conditionally open public data"),
    paths(
        healthz,
        catalog::list_catalog,
        catalog::get_catalog_entry,
        auth::login,
        auth::logout,
        auth::me,
        admin::list_users,
        admin::overview,
        admin::list_audit_events,
        complaints::file_complaint,
        complaints::list_complaints,
        complaints::answer_complaint,
        accounts::create_user,
        accounts::disable_user,
        accounts::enable_user,
        accounts::set_verification,
        accounts::set_credit_flags,
        accounts::reset_password,
        accounts::bind_person,
        accounts::list_organisations,
        accounts::create_organisation,
        accounts::set_credit_code,
        accounts::list_account_requests,
        accounts::approve_account_request,
        accounts::refuse_account_request,
        accounts::list_tokens,
        accounts::create_token,
        accounts::revoke_token,
        accounts::change_password,
        applications::create_project,
        applications::list_projects,
        applications::get_project,
        applications::create_application,
        applications::list_applications,
        applications::get_application,
        applications::update_application,
        applications::submit,
        applications::start_completeness,
        applications::pass_completeness,
        applications::approve,
        applications::reject,
        applications::return_application,
        applications::upload_material,
        applications::download_material,
        applications::agreement,
        applications::sign,
        applications::receipt,
        grants::list_grants,
        grants::get_grant,
        grants::suspend,
        grants::reinstate,
        grants::revoke,
        grants::list_reports,
        grants::file_report,
        jobs::submit_job,
        jobs::list_jobs,
        jobs::get_job,
        jobs::cancel_job,
        jobs::review_queue,
        jobs::review_packet,
        jobs::review,
        jobs::list_releases,
        jobs::get_release,
        jobs::certificate,
        jobs::download,
        models::upload_model,
        models::list_models,
        models::get_model,
        models::decide_model,
        models::withdraw_model_decision,
        catalog::dummy_data,
        admin::signed_head,
        admin::platform_keys,
    ),
    components(schemas(ErrorBody, Health)),
    modifiers(&BearerAuth),
    tags((name = "catalog", description = "The open-data catalog (开放目录): metadata only"),
         (name = "auth", description = "Sessions: sign in, sign out, the caller's account"),
         (name = "admin", description = "Platform administration (主管部门)"),
         (name = "audit", description = "The audit log, for auditors"),
         (name = "complaints", description = "Public complaints about open data (SZ:65)"),
         (name = "applications", description = "Projects, applications, materials and the use agreement (SZ:41-44)"),
         (name = "review", description = "Completeness check and joint review (SZ:42, XM:23)"),
         (name = "grants", description = "Grants: suspension, revocation, usage reports (SZ:43, SZ:63)"),
         (name = "jobs", description = "Queries in the domain, output review, signed releases"),
         (name = "models", description = "WebAssembly models entering the domain (SZ:27, SZ:44) and stewards' approvals"),
         (name = "system", description = "Health and API description"))
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every protected route uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The caller's own request id, kept apart from the server's.
const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-client-request-id");

/// Headers every answer carries. The request id is always the server's own (a
/// caller must not be able to choose what our logs and audit correlate on); a
/// caller's id comes back as `x-client-request-id`. Everything under `/api/`
/// except the public catalog and the API document is `no-store`: results,
/// certificates, materials, tokens and review packets must not sit in a cache.
///
/// With TLS on, every answer also carries HSTS: a browser that once reached
/// the platform over TLS never tries plain HTTP again for a year.
async fn response_headers(hsts: bool, mut req: Request, next: Next) -> Response {
    let client_id = req.headers_mut().remove(REQUEST_ID);
    let path = req.uri().path();
    let cacheable = !path.starts_with("/api/")
        || path == "/api/openapi.json"
        || path == "/api/catalog"
        || (path.starts_with("/api/catalog/") && !path.ends_with("/dummy"));
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !cacheable {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(id) = client_id {
        headers.insert(CLIENT_REQUEST_ID, id);
    }
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

/// Builds the application router with its middleware.
pub fn router(state: AppState, config: &Config) -> Router {
    let hsts = config.server.tls.is_some();
    // Layers run top to bottom for requests:
    // 0. set aside the caller's request id; security headers on every answer;
    // 1. assign the server's request id so logs and responses share it;
    // 2. trace the request in a span carrying that id;
    // 3. copy the id onto the response;
    // 4. turn a handler panic into a JSON 500 instead of a dropped connection;
    // then (on the router) the per-client rate limit, before any handler;
    // 5. bound the time of every request (the body size is bounded by
    //    DefaultBodyLimit on the router and per route, which extractors
    //    enforce; an anonymous caller's body is not read at all outside login
    //    and complaints: auth::SignedBody).
    let middleware = ServiceBuilder::new()
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| response_headers(hsts, req, next),
        ))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), route, request_id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response_parts()
        }));

    let material_limit =
        usize::try_from(state.domain.options().access.max_material_bytes).unwrap_or(usize::MAX);
    let timeout = |t| TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, t);
    // Intake compiles the component inside the request: an 18 MB Python model
    // takes ~20 s on two cores, so model routes get their own, longer bound.
    let models = models::route_models(state.domain.options().models.max_component_bytes)
        .layer(timeout(config.intake_timeout()));
    // Per-route body limits below the router's default: a login is a few
    // hundred bytes and is read from anyone; account and complaint bodies are
    // short texts.
    let small = |kib: usize| DefaultBodyLimit::max(kib << 10);
    Router::new()
        .merge(route_system())
        .merge(catalog::route_catalog())
        .merge(auth::route_auth().layer(small(16)))
        .merge(admin::route_admin())
        .merge(complaints::route_complaints().layer(small(64)))
        .merge(accounts::route_accounts().layer(small(64)))
        .merge(applications::route_applications(material_limit))
        .merge(grants::route_grants())
        .merge(jobs::route_jobs())
        // The browser console: HTML over the same Domain calls (src/console).
        .merge(
            crate::console::router(crate::console::Settings {
                secure_cookies: config.server.secure_cookies || config.server.tls.is_some(),
            })
            .layer(small(64)),
        )
        .layer(timeout(config.request_timeout()))
        .merge(models)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.server.body_limit_bytes))
        // Inside the request id and headers, so a 429 carries them too.
        .layer(axum::middleware::from_fn_with_state(
            rate::RateLimit::new(config.server.rate_per_second, config.server.rate_burst),
            rate::limit,
        ))
        .layer(middleware)
}

impl ApiError {
    fn into_response_parts(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

fn route_system() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
}

/// Liveness answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness check.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The server is up", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Serves until SIGINT/SIGTERM (or `shutdown` fires), then drains requests,
/// records `server.stop` and writes the audit log's final checkpoint.
pub async fn serve(
    domain: Domain,
    listen: SocketAddr,
    config: &Config,
    ready: Option<oneshot::Sender<SocketAddr>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let domain = Arc::new(domain);
    // A certificate that cannot be read or does not match its key stops the
    // start, named; never a fallback to plain HTTP.
    let tls = match config.server.tls.as_ref().map(tls::acceptor).transpose() {
        Ok(tls) => tls,
        Err(why) => {
            domain
                .record(
                    &Actor::system(),
                    "server.start",
                    format!("listen:{listen}"),
                    Outcome::Failure,
                    serde_json::json!({ "error": "tls_configuration" }),
                )
                .await?;
            domain.close().await?;
            return Err(why.into());
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            domain
                .record(
                    &Actor::system(),
                    "server.start",
                    format!("listen:{listen}"),
                    Outcome::Failure,
                    serde_json::json!({ "error": e.kind().to_string() }),
                )
                .await?;
            domain.close().await?;
            return Err(format!("cannot listen on {listen}: {e}").into());
        }
    };
    let local = listener.local_addr()?;
    domain
        .record(
            &Actor::system(),
            "server.start",
            format!("listen:{local}"),
            Outcome::Success,
            serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
        )
        .await?;
    tracing::info!(%local, "listening");
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("Anyu listening on {scheme}://{local}");
    if let Some(tx) = ready {
        let _ = tx.send(local);
    }

    let app = router(
        AppState {
            domain: Arc::clone(&domain),
        },
        config,
    );
    match domain.recover_jobs().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            count = n,
            "jobs interrupted by the previous shutdown were marked failed"
        ),
        Err(e) => tracing::error!(error = %e, "recovering interrupted jobs failed"),
    }
    let sweeper = tokio::spawn(every_minute(
        Arc::clone(&domain),
        config.server.disk_alarm_percent,
    ));
    connections::serve(
        listener,
        app,
        &config.connection_limits(),
        tls,
        shutdown_signal(),
    )
    .await;
    sweeper.abort();

    tracing::info!("shutting down");
    domain.flush_anonymous_tally().await?;
    domain
        .record(
            &Actor::system(),
            "server.stop",
            format!("listen:{local}"),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
    domain.close().await?;
    Ok(())
}

/// The minute's chores. Grants end at their period's end even when nobody
/// looks: expire them at start and then every minute (the job paths also
/// check validity themselves). Anonymous traffic's counters are written as
/// summary events. The data directory's file system is checked against the
/// alarm level: crossing it is an audit event and a log warning, once until
/// it falls below again.
async fn every_minute(domain: Arc<Domain>, disk_alarm_percent: u8) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    let mut alarmed = false;
    loop {
        tick.tick().await;
        match domain.expire_grants().await {
            Ok(ids) if !ids.is_empty() => tracing::info!(count = ids.len(), "expired grants"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "expiring grants failed"),
        }
        if let Err(e) = domain.flush_anonymous_tally().await {
            tracing::error!(error = %e, "writing the anonymous traffic summary failed");
        }
        let Some(used) = disk_used_percent(domain.data_dir().root()) else {
            continue;
        };
        let over = disk_alarm_percent > 0 && used >= f64::from(disk_alarm_percent);
        if over && !alarmed {
            tracing::warn!(
                used_percent = used,
                "the data directory's file system is nearly full"
            );
            let recorded = domain
                .record(
                    &Actor::system(),
                    "disk.usage_high",
                    "data_dir",
                    Outcome::Failure,
                    serde_json::json!({ "used_percent": used.round(), "alarm_percent": disk_alarm_percent }),
                )
                .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "recording the disk alarm failed");
            }
        }
        alarmed = over;
    }
}

/// How full the file system holding `path` is, in percent of what an
/// unprivileged writer can use.
fn disk_used_percent(path: &std::path::Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a plain struct
    // the call fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let total = stat.f_blocks as f64;
    let free = stat.f_bavail as f64;
    (total > 0.0).then(|| 100.0 * (total - free) / total)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API document is locked: any change to a route, a parameter or a
    /// response shape shows up as a reviewed snapshot diff.
    #[test]
    fn the_api_document_is_locked() {
        insta::assert_json_snapshot!("openapi", ApiDoc::openapi());
    }

    /// Every route the router serves is described in the OpenAPI document.
    #[test]
    fn openapi_lists_every_route() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for route in [
            "/healthz",
            "/api/catalog",
            "/api/catalog/{id}",
            "/api/auth/login",
            "/api/auth/logout",
            "/api/me",
            "/api/admin/users",
            "/api/admin/overview",
            "/api/audit/events",
            "/api/complaints",
            "/api/admin/complaints",
            "/api/admin/complaints/{id}/answer",
            "/api/admin/users/{username}/disable",
            "/api/me/tokens",
            "/api/projects",
            "/api/applications/{id}/approve",
            "/api/applications/{id}/agreement/sign",
            "/api/grants/{id}/suspend",
            "/api/grants/{id}/reports",
        ] {
            assert!(
                paths.contains(&route),
                "{route} missing from OpenAPI: {paths:?}"
            );
        }
    }
}
