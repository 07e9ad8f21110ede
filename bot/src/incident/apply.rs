//! What one job does inside the writer's transaction: the grouping, dedup
//! and state rules. Checks come before writes, so a refused job changes
//! nothing even though it shares the transaction with others.

use std::collections::BTreeMap;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::joins::{Aggregate, Arrival, Joins, Record};
use crate::chat::messages::Messages;
use crate::domain::alert::{AlertStatus, IncomingAlert, ParsedWebhook, Source};
use crate::domain::incident::{self, EventKind, Incident, human_id, transition_allowed};
use crate::domain::time::Millis;
use crate::domain::{Severity, State};
use crate::runbook::load::Catalog;
use crate::runbook::run::Report;
use crate::store::{Batch, NewAlert, NewEvent, NewIncident, Prefetch, ReceiptOutcome, StoreError};

/// The grouping and severity rules, from config.
#[derive(Debug, Clone)]
pub struct Rules {
    pub group_by: Vec<String>,
    pub severity_map: BTreeMap<String, Severity>,
    pub default_severity: Severity,
    /// Where an incident goes when its last firing alert resolves.
    pub on_all_alerts_resolved: State,
    /// Channel new incident threads are opened in.
    pub channel: String,
    pub messages: Messages,
    /// Runbooks, matched against the alert that opens an incident.
    pub catalog: Arc<Catalog>,
    /// Whether a matched runbook's checks run when an alert opens an incident.
    pub run_on_alert: bool,
    /// Contacts, rotations and policies: whom an incident pages, and when.
    pub escalation: Arc<crate::escalation::Escalation>,
    /// Who may approve what (`[roles.*]`, `[approvals]`).
    pub approval: Arc<crate::approval::Rules>,
    /// What actions may reach, to render what a proposal will run.
    pub actions: Arc<crate::action::Env>,
}

/// An idempotency key sent with a generic delivery, and the hash of the
/// body it came with (a reused key with another body is refused).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// What happened to a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestOutcome {
    /// Alerts stored as new facts (new firing alerts, resolutions).
    pub accepted: u32,
    /// Alerts that had been delivered before (same group, fingerprint,
    /// start and status) and changed nothing.
    pub duplicates: u32,
    /// Incidents the delivery opened or updated, e.g. `INC-7` (known once
    /// the journal is applied, so never in an intake answer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<String>,
    /// Of those, the ones it opened.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub opened: Vec<String>,
    /// Set when the whole delivery replays an earlier idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

/// A person's change to an incident (from chat or the console).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Declare {
        title: String,
        severity: Severity,
    },
    SetState {
        id: i64,
        to: State,
        note: Option<String>,
    },
    SetSeverity {
        id: i64,
        severity: Severity,
    },
    Note {
        id: i64,
        text: String,
    },
    Followup {
        id: i64,
        text: String,
        owner: Option<String>,
        due: Option<String>,
    },
    /// A reaction added to (or, `removed`, taken off) one of the
    /// incident's messages.
    Reaction {
        id: i64,
        emoji: String,
        message_ref: String,
        removed: bool,
        /// Who reacted, when the platform vouches for it (a signed Slack
        /// event, the console's terminal, `/console/*` with its token);
        /// `None` otherwise, and then it approves nothing.
        by: Option<crate::approval::Identity>,
    },
    /// A runbook run's findings, recorded on the timeline and posted.
    Findings {
        id: i64,
        report: Box<Report>,
    },
    /// A person asked for a runbook's checks on an incident: recorded on
    /// the timeline and written as a `runbook_run` intent, so the run takes
    /// its turn behind the incident's earlier runs and survives a crash;
    /// its findings follow as [`Change::Findings`].
    RunRunbook {
        id: i64,
        runbook_id: String,
    },
    /// The escalation engine claimed step `k` of run `run` as due: fired
    /// if the escalation is still there (see `incident::escalate::fire`).
    EscalationDue {
        id: i64,
        run: i64,
        k: i64,
    },
    /// A person pages someone by hand (`/page`): written as a page intent
    /// that no acknowledgement cancels.
    Page {
        id: i64,
        to: crate::escalation::payload::PageTo,
        /// The target as typed.
        because: String,
        note: Option<String>,
    },
    /// An automatic attempt at `what` (a restart, a retried action) failed:
    /// on the timeline, and at the third failure of the same `what` the
    /// escalation moves to its next step at once (seed 000 §4.2, seed
    /// 003's auto-recovery: "restart up to 3 times, then escalate").
    AutomaticAttemptFailed {
        id: i64,
        what: String,
        error: String,
    },
    /// What happened to a page: one timeline event per line (text, data).
    PageReport {
        id: i64,
        lines: Vec<(String, serde_json::Value)>,
        /// The page's outbox item, when it went out: marked delivered in
        /// the same transaction (one commit a page instead of two).
        delivered: Option<i64>,
    },
    /// One recovery sample: per criterion (title, holds, line); `all_hold`
    /// marks the incident mitigated; `next` schedules the next sample.
    RecoverySample {
        id: i64,
        sample: u32,
        lines: Vec<(String, bool, String)>,
        all_hold: bool,
        next: Option<(Millis, serde_json::Value)>,
    },
    /// `/action propose`: a proposal posted for approval (see
    /// `incident::actions`).
    ProposeAction {
        id: i64,
        action: String,
        params: Vec<(String, String)>,
        /// The proposer, when the platform vouches for them (the two-person
        /// rule needs to know who they are).
        by: Option<crate::approval::Identity>,
    },
    /// The expiry sweep found a proposal past its time.
    ActionExpired {
        id: i64,
        proposal: i64,
    },
    /// A try of an approved proposal ended; its outbox item is marked
    /// delivered in the same transaction.
    ActionTried {
        id: i64,
        proposal: i64,
        attempt: i64,
        result: super::actions::TryResult,
        delivered: Option<i64>,
    },
}

