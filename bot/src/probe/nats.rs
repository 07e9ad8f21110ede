//! The `nats` probe. See [`NatsProbe`] for the data it observes.
//!
//! A fresh client per observation, dropped at the end (which closes the
//! connection): a probe must not leave a reconnect loop behind. Stream and
//! consumer state are JetStream API reads (`STREAM.INFO`, `CONSUMER.INFO`),
//! which change nothing on the server.

use std::error::Error as _;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{
    ConsumerInfoErrorKind, GetStreamErrorKind, RequestError, RequestErrorKind,
};
use async_nats::{ConnectErrorKind, ConnectOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::sql::Secrets;
use super::{Observation, ProbeError, Target, TargetSettings};
use crate::text::redact_url;
use crate::text::trim_lines;

/// `kind = "nats"`: NATS connectivity and JetStream stream / consumer
/// state (seed 001 §4.1, seed 002 §5.6).
///
/// Data: `{"connected": true, "stream": {"messages", "bytes", "first_seq",
/// "last_seq", "consumers"} | null, "consumer": {"num_pending",
/// "num_ack_pending", "num_redelivered", "num_waiting", "backlog"
/// (pending + ack pending), "delivered_stream_seq", "ack_floor_stream_seq"}
/// | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsProbe {
    /// A `nats` target.
    pub target: String,
    #[serde(default)]
    pub stream: Option<String>,
    /// Needs `stream`.
    #[serde(default)]
    pub consumer: Option<String>,
}

