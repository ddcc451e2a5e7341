//! Log errors as Kafka error codes.

use freshet_log::LogError;
use kafka_protocol::ResponseError;

pub(crate) fn code(error: &LogError) -> i16 {
    let kind = match error {
        LogError::InvalidBatch(_) => ResponseError::CorruptMessage,
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Corrupt { .. } | LogError::Io { .. } => ResponseError::KafkaStorageError,
        LogError::ShuttingDown => ResponseError::NotLeaderOrFollower,
    };
    kind.code()
}