/// The incident after a change, and a one-line answer for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeOutcome {
    pub incident: Incident,
    pub answer: String,
}

/// Why the writer refused a job. Each names the problem for the person or
/// sender; `Store` / `Overloaded` / `Stopped` are `infra` (retry later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{id} is {from}; it cannot become {to}")]
    Transition { id: String, from: State, to: State },
    #[error("{id} is already {severity}")]
    Unchanged { id: String, severity: Severity },
    #[error("idempotency key {0:?} was already used with a different body")]
    KeyReused(String),
    #[error("the store failed: {0}")]
    Store(String),
    #[error("intake is at capacity; retry shortly")]
    Overloaded,
    #[error("firstline is shutting down")]
    Stopped,
    /// Refused for the reason given (an action that may not be proposed).
    #[error("{0}")]
    Refused(String),
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        LedgerError::Store(e.to_string())
    }
}

/// Side effects of a batch, acted on after its commit.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub enqueued: usize,
    /// The writer's counts of alert arrivals, as this batch leaves them
    /// (kept by the writer only if the batch commits).
    pub joins: Joins,
}

/// What the ingest jobs of a batch will look up, so the batch can fetch it
/// in a few statements instead of a few per alert.
pub(super) fn prefetch_for<'a>(
    rules: &Rules,
    deliveries: impl Iterator<Item = (Source, &'a ParsedWebhook)>,
) -> Prefetch {
    let mut p = Prefetch::default();
    for (source, webhook) in deliveries {
        for a in &webhook.alerts {
            p.receipts
                .push((source.as_str().to_string(), a.dedup_key()));
            p.fingerprints
                .push((source.as_str().to_string(), a.fingerprint.clone()));
            p.groups
                .push(incident::group_key(&a.labels, &rules.group_by));
        }
    }
    p
}

