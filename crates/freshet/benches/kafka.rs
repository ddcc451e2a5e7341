//! Kafka produce and consume throughput and end-to-end latency against the
//! real `freshet` binary with librdkafka (the `rdkafka` crate: producer
//! threads, one consumer thread per partition) and with produce requests
//! encoded once and sent over plain sockets, next to the disk (`fio`,
//! through the page cache and direct) and loopback (`iperf3`) limits
//! measured in the same run.
//!
//! Run: `cargo bench -p freshet --bench kafka`
//! Options (environment): `FRESHET_BENCH_DIR` (data directory, default
//! `target/bench-kafka`), `FRESHET_BENCH_MIB` (data per throughput case,
//! default 512), `FRESHET_BENCH_ONLY` (only the cases whose name, such as
//! "1024 B, acks=all", holds this text), `FRESHET_BENCH_IDEMPOTENCE=false`
//! (acks=all producers without idempotence), `FRESHET_BENCH_CONSUME_ROUNDS`
//! (read each case's records this many times, default 1; the table shows
//! the last), `FRESHET_BENCH_PRODUCERS` (producer threads, default 2),
//! `FRESHET_BENCH_BATCH_BYTES` (the producers' `batch.size`, default
//! 1,000,000), `FRESHET_BENCH_CLIENT_NICE` (run the producers at this nice
//! value), `FRESHET_BENCH_DIRECT_WRITES=true` and
//! `FRESHET_BENCH_RECENT_LOG_BYTES` (the server's `direct_log_writes` and
//! `recent_log_bytes`), `FRESHET_BENCH_WIRE_CONNECTIONS`, `_WINDOW` and
//! `_BATCH_BYTES` (the case of requests encoded once, `kafka/wire.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

#[path = "common/mod.rs"]
mod common;
#[path = "kafka/wire.rs"]
mod wire;
use common::{send_waiting, start_server};

const PARTITIONS: i32 = 4;

fn producer(bootstrap: &str, acks: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if acks == "all" && std::env::var("FRESHET_BENCH_IDEMPOTENCE").as_deref() != Ok("false")
            {
                "true"
            } else {
                "false"
            },
        )
        .set("linger.ms", "5")
        .set("batch.size", batch_bytes().to_string())
        .set("message.max.bytes", (batch_bytes() + 65_536).to_string())
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("compression.type", "none")
        .create()
        .expect("producer")
}

/// The producers' batch size (`FRESHET_BENCH_BATCH_BYTES`, default
/// 1,000,000); topics allow batches this large.
fn batch_bytes() -> usize {
    std::env::var("FRESHET_BENCH_BATCH_BYTES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000)
}

/// With `FRESHET_BENCH_CLIENT_NICE=n`, the calling thread (and the
/// librdkafka threads it starts, which inherit it) runs at nice `n`, so
/// that the server is not starved by clients sharing its cores.
fn lower_priority() {
    if let Some(nice) = std::env::var("FRESHET_BENCH_CLIENT_NICE")
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
    {
        // SAFETY: changes the scheduling priority of this thread only.
        let tid = unsafe { libc::gettid() };
        unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    }
}

/// Producer threads, each with its own librdkafka producer
/// (`FRESHET_BENCH_PRODUCERS`, default 2).
fn producers() -> usize {
    std::env::var("FRESHET_BENCH_PRODUCERS")
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|&count| count > 0)
        .unwrap_or(2)
}

