//! Hot-path jobs in the real `freshet` binary reading their events from
//! the log: how many events per second one job thread gets through, and
//! how many per second of that thread's CPU time (the per-core figure).
//!
//! Each case fills a one-partition topic with simulator events through
//! the Kafka front end (rdkafka), restarts the server with the job
//! configured (reading from the start of the topic), and samples the
//! job's `freshet_job_input_events` and its thread's CPU time until it has
//! read every event. The job's thread does all of the work per event:
//! reading the log, decoding record batches, parsing JSON, the query, and
//! its outputs and checkpoints.
//!
//! Run: `cargo bench -p freshet --bench job`
//! Options (environment): `FRESHET_BENCH_EVENTS` (events per case, default
//! 2,000,000), `FRESHET_BENCH_ONLY` (only the cases whose name holds this
//! text), `FRESHET_BENCH_DIR` (data directory, default `target/bench-job`).

use std::time::{Duration, Instant};

use freshet_sim::{Generator, Options, Scenario};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[path = "common/mod.rs"]
mod common;
use common::{Server, send_waiting, start_server};

const NEXMARK_TIME: &str = "TIMESTAMP BY COALESCE(bid.dateTime, auction.dateTime, person.dateTime)";

const Q0: &str = "SELECT bid.auction AS auction, bid.bidder AS bidder, bid.price AS price, bid.dateTime AS dateTime INTO rows FROM events {NEXMARK_TIME} WHERE type = 'bid'";

struct Case {
    name: &'static str,
    scenario: Scenario,
    query: String,
    /// Whether the rows also go to a topic (committed with each
    /// checkpoint) or only to the job's live stream.
    to_topic: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "seed decline-rate",
            scenario: Scenario::Payments,
            query: freshet_stream::SEED_DECLINE_RATE_QUERY
                .replace("[auth-events]", "events")
                .replace("[powerbi-live]", "rows"),
            to_topic: true,
        },
        Case {
            name: "nexmark q0 (pass-through)",
            scenario: Scenario::Nexmark,
            query: Q0.replace("{NEXMARK_TIME}", NEXMARK_TIME),
            to_topic: true,
        },
        Case {
            name: "nexmark q0, live stream only",
            scenario: Scenario::Nexmark,
            query: Q0.replace("{NEXMARK_TIME}", NEXMARK_TIME),
            to_topic: false,
        },
        Case {
            name: "nexmark q2 (filter)",
            scenario: Scenario::Nexmark,
            query: format!(
                "SELECT bid.auction AS auction, bid.price AS price INTO rows FROM events {NEXMARK_TIME} WHERE type = 'bid' AND bid.auction % 123 = 0"
            ),
            to_topic: true,
        },
        Case {
            name: "nexmark q7 (highest bid)",
            scenario: Scenario::Nexmark,
            query: format!(
                "WITH bids AS (
                    SELECT bid.auction AS auction, bid.price AS price, bid.bidder AS bidder FROM events {NEXMARK_TIME} WHERE type = 'bid'
                ),
                maxes AS (SELECT MAX(price) AS maxprice FROM bids GROUP BY TumblingWindow(second, 10))
                SELECT b.auction AS auction, b.price AS price, b.bidder AS bidder INTO rows
                FROM bids b JOIN maxes m ON b.price = m.maxprice AND DATEDIFF(second, b, m) BETWEEN 0 AND 10"
            ),
            to_topic: true,
        },
    ]
}

const TOPIC_CONFIG: &str = "[[topic]]\nname = \"events\"\npartitions = 1\n";

/// Sends `count` events of `scenario` (as the simulator writes them, 100 µs
/// of event time apart) to the topic `events`; returns their bytes.
fn fill(bootstrap: &str, scenario: Scenario, count: usize) -> usize {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .create()
        .expect("producer");
    let mut generator = Generator::new(Options::plain(
        scenario,
        7,
        1_000,
        10_000,
        1_767_225_600_000_000,
    ));
    let mut bytes = 0;
    for _ in 0..count {
        let event = generator.next_event();
        bytes += event.payload.len();
        send_waiting(
            &producer,
            BaseRecord::<(), [u8]>::to("events").payload(&event.payload[..]),
        );
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    bytes
}

fn input_events(agent: &ureq::Agent, http: &str) -> u64 {
    let text = agent
        .get(&format!("http://{http}/metrics"))
        .call()
        .expect("the server's /metrics")
        .body_mut()
        .read_to_string()
        .expect("the metrics text");
    text.lines()
        .find(|line| line.starts_with("freshet_job_input_events_total{job=\"bench\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// One sample of the running job.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    events: u64,
    cpu_seconds: f64,
}

fn sample(agent: &ureq::Agent, server: &Server) -> Sample {
    let cpu_seconds = server.thread_cpu_seconds("job-bench").unwrap_or(0.0);
    Sample {
        at: Instant::now(),
        events: input_events(agent, &server.http),
        cpu_seconds,
    }
}

fn main() {
    let count: usize = std::env::var("FRESHET_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2_000_000);
    let only = std::env::var("FRESHET_BENCH_ONLY").unwrap_or_default();
    let root = std::env::var_os("FRESHET_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/bench-job"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    println!("events per case: {count}; one job, one input partition, events read from the log");
    println!();
    println!(
        "| case | events | MB | events/s (wall) | events per job-thread CPU second | job thread busy |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for case in cases().into_iter().filter(|case| case.name.contains(&only)) {
        let dir = root.join(case.name.split(' ').collect::<Vec<_>>().join("-"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the bench directory");
        let bytes = {
            let server = start_server(&dir, Some(TOPIC_CONFIG));
            fill(&server.kafka, case.scenario, count)
        };
        let config = format!(
            "{TOPIC_CONFIG}\n[[topic]]\nname = \"out\"\npartitions = 1\n\n\
             [[job]]\nname = \"bench\"\nquery = '''\n{}\n'''\nlate_arrival = \"1000d\"\n\n\
             [[job.output]]\nname = \"rows\"\n{}",
            case.query,
            if case.to_topic {
                "topic = \"out\"\n"
            } else {
                ""
            }
        );
        let server = start_server(&dir, Some(&config));
        let started = Instant::now();
        let mut first = None;
        let last = loop {
            let now = sample(&agent, &server);
            if now.events > 0 && first.is_none() {
                first = Some(now);
            }
            if now.events >= count as u64 {
                break now;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the job stalled at {} of {count} events",
                now.events
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let first = first.expect("a sample with events");
        let events = (last.events - first.events) as f64;
        let seconds = (last.at - first.at).as_secs_f64();
        let cpu = last.cpu_seconds - first.cpu_seconds;
        println!(
            "| {} | {count} | {:.0} | {:.0} | {:.0} | {:.0} % |",
            case.name,
            bytes as f64 / 1e6,
            events / seconds,
            events / cpu,
            100.0 * cpu / seconds
        );
    }
}
