//! Row-level security: a table's predicate holds for SQL, KQL and views,
//! sealed and buffered rows alike, and a predicate that cannot be one is
//! refused with the reason.

mod common;

use std::sync::Arc;

use freshet_core::SystemClock;
use freshet_sim::generator::Injection;
use freshet_sim::scenario::Scenario;
use freshet_store::{StoreError, ViewSpec};
use serde_json::Value;

use common::{Fixture, generate, iot_table, options, produce, rows};

#[test]
fn rows_the_predicate_rejects_are_visible_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 3, Arc::new(SystemClock));
    let events = generate(options(Scenario::Iot, 5), 4_000);
    let mut secured = iot_table();
    secured.row_level_security = Some("type = 'TEMP' AND value >= 10".into());
    fixture.store().apply(secured.clone()).unwrap();
    fixture
        .store()
        .apply_view(ViewSpec {
            name: "per_type".into(),
            query: "SELECT type, count(*) AS n, min(value) AS low FROM telemetry GROUP BY type"
                .into(),
        })
        .unwrap();
    produce(&fixture.log, "iot", &events);
    let unique: Vec<Value> = events
        .iter()
        .filter(|e| e.injection != Injection::Duplicate)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect();
    let visible = unique
        .iter()
        .filter(|e| e["type"] == "TEMP" && e["value"].as_f64().unwrap() >= 10.0)
        .count() as i64;
    assert!(visible > 100 && visible < unique.len() as i64 / 2);
    fixture.wait_for_rows("telemetry", visible);

    let check = |fixture: &Fixture| {
        assert_eq!(fixture.count("SELECT count(*) FROM telemetry"), visible);
        assert_eq!(
            fixture.count("SELECT count(*) FROM telemetry WHERE type = 'CO2' OR value < 10"),
            0
        );
        assert_eq!(
            fixture.count(
                "SELECT count(*) FROM (SELECT * FROM telemetry t1 UNION ALL SELECT * FROM telemetry t2)"
            ),
            2 * visible
        );
        let kql = fixture.kql("telemetry | where type == 'CO2' | count");
        assert_eq!(rows(&kql), [[Value::from(0)]]);
        let kql = fixture.kql("telemetry | count");
        assert_eq!(rows(&kql), [[Value::from(visible)]]);
        // The view aggregates the visible rows only.
        let view = rows(&fixture.query("SELECT type, n FROM per_type"));
        assert_eq!(view, [[Value::from("TEMP"), Value::from(visible)]]);
        let low = rows(&fixture.query("SELECT low FROM per_type"))[0][0]
            .as_f64()
            .unwrap();
        assert!(low >= 10.0, "{low}");
    };
    check(&fixture);
    // Sealed into extents, held in memory and then read from disk, the same.
    let table = fixture.store().table("telemetry").unwrap();
    table.seal().unwrap();
    check(&fixture);
    let mut cold = secured.clone();
    cold.hot_ms = Some(1);
    fixture.store().apply(cold).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let table = fixture.store().table("telemetry").unwrap();
    table.refresh_hot_cache().unwrap();
    assert_eq!(table.info().hot_extents, 0);
    check(&fixture);

    // Lifting the predicate shows every row again, and the view follows.
    let mut open = secured.clone();
    open.row_level_security = None;
    fixture.store().apply(open).unwrap();
    fixture.wait_for_rows("telemetry", unique.len() as i64);
    let view: i64 = rows(&fixture.query("SELECT sum(n) FROM per_type"))[0][0]
        .as_i64()
        .unwrap();
    assert_eq!(view, unique.len() as i64);
    fixture.close();
}

#[test]
fn predicates_that_are_not_row_conditions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::open(dir.path(), "iot", 1, Arc::new(SystemClock));
    for (predicate, says) in [
        ("tpye = 'TEMP'", "tpye"),
        ("value + 1", "not a condition"),
        ("count(*) > 1", "not allowed"),
        ("type = ", "type ="),
    ] {
        let mut spec = iot_table();
        spec.row_level_security = Some(predicate.into());
        match fixture.store().apply(spec) {
            Err(StoreError::Invalid(message)) => {
                assert!(
                    message.contains("row_level_security") && message.contains(says),
                    "{predicate}: {message}"
                );
            }
            other => panic!("{predicate}: {other:?}"),
        }
    }
    assert!(fixture.store().table("telemetry").is_none());
    fixture.close();
}
