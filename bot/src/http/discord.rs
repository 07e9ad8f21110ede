//! `POST /discord/interactions`: Discord's interactions endpoint (slash
//! commands and button presses over HTTP), mounted only with
//! `chat.platform = "discord"`.
//!
//! Every request must carry Discord's Ed25519 signature over its timestamp
//! and raw body, a timestamp within `chat.discord.max_age_s`, and must not
//! have been seen before; anything else is **401** with a JSON error naming
//! why, and changes nothing (Discord itself sends bad signatures to check
//! this). What is left here is HTTP's; checking, translating and answering
//! are `chat::discord::interactions`'.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tracing::warn;

use super::AppState;
use crate::chat::discord::interactions::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

pub fn router() -> Router<AppState> {
    Router::new().route("/discord/interactions", post(interactions))
}

fn refuse(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({"error": message.into()}))).into_response()
}

fn unauthorized(why: &str) -> Response {
    // Probes and forgeries (and Discord's own checks) are worth a line,
    // not a flood.
    static EVERY: crate::log_limit::Every = crate::log_limit::Every::new(Duration::from_secs(60));
    if let Some(held) = EVERY.due() {
        warn!(
            why,
            held_back = held,
            "a request to /discord/interactions was refused (401)"
        );
    }
    refuse(StatusCode::UNAUTHORIZED, why)
}

async fn interactions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(discord) = state.discord.as_ref() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Discord is not configured here (chat.platform = \"discord\" and [chat.discord])",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = header(SIGNATURE_HEADER);
    if let Err(why) = discord.verify(signature, header(TIMESTAMP_HEADER), &body) {
        return unauthorized(&why.to_string());
    }
    // Within the window a signed request could be sent again: the second
    // is a replay (Discord sends each interaction once).
    let now = state.commands.clock.now();
    match state
        .store
        .first_sight("discord-request", signature.unwrap_or_default(), now)
        .await
    {
        Ok(true) => {}
        Ok(false) => return unauthorized("this signed request was already received (a replay)"),
        Err(e) => {
            warn!(error = %e, "discord: could not record the request");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is not answering; nothing was done, try again",
            );
        }
    }
    match discord.answer(&body).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(why) => refuse(StatusCode::BAD_REQUEST, why.to_string()),
    }
}
