//! Request dispatch: the supported API versions, header handling, and one
//! module per API.

mod admin;
mod api_versions;
mod fetch;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::broker::Broker;

/// A response to come: `None` when the request gets none (acks=0 produce).
pub(crate) type Reply = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

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
];

pub(crate) fn supported(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(key, _, _)| *key == api_key).map(|&(_, min, max)| (min, max))
}

/// What a handler knows about the request it serves.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub broker: Arc<Broker>,
    pub version: i16,
    pub correlation_id: i32,
}

impl Request {
    /// Encodes a response frame: size, header (version per API), body.
    pub fn respond<R: Encodable + HeaderVersion>(&self, body: &R) -> Bytes {
        encode_frame(self.correlation_id, R::header_version(self.version), self.version, body)
            .unwrap_or_else(|error| panic!("{} v{} response does not encode: {error}", std::any::type_name::<R>(), self.version))
    }
}

fn encode_frame<R: Encodable>(correlation_id: i32, header_version: i16, version: i16, body: &R) -> anyhow::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0); // size, patched below
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut frame, header_version)?;
    body.encode(&mut frame, version)?;
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

pub(crate) fn ready(frame: Bytes) -> Reply {
    Box::pin(async move { Some(frame) })
}

fn decode<T: Decodable>(frame: &mut Bytes, api_key: ApiKey, version: i16) -> Result<T, String> {
    T::decode(frame, version).map_err(|error| format!("malformed {api_key:?} v{version} request: {error}"))
}

/// Decodes one request frame and starts its handler. An `Err` closes the
/// connection: the frame is garbage, or asks for an API or version this
/// broker does not serve (Kafka's behaviour; only ApiVersions answers an
/// unknown version, with the supported ranges).
pub(crate) fn dispatch(broker: &Arc<Broker>, mut frame: Bytes) -> Result<Reply, String> {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let Some((min, max)) = supported(api_key) else {
        return Err(format!("{api_key:?} (key {key}) is not supported"));
    };
    if !(min..=max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            return Ok(ready(api_versions::unsupported_version(correlation_id)));
        }
        return Err(format!("{api_key:?} v{version} is not supported (supported: v{min}..=v{max})"));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|error| format!("malformed {api_key:?} v{version} request header: {error}"))?;
    let request = Request { broker: Arc::clone(broker), version, correlation_id: header.correlation_id };
    let client = header.client_id.as_ref().map(StrBytes::as_str).unwrap_or("").to_string();
    tracing::trace!(?api_key, version, client, "request");
    Ok(match api_key {
        ApiKey::ApiVersions => ready(request.respond(&api_versions::handle())),
        ApiKey::Metadata => ready(request.respond(&metadata::handle(&request, decode(&mut frame, api_key, version)?))),
        ApiKey::Produce => produce::handle(request, decode(&mut frame, api_key, version)?),
        ApiKey::Fetch => fetch::handle(request, decode(&mut frame, api_key, version)?),
        ApiKey::ListOffsets => ready(request.respond(&list_offsets::handle(&request, decode(&mut frame, api_key, version)?))),
        ApiKey::CreateTopics => ready(request.respond(&admin::create_topics(&request, decode(&mut frame, api_key, version)?))),
        ApiKey::DeleteTopics => ready(request.respond(&admin::delete_topics(&request, decode(&mut frame, api_key, version)?))),
        ApiKey::CreatePartitions => {
            ready(request.respond(&admin::create_partitions(&request, decode(&mut frame, api_key, version)?)))
        }
        ApiKey::DescribeConfigs => {
            ready(request.respond(&admin::describe_configs(&request, decode(&mut frame, api_key, version)?)))
        }
        ApiKey::InitProducerId => {
            ready(request.respond(&init_producer_id::handle(&request, decode(&mut frame, api_key, version)?)))
        }
        other => return Err(format!("{other:?} is listed as supported but has no handler")),
    })
}
