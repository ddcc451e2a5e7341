//! Counters a table keeps for `/metrics` and `GET /api/v1/tables`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the freshness histogram: from an event's log
/// timestamp to the moment queries can see it.
pub const FRESHNESS_BUCKETS_MS: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];

#[derive(Debug, Default)]
pub struct TableStats {
    pub rows_ingested: AtomicU64,
    pub bytes_ingested: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    /// Keys the dedup window forgot before their time to stay within its
    /// `max_keys`.
    pub dedup_keys_forgotten: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Events deleted by the topic's retention before the table read them.
    pub events_missed: AtomicU64,
    pub seals: AtomicU64,
    pub merges: AtomicU64,
    pub extents_dropped: AtomicU64,
    pub freshness: Histogram,
}

/// What the query engine counts.
#[derive(Debug, Default)]
pub struct QueryStats {
    /// Durations (ms) of queries that ran to the end.
    pub durations: Histogram,
    /// Queries that failed: bad SQL, timeouts, memory, execution errors.
    pub failed: AtomicU64,
}

/// A fixed-bucket histogram with atomic counts (the last bucket is +Inf).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; FRESHNESS_BUCKETS_MS.len() + 1],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: u64) {
        let at = FRESHNESS_BUCKETS_MS
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(FRESHNESS_BUCKETS_MS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Non-cumulative bucket counts, the sum and the count.
    pub fn read(&self) -> (Vec<u64>, u64, u64) {
        let buckets = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        (
            buckets,
            self.sum.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }

    /// The smallest bucket bound at or above quantile `q` (an upper estimate).
    pub fn quantile_bound(&self, q: f64) -> Option<u64> {
        let (buckets, _, count) = self.read();
        if count == 0 {
            return None;
        }
        let target = (q * count as f64).ceil() as u64;
        let mut seen = 0;
        for (at, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return Some(FRESHNESS_BUCKETS_MS.get(at).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}
