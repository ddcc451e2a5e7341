//! Request dispatch: the supported API versions, header handling, and one
//! module per API.

mod admin;
mod api_versions;
mod fetch;
mod frame;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::broker::Broker;
pub(crate) use frame::Frame;

/// A response to come: `None` when the request gets none (acks=0 produce).
pub(crate) type Reply = Pin<Box<dyn Future<Output = Option<Frame>> + Send>>;

/// The APIs and versions this broker serves. Clients use min(their max, ours).
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 8),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 5),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 4),
    (ApiKey::DeleteTopics, 1, 4),
    (ApiKey::DescribeConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 1),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 2),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 3),
    (ApiKey::Heartbeat, 0, 3),
    (ApiKey::LeaveGroup, 0, 1),
    (ApiKey::OffsetCommit, 2, 7),
    (ApiKey::OffsetFetch, 1, 5),
    (ApiKey::DescribeGroups, 0, 4),
    (ApiKey::ListGroups, 0, 2),
    (ApiKey::DeleteGroups, 0, 1),
];

pub(crate) fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// What a handler knows about the request it serves.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub broker: Arc<Broker>,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    /// The client's address, as Kafka's tools show it ("/127.0.0.1").
    pub client_host: String,
}

impl Request {
    /// Encodes a response frame: size, header (version per API), body.
    pub fn respond<R: Encodable + HeaderVersion>(&self, body: &R) -> Frame {
        self.respond_sharing(body, &[])
    }

    /// Encodes a response frame whose body holds `shared` (record batches
    /// read from the log, in the order the body holds them) as they are,
    /// without copying them into it.
    pub fn respond_sharing<R: Encodable + HeaderVersion>(
        &self,
        body: &R,
        shared: &[Bytes],
    ) -> Frame {
        frame::encode(
            self.correlation_id,
            R::header_version(self.version),
            self.version,
            body,
            shared,
        )
        .unwrap_or_else(|error| {
            panic!(
                "{} v{} response does not encode: {error}",
                std::any::type_name::<R>(),
                self.version
            )
        })
    }
}

pub(crate) fn ready(frame: Frame) -> Reply {
    Box::pin(async move { Some(frame) })
}

fn decode<T: Decodable>(frame: &mut Bytes, api_key: ApiKey, version: i16) -> Result<T, String> {
    T::decode(frame, version)
        .map_err(|error| format!("malformed {api_key:?} v{version} request: {error}"))
}

/// A request decoded from its frame, before anything is done with it.
/// Built once per request and moved once into its handler, so the size of
/// the `Request` variant costs nothing worth a box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    /// ApiVersions at a version we do not know: answered with error 35.
    UnsupportedApiVersions { correlation_id: i32 },
    Request {
        header: RequestHeader,
        version: i16,
        body: Body,
    },
}

/// The body of each API this broker serves.
#[derive(Debug)]
pub enum Body {
    ApiVersions,
    Metadata(kafka_protocol::messages::MetadataRequest),
    Produce(kafka_protocol::messages::ProduceRequest),
    Fetch(kafka_protocol::messages::FetchRequest),
    ListOffsets(kafka_protocol::messages::ListOffsetsRequest),
    CreateTopics(kafka_protocol::messages::CreateTopicsRequest),
    DeleteTopics(kafka_protocol::messages::DeleteTopicsRequest),
    CreatePartitions(kafka_protocol::messages::CreatePartitionsRequest),
    DescribeConfigs(kafka_protocol::messages::DescribeConfigsRequest),
    InitProducerId(kafka_protocol::messages::InitProducerIdRequest),
    FindCoordinator(kafka_protocol::messages::FindCoordinatorRequest),
    JoinGroup(kafka_protocol::messages::JoinGroupRequest),
    SyncGroup(kafka_protocol::messages::SyncGroupRequest),
    Heartbeat(kafka_protocol::messages::HeartbeatRequest),
    LeaveGroup(kafka_protocol::messages::LeaveGroupRequest),
    OffsetCommit(kafka_protocol::messages::OffsetCommitRequest),
    OffsetFetch(kafka_protocol::messages::OffsetFetchRequest),
    DescribeGroups(kafka_protocol::messages::DescribeGroupsRequest),
    ListGroups(kafka_protocol::messages::ListGroupsRequest),
    DeleteGroups(kafka_protocol::messages::DeleteGroupsRequest),
}

