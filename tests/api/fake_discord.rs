//! A fake Discord for the tests: the REST endpoint an interaction's
//! deferred answer is edited through (`PATCH /api/v10/webhooks/{app}/
//! {token}/messages/@original`, as serenity's client calls it through its
//! proxy setting), on loopback; and Discord's side of the interactions
//! endpoint: a real Ed25519 key pair that signs interactions in Discord's
//! documented wire format. It also takes incident posts as serenity sends
//! them: messages created and edited in channels and threads, threads
//! started from a message, DM channels opened; and answers a 429 on demand.
//! Guild commands overwritten in bulk (`PUT /applications/{app}/guilds/
//! {guild}/commands`) are recorded, or refused on demand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post, put};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::Digest;

use crate::fake_discord_gateway::FakeGateway;

/// The application the tests configure.
pub const APPLICATION_ID: &str = "223456789012345678";
pub const GUILD_ID: &str = "323456789012345678";
pub const CHANNEL_ID: &str = "123456789012345678";
pub const BOT_TOKEN: &str = "discord-firstline-test-token";

/// One PATCH of an interaction's original response.
#[derive(Debug, Clone)]
pub struct Edit {
    pub application_id: String,
    pub token: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// A message created (`POST /channels/{id}/messages`) or edited
/// (`PATCH /channels/{id}/messages/{mid}`).
#[derive(Debug, Clone)]
pub struct Sent {
    pub channel: String,
    /// Its id: the one the fake gave it, or the one edited.
    pub id: String,
    pub body: Value,
}

/// A thread started from a message.
#[derive(Debug, Clone)]
pub struct ThreadStart {
    pub channel: String,
    pub message: String,
    pub thread: String,
    pub body: Value,
}

#[derive(Default)]
struct Recorded {
    edits: Vec<Edit>,
    messages: Vec<Sent>,
    message_edits: Vec<Sent>,
    threads: Vec<ThreadStart>,
    /// Message creations still to answer 429.
    fail_next: u32,
    rate_limited: u32,
    next_id: u64,
    /// Bodies of guild command overwrites: (application, guild, body).
    command_puts: Vec<(String, String, Value)>,
    /// Answer command overwrites with this status and message.
    refuse_commands: Option<(u16, String)>,
    /// Users `GET /users/{id}` knows.
    users: Vec<Value>,
    /// Interaction responses (`POST /interactions/{id}/{token}/callback`):
    /// (token, body).
    callbacks: Vec<(String, Value)>,
    /// DM channels opened: (recipient, channel).
    dms: Vec<(String, String)>,
    /// The `retry_after` (seconds) of the 429s `fail_next` answers.
    retry_after: Option<f64>,
    /// Every message creation as it arrived: channel, when, status.
    attempts: Vec<Attempt>,
}

/// A message creation as it arrived, answered or refused.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub channel: String,
    pub at: std::time::Instant,
    pub status: u16,
    /// What it said (`content`).
    pub content: String,
}

impl Recorded {
    fn fresh(&mut self) -> String {
        self.next_id += 1;
        format!("{}", 900000000000000000u64 + self.next_id)
    }
}

