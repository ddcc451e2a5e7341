//! Hot-path jobs through the real binary: the seed query reads a topic,
//! writes alerts to a topic and a live stream, and after `kill -9` in the
//! middle of the stream its topic output equals a clean run of
//! `freshet job test` over the same events: nothing lost, nothing doubled.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{BINARY, Freshet, api_get, wait_for};
use serde_json::Value;

use freshet_stream::SEED_DECLINE_RATE_QUERY as QUERY;

/// Historical events are accepted as they are (a wide late-arrival
/// tolerance), and checkpoints are frequent so a kill lands between them.
const CONFIG: &str = r#"
[[topic]]
name = "auth-events"
partitions = 1

[[job]]
name = "decline-rate"
query_file = "decline_rate.sql"
late_arrival = "1000d"
checkpoint_interval = "50ms"

[[job.output]]
name = "powerbi-live"
topic = "decline-alerts"
"#;

/// Deterministic payment events, 25 ms apart from 2026-01-01T00:00:00Z:
/// six BINs, declines clustered so that some windows cross 15 %, and a
/// final approval far later that closes every earlier window.
fn events(count: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(count + 1);
    let start = 1_767_225_600_000_i64;
    for index in 0..count {
        let bin = 400_000 + (index * 7 % 6);
        let decline = (index % 11 == 0) || (index / 400 % 5 == 2 && index % 3 == 0);
        let millis = start + index as i64 * 25;
        lines.push(format!(
            r#"{{"BIN":"{bin}","Result":"{}","Amount":{},"EventTime":"{}"}}"#,
            if decline { "DECLINE" } else { "APPROVE" },
            index % 500,
            time(millis)
        ));
    }
    lines.push(format!(
        r#"{{"BIN":"400000","Result":"APPROVE","Amount":1,"EventTime":"{}"}}"#,
        time(start + 86_400_000)
    ));
    lines
}

fn time(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // 2026-01-01 is day 20454 since the epoch; the test stays in January.
    let day_of_month = days - 20_454 + 1;
    assert!((1..=31).contains(&day_of_month));
    format!(
        "2026-01-{day_of_month:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        millis.rem_euclid(1000)
    )
}

fn produce(freshet: &Freshet, lines: &[String]) {
    produce_to(freshet, "auth-events", &lines.join("\n"));
}

/// Posts JSON events (one, or lines of them) to a topic over HTTP.
fn produce_to(freshet: &Freshet, topic: &str, body: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let url = format!("http://{}/api/v1/topics/{topic}/events", freshet.http);
    let response = agent.post(&url).send(body.as_bytes()).unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

fn jobs(freshet: &Freshet) -> Value {
    api_get(freshet, "jobs")
}

fn consume_all(freshet: &Freshet, topic: &str) -> Vec<Value> {
    let out = freshet.client(&["consume", topic, "--exit-at-end"], "");
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The clean run: `freshet job test` over the same events.
fn clean_run(dir: &std::path::Path, lines: &[String]) -> Vec<Value> {
    let events = dir.join("events.jsonl");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["job", "test"])
        .arg(dir.join("decline_rate.sql"))
        .arg("--input")
        .arg(&events)
        .args(["--late-arrival", "1000000h"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Reads the first `count` rows of a live stream.
fn stream_rows(freshet: &Freshet, output: &str, count: usize) -> Vec<Value> {
    let mut socket = TcpStream::connect(&freshet.http).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(socket, "GET /api/v1/outputs/{output}/stream HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n", freshet.http).unwrap();
    let mut reader = BufReader::new(socket);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let mut rows = Vec::new();
    let mut line = String::new();
    while rows.len() < count {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.trim_end().strip_prefix("data: ")
            && data.starts_with('{')
        {
            rows.push(serde_json::from_str(data).unwrap());
        }
    }
    rows
}

#[test]
fn the_seed_query_survives_kill_9_with_exactly_its_clean_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("decline_rate.sql"), QUERY).unwrap();
    let lines = events(12_000);
    let expected = clean_run(dir.path(), &lines);
    assert!(
        expected.len() >= 10,
        "the events should raise alerts: {expected:?}"
    );

    let freshet = Freshet::start(dir.path(), CONFIG);
    let (first, rest) = lines.split_at(5_000);
    produce(&freshet, first);
    // Kill once the job has checkpointed part of the stream and still
    // holds open windows.
    wait_for(|| {
        let job = &jobs(&freshet)["jobs"][0];
        (job["input_events"].as_u64()? >= 2_000 && job["checkpoints"].as_u64()? >= 1).then_some(())
    });
    freshet.signal(libc::SIGKILL);
    let _ = freshet.wait();

    let freshet = Freshet::start(dir.path(), CONFIG);
    let (second, third) = rest.split_at(4_000);
    produce(&freshet, second);
    freshet.signal(libc::SIGKILL);
    let _ = freshet.wait();

    let freshet = Freshet::start(dir.path(), CONFIG);
    produce(&freshet, third);
    let got = wait_for(|| {
        let got = consume_all(&freshet, "decline-alerts");
        (got.len() >= expected.len()).then_some(got)
    });
    assert_eq!(got, expected, "the alerts topic must equal the clean run");

    // The live stream starts with the most recent rows.
    let live = stream_rows(&freshet, "powerbi-live", 1);
    assert!(expected.contains(&live[0]), "{live:?}");
    let job = &jobs(&freshet)["jobs"][0];
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["outputs"][0]["topic"], "decline-alerts");

    // The job's checkpointed positions show as its consumer group: once it
    // has read everything, every partition of its input has lag 0.
    wait_for(|| {
        let described = freshet.client(&["group", "describe", "freshet-job-decline-rate"], "");
        let rows: Vec<Vec<&str>> = described
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|fields| fields.first() == Some(&"auth-events"))
            .collect();
        (!rows.is_empty() && rows.iter().all(|fields| fields.last() == Some(&"0"))).then_some(())
    });

    // Metrics name the job.
    let mut metrics = String::new();
    let mut socket = TcpStream::connect(&freshet.http).unwrap();
    write!(
        socket,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    socket.read_to_string(&mut metrics).unwrap();
    for name in [
        "freshet_job_input_events_total{job=\"decline-rate\"}",
        "freshet_job_watermark_delay_seconds{job=\"decline-rate\"}",
        "freshet_job_checkpoint_duration_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn query_errors_in_the_config_point_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("decline_rate.sql"),
        "SELECT BIN, COUNT(*)\nINTO o\nFROM i\nGROUP BY BIN\n",
    )
    .unwrap();
    let config = dir.path().join("freshet.toml");
    std::fs::write(
        &config,
        "[[job]]\nname = \"bad\"\nquery_file = \"decline_rate.sql\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[[job]] 'bad'")
            && stderr.contains("line 4, column 10")
            && stderr.contains("window"),
        "{stderr}"
    );
}

