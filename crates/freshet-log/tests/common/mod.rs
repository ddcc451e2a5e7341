//! Helpers shared by the log's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_core::ManualClock;
use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_log::{AppendInfo, Log, LogOptions, Partition, TopicConfig};

/// Appends that return once the writer thread has put the bytes in the
/// file. The tests' log writes directly, from memory, behind the appends
/// (`direct_writes`): an append reaches the file, and readers, an instant
/// after it returns.
pub trait AppendAndWait {
    fn append_and_wait(&self, bytes: Vec<u8>) -> freshet_log::Result<AppendInfo>;
}

impl AppendAndWait for Arc<Partition> {
    fn append_and_wait(&self, bytes: Vec<u8>) -> freshet_log::Result<AppendInfo> {
        let info = self.append(bytes)?;
        wait_written(self, info.last_offset + 1);
        Ok(info)
    }
}

/// Waits until `partition` holds everything before `offset` in its file.
pub fn wait_written(partition: &Partition, offset: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while partition.end_offset() < offset {
        assert!(
            Instant::now() < deadline,
            "an append never reached the file"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

pub fn batch_of(count: usize, value_bytes: usize, timestamp: i64, tag: u64) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            timestamp,
            key: Some(format!("key-{tag}-{i}").into_bytes()),
            value: Some(format!("{tag}:{i}:{}", "x".repeat(value_bytes)).into_bytes()),
            headers: vec![
                ("h".into(), Some(b"1".to_vec())),
                ("h".into(), Some(b"2".to_vec())),
            ],
        })
        .collect();
    batch::encode(&records, ProducerStamp::none())
}

pub fn open(dir: &Path, clock: &ManualClock, interval_bytes: u64) -> Log {
    let options = LogOptions {
        clock: Arc::new(clock.clone()),
        index_interval_bytes: interval_bytes,
        mapped_segments_max: 8,
        // Small, so reads of older bytes go to the files.
        recent_bytes: 1 << 20,
        direct_writes: true,
    };
    Log::open(dir, options).expect("open log")
}

pub fn small_topic(segment_bytes: u64) -> TopicConfig {
    TopicConfig {
        partitions: 2,
        segment_bytes,
        max_message_bytes: 64 * 1024,
        ..TopicConfig::default()
    }
}

/// Every batch in a read, split apart.
pub fn batches(bytes: &[u8]) -> Vec<(batch::BatchHeader, Vec<u8>)> {
    batch::split(bytes)
        .expect("reads return whole valid batches")
        .into_iter()
        .map(|(h, b)| (h, b.to_vec()))
        .collect()
}