pub(super) async fn ingest(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    source: Source,
    webhook: &ParsedWebhook,
    idempotency: Option<&Idempotency>,
    effects: &mut Effects,
) -> Result<IngestOutcome, LedgerError> {
    let src = source.as_str();
    if let Some(idem) = idempotency {
        let key = format!("idem:{}", idem.key);
        if tx
            .record_receipt(src, &key, Some(&idem.request_hash), now)
            .await?
            == ReceiptOutcome::Duplicate
        {
            // Raced with the same key in this batch or since the HTTP check.
            return Ok(IngestOutcome {
                duplicates: webhook.alerts.len() as u32,
                replay_of: Some(idem.key.clone()),
                ..Default::default()
            });
        }
    }

    let mut out = IngestOutcome::default();
    // Alerts of this delivery per incident they landed in, for its post.
    let mut landed: BTreeMap<i64, Vec<&IncomingAlert>> = BTreeMap::new();
    let mut opened: Vec<i64> = Vec::new();
    let mut touched: Vec<i64> = Vec::new();

    for alert in &webhook.alerts {
        let key = alert.dedup_key();
        if tx.record_receipt(src, &key, None, now).await? == ReceiptOutcome::Duplicate {
            out.duplicates += 1;
            continue;
        }
        let starts_ms = alert.starts_at.map(|m| m.0);
        let existing = tx.find_alert(src, &alert.fingerprint, starts_ms).await?;
        let incident_id = match (existing, alert.status) {
            // Same alert, same status: a redelivery whose receipt was pruned.
            (Some((_, _, status)), s) if status == s.as_str() => {
                out.duplicates += 1;
                continue;
            }
            (Some((alert_id, incident_id, _)), AlertStatus::Resolved) => {
                tx.set_alert_status(
                    src,
                    &alert.fingerprint,
                    alert_id,
                    "resolved",
                    alert.ends_at.map(|m| m.0).or(Some(now.0)),
                    now,
                )
                .await?;
                if let Some(id) = incident_id {
                    alert_resolved(tx, rules, now, id, alert, effects).await?;
                }
                incident_id
            }
            (Some((alert_id, incident_id, _)), AlertStatus::Firing) => {
                tx.set_alert_status(src, &alert.fingerprint, alert_id, "firing", None, now)
                    .await?;
                if let Some(id) = incident_id {
                    refired(tx, rules, now, id, alert, effects).await?;
                }
                incident_id
            }
            (None, AlertStatus::Firing) => {
                let (id, new) = incident_for(tx, rules, now, alert, effects).await?;
                insert_alert(tx, now, alert, Some(id)).await?;
                if new {
                    opened.push(id);
                } else {
                    // One opened by this delivery lists it in its opening.
                    let say = !opened.contains(&id);
                    alert_joined(tx, rules, now, id, alert, effects, say).await?;
                }
                Some(id)
            }
            (None, AlertStatus::Resolved) => {
                // Resolved before we saw it fire (or its firing was pruned):
                // record it, update an open incident of its group, never
                // open one.
                let group = incident::group_key(&alert.labels, &rules.group_by);
                let open = tx.open_incident_for_group(&group).await?.map(|i| i.id);
                insert_alert(tx, now, alert, open).await?;
                if let Some(id) = open {
                    alert_resolved(tx, rules, now, id, alert, effects).await?;
                }
                open
            }
        };
        out.accepted += 1;
        if let Some(id) = incident_id {
            landed.entry(id).or_default().push(alert);
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
    }

    for id in &opened {
        let Some(mut inc) = tx.incident(*id).await? else {
            continue;
        };
        if webhook.truncated_alerts > 0 {
            inc.truncated_alerts += webhook.truncated_alerts as i64;
            tx.update_incident(&inc).await?;
            let text = format!(
                "the sender left out {} more alert(s) of this group (truncatedAlerts)",
                webhook.truncated_alerts
            );
            event(
                tx,
                &inc,
                now,
                src,
                EventKind::AlertsTruncated,
                &text,
                json!({"truncated": webhook.truncated_alerts}),
            )
            .await?;
        }
        let alerts = landed.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let text = rules
            .messages
            .opened(&inc, alerts, webhook.truncated_alerts);
        post(tx, rules, now, &inc, "incident_opened", text, effects).await?;
    }

    out.incidents = touched.iter().map(|id| human_id(*id)).collect();
    out.opened = opened.iter().map(|id| human_id(*id)).collect();
    Ok(out)
}

/// How far in the future of its arrival an alert's `startsAt` may lie
/// (clock skew between hosts) before it is not believed.
const MAX_CLOCK_SKEW_MS: i64 = 5 * 60_000;

/// The open incident of the alert's group, or a new one (`true`).
async fn incident_for(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    alert: &IncomingAlert,
    effects: &mut Effects,
) -> Result<(i64, bool), LedgerError> {
    let group = incident::group_key(&alert.labels, &rules.group_by);
    let severity =
        incident::severity_of(&alert.labels, &rules.severity_map, rules.default_severity);
    // A start in the future (a sender's clock, or garbage) would make TTD
    // negative: past a little skew, impact is taken to start on arrival.
    let from_future = alert
        .starts_at
        .filter(|s| s.0 > now.0.saturating_add(MAX_CLOCK_SKEW_MS));
    let starts_at = if from_future.is_some() {
        Some(now)
    } else {
        alert.starts_at
    };
    if let Some(mut inc) = tx.open_incident_for_group(&group).await? {
        let mut changed = false;
        if let Some(start) = starts_at
            && inc.impact_start.is_none_or(|s| start < s)
        {
            inc.impact_start = Some(start);
            changed = true;
        }
        if severity < inc.severity {
            let from = inc.severity;
            inc.severity = severity;
            inc.updated = now;
            tx.update_incident(&inc).await?;
            let text = format!(
                "severity raised {from} -> {severity} by alert {}",
                alert.name()
            );
            event(
                tx,
                &inc,
                now,
                alert.source.as_str(),
                EventKind::SeverityChanged,
                &text,
                json!({"from": from.as_str(), "to": severity.as_str()}),
            )
            .await?;
            let msg = rules
                .messages
                .severity_changed(&inc, from, alert.source.as_str());
            post(tx, rules, now, &inc, "severity_changed", msg, effects).await?;
            super::escalate::replan(tx, rules, now, &inc, from, alert.source.as_str(), effects)
                .await?;
            // A P1 is never held behind a storm's summary.
            if severity == Severity::P1 {
                tx.release_held(inc.id, now).await?;
            }
        } else if changed {
            tx.update_incident(&inc).await?;
        }
        // An incident with no runbook yet gets the first one a joining
        // alert matches. Once it has one, joining alerts do not rerun it:
        // an alert storm would otherwise probe the same systems hundreds of
        // times (`/runbook run` reruns on demand).
        if inc.runbook_id.is_none()
            && rules.run_on_alert
            && let Some(entry) = rules.catalog.for_alert(&alert.labels)
        {
            inc.runbook_id = Some(entry.runbook.id.clone());
            tx.update_incident(&inc).await?;
            let payload = json!({"runbook_id": entry.runbook.id, "labels": alert.labels});
            tx.enqueue(Some(inc.id), "runbook_run", &payload, now)
                .await?;
            effects.enqueued += 1;
        }
        return Ok((inc.id, false));
    }
    let title = incident::title_for(alert, &group);
    let labels = serde_json::to_string(&alert.labels).unwrap_or_else(|_| "{}".into());
    let runbook = rules
        .catalog
        .for_alert(&alert.labels)
        .map(|e| e.runbook.clone());
    // The alert's own severity label wins; without one, the runbook's.
    let severity = match (&runbook, alert.labels.contains_key("severity")) {
        (Some(rb), false) => rb.severity.parse().unwrap_or(severity),
        _ => severity,
    };
    let inc = tx
        .insert_incident(&NewIncident {
            runbook_id: runbook.as_ref().map(|r| r.id.as_str()),
            group_key: &group,
            title: &title,
            severity: severity.as_str(),
            labels,
            impact_start: starts_at.or(Some(now)),
            detected: now,
        })
        .await?;
    if let Some(rb) = &runbook
        && rules.run_on_alert
    {
        let payload = json!({"runbook_id": rb.id, "labels": alert.labels});
        tx.enqueue(Some(inc.id), "runbook_run", &payload, now)
            .await?;
        effects.enqueued += 1;
    }
    let text = format!(
        "opened by {} alert {} ({severity})",
        alert.source.as_str(),
        alert.name()
    );
    event(tx, &inc, now, alert.source.as_str(), EventKind::Opened, &text,
        json!({"group_key": group, "severity": severity.as_str(), "fingerprint": alert.fingerprint})).await?;
    event(
        tx,
        &inc,
        now,
        alert.source.as_str(),
        EventKind::AlertFiring,
        &alert_line(alert, "firing"),
        alert_data(alert),
    )
    .await?;
    super::escalate::start(tx, rules, now, &inc, effects).await?;
    if let Some(claimed) = from_future {
        let text = format!(
            "alert {} says it started at {}, more than {} min after it arrived (the sender's clock?); impact start is taken as its arrival",
            alert.name(),
            claimed.to_rfc3339(),
            MAX_CLOCK_SKEW_MS / 60_000
        );
        event(
            tx,
            &inc,
            now,
            alert.source.as_str(),
            EventKind::Note,
            &text,
            json!({"claimed_starts_at": claimed.to_rfc3339(), "fingerprint": alert.fingerprint}),
        )
        .await?;
    }
    Ok((inc.id, true))
}

async fn insert_alert(
    tx: &mut Batch<'_>,
    now: Millis,
    a: &IncomingAlert,
    incident_id: Option<i64>,
) -> Result<(), LedgerError> {
    Ok(tx
        .insert_alert(&NewAlert {
            incident_id,
            source: a.source.as_str(),
            fingerprint: &a.fingerprint,
            status: a.status.as_str(),
            name: a.name(),
            starts_ms: a.starts_at.unwrap_or(now).0,
            ends_ms: a.ends_at.map(|m| m.0),
            labels: serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into()),
            annotations: serde_json::to_string(&a.annotations).unwrap_or_else(|_| "{}".into()),
            generator_url: a.generator_url.as_deref(),
            now,
        })
        .await?)
}

