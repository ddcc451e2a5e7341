//! The store through the real binary: simulator events in over Kafka,
//! answers out over `POST /api/v1/query` and `freshet query`; kill -9
//! mid-ingestion loses and repeats nothing.

mod common;

use common::{Freshet, api_get, wait_for};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[topic]]
name = "iot"
partitions = 3

[[table]]
name = "telemetry"
topic = "iot"
time_column = "createdAt"
dedup_key = "eventId"
dedup_window = "10m"
seal_rows = 4000
seal_interval = "1h"
columns = [
  { name = "eventId", type = "string", required = true },
  { name = "deviceId", type = "string" },
  { name = "type", type = "string" },
  { name = "value", type = "real" },
  { name = "md0", path = "complexData.moreData0", type = "real" },
  { name = "seq", path = "deviceSequenceNumber", type = "long" },
  { name = "createdAt", type = "datetime" },
]

[[view]]
name = "per_device"
query = """
SELECT deviceId, count(*) AS n, countif(type = 'temperature') AS temperatures,
       max(value) AS high, dcount(eventId) AS ids
FROM telemetry GROUP BY deviceId"""
"#;

/// The view's answer next to the same aggregation over the raw rows.
const VIEW_ROWS: &str = "SELECT * FROM per_device ORDER BY deviceId";
const RAW_ROWS: &str = "SELECT deviceId, count(*) AS n, countif(type = 'temperature') AS temperatures, \
     max(value) AS high, dcount(eventId) AS ids FROM telemetry GROUP BY deviceId ORDER BY deviceId";

fn post(url: &str, body: &Value, accept: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Accept", accept)
        .send_json(body)
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_vec().unwrap())
}

