//! The Slack platform, through slack-morphism: the Web API client that
//! posts incident roots and threads (`chat.postMessage`, `chat.update`,
//! `conversations.open`), what people do in Slack ([`inbound`]: commands,
//! buttons, reactions, whether they arrive over HTTP (`http::slack`) or
//! through Socket Mode ([`socket`])), and the names of the people who act.
//!
//! An incident is one root message in `chat.channel`: Block Kit with its
//! state at a glance and the Acknowledge / Resolve / Rerun buttons, and the
//! opening text under it. Everything else is a reply in its thread; the
//! root is updated in place when the state changes. Message references are
//! `CHANNEL/TS`, so any of them can be updated or reacted to.
//!
//! Outgoing calls are paced per method and channel (Slack allows about one
//! message a second per channel; slack-morphism's own throttle is per team).
//! A 429 comes back as a retryable error carrying `Retry-After`, and the
//! outbox waits that long.

pub mod blocks;
mod channels;
pub mod inbound;
pub mod socket;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::{ChatError, ChatPlatform, PostRequest, Posted, RootView};
use crate::config::{SlackConfig, SlackMode};

/// The HTTP client slack-morphism runs on.
type Client = SlackClient<SlackClientHyperConnector<SlackHyperHttpsConnector>>;

/// The Slack platform. Cheap to clone.
#[derive(Clone)]
pub struct Slack {
    inner: Arc<Inner>,
}

struct Inner {
    /// Shared with the Socket Mode listener, which opens its connections
    /// through it (`apps.connections.open` at `api_url`).
    client: Arc<Client>,
    token: SlackApiToken,
    /// HTTP mode's signing secret or Socket Mode's app-level token.
    mode: SlackMode,
    /// Pacing of messages per (method, channel): about one a second.
    messages: DefaultKeyedRateLimiter<(&'static str, String)>,
    /// Pacing of the other methods per (method, channel): Slack's tiers 3
    /// and 4 (50 and 100 a minute).
    others: DefaultKeyedRateLimiter<(&'static str, String)>,
    /// Display names by user id, as `users.info` gave them.
    names: Mutex<HashMap<String, String>>,
    /// The bot's own user id (from `auth.test`), so its own reactions and
    /// messages are not taken for a person's.
    bot_user: std::sync::OnceLock<String>,
    /// `chat.slack.answer_within_ms`.
    answer_within: Duration,
    /// `chat.slack.api_url`, for messages.
    api_url: String,
    /// `chat.slack.incident_channels`: severities with a channel of their own.
    incident_channels: Vec<String>,
    /// `chat.slack.responders`: invited to every incident channel.
    responders: Vec<String>,
    /// Incident channels this process made, by incident (`INC-7`).
    own_channels: Mutex<HashMap<String, String>>,
    /// (channel, user) invitations already sent.
    invited: Mutex<HashSet<(String, String)>>,
    /// `chat.channel`, once checked at start-up.
    main_channel: std::sync::OnceLock<String>,
}

/// Slack's published limits, as paces: `chat.postMessage` about one a
/// second per channel (one every 1.1 s: a message sent on the second can
/// reach Slack a hair early, behind a slower one before it); `chat.update`
/// and `conversations.*` tier 3 (50 a minute).
fn quotas() -> (Quota, Quota) {
    let one = NonZeroU32::MIN;
    (
        Quota::with_period(Duration::from_millis(1_100)).unwrap_or(Quota::per_second(one)),
        Quota::per_minute(NonZeroU32::new(50).unwrap_or(one)),
    )
}

impl Slack {
    /// A client for `cfg`; nothing is called yet (see [`Slack::check`]).
    pub fn new(cfg: &SlackConfig) -> Result<Slack, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The system's roots for https. Without any (a bare container), the
        // plain http of a proxy on loopback (or a test's fake) still works
        // and https fails naming the certificate.
        let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(b) => b,
            Err(_) => {
                let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS set-up: {e}"))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
            }
        };
        let https = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(&cfg.api_url);
        let (messages, others) = quotas();
        Ok(Slack {
            inner: Arc::new(Inner {
                client: Arc::new(SlackClient::new(connector)),
                token: SlackApiToken::new(SlackApiTokenValue::new(
                    cfg.bot_token.expose_secret().to_string(),
                )),
                mode: cfg.mode.clone(),
                messages: RateLimiter::keyed(messages),
                others: RateLimiter::keyed(others),
                names: Mutex::new(HashMap::new()),
                bot_user: std::sync::OnceLock::new(),
                answer_within: cfg.answer_within,
                api_url: cfg.api_url.clone(),
                incident_channels: cfg.incident_channels.clone(),
                responders: cfg.responders.clone(),
                own_channels: Mutex::new(HashMap::new()),
                invited: Mutex::new(HashSet::new()),
                main_channel: std::sync::OnceLock::new(),
            }),
        })
    }

