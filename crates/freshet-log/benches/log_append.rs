//! Append and read-back throughput of the log under each durability
//! policy, next to `fio` writing the same pattern to the same disk in the
//! same run.
//!
//! Run: `cargo bench -p freshet-log --bench log_append`
//! Options (environment): `FRESHET_BENCH_DIR` (default `target/bench-log`,
//! on the disk under test), `FRESHET_BENCH_MIB` (data per case, default
//! 512), `FRESHET_BENCH_ROUNDS` (paired rounds per case, default 3),
//! `FRESHET_BENCH_FLUSH_MS` (group-commit interval, default the topic default).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_log::batch::{self, ProducerStamp, Record};
use freshet_log::{Durability, Log, LogOptions, Partition, TopicConfig};

/// Kafka's default producer `batch.size`.
const BATCH_BYTES: usize = 16 * 1024;
/// Appends allowed to wait for their fsync at once: a librdkafka producer's
/// default in-flight window (`max.in.flight` 5 × `batch.size` 1,000,000 B)
/// expressed in 16 KiB batches.
const IN_FLIGHT_BATCHES: usize = 5_000_000 / BATCH_BYTES;
const READ_BYTES_MAX: usize = 1 << 20;
/// fio's stand-in for group commit: one fdatasync per this many writes.
const GROUP_COMMIT_BATCHES: usize = 64;

struct Case {
    record_bytes: usize,
    durability: Durability,
}

