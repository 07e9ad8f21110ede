//! Recovery judgement: the seeds' recovery criteria are trends ("backlog
//! decreasing", "5xx rate falling", "DLQ not growing"). Once mitigation has
//! started (the incident is acknowledged), the criteria's checks are probed
//! again every `interval_s`; when, over the last `samples` values, every
//! criterion holds, the incident is marked mitigated.
//!
//! Sampling is durable: each sample is an outbox intent (`recovery_sample`)
//! due at its time, carrying the values so far, so a restart resumes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::load::Catalog;
use super::model::RecoveryCriterion;
use super::run::{RunContext, Targets};
use crate::domain::time::Clock;
use crate::incident::{Change, Ledger};
use crate::outbox::{Failure, Handled, Handler};
use crate::probe;
use crate::store::OutboxItem;

/// Samples taken per incident before sampling stops without a verdict.
pub const MAX_SAMPLES: u32 = 60;

/// Whether `values` (oldest first) meet `criterion`'s trend.
pub fn holds(criterion: &RecoveryCriterion, values: &[f64]) -> bool {
    let n = criterion.samples.max(2) as usize;
    if values.len() < n {
        return false;
    }
    let w = &values[values.len() - n..];
    let steps_down = w.windows(2).all(|p| p[1] <= p[0]);
    let steps_up = w.windows(2).all(|p| p[1] >= p[0]);
    match criterion.trend.as_str() {
        "decreasing" => steps_down && w[n - 1] < w[0],
        "not_increasing" => steps_down,
        "increasing" => steps_up && w[n - 1] > w[0],
        "below" => criterion
            .threshold
            .is_some_and(|t| w.iter().all(|v| *v < t)),
        "above" => criterion
            .threshold
            .is_some_and(|t| w.iter().all(|v| *v > t)),
        _ => false,
    }
}

/// What a `recovery_sample` intent carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplePayload {
    pub runbook_id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Samples taken so far.
    #[serde(default)]
    pub taken: u32,
    /// Values so far per criterion title (oldest first; null when the
    /// probe could not observe).
    #[serde(default)]
    pub values: BTreeMap<String, Vec<Option<f64>>>,
}

/// The `recovery_sample` handler.
pub struct RecoveryWatcher {
    pub catalog: Arc<Catalog>,
    pub targets: Arc<Targets>,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
}

impl Handler for RecoveryWatcher {
    const KIND: &'static str = "recovery_sample";

    async fn handle(&self, item: &OutboxItem) -> Result<Handled, Failure> {
        let mut payload: SamplePayload = serde_json::from_str(&item.payload)
            .map_err(|e| Failure::permanent(format!("malformed recovery_sample payload: {e}")))?;
        let Some(incident_id) = item.incident_id else {
            return Err(Failure::permanent(
                "recovery_sample without an incident".into(),
            ));
        };
        let Some(entry) = self.catalog.get(&payload.runbook_id) else {
            return Err(Failure::permanent(format!(
                "runbook {:?} is no longer loaded",
                payload.runbook_id
            )));
        };
        let ctx = RunContext {
            labels: payload.labels.clone(),
            incident: Some(crate::domain::incident::human_id(incident_id)),
            now: self.clock.now(),
        };
        let mut lines = Vec::new();
        for criterion in &entry.runbook.recovery {
            let value = match entry
                .runbook
                .checks
                .iter()
                .find(|c| c.id == criterion.check)
            {
                Some(check) => sample(check, &self.targets, &ctx, &criterion.path).await,
                None => None,
            };
            let series = payload.values.entry(criterion.title.clone()).or_default();
            series.push(value);
            let window: Vec<f64> = series
                .iter()
                .rev()
                .map_while(|v| *v)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let shown: Vec<String> = series
                .iter()
                .rev()
                .take(criterion.samples as usize)
                .rev()
                .map(|v| v.map(|v| format!("{v}")).unwrap_or_else(|| "?".into()))
                .collect();
            let ok = holds(criterion, &window);
            lines.push((
                criterion.title.clone(),
                ok,
                format!(
                    "{} {}: {}",
                    criterion.path,
                    criterion.trend,
                    shown.join(" → ")
                ),
            ));
        }
        payload.taken += 1;
        let all = !lines.is_empty() && lines.iter().all(|(_, ok, _)| *ok);
        let interval = entry
            .runbook
            .recovery
            .iter()
            .map(|c| c.interval_s)
            .min()
            .unwrap_or(60);
        let next = (!all && payload.taken < MAX_SAMPLES)
            .then(|| crate::domain::time::Millis(self.clock.now().0 + interval as i64 * 1000));
        let change = Change::RecoverySample {
            id: incident_id,
            sample: payload.taken,
            lines: lines
                .iter()
                .map(|(t, ok, l)| (t.clone(), *ok, l.clone()))
                .collect(),
            all_hold: all,
            next: next.map(|due| (due, serde_json::to_value(&payload).unwrap_or_default())),
        };
        self.ledger
            .change("firstline", change)
            .await
            .map(|_| Handled::Done)
            .map_err(|e| Failure {
                message: e.to_string(),
                retryable: true,
                retry_after_ms: None,
            })
    }
}

