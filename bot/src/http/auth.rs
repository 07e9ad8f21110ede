//! Bearer tokens for the routes people and scripts call: `/api/*`
//! (`server.api_tokens`, any one of them) and `/console/*`
//! (`chat.console.token`). Hooks, Slack and PagerDuty check their own
//! credentials; `/healthz`, `/readyz` and `/metrics` stay open.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;

use super::{ApiError, AppState};
use crate::intake::{bearer, same_token};
use crate::log_limit::Every;

/// Set on a `/console/*` request that presented `chat.console.token`: the
/// user it names is vouched for (its reactions carry an identity).
#[derive(Debug, Clone, Copy)]
pub struct Vouched;

/// `/api/*`: passes when `server.api_tokens` is empty or the request
/// presents one of them; 401 otherwise.
pub async fn api(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.api_tokens.is_empty() {
        return next.run(request).await;
    }
    match check(&state.api_tokens, request.headers(), "/api/*") {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// `/console/*`: with `chat.console.token`, passes only a request that
/// presents it, marked [`Vouched`]; without one, every request, unmarked.
pub async fn console(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(token) = &state.console.token else {
        return next.run(request).await;
    };
    match check(std::slice::from_ref(token), request.headers(), "/console/*") {
        Ok(()) => {
            request.extensions_mut().insert(Vouched);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Whether `headers` carry `Authorization: Bearer <one of tokens>`. Every
/// token is compared (in constant time), so the time taken does not say
/// which one came closest.
fn check(tokens: &[SecretString], headers: &HeaderMap, routes: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        refused(routes, "missing bearer token");
        return Err(ApiError::Unauthorized(format!(
            "missing bearer token: {routes} needs Authorization: Bearer <token>"
        )));
    };
    let matched = tokens
        .iter()
        .fold(false, |found, token| found | same_token(presented, token));
    if matched {
        Ok(())
    } else {
        refused(routes, "wrong bearer token");
        Err(ApiError::Unauthorized("wrong bearer token".into()))
    }
}

/// A line in the log for refusals, at most one a minute (probes and
/// guesses are worth a line, not a flood); never the token.
fn refused(routes: &str, why: &str) {
    static EVERY: Every = Every::new(Duration::from_secs(60));
    if let Some(held_back) = EVERY.due() {
        tracing::warn!(
            routes,
            why,
            held_back,
            "a request was refused (401; at most one such warning a minute)"
        );
    }
}
