//! Row shapes as the SQL returns them, and their checked conversion into the
//! domain's types. `FromRow` derives work for both backends.

use std::collections::BTreeMap;

use serde::Serialize;

use super::StoreError;
use crate::domain::incident::{Incident, StoredAlert, TimelineEvent, human_id};
use crate::domain::time::Millis;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct IncidentRow {
    id: i64,
    group_key: String,
    title: String,
    severity: String,
    state: String,
    labels: String,
    impact_start_ms: Option<i64>,
    detected_ms: i64,
    acknowledged_ms: Option<i64>,
    mitigated_ms: Option<i64>,
    resolved_ms: Option<i64>,
    updated_ms: i64,
    truncated_alerts: i64,
    chat_thread: Option<String>,
    runbook_id: Option<String>,
}

fn json_map(text: &str, what: &str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl TryFrom<IncidentRow> for Incident {
    type Error = StoreError;

    fn try_from(r: IncidentRow) -> Result<Self, Self::Error> {
        Ok(Incident {
            id: r.id,
            human_id: human_id(r.id),
            severity: r.severity.parse().map_err(|_| {
                StoreError::Corrupt(format!("incident {} severity {:?}", r.id, r.severity))
            })?,
            state: r.state.parse().map_err(|_| {
                StoreError::Corrupt(format!("incident {} state {:?}", r.id, r.state))
            })?,
            labels: json_map(&r.labels, "incident labels")?,
            group_key: r.group_key,
            title: r.title,
            impact_start: r.impact_start_ms.map(Millis),
            detected: Millis(r.detected_ms),
            acknowledged: r.acknowledged_ms.map(Millis),
            mitigated: r.mitigated_ms.map(Millis),
            resolved: r.resolved_ms.map(Millis),
            updated: Millis(r.updated_ms),
            truncated_alerts: r.truncated_alerts,
            chat_thread: r.chat_thread,
            runbook_id: r.runbook_id,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TimelineRow {
    id: i64,
    incident_id: i64,
    at_ms: i64,
    actor: String,
    kind: String,
    text: String,
    data: String,
}

impl TryFrom<TimelineRow> for TimelineEvent {
    type Error = StoreError;

    fn try_from(r: TimelineRow) -> Result<Self, Self::Error> {
        Ok(TimelineEvent {
            id: r.id,
            incident_id: r.incident_id,
            at: Millis(r.at_ms),
            actor: r.actor,
            kind: r.kind,
            text: r.text,
            data: serde_json::from_str(&r.data)
                .map_err(|e| StoreError::Corrupt(format!("timeline {} data: {e}", r.id)))?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AlertRow {
    id: i64,
    incident_id: Option<i64>,
    source: String,
    fingerprint: String,
    status: String,
    name: String,
    starts_ms: i64,
    ends_ms: Option<i64>,
    labels: String,
    annotations: String,
    generator_url: Option<String>,
    received_ms: i64,
}

impl TryFrom<AlertRow> for StoredAlert {
    type Error = StoreError;

    fn try_from(r: AlertRow) -> Result<Self, Self::Error> {
        Ok(StoredAlert {
            id: r.id,
            incident_id: r.incident_id,
            source: r.source,
            fingerprint: r.fingerprint,
            status: r.status,
            name: r.name,
            starts_at: Millis(r.starts_ms),
            ends_at: r.ends_ms.map(Millis),
            labels: json_map(&r.labels, "alert labels")?,
            annotations: json_map(&r.annotations, "alert annotations")?,
            generator_url: r.generator_url,
            received: Millis(r.received_ms),
        })
    }
}

/// An intent waiting in the outbox.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxItem {
    pub id: i64,
    pub incident_id: Option<i64>,
    /// `chat_post` for now; pages and actions come later.
    pub kind: String,
    /// JSON, shaped by `kind`.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// A message the bot posted on a chat platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ChatPost {
    pub id: i64,
    /// The outbox item it delivered; unique, which is what keeps a
    /// redelivered intent from being shown twice.
    pub outbox_id: Option<i64>,
    pub platform: String,
    pub channel: String,
    /// The thread it was posted in; `None` for a thread's first message.
    pub thread: Option<String>,
    /// The platform's id for the message (Slack `ts`, Discord message id).
    pub message_ref: String,
    pub incident_id: Option<i64>,
    pub text: String,
    pub posted_ms: i64,
}

/// The record of one delivery key (seed 000's receipts).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Receipt {
    pub source: String,
    pub key: String,
    pub outcome: String,
    pub request_hash: Option<String>,
    pub response: Option<String>,
    pub duplicates: i64,
    pub received_ms: i64,
}
