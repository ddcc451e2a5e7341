//! The sparse offset index and time index of one segment: pure values,
//! built as batches are appended or scanned, looked up by binary search,
//! and persisted as checksummed files when a segment is sealed.
//!
//! File format (both files; big-endian):
//! `magic[4] · base_offset i64 · covered_bytes u64 · next_offset i64 ·
//! max_timestamp i64 · entry_count u32 · entries · crc32c u32` over everything before the CRC. `covered_bytes` is
//! the segment length the index describes; an index that does not match its
//! segment's length, or fails its CRC, is rebuilt from the segment.

use crate::batch::BatchHeader;

const OFFSET_MAGIC: &[u8; 4] = b"FXOI";
const TIME_MAGIC: &[u8; 4] = b"FXTI";
const FILE_HEADER_BYTES: usize = 4 + 8 + 8 + 8 + 8 + 4;
const OFFSET_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 16;

/// "The batch with this base offset starts at this byte."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// "Every batch before the one at `position` (inclusive) has a max
/// timestamp of at most `timestamp`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone)]
pub struct SegmentIndex {
    base_offset: i64,
    interval_bytes: u64,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_entry: u64,
    /// Highest batch max timestamp seen in the segment; `i64::MIN` when empty.
    max_timestamp: i64,
    covered_bytes: u64,
    /// One past the last offset of the last batch observed.
    next_offset: i64,
}

impl SegmentIndex {
    pub fn new(base_offset: i64, interval_bytes: u64) -> Self {
        Self {
            base_offset,
            interval_bytes,
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_entry: 0,
            max_timestamp: i64::MIN,
            covered_bytes: 0,
            next_offset: base_offset,
        }
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    pub fn covered_bytes(&self) -> u64 {
        self.covered_bytes
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn offset_entries(&self) -> &[OffsetEntry] {
        &self.offsets
    }

    pub fn time_entries(&self) -> &[TimeEntry] {
        &self.times
    }

    /// Records a batch appended at `position`, which must be the end of the
    /// bytes covered so far.
    pub fn observe(&mut self, position: u64, header: &BatchHeader) {
        assert_eq!(
            position, self.covered_bytes,
            "index observes batches in order"
        );
        let relative_offset = u32::try_from(header.base_offset - self.base_offset)
            .expect("a segment spans fewer than 2^32 offsets");
        let position_u32 = u32::try_from(position).expect("segments are under 4 GiB");
        if self.offsets.is_empty() || self.bytes_since_entry >= self.interval_bytes {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position: position_u32,
            });
            self.bytes_since_entry = 0;
            if header.max_timestamp > self.max_timestamp {
                // The entry describes everything up to and including this batch.
                let timestamp = header.max_timestamp.max(self.max_timestamp);
                self.times.push(TimeEntry {
                    timestamp,
                    relative_offset,
                    position: position_u32,
                });
            }
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.bytes_since_entry += u64::from(header.size_bytes);
        self.covered_bytes = position + u64::from(header.size_bytes);
        self.next_offset = header.last_offset() + 1;
    }

    /// Where to start scanning for `offset`: the byte position and base
    /// offset of the last indexed batch whose base offset is at most `offset`.
    pub fn position_for_offset(&self, offset: i64) -> (u64, i64) {
        let Ok(relative) = u32::try_from(offset - self.base_offset) else {
            return (0, self.base_offset);
        };
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative);
        match after {
            0 => (0, self.base_offset),
            n => {
                let entry = self.offsets[n - 1];
                (
                    u64::from(entry.position),
                    self.base_offset + i64::from(entry.relative_offset),
                )
            }
        }
    }

    /// Where to start scanning for the first batch whose max timestamp is
    /// at least `timestamp` (byte position and base offset there).
    /// Everything before it is older.
    pub fn position_for_timestamp(&self, timestamp: i64) -> (u64, i64) {
        // Entries are non-decreasing in timestamp: the last one strictly
        // older than `timestamp` bounds everything up to its batch.
        let after = self
            .times
            .partition_point(|entry| entry.timestamp < timestamp);
        match after {
            0 => (0, self.base_offset),
            n => {
                let entry = self.times[n - 1];
                (
                    u64::from(entry.position),
                    self.base_offset + i64::from(entry.relative_offset),
                )
            }
        }
    }

