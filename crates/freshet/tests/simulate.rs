//! `freshet simulate` and `freshet verify` through the real binary:
//! deterministic output, rate holding, and a round trip through the server.

mod common;

use std::process::Command;

use common::{BINARY, Freshet};

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .arg("simulate")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_same_seed_and_start_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let file = dir.path().join(name);
        let manifest = dir.path().join(format!("{name}.manifest"));
        let output = simulate(&[
            "--scenario",
            "payments",
            "--count",
            "5000",
            "--rate",
            "0",
            "--seed",
            seed,
            "--start",
            "1700000000000",
            "--duplicates",
            "0.01",
            "--late",
            "0.01",
            "--malformed",
            "0.01",
            "--output",
            file.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(file).unwrap()
    };
    let first = run("a.jsonl", "7");
    assert_eq!(first, run("b.jsonl", "7"));
    assert_ne!(first, run("c.jsonl", "8"));
    assert_eq!(first.iter().filter(|&&b| b == b'\n').count(), 5000);
}

#[test]
fn the_asked_rate_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    let output = simulate(&[
        "--null",
        "--rate",
        "2000",
        "--duration",
        "3s",
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(output.status.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let sent = manifest["sent"].as_u64().unwrap() as f64;
    assert!(
        (sent - 6_000.0).abs() <= 6_000.0 * 0.02,
        "sent {sent} events in 3 s at 2,000/s"
    );
}

/// 20,000 IoT events as fast as the broker takes them, 1 % duplicates and
/// 0.2 % malformed, described by the manifest at `manifest`.
fn send_iot_events(freshet: &Freshet, manifest: &str) {
    freshet.client(
        &[
            "simulate",
            "--scenario",
            "iot",
            "--count",
            "20000",
            "--rate",
            "0",
            "--duplicates",
            "0.01",
            "--malformed",
            "0.002",
            "--keys",
            "50",
            "--manifest",
            manifest,
        ],
        "",
    );
}

#[test]
fn simulate_into_freshet_then_verify_finds_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let freshet = Freshet::start(dir.path(), "");
    let manifest = dir.path().join("manifest.json");
    let manifest_arg = manifest.to_str().unwrap();
    send_iot_events(&freshet, manifest_arg);
    let verified = freshet.client(&["verify", "--manifest", manifest_arg], "");
    assert!(verified.contains("missing 0"), "{verified}");
    assert!(verified.trim_end().ends_with("OK"), "{verified}");

    // Following live: verify started first measures latency from send to read.
    let live = dir.path().join("live.json");
    let live_arg = live.to_str().unwrap();
    let follower = Command::new(BINARY)
        .args([
            "verify",
            "--follow",
            "--topic",
            "pay",
            "--manifest",
            live_arg,
        ])
        .env("FRESHET_BOOTSTRAP", &freshet.kafka)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    freshet.client(
        &[
            "simulate",
            "--scenario",
            "payments",
            "--topic",
            "pay",
            "--count",
            "3000",
            "--rate",
            "1500",
            "--manifest",
            live_arg,
        ],
        "",
    );
    let followed = follower.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&followed.stdout);
    assert!(
        followed.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert!(
        report.contains("latency from send to read over"),
        "{report}"
    );
    assert!(
        report.contains("present unique 3000") || report.contains("missing 0"),
        "{report}"
    );

    // Events appended behind the simulator's back are caught.
    freshet.client(
        &["produce", "iot-events"],
        "{\"eventId\":\"not-from-the-simulator\"}\n",
    );
    let extra = freshet.client_output(&["verify", "--manifest", manifest_arg], "");
    assert!(!extra.status.success());
    assert!(String::from_utf8_lossy(&extra.stdout).contains("unexpected 1"));
}

#[test]
fn verify_checks_a_store_table_through_the_query_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[[topic]]
name = "iot-events"
partitions = 2

[[table]]
name = "telemetry"
topic = "iot-events"
time_column = "createdAt"
dedup_key = "eventId"
columns = [
  { name = "eventId", type = "string", required = true },
  { name = "deviceId", type = "string" },
  { name = "value", type = "real" },
  { name = "createdAt", type = "datetime" },
]

[[table]]
name = "raw"
topic = "iot-events"
columns = [{ name = "eventId", type = "string", required = true }]
"#;
    let freshet = Freshet::start(dir.path(), config);
    let manifest = dir.path().join("manifest.json");
    let manifest_arg = manifest.to_str().unwrap();
    send_iot_events(&freshet, manifest_arg);
    let sent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let unique = sent["unique"].as_u64().unwrap();
    let duplicates = sent["duplicates"].as_u64().unwrap();
    assert!(duplicates > 100, "{sent}");

    // The deduplicating table holds every unique event once.
    let report = freshet.client(
        &["verify", "--manifest", manifest_arg, "--table", "telemetry"],
        "",
    );
    assert!(
        report.contains(&format!("table telemetry: {unique} rows")),
        "{report}"
    );
    assert!(report.contains("dedup on eventId: yes"), "{report}");
    assert!(
        report.contains(&format!(
            "present unique {unique} / missing 0 / unexpected 0"
        )),
        "{report}"
    );
    assert!(
        report.contains("duplicates injected") && report.contains("/ present 0 /"),
        "{report}"
    );
    assert!(
        report.contains("latency from send to queryable (ingestion time) over"),
        "{report}"
    );
    assert!(report.trim_end().ends_with("OK"), "{report}");

    // A table without dedup keeps the injected copies, which is allowed there.
    let report = freshet.client(
        &["verify", "--manifest", manifest_arg, "--table", "raw"],
        "",
    );
    assert!(
        report.contains(&format!("/ present {duplicates} / beyond those allowed 0")),
        "{report}"
    );

    // An event the simulator never sent is caught.
    freshet.client(
        &["produce", "iot-events"],
        "{\"eventId\":\"not-from-the-simulator\"}\n",
    );
    let extra = freshet.client_output(
        &["verify", "--manifest", manifest_arg, "--table", "telemetry"],
        "",
    );
    let text = String::from_utf8_lossy(&extra.stdout);
    assert!(!extra.status.success(), "{text}");
    assert!(text.contains("unexpected 1"), "{text}");
    let missing = freshet.client_output(
        &["verify", "--manifest", manifest_arg, "--table", "nope"],
        "",
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("the server has no table 'nope'"));
}
