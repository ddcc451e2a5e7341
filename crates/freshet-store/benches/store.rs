//! The store, measured in one run: ingestion rows/s from the log,
//! freshness under a steady 100 k events/s, and ten analytical queries over
//! the simulator's payments events, timed next to DuckDB and to DataFusion
//! alone (a listing table) querying the table's own Parquet extents, and
//! three queries in KQL beside their SQL.
//!
//! Run: `cargo bench -p freshet-store --bench store`
//! Needs `python3` with `duckdb` and `pytz` (`pip install duckdb pytz`) for the peer column.
//! Options (environment): `FRESHET_BENCH_ROUNDS` (default 2: rounds of
//! the queries, from memory and then from Parquet, each query timed by the
//! store and then by DuckDB in turn, the best of each kept), `FRESHET_BENCH_DIR` (default the workspace's
//! `target/bench-store`; it needs about 5 GB and is removed at the end),
//! `FRESHET_BENCH_EVENTS` (default 20,000,000), `FRESHET_BENCH_LIVE_RATE`
//! (events/s of the freshness phase, default 100,000),
//! `FRESHET_BENCH_LIVE_SECONDS` (default 15), `FRESHET_BENCH_EXPLAIN` (set:
//! print `EXPLAIN ANALYZE` of each query through the store and through a
//! plain DataFusion listing table), `FRESHET_BENCH_PROFILE` (a query's name:
//! after the cold timings, run it read from Parquet over and over for
//! `FRESHET_BENCH_PROFILE_SECONDS`, default 30, for a profiler to attach).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_core::{Clock, SystemClock};
use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_log::{Durability, Log, LogOptions, TopicConfig};
use freshet_sim::generator::{Generator, Options};
use freshet_sim::scenario::Scenario;
use freshet_store::{QueryLimits, Store, TableSpec};

/// The allocator of the `freshet` binary, so that queries allocate as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const EVENTS_PER_SECOND_OF_EVENT_TIME: u64 = 10_000;
const PARTITIONS: u32 = 4;

/// (name, Freshet SQL, DuckDB SQL). Both read a relation named `auth`.
fn queries(point_id: &str) -> Vec<(&'static str, String, String)> {
    let same = |name: &'static str, sql: &str| (name, sql.to_string(), sql.to_string());
    let from = "2026-01-01 00:10:00+00";
    let to = "2026-01-01 00:15:00+00";
    vec![
        same("count", "SELECT count(*) FROM auth"),
        same("filtered count", "SELECT count(*) FROM auth WHERE Result = 'DECLINE'"),
        same("top BINs", "SELECT BIN, count(*) AS n FROM auth GROUP BY BIN ORDER BY n DESC, BIN LIMIT 10"),
        same(
            "per minute",
            "SELECT date_trunc('minute', EventTime) AS m, count(*) AS n, avg(Amount) AS a FROM auth GROUP BY m ORDER BY m",
        ),
        same(
            "decline rate by BIN and minute",
            "SELECT BIN, date_trunc('minute', EventTime) AS m, avg(CASE WHEN Result = 'DECLINE' THEN 1.0 ELSE 0.0 END) AS rate \
             FROM auth GROUP BY BIN, m ORDER BY rate DESC, BIN, m LIMIT 10",
        ),
        same("distinct merchants", "SELECT count(DISTINCT MerchantId) FROM auth"),
        (
            "approx distinct merchants",
            "SELECT approx_distinct(MerchantId) FROM auth".into(),
            "SELECT approx_count_distinct(MerchantId) FROM auth".into(),
        ),
        (
            "p99 amount by BIN",
            "SELECT BIN, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY Amount) AS p99 FROM auth GROUP BY BIN ORDER BY BIN LIMIT 10".into(),
            "SELECT BIN, approx_quantile(Amount, 0.99) AS p99 FROM auth GROUP BY BIN ORDER BY BIN LIMIT 10".into(),
        ),
        same(
            "time range",
            &format!("SELECT count(*), sum(Amount) FROM auth WHERE EventTime >= TIMESTAMP '{from}' AND EventTime < TIMESTAMP '{to}'"),
        ),
        same("point lookup", &format!("SELECT * FROM auth WHERE eventId = '{point_id}'")),
    ]
}