/// Decodes one request frame (without its size prefix). Pure: no IO, no
/// state. An `Err` means the connection must close: the frame is garbage,
/// or asks for an API or version this broker does not serve (Kafka's
/// behaviour; only ApiVersions answers an unknown version).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!(
            "frame of {} bytes is too short for a request header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let Some((min, max)) = supported(api_key) else {
        return Err(format!("{api_key:?} (key {key}) is not supported"));
    };
    if !(min..=max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(format!(
            "{api_key:?} v{version} is not supported (supported: v{min}..=v{max})"
        ));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|error| format!("malformed {api_key:?} v{version} request header: {error}"))?;
    let frame = &mut frame;
    let body = match api_key {
        ApiKey::ApiVersions => Body::ApiVersions,
        ApiKey::Metadata => Body::Metadata(decode(frame, api_key, version)?),
        ApiKey::Produce => Body::Produce(decode(frame, api_key, version)?),
        ApiKey::Fetch => Body::Fetch(decode(frame, api_key, version)?),
        ApiKey::ListOffsets => Body::ListOffsets(decode(frame, api_key, version)?),
        ApiKey::CreateTopics => Body::CreateTopics(decode(frame, api_key, version)?),
        ApiKey::DeleteTopics => Body::DeleteTopics(decode(frame, api_key, version)?),
        ApiKey::CreatePartitions => Body::CreatePartitions(decode(frame, api_key, version)?),
        ApiKey::DescribeConfigs => Body::DescribeConfigs(decode(frame, api_key, version)?),
        ApiKey::InitProducerId => Body::InitProducerId(decode(frame, api_key, version)?),
        ApiKey::FindCoordinator => Body::FindCoordinator(decode(frame, api_key, version)?),
        ApiKey::JoinGroup => Body::JoinGroup(decode(frame, api_key, version)?),
        ApiKey::SyncGroup => Body::SyncGroup(decode(frame, api_key, version)?),
        ApiKey::Heartbeat => Body::Heartbeat(decode(frame, api_key, version)?),
        ApiKey::LeaveGroup => Body::LeaveGroup(decode(frame, api_key, version)?),
        ApiKey::OffsetCommit => Body::OffsetCommit(decode(frame, api_key, version)?),
        ApiKey::OffsetFetch => Body::OffsetFetch(decode(frame, api_key, version)?),
        ApiKey::DescribeGroups => Body::DescribeGroups(decode(frame, api_key, version)?),
        ApiKey::ListGroups => Body::ListGroups(decode(frame, api_key, version)?),
        ApiKey::DeleteGroups => Body::DeleteGroups(decode(frame, api_key, version)?),
        other => {
            return Err(format!(
                "{other:?} is listed as supported but has no decoder"
            ));
        }
    };
    Ok(Decoded::Request {
        header,
        version,
        body,
    })
}

