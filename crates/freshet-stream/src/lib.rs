//! Freshet's hot path: continuous queries in the Stream Analytics dialect
//! over event streams, with event-time windows, watermarks and
//! checkpointable state. Pure: events come in as values with their arrival
//! time, outputs come back as rows; reading the log and writing outputs is
//! the server's job.

pub mod aggregate;
pub mod engine;
pub mod event;
pub mod expr;
pub mod local;
pub mod parse;
pub mod plan;
pub mod time;
pub mod value;

pub use parse::QueryError;

/// Seed 001's canonical hot-path query: the decline rate per BIN over
/// 30-second windows, alerting above 15 %. It must run unchanged.
pub const SEED_DECLINE_RATE_QUERY: &str = include_str!("../tests/cases/seed_decline_rate/job.sql");
pub use value::{Record, Value};
