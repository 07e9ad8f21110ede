//! A fake Slack Web API for tests, plus helpers that sign requests the way
//! Slack does.
//!
//! [`FakeSlack::start`] runs an axum server on a free loopback port that
//! speaks Slack's documented request and response shapes, so the real
//! slack-morphism client can be pointed at it with
//! `SlackClientHyperConnector::with_slack_api_url(&fake.api_url())` (see
//! [`slack_client`]). Every call is recorded ([`FakeSlack::calls`]); messages,
//! threads, ephemerals and what was POSTed to a `response_url` can be read
//! back; rate limits, HTTP failures and slowness can be scripted.
//!
//! What slack-morphism 2.31 sends (checked in its source):
//! - the URL is `format!("{api_url}/{method}")`, so `api_url` has **no**
//!   trailing slash (its default is `https://slack.com/api`). The fake also
//!   accepts `/api//{method}`, so a trailing slash does no harm either.
//! - `auth.test`, `users.info`, `conversations.info` (and the other read
//!   methods): `GET` with query parameters, no body.
//! - `chat.postMessage`, `chat.update`, `chat.postEphemeral`,
//!   `conversations.create|invite|join|open`: `POST` with a JSON body
//!   (`content-type: application/json; charset=utf-8`); `users` in
//!   `conversations.invite`/`open` is a JSON array, not Slack's comma list.
//! - every session call carries `Authorization: Bearer <token>`;
//!   `respond_to_event` (a `response_url`) carries no token.
//! - an HTTP 200 JSON answer with an `error` field becomes
//!   `SlackClientError::ApiError`, a 429 becomes `RateLimitError` with
//!   `retry_after` from `Retry-After` (seconds), any other status `HttpError`.
//!
//! The fake accepts form bodies (`application/x-www-form-urlencoded`) too, as
//! Slack does; [`Call::body`] is a JSON object either way.
//!
//! Socket Mode (`apps.connections.open` and the WebSocket it points to) is
//! in [`socket`].

#![allow(dead_code)]

// A path relative to this file, so the bench that includes it finds it too.
#[path = "fake_slack/socket.rs"]
mod socket;

pub(crate) use socket::{command_payload, envelope, redelivery};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};

/// The team, bot user and bot id the fake answers `auth.test` with.
pub(crate) const FAKE_TEAM_ID: &str = "T0FAKE";
pub(crate) const FAKE_BOT_USER_ID: &str = "U0BOT";
pub(crate) const FAKE_BOT_ID: &str = "B0BOT";
/// The `api_app_id` and verification `token` the body builders put in.
pub(crate) const FAKE_APP_ID: &str = "A0FAKE";
pub(crate) const FAKE_VERIFICATION_TOKEN: &str = "fakeVerificationToken0";

/// Slack's worked example from "Verifying requests from Slack"
/// (api.slack.com/authentication/verifying-requests-from-slack): this secret,
/// timestamp and body give [`SLACK_DOC_SIGNATURE`].
pub(crate) const SLACK_DOC_SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub(crate) const SLACK_DOC_TIMESTAMP: i64 = 1531420618;
pub(crate) const SLACK_DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
pub(crate) const SLACK_DOC_SIGNATURE: &str =
    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

/// First `ts` handed out; later ones grow by 100 µs (`1733380000.000100`,
/// `1733380000.000200`, …), so they are unique and sort as strings.
const TS_BASE_MICROS: u64 = 1_733_380_000_000_000;

// ---------------------------------------------------------------------------
// Recorded state
// ---------------------------------------------------------------------------

/// One Web API call as the fake saw and answered it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The Slack method, e.g. `chat.postMessage`.
    pub method: String,
    /// `GET` or `POST`.
    pub http_method: String,
    /// Query parameters and body merged into one JSON object (body wins).
    /// Form values are strings, except `blocks`/`attachments`/`metadata`,
    /// which are parsed when they hold JSON.
    pub body: Value,
    /// The HTTP status answered (200 also for Slack errors, 429, 5xx …).
    pub status: u16,
    /// The Slack `error` code answered, if any (`invalid_auth`, `ratelimited`…).
    pub error: Option<String>,
    /// When the call arrived (after any scripted delay).
    pub at: Instant,
}

/// A message posted with `chat.postMessage`, as last updated by `chat.update`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Message {
    pub channel: String,
    pub ts: String,
    /// The thread root's ts for a reply, `None` for a top-level message.
    pub thread_ts: Option<String>,
    /// The text (empty when the message was sent with blocks only).
    pub text: String,
    /// The `blocks` array as sent, if any.
    pub blocks: Option<Value>,
    /// How many `chat.update` calls changed it.
    pub updates: u32,
}

/// A `chat.postEphemeral` message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Option<Value>,
    pub thread_ts: Option<String>,
    pub message_ts: String,
}

#[derive(Debug, Clone)]
struct Channel {
    id: String,
    name: String,
    created: u64,
    members: Vec<String>,
}

#[derive(Debug, Clone)]
struct User {
    id: String,
    name: String,
    real_name: String,
    is_bot: bool,
}

/// Everything the fake knows. [`FakeSlack::wait_for`] hands it to its
/// predicate; the read methods here are the same as on [`FakeSlack`].
#[derive(Debug)]
pub(crate) struct FakeState {
    bot_token: String,
    /// The app-level token `apps.connections.open` takes, once set.
    app_token: Option<String>,
    socket: socket::SocketState,
    calls: Vec<Call>,
    messages: Vec<Message>,
    ephemerals: Vec<Ephemeral>,
    responses: HashMap<String, Vec<Value>>,
    ratelimited: usize,
    next_ts: u64,
    next_id: u32,
    /// Channels known by id. While `strict_channels` is false any id that
    /// starts with `C` exists as well.
    channels: HashMap<String, Channel>,
    strict_channels: bool,
    /// `conversations.open`: sorted user list -> `D…` id.
    ims: HashMap<Vec<String>, String>,
    users: HashMap<String, User>,
    post_rate: Option<u32>,
    post_log: HashMap<String, VecDeque<Instant>>,
    failures: HashMap<String, VecDeque<u16>>,
    delays: HashMap<String, Duration>,
}

impl FakeState {
    fn new(bot_token: &str) -> Self {
        let mut users = HashMap::new();
        users.insert(
            FAKE_BOT_USER_ID.to_string(),
            User {
                id: FAKE_BOT_USER_ID.into(),
                name: "firstline".into(),
                real_name: "firstline".into(),
                is_bot: true,
            },
        );
        FakeState {
            bot_token: bot_token.to_string(),
            app_token: None,
            socket: socket::SocketState::default(),
            calls: Vec::new(),
            messages: Vec::new(),
            ephemerals: Vec::new(),
            responses: HashMap::new(),
            ratelimited: 0,
            next_ts: 0,
            next_id: 0,
            channels: HashMap::new(),
            strict_channels: false,
            ims: HashMap::new(),
            users,
            post_rate: None,
            post_log: HashMap::new(),
            failures: HashMap::new(),
            delays: HashMap::new(),
        }
    }

