//! What every request handler shares: the log, this broker's identity and
//! settings.

use std::sync::Arc;

use freshet_log::{Log, LogError, Topic, TopicConfig};
use tokio::sync::watch;

use crate::groups::Coordinator;
use crate::groups::offsets::OffsetStore;
use crate::metrics::KafkaMetrics;

/// How this broker presents itself and treats unknown topics.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub node_id: i32,
    pub cluster_id: String,
    /// Host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub auto_create_topics: bool,
    pub default_partitions: u32,
}

#[derive(Debug)]
pub struct Broker {
    pub(crate) log: Arc<Log>,
    pub(crate) settings: BrokerSettings,
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) metrics: Arc<KafkaMetrics>,
}

impl Broker {
    /// Opens the broker's state in the log (committed offsets) and starts
    /// the group coordinator's clock, which runs until `stopped`.
    pub fn start(
        log: Arc<Log>,
        settings: BrokerSettings,
        stopped: watch::Receiver<bool>,
    ) -> Result<Self, LogError> {
        let coordinator = Arc::new(Coordinator::new(OffsetStore::open(&log)?));
        coordinator.run_ticks(stopped);
        Ok(Self {
            log,
            settings,
            coordinator,
            metrics: Arc::new(KafkaMetrics::default()),
        })
    }

    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    pub fn metrics(&self) -> &Arc<KafkaMetrics> {
        &self.metrics
    }

    /// The topic, created with defaults when it is unknown and `create` is
    /// asked and allowed.
    pub(crate) fn topic(&self, name: &str, create: bool) -> Result<Arc<Topic>, LogError> {
        match self.log.topic(name) {
            Err(LogError::UnknownTopic(_)) if create && self.settings.auto_create_topics => {
                let config = TopicConfig {
                    partitions: self.settings.default_partitions,
                    ..TopicConfig::default()
                };
                match self.log.create_topic(name, config) {
                    Err(LogError::TopicExists(_)) => self.log.topic(name),
                    other => other,
                }
            }
            other => other,
        }
    }
}
