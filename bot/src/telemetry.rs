//! Logs and metrics of the bot itself.
//!
//! Logs: `tracing` with fields; `log.format = "json"` for pipelines. Every
//! event about an incident carries `incident_id`. Secrets are wrapped in
//! `SecretString` and cannot be formatted into a log line by accident.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Libraries the probes use whose INFO lines are chatter about their own
/// connections (async-nats logs `event: connected` for every NATS check):
/// held at `warn` unless `log.level` names them or `RUST_LOG` is set.
const QUIET_DEPENDENCIES: [&str; 6] = ["async_nats", "redis", "hyper", "h2", "reqwest", "rustls"];

/// `level` (the `log.level` setting) with [`QUIET_DEPENDENCIES`] held at
/// `warn`, except those it names itself.
pub fn filter_directives(level: &str) -> String {
    let mut out = level.trim().to_string();
    for dep in QUIET_DEPENDENCIES {
        let named = out
            .split(',')
            .any(|d| d.trim().split(['=', '[', ':']).next() == Some(dep));
        if !named {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(dep);
            out.push_str("=warn");
        }
    }
    out
}

/// Installs the global subscriber (once; later calls are ignored, which
/// lets tests build several apps in one process). Logs go to stderr, so a
/// command's own output on stdout (`runbook run`, `incident export`) is
/// never mixed with them.
pub fn init_logs(format: &str, level: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(filter_directives(level)))
        .unwrap_or_else(|_| EnvFilter::new(filter_directives("info")));
    // Colour only for a person at a terminal: in a file, journald or a
    // pipe the escape codes are noise around every field.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder's handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was already installed; /metrics may be incomplete"
                );
            }
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::filter_directives;

    #[test]
    fn probe_libraries_are_held_at_warn_unless_the_level_names_them() {
        let f = filter_directives("info");
        assert!(f.starts_with("info,"), "{f}");
        assert!(f.contains("async_nats=warn"), "{f}");
        let f = filter_directives("debug,async_nats=debug");
        assert!(
            f.contains("async_nats=debug") && !f.contains("async_nats=warn"),
            "{f}"
        );
        assert!(f.contains("redis=warn"), "{f}");
        assert!(
            tracing_subscriber::EnvFilter::try_new(filter_directives("firstline=debug")).is_ok()
        );
    }
}
