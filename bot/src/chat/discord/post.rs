//! Incident posts on Discord, through serenity's REST client: one root
//! message per incident in `chat.channel` (an embed with the state at a
//! glance, and the buttons), a thread started from it for everything else,
//! and the root's embed edited in place as the state changes.
//!
//! References:
//! - a message is `CHANNEL/MESSAGE` (a thread is a channel, so a post in a
//!   thread is `THREAD/MESSAGE`): enough to edit it or find it again;
//! - an incident's thread is `CHANNEL/ROOT/THREAD`: the root to edit, the
//!   thread to post in. A message of no incident opens no thread; its
//!   "thread" is its own `CHANNEL/MESSAGE`, and later posts go to `CHANNEL`.
//!
//! Every message carries a nonce made from its outbox item with
//! `enforce_nonce`, so Discord does not show a redelivered item twice
//! (within its few minutes of memory); a root already posted for an item
//! whose thread could not be started is reused, not posted again.
//!
//! Pacing: messages to one channel (a thread is one) go out one every
//! 1.1 s, within Discord's 5 per 5 s; posts that pile up for a thread
//! meanwhile are merged by the outbox (`merges_backlog`), as on Slack.
//!
//! Rate limits: against Discord itself serenity's limiter keeps to its
//! per-route buckets and waits out a 429 itself. Through `api_url` (a
//! proxy, the tests' fake) that limiter is off, and serenity's error for a
//! 429 drops its `retry_after`; so there the request serenity's route
//! names is sent by [`Discord::fire`] and a 429's `retry_after` (its JSON
//! body, else the `Retry-After` header) goes back to the outbox in
//! [`ChatError::retry_after`], which waits that long before retrying.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateAllowedMentions, CreateButton, CreateEmbed,
    CreateMessage, CreateThread, EditMessage, MessageId, UserId,
};
use serenity::all::{GuildChannel, Message, PrivateChannel};
use serenity::http::{HttpError, LightMethod, Request, Route};
use serenity::model::channel::Nonce;

use super::Discord;
use super::interactions::custom_id;
use crate::chat::buttons::{ACK, PROPOSE, RERUN, RESOLVE};
use crate::chat::{ChatError, ChatPlatform, PostRequest, Posted, RootView};
use crate::text::clip;

/// Discord's limits: a message's content, an embed's title, description,
/// field value, a thread's name, a button's label.
pub const CONTENT_CHARS: usize = 2000;
const TITLE_CHARS: usize = 256;
const DESCRIPTION_CHARS: usize = 4096;
const FIELD_CHARS: usize = 1024;
const THREAD_NAME_CHARS: usize = 100;
const LABEL_CHARS: usize = 80;
/// A post longer than this many messages is cut, with a note.
const MESSAGES_A_POST: usize = 4;
/// Propose buttons shown at most (five fit an action row).
const PROPOSE_BUTTONS: usize = 3;
/// When Discord's 429 came back without a time: the bucket resets within
/// about a second.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(1);
/// The longest `retry_after` taken as given (a proxy's garbage aside, a
/// global limit lasts seconds).
const RETRY_AFTER_AT_MOST: Duration = Duration::from_secs(600);
/// How long a request through `api_url` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Roots posted for an outbox item whose thread is not started yet (by
/// item: a retry starts the thread from the same root), the pace of
/// messages per channel, and the client that sends requests through
/// `api_url` (see [`Discord::fire`]). Cheap to clone.
#[derive(Clone)]
pub(super) struct Posting {
    roots: Arc<Mutex<HashMap<i64, (ChannelId, MessageId)>>>,
    pace: Arc<DefaultKeyedRateLimiter<ChannelId>>,
    rest: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
}

impl Default for Posting {
    fn default() -> Posting {
        Posting {
            roots: Arc::default(),
            pace: Arc::new(RateLimiter::keyed(message_pace())),
            rest: Arc::default(),
        }
    }
}

