//! Per-topic settings the log enforces.

use freshet_core::limits;
use serde::{Deserialize, Serialize};

use crate::error::{LogError, Result};

/// When an appended batch is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// A flusher fsyncs each dirty partition at most every
    /// `flush_interval_ms` and then releases every append the fsync covers.
    #[default]
    GroupCommit,
    /// Every append is fsynced before it returns.
    EveryBatch,
    /// Never fsync on the write path; the OS writes back when it likes.
    /// Data survives a process crash, not a power loss.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub partitions: u32,
    /// Segments whose newest batch is older than this are deleted; `None` keeps them.
    pub retention_ms: Option<i64>,
    /// Oldest segments are deleted while the partition is larger; `None` keeps them.
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: u32,
    pub durability: Durability,
    pub flush_interval_ms: u64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            retention_ms: Some(limits::RETENTION_DEFAULT_MS),
            retention_bytes: None,
            segment_bytes: limits::SEGMENT_BYTES_DEFAULT,
            segment_ms: limits::SEGMENT_AGE_DEFAULT_MS,
            max_message_bytes: limits::BATCH_BYTES_DEFAULT,
            durability: Durability::GroupCommit,
            flush_interval_ms: limits::FLUSH_INTERVAL_DEFAULT_MS,
        }
    }
}

impl TopicConfig {
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(LogError::InvalidConfig(message));
        if self.partitions == 0 || self.partitions > limits::PARTITIONS_PER_TOPIC_MAX {
            return fail(format!(
                "partitions must be 1..={}, got {}",
                limits::PARTITIONS_PER_TOPIC_MAX,
                self.partitions
            ));
        }
        if !(limits::SEGMENT_BYTES_MIN..=limits::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return fail(format!(
                "segment_bytes must be {}..={}, got {}",
                limits::SEGMENT_BYTES_MIN,
                limits::SEGMENT_BYTES_MAX,
                self.segment_bytes
            ));
        }
        if self.max_message_bytes < 64 || self.max_message_bytes > limits::BATCH_BYTES_MAX {
            return fail(format!(
                "max_message_bytes must be 64..={}, got {}",
                limits::BATCH_BYTES_MAX,
                self.max_message_bytes
            ));
        }
        if self.segment_ms <= 0 {
            return fail(format!(
                "segment_ms must be positive, got {}",
                self.segment_ms
            ));
        }
        if self.retention_ms.is_some_and(|ms| ms <= 0) {
            return fail("retention_ms must be positive (omit it to keep data forever)".into());
        }
        if self.flush_interval_ms > 60_000 {
            return fail(format!(
                "flush_interval_ms must be at most 60000, got {}",
                self.flush_interval_ms
            ));
        }
        Ok(())
    }
}

/// Kafka's rules for topic names, so every Kafka tool accepts ours.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let fail = |reason| {
        Err(LogError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.starts_with('.') {
        return fail("names starting with '.' are kept for the log's own files");
    }
    if name.len() > limits::TOPIC_NAME_BYTES_MAX {
        return fail("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return fail("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}
