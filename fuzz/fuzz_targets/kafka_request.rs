//! Kafka request decoding must never panic or over-allocate, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = freshet_kafka::decode_request(bytes::Bytes::copy_from_slice(data));
});