    /// Every API call so far, in arrival order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.clone()
    }

    /// How many calls of `method` arrived (whatever they were answered).
    pub(crate) fn count(&self, method: &str) -> usize {
        self.calls.iter().filter(|c| c.method == method).count()
    }

    /// How many calls of `method` were answered `{"ok": true}`.
    pub(crate) fn count_ok(&self, method: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| c.method == method && c.status == 200 && c.error.is_none())
            .count()
    }

    /// How many HTTP 429 answers were sent.
    pub(crate) fn ratelimited(&self) -> usize {
        self.ratelimited
    }

    /// The messages posted to `channel` (top-level and thread replies), in
    /// posting order, with text and blocks as last updated.
    pub(crate) fn channel_messages(&self, channel: &str) -> Vec<Message> {
        self.messages
            .iter()
            .filter(|m| m.channel == channel)
            .cloned()
            .collect()
    }

    /// The replies in the thread under `root_ts` in `channel`, in order.
    pub(crate) fn thread(&self, channel: &str, root_ts: &str) -> Vec<Message> {
        self.messages
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(root_ts))
            .cloned()
            .collect()
    }

    /// The message `ts` in `channel`, if posted.
    pub(crate) fn message(&self, channel: &str, ts: &str) -> Option<Message> {
        self.messages
            .iter()
            .find(|m| m.channel == channel && m.ts == ts)
            .cloned()
    }

    /// Every `chat.postEphemeral` message, in order.
    pub(crate) fn ephemerals(&self) -> Vec<Ephemeral> {
        self.ephemerals.clone()
    }

    /// What was POSTed to `response_url(id)`, in order: JSON bodies as sent
    /// (a body that is not JSON is kept as a JSON string).
    pub(crate) fn responses(&self, id: &str) -> Vec<Value> {
        self.responses.get(id).cloned().unwrap_or_default()
    }

    /// The members recorded for `channel` (by `conversations.invite`/`join`).
    pub(crate) fn members(&self, channel: &str) -> Vec<String> {
        self.channels
            .get(channel)
            .map(|c| c.members.clone())
            .unwrap_or_default()
    }

    /// The id of a channel created or added under `name`.
    pub(crate) fn channel_id_by_name(&self, name: &str) -> Option<String> {
        self.channels
            .values()
            .find(|c| c.name == name)
            .map(|c| c.id.clone())
    }

    // ----- internals -------------------------------------------------------

    fn new_ts(&mut self) -> String {
        self.next_ts += 1;
        let micros = TS_BASE_MICROS + self.next_ts * 100;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}0FAKE{:04}", self.next_id)
    }

    fn channel_exists(&self, id: &str) -> bool {
        self.channels.contains_key(id) || (!self.strict_channels && id.starts_with('C'))
    }

    /// The channel `id`, materialised if it exists only by the default rule.
    fn channel_mut(&mut self, id: &str) -> Option<&mut Channel> {
        if !self.channel_exists(id) {
            return None;
        }
        Some(
            self.channels
                .entry(id.to_string())
                .or_insert_with(|| Channel {
                    id: id.to_string(),
                    name: id.to_lowercase(),
                    created: now_secs(),
                    members: Vec::new(),
                }),
        )
    }

    fn record(&mut self, method: &str, http: &Method, body: Value, status: u16, err: Option<&str>) {
        self.calls.push(Call {
            method: method.to_string(),
            http_method: http.to_string(),
            body,
            status,
            error: err.map(str::to_string),
            at: Instant::now(),
        });
    }

    /// Answers one authenticated call: the fields beside `"ok": true`, or a
    /// Slack error code.
    fn dispatch(
        &mut self,
        method: &str,
        p: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        match method {
            "auth.test" => Ok(obj(json!({
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "firstline",
                "team_id": FAKE_TEAM_ID,
                "user_id": FAKE_BOT_USER_ID,
                "bot_id": FAKE_BOT_ID,
                "is_enterprise_install": false,
            }))),
            "chat.postMessage" => self.post_message(p),
            "chat.update" => self.update_message(p),
            "chat.postEphemeral" => self.post_ephemeral(p),
            "conversations.create" => self.create_channel(p),
            "conversations.invite" => self.invite(p),
            "conversations.join" => {
                let id = param(p, "channel").ok_or("channel_not_found")?;
                let ch = self.channel_mut(&id).ok_or("channel_not_found")?;
                let already = ch.members.iter().any(|m| m == FAKE_BOT_USER_ID);
                if !already {
                    ch.members.push(FAKE_BOT_USER_ID.to_string());
                }
                let ch = ch.clone();
                let mut out = obj(json!({ "channel": channel_json(&ch) }));
                if already {
                    out.insert("warning".into(), json!("already_in_channel"));
                    out.insert(
                        "response_metadata".into(),
                        json!({ "warnings": ["already_in_channel"] }),
                    );
                }
                Ok(out)
            }
            "conversations.open" => self.open_im(p),
            "apps.connections.open" => Ok(self.socket.open_url()),
            "conversations.info" => {
                let id = param(p, "channel").ok_or("channel_not_found")?;
                let ch = self.channel_mut(&id).ok_or("channel_not_found")?.clone();
                Ok(obj(json!({ "channel": channel_json(&ch) })))
            }
            "users.info" => {
                let id = param(p, "user").ok_or("user_not_found")?;
                let u = self.users.get(&id).ok_or("user_not_found")?;
                Ok(obj(json!({ "user": user_json(u) })))
            }
            _ => Err("unknown_method".into()),
        }
    }

    fn post_message(&mut self, p: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let channel = param(p, "channel").ok_or("channel_not_found")?;
        if !self.channel_exists(&channel) && !self.is_open_im(&channel) {
            return Err("channel_not_found".into());
        }
        let text = param(p, "text");
        let blocks = p.get("blocks").filter(|b| !b.is_null()).cloned();
        if text.as_deref().unwrap_or("").is_empty() && blocks.is_none() {
            return Err("no_text".into());
        }
        // Slack files a reply to a reply under the thread's root.
        let thread_ts = param(p, "thread_ts").map(|t| {
            self.messages
                .iter()
                .find(|m| m.channel == channel && m.ts == t)
                .and_then(|m| m.thread_ts.clone())
                .unwrap_or(t)
        });
        let ts = self.new_ts();
        let msg = Message {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts: thread_ts.clone(),
            text: text.unwrap_or_default(),
            blocks,
            updates: 0,
        };
        let message_json = message_json(&msg);
        self.messages.push(msg);
        Ok(obj(
            json!({ "channel": channel, "ts": ts, "message": message_json }),
        ))
    }

    fn update_message(&mut self, p: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let channel = param(p, "channel").ok_or("channel_not_found")?;
        if !self.channel_exists(&channel) && !self.is_open_im(&channel) {
            return Err("channel_not_found".into());
        }
        let ts = param(p, "ts").ok_or("message_not_found")?;
        let text = param(p, "text");
        let blocks = p.get("blocks").filter(|b| !b.is_null()).cloned();
        if text.is_none() && blocks.is_none() {
            return Err("no_text".into());
        }
        let msg = self
            .messages
            .iter_mut()
            .find(|m| m.channel == channel && m.ts == ts)
            .ok_or("message_not_found")?;
        // Fields left out keep their previous value, as Slack documents.
        if let Some(text) = text {
            msg.text = text;
        }
        if let Some(blocks) = blocks {
            msg.blocks = Some(blocks);
        }
        msg.updates += 1;
        let msg = msg.clone();
        let mut out = obj(json!({
            "channel": channel,
            "ts": ts,
            "text": msg.text,
            "message": message_json(&msg),
        }));
        if let Some(t) = &msg.thread_ts {
            out.insert("thread_ts".into(), json!(t));
        }
        Ok(out)
    }

    fn post_ephemeral(&mut self, p: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let channel = param(p, "channel").ok_or("channel_not_found")?;
        if !self.channel_exists(&channel) && !self.is_open_im(&channel) {
            return Err("channel_not_found".into());
        }
        let user = param(p, "user").ok_or("user_not_in_channel")?;
        let text = param(p, "text");
        let blocks = p.get("blocks").filter(|b| !b.is_null()).cloned();
        if text.as_deref().unwrap_or("").is_empty() && blocks.is_none() {
            return Err("no_text".into());
        }
        let message_ts = self.new_ts();
        self.ephemerals.push(Ephemeral {
            channel,
            user,
            text: text.unwrap_or_default(),
            blocks,
            thread_ts: param(p, "thread_ts"),
            message_ts: message_ts.clone(),
        });
        Ok(obj(json!({ "message_ts": message_ts })))
    }

    fn create_channel(&mut self, p: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let name = param(p, "name").unwrap_or_default();
        if name.is_empty() {
            return Err("invalid_name_required".into());
        }
        if name.chars().count() > 80 {
            return Err("invalid_name_maxlength".into());
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err("invalid_name_specials".into());
        }
        if self.channels.values().any(|c| c.name == name) {
            return Err("name_taken".into());
        }
        let id = self.new_id("C");
        let ch = Channel {
            id: id.clone(),
            name,
            created: now_secs(),
            members: vec![FAKE_BOT_USER_ID.to_string()],
        };
        self.channels.insert(id, ch.clone());
        Ok(obj(json!({ "channel": channel_json(&ch) })))
    }

    fn invite(&mut self, p: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let id = param(p, "channel").ok_or("channel_not_found")?;
        let users = user_list(p.get("users"));
        if users.is_empty() {
            return Err("no_user".into());
        }
        if users.iter().any(|u| u == FAKE_BOT_USER_ID) {
            return Err("cant_invite_self".into());
        }
        if users
            .iter()
            .any(|u| !(u.starts_with('U') || u.starts_with('W')))
        {
            return Err("user_not_found".into());
        }
        let ch = self.channel_mut(&id).ok_or("channel_not_found")?;
        if users.iter().all(|u| ch.members.contains(u)) {
            return Err("already_in_channel".into());
        }
        for u in users {
            if !ch.members.contains(&u) {
                ch.members.push(u);
            }
        }
        let ch = ch.clone();
        Ok(obj(json!({ "channel": channel_json(&ch) })))
    }

    fn open_im(&mut self, p: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        if let Some(channel) = param(p, "channel") {
            if !self.is_open_im(&channel) && !self.channel_exists(&channel) {
                return Err("channel_not_found".into());
            }
            return Ok(obj(
                json!({ "channel": { "id": channel }, "already_open": true }),
            ));
        }
        let mut users = user_list(p.get("users"));
        if users.is_empty() {
            return Err("users_list_not_supplied".into());
        }
        if users.len() > 8 {
            return Err("too_many_users".into());
        }
        users.sort();
        users.dedup();
        if let Some(id) = self.ims.get(&users) {
            return Ok(obj(
                json!({ "channel": { "id": id }, "already_open": true }),
            ));
        }
        let id = self.new_id(if users.len() > 1 { "G" } else { "D" });
        self.ims.insert(users, id.clone());
        Ok(obj(json!({ "channel": { "id": id } })))
    }

    fn is_open_im(&self, id: &str) -> bool {
        self.ims.values().any(|v| v == id)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A parameter as a string (JSON strings as they are, numbers and booleans
/// printed), `None` when absent or null.
fn param(p: &Map<String, Value>, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `users` as slack-morphism sends it (a JSON array) or as Slack documents it
/// (a comma-separated string).
fn user_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn message_json(m: &Message) -> Value {
    let mut v = json!({
        "type": "message",
        "subtype": "bot_message",
        "text": m.text,
        "user": FAKE_BOT_USER_ID,
        "bot_id": FAKE_BOT_ID,
        "app_id": FAKE_APP_ID,
        "team": FAKE_TEAM_ID,
        "ts": m.ts,
    });
    if let Some(b) = &m.blocks {
        v["blocks"] = b.clone();
    }
    if let Some(t) = &m.thread_ts {
        v["thread_ts"] = json!(t);
    }
    v
}

fn channel_json(c: &Channel) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "name_normalized": c.name,
        "created": c.created,
        "creator": FAKE_BOT_USER_ID,
        "is_channel": true,
        "is_group": false,
        "is_im": false,
        "is_mpim": false,
        "is_private": false,
        "is_archived": false,
        "is_general": false,
        "is_shared": false,
        "is_org_shared": false,
        "is_member": c.members.iter().any(|m| m == FAKE_BOT_USER_ID),
        "num_members": c.members.len(),
        "topic": { "value": "", "creator": "", "last_set": 0 },
        "purpose": { "value": "", "creator": "", "last_set": 0 },
        "previous_names": [],
    })
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "team_id": FAKE_TEAM_ID,
        "name": u.name,
        "real_name": u.real_name,
        "deleted": false,
        "is_bot": u.is_bot,
        "is_admin": false,
        "is_owner": false,
        "tz": "Europe/London",
        "tz_label": "Greenwich Mean Time",
        "tz_offset": 0,
        "profile": {
            "display_name": u.name,
            "display_name_normalized": u.name,
            "real_name": u.real_name,
            "real_name_normalized": u.real_name,
            "team": FAKE_TEAM_ID,
        },
    })
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

