//! Log errors as Kafka error codes.

use freshet_log::{LogError, ProducerError};
use kafka_protocol::ResponseError;

pub(crate) fn code(error: &LogError) -> i16 {
    let kind = match error {
        LogError::InvalidBatch(_) => ResponseError::CorruptMessage,
        LogError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        LogError::InvalidConfig(_) => ResponseError::InvalidConfig,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Corrupt { .. } | LogError::Io { .. } => ResponseError::KafkaStorageError,
        LogError::ShuttingDown => ResponseError::NotLeaderOrFollower,
        LogError::Producer(ProducerError::OutOfOrderSequence { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
        LogError::Producer(ProducerError::FencedEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        LogError::Producer(ProducerError::UnknownProducer { .. }) => {
            ResponseError::UnknownProducerId
        }
    };
    kind.code()
}