fn payments_table(name: &str, topic: &str) -> TableSpec {
    let mut spec = TableSpec::payments(name, topic);
    spec.extent_span_ms = 10 * 60_000;
    spec.seal.max_age_ms = 5_000;
    spec
}

/// Appends `count` payments events, keyed by BIN, 1,000 to a batch.
fn fill(log: &Log, topic: &str, count: u64, seed: u64) -> (u64, String) {
    let partitions = log.topic(topic).unwrap().partitions();
    let mut generator = Generator::new(Options::plain(
        Scenario::Payments,
        seed,
        1_000,
        EVENTS_PER_SECOND_OF_EVENT_TIME,
        START_US,
    ));
    let mut pending: Vec<Vec<Record>> = vec![Vec::new(); partitions.len()];
    let mut bytes = 0u64;
    let mut point_id = String::new();
    let now = SystemClock.now_ms();
    for at in 0..count {
        let event = generator.next_event();
        if at == count / 3 {
            point_id = event.event_id.as_deref().unwrap().to_string();
        }
        bytes += event.payload.len() as u64;
        let partition =
            (xxhash_rust::xxh3::xxh3_64(event.key.as_bytes()) % partitions.len() as u64) as usize;
        pending[partition].push(Record {
            timestamp: now,
            key: Some(event.key.as_bytes().to_vec()),
            value: Some(event.payload.to_vec()),
            headers: Vec::new(),
        });
        if pending[partition].len() == 1_000 {
            partitions[partition]
                .append(batch::encode(&pending[partition], ProducerStamp::none()))
                .unwrap();
            pending[partition].clear();
        }
    }
    for (partition, records) in pending.iter().enumerate() {
        if !records.is_empty() {
            partitions[partition]
                .append(batch::encode(records, ProducerStamp::none()))
                .unwrap();
        }
    }
    (bytes, point_id)
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let dir = PathBuf::from(std::env::var("FRESHET_BENCH_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench-store").into()
    }));
    let events: u64 = env("FRESHET_BENCH_EVENTS", 20_000_000);
    let live_rate: u64 = env("FRESHET_BENCH_LIVE_RATE", 100_000);
    let live_seconds: u64 = env("FRESHET_BENCH_LIVE_SECONDS", 15);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(Log::open(&dir, LogOptions::default()).unwrap());
    let topic = TopicConfig {
        partitions: PARTITIONS,
        durability: Durability::None,
        ..TopicConfig::default()
    };
    log.ensure_topic("auth-events", topic).unwrap();
    log.ensure_topic("auth-live", topic).unwrap();
    log.ensure_topic("auth-busy", topic).unwrap();
    println!(
        "machine: {} cores; {events} payments events; freshness at {live_rate}/s for {live_seconds} s",
        cores()
    );

    let started = Instant::now();
    let (bytes, point_id) = fill(&log, "auth-events", events, 1);
    println!(
        "log filled: {:.1} s, {:.2} GB of JSON (not part of the measurement)",
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e9
    );

    let limits = QueryLimits::default();
    let store = Store::open(
        &dir,
        log.clone(),
        Arc::new(SystemClock),
        limits,
        runtime.handle().clone(),
    )
    .unwrap();

    // Ingestion: from apply until every row is queryable.
    let started = Instant::now();
    store.apply(payments_table("auth", "auth-events")).unwrap();
    let table = store.table("auth").unwrap();
    while table.info().rows < events {
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ingestion: {events} rows in {seconds:.1} s = {:.0} rows/s ({:.0} MB/s of JSON) on one ingestion thread",
        events as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
    table.seal().unwrap();
    while table.merge_small_extents().unwrap() > 0 {}
    let info = table.info();
    println!(
        "extents: {} ({:.2} GB of Parquet)",
        info.extents,
        info.extent_bytes as f64 / 1e9
    );

    // Freshness: a steady stream into a second table, log timestamp to
    // queryable; then again while heavy queries run over the big table.
    freshness(
        &store,
        &log,
        "auth_live",
        "auth-live",
        live_rate,
        live_seconds,
        "alone",
    );
    let heavy = HEAVY_QUERY;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heavy_runs = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let mut runs = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                runtime
                    .block_on(store.query(heavy))
                    .unwrap_or_else(|e| panic!("{heavy}: {e}"));
                runs += 1;
            }
            runs
        });
        freshness(
            &store,
            &log,
            "auth_busy",
            "auth-busy",
            live_rate,
            live_seconds,
            "with heavy queries running",
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        runner.join().unwrap()
    });
    println!("  (the heavy query ran {heavy_runs} times meanwhile: {heavy})");

    // A materialized view against the same aggregation over the raw rows.
    let started = Instant::now();
    store
        .apply_view(freshet_store::ViewSpec {
            name: "declines_1m".into(),
            query: format!("{VIEW_QUERY} GROUP BY BIN, minute"),
        })
        .unwrap();
    println!(
        "view backfill over {events} rows: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let from_view = best_of_3(
        &runtime,
        &store,
        "SELECT BIN, sum(declines) AS d FROM declines_1m GROUP BY BIN ORDER BY d DESC, BIN LIMIT 10",
    );
    let from_raw = best_of_3(
        &runtime,
        &store,
        &format!(
            "SELECT BIN, sum(declines) AS d FROM ({VIEW_QUERY} GROUP BY BIN, minute) GROUP BY BIN ORDER BY d DESC, BIN LIMIT 10"
        ),
    );
    println!(
        "top BINs by declines: from the view {from_view:.1} ms, from the raw rows {from_raw:.1} ms"
    );

    // Queries: hot (in memory), then cold (from the extents' Parquet), each
    // beside DuckDB on the same files: each query by both, in turn, for a
    // number of rounds; the best of each. DuckDB's figure is its best over
    // both phases.
    let queries = queries(&point_id);
    let rounds: usize = env("FRESHET_BENCH_ROUNDS", 2);
    let mut duck: Option<Vec<f64>> = Some(vec![f64::INFINITY; queries.len()]);
    let table = store.table("auth").unwrap();
    let hot = side_by_side(&runtime, &store, &table, &queries, rounds, &mut duck);
    let kql = kql_beside_sql(&runtime, &store);
    let mut cold_spec = payments_table("auth", "auth-events");
    cold_spec.hot_ms = Some(1);
    store.apply(cold_spec).unwrap();
    let cold_table = store.table("auth").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    cold_table.refresh_hot_cache().unwrap();
    assert_eq!(cold_table.info().hot_extents, 0);
    let extents = dir.join("store/auth/extents");
    let cold = side_by_side(&runtime, &store, &cold_table, &queries, rounds, &mut duck);
    if let Ok(name) = std::env::var("FRESHET_BENCH_PROFILE") {
        let (_, sql, _) = queries
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("no query named {name:?}"));
        let seconds: u64 = env("FRESHET_BENCH_PROFILE_SECONDS", 30);
        println!(
            "profiling {name:?} for {seconds} s: pid {}",
            std::process::id()
        );
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut runs = 0u32;
        while Instant::now() < until {
            runtime.block_on(store.query(sql)).unwrap();
            runs += 1;
        }
        println!("  {runs} runs");
    }
    // DataFusion alone gets as many threads as the store's query pool.
    let plain_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(store.limits().threads.max(1))
        .enable_all()
        .build()
        .unwrap();
    let threads = store.limits().threads;
    let plain = plain_runtime.block_on(listing_times(&extents, threads, &queries));
    if std::env::var_os("FRESHET_BENCH_EXPLAIN").is_some() {
        plain_runtime.block_on(explain(&store, &extents, threads, &queries));
    }
    println!(
        "\n| query | Freshet hot (ms) | Freshet cold (ms) | DataFusion on Parquet (ms) | DuckDB on Parquet (ms) | hot / DuckDB | cold / DuckDB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (at, (name, _, _)) in queries.iter().enumerate() {
        let duck = duck.as_ref().map(|d| d[at]);
        let ratio = |ours: f64| duck.map_or("n/a".to_string(), |d| format!("{:.2}", ours / d));
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            hot[at],
            cold[at],
            plain[at],
            duck.map_or("n/a".into(), |d| format!("{d:.1}")),
            ratio(hot[at]),
            ratio(cold[at])
        );
    }
    println!("\n| query (hot) | SQL (ms) | KQL (ms) | KQL / SQL |");
    println!("|---|---:|---:|---:|");
    for (name, sql_ms, kql_ms) in &kql {
        println!(
            "| {name} | {sql_ms:.1} | {kql_ms:.1} | {:.2} |",
            kql_ms / sql_ms
        );
    }
    if let Some(duck) = &duck {
        let geo = |ours: &[f64]| {
            (ours
                .iter()
                .zip(duck)
                .map(|(o, d)| (o / d).ln())
                .sum::<f64>()
                / ours.len() as f64)
                .exp()
        };
        println!(
            "\ngeometric mean of ratios: hot {:.2}, cold {:.2}",
            geo(&hot),
            geo(&cold)
        );
    }
    store.shutdown();
    log.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A query that keeps the query runtime busy: a high-cardinality group-by
