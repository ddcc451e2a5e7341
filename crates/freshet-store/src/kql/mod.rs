//! The KQL subset of Data Explorer, planned onto the same DataFusion
//! session as SQL: `where`, `project` (and `project-away`,
//! `project-rename`), `extend`, `summarize … by bin()`, `count`,
//! `distinct`, `top`, `sort`/`order by`, `take`/`limit`, `join` (all
//! kinds, `innerunique` by default) and `render`.
//!
//! Parsed by hand: the KQL crates on crates.io are unmaintained, tied to
//! an old DataFusion and report no positions, and the grammar needed here
//! is small.

mod plan;
mod syntax;

pub use plan::{Render, plan};
pub use syntax::{KqlError, Pos, parse};
