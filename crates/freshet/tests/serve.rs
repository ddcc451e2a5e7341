//! The real `freshet` binary: help, config errors, serving, clean shutdown
//! on SIGTERM, and restart after SIGKILL.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::{BINARY, Freshet};

fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn run(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().unwrap()
}

const CONFIG: &str = r#"
[server]
retention_check_interval_ms = 100

[[topic]]
name = "auth-events"
partitions = 4
retention_ms = 3600000

[[topic]]
name = "alerts"
durability = "every-batch"
"#;

#[test]
fn help_lists_every_command_and_each_has_its_own_help() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let commands = [
        "serve", "demo", "simulate", "verify", "topic", "produce", "consume", "query", "job",
        "apply", "replay",
    ];
    for command in commands {
        assert!(
            help.contains(command),
            "--help does not list {command}:\n{help}"
        );
        let output = run(&[command, "--help"]);
        assert!(output.status.success(), "freshet {command} --help failed");
    }
}

#[test]
fn a_command_not_in_this_build_says_so_and_exits_2() {
    let output = run(&["apply", "freshet.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not available in this build"));
}

#[test]
fn a_bad_config_names_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("freshet.toml");
    std::fs::write(&config, "[[topic]]\nname = \"t\"\npartitons = 3\n").unwrap();
    let output = Command::new(BINARY)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("freshet.toml:3:") && stderr.contains("partitons"),
        "{stderr}"
    );
}

#[test]
fn serve_creates_the_declared_topics_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let freshet = Freshet::start(dir.path(), CONFIG);
    let health = http_get(&freshet.http, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let log_dir: PathBuf = dir.path().join("data/log");
    for partition in 0..4 {
        assert!(
            log_dir
                .join(format!("auth-events/{partition}/00000000000000000000.log"))
                .exists()
        );
    }
    assert!(log_dir.join("alerts/0").exists());
    freshet.signal(libc::SIGTERM);
    let status = freshet.wait();
    assert!(status.success(), "{status:?}");
    assert!(
        log_dir.join(".clean-shutdown").exists(),
        "a clean stop leaves the clean-shutdown marker"
    );
}

#[test]
fn after_sigkill_the_server_recovers_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let freshet = Freshet::start(dir.path(), CONFIG);
    freshet.signal(libc::SIGKILL);
    let status = freshet.wait();
    assert!(!status.success());
    let log_dir = dir.path().join("data/log");
    assert!(!log_dir.join(".clean-shutdown").exists());
    let freshet = Freshet::start(dir.path(), CONFIG);
    assert!(http_get(&freshet.http, "/healthz").starts_with("HTTP/1.1 200"));
    freshet.signal(libc::SIGTERM);
    assert!(freshet.wait().success());
}

#[test]
fn demo_serves_a_topic_that_the_simulator_keeps_feeding_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ports_path = dir.path().join("ports.json");
    let child = Command::new(BINARY)
        .args([
            "demo",
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--ports-file")
        .arg(&ports_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ports: serde_json::Value =
        serde_json::from_slice(&common::wait_for(|| std::fs::read(&ports_path).ok())).unwrap();
    let kafka = ports["kafka"].as_str().unwrap().to_string();
    let demo = Freshet {
        child,
        http: ports["http"].as_str().unwrap().to_string(),
        kafka,
    };
    let events = demo.client(&["consume", "auth-events", "-n", "5", "-f", "%v"], "");
    assert_eq!(events.lines().count(), 5);
    for line in events.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            event["BIN"].is_string() && event["Result"].is_string(),
            "{line}"
        );
    }
    // The seed's decline-rate job reads the same events.
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    common::wait_for(|| {
        let url = format!("http://{}/api/v1/jobs", demo.http);
        let jobs: serde_json::Value =
            serde_json::from_slice(&agent.get(&url).call().ok()?.body_mut().read_to_vec().ok()?)
                .ok()?;
        let job = &jobs["jobs"][0];
        (job["name"] == "decline-rate"
            && job["state"] == "running"
            && job["input_events"].as_u64()? > 0
            && job["watermark"].is_string())
        .then_some(())
    });
    // The dashboard: the UI itself and the three dashboards it shows.
    let mut page = agent.get(&format!("http://{}/", demo.http)).call().unwrap();
    assert!(
        page.body_mut()
            .read_to_string()
            .unwrap()
            .contains("/ui/app.js")
    );
    let dashboards: serde_json::Value = serde_json::from_slice(
        &agent
            .get(&format!("http://{}/api/v1/dashboards", demo.http))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = dashboards["dashboards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments", "retail", "iot"]);
    demo.signal(libc::SIGTERM);
    assert!(demo.wait().success());
}
