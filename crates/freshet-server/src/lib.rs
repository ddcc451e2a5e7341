//! Freshet's server: validates the config, opens the log, creates the
//! declared topics, runs maintenance, serves HTTP, and shuts all of it down
//! cleanly. Front ends (Kafka, HTTP API) and pipelines are wired here.

pub mod config;
mod http;
pub mod jobs;
mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use freshet_core::SystemClock;
use freshet_kafka::groups::offsets::Committed;
use freshet_kafka::{Broker, BrokerSettings};
use freshet_log::{Log, LogOptions, TopicConfig};
use freshet_store::{QueryLimits, Store};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::{Config, ConfigError, ServerConfig};

/// Addresses the running server actually bound (ports may have been 0).
#[derive(Debug, Clone, Serialize)]
pub struct BoundPorts {
    pub kafka: SocketAddr,
    pub http: SocketAddr,
}

/// A running server; dropping it without `shutdown` is an unclean stop.
pub struct Server {
    log: Arc<Log>,
    store: Arc<Store>,
    jobs: Vec<Arc<jobs::JobRuntime>>,
    ports: BoundPorts,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the log (recovering it if the last stop was unclean), applies
    /// the declared topics and starts every listener.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let data_dir: PathBuf = config.server.data_dir.clone();
        let options = LogOptions {
            recent_bytes: config.server.recent_log_bytes,
            direct_writes: config.server.direct_log_writes,
            ..LogOptions::default()
        };
        let log = tokio::task::spawn_blocking(move || Log::open(&data_dir, options))
            .await?
            .with_context(|| format!("opening the log in {}", config.server.data_dir.display()))?;
        let log = Arc::new(log);
        for (name, topic) in &config.topics {
            log.ensure_topic(name, *topic)
                .with_context(|| format!("applying topic '{name}'"))?;
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(run_maintenance(
            Arc::clone(&log),
            Duration::from_millis(config.server.retention_check_interval_ms),
            stopped.clone(),
        )));
        let kafka_listener = freshet_kafka::listen(config.server.kafka_listen).await?;
        let kafka = freshet_kafka::local_address(&kafka_listener)?;
        let (advertised_host, advertised_port) =
            advertised(config.server.kafka_advertised.as_deref(), kafka)?;
        let settings = BrokerSettings {
            node_id: 0,
            cluster_id: "freshet".into(),
            advertised_host,
            advertised_port,
            auto_create_topics: config.server.auto_create_topics,
            default_partitions: config.server.default_partitions,
        };
        let broker = Arc::new(
            Broker::start(Arc::clone(&log), settings, stopped.clone())
                .context("opening consumer-group state")?,
        );
        let store = open_store(&config, &log, &broker).await?;
        let jobs = {
            let specs = config.jobs.clone();
            let log = Arc::clone(&log);
            let data_dir = config.server.data_dir.clone();
            let runtime = tokio::runtime::Handle::current();
            let offsets = offsets_recorder(&broker, "freshet job");
            tokio::task::spawn_blocking(move || {
                jobs::start(&specs, &log, &data_dir, runtime, offsets)
            })
            .await??
        };
        let registry = Arc::new(metrics::registry(
            Arc::clone(&log),
            &broker,
            Arc::clone(&store),
            jobs.clone(),
        ));
        tasks.push(freshet_kafka::serve(
            kafka_listener,
            broker,
            stopped.clone(),
        ));
        let state = http::AppState {
            log: Arc::clone(&log),
            registry,
            store: Arc::clone(&store),
            jobs: jobs.clone(),
            dashboards: Arc::new(config.dashboards.clone()),
        };
        let (http, http_task) =
            http::serve(config.server.http_listen, state, stopped.clone()).await?;
        tasks.push(http_task);
        tracing::info!(%kafka, %http, data_dir = %config.server.data_dir.display(), "freshet is serving");
        Ok(Self {
            log,
            store,
            jobs,
            ports: BoundPorts { kafka, http },
            stop,
            tasks,
        })
    }

    pub fn ports(&self) -> &BoundPorts {
        &self.ports
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn jobs(&self) -> &[Arc<jobs::JobRuntime>] {
        &self.jobs
    }

    /// Stops the listeners, then flushes and closes the log.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let jobs = self.jobs.clone();
        tokio::task::spawn_blocking(move || {
            for job in jobs {
                job.stop();
            }
        })
        .await?;
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.shutdown()).await?;
        let log = Arc::clone(&self.log);
        tokio::task::spawn_blocking(move || log.close()).await??;
        Ok(())
    }
}

