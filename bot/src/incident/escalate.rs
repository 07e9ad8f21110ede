//! The ledger's side of escalation: every change to an incident's
//! escalation is made here, in the transaction of the change that causes
//! it, with its timeline event. An incident that opens starts its
//! severity's policy; an acknowledgement or resolution stops it; a
//! severity change re-plans it; the engine's claim of a due step fires it
//! (writing its pages as `page` outbox intents) only if the escalation is
//! still where the claim found it. So a step and an acknowledgement are
//! always decided one after the other, never both.

use serde_json::json;

use super::apply::{Effects, LedgerError, Rules, event, load, post};
use crate::domain::incident::{EventKind, Incident, format_duration};
use crate::domain::time::Millis;
use crate::domain::{Severity, State};
use crate::escalation::payload::{PagePayload, PageTo};
use crate::escalation::{PageChannel, Policy, Recipient, Target};
use crate::pager::PagerdutyAction;
use crate::store::{Batch, EscalationRow};

/// The actor escalation events are recorded under.
const ACTOR: &str = "firstline";

/// Steps through every round, `step 2/4` as people read it.
fn step_label(policy: &Policy, k: i64) -> String {
    let n = policy.steps.len() as i64;
    let rounds = policy.repeat as i64 + 1;
    let mut s = format!("step {}/{} of {}", k % n + 1, n, policy.severity);
    if rounds > 1 {
        s.push_str(&format!(" (round {}/{rounds})", k / n + 1));
    }
    s
}

/// An escalation event on the incident's timeline.
async fn record(
    tx: &mut Batch<'_>,
    inc: &Incident,
    now: Millis,
    actor: &str,
    text: &str,
    data: serde_json::Value,
) -> Result<(), LedgerError> {
    event(tx, inc, now, actor, EventKind::Escalation, text, data).await
}

/// Marks the row stopped, for `reason`.
fn stop_row(e: &mut EscalationRow, reason: &str, now: Millis) {
    e.state = EscalationRow::STOPPED.into();
    e.reason = Some(reason.to_string());
    e.due_ms = None;
    e.updated_ms = now.0;
}

/// Starts the policy of the incident's severity (a new incident, a
/// reopened one, or one whose new severity pages when the old did not).
/// Its first step is due at once; the engine fires it.
pub(super) async fn start(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    let Some(policy) = rules.escalation.policy(inc.severity) else {
        return Ok(());
    };
    let prev = tx.escalation(inc.id).await?;
    if prev.as_ref().is_some_and(EscalationRow::is_running) {
        return Ok(());
    }
    let row = EscalationRow {
        incident_id: inc.id,
        run: prev.as_ref().map_or(1, |e| e.run + 1),
        severity: inc.severity.as_str().to_string(),
        started_ms: now.0,
        next_k: 0,
        due_ms: Some(now.0),
        state: EscalationRow::RUNNING.into(),
        reason: None,
        pagerduty: prev.as_ref().is_some_and(|e| e.pagerduty),
        updated_ms: now.0,
    };
    tx.put_escalation(&row).await?;
    effects.enqueued += 1;
    let rounds = policy.repeat + 1;
    let text = format!(
        "escalation started: the {} policy, {} step{}{}",
        inc.severity,
        policy.steps.len(),
        if policy.steps.len() == 1 { "" } else { "s" },
        if rounds > 1 {
            format!(", {rounds} rounds")
        } else {
            String::new()
        }
    );
    record(
        tx,
        inc,
        now,
        ACTOR,
        &text,
        json!({"action": "started", "run": row.run, "severity": inc.severity.as_str()}),
    )
    .await
}

