//! Commands and their flags. What the pipeline means lives in
//! `freshet.toml`; how this process runs lives in flags and `FRESHET_*`
//! environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use freshet_log::TopicConfig;
use freshet_server::config::JobSpec;
use freshet_server::{BoundPorts, Config, Server};
use freshet_store::{TableSpec, ViewSpec};
use freshet_stream::engine::TimePolicy;

use crate::{client, job, query, simulate};

#[derive(Debug, Parser)]
#[command(
    name = "freshet",
    version,
    about = "Real-time analytics in one binary: a Kafka-compatible log, continuous SQL, an analytical store and dashboards."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: Kafka listener, HTTP API, dashboard, metrics, and everything the config declares.
    Serve(ServeArgs),
    /// Start the platform with a built-in demo pipeline and print the dashboard URL.
    Demo(DemoArgs),
    /// Generate events (iot, retail, payments, logistics, nexmark) at a controlled rate, with duplicates, late and malformed ones.
    Simulate(simulate::SimulateArgs),
    /// Check a serving layer against the manifest of what the simulator sent.
    Verify(simulate::VerifyArgs),
    /// Administer topics: create, list, describe, grow, delete.
    #[command(subcommand)]
    Topic(client::TopicCommand),
    /// Produce lines of standard input to a topic, one record each.
    Produce(client::ProduceArgs),
    /// Consume records from a topic, alone or as a member of a group.
    Consume(client::ConsumeArgs),
    /// List consumer groups and show their members and lag.
    #[command(subcommand)]
    Group(client::GroupCommand),
    /// Query the store of a running server (SQL, or KQL with --kql).
    Query(query::QueryArgs),
    /// Hot-path jobs: run one locally over sample events.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Apply a declarative config to a running server (create-or-alter).
    Apply(Pending),
    /// Replay captured events into a topic.
    Replay(Pending),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The declarative config; without one, defaults serve on loopback.
    #[arg(long, env = "FRESHET_CONFIG")]
    config: Option<PathBuf>,
    /// Where the log and all state live (overrides [server] data_dir).
    #[arg(long, env = "FRESHET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    listeners: ListenerArgs,
}

#[derive(Debug, Args)]
struct ListenerArgs {
    /// Kafka protocol listener (overrides [server] kafka_listen; port 0 picks one).
    #[arg(long, env = "FRESHET_KAFKA_LISTEN")]
    kafka_listen: Option<SocketAddr>,
    /// HTTP API, dashboard, /metrics and /healthz (overrides [server] http_listen; port 0 picks one).
    #[arg(long, env = "FRESHET_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Write the bound ports as JSON to this file once serving (for tests and scripts).
    #[arg(long, env = "FRESHET_PORTS_FILE")]
    ports_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Where the demo keeps its data (default: freshet-demo under the system temp dir).
    #[arg(long, env = "FRESHET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    listeners: ListenerArgs,
}

/// Arguments of commands this build does not run yet.
#[derive(Debug, Args)]
struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

/// A command that exists in the interface but not yet in this build.
#[derive(Debug)]
pub struct NotYet(&'static str);

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`freshet {}` is not available in this build yet", self.0)
    }
}

