//! The console's request plumbing: the session cookie, the language cookie,
//! CSRF tokens, page rendering and the error page.
//!
//! The session cookie holds the same session token an API login returns
//! (`Domain::login`), so lifetime, revocation and lockout are the API's. The
//! CSRF token of a signed-in visitor is an HMAC of that token under a key
//! derived from the keyring; before sign-in it is a random value in a cookie
//! of its own (double submit), so a sign-in form cannot be posted from
//! another site either.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use enclave::identity::{Principal, Role};
use minijinja::Value;
use minijinja::value::merge_maps;

use super::i18n::{self, Lang};
use super::templates;
use crate::server::AppState;
use crate::server::error::ApiError;

pub const SESSION_COOKIE: &str = "anyu_session";
pub const LANG_COOKIE: &str = "anyu_lang";
pub const PRE_CSRF_COOKIE: &str = "anyu_csrf";

/// Console settings from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Mark cookies `Secure` even when the request did not say it came over TLS.
    pub secure_cookies: bool,
}

/// A catalogue key, written so the coverage test finds it.
pub const fn key(k: &'static str) -> &'static str {
    k
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equality that takes the same time wherever the inputs differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Everything a console handler knows about its visitor.
pub struct Visitor {
    pub principal: Option<Principal>,
    pub token: Option<String>,
    pub lang: Lang,
    /// The token every form of the page carries.
    pub csrf: String,
    /// A new pre-session CSRF cookie to set (anonymous visitors without one).
    pub set_pre_csrf: Option<String>,
    /// Cookies get `Secure`.
    pub secure: bool,
    /// The path and query of this request (the language switch returns here).
    pub here: String,
    /// The session cookie named a session that is over: clear it.
    pub stale_session: bool,
    /// The caller's network address (the login throttle's key).
    pub client: String,
    state: AppState,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let settings = parts
            .extensions
            .get::<Settings>()
            .copied()
            .unwrap_or(Settings {
                secure_cookies: false,
            });
        let headers = &parts.headers;
        let lang = Lang::from_code(cookie(headers, LANG_COOKIE).unwrap_or(""));
        let secure = settings.secure_cookies
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/console".to_string(), |p| p.as_str().to_string());
        let mut stale_session = false;
        let (principal, token) = match cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) {
            Some(t) => match state.domain.authenticate(t).await {
                Ok(p) => (Some(p), Some(t.to_string())),
                Err(_) => {
                    stale_session = true;
                    (None, None)
                }
            },
            None => (None, None),
        };
        let (csrf, set_pre_csrf) = match &token {
            Some(t) => (session_csrf(state, t), None),
            None => match cookie(headers, PRE_CSRF_COOKIE).filter(|v| v.len() == 32) {
                Some(v) => (v.to_string(), None),
                None => {
                    let v = hex::encode(enclave::keyring::random_bytes::<16>());
                    (v.clone(), Some(v))
                }
            },
        };
        Ok(Visitor {
            principal,
            token,
            lang,
            csrf,
            set_pre_csrf,
            secure,
            here,
            stale_session,
            client: crate::server::connections::client_ip(&parts.extensions)
                .map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
            state: state.clone(),
        })
    }
}

/// The CSRF token of a session: HMAC of its token under a derived key.
fn session_csrf(state: &AppState, token: &str) -> String {
    let key = state.domain.keyring().derive("console-csrf");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    hex::encode(&ring::hmac::sign(&key, token.as_bytes()).as_ref()[..16])
}

/// A `Set-Cookie` value. `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are plain ASCII")
}

/// One entry of the navigation.
struct NavItem {
    href: &'static str,
    label: &'static str,
}

/// The navigation a role sees. Hiding a link is a convenience only: every
/// page asks the domain, which refuses what the role may not see.
fn nav(role: Option<Role>) -> Vec<NavItem> {
    let mut items = vec![NavItem {
        href: "/console/catalog",
        label: key("nav.catalog"),
    }];
    match role {
        Some(Role::Researcher) => items.push(NavItem {
            href: "/console/grants",
            label: key("nav.grants"),
        }),
        Some(Role::Steward) | Some(Role::Admin) => {
            items.push(NavItem {
                href: "/console/reviews",
                label: key("nav.reviews"),
            });
            if role == Some(Role::Admin) {
                items.push(NavItem {
                    href: "/console/audit",
                    label: key("nav.audit"),
                });
            }
        }
        Some(Role::Auditor) => items.push(NavItem {
            href: "/console/audit",
            label: key("nav.audit"),
        }),
        None => {}
    }
    items
}

impl Visitor {
    pub fn domain(&self) -> &enclave::Domain {
        &self.state.domain
    }

