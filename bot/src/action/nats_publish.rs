//! `nats_publish`: re-publish payloads to their original subject with a
//! `Nats-Msg-Id`, so JetStream drops duplicates (seed 004 §5). Payloads come
//! from a DLQ stream or from an execution-logs query, never more than
//! `max_messages`.
//!
//! The DLQ is only read (`STREAM.MSG.GET`, message by message): nothing is
//! acknowledged, deleted or consumed, so what was re-published stays in the
//! DLQ until a person purges it. Message ids are derived from the
//! execution's key and the message's DLQ sequence (or the log entry's id),
//! so every retry of one approval publishes the same ids and JetStream's
//! `duplicate_window` drops what already went through.

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::{ConnectErrorKind, ConnectOptions, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{failed, header_map, http_target, lookup, refused, wrong_kind};
use super::{Env, Outcome, Vars};
use crate::probe::TargetSettings;
use crate::probe::http::{FetchError, join_url};
use crate::text::redact_url;

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
        /// JSON pointer to the array of entries (`/items`; `items` is read
        /// as `/items`; empty: the whole answer is the array).
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
    /// The source with its templates rendered.
    pub from: NatsSource,
    pub max_messages: u32,
    /// The NATS server, for people (no password).
    #[serde(default)]
    pub shown_url: String,
    /// `execution_logs`: the full URL read (no password).
    #[serde(default)]
    pub logs_url: Option<String>,
    /// `execution_logs`: names of the logs target's secret headers.
    #[serde(default)]
    pub logs_secret_headers: Vec<String>,
}

/// The most of an execution-logs answer read.
const LOGS_BODY_CAP: usize = 8 * 1024 * 1024;

impl NatsPublishPlan {
    /// `re-publish at most 10 messages from stream DLQ_ORDERS (filter
    /// dlq.orders.>) to their original subjects (header
    /// Nats-Original-Subject) on nats://127.0.0.1:4222, with Nats-Msg-Id
    /// <key>-DLQ_ORDERS-<seq>; nothing if there are more`
    pub fn describe(&self) -> String {
        let n = self.max_messages;
        match &self.from {
            NatsSource::DlqStream {
                stream,
                filter_subject,
                subject_header,
            } => {
                let filter = filter_subject
                    .as_deref()
                    .map(|f| format!(" (filter {f})"))
                    .unwrap_or_default();
                format!(
                    "re-publish at most {n} messages from stream {stream}{filter} to their original subjects (header {subject_header}) on {}, with Nats-Msg-Id <key>-{stream}-<seq>; nothing if there are more (the DLQ is left as it is)",
                    self.shown_url
                )
            }
            NatsSource::ExecutionLogs {
                target,
                items,
                subject_field,
                payload_field,
                id_field,
                ..
            } => {
                let url = self.logs_url.as_deref().unwrap_or("?");
                let secrets: Vec<String> = self
                    .logs_secret_headers
                    .iter()
                    .map(|h| format!("{h}: ••••"))
                    .collect();
                let with = if secrets.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", secrets.join(", "))
                };
                let at = match pointer(items).as_str() {
                    "" => "the answer".to_string(),
                    p => format!("array {p}"),
                };
                format!(
                    "re-publish at most {n} entries of GET {url}{with} (target {target}; {at}) to their subjects (field {subject_field}, payload field {payload_field}) on {}, with Nats-Msg-Id <key>-<{id_field}>; nothing if there are more",
                    self.shown_url
                )
            }
        }
    }
}

