//! `/metrics`: everything long-running exposes its numbers here, in the
//! Prometheus (OpenMetrics) text format. Counters kept by the log and the
//! group coordinator are read at scrape time by a collector, so the hot
//! paths never touch the registry.

use std::sync::Arc;

use freshet_kafka::groups::Coordinator;
use freshet_log::{FSYNC_BUCKETS_MICROS, Log};
use freshet_store::Store;
use freshet_store::stats::FRESHNESS_BUCKETS_MS;

use crate::jobs::{CHECKPOINT_BUCKETS_MS, JobRuntime, JobStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Builds the registry: the Kafka front end's metrics plus the collector
/// of log and consumer-group numbers.
pub fn registry(
    log: Arc<Log>,
    broker: &freshet_kafka::Broker,
    store: Arc<Store>,
    jobs: Vec<Arc<JobRuntime>>,
) -> Registry {
    let mut registry = Registry::default();
    broker.metrics().register(&mut registry);
    registry.register_collector(Box::new(StateCollector {
        log,
        coordinator: Arc::clone(broker.coordinator()),
    }));
    registry.register_collector(Box::new(StoreCollector { store }));
    registry.register_collector(Box::new(JobCollector { jobs }));
    registry
}

pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// The same metrics in the Prometheus 0.0.4 text format, for scrapers and
/// tools (such as `promtool check metrics`) that do not ask for OpenMetrics:
/// counters are named with their `_total` sample name, and the OpenMetrics
/// `# UNIT` and `# EOF` lines are left out.
pub fn render_prometheus(registry: &Registry) -> String {
    let open_metrics = render(registry);
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}

#[derive(Debug)]
struct StateCollector {
    log: Arc<Log>,
    coordinator: Arc<Coordinator>,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = self.log.stats();
        let mut buckets: Vec<(f64, u64)> = FSYNC_BUCKETS_MICROS
            .iter()
            .zip(&stats.fsync_buckets)
            .map(|(bound, count)| (*bound as f64 / 1e6, count.load(Relaxed)))
            .collect();
        buckets.push((
            f64::INFINITY,
            stats.fsync_buckets[FSYNC_BUCKETS_MICROS.len()].load(Relaxed),
        ));
        let sum_seconds = stats.fsync_micros_total.load(Relaxed) as f64 / 1e6;
        let mut fsync = encoder.encode_descriptor(
            "freshet_log_fsync_duration",
            "Time one fsync of a segment took",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        fsync.encode_histogram::<NoLabelSet>(
            sum_seconds,
            stats.fsyncs.load(Relaxed),
            &buckets,
            None,
        )?;
        counter(
            &mut encoder,
            "freshet_log_appended_batches",
            "Record batches appended to the log",
            None,
            stats.batches_appended.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "freshet_log_appended",
            "Bytes appended to the log",
            Some(&Unit::Bytes),
            stats.bytes_appended.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "freshet_log_segments_rolled",
            "Segments sealed and rolled",
            None,
            stats.segments_rolled.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "freshet_log_segments_deleted",
            "Segments deleted by retention",
            None,
            stats.segments_deleted.load(Relaxed),
        )?;

        let partitions: Vec<_> = self
            .log
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .collect();
        type PartitionGauge = (
            &'static str,
            &'static str,
            Option<Unit>,
            fn(&freshet_log::Partition) -> i64,
        );
        let gauges: [PartitionGauge; 4] = [
            (
                "freshet_log_partition_end_offset",
                "One past the last offset of the partition",
                None,
                |p| p.end_offset(),
            ),
            (
                "freshet_log_partition_start_offset",
                "First offset still held by the partition",
                None,
                |p| p.log_start_offset(),
            ),
            (
                "freshet_log_partition_size",
                "Bytes of segments the partition holds",
                Some(Unit::Bytes),
                |p| p.size_bytes() as i64,
            ),
            (
                "freshet_log_partition_unflushed",
                "Offsets appended but not yet fsynced",
                None,
                |p| p.end_offset() - p.durable_offset(),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for partition in &partitions {
                let labels = [
                    ("topic", partition.topic().to_string()),
                    ("partition", partition.id().to_string()),
                ];
                ConstGauge::new(value(partition)).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut lag = encoder.encode_descriptor(
            "freshet_kafka_consumer_group_lag",
            "Offsets between a group's committed position and the partition's end",
            None,
            MetricType::Gauge,
        )?;
        for group in self.coordinator.offsets.groups() {
            for ((topic, partition), committed) in self.coordinator.offsets.group(&group) {
                let Ok(end) = self
                    .log
                    .partition(&topic, partition as u32)
                    .map(|p| p.end_offset())
                else {
                    continue;
                };
                let labels = [
                    ("group", group.clone()),
                    ("topic", topic),
                    ("partition", partition.to_string()),
                ];
                ConstGauge::new((end - committed.offset).max(0))
                    .encode(lag.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A store histogram's counts with their upper bounds in seconds.
fn seconds_buckets(counts: &[u64]) -> Vec<(f64, u64)> {
    counts
        .iter()
        .enumerate()
        .map(|(at, n)| {
            let bound = FRESHNESS_BUCKETS_MS
                .get(at)
                .map_or(f64::INFINITY, |ms| *ms as f64 / 1e3);
            (bound, *n)
        })
        .collect()
}

/// Per-table numbers of the store, read at scrape time.
#[derive(Debug)]
struct StoreCollector {
    store: Arc<Store>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let tables = self.store.tables();
        type TableCounter = (
            &'static str,
            &'static str,
            Option<Unit>,
            fn(&freshet_store::stats::TableStats) -> u64,
        );
        let counters: [TableCounter; 8] = [
            (
                "freshet_store_ingested_rows",
                "Rows ingested into the table",
                None,
                |s| s.rows_ingested.load(Relaxed),
            ),
            (
                "freshet_store_ingested",
                "Bytes of events ingested into the table",
                Some(Unit::Bytes),
                |s| s.bytes_ingested.load(Relaxed),
            ),
            (
                "freshet_store_duplicates_dropped",
                "Events dropped because their dedup key was seen within the window",
                None,
                |s| s.duplicates_dropped.load(Relaxed),
            ),
            (
                "freshet_store_dedup_keys_forgotten",
                "Dedup keys forgotten before the end of the window to stay within dedup_max_keys",
                None,
                |s| s.dedup_keys_forgotten.load(Relaxed),
            ),
            (
                "freshet_store_dead_letters",
                "Events that did not map and went to the dead-letter topic",
                None,
                |s| s.dead_letters.load(Relaxed),
            ),
            (
                "freshet_store_events_missed",
                "Events deleted by topic retention before the table read them",
                None,
                |s| s.events_missed.load(Relaxed),
            ),
            (
                "freshet_store_seals",
                "Buffer seals into extents",
                None,
                |s| s.seals.load(Relaxed),
            ),
            (
                "freshet_store_merges",
                "Merges of small extents",
                None,
                |s| s.merges.load(Relaxed),
            ),
        ];
        for (name, help, unit, value) in counters {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for table in &tables {
                ConstCounter::new(value(&table.stats))
                    .encode(family.encode_family(&[("table", table.name().to_string())])?)?;
            }
        }
        let infos: Vec<_> = tables.iter().map(|t| t.info()).collect();
        type TableGauge = (
            &'static str,
            &'static str,
            Option<Unit>,
            fn(&freshet_store::TableInfo) -> i64,
        );
        let gauges: [TableGauge; 7] = [
            (
                "freshet_store_rows",
                "Rows the table holds (extents and buffer)",
                None,
                |i| i.rows as i64,
            ),
            (
                "freshet_store_buffered_rows",
                "Rows in the in-memory buffer, not yet in an extent",
                None,
                |i| i.buffered_rows as i64,
            ),
            ("freshet_store_extents", "Extents of the table", None, |i| {
                i.extents as i64
            }),
            (
                "freshet_store_extent_size",
                "Bytes of the table's extents on disk",
                Some(Unit::Bytes),
                |i| i.extent_bytes as i64,
            ),
            (
                "freshet_store_hot_extents",
                "Extents the caching policy keeps in memory (the rest are read from disk)",
                None,
                |i| i.hot_extents as i64,
            ),
            (
                "freshet_store_hot_extent_size",
                "Bytes (on disk) of the extents kept in memory",
                Some(Unit::Bytes),
                |i| i.hot_extent_bytes as i64,
            ),
            (
                "freshet_store_ingestion_lag",
                "Events in the source topic the table has not read yet",
                None,
                |i| i.lag as i64,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for info in &infos {
                ConstGauge::new(value(info))
                    .encode(family.encode_family(&[("table", info.name.clone())])?)?;
            }
        }
        let mut freshness = encoder.encode_descriptor(
            "freshet_store_freshness",
            "Time from an event's log timestamp until queries can see it",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for table in &tables {
            let (counts, sum_ms, count) = table.stats.freshness.read();
            let buckets = seconds_buckets(&counts);
            let labels = [("table", table.name().to_string())];
            freshness
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum_ms as f64 / 1e3, count, &buckets, None)?;
        }
        let views = self.store.views();
        let mut delta = encoder.encode_descriptor(
            "freshet_store_view_delta_rows",
            "Rows of the view's table not yet folded into the view's materialized part",
            None,
            MetricType::Gauge,
        )?;
        for view in &views {
            ConstGauge::new(view.delta_rows as i64)
                .encode(delta.encode_family(&[("view", view.name.clone())])?)?;
        }
        let stats = self.store.query_stats();
        let (counts, sum_ms, count) = stats.durations.read();
        let buckets = seconds_buckets(&counts);
        encoder
            .encode_descriptor(
                "freshet_store_query_duration",
                "Duration of store queries that ran to the end",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(sum_ms as f64 / 1e3, count, &buckets, None)?;
        ConstCounter::new(stats.failed.load(Relaxed)).encode(encoder.encode_descriptor(
            "freshet_store_queries_failed",
            "Store queries that failed (bad SQL, timeout, memory, execution)",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

/// Per-job numbers of the hot path, read at scrape time.
struct JobCollector {
    jobs: Vec<Arc<JobRuntime>>,
}

impl std::fmt::Debug for JobCollector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JobCollector")
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl Collector for JobCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        type JobCounter = (&'static str, &'static str, fn(&JobStats) -> u64);
        let counters: [JobCounter; 4] = [
            (
                "freshet_job_input_events",
                "Events the job read from its inputs",
                |s| s.input_events.load(Relaxed),
            ),
            (
                "freshet_job_output_rows",
                "Rows the job wrote to its outputs",
                |s| s.output_rows.load(Relaxed),
            ),
            (
                "freshet_job_invalid_events",
                "Input events that were not JSON objects or had no event time",
                |s| s.invalid_events.load(Relaxed),
            ),
            (
                "freshet_job_checkpoints",
                "Checkpoints the job committed",
                |s| s.checkpoints.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for job in &self.jobs {
                ConstCounter::new(value(&job.stats))
                    .encode(family.encode_family(&[("job", job.spec.name.clone())])?)?;
            }
        }
        let mut late = encoder.encode_descriptor(
            "freshet_job_late_events",
            "Events behind the watermark, by what the time policy did with them",
            None,
            MetricType::Counter,
        )?;
        for job in &self.jobs {
            for (action, value) in [
                ("adjusted", &job.stats.late_adjusted),
                ("dropped", &job.stats.late_dropped),
            ] {
                ConstCounter::new(value.load(Relaxed)).encode(late.encode_family(&[
                    ("job", job.spec.name.clone()),
                    ("action", action.to_string()),
                ])?)?;
            }
        }
        let now_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut delay = encoder.encode_descriptor(
            "freshet_job_watermark_delay",
            "How far the job's watermark (event time) trails the wall clock",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for job in &self.jobs {
            let watermark = job.stats.watermark_micros.load(Relaxed);
            if watermark == i64::MIN || watermark == i64::MAX {
                continue;
            }
            ConstGauge::new((now_micros - watermark) as f64 / 1e6)
                .encode(delay.encode_family(&[("job", job.spec.name.clone())])?)?;
        }
        let mut state = encoder.encode_descriptor(
            "freshet_job_state_rows",
            "Groups, buffered events and join rows the job holds",
            None,
            MetricType::Gauge,
        )?;
        for job in &self.jobs {
            ConstGauge::new(job.stats.state_rows.load(Relaxed) as i64)
                .encode(state.encode_family(&[("job", job.spec.name.clone())])?)?;
        }
        let mut checkpoint = encoder.encode_descriptor(
            "freshet_job_checkpoint_duration",
            "Time to write a checkpoint and commit its topic outputs",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for job in &self.jobs {
            let counts: Vec<u64> = job
                .stats
                .checkpoint_duration_buckets
                .iter()
                .map(|bucket| bucket.load(Relaxed))
                .collect();
            let buckets: Vec<(f64, u64)> = counts
                .iter()
                .enumerate()
                .map(|(at, n)| {
                    (
                        CHECKPOINT_BUCKETS_MS
                            .get(at)
                            .map_or(f64::INFINITY, |ms| *ms as f64 / 1e3),
                        *n,
                    )
                })
                .collect();
            let count = counts.iter().sum();
            let sum = job.stats.checkpoint_duration_micros_sum.load(Relaxed) as f64 / 1e6;
            checkpoint
                .encode_family(&[("job", job.spec.name.clone())])?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}
