//! Static files embedded in the binary, served under content-hashed names
//! (`style.3fa1c2d4e5.css`) with a year-long immutable cache lifetime, and
//! referenced with a Subresource Integrity hash.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// Where the console serves its assets.
pub const PREFIX: &str = "/console/assets/";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// `stem.<hash>.ext`.
    hashed: String,
    integrity: String,
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/htmx.min.js"),
    ),
];

fn all() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, content_type, bytes)| {
                let sha256 = ring::digest::digest(&ring::digest::SHA256, bytes);
                let short = &hex::encode(sha256.as_ref())[..10];
                let (stem, ext) = name.split_once('.').expect("asset names have an extension");
                Asset {
                    name,
                    content_type,
                    bytes,
                    hashed: format!("{stem}.{short}.{ext}"),
                    integrity: format!(
                        "sha256-{}",
                        base64::engine::general_purpose::STANDARD.encode(sha256.as_ref())
                    ),
                }
            })
            .collect()
    })
}

fn find(name: &str) -> Option<&'static Asset> {
    all().iter().find(|a| a.name == name)
}

/// The URL of `name` (its content-hashed name).
pub fn url(name: &str) -> String {
    find(name).map_or_else(String::new, |a| format!("{PREFIX}{}", a.hashed))
}

/// The SRI value of `name`.
pub fn integrity(name: &str) -> String {
    find(name).map_or_else(String::new, |a| a.integrity.clone())
}

/// `GET /console/assets/{file}`: only the current hashed names exist.
pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(a) = all().iter().find(|a| a.hashed == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        a.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        let u = url("style.css");
        assert!(
            u.starts_with("/console/assets/style.") && u.ends_with(".css"),
            "{u}"
        );
        assert!(integrity("htmx.min.js").starts_with("sha256-"));
        assert_eq!(url("missing.js"), "");
    }
}
