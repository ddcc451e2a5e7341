//! Freshet's Kafka wire protocol front end: unmodified Kafka clients
//! produce, fetch, run consumer groups and administer topics against the
//! log. The codec is the `kafka-protocol` crate; this crate owns the
//! listener, one module per API, and the mapping of log errors to Kafka
//! error codes.

mod api;
mod broker;
mod connection;
mod errors;
pub mod groups;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::api::{Body, Decoded, decode_request};
pub use crate::broker::{Broker, BrokerSettings};
pub use crate::metrics::KafkaMetrics;

/// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
pub const REQUEST_FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Requests read ahead of their responses on one connection.
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 32;
/// How long a response may wait for the client to take any of it
/// (Kafka's `connections.max.idle.ms` default): a client that stops reading
/// would otherwise hold its queued responses, and the log bytes they share,
/// for as long as its connection lives.
pub const RESPONSE_WRITE_STALL_MAX: std::time::Duration = std::time::Duration::from_secs(600);
/// Open client connections; more are refused.
pub const CONNECTIONS_MAX: usize = 4096;

/// Binds the Kafka listener; returns the bound address and the accept task.
pub async fn listen(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen for Kafka clients on {address}: {error}"))
}

/// Accepts connections until `stopped` turns true.
pub fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let connections = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a Kafka connection failed");
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                tracing::warn!(%peer, limit = CONNECTIONS_MAX, "refusing a Kafka connection: too many open");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let broker = Arc::clone(&broker);
            let stopped = stopped.clone();
            tokio::spawn(async move {
                connection::run(stream, peer, broker, stopped).await;
                drop(permit);
            });
        }
    })
}

/// The bound address of a listener, for advertising.
pub fn local_address(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    Ok(listener.local_addr()?)
}
