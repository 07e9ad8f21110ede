//! The HTTP surface: each module exposes `router()`, merged here.
//!
//! - [`hooks`]: `POST /hooks/{alertmanager,grafana,generic}`
//! - [`api`]: `GET /api/incidents…`
//! - [`health`]: `/healthz`, `/readyz`, `/metrics`
//! - [`console`]: the console platform's endpoints (mounted on the console
//!   platform or with `chat.console.enabled`)
//! - [`auth`]: bearer tokens for `/api/*` and `/console/*`
//! - [`slack`]: `POST /slack/{events,commands,interactions}` (signed by Slack)
//! - [`discord`]: `POST /discord/interactions` (signed by Discord; mounted
//!   only on the Discord platform)
//!
//! Bad input gets a 4xx with a JSON body naming the problem; internal
//! errors are logged and answered without their details.

pub mod api;
pub mod auth;
pub mod console;
pub mod discord;
pub mod error;
pub mod health;
pub mod hooks;
pub mod pagerduty;
pub mod serve;
pub mod slack;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware;
use secrecy::SecretString;

use crate::chat::handler::CommandContext;
use crate::chat::messages::Messages;
use crate::incident::Ledger;
use crate::intake::journal::{self, Journal};
use crate::store::Store;

/// Shared state of every handler: one `Arc`, because axum clones the state
/// for every request, and cloning each of these handles (a dozen reference
/// counts) showed up in the intake profile.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps what the handlers share, once, at start-up.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub store: Store,
    pub ledger: Ledger,
    pub journal: Journal,
    /// Where the journal is kept (for its health on `/readyz`).
    pub journal_store: crate::store::JournalStore,
    /// Why this process may no longer hold the store's lock (PostgreSQL
    /// session lost), for `/readyz`; see `StoreLock::keep`.
    pub lock_lost: Arc<std::sync::Mutex<Option<String>>>,
    pub messages: Messages,
    /// Bearer token per intake source.
    pub tokens: Arc<BTreeMap<String, SecretString>>,
    /// `server.api_tokens`: `/api/*` takes any one (open when empty).
    pub api_tokens: Vec<SecretString>,
    /// Whether `/console/*` is mounted, and the token it takes.
    pub console: crate::config::ConsoleAccess,
    pub max_body_bytes: usize,
    pub commands: CommandContext,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// What Slack sends, when `chat.platform` is `slack` (`/slack/*` in
    /// HTTP mode).
    pub slack: Option<crate::chat::slack::inbound::Inbound>,
    /// What Discord sends, when `chat.platform` is `discord`
    /// (`/discord/interactions`, mounted only then).
    pub discord: Option<crate::chat::discord::interactions::Interactions>,
    /// `[pagers.pagerduty] webhook_secret`: PagerDuty's V3 webhooks are
    /// taken (`/pagerduty/webhook`) only with it.
    pub pagerduty_webhook: Option<SecretString>,
}

pub use error::ApiError;

impl AppState {
    /// Waits (briefly) until every alert accepted so far is applied, so a
    /// read right after a delivery sees its incident.
    pub async fn caught_up(&self) {
        self.journal.progress().caught_up(journal::READ_WAIT).await;
    }
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let api = api::router().route_layer(middleware::from_fn_with_state(state.clone(), auth::api));
    let console = if state.console.mounted {
        console::router().route_layer(middleware::from_fn_with_state(state.clone(), auth::console))
    } else {
        Router::new()
    };
    let discord = if state.discord.is_some() {
        discord::router()
    } else {
        Router::new()
    };
    Router::new()
        .merge(hooks::router())
        .merge(api)
        .merge(health::router())
        .merge(console)
        .merge(slack::router())
        .merge(discord)
        .merge(pagerduty::router())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        // Bodies are read as bytes by the handlers, which answer an
        // oversized one with a JSON 413.
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// 404 with the JSON error body every other refusal has.
async fn no_route(State(state): State<AppState>, uri: axum::http::Uri) -> ApiError {
    if !state.console.mounted && uri.path().starts_with("/console/") {
        return ApiError::NotFound(format!(
            "no route {}: the console's endpoints are there only with chat.platform = \"console\" or chat.console.enabled = true",
            uri.path()
        ));
    }
    ApiError::NotFound(format!(
        "no route {}; README's HTTP section lists the routes",
        uri.path()
    ))
}

/// 405, likewise.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; README's HTTP section lists the methods",
        uri.path()
    ))
}
