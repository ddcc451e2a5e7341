//! One client connection: frames in, requests dispatched in arrival order,
//! responses written in the same order. A reader task decodes each frame
//! and starts its handler at once (so appends happen in arrival order);
//! the writer awaits each handler's response in turn.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::api::{self, Reply};
use crate::broker::Broker;
use crate::{
    IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX, REQUEST_FRAME_BYTES_MAX, RESPONSE_WRITE_STALL_MAX,
};

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
        let mut buffer = BytesMut::new();
        loop {
            let frame = tokio::select! {
                frame = read_frame(&mut reader, &mut buffer) => frame,
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
    match write_replies(&mut writer, &mut queued).await {
        Ok(()) => {}
        Err(Stop::Gone(error)) => tracing::debug!(%peer, %error, "the client went away"),
        Err(Stop::Stalled) => tracing::info!(
            %peer,
            "closing Kafka connection: the client took no response bytes for {} s",
            RESPONSE_WRITE_STALL_MAX.as_secs()
        ),
    }
    reading.abort();
    metrics.connections.dec();
}

/// Why writing responses stopped early.
#[derive(Debug)]
enum Stop {
    /// The client closed or reset the connection.
    Gone(std::io::Error),
    /// The client took nothing for [`RESPONSE_WRITE_STALL_MAX`].
    Stalled,
}

/// Writes each reply's frame as it is ready, in request order, flushing
/// when no more are queued; ends when the reader stops or a write fails.
async fn write_replies<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    queued: &mut mpsc::Receiver<Reply>,
) -> Result<(), Stop> {
    while let Some(mut reply) = queued.recv().await {
        let frame = match (&mut reply).now_or_never() {
            Some(frame) => frame,
            None => {
                // What is written so far goes out while this one waits
                // (a long-poll Fetch, an fsync).
                flush(writer).await?;
                reply.await
            }
        };
        if let Some(frame) = frame {
            // Small pieces gather in the buffer; a piece as large as the
            // buffer (record batches) goes to the socket as it is.
            write_pieces(writer, &frame).await?;
        } // else an acks=0 produce: no response
        if queued.is_empty() {
            flush(writer).await?;
        }
    }
    flush(writer).await
}

async fn flush<W: AsyncWriteExt + Unpin>(writer: &mut W) -> Result<(), Stop> {
    match tokio::time::timeout(RESPONSE_WRITE_STALL_MAX, writer.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Stop::Gone(error)),
        Err(_) => Err(Stop::Stalled),
    }
}

/// Writes a response's pieces in order; fails when the client takes none
/// of a piece for [`RESPONSE_WRITE_STALL_MAX`].
async fn write_pieces<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    frame: &[Bytes],
) -> Result<(), Stop> {
    for piece in frame {
        let mut rest = &piece[..];
        while !rest.is_empty() {
            match tokio::time::timeout(RESPONSE_WRITE_STALL_MAX, writer.write(rest)).await {
                Ok(Ok(0)) => return Err(Stop::Gone(std::io::ErrorKind::WriteZero.into())),
                Ok(Ok(written)) => rest = &rest[written..],
                Ok(Err(error)) => return Err(Stop::Gone(error)),
                Err(_) => return Err(Stop::Stalled),
            }
        }
    }
    Ok(())
}

/// Frames from this size up to [`FRAME_BUFFER_KEPT_BYTES`] are read into
/// a buffer the connection keeps, whose memory the next such frame reuses
/// once this one is dropped. Others get memory of their own: a small
/// request may leave parts of it held (a group member's metadata), which
/// must not hold the buffer; a larger one must not grow it.
const FRAME_BUFFER_MIN_BYTES: usize = 64 << 10;
const FRAME_BUFFER_KEPT_BYTES: usize = 8 << 20;

/// Reads one size-prefixed frame, into `buffer` if it is small enough;
/// `None` at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
) -> Result<Option<Bytes>, String> {
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
    // Read into memory not zeroed first, and used before if it can be
    // (fresh memory is zeroed by the kernel): a produce request is
    // megabytes.
    let size = size as usize;
    let mut own = BytesMut::new();
    let frame = if (FRAME_BUFFER_MIN_BYTES..=FRAME_BUFFER_KEPT_BYTES).contains(&size) {
        buffer
    } else {
        &mut own
    };
    frame.clear();
    frame.reserve(size);
    while frame.len() < size {
        let remaining = size - frame.len();
        let read = reader
            .read_buf(&mut (&mut *frame).limit(remaining))
            .await
            .map_err(|error| format!("truncated frame of {size} bytes: {error}"))?;
        if read == 0 {
            let got = frame.len();
            return Err(format!(
                "truncated frame of {size} bytes: the stream ended after {got}"
            ));
        }
    }
    Ok(Some(frame.split_to(size).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_let_go() {
        // The client end is never read: its 1 KiB buffer fills and stays full.
        let (mut server, _client) = tokio::io::duplex(1024);
        let frame = vec![Bytes::from(vec![1u8; 100]), Bytes::from(vec![2u8; 8192])];
        let started = tokio::time::Instant::now();
        let error = write_pieces(&mut server, &frame).await.unwrap_err();
        assert!(matches!(error, Stop::Stalled), "{error:?}");
        assert_eq!(started.elapsed(), RESPONSE_WRITE_STALL_MAX);
    }

    /// A response must not wait in the buffer for the one after it: a
    /// long poll that has not answered yet, or an acks=0 produce that never
    /// answers.
    #[tokio::test]
    async fn a_ready_response_goes_out_while_the_next_one_waits() {
        let pending: Reply = Box::pin(std::future::pending());
        let silent: Reply = Box::pin(async { None });
        for next in [pending, silent] {
            let (server, mut client) = tokio::io::duplex(1 << 16);
            let mut writer = BufWriter::new(server);
            let (replies, mut queued) = mpsc::channel::<Reply>(4);
            let ready: Reply = Box::pin(async { Some(vec![Bytes::from_static(b"ready")]) });
            replies.send(ready).await.unwrap();
            replies.send(next).await.unwrap();
            let writing = tokio::spawn(async move {
                let _ = write_replies(&mut writer, &mut queued).await;
            });
            let mut got = [0u8; 5];
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                client.read_exact(&mut got),
            )
            .await
            .expect("the ready response was flushed")
            .unwrap();
            assert_eq!(&got, b"ready");
            writing.abort();
            drop(replies);
        }
    }

    #[tokio::test]
    async fn pieces_reach_the_client_in_order() {
        let (mut server, mut client) = tokio::io::duplex(1024);
        let frame = vec![Bytes::from(vec![1u8; 100]), Bytes::from(vec![2u8; 8192])];
        let reading = tokio::spawn(async move {
            let mut got = vec![0u8; 8292];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        write_pieces(&mut server, &frame).await.unwrap();
        let got = reading.await.unwrap();
        assert_eq!(&got[..100], &[1u8; 100][..]);
        assert_eq!(&got[100..], &[2u8; 8192][..]);
    }
}
