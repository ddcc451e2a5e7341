//! Kafka record batches (magic v2) as the log stores them: the producer's
//! bytes, unchanged but for the base offset and leader epoch the log assigns.
//!
//! Layout of the 61-byte header (all big-endian):
//!
//! | at | field | at | field |
//! |---|---|---|---|
//! | 0 | base offset i64 | 27 | base timestamp i64 |
//! | 8 | batch length i32 (bytes after this field) | 35 | max timestamp i64 |
//! | 12 | partition leader epoch i32 | 43 | producer id i64 |
//! | 16 | magic i8 = 2 | 51 | producer epoch i16 |
//! | 17 | CRC32C u32 of bytes 21.. | 53 | base sequence i32 |
//! | 21 | attributes i16 | 57 | record count i32 |
//! | 23 | last offset delta i32 | 61 | records |
//!
//! The CRC does not cover the base offset, length or leader epoch, so the
//! log checks those itself: offsets must be contiguous and the epoch must be
//! the one it wrote.

use crate::error::BatchError;

pub const HEADER_BYTES: usize = 61;
/// Bytes before the batch-length field ends: base offset + length.
pub const LOG_OVERHEAD_BYTES: usize = 12;
pub const MAGIC_V2: i8 = 2;
/// The leader epoch every stored batch carries: Freshet is its own single
/// leader. Checked on read because the CRC does not cover it.
pub const LEADER_EPOCH: i32 = 0;