async fn alert_joined(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    a: &IncomingAlert,
    effects: &mut Effects,
    say: bool,
) -> Result<(), LedgerError> {
    // The hot path of an alert storm: no need to load the incident.
    alert_event(
        tx,
        rules,
        now,
        id,
        a,
        Arrival::Firing,
        "firing",
        effects,
        say,
    )
    .await
}

/// The timeline event of one alert arriving on incident `id`: its own, or
/// counted into an aggregate (see [`super::joins`]); with `say`, the same
/// in the incident's thread, so the thread accounts for every alert (named,
/// or counted once a minute beyond the first ones).
#[allow(clippy::too_many_arguments)]
async fn alert_event(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    a: &IncomingAlert,
    arrival: Arrival,
    what: &str,
    effects: &mut Effects,
    say: bool,
) -> Result<(), LedgerError> {
    let kind = match arrival {
        Arrival::Firing => EventKind::AlertFiring,
        Arrival::Resolved => EventKind::AlertResolved,
    };
    match effects.joins.arrive(id, arrival, now) {
        Record::Individual => {
            let line = alert_line(a, what);
            tx.append(NewEvent {
                incident_id: id,
                at: now,
                actor: a.source.as_str(),
                kind: kind.as_str(),
                text: &line,
                data: json_text(&alert_data(a)),
            })
            .await?;
            if say {
                let text = rules.messages.alert_arrival(
                    &human_id(id),
                    arrival == Arrival::Resolved,
                    &line,
                );
                post_for(tx, rules, now, id, "alert_arrival", text, effects).await?;
            }
        }
        Record::Counted => {}
        Record::Aggregate(counts) => aggregate_event(tx, rules, now, &counts, effects).await?,
    }
    Ok(())
}

/// Writes one aggregate of counted alert arrivals, on the timeline and in
/// the incident's thread.
pub(super) async fn aggregate_event(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    counts: &Aggregate,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    tx.append(NewEvent {
        incident_id: counts.incident_id,
        at: now,
        actor: "firstline",
        kind: EventKind::AlertsCounted.as_str(),
        text: &counts.text(),
        data: json_text(&json!({
            "fired": counts.fired,
            "resolved": counts.resolved,
            "since": counts.since.to_rfc3339(),
        })),
    })
    .await?;
    let text = rules
        .messages
        .alerts_counted(&human_id(counts.incident_id), &counts.text());
    post_for(
        tx,
        rules,
        now,
        counts.incident_id,
        "alerts_counted",
        text,
        effects,
    )
    .await
}

