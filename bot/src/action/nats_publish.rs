//! `nats_publish`: re-publish payloads to their original subject with a
//! `Nats-Msg-Id`, so JetStream drops duplicates (seed 004 §5). Payloads come
//! from a DLQ stream or from an execution-logs query, never more than
//! `max_messages`.

use serde::{Deserialize, Serialize};

use super::{Env, Outcome, Vars};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsPublishAction {
    /// A `[targets.NAME]` of kind `nats`.
    pub target: String,
    /// Where the payloads come from.
    pub from: NatsSource,
    /// The ceiling: more candidates than this and nothing is published.
    pub max_messages: u32,
}

/// The payloads to re-publish.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum NatsSource {
    /// Messages of a dead-letter stream; each one's original subject is in
    /// the header `subject_header`.
    DlqStream {
        stream: String,
        #[serde(default)]
        filter_subject: Option<String>,
        #[serde(default = "default_subject_header")]
        subject_header: String,
    },
    /// An execution-logs API (seed 004: `X-API-Key` from the target's
    /// secret headers) answering JSON with the entries to re-publish.
    ExecutionLogs {
        /// A `[targets.NAME]` of kind `http`.
        target: String,
        /// Path and query, e.g. `/api/executions?workflow_id={{ params.workflow_id }}&status=queued_to_dlq`.
        path: String,
        /// JSON pointer to the array of entries (`/items`).
        #[serde(default)]
        items: String,
        /// Field of an entry holding the subject, the payload and the
        /// message id.
        #[serde(default = "default_subject_field")]
        subject_field: String,
        #[serde(default = "default_payload_field")]
        payload_field: String,
        #[serde(default = "default_id_field")]
        id_field: String,
    },
}

fn default_subject_header() -> String {
    "Nats-Original-Subject".into()
}
fn default_subject_field() -> String {
    "subject".into()
}
fn default_payload_field() -> String {
    "payload".into()
}
fn default_id_field() -> String {
    "id".into()
}

/// The publish, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatsPublishPlan {
    pub target: String,
    pub from: NatsSource,
    pub max_messages: u32,
}

impl NatsPublishPlan {
    pub fn describe(&self) -> String {
        format!("(re-publish at most {} messages)", self.max_messages)
    }
}

pub fn prepare(
    _spec: &NatsPublishAction,
    _vars: &Vars,
    _env: &Env,
) -> Result<NatsPublishPlan, String> {
    Err("nats_publish actions are not built yet".into())
}

pub async fn execute(_plan: &NatsPublishPlan, _env: &Env, _key: &str) -> Outcome {
    super::not_built("nats_publish")
}
