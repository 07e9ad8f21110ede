//! The durable escalation engine: fires each incident's next step when it
//! falls due.
//!
//! Deadlines live in the store (`escalations`, one row per paging
//! incident), never only in memory. The engine claims due rows with a
//! lease (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so several processes on
//! one database would share them) and hands each claim to the ledger,
//! which re-reads the row in its own transaction and fires the step only
//! if it is still running that run and that step (see
//! `incident::escalate::fire`). An acknowledgement goes through the same
//! ledger, so a step and an acknowledgement are decided one after the
//! other. A process that dies holding a claim leaves it to be claimed
//! again when the lease runs out; after a restart, overdue steps fire at
//! once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::domain::time::Clock;
use crate::incident::{Change, Ledger};
use crate::store::{Store, StoreError};

/// How long a claim holds a row: far longer than the ledger takes to fire
/// a step, so a claim runs out only when its process died.
pub const LEASE_MS: i64 = 30_000;
/// Rows claimed per look at the store.
const CLAIM: i64 = 512;
/// The longest sleep between looks (a row written by another process
/// wakes nobody here).
const POLL: Duration = Duration::from_secs(1);

/// What one [`Engine::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineReport {
    /// Steps claimed as due.
    pub claimed: usize,
    /// Claims the ledger refused (it logs why); their lease runs out and
    /// they are claimed again.
    pub failed: usize,
}

/// Fires due escalation steps through the ledger.
pub struct Engine {
    store: Store,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    /// Names this process on the rows it claims (for whoever reads them).
    owner: String,
}

impl Engine {
    pub fn new(store: Store, ledger: Ledger, clock: Arc<dyn Clock>, wake: Arc<Notify>) -> Engine {
        let owner = format!("pid-{}-{}", std::process::id(), clock.now().0);
        Engine {
            store,
            ledger,
            clock,
            wake,
            owner,
        }
    }

    /// Claims every step due now and fires them, all at once, so the
    /// ledger commits them together.
    pub async fn step(&self) -> Result<EngineReport, StoreError> {
        let mut report = EngineReport::default();
        loop {
            let now = self.clock.now();
            let claimed = self
                .store
                .claim_due_escalations(now, &self.owner, LEASE_MS, CLAIM)
                .await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            let full = claimed.len() as i64 == CLAIM;
            report.claimed += claimed.len();
            let mut firing = JoinSet::new();
            for c in claimed {
                let ledger = self.ledger.clone();
                let lateness = now.0 - c.due_ms;
                metrics::histogram!("firstline_escalation_step_lateness_seconds")
                    .record(lateness.max(0) as f64 / 1000.0);
                firing.spawn(async move {
                    let change = Change::EscalationDue {
                        id: c.incident_id,
                        run: c.run,
                        k: c.next_k,
                    };
                    (c, ledger.change("firstline", change).await)
                });
            }
            while let Some(done) = firing.join_next().await {
                match done {
                    Ok((c, Ok(outcome))) => debug!(
                        incident_id = c.incident_id,
                        k = c.next_k,
                        what = %outcome.answer,
                        "escalation step"
                    ),
                    Ok((c, Err(e))) => {
                        report.failed += 1;
                        warn!(incident_id = c.incident_id, k = c.next_k, error = %e,
                            "escalation step could not be fired; it is tried again when its claim runs out")
                    }
                    Err(e) => {
                        report.failed += 1;
                        warn!(error = %e, "escalation step task ended abnormally")
                    }
                }
            }
            if !full {
                return Ok(report);
            }
        }
    }

    /// How long to sleep before the next row can be claimed.
    async fn until_next(&self) -> Duration {
        match self.store.next_escalation_due().await {
            Ok(Some(due)) => {
                let ms = (due.0 - self.clock.now().0).max(0) as u64;
                POLL.min(Duration::from_millis(ms))
            }
            _ => POLL,
        }
    }

    /// Fires steps as they fall due until `shutdown` turns true. Wakes
    /// when the ledger writes (an escalation started or re-planned), when
    /// the next step is due, and every second.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.step().await {
                warn!(error = %e, "escalation engine: could not read the store");
            }
            let wait = self.until_next().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