/// The fake REST API on loopback.
#[derive(Clone)]
pub struct FakeDiscord {
    url: String,
    recorded: Arc<Mutex<Recorded>>,
    gateway: FakeGateway,
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let gateway = FakeGateway::start().await;
        let gateway_url = gateway.url();
        let router = Router::new()
            // Where serenity's client finds the gateway.
            .route(
                "/api/v10/gateway",
                get(move || async move { Json(json!({"url": gateway_url})) }),
            )
            .route("/api/v10/users/{user}", get(user))
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                post(interaction_callback),
            )
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/@original",
                patch(edit_original),
            )
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route(
                "/api/v10/channels/{channel}/messages/{message}",
                patch(edit_message),
            )
            .route(
                "/api/v10/channels/{channel}/messages/{message}/threads",
                post(start_thread),
            )
            .route("/api/v10/users/@me/channels", post(open_dm))
            .route(
                "/api/v10/applications/{app}/guilds/{guild}/commands",
                put(overwrite_commands),
            )
            .with_state(recorded.clone());
        let url = crate::helpers::serve(router).await;
        FakeDiscord {
            url,
            recorded,
            gateway,
        }
    }

    /// The gateway `GET /gateway` names.
    pub fn gateway(&self) -> &FakeGateway {
        &self.gateway
    }

    /// `GET /users/{id}` knows `id` as `username` (with `global_name`).
    pub fn add_user(&self, id: &str, username: &str, global_name: Option<&str>) {
        if let Ok(mut r) = self.recorded.lock() {
            r.users.push(
                json!({"id": id, "username": username, "global_name": global_name,
                                "discriminator": "0", "avatar": null, "public_flags": 0}),
            );
        }
    }

    /// The interaction responses for `token` sent so far.
    pub fn callbacks(&self, token: &str) -> Vec<Value> {
        self.read(|r| {
            r.callbacks
                .iter()
                .filter(|(t, _)| t == token)
                .map(|(_, b)| b.clone())
                .collect()
        })
    }

    /// What `chat.discord.api_url` is set to.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    pub fn edits(&self) -> Vec<Edit> {
        self.recorded
            .lock()
            .map(|r| r.edits.clone())
            .unwrap_or_default()
    }

    fn read<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T
    where
        T: Default,
    {
        self.recorded.lock().map(|r| f(&r)).unwrap_or_default()
    }

    /// Messages created, in order.
    pub fn messages(&self) -> Vec<Sent> {
        self.read(|r| r.messages.clone())
    }

    /// Messages created in `channel`.
    pub fn messages_in(&self, channel: &str) -> Vec<Sent> {
        self.read(|r| {
            r.messages
                .iter()
                .filter(|m| m.channel == channel)
                .cloned()
                .collect()
        })
    }

    /// Edits of messages (not of interaction answers), in order.
    pub fn message_edits(&self) -> Vec<Sent> {
        self.read(|r| r.message_edits.clone())
    }

    pub fn threads(&self) -> Vec<ThreadStart> {
        self.read(|r| r.threads.clone())
    }

    /// The next `n` message creations answer 429 (`retry_after` 0.05 s).
    pub fn fail_next_messages(&self, n: u32) {
        if let Ok(mut r) = self.recorded.lock() {
            r.fail_next = n;
        }
    }

    /// The next `n` message creations answer 429 with `retry_after`
    /// seconds, in the body and the `Retry-After` header as Discord does.
    pub fn rate_limit_next_messages(&self, n: u32, retry_after: f64) {
        if let Ok(mut r) = self.recorded.lock() {
            r.fail_next = n;
            r.retry_after = Some(retry_after);
        }
    }

    /// Every message creation that arrived, in order, refused ones too.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.read(|r| r.attempts.clone())
    }

    /// Bodies of the guild command overwrites, in order:
    /// (application, guild, body).
    pub fn command_puts(&self) -> Vec<(String, String, Value)> {
        self.read(|r| r.command_puts.clone())
    }

    /// Command overwrites are answered `status` with Discord's error
    /// `message`.
    pub fn refuse_commands(&self, status: u16, message: &str) {
        if let Ok(mut r) = self.recorded.lock() {
            r.refuse_commands = Some((status, message.to_string()));
        }
    }

    /// DM channels opened (`POST /users/@me/channels`), in order:
    /// (recipient, channel).
    pub fn dms(&self) -> Vec<(String, String)> {
        self.read(|r| r.dms.clone())
    }

    /// 429s answered so far.
    pub fn rate_limited(&self) -> u32 {
        self.read(|r| r.rate_limited)
    }

    /// Waits until `done` holds for what was recorded; whether it did
    /// within `wait`.
    pub async fn wait_for(&self, done: impl Fn(&FakeDiscord) -> bool, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if done(self) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The edits of the interaction with `token`, once there is one;
    /// empty after `wait`.
    pub async fn wait_edits(&self, token: &str, wait: Duration) -> Vec<Edit> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let edits: Vec<Edit> = self
                .edits()
                .into_iter()
                .filter(|e| e.token == token)
                .collect();
            if !edits.is_empty() || tokio::time::Instant::now() > deadline {
                return edits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn edit_original(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path((app, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Json<Value>,
) -> (StatusCode, Json<Value>) {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    if let Ok(mut r) = recorded.lock() {
        r.edits.push(Edit {
            application_id: app,
            token,
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: body.0,
        });
    }
    // Discord answers with the message as edited.
    (StatusCode::OK, Json(message_json(&content)))
}

async fn create_message(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(channel): Path<String>,
    body: Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(mut r) = recorded.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let attempt = Attempt {
        channel: channel.clone(),
        at: std::time::Instant::now(),
        status: 200,
        content: body["content"].as_str().unwrap_or_default().to_string(),
    };
    if r.fail_next > 0 {
        r.fail_next -= 1;
        r.rate_limited += 1;
        r.attempts.push(Attempt {
            status: 429,
            ..attempt
        });
        let retry_after = r.retry_after.unwrap_or(0.05);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after.to_string())],
            Json(
                json!({"message": "You are being rate limited.", "retry_after": retry_after,
                        "global": false, "code": 0}),
            ),
        )
            .into_response();
    }
    r.attempts.push(attempt);
    let id = r.fresh();
    r.messages.push(Sent {
        channel: channel.clone(),
        id: id.clone(),
        body: body.0.clone(),
    });
    let content = body["content"].as_str().unwrap_or_default();
    (StatusCode::OK, Json(message_in(&id, &channel, content))).into_response()
}

async fn edit_message(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path((channel, message)): Path<(String, String)>,
    body: Json<Value>,
) -> (StatusCode, Json<Value>) {
    let content = body["content"].as_str().unwrap_or_default().to_string();
    if let Ok(mut r) = recorded.lock() {
        r.message_edits.push(Sent {
            channel: channel.clone(),
            id: message.clone(),
            body: body.0,
        });
    }
    (
        StatusCode::OK,
        Json(message_in(&message, &channel, &content)),
    )
}

async fn start_thread(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path((channel, message)): Path<(String, String)>,
    body: Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Ok(mut r) = recorded.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(Value::Null));
    };
    let thread = r.fresh();
    let name = body["name"].as_str().unwrap_or_default().to_string();
    r.threads.push(ThreadStart {
        channel: channel.clone(),
        message,
        thread: thread.clone(),
        body: body.0,
    });
    (
        StatusCode::CREATED,
        Json(thread_json(&thread, &channel, &name)),
    )
}

