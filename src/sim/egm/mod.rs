//! The EGM simulator: one or more gaming machines on one SAS line, served
//! over a PTY or TCP, for tests, the demo and the benchmark.
//!
//! - [`model`]: the EGMs and the multidrop line, sans-IO (bytes and time in,
//!   reply bytes out), using `sas::proto` to decode polls and encode replies.
//! - [`queue`]: the bounded exception queue with priority exceptions.
//! - [`journal`]: what the simulator generated, as JSON lines.
//! - [`serve`]: the line over a PTY or TCP, until SIGTERM or SIGINT.

pub mod journal;
pub mod model;
pub mod queue;
pub mod serve;
#[cfg(test)]
mod tests;

pub use journal::{Entry, FaultKind, JournalFile};
pub use model::{Egm, EgmConfig, FaultPlan, FaultStats, Line, Meters, ModelError, Output};
pub use serve::{ServeConfig, ServeError, Transport, UnplugMode, UnplugPlan};