/// Follows a change of the incident's state: acknowledging (or
/// mitigating) stops the escalation, resolving stops it and resolves
/// PagerDuty's event, reopening starts it again.
pub(super) async fn follow_state(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    from: State,
    actor: &str,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    match inc.state {
        State::Triggered => start(tx, rules, now, inc, effects).await,
        State::Acknowledged | State::Mitigated | State::Resolved => {
            let Some(mut e) = tx.escalation(inc.id).await? else {
                return Ok(());
            };
            let reason = format!("{} by {actor}", inc.state);
            let mut pagerduty = None;
            if e.state != EscalationRow::STOPPED {
                let k = e.next_k;
                let was = e.state.clone();
                stop_row(&mut e, &reason, now);
                let text = match rules
                    .escalation
                    .policy(e.severity.parse().unwrap_or(inc.severity))
                {
                    Some(p) if was == EscalationRow::RUNNING && k > 0 => format!(
                        "escalation stopped after {}: {reason}",
                        step_label(p, k - 1)
                    ),
                    _ => format!("escalation stopped: {reason}"),
                };
                record(
                    tx,
                    inc,
                    now,
                    actor,
                    &text,
                    json!({"action": "stopped", "run": e.run, "reason": reason}),
                )
                .await?;
                if e.pagerduty && from == State::Triggered {
                    pagerduty = Some(PagerdutyAction::Acknowledge);
                }
            }
            if inc.state == State::Resolved && e.pagerduty {
                pagerduty = Some(PagerdutyAction::Resolve);
                e.pagerduty = false;
            }
            tx.put_escalation(&e).await?;
            if let Some(action) = pagerduty {
                let payload = PagePayload {
                    run: None,
                    k: None,
                    to: PageTo::Pagerduty { action },
                    because: reason,
                    origin: String::new(),
                    ack_within: None,
                    last: false,
                    note: None,
                };
                enqueue_page(tx, now, inc.id, &payload, effects).await?;
            }
            Ok(())
        }
    }
}

/// Re-plans a running escalation after the incident's severity changed
/// from `from`: the new severity's policy takes over at the step in
/// force. Raised, that step pages again at once under the new policy;
/// lowered, the next step keeps its time. A severity without a policy
/// stops it; one that gains a policy starts it.
pub(super) async fn replan(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    from: Severity,
    actor: &str,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    let Some(mut e) = tx.escalation(inc.id).await? else {
        if inc.state == State::Triggered {
            return start(tx, rules, now, inc, effects).await;
        }
        return Ok(());
    };
    if !e.is_running() {
        // Stopped by an acknowledgement, the incident is not triggered;
        // otherwise (no policy before, or exhausted) the new severity
        // starts again.
        if inc.state == State::Triggered {
            return start(tx, rules, now, inc, effects).await;
        }
        return Ok(());
    }
    let to = inc.severity;
    let text;
    match rules.escalation.policy(to) {
        None => {
            let reason = format!("{to} has no escalation policy (severity changed by {actor})");
            stop_row(&mut e, &reason, now);
            text = format!("escalation stopped: {reason}");
        }
        Some(p) => {
            let in_force = (e.next_k - 1).max(0);
            let k = in_force.min(p.len() as i64 - 1);
            if to < from {
                e.next_k = k;
                e.due_ms = Some(now.0);
                text = format!(
                    "escalation re-planned for {to} (was {from}): {} pages now",
                    step_label(p, k)
                );
            } else {
                e.next_k = e.next_k.min(p.len() as i64);
                let when = e
                    .due_ms
                    .map(|d| format!(" in {}", format_duration((d - now.0).max(0))))
                    .unwrap_or_default();
                text = if (e.next_k as usize) < p.len() {
                    format!(
                        "escalation re-planned for {to} (was {from}): {} comes{when}",
                        step_label(p, e.next_k)
                    )
                } else {
                    format!("escalation re-planned for {to} (was {from}): its last step is done")
                };
            }
        }
    }
    e.severity = to.as_str().to_string();
    e.updated_ms = now.0;
    tx.put_escalation(&e).await?;
    effects.enqueued += 1;
    record(
        tx,
        inc,
        now,
        actor,
        &text,
        json!({"action": "replanned", "run": e.run, "from": from.as_str(), "to": to.as_str()}),
    )
    .await
}