/// Probes `check` and selects `path` as a number.
async fn sample(
    check: &super::model::Check,
    targets: &Targets,
    ctx: &RunContext,
    path: &str,
) -> Option<f64> {
    let target = targets.get(check.probe.target())?;
    let spec = super::run::render_spec(&check.probe, ctx).ok()?;
    let obs = probe::observe(
        &spec,
        target,
        std::time::Duration::from_millis(check.timeout_ms),
    )
    .await
    .ok()?;
    super::expect::as_number(&super::expect::value_at(&obs.data, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criterion(trend: &str, samples: u32, threshold: Option<f64>) -> RecoveryCriterion {
        RecoveryCriterion {
            title: "t".into(),
            check: "c".into(),
            path: "p".into(),
            trend: trend.into(),
            threshold,
            samples,
            interval_s: 1,
        }
    }

    #[test]
    fn a_falling_backlog_is_decreasing_and_a_flat_one_is_only_not_increasing() {
        assert!(holds(
            &criterion("decreasing", 3, None),
            &[120.0, 80.0, 40.0]
        ));
        assert!(!holds(
            &criterion("decreasing", 3, None),
            &[40.0, 40.0, 40.0]
        ));
        assert!(holds(
            &criterion("not_increasing", 3, None),
            &[40.0, 40.0, 40.0]
        ));
        assert!(!holds(
            &criterion("decreasing", 3, None),
            &[120.0, 130.0, 40.0]
        ));
    }

    #[test]
    fn only_the_last_window_of_samples_is_judged() {
        assert!(holds(
            &criterion("decreasing", 3, None),
            &[10.0, 500.0, 300.0, 100.0]
        ));
        assert!(
            !holds(&criterion("decreasing", 3, None), &[300.0, 100.0]),
            "too few samples"
        );
    }

    #[test]
    fn increasing_and_above_mirror_decreasing_and_below() {
        assert!(holds(&criterion("increasing", 3, None), &[1.0, 2.0, 2.0]));
        assert!(!holds(&criterion("increasing", 3, None), &[2.0, 2.0, 2.0]));
        assert!(!holds(&criterion("increasing", 3, None), &[1.0, 3.0, 2.0]));
        assert!(holds(&criterion("above", 2, Some(0.99)), &[0.995, 0.999]));
        assert!(!holds(&criterion("above", 2, Some(0.99)), &[0.98, 0.999]));
        assert!(!holds(&criterion("above", 2, None), &[5.0, 6.0]));
    }

    #[test]
    fn below_needs_every_sample_under_the_threshold() {
        assert!(holds(
            &criterion("below", 2, Some(0.001)),
            &[0.0005, 0.0002]
        ));
        assert!(!holds(
            &criterion("below", 2, Some(0.001)),
            &[0.002, 0.0002]
        ));
    }
}
