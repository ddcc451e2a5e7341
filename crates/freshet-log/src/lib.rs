//! Freshet's durable, partitioned, replayable log: the storage engine every
//! other part of Freshet reads. No sockets: the Kafka front end and the
//! in-process consumers call into it.
//!
//! On disk, under the data directory:
//! `log/{topic}/topic.json` and `log/{topic}/{partition}/{base_offset:020}.log`
//! with `.index` and `.timeindex` beside each sealed segment,
//! `log/{topic}/{partition}/recovery-point`, and `log/.clean-shutdown` after
//! a clean close.

pub mod batch;
mod config;
mod error;
mod files;
mod flusher;
mod index;
mod partition;
mod producers;
mod recent;
mod segment;
mod stats;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use freshet_core::{Clock, SystemClock, limits};
use serde::{Deserialize, Serialize};

pub use crate::config::{Durability, TopicConfig, validate_topic_name};
pub use crate::error::{BatchError, LogError, Result};
pub use crate::files::{FileCache, sync_dir, write_atomically};
pub use crate::index::SegmentIndex;
pub use crate::partition::{AppendInfo, Partition, PartitionRecovery, ReadResult};
pub use crate::producers::{ProducerError, ProducerStates, SequenceCheck};
pub use crate::stats::{FSYNC_BUCKETS_MICROS, LogStats};

use crate::flusher::{Flusher, Job};
use crate::recent::Recent;

const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Locked while a process has the log open: two processes would each cut
/// and rewrite files the other has mapped.
const LOCK_FILE: &str = ".lock";
const TOPIC_META_FILE: &str = "topic.json";
const DELETED_PREFIX: &str = ".deleted-";
const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Producer ids are reserved on disk this many at a time.
const PRODUCER_ID_BLOCK: i64 = 1_000;

/// Hands out producer ids that are never reused, even across crashes: ids
/// are reserved on disk in blocks before any of the block is handed out.
#[derive(Debug)]
struct ProducerIds {
    next: i64,
    reserved_until: i64,
}

/// How the log runs (as opposed to what each topic holds).
#[derive(Debug, Clone)]
pub struct LogOptions {
    pub clock: Arc<dyn Clock>,
    pub index_interval_bytes: u64,
    pub mapped_segments_max: usize,
    /// Bytes of recent appends kept in memory across the log; the newest
    /// two chunks of each active segment are kept whatever this says.
    pub recent_bytes: u64,
    /// Write active segments straight to the device from chunks of memory
    /// that also serve recent reads, instead of through the page cache.
    pub direct_writes: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            index_interval_bytes: limits::INDEX_INTERVAL_BYTES,
            mapped_segments_max: limits::MAPPED_SEGMENTS_MAX,
            recent_bytes: limits::RECENT_BYTES_DEFAULT,
            direct_writes: false,
        }
    }
}

/// What partitions share: handles, the flusher, the clock, counters.
#[derive(Debug)]
pub(crate) struct Shared {
    pub files: Arc<FileCache>,
    pub flusher: Arc<Flusher>,
    /// Writes appended bytes to the files, with direct writes.
    pub writer: Arc<Flusher>,
    pub clock: Arc<dyn Clock>,
    pub stats: Arc<LogStats>,
    pub interval_bytes: u64,
    pub recent: Arc<Recent>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicMeta {
    name: String,
    config: TopicConfig,
}

#[derive(Debug)]
pub struct Topic {
    name: String,
    dir: PathBuf,
    config: Arc<RwLock<TopicConfig>>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> TopicConfig {
        *self.config.read().expect("config lock")
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().expect("partitions lock").clone()
    }

    pub fn partition(&self, id: u32) -> Result<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(id as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: id,
            })
    }

    fn save_meta(&self) -> Result<()> {
        let meta = TopicMeta {
            name: self.name.clone(),
            config: self.config(),
        };
        let json = serde_json::to_vec_pretty(&meta).expect("topic metadata serialises");
        files::write_atomically(&self.dir.join(TOPIC_META_FILE), &json)
    }
}

/// The log: every topic and partition under one data directory.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    shared: Arc<Shared>,
    /// The flusher's and the writer's.
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovered_cleanly: bool,
    producer_ids: Mutex<ProducerIds>,
    /// Holds the data directory's lock until the log is closed or dropped.
    lock: Mutex<Option<fs::File>>,
}

