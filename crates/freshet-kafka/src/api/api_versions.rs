//! ApiVersions (key 18): which APIs and versions this broker serves.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::{Frame, SUPPORTED, frame};

pub(crate) fn handle() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            let mut version = ApiVersion::default();
            version.api_key = key as i16;
            version.min_version = min;
            version.max_version = max;
            version
        })
        .collect();
    response
}

/// The answer to an ApiVersions version we do not know: error 35 and our
/// ranges, in v0 (which every client can read), so the client retries lower.
pub(crate) fn unsupported_version(correlation_id: i32) -> Frame {
    let mut response = handle();
    response.error_code = ResponseError::UnsupportedVersion.code();
    frame::encode(correlation_id, 0, 0, &response, &[]).expect("ApiVersions v0 encodes")
}