type Shared = Arc<Mutex<FakeState>>;

fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    // A test that panicked while holding the lock must not hide the state.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fake Slack Web API on a loopback port; it stops when dropped.
pub(crate) struct FakeSlack {
    addr: std::net::SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
    /// The Socket Mode WebSocket server.
    sockets: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
        self.sockets.abort();
    }
}

impl FakeSlack {
    /// Starts the fake on `127.0.0.1:0`. API calls must carry
    /// `Authorization: Bearer <bot_token>`.
    pub(crate) async fn start(bot_token: &str) -> FakeSlack {
        let state: Shared = Arc::new(Mutex::new(FakeState::new(bot_token)));
        let app = Router::new()
            .route("/response/{id}", post(response_sink))
            .fallback(api)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Slack to a loopback port");
        let addr = listener.local_addr().expect("fake Slack address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let sockets = socket::serve(state.clone()).await;
        FakeSlack {
            addr,
            state,
            server,
            sockets,
        }
    }

    /// `http://127.0.0.1:PORT/api`: the value for
    /// `SlackClientHyperConnector::with_slack_api_url`, which joins it to the
    /// method as `{api_url}/{method}` (hence no trailing slash).
    pub(crate) fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A URL to hand out as a slash command's or interaction's
    /// `response_url`; what is POSTed there is kept under `id`
    /// ([`FakeSlack::responses`]).
    pub(crate) fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{}", self.addr, form_encode(id))
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }

