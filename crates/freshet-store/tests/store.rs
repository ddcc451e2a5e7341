//! The store over a real log: simulator events in, SQL answers checked
//! against answers computed here from the same events.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_core::{ManualClock, SystemClock};
use freshet_log::batch::{self};
use freshet_sim::generator::{Generated, Injection, Options};
use freshet_sim::scenario::Scenario;
use freshet_store::ColumnType;
use freshet_store::arrow::array::{Array, Float64Array, Int64Array, StringViewArray};
use serde_json::Value;

use common::{
    Fixture, assert_same_rows, counts_by_key, explained, generate, iot_table, options, produce,
    rows,
};

#[test]
fn events_are_queryable_and_answers_match_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 3, Arc::new(SystemClock));
    let events = generate(
        Options {
            duplicates: 0.01,
            ..options(Scenario::Iot, 7)
        },
        20_000,
    );
    fixture.store().apply(iot_table()).unwrap();
    produce(&fixture.log, "iot", &events);

    // Independent answers from the events themselves.
    let unique: Vec<Value> = events
        .iter()
        .filter(|e| e.injection != Injection::Duplicate)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect();
    let duplicates = events.len() - unique.len();
    assert!(
        duplicates > 100,
        "the simulator injected {duplicates} duplicates"
    );
    fixture.wait_for_rows("telemetry", unique.len() as i64);
    assert_eq!(
        fixture.count("SELECT count(DISTINCT \"eventId\") FROM telemetry"),
        unique.len() as i64
    );

    let mut by_type: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for event in &unique {
        let entry = by_type
            .entry(event["type"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += 1;
        entry.1 += event["value"].as_f64().unwrap();
    }
    let result = fixture.query("SELECT type, count(*) AS n, sum(value) AS total FROM telemetry GROUP BY type ORDER BY type");
    let mut answered = BTreeMap::new();
    for batch in &result.batches {
        let types = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringViewArray>()
            .unwrap();
        let counts = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let sums = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        for row in 0..batch.num_rows() {
            answered.insert(
                types.value(row).to_string(),
                (counts.value(row), sums.value(row)),
            );
        }
    }
    assert_eq!(answered.len(), by_type.len());
    for (kind, (count, sum)) in &by_type {
        let (n, total) = answered[kind];
        assert_eq!(n, *count, "{kind}");
        assert!(
            (total - sum).abs() < 1e-6 * sum.abs().max(1.0),
            "{kind}: {total} vs {sum}"
        );
    }

    // Distinct counts by short strings (types, inline in their views) and
    // long ones (device ids), through the rule that drops repeats ahead of
    // the group table.
    let counts_of = |field: &str| {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for event in &unique {
            *counts
                .entry(event[field].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        counts
    };
    let distinct_answers = |fixture: &Fixture| {
        let count = |column: &str| {
            let sql = format!("SELECT count(DISTINCT \"{column}\") FROM telemetry");
            let plan = explained(fixture, &sql);
            assert!(plan.contains("DropRepeats"), "{plan}");
            fixture.count(&sql)
        };
        let counts = |column: &str| {
            let sql = format!(
                "SELECT \"{column}\" AS k, count(*) AS n FROM telemetry GROUP BY \"{column}\""
            );
            let plan = explained(fixture, &sql);
            assert!(plan.contains("CountByKey"), "{plan}");
            counts_by_key(fixture, &sql)
        };
        assert_eq!(counts("type"), counts_of("type"));
        assert_eq!(counts("deviceId"), counts_of("deviceId"));
        (count("type"), count("deviceId"))
    };
    let distinct_of = |field: &str| {
        unique
            .iter()
            .map(|e| e[field].as_str().unwrap())
            .collect::<HashSet<_>>()
            .len() as i64
    };
    let expected_distinct = (distinct_of("type"), distinct_of("deviceId"));
    assert!(
        expected_distinct.0 > 1 && expected_distinct.1 > 20,
        "{expected_distinct:?}"
    );
    assert_eq!(distinct_answers(&fixture), expected_distinct);

    // Filters on a string column, alone and beside others, with the
    // column passed on or not.
    let kinds: Vec<&str> = {
        let mut kinds: Vec<&str> = unique.iter().map(|e| e["type"].as_str().unwrap()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    };
    let (first_kind, second_kind) = (kinds[0], kinds[1]);
    // Every third device: dictionaries of many values.
    let devices: HashSet<&str> = unique
        .iter()
        .map(|e| e["deviceId"].as_str().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .step_by(3)
        .collect();
    let threshold = 50.0;
    let filtered_sql = [
        format!("SELECT count(*) FROM telemetry WHERE type = '{first_kind}'"),
        format!(
            "SELECT \"deviceId\" AS k, count(*) AS n FROM telemetry \
             WHERE type <> '{first_kind}' AND value > {threshold} GROUP BY \"deviceId\""
        ),
        format!(
            "SELECT type AS k, count(*) AS n FROM telemetry \
             WHERE type IN ('{first_kind}', '{second_kind}') AND value <= {threshold} GROUP BY type"
        ),
        "SELECT count(*) FROM telemetry WHERE type IS NULL OR type = 'no such type'".to_string(),
        format!(
            "SELECT count(*) FROM telemetry WHERE \"deviceId\" IN ({})",
            devices
                .iter()
                .map(|d| format!("'{d}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        // The coded column read again by a condition on two columns.
        format!(
            "SELECT count(*) FROM telemetry \
             WHERE type = '{first_kind}' AND (type = '{second_kind}' OR value <= {threshold})"
        ),
    ];
    let expected_filtered = {
        let count_where = |field: &str, keep: &dyn Fn(&serde_json::Value) -> bool| {
            let mut counts: BTreeMap<String, i64> = BTreeMap::new();
            for event in unique.iter().filter(|e| keep(e)) {
                *counts
                    .entry(event[field].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            counts
        };
        let value = |e: &serde_json::Value| e["value"].as_f64().unwrap();
        (
            unique.iter().filter(|e| e["type"] == first_kind).count() as i64,
            count_where("deviceId", &|e| {
                e["type"] != first_kind && value(e) > threshold
            }),
            count_where("type", &|e| {
                (e["type"] == first_kind || e["type"] == second_kind) && value(e) <= threshold
            }),
            0,
            unique
                .iter()
                .filter(|e| devices.contains(e["deviceId"].as_str().unwrap()))
                .count() as i64,
            unique
                .iter()
                .filter(|e| e["type"] == first_kind && value(e) <= threshold)
                .count() as i64,
        )
    };
    assert!(
        !expected_filtered.1.is_empty() && expected_filtered.2.len() == 2,
        "{expected_filtered:?}"
    );
    let filtered_answers = |fixture: &Fixture| {
        let counts = |sql: &str| counts_by_key(fixture, sql);
        (
            fixture.count(&filtered_sql[0]),
            counts(&filtered_sql[1]),
            counts(&filtered_sql[2]),
            fixture.count(&filtered_sql[3]),
            fixture.count(&filtered_sql[4]),
            fixture.count(&filtered_sql[5]),
        )
    };
    assert_eq!(filtered_answers(&fixture), expected_filtered);

    // A time-range filter, checked against the events' own times.
    let first = events[0].event_time_us;
    let from = first + 5_000_000;
    let to = first + 9_000_000;
    let expected = events
        .iter()
        .filter(|e| e.injection != Injection::Duplicate && (from..to).contains(&e.event_time_us))
        .count() as i64;
    let sql = format!(
        "SELECT count(*) FROM telemetry WHERE \"createdAt\" >= to_timestamp_micros({from}) AND \"createdAt\" < to_timestamp_micros({to})"
    );
    assert_eq!(fixture.count(&sql), expected);

    // After sealing, the same answers come from extents.
    let table = fixture.store().table("telemetry").unwrap();
    table.seal().unwrap();
    assert!(table.info().extents >= 1);
    assert_eq!(table.info().buffered_rows, 0);
    assert_eq!(
        fixture.count("SELECT count(*) FROM telemetry"),
        unique.len() as i64
    );
    assert_eq!(fixture.count(&sql), expected);
    assert_eq!(distinct_answers(&fixture), expected_distinct);
    assert_eq!(table.info().duplicates_dropped, duplicates as u64);
    assert_eq!(filtered_answers(&fixture), expected_filtered);

    // And from the extents' Parquet, where the grouping nodes read the
    // dictionary-coded columns by code.
    let mut cold = iot_table();
    cold.hot_ms = Some(1);
    fixture.store().apply(cold).unwrap();
    let table = fixture.store().table("telemetry").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    table.refresh_hot_cache().unwrap();
    assert_eq!(table.info().hot_extents, 0);
    for sql in [
        "SELECT count(DISTINCT type) FROM telemetry",
        "SELECT \"deviceId\" AS k, count(*) AS n FROM telemetry GROUP BY \"deviceId\"",
    ] {
        let plan = explained(&fixture, sql);
        assert!(plan.contains("(codes)"), "{plan}");
    }
    for sql in &filtered_sql {
        let plan = explained(&fixture, sql);
        assert!(plan.contains("CodedFilter"), "{plan}");
    }
    assert_eq!(distinct_answers(&fixture), expected_distinct);
    assert_eq!(filtered_answers(&fixture), expected_filtered);
    assert_eq!(fixture.count(&sql), expected);
    fixture.close();
}

/// A table with rows in memory beside cold extents filters both: the
/// extents by dictionary codes, the buffer as before.
#[test]
fn filters_read_codes_from_cold_extents_beside_buffered_rows() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(options(Scenario::Iot, 5), 4_000);
    let fixture = Fixture::open(dir.path(), "iot", 2, Arc::new(SystemClock));
    let mut spec = iot_table();
    spec.hot_ms = Some(1);
    fixture.store().apply(spec).unwrap();
    produce(&fixture.log, "iot", &events[..3_000]);
    fixture.wait_for_rows("telemetry", 3_000);
    let table = fixture.store().table("telemetry").unwrap();
    table.seal().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    table.refresh_hot_cache().unwrap();
    assert_eq!(table.info().hot_extents, 0);
    produce(&fixture.log, "iot", &events[3_000..]);
    fixture.wait_for_rows("telemetry", 4_000);
    assert!(table.info().buffered_rows > 0);
    let of = |e: &Generated| serde_json::from_slice::<serde_json::Value>(&e.payload).unwrap();
    let unique: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.injection != Injection::Duplicate)
        .map(of)
        .collect();
    let temperatures = unique.iter().filter(|e| e["type"] == "TEMP").count() as i64;
    assert!(temperatures > 0);
    let sql = "SELECT count(*) FROM telemetry WHERE type = 'TEMP'";
    let plan = explained(&fixture, sql);
    assert!(
        plan.contains("CodedFilter") && plan.contains("UnionExec"),
        "{plan}"
    );
    assert_eq!(fixture.count(sql), temperatures);
    fixture.close();
}

#[test]
fn a_restart_resumes_from_committed_positions_without_loss_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(options(Scenario::Iot, 11), 6_000);
    let fixture = Fixture::open(dir.path(), "iot", 2, Arc::new(SystemClock));
    fixture.store().apply(iot_table()).unwrap();
    produce(&fixture.log, "iot", &events[..3_000]);
    fixture.wait_for_rows("telemetry", 3_000);
    fixture.store().table("telemetry").unwrap().seal().unwrap();
    produce(&fixture.log, "iot", &events[3_000..4_000]);
    fixture.wait_for_rows("telemetry", 4_000);
    // Rows 3000..4000 are only buffered; simulate a crash: the table stops
    // without sealing and its manifest knows only the first 3000.
    let table = fixture.store().table("telemetry").unwrap();
    let committed: i64 = table.committed_positions().values().sum();
    assert_eq!(committed, 3_000);
    // An extent file written but never committed (a crash between the two steps).
    std::fs::write(
        table
            .dir()
            .join("extents")
            .join(format!("{:020}.parquet", 999)),
        b"partial",
    )
    .unwrap();
    drop(table);
    fixture.store().halt(); // no final seal, as after kill -9
    fixture.close();

    let fixture = Fixture::open(dir.path(), "iot", 2, Arc::new(SystemClock));
    fixture.store().apply(iot_table()).unwrap();
    produce(&fixture.log, "iot", &events[4_000..]);
    fixture.wait_for_rows("telemetry", 6_000);
    assert_eq!(
        fixture.count("SELECT count(DISTINCT \"eventId\") FROM telemetry"),
        6_000
    );
    let table = fixture.store().table("telemetry").unwrap();
    assert!(
        !table
            .dir()
            .join("extents")
            .join(format!("{:020}.parquet", 999))
            .exists()
    );
    fixture.close();
}

#[test]
fn malformed_events_fill_only_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    let events = generate(
        Options {
            malformed: 0.3,
            ..options(Scenario::Iot, 3)
        },
        3_000,
    );
    let malformed = events
        .iter()
        .filter(|e| e.injection == Injection::Malformed)
        .count();
    assert!(malformed > 500);
    fixture.store().apply(iot_table()).unwrap();
    produce(&fixture.log, "iot", &events);
    fixture.wait_for_rows("telemetry", (events.len() - malformed) as i64);
    let table = fixture.store().table("telemetry").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while table.info().dead_letters < malformed as u64 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let dead = fixture.log.partition("iot.deadletter", 0).unwrap();
    assert_eq!(dead.end_offset(), malformed as i64);
    let read = dead.read(0, 1 << 20).unwrap();
    let records =
        batch::decode_uncompressed(&read.bytes[..batch::split(&read.bytes).unwrap()[0].1.len()])
            .unwrap();
    let (_, first) = &records[0];
    let reason = first
        .headers
        .iter()
        .find(|(k, _)| k == "freshet.reason")
        .unwrap()
        .1
        .clone()
        .unwrap();
    assert!(!reason.is_empty());
    assert!(
        first
            .headers
            .iter()
            .any(|(k, v)| k == "freshet.table" && v.as_deref() == Some(&b"telemetry"[..]))
    );
    fixture.close();

    // Re-reading after a restart does not send dead letters twice.
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    std::fs::remove_file(dir.path().join("store/telemetry/manifest.json")).ok();
    fixture.store().apply(iot_table()).unwrap();
    fixture.wait_for_rows("telemetry", (events.len() - malformed) as i64);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fixture
            .log
            .partition("iot.deadletter", 0)
            .unwrap()
            .end_offset(),
        malformed as i64
    );
    fixture.close();
}

/// `path` (absolute) as a path relative to the current directory.
fn relative_to_cwd(path: &Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.join(path.strip_prefix("/").unwrap())
}

#[test]
fn retention_and_the_hot_window_follow_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_767_225_600_000);
    // A relative data directory, as `--data-dir data` gives: extents read
    // from disk must still be found.
    let relative = relative_to_cwd(dir.path());
    assert!(relative.is_relative());
    let fixture = Fixture::open(&relative, "iot", 1, Arc::new(clock.clone()));
    let mut spec = iot_table();
    spec.retention_ms = Some(3_600_000);
    spec.hot_ms = Some(600_000);
    fixture.store().apply(spec).unwrap();
    let events = generate(options(Scenario::Iot, 5), 2_000);
    produce(&fixture.log, "iot", &events[..1_000]);
    fixture.wait_for_rows("telemetry", 1_000);
    let table = fixture.store().table("telemetry").unwrap();
    table.seal().unwrap();
    assert_eq!(table.info().hot_extents, table.info().extents);

    // Past the hot window: the extent leaves memory, rows are read from disk.
    clock.advance_ms(1_200_000);
    produce(&fixture.log, "iot", &events[1_000..]);
    fixture.wait_for_rows("telemetry", 2_000);
    table.seal().unwrap();
    table.maintain().unwrap();
    let info = table.info();
    assert!(info.extents > info.hot_extents, "{info:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), 2_000);

    // Past retention for the first batch only.
    clock.advance_ms(3_600_000 - 1_200_000 + 1);
    assert_eq!(
        fixture.count("SELECT count(*) FROM telemetry"),
        1_000,
        "filtered at query time"
    );
    table.maintain().unwrap();
    assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), 1_000);
    let ids: HashSet<String> = fixture
        .query("SELECT \"eventId\" FROM telemetry")
        .batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<StringViewArray>()
                .unwrap()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let second: HashSet<String> = events[1_000..]
        .iter()
        .map(|e| e.event_id.as_deref().unwrap().to_string())
        .collect();
    assert_eq!(ids, second);
    // Point lookups by the dedup key, whose row groups are skipped by
    // their bloom filters whether in memory or read from Parquet.
    for id in second.iter().take(20) {
        assert_eq!(
            fixture.count(&format!(
                "SELECT count(*) FROM telemetry WHERE \"eventId\" = '{id}'"
            )),
            1,
            "{id}"
        );
    }
    assert_eq!(
        fixture.count("SELECT count(*) FROM telemetry WHERE \"eventId\" = 'no such id'"),
        0
    );
    fixture.close();
}

#[test]
fn small_extents_merge_without_changing_answers() {
    let dir = tempfile::tempdir().unwrap();
    // Three small extents merge once the newest is five seal intervals old;
    // until the clock says so, the sealing thread leaves them alone.
    let clock = ManualClock::new(1_767_225_600_000);
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(clock.clone()));
    let mut spec = iot_table();
    spec.extent_span_ms = 86_400_000;
    fixture.store().apply(spec.clone()).unwrap();
    let events = generate(options(Scenario::Iot, 9), 5_000);
    let table = fixture.store().table("telemetry").unwrap();
    let mut produced = 0;
    for chunk in events.chunks(1_700) {
        produce(&fixture.log, "iot", chunk);
        produced += chunk.len();
        fixture.wait_for_rows("telemetry", produced as i64);
        table.seal().unwrap();
    }
    assert_eq!(table.info().extents, 3);
    let before = fixture.count("SELECT sum(seq) FROM telemetry");
    // What a query planned just before the merge holds.
    let planned = table.snapshot();
    assert_eq!(table.merge_small_extents().unwrap(), 0, "not yet quiet");
    clock.advance_ms(5 * spec.seal.max_age_ms);
    // The sealing thread may merge them first; either way they end as one.
    table.merge_small_extents().unwrap();
    assert_eq!(table.info().extents, 1);
    assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), 5_000);
    assert_eq!(fixture.count("SELECT sum(seq) FROM telemetry"), before);
    let files = || {
        std::fs::read_dir(table.dir().join("extents"))
            .unwrap()
            .count()
    };
    assert_eq!(
        files(),
        4,
        "merged-away files stay while a snapshot holds them"
    );
    let rows: usize = planned
        .extents
        .iter()
        .flat_map(|e| freshet_store::extent::read_parquet(e.file.path(), &planned.schema).unwrap())
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 5_000);
    // Reopening the table (a structural alter) leaves them too.
    let mut rekeyed = spec.clone();
    rekeyed.dedup.as_mut().unwrap().window_ms = 60_000;
    fixture.store().apply(rekeyed).unwrap();
    assert_eq!(files(), 4, "a reopened table leaves files a snapshot holds");
    drop(planned);
    assert_eq!(files(), 1, "merged-away files are removed");
    fixture.close();
}

