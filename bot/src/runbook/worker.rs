//! Runs the runbook an incident matched, as an outbox intent (`runbook_run`)
//! written with the incident: a crash before the findings are recorded
//! runs it again, and the findings reach the timeline and the thread
//! through the ledger like every other change.

use std::sync::Arc;

use serde::Deserialize;

use super::load::Catalog;
use super::run::{self, RunContext, Targets};
use crate::domain::time::Clock;
use crate::incident::{Change, Ledger};
use crate::outbox::{Failure, Handled, Handler};
use crate::store::OutboxItem;

/// What a `runbook_run` intent carries.
#[derive(Debug, Deserialize)]
struct Payload {
    runbook_id: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// The `runbook_run` handler.
pub struct RunbookRunner {
    pub catalog: Arc<Catalog>,
    pub targets: Arc<Targets>,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
    pub concurrency: usize,
}

impl Handler for RunbookRunner {
    const KIND: &'static str = "runbook_run";

    async fn handle(&self, item: &OutboxItem) -> Result<Handled, Failure> {
        let payload: Payload = serde_json::from_str(&item.payload)
            .map_err(|e| Failure::permanent(format!("malformed runbook_run payload: {e}")))?;
        let Some(entry) = self.catalog.get(&payload.runbook_id) else {
            return Err(Failure::permanent(format!(
                "runbook {:?} is no longer loaded",
                payload.runbook_id
            )));
        };
        let Some(incident_id) = item.incident_id else {
            return Err(Failure::permanent("runbook_run without an incident".into()));
        };
        let ctx = RunContext {
            labels: payload.labels,
            incident: Some(crate::domain::incident::human_id(incident_id)),
            now: self.clock.now(),
        };
        let report = run::run(&entry.runbook, &self.targets, &ctx, self.concurrency).await;
        tracing::info!(incident_id, runbook = %report.runbook_id, worst = report.worst().as_str(), "runbook checked");
        self.ledger
            .change(
                "firstline",
                Change::Findings {
                    id: incident_id,
                    report: Box::new(report),
                },
            )
            .await
            .map(|_| Handled::Done)
            .map_err(|e| Failure {
                message: e.to_string(),
                retryable: true,
                retry_after_ms: None,
            })
    }
}
