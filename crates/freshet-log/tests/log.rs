//! The log through its public API: appends, reads, indexes, retention,
//! rolling, durability and reopening.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use freshet_core::ManualClock;
use freshet_log::{Durability, Log, LogError, LogOptions, TopicConfig};
use proptest::prelude::*;

#[test]
fn appended_batches_read_back_byte_for_byte_with_assigned_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let log = open(dir.path(), &clock, 256);
    let topic = log.create_topic("orders", small_topic(8 * 1024)).unwrap();
    let partition = topic.partition(1).unwrap();
    let mut sent = Vec::new();
    for i in 0..200u64 {
        let bytes = batch_of(1 + (i as usize % 5), 40, 1_000_000 + i as i64, i);
        let info = partition.append_and_wait(bytes.clone()).unwrap();
        sent.push((info.base_offset, bytes));
    }
    assert!(partition.segment_count() > 3, "small segments roll");
    let mut offset = 0;
    let mut got = Vec::new();
    while offset < partition.end_offset() {
        let read = partition.read(offset, 3_000).unwrap();
        for (header, bytes) in batches(&read.bytes) {
            offset = header.last_offset() + 1;
            got.push((header.base_offset, bytes));
        }
    }
    assert_eq!(got.len(), sent.len());
    for ((base, sent_bytes), (got_base, got_bytes)) in sent.iter().zip(&got) {
        assert_eq!(base, got_base);
        // Only the base offset (and leader epoch, 0 in both) differ.
        assert_eq!(&sent_bytes[8..], &got_bytes[8..]);
    }
    // The other partition is untouched.
    assert_eq!(topic.partition(0).unwrap().end_offset(), 0);
}

#[test]
fn a_read_from_inside_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 128);
    let partition = log
        .create_topic("t", small_topic(1 << 20))
        .unwrap()
        .partition(0)
        .unwrap();
    for i in 0..50 {
        partition
            .append_and_wait(batch_of(10, 20, i, i as u64))
            .unwrap();
    }
    for offset in [0, 5, 9, 10, 255, 499] {
        let read = partition.read(offset, 1).unwrap();
        let got = batches(&read.bytes);
        assert_eq!(
            got.len(),
            1,
            "at least one whole batch even when max_bytes is tiny"
        );
        let header = got[0].0;
        assert!(header.base_offset <= offset && offset <= header.last_offset());
    }
    assert!(partition.read(500, 1_000).unwrap().bytes.is_empty());
    assert!(matches!(
        partition.read(501, 1_000),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn reads_stop_at_a_batch_boundary_within_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let partition = log
        .create_topic("t", small_topic(1 << 20))
        .unwrap()
        .partition(0)
        .unwrap();
    let batch_bytes = batch_of(1, 100, 0, 0).len();
    for i in 0..20 {
        partition.append_and_wait(batch_of(1, 100, 0, i)).unwrap();
    }
    let read = partition
        .read(0, batch_bytes * 3 + batch_bytes / 2)
        .unwrap();
    assert_eq!(batches(&read.bytes).len(), 3);
}

#[test]
fn lookup_by_timestamp_finds_the_first_batch_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 200);
    let partition = log
        .create_topic("t", small_topic(4 * 1024))
        .unwrap()
        .partition(0)
        .unwrap();
    // Timestamps rise by 10 per batch, with a few out-of-order ones.
    let mut expected = Vec::new();
    for i in 0..300i64 {
        let timestamp = if i % 17 == 5 { i * 10 - 95 } else { i * 10 };
        let info = partition
            .append_and_wait(batch_of(2, 30, timestamp, i as u64))
            .unwrap();
        expected.push((info.base_offset, timestamp));
    }
    for target in (-5..3_100).step_by(13) {
        let want = expected.iter().find(|(_, ts)| *ts >= target).copied();
        assert_eq!(
            partition.find_by_timestamp(target).unwrap(),
            want,
            "target {target}"
        );
    }
}