    // ----- set-up ----------------------------------------------------------

    /// Declares a channel. The first call makes the declared set
    /// authoritative: until then any id starting with `C` exists; after it,
    /// only declared channels, those made by `conversations.create` and
    /// opened DMs do (others answer `channel_not_found`).
    pub(crate) fn add_channel(&self, id: &str) {
        self.add_channel_named(id, &id.to_lowercase());
    }

    /// [`FakeSlack::add_channel`] with a channel name (for `conversations.info`
    /// and `name_taken`).
    pub(crate) fn add_channel_named(&self, id: &str, name: &str) {
        let mut s = self.state();
        s.strict_channels = true;
        s.channels.insert(
            id.to_string(),
            Channel {
                id: id.to_string(),
                name: name.to_string(),
                created: now_secs(),
                members: Vec::new(),
            },
        );
    }

    /// Adds a user for `users.info`; the display name is `name`.
    pub(crate) fn add_user(&self, id: &str, name: &str, real_name: &str) {
        self.state().users.insert(
            id.to_string(),
            User {
                id: id.into(),
                name: name.into(),
                real_name: real_name.into(),
                is_bot: false,
            },
        );
    }

    /// From now on, more than `per_channel_per_second` `chat.postMessage`
    /// calls for one channel within a (sliding) second are answered HTTP 429,
    /// `Retry-After: 1`, `{"ok":false,"error":"ratelimited"}`; 0 turns it off.
    /// Only accepted posts count towards the window.
    pub(crate) fn enforce_post_rate(&self, per_channel_per_second: u32) {
        let mut s = self.state();
        s.post_rate = (per_channel_per_second > 0).then_some(per_channel_per_second);
        s.post_log.clear();
    }

    /// Answers the next `n` calls of `method` with HTTP `status` (before
    /// auth is checked). A 429 comes with `Retry-After: 1` and counts in
    /// [`FakeSlack::ratelimited`]; other statuses get a plain-text body.
    /// Calls queue up: `fail_next(m, 1, 500)` then `fail_next(m, 1, 503)`
    /// fails with 500 and then 503.
    pub(crate) fn fail_next(&self, method: &str, n: usize, status: u16) {
        let mut s = self.state();
        let q = s.failures.entry(method.to_string()).or_default();
        q.extend(std::iter::repeat_n(status, n));
    }

    /// Makes every call of `method` wait `delay` before it is handled;
    /// `Duration::ZERO` removes the delay.
    pub(crate) fn delay(&self, method: &str, delay: Duration) {
        let mut s = self.state();
        if delay.is_zero() {
            s.delays.remove(method);
        } else {
            s.delays.insert(method.to_string(), delay);
        }
    }

    // ----- inspection ------------------------------------------------------

    /// Every API call so far, in arrival order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state().calls()
    }

    /// The calls of `method`, in arrival order.
    pub(crate) fn calls_of(&self, method: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// How many calls of `method` arrived (whatever they were answered).
    pub(crate) fn count(&self, method: &str) -> usize {
        self.state().count(method)
    }

    /// How many calls of `method` were answered `{"ok": true}`.
    pub(crate) fn count_ok(&self, method: &str) -> usize {
        self.state().count_ok(method)
    }

    /// How many HTTP 429 answers were sent.
    pub(crate) fn ratelimited(&self) -> usize {
        self.state().ratelimited()
    }

    /// Messages in `channel` (top-level and replies) in posting order, with
    /// text and blocks as last updated.
    pub(crate) fn channel_messages(&self, channel: &str) -> Vec<Message> {
        self.state().channel_messages(channel)
    }

    /// Replies in the thread under `root_ts`, in order.
    pub(crate) fn thread(&self, channel: &str, root_ts: &str) -> Vec<Message> {
        self.state().thread(channel, root_ts)
    }

    /// The message `ts` in `channel`, if posted.
    pub(crate) fn message(&self, channel: &str, ts: &str) -> Option<Message> {
        self.state().message(channel, ts)
    }

    /// Every `chat.postEphemeral` message, in order.
    pub(crate) fn ephemerals(&self) -> Vec<Ephemeral> {
        self.state().ephemerals()
    }

    /// What was POSTed to `response_url(id)`, in order.
    pub(crate) fn responses(&self, id: &str) -> Vec<Value> {
        self.state().responses(id)
    }

    /// Members recorded for `channel` by `conversations.invite`/`join`.
    pub(crate) fn members(&self, channel: &str) -> Vec<String> {
        self.state().members(channel)
    }

    /// Polls `pred` every 20 ms until it holds (true) or `timeout` passes
    /// (false, after one last look).
    pub(crate) fn channel_id_by_name(&self, name: &str) -> Option<String> {
        self.state().channel_id_by_name(name)
    }

    pub(crate) async fn wait_for<F>(&self, pred: F, timeout: Duration) -> bool
    where
        F: Fn(&FakeState) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.state()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn slack_error(code: &str) -> Response {
    json_response(StatusCode::OK, json!({ "ok": false, "error": code }))
}

fn ratelimited_response() -> Response {
    let mut r = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({ "ok": false, "error": "ratelimited" }),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Query parameters and body as one JSON object.
fn parse_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, v) in form_decode(uri.query().unwrap_or("")) {
        out.insert(k, Value::String(v));
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(out);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => return Err("invalid_json".into()),
        }
    } else if content_type.is_empty()
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        let text = std::str::from_utf8(body).map_err(|_| "invalid_form_data".to_string())?;
        for (k, v) in form_decode(text) {
            let value = match k.as_str() {
                "blocks" | "attachments" | "metadata" => {
                    serde_json::from_str(&v).unwrap_or(Value::String(v))
                }
                _ => Value::String(v),
            };
            out.insert(k, value);
        }
    } else {
        return Err("invalid_form_data".into());
    }
    Ok(out)
}

