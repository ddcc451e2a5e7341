//! Freshet's hot path: continuous queries in the Stream Analytics dialect
//! over event streams, with event-time windows, watermarks and
//! checkpointable state. Pure: events come in as values with their arrival
//! time, outputs come back as rows; reading the log and writing outputs is
//! the server's job.

pub mod aggregate;
pub mod engine;
pub mod expr;
pub mod local;
pub mod parse;
pub mod plan;
pub mod time;
pub mod value;

pub use parse::QueryError;
pub use value::{Record, Value};
