//! ListOffsets (key 2): earliest (-2), latest (-1), or the first offset
//! whose timestamp is at least the one given, through the time index.

use freshet_log::batch;
use freshet_log::{LogError, Partition};
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use super::Request;
use crate::errors;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub(crate) fn handle(request: &Request, body: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for requested in body.topics {
        let name = requested.name.0.to_string();
        let topic = request.broker.topic(&name, false);
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = requested.name;
        for wanted in requested.partitions {
            let mut answer = ListOffsetsPartitionResponse::default();
            answer.partition_index = wanted.partition_index;
            if request.version >= 4 {
                answer.leader_epoch = batch::LEADER_EPOCH;
            }
            let found = topic
                .as_ref()
                .map_err(|_| LogError::UnknownTopic(name.clone()))
                .and_then(|topic| {
                    topic.partition(u32::try_from(wanted.partition_index).unwrap_or(u32::MAX))
                })
                .and_then(|partition| lookup(&partition, wanted.timestamp));
            match found {
                Ok((offset, timestamp)) => {
                    answer.offset = offset;
                    answer.timestamp = timestamp;
                }
                Err(error) => {
                    answer.error_code = errors::code(&error);
                    answer.offset = -1;
                    answer.timestamp = -1;
                }
            }
            topic_response.partitions.push(answer);
        }
        response.topics.push(topic_response);
    }
    response
}

/// (offset, timestamp) for a ListOffsets query on one partition.
fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64), LogError> {
    match timestamp {
        EARLIEST => Ok((partition.log_start_offset(), -1)),
        LATEST => Ok((partition.end_offset(), -1)),
        target => {
            let Some((base_offset, max_timestamp)) = partition.find_by_timestamp(target)? else {
                return Ok((-1, -1));
            };
            // The batch holds the first record at or after `target`; for an
            // uncompressed batch find that record, else answer with the batch.
            let read = partition.read(base_offset, 1)?;
            if let Some((_, bytes)) = batch::split(&read.bytes)
                .ok()
                .and_then(|b| b.into_iter().next())
                && let Ok(records) = batch::decode_uncompressed(bytes)
                && let Some((offset, record)) = records
                    .into_iter()
                    .find(|(_, record)| record.timestamp >= target)
            {
                return Ok((offset, record.timestamp));
            }
            Ok((base_offset, max_timestamp))
        }
    }
}
