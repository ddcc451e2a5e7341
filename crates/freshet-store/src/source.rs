//! How the store reads the log: a small consumer interface with the
//! embedded log behind it. Positions are kept by the reader (the table's
//! manifest), not by the source, so a source never decides what was
//! consumed; an external Kafka cluster fits behind the same trait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_log::{Log, LogError, TopicConfig};
use kafka_protocol::records::RecordBatchDecoder;

/// One event read from a source partition.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub partition: u32,
    pub offset: i64,
    /// Producer or log-append time, ms since the epoch.
    pub timestamp: i64,
    pub value: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the source topic '{0}' does not exist")]
    NoTopic(String),
    /// The position fell off the start of the partition (retention ran
    /// before the table read it): reading resumes at `start`.
    #[error("offset {offset} of partition {partition} is gone; the partition starts at {start}")]
    Truncated {
        partition: u32,
        offset: i64,
        start: i64,
    },
    #[error("{0}")]
    Other(String),
}

/// Where a table's events come from.
pub trait Source: Send {
    /// The partitions of the source topic now (they may grow).
    fn partitions(&mut self) -> Result<Vec<u32>, SourceError>;

    /// Appends records of `partition` at or after `offset` to `out`, about
    /// `max_bytes` of them; returns the next offset to read.
    fn read(
        &mut self,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        out: &mut Vec<SourceRecord>,
    ) -> Result<i64, SourceError>;

    /// Waits until `partition` has data at `offset` or `timeout` passes.
    fn wait(&mut self, partition: u32, offset: i64, timeout: Duration);

    /// One past the last offset of `partition` (for lag).
    fn end_offset(&mut self, partition: u32) -> Result<i64, SourceError>;
}

/// Where events that cannot be mapped go.
pub trait DeadLetterSink: Send {
    fn send(&mut self, letters: &[DeadLetter]) -> Result<(), SourceError>;

    /// The highest source offset per partition already dead-lettered for
    /// `table`, so that re-reading after a crash does not send twice.
    fn sent_marks(&mut self, table: &str) -> Result<BTreeMap<u32, i64>, SourceError>;
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub table: String,
    pub partition: u32,
    pub offset: i64,
    pub reason: String,
    pub value: Option<Bytes>,
}

/// The log of this process, read directly.
pub struct EmbeddedSource {
    log: Arc<Log>,
    topic: String,
    runtime: tokio::runtime::Handle,
}

impl EmbeddedSource {
    /// `runtime` drives the log's tail waits; the source is used from a
    /// thread outside it.
    pub fn new(log: Arc<Log>, topic: &str, runtime: tokio::runtime::Handle) -> Self {
        Self {
            log,
            topic: topic.to_string(),
            runtime,
        }
    }

    fn partition(&self, partition: u32) -> Result<Arc<freshet_log::Partition>, SourceError> {
        self.log
            .partition(&self.topic, partition)
            .map_err(|error| match error {
                LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
                    SourceError::NoTopic(self.topic.clone())
                }
                other => SourceError::Other(other.to_string()),
            })
    }
}

impl Source for EmbeddedSource {
    fn partitions(&mut self) -> Result<Vec<u32>, SourceError> {
        let topic = self
            .log
            .topic(&self.topic)
            .map_err(|_| SourceError::NoTopic(self.topic.clone()))?;
        Ok(topic.partitions().iter().map(|p| p.id()).collect())
    }

    fn read(
        &mut self,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        out: &mut Vec<SourceRecord>,
    ) -> Result<i64, SourceError> {
        let log_partition = self.partition(partition)?;
        let read = match log_partition.read(offset, max_bytes) {
            Ok(read) => read,
            Err(LogError::OffsetOutOfRange { start, .. }) if offset < start => {
                return Err(SourceError::Truncated {
                    partition,
                    offset,
                    start,
                });
            }
            Err(error) => return Err(SourceError::Other(error.to_string())),
        };
        let mut bytes = read.bytes;
        while !bytes.is_empty() {
            let set = RecordBatchDecoder::decode(&mut bytes).map_err(|error| {
                SourceError::Other(format!("partition {partition}: undecodable batch: {error}"))
            })?;
            for record in set.records {
                if record.offset < offset || record.control {
                    continue;
                }
                out.push(SourceRecord {
                    partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    value: record.value,
                });
            }
        }
        Ok(read.next_offset.max(offset))
    }

