//! The pure core: alerts, incidents and their state machine, timeline events
//! and the TTx arithmetic. Nothing here does IO, so nothing here can fail for
//! reasons outside its arguments.

pub mod alert;
pub mod incident;
pub mod time;

pub use commands::{Severity, State};
