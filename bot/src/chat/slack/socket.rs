//! Socket Mode (`chat.slack.mode = "socket"`): for a firstline Slack cannot
//! reach. slack-morphism's listener asks Slack for a WebSocket URL with the
//! app-level token (`apps.connections.open` at `chat.slack.api_url`), keeps
//! its connections open (pings; a new connection when Slack sends
//! `disconnect` or a socket closes, as slack-morphism does), and hands each
//! envelope here; what it holds goes to the same [`Inbound`] path as HTTP
//! mode's requests.
//!
//! Acknowledgements are the envelope's answer:
//! - a slash command's carries its reply, or "working on it" when it is
//!   not done within `chat.slack.answer_within_ms` (the reply then follows
//!   through its `response_url`);
//! - a button's is sent at once (its answer follows to the presser);
//! - an event's is sent once it is acted on (or recognised as re-sent, by
//!   `event_id` in the store, like HTTP mode's); one that could not be acted
//!   on is not acknowledged, so Slack sends it again.
//!
//! The listener reads one connection's envelopes one at a time, so neither
//! a command nor an event holds its connection longer than
//! `answer_within_ms`: an event still being acted on by then (behind a
//! storm) is acknowledged and finished in the background (a failure after
//! that is logged; Slack will not send it again). slack-morphism keeps two
//! connections open.

use std::sync::Arc;
use std::time::Duration;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::watch;
use tracing::{info, warn};

use super::inbound::{self, Inbound};
use super::{Client, api_code, unreachable_reason};

type Connector = SlackClientHyperConnector<SlackHyperHttpsConnector>;

/// At start-up: the app-level token opens a connection. The URL Slack
/// hands out is not used (the listener asks for its own; an unused one
/// expires). The error says what to check.
pub(super) async fn check_app_token(
    client: &Client,
    token: &SlackApiToken,
    api_url: &str,
) -> Result<(), String> {
    let session = client.open_session(token);
    session
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await
        .map(|_| ())
        .map_err(|e| refusal(&e, api_url))
}

/// Why Slack did not open a connection, and what to check.
fn refusal(e: &SlackClientError, api_url: &str) -> String {
    const WHERE: &str =
        "xapp-…, from Basic Information → App-Level Tokens, with the connections:write scope";
    if let SlackClientError::HttpError(h) = e {
        return format!(
            "Slack answered apps.connections.open with HTTP {} at {api_url}: check chat.slack.api_url and any proxy, or try again if Slack is having trouble",
            h.status_code
        );
    }
    match api_code(e) {
        Some(
            code @ ("invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
            | "token_expired"),
        ) => format!("Slack refused the app token ({code}): check chat.slack.app_token ({WHERE})"),
        Some("not_allowed_token_type") => format!(
            "Slack refused the app token (not_allowed_token_type): chat.slack.app_token must be the app-level token ({WHERE}), not the bot token"
        ),
        Some("missing_scope") => format!(
            "the app-level token lacks the connections:write scope (missing_scope): make one with it and set chat.slack.app_token ({WHERE})"
        ),
        Some(code) => format!(
            "Slack refused apps.connections.open ({code}): check that Socket Mode is on for the app (Settings → Socket Mode; deploy/slack/manifest-socket.yaml turns it on) and chat.slack.app_token"
        ),
        None => format!(
            "cannot reach Slack at {api_url} (apps.connections.open): {}; check chat.slack.api_url, the network and any proxy",
            unreachable_reason(e)
        ),
    }
}

/// The Socket Mode listener, built and not yet connected.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<Connector>,
    token: SlackApiToken,
}

impl SocketMode {
    /// The listener for `inbound`'s Slack app; `None` in HTTP mode.
    pub fn new(inbound: Inbound) -> Option<SocketMode> {
        let token = inbound.slack().app_token()?;
        let client = inbound.slack().client();
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_hello_events(on_hello)
            .with_command_events(on_command)
            .with_interaction_events(on_interaction)
            .with_push_events(on_push);
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client)
                .with_error_handler(on_error)
                .with_user_state(inbound),
        );
        let listener = SlackClientSocketModeListener::new(
            &SlackClientSocketModeConfig::new(),
            environment,
            callbacks,
        );
        Some(SocketMode { listener, token })
    }

    /// Connects and serves until `stop` turns true (or its sender is gone),
    /// then closes the connections.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.listener.listen_for(&self.token).await {
            warn!(error = %e, "slack: Socket Mode could not start; nothing will arrive from Slack");
            return;
        }
        self.listener.start().await;
        info!("slack: Socket Mode listener started");
        let _ = stop.wait_for(|stopped| *stopped).await;
        self.listener.shutdown().await;
        info!("slack: Socket Mode listener stopped");
    }
}

/// The [`Inbound`] the listener was built with.
async fn inbound_of(state: &SlackClientEventsUserState) -> Result<Inbound, String> {
    state
        .read()
        .await
        .get_user_state::<Inbound>()
        .cloned()
        .ok_or_else(|| "the Socket Mode listener has no inbound path".to_string())
}

/// Slack's `hello` on a new connection (its type is not exported by
/// slack-morphism, hence generic).
async fn on_hello<Hello: Send + 'static>(
    _hello: Hello,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) {
    info!("slack: Socket Mode connected");
}

async fn on_command(
    command: SlackCommandEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let inbound = inbound_of(&state).await?;
    // The envelope carries no user name: `actor` asks users.info (once).
    let reply = inbound.command(&command, None).await;
    Ok(inbound::command_answer(&reply))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let inbound = inbound_of(&state).await?;
    // Acknowledged either way: a redelivery would not change what it is.
    if let Err(why) = inbound.interaction(event).await {
        warn!(why, "slack: an interaction was not acted on");
    }
    Ok(())
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let inbound = inbound_of(&state).await?;
    let within = inbound.slack().answer_within();
    let mut work = tokio::spawn(async move { inbound.event(event).await });
    match tokio::time::timeout(within, &mut work).await {
        Ok(Ok(done)) => done.map_err(Into::into),
        Ok(Err(e)) => Err(format!("acting on the event failed inside firstline: {e}").into()),
        // Still at it (the applier is behind a storm): acknowledged now, so
        // this connection's next envelopes are not held up past Slack's
        // deadline. It stays recorded as seen unless it fails, and Slack
        // will not send it again, so a failure from here on is only logged.
        Err(_) => {
            tokio::spawn(async move {
                if let Ok(Err(e)) = work.await {
                    warn!(error = %e, "slack: an event acknowledged while it was acted on then failed");
                }
            });
            Ok(())
        }
    }
}

/// An envelope not acted on (or one the listener could not read). The
/// answer is not a success, so an event is left unacknowledged and Slack
/// sends it again.
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) -> HttpStatusCode {
    static EVERY: crate::log_limit::Every = crate::log_limit::Every::new(Duration::from_secs(60));
    if let Some(held) = EVERY.due() {
        warn!(
            error = %crate::text::clip(&error.to_string(), 300),
            held_back = held,
            "slack: Socket Mode: an envelope was not acted on (Slack sends an event again) or a connection failed (it is reopened)"
        );
    }
    HttpStatusCode::SERVICE_UNAVAILABLE
}