async fn refired(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    a: &IncomingAlert,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    let Some(inc) = tx.incident(id).await? else {
        return Ok(());
    };
    // Firing again on a mitigated or resolved incident has a post of its
    // own (below); otherwise it is one more alert in the thread.
    let calm = inc.state == State::Mitigated || inc.state == State::Resolved;
    alert_event(
        tx,
        rules,
        now,
        id,
        a,
        Arrival::Firing,
        "firing again",
        effects,
        !calm,
    )
    .await?;
    if calm {
        let text = rules.messages.refired(&inc, a);
        post(tx, rules, now, &inc, "alert_refired", text, effects).await?;
    }
    Ok(())
}

async fn alert_resolved(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    a: &IncomingAlert,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    let Some(mut inc) = tx.incident(id).await? else {
        return Ok(());
    };
    alert_event(
        tx,
        rules,
        now,
        id,
        a,
        Arrival::Resolved,
        "resolved",
        effects,
        true,
    )
    .await?;
    if tx.firing_alerts(id).await? > 0 {
        return Ok(());
    }
    let to = rules.on_all_alerts_resolved;
    if !transition_allowed(inc.state, to) {
        return Ok(());
    }
    let from = inc.state;
    set_state(&mut inc, to, now);
    tx.update_incident(&inc).await?;
    let text = format!("all alerts resolved: {from} -> {to}");
    event(
        tx,
        &inc,
        now,
        a.source.as_str(),
        EventKind::StateChanged,
        &text,
        json!({"from": from.as_str(), "to": to.as_str()}),
    )
    .await?;
    let msg =
        rules
            .messages
            .state_changed(&inc, from, a.source.as_str(), Some("all alerts resolved"));
    post(tx, rules, now, &inc, "state_changed", msg, effects).await?;
    super::escalate::follow_state(tx, rules, now, &inc, from, a.source.as_str(), effects).await
}

/// Moves the incident to `to`, stamping the milestone it reaches. The
/// first acknowledgement and mitigation are kept (TTA and TTM measure the
/// first response); reopening clears the resolution.
fn set_state(inc: &mut Incident, to: State, now: Millis) {
    match to {
        State::Acknowledged => {
            inc.acknowledged.get_or_insert(now);
        }
        State::Mitigated => {
            inc.acknowledged.get_or_insert(now);
            inc.mitigated.get_or_insert(now);
        }
        State::Resolved => {
            inc.resolved = Some(now);
        }
        State::Triggered => {
            inc.resolved = None;
        }
    }
    inc.state = to;
    inc.updated = now;
}

pub(super) async fn change(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    actor: &str,
    change: &Change,
    effects: &mut Effects,
) -> Result<ChangeOutcome, LedgerError> {
    let outcome = make_change(tx, rules, now, actor, change, effects).await?;
    // A person acting on an incident whose root a storm holds gets its
    // thread now (see `chat::storm`).
    if let Some(id) = change.by_person()
        && tx.release_held(id, now).await? > 0
    {
        effects.enqueued += 1;
    }
    Ok(outcome)
}

impl Change {
    /// The incident a person's change acts on (machines' changes, findings
    /// and recovery samples, are not someone acting).
    fn by_person(&self) -> Option<i64> {
        match self {
            Change::SetState { id, .. }
            | Change::SetSeverity { id, .. }
            | Change::Note { id, .. }
            | Change::Followup { id, .. }
            | Change::Reaction { id, .. }
            | Change::RunRunbook { id, .. }
            | Change::ProposeAction { id, .. } => Some(*id),
            Change::Page { id, .. } => Some(*id),
            Change::Declare { .. }
            | Change::Findings { .. }
            | Change::RecoverySample { .. }
            | Change::EscalationDue { .. }
            | Change::AutomaticAttemptFailed { .. }
            | Change::ActionExpired { .. }
            | Change::ActionTried { .. }
            | Change::PageReport { .. } => None,
        }
    }
}

