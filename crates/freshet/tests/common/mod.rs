//! Starting the real `freshet` binary on free ports, for end-to-end tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_freshet");
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Freshet {
    pub child: Child,
    pub http: String,
    pub kafka: String,
}

impl Freshet {
    pub fn start(dir: &Path, config: &str) -> Self {
        let config_path = dir.join("freshet.toml");
        std::fs::write(&config_path, config).unwrap();
        let ports_path = dir.join("ports.json");
        let _ = std::fs::remove_file(&ports_path);
        let child = Command::new(BINARY)
            .args(["serve", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--kafka-listen",
                "127.0.0.1:0",
                "--ports-file",
            ])
            .arg(&ports_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ports = wait_for(|| std::fs::read(&ports_path).ok());
        let ports: serde_json::Value = serde_json::from_slice(&ports).unwrap();
        Self {
            child,
            http: ports["http"].as_str().unwrap().to_string(),
            kafka: ports["kafka"].as_str().unwrap().to_string(),
        }
    }

    /// Runs a client command against this server; panics unless it succeeds.
    pub fn client(&self, args: &[&str], input: &str) -> String {
        let output = self.client_output(args, input);
        assert!(
            output.status.success(),
            "freshet {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn client_output(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(BINARY)
            .args(args)
            .env("FRESHET_BOOTSTRAP", &self.kafka)
            .env("FRESHET_HTTP", format!("http://{}", self.http))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        wait_for(|| self.child.try_wait().unwrap())
    }
}

impl Drop for Freshet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /api/v1/{path}` as JSON.
pub fn api_get(freshet: &Freshet, path: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let url = format!("http://{}/api/v1/{path}", freshet.http);
    serde_json::from_slice(
        &agent
            .get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap(),
    )
    .unwrap()
}

pub fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "condition not met within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
