//! Produce requests encoded once and sent again and again over plain
//! sockets, `acks=all`: what the server takes durably when the client
//! costs next to nothing (no records built, no checksums per send), so
//! that the server, not its clients, has the machine's cores.
//!
//! Each request holds one record batch per partition (no producer id, so
//! the same bytes are a new batch every time; the server assigns the
//! offsets). A connection keeps up to `window` requests in flight and
//! checks every response, in order, for errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// The Produce version sent: the last before flexible encodings, as
/// librdkafka sends.
const VERSION: i16 = 7;

pub struct Load {
    pub connections: usize,
    /// Requests in flight per connection (Kafka's
    /// `max.in.flight.requests.per.connection`).
    pub window: usize,
    /// Bytes of records per partition per request.
    pub batch_bytes: usize,
}

impl Load {
    /// From `FRESHET_BENCH_WIRE_CONNECTIONS` (default 2),
    /// `FRESHET_BENCH_WIRE_WINDOW` (default 5) and
    /// `FRESHET_BENCH_WIRE_BATCH_BYTES` (default 1 MiB).
    pub fn from_env() -> Self {
        let read = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|text| text.parse().ok())
                .filter(|&value| value > 0)
                .unwrap_or(default)
        };
        Self {
            connections: read("FRESHET_BENCH_WIRE_CONNECTIONS", 2),
            window: read("FRESHET_BENCH_WIRE_WINDOW", 5),
            batch_bytes: read("FRESHET_BENCH_WIRE_BATCH_BYTES", 1 << 20),
        }
    }

    /// Records in one request.
    pub fn records_per_request(&self, size: usize, partitions: i32) -> usize {
        (self.batch_bytes / size).max(1) * partitions as usize
    }
}

/// One record batch of `count` records with `size`-byte values.
fn batch(size: usize, count: usize) -> Bytes {
    let value = Bytes::from(vec![b'w'; size]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(Bytes::copy_from_slice(&(i as u32 % 1024).to_be_bytes())),
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut encoded = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut encoded,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a record batch");
    encoded.freeze()
}

/// A whole request frame (length prefix, header, body) with correlation
/// id 0, and where in it the correlation id is.
fn request_frame(topic: &str, partitions: i32, records: Bytes) -> (Vec<u8>, usize) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(
                    (0..partitions)
                        .map(|partition| {
                            PartitionProduceData::default()
                                .with_index(partition)
                                .with_records(Some(records.clone()))
                        })
                        .collect(),
                ),
        ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(0)
        .with_client_id(Some(StrBytes::from_static_str("freshet-bench-wire")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ProduceRequest::header_version(VERSION))
        .expect("encode the request header");
    request
        .encode(&mut body, VERSION)
        .expect("encode the request");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    // Length, api key, api version, then the correlation id.
    (frame, 4 + 2 + 2)
}

/// Sends at least `count` records of `size` bytes to every partition of
/// `topic` in turn; returns the seconds until the last was acknowledged
/// and the records acknowledged.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    size: usize,
    count: usize,
    load: &Load,
) -> (f64, usize) {
    let per_batch = (load.batch_bytes / size).max(1);
    let per_request = load.records_per_request(size, partitions);
    let requests = count.div_ceil(per_request);
    let (frame, correlation_at) = request_frame(topic, partitions, batch(size, per_batch));
    let started = Instant::now();
    let threads: Vec<_> = (0..load.connections)
        .map(|connection| {
            let share =
                requests / load.connections + usize::from(connection < requests % load.connections);
            let (bootstrap, mut frame, window) =
                (bootstrap.to_string(), frame.clone(), load.window);
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&bootstrap).expect("connect to the server");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                let (mut sent, mut answered) = (0usize, 0usize);
                while answered < share {
                    while sent < share && sent - answered < window {
                        frame[correlation_at..correlation_at + 4]
                            .copy_from_slice(&(sent as i32).to_be_bytes());
                        stream.write_all(&frame).expect("send a produce request");
                        sent += 1;
                    }
                    check_response(&mut stream, answered as i32, partitions);
                    answered += 1;
                }
                share
            })
        })
        .collect();
    let sent: usize = threads
        .into_iter()
        .map(|thread| thread.join().expect("a wire producer"))
        .sum();
    (started.elapsed().as_secs_f64(), sent * per_request)
}

/// Reads the next response and checks it answers `correlation` for all
/// `partitions`, none with an error.
fn check_response(stream: &mut TcpStream, correlation: i32, partitions: i32) {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).expect("a response length");
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).expect("a response");
    let mut body = Bytes::from(body);
    let header = ResponseHeader::decode(&mut body, ProduceResponse::header_version(VERSION))
        .expect("decode the response header");
    assert_eq!(header.correlation_id, correlation, "responses in order");
    let response = ProduceResponse::decode(&mut body, VERSION).expect("decode the response");
    let answered: usize = response
        .responses
        .iter()
        .map(|topic| topic.partition_responses.len())
        .sum();
    assert_eq!(answered, partitions as usize, "every partition answered");
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            assert_eq!(
                partition.error_code, 0,
                "partition {} refused a produce request",
                partition.index
            );
        }
    }
}