    fn wait(&mut self, partition: u32, offset: i64, timeout: Duration) {
        match self.partition(partition) {
            Ok(log_partition) => {
                self.runtime
                    .block_on(log_partition.wait_for_data(offset, timeout));
            }
            Err(_) => std::thread::sleep(timeout),
        }
    }

    fn end_offset(&mut self, partition: u32) -> Result<i64, SourceError> {
        Ok(self.partition(partition)?.end_offset())
    }
}

/// Dead letters appended to a topic of this process's log: the event as
/// it came, with headers naming the table, the source position and the reason.
pub struct EmbeddedDeadLetters {
    log: Arc<Log>,
    topic: String,
}

impl EmbeddedDeadLetters {
    pub fn new(log: Arc<Log>, topic: &str) -> Self {
        Self {
            log,
            topic: topic.to_string(),
        }
    }
}

impl DeadLetterSink for EmbeddedDeadLetters {
    fn send(&mut self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        if letters.is_empty() {
            return Ok(());
        }
        let topic = self
            .log
            .ensure_topic(
                &self.topic,
                TopicConfig {
                    partitions: 1,
                    ..TopicConfig::default()
                },
            )
            .map_err(|e| SourceError::Other(e.to_string()))?;
        let partition = topic
            .partition(0)
            .map_err(|e| SourceError::Other(e.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let records: Vec<Record> = letters
            .iter()
            .map(|letter| Record {
                timestamp: now,
                key: Some(format!("{}/{}", letter.partition, letter.offset).into_bytes()),
                value: letter.value.as_ref().map(|v| v.to_vec()),
                headers: vec![
                    (
                        "freshet.table".into(),
                        Some(letter.table.clone().into_bytes()),
                    ),
                    (
                        "freshet.source.partition".into(),
                        Some(letter.partition.to_string().into_bytes()),
                    ),
                    (
                        "freshet.source.offset".into(),
                        Some(letter.offset.to_string().into_bytes()),
                    ),
                    (
                        "freshet.reason".into(),
                        Some(letter.reason.clone().into_bytes()),
                    ),
                ],
            })
            .collect();
        for chunk in records.chunks(1000) {
            partition
                .append_written(batch::encode(chunk, ProducerStamp::none()))
                .map_err(|e| {
                    SourceError::Other(format!("dead-letter topic '{}': {e}", self.topic))
                })?;
        }
        Ok(())
    }

    fn sent_marks(&mut self, table: &str) -> Result<BTreeMap<u32, i64>, SourceError> {
        let mut marks = BTreeMap::new();
        let Ok(partition) = self.log.partition(&self.topic, 0) else {
            return Ok(marks);
        };
        let mut offset = partition.log_start_offset();
        while offset < partition.end_offset() {
            let read = partition
                .read(offset, 4 << 20)
                .map_err(|e| SourceError::Other(e.to_string()))?;
            let mut bytes = read.bytes;
            while !bytes.is_empty() {
                let set = RecordBatchDecoder::decode(&mut bytes)
                    .map_err(|e| SourceError::Other(e.to_string()))?;
                for record in set.records {
                    let header = |name: &str| {
                        record
                            .headers
                            .iter()
                            .find(|(k, _)| &***k == name)
                            .and_then(|(_, v)| v.as_ref())
                            .and_then(|v| std::str::from_utf8(v).ok().map(str::to_string))
                    };
                    if header("freshet.table").as_deref() != Some(table) {
                        continue;
                    }
                    let (Some(p), Some(o)) = (
                        header("freshet.source.partition"),
                        header("freshet.source.offset"),
                    ) else {
                        continue;
                    };
                    if let (Ok(p), Ok(o)) = (p.parse::<u32>(), o.parse::<i64>()) {
                        let mark = marks.entry(p).or_insert(o);
                        *mark = (*mark).max(o);
                    }
                }
            }
            if read.next_offset <= offset {
                break;
            }
            offset = read.next_offset;
        }
        Ok(marks)
    }
}
