//! `POST /slack/events`, `/slack/commands`, `/slack/interactions`: what a
//! Slack app sends in HTTP mode, checked and handed to the Slack platform's
//! one inbound path (`chat::slack::inbound`, which Socket Mode uses too).
//!
//! Every request must carry Slack's v0 signature (HMAC-SHA256 of
//! `v0:{timestamp}:{raw body}` with the app's signing secret, checked in
//! constant time by slack-morphism's verifier) and a timestamp under five
//! minutes old; one seen before is a replay. Anything else gets **401** and
//! changes nothing. What is left here is HTTP's: the signature, replays,
//! the body's shape and the status codes (an event not acted on is a 503,
//! so Slack sends it again). In Socket Mode nothing comes this way: 404.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use tracing::warn;

use super::AppState;
use crate::chat::slack::inbound::{self, Inbound};
use crate::domain::time::Millis;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
}

/// A refusal, as Slack (and whoever probes the endpoint) sees it.
fn refuse(code: StatusCode, message: impl Into<String>) -> Response {
    Refusal(code, message.into()).into_response()
}

/// Why a request was not taken: its status and a message naming why.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

/// The checked body of a request to `/slack/*` and where to hand it: 404
/// when firstline is not a Slack app in HTTP mode, 401 when Slack did not
/// sign it.
async fn accepted(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Inbound, String), Refusal> {
    let Some(slack) = state.slack.as_ref() else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "Slack is not configured here (chat.platform = \"slack\" and [chat.slack])".into(),
        ));
    };
    let Some(secret) = slack.slack().signing_secret() else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "firstline runs in Socket Mode (chat.slack.mode = \"socket\"): Slack sends commands, buttons and events over its WebSocket, not to /slack/*".into(),
        ));
    };
    let text = verified(state, secret, headers, body).await?;
    Ok((slack.clone(), text))
}

/// The body, if Slack signed it: 401 naming what is wrong otherwise.
async fn verified(
    state: &AppState,
    signing_secret: &SecretString,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<String, Refusal> {
    let unauthorized = |why: &str| {
        // Probes and forgeries are worth a line, not a flood.
        static EVERY: crate::log_limit::Every =
            crate::log_limit::Every::new(Duration::from_secs(60));
        if let Some(held) = EVERY.due() {
            warn!(
                why,
                held_back = held,
                "a request to /slack/* was refused (401)"
            );
        }
        Refusal(StatusCode::UNAUTHORIZED, why.to_string())
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return Err(unauthorized(
            "unsigned: X-Slack-Signature and X-Slack-Request-Timestamp are required",
        ));
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(unauthorized(
            "the body is not UTF-8, so Slack did not send it",
        ));
    };
    let secret = SlackSigningSecret::new(signing_secret.expose_secret().to_string());
    if let Err(e) = SlackEventSignatureVerifier::new(&secret).verify(signature, text, timestamp) {
        let why = match e {
            slack_morphism::signature_verifier::SlackEventSignatureVerifierError::WrongSignatureError(_) => {
                "the signature does not match the body (wrong signing secret, or the body was changed)"
            }
            slack_morphism::signature_verifier::SlackEventSignatureVerifierError::CryptoInitError(_) => {
                "the signature cannot be checked"
            }
            _ => "the timestamp is missing, malformed or more than 5 minutes from now",
        };
        return Err(unauthorized(why));
    }
    // A signed request seen before is a replay (Slack's own retries of an
    // event carry a new signature; commands and buttons are not retried).
    let now = Millis::from_datetime(chrono::Utc::now());
    match state
        .store
        .first_sight("slack-request", signature, now)
        .await
    {
        Ok(true) => Ok(text.to_string()),
        Ok(false) => Err(unauthorized(
            "this signed request was already received (a replay)",
        )),
        Err(e) => {
            warn!(error = %e, "slack: could not record the request; asking Slack to retry");
            Err(Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is not answering; nothing was done, try again".into(),
            ))
        }
    }
}

// ------------------------------------------------------------------ events

async fn events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (slack, text) = match accepted(&state, &headers, &body).await {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let event: SlackPushEvent = match serde_json::from_str(&text) {
        Ok(e) => e,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not an Events API body: {e}"),
            );
        }
    };
    match event {
        SlackPushEvent::UrlVerification(v) => {
            axum::Json(json!({"challenge": v.challenge})).into_response()
        }
        SlackPushEvent::AppRateLimited(_) => {
            warn!(
                "Slack says this app is over its event rate limit; events may be dropped by Slack"
            );
            StatusCode::OK.into_response()
        }
        SlackPushEvent::EventCallback(cb) => match slack.event(cb).await {
            Ok(()) => StatusCode::OK.into_response(),
            // Not done: Slack sends it again.
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
    }
}

// ---------------------------------------------------------------- commands

async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (slack, text) = match accepted(&state, &headers, &body).await {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let form: HashMap<String, String> = match serde_urlencoded::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            return refuse(StatusCode::BAD_REQUEST, format!("not a slash command: {e}"));
        }
    };
    let command: SlackCommandEvent = match serde_urlencoded::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            return refuse(StatusCode::BAD_REQUEST, format!("not a slash command: {e}"));
        }
    };
    let known = form.get("user_name").map(String::as_str);
    let reply = slack.command(&command, known).await;
    axum::Json(inbound::command_answer(&reply)).into_response()
}

// ------------------------------------------------------------ interactions

async fn interactions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (slack, text) = match accepted(&state, &headers, &body).await {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let form: HashMap<String, String> = serde_urlencoded::from_str(&text).unwrap_or_default();
    let Some(payload) = form.get("payload") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "an interaction carries its JSON in the payload field",
        );
    };
    let event: SlackInteractionEvent = match serde_json::from_str(payload) {
        Ok(e) => e,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not an interaction payload: {e}"),
            );
        }
    };
    // A button is acknowledged at once; its answer follows, to the presser.
    match slack.interaction(event).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(why) => refuse(StatusCode::BAD_REQUEST, why),
    }
}
