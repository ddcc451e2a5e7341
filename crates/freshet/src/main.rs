//! The `freshet` binary: the command line, and how each command starts.

mod cli;
mod client;
mod job;
mod query;
mod simulate;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the hot path allocates a record per event and frees it soon
/// after, which glibc's allocator does at about twice the cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("freshet")
        .build()
        .expect("start the async runtime");
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(error.downcast_ref::<cli::NotYet>().map_or(1, |_| 2))
        }
    }
}

/// Logs go to stderr; `FRESHET_LOG` (or `RUST_LOG`) picks levels, e.g.
/// `FRESHET_LOG=freshet_log=debug`.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("FRESHET_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