const ENRICH_CONFIG: &str = r#"
[[topic]]
name = "readings"
partitions = 1

[[job]]
name = "enrich"
query = """
SELECT r.deviceId, s.site, r.value
INTO enriched
FROM readings r TIMESTAMP BY t
LEFT OUTER JOIN sites s ON r.deviceId = s.deviceId"""
late_arrival = "1000d"
on_late = "drop"
late_events_topic = "late-readings"
checkpoint_interval = "100ms"

[[job.reference]]
name = "sites"
file = "sites.csv"

[[job.output]]
name = "enriched"
topic = "enriched"
"#;

#[test]
fn reference_data_reloads_when_its_file_changes_and_late_events_go_to_their_topic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sites.csv"), "deviceId,site\nd1,north\n").unwrap();
    let freshet = Freshet::start(dir.path(), ENRICH_CONFIG);
    produce_to(
        &freshet,
        "readings",
        r#"{"deviceId":"d1","value":1,"t":"2026-01-01T00:00:10Z"}"#,
    );
    produce_to(
        &freshet,
        "readings",
        r#"{"deviceId":"d2","value":2,"t":"2026-01-01T00:00:11Z"}"#,
    );
    let rows = wait_for(|| {
        let rows = consume_all(&freshet, "enriched");
        (rows.len() >= 2).then_some(rows)
    });
    assert_eq!(
        rows[0],
        serde_json::json!({"deviceId": "d1", "site": "north", "value": 1})
    );
    assert_eq!(
        rows[1],
        serde_json::json!({"deviceId": "d2", "site": null, "value": 2})
    );

    // Behind the watermark (11 s) with drop: to the late-events topic.
    produce_to(
        &freshet,
        "readings",
        r#"{"deviceId":"d1","value":3,"t":"2026-01-01T00:00:05Z","note":{"kept":true}}"#,
    );
    let late = wait_for(|| {
        let out = freshet.client(
            &["consume", "late-readings", "--exit-at-end", "-f", "%h|%v"],
            "",
        );
        (!out.trim().is_empty()).then_some(out)
    });
    // The event as it was read, also the fields the query does not read.
    let (headers, event) = late.trim().split_once('|').expect("headers|value");
    assert!(headers.contains("freshet.job=enrich"), "{late}");
    assert_eq!(
        serde_json::from_str::<Value>(event).unwrap(),
        serde_json::json!({"deviceId": "d1", "value": 3, "t": "2026-01-01T00:00:05Z", "note": {"kept": true}}),
    );

    // New reference rows apply to the events after the reload.
    std::fs::write(
        dir.path().join("sites.csv"),
        "deviceId,site\nd1,south-east\nd2,west\n",
    )
    .unwrap();
    let mut second = 20;
    wait_for(|| {
        second += 1;
        produce_to(
            &freshet,
            "readings",
            &format!(r#"{{"deviceId":"d2","value":{second},"t":"2026-01-01T00:00:{second}Z"}}"#),
        );
        let rows = consume_all(&freshet, "enriched");
        (rows.last()?["site"] == "west").then_some(())
    });
    let rows = consume_all(&freshet, "enriched");
    assert!(
        rows.iter().all(|row| row["value"] != 3),
        "a dropped event must not reach the output: {rows:?}"
    );
}
