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

/// Ready (200) when the store answers and incidents are being written;
/// 503 otherwise. The JSON body names every problem, including those that
/// leave the process able to serve (`"degraded"`: journal records found
/// missing, deliveries set aside as unappliable), which need a person's
/// look but must not take the instance out of a load balancer.
async fn ready(State(state): State<AppState>) -> Response {
    let mut problems = Vec::new();
    let mut serving = true;
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check: store not reachable");
        serving = false;
        problems.push("the store is not reachable".to_string());
    }
    if let Some(why) = state
        .lock_lost
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        serving = false;
        problems.push(why);
    }
    if let Some(e) = state.journal.progress().failing() {
        serving = false;
        problems.push(format!(
            "incidents cannot be written ({e}); {} accepted deliveries wait in the journal and are applied when this clears",
            state.journal.progress().backlog()
        ));
    }
    let lost = state.journal_store.lost();
    if let Some((from, to)) = lost.last_gap {
        problems.push(format!(
            "{} intake journal record(s) were found missing (last: {from} to {to}) and could not be applied; see the log",
            lost.records
        ));
    }
    if serving
        && let Ok(n) = state.store.dead_delivery_count().await
        && n > 0
    {
        problems.push(format!(
            "{n} delivery(ies) could not be applied and were set aside (table dead_deliveries); see the log"
        ));
    }
    let (code, status) = match (serving, problems.is_empty()) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
    };
    (
        code,
        axum::Json(serde_json::json!({"status": status, "problems": problems})),
    )
        .into_response()
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
            metrics::gauge!("firstline_intake_dead_deliveries").set(g.dead_deliveries as f64);
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
