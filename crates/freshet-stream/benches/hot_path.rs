//! Hot-path throughput on one thread: JSON events (as they sit in the
//! log) parsed and pushed through a job, for seed 001's decline-rate query
//! (also over a sliding window) and Nexmark q0, q1, q2, q5 and q7 over
//! the simulator's streams; plus the time from the event that closes a
//! window to its rows coming out.
//!
//! Throughput is the best of three runs without clock reads per event;
//! the latency comes from a fourth run that times every push.
//!
//! `cargo bench -p freshet-stream --bench hot_path` (FRESHET_BENCH_EVENTS
//! sets the number of events, default 1,000,000; FRESHET_BENCH_ONLY=q5
//! runs only the cases whose names contain that text).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use freshet_sim::{Generator, Options, Scenario};
use freshet_stream::engine::{Engine, TimePolicy};
use freshet_stream::event::EventParser;
use freshet_stream::plan::JobPlan;

/// The allocator of the `freshet` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED: &str = freshet_stream::SEED_DECLINE_RATE_QUERY;

/// The seed query over a sliding window: a row per BIN whenever an event
/// enters or leaves its last 30 seconds.
const SEED_SLIDING: &str = "SELECT BIN, COUNT(*) AS Attempts,
       SUM(CASE WHEN Result = 'DECLINE' THEN 1 ELSE 0 END) AS Declines
INTO o FROM [auth-events] TIMESTAMP BY EventTime
GROUP BY BIN, SlidingWindow(second, 30)";

const NEXMARK_TIME: &str = "TIMESTAMP BY COALESCE(bid.dateTime, auction.dateTime, person.dateTime)";

fn nexmark_queries() -> Vec<(&'static str, String)> {
    vec![
        ("nexmark q0 (pass-through)", format!(
            "SELECT bid.auction AS auction, bid.bidder AS bidder, bid.price AS price, bid.dateTime AS dateTime INTO o FROM nexmark {NEXMARK_TIME} WHERE type = 'bid'"
        )),
        ("nexmark q1 (projection)", format!(
            "SELECT bid.auction AS auction, bid.bidder AS bidder, bid.price * 0.908 AS price, bid.dateTime AS dateTime INTO o FROM nexmark {NEXMARK_TIME} WHERE type = 'bid'"
        )),
        ("nexmark q2 (filter)", format!(
            "SELECT bid.auction AS auction, bid.price AS price INTO o FROM nexmark {NEXMARK_TIME} WHERE type = 'bid' AND bid.auction % 123 = 0"
        )),
        ("nexmark q5 (hot items)", format!(
            "WITH counts AS (
                SELECT bid.auction AS auction, COUNT(*) AS n FROM nexmark {NEXMARK_TIME} WHERE type = 'bid'
                GROUP BY bid.auction, HoppingWindow(second, 10, 2)
            ),
            maxes AS (SELECT MAX(n) AS maxn FROM counts GROUP BY System.Timestamp())
            SELECT c.auction AS auction, c.n AS n INTO o
            FROM counts c JOIN maxes m ON c.n = m.maxn AND DATEDIFF(millisecond, c, m) BETWEEN 0 AND 0"
        )),
        ("nexmark q7 (highest bid)", format!(
            "WITH bids AS (
                SELECT bid.auction AS auction, bid.price AS price, bid.bidder AS bidder FROM nexmark {NEXMARK_TIME} WHERE type = 'bid'
            ),
            maxes AS (SELECT MAX(price) AS maxprice FROM bids GROUP BY TumblingWindow(second, 10))
            SELECT b.auction AS auction, b.price AS price, b.bidder AS bidder INTO o
            FROM bids b JOIN maxes m ON b.price = m.maxprice AND DATEDIFF(second, b, m) BETWEEN 0 AND 10"
        )),
    ]
}

/// A case: its name, its query and the events it reads (event time µs,
/// the JSON payload).
type Case<'a> = (&'a str, String, &'a [(i64, Bytes)]);

fn events(scenario: Scenario, count: usize, rate_per_s: u64) -> Vec<(i64, Bytes)> {
    let mut generator = Generator::new(Options::plain(
        scenario,
        7,
        1_000,
        rate_per_s,
        1_767_225_600_000_000,
    ));
    (0..count)
        .map(|_| {
            let event = generator.next_event();
            (
                event.event_time_us,
                bytes::Bytes::from(event.payload.to_vec()),
            )
        })
        .collect()
}

