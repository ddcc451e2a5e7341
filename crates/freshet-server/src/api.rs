//! `/api/v1`: the JSON API the CLI, the dashboard and users call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use freshet_log::LogError;
use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_store::{QueryError, encode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;

/// Largest request body: a query or a batch of events.
pub(super) const MAX_BODY_BYTES: usize = 16 << 20;

/// A JSON error with its status.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": {"code": code, "message": message.into()}}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        let status = match error.code {
            "timeout" => StatusCode::GATEWAY_TIMEOUT,
            "resources" => StatusCode::INSUFFICIENT_STORAGE,
            "forbidden" => StatusCode::FORBIDDEN,
            "execution" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            body: json!({"error": error}),
        }
    }
}

/// Any path nothing answers.
pub(super) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "nothing at {}; the API is described at /api/v1/openapi.json",
            uri.path()
        ),
    )
}

/// A path that exists, asked with the wrong method.
pub(super) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not answer {method}; see /api/v1/openapi.json",
            uri.path()
        ),
    )
}

/// `GET /api/v1/dashboards`: the `[[dashboard]]`s of the config, tiles and all.
pub(super) async fn dashboards(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "dashboards": *state.dashboards }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QueryRequest {
    sql: Option<String>,
    kql: Option<String>,
}

/// `POST /api/v1/query` with `{"sql": …}` or `{"kql": …}`: JSON by default, CSV for
/// `Accept: text/csv`, an Arrow IPC stream for
/// `Accept: application/vnd.apache.arrow.stream`.
pub(super) async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body must be {{\"sql\": \"…\"}} or {{\"kql\": \"…\"}}: {e}"),
        )
    })?;
    let result = match (request.sql, request.kql) {
        (Some(sql), None) if !sql.trim().is_empty() => state.store.query(&sql).await?,
        (None, Some(kql)) if !kql.trim().is_empty() => state.store.query_kql(&kql).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be {\"sql\": \"…\"} or {\"kql\": \"…\"}, one of them, with a query",
            ));
        }
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let elapsed = format!("{:.3}", result.elapsed.as_secs_f64() * 1000.0);
    let common = [
        ("x-freshet-elapsed-ms", elapsed),
        ("x-freshet-truncated", result.truncated.to_string()),
        // KQL's `render`: how to draw the rows (`table` unless asked).
        (
            "x-freshet-render",
            result
                .render
                .as_ref()
                .map_or("table".to_string(), |r| r.kind.clone()),
        ),
    ];
    if accept.contains("application/vnd.apache.arrow.stream") {
        let body = tokio::task::spawn_blocking(move || encode::to_arrow_ipc(&result))
            .await
            .map_err(internal)?;
        return Ok((
            [(
                header::CONTENT_TYPE.as_str(),
                "application/vnd.apache.arrow.stream".to_string(),
            )],
            common,
            body,
        )
            .into_response());
    }
    if accept.contains("text/csv") {
        let body = tokio::task::spawn_blocking(move || encode::to_csv(&result))
            .await
            .map_err(internal)?;
        return Ok((
            [(
                header::CONTENT_TYPE.as_str(),
                "text/csv; charset=utf-8".to_string(),
            )],
            common,
            body,
        )
            .into_response());
    }
    let body = tokio::task::spawn_blocking(move || encode::to_json(&result))
        .await
        .map_err(internal)?;
    Ok((common, Json(body)).into_response())
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        error.to_string(),
    )
}

/// `GET /api/v1/views`: every materialized view with the sizes of its
/// materialized part and delta.
pub(super) async fn views(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "views": state.store.views() }))
}

/// `GET /api/v1/tables`: every table with its rows, sizes and policies.
pub(super) async fn tables(State(state): State<AppState>) -> Json<Value> {
    let tables: Vec<_> = state.store.tables().iter().map(|t| t.info()).collect();
    Json(json!({ "tables": tables }))
}

