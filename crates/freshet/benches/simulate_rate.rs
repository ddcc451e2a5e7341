//! Does `freshet simulate` hold the rate it is asked for over a minute?
//! Each case runs the real binary for a minute: to the null sink (the
//! simulator alone), and through librdkafka into a real `freshet serve`,
//! where the broker's side is sampled every second (the topic's end
//! offsets over `GET /api/v1/topics`), so the rate is measured where the
//! events land, not where the simulator says it sent them.
//!
//! Run: `cargo bench -p freshet --bench simulate_rate`
//! Options (environment): `FRESHET_BENCH_SECONDS` (per case, default 60),
//! `FRESHET_BENCH_RATES` (comma-separated events/s into the broker,
//! default `10000,100000`), `FRESHET_BENCH_NULL_RATE` (default 200000).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;
use common::start_server;

const BIN: &str = env!("CARGO_BIN_EXE_freshet");

/// Records in `topic`, as the broker counts them.
fn records(agent: &ureq::Agent, http: &str, topic: &str) -> u64 {
    let answer: serde_json::Value = agent
        .get(&format!("http://{http}/api/v1/topics"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    answer["topics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == topic)
        .flat_map(|t| t["partitions"].as_array().unwrap().iter())
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum()
}

fn simulate(args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("simulate")
        .args(args)
        .env("FRESHET_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulator")
}

fn main() {
    let seconds: u64 = std::env::var("FRESHET_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rates: Vec<u64> = std::env::var("FRESHET_BENCH_RATES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|r| r.trim().parse().expect("FRESHET_BENCH_RATES: numbers"))
        .collect();
    let null_rate: u64 = std::env::var("FRESHET_BENCH_NULL_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let duration = format!("{seconds}s");
    let dir = tempfile::tempdir().unwrap();

    println!(
        "| sink | asked events/s | achieved over the run | / asked | slowest second | fastest second |"
    );
    println!("|---|---|---|---|---|---|");

    // The simulator alone: its own count over its own clock.
    let rate = null_rate.to_string();
    let manifest = dir.path().join("null.json");
    let output = simulate(&[
        "--null",
        "--scenario",
        "iot",
        "--rate",
        &rate,
        "--duration",
        &duration,
        "--manifest",
        manifest.to_str().unwrap(),
    ])
    .wait_with_output()
    .unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    let sent: f64 = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&manifest).unwrap())
        .unwrap()["sent"]
        .as_f64()
        .unwrap();
    let achieved = sent / seconds as f64;
    println!(
        "| null (iot) | {null_rate} | {achieved:.0} | {:.4} | – | – |",
        achieved / null_rate as f64
    );
    eprintln!("{}", summary.trim());

    // Into the broker, sampled there every second.
    let server = start_server(
        dir.path(),
        Some("[[topic]]\nname = \"auth-events\"\npartitions = 4\n"),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    for rate in rates {
        let before = records(&agent, &server.http, "auth-events");
        let asked = rate.to_string();
        let manifest = dir.path().join(format!("kafka-{rate}.json"));
        let mut child = simulate(&[
            "--scenario",
            "payments",
            "--rate",
            &asked,
            "--duration",
            &duration,
            "--acks",
            "1",
            "--bootstrap",
            &server.kafka,
            "--manifest",
            manifest.to_str().unwrap(),
        ]);
        // Samples: (seconds since the first record landed, records).
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let mut first: Option<Instant> = None;
        let mut next = Instant::now();
        while child.try_wait().unwrap().is_none() {
            next += Duration::from_secs(1);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let count = records(&agent, &server.http, "auth-events") - before;
            if count > 0 {
                let first = *first.get_or_insert_with(Instant::now);
                samples.push((first.elapsed().as_secs_f64(), count));
            }
        }
        let total = records(&agent, &server.http, "auth-events") - before;
        // Whole seconds strictly inside the run: the first and last
        // samples straddle the start and the end.
        let per_second: Vec<f64> = samples
            .windows(2)
            .skip(1)
            .take(samples.len().saturating_sub(3))
            .map(|pair| (pair[1].1 - pair[0].1) as f64 / (pair[1].0 - pair[0].0))
            .collect();
        let inner = &samples[1..samples.len() - 1];
        let steady = (inner[inner.len() - 1].1 - inner[0].1) as f64
            / (inner[inner.len() - 1].0 - inner[0].0);
        let slowest = per_second.iter().cloned().fold(f64::INFINITY, f64::min);
        let fastest = per_second.iter().cloned().fold(0.0, f64::max);
        println!(
            "| kafka (payments, acks=1) | {rate} | {steady:.0} | {:.4} | {slowest:.0} | {fastest:.0} |",
            steady / rate as f64
        );
        eprintln!("  {total} records landed for {rate}/s over {duration}");
    }
}
