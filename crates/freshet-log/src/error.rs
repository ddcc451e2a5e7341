//! What can go wrong in the log, said for the person who has to act on it.

use std::io;
use std::path::PathBuf;

/// A record batch that cannot be stored or served as it is.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: needs {needed} bytes, only {available} present")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length field {length} is impossible (a batch is at least 61 bytes)")]
    BadLength { length: i32 },
    #[error(
        "record batch magic {magic} is not supported; only message format v2 is (Kafka 0.11+ clients)"
    )]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error(
        "record batch offsets are inconsistent: last offset delta {last_offset_delta}, {record_count} records"
    )]
    BadOffsets {
        last_offset_delta: i32,
        record_count: i32,
    },
    #[error("record inside the batch is malformed")]
    BadRecord,
    #[error("record batch is compressed with codec {codec}; decode it with the protocol layer")]
    Compressed { codec: u8 },
}

/// Errors from log operations. Each maps to one user-facing kind.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    #[error(
        "record batch of {size_bytes} bytes exceeds the topic's max_message_bytes of {max_bytes}"
    )]
    BatchTooLarge { size_bytes: usize, max_bytes: u32 },
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} of topic '{topic}' does not exist")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("offset {offset} is out of range: the partition holds {start}..{end}")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("corrupt data in {path} at byte {position}: {reason}; the batch is not served")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("{0}")]
    Producer(#[from] crate::producers::ProducerError),
    #[error("the log is shutting down")]
    ShuttingDown,
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LogError {
        let path = path.into();
        move |source| LogError::Io { path, source }
    }

    /// Whether the same request may succeed if retried unchanged.
    pub fn is_retriable(&self) -> bool {
        matches!(self, LogError::Io { .. } | LogError::ShuttingDown)
    }
}

pub type Result<T, E = LogError> = std::result::Result<T, E>;
