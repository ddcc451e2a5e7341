//! The streaming-at-scale simulator (seed 004) and its checker: pure
//! generation of scenario events with injected duplicates, late,
//! out-of-order and malformed events, the manifest describing what was
//! sent, and the comparison `freshet verify` makes. No IO: the binary
//! wires sinks (Kafka, files) and sources to it.

pub mod generator;
pub mod manifest;
pub mod scenario;

pub use generator::{Generated, Generator, Injection, Options};
pub use manifest::{Manifest, Verification, id_hash};
pub use scenario::Scenario;
