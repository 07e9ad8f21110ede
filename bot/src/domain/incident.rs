//! Incidents: the state machine, the grouping key, severity mapping and the
//! response times the postmortem reports.

use std::collections::BTreeMap;

use serde::Serialize;

use super::alert::IncomingAlert;
use super::time::Millis;
use super::{Severity, State};

/// `INC-42` from 42: the id people say out loud and type into chat.
pub fn human_id(id: i64) -> String {
    format!("INC-{id}")
}

/// Whether `from -> to` is a move the product allows. Incidents go forward
/// (triggered -> acknowledged -> mitigated -> resolved, steps may be skipped);
/// the only way back is reopening a resolved incident.
pub fn transition_allowed(from: State, to: State) -> bool {
    use State::*;
    match (from, to) {
        (a, b) if a == b => false,
        (Resolved, Triggered) => true, // reopen
        (Resolved, _) => false,
        (Triggered, _) => true,
        (Acknowledged, Mitigated | Resolved) => true,
        (Mitigated, Resolved) => true,
        _ => false,
    }
}

/// The key under which alerts share one incident: the configured labels in
/// order, each written `name=value`, joined by `,`. A label spec `a|b` takes
/// the first of the alternatives the alert carries (the default groups by
/// `service`, or by `job` where an alert has no `service`).
///
/// `\`, `,` and `=` inside names and values are escaped with `\`, so two
/// different label sets can never make the same key (a title
/// `Inject,service=pay` must not join the incident of service `pay`).
pub fn group_key(labels: &BTreeMap<String, String>, group_by: &[String]) -> String {
    // One buffer, not a string per part: this runs for every alert, twice.
    let mut key = String::with_capacity(64);
    for spec in group_by {
        let found = spec
            .split('|')
            .map(str::trim)
            .find_map(|name| labels.get(name).map(|v| (name, v)));
        if let Some((name, value)) = found {
            if !key.is_empty() {
                key.push(',');
            }
            push_escaped(&mut key, name);
            key.push('=');
            push_escaped(&mut key, value);
        }
    }
    key
}

fn push_escaped(key: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '\\' | ',' | '=') {
            key.push('\\');
        }
        key.push(c);
    }
}

/// The parts of a [`group_key`], each `(name, value)` unescaped.
pub fn group_key_parts(key: &str) -> Vec<(String, String)> {
    let mut parts = Vec::new();
    let (mut name, mut value) = (String::new(), String::new());
    let mut in_value = false;
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        let target = if in_value { &mut value } else { &mut name };
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    target.push(next);
                }
            }
            '=' if !in_value => in_value = true,
            ',' => {
                parts.push((std::mem::take(&mut name), std::mem::take(&mut value)));
                in_value = false;
            }
            c => target.push(c),
        }
    }
    if !name.is_empty() || in_value {
        parts.push((name, value));
    }
    parts
}

/// A human title for an incident opened by `alert`: the alert name with
/// the grouping labels (`HighErrorRate (service=account)`). Not the first
/// alert's summary, which usually names one instance of many.
pub fn title_for(alert: &IncomingAlert, group_key: &str) -> String {
    let name = alert.name();
    let rest: Vec<String> = group_key_parts(group_key)
        .into_iter()
        .filter(|(n, _)| n != "alertname" && !n.is_empty())
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let title = if rest.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({})", rest.join(", "))
    };
    // A title is a line people read, not a payload a sender can fill.
    crate::text::clip(&title, MAX_TITLE_CHARS).into_owned()
}

/// The longest incident title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Response times of one incident, each in milliseconds, `None` while the
/// moment it ends at has not happened. Definitions from PRODUCT.md:
/// TTD = detected − impact start; TTA = ack − detected; TTM = mitigated −
/// detected; TTR = resolved − detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct ResponseTimes {
    pub ttd_ms: Option<i64>,
    pub tta_ms: Option<i64>,
    pub ttm_ms: Option<i64>,
    pub ttr_ms: Option<i64>,
}

/// The moments an incident's response times are measured between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Milestones {
    pub impact_start: Option<Millis>,
    pub detected: Millis,
    pub acknowledged: Option<Millis>,
    pub mitigated: Option<Millis>,
    pub resolved: Option<Millis>,
}