/// over every row.
const HEAVY_QUERY: &str = "SELECT MerchantId, count(*) AS n, sum(Amount) AS s FROM auth GROUP BY MerchantId ORDER BY s DESC LIMIT 10";

/// Seed 001's `DeclineRate1m` without its GROUP BY.
const VIEW_QUERY: &str = "SELECT BIN, date_bin(INTERVAL '1 minute', EventTime) AS minute, count(*) AS attempts, \
     countif(Result = 'DECLINE') AS declines, max(Amount) AS largest FROM auth";

/// Streams `rate` events/s for `seconds` into a fresh table and prints the
/// freshness quantiles and the rate the table kept up with.
fn freshness(
    store: &Store,
    log: &Log,
    table: &str,
    topic: &str,
    rate: u64,
    seconds: u64,
    label: &str,
) {
    store.apply(payments_table(table, topic)).unwrap();
    let live = store.table(table).unwrap();
    let started = Instant::now();
    produce_steadily(log, topic, rate, seconds);
    let target = rate * seconds;
    while live.info().rows < target && started.elapsed() < Duration::from_secs(seconds * 3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (p50, p99) = (
        live.stats.freshness.quantile_bound(0.50),
        live.stats.freshness.quantile_bound(0.99),
    );
    println!(
        "freshness at {rate}/s, {label}: p50 <= {} ms, p99 <= {} ms (bucket bounds) over {} events; {} of {target} rows queryable after {elapsed:.1} s",
        p50.unwrap_or(0),
        p99.unwrap_or(0),
        live.stats.freshness.read().2,
        live.info().rows,
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Best of three runs after one warm-up, in ms (ClickBench's "hot" figure).
fn best_of_3(runtime: &tokio::runtime::Runtime, store: &Store, sql: &str) -> f64 {
    best_of_3_in(runtime, store, sql, false)
}

fn best_of_3_in(runtime: &tokio::runtime::Runtime, store: &Store, text: &str, kql: bool) -> f64 {
    let run = || {
        let started = Instant::now();
        let answer = if kql {
            runtime.block_on(store.query_kql(text))
        } else {
            runtime.block_on(store.query(text))
        };
        answer.unwrap_or_else(|e| panic!("{text}: {e}"));
        started.elapsed().as_secs_f64() * 1000.0
    };
    run();
    (0..3).map(|_| run()).fold(f64::INFINITY, f64::min)
}

/// Our best time per query, each query timed beside DuckDB reading the
/// files the table lists now (a file a merge replaced may linger a moment
/// until the last query holding it is done); `duck` keeps DuckDB's best,
/// and becomes `None` when DuckDB is not there.
fn side_by_side(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
    table: &freshet_store::Table,
    queries: &[(&'static str, String, String)],
    rounds: usize,
    duck: &mut Option<Vec<f64>>,
) -> Vec<f64> {
    let files: Vec<PathBuf> = table
        .snapshot()
        .extents
        .iter()
        .map(|extent| extent.file.path().to_path_buf())
        .collect();
    let mut duckdb = duck.as_ref().and_then(|_| DuckDb::start(&files));
    if duckdb.is_none() {
        *duck = None;
    }
    let mut ours = vec![f64::INFINITY; queries.len()];
    for _ in 0..rounds.max(1) {
        for (at, (_, sql, duck_sql)) in queries.iter().enumerate() {
            ours[at] = ours[at].min(best_of_3(runtime, store, sql));
            if let (Some(engine), Some(times)) = (duckdb.as_mut(), duck.as_mut()) {
                match engine.time(duck_sql) {
                    Some(ms) => times[at] = times[at].min(ms),
                    None => (duckdb, *duck) = (None, None),
                }
            }
        }
    }
    ours
}

/// KQL and SQL forms of the same queries, timed in turn: KQL is planned
/// onto the same session, so it should cost what SQL does.
fn kql_beside_sql(
    runtime: &tokio::runtime::Runtime,
    store: &Store,
) -> Vec<(&'static str, f64, f64)> {
    let pairs = [
        (
            "filtered count",
            "SELECT count(*) FROM auth WHERE Result = 'DECLINE'",
            "auth | where Result == 'DECLINE' | count",
        ),
        (
            "top BINs",
            "SELECT BIN, count(*) AS n FROM auth GROUP BY BIN ORDER BY n DESC LIMIT 10",
            "auth | summarize n = count() by BIN | top 10 by n",
        ),
        (
            "decline share by minute",
            "SELECT date_bin(INTERVAL '1 minute', EventTime) AS EventTime, \
             100.0 * countif(Result = 'DECLINE') / count(*) AS share FROM auth GROUP BY 1",
            "auth | summarize share = 100.0 * countif(Result == 'DECLINE') / count() by bin(EventTime, 1m)",
        ),
    ];
    pairs
        .iter()
        .map(|(name, sql, kql)| {
            let mut best = (f64::INFINITY, f64::INFINITY);
            for _ in 0..2 {
                best.0 = best.0.min(best_of_3_in(runtime, store, sql, false));
                best.1 = best.1.min(best_of_3_in(runtime, store, kql, true));
            }
            (*name, best.0, best.1)
        })
        .collect()
}

/// Appends `rate` events per second for `seconds`, stamped with the time
/// they were appended, in 100 slices a second.
fn produce_steadily(log: &Log, topic: &str, rate: u64, seconds: u64) {
    let partitions = log.topic(topic).unwrap().partitions();
    let mut generator = Generator::new(Options::plain(
        Scenario::Payments,
        2,
        1_000,
        rate,
        SystemClock.now_ms() * 1000,
    ));
    let per_slice = (rate / 100).max(1);
    let started = Instant::now();
    for slice in 0..seconds * 100 {
        let due = started + Duration::from_millis(slice * 10);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = SystemClock.now_ms();
        let mut pending: Vec<Vec<Record>> = vec![Vec::new(); partitions.len()];
        for _ in 0..per_slice {
            let event = generator.next_event();
            let partition = (xxhash_rust::xxh3::xxh3_64(event.key.as_bytes())
                % partitions.len() as u64) as usize;
            pending[partition].push(Record {
                timestamp: now,
                key: None,
                value: Some(event.payload.to_vec()),
                headers: Vec::new(),
            });
        }
        for (partition, records) in pending.iter().enumerate() {
            if !records.is_empty() {
                partitions[partition]
                    .append(batch::encode(records, ProducerStamp::none()))
                    .unwrap();
            }
        }
    }
}

/// A session like the store's (same threads, case-kept names) with a
/// plain DataFusion listing table over the extents' files.
async fn listing_context(extents: &Path, threads: usize) -> datafusion::prelude::SessionContext {
    let mut config =
        datafusion::prelude::SessionConfig::new().with_target_partitions(threads.max(1));
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let context = datafusion::prelude::SessionContext::new_with_config(config);
    context
        .register_parquet(
            "auth",
            extents.to_str().unwrap(),
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    context
}

/// DataFusion alone on the same files: the best of three per query (after
/// a warm-up), the share of the cold time that is the engine's own.
async fn listing_times(
    extents: &Path,
    threads: usize,
    queries: &[(&str, String, String)],
) -> Vec<f64> {
    let context = listing_context(extents, threads).await;
    let mut times = Vec::new();
    for (_, sql, _) in queries {
        let mut best = f64::INFINITY;
        for run in 0..4 {
            let started = Instant::now();
            context
                .sql(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            if run > 0 {
                best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.push(best);
    }
    times
}

/// `EXPLAIN ANALYZE` of every query through the store and through a
/// listing table, for finding where the two plans differ.
async fn explain(
    store: &Store,
    extents: &Path,
    threads: usize,
    queries: &[(&str, String, String)],
) {
    let context = listing_context(extents, threads).await;
    for (name, sql, _) in queries {
        let explained = format!("EXPLAIN ANALYZE {sql}");
        let ours = store
            .query(&explained)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let plain = context
            .sql(&explained)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        println!(
            "\n## {name}\n### store\n{}\n### listing table\n{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&ours.batches).unwrap(),
            datafusion::arrow::util::pretty::pretty_format_batches(&plain).unwrap()
        );
    }
}

/// DuckDB over the extents' Parquet files, in a `python3` process that
/// times one query when asked: its timings and the store's are taken side
/// by side, query by query, rather than minutes apart on a machine whose
/// speed drifts.
struct DuckDb {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl DuckDb {
    /// `None` when python3 or duckdb is missing.
    fn start(files: &[PathBuf]) -> Option<Self> {
        let script = r#"
import json, sys, time
import duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_progress_bar = false")
files = ", ".join(f"'{path}'" for path in json.loads(sys.argv[1]))
con.execute(f"CREATE VIEW auth AS SELECT * FROM read_parquet([{files}])")
print("ready", flush=True)
for line in sys.stdin:
    sql = json.loads(line)
    con.execute(sql).fetchall()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        best = min(best, time.perf_counter() - started)
    print(json.dumps(best * 1000.0), flush=True)
"#;
        let python = std::env::var("FRESHET_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .args(["-c", script, &serde_json::to_string(files).unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let input = child.stdin.take()?;
        let output = std::io::BufReader::new(child.stdout.take()?);
        let mut duck = Self {
            child,
            input,
            output,
        };
        match duck.answer().as_deref() {
            Some("ready") => Some(duck),
            _ => {
                eprintln!("DuckDB did not start (is `duckdb` installed for python3?)");
                None
            }
        }
    }

    fn answer(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.output.read_line(&mut line) {
            Ok(read) if read > 0 => Some(line.trim().to_string()),
            _ => None,
        }
    }

    /// Best of three runs after one warm-up, in ms.
    fn time(&mut self, sql: &str) -> Option<f64> {
        use std::io::Write;
        writeln!(self.input, "{}", serde_json::to_string(sql).unwrap()).ok()?;
        let answer = self.answer()?;
        match answer.parse() {
            Ok(ms) => Some(ms),
            Err(_) => {
                eprintln!("DuckDB answered {answer:?} to {sql}");
                None
            }
        }
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