/// `GET /api/v1/topics`: topics with partitions, offsets and settings.
pub(super) async fn topics(State(state): State<AppState>) -> Json<Value> {
    let topics: Vec<Value> = state
        .log
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .map(|topic| {
            let partitions: Vec<Value> = topic
                .partitions()
                .iter()
                .map(|p| json!({"partition": p.id(), "start_offset": p.log_start_offset(), "end_offset": p.end_offset(), "bytes": p.size_bytes()}))
                .collect();
            let config = topic.config();
            json!({
                "name": topic.name(),
                "partitions": partitions,
                "retention_ms": config.retention_ms,
                "retention_bytes": config.retention_bytes,
            })
        })
        .collect();
    Json(json!({ "topics": topics }))
}

/// `GET /api/v1/jobs`: every job with its inputs, outputs, time policy,
/// progress and state.
pub(super) async fn jobs(State(state): State<AppState>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let jobs: Vec<Value> = state
        .jobs
        .iter()
        .map(|job| {
            let stats = &job.stats;
            let watermark = stats.watermark_micros.load(Relaxed);
            let error = stats.error.lock().expect("error lock").clone();
            let outputs: Vec<Value> = job
                .outputs
                .iter()
                .map(|output| json!({
                    "name": output.name,
                    "topic": output.topic,
                    "stream": format!("/api/v1/outputs/{}/stream", output.name),
                }))
                .collect();
            let inputs: Vec<Value> = job.spec.inputs.iter().map(|(name, topic)| json!({"name": name, "topic": topic})).collect();
            let policy = &job.spec.policy;
            json!({
                "name": job.spec.name,
                "state": if error.is_some() { "failing" } else if stats.running.load(Relaxed) { "running" } else { "stopped" },
                "error": error,
                "inputs": inputs,
                "references": job.spec.references.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                "outputs": outputs,
                "time_policy": {
                    "late_arrival_ms": policy.late_arrival_tolerance_micros / 1_000,
                    "out_of_order_ms": policy.out_of_order_tolerance_micros / 1_000,
                    "on_late": match policy.on_late { freshet_stream::engine::LatePolicy::Adjust => "adjust", freshet_stream::engine::LatePolicy::Drop => "drop" },
                },
                "watermark": (watermark > i64::MIN && watermark < i64::MAX).then(|| freshet_stream::time::format_datetime(watermark)),
                "input_events": stats.input_events.load(Relaxed),
                "output_rows": stats.output_rows.load(Relaxed),
                "late_adjusted": stats.late_adjusted.load(Relaxed),
                "late_dropped": stats.late_dropped.load(Relaxed),
                "invalid_events": stats.invalid_events.load(Relaxed),
                "state_rows": stats.state_rows.load(Relaxed),
                "checkpoints": stats.checkpoints.load(Relaxed),
            })
        })
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// `GET /api/v1/outputs/{output}/stream`: a job output's rows as
/// server-sent events (`event: row`, data = the row as JSON), starting
/// with the most recent rows.
pub(super) async fn output_stream(
    State(state): State<AppState>,
    Path(output): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Some(stream) = state.jobs.iter().find_map(|job| job.output(&output)) else {
        let known: Vec<&str> = state
            .jobs
            .iter()
            .flat_map(|job| job.outputs.iter().map(|output| output.name.as_str()))
            .collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_output",
            format!(
                "no job writes an output named '{output}'; outputs: {}",
                known.join(", ")
            ),
        ));
    };
    let (recent, receiver) = stream.subscribe();
    let recent =
        futures_util::stream::iter(recent.into_iter().map(|row| {
            Ok::<_, std::convert::Infallible>(Event::default().event("row").data(&*row))
        }));
    let live = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(row) => Event::default().event("row").data(&*row),
            // A slow reader skips what it missed and says so.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                Event::default().event("lagged").data(missed.to_string())
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(recent.chain(live))
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct ProduceParams {
    /// A field of each event whose value is the record key (and picks the partition).
    key: Option<String>,
}