/// Produces `count` records of `size` bytes from `producers()` threads;
/// returns the seconds taken until every one is acknowledged.
fn produce(bootstrap: &str, topic: &str, acks: &str, size: usize, count: usize) -> f64 {
    let producers = producers();
    let started = Instant::now();
    let threads: Vec<_> = (0..producers)
        .map(|thread| {
            let (bootstrap, topic, acks) =
                (bootstrap.to_string(), topic.to_string(), acks.to_string());
            let share = count / producers + usize::from(thread < count % producers);
            std::thread::spawn(move || {
                lower_priority();
                let producer = producer(&bootstrap, &acks);
                let payload = vec![b'x'; size];
                for i in 0..share {
                    let key = ((i * producers + thread) as u32 % 1024).to_be_bytes();
                    send_waiting(
                        &producer,
                        BaseRecord::to(&topic).payload(&payload[..]).key(&key[..]),
                    );
                }
                producer.flush(Duration::from_secs(300)).expect("flush");
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("producer thread");
    }
    started.elapsed().as_secs_f64()
}

/// What one consume phase took.
struct Consumed {
    /// From creating the consumers to the last record.
    seconds: f64,
    /// From the first record any consumer got to the last record: the
    /// rate once records flow, without the consumers' start-up (connect,
    /// metadata, end offsets, assignment, first fetch).
    streaming_seconds: f64,
    bytes: usize,
}

/// Reads `count` records from the start with one consumer thread per
/// partition, each up to its partition's end.
fn consume(bootstrap: &str, topic: &str, count: usize) -> Consumed {
    let started = Instant::now();
    let threads: Vec<_> = (0..PARTITIONS)
        .map(|partition| {
            let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
            std::thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &bootstrap)
                    .set("group.id", "bench")
                    .set("enable.auto.commit", "false")
                    .set("fetch.max.bytes", "104857600")
                    .set("max.partition.fetch.bytes", "16777216")
                    .set("fetch.wait.max.ms", "10")
                    .set("queued.max.messages.kbytes", "1048576")
                    .create()
                    .expect("consumer");
                let (_, end) = consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .expect("the partition's end offset");
                let mut assignment = TopicPartitionList::new();
                assignment
                    .add_partition_offset(&topic, partition, Offset::Beginning)
                    .unwrap();
                consumer.assign(&assignment).unwrap();
                let (mut records, mut bytes) = (0usize, 0usize);
                let mut next = 0;
                let mut first = None;
                while next < end {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        first.get_or_insert_with(Instant::now);
                        records += 1;
                        bytes += message.payload().map_or(0, |p| p.len());
                        next = message.offset() + 1;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(300),
                        "consume stalled"
                    );
                }
                (records, bytes, first)
            })
        })
        .collect();
    let (mut records, mut bytes, mut first) = (0, 0, None::<Instant>);
    for thread in threads {
        let (thread_records, thread_bytes, thread_first) = thread.join().expect("consumer thread");
        records += thread_records;
        bytes += thread_bytes;
        first = first.into_iter().chain(thread_first).min();
    }
    assert_eq!(records, count, "every produced record is read once");
    let ended = Instant::now();
    Consumed {
        seconds: (ended - started).as_secs_f64(),
        streaming_seconds: (ended - first.unwrap_or(started)).as_secs_f64(),
        bytes,
    }
}

/// Sends `rate` records/s for `seconds` with acks=all and measures the time
/// from send to a consumer receiving each one; returns p50, p99, p99.9 in ms.
fn latency(bootstrap: &str, topic: &str, rate: usize, seconds: u64) -> (f64, f64, f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "latency")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.min.bytes", "1")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::End)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    std::thread::sleep(Duration::from_millis(500)); // let the consumer reach the end
    let epoch = Instant::now();
    let total = rate * seconds as usize;
    let sender = {
        let bootstrap = bootstrap.to_string();
        let topic = topic.to_string();
        std::thread::spawn(move || {
            let producer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("linger.ms", "0")
                .create::<ThreadedProducer<DefaultProducerContext>>()
                .unwrap();
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            for i in 0..total {
                let due = interval * i as u32;
                if let Some(wait) = due.checked_sub(epoch.elapsed()) {
                    std::thread::sleep(wait);
                }
                let sent_us = epoch.elapsed().as_micros() as u64;
                let payload = sent_us.to_be_bytes();
                let _ = producer.send(BaseRecord::<(), [u8]>::to(&topic).payload(&payload[..]));
            }
            producer.flush(Duration::from_secs(30)).unwrap();
        })
    };
    let mut latencies_us = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while latencies_us.len() < total && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let sent_us = u64::from_be_bytes(message.payload().unwrap()[..8].try_into().unwrap());
            latencies_us.push(epoch.elapsed().as_micros() as u64 - sent_us);
        }
    }
    sender.join().unwrap();
    latencies_us.sort_unstable();
    let at = |q: f64| {
        latencies_us[((latencies_us.len() as f64 * q) as usize).min(latencies_us.len() - 1)] as f64
            / 1000.0
    };
    (at(0.5), at(0.99), at(0.999))
}

/// fio's sequential write of `mib` MiB in 1 MiB writes, then an fsync:
/// through the page cache, or with `direct` straight to the device.
fn fio_mb_s(dir: &Path, mib: usize, direct: bool) -> Option<f64> {
    let file = dir.join("fio.dat");
    let output = Command::new("fio")
        .arg(format!("--direct={}", u8::from(direct)))
        .args([
            "--name=seq",
            "--rw=write",
            "--bs=1M",
            "--ioengine=psync",
            "--end_fsync=1",
            "--output-format=json",
        ])
        .arg(format!("--size={mib}M"))
        .arg(format!("--filename={}", file.display()))
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&file);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    Some(json["jobs"][0]["write"]["bw_bytes"].as_f64()? / 1e6)
}

