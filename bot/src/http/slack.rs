//! `POST /slack/events`, `/slack/commands`, `/slack/interactions`: what a
//! Slack app sends in HTTP mode, checked and handed to `chat::handler`.
//!
//! Every request must carry Slack's v0 signature (HMAC-SHA256 of
//! `v0:{timestamp}:{raw body}` with the app's signing secret, checked in
//! constant time by slack-morphism's verifier) and a timestamp under five
//! minutes old; one seen before is a replay. Anything else gets **401** and
//! changes nothing. Slack wants an answer within 3 s: a command that is not
//! done within `chat.slack.answer_within_ms` answers "working on it" and its reply follows
//! through the `response_url`. Events Slack re-sends (`X-Slack-Retry-Num`)
//! are acted on once, by `event_id`, also across a restart.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::ExposeSecret;
use serde_json::json;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use tracing::{info, warn};

use super::AppState;
use crate::chat::handler::{self, Reply};
use crate::chat::slack::{Slack, blocks};
use crate::domain::time::Millis;
use crate::incident::{Change, LedgerError};

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

/// The Slack platform, or 404 when firstline is not a Slack app.
fn slack(state: &AppState) -> Result<&Slack, Refusal> {
    state.slack.as_ref().ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            "Slack is not configured here (chat.platform = \"slack\" and [chat.slack])".into(),
        )
    })
}

