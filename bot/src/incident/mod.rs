//! Incidents: the single writer that turns accepted alerts and people's
//! commands into incidents, timeline events and outbox intents.
//!
//! Invariant: every state change goes through [`Ledger`] and appends a
//! timeline event in the same transaction as the change; anything to deliver
//! (a chat post) is written there too, as an outbox intent.

pub mod actions;
mod apply;
mod escalate;
pub mod joins;
mod ledger;

pub use apply::{Change, ChangeOutcome, Idempotency, IngestOutcome, LedgerError, Rules};
pub use ledger::{Delivery, Ledger};