    /// Serialises the two index files' contents: (offset index, time index).
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = self.file_header(OFFSET_MAGIC, self.offsets.len());
        for entry in &self.offsets {
            offsets.extend_from_slice(&entry.relative_offset.to_be_bytes());
            offsets.extend_from_slice(&entry.position.to_be_bytes());
        }
        seal(&mut offsets);
        let mut times = self.file_header(TIME_MAGIC, self.times.len());
        for entry in &self.times {
            times.extend_from_slice(&entry.timestamp.to_be_bytes());
            times.extend_from_slice(&entry.relative_offset.to_be_bytes());
            times.extend_from_slice(&entry.position.to_be_bytes());
        }
        seal(&mut times);
        (offsets, times)
    }

    fn file_header(&self, magic: &[u8; 4], count: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(FILE_HEADER_BYTES + count * TIME_ENTRY_BYTES + 4);
        out.extend_from_slice(magic);
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&self.covered_bytes.to_be_bytes());
        out.extend_from_slice(&self.next_offset.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&(count as u32).to_be_bytes());
        out
    }

    /// Loads an index from its two files, or `None` when either is damaged,
    /// inconsistent, or describes a different length of segment than
    /// `segment_bytes`: the caller then rebuilds it by scanning.
    pub fn decode(
        base_offset: i64,
        interval_bytes: u64,
        segment_bytes: u64,
        offset_file: &[u8],
        time_file: &[u8],
    ) -> Option<Self> {
        let (offset_body, next_offset, max_timestamp) = unseal(
            offset_file,
            OFFSET_MAGIC,
            base_offset,
            segment_bytes,
            OFFSET_ENTRY_BYTES,
        )?;
        let (time_body, time_next_offset, time_max_timestamp) = unseal(
            time_file,
            TIME_MAGIC,
            base_offset,
            segment_bytes,
            TIME_ENTRY_BYTES,
        )?;
        if (next_offset, max_timestamp) != (time_next_offset, time_max_timestamp)
            || next_offset < base_offset
        {
            return None;
        }
        let offsets: Vec<OffsetEntry> = offset_body
            .chunks_exact(OFFSET_ENTRY_BYTES)
            .map(|c| OffsetEntry {
                relative_offset: u32::from_be_bytes(c[0..4].try_into().expect("4")),
                position: u32::from_be_bytes(c[4..8].try_into().expect("4")),
            })
            .collect();
        let times: Vec<TimeEntry> = time_body
            .chunks_exact(TIME_ENTRY_BYTES)
            .map(|c| TimeEntry {
                timestamp: i64::from_be_bytes(c[0..8].try_into().expect("8")),
                relative_offset: u32::from_be_bytes(c[8..12].try_into().expect("4")),
                position: u32::from_be_bytes(c[12..16].try_into().expect("4")),
            })
            .collect();
        let offsets_sorted = offsets
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let times_sorted = times
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp && w[0].position < w[1].position);
        let in_bounds = offsets
            .iter()
            .all(|e| u64::from(e.position) < segment_bytes.max(1))
            && times
                .iter()
                .all(|e| u64::from(e.position) < segment_bytes.max(1));
        if !offsets_sorted
            || !times_sorted
            || !in_bounds
            || (segment_bytes > 0 && offsets.first()?.position != 0)
        {
            return None;
        }
        if times.last().is_some_and(|e| e.timestamp > max_timestamp) {
            return None;
        }
        Some(Self {
            base_offset,
            interval_bytes,
            offsets,
            times,
            // Only sealed segments are loaded from files; nothing more is appended.
            bytes_since_entry: 0,
            max_timestamp,
            covered_bytes: segment_bytes,
            next_offset,
        })
    }
}

