//! Deterministic event generation: the same options and seed give the same
//! bytes, event for event. Injections follow seed 004 and product.md: a
//! duplicate repeats an earlier event byte for byte; late and out-of-order
//! events only shift event time; a malformed event is not valid JSON.

use std::sync::Arc;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{self, Scenario};

/// A duplicate follows its original within this many events.
const DUPLICATE_WINDOW: u64 = 1_024;

#[derive(Debug, Clone)]
pub struct Options {
    pub scenario: Scenario,
    pub seed: u64,
    /// Devices, stores, BINs or depots.
    pub keys: u64,
    /// Events per second the event times are spaced for (0: 1,000/s).
    pub rate_per_s: u64,
    /// Event time of the first event, µs since the epoch.
    pub start_us: i64,
    pub duplicates: f64,
    pub late: f64,
    pub late_by_ms: i64,
    pub out_of_order: f64,
    pub disorder_ms: i64,
    pub malformed: f64,
}

impl Options {
    /// Clean events of `scenario` (nothing injected), `rate_per_s` apart in
    /// event time from `start_us`.
    pub fn plain(scenario: Scenario, seed: u64, keys: u64, rate_per_s: u64, start_us: i64) -> Self {
        Self {
            scenario,
            seed,
            keys,
            rate_per_s,
            start_us,
            duplicates: 0.0,
            late: 0.0,
            late_by_ms: 0,
            out_of_order: 0.0,
            disorder_ms: 0,
            malformed: 0.0,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, fraction) in [
            ("duplicates", self.duplicates),
            ("late", self.late),
            ("out-of-order", self.out_of_order),
            ("malformed", self.malformed),
        ] {
            if !(0.0..=1.0).contains(&fraction) {
                return Err(format!(
                    "--{name} must be a fraction between 0 and 1, got {fraction}"
                ));
            }
        }
        if self.duplicates + self.malformed >= 1.0 {
            return Err(
                "--duplicates and --malformed together must stay below 1 (duplicates repeat original events)"
                    .into(),
            );
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    None,
    Duplicate,
    Late,
    OutOfOrder,
    Malformed,
}

/// One event to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Shared with every other event of the same key.
    pub key: Arc<str>,
    /// Shared, so remembering events for duplicates copies nothing (one
    /// allocation an event: `Bytes` would take a second when first cloned).
    pub payload: Arc<[u8]>,
    /// `None` for malformed events.
    pub event_id: Option<Arc<str>>,
    pub event_time_us: i64,
    pub injection: Injection,
}

#[derive(Debug)]
pub struct Generator {
    options: Options,
    rng: ChaCha8Rng,
    index: u64,
    sequences: Vec<u64>,
    /// Partition keys built so far, by key index (the seed scenarios).
    keys: Vec<Option<Arc<str>>>,
    /// Copies of recent events waiting for their turn, by the index at which
    /// each is due. Only events picked for duplication are kept, so an
    /// event costs nothing once it has been handed out.
    pending: Vec<(u64, Generated)>,
    interval_us: i64,
    /// Valid events built so far (Nexmark's stream position).
    built: u64,
    /// Where each event is written before it is copied out at its size.
    scratch: Vec<u8>,
}

impl Generator {
    pub fn new(options: Options) -> Self {
        let rate = if options.rate_per_s == 0 {
            1_000
        } else {
            options.rate_per_s
        };
        Self {
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            index: 0,
            sequences: vec![0; options.keys.min(1 << 24) as usize],
            keys: vec![None; options.keys.min(1 << 20) as usize],
            pending: Vec::new(),
            interval_us: (1_000_000 / rate).max(1) as i64,
            built: 0,
            scratch: Vec::with_capacity(1_024),
            options,
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The next event. Never fails; infinite.
    ///
    /// A duplicate is decided when its original is made: the copy is
    /// scheduled 1 to 1,024 events later. The odds are set so duplicates
    /// and malformed events are the asked fractions of all events sent.
    pub fn next_event(&mut self) -> Generated {
        let index = self.index;
        self.index += 1;
        if let Some(at) = self.pending.iter().position(|(due, _)| *due <= index) {
            let (_, mut duplicate) = self.pending.swap_remove(at);
            duplicate.injection = Injection::Duplicate;
            return duplicate;
        }
        let nominal_us = self.options.start_us + index as i64 * self.interval_us;
        let (duplicates, malformed) = (self.options.duplicates, self.options.malformed);
        // Of the events not taken by a due copy: malformed at this rate ...
        let malformed_odds = malformed / (1.0 - duplicates);
        // ... and copies made of each original at this mean.
        let copies_mean = duplicates / (1.0 - duplicates - malformed);
        let roll: f64 = self.rng.random();
        if roll < malformed_odds {
            let key_index = self.rng.random_range(0..self.options.keys);
            let (key, _) = self.build(key_index, nominal_us);
            // Cut the JSON short: never valid.
            let cut = self.scratch.len() / 2;
            return Generated {
                key,
                payload: Arc::from(&self.scratch[..cut]),
                event_id: None,
                event_time_us: nominal_us,
                injection: Injection::Malformed,
            };
        }
        let mut event_time_us = nominal_us;
        let mut injection = Injection::None;
        let shift: f64 = self.rng.random();
        if shift < self.options.late {
            event_time_us -= self.options.late_by_ms * 1_000;
            injection = Injection::Late;
        } else if shift < self.options.late + self.options.out_of_order
            && self.options.disorder_ms > 0
        {
            event_time_us -= self.rng.random_range(1..=self.options.disorder_ms * 1_000);
            injection = Injection::OutOfOrder;
        }
        let key_index = self.rng.random_range(0..self.options.keys);
        let (key, event_id) = self.build(key_index, event_time_us);
        let generated = Generated {
            key,
            payload: Arc::from(&self.scratch[..]),
            event_id: Some(event_id),
            event_time_us,
            injection,
        };
        if copies_mean > 0.0 {
            // Whole copies, and one more with the fraction's odds.
            let mut copies = copies_mean.floor() as u64;
            if self.rng.random::<f64>() < copies_mean.fract() {
                copies += 1;
            }
            for _ in 0..copies {
                let due = index + self.rng.random_range(1..=DUPLICATE_WINDOW);
                self.pending.push((due, generated.clone()));
            }
        }
        generated
    }

    /// Writes a new event's JSON into `scratch`; returns its key and id.
    fn build(&mut self, key_index: u64, event_time_us: i64) -> (Arc<str>, Arc<str>) {
        let slot = (key_index as usize) % self.sequences.len();
        // Per key for the seed scenarios (deviceSequenceNumber); Nexmark
        // counts its whole stream.
        let sequence = if self.options.scenario == Scenario::Nexmark {
            self.built
        } else {
            self.sequences[slot]
        };
        self.sequences[slot] += 1;
        self.built += 1;
        let event_id: Arc<str> = scenario::uuid(&mut self.rng);
        let elapsed_ms = (event_time_us - self.options.start_us) / 1_000;
        let scenario = self.options.scenario;
        let key = match self.keys.get(key_index as usize) {
            Some(Some(key)) => Arc::clone(key),
            cached => {
                let key: Arc<str> = Arc::from(scenario::partition_key(scenario, key_index));
                if cached.is_some() {
                    self.keys[key_index as usize] = Some(Arc::clone(&key));
                }
                key
            }
        };
        self.scratch.clear();
        let own_key = scenario::write_event(
            &mut self.scratch,
            scenario,
            &mut self.rng,
            &event_id,
            &key,
            key_index,
            sequence,
            event_time_us,
            elapsed_ms,
        );
        (own_key.unwrap_or(key), event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(scenario: Scenario) -> Options {
        Options {
            scenario,
            seed: 42,
            keys: 100,
            rate_per_s: 1_000,
            start_us: 1_700_000_000_000_000,
            duplicates: 0.001,
            late: 0.01,
            late_by_ms: 120_000,
            out_of_order: 0.05,
            disorder_ms: 5_000,
            malformed: 0.002,
        }
    }

    fn run(options: Options, count: usize) -> Vec<Generated> {
        let mut generator = Generator::new(options);
        (0..count).map(|_| generator.next_event()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        for scenario in [
            Scenario::Iot,
            Scenario::Retail,
            Scenario::Payments,
            Scenario::Logistics,
            Scenario::Nexmark,
        ] {
            let a = run(options(scenario), 2_000);
            let b = run(options(scenario), 2_000);
            assert_eq!(a, b, "{scenario:?}");
            let c = run(
                Options {
                    seed: 43,
                    ..options(scenario)
                },
                2_000,
            );
            assert_ne!(a, c);
        }
    }

    #[test]
    fn injected_fractions_are_within_tolerance_and_shaped_as_promised() {
        let events = run(options(Scenario::Iot), 200_000);
        let count = |kind| {
            events.iter().filter(|e| e.injection == kind).count() as f64 / events.len() as f64
        };
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.25 + 0.0002;
        assert!(
            near(count(Injection::Duplicate), 0.001),
            "duplicates {}",
            count(Injection::Duplicate)
        );
        assert!(
            near(count(Injection::Malformed), 0.002),
            "malformed {}",
            count(Injection::Malformed)
        );
        assert!(
            near(count(Injection::Late), 0.01 * 0.997),
            "late {}",
            count(Injection::Late)
        );
        assert!(
            near(count(Injection::OutOfOrder), 0.05 * 0.997),
            "out of order {}",
            count(Injection::OutOfOrder)
        );
        let originals: std::collections::HashMap<&str, &Arc<[u8]>> = events
            .iter()
            .filter(|e| e.injection != Injection::Duplicate)
            .filter_map(|e| e.event_id.as_deref().map(|id| (id, &e.payload)))
            .collect();
        for event in &events {
            match event.injection {
                Injection::Duplicate => {
                    let original = originals[event.event_id.as_deref().unwrap()];
                    assert_eq!(
                        event.payload, *original,
                        "a duplicate repeats its original byte for byte"
                    );
                }
                Injection::Malformed => {
                    assert!(serde_json::from_slice::<serde_json::Value>(&event.payload).is_err())
                }
                _ => {
                    let value: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
                    assert_eq!(value["eventId"], event.event_id.as_deref().unwrap());
                }
            }
        }
        let late = events
            .iter()
            .find(|e| e.injection == Injection::Late)
            .unwrap();
        let index = events.iter().position(|e| std::ptr::eq(e, late)).unwrap() as i64;
        assert_eq!(
            late.event_time_us,
            1_700_000_000_000_000 + index * 1_000 - 120_000_000
        );
    }

    #[test]
    fn every_scenario_produces_its_schema() {
        let fields = |scenario| {
            let event = run(
                Options {
                    duplicates: 0.0,
                    malformed: 0.0,
                    ..options(scenario)
                },
                1,
            )
            .remove(0);
            let value: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
            (event.key, value)
        };
        let (key, value) = fields(Scenario::Payments);
        assert_eq!(value["BIN"], &*key);
        for field in ["MerchantId", "Result", "Amount", "EventTime"] {
            assert!(!value[field].is_null(), "payments lacks {field}");
        }
        let (_, value) = fields(Scenario::Retail);
        for field in [
            "StoreId",
            "Sku",
            "FulfilmentCentre",
            "Qty",
            "Price",
            "EventTime",
        ] {
            assert!(!value[field].is_null(), "retail lacks {field}");
        }
        let (_, value) = fields(Scenario::Logistics);
        for field in ["DepotId", "ScanType", "EventTime"] {
            assert!(!value[field].is_null(), "logistics lacks {field}");
        }
        let events = run(
            Options {
                duplicates: 0.0,
                malformed: 0.0,
                ..options(Scenario::Nexmark)
            },
            5_000,
        );
        let kinds = |kind: &str| {
            events
                .iter()
                .filter(|e| {
                    serde_json::from_slice::<serde_json::Value>(&e.payload).unwrap()["type"] == kind
                })
                .count()
        };
        assert_eq!(
            (kinds("person"), kinds("auction"), kinds("bid")),
            (100, 300, 4_600)
        );
    }

    #[test]
    fn a_payments_bin_spikes_its_decline_rate_during_the_anomaly() {
        let events = run(
            Options {
                keys: 4,
                duplicates: 0.0,
                malformed: 0.0,
                late: 0.0,
                out_of_order: 0.0,
                ..options(Scenario::Payments)
            },
            120_000,
        );
        let rate = |bin: &str, from_s: i64, to_s: i64| {
            let window: Vec<serde_json::Value> = events
                .iter()
                .filter(|e| {
                    (from_s * 1_000_000..to_s * 1_000_000)
                        .contains(&(e.event_time_us - 1_700_000_000_000_000))
                })
                .map(|e| serde_json::from_slice(&e.payload).unwrap())
                .filter(|v: &serde_json::Value| v["BIN"] == bin)
                .collect();
            window.iter().filter(|v| v["Result"] == "DECLINE").count() as f64 / window.len() as f64
        };
        assert!(rate("400000", 0, 20) < 0.15);
        assert!(rate("400000", 30, 110) > 0.30);
        assert!(rate("400001", 30, 110) < 0.15);
    }
}