fn query(freshet: &Freshet, sql: &str) -> Value {
    let (status, body) = post(
        &format!("http://{}/api/v1/query", freshet.http),
        &json!({ "sql": sql }),
        "application/json",
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

fn scalar(freshet: &Freshet, sql: &str) -> i64 {
    query(freshet, sql)["rows"][0][0].as_i64().unwrap()
}

fn simulate(freshet: &Freshet, dir: &std::path::Path, count: &str, extra: &[&str]) -> Value {
    let manifest = dir.join(format!("manifest-{count}.json"));
    let mut args = vec![
        "simulate",
        "--scenario",
        "iot",
        "--topic",
        "iot",
        "--count",
        count,
        "--rate",
        "0",
        "--keys",
        "50",
    ];
    args.extend_from_slice(&["--manifest", manifest.to_str().unwrap()]);
    args.extend_from_slice(extra);
    freshet.client(&args, "");
    serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap()
}

#[test]
fn simulator_events_become_rows_queryable_by_sql() {
    let dir = tempfile::tempdir().unwrap();
    let freshet = Freshet::start(dir.path(), CONFIG);
    let manifest = simulate(
        &freshet,
        dir.path(),
        "20000",
        &["--duplicates", "0.01", "--malformed", "0.002"],
    );
    let unique = manifest["unique"].as_i64().unwrap();
    let malformed = manifest["malformed"].as_i64().unwrap();
    assert!(
        manifest["duplicates"].as_i64().unwrap() > 100 && malformed > 10,
        "{manifest}"
    );

    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM telemetry") == unique).then_some(()));
    assert_eq!(
        scalar(&freshet, "SELECT count(DISTINCT eventId) FROM telemetry"),
        unique,
        "no duplicate reached the table"
    );
    let answer = query(
        &freshet,
        "SELECT type, count(*) AS n FROM telemetry GROUP BY type ORDER BY n DESC",
    );
    let total: i64 = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[1].as_i64().unwrap())
        .sum();
    assert_eq!(total, unique);
    assert_eq!(answer["columns"][0]["name"], "type");

    // The table listing shows the rows and what was set aside.
    let tables: Value = api_get(&freshet, "tables");
    let table = &tables["tables"][0];
    assert_eq!(table["name"], "telemetry");
    assert_eq!(table["rows"].as_i64().unwrap(), unique);
    assert_eq!(table["dead_letters"].as_i64().unwrap(), malformed);
    assert_eq!(
        table["duplicates_dropped"].as_i64().unwrap(),
        manifest["duplicates"].as_i64().unwrap()
    );

    // The materialized view (sealed rows folded in, the rest as delta)
    // answers as the aggregation over the raw rows does. Ten more events
    // stay buffered (far below seal_rows), so the delta is not empty.
    let extra: Vec<Value> = (0..10)
        .map(|i| json!({"eventId": format!("extra-{i}"), "deviceId": "extra", "type": "temperature", "value": i, "createdAt": "2026-11-22T10:00:00Z"}))
        .collect();
    let (status, _) = post(
        &format!("http://{}/api/v1/topics/iot/events", freshet.http),
        &Value::Array(extra),
        "application/json",
    );
    assert_eq!(status, 200);
    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM telemetry") == unique + 10).then_some(()));
    let view = query(&freshet, VIEW_ROWS);
    assert_eq!(view["rows"], query(&freshet, RAW_ROWS)["rows"]);
    assert_eq!(view["rows"].as_array().unwrap().len(), 51);
    let views: Value = api_get(&freshet, "views");
    assert_eq!(views["views"][0]["name"], "per_device");
    assert_eq!(views["views"][0]["table"], "telemetry");
    assert!(
        views["views"][0]["materialized_rows"].as_i64().unwrap() > 0,
        "{views}"
    );
    assert!(
        views["views"][0]["delta_rows"].as_i64().unwrap() >= 10,
        "{views}"
    );

    // CSV and Arrow IPC by Accept.
    let (status, csv) = post(
        &format!("http://{}/api/v1/query", freshet.http),
        &json!({"sql": "SELECT count(*) AS n FROM telemetry"}),
        "text/csv",
    );
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        format!("n\n{}\n", unique + 10)
    );
    let (status, ipc) = post(
        &format!("http://{}/api/v1/query", freshet.http),
        &json!({"sql": "SELECT seq FROM telemetry LIMIT 10"}),
        "application/vnd.apache.arrow.stream",
    );
    assert_eq!(status, 200);
    assert_eq!(
        &ipc[..4],
        &[0xff, 0xff, 0xff, 0xff],
        "an Arrow IPC stream starts with a continuation marker"
    );

    // KQL: the same answers as SQL, Data Explorer's names and defaults
    // (sort descending), the render hint, views by name.
    let kql = |text: &str| {
        let (status, body) = post(
            &format!("http://{}/api/v1/query", freshet.http),
            &json!({ "kql": text }),
            "application/json",
        );
        let body: Value = serde_json::from_slice(&body).unwrap();
        (status, body)
    };
    let (status, body) = kql("telemetry | summarize n = count() by type | sort by n");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"],
        query(
            &freshet,
            "SELECT type, count(*) AS n FROM telemetry GROUP BY type ORDER BY n DESC"
        )["rows"]
    );
    let (_, body) = kql("per_device | count");
    assert_eq!(body["columns"][0]["name"], "Count");
    assert_eq!(body["rows"][0][0], 51);
    let (_, body) = kql("telemetry | summarize count() by bin(createdAt, 1h) | render timechart");
    assert_eq!(body["render"]["kind"], "timechart", "{body}");
    assert_eq!(body["columns"][1]["name"], "count_");
    let (status, body) = kql("telemetry\n| where nope > 1");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "plan");
    assert_eq!(
        (
            body["error"]["line"].as_i64(),
            body["error"]["column"].as_i64()
        ),
        (Some(2), Some(9))
    );
    let (status, _) = post(
        &format!("http://{}/api/v1/query", freshet.http),
        &json!({"sql": "SELECT 1", "kql": "telemetry | count"}),
        "application/json",
    );
    assert_eq!(status, 400, "one language per query");

    // `freshet query` prints a table.
    let http = format!("http://{}", freshet.http);
    let printed = freshet.client(
        &[
            "query",
            "--server",
            &http,
            "SELECT count(*) AS n FROM telemetry",
        ],
        "",
    );
    assert!(
        printed.contains(&(unique + 10).to_string()) && printed.contains("| n"),
        "{printed}"
    );

    let printed = freshet.client(
        &["query", "--server", &http, "--kql", "telemetry | count"],
        "",
    );
    assert!(
        printed.contains(&(unique + 10).to_string()) && printed.contains("| Count"),
        "{printed}"
    );

    // Bad SQL: a JSON error with the position, and a caret from the CLI.
    let (status, body) = post(
        &format!("http://{}/api/v1/query", freshet.http),
        &json!({"sql": "SELECT count(*) FROM telemetry WHERE"}),
        "application/json",
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "syntax");
    assert_eq!(body["error"]["line"], 1);
    let output = freshet.client_output(
        &["query", "--server", &http, "SELECT nope FROM telemetry"],
        "",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
}