/// `items` as a JSON pointer: `items` and `/items` are the same; empty is
/// the root.
fn pointer(items: &str) -> String {
    let p = items.trim();
    if p.is_empty() || p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

pub fn prepare(
    spec: &NatsPublishAction,
    vars: &Vars,
    env: &Env,
) -> Result<NatsPublishPlan, String> {
    let target = lookup(env, &spec.target)?;
    let TargetSettings::Nats { url } = &target.settings else {
        return Err(wrong_kind(target, "nats"));
    };
    if spec.max_messages == 0 {
        return Err("max_messages must be at least 1".into());
    }
    let mut logs_url = None;
    let mut logs_secret_headers = Vec::new();
    let from = match &spec.from {
        NatsSource::DlqStream {
            stream,
            filter_subject,
            subject_header,
        } => {
            let stream = super::render(stream, vars)?;
            if stream.is_empty() || stream.contains(['.', '*', '>', ' ', '\t']) {
                return Err(format!("invalid stream name {stream:?}"));
            }
            let filter_subject = filter_subject
                .as_deref()
                .map(|f| super::render(f, vars))
                .transpose()?;
            if let Some(f) = &filter_subject
                && !valid_filter(f)
            {
                return Err(format!("invalid filter_subject {f:?}"));
            }
            if subject_header.trim().is_empty() {
                return Err("subject_header is empty".into());
            }
            NatsSource::DlqStream {
                stream,
                filter_subject,
                subject_header: subject_header.clone(),
            }
        }
        NatsSource::ExecutionLogs {
            target: logs_target,
            path,
            items,
            subject_field,
            payload_field,
            id_field,
        } => {
            let logs = http_target(env, logs_target)?;
            let TargetSettings::Http { base_url, .. } = &logs.settings else {
                return Err(wrong_kind(logs, "http"));
            };
            let path = super::render(path, vars)?;
            let full = join_url(base_url, &path);
            let parsed = url::Url::parse(&full)
                .map_err(|e| format!("target {logs_target:?}: bad URL: {e}"))?;
            let base = url::Url::parse(base_url)
                .map_err(|e| format!("target {logs_target:?}: bad base_url: {e}"))?;
            if parsed.origin() != base.origin() {
                return Err(format!(
                    "path {path:?} leads away from target {logs_target:?}"
                ));
            }
            logs_url = Some(redact_url(&full));
            logs_secret_headers = logs.secret_headers.keys().cloned().collect();
            NatsSource::ExecutionLogs {
                target: logs_target.clone(),
                path,
                items: pointer(items),
                subject_field: subject_field.clone(),
                payload_field: payload_field.clone(),
                id_field: id_field.clone(),
            }
        }
    };
    Ok(NatsPublishPlan {
        target: target.name.clone(),
        from,
        max_messages: spec.max_messages,
        shown_url: redact_url(url),
        logs_url,
        logs_secret_headers,
    })
}

/// One payload to re-publish.
struct Candidate {
    /// `seq 7`, `id 3f2a`: for the output.
    label: String,
    /// The subject, or why it has none.
    subject: Result<String, String>,
    payload: Vec<u8>,
    headers: HeaderMap,
    msg_id: String,
}

pub async fn execute(plan: &NatsPublishPlan, env: &Env, key: &str) -> Outcome {
    let target = match lookup(env, &plan.target) {
        Ok(t) => t,
        Err(m) => return refused(m),
    };
    let TargetSettings::Nats { url } = &target.settings else {
        return refused(wrong_kind(target, "nats"));
    };
    let timeout = env.timeout;
    let shown = redact_url(url);

    // Execution logs are read before connecting: a ceiling exceeded needs
    // no NATS at all.
    let from_logs = match &plan.from {
        NatsSource::ExecutionLogs { .. } => match read_logs(plan, env, key).await {
            Ok(c) => Some(c),
            Err(o) => return o,
        },
        NatsSource::DlqStream { .. } => None,
    };

    let options = ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .name("firstline-action");
    let client = match tokio::time::timeout(timeout, options.connect(url.as_str())).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let retryable = matches!(
                e.kind(),
                ConnectErrorKind::TimedOut
                    | ConnectErrorKind::Io
                    | ConnectErrorKind::Dns
                    | ConnectErrorKind::MaxReconnects
            );
            return Outcome {
                ok: false,
                summary: scrub(&format!("cannot connect to {shown}: {e}"), url),
                output: String::new(),
                retryable,
            };
        }
        Err(_) => {
            return Outcome {
                ok: false,
                summary: format!("no answer from {shown} within {} s", timeout.as_secs()),
                output: String::new(),
                retryable: true,
            };
        }
    };
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client);

    let (candidates, own_subjects) = match (&plan.from, from_logs) {
        (_, Some(c)) => (c, Vec::new()),
        (
            NatsSource::DlqStream {
                stream,
                filter_subject,
                subject_header,
            },
            None,
        ) => match read_dlq(
            &js,
            stream,
            filter_subject.as_deref(),
            subject_header,
            plan.max_messages,
            key,
        )
        .await
        {
            Ok(c) => c,
            Err(o) => return o,
        },
        (NatsSource::ExecutionLogs { .. }, None) => {
            return refused("the execution logs were not read".into());
        }
    };
    if candidates.is_empty() {
        return Outcome {
            ok: true,
            summary: "nothing to re-publish: no messages found".into(),
            output: String::new(),
            retryable: false,
        };
    }
    publish(&js, candidates, &own_subjects).await
}

