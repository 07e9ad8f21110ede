//! Escalation: who is paged for an incident, when, and on which channels.
//!
//! - [`model`]: contacts, rotations and one policy per severity, validated
//!   (built from the configuration by `config::escalation`, which names
//!   every mistake with its key and line);
//! - [`policy`]: what the model means at an instant: who is on call in a
//!   rotation (hand-offs across DST, overrides), whether a contact may be
//!   paged (24/7, business hours in their zone, on call), and an
//!   incident's plan: each step's due time and whom it pages.
//!
//! Pure: no IO, and time only from the arguments. The durable engine that
//! keeps deadlines in the store and the pagers that deliver build on these
//! types; nothing here sends a page.

pub mod engine;
pub mod model;
pub mod pages;
pub mod payload;
pub mod policy;

#[cfg(test)]
mod tests;

pub use model::{
    Addresses, Availability, Contact, Escalation, Handoff, Override, PageChannel, Policy, Rotation,
    Step, Target, WeeklyWindow,
};
pub use policy::{
    Cause, Next, Page, Plan, Recipient, Resolved, Shift, SkipReason, Skipped, StepAt, Unavailable,
};
