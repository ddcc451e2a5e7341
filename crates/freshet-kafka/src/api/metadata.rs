//! Metadata (key 3): this single broker, and the topics and partitions it
//! leads (all of them).

use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::errors;

pub(crate) fn handle(request: &Request, body: MetadataRequest) -> MetadataResponse {
    let broker = &request.broker;
    let settings = &broker.settings;
    let mut response = MetadataResponse::default();
    let mut node = MetadataResponseBroker::default();
    node.node_id = BrokerId(settings.node_id);
    node.host = StrBytes::from_string(settings.advertised_host.clone());
    node.port = i32::from(settings.advertised_port);
    response.brokers = vec![node];
    response.cluster_id = Some(StrBytes::from_string(settings.cluster_id.clone()));
    response.controller_id = BrokerId(settings.node_id);
    let names: Vec<String> = match body.topics {
        None => broker
            .log
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect(),
    };
    for name in names {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_string(name.clone())));
        topic.is_internal = name.starts_with("__");
        match broker.topic(&name, body.allow_auto_topic_creation || request.version < 4) {
            Ok(found) => {
                topic.partitions = found
                    .partitions()
                    .iter()
                    .map(|partition| {
                        let mut entry = MetadataResponsePartition::default();
                        entry.partition_index = partition.id() as i32;
                        entry.leader_id = BrokerId(settings.node_id);
                        entry.leader_epoch = freshet_log::batch::LEADER_EPOCH;
                        entry.replica_nodes = vec![BrokerId(settings.node_id)];
                        entry.isr_nodes = vec![BrokerId(settings.node_id)];
                        entry
                    })
                    .collect();
            }
            Err(error) => topic.error_code = errors::code(&error),
        }
        response.topics.push(topic);
    }
    response
}