async fn overwrite_commands(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path((app, guild)): Path<(String, String)>,
    body: Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(mut r) = recorded.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if let Some((status, message)) = r.refuse_commands.clone() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        return (status, Json(json!({"message": message, "code": 50001}))).into_response();
    }
    r.command_puts
        .push((app.clone(), guild.clone(), body.0.clone()));
    // Discord answers with the commands as stored.
    let mut stored = Vec::new();
    for command in body.0.as_array().cloned().unwrap_or_default() {
        let mut c = command;
        c["id"] = json!(r.fresh());
        c["application_id"] = json!(app);
        c["guild_id"] = json!(guild);
        c["version"] = json!(r.fresh());
        if c.get("type").is_none() {
            c["type"] = json!(1);
        }
        stored.push(c);
    }
    (StatusCode::OK, Json(Value::Array(stored))).into_response()
}

/// An interaction's response, as the bot sends one for an interaction it
/// received over the gateway: 204, as Discord answers.
async fn interaction_callback(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path((_id, token)): Path<(String, String)>,
    body: Json<Value>,
) -> StatusCode {
    if let Ok(mut r) = recorded.lock() {
        r.callbacks.push((token, body.0));
    }
    StatusCode::NO_CONTENT
}

/// A user by id, or Discord's "Unknown User".
async fn user(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let found = recorded
        .lock()
        .ok()
        .and_then(|r| r.users.iter().find(|u| u["id"] == id.as_str()).cloned());
    match found {
        Some(u) => (StatusCode::OK, Json(u)),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown User", "code": 10013})),
        ),
    }
}

async fn open_dm(
    State(recorded): State<Arc<Mutex<Recorded>>>,
    body: Json<Value>,
) -> (StatusCode, Json<Value>) {
    let Ok(mut r) = recorded.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(Value::Null));
    };
    let id = r.fresh();
    let user = body["recipient_id"].as_str().unwrap_or("1").to_string();
    r.dms.push((user.clone(), id.clone()));
    (
        StatusCode::OK,
        Json(json!({
            "id": id, "type": 1, "last_message_id": null,
            "recipients": [{"id": user, "username": "someone", "discriminator": "0",
                            "global_name": null, "avatar": null}],
        })),
    )
}

/// A public thread (type 11) as Discord returns a started one.
pub fn thread_json(id: &str, parent: &str, name: &str) -> Value {
    json!({
        "id": id, "guild_id": GUILD_ID, "parent_id": parent, "owner_id": APPLICATION_ID,
        "type": 11, "name": name, "last_message_id": null, "message_count": 0,
        "member_count": 1, "rate_limit_per_user": 0, "flags": 0, "total_message_sent": 0,
        "thread_metadata": {"archived": false, "auto_archive_duration": 1440,
                            "archive_timestamp": "2026-11-23T00:00:00.000000+00:00",
                            "locked": false},
    })
}

