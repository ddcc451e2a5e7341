//! The HTTP listener: the web UI at `/`, `/healthz`, `/metrics` and the
//! JSON API under `/api/v1` (described by `/api/v1/openapi.json`). Errors
//! are `{"error": {"code", "message"}}` with a fitting status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use freshet_log::Log;
use freshet_store::Store;

#[path = "api.rs"]
mod api;
#[path = "web.rs"]
mod web;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone)]
pub(crate) struct AppState {
    pub log: Arc<Log>,
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
    pub jobs: Vec<Arc<crate::jobs::JobRuntime>>,
    pub dashboards: Arc<Vec<crate::config::DashboardSpec>>,
}

pub(crate) async fn serve(
    address: SocketAddr,
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen for HTTP on {address}: {error}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/query", post(api::query))
        .route("/api/v1/tables", get(api::tables))
        .route("/api/v1/views", get(api::views))
        .route("/api/v1/topics", get(api::topics))
        .route("/api/v1/topics/{topic}/events", post(api::produce))
        .route("/api/v1/jobs", get(api::jobs))
        .route("/api/v1/outputs/{output}/stream", get(api::output_stream))
        .route("/api/v1/dashboards", get(api::dashboards))
        .route("/api/v1/openapi.json", get(web::openapi))
        .route("/", get(web::index))
        .route("/ui/{*file}", get(web::asset))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .with_state(state);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "HTTP listener failed");
        }
    });
    Ok((bound, task))
}

async fn healthz(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "topics": state.log.topics().len() }))
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the
/// Prometheus text format.
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        let text = crate::metrics::render(&state.registry);
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
    } else {
        let text = crate::metrics::render_prometheus(&state.registry);
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
    }
}