/// Sends every candidate, then waits for each acknowledgement.
async fn publish(
    js: &async_nats::jetstream::Context,
    candidates: Vec<Candidate>,
    own_subjects: &[String],
) -> Outcome {
    let mut lines = Vec::new();
    let mut skipped = 0usize;
    let mut failed = 0usize;
    let mut retryable = false;
    let mut pending: Vec<(String, String, PublishAckFuture)> = Vec::new();
    for c in candidates {
        let subject = match c.subject {
            Ok(s) => s,
            Err(why) => {
                skipped += 1;
                lines.push(format!("{}: skipped: {why}", c.label));
                continue;
            }
        };
        if let Some(own) = own_subjects.iter().find(|f| subject_matches(f, &subject)) {
            skipped += 1;
            lines.push(format!(
                "{}: skipped: {subject} is captured by the DLQ itself ({own})",
                c.label
            ));
            continue;
        }
        let message = PublishMessage::build()
            .payload(c.payload.into())
            .headers(c.headers)
            .message_id(&c.msg_id);
        match js.send_publish(subject.clone(), message).await {
            Ok(ack) => pending.push((c.label, subject, ack)),
            Err(e) => {
                failed += 1;
                retryable |= publish_retryable(e.kind());
                lines.push(format!("{} → {subject}: not sent: {e}", c.label));
            }
        }
    }
    let mut published = 0usize;
    let mut duplicates = 0usize;
    for (label, subject, ack) in pending {
        match ack.await {
            Ok(ack) if ack.duplicate => {
                duplicates += 1;
                lines.push(format!(
                    "{label} → {subject}: dropped as a duplicate (stream {})",
                    ack.stream
                ));
            }
            Ok(ack) => {
                published += 1;
                lines.push(format!(
                    "{label} → {subject}: published (stream {} seq {})",
                    ack.stream, ack.sequence
                ));
            }
            Err(e) => {
                failed += 1;
                retryable |= publish_retryable(e.kind());
                lines.push(format!("{label} → {subject}: no acknowledgement: {e}"));
            }
        }
    }
    let mut summary = format!(
        "{published} published to their subjects, {duplicates} dropped by JetStream as duplicates"
    );
    if skipped > 0 {
        summary.push_str(&format!(", {skipped} skipped"));
    }
    if failed > 0 {
        summary.push_str(&format!(", {failed} failed"));
    }
    let ok = skipped == 0 && failed == 0;
    Outcome {
        ok,
        summary,
        output: lines.join("\n"),
        // Skips need a person; failed sends may clear (ids are stable, so a
        // retry only adds what is missing).
        retryable: !ok && skipped == 0 && retryable,
    }
}

fn publish_retryable(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending
    )
}

