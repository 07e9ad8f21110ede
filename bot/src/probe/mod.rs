//! Probes: the read-only checks a runbook runs against the systems it is
//! about. Each kind lives in its own file and turns one [`ProbeSpec`] into an
//! [`Observation`] (a JSON document the runbook's expectations select from)
//! or a [`ProbeError`] naming what went wrong.
//!
//! Invariants: probes never change the system they look at (SQL runs in a
//! read-only transaction, HTTP probes are for GET/HEAD-like reads), and every
//! probe is bounded by `timeout` — the caller also wraps it in
//! `tokio::time::timeout`, but probes pass the budget to their clients so a
//! slow target is cut short at the source.

pub mod http;
pub mod metrics;
pub mod nats;
pub mod prometheus;
pub mod redis;
pub mod sql;
pub mod tcp;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::SecretRef;

/// One probe, as written in a runbook file (`kind = "http"` etc.). String
/// fields may contain `{{ … }}` placeholders; the runner renders them before
/// the probe sees the spec.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeSpec {
    Http(http::HttpProbe),
    Sql(sql::SqlProbe),
    Prometheus(prometheus::PrometheusProbe),
    Metrics(metrics::MetricsProbe),
    Nats(nats::NatsProbe),
    Redis(redis::RedisProbe),
    Tcp(tcp::TcpProbe),
}

impl ProbeSpec {
    /// The target this probe talks to (a key of `[targets]` in config).
    pub fn target(&self) -> &str {
        match self {
            ProbeSpec::Http(p) => &p.target,
            ProbeSpec::Sql(p) => &p.target,
            ProbeSpec::Prometheus(p) => &p.target,
            ProbeSpec::Metrics(p) => &p.target,
            ProbeSpec::Nats(p) => &p.target,
            ProbeSpec::Redis(p) => &p.target,
            ProbeSpec::Tcp(p) => &p.target,
        }
    }

    /// `http`, `sql`, …: for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Sql(_) => "sql",
            ProbeSpec::Prometheus(_) => "prometheus",
            ProbeSpec::Metrics(_) => "metrics",
            ProbeSpec::Nats(_) => "nats",
            ProbeSpec::Redis(_) => "redis",
            ProbeSpec::Tcp(_) => "tcp",
        }
    }

    /// The target kinds this probe can use.
    pub fn target_kinds(&self) -> &'static [&'static str] {
        match self {
            ProbeSpec::Http(_) | ProbeSpec::Metrics(_) => &["http"],
            ProbeSpec::Sql(_) => &["postgres"],
            ProbeSpec::Prometheus(_) => &["prometheus"],
            ProbeSpec::Nats(_) => &["nats"],
            ProbeSpec::Redis(_) => &["redis"],
            ProbeSpec::Tcp(_) => &["http", "postgres", "prometheus", "nats", "redis", "tcp"],
        }
    }
}

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// The document expectations select from with dotted paths
    /// (`body.by_status.failed`, `rows.0.count`, `consumer.backlog`). Each
    /// probe kind documents its shape.
    pub data: serde_json::Value,
    /// A short human excerpt: a small table, the first lines of a body.
    /// Already trimmed (at most ~20 lines / 2,000 characters).
    pub evidence: String,
}

/// Why a probe could not observe. The message names the target and what
/// was tried, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}: unreachable: {1}")]
    Unreachable(String, String),
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}: malformed answer: {1}")]
    Malformed(String, String),
    #[error("{0}: {1}")]
    Failed(String, String),
    #[error("target {0:?}: {1}")]
    Config(String, String),
}

/// A target as configured under `[targets.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetSettings {
    /// An HTTP service: `base_url` plus headers; secret headers (API keys)
    /// by reference.
    Http {
        base_url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        secret_headers: BTreeMap<String, SecretRef>,
    },
    /// A PostgreSQL database: `url` without a password, the password by
    /// reference.
    Postgres {
        url: String,
        password: Option<SecretRef>,
        /// `allow_privileged = true` lets the target's role be a superuser
        /// or a member of `pg_signal_backend`, `pg_read_server_files`,
        /// `pg_write_server_files` or `pg_execute_server_program`. Default
        /// false: such a role is refused when a connection opens, because
        /// a check's query could then end other sessions, read or write
        /// files on the database host or run programs there, read-only
        /// transaction or not. Prefer a role granted `pg_read_all_data`
        /// (or `SELECT` on the tables the checks read).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_privileged: bool,
    },
    /// A Prometheus server's HTTP API base, e.g. `http://prometheus:9090`.
    Prometheus { url: String },
    /// A NATS server, e.g. `nats://127.0.0.1:4222`.
    Nats { url: String },
    /// A Redis server, e.g. `redis://127.0.0.1:6379`.
    Redis { url: String },
    /// Anything reachable over TCP, `host:port`.
    Tcp { address: String },
}