    /// At start-up: the token works (`auth.test`), the bot can see
    /// `channel` (`conversations.info`) and, in Socket Mode, the app-level
    /// token opens a connection (`apps.connections.open`). The error says
    /// what to fix.
    pub async fn check(&self, channel: &str) -> Result<(), String> {
        let session = self.inner.client.open_session(&self.inner.token);
        let me = session.auth_test().await.map_err(|e| match api_code(&e) {
            Some("invalid_auth" | "not_authed" | "account_inactive" | "token_revoked") => format!(
                "Slack refused the bot token ({}): check chat.slack.bot_token (xoxb-…, from OAuth & Permissions)",
                api_code(&e).unwrap_or("")
            ),
            Some(code) => format!("Slack refused auth.test: {code}"),
            None => format!(
                "cannot reach Slack at {} (auth.test): {}; check chat.slack.api_url, the network and any proxy",
                self.inner.api_url,
                unreachable_reason(&e)
            ),
        })?;
        let _ = self.inner.bot_user.set(me.user_id.to_string());
        let req = SlackApiConversationsInfoRequest::new(SlackChannelId::new(channel.to_string()));
        session.conversations_info(&req).await.map_err(|e| match api_code(&e) {
            Some("channel_not_found") => format!(
                "Slack has no channel {channel:?} the bot can see: check chat.channel (the channel id, C…) and invite the bot to it (/invite @firstline)"
            ),
            Some("missing_scope") => "the Slack app lacks a scope (channels:read): reinstall it from deploy/slack/manifest.yaml".to_string(),
            _ => format!("Slack did not answer conversations.info for {channel:?}: {e}"),
        })?;
        let _ = self.inner.main_channel.set(channel.to_string());
        if let Some(app_token) = self.app_token() {
            socket::check_app_token(&self.inner.client, &app_token, &self.inner.api_url).await?;
        }
        Ok(())
    }

    /// The signing secret requests from Slack are verified with (HTTP
    /// mode); `None` in Socket Mode.
    pub fn signing_secret(&self) -> Option<&SecretString> {
        match &self.inner.mode {
            SlackMode::Http { signing_secret } => Some(signing_secret),
            SlackMode::Socket { .. } => None,
        }
    }

    /// The app-level token Socket Mode connects with; `None` in HTTP mode.
    pub fn app_token(&self) -> Option<SlackApiToken> {
        match &self.inner.mode {
            SlackMode::Socket { app_token } => Some(SlackApiToken::new(SlackApiTokenValue::new(
                app_token.expose_secret().to_string(),
            ))),
            SlackMode::Http { .. } => None,
        }
    }

    /// The Web API client, for the Socket Mode listener.
    fn client(&self) -> Arc<Client> {
        self.inner.client.clone()
    }

    /// How long a command may run before the answer is "working on it".
    pub fn answer_within(&self) -> Duration {
        self.inner.answer_within
    }

    /// Whether `user` is this bot.
    pub fn is_bot(&self, user: &str) -> bool {
        self.inner.bot_user.get().is_some_and(|b| b == user)
    }

    /// How the timeline names a Slack user: `Sam Smith (slack:U0SAM)`.
    /// `known` is a name the request carried; otherwise `users.info` is
    /// asked (once per user), and the id alone stands when it cannot say.
    pub async fn actor(&self, user_id: &str, known: Option<&str>) -> String {
        let name = match known.filter(|n| !n.trim().is_empty()) {
            Some(n) => Some(n.trim().to_string()),
            None => self.display_name(user_id).await,
        };
        match name {
            Some(n) => format!("{} (slack:{user_id})", crate::text::clip(&n, 64)),
            None => format!("slack:{user_id}"),
        }
    }

    async fn display_name(&self, user_id: &str) -> Option<String> {
        if let Some(n) = self.inner.names.lock().ok()?.get(user_id) {
            return Some(n.clone());
        }
        self.pace("users.info", "").await;
        let session = self.inner.client.open_session(&self.inner.token);
        let req = SlackApiUsersInfoRequest::new(SlackUserId::new(user_id.to_string()));
        let user = session.users_info(&req).await.ok()?.user;
        let profile = user.profile.as_ref();
        let name = profile
            .and_then(|p| p.display_name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| profile.and_then(|p| p.real_name.clone()))
            .filter(|n| !n.is_empty())
            .or(user.name)?;
        if let Ok(mut names) = self.inner.names.lock() {
            names.insert(user_id.to_string(), name.clone());
        }
        Some(name)
    }

