//! Generation speed on one core: events per second each scenario's
//! generator produces (seed 004 defaults: 0.1 % duplicates), counted into a
//! manifest as `freshet simulate --null` does. The target is 1 M events/s
//! per core, so the simulator is never what limits a test of the platform.
//!
//! Each scenario runs five rounds of 1 M events, interleaved with the other
//! scenarios so a noisy neighbour on a shared machine hits them all alike;
//! the table shows the median round and the slowest and fastest.
//!
//! Run: `cargo bench -p freshet-sim --bench generate`
//! (`FRESHET_BENCH_SCENARIOS=iot,nexmark` runs only those).

use std::time::Instant;

use freshet_sim::{Generator, Manifest, Options, Scenario};

const EVENTS: usize = 1_000_000;
const ROUNDS: usize = 5;
const TARGET: f64 = 1_000_000.0;

/// Events per second and JSON bytes of one round.
fn round(scenario: Scenario) -> (f64, usize) {
    let mut generator = Generator::new(Options {
        scenario,
        seed: 1,
        keys: 1_000,
        rate_per_s: 0,
        start_us: 1_700_000_000_000_000,
        duplicates: 0.001,
        late: 0.0,
        late_by_ms: 0,
        out_of_order: 0.0,
        disorder_ms: 0,
        malformed: 0.0,
    });
    let mut manifest = Manifest::new(scenario.name(), 1, "null", 0);
    let started = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..EVENTS {
        let event = generator.next_event();
        bytes += event.payload.len();
        manifest.record(&event, 0);
    }
    (EVENTS as f64 / started.elapsed().as_secs_f64(), bytes)
}

fn main() {
    let scenarios: Vec<Scenario> = [
        Scenario::Iot,
        Scenario::Retail,
        Scenario::Payments,
        Scenario::Logistics,
        Scenario::Nexmark,
    ]
    .into_iter()
    .filter(|scenario| match std::env::var("FRESHET_BENCH_SCENARIOS") {
        Ok(only) => only.split(',').any(|name| name == scenario.name()),
        Err(_) => true,
    })
    .collect();
    let mut rates = vec![Vec::new(); scenarios.len()];
    let mut sizes = vec![0usize; scenarios.len()];
    for _ in 0..ROUNDS {
        for (at, &scenario) in scenarios.iter().enumerate() {
            let (rate, bytes) = round(scenario);
            rates[at].push(rate);
            sizes[at] = bytes;
        }
    }
    println!(
        "| scenario | events/s (one core), median of {ROUNDS} | slowest – fastest round | MB/s of JSON | mean event bytes | median / target |"
    );
    println!("|---|---|---|---|---|---|");
    for (at, scenario) in scenarios.iter().enumerate() {
        let rates = &mut rates[at];
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let mean_bytes = sizes[at] as f64 / EVENTS as f64;
        println!(
            "| {} | {:.0} | {:.0} – {:.0} | {:.0} | {:.0} | {:.2} |",
            scenario.name(),
            median,
            rates[0],
            rates[rates.len() - 1],
            median * mean_bytes / 1e6,
            mean_bytes,
            median / TARGET
        );
    }
}
