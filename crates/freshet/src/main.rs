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

/// `mi_option_purge_delay` in mimalloc.h (the crate names no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc gives it
/// back to the system. Its default, 10 ms, returns the buffers of one
/// request (a megabyte a produce, the frame and its records) before the
/// next one comes, and touching memory the system just took back costs a
/// page fault and a zeroed page per 4 KiB, more than the copy into it; on
/// a virtual machine whose host reclaims freed guest memory, more again.
const FREED_MEMORY_KEPT_MS: std::ffi::c_long = 5_000;

fn main() -> ExitCode {
    // SAFETY: sets an option of the allocator in use; no other thread yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, FREED_MEMORY_KEPT_MS) };
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