#[test]
fn oversized_and_corrupt_batches_are_rejected_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let config = TopicConfig {
        max_message_bytes: 1_000,
        ..small_topic(1 << 20)
    };
    let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
    let large = batch_of(20, 100, 0, 0);
    assert!(matches!(
        partition.append_and_wait(large),
        Err(LogError::BatchTooLarge { .. })
    ));
    let mut corrupt = batch_of(1, 10, 0, 0);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(
        partition.append_and_wait(corrupt),
        Err(LogError::InvalidBatch(
            freshet_log::BatchError::CrcMismatch { .. }
        ))
    ));
    assert!(matches!(
        partition.append_and_wait(vec![1, 2, 3]),
        Err(LogError::InvalidBatch(_))
    ));
    assert_eq!(partition.end_offset(), 0);
    assert_eq!(partition.size_bytes(), 0);
}

#[test]
fn retention_by_time_and_size_deletes_whole_segments_and_ages_roll() {
    let dir = tempfile::tempdir().unwrap();
    let start_ms = 1_700_000_000_000;
    let clock = ManualClock::new(start_ms);
    let log = open(dir.path(), &clock, 4096);
    let config = TopicConfig {
        partitions: 1,
        retention_ms: Some(60_000),
        retention_bytes: None,
        segment_bytes: 2_000,
        segment_ms: 3_600_000,
        ..TopicConfig::default()
    };
    let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
    for i in 0..40 {
        partition
            .append_and_wait(batch_of(1, 100, start_ms + i, i as u64))
            .unwrap();
    }
    let segments = partition.segment_count();
    assert!(segments > 2);
    assert_eq!(
        log.enforce_retention().unwrap(),
        0,
        "nothing is older than a minute yet"
    );
    clock.advance_ms(61_000);
    let deleted = log.enforce_retention().unwrap();
    assert_eq!(
        deleted, segments,
        "every old segment goes, the active one after rolling"
    );
    assert_eq!(partition.segment_count(), 1);
    assert_eq!(partition.log_start_offset(), 40);
    assert_eq!(partition.end_offset(), 40);
    assert!(matches!(
        partition.read(0, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // New data after retention continues the offsets.
    assert_eq!(
        partition
            .append_and_wait(batch_of(1, 10, start_ms + 61_000, 99))
            .unwrap()
            .base_offset,
        40
    );
}

#[test]
fn the_active_segment_rolls_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let config = TopicConfig {
        partitions: 1,
        retention_ms: None,
        segment_ms: 1_000,
        ..TopicConfig::default()
    };
    let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
    partition.append_and_wait(batch_of(1, 10, 0, 0)).unwrap();
    clock.advance_ms(999);
    log.enforce_retention().unwrap();
    assert_eq!(partition.segment_count(), 1);
    clock.advance_ms(1);
    log.enforce_retention().unwrap();
    assert_eq!(
        partition.segment_count(),
        2,
        "the segment rolled once its first append was a second old"
    );
    log.enforce_retention().unwrap();
    assert_eq!(
        partition.segment_count(),
        2,
        "an empty active segment does not roll"
    );
    // Appending to an aged segment rolls it first, too.
    partition.append_and_wait(batch_of(1, 10, 0, 1)).unwrap();
    clock.advance_ms(1_000);
    partition.append_and_wait(batch_of(1, 10, 0, 2)).unwrap();
    assert_eq!(partition.segment_count(), 3);
}

#[test]
fn retention_by_size_keeps_at_most_the_limit_plus_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let config = TopicConfig {
        partitions: 1,
        retention_ms: None,
        retention_bytes: Some(5_000),
        segment_bytes: 1_024,
        ..TopicConfig::default()
    };
    let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
    for i in 0..100 {
        partition
            .append_and_wait(batch_of(1, 150, i, i as u64))
            .unwrap();
    }
    log.enforce_retention().unwrap();
    let size = partition.size_bytes();
    assert!(
        size < 5_000 + 1_024,
        "size {size} over the limit plus one segment"
    );
    assert!(
        size >= 5_000 - 1_024,
        "size {size}: retention deleted too much"
    );
    let start = partition.log_start_offset();
    assert!(start > 0);
    let read = partition.read(start, 1 << 20).unwrap();
    assert_eq!(batches(&read.bytes).first().unwrap().0.base_offset, start);
}

#[test]
fn mapped_segments_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let partition = log
        .create_topic("t", small_topic(1_024))
        .unwrap()
        .partition(0)
        .unwrap();
    for i in 0..200 {
        partition
            .append_and_wait(batch_of(1, 200, i, i as u64))
            .unwrap();
    }
    assert!(partition.segment_count() > 50);
    let mut offset = 0;
    while offset < partition.end_offset() {
        let read = partition.read(offset, 100).unwrap();
        offset = batches(&read.bytes).last().unwrap().0.last_offset() + 1;
        assert!(log.mapped_segments() <= 8);
    }
    assert_eq!(log.mapped_segments(), 8, "every sealed segment was read");
}

