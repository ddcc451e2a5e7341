//! Idempotent-producer state of one partition: per producer id, its epoch
//! and the last five batches it appended (their sequence and offset
//! ranges). A retried batch is answered with its original offsets; a gap in
//! sequence numbers is refused. The state is rebuilt from the batch headers
//! in the log, starting from a snapshot written at each segment roll and on
//! clean close.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::BatchHeader;
use crate::error::{LogError, Result};
use crate::files;

/// Batches remembered per producer (Kafka's `NUM_BATCHES_TO_RETAIN`).
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Producers remembered per partition; the least recently active is
/// forgotten first (it then gets UNKNOWN_PRODUCER_ID and re-initialises).
pub const PRODUCERS_PER_PARTITION_MAX: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct AppendedBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<AppendedBatch>,
    last_offset: i64,
}

/// Why an idempotent batch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: out-of-order sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {got} is older than the current {current}")]
    FencedEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error("producer {producer_id} is unknown here and its first batch has sequence {got}, not 0")]
    UnknownProducer { producer_id: i64, got: i32 },
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ProducerError> {
        if header.producer_id < 0 || header.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let producer_id = header.producer_id;
        let got = header.base_sequence;
        let Some(entry) = self.producers.get(&producer_id) else {
            return if got == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::UnknownProducer { producer_id, got })
            };
        };
        if header.producer_epoch < entry.epoch {
            return Err(ProducerError::FencedEpoch {
                producer_id,
                current: entry.epoch,
                got: header.producer_epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            return if got == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    got,
                })
            };
        }
        let last_sequence = header.last_sequence();
        if let Some(duplicate) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == got && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: duplicate.base_offset,
                last_offset: duplicate.last_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if got != expected {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id,
                expected,
                got,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch the log appended (its offsets assigned).
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.base_sequence < 0 {
            return;
        }
        let batch = AppendedBatch {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        };
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_offset: header.last_offset(),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(batch);
        entry.last_offset = header.last_offset();
        while entry.batches.len() > BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, e)| e.last_offset)
                .map(|(id, _)| *id)
                .expect("non-empty");
            self.producers.remove(&oldest);
        }
    }
}

/// A snapshot of the producer states as of (just before) `offset`.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    offset: i64,
    states: ProducerStates,
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.producers"))
}

/// Writes the snapshot for `offset` and keeps only the two newest.
pub(crate) fn write_snapshot(dir: &Path, offset: i64, states: &ProducerStates) -> Result<()> {
    let json = serde_json::to_vec(&Snapshot {
        offset,
        states: states.clone(),
    })
    .expect("producer state serialises");
    files::write_atomically(&snapshot_path(dir, offset), &json)?;
    let mut offsets = snapshot_offsets(dir)?;
    offsets.sort_unstable();
    for old in offsets.iter().rev().skip(2) {
        let _ = std::fs::remove_file(snapshot_path(dir, *old));
    }
    Ok(())
}

fn snapshot_offsets(dir: &Path) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(LogError::io(dir))? {
        let path = entry.map_err(LogError::io(dir))?.path();
        if let Some(offset) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".producers"))
            .and_then(|n| n.parse().ok())
        {
            offsets.push(offset);
        }
    }
    Ok(offsets)
}

/// The newest readable snapshot at or below `end_offset`, deleting any
/// above it (their offsets were cut by recovery). Returns (offset, states);
/// with none, replay starts at `start_offset` from empty state.
pub(crate) fn load_snapshot(
    dir: &Path,
    start_offset: i64,
    end_offset: i64,
) -> Result<(i64, ProducerStates)> {
    let mut offsets = snapshot_offsets(dir)?;
    offsets.sort_unstable();
    for &offset in offsets.iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset > end_offset {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok())
        {
            Some(snapshot) if snapshot.offset == offset && offset >= start_offset => {
                return Ok((offset, snapshot.states));
            }
            _ => {
                tracing::warn!(snapshot = %path.display(), "ignoring an unreadable or stale producer snapshot")
            }
        }
    }
    Ok((start_offset, ProducerStates::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, ProducerStamp, Record};

    fn header(
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        records: usize,
        base_offset: i64,
    ) -> BatchHeader {
        let records: Vec<Record> = (0..records)
            .map(|_| Record {
                timestamp: 1,
                value: Some(vec![1]),
                ..Default::default()
            })
            .collect();
        let mut bytes = batch::encode(
            &records,
            ProducerStamp {
                producer_id,
                producer_epoch: epoch,
                base_sequence: sequence,
            },
        );
        batch::assign_offset(&mut bytes, base_offset);
        batch::validate(&bytes).unwrap()
    }

    #[test]
    fn duplicates_get_their_original_offsets_and_gaps_are_refused() {
        let mut states = ProducerStates::default();
        let first = header(7, 0, 0, 3, 100);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Append));
        states.record(&first);
        let second = header(7, 0, 3, 2, 103);
        assert_eq!(states.check(&second), Ok(SequenceCheck::Append));
        states.record(&second);
        assert_eq!(
            states.check(&header(7, 0, 0, 3, 0)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
        assert_eq!(
            states.check(&header(7, 0, 3, 2, 0)),
            Ok(SequenceCheck::Duplicate {
                base_offset: 103,
                last_offset: 104
            })
        );
        assert_eq!(
            states.check(&header(7, 0, 6, 1, 0)),
            Err(ProducerError::OutOfOrderSequence {
                producer_id: 7,
                expected: 5,
                got: 6
            })
        );
        assert_eq!(
            states.check(&header(7, 0, 5, 1, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            states.record(&header(1, 0, i, 1, i64::from(i)));
        }
        assert!(matches!(
            states.check(&header(1, 0, 2, 1, 0)),
            Ok(SequenceCheck::Duplicate { base_offset: 2, .. })
        ));
        assert!(matches!(
            states.check(&header(1, 0, 1, 1, 0)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn epochs_fence_old_producers_and_restart_sequences() {
        let mut states = ProducerStates::default();
        states.record(&header(9, 1, 0, 1, 0));
        assert!(matches!(
            states.check(&header(9, 0, 1, 1, 0)),
            Err(ProducerError::FencedEpoch { .. })
        ));
        assert_eq!(
            states.check(&header(9, 2, 0, 1, 0)),
            Ok(SequenceCheck::Append)
        );
        assert!(matches!(
            states.check(&header(9, 2, 5, 1, 0)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            states.check(&header(10, 0, 4, 1, 0)),
            Err(ProducerError::UnknownProducer { .. })
        ));
        assert_eq!(
            states.check(&header(-1, -1, -1, 1, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn sequences_wrap_past_i32_max() {
        let mut states = ProducerStates::default();
        states.record(&header(3, 0, 0, 1, 0));
        let mut states_at_max = states.clone();
        states_at_max
            .producers
            .get_mut(&3)
            .unwrap()
            .batches
            .back_mut()
            .unwrap()
            .last_sequence = i32::MAX;
        assert_eq!(
            states_at_max.check(&header(3, 0, 0, 1, 1)),
            Ok(SequenceCheck::Append)
        );
    }
}
