//! The `redis` probe. See [`RedisProbe`] for the data it observes.
//!
//! One multiplexed connection per observation and a single `PING`; the
//! latency is the PING's round trip alone, not the connection set-up.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::sql::Secrets;
use super::{Observation, ProbeError, Target, TargetSettings};
use crate::text::redact_url;

/// `kind = "redis"`: reachability and round-trip latency (seed 002 §5.8).
///
/// Data: `{"pong": true, "latency_ms": 0.4}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisProbe {
    /// A `redis` target.
    pub target: String,
}

/// Observes `p` on `target`.
pub async fn observe(
    p: &RedisProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let _ = p;
    let name = target.name.as_str();
    let TargetSettings::Redis { url } = &target.settings else {
        return Err(ProbeError::Config(
            name.to_string(),
            format!(
                "the redis probe needs a redis target, not {}",
                target.settings.kind()
            ),
        ));
    };
    let secrets = Secrets::new(url, None);
    let shown_url = redact_url(url);

    let client = redis::Client::open(url.as_str()).map_err(|e| {
        ProbeError::Config(
            name.to_string(),
            secrets.scrub(&format!("invalid redis url {shown_url}: {e}")),
        )
    })?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn: MultiplexedConnection = match tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(classify(name, timeout, &shown_url, &e, &secrets)),
        Err(_) => return Err(ProbeError::Timeout(name.to_string(), timeout)),
    };

    let started = Instant::now();
    let reply = match tokio::time::timeout(
        timeout,
        redis::cmd("PING").query_async::<redis::Value>(&mut conn),
    )
    .await
    {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) => return Err(classify(name, timeout, &shown_url, &e, &secrets)),
        Err(_) => return Err(ProbeError::Timeout(name.to_string(), timeout)),
    };
    let elapsed = started.elapsed();

    let pong = match &reply {
        redis::Value::SimpleString(s) => s == "PONG",
        redis::Value::BulkString(b) => b.as_slice() == b"PONG",
        _ => false,
    };
    if !pong {
        return Err(ProbeError::Malformed(
            name.to_string(),
            format!("PING answered {reply:?}, not PONG"),
        ));
    }
    // Microsecond resolution is plenty and keeps the number short.
    let latency_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    Ok(Observation {
        data: json!({"pong": true, "latency_ms": latency_ms}),
        evidence: format!("PONG from {shown_url} in {latency_ms} ms"),
    })
}

fn classify(
    target: &str,
    timeout: Duration,
    shown_url: &str,
    err: &RedisError,
    secrets: &Secrets,
) -> ProbeError {
    let target = target.to_string();
    let message = secrets.scrub(&format!("{shown_url}: {err}"));
    if err.is_timeout() {
        ProbeError::Timeout(target, timeout)
    } else if err.is_connection_refusal() || err.is_io_error() || err.is_connection_dropped() {
        ProbeError::Unreachable(target, message)
    } else {
        ProbeError::Failed(target, message)
    }
}