impl TargetSettings {
    pub fn kind(&self) -> &'static str {
        match self {
            TargetSettings::Http { .. } => "http",
            TargetSettings::Postgres { .. } => "postgres",
            TargetSettings::Prometheus { .. } => "prometheus",
            TargetSettings::Nats { .. } => "nats",
            TargetSettings::Redis { .. } => "redis",
            TargetSettings::Tcp { .. } => "tcp",
        }
    }
}

/// A target ready to probe: settings with secrets resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub settings: TargetSettings,
    /// Resolved secret headers (HTTP).
    pub secret_headers: BTreeMap<String, SecretString>,
    /// Resolved password (PostgreSQL).
    pub password: Option<SecretString>,
    /// The HTTP client of this target, built on first use and shared by its
    /// probes (building one loads the TLS roots: ~10 ms a probe otherwise).
    pub http_client: Arc<OnceLock<reqwest::Client>>,
    /// The open connections of a `postgres` target, kept between its sql
    /// probes (opening one costs far more than a small query). Empty until
    /// first used; see [`sql::Connections`].
    pub sql_connections: Arc<sql::Connections>,
}

impl Target {
    /// `host:port` of the target, for the tcp probe.
    pub fn address(&self) -> Option<String> {
        let url = match &self.settings {
            TargetSettings::Tcp { address } => return Some(address.clone()),
            TargetSettings::Http { base_url, .. } => base_url,
            TargetSettings::Postgres { url, .. }
            | TargetSettings::Prometheus { url }
            | TargetSettings::Nats { url }
            | TargetSettings::Redis { url } => url,
        };
        let rest = url.split("://").nth(1)?;
        let authority = rest.split(['/', '?']).next()?;
        let hostport = authority.rsplit('@').next()?;
        if hostport.contains(':') {
            Some(hostport.to_string())
        } else {
            let port = match url.split("://").next()? {
                "http" => 80,
                "https" => 443,
                "postgres" | "postgresql" => 5432,
                "nats" => 4222,
                "redis" => 6379,
                _ => return None,
            };
            Some(format!("{hostport}:{port}"))
        }
    }
}

/// Runs one probe against its target within `timeout`.
pub async fn observe(
    spec: &ProbeSpec,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let work = async {
        match spec {
            ProbeSpec::Http(p) => http::observe(p, target, timeout).await,
            ProbeSpec::Sql(p) => sql::observe(p, target, timeout).await,
            ProbeSpec::Prometheus(p) => prometheus::observe(p, target, timeout).await,
            ProbeSpec::Metrics(p) => metrics::observe(p, target, timeout).await,
            ProbeSpec::Nats(p) => nats::observe(p, target, timeout).await,
            ProbeSpec::Redis(p) => redis::observe(p, target, timeout).await,
            ProbeSpec::Tcp(p) => tcp::observe(p, target, timeout).await,
        }
    };
    // The probe's own budget covers retries; this outer bound is the backstop.
    let outer = outer_bound(spec, timeout);
    match tokio::time::timeout(outer, work).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(target.name.clone(), outer)),
    }
}

/// The outer bound of a probe: an HTTP probe may try `attempts` times,
/// each up to `timeout`, `spacing_ms` apart (seed 003: 10 × (5 s + 5 s)).
fn outer_bound(spec: &ProbeSpec, timeout: Duration) -> Duration {
    match spec {
        ProbeSpec::Http(p) => {
            let attempts = p.attempts.max(1);
            (timeout + Duration::from_millis(p.spacing_ms)) * attempts + Duration::from_secs(1)
        }
        // Two scrapes, `window_s` apart.
        ProbeSpec::Metrics(p) if p.window_s.is_some() => {
            timeout * 2 + Duration::from_secs(p.window_s.unwrap_or(0) + 1)
        }
        _ => timeout + Duration::from_secs(1),
    }
}