#[test]
fn events_posted_over_http_land_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    // A second table over the same topic shows only the rows its
    // row-level security lets through.
    let config = format!(
        "{CONFIG}\n{}",
        r#"
[[table]]
name = "secured"
topic = "iot"
row_level_security = "value >= 25 AND deviceId <> 'd0'"
columns = [
  { name = "eventId", type = "string", required = true },
  { name = "deviceId", type = "string" },
  { name = "value", type = "real" },
]
"#
    );
    let freshet = Freshet::start(dir.path(), &config);
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"eventId": format!("e{i}"), "deviceId": format!("d{}", i % 5), "type": "CO2", "value": i, "createdAt": "2026-11-22T10:00:00Z"}))
        .collect();
    let (status, body) = post(
        &format!(
            "http://{}/api/v1/topics/iot/events?key=deviceId",
            freshet.http
        ),
        &Value::Array(events),
        "application/json",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["count"], 50);
    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM telemetry") == 50).then_some(()));
    assert_eq!(
        scalar(&freshet, "SELECT CAST(sum(value) AS BIGINT) FROM telemetry"),
        (0..50).sum::<i64>()
    );
    let visible = (25..50).filter(|i| i % 5 != 0).count() as i64;
    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM secured") == visible).then_some(()));
    assert_eq!(
        scalar(
            &freshet,
            "SELECT count(*) FROM secured WHERE value < 25 OR deviceId = 'd0'"
        ),
        0
    );
    let (status, body) = post(
        &format!("http://{}/api/v1/query", freshet.http),
        &json!({"kql": "secured | summarize n = count() by deviceId | count"}),
        "application/json",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["rows"][0][0], 4, "d1..d4 only");
    let tables: Value = api_get(&freshet, "tables");
    let secured = tables["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "secured")
        .unwrap();
    assert_eq!(
        secured["row_level_security"],
        "value >= 25 AND deviceId <> 'd0'"
    );
    let (status, body) = post(
        &format!("http://{}/api/v1/topics/nope/events", freshet.http),
        &json!({"a": 1}),
        "application/json",
    );
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    // The simulator over HTTP: malformed events are refused at the door.
    let http = format!("http://{}", freshet.http);
    let manifest = simulate(
        &freshet,
        dir.path(),
        "3000",
        &["--http", &http, "--malformed", "0.01", "--duplicates", "0"],
    );
    assert!(manifest["malformed"].as_i64().unwrap() > 0, "{manifest}");
    assert_eq!(manifest["send_errors"], 0, "{manifest}");
    let unique = manifest["unique"].as_i64().unwrap();
    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM telemetry") == 50 + unique).then_some(()));
}

#[test]
fn kill_9_during_ingestion_neither_loses_nor_repeats_rows() {
    let dir = tempfile::tempdir().unwrap();
    let freshet = Freshet::start(dir.path(), CONFIG);
    let manifest = simulate(&freshet, dir.path(), "30000", &["--duplicates", "0.005"]);
    let unique = manifest["unique"].as_i64().unwrap();
    // Some rows are in committed extents (every 4000), the rest only buffered.
    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM telemetry") >= unique / 2).then_some(()));
    freshet.signal(libc::SIGKILL);
    let _ = freshet.wait();

    let freshet = Freshet::start(dir.path(), CONFIG);
    wait_for(|| (scalar(&freshet, "SELECT count(*) FROM telemetry") >= unique).then_some(()));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(scalar(&freshet, "SELECT count(*) FROM telemetry"), unique);
    assert_eq!(
        scalar(&freshet, "SELECT count(DISTINCT eventId) FROM telemetry"),
        unique
    );
    // The view, rebuilt from the extents at start-up, agrees.
    assert_eq!(scalar(&freshet, "SELECT sum(n) FROM per_device"), unique);
    assert_eq!(
        query(&freshet, VIEW_ROWS)["rows"],
        query(&freshet, RAW_ROWS)["rows"]
    );
}