async fn make_change(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    actor: &str,
    change: &Change,
    effects: &mut Effects,
) -> Result<ChangeOutcome, LedgerError> {
    match change {
        Change::Declare { title, severity } => {
            let group = format!("declared:{now}", now = now.0);
            let inc = tx
                .insert_incident(&NewIncident {
                    runbook_id: None,
                    group_key: &group,
                    title,
                    severity: severity.as_str(),
                    labels: "{}".into(),
                    impact_start: Some(now),
                    detected: now,
                })
                .await?;
            let text = format!("declared by {actor} ({severity})");
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::Opened,
                &text,
                json!({"severity": severity.as_str()}),
            )
            .await?;
            let msg = rules.messages.opened(&inc, &[], 0);
            post(tx, rules, now, &inc, "incident_opened", msg, effects).await?;
            super::escalate::start(tx, rules, now, &inc, effects).await?;
            Ok(ChangeOutcome {
                answer: format!("{} declared: {}", inc.human_id, inc.title),
                incident: inc,
            })
        }
        Change::SetState { id, to, note } => {
            let mut inc = load(tx, *id).await?;
            if !transition_allowed(inc.state, *to) {
                return Err(LedgerError::Transition {
                    id: inc.human_id,
                    from: inc.state,
                    to: *to,
                });
            }
            let from = inc.state;
            set_state(&mut inc, *to, now);
            tx.update_incident(&inc).await?;
            if *to == State::Acknowledged {
                start_recovery_watch(tx, rules, now, &inc, effects).await?;
            }
            if *to == State::Resolved {
                super::actions::cancel_open(tx, now, &inc, actor).await?;
            }
            let verb = if from == State::Resolved && *to == State::Triggered {
                "reopened"
            } else {
                to.as_str()
            };
            let mut text = format!("{from} -> {to} by {actor}");
            if let Some(n) = note {
                text.push_str(&format!(": {n}"));
            }
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::StateChanged,
                &text,
                json!({"from": from.as_str(), "to": to.as_str(), "note": note}),
            )
            .await?;
            let msg = rules
                .messages
                .state_changed(&inc, from, actor, note.as_deref());
            post(tx, rules, now, &inc, "state_changed", msg, effects).await?;
            super::escalate::follow_state(tx, rules, now, &inc, from, actor, effects).await?;
            Ok(ChangeOutcome {
                answer: format!("{} {verb} by {actor}", inc.human_id),
                incident: inc,
            })
        }
        Change::SetSeverity { id, severity } => {
            let mut inc = load(tx, *id).await?;
            if inc.severity == *severity {
                return Err(LedgerError::Unchanged {
                    id: inc.human_id,
                    severity: *severity,
                });
            }
            let from = inc.severity;
            inc.severity = *severity;
            inc.updated = now;
            tx.update_incident(&inc).await?;
            let text = format!("severity {from} -> {severity} by {actor}");
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::SeverityChanged,
                &text,
                json!({"from": from.as_str(), "to": severity.as_str()}),
            )
            .await?;
            let msg = rules.messages.severity_changed(&inc, from, actor);
            post(tx, rules, now, &inc, "severity_changed", msg, effects).await?;
            super::escalate::replan(tx, rules, now, &inc, from, actor, effects).await?;
            Ok(ChangeOutcome {
                answer: format!("{} is now {severity} (was {from})", inc.human_id),
                incident: inc,
            })
        }
        Change::EscalationDue { id, run, k } => {
            let (incident, answer) =
                super::escalate::fire(tx, rules, now, *id, *run, *k, effects).await?;
            Ok(ChangeOutcome { incident, answer })
        }
        Change::Page {
            id,
            to,
            because,
            note,
        } => {
            let inc = load(tx, *id).await?;
            let payload = crate::escalation::payload::PagePayload {
                run: None,
                k: None,
                to: to.clone(),
                because: because.clone(),
                origin: format!("paged by {actor}"),
                ack_within: None,
                last: false,
                note: note.clone(),
            };
            super::escalate::enqueue_page(tx, now, *id, &payload, effects).await?;
            let mut text = format!("{actor} paged {} by hand", to.label());
            if let Some(n) = note {
                text.push_str(&format!(": {n}"));
            }
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::Page,
                &text,
                json!({"action": "requested", "to": to.label(), "because": because, "note": note}),
            )
            .await?;
            Ok(ChangeOutcome {
                answer: format!("paging {} for {}", to.label(), inc.human_id),
                incident: inc,
            })
        }
        Change::ProposeAction {
            id,
            action,
            params,
            by,
        } => {
            super::actions::propose(
                tx,
                rules,
                now,
                actor,
                by.as_ref(),
                *id,
                action,
                params,
                effects,
            )
            .await
        }
        Change::ActionExpired { id, proposal } => {
            super::actions::expire(tx, rules, now, *id, *proposal, effects).await
        }
        Change::ActionTried {
            id,
            proposal,
            attempt,
            result,
            delivered,
        } => {
            super::actions::tried(
                tx, rules, now, actor, *id, *proposal, *attempt, result, *delivered, effects,
            )
            .await
        }
        Change::AutomaticAttemptFailed { id, what, error } => {
            let inc = load(tx, *id).await?;
            let answer =
                super::escalate::attempt_failed(tx, rules, now, &inc, actor, what, error, effects)
                    .await?;
            Ok(ChangeOutcome {
                answer,
                incident: inc,
            })
        }
        Change::PageReport {
            id,
            lines,
            delivered,
        } => {
            let inc = load(tx, *id).await?;
            if let Some(outbox_id) = delivered {
                tx.outbox_delivered(*outbox_id, now).await?;
            }
            for (text, data) in lines {
                event(tx, &inc, now, actor, EventKind::Page, text, data).await?;
            }
            Ok(ChangeOutcome {
                answer: String::new(),
                incident: inc,
            })
        }
        Change::Note { id, text } => {
            let inc = load(tx, *id).await?;
            event(tx, &inc, now, actor, EventKind::Note, text, json!({})).await?;
            Ok(ChangeOutcome {
                answer: format!("note added to {}", inc.human_id),
                incident: inc,
            })
        }
        Change::Followup {
            id,
            text,
            owner,
            due,
        } => {
            let inc = load(tx, *id).await?;
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::Followup,
                text,
                json!({"owner": owner, "due": due}),
            )
            .await?;
            Ok(ChangeOutcome {
                answer: format!("follow-up recorded on {}", inc.human_id),
                incident: inc,
            })
        }
        Change::RecoverySample {
            id,
            sample,
            lines,
            all_hold,
            next,
        } => {
            let mut inc = load(tx, *id).await?;
            if matches!(inc.state, State::Mitigated | State::Resolved) {
                return Ok(ChangeOutcome {
                    answer: format!(
                        "{} is {}; recovery sampling stopped",
                        inc.human_id, inc.state
                    ),
                    incident: inc,
                });
            }
            let summary: Vec<String> = lines
                .iter()
                .map(|(_, ok, l)| format!("{} {l}", if *ok { "✓" } else { "✗" }))
                .collect();
            let text = format!("recovery sample {sample}: {}", summary.join("; "));
            let data = json!({"sample": sample, "criteria": lines.iter().map(|(t, ok, l)| json!({"title": t, "holds": ok, "values": l})).collect::<Vec<_>>()});
            event(tx, &inc, now, actor, EventKind::RecoverySample, &text, data).await?;
            if *all_hold && transition_allowed(inc.state, State::Mitigated) {
                let from = inc.state;
                set_state(&mut inc, State::Mitigated, now);
                tx.update_incident(&inc).await?;
                let note = format!("recovery criteria hold ({})", summary.join("; "));
                event(
                    tx,
                    &inc,
                    now,
                    actor,
                    EventKind::StateChanged,
                    &format!("{from} -> mitigated by {actor}: {note}"),
                    json!({"from": from.as_str(), "to": "mitigated", "note": note}),
                )
                .await?;
                let msg = rules.messages.state_changed(&inc, from, actor, Some(&note));
                post(tx, rules, now, &inc, "state_changed", msg, effects).await?;
                let verdict = format!(
                    "recovered, {} is mitigated ({})",
                    inc.human_id,
                    summary.join("; ")
                );
                super::actions::verified(tx, rules, now, &inc, &verdict, effects).await?;
            } else if let Some((due, payload)) = next {
                tx.enqueue_at(Some(inc.id), "recovery_sample", payload, now, *due)
                    .await?;
                effects.enqueued += 1;
            } else {
                let verdict = format!(
                    "NOT recovered after {sample} samples ({})",
                    summary.join("; ")
                );
                super::actions::verified(tx, rules, now, &inc, &verdict, effects).await?;
            }
            Ok(ChangeOutcome {
                answer: text,
                incident: inc,
            })
        }
        Change::Findings { id, report } => {
            let inc = load(tx, *id).await?;
            let worst = report.worst();
            let mut text = match report
                .bottleneck
                .and_then(|i| Some((i, report.findings.get(i)?)))
            {
                Some((i, f)) => format!(
                    "runbook {} checked: {} — likely bottleneck: #{} {} ({})",
                    report.runbook_id,
                    worst.as_str(),
                    i + 1,
                    f.title,
                    f.status.as_str()
                ),
                None => format!("runbook {} checked: {}", report.runbook_id, worst.as_str()),
            };
            if let Some(v) = &report.verdict {
                text.push_str(&format!(
                    " — verdict: {}",
                    v.title_en.as_deref().unwrap_or(&v.title)
                ));
            }
            // Numbered as the findings text numbers the checks (from 1).
            let data = crate::runbook::report_json::to_value(report);
            event(tx, &inc, now, actor, EventKind::Findings, &text, data).await?;
            let actions = rules
                .catalog
                .get(&report.runbook_id)
                .map(|e| e.runbook.actions.clone())
                .unwrap_or_default();
            let msg = rules
                .messages
                .findings(Some(&inc.human_id), report, &actions);
            post(tx, rules, now, &inc, "findings", msg, effects).await?;
            Ok(ChangeOutcome {
                answer: text,
                incident: inc,
            })
        }
        Change::RunRunbook { id, runbook_id } => {
            let inc = load(tx, *id).await?;
            let entry = rules
                .catalog
                .get(runbook_id)
                .ok_or_else(|| LedgerError::NotFound(format!("runbook {runbook_id:?}")))?;
            let checks = entry.runbook.checks.len();
            let payload =
                json!({"runbook_id": runbook_id, "labels": inc.labels, "requested_by": actor});
            tx.enqueue(Some(inc.id), "runbook_run", &payload, now)
                .await?;
            effects.enqueued += 1;
            let text = format!("{actor} asked for the checks of runbook {runbook_id}");
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::RunbookRequested,
                &text,
                json!({"runbook_id": runbook_id, "checks": checks}),
            )
            .await?;
            Ok(ChangeOutcome {
                answer: format!(
                    "running {checks} check{} of {runbook_id} for {}; the findings will be posted in its thread",
                    if checks == 1 { "" } else { "s" },
                    inc.human_id
                ),
                incident: inc,
            })
        }
        Change::Reaction {
            id,
            emoji,
            message_ref,
            removed,
            by,
        } => {
            let inc = load(tx, *id).await?;
            let text = if *removed {
                format!("{actor} removed their :{emoji}: from message {message_ref}")
            } else {
                format!("{actor} reacted :{emoji}: to message {message_ref}")
            };
            event(
                tx,
                &inc,
                now,
                actor,
                EventKind::Reaction,
                &text,
                json!({"emoji": emoji, "message_ref": message_ref, "removed": removed}),
            )
            .await?;
            let vote = super::actions::on_reaction(
                tx,
                rules,
                now,
                actor,
                by.as_ref(),
                &inc,
                emoji,
                message_ref,
                *removed,
                effects,
            )
            .await?;
            Ok(ChangeOutcome {
                answer: match vote {
                    Some(answer) => answer,
                    None if *removed => {
                        format!("reaction :{emoji}: withdrawn on {}", inc.human_id)
                    }
                    None => format!("reaction :{emoji}: recorded on {}", inc.human_id),
                },
                incident: inc,
            })
        }
    }
}