/// The body, if Slack signed it: 401 naming what is wrong otherwise.
async fn verified(
    state: &AppState,
    slack: &Slack,
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
    let secret = SlackSigningSecret::new(slack.signing_secret().expose_secret().to_string());
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
    let slack = match slack(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r.into_response(),
    };
    let text = match verified(&state, &slack, &headers, &body).await {
        Ok(t) => t,
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
        SlackPushEvent::EventCallback(cb) => {
            let id = cb.event_id.to_string();
            let now = Millis::from_datetime(chrono::Utc::now());
            match state.store.first_sight("slack", &id, now).await {
                Ok(true) => {}
                Ok(false) => {
                    info!(event_id = %id, "slack: a re-sent event was already handled");
                    return StatusCode::OK.into_response();
                }
                Err(e) => {
                    warn!(error = %e, "slack: could not record the event; asking Slack to retry");
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
            match on_event(&state, &slack, cb.event).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(retry) => {
                    // Not done: forget it, so Slack's retry is acted on.
                    let _ = state.store.forget_event("slack", &id).await;
                    warn!(event_id = %id, error = %retry, "slack: event not handled; Slack will retry");
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
        }
    }
}

/// Acts on one event; `Err` when it should be retried.
async fn on_event(
    state: &AppState,
    slack: &Slack,
    event: SlackEventCallbackBody,
) -> Result<(), String> {
    let (user, emoji, item, removed) = match event {
        SlackEventCallbackBody::ReactionAdded(r) => (r.user, r.reaction, r.item, false),
        SlackEventCallbackBody::ReactionRemoved(r) => (r.user, r.reaction, r.item, true),
        // Subscribed to nothing else; anything else is not ours to act on.
        _ => return Ok(()),
    };
    let SlackReactionsItem::Message(message) = item else {
        return Ok(());
    };
    let user = user.to_string();
    if slack.is_bot(&user) {
        return Ok(());
    }
    let Some(channel) = message.origin.channel.as_ref() else {
        return Ok(());
    };
    let message_ref = format!("{channel}/{}", message.origin.ts);
    state.caught_up().await;
    let post = state
        .store
        .post_by_ref("slack", &message_ref)
        .await
        .map_err(|e| e.to_string())?;
    // A reaction on a message that is not the bot's, or on one of no
    // incident, is someone else's business.
    let Some(id) = post.and_then(|p| p.incident_id) else {
        return Ok(());
    };
    let emoji = emoji.to_string();
    if handler::check_reaction(&user, &emoji, &message_ref).is_err() {
        return Ok(());
    }
    let actor = slack.actor(&user, None).await;
    let change = Change::Reaction {
        id,
        emoji,
        message_ref,
        removed,
    };
    match state.ledger.change(&actor, change).await {
        Ok(_) => Ok(()),
        Err(LedgerError::Store(e)) => Err(e.to_string()),
        // Refused (the incident is gone): nothing a retry would change.
        Err(_) => Ok(()),
    }
}

// ---------------------------------------------------------------- commands

async fn commands(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let slack = match slack(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r.into_response(),
    };
    let text = match verified(&state, &slack, &headers, &body).await {
        Ok(t) => t,
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
    let line = format!(
        "{} {}",
        command.command,
        command.text.as_deref().unwrap_or("")
    );
    let user = command.user_id.to_string();
    let known = form.get("user_name").map(String::as_str);
    let actor = slack.actor(&user, known).await;
    let response_url = command.response_url.0.to_string();
    // Typed in an incident's own channel: about that incident.
    let here = slack
        .incident_of_channel(&state.store, command.channel_id.as_ref())
        .await;
    answer_in_time(state, slack, actor, line, here, response_url).await
}

/// Runs a command; answers with its reply if it is done within
/// `chat.slack.answer_within_ms`, else "working on it" now and the reply through
/// `response_url` when done. Only the caller sees either; what changes an
/// incident is posted in its thread as well.
async fn answer_in_time(
    state: AppState,
    slack: Slack,
    actor: String,
    line: String,
    here: Option<i64>,
    response_url: String,
) -> Response {
    let ctx = state.commands.clone();
    let mut work = tokio::spawn({
        let line = line.clone();
        async move { handler::handle(&ctx, &actor, line.trim(), here).await }
    });
    match tokio::time::timeout(slack.answer_within(), &mut work).await {
        Ok(done) => ephemeral(&reply_of(done)),
        Err(_) => {
            tokio::spawn(async move {
                let reply = reply_of(work.await);
                if let Err(e) = slack.respond(&response_url, &shown(&reply)).await {
                    warn!(error = %e, "slack: the late answer could not be delivered");
                }
            });
            ephemeral(&Reply {
                text: format!("working on it: {}", crate::text::clip(line.trim(), 100)),
                ok: true,
            })
        }
    }
}

fn reply_of(done: Result<Reply, tokio::task::JoinError>) -> Reply {
    done.unwrap_or_else(|e| Reply {
        text: format!("the command failed inside firstline ({e}); nothing may have changed, check the incident"),
        ok: false,
    })
}

/// A reply as the caller reads it: a refusal marked as one.
fn shown(reply: &Reply) -> String {
    if reply.ok {
        reply.text.clone()
    } else {
        format!("⚠️ {}", reply.text)
    }
}

/// An answer only the caller sees.
fn ephemeral(reply: &Reply) -> Response {
    axum::Json(json!({
        "response_type": "ephemeral",
        "text": crate::chat::slack::escape(&crate::text::clip(&shown(reply), 3000)),
    }))
    .into_response()
}

// ------------------------------------------------------------ interactions

async fn interactions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let slack = match slack(&state) {
        Ok(s) => s.clone(),
        Err(r) => return r.into_response(),
    };
    let text = match verified(&state, &slack, &headers, &body).await {
        Ok(t) => t,
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
    let SlackInteractionEvent::BlockActions(press) = event else {
        return StatusCode::OK.into_response();
    };
    let (Some(user), Some(action)) = (
        press.user.as_ref(),
        press.actions.as_ref().and_then(|a| a.first()),
    ) else {
        return StatusCode::OK.into_response();
    };
    let value = action.value.clone().unwrap_or_default();
    // The value is the bot's own (an incident id, `RUNBOOK INC-n`); the
    // command grammar checks it as if typed.
    let line = match action.action_id.to_string().as_str() {
        blocks::ACK => format!("/incident ack {value}"),
        blocks::RESOLVE => format!("/incident resolve {value}"),
        blocks::RERUN => format!("/runbook run {value}"),
        other => {
            return refuse(StatusCode::BAD_REQUEST, format!("unknown action {other:?}"));
        }
    };
    let known = user.name.clone().or(user.username.clone());
    let actor = slack.actor(user.id.as_ref(), known.as_deref()).await;
    let Some(response_url) = press.response_url.as_ref().map(|u| u.0.to_string()) else {
        // Nowhere to answer: act, and let the thread show it.
        let ctx = state.commands.clone();
        tokio::spawn(async move { handler::handle(&ctx, &actor, &line, None).await });
        return StatusCode::OK.into_response();
    };
    // A button is acknowledged at once; its answer follows, to the presser.
    let ctx = state.commands.clone();
    tokio::spawn(async move {
        let reply = handler::handle(&ctx, &actor, &line, None).await;
        if let Err(e) = slack.respond(&response_url, &shown(&reply)).await {
            warn!(error = %e, "slack: the answer to a button could not be delivered");
        }
    });
    StatusCode::OK.into_response()
}