/// Fires step `k` of run `run` of incident `id`'s escalation, if the
/// escalation is still running that run and that step (a claim the ledger
/// took too late, or twice, does nothing). Returns what it did, for the
/// engine's log.
pub(super) async fn fire(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    id: i64,
    run: i64,
    k: i64,
    effects: &mut Effects,
) -> Result<(Incident, String), LedgerError> {
    let inc = load(tx, id).await?;
    let Some(mut e) = tx.escalation(id).await? else {
        return Ok((inc, "no escalation".into()));
    };
    if !e.is_running() || e.run != run || e.next_k != k {
        return Ok((
            inc,
            format!("stale claim (now {} at {})", e.state, e.next_k),
        ));
    }
    let severity: Severity = e.severity.parse().unwrap_or(inc.severity);
    let Some(policy) = rules.escalation.policy(severity) else {
        // The configuration changed under a running escalation.
        stop_row(
            &mut e,
            &format!("{severity} has no escalation policy any more"),
            now,
        );
        tx.put_escalation(&e).await?;
        let text = format!("escalation stopped: {severity} has no escalation policy any more");
        record(
            tx,
            &inc,
            now,
            ACTOR,
            &text,
            json!({"action": "stopped", "run": run, "reason": "no policy"}),
        )
        .await?;
        return Ok((inc, text));
    };
    if inc.state != State::Triggered {
        // Stopping is the acknowledgement's job; this covers a row a
        // crash or an older version left running.
        stop_row(&mut e, &format!("{} already", inc.state), now);
        tx.put_escalation(&e).await?;
        return Ok((inc, "incident no longer triggered".into()));
    }
    let len = policy.len() as i64;
    if k >= len {
        let rounds = policy.repeat + 1;
        e.state = EscalationRow::EXHAUSTED.into();
        e.due_ms = None;
        e.updated_ms = now.0;
        tx.put_escalation(&e).await?;
        let elapsed = now.0 - e.started_ms;
        let text = format!(
            "escalation exhausted: nobody acknowledged after every step of the {severity} policy{}, over {}",
            if rounds > 1 {
                format!(" ran {rounds} times")
            } else {
                String::new()
            },
            format_duration(elapsed)
        );
        record(
            tx,
            &inc,
            now,
            ACTOR,
            &text,
            json!({"action": "exhausted", "run": run, "rounds": rounds}),
        )
        .await?;
        let msg = rules
            .messages
            .escalation_exhausted(&inc, rounds, elapsed, None);
        post(tx, rules, now, &inc, "escalation_exhausted", msg, effects).await?;
        return Ok((inc, text));
    }
    let Some(step) = policy.step(k as usize) else {
        return Ok((inc, "no such step".into()));
    };
    let assignee = tx.last_acknowledger(id).await?;
    let resolved = rules.escalation.resolve(step, now, assignee.as_deref());
    let label = step_label(policy, k);
    let ack_within = format_duration(step.ack_within_ms);
    let mut paged = Vec::new();
    for page in &resolved.pages {
        let to = match &page.to {
            Recipient::Contact { id, via } => {
                if via.contains(&PageChannel::Pagerduty) {
                    e.pagerduty = true;
                }
                let how: Vec<&str> = via.iter().map(|c| c.as_str()).collect();
                paged.push(format!("{id} ({})", how.join(" → ")));
                PageTo::Contact {
                    id: id.clone(),
                    via: via.clone(),
                }
            }
            Recipient::ChatUser { user } => {
                paged.push(format!("{user} (chat mention)"));
                PageTo::ChatUser { user: user.clone() }
            }
            Recipient::Channel => {
                paged.push("the channel".into());
                PageTo::Channel
            }
        };
        let payload = PagePayload {
            run: Some(run),
            k: Some(k),
            to,
            because: page.because.to_string(),
            origin: format!("firstline escalation, {label}"),
            ack_within: Some(ack_within.clone()),
            last: k + 1 == len,
            note: None,
        };
        enqueue_page(tx, now, id, &payload, effects).await?;
    }
    let skipped: Vec<String> = resolved
        .skipped
        .iter()
        .map(|s| match (&s.contact, &s.target) {
            (Some(c), Target::Contact(_)) | (Some(c), Target::Rotation(_)) => {
                format!("{c}: {}", s.reason)
            }
            (_, t) => format!("{t}: {}", s.reason),
        })
        .collect();
    let mut text = if paged.is_empty() {
        format!("escalation {label} paged nobody")
    } else {
        format!(
            "escalation {label}: paging {}; acknowledge within {ack_within}",
            paged.join(", ")
        )
    };
    if !skipped.is_empty() {
        text.push_str(&format!("; skipped {}", skipped.join("; ")));
    }
    // A step that reaches nobody (everyone out of hours) moves on at once
    // rather than waiting out a deadline nobody was told of.
    let next_due = if paged.is_empty() {
        text.push_str("; moving on at once");
        now.0
    } else {
        now.0.saturating_add(step.ack_within_ms)
    };
    e.next_k = k + 1;
    e.due_ms = Some(next_due);
    e.updated_ms = now.0;
    tx.put_escalation(&e).await?;
    record(
        tx,
        &inc,
        now,
        ACTOR,
        &text,
        json!({
            "action": "step", "run": run, "k": k, "step": k % policy.steps.len() as i64,
            "round": k / policy.steps.len() as i64, "paged": paged, "skipped": skipped,
            "due_ms": e.due_ms,
        }),
    )
    .await?;
    Ok((inc, text))
}