fn main() {
    let dir = PathBuf::from(
        std::env::var("FRESHET_BENCH_DIR").unwrap_or_else(|_| "target/bench-log".into()),
    );
    let mib: usize = std::env::var("FRESHET_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // The disk here drifts by 2-3x within minutes, so each case is paired
    // with fio writing the same pattern right before and right after it,
    // over several rounds; the write-up uses the median of the paired ratios.
    let rounds: usize = std::env::var("FRESHET_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let grouped = fio(&dir, mib, &[&format!("--fdatasync={GROUP_COMMIT_BATCHES}")]);
    let memory = memory_copy_mb_s(mib << 20);
    println!(
        "| case | round | append MB/s | fio MB/s (before, after) | ratio | records/s | read MB/s | read / memory | fsyncs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for record_bytes in [100, 1024] {
        for durability in [
            Durability::None,
            Durability::GroupCommit,
            Durability::EveryBatch,
        ] {
            // fsync per batch is bounded by the disk's fsync rate: use less data.
            let case_mib = if durability == Durability::EveryBatch {
                mib / 4
            } else {
                mib
            };
            let reference: Vec<&str> = if durability == Durability::EveryBatch {
                vec!["--fdatasync=1"]
            } else {
                vec!["--end_fsync=1"]
            };
            let case = Case {
                record_bytes,
                durability,
            };
            let mut ratios = Vec::new();
            for round in 1..=rounds {
                let before = fio(&dir, case_mib, &reference);
                let result = run_case(&dir, &case, case_mib << 20, &runtime);
                let after = fio(&dir, case_mib, &reference);
                let fio_mean = match (before, after) {
                    (Some(a), Some(b)) => Some((a + b) / 2.0),
                    _ => None,
                };
                let ratio = fio_mean.map(|f| result.append_mb_s / f);
                if let Some(ratio) = ratio {
                    ratios.push(ratio);
                }
                println!(
                    "| {record_bytes} B, {durability:?} | {round} | {:.0} | {} ({}, {}) | {} | {:.0} | {:.0} | {:.2} | {} |",
                    result.append_mb_s,
                    fmt(fio_mean),
                    fmt(before),
                    fmt(after),
                    ratio.map_or("n/a".into(), |r| format!("{r:.2}")),
                    result.records_s,
                    result.read_mb_s,
                    result.read_mb_s / memory,
                    result.fsyncs
                );
            }
            ratios.sort_by(f64::total_cmp);
            summary.push((
                record_bytes,
                durability,
                ratios.get(ratios.len() / 2).copied(),
            ));
        }
    }
    println!();
    println!(
        "Paired with: fio buffered sequential write + fsync at end (None, GroupCommit); fio fdatasync after every write (EveryBatch)."
    );
    println!(
        "fio with fdatasync every {GROUP_COMMIT_BATCHES} writes (~1 MiB, about one group commit): {} MB/s",
        fmt(grouped)
    );
    println!("memory copy of {mib} MiB (the bound for reads from page cache): {memory:.0} MB/s");
    println!();
    println!("| case | median append / fio over {rounds} rounds |");
    println!("|---|---|");
    for (record_bytes, durability, median) in summary {
        println!(
            "| {record_bytes} B, {durability:?} | {} |",
            median.map_or("n/a".into(), |m| format!("{m:.2}"))
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct CaseResult {
    append_mb_s: f64,
    records_s: f64,
    read_mb_s: f64,
    fsyncs: u64,
}

fn make_batch(record_bytes: usize, tag: usize) -> (Vec<u8>, usize) {
    // Record overhead is ~10 B; fill the batch up to Kafka's default size.
    let count = (BATCH_BYTES / (record_bytes + 10)).max(1);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            timestamp: 1_700_000_000_000 + tag as i64,
            key: None,
            value: Some(vec![(i % 251) as u8; record_bytes]),
            headers: vec![],
        })
        .collect();
    (batch::encode(&records, ProducerStamp::none()), count)
}

fn run_case(
    dir: &Path,
    case: &Case,
    total_bytes: usize,
    runtime: &tokio::runtime::Runtime,
) -> CaseResult {
    let case_dir = dir.join(format!("log-{}-{:?}", case.record_bytes, case.durability));
    let log = Log::open(&case_dir, LogOptions::default()).unwrap();
    let flush_interval_ms = std::env::var("FRESHET_BENCH_FLUSH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TopicConfig::default().flush_interval_ms);
    let config = TopicConfig {
        partitions: 1,
        durability: case.durability,
        retention_ms: None,
        flush_interval_ms,
        ..TopicConfig::default()
    };
    let partition: Arc<Partition> = log
        .create_topic("bench", config)
        .unwrap()
        .partition(0)
        .unwrap();
    let (template, records_per_batch) = make_batch(case.record_bytes, 0);
    let batches = total_bytes / template.len();
    let fsyncs_before = log
        .stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);

    let started = Instant::now();
    let mut ends = std::collections::VecDeque::with_capacity(IN_FLIGHT_BATCHES + 1);
    for _ in 0..batches {
        // The log takes ownership of the producer's bytes, as the Kafka front end does.
        let info = partition.append(template.clone()).unwrap();
        ends.push_back(info.last_offset + 1);
        if ends.len() > IN_FLIGHT_BATCHES {
            let oldest = ends.pop_front().unwrap();
            runtime.block_on(partition.wait_durable(oldest)).unwrap();
        }
    }
    let end = partition.end_offset();
    runtime.block_on(partition.wait_durable(end)).unwrap();
    let append_elapsed = started.elapsed();
    let fsyncs = log
        .stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed)
        - fsyncs_before;

    let started = Instant::now();
    let mut offset = 0;
    let mut read_bytes = 0usize;
    while offset < end {
        let read = partition.read(offset, READ_BYTES_MAX).unwrap();
        read_bytes += read.bytes.len();
        offset = read.next_offset;
    }
    let read_elapsed = started.elapsed();
    assert_eq!(
        read_bytes,
        batches * template.len(),
        "read back everything appended"
    );
    log.close().unwrap();
    drop(log);
    let _ = std::fs::remove_dir_all(&case_dir);

    let mb = |bytes: usize, elapsed: Duration| bytes as f64 / 1e6 / elapsed.as_secs_f64();
    CaseResult {
        append_mb_s: mb(batches * template.len(), append_elapsed),
        records_s: (batches * records_per_batch) as f64 / append_elapsed.as_secs_f64(),
        read_mb_s: mb(read_bytes, read_elapsed),
        fsyncs,
    }
}

/// Runs fio writing `mib` MiB sequentially in batch-sized blocks; MB/s.
fn fio(dir: &Path, mib: usize, extra: &[&str]) -> Option<f64> {
    let file = dir.join("fio.dat");
    let output = Command::new("fio")
        .args([
            "--name=seq",
            "--rw=write",
            "--ioengine=psync",
            "--output-format=json",
        ])
        .arg(format!("--bs={}", BATCH_BYTES))
        .arg(format!("--size={mib}M"))
        .arg(format!("--filename={}", file.display()))
        .args(extra)
        .output();
    let _ = std::fs::remove_file(&file);
    let output = match output {
        Ok(output) if output.status.success() => output,
        _ => {
            eprintln!("fio is not installed or failed; install it with `apt-get install fio`");
            return None;
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let bytes_per_second = json["jobs"][0]["write"]["bw_bytes"].as_f64()?;
    Some(bytes_per_second / 1e6)
}

/// MB/s of copying one large buffer into another: what a read from page
/// cache (a kernel copy into our buffer) can at best approach.
fn memory_copy_mb_s(bytes: usize) -> f64 {
    let source = vec![7u8; bytes];
    let mut target = vec![0u8; bytes];
    target.copy_from_slice(&source); // fault the pages in first
    let started = Instant::now();
    for _ in 0..3 {
        target.copy_from_slice(std::hint::black_box(&source));
    }
    std::hint::black_box(&target);
    (3 * bytes) as f64 / 1e6 / started.elapsed().as_secs_f64()
}

fn fmt(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.0}"))
}