/// Records positions as a consumer group's committed offsets (in the
/// background), so that tables and jobs, which keep their true positions
/// with their own state, show their lag in `freshet group describe` and
/// `/metrics` like any consumer. `metadata` says who committed.
fn offsets_recorder(broker: &Broker, metadata: &'static str) -> freshet_store::CommitHook {
    let coordinator = Arc::clone(broker.coordinator());
    let runtime = tokio::runtime::Handle::current();
    Arc::new(
        move |group: &str, topic: &str, positions: &std::collections::BTreeMap<u32, i64>| {
            let commits = positions
                .iter()
                .map(|(&partition, &offset)| {
                    let committed = Committed {
                        offset,
                        leader_epoch: -1,
                        metadata: Some(metadata.into()),
                        commit_time_ms: now_ms(),
                    };
                    (topic.to_string(), partition as i32, committed)
                })
                .collect();
            let coordinator = Arc::clone(&coordinator);
            let group = group.to_string();
            runtime.spawn(async move {
                if let Err(error) = coordinator.offsets.commit(&group, commits).await {
                    tracing::warn!(%group, %error, "recording committed offsets failed");
                }
            });
        },
    )
}

/// Opens the store and applies the declared tables; each table's committed
/// positions are also written as its consumer group's offsets, so lag shows
/// in `freshet group describe` like any consumer's.
async fn open_store(
    config: &Config,
    log: &Arc<Log>,
    broker: &Arc<Broker>,
) -> anyhow::Result<Arc<Store>> {
    for table in &config.tables {
        if log.topic(&table.topic).is_err() {
            let topic = TopicConfig {
                partitions: config.server.default_partitions,
                ..TopicConfig::default()
            };
            log.ensure_topic(&table.topic, topic).with_context(|| {
                format!(
                    "creating topic '{}' for table '{}'",
                    table.topic, table.name
                )
            })?;
        }
    }
    let data_dir = config.server.data_dir.clone();
    let log_for_store = Arc::clone(log);
    let runtime = tokio::runtime::Handle::current();
    let store = tokio::task::spawn_blocking(move || {
        Store::open(
            &data_dir,
            log_for_store,
            Arc::new(SystemClock),
            QueryLimits::default(),
            runtime,
        )
    })
    .await?
    .context("opening the store")?;
    let store = Arc::new(store);
    store.set_commit_hook(offsets_recorder(broker, "freshet store"));
    for table in config.tables.clone() {
        let name = table.name.clone();
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || store.apply(table))
            .await?
            .with_context(|| format!("applying table '{name}'"))?;
    }
    for view in config.views.clone() {
        let name = view.name.clone();
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || store.apply_view(view))
            .await?
            .with_context(|| format!("applying view '{name}'"))?;
    }
    Ok(store)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The host and port Kafka clients are told to use: the configured
/// `host:port`, or the address the listener bound.
fn advertised(configured: Option<&str>, bound: SocketAddr) -> anyhow::Result<(String, u16)> {
    let Some(configured) = configured else {
        return Ok((bound.ip().to_string(), bound.port()));
    };
    let (host, port) = configured
        .rsplit_once(':')
        .with_context(|| format!("kafka_advertised '{configured}' must be host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("kafka_advertised '{configured}': bad port"))?;
    Ok((host.to_string(), port))
}

async fn run_maintenance(log: Arc<Log>, interval: Duration, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        let log = Arc::clone(&log);
        match tokio::task::spawn_blocking(move || log.enforce_retention()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::info!(deleted, "retention deleted segments"),
            Ok(Err(error)) => tracing::error!(%error, "retention failed"),
            Err(error) => tracing::error!(%error, "retention task panicked"),
        }
    }
}