impl Milestones {
    pub fn response_times(&self) -> ResponseTimes {
        let since_detected = |m: Option<Millis>| m.map(|m| m.0 - self.detected.0);
        ResponseTimes {
            ttd_ms: self.impact_start.map(|s| self.detected.0 - s.0),
            tta_ms: since_detected(self.acknowledged),
            ttm_ms: since_detected(self.mitigated),
            ttr_ms: since_detected(self.resolved),
        }
    }
}

/// `2h03m`, `4m05s`, `850ms`: durations as people read them in chat.
pub fn format_duration(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1_000 {
        return format!("{sign}{ms}ms");
    }
    let s = ms / 1_000;
    let (d, h, m, sec) = (s / 86_400, (s / 3_600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{sign}{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{sign}{h}h{m:02}m")
    } else if m > 0 {
        format!("{sign}{m}m{sec:02}s")
    } else {
        format!("{sign}{}.{:01}s", sec, (ms % 1_000) / 100)
    }
}

/// Severity from an alert's labels by the configured mapping of the
/// `severity` label's values (critical -> P1, warning -> P2, info -> P3 by
/// default); `default` when the label is missing or not in the mapping.
pub fn severity_of(
    labels: &BTreeMap<String, String>,
    mapping: &BTreeMap<String, Severity>,
    default: Severity,
) -> Severity {
    labels
        .get("severity")
        .and_then(|v| {
            mapping
                .get(v)
                .or_else(|| mapping.get(&v.to_ascii_lowercase()))
                .copied()
                .or_else(|| v.parse::<Severity>().ok())
        })
        .unwrap_or(default)
}

/// The kinds of timeline event. Stored as their snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    AlertFiring,
    AlertResolved,
    /// Alert arrivals counted rather than listed (see `incident::joins`).
    AlertsCounted,
    AlertsTruncated,
    SeverityChanged,
    StateChanged,
    Note,
    Followup,
    Reaction,
    ChatPosted,
    Findings,
    /// A person asked for a runbook's checks; the findings follow.
    RunbookRequested,
    RecoverySample,
    /// The escalation started, fired a step, was re-planned, stopped or
    /// ran out (see `incident::escalate`).
    Escalation,
    /// A page went out, failed on a channel, or was not sent.
    Page,
    /// An automatic attempt (a restart, a retried action) failed.
    AttemptFailed,
    /// A remediation action was proposed, voted on, expired or tried (see
    /// `incident::actions`): the audit trail.
    Action,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::AlertFiring => "alert_firing",
            EventKind::AlertResolved => "alert_resolved",
            EventKind::AlertsCounted => "alerts_counted",
            EventKind::AlertsTruncated => "alerts_truncated",
            EventKind::SeverityChanged => "severity_changed",
            EventKind::StateChanged => "state_changed",
            EventKind::Note => "note",
            EventKind::Followup => "followup",
            EventKind::Reaction => "reaction",
            EventKind::ChatPosted => "chat_posted",
            EventKind::Findings => "findings",
            EventKind::RunbookRequested => "runbook_requested",
            EventKind::RecoverySample => "recovery_sample",
            EventKind::Escalation => "escalation",
            EventKind::Page => "page",
            EventKind::AttemptFailed => "attempt_failed",
            EventKind::Action => "action",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn group_key_falls_back_to_job_when_an_alert_has_no_service() {
        let by = vec!["alertname".to_string(), "service|job".to_string()];
        assert_eq!(
            group_key(&labels(&[("alertname", "Down"), ("job", "api")]), &by),
            "alertname=Down,job=api"
        );
        assert_eq!(
            group_key(
                &labels(&[("alertname", "Down"), ("job", "api"), ("service", "acc")]),
                &by
            ),
            "alertname=Down,service=acc"
        );
    }

    #[test]
    fn label_values_with_commas_or_equals_signs_cannot_make_another_groups_key() {
        let by = vec!["alertname".to_string(), "service|job".to_string()];
        let injected = group_key(&labels(&[("alertname", "Inject,service=pay")]), &by);
        let real = group_key(&labels(&[("alertname", "Inject"), ("service", "pay")]), &by);

        assert_ne!(injected, real);
        assert_eq!(
            group_key_parts(&injected),
            [("alertname".to_string(), "Inject,service=pay".to_string())]
        );
        assert_eq!(
            group_key_parts(&real),
            [
                ("alertname".to_string(), "Inject".to_string()),
                ("service".to_string(), "pay".to_string())
            ]
        );
        let slash = group_key(&labels(&[("alertname", "a\\"), ("service", "b")]), &by);
        assert_ne!(
            slash,
            group_key(&labels(&[("alertname", "a\\,service=b")]), &by)
        );
    }

    #[test]
    fn response_times_follow_the_product_definitions() {
        let m = Milestones {
            impact_start: Some(Millis(1_000)),
            detected: Millis(61_000),
            acknowledged: Some(Millis(121_000)),
            mitigated: None,
            resolved: Some(Millis(661_000)),
        };
        let t = m.response_times();
        assert_eq!(t.ttd_ms, Some(60_000));
        assert_eq!(t.tta_ms, Some(60_000));
        assert_eq!(t.ttm_ms, None);
        assert_eq!(t.ttr_ms, Some(600_000));
    }

    #[test]
    fn resolved_incidents_can_only_be_reopened() {
        assert!(transition_allowed(State::Resolved, State::Triggered));
        assert!(!transition_allowed(State::Resolved, State::Acknowledged));
        assert!(!transition_allowed(State::Mitigated, State::Acknowledged));
        assert!(transition_allowed(State::Triggered, State::Resolved));
    }

    #[test]
    fn severity_mapping_is_case_insensitive_and_defaults_when_unknown() {
        let map: BTreeMap<String, Severity> = [
            ("critical".to_string(), Severity::P1),
            ("warning".to_string(), Severity::P2),
        ]
        .into();
        assert_eq!(
            severity_of(&labels(&[("severity", "CRITICAL")]), &map, Severity::P3),
            Severity::P1
        );
        assert_eq!(
            severity_of(&labels(&[("severity", "page")]), &map, Severity::P3),
            Severity::P3
        );
        assert_eq!(severity_of(&labels(&[]), &map, Severity::P2), Severity::P2);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(format_duration(850), "850ms");
        assert_eq!(format_duration(4_500), "4.5s");
        assert_eq!(format_duration(245_000), "4m05s");
        assert_eq!(format_duration(7_380_000), "2h03m");
    }
}

/// An incident as the rest of the code sees it (typed; the store's rows are
/// converted at its boundary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub id: i64,
    /// `INC-42`.
    pub human_id: String,
    pub group_key: String,
    pub title: String,
    #[serde(serialize_with = "ser_as_str")]
    pub severity: Severity,
    #[serde(serialize_with = "ser_as_str")]
    pub state: State,
    /// Labels of the alert that opened it (or of a declaration).
    pub labels: BTreeMap<String, String>,
    pub impact_start: Option<Millis>,
    pub detected: Millis,
    pub acknowledged: Option<Millis>,
    pub mitigated: Option<Millis>,
    pub resolved: Option<Millis>,
    pub updated: Millis,
    /// Alerts the sender said it left out (Alertmanager `truncatedAlerts`),
    /// summed over deliveries.
    pub truncated_alerts: i64,
    /// Platform reference of the incident's thread, once the first post is out.
    pub chat_thread: Option<String>,
    /// The runbook matched when it opened.
    pub runbook_id: Option<String>,
}

impl Incident {
    pub fn milestones(&self) -> Milestones {
        Milestones {
            impact_start: self.impact_start,
            detected: self.detected,
            acknowledged: self.acknowledged,
            mitigated: self.mitigated,
            resolved: self.resolved,
        }
    }

    pub fn is_open(&self) -> bool {
        self.state != State::Resolved
    }
}

fn ser_as_str<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// One entry of an incident's append-only timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub id: i64,
    pub incident_id: i64,
    pub at: Millis,
    /// Who did it: a chat user, `alertmanager`, `firstline` for the bot itself.
    pub actor: String,
    pub kind: String,
    pub text: String,
    pub data: serde_json::Value,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub source: String,
    pub fingerprint: String,
    pub status: String,
    pub name: String,
    pub starts_at: Millis,
    pub ends_at: Option<Millis>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub generator_url: Option<String>,
    pub received: Millis,
}