/// Every path that is not a `response_url`: `/api/{method}` (also
/// `/api//{method}`).
async fn api(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(name) = uri.path().strip_prefix("/api/") else {
        return (StatusCode::NOT_FOUND, "not a Slack API path").into_response();
    };
    let name = name.trim_start_matches('/').to_string();
    if method != Method::GET && method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "GET or POST").into_response();
    }

    let delay = lock(&shared).delays.get(&name).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let params = parse_params(&uri, &headers, &body);
    let recorded = Value::Object(params.clone().unwrap_or_default());
    let mut st = lock(&shared);

    // Scripted HTTP failures come first, as an overloaded edge would.
    let failure = st.failures.get_mut(&name).and_then(|q| q.pop_front());
    if let Some(status) = failure {
        if status == 429 {
            st.ratelimited += 1;
            st.record(&name, &method, recorded, 429, Some("ratelimited"));
            return ratelimited_response();
        }
        st.record(&name, &method, recorded, status, None);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "fake Slack: failure scripted by fail_next").into_response();
    }

    // Auth: the bearer token, answered HTTP 200 as Slack does. Socket
    // Mode's `apps.connections.open` takes the app-level token and nothing
    // else does; the other kind of token is `not_allowed_token_type`.
    let bearer = |t: &Option<String>| t.as_ref().map(|t| format!("Bearer {t}"));
    let (expected, other) = if name == "apps.connections.open" {
        (
            bearer(&st.app_token),
            Some(format!("Bearer {}", st.bot_token)),
        )
    } else {
        (
            Some(format!("Bearer {}", st.bot_token)),
            bearer(&st.app_token),
        )
    };
    let auth_error = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None => Some("not_authed"),
        Some(v) if expected.as_deref() == Some(v) => None,
        Some(v) if other.as_deref() == Some(v) => Some("not_allowed_token_type"),
        Some(_) => Some("invalid_auth"),
    };
    if let Some(code) = auth_error {
        st.record(&name, &method, recorded, 200, Some(code));
        return slack_error(code);
    }

    let params = match params {
        Ok(p) => p,
        Err(code) => {
            st.record(&name, &method, recorded, 200, Some(&code));
            return slack_error(&code);
        }
    };

    // Per-channel rate limit on chat.postMessage.
    let post_channel =
        (name == "chat.postMessage").then(|| param(&params, "channel").unwrap_or_default());
    if let (Some(limit), Some(channel)) = (st.post_rate, post_channel.as_ref()) {
        let now = Instant::now();
        let log = st.post_log.entry(channel.clone()).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            log.pop_front();
        }
        if log.len() >= limit as usize {
            st.ratelimited += 1;
            st.record(&name, &method, recorded, 429, Some("ratelimited"));
            return ratelimited_response();
        }
    }

    match st.dispatch(&name, &params) {
        Ok(fields) => {
            if let (Some(_), Some(channel)) = (st.post_rate, post_channel) {
                st.post_log
                    .entry(channel)
                    .or_default()
                    .push_back(Instant::now());
            }
            st.record(&name, &method, recorded, 200, None);
            let mut body = Map::new();
            body.insert("ok".into(), Value::Bool(true));
            body.extend(fields);
            json_response(StatusCode::OK, Value::Object(body))
        }
        Err(code) => {
            st.record(&name, &method, recorded, 200, Some(&code));
            slack_error(&code)
        }
    }
}

/// `POST /response/{id}`: keeps the body (JSON, else the raw text as a JSON
/// string) and answers `{"ok": true}`, which slack-morphism's
/// `respond_to_event` accepts.
async fn response_sink(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let value = serde_json::from_slice::<Value>(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    lock(&shared).responses.entry(id).or_default().push(value);
    json_response(StatusCode::OK, json!({ "ok": true }))
}

// ---------------------------------------------------------------------------
// A slack-morphism client for the fake
// ---------------------------------------------------------------------------

/// A real slack-morphism client aimed at `api_url` over plain http or https.
///
/// TLS: installs the ring provider (ignoring "already installed") and builds
/// hyper-rustls with an empty root store: the fake is plain http, and the
/// configured hyper-rustls has no `webpki-roots` feature while
/// `with_native_roots()` needs the system's CA certificates.
pub(crate) fn slack_client(api_url: &str) -> slack_morphism::prelude::SlackHyperClient {
    use slack_morphism::prelude::*;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    SlackClient::new(SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url))
}

/// A slack-morphism API token with `value`.
pub(crate) fn slack_token(value: &str) -> slack_morphism::prelude::SlackApiToken {
    use slack_morphism::prelude::*;
    SlackApiToken::new(SlackApiTokenValue::new(value.to_string()))
}

// ---------------------------------------------------------------------------
// Signing and request bodies, as Slack sends them to the app
// ---------------------------------------------------------------------------

/// Slack's v0 signature: `v0=` + hex(HMAC-SHA256(secret,
/// `v0:{ts}:{body}`)), the value of `X-Slack-Signature`.
pub(crate) fn slack_signature(secret: &str, ts: i64, body: &str) -> String {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The current Unix time in seconds, for `X-Slack-Request-Timestamp`.
pub(crate) fn unix_now() -> i64 {
    now_secs() as i64
}

/// POSTs `body` to `url` signed as Slack signs it, with
/// `X-Slack-Request-Timestamp: ts` and `X-Slack-Signature`.
pub(crate) async fn send_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    content_type: &str,
    body: &str,
    ts: i64,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", slack_signature(secret, ts, body))
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// `application/x-www-form-urlencoded` encoding of one value, as Slack
/// (and browsers) do it: space as `+`, `*-._` and alphanumerics kept.
pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body from its fields, in order.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes a form body or query string (`+` is a space, `%XX` a byte).
pub(crate) fn form_decode(s: &str) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A slash-command body with the fields Slack sends (token, team_id,
/// team_domain, channel_id, channel_name, user_id, user_name, command, text,
/// api_app_id, response_url, trigger_id), urlencoded.
pub(crate) fn command_form(
    command: &str,
    text: &str,
    user_id: &str,
    user_name: &str,
    channel_id: &str,
    response_url: &str,
    trigger_id: &str,
) -> String {
    let channel_name = channel_id.to_lowercase();
    form_body(&[
        ("token", FAKE_VERIFICATION_TOKEN),
        ("team_id", FAKE_TEAM_ID),
        ("team_domain", "fake"),
        ("channel_id", channel_id),
        ("channel_name", &channel_name),
        ("user_id", user_id),
        ("user_name", user_name),
        ("command", command),
        ("text", text),
        ("api_app_id", FAKE_APP_ID),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id),
    ])
}

/// An Events API `event_callback` body wrapping `event` (which carries its
/// own `type`, e.g. `reaction_added`).
pub(crate) fn event_callback(event_id: &str, event: Value) -> String {
    json!({
        "token": FAKE_VERIFICATION_TOKEN,
        "team_id": FAKE_TEAM_ID,
        "api_app_id": FAKE_APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": unix_now(),
        "authorizations": [{
            "enterprise_id": null,
            "team_id": FAKE_TEAM_ID,
            "user_id": FAKE_BOT_USER_ID,
            "is_bot": true,
            "is_enterprise_install": false,
        }],
        "is_ext_shared_channel": false,
    })
    .to_string()
}

/// An Events API `url_verification` body.
pub(crate) fn url_verification(challenge: &str) -> String {
    json!({
        "token": FAKE_VERIFICATION_TOKEN,
        "challenge": challenge,
        "type": "url_verification",
    })
    .to_string()
}

/// The payload of a `block_actions` interaction: a button (`action_id`,
/// `block_id`, `value`) clicked by `user_id` on message `message_ts` in
/// `channel_id`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_actions_payload(
    user_id: &str,
    user_name: &str,
    channel_id: &str,
    message_ts: &str,
    action_id: &str,
    block_id: &str,
    value: &str,
    response_url: &str,
) -> Value {
    json!({
        "type": "block_actions",
        "token": FAKE_VERIFICATION_TOKEN,
        "api_app_id": FAKE_APP_ID,
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "team": { "id": FAKE_TEAM_ID, "domain": "fake" },
        "user": {
            "id": user_id,
            "username": user_name,
            "name": user_name,
            "team_id": FAKE_TEAM_ID,
        },
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": false,
        },
        "channel": { "id": channel_id, "name": channel_id.to_lowercase() },
        "message": {
            "type": "message",
            "user": FAKE_BOT_USER_ID,
            "bot_id": FAKE_BOT_ID,
            "ts": message_ts,
            "text": "",
        },
        "response_url": response_url,
        "actions": [{
            "type": "button",
            "action_id": action_id,
            "block_id": block_id,
            "value": value,
            "text": { "type": "plain_text", "text": value, "emoji": true },
            "action_ts": format!("{}.000001", unix_now()),
        }],
    })
}