#[test]
fn sql_errors_say_where_and_what() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    fixture.store().apply(iot_table()).unwrap();
    let error = fixture
        .runtime
        .block_on(
            fixture
                .store()
                .query("SELECT count(*)\nFROM telemetry\nWHERE value >"),
        )
        .unwrap_err();
    assert_eq!(error.code, "syntax");
    assert_eq!(error.line, Some(3), "{error:?}");
    let error = fixture
        .runtime
        .block_on(fixture.store().query("SELECT nope FROM telemetry"))
        .unwrap_err();
    assert_eq!(error.code, "plan");
    assert!(error.message.contains("nope"), "{error:?}");
    let error = fixture
        .runtime
        .block_on(fixture.store().query("DROP TABLE telemetry"))
        .unwrap_err();
    assert_eq!(error.code, "forbidden", "{error:?}");
    let error = fixture
        .runtime
        .block_on(fixture.store().query("SELECT * FROM missing"))
        .unwrap_err();
    assert!(error.message.contains("missing"), "{error:?}");
    fixture.close();
}

#[test]
fn altering_a_table_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    let mut spec = iot_table();
    spec.columns.retain(|c| c.name != "md0");
    fixture.store().apply(spec.clone()).unwrap();
    let events = generate(options(Scenario::Iot, 13), 2_000);
    produce(&fixture.log, "iot", &events[..1_000]);
    fixture.wait_for_rows("telemetry", 1_000);
    fixture.store().table("telemetry").unwrap().seal().unwrap();
    let altered = iot_table();
    assert_eq!(
        fixture.store().apply(altered.clone()).unwrap(),
        freshet_store::Applied::Altered
    );
    produce(&fixture.log, "iot", &events[1_000..]);
    fixture.wait_for_rows("telemetry", 2_000);
    assert_eq!(
        fixture.count("SELECT count(md0) FROM telemetry"),
        1_000,
        "old rows read the new column as null"
    );
    let mut retyped = altered;
    retyped
        .columns
        .iter_mut()
        .find(|c| c.name == "seq")
        .unwrap()
        .kind = ColumnType::Real;
    let error = fixture.store().apply(retyped).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("changing it to real is not supported"),
        "{error}"
    );
    fixture.close();
}

