//! What the simulator sent, written next to its run, and the comparison of
//! that with what a serving layer holds.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::generator::{Generated, Injection};

/// Distinct partition keys counted one by one; events of keys beyond them
/// are counted together (`other_keys`). Nexmark keys by auction, so its
/// keys grow with the stream and an uncapped map would grow without end.
pub const PER_KEY_MAX: usize = 10_000;

/// Send-time samples kept for latency checks.
const SEND_SAMPLES_MAX: usize = 10_000;

/// A stable 64-bit hash of an event id, for set comparison: eight bytes
/// a step, then a full avalanche (the finalizer of MurmurHash3), so the
/// wrapping sum over a set changes when any member does.
pub fn id_hash(id: &str) -> u64 {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ id.len() as u64;
    let mut words = id.as_bytes().chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        hash = (hash ^ word).wrapping_mul(MULTIPLIER).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash ^= u64::from_le_bytes(tail);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// Counts per partition key; foldhash because SipHash showed in profiles
/// of `simulate --null` (the map is serialized sorted, so order is moot).
type KeyCounts = HashMap<String, u64, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SendSample {
    pub event_id: String,
    pub sent_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub scenario: String,
    pub seed: u64,
    pub destination: String,
    pub sent: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub late: u64,
    pub out_of_order: u64,
    pub malformed: u64,
    /// Sum (wrapping) of `id_hash` over the unique event ids sent.
    pub unique_id_hash: u64,
    /// Serialized sorted by key, so the same events give the same file.
    #[serde(serialize_with = "sorted")]
    pub per_key: KeyCounts,
    /// Events whose key came after `PER_KEY_MAX` others.
    #[serde(default)]
    pub other_keys: u64,
    pub event_time_min_us: i64,
    pub event_time_max_us: i64,
    pub send_started_ms: i64,
    pub send_finished_ms: i64,
    pub send_errors: u64,
    /// Every n-th unique event's send time.
    pub send_samples: Vec<SendSample>,
}

fn sorted<S: serde::Serializer>(map: &KeyCounts, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().collect::<BTreeMap<_, _>>())
}

impl Manifest {
    pub fn new(scenario: &str, seed: u64, destination: &str, started_ms: i64) -> Self {
        Self {
            scenario: scenario.into(),
            seed,
            destination: destination.into(),
            event_time_min_us: i64::MAX,
            event_time_max_us: i64::MIN,
            send_started_ms: started_ms,
            send_finished_ms: started_ms,
            ..Self::default()
        }
    }

    /// Counts one event that was sent (acknowledged by the sink).
    pub fn record(&mut self, event: &Generated, sent_ms: i64) {
        self.sent += 1;
        self.send_finished_ms = self.send_finished_ms.max(sent_ms);
        match event.injection {
            Injection::Duplicate => self.duplicates += 1,
            Injection::Malformed => self.malformed += 1,
            injection => {
                self.unique += 1;
                if injection == Injection::Late {
                    self.late += 1;
                }
                if injection == Injection::OutOfOrder {
                    self.out_of_order += 1;
                }
                let id = event.event_id.as_deref().expect("valid events have ids");
                self.unique_id_hash = self.unique_id_hash.wrapping_add(id_hash(id));
                let known = self.per_key.len();
                match self.per_key.get_mut(&*event.key) {
                    Some(count) => *count += 1,
                    None if known < PER_KEY_MAX => {
                        self.per_key.insert(event.key.to_string(), 1);
                    }
                    None => self.other_keys += 1,
                }
                self.event_time_min_us = self.event_time_min_us.min(event.event_time_us);
                self.event_time_max_us = self.event_time_max_us.max(event.event_time_us);
                if self.unique.is_multiple_of(100) && self.send_samples.len() < SEND_SAMPLES_MAX {
                    self.send_samples.push(SendSample {
                        event_id: id.to_string(),
                        sent_ms,
                    });
                }
            }
        }
    }