/// Discord lets a bot send about 5 messages every 5 s to one channel (a
/// thread is a channel): one every 1.1 s keeps within that without a
/// burst, and what piles up meanwhile for one thread goes out merged (see
/// `merges_backlog`).
fn message_pace() -> Quota {
    Quota::with_period(Duration::from_millis(1_100)).unwrap_or(Quota::per_second(NonZeroU32::MIN))
}

impl Posting {
    /// Waits for `channel`'s turn to take a message.
    async fn pace(&self, channel: ChannelId) {
        self.pace.until_key_ready(&channel).await;
        if self.pace.len() > 10_000 {
            self.pace.retain_recent();
        }
    }
}

/// Where an incident's posts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Thread {
    pub channel: ChannelId,
    /// The root message and the thread started from it.
    pub root: Option<(MessageId, ChannelId)>,
}

impl Thread {
    /// `CHANNEL/ROOT/THREAD` or `CHANNEL/MESSAGE`.
    pub fn parse(thread: &str) -> Result<Thread, ChatError> {
        let bad = || {
            permanent(format!(
                "{thread:?} is not a Discord thread (CHANNEL/ROOT/THREAD)"
            ))
        };
        let parts: Vec<&str> = thread.split('/').collect();
        match parts.as_slice() {
            [c, r, t] => Ok(Thread {
                channel: channel_id(c).map_err(|_| bad())?,
                root: Some((
                    message_id(r).map_err(|_| bad())?,
                    channel_id(t).map_err(|_| bad())?,
                )),
            }),
            [c, m] => {
                message_id(m).map_err(|_| bad())?;
                Ok(Thread {
                    channel: channel_id(c).map_err(|_| bad())?,
                    root: None,
                })
            }
            _ => Err(bad()),
        }
    }

    /// Where posts go: the thread, else the channel.
    fn target(&self) -> ChannelId {
        self.root.map_or(self.channel, |(_, t)| t)
    }
}

fn snowflake(what: &str, s: &str) -> Result<u64, ChatError> {
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| permanent(format!("{s:?} is not a Discord {what} id")))
}

fn channel_id(s: &str) -> Result<ChannelId, ChatError> {
    snowflake("channel", s).map(ChannelId::new)
}

fn message_id(s: &str) -> Result<MessageId, ChatError> {
    snowflake("message", s).map(MessageId::new)
}

/// `CHANNEL/MESSAGE` → its ids.
fn split_ref(message_ref: &str) -> Result<(ChannelId, MessageId), ChatError> {
    let (c, m) = message_ref.split_once('/').ok_or_else(|| {
        permanent(format!(
            "{message_ref:?} is not a Discord message (CHANNEL/MESSAGE)"
        ))
    })?;
    Ok((channel_id(c)?, message_id(m)?))
}

fn colour(severity: &str) -> u32 {
    match severity {
        "P1" => 0xE0_1E_5A,
        "P2" => 0xEC_B2_2E,
        "P3" => 0x36_C5_F0,
        _ => 0x99_AA_B5,
    }
}

/// The root's embed: `INC-7 [P1] title`, coloured by severity, the facts as
/// fields, the opening text as description.
pub fn root_embed(root: &RootView, opening: &str) -> CreateEmbed {
    let field = |e: CreateEmbed, name: &str, value: &str| {
        let value = if value.trim().is_empty() {
            "—"
        } else {
            value
        };
        e.field(name, clip(value, FIELD_CHARS), true)
    };
    let mut e = CreateEmbed::new()
        .title(clip(
            &format!("{} [{}] {}", root.id, root.severity, root.title),
            TITLE_CHARS,
        ))
        .colour(colour(&root.severity));
    e = field(e, "State", &root.state);
    if let Some(rb) = &root.runbook {
        e = field(e, "Runbook", rb);
    }
    if !root.failure_modes.is_empty() {
        e = field(e, "Failure modes", &root.failure_modes.join(", "));
    }
    if let Some(ttd) = &root.ttd {
        e = field(e, "TTD", ttd);
    }
    if let Some(who) = &root.acknowledged_by {
        e = field(e, "Acknowledged by", who);
    }
    if !opening.trim().is_empty() {
        e = e.description(clip(opening.trim(), DESCRIPTION_CHARS));
    }
    e
}

