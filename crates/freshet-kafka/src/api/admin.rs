//! Topic administration: CreateTopics (19), DeleteTopics (20),
//! CreatePartitions (37), DescribeConfigs (32).

use freshet_log::{LogError, TopicConfig};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::protocol::StrBytes;

use super::Request;
use crate::errors;

const RESOURCE_TOPIC: i8 = 2;
/// `config_source` for a topic-level setting.
const SOURCE_TOPIC_CONFIG: i8 = 1;

/// Kafka topic settings that do not apply to a single-copy log and are
/// accepted without effect, so existing tools' create calls work.
const IGNORED_CONFIGS: &[&str] = &[
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "compression.type",
    "message.downconversion.enable",
];

pub(crate) fn create_topics(request: &Request, body: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for creatable in body.topics {
        let name = creatable.name.0.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = creatable.name.clone();
        let outcome = (|| {
            if creatable.replication_factor != -1 && creatable.replication_factor != 1 {
                return Err((
                    ResponseError::InvalidReplicationFactor.code(),
                    format!(
                        "replication factor {} is not possible: Freshet keeps one copy (use 1 or -1)",
                        creatable.replication_factor
                    ),
                ));
            }
            let partitions = match creatable.num_partitions {
                -1 => request.broker.settings.default_partitions,
                n if n >= 1 => n as u32,
                n => {
                    return Err((
                        ResponseError::InvalidPartitions.code(),
                        format!("{n} partitions: a topic needs at least one"),
                    ));
                }
            };
            let mut config = TopicConfig {
                partitions,
                ..TopicConfig::default()
            };
            for entry in &creatable.configs {
                let value = entry.value.as_ref().map(StrBytes::as_str).unwrap_or("");
                apply_setting(&mut config, entry.name.as_str(), value)
                    .map_err(|message| (ResponseError::InvalidConfig.code(), message))?;
            }
            let error = |error: LogError| (errors::code(&error), error.to_string());
            if body.validate_only {
                freshet_log::validate_topic_name(&name).map_err(error)?;
                config.validate().map_err(error)?;
                if request.broker.log.topic(&name).is_ok() {
                    return Err(error(LogError::TopicExists(name.clone())));
                }
            } else {
                request
                    .broker
                    .log
                    .create_topic(&name, config)
                    .map_err(error)?;
            }
            Ok(config)
        })();
        match outcome {
            Ok(config) => {
                if request.version >= 5 {
                    result.num_partitions = config.partitions as i32;
                    result.replication_factor = 1;
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
        }
        response.topics.push(result);
    }
    response
}

pub(crate) fn delete_topics(request: &Request, body: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    let names = body
        .topic_names
        .into_iter()
        .chain(body.topics.into_iter().filter_map(|t| t.name));
    for name in names {
        let mut result = DeletableTopicResult::default();
        if let Err(error) = request.broker.log.delete_topic(name.0.as_str()) {
            result.error_code = errors::code(&error);
            if request.version >= 5 {
                result.error_message = Some(StrBytes::from_string(error.to_string()));
            }
        }
        result.name = Some(name);
        response.responses.push(result);
    }
    response
}

pub(crate) fn create_partitions(
    request: &Request,
    body: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for wanted in body.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let name = wanted.name.0.to_string();
        result.name = wanted.name;
        let outcome = request
            .broker
            .log
            .topic(&name)
            .map_err(|e| (errors::code(&e), e.to_string()))
            .and_then(|topic| {
                let config = topic.config();
                let count = u32::try_from(wanted.count).unwrap_or(0);
                if count <= config.partitions {
                    return Err((
                        ResponseError::InvalidPartitions.code(),
                        format!(
                            "topic '{name}' has {} partitions; the new count {} must be larger",
                            config.partitions, wanted.count
                        ),
                    ));
                }
                let grown = TopicConfig {
                    partitions: count,
                    ..config
                };
                grown
                    .validate()
                    .map_err(|e| (ResponseError::InvalidPartitions.code(), e.to_string()))?;
                if !body.validate_only {
                    request
                        .broker
                        .log
                        .alter_topic(&name, grown)
                        .map_err(|e| (errors::code(&e), e.to_string()))?;
                }
                Ok(())
            });
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(StrBytes::from_string(message));
        }
        response.results.push(result);
    }
    response
}

pub(crate) fn describe_configs(
    request: &Request,
    body: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in body.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        if resource.resource_type == RESOURCE_TOPIC {
            match request.broker.log.topic(resource.resource_name.as_str()) {
                Ok(topic) => {
                    let wanted = resource.configuration_keys.as_ref();
                    for (name, value) in settings(&topic.config()) {
                        if wanted.is_some_and(|keys| !keys.iter().any(|k| k.as_str() == name)) {
                            continue;
                        }
                        let mut entry = DescribeConfigsResourceResult::default();
                        entry.name = StrBytes::from_static_str(name);
                        entry.value = Some(StrBytes::from_string(value));
                        if request.version >= 1 {
                            entry.config_source = SOURCE_TOPIC_CONFIG;
                        }
                        result.configs.push(entry);
                    }
                }
                Err(error) => {
                    result.error_code = errors::code(&error);
                    result.error_message = Some(StrBytes::from_string(error.to_string()));
                }
            }
        }
        response.results.push(result);
    }
    response
}

/// A topic's settings under their Kafka names.
pub(crate) fn settings(config: &TopicConfig) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "delete".into()),
        (
            "retention.ms",
            config.retention_ms.unwrap_or(-1).to_string(),
        ),
        (
            "retention.bytes",
            config.retention_bytes.map_or(-1, |b| b as i64).to_string(),
        ),
        ("segment.bytes", config.segment_bytes.to_string()),
        ("segment.ms", config.segment_ms.to_string()),
        ("max.message.bytes", config.max_message_bytes.to_string()),
        ("message.timestamp.type", "CreateTime".into()),
    ]
}

/// Applies one Kafka-named setting; the error names the key and why.
pub(crate) fn apply_setting(
    config: &mut TopicConfig,
    name: &str,
    value: &str,
) -> Result<(), String> {
    let number = |value: &str| {
        value
            .parse::<i64>()
            .map_err(|_| format!("{name} must be a number, got '{value}'"))
    };
    match name {
        "retention.ms" => config.retention_ms = Some(number(value)?).filter(|ms| *ms != -1),
        "retention.bytes" => {
            config.retention_bytes = Some(number(value)?).filter(|b| *b != -1).map(|b| b as u64)
        }
        "segment.bytes" => config.segment_bytes = number(value)?.max(0) as u64,
        "segment.ms" => config.segment_ms = number(value)?,
        "max.message.bytes" => {
            config.max_message_bytes = number(value)?.clamp(0, i64::from(u32::MAX)) as u32
        }
        "cleanup.policy" if value == "delete" => {}
        "cleanup.policy" => {
            return Err(format!(
                "cleanup.policy '{value}' is not supported; only 'delete' is"
            ));
        }
        "message.timestamp.type" if value == "CreateTime" => {}
        "message.timestamp.type" => {
            return Err("message.timestamp.type: only CreateTime is supported".into());
        }
        ignored if IGNORED_CONFIGS.contains(&ignored) => {}
        unknown => return Err(format!("unknown topic config '{unknown}'")),
    }
    Ok(())
}