/// When mitigation starts (the incident is acknowledged) and its runbook
/// has recovery criteria, the first recovery sample is scheduled.
pub(super) async fn start_recovery_watch(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    effects: &mut Effects,
) -> Result<bool, LedgerError> {
    let Some(entry) = inc
        .runbook_id
        .as_deref()
        .and_then(|id| rules.catalog.get(id))
    else {
        return Ok(false);
    };
    if entry.runbook.recovery.is_empty() {
        return Ok(false);
    }
    let payload = json!({"runbook_id": entry.runbook.id, "labels": inc.labels});
    tx.enqueue(Some(inc.id), "recovery_sample", &payload, now)
        .await?;
    effects.enqueued += 1;
    Ok(true)
}

pub(super) async fn load(tx: &mut Batch<'_>, id: i64) -> Result<Incident, LedgerError> {
    tx.incident(id)
        .await?
        .ok_or_else(|| LedgerError::NotFound(human_id(id)))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn event(
    tx: &mut Batch<'_>,
    inc: &Incident,
    now: Millis,
    actor: &str,
    kind: EventKind,
    text: &str,
    data: impl Serialize,
) -> Result<(), LedgerError> {
    tx.append(NewEvent {
        incident_id: inc.id,
        at: now,
        actor,
        kind: kind.as_str(),
        text,
        data: json_text(&data),
    })
    .await?;
    Ok(())
}

/// Writes a chat post intent for the incident's thread.
pub(super) async fn post(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    template: &str,
    text: String,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    post_for(tx, rules, now, inc.id, template, text, effects).await
}

/// [`post`] for an incident known by id only (the hot path of alerts
/// joining an incident does not load it).
async fn post_for(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    template: &str,
    text: String,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    let payload = json!({"channel": rules.channel, "template": template, "text": text});
    tx.enqueue(Some(id), "chat_post", &payload, now).await?;
    effects.enqueued += 1;
    Ok(())
}

fn alert_line(a: &IncomingAlert, what: &str) -> String {
    format!("{what}: {}", a.describe())
}

/// What a timeline event about one alert records. Serialized straight from
/// the alert's fields: building a `serde_json::Value` first (a copy of every
/// label) was 7 % of the instructions of an alert storm, one event per
/// alert. The fields are in the order `json!` wrote them (alphabetical),
/// so the stored text is unchanged.
#[derive(Serialize)]
struct AlertData<'a> {
    ends_at: Option<String>,
    fingerprint: &'a str,
    labels: &'a BTreeMap<String, String>,
    starts_at: Option<String>,
}

