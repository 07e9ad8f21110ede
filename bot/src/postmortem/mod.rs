//! Postmortem export: the incident's facts, response times, alerts and full
//! timeline as Markdown (from `templates/postmortem.md`) or JSON.

use serde::Serialize;

use crate::chat::messages::Messages;
use crate::domain::incident::{
    Incident, ResponseTimes, StoredAlert, TimelineEvent, format_duration,
};
use crate::store::{Store, StoreError};

/// Everything a postmortem is made from.
#[derive(Debug, Clone, Serialize)]
pub struct Postmortem {
    pub incident: Incident,
    pub response_times: ResponseTimes,
    pub alerts: Vec<StoredAlert>,
    pub timeline: Vec<TimelineEvent>,
}

/// Reads incident `id`; `None` if there is no such incident.
pub async fn build(store: &Store, id: i64) -> Result<Option<Postmortem>, StoreError> {
    let Some(incident) = store.incident(id).await? else {
        return Ok(None);
    };
    let alerts = store.alerts_of(id).await?;
    let timeline = store.timeline(id).await?;
    Ok(Some(Postmortem {
        response_times: incident.milestones().response_times(),
        incident,
        alerts,
        timeline,
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
    let alerts: Vec<_> = doc
        .alerts
        .iter()
        .map(|a| {
            minijinja::context! {
                name => &a.name, fingerprint => &a.fingerprint, status => &a.status,
                starts => messages.time(a.starts_at), ends => time(a.ends_at),
                summary => a.annotations.get("summary").or_else(|| a.annotations.get("description")),
            }
        })
        .collect();
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
        alerts => alerts, timeline => timeline, followups => followups,
    };
    messages.postmortem(ctx)
}