impl Log {
    /// Opens (or creates) the log under `data_dir/log`, recovering every
    /// partition: after an unclean stop, torn or corrupt tails are cut so
    /// each partition keeps exactly a valid prefix.
    pub fn open(data_dir: &Path, options: LogOptions) -> Result<Self> {
        let dir = data_dir.join("log");
        fs::create_dir_all(&dir).map_err(LogError::io(&dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs::File::create(&lock_path).map_err(LogError::io(&lock_path))?;
        if let Err(error) = lock.try_lock() {
            let source = match error {
                fs::TryLockError::WouldBlock => std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "another Freshet process has this data directory open",
                ),
                fs::TryLockError::Error(error) => error,
            };
            return Err(LogError::Io {
                path: data_dir.to_path_buf(),
                source,
            });
        }
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        if clean {
            fs::remove_file(&marker).map_err(LogError::io(&marker))?;
            files::sync_dir(&dir)?;
        }
        let reserved = fs::read_to_string(dir.join(PRODUCER_IDS_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let (flusher, flusher_thread) = Flusher::start(Job::Flush);
        let (writer, writer_thread) = Flusher::start(Job::Write);
        let shared = Arc::new(Shared {
            files: Arc::new(FileCache::new(options.mapped_segments_max)),
            flusher,
            writer,
            clock: options.clock,
            stats: Arc::new(LogStats::default()),
            interval_bytes: options.index_interval_bytes,
            recent: Recent::new(options.recent_bytes, options.direct_writes),
        });
        let log = Self {
            dir: dir.clone(),
            topics: RwLock::new(BTreeMap::new()),
            shared,
            threads: Mutex::new(vec![flusher_thread, writer_thread]),
            recovered_cleanly: clean,
            lock: Mutex::new(Some(lock)),
            producer_ids: Mutex::new(ProducerIds {
                next: reserved,
                reserved_until: reserved,
            }),
        };
        for entry in fs::read_dir(&dir).map_err(LogError::io(&dir))? {
            let path = entry.map_err(LogError::io(&dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.starts_with(DELETED_PREFIX) {
                fs::remove_dir_all(&path).map_err(LogError::io(&path))?;
                continue;
            }
            if !path.is_dir() {
                continue;
            }
            let meta_path = path.join(TOPIC_META_FILE);
            let Ok(meta) = fs::read(&meta_path) else {
                tracing::warn!(dir = %path.display(), "ignoring a directory without topic.json");
                continue;
            };
            let meta: TopicMeta =
                serde_json::from_slice(&meta).map_err(|error| LogError::Corrupt {
                    path: meta_path.clone(),
                    position: 0,
                    reason: error.to_string(),
                })?;
            let topic = log.load_topic(&meta.name, meta.config, clean)?;
            log.topics
                .write()
                .expect("topics lock")
                .insert(meta.name, topic);
        }
        tracing::info!(dir = %dir.display(), topics = log.topics.read().expect("topics lock").len(), clean, "log opened");
        Ok(log)
    }

    /// A producer id never handed out before (for InitProducerId).
    pub fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().expect("producer ids lock");
        if ids.next >= ids.reserved_until {
            let reserved_until = ids.next + PRODUCER_ID_BLOCK;
            files::write_atomically(
                &self.dir.join(PRODUCER_IDS_FILE),
                reserved_until.to_string().as_bytes(),
            )?;
            ids.reserved_until = reserved_until;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    /// Whether the previous run closed the log cleanly.
    pub fn recovered_cleanly(&self) -> bool {
        self.recovered_cleanly
    }

    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }

    pub fn mapped_segments(&self) -> usize {
        self.shared.files.len()
    }

    fn load_topic(&self, name: &str, config: TopicConfig, clean: bool) -> Result<Arc<Topic>> {
        let dir = self.dir.join(name);
        let config = Arc::new(RwLock::new(config));
        let mut partitions = Vec::new();
        let count = config.read().expect("config lock").partitions;
        for id in 0..count {
            let (partition, recovery) = Partition::open(
                name,
                id,
                &dir.join(id.to_string()),
                Arc::clone(&config),
                Arc::clone(&self.shared),
                clean,
            )?;
            if recovery != PartitionRecovery::default() {
                tracing::warn!(
                    topic = name,
                    partition = id,
                    ?recovery,
                    "recovered partition after an unclean stop"
                );
            }
            partitions.push(Arc::new(partition));
        }
        Ok(Arc::new(Topic {
            name: name.to_string(),
            dir,
            config,
            partitions: RwLock::new(partitions),
        }))
    }

    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        config.validate()?;
        let mut topics = self.topics.write().expect("topics lock");
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).map_err(LogError::io(&dir))?;
        let meta = TopicMeta {
            name: name.to_string(),
            config,
        };
        files::write_atomically(
            &dir.join(TOPIC_META_FILE),
            &serde_json::to_vec_pretty(&meta).expect("serialises"),
        )?;
        files::sync_dir(&self.dir)?;
        let topic = self.load_topic(name, config, true)?;
        topics.insert(name.to_string(), Arc::clone(&topic));
        tracing::info!(
            topic = name,
            partitions = config.partitions,
            "created topic"
        );
        Ok(topic)
    }

    /// Changes a topic's settings. Partitions may only grow; new ones start empty.
    pub fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        config.validate()?;
        let topic = self.topic(name)?;
        let mut partitions = topic.partitions.write().expect("partitions lock");
        let existing = partitions.len() as u32;
        if config.partitions < existing {
            return Err(LogError::InvalidConfig(format!(
                "topic '{name}' has {existing} partitions; the count can only grow, not shrink to {}",
                config.partitions
            )));
        }
        *topic.config.write().expect("config lock") = config;
        for id in existing..config.partitions {
            let (partition, _) = Partition::open(
                name,
                id,
                &topic.dir.join(id.to_string()),
                Arc::clone(&topic.config),
                Arc::clone(&self.shared),
                true,
            )?;
            partitions.push(Arc::new(partition));
        }
        drop(partitions);
        topic.save_meta()?;
        Ok(topic)
    }

    /// Creates the topic, or alters it to `config` if it exists.
    pub fn ensure_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>> {
        match self.topic(name) {
            Ok(topic) if topic.config() == config => Ok(topic),
            Ok(_) => self.alter_topic(name, config),
            Err(LogError::UnknownTopic(_)) => self.create_topic(name, config),
            Err(error) => Err(error),
        }
    }

    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = self
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| LogError::UnknownTopic(name.into()))?;
        for partition in topic.partitions() {
            partition.close()?;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let graveyard = self.dir.join(format!("{DELETED_PREFIX}{name}-{nanos}"));
        fs::rename(&topic.dir, &graveyard).map_err(LogError::io(&topic.dir))?;
        files::sync_dir(&self.dir)?;
        fs::remove_dir_all(&graveyard).map_err(LogError::io(&graveyard))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.into()))
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        self.topic(topic)?.partition(partition)
    }

    /// Rolls aged segments and deletes those past retention, everywhere.
    /// Returns the number of segments deleted.
    pub fn enforce_retention(&self) -> Result<usize> {
        let mut deleted = 0;
        for topic in self.topics() {
            for partition in topic.partitions() {
                deleted += partition.enforce_retention()?;
            }
        }
        Ok(deleted)
    }

    /// Flushes every partition, writes indexes and the clean-shutdown
    /// marker, and stops the flusher and writer threads. Appends after this
    /// fail.
    pub fn close(&self) -> Result<()> {
        for topic in self.topics() {
            for partition in topic.partitions() {
                partition.close()?;
            }
        }
        self.stop_threads();
        files::write_atomically(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        self.lock.lock().expect("lock file lock").take();
        tracing::info!(dir = %self.dir.display(), "log closed cleanly");
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Without `close` this is an unclean stop, as after a crash; only
        // the flusher and writer threads are ended.
        self.stop_threads();
    }
}

impl Log {
    /// Ends the flusher and writer threads, after what they have queued.
    fn stop_threads(&self) {
        self.shared.writer.stop();
        self.shared.flusher.stop();
        for thread in self.threads.lock().expect("threads lock").drain(..) {
            let _ = thread.join();
        }
    }
}
