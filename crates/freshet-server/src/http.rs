//! The HTTP listener: `/healthz` now; the API, dashboard and `/metrics`
//! grow here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use freshet_log::Log;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub(crate) async fn serve(
    address: SocketAddr,
    log: Arc<Log>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen for HTTP on {address}: {error}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new().route("/healthz", get(healthz)).with_state(log);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "HTTP listener failed");
        }
    });
    Ok((bound, task))
}

async fn healthz(State(log): State<Arc<Log>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "topics": log.topics().len() }))
}
