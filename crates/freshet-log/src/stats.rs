//! Counters the log keeps for metrics, recorded once per operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (µs) of the fsync latency histogram buckets; the last
/// bucket counts everything slower.
pub const FSYNC_BUCKETS_MICROS: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

#[derive(Debug, Default)]
pub struct LogStats {
    pub fsyncs: AtomicU64,
    pub fsync_micros_total: AtomicU64,
    /// Non-cumulative counts per bucket of [`FSYNC_BUCKETS_MICROS`], plus overflow.
    pub fsync_buckets: [AtomicU64; FSYNC_BUCKETS_MICROS.len() + 1],
    pub batches_appended: AtomicU64,
    pub bytes_appended: AtomicU64,
    pub segments_rolled: AtomicU64,
    pub segments_deleted: AtomicU64,
}

impl LogStats {
    pub fn record_fsync(&self, elapsed: Duration) {
        let micros = elapsed.as_micros() as u64;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_micros_total.fetch_add(micros, Ordering::Relaxed);
        let bucket = FSYNC_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(FSYNC_BUCKETS_MICROS.len());
        self.fsync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }
}
