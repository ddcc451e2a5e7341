//! InitProducerId (key 22): a fresh producer id for idempotent producers,
//! or the same id with the next epoch when a producer asks to bump it
//! after an error (KIP-360, v3+). Transactions are not offered.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;

use super::Request;
use crate::errors;

pub(crate) fn handle(request: &Request, body: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if body.transactional_id.is_some() {
        tracing::info!("refusing a transactional producer: transactions are not supported");
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return response;
    }
    let bump =
        body.producer_id.0 >= 0 && body.producer_epoch >= 0 && body.producer_epoch < i16::MAX - 1;
    if bump {
        response.producer_id = body.producer_id;
        response.producer_epoch = body.producer_epoch + 1;
        return response;
    }
    match request.broker.log.allocate_producer_id() {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(error) => response.error_code = errors::code(&error),
    }
    response
}
