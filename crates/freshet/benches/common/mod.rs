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

impl Server {
    /// CPU time the server process has used so far (all its threads, user
    /// and system), in seconds, from `/proc/<pid>/stat`.
    #[allow(dead_code)] // not every benchmark reads it
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read the server's /proc stat");
        stat_cpu_seconds(&stat)
    }

    /// CPU time (user and system, seconds) of the server's thread named
    /// `name` (as `/proc` shows it: at most 15 bytes), if there is one.
    #[allow(dead_code)] // not every benchmark reads it
    pub fn thread_cpu_seconds(&self, name: &str) -> Option<f64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).ok()?;
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                return Some(stat_cpu_seconds(&stat));
            }
        }
        None
    }
}

/// User plus system time of a `/proc/.../stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which is in parentheses); utime and
    // stime are the 14th and 15th fields overall.
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
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
    // A server started here before left its ports behind.
    let _ = std::fs::remove_file(&ports);
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

/// Queues `record` on `producer`, waiting while librdkafka's queue is full.
#[allow(dead_code)] // not every benchmark produces
pub fn send_waiting<K, P>(
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P>,
) where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}
