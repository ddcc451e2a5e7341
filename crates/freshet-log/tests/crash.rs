//! Crash recovery: after an unclean stop, with segment and index files cut
//! at random byte positions or with random bytes flipped, the log keeps
//! exactly a prefix of what was acknowledged and never serves a corrupt batch.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use freshet_core::ManualClock;
use freshet_log::{LogError, TopicConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Damage {
    Cut { file: usize, at: f64 },
    Flip { file: usize, at: f64, mask: u8 },
    Remove { file: usize },
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0.0..1.0f64).prop_map(|(file, at)| Damage::Cut { file, at }),
        (any::<usize>(), 0.0..1.0f64, 1u8..=255).prop_map(|(file, at, mask)| Damage::Flip {
            file,
            at,
            mask
        }),
        any::<usize>().prop_map(|file| Damage::Remove { file }),
    ]
}

fn partition_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn apply(damage: &Damage, files: &[PathBuf]) {
    let pick = |file: usize| &files[file % files.len()];
    let file = match damage {
        Damage::Cut { file, .. } | Damage::Flip { file, .. } | Damage::Remove { file } => *file,
    };
    if !pick(file).exists() {
        return; // removed by an earlier damage
    }
    match damage {
        Damage::Cut { file, at } => {
            let path = pick(*file);
            let length = fs::metadata(path).unwrap().len();
            let cut = (length as f64 * at) as u64;
            fs::OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(cut)
                .unwrap();
        }
        Damage::Flip { file, at, mask } => {
            let path = pick(*file);
            let mut bytes = fs::read(path).unwrap();
            if !bytes.is_empty() {
                let at = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
                bytes[at] ^= mask;
                fs::write(path, bytes).unwrap();
            }
        }
        Damage::Remove { file } => {
            let path = pick(*file);
            if path.extension().is_some_and(|e| e != "log") {
                fs::remove_file(path).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn recovery_keeps_a_prefix_and_never_serves_corruption(
        batch_sizes in prop::collection::vec((1usize..6, 0usize..200), 5..60),
        damages in prop::collection::vec(damage_strategy(), 1..4),
        forget_recovery_point in any::<bool>(),
        close_cleanly_before_more_appends in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(0);
        let config = TopicConfig { partitions: 1, segment_bytes: 2_048, ..TopicConfig::default() };
        let mut sent = Vec::new();
        {
            let log = open(dir.path(), &clock, 256);
            let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
            let half = batch_sizes.len() / 2;
            for (i, &(count, value_bytes)) in batch_sizes[..half].iter().enumerate() {
                let bytes = batch_of(count, value_bytes, i as i64, i as u64);
                sent.push((partition.append_and_wait(bytes.clone()).unwrap().base_offset, bytes));
            }
            if close_cleanly_before_more_appends {
                log.close().unwrap();
                drop(log);
                let log = open(dir.path(), &clock, 256);
                let partition = log.partition("t", 0).unwrap();
                for (i, &(count, value_bytes)) in batch_sizes[half..].iter().enumerate() {
                    let bytes = batch_of(count, value_bytes, (half + i) as i64, (half + i) as u64);
                    sent.push((partition.append_and_wait(bytes.clone()).unwrap().base_offset, bytes));
                }
                // Dropped without close: an unclean stop, as after kill -9.
            } else {
                for (i, &(count, value_bytes)) in batch_sizes[half..].iter().enumerate() {
                    let bytes = batch_of(count, value_bytes, (half + i) as i64, (half + i) as u64);
                    sent.push((partition.append_and_wait(bytes.clone()).unwrap().base_offset, bytes));
                }
            }
        }
        let partition_dir = dir.path().join("log/t/0");
        if forget_recovery_point {
            let _ = fs::remove_file(partition_dir.join("recovery-point"));
        }
        let files: Vec<PathBuf> = partition_files(&partition_dir)
            .into_iter()
            .filter(|p| p.file_name().unwrap() != "recovery-point")
            .collect();
        for damage in &damages {
            apply(damage, &files);
        }

        let log = open(dir.path(), &clock, 256);
        prop_assert!(!log.recovered_cleanly());
        let partition = log.partition("t", 0).unwrap();
        prop_assert_eq!(partition.log_start_offset(), 0);
        let mut offset = 0;
        let mut served = 0;
        let mut stopped_by_corruption = false;
        while offset < partition.end_offset() {
            match partition.read(offset, 700) {
                Ok(read) => {
                    prop_assert!(!read.bytes.is_empty(), "empty read at {} before the end {}", offset, partition.end_offset());
                    for (header, bytes) in batches(&read.bytes) {
                        let (base, expected) = &sent[served];
                        prop_assert_eq!(header.base_offset, *base);
                        prop_assert_eq!(&bytes[8..], &expected[8..], "served a batch that differs from the one acknowledged");
                        offset = header.last_offset() + 1;
                        served += 1;
                    }
                }
                Err(LogError::Corrupt { .. }) => {
                    stopped_by_corruption = true;
                    break;
                }
                Err(error) => panic!("unexpected error: {error}"),
            }
        }
        prop_assert!(served <= sent.len());
        if forget_recovery_point {
            // Without a recovery point every segment is checked on open, so
            // what remains is served whole.
            prop_assert!(!stopped_by_corruption, "a fully recovered log still holds a corrupt batch");
            prop_assert_eq!(offset, partition.end_offset());
        }
        if !stopped_by_corruption {
            // Offsets continue right after the kept prefix.
            let next = partition.append_and_wait(batch_of(1, 5, 0, 999)).unwrap().base_offset;
            prop_assert_eq!(next, sent.get(served).map_or(offset, |(base, _)| *base));
        }
    }
}

#[test]
fn an_untouched_unclean_stop_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let config = TopicConfig {
        partitions: 1,
        segment_bytes: 2_048,
        ..TopicConfig::default()
    };
    {
        let log = open(dir.path(), &clock, 256);
        let partition = log.create_topic("t", config).unwrap().partition(0).unwrap();
        for i in 0..100 {
            partition
                .append_and_wait(batch_of(2, 50, i, i as u64))
                .unwrap();
        }
    }
    let log = open(dir.path(), &clock, 256);
    assert!(!log.recovered_cleanly());
    let partition = log.partition("t", 0).unwrap();
    assert_eq!(partition.end_offset(), 200);
    assert_eq!(partition.find_by_timestamp(42).unwrap().unwrap().0, 84);
}