/// Reads up to `max + 1` messages of `stream`, without consuming them.
/// Errs (nothing published) when there are more than `max`.
async fn read_dlq(
    js: &async_nats::jetstream::Context,
    stream_name: &str,
    filter: Option<&str>,
    subject_header: &str,
    max: u32,
    key: &str,
) -> Result<(Vec<Candidate>, Vec<String>), Outcome> {
    let stream: Stream = match js.get_stream(stream_name).await {
        Ok(s) => s,
        Err(e) => {
            use async_nats::jetstream::context::GetStreamErrorKind;
            let retryable = matches!(e.kind(), GetStreamErrorKind::Request);
            let summary = match e.kind() {
                GetStreamErrorKind::JetStream(err)
                    if err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    format!("stream {stream_name} not found")
                }
                _ => format!("stream {stream_name}: {e}"),
            };
            return Err(Outcome {
                ok: false,
                summary,
                output: String::new(),
                retryable,
            });
        }
    };
    let info = stream.cached_info();
    let own_subjects = info.config.subjects.clone();
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut seq = info.state.first_sequence.max(1);
    while out.len() <= limit {
        let read = stream
            .raw_message_builder()
            .sequence(seq)
            .next_by_subject(filter.unwrap_or(">"))
            .send()
            .await;
        let msg = match read {
            Ok(m) => m,
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => break,
            Err(e) => {
                return Err(Outcome {
                    ok: false,
                    summary: format!("reading stream {stream_name} at seq {seq}: {e}"),
                    output: String::new(),
                    retryable: matches!(e.kind(), LastRawMessageErrorKind::Other),
                });
            }
        };
        seq = msg.sequence + 1;
        let subject = header(&msg.headers, subject_header)
            .map(|s| s.trim().to_string())
            .ok_or_else(|| format!("no {subject_header} header"))
            .and_then(|s| publishable(&s).map(|()| s));
        let mut headers = HeaderMap::new();
        for (name, values) in msg.headers.iter() {
            let n = name.to_string();
            if n.eq_ignore_ascii_case(subject_header) || n.to_ascii_lowercase().starts_with("nats-")
            {
                continue;
            }
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
        out.push(Candidate {
            label: format!("seq {}", msg.sequence),
            subject,
            payload: msg.payload.to_vec(),
            headers,
            msg_id: format!("{key}-{stream_name}-{}", msg.sequence),
        });
    }
    if out.len() > limit {
        let count = match filter {
            // Without a filter the stream's count is exact.
            None => stream
                .get_info()
                .await
                .map(|i| i.state.messages.to_string())
                .unwrap_or_else(|_| format!("at least {}", limit + 1)),
            Some(_) => format!("at least {}", limit + 1),
        };
        let filter = filter.map(|f| format!(" ({f})")).unwrap_or_default();
        return Err(Outcome {
            ok: false,
            summary: format!(
                "{count} messages in {stream_name}{filter}, more than max_messages {max}: nothing published"
            ),
            output: String::new(),
            retryable: false,
        });
    }
    Ok((out, own_subjects))
}

/// The value of header `name` (exact, then any case).
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    if let Some(v) = headers.get(name) {
        return Some(v.to_string());
    }
    headers
        .iter()
        .find(|(k, _)| k.to_string().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(|v| v.to_string())
}