/// The form body Slack POSTs for an interaction: `payload=<urlencoded JSON>`.
pub(crate) fn interaction_form(payload: &Value) -> String {
    form_body(&[("payload", &payload.to_string())])
}

/// A `block_actions` interaction body (see [`block_actions_payload`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_actions_form(
    user_id: &str,
    user_name: &str,
    channel_id: &str,
    message_ts: &str,
    action_id: &str,
    block_id: &str,
    value: &str,
    response_url: &str,
) -> String {
    interaction_form(&block_actions_payload(
        user_id,
        user_name,
        channel_id,
        message_ts,
        action_id,
        block_id,
        value,
        response_url,
    ))
}

// ---------------------------------------------------------------------------
// Tests of the fake itself, driven by the real slack-morphism client
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::errors::SlackClientError;
    use slack_morphism::prelude::*;
    use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

    const TOKEN: &str = "xoxb-fake-bot-token";

    fn text(t: &str) -> SlackMessageContent {
        SlackMessageContent::new().with_text(t.to_string())
    }

    #[test]
    fn slack_signature_reproduces_slacks_documented_example() {
        assert_eq!(
            slack_signature(
                SLACK_DOC_SIGNING_SECRET,
                SLACK_DOC_TIMESTAMP,
                SLACK_DOC_BODY
            ),
            SLACK_DOC_SIGNATURE
        );
    }

    #[test]
    fn form_encoding_reproduces_slacks_documented_body() {
        let fields = form_decode(SLACK_DOC_BODY);
        assert_eq!(
            fields[7],
            ("command".to_string(), "/webhook-collect".to_string())
        );
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(form_body(&pairs), SLACK_DOC_BODY);
        assert_eq!(
            form_decode(&form_body(&[("text", "a b&c=d/é+%")])),
            vec![("text".to_string(), "a b&c=d/é+%".to_string())]
        );
    }

    #[test]
    fn slack_morphism_verifies_our_signature() {
        let secret = "test-signing-secret";
        let ts = unix_now();
        let body = command_form(
            "/incident",
            "open db down",
            "U0SAM",
            "sam",
            "C0INC",
            "http://x/r",
            "1.2.3",
        );
        let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(secret.into()));
        verifier
            .verify(&slack_signature(secret, ts, &body), &body, &ts.to_string())
            .expect("slack-morphism accepts the signature");
        assert!(
            verifier
                .verify(&slack_signature("other", ts, &body), &body, &ts.to_string())
                .is_err()
        );
    }

    #[test]
    fn builders_parse_with_slack_morphism_types() {
        // Slash command: the fields slack-morphism's extractor reads.
        let body = command_form(
            "/incident",
            "open payments & checkout down",
            "U0SAM",
            "sam",
            "C0INCIDENT",
            "http://127.0.0.1:1/response/cmd-1",
            "123.456.abc",
        );
        let fields: Map<String, Value> = form_decode(&body)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let cmd: SlackCommandEvent = serde_json::from_value(Value::Object(fields)).unwrap();
        assert_eq!(cmd.command.value(), "/incident");
        assert_eq!(cmd.text.as_deref(), Some("open payments & checkout down"));
        assert_eq!(cmd.user_id.value(), "U0SAM");
        assert_eq!(cmd.channel_id.value(), "C0INCIDENT");
        assert_eq!(cmd.team_id.value(), FAKE_TEAM_ID);
        assert_eq!(
            cmd.response_url.value().as_str(),
            "http://127.0.0.1:1/response/cmd-1"
        );

        // Events API.
        let body = event_callback(
            "Ev0001",
            json!({
                "type": "reaction_added",
                "user": "U0SAM",
                "reaction": "eyes",
                "item_user": FAKE_BOT_USER_ID,
                "item": { "type": "message", "channel": "C0INCIDENT", "ts": "1733380000.000100" },
                "event_ts": "1733380001.000200",
            }),
        );
        match serde_json::from_str::<SlackPushEvent>(&body).unwrap() {
            SlackPushEvent::EventCallback(cb) => {
                assert_eq!(cb.event_id.value(), "Ev0001");
                assert_eq!(cb.team_id.value(), FAKE_TEAM_ID);
                match cb.event {
                    SlackEventCallbackBody::ReactionAdded(r) => {
                        assert_eq!(r.reaction.value(), "eyes")
                    }
                    other => panic!("expected reaction_added, got {other:?}"),
                }
            }
            other => panic!("expected event_callback, got {other:?}"),
        }
        match serde_json::from_str::<SlackPushEvent>(&url_verification("chal-1")).unwrap() {
            SlackPushEvent::UrlVerification(v) => assert_eq!(v.challenge, "chal-1"),
            other => panic!("expected url_verification, got {other:?}"),
        }

        // Interaction.
        let body = block_actions_form(
            "U0SAM",
            "sam",
            "C0INCIDENT",
            "1733380000.000100",
            "ack",
            "incident-actions",
            "inc-42",
            "http://127.0.0.1:1/response/act-1",
        );
        assert!(body.starts_with("payload=%7B"));
        let decoded = form_decode(&body);
        assert_eq!(decoded.len(), 1);
        match serde_json::from_str::<SlackInteractionEvent>(&decoded[0].1).unwrap() {
            SlackInteractionEvent::BlockActions(ev) => {
                assert_eq!(ev.user.unwrap().id.value(), "U0SAM");
                assert_eq!(ev.channel.unwrap().id.value(), "C0INCIDENT");
                assert_eq!(ev.message.unwrap().origin.ts.value(), "1733380000.000100");
                let action = &ev.actions.unwrap()[0];
                assert_eq!(action.action_id.value(), "ack");
                assert_eq!(action.value.as_deref(), Some("inc-42"));
                assert_eq!(action.action_type.value(), "button");
                assert_eq!(
                    ev.response_url.unwrap().value().as_str(),
                    "http://127.0.0.1:1/response/act-1"
                );
            }
            other => panic!("expected block_actions, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn real_client_auth_post_thread_update() {
        let fake = FakeSlack::start(TOKEN).await;
        let client = slack_client(&fake.api_url());
        let token = slack_token(TOKEN);
        let session = client.open_session(&token);

        let me = session.auth_test().await.expect("auth.test");
        assert_eq!(me.user_id.value(), FAKE_BOT_USER_ID);
        assert_eq!(me.team_id.value(), FAKE_TEAM_ID);
        assert_eq!(
            me.bot_id.as_ref().map(|b| b.value().as_str()),
            Some(FAKE_BOT_ID)
        );

        let blocks: Vec<SlackBlock> = serde_json::from_value(json!([
            { "type": "section", "text": { "type": "mrkdwn", "text": "*INC-1* db down" } }
        ]))
        .unwrap();
        let root = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                "C0INCIDENT".into(),
                text("INC-1 db down").with_blocks(blocks),
            ))
            .await
            .expect("root post");
        assert_eq!(root.channel.value(), "C0INCIDENT");
        assert_eq!(root.message.content.text.as_deref(), Some("INC-1 db down"));
        assert_eq!(root.message.content.blocks.as_ref().map(Vec::len), Some(1));

        let reply = session
            .chat_post_message(
                &SlackApiChatPostMessageRequest::new("C0INCIDENT".into(), text("paging sam"))
                    .with_thread_ts(root.ts.clone()),
            )
            .await
            .expect("threaded reply");
        assert!(reply.ts.value() > root.ts.value(), "ts grow");
        assert_eq!(reply.message.origin.thread_ts.as_ref(), Some(&root.ts));

        let updated = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                "C0INCIDENT".into(),
                text("INC-1 db down (acknowledged)"),
                root.ts.clone(),
            ))
            .await
            .expect("update");
        assert_eq!(updated.ts, root.ts);
        assert_eq!(
            updated.message.content.text.as_deref(),
            Some("INC-1 db down (acknowledged)")
        );

        // What the fake recorded.
        assert_eq!(fake.count("auth.test"), 1);
        assert_eq!(fake.count("chat.postMessage"), 2);
        assert_eq!(fake.count_ok("chat.update"), 1);
        let calls = fake.calls();
        assert_eq!(calls[0].http_method, "GET", "slack-morphism GETs auth.test");
        let post = &calls[1];
        assert_eq!((post.http_method.as_str(), post.status), ("POST", 200));
        assert_eq!(post.body["channel"], "C0INCIDENT");
        assert_eq!(post.body["text"], "INC-1 db down");
        assert_eq!(post.body["blocks"][0]["type"], "section");
        assert_eq!(calls[2].body["thread_ts"], root.ts.value().as_str());

        let msgs = fake.channel_messages("C0INCIDENT");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].ts, root.ts.value().as_str());
        assert_eq!(msgs[0].text, "INC-1 db down (acknowledged)");
        assert_eq!(msgs[0].updates, 1);
        assert!(
            msgs[0].blocks.is_some(),
            "blocks kept when the update leaves them out"
        );
        assert_eq!(msgs[0].thread_ts, None);
        let thread = fake.thread("C0INCIDENT", root.ts.value());
        assert_eq!(thread.len(), 1);
        assert_eq!(thread[0].text, "paging sam");
        assert_eq!(thread[0].updates, 0);

        assert!(
            fake.wait_for(|s| s.count("chat.update") == 1, Duration::from_secs(1))
                .await
        );
        assert!(
            !fake
                .wait_for(|s| s.count("chat.update") == 2, Duration::from_millis(60))
                .await
        );
    }

    #[tokio::test]
    async fn rate_limit_surfaces_as_rate_limit_error() {
        let fake = FakeSlack::start(TOKEN).await;
        fake.enforce_post_rate(1);
        let client = slack_client(&fake.api_url());
        let token = slack_token(TOKEN);
        let session = client.open_session(&token);
        let req = SlackApiChatPostMessageRequest::new("C0INCIDENT".into(), text("one"));

        session.chat_post_message(&req).await.expect("first post");
        match session.chat_post_message(&req).await {
            Err(SlackClientError::RateLimitError(e)) => {
                assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
                assert_eq!(e.code.as_deref(), Some("ratelimited"));
            }
            other => panic!("expected a rate limit error, got {other:?}"),
        }
        // Another channel has its own budget.
        session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                "C0OTHER".into(),
                text("elsewhere"),
            ))
            .await
            .expect("other channel");
        assert_eq!(fake.ratelimited(), 1);
        assert_eq!(fake.channel_messages("C0INCIDENT").len(), 1);
        assert_eq!(fake.calls()[1].status, 429);

        // After the window it is accepted again.
        tokio::time::sleep(Duration::from_millis(1050)).await;
        session
            .chat_post_message(&req)
            .await
            .expect("after a second");
        assert_eq!(fake.channel_messages("C0INCIDENT").len(), 2);
    }

    #[tokio::test]
    async fn auth_errors() {
        let fake = FakeSlack::start(TOKEN).await;
        let client = slack_client(&fake.api_url());
        let wrong = slack_token("xoxb-wrong");
        match client.open_session(&wrong).auth_test().await {
            Err(SlackClientError::ApiError(e)) => assert_eq!(e.code, "invalid_auth"),
            other => panic!("expected invalid_auth, got {other:?}"),
        }
        // A trailing slash on api_url (".../api//auth.test") works as well.
        let slashed = slack_client(&format!("{}/", fake.api_url()));
        let token = slack_token(TOKEN);
        slashed
            .open_session(&token)
            .auth_test()
            .await
            .expect("auth.test via a trailing-slash api_url");
        let http = reqwest::Client::new();
        let no_header: Value = http
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .json(&json!({ "channel": "C0INCIDENT", "text": "hi" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(no_header, json!({ "ok": false, "error": "not_authed" }));
        assert_eq!(fake.channel_messages("C0INCIDENT").len(), 0);
        assert_eq!(fake.calls()[2].error.as_deref(), Some("not_authed"));
    }

    #[tokio::test]
    async fn slack_errors_failures_and_delays() {
        let fake = FakeSlack::start(TOKEN).await;
        fake.add_channel("C0INCIDENT");
        let client = slack_client(&fake.api_url());
        let token = slack_token(TOKEN);
        let session = client.open_session(&token);

        let api_code = |r: Result<_, SlackClientError>| match r {
            Err(SlackClientError::ApiError(e)) => e.code,
            Ok(_) => "ok".to_string(),
            Err(other) => panic!("expected an API error, got {other:?}"),
        };
        let nope = session
            .chat_post_message(&SlackApiChatPostMessageRequest::new(
                "C0NOPE".into(),
                text("x"),
            ))
            .await
            .map(|_| ());
        assert_eq!(api_code(nope), "channel_not_found");
        let missing = session
            .chat_update(&SlackApiChatUpdateRequest::new(
                "C0INCIDENT".into(),
                text("x"),
                "1.000000".into(),
            ))
            .await
            .map(|_| ());
        assert_eq!(api_code(missing), "message_not_found");

        // Unknown method, and a form-encoded POST as Slack also accepts.
        let http = reqwest::Client::new();
        let unknown: Value = http
            .post(format!("{}/chat.frobnicate", fake.api_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(unknown, json!({ "ok": false, "error": "unknown_method" }));
        let form: Value = http
            .post(format!("{}/chat.postMessage", fake.api_url()))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("channel", "C0INCIDENT"),
                ("text", "from a form"),
                ("blocks", r#"[{"type":"divider"}]"#),
            ]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(form["ok"], true, "{form}");
        let msgs = fake.channel_messages("C0INCIDENT");
        assert_eq!(msgs[0].text, "from a form");
        assert_eq!(msgs[0].blocks, Some(json!([{ "type": "divider" }])));

        // Scripted HTTP failures, then success.
        fake.fail_next("chat.postMessage", 2, 503);
        let req = SlackApiChatPostMessageRequest::new("C0INCIDENT".into(), text("retry me"));
        for _ in 0..2 {
            match session.chat_post_message(&req).await {
                Err(SlackClientError::HttpError(e)) => assert_eq!(e.status_code.as_u16(), 503),
                other => panic!("expected HTTP 503, got {other:?}"),
            }
        }
        session.chat_post_message(&req).await.expect("third try");
        fake.fail_next("auth.test", 1, 429);
        assert!(matches!(
            session.auth_test().await,
            Err(SlackClientError::RateLimitError(_))
        ));
        assert_eq!(fake.ratelimited(), 1);

        // Delay.
        fake.delay("auth.test", Duration::from_millis(200));
        let t = Instant::now();
        session.auth_test().await.expect("slow auth.test");
        assert!(t.elapsed() >= Duration::from_millis(200));
        fake.delay("auth.test", Duration::ZERO);
    }

    #[tokio::test]
    async fn conversations_users_ephemeral_and_response_url() {
        let fake = FakeSlack::start(TOKEN).await;
        fake.add_user("U0SAM", "sam", "Sam Smith");
        let client = slack_client(&fake.api_url());
        let token = slack_token(TOKEN);
        let session = client.open_session(&token);

        let created = session
            .conversations_create(&SlackApiConversationsCreateRequest::new("inc-42-db".into()))
            .await
            .expect("create");
        let id = created.channel.id.clone();
        assert!(id.value().starts_with('C'));
        assert_eq!(created.channel.name.as_deref(), Some("inc-42-db"));
        let dup = session
            .conversations_create(&SlackApiConversationsCreateRequest::new("inc-42-db".into()))
            .await;
        assert!(matches!(dup, Err(SlackClientError::ApiError(e)) if e.code == "name_taken"));

        session
            .conversations_invite(&SlackApiConversationsInviteRequest::new(
                id.clone(),
                vec!["U0SAM".into()],
            ))
            .await
            .expect("invite");
        assert!(fake.members(id.value()).contains(&"U0SAM".to_string()));
        session
            .conversations_join(&SlackApiConversationsJoinRequest::new(id.clone()))
            .await
            .expect("join");
        let info = session
            .conversations_info(&SlackApiConversationsInfoRequest::new(id.clone()))
            .await
            .expect("info");
        assert_eq!(info.channel.id, id);
        let im = session
            .conversations_open(
                &SlackApiConversationsOpenRequest::new().with_users(vec!["U0SAM".into()]),
            )
            .await
            .expect("open");
        assert!(im.channel.id.value().starts_with('D'));

        let user = session
            .users_info(&SlackApiUsersInfoRequest::new("U0SAM".into()))
            .await
            .expect("users.info");
        assert_eq!(user.user.name.as_deref(), Some("sam"));
        assert_eq!(user.user.real_name.as_deref(), Some("Sam Smith"));
        let profile = user.user.profile.expect("profile");
        assert_eq!(profile.display_name.as_deref(), Some("sam"));
        let missing = session
            .users_info(&SlackApiUsersInfoRequest::new("U0NOBODY".into()))
            .await;
        assert!(
            matches!(missing, Err(SlackClientError::ApiError(e)) if e.code == "user_not_found")
        );

        session
            .chat_post_ephemeral(&SlackApiChatPostEphemeralRequest::new(
                id.clone(),
                "U0SAM".into(),
                text("only you"),
            ))
            .await
            .expect("ephemeral");
        let eph = fake.ephemerals();
        assert_eq!(
            (eph[0].user.as_str(), eph[0].text.as_str()),
            ("U0SAM", "only you")
        );

        // response_url sink, via slack-morphism's own webhook call.
        let url: SlackResponseUrl =
            serde_json::from_value(json!(fake.response_url("cmd-1"))).unwrap();
        client
            .respond_to_event(
                &url,
                &SlackApiPostWebhookMessageRequest::new(text("working on it")),
            )
            .await
            .expect("respond_to_event");
        assert_eq!(fake.responses("cmd-1")[0]["text"], "working on it");
        assert!(fake.responses("other").is_empty());
        // conversations.info and users.info went as GET with a query.
        let info_call = &fake.calls_of("conversations.info")[0];
        assert_eq!(info_call.http_method, "GET");
        assert_eq!(info_call.body["channel"], id.value().as_str());
    }

    #[tokio::test]
    async fn send_signed_is_accepted_by_slack_morphisms_verifier() {
        use axum::routing::post;
        let secret = "signing-secret-for-test";
        let app = Router::new().route(
            "/slack/commands",
            post(move |headers: HeaderMap, body: String| async move {
                let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
                let verifier =
                    SlackEventSignatureVerifier::new(&SlackSigningSecret::new(secret.into()));
                match verifier.verify(
                    get("x-slack-signature"),
                    &body,
                    get("x-slack-request-timestamp"),
                ) {
                    Ok(()) => StatusCode::OK,
                    Err(_) => StatusCode::UNAUTHORIZED,
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = format!("http://{addr}/slack/commands");
        let body = command_form(
            "/incident",
            "list",
            "U0SAM",
            "sam",
            "C0INC",
            "http://x/r",
            "1.2.3",
        );
        let http = reqwest::Client::new();
        let form = "application/x-www-form-urlencoded";
        let ok = send_signed(&http, &url, secret, form, &body, unix_now()).await;
        assert_eq!(ok.status(), 200);
        let bad = send_signed(&http, &url, "wrong", form, &body, unix_now()).await;
        assert_eq!(bad.status(), 401);
        let stale = send_signed(&http, &url, secret, form, &body, unix_now() - 600).await;
        assert_eq!(stale.status(), 401);
        server.abort();
    }
}
