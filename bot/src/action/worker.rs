//! The `action` outbox handler: one try of an approved proposal, exactly
//! once; and the sweep that expires proposals nobody approved in time.
//!
//! A try is recorded as sending, and committed, before the call goes out
//! (`Store::claim_action_run`). An item delivered again finds that record:
//! if its result is in, nothing happens; if not, the process that sent it
//! died before recording what happened, and the try's outcome is reported
//! as unknown rather than sent a second time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::domain::time::Clock;
use crate::incident::actions::{TryPayload, TryResult, still_same};
use crate::incident::{Change, Ledger, LedgerError, Rules};
use crate::outbox::{Failure, Handled, Handler};
use crate::runbook::run::{RunContext, Targets};
use crate::store::{OutboxItem, RunClaim, Store};

/// Times a try's result is offered to the ledger before the item is left
/// to the outbox's retries.
const RECORD_TRIES: u64 = 5;

/// Handles `action` intents.
pub struct ActionRunner {
    pub store: Store,
    pub ledger: Ledger,
    pub rules: Arc<Rules>,
    pub targets: Arc<Targets>,
    pub clock: Arc<dyn Clock>,
    /// Wait after a restart plan's try before its health check.
    pub settle: Duration,
}

fn ledger_failure(e: LedgerError) -> Failure {
    Failure {
        message: e.to_string(),
        retryable: !matches!(e, LedgerError::NotFound(_)),
        retry_after_ms: None,
    }
}

impl Handler for ActionRunner {
    const KIND: &'static str = crate::incident::actions::KIND;

    async fn handle(&self, item: &OutboxItem) -> Result<Handled, Failure> {
        let payload: TryPayload = serde_json::from_str(&item.payload)
            .map_err(|e| Failure::permanent(format!("malformed action payload: {e}")))?;
        let Some(incident_id) = item.incident_id else {
            return Err(Failure::permanent("action without an incident".into()));
        };
        let store = &self.store;
        let Some(p) = store
            .proposal(payload.proposal_id)
            .await
            .map_err(Failure::store)?
        else {
            return Err(Failure::permanent(format!(
                "proposal #{} does not exist",
                payload.proposal_id
            )));
        };
        let Some(inc) = store.incident(incident_id).await.map_err(Failure::store)? else {
            return Err(Failure::permanent(format!(
                "incident {incident_id} does not exist"
            )));
        };
        let report = |result: TryResult| Change::ActionTried {
            id: incident_id,
            proposal: p.id,
            attempt: payload.attempt,
            result,
            delivered: Some(item.id),
        };
        // What runs must be what was approved: checked before anything is
        // recorded as sending.
        let described = still_same(&self.rules, &inc, &p);
        // One key per approval: the same on every try of its retry plan.
        let key = format!("firstline-{}-action-{}", inc.human_id, p.id);
        let now = self.clock.now();
        let claim = store
            .claim_action_run(p.id, payload.attempt, &key, now)
            .await
            .map_err(Failure::store)?;
        let change = match claim {
            RunClaim::Done => return Ok(Handled::Done),
            RunClaim::NotRunnable(state) => {
                info!(incident_id, proposal = p.id, state = %state, "action not run: no longer approved");
                return Ok(Handled::Done);
            }
            RunClaim::Unknown { started_ms } => {
                metrics::counter!("firstline_action_tries_total", "kind" => p.run_kind.clone(), "outcome" => "unknown")
                    .increment(1);
                warn!(
                    incident_id,
                    proposal = p.id,
                    attempt = payload.attempt,
                    "action try was sent before a crash and never recorded: outcome unknown"
                );
                report(TryResult::Unknown { started_ms })
            }
            RunClaim::Go => match described {
                Err(now) => report(TryResult::Changed { now }),
                Ok(()) => report(self.run(&inc, &p, &key).await),
            },
        };
        // The result is known only here: a store hiccup is waited out
        // rather than left to a redelivery, which could only say "unknown".
        let mut tries = 0;
        loop {
            match self.ledger.change("firstline", change.clone()).await {
                Ok(_) => return Ok(Handled::Settled),
                Err(e @ (LedgerError::Store(_) | LedgerError::Overloaded))
                    if tries < RECORD_TRIES =>
                {
                    tries += 1;
                    warn!(incident_id, proposal = p.id, error = %e, "action result not recorded yet; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * tries)).await;
                }
                Err(e) => return Err(ledger_failure(e)),
            }
        }
    }
}

impl ActionRunner {
    /// Makes the call, then (restart plans) the health check.
    async fn run(
        &self,
        inc: &crate::domain::incident::Incident,
        p: &crate::store::ProposalRow,
        key: &str,
    ) -> TryResult {
        let env = &self.rules.actions;
        let decl = inc
            .runbook_id
            .as_deref()
            .and_then(|id| self.rules.catalog.get(id))
            .and_then(|e| {
                e.runbook
                    .actions
                    .iter()
                    .find(|a| a.id == p.action_id)
                    .cloned()
                    .map(|a| (e.runbook.clone(), a))
            });
        let Some((runbook, decl)) = decl else {
            return TryResult::Changed {
                now: format!("the runbook no longer has action {}", p.action_id),
            };
        };
        let Some(spec) = &decl.run else {
            return TryResult::Changed {
                now: format!("{} is a manual step now", p.action_id),
            };
        };
        let plan = match crate::incident::actions::vars_for(&p.param_map(), inc)
            .and_then(|vars| crate::action::prepare(spec, &vars, env))
        {
            Ok(plan) => plan,
            Err(e) => {
                return TryResult::Changed {
                    now: format!("{} can no longer be prepared: {e}", p.action_id),
                };
            }
        };
        let started = Instant::now();
        let outcome = crate::action::execute(&plan, env, key).await;
        metrics::counter!(
            "firstline_action_tries_total",
            "kind" => plan.kind(),
            "outcome" => if outcome.ok { "ok" } else { "failed" }
        )
        .increment(1);
        let duration_ms = started.elapsed().as_millis() as i64;
        let verify = match (&decl.verify, outcome.ok) {
            (Some(check_id), true) => {
                tokio::time::sleep(self.settle).await;
                let check = runbook.checks.iter().find(|c| &c.id == check_id);
                Some(match check {
                    None => (false, format!("check {check_id} is not in the runbook")),
                    Some(check) => {
                        let ctx = RunContext {
                            labels: inc.labels.clone(),
                            incident: Some(inc.human_id.clone()),
                            now: self.clock.now(),
                        };
                        let target = self.targets.get(check.probe.target());
                        let f = crate::runbook::run::run_check(check, target, &ctx).await;
                        let ok = f.status == crate::runbook::run::Status::Ok;
                        let line = format!(
                            "{} {}: {}",
                            check.id,
                            f.status.as_str(),
                            f.error
                                .clone()
                                .or_else(|| f.observed.as_ref().map(|v| v.to_string()))
                                .unwrap_or_default()
                        );
                        (ok, line)
                    }
                })
            }
            _ => None,
        };
        TryResult::Ran {
            outcome,
            duration_ms,
            verify,
        }
    }
}

/// Expires proposals past their time, every `every`, until stopped.
pub async fn expire_proposals(
    store: Store,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let due = match store.expired_proposals(clock.now(), 100).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "action expiry: the store failed; trying again shortly");
                continue;
            }
        };
        for (incident_id, proposal) in due {
            let change = Change::ActionExpired {
                id: incident_id,
                proposal,
            };
            if let Err(e) = ledger.change("firstline", change).await {
                warn!(incident_id, proposal, error = %e, "action expiry not recorded");
            }
        }
    }
}
