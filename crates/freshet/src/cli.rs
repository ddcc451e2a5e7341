//! Commands and their flags. What the pipeline means lives in
//! `freshet.toml`; how this process runs lives in flags and `FRESHET_*`
//! environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use freshet_server::{BoundPorts, Config, Server};

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
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| std::env::temp_dir().join("freshet-demo"));
    let config_file = write_demo_config(&data_dir.join("pipeline"))?;
    let mut config = Config::load(&config_file)?;
    config.server.data_dir = data_dir;
    let feed = move |ports: &BoundPorts| {
        let bootstrap = ports.kafka.to_string();
        let http = ports.http;
        println!();
        println!(
            "  Dashboard: http://{http}/   (Live: payments, retail and IoT tiles; Operations: the pipeline's health)"
        );
        println!(
            "  Pipeline:  {}   (copy the folder to start your own)",
            config_file.display()
        );
        println!(
            "  Feeding:   payments (auth-events, 200/s), retail (pos-events, 200/s), IoT (iot-events, 100/s);"
        );
        println!(
            "             20 s in, BIN 400000's declines spike, three SKUs sell out and device 0 drifts: alerts follow"
        );
        println!(
            "  Query:     freshet query --server http://{http} \"SELECT * FROM decline_rate_1m ORDER BY minute DESC, decline_rate DESC LIMIT 10\""
        );
        println!(
            "  Alerts:    freshet consume decline-alerts --bootstrap {bootstrap} -f '%v'   (also stock-alerts, vibration-alerts)"
        );
        let manifests = config_file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let feeds: Vec<_> = DEMO_FEEDS
            .iter()
            .map(|feed| {
                simulate::spawn_demo_feed(
                    feed,
                    bootstrap.clone(),
                    manifests.join(format!("{}-manifest.json", feed.scenario)),
                )
            })
            .collect();
        let stop: Box<dyn FnOnce() + Send> =
            Box::new(move || feeds.into_iter().for_each(|stop| stop()));
        Some(stop)
    };
    run_server(config, &args.listeners, Some(Box::new(feed))).await
}

/// What the demo's simulators send.
const DEMO_FEEDS: [simulate::DemoFeed; 3] = [
    simulate::DemoFeed {
        scenario: "payments",
        topic: "auth-events",
        rate: 200,
        keys: 20,
    },
    simulate::DemoFeed {
        scenario: "retail",
        topic: "pos-events",
        rate: 200,
        keys: 20,
    },
    simulate::DemoFeed {
        scenario: "iot",
        topic: "iot-events",
        rate: 100,
        keys: 10,
    },
];

/// The demo pipeline's files, compiled in: its config and the queries it
/// names (the seed's decline-rate query is the hot-path golden case's).
const DEMO_FILES: [(&str, &str); 4] = [
    ("freshet.toml", include_str!("../demo/freshet.toml")),
    ("decline-rate.sql", freshet_stream::SEED_DECLINE_RATE_QUERY),
    (
        "stock-depletion.sql",
        include_str!("../demo/stock-depletion.sql"),
    ),
    ("vibration.sql", include_str!("../demo/vibration.sql")),
];

/// Writes the demo pipeline into `folder` (replacing an earlier copy) and
/// returns the config file's path.
fn write_demo_config(folder: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    for (name, text) in DEMO_FILES {
        let path = folder.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(folder.join("freshet.toml"))
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