    /// Answers through a slash command's or a button's `response_url`
    /// (only the caller sees it).
    pub async fn respond(&self, response_url: &str, text: &str) -> Result<(), ChatError> {
        let url = url::Url::parse(response_url)
            .map_err(|e| permanent(format!("response_url is not a URL: {e}")))?;
        let req = SlackApiPostWebhookMessageRequest::new(
            SlackMessageContent::new().with_text(escape(&crate::text::clip(text, 3000))),
        );
        self.inner
            .client
            .respond_to_event(&SlackResponseUrl::new(url), &req)
            .await
            .map(|_| ())
            .map_err(chat_error)
    }

    /// Waits for the pace of `method` in `channel`.
    async fn pace(&self, method: &'static str, channel: &str) {
        let limiter = match method {
            "chat.postMessage" | "chat.postEphemeral" => &self.inner.messages,
            _ => &self.inner.others,
        };
        limiter
            .until_key_ready(&(method, channel.to_string()))
            .await;
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
    }

    async fn post_message(
        &self,
        channel: &str,
        thread: Option<&str>,
        content: SlackMessageContent,
    ) -> Result<String, ChatError> {
        self.pace("chat.postMessage", channel).await;
        let session = self.inner.client.open_session(&self.inner.token);
        let mut req =
            SlackApiChatPostMessageRequest::new(SlackChannelId::new(channel.into()), content);
        if let Some(ts) = thread {
            req = req.with_thread_ts(SlackTs::new(ts.into()));
        }
        let answer = session.chat_post_message(&req).await.map_err(chat_error)?;
        Ok(answer.ts.to_string())
    }

    async fn update_message(
        &self,
        message_ref: &str,
        content: SlackMessageContent,
    ) -> Result<(), ChatError> {
        let (channel, ts) = split_ref(message_ref)?;
        self.pace("chat.update", channel).await;
        let session = self.inner.client.open_session(&self.inner.token);
        let req = SlackApiChatUpdateRequest::new(
            SlackChannelId::new(channel.into()),
            content,
            SlackTs::new(ts.into()),
        );
        session.chat_update(&req).await.map_err(chat_error)?;
        Ok(())
    }
}

impl ChatPlatform for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    async fn post(&self, req: &PostRequest) -> Result<Posted, ChatError> {
        match (&req.thread, &req.root) {
            // An incident's first message: its root, with the opening text.
            // (An incident of a severity with channels of its own: the
            // channel first, the root links to it.)
            (None, Some(root)) => {
                let own = match self.wants_own_channel(&root.severity) {
                    true => Some(self.own_channel(root, &req.text).await?),
                    false => None,
                };
                let content = blocks::root_content(root, &req.text, own.as_deref())?;
                let ts = self.post_message(&req.channel, None, content).await?;
                let message_ref = format!("{}/{ts}", req.channel);
                Ok(Posted {
                    thread: match &own {
                        Some(own) => format!("{message_ref}@{own}"),
                        None => message_ref.clone(),
                    },
                    message_ref,
                })
            }
            (Some(thread), _) => {
                let (channel, under) = match channels::Thread::parse(thread)? {
                    channels::Thread::Under { channel, ts } => (channel, Some(ts)),
                    channels::Thread::Own { channel, .. } => (channel, None),
                };
                let content = blocks::literal(&req.text)?;
                let ts = self.post_message(channel, under, content).await?;
                Ok(Posted {
                    message_ref: format!("{channel}/{ts}"),
                    thread: thread.clone(),
                })
            }
            // A message of no incident: a post of its own in the channel.
            (None, None) => {
                let content = blocks::literal(&req.text)?;
                let ts = self.post_message(&req.channel, None, content).await?;
                let message_ref = format!("{}/{ts}", req.channel);
                Ok(Posted {
                    thread: message_ref.clone(),
                    message_ref,
                })
            }
        }
    }

    async fn post_mention(&self, req: &PostRequest, users: &[String]) -> Result<Posted, ChatError> {
        let (channel, under) = match &req.thread {
            Some(thread) => match channels::Thread::parse(thread)? {
                channels::Thread::Under { channel, ts } => (channel, Some(ts)),
                channels::Thread::Own { channel, .. } => (channel, None),
            },
            None => (req.channel.as_str(), None),
        };
        let ts = self
            .post_message(channel, under, blocks::mention(users, &req.text)?)
            .await?;
        let message_ref = format!("{channel}/{ts}");
        Ok(Posted {
            thread: req.thread.clone().unwrap_or_else(|| message_ref.clone()),
            message_ref,
        })
    }

    async fn update(&self, message_ref: &str, text: &str) -> Result<(), ChatError> {
        // As it was posted: blocks and fallback (chat.update with text alone
        // would leave the old blocks showing).
        self.update_message(message_ref, blocks::literal(text)?)
            .await
    }

    async fn direct_message(&self, user: &str, text: &str) -> Result<(), ChatError> {
        self.pace("conversations.open", "").await;
        let session = self.inner.client.open_session(&self.inner.token);
        let req = SlackApiConversationsOpenRequest::new()
            .with_users(vec![SlackUserId::new(user.to_string())]);
        let dm = session.conversations_open(&req).await.map_err(chat_error)?;
        let channel = dm.channel.id.to_string();
        self.post_message(&channel, None, blocks::literal(text)?)
            .await
            .map(|_| ())
    }

    fn merges_backlog(&self) -> bool {
        true
    }

    async fn refresh_root(&self, thread: &str, root: &RootView) -> Result<(), ChatError> {
        let opening = root.opening.as_deref().unwrap_or("");
        let at = channels::Thread::parse(thread)?;
        let own = at.own_channel();
        self.update_message(at.root(thread), blocks::root_content(root, opening, own)?)
            .await?;
        // Whoever acknowledged joins the incident's channel.
        if let (Some(own), Some(user)) = (
            own,
            root.acknowledged_by
                .as_deref()
                .and_then(channels::slack_user),
        ) {
            self.invite(own, &[user.to_string()]).await;
        }
        Ok(())
    }
}