struct Run {
    events_per_s: f64,
    outputs: usize,
    /// Durations of the pushes that emitted rows (window closes), µs.
    emitting_push_micros: Vec<f64>,
}

/// One run of `query` over `events`. With `time_pushes`, every push is
/// timed (two clock reads per event, which the throughput of that run
/// then includes).
fn run(query: &str, events: &[(i64, Bytes)], time_pushes: bool) -> Run {
    let plan = Arc::new(JobPlan::new(query, &[]).expect("the query plans"));
    let mut parser = EventParser::new(plan.input_fields(0).as_ref());
    let mut engine = Engine::new(plan, TimePolicy::default());
    let mut out = Vec::new();
    let mut outputs = 0;
    let mut emitting_push_micros = Vec::new();
    let started = Instant::now();
    for (arrival, payload) in events {
        let record = parser
            .parse(payload)
            .expect("simulated events are JSON objects");
        if time_pushes {
            let before = out.len();
            let push_started = Instant::now();
            let _ = engine.push(0, 0, *arrival, Arc::new(record), &mut out);
            if out.len() > before {
                emitting_push_micros.push(push_started.elapsed().as_secs_f64() * 1e6);
            }
        } else {
            let _ = engine.push(0, 0, *arrival, Arc::new(record), &mut out);
        }
        if out.len() > 4096 {
            outputs += out.len();
            out.clear();
        }
    }
    engine.finish(&mut out);
    outputs += out.len();
    let elapsed = started.elapsed().as_secs_f64();
    Run {
        events_per_s: events.len() as f64 / elapsed,
        outputs,
        emitting_push_micros,
    }
}

/// Parsing alone: every field, or only those `query` reads.
fn parse_only(events: &[(i64, Bytes)], query: Option<&str>) -> f64 {
    let fields = query.and_then(|query| {
        JobPlan::new(query, &[])
            .expect("the query plans")
            .input_fields(0)
    });
    let mut parser = EventParser::new(fields.as_ref());
    let started = Instant::now();
    let mut fields = 0;
    for (_, payload) in events {
        fields += parser.parse(payload).expect("JSON").len();
    }
    assert!(fields > 0);
    events.len() as f64 / started.elapsed().as_secs_f64()
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let count: usize = std::env::var("FRESHET_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    println!(
        "events per run: {count}; one thread; throughput best of 3 untimed runs, latency from a 4th run timing every push"
    );
    let payments = events(Scenario::Payments, count, 10_000);
    let nexmark = events(Scenario::Nexmark, count, 10_000);
    let mut cases: Vec<Case> = vec![
        ("seed decline-rate", SEED.to_string(), &payments),
        ("seed, sliding 30 s", SEED_SLIDING.to_string(), &payments),
    ];
    for (name, query) in nexmark_queries() {
        cases.push((name, query, &nexmark));
    }
    let only = std::env::var("FRESHET_BENCH_ONLY").unwrap_or_default();
    cases.retain(|(name, _, _)| name.contains(&only));
    let q0 = &nexmark_queries()[0].1;
    for (name, data, query) in [
        ("JSON parse only (payments)", &payments, None),
        ("JSON parse only (nexmark)", &nexmark, None),
        ("JSON parse only (seed's fields)", &payments, Some(SEED)),
        ("JSON parse only (q0's fields)", &nexmark, Some(q0.as_str())),
    ] {
        if !name.contains(&only) {
            continue;
        }
        let best = (0..3).map(|_| parse_only(data, query)).fold(0.0, f64::max);
        println!("{name:<30} {:>12.0} events/s", best);
    }
    for (name, query, data) in cases {
        // Throughput: the best of three untimed runs; then one run with
        // every push timed for the window-close latency.
        let best = (0..3)
            .map(|_| run(&query, data, false))
            .max_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s))
            .expect("three runs");
        let mut timed = run(&query, data, true);
        assert_eq!(timed.outputs, best.outputs, "runs of one query agree");
        let p50 = percentile(&mut timed.emitting_push_micros, 0.50);
        let p99 = percentile(&mut timed.emitting_push_micros, 0.99);
        println!(
            "{name:<30} {:>12.0} events/s  {:>8} rows out  window-close push p50 {:>8.1} µs p99 {:>8.1} µs ({} closes)",
            best.events_per_s,
            best.outputs,
            p50,
            p99,
            timed.emitting_push_micros.len()
        );
    }
}