/// Observes `p` on `target`.
pub async fn observe(
    p: &NatsProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let name = target.name.as_str();
    let TargetSettings::Nats { url } = &target.settings else {
        return Err(ProbeError::Config(
            name.to_string(),
            format!(
                "the nats probe needs a nats target, not {}",
                target.settings.kind()
            ),
        ));
    };
    if p.consumer.is_some() && p.stream.is_none() {
        return Err(ProbeError::Config(
            name.to_string(),
            "a nats probe with a consumer needs its stream".into(),
        ));
    }
    let secrets = Secrets::new(url, None);
    let shown_url = redact_url(url);

    let options = ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .name("firstline-probe");
    // The client's own timeout covers each connect attempt; this one also
    // bounds the handshake.
    let client = match tokio::time::timeout(timeout, options.connect(url.as_str())).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let message = secrets.scrub(&format!("cannot connect to {shown_url}: {e}"));
            return match e.kind() {
                // The server does not answer: observed, so a check on
                // `connected` can say so (its stream and consumer are no data).
                ConnectErrorKind::TimedOut
                | ConnectErrorKind::Io
                | ConnectErrorKind::Dns
                | ConnectErrorKind::MaxReconnects => Ok(not_connected(message)),
                ConnectErrorKind::Tls => Err(ProbeError::Unreachable(name.to_string(), message)),
                ConnectErrorKind::ServerParse => Err(ProbeError::Config(name.to_string(), message)),
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    Err(ProbeError::Failed(name.to_string(), message))
                }
            };
        }
        Err(_) => {
            return Ok(not_connected(format!(
                "no answer from {shown_url} within {timeout:?}"
            )));
        }
    };
    let info = client.server_info();
    let mut evidence = vec![format!(
        "connected to {shown_url} (server {} version {})",
        or_unknown(&info.server_name),
        or_unknown(&info.version)
    )];

    let Some(stream_name) = &p.stream else {
        return Ok(Observation {
            data: json!({"connected": true, "stream": null, "consumer": null}),
            evidence: trim_lines(&evidence.join("\n"), 20, 2000),
        });
    };

    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client);
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| match e.kind() {
            GetStreamErrorKind::JetStream(err)
                if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                ProbeError::Failed(name.to_string(), format!("stream {stream_name} not found"))
            }
            GetStreamErrorKind::JetStream(err) => {
                ProbeError::Failed(name.to_string(), format!("stream {stream_name}: {err}"))
            }
            GetStreamErrorKind::EmptyName | GetStreamErrorKind::InvalidStreamName => {
                ProbeError::Config(
                    name.to_string(),
                    format!("invalid stream name {stream_name:?}"),
                )
            }
            GetStreamErrorKind::Request => request_error(name, timeout, stream_name, e.source()),
        })?;
    let state = &stream.cached_info().state;
    let stream_data = json!({
        "messages": state.messages,
        "bytes": state.bytes,
        "first_seq": state.first_sequence,
        "last_seq": state.last_sequence,
        "consumers": state.consumer_count,
    });
    evidence.push(format!(
        "stream {stream_name}: {} messages ({} bytes), seq {}..{}, {} consumers",
        state.messages,
        state.bytes,
        state.first_sequence,
        state.last_sequence,
        state.consumer_count
    ));

    let consumer_data = match &p.consumer {
        None => Value::Null,
        Some(consumer) => {
            let c = stream.consumer_info(consumer).await.map_err(|e| {
                let target = name.to_string();
                match e.kind() {
                    ConsumerInfoErrorKind::NotFound => ProbeError::Failed(
                        target,
                        format!("consumer {consumer} not found on stream {stream_name}"),
                    ),
                    ConsumerInfoErrorKind::StreamNotFound => {
                        ProbeError::Failed(target, format!("stream {stream_name} not found"))
                    }
                    ConsumerInfoErrorKind::TimedOut => ProbeError::Timeout(target, timeout),
                    ConsumerInfoErrorKind::InvalidName => {
                        ProbeError::Config(target, format!("invalid consumer name {consumer:?}"))
                    }
                    ConsumerInfoErrorKind::NoResponders => ProbeError::Failed(
                        target,
                        "no JetStream responders (is JetStream enabled?)".into(),
                    ),
                    other => ProbeError::Failed(
                        target,
                        format!("consumer {consumer} on stream {stream_name}: {other}"),
                    ),
                }
            })?;
            let backlog = c.num_pending.saturating_add(c.num_ack_pending as u64);
            evidence.push(format!(
                "consumer {consumer}: {} pending, {} ack pending (backlog {backlog}), {} redelivered, {} waiting; \
                 delivered up to stream seq {}, ack floor {}",
                c.num_pending,
                c.num_ack_pending,
                c.num_redelivered,
                c.num_waiting,
                c.delivered.stream_sequence,
                c.ack_floor.stream_sequence
            ));
            json!({
                "num_pending": c.num_pending,
                "num_ack_pending": c.num_ack_pending,
                "num_redelivered": c.num_redelivered,
                "num_waiting": c.num_waiting,
                "backlog": backlog,
                "delivered_stream_seq": c.delivered.stream_sequence,
                "ack_floor_stream_seq": c.ack_floor.stream_sequence,
            })
        }
    };

    Ok(Observation {
        data: json!({"connected": true, "stream": stream_data, "consumer": consumer_data}),
        evidence: trim_lines(&evidence.join("\n"), 20, 2000),
    })
}

/// A failed JetStream API request: timed out, nobody answering (JetStream
/// off), or anything else.
fn request_error(
    target: &str,
    timeout: Duration,
    stream: &str,
    source: Option<&(dyn std::error::Error + 'static)>,
) -> ProbeError {
    let target = target.to_string();
    match source.and_then(|s| s.downcast_ref::<RequestError>()) {
        Some(e) if e.kind() == RequestErrorKind::TimedOut => ProbeError::Timeout(target, timeout),
        Some(e) if e.kind() == RequestErrorKind::NoResponders => ProbeError::Failed(
            target,
            "no JetStream responders (is JetStream enabled?)".into(),
        ),
        Some(e) => ProbeError::Failed(target, format!("stream {stream}: {e}")),
        None => ProbeError::Failed(target, format!("stream {stream}: request failed")),
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

/// What a server that cannot be reached looks like: `connected` false, the
/// reason in `error`, nothing known of its stream or consumer.
fn not_connected(message: String) -> Observation {
    Observation {
        data: json!({"connected": false, "error": message, "stream": null, "consumer": null}),
        evidence: trim_lines(&message, 20, 2000),
    }
}
