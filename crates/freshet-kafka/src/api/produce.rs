//! Produce (key 0): validate and append each partition's record batches,
//! then answer at once (acks=1), after the fsync that covers them
//! (acks=all), or not at all (acks=0).

use std::sync::Arc;
use std::time::Duration;

use freshet_log::{LogError, Partition};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, Request};
use crate::errors;

/// Runs an append, which waits for the device (segments are written
/// straight to it), letting the runtime move this worker's other tasks to
/// another thread meanwhile, where the runtime has more than one.
fn blocking<T>(append: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(append),
        _ => append(),
    }
}

/// The longest an `acks=1` reply waits for its batches to be in the file
/// before it says REQUEST_TIMED_OUT: only a failing device takes this long.
const WRITTEN_WAIT_MAX: Duration = Duration::from_secs(30);

pub(crate) fn handle(request: Request, body: ProduceRequest) -> Reply {
    let broker = Arc::clone(&request.broker);
    let acks = body.acks;
    let version = request.version;
    let mut response = ProduceResponse::default();
    // (topic index, partition index, partition, the offset to wait for:
    // durable with acks=all, in the file with acks=1)
    let mut waits: Vec<(usize, usize, Arc<Partition>, i64)> = Vec::new();
    for (topic_index, topic_data) in body.topic_data.into_iter().enumerate() {
        let name = topic_data.name.0.to_string();
        let topic = broker.topic(&name, true);
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic_data.name;
        for (partition_index, data) in topic_data.partition_data.into_iter().enumerate() {
            let mut partition_response = PartitionProduceResponse::default();
            partition_response.index = data.index;
            partition_response.base_offset = -1;
            partition_response.log_append_time_ms = -1;
            partition_response.log_start_offset = -1;
            let appended = (|| {
                let topic = topic
                    .as_ref()
                    .map_err(|error| LogError::UnknownTopic(format!("{name}: {error}")))?;
                let id = u32::try_from(data.index).map_err(|_| LogError::UnknownPartition {
                    topic: name.clone(),
                    partition: u32::MAX,
                })?;
                let partition = topic.partition(id)?;
                let records = data.records.as_deref().unwrap_or_default();
                let info = blocking(|| partition.append(records))?;
                Ok::<_, LogError>((partition, info))
            })();
            match appended {
                Ok((partition, info)) => {
                    if !info.duplicate {
                        let bytes = data.records.as_ref().map_or(0, |r| r.len() as u64);
                        broker.metrics.produced(
                            &name,
                            (info.last_offset - info.base_offset + 1) as u64,
                            bytes,
                        );
                    }
                    partition_response.base_offset = info.base_offset;
                    partition_response.log_start_offset = info.log_start_offset;
                    if acks != 0 {
                        waits.push((
                            topic_index,
                            partition_index,
                            partition,
                            info.last_offset + 1,
                        ));
                    }
                }
                Err(error) => {
                    tracing::debug!(topic = %name, partition = data.index, %error, "produce rejected");
                    partition_response.error_code = errors::code(&error);
                    broker
                        .metrics
                        .error("Produce", partition_response.error_code);
                    if version >= 8 {
                        partition_response.error_message =
                            Some(StrBytes::from_string(error.to_string()));
                    }
                }
            }
            topic_response.partition_responses.push(partition_response);
        }
        response.responses.push(topic_response);
    }
    if acks == 0 {
        return Box::pin(async { None });
    }
    let timeout = Duration::from_millis(u64::try_from(body.timeout_ms).unwrap_or(0).max(1));
    // The request's timeout is for acks=all, as in Kafka; acks=1 waits for
    // the writer thread only, which a timeout as short as a client may set
    // would turn into needless retries. One deadline for the whole request.
    let limit = if acks == -1 {
        timeout
    } else {
        timeout.max(WRITTEN_WAIT_MAX)
    };
    let deadline = tokio::time::Instant::now() + limit;
    Box::pin(async move {
        for (topic_index, partition_index, partition, offset) in waits {
            // acks=all: on stable storage; acks=1: in the file, which a
            // kill of the process keeps (with direct writes an append
            // reaches it from memory an instant later).
            let written = async {
                if acks == -1 {
                    partition.wait_durable(offset).await
                } else {
                    partition.wait_written(offset).await
                }
            };
            let outcome = tokio::time::timeout_at(deadline, written).await;
            let code = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => errors::code(&error),
                Err(_) => ResponseError::RequestTimedOut.code(),
            };
            response.responses[topic_index].partition_responses[partition_index].error_code = code;
            request.broker.metrics.error("Produce", code);
        }
        Some(request.respond(&response))
    })
}
