//! What the store's integration tests share: a real log and store in a
//! temporary directory, simulator events, and ways to read answers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_core::{Clock, SystemClock};
use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_log::{Log, LogOptions, TopicConfig};
use freshet_sim::generator::{Generated, Generator, Options};
use freshet_sim::scenario::Scenario;
use freshet_store::arrow::array::{Array, Int64Array, StringViewArray};
use freshet_store::{
    ColumnSpec, ColumnType, DedupSpec, QueryLimits, QueryResult, Store, TableSpec,
};
use serde_json::Value;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

pub fn options(scenario: Scenario, seed: u64) -> Options {
    Options::plain(scenario, seed, 50, 1_000, 1_767_225_600_000_000) // 2026-01-01
}

pub fn generate(options: Options, count: usize) -> Vec<Generated> {
    let mut generator = Generator::new(options);
    (0..count).map(|_| generator.next_event()).collect()
}

/// Appends events keyed as the simulator keys them, 500 to a batch.
pub fn produce(log: &Log, topic: &str, events: &[Generated]) {
    let partitions = log.topic(topic).unwrap().partitions();
    let mut by_partition: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
    for event in events {
        let partition = event
            .key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % partitions.len();
        by_partition.entry(partition).or_default().push(Record {
            timestamp: SystemClock.now_ms(),
            key: Some(event.key.as_bytes().to_vec()),
            value: Some(event.payload.to_vec()),
            headers: Vec::new(),
        });
    }
    for (partition, records) in by_partition {
        for chunk in records.chunks(500) {
            partitions[partition]
                .append(batch::encode(chunk, ProducerStamp::none()))
                .unwrap();
        }
    }
}

/// The plan `EXPLAIN` prints for `sql`.
pub fn explained(fixture: &Fixture, sql: &str) -> String {
    let plan = fixture.query(&format!("EXPLAIN {sql}"));
    freshet_store::arrow::util::pretty::pretty_format_batches(&plan.batches)
        .unwrap()
        .to_string()
}

/// The answer of a query whose rows are (string key, count), by key.
pub fn counts_by_key(fixture: &Fixture, sql: &str) -> BTreeMap<String, i64> {
    let mut answered = BTreeMap::new();
    for batch in &fixture.query(sql).batches {
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringViewArray>()
            .unwrap();
        let counts = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        for row in 0..batch.num_rows() {
            answered.insert(keys.value(row).to_string(), counts.value(row));
        }
    }
    answered
}

pub fn column(name: &str, path: &str, kind: ColumnType) -> ColumnSpec {
    ColumnSpec::at_path(name, path, kind)
}

pub fn iot_table() -> TableSpec {
    let mut spec = TableSpec::new(
        "telemetry",
        "iot",
        vec![
            ColumnSpec {
                required: true,
                ..column("eventId", "eventId", ColumnType::String)
            },
            column("deviceId", "deviceId", ColumnType::String),
            column("type", "type", ColumnType::String),
            column("value", "value", ColumnType::Real),
            column("md0", "complexData.moreData0", ColumnType::Real),
            column("seq", "deviceSequenceNumber", ColumnType::Long),
            column("createdAt", "createdAt", ColumnType::Datetime),
        ],
    );
    spec.time_column = Some("createdAt".into());
    spec.dedup = Some(DedupSpec {
        column: "eventId".into(),
        window_ms: 600_000,
        max_keys: freshet_store::DEFAULT_DEDUP_MAX_KEYS,
    });
    spec.extent_span_ms = 60_000;
    spec
}

/// Fields drop in order: the store's threads stop before the runtime they wait on.
pub struct Fixture {
    pub store: Option<Store>,
    pub log: Arc<Log>,
    pub runtime: tokio::runtime::Runtime,
}

impl Fixture {
    pub fn open(dir: &Path, topic: &str, partitions: u32, clock: Arc<dyn Clock>) -> Self {
        let runtime = runtime();
        let log = Arc::new(Log::open(dir, LogOptions::default()).unwrap());
        log.ensure_topic(
            topic,
            TopicConfig {
                partitions,
                ..TopicConfig::default()
            },
        )
        .unwrap();
        let limits = QueryLimits {
            threads: 2,
            ..QueryLimits::default()
        };
        let store = Store::open(
            dir,
            log.clone(),
            clock.clone(),
            limits,
            runtime.handle().clone(),
        )
        .unwrap();
        Self {
            runtime,
            log,
            store: Some(store),
        }
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    pub fn query(&self, sql: &str) -> QueryResult {
        self.runtime
            .block_on(self.store().query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    pub fn kql(&self, kql: &str) -> QueryResult {
        self.runtime
            .block_on(self.store().query_kql(kql))
            .unwrap_or_else(|e| panic!("{kql}: {e:?}"))
    }

    pub fn kql_error(&self, kql: &str) -> freshet_store::QueryError {
        match self.runtime.block_on(self.store().query_kql(kql)) {
            Ok(_) => panic!("{kql} ran"),
            Err(error) => error,
        }
    }

    pub fn count(&self, sql: &str) -> i64 {
        let result = self.query(sql);
        result.batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    }

    /// Waits until the table holds `rows` rows (queries see them).
    pub fn wait_for_rows(&self, table: &str, rows: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.count(&format!("SELECT count(*) FROM {table}"));
            if seen == rows {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{table} has {seen} rows, expected {rows}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn close(mut self) {
        self.store.take().unwrap().shutdown();
        self.log.close().unwrap();
    }
}

/// Rows of a result as JSON values, for comparing two results.
pub fn rows(result: &QueryResult) -> Vec<Vec<Value>> {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    for batch in &result.batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    let objects: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&writer.into_inner()).unwrap_or_default();
    let names: Vec<String> = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    objects
        .into_iter()
        .map(|o| {
            names
                .iter()
                .map(|n| o.get(n).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

/// Equal, with floating-point sums allowed to differ in the last digits
/// (their order of addition differs) and columns named in `loose` within
/// `tolerance` (approximate aggregates merged from partial sketches).
pub fn assert_same_rows(view: &[Vec<Value>], raw: &[Vec<Value>], loose: &[usize], tolerance: f64) {
    assert_eq!(view.len(), raw.len(), "row counts differ");
    for (a, b) in view.iter().zip(raw) {
        for (at, (x, y)) in a.iter().zip(b).enumerate() {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y))
                    if !(x.fract() == 0.0 && y.fract() == 0.0) || loose.contains(&at) =>
                {
                    let allowed = if loose.contains(&at) {
                        tolerance
                    } else {
                        1e-9 * x.abs().max(1.0)
                    };
                    assert!(
                        (x - y).abs() <= allowed,
                        "column {at}: view {x} vs raw {y} in {a:?} / {b:?}"
                    );
                }
                _ => assert_eq!(x, y, "column {at} in {a:?} / {b:?}"),
            }
        }
    }
}