/// The root's buttons: Acknowledge (while triggered), Resolve (while open),
/// Rerun checks (with a runbook), and Propose for the runbook's actions.
pub fn root_buttons(root: &RootView) -> Vec<CreateActionRow> {
    let button = |id: &str, value: &str, label: &str, style: ButtonStyle| {
        CreateButton::new(clip(&custom_id(id, value), 100))
            .label(clip(label, LABEL_CHARS))
            .style(style)
    };
    let mut first = Vec::new();
    if root.open {
        if root.state == "triggered" {
            first.push(button(ACK, &root.id, "Acknowledge", ButtonStyle::Primary));
        }
        first.push(button(RESOLVE, &root.id, "Resolve", ButtonStyle::Success));
    }
    if let Some(rb) = &root.runbook {
        first.push(button(
            RERUN,
            &format!("{rb} {}", root.id),
            "Rerun checks",
            ButtonStyle::Secondary,
        ));
    }
    let proposals: Vec<CreateButton> = if root.open {
        root.actions
            .iter()
            .take(PROPOSE_BUTTONS)
            .enumerate()
            .map(|(i, a)| {
                button(
                    &format!("{PROPOSE}_{i}"),
                    &format!("{a} {}", root.id),
                    &format!("Propose {a}"),
                    ButtonStyle::Secondary,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    [first, proposals]
        .into_iter()
        .filter(|row| !row.is_empty())
        .map(CreateActionRow::Buttons)
        .collect()
}

/// `text` as messages of at most [`CONTENT_CHARS`], cut at line ends where
/// possible; past [`MESSAGES_A_POST`] messages the rest is left out with a
/// note.
pub fn split_content(text: &str) -> Vec<String> {
    let text = super::emoji::shown(text.trim_end());
    let text = text.as_ref();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut len = 0usize;
    for line in text.split_inclusive('\n') {
        let mut line = line;
        loop {
            let n = line.chars().count();
            if len + n <= CONTENT_CHARS {
                current.push_str(line);
                len += n;
                break;
            }
            if len > 0 {
                out.push(std::mem::take(&mut current));
                len = 0;
                continue;
            }
            // One line longer than a message: cut it.
            let at = line
                .char_indices()
                .nth(CONTENT_CHARS)
                .map_or(line.len(), |(i, _)| i);
            out.push(line[..at].to_string());
            line = &line[at..];
        }
    }
    if !current.trim().is_empty() || out.is_empty() {
        out.push(current);
    }
    if out.len() > MESSAGES_A_POST {
        let left = out.len() - MESSAGES_A_POST + 1;
        out.truncate(MESSAGES_A_POST);
        let note =
            format!("\n… ({left} more message(s) of this post left out: too long for Discord)");
        if let Some(last) = out.last_mut() {
            let keep = CONTENT_CHARS.saturating_sub(note.chars().count());
            *last = format!("{}{note}", clip(last, keep));
        }
    }
    out
}

/// The nonce of message `part` of outbox item `outbox_id` (at most 25
/// characters).
fn nonce(outbox_id: i64, part: usize) -> Nonce {
    Nonce::String(format!("fl{outbox_id}.{part}"))
}

/// Mentions nobody: text from alerts and runbooks is shown, not obeyed.
fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new().empty_users().empty_roles()
}

impl Discord {
    /// Sends `text` to `channel` as one or more messages; the first's id.
    async fn send_text(
        &self,
        channel: ChannelId,
        outbox_id: i64,
        text: &str,
        mentions: CreateAllowedMentions,
    ) -> Result<MessageId, ChatError> {
        let mut first = None;
        for (i, part) in split_content(text).into_iter().enumerate() {
            let msg = CreateMessage::new()
                .content(part)
                .allowed_mentions(mentions.clone())
                .nonce(nonce(outbox_id, i))
                .enforce_nonce(true);
            let sent = self.send_message(channel, &msg).await?;
            first.get_or_insert(sent.id);
        }
        first.ok_or_else(|| permanent("nothing to send".into()))
    }

    /// The incident's first message: the root (or the one already posted
    /// for this item), its thread, and the text in it.
    async fn open(&self, req: &PostRequest, root: &RootView) -> Result<Posted, ChatError> {
        let known = self
            .posting
            .roots
            .lock()
            .ok()
            .and_then(|r| r.get(&req.outbox_id).copied());
        let (channel, root_id) = match known {
            Some(k) => k,
            None => {
                let channel = channel_id(&req.channel)?;
                let msg = CreateMessage::new()
                    .embed(root_embed(root, &req.text))
                    .components(root_buttons(root))
                    .allowed_mentions(no_mentions())
                    .nonce(nonce(req.outbox_id, 99))
                    .enforce_nonce(true);
                let sent = self.send_message(channel, &msg).await?;
                if let Ok(mut r) = self.posting.roots.lock() {
                    r.insert(req.outbox_id, (channel, sent.id));
                }
                (channel, sent.id)
            }
        };
        let name = clip(&format!("{} {}", root.id, root.title), THREAD_NAME_CHARS).into_owned();
        let thread: GuildChannel = self
            .fire(
                Request::new(
                    Route::ChannelMessageThreads {
                        channel_id: channel,
                        message_id: root_id,
                    },
                    LightMethod::Post,
                )
                .body(Some(body(&CreateThread::new(name))?)),
            )
            .await?;
        if let Ok(mut r) = self.posting.roots.lock() {
            r.remove(&req.outbox_id);
        }
        let thread_ref = format!("{channel}/{root_id}/{}", thread.id);
        if !req.text.trim().is_empty() {
            self.send_text(thread.id, req.outbox_id, &req.text, no_mentions())
                .await?;
        }
        Ok(Posted {
            message_ref: format!("{channel}/{root_id}"),
            thread: thread_ref,
        })
    }
}

impl ChatPlatform for Discord {
    fn name(&self) -> &'static str {
        "discord"
    }

    async fn post(&self, req: &PostRequest) -> Result<Posted, ChatError> {
        match (&req.thread, &req.root) {
            (None, Some(root)) => self.open(req, root).await,
            (Some(thread), _) => {
                let at = Thread::parse(thread)?.target();
                let id = self
                    .send_text(at, req.outbox_id, &req.text, no_mentions())
                    .await?;
                Ok(Posted {
                    message_ref: format!("{at}/{id}"),
                    thread: thread.clone(),
                })
            }
            (None, None) => {
                let channel = channel_id(&req.channel)?;
                let id = self
                    .send_text(channel, req.outbox_id, &req.text, no_mentions())
                    .await?;
                let message_ref = format!("{channel}/{id}");
                Ok(Posted {
                    thread: message_ref.clone(),
                    message_ref,
                })
            }
        }
    }

    async fn post_mention(&self, req: &PostRequest, users: &[String]) -> Result<Posted, ChatError> {
        let ids = users
            .iter()
            .map(|u| snowflake("user", u).map(UserId::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (who, mentions) = if ids.is_empty() {
            (
                "@here".to_string(),
                CreateAllowedMentions::new()
                    .everyone(true)
                    .empty_users()
                    .empty_roles(),
            )
        } else {
            (
                ids.iter()
                    .map(|u| format!("<@{u}>"))
                    .collect::<Vec<_>>()
                    .join(" "),
                CreateAllowedMentions::new().users(ids).empty_roles(),
            )
        };
        let at = match &req.thread {
            Some(thread) => Thread::parse(thread)?.target(),
            None => channel_id(&req.channel)?,
        };
        let text = format!("{who} {}", req.text);
        let id = self.send_text(at, req.outbox_id, &text, mentions).await?;
        let message_ref = format!("{at}/{id}");
        Ok(Posted {
            thread: req.thread.clone().unwrap_or_else(|| message_ref.clone()),
            message_ref,
        })
    }

    async fn update(&self, message_ref: &str, text: &str) -> Result<(), ChatError> {
        let (channel, message) = split_ref(message_ref)?;
        let edit = EditMessage::new()
            .content(clip(&super::emoji::shown(text.trim_end()), CONTENT_CHARS))
            .allowed_mentions(no_mentions());
        self.edit_message(channel, message, &edit).await
    }

    async fn direct_message(&self, user: &str, text: &str) -> Result<(), ChatError> {
        let user = snowflake("user", user)?;
        let dm: PrivateChannel = self
            .fire(
                Request::new(Route::UserMeDmChannels, LightMethod::Post).body(Some(body(
                    &serde_json::json!({ "recipient_id": user.to_string() }),
                )?)),
            )
            .await?;
        let mut sent = false;
        for part in split_content(text) {
            let msg = CreateMessage::new()
                .content(part)
                .allowed_mentions(no_mentions());
            self.send_message(dm.id, &msg).await?;
            sent = true;
        }
        match sent {
            true => Ok(()),
            false => Err(permanent("nothing to send".into())),
        }
    }

    /// Messages are paced per channel, so a storm's posts for one thread
    /// pile up; the outbox sends them as one post (split at line ends
    /// where it passes Discord's 2,000 characters).
    fn merges_backlog(&self) -> bool {
        true
    }

    async fn refresh_root(&self, thread: &str, root: &RootView) -> Result<(), ChatError> {
        let Some((root_id, _)) = Thread::parse(thread)?.root else {
            return Ok(());
        };
        let channel = Thread::parse(thread)?.channel;
        let opening = root.opening.as_deref().unwrap_or("");
        let edit = EditMessage::new()
            .embed(root_embed(root, opening))
            .components(root_buttons(root));
        self.edit_message(channel, root_id, &edit).await
    }
}

/// A request's JSON body.
fn body(value: &impl serde::Serialize) -> Result<Vec<u8>, ChatError> {
    serde_json::to_vec(value).map_err(|e| permanent(format!("a request could not be written: {e}")))
}

impl Discord {
    /// `POST /channels/{channel}/messages`, at the channel's pace.
    async fn send_message(
        &self,
        channel: ChannelId,
        msg: &CreateMessage,
    ) -> Result<Message, ChatError> {
        self.posting.pace(channel).await;
        self.fire(
            Request::new(
                Route::ChannelMessages {
                    channel_id: channel,
                },
                LightMethod::Post,
            )
            .body(Some(body(msg)?)),
        )
        .await
    }

    /// `PATCH /channels/{channel}/messages/{message}`.
    async fn edit_message(
        &self,
        channel: ChannelId,
        message: MessageId,
        edit: &EditMessage,
    ) -> Result<(), ChatError> {
        let _: Message = self
            .fire(
                Request::new(
                    Route::ChannelMessage {
                        channel_id: channel,
                        message_id: message,
                    },
                    LightMethod::Patch,
                )
                .body(Some(body(edit)?)),
            )
            .await?;
        Ok(())
    }

    /// Sends `request` (a route of serenity's, with its JSON body) and
    /// reads Discord's answer. With serenity's rate limiter on (Discord
    /// itself) serenity sends it, keeping to the buckets and waiting out a
    /// 429. With it off (`api_url` set: a proxy, the tests), serenity
    /// would report a 429 without its `retry_after`, so the same request
    /// (serenity's URL at the proxy, the bot token, the body) is sent here
    /// and a 429 comes back as an error carrying the time Discord asked
    /// for.
    async fn fire<T: serde::de::DeserializeOwned>(
        &self,
        request: Request<'_>,
    ) -> Result<T, ChatError> {
        let (Some(proxy), None) = (&self.http.proxy, &self.http.ratelimiter) else {
            return self.http.fire(request).await.map_err(chat_error);
        };
        let client = self
            .posting
            .rest
            .get_or_init(rest_client)
            .as_ref()
            .map_err(|e| retryable(e.clone(), None))?;
        let method = match request.method_ref() {
            LightMethod::Delete => reqwest::Method::DELETE,
            LightMethod::Get => reqwest::Method::GET,
            LightMethod::Patch => reqwest::Method::PATCH,
            LightMethod::Post => reqwest::Method::POST,
            LightMethod::Put => reqwest::Method::PUT,
        };
        // As serenity's `Request::build` does with a proxy.
        let path = request.route_ref().path().into_owned();
        let url = path.replace("https://discord.com", proxy.trim_end_matches('/'));
        let shown = format!("{method} {}", path.replace("https://discord.com", ""));
        let mut send = client
            .request(method, &url)
            .header("authorization", self.http.token())
            .header("user-agent", serenity::constants::USER_AGENT);
        if let Some(params) = request.params_ref() {
            send = send.query(params);
        }
        if let Some(bytes) = request.body_ref() {
            send = send
                .header("content-type", "application/json")
                .body(bytes.to_vec());
        }
        let answer = send.send().await.map_err(|e| {
            retryable(
                format!("{shown} could not be sent: {}", e.without_url()),
                None,
            )
        })?;
        let status = answer.status().as_u16();
        let header_wait = answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(seconds);
        let bytes = answer.bytes().await.map_err(|e| {
            retryable(
                format!("{shown}: the answer could not be read: {}", e.without_url()),
                None,
            )
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| {
                retryable(
                    format!("{shown}: Discord's answer was not understood: {e}"),
                    None,
                )
            });
        }
        let said: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let words = said["message"].as_str().unwrap_or("(no message)");
        let message = format!("discord answered {status} to {shown}: {}", clip(words, 200));
        Err(match status {
            429 => {
                let wait = said["retry_after"]
                    .as_f64()
                    .and_then(wait_of)
                    .or(header_wait)
                    .unwrap_or(RATE_LIMITED_WAIT);
                retryable(message, Some(wait))
            }
            400..=499 => permanent(message),
            _ => retryable(message, None),
        })
    }
}

/// `Retry-After` in seconds (`1.5`) as a time to wait.
fn seconds(s: &str) -> Option<Duration> {
    wait_of(s.trim().parse().ok()?)
}

/// A `retry_after` in seconds as a time to wait, within reason.
fn wait_of(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s).min(RETRY_AFTER_AT_MOST))
}

/// The HTTP client for requests through `api_url`: rustls with the
/// process's crypto provider, no redirects (the token must not follow
/// one).
fn rest_client() -> Result<reqwest::Client, String> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("discord: the HTTP client for api_url: {}", e.without_url()))
}