/// Reads the execution-logs entries. Errs (nothing published) when the
/// read fails or there are more than `max_messages`.
async fn read_logs(
    plan: &NatsPublishPlan,
    env: &Env,
    key: &str,
) -> Result<Vec<Candidate>, Outcome> {
    let NatsSource::ExecutionLogs {
        target,
        path,
        items,
        subject_field,
        payload_field,
        id_field,
    } = &plan.from
    else {
        return Err(refused("not an execution-logs source".into()));
    };
    let logs = http_target(env, target).map_err(refused)?;
    let TargetSettings::Http {
        base_url, headers, ..
    } = &logs.settings
    else {
        return Err(refused(wrong_kind(logs, "http")));
    };
    let url = join_url(base_url, path);
    let headers = header_map(logs, headers).map_err(refused)?;
    let client = super::http::client().map_err(refused)?;
    let request = client.get(&url).headers(headers).timeout(env.timeout);
    let shown = redact_url(&url);
    let (status, body) = match crate::probe::http::fetch(request, LOGS_BODY_CAP).await {
        Ok(answer) => answer,
        Err(FetchError::TooLarge) => {
            return Err(refused(format!(
                "GET {shown} answered over {LOGS_BODY_CAP} bytes: nothing published"
            )));
        }
        Err(FetchError::Http(e)) => return Err(failed(&e, &url, env.timeout)),
    };
    if !status.is_success() {
        return Err(Outcome {
            ok: false,
            summary: format!(
                "GET {shown} answered HTTP {}: nothing published",
                status.as_u16()
            ),
            output: String::from_utf8_lossy(&body).trim().to_string(),
            retryable: super::http::retryable_status(status),
        });
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|e| {
        refused(format!(
            "GET {shown} answered no JSON ({e}): nothing published"
        ))
    })?;
    let entries = match doc.pointer(items) {
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(refused(format!(
                "GET {shown}: {} is not an array: nothing published",
                shown_pointer(items)
            )));
        }
        None => {
            return Err(refused(format!(
                "GET {shown}: no {} in the answer: nothing published",
                shown_pointer(items)
            )));
        }
    };
    let max = plan.max_messages;
    if entries.len() > usize::try_from(max).unwrap_or(usize::MAX) {
        return Err(refused(format!(
            "{} entries from {shown}, more than max_messages {max}: nothing published",
            entries.len()
        )));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let id = match entry.get(id_field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(format!("no {id_field}")),
        };
        let label = match &id {
            Ok(id) => format!("entry {i} ({id_field} {id})"),
            Err(_) => format!("entry {i}"),
        };
        let subject = match entry.get(subject_field) {
            Some(Value::String(s)) => publishable(s.trim()).map(|()| s.trim().to_string()),
            _ => Err(format!("no {subject_field}")),
        };
        let payload = match entry.get(payload_field) {
            Some(Value::String(s)) => Ok(s.clone().into_bytes()),
            Some(Value::Null) | None => Err(format!("no {payload_field}")),
            Some(other) => Ok(other.to_string().into_bytes()),
        };
        let (subject, payload, msg_id) = match (id, subject, payload) {
            (Ok(id), Ok(subject), Ok(payload)) => (Ok(subject), payload, format!("{key}-{id}")),
            (id, subject, payload) => {
                let why: Vec<String> = [id.err(), subject.err(), payload.err()]
                    .into_iter()
                    .flatten()
                    .collect();
                (Err(why.join(", ")), Vec::new(), String::new())
            }
        };
        if let Ok(s) = &subject
            && !msg_id_ok(&msg_id)
        {
            return Err(refused(format!(
                "{label} → {s}: the message id {msg_id:?} is not a header value"
            )));
        }
        out.push(Candidate {
            label,
            subject,
            payload,
            headers: HeaderMap::new(),
            msg_id,
        });
    }
    Ok(out)
}

fn shown_pointer(items: &str) -> String {
    if items.is_empty() {
        "root".into()
    } else {
        format!("array at {items}")
    }
}

fn msg_id_ok(id: &str) -> bool {
    !id.is_empty() && !id.contains(['\r', '\n'])
}

/// A subject firstline will publish to: one concrete subject (no
/// wildcard), and none of the server's own (`$JS.API…`, `$SYS…`): a
/// header must not be able to turn a re-publish into an API call.
fn publishable(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("an empty subject".into());
    }
    if subject.starts_with('$') {
        return Err(format!("{subject} is a system subject"));
    }
    let bad_token = subject
        .split('.')
        .any(|t| t.is_empty() || t == "*" || t == ">");
    if bad_token || subject.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("{subject:?} is not a subject one can publish to"));
    }
    Ok(())
}

/// A filter subject: tokens, `*` and a final `>` allowed.
fn valid_filter(filter: &str) -> bool {
    let tokens: Vec<&str> = filter.split('.').collect();
    let last = tokens.len() - 1;
    !filter.contains(char::is_whitespace)
        && tokens.iter().enumerate().all(|(i, t)| {
            *t == "*" || (*t == ">" && i == last) || (!t.is_empty() && !t.contains(['*', '>']))
        })
}

/// Whether `subject` matches the stream subject `pattern` (`*` one token,
/// a final `>` one or more).
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `message` without the password written in `url`.
fn scrub(message: &str, url: &str) -> String {
    let in_url = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string));
    match in_url {
        Some(p) if !p.is_empty() => message.replace(&p, "••••"),
        _ => message.to_string(),
    }
}