static NEXT_PARTITION: AtomicU32 = AtomicU32::new(0);

/// `POST /api/v1/topics/{topic}/events`: one JSON event, a JSON array of
/// events, or JSON lines. Answers once the events are durable (as acks=all).
pub(super) async fn produce(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    Query(params): Query<ProduceParams>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let events = parse_events(&body)?;
    if events.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "no events in the body",
        ));
    }
    let log_topic = match state.log.topic(&topic) {
        Ok(t) => t,
        Err(LogError::UnknownTopic(_)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_topic",
                format!("no topic named '{topic}'"),
            ));
        }
        Err(error) => return Err(internal(error)),
    };
    let partitions = log_topic.config().partitions.max(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for (at, event) in events.into_iter().enumerate() {
        let key = match &params.key {
            None => None,
            Some(field) => Some(key_of(&event, field).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("event {at} has no field '{field}' for the key"),
                )
            })?),
        };
        let partition = match &key {
            Some(key) => kafka_partition(key, partitions),
            None => NEXT_PARTITION.fetch_add(1, Ordering::Relaxed) % partitions,
        };
        let value = serde_json::to_vec(&event).expect("JSON values serialize");
        by_partition.entry(partition).or_default().push(Record {
            timestamp: now,
            key,
            value: Some(value),
            headers: Vec::new(),
        });
    }
    let max_bytes = log_topic.config().max_message_bytes as usize;
    let mut written = Vec::new();
    let mut count = 0;
    for (partition, records) in by_partition {
        let log_partition = log_topic.partition(partition).map_err(internal)?;
        let mut last = -1;
        for chunk in chunks_under(&records, max_bytes) {
            let encoded = batch::encode(chunk, ProducerStamp::none());
            if encoded.len() > max_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "message_too_large",
                    format!("an event is larger than the topic's max.message.bytes ({max_bytes})"),
                ));
            }
            let info = log_partition.append(encoded).map_err(internal)?;
            last = info.last_offset;
            count += chunk.len();
        }
        log_partition
            .wait_durable(last + 1)
            .await
            .map_err(internal)?;
        written.push(json!({"partition": partition, "last_offset": last}));
    }
    Ok(Json(
        json!({"topic": topic, "count": count, "partitions": written}),
    ))
}

/// A JSON value, an array of them, or JSON lines.
fn parse_events(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!(
                "the body is not JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    };
    let mut values = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        match value.map_err(bad)? {
            Value::Array(items) => values.extend(items),
            other => values.push(other),
        }
    }
    Ok(values)
}

fn key_of(event: &Value, field: &str) -> Option<Vec<u8>> {
    let value = field.split('.').try_fold(event, |v, part| v.get(part))?;
    Some(match value {
        Value::String(s) => s.clone().into_bytes(),
        Value::Null => return None,
        other => other.to_string().into_bytes(),
    })
}

/// Splits records so each encoded batch stays under `max_bytes` (roughly).
fn chunks_under(records: &[Record], max_bytes: usize) -> Vec<&[Record]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut size = 100;
    for (at, record) in records.iter().enumerate() {
        let record_size = record.value.as_ref().map_or(0, Vec::len)
            + record.key.as_ref().map_or(0, Vec::len)
            + 32;
        if at > start && size + record_size > max_bytes {
            chunks.push(&records[start..at]);
            start = at;
            size = 100;
        }
        size += record_size;
    }
    chunks.push(&records[start..]);
    chunks
}

/// The partition Kafka's default partitioner picks for `key`
/// (murmur2, positive, modulo), so HTTP and Kafka producers agree.
fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's murmur2 (seed 0x9747b28c), as its Java client computes it.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's own partitioner tests (Utils.murmur2).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn events_come_as_one_an_array_or_lines() {
        assert_eq!(parse_events(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(parse_events(br#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert_eq!(
            parse_events(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n")
                .unwrap()
                .len(),
            3
        );
        assert!(parse_events(b"{\"a\":").is_err());
    }
}