    /// The domain as its job submission takes it.
    pub fn domain_arc(&self) -> &std::sync::Arc<enclave::Domain> {
        &self.state.domain
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Whether a posted form's token is this visitor's.
    pub fn csrf_ok(&self, posted: Option<&str>) -> bool {
        posted.is_some_and(|p| same(p, &self.csrf))
    }

    /// A full page: `template` inside the base layout, titled by `title_key`
    /// (and `title_extra`, e.g. a dataset's name).
    pub fn page(&self, template: &str, title_key: &str, title_extra: &str, ctx: Value) -> Response {
        self.page_with_status(StatusCode::OK, template, title_key, title_extra, ctx)
    }

    pub fn page_with_status(
        &self,
        status: StatusCode,
        template: &str,
        title_key: &str,
        title_extra: &str,
        ctx: Value,
    ) -> Response {
        let lang = self.lang;
        let here = self.here.clone();
        let path = here.split('?').next().unwrap_or("").to_string();
        let nav: Vec<Value> = nav(self.principal.as_ref().map(|p| p.role))
            .into_iter()
            .map(|n| {
                minijinja::context! {
                    href => n.href,
                    label => i18n::tr(lang, n.label),
                    current => path.starts_with(n.href),
                }
            })
            .collect();
        let mut title = i18n::tr(lang, title_key);
        if !title_extra.is_empty() {
            title = format!("{title_extra} · {title}");
        }
        let base = minijinja::context! {
            lang => lang.code(),
            other_lang => lang.other().code(),
            title => title,
            csrf => self.csrf.clone(),
            nav => nav,
            here => here,
            user => self.principal.as_ref().map(|p| minijinja::context! {
                username => p.username.clone(),
                role => p.role.as_str(),
                organisation => p.organisation.clone(),
            }),
        };
        self.html(status, template, merge_maps([base, ctx]))
    }

    /// A fragment or page rendered as is.
    pub fn html(&self, status: StatusCode, template: &str, ctx: Value) -> Response {
        let rendered = templates::environment()
            .get_template(template)
            .and_then(|t| t.render(ctx));
        let mut resp = match rendered {
            Ok(body) => (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response(),
            Err(e) => {
                ApiError::internal(format!("console template {template}: {e:#}")).into_response()
            }
        };
        self.cookies(resp.headers_mut());
        resp
    }

    /// Cookies every answer may need to set.
    pub fn cookies(&self, headers: &mut HeaderMap) {
        if let Some(v) = &self.set_pre_csrf {
            headers.append(
                header::SET_COOKIE,
                set_cookie(PRE_CSRF_COOKIE, v, self.secure, None),
            );
        }
        if self.stale_session {
            headers.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, "", self.secure, Some(0)),
            );
        }
    }

    /// The answer to a domain error: sign-in for an anonymous visitor, else
    /// the error page with the status the API would give.
    pub fn fail(&self, e: enclave::Error) -> Response {
        let code = e.code();
        let retry_after = match &e {
            enclave::Error::TooManyAttempts { retry_after_secs }
            | enclave::Error::Busy { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let status = ApiError::from(e).into_response().status();
        if status == StatusCode::UNAUTHORIZED {
            return self.to_signin();
        }
        self.error_page(status, code, retry_after)
    }

    /// The error page for `status`, explaining `code` in words.
    pub fn error_page(&self, status: StatusCode, code: &str, retry_after: Option<u64>) -> Response {
        let lang = self.lang;
        let explained = if i18n::CODES.contains(&code) {
            i18n::tr(lang, &format!("code.{code}"))
        } else {
            format!("{} ({code})", i18n::tr(lang, "code.other"))
        };
        let heading_key = format!("http.{}", status.as_u16());
        let heading_key = if i18n::catalogue(lang).contains_key(&heading_key) {
            heading_key
        } else {
            "http.500".to_string()
        };
        let mut resp = self.page_with_status(
            status,
            "error.html",
            &heading_key,
            "",
            minijinja::context! {
                heading => i18n::tr(lang, &heading_key),
                detail => explained,
                code => code,
                retry_after => retry_after,
            },
        );
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// The refusal of a form posted without this visitor's token.
    pub fn csrf_refused(&self) -> Response {
        self.error_page(StatusCode::FORBIDDEN, "csrf", None)
    }

    /// To the sign-in page, coming back here afterwards.
    pub fn to_signin(&self) -> Response {
        let next = percent_encode(&self.here);
        let mut resp = Redirect::to(&format!("/console/signin?next={next}")).into_response();
        self.cookies(resp.headers_mut());
        resp
    }
}

/// `s` for a query string value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A local path to return to: only `/console…`, never another origin.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/console/catalog".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_only_to_console_paths() {
        assert_eq!(
            local_path(Some("/console/grants?x=1")),
            "/console/grants?x=1"
        );
        assert_eq!(
            local_path(Some("https://evil.example/")),
            "/console/catalog"
        );
        assert_eq!(
            local_path(Some("//evil.example/console")),
            "/console/catalog"
        );
        assert_eq!(local_path(None), "/console/catalog");
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie(SESSION_COOKIE, "abc", true, None);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(c.contains("Path=/"));
    }
}
