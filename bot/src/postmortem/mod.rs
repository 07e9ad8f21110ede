//! Postmortem export: the incident's facts, response times, alerts and full
//! timeline as Markdown (from `templates/postmortem.md`) or JSON.

use serde::Serialize;

use crate::chat::messages::Messages;
use crate::domain::incident::{
    Incident, ResponseTimes, StoredAlert, TimelineEvent, format_duration,
};
use crate::store::{AlertCounts, Store, StoreError};

/// Alerts listed at each end of a postmortem's alert list; the ones in
/// between are counted (the alerts API pages through all of them).
pub const ALERTS_EACH_END: i64 = 20;
/// Timeline events a postmortem lists at most. Alert arrivals beyond the
/// first few are aggregated on the timeline, so an incident rarely has
/// more; past this the rest are counted and linked.
pub const MAX_TIMELINE: i64 = 2000;

/// Everything a postmortem is made from.
#[derive(Debug, Clone, Serialize)]
pub struct Postmortem {
    pub incident: Incident,
    pub response_times: ResponseTimes,
    pub alert_counts: AlertCounts,
    /// The first alerts (up to [`ALERTS_EACH_END`]).
    pub alerts: Vec<StoredAlert>,
    /// The most recent alerts, when there are more than fit in `alerts`
    /// (up to [`ALERTS_EACH_END`]; empty otherwise).
    pub alerts_recent: Vec<StoredAlert>,
    /// Where every alert is listed, a page at a time.
    pub alerts_url: String,
    /// The timeline (up to [`MAX_TIMELINE`] events, oldest first).
    pub timeline: Vec<TimelineEvent>,
    /// Events in all, listed or not.
    pub timeline_total: i64,
    pub timeline_url: String,
    /// Remediation: every proposal with its state, approvers and tries
    /// (`GET /api/incidents/{id}/actions` has the whole audit).
    pub actions: Vec<ActionSummary>,
}

/// One proposal as the postmortem shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionSummary {
    pub id: i64,
    pub action: String,
    pub title: String,
    pub reversible: bool,
    pub described: String,
    pub proposer: String,
    pub approvers: Vec<String>,
    pub state: String,
    pub reason: Option<String>,
    /// Per try: `1: ok — HTTP 202 in 41 ms`.
    pub tries: Vec<String>,
}

/// Reads incident `id`; `None` if there is no such incident. Its size is
/// bounded whatever the incident's: an alert storm of 400,000 alerts makes
/// a postmortem of a few pages.
pub async fn build(store: &Store, id: i64) -> Result<Option<Postmortem>, StoreError> {
    let Some(incident) = store.incident(id).await? else {
        return Ok(None);
    };
    let alert_counts = store.alert_counts(id).await?;
    let alerts = store.alerts_page(id, 0, ALERTS_EACH_END).await?;
    let alerts_recent = if alert_counts.total > ALERTS_EACH_END {
        let last_listed = alerts.last().map_or(0, |a| a.id);
        let mut tail = store.alerts_tail(id, ALERTS_EACH_END).await?;
        tail.retain(|a| a.id > last_listed);
        tail
    } else {
        Vec::new()
    };
    let timeline = store.timeline_page(id, 0, MAX_TIMELINE).await?;
    let timeline_total = store.timeline_count(id).await?;
    let (proposals, votes, runs) = store.actions_of(id).await?;
    let actions = proposals
        .into_iter()
        .map(|p| ActionSummary {
            approvers: votes
                .iter()
                .filter(|v| v.proposal_id == p.id && v.vote == "approve")
                .map(|v| format!("{} ({})", v.actor, v.identity))
                .collect(),
            tries: runs
                .iter()
                .filter(|r| r.proposal_id == p.id)
                .map(|r| {
                    format!(
                        "{}: {} — {}",
                        r.attempt,
                        r.state,
                        r.summary.as_deref().unwrap_or("")
                    )
                })
                .collect(),
            id: p.id,
            action: p.action_id,
            title: p.title,
            reversible: p.reversible,
            described: p.described,
            proposer: p.proposer,
            state: p.state,
            reason: p.reason,
        })
        .collect();
    Ok(Some(Postmortem {
        actions,
        response_times: incident.milestones().response_times(),
        alerts_url: format!("/api/incidents/{}/alerts", incident.human_id),
        timeline_url: format!("/api/incidents/{}/timeline", incident.human_id),
        incident,
        alert_counts,
        alerts,
        alerts_recent,
        timeline,
        timeline_total,
    }))
}

/// The JSON export: times as UTC milliseconds (`*_ms` fields would need no
/// parsing) and RFC 3339 strings are both derivable; we give milliseconds,
/// the store's own precision.
pub fn json(doc: &Postmortem) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The Markdown export, times in the configured zone.
pub fn markdown(doc: &Postmortem, messages: &Messages) -> String {
    let inc = &doc.incident;
    let t = doc.response_times;
    let time = |m: Option<crate::domain::time::Millis>| m.map(|m| messages.time(m));
    let alert = |a: &StoredAlert| {
        minijinja::context! {
            name => &a.name, fingerprint => &a.fingerprint, status => &a.status,
            starts => messages.time(a.starts_at), ends => time(a.ends_at),
            summary => a.annotations.get("summary").or_else(|| a.annotations.get("description")),
        }
    };
    let alerts: Vec<_> = doc.alerts.iter().map(alert).collect();
    let alerts_recent: Vec<_> = doc.alerts_recent.iter().map(alert).collect();
    let listed = (doc.alerts.len() + doc.alerts_recent.len()) as i64;
    let timeline: Vec<_> = doc
        .timeline
        .iter()
        .map(|e| minijinja::context! { time => messages.time(e.at), actor => &e.actor, kind => &e.kind, text => &e.text })
        .collect();
    let followups: Vec<_> = doc
        .timeline
        .iter()
        .filter(|e| e.kind == "followup")
        .map(|e| minijinja::context! { text => &e.text, owner => e.data.get("owner").and_then(|v| v.as_str()), due => e.data.get("due").and_then(|v| v.as_str()) })
        .collect();
    let ctx = minijinja::context! {
        id => &inc.human_id, title => &inc.title, severity => inc.severity.as_str(), state => inc.state.as_str(),
        impact_start => time(inc.impact_start), detected => messages.time(inc.detected),
        acknowledged => time(inc.acknowledged), mitigated => time(inc.mitigated), resolved => time(inc.resolved),
        ttd => t.ttd_ms.map(format_duration), tta => t.tta_ms.map(format_duration),
        ttm => t.ttm_ms.map(format_duration), ttr => t.ttr_ms.map(format_duration),
        truncated => inc.truncated_alerts, timezone => messages.timezone(),
        alerts => alerts, alerts_recent => alerts_recent, alert_counts => minijinja::context! { total => doc.alert_counts.total, firing => doc.alert_counts.firing, resolved => doc.alert_counts.resolved },
        alerts_between => doc.alert_counts.total - listed, alerts_url => &doc.alerts_url,
        timeline => timeline, timeline_more => doc.timeline_total - doc.timeline.len() as i64,
        timeline_url => &doc.timeline_url, followups => followups,
        actions => doc.actions.iter().map(|a| minijinja::context! {
            id => a.id, action => &a.action, title => &a.title, reversible => a.reversible,
            proposer => &a.proposer, approvers => &a.approvers, state => &a.state,
            reason => &a.reason, tries => &a.tries,
        }).collect::<Vec<_>>(),
    };
    messages.postmortem(ctx)
}