/// Failed automatic attempts of one thing before the escalation moves on.
pub const ATTEMPTS_BEFORE_ESCALATING: usize = 3;

/// Records a failed automatic attempt at `what`; at every third failure of
/// the same `what`, the escalation's next step pages at once (a running
/// escalation is brought forward; a stopped or finished one starts a new
/// run at the step after the last one that paged, so the next people up
/// the tree hear of it, and an acknowledgement stops it again).
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt_failed(
    tx: &mut Batch<'_>,
    rules: &Rules,
    now: Millis,
    inc: &Incident,
    actor: &str,
    what: &str,
    error: &str,
    effects: &mut Effects,
) -> Result<String, LedgerError> {
    let n = tx.attempts_failed(inc.id, what).await? + 1;
    let text = format!("automatic attempt {n} at {what} failed: {error}",);
    event(
        tx,
        inc,
        now,
        actor,
        EventKind::AttemptFailed,
        &text,
        json!({"what": what, "n": n, "error": error}),
    )
    .await?;
    if n % ATTEMPTS_BEFORE_ESCALATING != 0 {
        return Ok(text);
    }
    let Some(policy) = rules.escalation.policy(inc.severity) else {
        return Ok(format!(
            "{text}; {} has no escalation policy to escalate to",
            inc.severity
        ));
    };
    let prev = tx.escalation(inc.id).await?;
    let mut e = match prev {
        Some(e) if e.is_running() => e,
        prev => EscalationRow {
            incident_id: inc.id,
            run: prev.as_ref().map_or(1, |e| e.run + 1),
            severity: inc.severity.as_str().to_string(),
            started_ms: now.0,
            next_k: prev
                .as_ref()
                .map_or(0, |e| e.next_k.min(policy.len() as i64 - 1)),
            due_ms: None,
            state: EscalationRow::RUNNING.into(),
            reason: None,
            pagerduty: prev.as_ref().is_some_and(|e| e.pagerduty),
            updated_ms: now.0,
        },
    };
    // Past the last step the escalation has nobody left: its first step
    // pages again.
    if e.next_k >= policy.len() as i64 {
        e.next_k = 0;
    }
    e.due_ms = Some(now.0);
    e.updated_ms = now.0;
    tx.put_escalation(&e).await?;
    effects.enqueued += 1;
    let label = step_label(policy, e.next_k);
    let esc =
        format!("escalating now: {n} automatic attempts at {what} failed; {label} pages at once");
    record(
        tx,
        inc,
        now,
        actor,
        &esc,
        json!({"action": "escalated", "run": e.run, "k": e.next_k, "what": what}),
    )
    .await?;
    Ok(esc)
}

/// Writes a page for the page handler.
pub(super) async fn enqueue_page(
    tx: &mut Batch<'_>,
    now: Millis,
    id: i64,
    payload: &PagePayload,
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    let value = serde_json::to_value(payload).unwrap_or_else(|_| json!({}));
    tx.enqueue(Some(id), "page", &value, now).await?;
    effects.enqueued += 1;
    Ok(())
}