    /// Events per second the simulator achieved.
    pub fn rate_per_s(&self) -> f64 {
        let seconds = (self.send_finished_ms - self.send_started_ms).max(1) as f64 / 1_000.0;
        self.sent as f64 / seconds
    }

    /// Compares what a serving layer holds with what was sent.
    /// `dedup_promised`: the layer claims to drop duplicates (a store
    /// table); a topic keeps what producers sent, duplicates included.
    pub fn verify(&self, observed: &Observed, dedup_promised: bool) -> Verification {
        let present_unique = observed.ids.len() as u64;
        let copies: u64 = observed.ids.values().map(|&n| u64::from(n)).sum();
        let repeats = copies - present_unique;
        let hash = observed
            .ids
            .keys()
            .fold(0u64, |sum, id| sum.wrapping_add(id_hash(id)));
        let allowed_repeats = if dedup_promised { 0 } else { self.duplicates };
        let same_set = hash == self.unique_id_hash && present_unique == self.unique;
        Verification {
            sent_unique: self.unique,
            present_unique,
            missing: self.unique.saturating_sub(present_unique),
            unexpected: present_unique.saturating_sub(self.unique),
            duplicates_injected: self.duplicates,
            duplicates_present: repeats,
            excess_duplicates: repeats.saturating_sub(allowed_repeats),
            malformed_sent: self.malformed,
            malformed_present: observed.malformed,
            same_set,
            ok: same_set && repeats <= allowed_repeats,
        }
    }
}

/// What a serving layer was seen to hold.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Copies seen per event id.
    pub ids: HashMap<String, u32>,
    /// Records that were not valid events.
    pub malformed: u64,
}

impl Observed {
    /// Counts one record's payload.
    pub fn add(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("eventId")?.as_str().map(String::from))
        {
            Some(id) => *self.ids.entry(id).or_default() += 1,
            None => self.malformed += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub sent_unique: u64,
    pub present_unique: u64,
    pub missing: u64,
    pub unexpected: u64,
    pub duplicates_injected: u64,
    pub duplicates_present: u64,
    pub excess_duplicates: u64,
    pub malformed_sent: u64,
    pub malformed_present: u64,
    /// The ids present are exactly the unique ids sent (by count and hash).
    pub same_set: bool,
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, Options};
    use crate::scenario::Scenario;

    fn sent(count: usize) -> (Manifest, Vec<Generated>) {
        let mut generator = Generator::new(Options {
            scenario: Scenario::Iot,
            seed: 9,
            keys: 10,
            rate_per_s: 0,
            start_us: 0,
            duplicates: 0.01,
            late: 0.0,
            late_by_ms: 0,
            out_of_order: 0.0,
            disorder_ms: 0,
            malformed: 0.01,
        });
        let mut manifest = Manifest::new("iot", 9, "test", 0);
        let events: Vec<Generated> = (0..count).map(|_| generator.next_event()).collect();
        for event in &events {
            manifest.record(event, 1);
        }
        (manifest, events)
    }

    #[test]
    fn everything_delivered_passes_and_a_loss_or_extra_copy_fails() {
        let (manifest, events) = sent(5_000);
        let mut observed = Observed::default();
        for event in &events {
            observed.add(&event.payload);
        }
        let verdict = manifest.verify(&observed, false);
        assert!(verdict.ok, "{verdict:?}");
        assert_eq!(verdict.malformed_present, manifest.malformed);
        assert!(
            !manifest.verify(&observed, true).ok,
            "a store promising dedup must not show the injected duplicates"
        );

        let mut lost = Observed::default();
        for event in events.iter().skip(1) {
            lost.add(&event.payload);
        }
        let verdict = manifest.verify(&lost, false);
        assert!(!verdict.ok && verdict.missing == 1, "{verdict:?}");

        let mut doubled = observed.clone();
        let first = events
            .iter()
            .find(|e| e.injection == Injection::None)
            .unwrap();
        doubled.add(&first.payload);
        let verdict = manifest.verify(&doubled, false);
        assert!(!verdict.ok && verdict.excess_duplicates == 1, "{verdict:?}");
    }
}