/// `message_json` with its own id and channel.
pub fn message_in(id: &str, channel: &str, content: &str) -> Value {
    let mut m = message_json(content);
    m["id"] = json!(id);
    m["channel_id"] = json!(channel);
    m
}

/// A message as Discord's REST API returns it (the fields serenity's
/// `Message` requires).
pub fn message_json(content: &str) -> Value {
    json!({
        "id": "423456789012345678",
        "channel_id": CHANNEL_ID,
        "author": {"id": APPLICATION_ID, "username": "firstline", "discriminator": "0000",
                   "global_name": null, "avatar": null, "bot": true},
        "content": content,
        "timestamp": "2026-11-23T00:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
    })
}

/// Discord's side of the application: the private key whose public half
/// the app is configured with.
pub struct DiscordKeys {
    key: SigningKey,
}

impl DiscordKeys {
    /// A fresh key pair (seeded from the process's random hasher keys and
    /// the time: a different key in every test).
    pub fn generate() -> DiscordKeys {
        use std::hash::{BuildHasher, Hasher};
        let mut seed = sha2::Sha256::new();
        for _ in 0..4 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            seed.update(h.finish().to_le_bytes());
        }
        DiscordKeys {
            key: SigningKey::from_bytes(&seed.finalize().into()),
        }
    }

    /// `chat.discord.public_key`: 64 hex digits.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// `X-Signature-Ed25519` for `timestamp` + `body`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        let message = [timestamp.as_bytes(), body].concat();
        hex::encode(self.key.sign(&message).to_bytes())
    }
}

/// Now, in Unix seconds, as `X-Signature-Timestamp` carries it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh interaction id and token (Discord gives each interaction its
/// own).
pub fn fresh_id() -> (String, String) {
    let n = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (
        format!("{}", 523456789012345678u64 + n),
        format!("interaction-token-{n}"),
    )
}

/// A guild member using the application, as interactions carry them.
pub fn member(
    user_id: &str,
    username: &str,
    global_name: Option<&str>,
    nick: Option<&str>,
) -> Value {
    json!({
        "user": {"id": user_id, "username": username, "global_name": global_name,
                 "discriminator": "0", "avatar": null, "public_flags": 0},
        "nick": nick,
        "avatar": null,
        "roles": [],
        "joined_at": "2025-01-01T00:00:00.000000+00:00",
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "permissions": "2147483647",
        "communication_disabled_until": null,
    })
}

/// The fields every interaction in a server carries.
fn envelope(kind: u8, id: &str, token: &str, member: Value) -> Value {
    json!({
        "id": id,
        "application_id": APPLICATION_ID,
        "type": kind,
        "guild_id": GUILD_ID,
        "channel_id": CHANNEL_ID,
        "member": member,
        "token": token,
        "version": 1,
        "app_permissions": "2147483647",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD_ID},
        "context": 0,
        "attachment_size_limit": 26214400,
    })
}

/// An APPLICATION_COMMAND (type 2) interaction: a slash command `name`
/// with `options` (subcommands nest theirs), used by `member`.
pub fn command(name: &str, options: Value, member: Value) -> (Value, String) {
    let (id, token) = fresh_id();
    let mut i = envelope(2, &id, &token, member);
    i["data"] = json!({"id": "623456789012345678", "name": name, "type": 1, "options": options});
    (i, token)
}

/// An APPLICATION_COMMAND_AUTOCOMPLETE (type 4) interaction: a slash
/// command `name` being typed, `options` as far as given, the one being
/// typed marked `"focused": true` with its partial value.
pub fn autocomplete(name: &str, options: Value, member: Value) -> Value {
    let (id, token) = fresh_id();
    let mut i = envelope(4, &id, &token, member);
    i["data"] = json!({"id": "623456789012345678", "name": name, "type": 1, "options": options});
    i
}

/// A MESSAGE_COMPONENT (type 3) interaction: a press of the button
/// `custom_id` on one of the bot's messages.
pub fn button(custom_id: &str, member: Value) -> (Value, String) {
    let (id, token) = fresh_id();
    let mut i = envelope(3, &id, &token, member);
    i["data"] = json!({"custom_id": custom_id, "component_type": 2});
    i["message"] = message_json("INC-1");
    (i, token)
}

/// A PING (type 1): Discord checking the endpoint.
pub fn ping() -> Value {
    json!({"id": "723456789012345678", "application_id": APPLICATION_ID, "type": 1,
           "token": "ping-token", "version": 1})
}