/// `C0INCIDENT/1733380000.000100` → (channel, ts).
fn split_ref(message_ref: &str) -> Result<(&str, &str), ChatError> {
    message_ref
        .split_once('/')
        .filter(|(c, t)| !c.is_empty() && !t.is_empty())
        .ok_or_else(|| {
            permanent(format!(
                "{message_ref:?} is not a Slack message (CHANNEL/TS)"
            ))
        })
}

/// Text as Slack shows it literally: `&`, `<` and `>` escaped (Slack reads
/// `<…>` as links and mentions).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn permanent(message: String) -> ChatError {
    ChatError {
        platform: "slack",
        message,
        retry_after: None,
        retryable: false,
    }
}

/// Why a call got no answer, in a few words (the client's own text nests
/// the connector's debug output).
fn unreachable_reason(e: &SlackClientError) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    for (needle, said) in [
        ("connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("dns error", "the host name does not resolve"),
        ("failed to lookup", "the host name does not resolve"),
        ("certificate", "its TLS certificate is not trusted"),
    ] {
        if lower.contains(needle) {
            return said.to_string();
        }
    }
    crate::text::clip(&text, 200).into_owned()
}

/// The Web API's error code, when the answer was one.
fn api_code(e: &SlackClientError) -> Option<&str> {
    match e {
        SlackClientError::ApiError(a) => Some(a.code.as_str()),
        _ => None,
    }
}

/// A client error as the outbox needs it: a 429 with when to come back;
/// a message Slack will never take (too long, malformed blocks) is
/// permanent; anything else (5xx, network, a channel or token an operator
/// can fix) is retried with backoff.
fn chat_error(e: SlackClientError) -> ChatError {
    let (retryable, retry_after) = match &e {
        SlackClientError::RateLimitError(r) => {
            (true, Some(r.retry_after.unwrap_or(Duration::from_secs(1))))
        }
        SlackClientError::ApiError(a) => (
            !matches!(
                a.code.as_str(),
                "msg_too_long"
                    | "invalid_blocks"
                    | "invalid_blocks_format"
                    | "no_text"
                    | "too_many_attachments"
            ),
            None,
        ),
        SlackClientError::HttpError(h) => (!h.status_code.is_client_error(), None),
        _ => (true, None),
    };
    ChatError {
        platform: "slack",
        message: e.to_string(),
        retry_after,
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_refs_split_into_channel_and_ts() {
        assert_eq!(
            split_ref("C0INC/1733380000.000100").ok(),
            Some(("C0INC", "1733380000.000100"))
        );
        assert!(split_ref("console-3").is_err());
        assert!(split_ref("/1.2").is_err());
    }

    #[test]
    fn text_is_escaped_so_slack_shows_it_literally() {
        assert_eq!(escape("a <b> & c <@U1>"), "a &lt;b&gt; &amp; c &lt;@U1&gt;");
    }
}