#[test]
fn the_dedup_window_holds_at_most_its_max_keys() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    let mut spec = iot_table();
    spec.dedup.as_mut().unwrap().max_keys = 500;
    fixture.store().apply(spec).unwrap();
    let events = generate(options(Scenario::Iot, 21), 1_000);
    produce(&fixture.log, "iot", &events);
    fixture.wait_for_rows("telemetry", 1_000);
    let table = fixture.store().table("telemetry").unwrap();
    assert_eq!(table.info().dedup_keys_forgotten, 500);

    // The oldest keys were forgotten, so their repeats are kept (and
    // remembered, pushing out as many more); the newest are still held.
    let repeats: Vec<Generated> = events[..100]
        .iter()
        .chain(&events[900..])
        .cloned()
        .collect();
    produce(&fixture.log, "iot", &repeats);
    fixture.wait_for_rows("telemetry", 1_100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while table.info().duplicates_dropped < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let info = table.info();
    assert_eq!(
        (
            info.duplicates_dropped,
            info.dedup_keys_forgotten,
            info.rows
        ),
        (100, 600, 1_100)
    );
    assert_eq!(info.dedup_max_keys, Some(500));
    fixture.close();
}

#[test]
fn changing_policies_keeps_the_table_running() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_767_225_600_000);
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(clock.clone()));
    fixture.store().apply(iot_table()).unwrap();
    let events = generate(options(Scenario::Iot, 17), 2_000);
    produce(&fixture.log, "iot", &events[..1_000]);
    fixture.wait_for_rows("telemetry", 1_000);
    let table = fixture.store().table("telemetry").unwrap();
    table.seal().unwrap();
    assert_eq!(table.info().hot_extents, table.info().extents);

    // A caching policy that leaves every extent cold, and a retention
    // period: the running table takes both, nothing is reopened.
    clock.advance_ms(60_000);
    let mut cooler = iot_table();
    cooler.hot_ms = Some(30_000);
    cooler.retention_ms = Some(86_400_000);
    assert_eq!(
        fixture.store().apply(cooler.clone()).unwrap(),
        freshet_store::Applied::Altered
    );
    let running = fixture.store().table("telemetry").unwrap();
    assert!(Arc::ptr_eq(&table, &running), "the table was reopened");
    let info = running.info();
    assert_eq!(info.hot_extents, 0, "{info:?}");
    assert_eq!(
        (info.hot_ms, info.retention_ms),
        (cooler.hot_ms, cooler.retention_ms)
    );
    assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), 1_000);

    // Ingestion goes on, and its dedup window still holds the first keys.
    produce(&fixture.log, "iot", &events);
    fixture.wait_for_rows("telemetry", 2_000);
    running.seal().unwrap();
    assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), 2_000);
    assert_eq!(running.info().duplicates_dropped, 1_000);

    // A structural change (the dedup window) reopens the table.
    let mut rekeyed = cooler;
    rekeyed.dedup.as_mut().unwrap().window_ms = 60_000;
    fixture.store().apply(rekeyed).unwrap();
    let reopened = fixture.store().table("telemetry").unwrap();
    assert!(!Arc::ptr_eq(&running, &reopened));
    assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), 2_000);
    fixture.close();
}

