//! The Kafka front end's metrics: records and bytes in and out per topic,
//! request latency per API, errors per API and code, open connections.
//! Recorded once per request or partition, never per record.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: &'static str,
    pub code: i16,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~100 s.
    Histogram::new(exponential_buckets(0.000_05, 2.5, 16))
}

#[derive(Debug)]
pub struct KafkaMetrics {
    pub records_in: Family<TopicLabels, Counter>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub request_duration: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    pub throttled: Counter,
    pub connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub connections_closed_bad_input: Counter<u64, AtomicU64>,
}

impl Default for KafkaMetrics {
    fn default() -> Self {
        Self {
            records_in: Family::default(),
            bytes_in: Family::default(),
            records_out: Family::default(),
            bytes_out: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            throttled: Counter::default(),
            connections: Gauge::default(),
            connections_closed_bad_input: Counter::default(),
        }
    }
}

impl KafkaMetrics {
    /// Registers every metric under `freshet_kafka_*`.
    pub fn register(&self, registry: &mut Registry) {
        let kafka = registry.sub_registry_with_prefix("freshet_kafka");
        kafka.register(
            "records_in",
            "Records appended by producers",
            self.records_in.clone(),
        );
        kafka.register_with_unit(
            "in",
            "Record batch bytes appended by producers",
            Unit::Bytes,
            self.bytes_in.clone(),
        );
        kafka.register(
            "records_out",
            "Offsets delivered to consumers by Fetch",
            self.records_out.clone(),
        );
        kafka.register_with_unit(
            "out",
            "Record batch bytes delivered to consumers by Fetch",
            Unit::Bytes,
            self.bytes_out.clone(),
        );
        kafka.register_with_unit(
            "request_duration",
            "Time from reading a request to its response being ready, per API",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        kafka.register(
            "errors",
            "Error codes returned, per API and Kafka error code",
            self.errors.clone(),
        );
        kafka.register(
            "requests_throttled",
            "Requests delayed by a quota (none are: no quotas yet)",
            self.throttled.clone(),
        );
        kafka.register(
            "connections",
            "Open client connections",
            self.connections.clone(),
        );
        kafka.register(
            "connections_closed_bad_input",
            "Connections closed because of a malformed, oversized or unsupported request",
            self.connections_closed_bad_input.clone(),
        );
    }

    pub fn observe_request(&self, api: &'static str, elapsed: Duration) {
        self.request_duration
            .get_or_create(&ApiLabels { api })
            .observe(elapsed.as_secs_f64());
    }

    pub fn error(&self, api: &'static str, code: i16) {
        if code != 0 {
            self.errors.get_or_create(&ErrorLabels { api, code }).inc();
        }
    }

    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.records_in.get_or_create(&labels).inc_by(records);
        self.bytes_in.get_or_create(&labels).inc_by(bytes);
    }

    pub fn fetched(&self, topic: &str, records: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.records_out.get_or_create(&labels).inc_by(records);
        self.bytes_out.get_or_create(&labels).inc_by(bytes);
    }
}
