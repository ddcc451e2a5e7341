//! Committed consumer offsets, kept in memory and persisted in the log's
//! internal topic `__consumer_offsets`: each commit appends one record per
//! partition (key: group, topic, partition; value: offset, leader epoch,
//! metadata, commit time; a null value deletes), and opening replays it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_log::{Durability, Log, LogError, Partition, TopicConfig};
use serde::{Deserialize, Serialize};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The topic is compacted once it holds this many records more than
/// four times the live offsets.
const COMPACT_AFTER_RECORDS: i64 = 100_000;
/// Records per batch when the live offsets are rewritten.
const COMPACT_BATCH_RECORDS: usize = 1_000;
/// Bytes read at once while replaying the offsets topic.
const REPLAY_READ_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct OffsetKey {
    group: String,
    topic: String,
    partition: i32,
}

/// One committed position, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_time_ms: i64,
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

#[derive(Debug)]
pub struct OffsetStore {
    partition: Arc<Partition>,
    committed: Mutex<HashMap<String, GroupOffsets>>,
}

impl OffsetStore {
    /// Opens the offsets topic (creating it) and replays every commit in it.
    pub fn open(log: &Log) -> Result<Self, LogError> {
        let config = TopicConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 8 * 1024 * 1024,
            durability: Durability::GroupCommit,
            ..TopicConfig::default()
        };
        let topic = match log.topic(OFFSETS_TOPIC) {
            Ok(topic) => topic,
            Err(LogError::UnknownTopic(_)) => log.create_topic(OFFSETS_TOPIC, config)?,
            Err(error) => return Err(error),
        };
        let partition = topic.partition(0)?;
        let mut committed: HashMap<String, GroupOffsets> = HashMap::new();
        let mut offset = partition.log_start_offset();
        let mut replayed = 0usize;
        while offset < partition.end_offset() {
            let read = partition.read(offset, REPLAY_READ_BYTES)?;
            for (_, bytes) in batch::split(&read.bytes)? {
                for (_, record) in batch::decode_uncompressed(bytes)? {
                    apply(&mut committed, &record);
                    replayed += 1;
                }
            }
            offset = read.next_offset;
        }
        tracing::info!(
            records = replayed,
            groups = committed.len(),
            "replayed committed consumer offsets"
        );
        Ok(Self {
            partition,
            committed: Mutex::new(committed),
        })
    }

    /// Stores commits for `group`. Returns once they are durable.
    pub async fn commit(
        &self,
        group: &str,
        commits: Vec<(String, i32, Committed)>,
    ) -> Result<(), LogError> {
        if commits.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = commits
            .iter()
            .map(|(topic, partition, committed)| Record {
                timestamp: committed.commit_time_ms,
                key: Some(key_bytes(group, topic, *partition)),
                value: Some(serde_json::to_vec(committed).expect("offsets serialise")),
                headers: Vec::new(),
            })
            .collect();
        let info = {
            // Append and update memory together, so memory follows log order.
            let mut committed = self.committed.lock().expect("offsets lock");
            let info = self
                .partition
                .append(batch::encode(&records, ProducerStamp::none()))?;
            let offsets = committed.entry(group.to_string()).or_default();
            for (topic, partition, value) in commits {
                offsets.insert((topic, partition), value);
            }
            info
        };
        self.partition.wait_durable(info.last_offset + 1).await?;
        self.compact_if_due()
    }

    /// Keeps the offsets topic bounded: when it holds far more records than
    /// live offsets, the live offsets are written again and every segment
    /// wholly before that rewrite is deleted. Replaying the rest still ends
    /// in the same state, since the rewrite comes last.
    fn compact_if_due(&self) -> Result<(), LogError> {
        let committed = self.committed.lock().expect("offsets lock");
        let live: usize = committed.values().map(|offsets| offsets.len()).sum();
        let held = self.partition.end_offset() - self.partition.log_start_offset();
        if held < COMPACT_AFTER_RECORDS + 4 * live as i64 {
            return Ok(());
        }
        let records: Vec<Record> = committed
            .iter()
            .flat_map(|(group, offsets)| {
                offsets
                    .iter()
                    .map(move |((topic, partition), value)| Record {
                        timestamp: value.commit_time_ms,
                        key: Some(key_bytes(group, topic, *partition)),
                        value: Some(serde_json::to_vec(value).expect("offsets serialise")),
                        headers: Vec::new(),
                    })
            })
            .collect();
        let rewrite_start = self.partition.end_offset();
        for chunk in records.chunks(COMPACT_BATCH_RECORDS) {
            self.partition
                .append(batch::encode(chunk, ProducerStamp::none()))?;
        }
        let deleted = self.partition.delete_before(rewrite_start)?;
        tracing::info!(
            live,
            held,
            deleted_segments = deleted,
            "compacted {OFFSETS_TOPIC}"
        );
        Ok(())
    }

    /// Records the offsets topic holds now (for tests and metrics).
    pub fn records_held(&self) -> i64 {
        self.partition.end_offset() - self.partition.log_start_offset()
    }

    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<Committed> {
        let committed = self.committed.lock().expect("offsets lock");
        committed
            .get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed position of a group: ((topic, partition), committed).
    pub fn group(&self, group: &str) -> Vec<((String, i32), Committed)> {
        let committed = self.committed.lock().expect("offsets lock");
        committed
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<String> {
        self.committed
            .lock()
            .expect("offsets lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Forgets every offset of `group`, durably.
    pub async fn delete_group(&self, group: &str) -> Result<bool, LogError> {
        let info = {
            let mut committed = self.committed.lock().expect("offsets lock");
            let Some(offsets) = committed.get(group) else {
                return Ok(false);
            };
            if offsets.is_empty() {
                committed.remove(group);
                return Ok(true);
            }
            let records: Vec<Record> = offsets
                .keys()
                .map(|(topic, partition)| Record {
                    timestamp: 0,
                    key: Some(key_bytes(group, topic, *partition)),
                    value: None,
                    headers: Vec::new(),
                })
                .collect();
            let info = self
                .partition
                .append(batch::encode(&records, ProducerStamp::none()))?;
            committed.remove(group);
            info
        };
        self.partition.wait_durable(info.last_offset + 1).await?;
        Ok(true)
    }
}

fn key_bytes(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    serde_json::to_vec(&OffsetKey {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    })
    .expect("keys serialise")
}

fn apply(committed: &mut HashMap<String, GroupOffsets>, record: &Record) {
    let Some(key) = record
        .key
        .as_ref()
        .and_then(|k| serde_json::from_slice::<OffsetKey>(k).ok())
    else {
        tracing::warn!("skipping an unreadable record in {OFFSETS_TOPIC}");
        return;
    };
    match record
        .value
        .as_ref()
        .map(|v| serde_json::from_slice::<Committed>(v))
    {
        Some(Ok(value)) => {
            committed
                .entry(key.group)
                .or_default()
                .insert((key.topic, key.partition), value);
        }
        Some(Err(_)) => {
            tracing::warn!(group = %key.group, "skipping an unreadable offset in {OFFSETS_TOPIC}")
        }
        None => {
            if let Some(offsets) = committed.get_mut(&key.group) {
                offsets.remove(&(key.topic, key.partition));
                if offsets.is_empty() {
                    committed.remove(&key.group);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshet_log::LogOptions;

    fn committed(offset: i64) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: Some(format!("m{offset}")),
            commit_time_ms: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_survive_reopening_and_the_topic_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = Log::open(dir.path(), LogOptions::default()).unwrap();
            let store = OffsetStore::open(&log).unwrap();
            // Many commits of few partitions: far more records than live offsets.
            for round in 0..2_500i64 {
                let commits = (0..60)
                    .map(|p| ("orders".to_string(), p, committed(round)))
                    .collect();
                store.commit("readers", commits).await.unwrap();
            }
            store
                .commit("other", vec![("orders".into(), 0, committed(7))])
                .await
                .unwrap();
            store
                .commit("gone", vec![("orders".into(), 1, committed(9))])
                .await
                .unwrap();
            assert!(store.delete_group("gone").await.unwrap());
            assert!(
                store.records_held() < COMPACT_AFTER_RECORDS + 4 * 61 + 60 * 2_500 / 10,
                "held {}",
                store.records_held()
            );
            log.close().unwrap();
        }
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let store = OffsetStore::open(&log).unwrap();
        assert_eq!(store.fetch("readers", "orders", 59), Some(committed(2_499)));
        assert_eq!(store.fetch("other", "orders", 0), Some(committed(7)));
        assert_eq!(store.fetch("gone", "orders", 1), None);
        let mut groups = store.groups();
        groups.sort();
        assert_eq!(groups, ["other", "readers"]);
        assert!(
            log.partition(OFFSETS_TOPIC, 0).unwrap().log_start_offset() > 0,
            "old segments were deleted"
        );
    }
}