const BASE_OFFSET_AT: usize = 0;
const LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Attribute bits.
const COMPRESSION_MASK: i16 = 0b111;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// The parsed header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, header included.
    pub size_bytes: u32,
    pub leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offsets this batch occupies.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Last sequence number in the batch, wrapping past `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("slice of 2"))
}
fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("slice of 4"))
}
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("slice of 4"))
}
fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("slice of 8"))
}

/// Parses the header at the start of `bytes` without checking the CRC.
/// Needs only the first [`HEADER_BYTES`].
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < HEADER_BYTES {
        return Err(BatchError::Truncated {
            needed: HEADER_BYTES,
            available: bytes.len(),
        });
    }
    let length = read_i32(bytes, LENGTH_AT);
    let size = i64::from(length) + LOG_OVERHEAD_BYTES as i64;
    if size < HEADER_BYTES as i64 || size > i64::from(u32::MAX) {
        return Err(BatchError::BadLength { length });
    }
    let magic = bytes[MAGIC_AT] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic { magic });
    }
    let header = BatchHeader {
        base_offset: read_i64(bytes, BASE_OFFSET_AT),
        size_bytes: size as u32,
        leader_epoch: read_i32(bytes, LEADER_EPOCH_AT),
        crc: read_u32(bytes, CRC_AT),
        attributes: read_i16(bytes, ATTRIBUTES_AT),
        last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA_AT),
        base_timestamp: read_i64(bytes, BASE_TIMESTAMP_AT),
        max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
        producer_id: read_i64(bytes, PRODUCER_ID_AT),
        producer_epoch: read_i16(bytes, PRODUCER_EPOCH_AT),
        base_sequence: read_i32(bytes, BASE_SEQUENCE_AT),
        record_count: read_i32(bytes, RECORD_COUNT_AT),
    };
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(BatchError::BadOffsets {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        });
    }
    Ok(header)
}

/// Parses and fully validates one whole batch: header, length and CRC32C.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(batch)?;
    if batch.len() != header.size_bytes as usize {
        return Err(BatchError::Truncated {
            needed: header.size_bytes as usize,
            available: batch.len(),
        });
    }
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Splits a buffer of concatenated batches (a produce request's record set)
/// into validated batches, rejecting trailing garbage.
pub fn split(mut bytes: &[u8]) -> Result<Vec<(BatchHeader, &[u8])>, BatchError> {
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        let header = parse_header(bytes)?;
        let size = header.size_bytes as usize;
        if bytes.len() < size {
            return Err(BatchError::Truncated {
                needed: size,
                available: bytes.len(),
            });
        }
        let (batch, rest) = bytes.split_at(size);
        batches.push((validate(batch)?, batch));
        bytes = rest;
    }
    Ok(batches)
}

/// Stamps the log-assigned base offset and leader epoch into a batch.
/// Neither field is covered by the CRC.
pub fn assign_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&LEADER_EPOCH.to_be_bytes());
}

/// One record, for building uncompressed batches inside Freshet (internal
/// state, tests, benchmarks). Producers' batches are never re-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header keys may repeat; order is kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Producer identity for idempotent batches; `none()` for plain ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerStamp {
    pub const fn none() -> Self {
        Self {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        }
    }
}

/// Encodes `records` as one uncompressed v2 batch with base offset 0.
pub fn encode(records: &[Record], producer: ProducerStamp) -> Vec<u8> {
    assert!(
        !records.is_empty(),
        "a record batch holds at least one record"
    );
    let base_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .expect("non-empty");
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .expect("non-empty");
    // At most 10 bytes per varint: the batch grows no more once started.
    let capacity = HEADER_BYTES
        + records
            .iter()
            .map(|record| {
                60 + record.key.as_ref().map_or(0, Vec::len)
                    + record.value.as_ref().map_or(0, Vec::len)
                    + record
                        .headers
                        .iter()
                        .map(|(key, value)| 20 + key.len() + value.as_ref().map_or(0, Vec::len))
                        .sum::<usize>()
            })
            .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    out.resize(HEADER_BYTES, 0);
    let mut body = Vec::new();
    for (delta, record) in records.iter().enumerate() {
        body.clear();
        body.push(0); // record attributes
        put_varlong(&mut body, record.timestamp - base_timestamp);
        put_varlong(&mut body, delta as i64);
        put_bytes(&mut body, record.key.as_deref());
        put_bytes(&mut body, record.value.as_deref());
        put_varlong(&mut body, record.headers.len() as i64);
        for (key, value) in &record.headers {
            put_bytes(&mut body, Some(key.as_bytes()));
            put_bytes(&mut body, value.as_deref());
        }
        put_varlong(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    let length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES).expect("batch under 2 GiB");
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    out[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&LEADER_EPOCH.to_be_bytes());
    out[MAGIC_AT] = MAGIC_V2 as u8;
    let last_offset_delta = i32::try_from(records.len() - 1).expect("fewer than 2^31 records");
    out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    out[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer.producer_id.to_be_bytes());
    out[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2]
        .copy_from_slice(&producer.producer_epoch.to_be_bytes());
    out[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4]
        .copy_from_slice(&producer.base_sequence.to_be_bytes());
    out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4]
        .copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes the records of an uncompressed batch, with their absolute offsets.
/// Compressed batches are decoded by the protocol layer, which owns codecs.
pub fn decode_uncompressed(batch: &[u8]) -> Result<Vec<(i64, Record)>, BatchError> {
    let header = validate(batch)?;
    if header.compression() != 0 {
        return Err(BatchError::Compressed {
            codec: header.compression(),
        });
    }
    let mut cursor = Cursor {
        bytes: &batch[HEADER_BYTES..],
    };
    let mut records = Vec::with_capacity(header.record_count.min(4096) as usize);
    for _ in 0..header.record_count {
        let length = cursor.varlong()?;
        let mut record = Cursor {
            bytes: cursor.take(usize::try_from(length).map_err(|_| BatchError::BadRecord)?)?,
        };
        record.take(1)?; // attributes
        let timestamp = header.base_timestamp + record.varlong()?;
        let offset = header.base_offset + record.varlong()?;
        let key = record.bytes()?;
        let value = record.bytes()?;
        let header_count = record.varlong()?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let key = record.bytes()?.ok_or(BatchError::BadRecord)?;
            let key = String::from_utf8(key).map_err(|_| BatchError::BadRecord)?;
            headers.push((key, record.bytes()?));
        }
        records.push((
            offset,
            Record {
                timestamp,
                key,
                value,
                headers,
            },
        ));
    }
    Ok(records)
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.bytes.len() < n {
            return Err(BatchError::BadRecord);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.take(1)?.first().expect("took one");
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(BatchError::BadRecord)
    }

    fn bytes(&mut self) -> Result<Option<Vec<u8>>, BatchError> {
        let length = self.varlong()?;
        if length < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(length as usize)?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(timestamp: i64, value: &[u8]) -> Record {
        Record {
            timestamp,
            key: Some(b"k".to_vec()),
            value: Some(value.to_vec()),
            headers: vec![],
        }
    }

    #[test]
    fn encoded_batch_validates_and_reports_its_header() {
        let batch = encode(
            &[record(1_000, b"a"), record(1_005, b"bb"), record(999, b"c")],
            ProducerStamp::none(),
        );
        let header = validate(&batch).unwrap();
        assert_eq!(header.size_bytes as usize, batch.len());
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 999);
        assert_eq!(header.max_timestamp, 1_005);
        assert_eq!(header.producer_id, -1);
    }

    #[test]
    fn crc_mismatch_is_detected() {
        let mut batch = encode(&[record(1, b"hello")], ProducerStamp::none());
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn assigning_an_offset_keeps_the_crc_valid() {
        let mut batch = encode(&[record(1, b"x")], ProducerStamp::none());
        assign_offset(&mut batch, 12_345);
        assert_eq!(validate(&batch).unwrap().base_offset, 12_345);
    }

    #[test]
    fn split_rejects_trailing_garbage() {
        let mut bytes = encode(&[record(1, b"x")], ProducerStamp::none());
        bytes.extend_from_slice(&encode(&[record(2, b"y")], ProducerStamp::none()));
        assert_eq!(split(&bytes).unwrap().len(), 2);
        bytes.extend_from_slice(&[0, 0, 0]);
        assert!(split(&bytes).is_err());
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let mut batch = encode(
            &[record(1, b"x"), record(1, b"y")],
            ProducerStamp {
                producer_id: 7,
                producer_epoch: 0,
                base_sequence: i32::MAX,
            },
        );
        assign_offset(&mut batch, 0);
        assert_eq!(validate(&batch).unwrap().last_sequence(), 0);
    }

    proptest! {
        #[test]
        fn records_round_trip(
            records in prop::collection::vec(
                (any::<i32>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
                 prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
                 prop::collection::vec(("[a-z]{0,5}", prop::option::of(prop::collection::vec(any::<u8>(), 0..8))), 0..4)),
                1..20),
            base_offset in 0i64..1 << 40,
        ) {
            let records: Vec<Record> = records.into_iter().map(|(ts, key, value, headers)| Record {
                timestamp: i64::from(ts), key, value, headers,
            }).collect();
            let mut batch = encode(&records, ProducerStamp::none());
            assign_offset(&mut batch, base_offset);
            let decoded = decode_uncompressed(&batch).unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (i, (offset, record)) in decoded.into_iter().enumerate() {
                prop_assert_eq!(offset, base_offset + i as i64);
                prop_assert_eq!(&record, &records[i]);
            }
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = split(&bytes);
            let _ = decode_uncompressed(&bytes);
        }
    }
}
