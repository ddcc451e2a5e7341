//! Every bound on something that grows, named once with its unit.
//!
//! Configuration may lower these (and some raise them up to the hard
//! maxima below); nothing in Freshet grows without one of them.

/// Largest record batch a topic accepts by default (Kafka's
/// `max.message.bytes` default, 1 MiB plus the batch overhead).
pub const BATCH_BYTES_DEFAULT: u32 = 1_048_588;
/// Hard ceiling for a topic's `max_message_bytes`.
pub const BATCH_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// A segment rolls once it holds this many bytes (default).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Hard ceiling for `segment_bytes`: positions in the offset index are `u32`.
pub const SEGMENT_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024 - 1;
/// Smallest `segment_bytes` accepted; smaller only makes sense in tests.
pub const SEGMENT_BYTES_MIN: u64 = 1024;

/// A segment rolls once its first batch is this old (Kafka: `log.roll.hours` = 168).
pub const SEGMENT_AGE_DEFAULT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Default time-based retention (Kafka: `log.retention.hours` = 168).
pub const RETENTION_DEFAULT_MS: i64 = 7 * 24 * 3600 * 1000;

/// One sparse index entry is written per this many log bytes.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;

/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 4096;

/// Topic names: Kafka's limit, so every Kafka tool accepts them.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Sealed segments kept memory-mapped at once, across the log (the least
/// recently read is unmapped first). Active segments hold their own handle
/// and map on top of this.
pub const MAPPED_SEGMENTS_MAX: usize = 1024;

/// Memory the log keeps of recently appended bytes by default, across all
/// partitions, to serve reads of them without touching the disk (see
/// `[log] recent_bytes`).
pub const RECENT_BYTES_DEFAULT: u64 = 2 << 30;

/// Record bytes one Fetch response gathers, whatever its `max_bytes` asks:
/// a partition may add one batch past its budget, and the whole response
/// must stay within the i32 size of a Kafka frame.
pub const FETCH_RESPONSE_BYTES_MAX: usize = 1 << 30;

/// Readers that may wait for new data on one partition at once; beyond
/// this, a read returns immediately with what is there.
pub const WAITING_READERS_PER_PARTITION_MAX: usize = 4096;

/// Default group-commit interval: the flusher fsyncs a dirty partition at
/// most this often.
pub const FLUSH_INTERVAL_DEFAULT_MS: u64 = 2;
