//! A fake Discord for the tests: the REST endpoint an interaction's
//! deferred answer is edited through (`PATCH /api/v10/webhooks/{app}/
//! {token}/messages/@original`, as serenity's client calls it through its
//! proxy setting), on loopback; and Discord's side of the interactions
//! endpoint: a real Ed25519 key pair that signs interactions in Discord's
//! documented wire format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::patch;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::Digest;

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

#[derive(Default)]
struct Recorded {
    edits: Vec<Edit>,
}

/// The fake REST API on loopback.
#[derive(Clone)]
pub struct FakeDiscord {
    url: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let router = Router::new()
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/@original",
                patch(edit_original),
            )
            .with_state(recorded.clone());
        let url = crate::helpers::serve(router).await;
        FakeDiscord { url, recorded }
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