const VIEW_AGGREGATES: &str = "count(*) AS n, countif(type = 'temperature') AS temperatures, sum(seq) AS seq_sum, \
     min(value) AS low, max(value) AS high, avg(value) AS mean, dcount(eventId) AS ids, \
     approx_percentile_cont(value, 0.5) AS median, arg_max(value, seq) AS seq_at_high, arg_min(value, seq) AS seq_at_low";

#[test]
fn views_equal_the_aggregation_over_raw_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = iot_table();
    // Many seals, so that the materialized part is merged from many state
    // batches, and a long interval, so that the last rows stay the delta.
    spec.seal.max_rows = 700;
    spec.seal.max_age_ms = 600_000;
    let mut events = generate(
        Options {
            duplicates: 0.01,
            ..options(Scenario::Iot, 11)
        },
        20_100,
    );
    let spares: Vec<Generated> = events
        .split_off(20_000)
        .into_iter()
        .filter(|e| e.injection != Injection::Duplicate)
        .collect();
    let group = "deviceId, date_bin(INTERVAL '5 seconds', createdAt) AS minute";
    let view = |name: &str| freshet_store::ViewSpec {
        name: name.into(),
        query: format!(
            "SELECT {group}, {VIEW_AGGREGATES} FROM telemetry GROUP BY deviceId, minute"
        ),
    };
    let raw = format!(
        "SELECT {group}, {VIEW_AGGREGATES} FROM telemetry GROUP BY deviceId, minute ORDER BY deviceId, minute"
    );
    {
        let fixture = Fixture::open(dir.path(), "iot", 3, Arc::new(SystemClock));
        fixture.store().apply(spec.clone()).unwrap();
        fixture.store().apply_view(view("early")).unwrap();
        produce(&fixture.log, "iot", &events[..10_000]);
        let first = events[..10_000]
            .iter()
            .filter(|e| e.injection != Injection::Duplicate)
            .count();
        fixture.wait_for_rows("telemetry", first as i64);
        // Created over existing rows: backfilled from the extents.
        fixture.store().apply_view(view("late")).unwrap();
        produce(&fixture.log, "iot", &events[10_000..]);
        let mut unique = events
            .iter()
            .filter(|e| e.injection != Injection::Duplicate)
            .count();
        fixture.wait_for_rows("telemetry", unique as i64);
        // When a seal took every row, one more event starts a buffer far
        // below the seal size, so that the delta is exercised too.
        let mut spares = spares.iter();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let delta = fixture.store().views()[0].delta_rows;
            if delta > 0 && delta < 700 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the buffer never settled: {delta} rows"
            );
            if delta == 0 {
                produce(
                    &fixture.log,
                    "iot",
                    std::slice::from_ref(spares.next().expect("a spare event")),
                );
                unique += 1;
                fixture.wait_for_rows("telemetry", unique as i64);
            } else {
                // A seal is due.
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        let infos = fixture.store().views();
        assert_eq!(infos.len(), 2);
        for info in &infos {
            assert!(info.error.is_none(), "{info:?}");
            assert!(
                info.materialized_rows > 0 && info.delta_rows > 0,
                "both parts are exercised: {info:?}"
            );
        }
        let expected = rows(&fixture.query(&raw));
        assert!(expected.len() > 50, "{} groups", expected.len());
        let total: i64 = expected.iter().map(|r| r[2].as_i64().unwrap()).sum();
        assert_eq!(total, unique as i64);
        for name in ["early", "late"] {
            let got =
                rows(&fixture.query(&format!("SELECT * FROM {name} ORDER BY deviceId, minute")));
            // Medians merged from t-digests of parts may differ from one
            // t-digest over all values by its error: within 3 of a 0-100 range.
            assert_same_rows(&got, &expected, &[9], 3.0);
        }
        // Operators above the aggregation run over the merged answer.
        let filtered = rows(&fixture.query(
            "SELECT deviceId, sum(n) AS n FROM early WHERE n > 1 GROUP BY deviceId ORDER BY n DESC, deviceId LIMIT 5",
        ));
        let raw_filtered = rows(&fixture.query(
            "SELECT deviceId, sum(n) AS n FROM (SELECT deviceId, date_bin(INTERVAL '5 seconds', createdAt) AS minute, count(*) AS n \
             FROM telemetry GROUP BY deviceId, minute) WHERE n > 1 GROUP BY deviceId ORDER BY n DESC, deviceId LIMIT 5",
        ));
        assert_eq!(filtered, raw_filtered);
        fixture.close();
    }
    // After a restart the materialized part is rebuilt from the extents.
    let fixture = Fixture::open(dir.path(), "iot", 3, Arc::new(SystemClock));
    fixture.store().apply(spec).unwrap();
    fixture.store().apply_view(view("early")).unwrap();
    let expected = rows(&fixture.query(&raw));
    let got = rows(&fixture.query("SELECT * FROM early ORDER BY deviceId, minute"));
    assert_same_rows(&got, &expected, &[9], 3.0);
    fixture.close();
}

