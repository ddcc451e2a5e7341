//! Freshet's shared vocabulary: the clock every component reads time from,
//! the named bounds on everything that grows, and the error kinds that map
//! to user-facing answers. No IO, no async.

pub mod clock;
pub mod limits;

pub use clock::{Clock, ManualClock, SystemClock};