fn iperf3_mb_s() -> Option<f64> {
    let port = "15201";
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-p", port])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let output = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", port, "-t", "5", "-J"])
        .output()
        .ok()?;
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    Some(json["end"]["sum_received"]["bits_per_second"].as_f64()? / 8e6)
}

/// What the server's `/metrics` says of produce requests and fsyncs.
#[derive(Debug, Default)]
struct GroupCommits {
    produce_requests: f64,
    produce_seconds: f64,
    fsyncs: f64,
    fsync_seconds: f64,
}

impl GroupCommits {
    fn read(http: &str) -> Self {
        let text = ureq::get(&format!("http://{http}/metrics"))
            .call()
            .expect("the server's /metrics")
            .body_mut()
            .read_to_string()
            .expect("the metrics text");
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|line| line.starts_with(prefix))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Self {
            produce_requests: sum("freshet_kafka_request_duration_seconds_count{api=\"Produce\""),
            produce_seconds: sum("freshet_kafka_request_duration_seconds_sum{api=\"Produce\""),
            fsyncs: sum("freshet_log_fsync_duration_seconds_count"),
            fsync_seconds: sum("freshet_log_fsync_duration_seconds_sum"),
        }
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            produce_requests: self.produce_requests - before.produce_requests,
            produce_seconds: self.produce_seconds - before.produce_seconds,
            fsyncs: self.fsyncs - before.fsyncs,
            fsync_seconds: self.fsync_seconds - before.fsync_seconds,
        }
    }
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("FRESHET_BENCH_DIR").unwrap_or_else(|_| "target/bench-kafka".into()),
    );
    let mib: usize = std::env::var("FRESHET_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let disk_before = [fio_mb_s(&dir, mib, false), fio_mb_s(&dir, mib, true)];
    let loopback = iperf3_mb_s();
    // Direct writes of the log and its memory for recent appends
    // (`[server] direct_log_writes`, `recent_log_bytes`).
    let direct = std::env::var("FRESHET_BENCH_DIRECT_WRITES").as_deref() == Ok("true");
    let config = direct.then(|| {
        let mut config = "[server]\ndirect_log_writes = true\n".to_string();
        if let Ok(bytes) = std::env::var("FRESHET_BENCH_RECENT_LOG_BYTES") {
            config.push_str(&format!("recent_log_bytes = {bytes}\n"));
        }
        config
    });
    let server = start_server(&dir, config.as_deref());
    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &server.kafka)
        .create()
        .unwrap();
    drop(admin);

    println!(
        "| case | records | produce s | records/s | MB/s | consume MB/s (all / streaming) | server cores (produce / consume) | MB per server CPU second (produce / consume) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let only = std::env::var("FRESHET_BENCH_ONLY").unwrap_or_default();
    let consume_rounds: usize = std::env::var("FRESHET_BENCH_CONSUME_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(1);
    let mut commits = Vec::new();
    // The librdkafka cases, then produce requests encoded once
    // (`wire.rs`): the server's own bound, its clients next to free.
    let wire_load = wire::Load::from_env();
    let cases = [100usize, 1024]
        .into_iter()
        .flat_map(|size| [(size, "1", false), (size, "all", false)])
        .chain([(1024, "all", true)]);
    for (size, acks, wire) in cases {
        let case = format!("{size} B, acks={acks}{}", if wire { ", wire" } else { "" });
        if !case.contains(&only) {
            continue;
        }
        let topic = format!("bench-{size}-{acks}{}", if wire { "-wire" } else { "" });
        let create = Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args([
                "topic",
                "create",
                &topic,
                "-p",
                &PARTITIONS.to_string(),
                "-c",
                &format!("max.message.bytes={}", batch_bytes().max(1_048_588)),
                "-b",
                &server.kafka,
            ])
            .output()
            .unwrap();
        assert!(
            create.status.success(),
            "{}",
            String::from_utf8_lossy(&create.stderr)
        );
        let mut count = (mib << 20) / size;
        let cpu_before = server.cpu_seconds();
        let commits_before = GroupCommits::read(&server.http);
        let seconds = if wire {
            let (seconds, acknowledged) =
                wire::produce(&server.kafka, &topic, PARTITIONS, size, count, &wire_load);
            count = acknowledged;
            seconds
        } else {
            produce(&server.kafka, &topic, acks, size, count)
        };
        let cpu_produced = server.cpu_seconds();
        commits.push((
            case.clone(),
            (count * size) as f64,
            GroupCommits::read(&server.http).since(&commits_before),
        ));
        // FRESHET_BENCH_CONSUME_ROUNDS: extra reads of the same
        // records from page cache before the one the table shows.
        for round in 1..consume_rounds {
            let cpu_start = server.cpu_seconds();
            let consumed = consume(&server.kafka, &topic, count);
            println!(
                "{case}: consume round {round}: {:.0} MB/s (streaming {:.0}), server cores {:.2}",
                consumed.bytes as f64 / 1e6 / consumed.seconds,
                consumed.bytes as f64 / 1e6 / consumed.streaming_seconds,
                (server.cpu_seconds() - cpu_start) / consumed.seconds
            );
        }
        let cpu_consume_start = server.cpu_seconds();
        let consumed = consume(&server.kafka, &topic, count);
        let (consume_seconds, consumed_bytes) = (consumed.seconds, consumed.bytes);
        let cpu_consumed = server.cpu_seconds();
        let produce_mb_s = (count * size) as f64 / 1e6 / seconds;
        let consume_mb_s = consumed_bytes as f64 / 1e6 / consume_seconds;
        // The server's share of the two cores, and what it would move
        // per second of its own CPU time.
        let (produce_cpu, consume_cpu) =
            (cpu_produced - cpu_before, cpu_consumed - cpu_consume_start);
        println!(
            "| {case} | {count} | {seconds:.2} | {:.0} | {produce_mb_s:.0} | {consume_mb_s:.0} / {:.0} | {:.2} / {:.2} | {:.0} / {:.0} |",
            count as f64 / seconds,
            consumed_bytes as f64 / 1e6 / consumed.streaming_seconds,
            produce_cpu / seconds,
            consume_cpu / consume_seconds,
            (count * size) as f64 / 1e6 / produce_cpu,
            consumed_bytes as f64 / 1e6 / consume_cpu,
        );
        rows.push((case, produce_mb_s, consume_mb_s));
    }
    println!();
    println!(
        "| case | produce requests | mean request | mean request time | fsyncs | mean fsync | bytes per fsync |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (case, bytes, commits) in commits {
        println!(
            "| {case} | {:.0} | {:.0} KB | {:.2} ms | {:.0} | {:.2} ms | {:.0} KB |",
            commits.produce_requests,
            bytes / commits.produce_requests.max(1.0) / 1e3,
            commits.produce_seconds / commits.produce_requests.max(1.0) * 1e3,
            commits.fsyncs,
            commits.fsync_seconds / commits.fsyncs.max(1.0) * 1e3,
            bytes / commits.fsyncs.max(1.0) / 1e3,
        );
    }
    let create = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args([
            "topic",
            "create",
            "latency",
            "-p",
            &PARTITIONS.to_string(),
            "-b",
            &server.kafka,
        ])
        .output()
        .unwrap();
    assert!(create.status.success());
    let (p50, p99, p999) = latency(&server.kafka, "latency", 5_000, 10);
    drop(server);
    let disk_after = [fio_mb_s(&dir, mib, false), fio_mb_s(&dir, mib, true)];
    let _ = std::fs::remove_dir_all(&dir);

    let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
    let mean = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    };
    let buffered = mean(disk_before[0], disk_after[0]);
    let direct_disk = mean(disk_before[1], disk_after[1]);
    // The disk's bandwidth: the faster of the two ways to write it.
    let disk = match (buffered, direct_disk) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    println!();
    println!(
        "End-to-end latency, acks=all, 5,000 records/s for 10 s: p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms"
    );
    println!();
    println!("| limit (same run) | MB/s |");
    println!("|---|---|");
    println!(
        "| fio sequential write 1 MiB, page cache, fsync at end: before {} / after {} | {} |",
        fmt(disk_before[0]),
        fmt(disk_after[0]),
        fmt(buffered)
    );
    println!(
        "| fio sequential write 1 MiB, direct, fsync at end: before {} / after {} | {} |",
        fmt(disk_before[1]),
        fmt(disk_after[1]),
        fmt(direct_disk)
    );
    println!("| disk (the faster) | {} |", fmt(disk));
    println!("| iperf3 loopback TCP | {} |", fmt(loopback));
    println!();
    println!("| case | produce / disk | consume / loopback |");
    println!("|---|---|---|");
    for (case, produce_mb_s, consume_mb_s) in rows {
        let ratio =
            |v: f64, limit: Option<f64>| limit.map_or("n/a".into(), |l| format!("{:.2}", v / l));
        println!(
            "| {case} | {} | {} |",
            ratio(produce_mb_s, disk),
            ratio(consume_mb_s, loopback)
        );
    }
}
