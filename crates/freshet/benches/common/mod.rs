//! The real `freshet serve`, started for a benchmark on free loopback ports.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub kafka: String,
    #[allow(dead_code)] // not every benchmark speaks HTTP
    pub http: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Starts `freshet serve` with its data under `dir` and, if given, this
/// config text.
pub fn start_server(dir: &Path, config: Option<&str>) -> Server {
    let ports = dir.join("ports.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_freshet"));
    command.args([
        "serve",
        "--kafka-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    if let Some(config) = config {
        let path = dir.join("freshet.toml");
        std::fs::write(&path, config).expect("write the config");
        command.arg("--config").arg(path);
    }
    let child = command
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--ports-file")
        .arg(&ports)
        .env("FRESHET_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start freshet");
    let started = Instant::now();
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&ports) {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "freshet did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let ports: serde_json::Value = serde_json::from_str(&text).unwrap();
    Server {
        child,
        kafka: ports["kafka"].as_str().unwrap().to_string(),
        http: ports["http"].as_str().unwrap().to_string(),
    }
}