/// Decodes one request frame and starts its handler. Handlers run their
/// synchronous part (appends) now, in arrival order; the reply resolves
/// when the response is ready.
pub(crate) fn dispatch(
    broker: &Arc<Broker>,
    frame: Bytes,
    peer: std::net::SocketAddr,
) -> Result<Reply, String> {
    let (header, version, body) = match decode_request(frame)? {
        Decoded::UnsupportedApiVersions { correlation_id } => {
            return Ok(ready(api_versions::unsupported_version(correlation_id)));
        }
        Decoded::Request {
            header,
            version,
            body,
        } => (header, version, body),
    };
    let api = api_name(&body);
    let started = std::time::Instant::now();
    let request = Request {
        broker: Arc::clone(broker),
        version,
        correlation_id: header.correlation_id,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    };
    let reply = match body {
        Body::ApiVersions => ready(request.respond(&api_versions::handle())),
        Body::Metadata(body) => ready(request.respond(&metadata::handle(&request, body))),
        Body::Produce(body) => produce::handle(request, body),
        Body::Fetch(body) => fetch::handle(request, body),
        Body::ListOffsets(body) => ready(request.respond(&list_offsets::handle(&request, body))),
        Body::CreateTopics(body) => ready(request.respond(&admin::create_topics(&request, body))),
        Body::DeleteTopics(body) => ready(request.respond(&admin::delete_topics(&request, body))),
        Body::CreatePartitions(body) => {
            ready(request.respond(&admin::create_partitions(&request, body)))
        }
        Body::DescribeConfigs(body) => {
            ready(request.respond(&admin::describe_configs(&request, body)))
        }
        Body::InitProducerId(body) => {
            ready(request.respond(&init_producer_id::handle(&request, body)))
        }
        Body::FindCoordinator(body) => {
            ready(request.respond(&groups::find_coordinator(&request, body)))
        }
        Body::JoinGroup(body) => groups::join_group(request, body),
        Body::SyncGroup(body) => groups::sync_group(request, body),
        Body::Heartbeat(body) => ready(request.respond(&groups::heartbeat(&request, body))),
        Body::LeaveGroup(body) => ready(request.respond(&groups::leave_group(&request, body))),
        Body::OffsetCommit(body) => groups::offset_commit(request, body),
        Body::OffsetFetch(body) => ready(request.respond(&groups::offset_fetch(&request, body))),
        Body::DescribeGroups(body) => {
            ready(request.respond(&groups::describe_groups(&request, body)))
        }
        Body::ListGroups(body) => ready(request.respond(&groups::list_groups(&request, body))),
        Body::DeleteGroups(body) => groups::delete_groups(request, body),
    };
    let metrics = Arc::clone(&broker.metrics);
    Ok(Box::pin(async move {
        let response = reply.await;
        metrics.observe_request(api, started.elapsed());
        response
    }))
}

fn api_name(body: &Body) -> &'static str {
    match body {
        Body::ApiVersions => "ApiVersions",
        Body::Metadata(_) => "Metadata",
        Body::Produce(_) => "Produce",
        Body::Fetch(_) => "Fetch",
        Body::ListOffsets(_) => "ListOffsets",
        Body::CreateTopics(_) => "CreateTopics",
        Body::DeleteTopics(_) => "DeleteTopics",
        Body::CreatePartitions(_) => "CreatePartitions",
        Body::DescribeConfigs(_) => "DescribeConfigs",
        Body::InitProducerId(_) => "InitProducerId",
        Body::FindCoordinator(_) => "FindCoordinator",
        Body::JoinGroup(_) => "JoinGroup",
        Body::SyncGroup(_) => "SyncGroup",
        Body::Heartbeat(_) => "Heartbeat",
        Body::LeaveGroup(_) => "LeaveGroup",
        Body::OffsetCommit(_) => "OffsetCommit",
        Body::OffsetFetch(_) => "OffsetFetch",
        Body::DescribeGroups(_) => "DescribeGroups",
        Body::ListGroups(_) => "ListGroups",
        Body::DeleteGroups(_) => "DeleteGroups",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Decoding never panics and never allocates beyond the frame,
        /// whatever follows a valid API key and version.
        #[test]
        fn decoding_arbitrary_bodies_never_panics(
            api in 0usize..SUPPORTED.len(),
            version_offset in 0i16..4,
            rest in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let (key, min, max) = SUPPORTED[api];
            let version = (min + version_offset).min(max);
            let mut frame = (key as i16).to_be_bytes().to_vec();
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&rest);
            let _ = decode_request(Bytes::from(frame));
        }

        #[test]
        fn decoding_arbitrary_frames_never_panics(frame in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
