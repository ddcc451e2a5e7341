//! One client connection: frames in, requests dispatched in arrival order,
//! responses written in the same order. A reader task decodes each frame
//! and starts its handler at once (so appends happen in arrival order);
//! the writer awaits each handler's response in turn.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::api::{self, Reply};
use crate::broker::Broker;
use crate::{IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX, REQUEST_FRAME_BYTES_MAX};

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
) {
    let metrics = Arc::clone(&broker.metrics);
    metrics.connections.inc();
    let (reader, writer) = stream.into_split();
    let (replies, mut queued) = mpsc::channel::<Reply>(IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX);
    let reading = tokio::spawn(async move {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        loop {
            let frame = tokio::select! {
                frame = read_frame(&mut reader) => frame,
                _ = stopped.changed() => return,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(reason) => {
                    tracing::info!(%peer, %reason, "closing Kafka connection");
                    broker.metrics.connections_closed_bad_input.inc();
                    return;
                }
            };
            match api::dispatch(&broker, frame, peer) {
                Ok(reply) => {
                    if replies.send(reply).await.is_err() {
                        return;
                    }
                }
                Err(reason) => {
                    tracing::info!(%peer, %reason, "closing Kafka connection after a request it cannot serve");
                    broker.metrics.connections_closed_bad_input.inc();
                    return;
                }
            }
        }
    });
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(reply) = queued.recv().await {
        let Some(frame) = reply.await else {
            continue; // acks=0 produce: no response
        };
        // Small pieces gather in the buffer; a piece as large as the
        // buffer (record batches) goes to the socket as it is.
        let mut failed = false;
        for piece in &frame {
            if writer.write_all(piece).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
        if queued.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.flush().await;
    reading.abort();
    metrics.connections.dec();
}

/// Reads one size-prefixed frame; `None` at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R) -> Result<Option<Bytes>, String> {
    let size = match reader.read_i32().await {
        Ok(size) => size,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(format!("read failed: {error}")),
    };
    // A request header is at least key, version and correlation id.
    if size < 8 || size as usize > REQUEST_FRAME_BYTES_MAX {
        return Err(format!(
            "frame of {size} bytes is outside 8..={REQUEST_FRAME_BYTES_MAX}"
        ));
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|error| format!("truncated frame of {size} bytes: {error}"))?;
    Ok(Some(frame.freeze()))
}