fn seal(bytes: &mut Vec<u8>) {
    let crc = crc32c::crc32c(bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
}

/// Checks a file's CRC and header; returns its entries, next offset and max timestamp.
fn unseal<'a>(
    file: &'a [u8],
    magic: &[u8; 4],
    base_offset: i64,
    segment_bytes: u64,
    entry_bytes: usize,
) -> Option<(&'a [u8], i64, i64)> {
    if file.len() < FILE_HEADER_BYTES + 4 {
        return None;
    }
    let (body, crc) = file.split_at(file.len() - 4);
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let next_offset = i64::from_be_bytes(body[20..28].try_into().ok()?);
    let max_timestamp = i64::from_be_bytes(body[28..36].try_into().ok()?);
    let count = u32::from_be_bytes(body[36..40].try_into().ok()?) as usize;
    let matches = &body[0..4] == magic
        && i64::from_be_bytes(body[4..12].try_into().ok()?) == base_offset
        && u64::from_be_bytes(body[12..20].try_into().ok()?) == segment_bytes
        && body.len() == FILE_HEADER_BYTES + count.checked_mul(entry_bytes)?;
    matches.then(|| (&body[FILE_HEADER_BYTES..], next_offset, max_timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, ProducerStamp, Record};

    fn header_at(base_offset: i64, records: usize, max_timestamp: i64) -> BatchHeader {
        let records: Vec<Record> = (0..records)
            .map(|_| Record {
                timestamp: max_timestamp,
                value: Some(vec![0; 100]),
                ..Default::default()
            })
            .collect();
        let mut bytes = batch::encode(&records, ProducerStamp::none());
        batch::assign_offset(&mut bytes, base_offset);
        batch::validate(&bytes).unwrap()
    }

    fn build(
        interval_bytes: u64,
        batches: &[(usize, i64)],
    ) -> (SegmentIndex, Vec<(i64, u64, i64)>) {
        let mut index = SegmentIndex::new(1_000, interval_bytes);
        let mut offset = 1_000;
        let mut layout = Vec::new();
        for &(records, timestamp) in batches {
            let header = header_at(offset, records, timestamp);
            layout.push((offset, index.covered_bytes(), timestamp));
            index.observe(index.covered_bytes(), &header);
            offset += records as i64;
        }
        (index, layout)
    }

    #[test]
    fn offset_lookup_never_overshoots_and_stays_within_an_interval() {
        let batches: Vec<(usize, i64)> = (0..200).map(|i| (1 + i % 7, 10 * i as i64)).collect();
        let (index, layout) = build(1_000, &batches);
        for &(base, position, _) in &layout {
            for target in [base, base + 1] {
                let (start, _) = index.position_for_offset(target);
                assert!(
                    start <= position || target > base,
                    "started past the batch holding {target}"
                );
                // The scan from `start` reaches the batch within one interval plus a batch.
                let batch_start = layout
                    .iter()
                    .rev()
                    .find(|(b, _, _)| *b <= target)
                    .unwrap()
                    .1;
                assert!(start <= batch_start);
                assert!(batch_start - start <= 1_000 + 1_000);
            }
        }
    }

    #[test]
    fn time_lookup_skips_only_older_batches() {
        let batches: Vec<(usize, i64)> = (0..300)
            .map(|i| (2, 5 * i as i64 + if i % 10 == 3 { 50 } else { 0 }))
            .collect();
        let (index, layout) = build(600, &batches);
        for target in (0..1_600).step_by(7) {
            let (start, _) = index.position_for_timestamp(target);
            for &(_, position, timestamp) in &layout {
                if position < start {
                    assert!(
                        timestamp < target,
                        "skipped a batch at {position} with ts {timestamp} >= {target}"
                    );
                }
            }
        }
    }

    #[test]
    fn files_round_trip_and_reject_damage() {
        let batches: Vec<(usize, i64)> = (0..100).map(|i| (3, i as i64)).collect();
        let (index, _) = build(500, &batches);
        let (offsets, times) = index.encode();
        let size = index.covered_bytes();
        let loaded = SegmentIndex::decode(1_000, 500, size, &offsets, &times).unwrap();
        assert_eq!(loaded.offset_entries(), index.offset_entries());
        assert_eq!(loaded.time_entries(), index.time_entries());
        assert_eq!(loaded.next_offset(), index.next_offset());
        assert_eq!(loaded.max_timestamp(), index.max_timestamp());
        // A segment of a different length is not described by this index.
        assert!(SegmentIndex::decode(1_000, 500, size + 1, &offsets, &times).is_none());
        for cut in [0, 3, offsets.len() / 2, offsets.len() - 1] {
            assert!(SegmentIndex::decode(1_000, 500, size, &offsets[..cut], &times).is_none());
        }
        for at in 0..offsets.len() {
            let mut flipped = offsets.clone();
            flipped[at] ^= 0x10;
            assert!(
                SegmentIndex::decode(1_000, 500, size, &flipped, &times).is_none(),
                "flip at {at} accepted"
            );
        }
    }
}