impl std::error::Error for NotYet {}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Simulate(args) => simulate::simulate(args).await,
        Command::Verify(args) => simulate::verify(args).await,
        Command::Topic(command) => client::topic(command).await,
        Command::Produce(args) => client::produce(args).await,
        Command::Consume(args) => client::consume(args).await,
        Command::Group(command) => client::group(command).await,
        Command::Query(args) => tokio::task::spawn_blocking(move || query::query(args)).await?,
        Command::Job(command) => job::run(command),
        Command::Apply(_) => Err(NotYet("apply").into()),
        Command::Replay(_) => Err(NotYet("replay").into()),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(data_dir) = args.data_dir {
        config.server.data_dir = data_dir;
    }
    run_server(config, &args.listeners, None).await
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    config.server.data_dir = args
        .data_dir
        .unwrap_or_else(|| std::env::temp_dir().join("freshet-demo"));
    // TODO(issue 7): the demo pipeline (jobs, tables, views, dashboard).
    config.topics.push((
        "auth-events".into(),
        TopicConfig {
            partitions: 4,
            ..TopicConfig::default()
        },
    ));
    config.tables.push(demo_auth_table());
    config.views.push(ViewSpec {
        name: "decline_rate_1m".into(),
        query: DECLINE_RATE_1M.into(),
    });
    let policy = TimePolicy {
        out_of_order_tolerance_micros: 2_000_000,
        ..TimePolicy::default()
    };
    let mut decline_job = JobSpec::new(
        "decline-rate",
        freshet_stream::SEED_DECLINE_RATE_QUERY,
        policy,
    )
    .map_err(anyhow::Error::msg)?;
    decline_job
        .output_topics
        .push(("powerbi-live".into(), "decline-alerts".into()));
    config.jobs.push(decline_job);
    let manifest = config.server.data_dir.join("demo-manifest.json");
    let feed = move |ports: &BoundPorts| {
        let bootstrap = ports.kafka.to_string();
        println!(
            "  Feeding:  payments events into auth-events at 200/s (BIN 400000's decline rate spikes 20 s in)"
        );
        println!(
            "  Try:      freshet consume auth-events --bootstrap {bootstrap} --format '%k %v'"
        );
        println!(
            "  Query:    freshet query --server http://{} \"SELECT BIN, count(*) AS n, avg(CASE WHEN Result = 'DECLINE' THEN 1.0 ELSE 0.0 END) AS decline_rate FROM auth GROUP BY BIN ORDER BY decline_rate DESC LIMIT 5\"",
            ports.http
        );
        println!(
            "  Alerts:   curl -N http://{}/api/v1/outputs/powerbi-live/stream   (also in topic decline-alerts)",
            ports.http
        );
        println!(
            "  View:     freshet query --server http://{} \"SELECT * FROM decline_rate_1m ORDER BY minute DESC, decline_rate DESC LIMIT 10\"",
            ports.http
        );
        let stop: Box<dyn FnOnce() + Send> =
            Box::new(simulate::spawn_demo_feed(bootstrap, manifest));
        Some(stop)
    };
    run_server(config, &args.listeners, Some(Box::new(feed))).await
}

/// Seed 001's `DeclineRate1m`: attempts, declines and the decline rate per
/// BIN and minute, kept up to date as a materialized view.
const DECLINE_RATE_1M: &str = "SELECT BIN, date_bin(INTERVAL '1 minute', EventTime) AS minute, count(*) AS attempts, \
     countif(Result = 'DECLINE') AS declines, CAST(countif(Result = 'DECLINE') AS DOUBLE) / count(*) AS decline_rate \
     FROM auth GROUP BY BIN, minute";

/// The demo's raw table of payment authorisations (seed 001's `AuthEvents`).
fn demo_auth_table() -> TableSpec {
    let mut spec = TableSpec::payments("auth", "auth-events");
    spec.extent_span_ms = 3_600_000;
    spec.seal.max_age_ms = 10_000;
    spec
}

/// Runs once the listeners are bound; what it returns runs before shutdown.
type OnStarted = Box<dyn FnOnce(&BoundPorts) -> Option<Box<dyn FnOnce() + Send>> + Send>;

/// Runs until SIGTERM or Ctrl-C.
async fn run_server(
    mut config: Config,
    listeners: &ListenerArgs,
    started: Option<OnStarted>,
) -> anyhow::Result<()> {
    if let Some(http) = listeners.http_listen {
        config.server.http_listen = http;
    }
    if let Some(kafka) = listeners.kafka_listen {
        config.server.kafka_listen = kafka;
    }
    let server = Server::start(config.clone()).await?;
    let ports = server.ports().clone();
    if let Some(path) = &listeners.ports_file {
        write_ports_file(path, &serde_json::to_vec(&ports)?)?;
    }
    println!("Freshet is running.");
    println!("  Kafka:    {} (bootstrap.servers)", ports.kafka);
    println!("  HTTP:     http://{}/healthz", ports.http);
    println!("  Data:     {}", config.server.data_dir.display());
    for (name, topic) in &config.topics {
        println!("  Topic:    {name} ({} partitions)", topic.partitions);
    }
    let before_shutdown = started.and_then(|started| started(&ports));
    println!("Press Ctrl-C to stop.");
    wait_for_stop_signal().await?;
    if let Some(before_shutdown) = before_shutdown {
        tokio::task::spawn_blocking(before_shutdown).await?;
    }
    tracing::info!("stopping: flushing and closing the log");
    server.shutdown().await?;
    println!("Freshet stopped cleanly.");
    Ok(())
}

fn write_ports_file(path: &Path, json: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, json).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
