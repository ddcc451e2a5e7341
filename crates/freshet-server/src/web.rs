//! The web UI, compiled into the binary so that it works offline and
//! needs no separate deployment. The files are plain ES modules and CSS
//! under `web/`, small enough that a table of `include_bytes!` is all
//! the embedding needed (no build step, no embedding crate).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Every file of the UI: path under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/api.js"),
    ),
    (
        "chart.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/chart.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/pages.js"),
    ),
    (
        "tiles.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/tiles.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../web/favicon.svg"),
    ),
];

const OPENAPI: &[u8] = include_bytes!("../web/openapi.json");

fn file(name: &str) -> Option<Response> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(path, _, _)| *path == name)?;
    Some(
        (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
    )
}

pub(super) async fn index() -> Response {
    file("index.html").expect("index.html is embedded")
}

pub(super) async fn asset(Path(name): Path<String>) -> Response {
    file(&name).unwrap_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {
                "code": "not_found",
                "message": format!("the UI has no file '{name}'"),
            }})),
        )
            .into_response()
    })
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_web_is_embedded() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for entry in std::fs::read_dir(folder).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name == "openapi.json" {
                continue;
            }
            assert!(
                ASSETS.iter().any(|(path, _, _)| *path == name),
                "web/{name} is not in ASSETS"
            );
        }
    }

    #[test]
    fn the_openapi_document_is_json_and_names_every_api_route() {
        let document: serde_json::Value = serde_json::from_slice(OPENAPI).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let router = include_str!("http.rs");
        for line in router
            .lines()
            .filter(|line| line.contains(".route(\"/api/v1"))
        {
            let path = line.split('"').nth(1).unwrap();
            assert!(
                paths.contains_key(path),
                "{path} is missing from openapi.json"
            );
        }
        for extra in ["/healthz", "/metrics"] {
            assert!(
                paths.contains_key(extra),
                "{extra} is missing from openapi.json"
            );
        }
    }
}