#[test]
fn queries_that_cannot_be_views_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    fixture.store().apply(iot_table()).unwrap();
    let refuse = |query: &str| {
        let spec = freshet_store::ViewSpec {
            name: "v".into(),
            query: query.into(),
        };
        fixture
            .store()
            .apply_view(spec)
            .expect_err(query)
            .to_string()
    };
    assert!(refuse("SELECT count(DISTINCT deviceId) FROM telemetry").contains("count(DISTINCT"));
    assert!(refuse("SELECT a.deviceId, count(*) FROM telemetry a JOIN telemetry b ON a.eventId = b.eventId GROUP BY a.deviceId").contains("one table"));
    assert!(refuse("SELECT deviceId FROM telemetry").contains("GROUP BY"));
    let unknown = refuse("SELECT nosuch, count(*) FROM telemetry GROUP BY nosuch");
    assert!(unknown.contains("nosuch"), "{unknown}");
    let syntax = refuse("SELECT deviceId, count(*) FROM telemetry GROUP deviceId");
    assert!(syntax.contains("Line: 1, Column: 42"), "{syntax}");
    let clash = freshet_store::ViewSpec {
        name: "telemetry".into(),
        query: "SELECT count(*) FROM telemetry".into(),
    };
    assert!(
        fixture
            .store()
            .apply_view(clash)
            .unwrap_err()
            .to_string()
            .contains("a table has that name")
    );
    fixture.close();
}