fn alert_data(a: &IncomingAlert) -> AlertData<'_> {
    AlertData {
        ends_at: a.ends_at.map(|m| m.to_rfc3339()),
        fingerprint: &a.fingerprint,
        labels: &a.labels,
        starts_at: a.starts_at.map(|m| m.to_rfc3339()),
    }
}

/// JSON text of an event's data. Serializing these types cannot fail (no
/// map has keys other than strings); `{}` stands in if it ever did.
fn json_text(data: &impl Serialize) -> String {
    serde_json::to_string(data).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_events_data_is_the_text_the_json_macro_wrote() {
        let alert = IncomingAlert {
            source: Source::Alertmanager,
            fingerprint: "f\"00\\1".into(),
            status: AlertStatus::Resolved,
            starts_at: Some(Millis(1_700_000_000_123)),
            ends_at: Some(Millis(1_700_000_600_000)),
            labels: BTreeMap::from([
                ("service".to_string(), "account".to_string()),
                ("alertname".to_string(), "Down \"ü\"\n".to_string()),
            ]),
            annotations: BTreeMap::new(),
            generator_url: None,
            group_key: None,
        };
        let before = json!({
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at.map(|m| m.to_rfc3339()),
            "ends_at": alert.ends_at.map(|m| m.to_rfc3339()),
            "labels": alert.labels,
        })
        .to_string();

        assert_eq!(json_text(&alert_data(&alert)), before);
    }
}
