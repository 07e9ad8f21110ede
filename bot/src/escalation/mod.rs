//! Escalation: who is paged for an incident, when, and on which channels.
//!
//! - [`model`]: contacts, rotations and one policy per severity, validated
//!   (built from the configuration by `config::escalation`, which names
//!   every mistake with its key and line);
//! - [`policy`]: what the model means at an instant: who is on call in a
//!   rotation (hand-offs across DST, overrides), whether a contact may be
//!   paged (24/7, business hours in their zone, on call), and an
//!   incident's plan: each step's due time and whom it pages;
//! - [`engine`]: the durable engine: claims due `escalations` rows with a
//!   lease and asks the ledger to fire them (`incident::escalate` decides);
//! - [`pages`]: the `page` outbox handler: claims a page (never one of a
//!   stopped escalation), then tries the contact's channels in order;
//! - [`payload`]: what a `page` intent carries.
//!
//! `model` and `policy` are pure: no IO, and time only from the arguments.

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
