//! Generation speed on one core: events per second each scenario's
//! generator produces (seed 004 defaults: 0.1 % duplicates), counted into a
//! manifest as `freshet simulate --null` does. The target is 1 M events/s
//! per core, so the simulator is never what limits a test of the platform.
//!
//! Run: `cargo bench -p freshet-sim --bench generate`

use std::time::Instant;

use freshet_sim::{Generator, Manifest, Options, Scenario};

const EVENTS: usize = 2_000_000;

fn main() {
    println!("| scenario | events/s (one core) | MB/s of JSON | mean event bytes |");
    println!("|---|---|---|---|");
    for scenario in [
        Scenario::Iot,
        Scenario::Retail,
        Scenario::Payments,
        Scenario::Logistics,
        Scenario::Nexmark,
    ] {
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
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {} | {:.0} | {:.0} | {} |",
            scenario.name(),
            EVENTS as f64 / seconds,
            bytes as f64 / 1e6 / seconds,
            bytes / EVENTS
        );
    }
}