#[test]
fn a_clean_close_reopens_without_scanning_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    {
        let log = open(dir.path(), &clock, 512);
        let partition = log
            .create_topic("t", small_topic(4_096))
            .unwrap()
            .partition(0)
            .unwrap();
        for i in 0..100 {
            partition
                .append_and_wait(batch_of(2, 50, i, i as u64))
                .unwrap();
        }
        log.close().unwrap();
        assert!(matches!(
            partition.append_and_wait(batch_of(1, 1, 0, 0)),
            Err(LogError::ShuttingDown)
        ));
    }
    let log = open(dir.path(), &clock, 512);
    assert!(log.recovered_cleanly());
    let topic = log.topic("t").unwrap();
    assert_eq!(topic.config(), small_topic(4_096));
    let partition = topic.partition(0).unwrap();
    assert_eq!(partition.end_offset(), 200);
    assert_eq!(
        partition
            .append_and_wait(batch_of(1, 1, 0, 0))
            .unwrap()
            .base_offset,
        200
    );
    assert_eq!(partition.find_by_timestamp(50).unwrap().unwrap().0, 100);
}

#[test]
fn topics_are_created_altered_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    assert!(matches!(
        log.create_topic("bad/name", TopicConfig::default()),
        Err(LogError::InvalidTopicName { .. })
    ));
    let bad = TopicConfig {
        partitions: 0,
        ..TopicConfig::default()
    };
    assert!(matches!(
        log.create_topic("t", bad),
        Err(LogError::InvalidConfig(_))
    ));
    log.create_topic("t", TopicConfig::default()).unwrap();
    assert!(matches!(
        log.create_topic("t", TopicConfig::default()),
        Err(LogError::TopicExists(_))
    ));
    let grown = TopicConfig {
        partitions: 3,
        ..TopicConfig::default()
    };
    assert_eq!(log.ensure_topic("t", grown).unwrap().partitions().len(), 3);
    assert!(
        log.alter_topic("t", TopicConfig::default()).is_err(),
        "partitions never shrink"
    );
    log.partition("t", 2)
        .unwrap()
        .append_and_wait(batch_of(1, 1, 0, 0))
        .unwrap();
    log.delete_topic("t").unwrap();
    assert!(matches!(log.topic("t"), Err(LogError::UnknownTopic(_))));
    log.close().unwrap();
    let log = open(dir.path(), &clock, 4096);
    assert!(log.topics().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_wait_for_new_data_and_wake_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let partition = log
        .create_topic("t", small_topic(1 << 20))
        .unwrap()
        .partition(0)
        .unwrap();
    assert!(
        !partition.wait_for_data(0, Duration::from_millis(20)).await,
        "times out with no data"
    );
    let waiter = {
        let partition = Arc::clone(&partition);
        tokio::spawn(async move { partition.wait_for_data(0, Duration::from_secs(30)).await })
    };
    // Wait until the reader is parked, then append.
    while partition.waiting_readers() == 0 {
        tokio::task::yield_now().await;
    }
    partition.append_and_wait(batch_of(1, 1, 0, 0)).unwrap();
    assert!(waiter.await.unwrap());
    assert_eq!(partition.waiting_readers(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_waits_for_the_fsync_under_each_policy() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    for (name, durability) in [
        ("group", Durability::GroupCommit),
        ("each", Durability::EveryBatch),
        ("none", Durability::None),
    ] {
        let config = TopicConfig {
            durability,
            flush_interval_ms: 5,
            ..small_topic(1 << 20)
        };
        let partition = log
            .create_topic(name, config)
            .unwrap()
            .partition(0)
            .unwrap();
        // A flush the previous topic still had scheduled lands before this.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = log
            .stats()
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut last = 0;
        for i in 0..50 {
            last = partition
                .append_and_wait(batch_of(3, 10, 0, i))
                .unwrap()
                .last_offset;
        }
        tokio::time::timeout(Duration::from_secs(10), partition.wait_durable(last + 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(partition.durable_offset(), 150);
        let fsyncs = log
            .stats()
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed)
            - before;
        match durability {
            Durability::EveryBatch => assert_eq!(fsyncs, 50),
            Durability::GroupCommit => assert!(
                (1..50).contains(&fsyncs),
                "group commit fsynced {fsyncs} times for 50 appends"
            ),
            Durability::None => assert_eq!(fsyncs, 0),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_sequence_of_appends_reads_back_in_order(
        sizes in prop::collection::vec((1usize..8, 0usize..300), 1..80),
        segment_bytes in 1_024u64..8_192,
        interval_bytes in 64u64..2_048,
        max_bytes in 1usize..5_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(0);
        let log = open(dir.path(), &clock, interval_bytes);
        let config = TopicConfig { max_message_bytes: 1_024, ..small_topic(segment_bytes) };
        let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
        let mut sent = Vec::new();
        for (i, (count, value_bytes)) in sizes.into_iter().enumerate() {
            let bytes = batch_of(count, value_bytes, i as i64, i as u64);
            match partition.append_and_wait(bytes.clone()) {
                Ok(info) => sent.push((info.base_offset, info.last_offset, bytes)),
                Err(LogError::BatchTooLarge { .. }) => prop_assert!(bytes.len() > 1_024),
                Err(error) => panic!("{error}"),
            }
        }
        // Read from every offset: the first batch returned holds it.
        for &(base, last, _) in &sent {
            for offset in [base, last] {
                let read = partition.read(offset, max_bytes).unwrap();
                let got = batches(&read.bytes);
                prop_assert!(got[0].0.base_offset <= offset && offset <= got[0].0.last_offset());
            }
        }
        let mut offset = 0;
        let mut index = 0;
        while offset < partition.end_offset() {
            for (header, bytes) in batches(&partition.read(offset, max_bytes).unwrap().bytes) {
                prop_assert_eq!(header.base_offset, sent[index].0);
                prop_assert_eq!(&bytes[8..], &sent[index].2[8..]);
                offset = header.last_offset() + 1;
                index += 1;
            }
        }
        prop_assert_eq!(index, sent.len());
    }
}

fn idempotent_batch(
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    records: usize,
    tag: u64,
) -> Vec<u8> {
    use freshet_log::batch::{self, ProducerStamp, Record};
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            timestamp: 5,
            value: Some(format!("{tag}-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    batch::encode(
        &records,
        ProducerStamp {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
        },
    )
}

#[test]
fn idempotent_retries_are_deduplicated_across_clean_and_unclean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let config = TopicConfig {
        partitions: 1,
        segment_bytes: 1_024,
        ..TopicConfig::default()
    };
    let producer_id;
    {
        let log = open(dir.path(), &clock, 256);
        producer_id = log.allocate_producer_id().unwrap();
        let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
        for i in 0..20 {
            let info = partition
                .append_and_wait(idempotent_batch(producer_id, 0, i * 2, 2, i as u64))
                .unwrap();
            assert!(!info.duplicate);
        }
        let retry = partition
            .append_and_wait(idempotent_batch(producer_id, 0, 38, 2, 19))
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.base_offset, retry.last_offset), (38, 39));
        assert_eq!(partition.end_offset(), 40, "a retry writes nothing");
        let gap = partition.append_and_wait(idempotent_batch(producer_id, 0, 45, 1, 99));
        assert!(matches!(
            gap,
            Err(LogError::Producer(
                freshet_log::ProducerError::OutOfOrderSequence {
                    expected: 40,
                    got: 45,
                    ..
                }
            ))
        ));
        log.close().unwrap();
    }
    {
        let log = open(dir.path(), &clock, 256);
        let partition = log.partition("t", 0).unwrap();
        assert!(
            partition
                .append_and_wait(idempotent_batch(producer_id, 0, 36, 2, 18))
                .unwrap()
                .duplicate
        );
        assert!(
            !partition
                .append_and_wait(idempotent_batch(producer_id, 0, 40, 2, 20))
                .unwrap()
                .duplicate
        );
        // Dropped without close: the state must come back from the log itself.
    }
    let log = open(dir.path(), &clock, 256);
    let partition = log.partition("t", 0).unwrap();
    let retry = partition
        .append_and_wait(idempotent_batch(producer_id, 0, 40, 2, 20))
        .unwrap();
    assert!(
        retry.duplicate,
        "a retry after an unclean restart is still recognised"
    );
    assert_eq!(retry.base_offset, 40);
    assert_eq!(partition.end_offset(), 42);
    assert!(
        log.allocate_producer_id().unwrap() > producer_id,
        "producer ids are never reused"
    );
}

#[test]
fn one_process_at_a_time_opens_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let log = open(dir.path(), &clock, 4096);
    let options = LogOptions {
        clock: Arc::new(clock.clone()),
        ..LogOptions::default()
    };
    let error = Log::open(dir.path(), options.clone()).unwrap_err();
    assert!(
        error.to_string().contains("another Freshet process"),
        "{error}"
    );
    log.close().unwrap();
    Log::open(dir.path(), options).unwrap().close().unwrap();
}

#[test]
fn appends_beyond_the_memory_budget_read_back_from_the_file_before_and_after_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let options = LogOptions {
        clock: Arc::new(clock.clone()),
        // Only the chunk being written stays in memory.
        recent_bytes: 1,
        direct_writes: true,
        ..LogOptions::default()
    };
    let config = TopicConfig {
        partitions: 1,
        segment_bytes: 64 << 20,
        max_message_bytes: 1 << 20,
        ..TopicConfig::default()
    };
    let mut sent = Vec::new();
    let mut written = 0u64;
    {
        let log = Log::open(dir.path(), options.clone()).unwrap();
        let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
        // About 24 MiB in batches of odd sizes: three chunks and more, with
        // block boundaries inside batches.
        for i in 0..300u64 {
            let bytes = batch_of(
                7 + (i as usize % 13),
                10_000 + (i as usize * 37) % 3_000,
                i as i64,
                i,
            );
            written += bytes.len() as u64;
            let info = partition.append_and_wait(bytes.clone()).unwrap();
            sent.push((info.base_offset, bytes));
        }
        assert_eq!(partition.segment_count(), 1);
        let read_all = |partition: &freshet_log::Partition| {
            let mut offset = 0;
            let mut got = Vec::new();
            while offset < partition.end_offset() {
                let read = partition.read(offset, 1 << 20).unwrap();
                assert!(!read.bytes.is_empty());
                for (header, bytes) in batches(&read.bytes) {
                    offset = header.last_offset() + 1;
                    got.push((header.base_offset, bytes));
                }
            }
            got
        };
        let got = read_all(&partition);
        assert_eq!(got.len(), sent.len());
        for ((base, sent_bytes), (got_base, got_bytes)) in sent.iter().zip(&got) {
            assert_eq!(base, got_base);
            assert_eq!(&sent_bytes[8..], &got_bytes[8..]);
        }
        // A read from inside the oldest bytes, no longer in memory.
        let inside = partition.read(sent[3].0 + 1, 100).unwrap();
        assert_eq!(batches(&inside.bytes)[0].0.base_offset, sent[3].0);
        // Dropped without close: an unclean stop, as after kill -9.
    }
    let segment = dir.path().join("log/t/0/00000000000000000000.log");
    let length = std::fs::metadata(&segment).unwrap().len();
    assert!(
        length == written || (length.is_multiple_of(4096) && length - written < 4096),
        "the file ends at the last batch or the block holding it: {length} for {written}"
    );
    let log = Log::open(dir.path(), options).unwrap();
    assert!(!log.recovered_cleanly());
    let partition = log.partition("t", 0).unwrap();
    let records: i64 = (0..300).map(|i| 7 + i % 13).sum();
    assert_eq!(partition.end_offset(), records, "nothing was cut");
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        written,
        "recovery cuts the zeros after the last batch"
    );
    let next = partition.append_and_wait(batch_of(3, 100, 0, 999)).unwrap();
    assert_eq!(next.base_offset, partition.end_offset() - 3);
    let mut offset = 0;
    let mut count = 0;
    while offset < partition.end_offset() {
        let read = partition.read(offset, 1 << 20).unwrap();
        for (header, bytes) in batches(&read.bytes) {
            if let Some((base, sent_bytes)) = sent.get(count) {
                assert_eq!(header.base_offset, *base);
                assert_eq!(&sent_bytes[8..], &bytes[8..]);
            }
            offset = header.last_offset() + 1;
            count += 1;
        }
    }
    assert_eq!(count, sent.len() + 1);
    log.close().unwrap();
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        written + batch_of(3, 100, 0, 999).len() as u64,
        "a clean close leaves exactly the batches"
    );
}
