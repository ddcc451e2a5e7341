//! Fetch (key 1): whole record batches from each requested partition,
//! long-polling until `min_bytes` are there or `max_wait_ms` passes.
//!
//! The record batches are slices of the log's memory of recent appends or
//! of its mapped segment files, and go into the response frame as pieces
//! of their own (`frame`): to the socket with no copy in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_core::limits;
use freshet_log::{LogError, Partition};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};

use super::{Reply, Request};
use crate::errors;

pub(crate) fn handle(request: Request, body: FetchRequest) -> Reply {
    Box::pin(async move {
        let started = Instant::now();
        let max_wait = Duration::from_millis(u64::try_from(body.max_wait_ms).unwrap_or(0));
        let min_bytes = usize::try_from(body.min_bytes).unwrap_or(0);
        loop {
            let (response, bytes, waitable) = collect(&request, &body);
            let elapsed = started.elapsed();
            if bytes >= min_bytes.max(1) || elapsed >= max_wait || waitable.is_empty() {
                record(&request, &body, &response);
                let records: Vec<Bytes> = response
                    .responses
                    .iter()
                    .flat_map(|topic| &topic.partitions)
                    .filter_map(|data| data.records.clone())
                    .collect();
                return Some(request.respond_sharing(&response, &records));
            }
            // Sleep until any requested partition grows, or the wait ends.
            let remaining = max_wait - elapsed;
            let waits = waitable
                .iter()
                .map(|(partition, offset)| Box::pin(partition.wait_for_data(*offset, remaining)));
            futures_util::future::select_all(waits).await;
        }
    })
}

/// Counts what a fetch delivers and the errors it answers with.
fn record(request: &Request, body: &FetchRequest, response: &FetchResponse) {
    let metrics = &request.broker.metrics;
    for (requested, topic) in body.topics.iter().zip(&response.responses) {
        let (mut records, mut bytes) = (0u64, 0u64);
        for (wanted, data) in requested.partitions.iter().zip(&topic.partitions) {
            metrics.error("Fetch", data.error_code);
            let Some(returned) = data.records.as_ref().filter(|r| !r.is_empty()) else {
                continue;
            };
            bytes += returned.len() as u64;
            if let Some(last) = last_offset(returned) {
                records += u64::try_from(last + 1 - wanted.fetch_offset).unwrap_or(0);
            }
        }
        metrics.fetched(topic.topic.as_str(), records, bytes);
    }
}

/// The last offset in a run of whole record batches (headers only).
fn last_offset(mut batches: &[u8]) -> Option<i64> {
    let mut last = None;
    while let Ok(header) = freshet_log::batch::parse_header(batches) {
        last = Some(header.last_offset());
        batches = batches.get(header.size_bytes as usize..)?;
    }
    last
}

/// Reads every requested partition once. Returns the response, the bytes
/// it holds, and the partitions a long poll may wait on.
fn collect(
    request: &Request,
    body: &FetchRequest,
) -> (FetchResponse, usize, Vec<(Arc<Partition>, i64)>) {
    let broker = &request.broker;
    let max_bytes = usize::try_from(body.max_bytes)
        .unwrap_or(0)
        .clamp(1, limits::FETCH_RESPONSE_BYTES_MAX);
    let mut total = 0usize;
    let mut waitable = Vec::new();
    let mut response = FetchResponse::default();
    for requested in &body.topics {
        let name = requested.topic.0.to_string();
        let topic = broker.topic(&name, false);
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = requested.topic.clone();
        for wanted in &requested.partitions {
            let mut data = PartitionData::default();
            data.partition_index = wanted.partition;
            data.preferred_read_replica = BrokerId(-1);
            data.high_watermark = -1;
            data.last_stable_offset = -1;
            data.log_start_offset = -1;
            data.records = Some(Bytes::new());
            let partition = topic
                .as_ref()
                .map_err(|_| LogError::UnknownTopic(name.clone()))
                .and_then(|topic| {
                    topic.partition(u32::try_from(wanted.partition).unwrap_or(u32::MAX))
                });
            match partition {
                Ok(partition) => {
                    let budget = (max_bytes.saturating_sub(total))
                        .min(usize::try_from(wanted.partition_max_bytes).unwrap_or(0));
                    data.high_watermark = partition.end_offset();
                    data.last_stable_offset = data.high_watermark;
                    data.log_start_offset = partition.log_start_offset();
                    if budget == 0 {
                        // The response is full; this partition waits for the next fetch.
                    } else {
                        match partition.read(wanted.fetch_offset, budget) {
                            Ok(read) => {
                                data.high_watermark = read.end_offset;
                                data.last_stable_offset = read.end_offset;
                                data.log_start_offset = read.log_start_offset;
                                total += read.bytes.len();
                                if read.bytes.is_empty() {
                                    waitable.push((Arc::clone(&partition), wanted.fetch_offset));
                                }
                                data.records = Some(read.bytes);
                            }
                            Err(error) => {
                                if !matches!(error, LogError::OffsetOutOfRange { .. }) {
                                    tracing::warn!(topic = %name, partition = wanted.partition, %error, "fetch failed");
                                }
                                data.error_code = errors::code(&error);
                            }
                        }
                    }
                }
                Err(error) => data.error_code = errors::code(&error),
            }
            topic_response.partitions.push(data);
        }
        response.responses.push(topic_response);
    }
    (response, total, waitable)
}
