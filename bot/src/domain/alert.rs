//! Alerts as firstline sees them once a webhook has been parsed: one shape for
//! every source, so grouping, dedup and storage never look at a wire format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// Where an alert came from; also the name of its intake route and of its
/// `source` label in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Alertmanager,
    Grafana,
    Generic,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Alertmanager, Source::Grafana, Source::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::Generic => "generic",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "alertmanager" => Some(Source::Alertmanager),
            "grafana" => Some(Source::Grafana),
            "generic" => Some(Source::Generic),
            _ => None,
        }
    }
}

/// Firing or resolved, as every alerting system reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// The end time an alert of this status keeps: only a resolved alert
    /// has one (a firing Alertmanager alert carries Go's zero time, or the
    /// sender's guess of when it will stop).
    pub fn end_time(self, ends_at: Option<Millis>) -> Option<Millis> {
        match self {
            AlertStatus::Firing => None,
            AlertStatus::Resolved => ends_at,
        }
    }

    pub fn parse(s: &str) -> Option<AlertStatus> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// One alert from one delivery, normalised from any source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingAlert {
    pub source: Source,
    /// Stable identity of the alert across deliveries (Alertmanager's and
    /// Grafana's own fingerprint; for generic alerts the sender's, or a hash
    /// of the sorted labels).
    pub fingerprint: String,
    pub status: AlertStatus,
    /// When the problem started according to the sender; the earliest one of
    /// an incident's alerts is its impact start (TTD is measured from it).
    pub starts_at: Option<Millis>,
    /// Set only for resolved alerts (firing ones carry Go's zero time, which
    /// the parsers turn into `None`).
    pub ends_at: Option<Millis>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub generator_url: Option<String>,
    /// Alertmanager's `groupKey` (or Grafana's); part of the dedup key, because
    /// Alertmanager re-sends whole groups and cluster peers send the same one.
    pub group_key: Option<String>,
}

impl IncomingAlert {
    /// The alert's name: the `alertname` label, else a generic title label.
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .or_else(|| self.labels.get("title"))
            .map(String::as_str)
            .unwrap_or("unnamed alert")
    }

    /// `HighErrorRate on 10.0.3.17:8080: error rate above 5%`: name,
    /// instance and summary, as one line for chat and the timeline.
    pub fn describe(&self) -> String {
        let mut s = self.name().to_string();
        if let Some(inst) = self.labels.get("instance") {
            s.push_str(" on ");
            s.push_str(inst);
        }
        if let Some(summary) = self
            .annotations
            .get("summary")
            .or_else(|| self.annotations.get("description"))
        {
            s.push_str(": ");
            s.push_str(summary);
        }
        s
    }

    /// The key under which a redelivery of this very notification is
    /// recognised: (groupKey, fingerprint, startsAt, status).
    pub fn dedup_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.group_key.as_deref().unwrap_or(""),
            self.fingerprint,
            self.starts_at.map(|m| m.0).unwrap_or(0),
            self.status.as_str()
        )
    }
}

/// What a parser returns for one webhook delivery (also the journal's
/// record of it, hence serde).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParsedWebhook {
    pub alerts: Vec<IncomingAlert>,
    /// Alerts the sender dropped because of its `max_alerts` limit
    /// (Alertmanager `truncatedAlerts`); recorded so the incident says that
    /// it has not seen everything.
    pub truncated_alerts: u64,
    pub receiver: Option<String>,
}
