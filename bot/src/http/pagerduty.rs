//! `POST /pagerduty/webhook`: PagerDuty's V3 webhooks, so an incident
//! acknowledged in PagerDuty (on the phone app, say) is acknowledged in
//! firstline and its escalation stops.
//!
//! Mounted only with `[pagers.pagerduty] webhook_secret`: every request
//! must carry `X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>`
//! with that secret (several comma-separated while PagerDuty rotates it;
//! any one may match), checked in constant time; anything else gets **401**
//! and changes nothing. The incident is found by the `incident_key`
//! firstline gave PagerDuty (`firstline-INC-7`, the Events API `dedup_key`).
//! An event firstline does not act on (another type, another service's
//! incident, one already acknowledged) is answered 200, so PagerDuty does
//! not send it again; a store failure is a 503, so it does.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use tracing::{info, warn};

use super::AppState;
use crate::domain::State as IncidentState;
use crate::incident::{Change, LedgerError};

pub fn router() -> Router<AppState> {
    Router::new().route("/pagerduty/webhook", post(webhook))
}

fn answer(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

/// Whether one of the `v1=` signatures in `header` is the body's.
fn signed(secret: &[u8], header: &str, body: &[u8]) -> bool {
    header
        .split(',')
        .filter_map(|s| s.trim().strip_prefix("v1="))
        .filter_map(|hex_sig| hex::decode(hex_sig).ok())
        .any(|sig| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        })
}

/// The firstline incident number in an `incident_key` firstline gave.
fn incident_number(key: &str) -> Option<i64> {
    key.strip_prefix("firstline-INC-")?.parse().ok()
}

async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &state.pagerduty_webhook else {
        return answer(
            StatusCode::NOT_FOUND,
            json!({"error": "PagerDuty webhooks are not enabled: set [pagers.pagerduty] webhook_secret"}),
        );
    };
    let header = headers
        .get("x-pagerduty-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !signed(secret.expose_secret().as_bytes(), header, &body) {
        warn!("PagerDuty webhook refused: missing or wrong X-PagerDuty-Signature");
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong X-PagerDuty-Signature (v1=HMAC-SHA256 of the body with [pagers.pagerduty] webhook_secret)"}),
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body is not JSON; expected a PagerDuty V3 webhook {\"event\": {...}}"}),
        );
    };
    let event = &v["event"];
    let Some(kind) = event["event_type"].as_str() else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "event.event_type is missing; expected a PagerDuty V3 webhook"}),
        );
    };
    if kind != "incident.acknowledged" {
        return answer(
            StatusCode::OK,
            json!({"ignored": format!("{kind} is not acted on")}),
        );
    }
    let key = event["data"]["incident_key"].as_str().unwrap_or("");
    let Some(number) = incident_number(key) else {
        return answer(
            StatusCode::OK,
            json!({"ignored": "not an incident firstline paged (incident_key is not firstline-INC-N)"}),
        );
    };
    let who = event["agent"]["summary"]
        .as_str()
        .map(|s| crate::text::clip(s, 64).into_owned())
        .unwrap_or_else(|| "someone".into());
    let actor = format!("{who} (PagerDuty)");
    state.caught_up().await;
    let change = Change::SetState {
        id: number,
        to: IncidentState::Acknowledged,
        note: Some("acknowledged in PagerDuty".into()),
    };
    match state.ledger.change(&actor, change).await {
        Ok(outcome) => {
            info!(incident_id = number, "acknowledged through PagerDuty");
            answer(StatusCode::OK, json!({"ok": outcome.answer}))
        }
        Err(e @ (LedgerError::Transition { .. } | LedgerError::NotFound(_))) => {
            answer(StatusCode::OK, json!({"ignored": e.to_string()}))
        }
        Err(e) => {
            warn!(incident_id = number, error = %e, "a PagerDuty acknowledgement could not be recorded");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "could not record the acknowledgement; PagerDuty will send it again"}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_of_several_v1_signatures_may_match_and_nothing_else_does() {
        let body = br#"{"event":{}}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").expect("key");
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(signed(b"s3cret", &format!("v1={good}"), body));
        assert!(signed(b"s3cret", &format!("v1=00ff, v1={good}"), body));
        assert!(!signed(b"s3cret", &format!("v2={good}"), body));
        assert!(!signed(b"other", &format!("v1={good}"), body));
        assert!(!signed(b"s3cret", "", body));
        assert!(!signed(b"s3cret", &format!("v1={good}"), b"{}"));
    }

    #[test]
    fn only_firstlines_own_incident_keys_name_an_incident() {
        assert_eq!(incident_number("firstline-INC-7"), Some(7));
        assert_eq!(incident_number("firstline-INC-x"), None);
        assert_eq!(incident_number("baf7cf21b1da41b4"), None);
    }
}
