//! Liveness, readiness and Prometheus metrics.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
}

/// Ready when the store answers.
async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "store not reachable").into_response()
        }
    }
}

/// Counters kept by the `metrics` recorder, plus gauges read from the
/// store at scrape time (so they are right after a restart too).
async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.store.gauges().await {
        Ok(g) => {
            for sev in ["P1", "P2", "P3"] {
                let n = g
                    .open_by_severity
                    .iter()
                    .find(|(s, _)| s == sev)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                metrics::gauge!("firstline_incidents_open", "severity" => sev).set(n as f64);
            }
            metrics::gauge!("firstline_outbox_pending").set(g.outbox_pending as f64);
            metrics::gauge!("firstline_outbox_dead").set(g.outbox_dead as f64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: store gauges unavailable"),
    }
    // Accepted deliveries not yet applied to incidents (see intake::journal).
    metrics::gauge!("firstline_intake_backlog").set(state.journal.progress().backlog() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