fn retryable(message: String, retry_after: Option<Duration>) -> ChatError {
    ChatError {
        platform: "discord",
        message,
        retry_after,
        retryable: true,
    }
}

fn permanent(message: String) -> ChatError {
    ChatError {
        platform: "discord",
        message,
        retry_after: None,
        retryable: false,
    }
}

/// serenity's error as the outbox needs it: a 429 is retried after a
/// moment (serenity's own limiter, on against Discord, waits out
/// `retry_after` itself before this is reached; without it
/// [`Discord::fire`] reads the time); another 4xx is a request
/// Discord will never take; 5xx, network and decoding errors are retried.
/// The message names the status and Discord's words, never the token.
pub fn chat_error(e: serenity::Error) -> ChatError {
    match &e {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(r)) => {
            let status = r.status_code.as_u16();
            let message = format!(
                "discord answered {status} to {} {}: {}",
                r.method,
                r.url.split('?').next().unwrap_or_default(),
                clip(&r.error.message, 200)
            );
            match status {
                429 => ChatError {
                    platform: "discord",
                    message,
                    retry_after: Some(RATE_LIMITED_WAIT),
                    retryable: true,
                },
                400..=499 => permanent(message),
                _ => ChatError {
                    platform: "discord",
                    message,
                    retry_after: None,
                    retryable: true,
                },
            }
        }
        _ => ChatError {
            platform: "discord",
            message: clip(&e.to_string(), 300).into_owned(),
            retry_after: None,
            retryable: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(state: &str) -> RootView {
        RootView {
            id: "INC-7".into(),
            title: "Workflow events failing".into(),
            severity: "P1".into(),
            state: state.into(),
            runbook: Some("workflow-events-failed".into()),
            failure_modes: vec!["FM-OB-01".into()],
            ttd: Some("3m10s".into()),
            acknowledged_by: (state != "triggered").then(|| "Nelly (discord:8035)".into()),
            open: state != "resolved",
            opening: None,
            actions: vec!["restart_worker".into()],
        }
    }

    #[test]
    fn the_root_embed_shows_the_facts_and_the_buttons_parse_as_commands() {
        let e =
            serde_json::to_value(root_embed(&root("triggered"), "2 alerts firing")).expect("json");
        assert_eq!(e["title"], "INC-7 [P1] Workflow events failing");
        assert_eq!(e["description"], "2 alerts firing");
        assert_eq!(e["color"], 0xE01E5A);
        let fields = e["fields"].to_string();
        assert!(fields.contains("workflow-events-failed"), "{fields}");
        assert!(fields.contains("3m10s"), "{fields}");
        let rows = serde_json::to_value(root_buttons(&root("triggered"))).expect("json");
        let ids: Vec<String> = rows
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["custom_id"].as_str().map(str::to_string))
            .collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        let lines: Vec<String> = ids
            .iter()
            .filter_map(|id| super::super::interactions::button_line(id))
            .collect();
        assert_eq!(
            lines,
            [
                "/incident ack INC-7",
                "/incident resolve INC-7",
                "/runbook run workflow-events-failed INC-7",
                "/action propose restart_worker INC-7"
            ]
        );
        let acked = serde_json::to_value(root_buttons(&root("acknowledged"))).expect("json");
        assert!(!acked.to_string().contains(ACK), "{acked}");
        let resolved = serde_json::to_value(root_buttons(&root("resolved"))).expect("json");
        assert!(!resolved.to_string().contains(RESOLVE), "{resolved}");
        assert!(resolved.to_string().contains(RERUN), "{resolved}");
    }

    #[test]
    fn long_text_is_split_into_messages_discord_takes_and_cut_with_a_note() {
        assert_eq!(split_content("short"), ["short"]);
        let lines = "a line of findings\n".repeat(200);
        let parts = split_content(&lines);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= CONTENT_CHARS));
        assert_eq!(parts.concat(), lines.trim_end());
        let huge = "x".repeat(CONTENT_CHARS * 10);
        let parts = split_content(&huge);
        assert_eq!(parts.len(), MESSAGES_A_POST);
        assert!(parts.iter().all(|p| p.chars().count() <= CONTENT_CHARS));
        assert!(parts[MESSAGES_A_POST - 1].contains("left out"));
    }

    #[test]
    fn a_retry_after_is_read_in_seconds_and_kept_within_reason() {
        assert_eq!(wait_of(1.5), Some(Duration::from_millis(1_500)));
        assert_eq!(seconds(" 0.05 "), Some(Duration::from_millis(50)));
        assert_eq!(seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(wait_of(-1.0), None);
        assert_eq!(wait_of(f64::NAN), None);
        assert_eq!(seconds("soon"), None);
        assert_eq!(wait_of(1e12), Some(RETRY_AFTER_AT_MOST));
    }

    #[test]
    fn thread_and_message_refs_parse() {
        let t = Thread::parse("12/34/56").expect("thread");
        assert_eq!(t.channel, ChannelId::new(12));
        assert_eq!(t.root, Some((MessageId::new(34), ChannelId::new(56))));
        assert_eq!(t.target(), ChannelId::new(56));
        assert_eq!(
            Thread::parse("12/34").expect("plain").target(),
            ChannelId::new(12)
        );
        assert!(Thread::parse("console-3").is_err());
        assert!(Thread::parse("a/b/c").is_err());
        assert!(split_ref("12/34").is_ok());
        assert!(split_ref("12").is_err());
    }
}
