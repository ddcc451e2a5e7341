//! Response frames as pieces written one after another: the encoded fields,
//! and record batches that stay the log's own bytes (slices of its memory
//! or its mapped segment files) instead of being copied into the frame. A Fetch response
//! is almost all record batches, so this is one full copy per fetch less.
//!
//! `kafka-protocol` encodes into any [`ByteBufMut`] and puts a `records`
//! field with one `put_slice` of the whole field. [`Pieces`] is such a
//! buffer: when the slice put is the very memory of the next byte string
//! it was told to share, it ends the piece being encoded and keeps that
//! byte string as a piece of its own.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::buf::ByteBufMut;

/// A response frame: its pieces, to be written in order.
pub(crate) type Frame = Vec<Bytes>;

/// Shared byte strings shorter than this are copied: a piece of its own
/// costs more than copying a few bytes.
const SHARE_BYTES_MIN: usize = 4096;

/// Encodes a frame: size, header, body; the parts of `shared` the body
/// holds (in the order it holds them) are pieces of the frame, not copies.
pub(crate) fn encode<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    version: i16,
    body: &R,
    shared: &[Bytes],
) -> anyhow::Result<Frame> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let shared: Vec<&Bytes> = shared
        .iter()
        .filter(|bytes| bytes.len() >= SHARE_BYTES_MIN)
        .collect();
    let shared_bytes: usize = shared.iter().map(|bytes| bytes.len()).sum();
    let mut frame = Pieces {
        done: Vec::with_capacity(2 * shared.len() + 1),
        done_bytes: 0,
        // Sized up front: a growing buffer would copy itself at each doubling.
        tail: BytesMut::with_capacity((4 + size).saturating_sub(shared_bytes)),
        shared: shared.into_iter(),
    };
    frame.put_i32(i32::try_from(size)?);
    header.encode(&mut frame, header_version)?;
    body.encode(&mut frame, version)?;
    let pieces = frame.finish();
    debug_assert_eq!(
        pieces.iter().map(Bytes::len).sum::<usize>(),
        4 + size,
        "computed and encoded sizes agree"
    );
    Ok(pieces)
}

/// An encode target that keeps byte strings it was told to share as
/// pieces of their own.
struct Pieces<'a> {
    done: Vec<Bytes>,
    done_bytes: usize,
    tail: BytesMut,
    /// What may be shared, in the order the encoder puts it.
    shared: std::vec::IntoIter<&'a Bytes>,
}

impl Pieces<'_> {
    fn finish(mut self) -> Frame {
        if !self.tail.is_empty() {
            self.done.push(self.tail.freeze());
        }
        self.done
    }
}

// SAFETY: every method hands on to the `BytesMut` being written, which
// upholds the trait's contract; `put_slice` only adds whole pieces.
unsafe impl BufMut for Pieces<'_> {
    fn remaining_mut(&self) -> usize {
        self.tail.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: the caller initialised `count` bytes of `chunk_mut`, which
        // is the tail's.
        unsafe { self.tail.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        let next = self.shared.as_slice().first().copied();
        match next {
            Some(bytes) if bytes.as_ptr() == src.as_ptr() && bytes.len() == src.len() => {
                self.shared.next();
                let encoded = self.tail.split().freeze();
                self.done_bytes += encoded.len() + bytes.len();
                if !encoded.is_empty() {
                    self.done.push(encoded);
                }
                self.done.push(bytes.clone());
            }
            _ => self.tail.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for Pieces<'_> {
    fn offset(&self) -> usize {
        self.done_bytes + self.tail.len()
    }

    /// Gaps (a length written after what it measures) only ever lie within
    /// the piece being encoded: no response this broker sends has one
    /// around a records field.
    fn seek(&mut self, offset: usize) {
        let within = offset
            .checked_sub(self.done_bytes)
            .expect("a gap reaching back into a shared piece");
        self.tail.resize(within, 0);
    }

    fn range(&mut self, range: Range<usize>) -> &mut [u8] {
        let start = range
            .start
            .checked_sub(self.done_bytes)
            .expect("a gap reaching back into a shared piece");
        &mut self.tail[start..range.end - self.done_bytes]
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::fetch_response::{
        FetchResponse, FetchableTopicResponse, PartitionData,
    };

    use super::*;

    fn response(records: &[Bytes]) -> FetchResponse {
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName("events".into());
        for (index, bytes) in records.iter().enumerate() {
            let mut data = PartitionData::default();
            data.partition_index = index as i32;
            data.high_watermark = 42;
            data.records = Some(bytes.clone());
            topic.partitions.push(data);
        }
        let mut response = FetchResponse::default();
        response.responses.push(topic);
        response
    }

    #[test]
    fn shared_records_are_pieces_and_the_frame_reads_as_one_encoding() {
        let records = [
            Bytes::from(vec![7u8; 10_000]),
            Bytes::from(vec![1u8; 100]),
            Bytes::new(),
            Bytes::from(vec![9u8; 5_000]),
        ];
        let body = response(&records);
        // Flexible (v12, compact lengths) and not (v11, fixed lengths).
        for (version, header_version) in [(11, 0), (12, 1)] {
            let pieces = encode(5, header_version, version, &body, &records).unwrap();
            let whole: Vec<u8> = pieces.iter().flat_map(|piece| piece.to_vec()).collect();

            let mut header = ResponseHeader::default();
            header.correlation_id = 5;
            let mut expected = BytesMut::new();
            expected.put_i32(0);
            header.encode(&mut expected, header_version).unwrap();
            body.encode(&mut expected, version).unwrap();
            let size = (expected.len() - 4) as i32;
            expected[..4].copy_from_slice(&size.to_be_bytes());
            assert_eq!(whole, expected.to_vec(), "v{version}");

            // The two large record sets are the log's bytes, not copies; the
            // small one is copied.
            let shared: Vec<&Bytes> = pieces
                .iter()
                .filter(|piece| {
                    records
                        .iter()
                        .any(|r| r.as_ptr() == piece.as_ptr() && r.len() == piece.len())
                })
                .collect();
            assert_eq!(shared.len(), 2, "v{version}");
        }
    }
}
