//! firstline as a Discord application (HTTP interactions): the real server
//! with serenity's REST client pointed at the fake Discord, and
//! interactions signed the way Discord signs them, with a real Ed25519 key
//! pair made for each test.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_discord::{
    APPLICATION_ID, BOT_TOKEN, CHANNEL_ID, DiscordKeys, FakeDiscord, GUILD_ID, button, command,
    member, ping, unix_now,
};
use crate::helpers::{Backend, TestApp, spawn_app_on, spawn_app_with_file_on};
use crate::slack::secret_file;

pub(crate) const USER_ID: &str = "80351110224678912";
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct DiscordApp {
    pub(crate) app: TestApp,
    pub(crate) discord: FakeDiscord,
    pub(crate) keys: DiscordKeys,
    _secrets: tempfile::TempDir,
}

/// The app on `backend` as a Discord application, with `/console/*`
/// mounted beside it (to compare answers), talking to a fresh fake
/// Discord.
pub(crate) async fn discord_app(backend: Backend, extra: &[(&str, &str)]) -> Option<DiscordApp> {
    discord_app_with_file(backend, None, extra).await
}

/// The same with `toml` as its configuration file (contacts, policies).
pub(crate) async fn discord_app_with_file(
    backend: Backend,
    toml: Option<&str>,
    extra: &[(&str, &str)],
) -> Option<DiscordApp> {
    let discord = FakeDiscord::start().await;
    let keys = DiscordKeys::generate();
    let secrets = tempfile::tempdir().expect("temp dir");
    let token_file = secret_file(&secrets, "discord-token", BOT_TOKEN);
    let public_key = keys.public_key_hex();
    let api_url = discord.api_url();
    let mut env = vec![
        ("FIRSTLINE_CHAT__PLATFORM", "discord"),
        ("FIRSTLINE_CHAT__CHANNEL", CHANNEL_ID),
        ("FIRSTLINE_CHAT__CONSOLE__ENABLED", "true"),
        (
            "FIRSTLINE_CHAT__DISCORD__BOT_TOKEN__FILE",
            token_file.as_str(),
        ),
        ("FIRSTLINE_CHAT__DISCORD__APPLICATION_ID", APPLICATION_ID),
        ("FIRSTLINE_CHAT__DISCORD__PUBLIC_KEY", public_key.as_str()),
        ("FIRSTLINE_CHAT__DISCORD__GUILD_ID", GUILD_ID),
        ("FIRSTLINE_CHAT__DISCORD__API_URL", api_url.as_str()),
    ];
    env.extend_from_slice(extra);
    let app = match toml {
        Some(toml) => spawn_app_with_file_on(backend, toml, &env).await?,
        None => spawn_app_on(backend, &env).await?,
    };
    Some(DiscordApp {
        app,
        discord,
        keys,
        _secrets: secrets,
    })
}

/// Nelly, a member of the server, as interactions carry her.
pub(crate) fn nelly() -> Value {
    member(USER_ID, "nelly", Some("Nelly"), None)
}

impl DiscordApp {
    fn url(&self) -> String {
        format!("{}/discord/interactions", self.app.addr)
    }

    /// POSTs `body` with the given headers (`None` leaves one out).
    async fn post(
        &self,
        body: &[u8],
        signature: Option<&str>,
        timestamp: Option<&str>,
    ) -> (u16, Value) {
        let mut r = self
            .app
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            r = r.header("X-Signature-Ed25519", s);
        }
        if let Some(t) = timestamp {
            r = r.header("X-Signature-Timestamp", t);
        }
        let r = r.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sends `interaction` signed now, as Discord does.
    pub(crate) async fn send(&self, interaction: &Value) -> (u16, Value) {
        let body = interaction.to_string();
        let ts = unix_now().to_string();
        let sig = self.keys.sign(&ts, body.as_bytes());
        self.post(body.as_bytes(), Some(&sig), Some(&ts)).await
    }

    /// `/incident SUB` with the given options, by Nelly: its answer.
    pub(crate) async fn incident(&self, sub: &str, options: Value) -> (u16, Value) {
        let (i, _) = command(
            "incident",
            json!([{"name": sub, "type": 1, "options": options}]),
            nelly(),
        );
        self.send(&i).await
    }

    pub(crate) async fn timeline(&self, id: &str) -> Vec<Value> {
        let (_, tl) = self
            .app
            .get_json(&format!("/api/incidents/{id}/timeline"))
            .await;
        tl["events"].as_array().cloned().unwrap_or_default()
    }
}

pub(crate) fn content(answer: &Value) -> &str {
    answer["data"]["content"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_ping_signed_by_discord_is_answered_with_a_pong() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let (status, answer) = d.send(&ping()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"type": 1}));
}

/// A request that must be refused: what it is, its body, signature and
/// timestamp headers, and words the refusal must contain.
type Case<'a> = (&'a str, &'a [u8], Option<&'a str>, Option<&'a str>, &'a str);

#[tokio::test]
async fn forged_tampered_stale_or_unsigned_interactions_get_401_and_change_nothing() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let (declare, _) = command(
        "incident",
        json!([{"name": "declare", "type": 1, "options": [
            {"name": "title", "type": 3, "value": "checkout is down"}
        ]}]),
        nelly(),
    );
    let body = declare.to_string();
    let now = unix_now();
    let ts = now.to_string();
    let sig = d.keys.sign(&ts, body.as_bytes());

    let tampered_body = body.replace("checkout is down", "checkout is up");
    let later = (now + 1).to_string();
    let stale = (now - 301).to_string();
    let stale_sig = d.keys.sign(&stale, body.as_bytes());
    let ahead = (now + 120).to_string();
    let ahead_sig = d.keys.sign(&ahead, body.as_bytes());
    let other_key = DiscordKeys::generate().sign(&ts, body.as_bytes());
    let cases: Vec<Case> = vec![
        (
            "tampered body",
            tampered_body.as_bytes(),
            Some(&sig),
            Some(&ts),
            "does not match",
        ),
        (
            "tampered timestamp",
            body.as_bytes(),
            Some(&sig),
            Some(&later),
            "does not match",
        ),
        (
            "stale timestamp",
            body.as_bytes(),
            Some(&stale_sig),
            Some(&stale),
            "replay",
        ),
        (
            "timestamp ahead",
            body.as_bytes(),
            Some(&ahead_sig),
            Some(&ahead),
            "in the future",
        ),
        (
            "another application's key",
            body.as_bytes(),
            Some(&other_key),
            Some(&ts),
            "does not match",
        ),
        (
            "malformed signature",
            body.as_bytes(),
            Some("not-hex"),
            Some(&ts),
            "128 hex digits",
        ),
        (
            "no signature",
            body.as_bytes(),
            None,
            Some(&ts),
            "X-Signature-Ed25519",
        ),
        (
            "no timestamp",
            body.as_bytes(),
            Some(&sig),
            None,
            "X-Signature-Timestamp",
        ),
        ("no headers", body.as_bytes(), None, None, "unsigned"),
    ];
    for (what, body, sig, ts, words) in cases {
        let (status, why) = d.post(body, sig, ts).await;
        assert_eq!(status, 401, "{what}: {why}");
        let why = why["error"].as_str().unwrap_or_default();
        assert!(why.contains(words), "{what}: {why}");
    }
    assert!(
        d.app.incident_ids().await.is_empty(),
        "nothing was declared"
    );

    // The genuine request works once; the same signed request again is a
    // replay.
    let (status, answer) = d.post(body.as_bytes(), Some(&sig), Some(&ts)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, why) = d.post(body.as_bytes(), Some(&sig), Some(&ts)).await;
    assert_eq!(status, 401, "{why}");
    assert!(
        why["error"].as_str().unwrap_or("").contains("replay"),
        "{why}"
    );
    assert_eq!(d.app.incident_ids().await, ["INC-1"]);
}

async fn declare_names_the_discord_user(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    let (status, answer) = d
        .incident(
            "declare",
            json!([
                {"name": "title", "type": 3, "value": "checkout is down"},
                {"name": "sev", "type": 3, "value": "P1"}
            ]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "only Nelly sees it: {answer}");
    assert!(content(&answer).contains("INC-1"), "{answer}");

    let (_, inc) = d.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["title"], "checkout is down", "{inc}");
    assert_eq!(inc["incident"]["severity"], "P1", "{inc}");
    let actor = format!("Nelly (discord:{USER_ID})");
    let tl = d.timeline("INC-1").await;
    assert!(tl.iter().any(|e| e["actor"] == actor.as_str()), "{tl:?}");
}

#[tokio::test]
async fn an_incident_declared_through_discord_names_the_discord_user_on_its_timeline() {
    declare_names_the_discord_user(Backend::Sqlite).await;
}

#[tokio::test]
async fn declaring_through_discord_works_on_postgres_too() {
    declare_names_the_discord_user(Backend::Postgres).await;
}

async fn ack_answers_with_the_consoles_words(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    let actor = format!("Nelly (discord:{USER_ID})");
    // INC-1 through Discord, INC-2 on the console by the same person.
    let (status, _) = d
        .incident(
            "declare",
            json!([{"name": "title", "type": 3, "value": "queue backlog"}]),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = d
        .app
        .command(&actor, "/incident declare queue backlog")
        .await;
    assert_eq!(status, 200);

    let (status, answer) = d
        .incident("ack", json!([{"name": "id", "type": 3, "value": "INC-1"}]))
        .await;
    assert_eq!(status, 200, "{answer}");
    let (_, console) = d.app.command(&actor, "/incident ack INC-2").await;
    let console = console["reply"].as_str().unwrap_or_default();
    assert!(!console.is_empty());
    assert_eq!(content(&answer), console.replace("INC-2", "INC-1"));

    let (_, inc) = d.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "acknowledged", "{inc}");
    let tl = d.timeline("INC-1").await;
    assert!(
        tl.iter()
            .any(|e| e["kind"] == "state_changed" && e["actor"] == actor.as_str()),
        "{tl:?}"
    );

    // A refusal is marked as one, for Nelly only.
    let (_, refused) = d
        .incident("ack", json!([{"name": "id", "type": 3, "value": "INC-9"}]))
        .await;
    assert!(content(&refused).starts_with("⚠️"), "{refused}");
    assert_eq!(refused["data"]["flags"], 64, "{refused}");
}

#[tokio::test]
async fn an_ack_through_discord_answers_with_the_consoles_words() {
    ack_answers_with_the_consoles_words(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_ack_through_discord_answers_with_the_consoles_words_on_postgres_too() {
    ack_answers_with_the_consoles_words(Backend::Postgres).await;
}

async fn resolve_button_resolves(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    let (status, _) = d
        .incident(
            "declare",
            json!([{"name": "title", "type": 3, "value": "disk full"}]),
        )
        .await;
    assert_eq!(status, 200);
    let (press, _) = button("incident_resolve:INC-1", nelly());
    let (status, answer) = d.send(&press).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    let (_, inc) = d.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "resolved", "{inc}");

    let (other, _) = button("somebody_elses_button:1", nelly());
    let (status, answer) = d.send(&other).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        content(&answer).contains("not one of firstline's"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_bots_resolve_button_resolves_the_incident_as_the_command_does() {
    resolve_button_resolves(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_resolve_button_works_on_postgres_too() {
    resolve_button_resolves(Backend::Postgres).await;
}

async fn late_answer_is_edited_in(backend: Backend) {
    let Some(d) = discord_app(
        backend,
        &[("FIRSTLINE_CHAT__DISCORD__ANSWER_WITHIN_MS", "0")],
    )
    .await
    else {
        return;
    };
    let (i, token) = command(
        "incident",
        json!([{"name": "declare", "type": 1, "options": [
            {"name": "title", "type": 3, "value": "payments slow"}
        ]}]),
        nelly(),
    );
    let (status, answer) = d.send(&i).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"type": 5, "data": {"flags": 64}}));

    let edits = d.discord.wait_edits(&token, WAIT).await;
    assert_eq!(edits.len(), 1, "{:?}", d.discord.edits());
    let edit = &edits[0];
    assert_eq!(edit.application_id, APPLICATION_ID);
    assert_eq!(
        edit.authorization.as_deref(),
        Some(format!("Bot {BOT_TOKEN}").as_str())
    );
    let text = edit.body["content"].as_str().unwrap_or_default();
    assert!(text.contains("INC-1"), "{}", edit.body);
    assert_eq!(d.app.incident_ids().await, ["INC-1"]);
    // What the fake answers is a message as serenity reads Discord's.
    let parsed: Result<serenity::model::channel::Message, _> =
        serde_json::from_value(crate::fake_discord::message_json(text));
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[tokio::test]
async fn a_command_not_done_in_time_is_deferred_and_its_answer_edited_in_through_the_rest_api() {
    late_answer_is_edited_in(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_deferred_answer_is_edited_in_on_postgres_too() {
    late_answer_is_edited_in(Backend::Postgres).await;
}

#[tokio::test]
async fn an_unknown_interaction_type_is_a_400_naming_it() {
    let Some(d) = discord_app(Backend::Sqlite, &[]).await else {
        return;
    };
    let (status, why) = d
        .send(&json!({"id": "1", "application_id": APPLICATION_ID, "type": 9, "token": "t", "version": 1}))
        .await;
    assert_eq!(status, 400, "{why}");
    assert!(
        why["error"].as_str().unwrap_or("").contains("type 9"),
        "{why}"
    );
    let (status, why) = d.send(&json!({"type": 2, "data": "nonsense"})).await;
    assert_eq!(status, 400, "{why}");
    assert!(why["error"].is_string(), "{why}");
}

#[tokio::test]
async fn the_interactions_endpoint_is_404_when_firstline_is_not_a_discord_app() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .client
        .post(format!("{}/discord/interactions", app.addr))
        .body(ping().to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 404);
    let why: Value = r.json().await.unwrap_or(Value::Null);
    assert!(why["error"].is_string(), "{why}");
}

impl DiscordApp {
    /// An alert opens INC-1: the root message in the channel, once it is
    /// there.
    pub(crate) async fn open_incident(&self) -> crate::fake_discord::Sent {
        let body = crate::helpers::am_payload(
            "g-discord",
            &[(
                "WorkerDown",
                "notification-worker",
                "critical",
                "w-1",
                "firing",
                "2026-11-23T00:00:00Z",
            )],
        );
        let (status, _) = self.app.post_hook("alertmanager", body).await;
        assert_eq!(status, 200);
        assert!(
            self.discord
                .wait_for(|d| !d.threads().is_empty(), WAIT)
                .await,
            "a thread is started: {:?}",
            self.discord.messages()
        );
        self.app.wait_posts("INC-1", 1).await;
        let roots = self.discord.messages_in(CHANNEL_ID);
        assert_eq!(roots.len(), 1, "one root: {roots:?}");
        roots[0].clone()
    }
}

fn custom_ids(body: &Value) -> Vec<String> {
    body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["custom_id"].as_str().map(str::to_string))
        .collect()
}

async fn root_embed_and_thread(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    let root = d.open_incident().await;
    let embed = &root.body["embeds"][0];
    let title = embed["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("INC-1 [P1] "), "{}", root.body);
    assert!(embed["color"].is_number(), "{}", root.body);
    assert!(
        embed["fields"].to_string().contains("triggered"),
        "{}",
        root.body
    );
    let ids = custom_ids(&root.body);
    assert!(ids.contains(&"incident_ack:INC-1".to_string()), "{ids:?}");
    assert!(
        ids.contains(&"incident_resolve:INC-1".to_string()),
        "{ids:?}"
    );
    // Every button is one the interactions endpoint understands.
    for id in &ids {
        assert!(
            firstline::chat::discord::interactions::button_line(id).is_some(),
            "{id}"
        );
    }
    // Nobody is mentioned by what alerts say.
    assert_eq!(
        root.body["allowed_mentions"]["parse"],
        json!([]),
        "{}",
        root.body
    );

    let threads = d.discord.threads();
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0].channel, CHANNEL_ID);
    assert_eq!(threads[0].message, root.id, "started from the root");
    let name = threads[0].body["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("INC-1 "), "{name}");
    let thread = threads[0].thread.clone();
    assert!(
        d.discord
            .wait_for(|f| !f.messages_in(&thread).is_empty(), WAIT)
            .await
    );
    let in_thread = d.discord.messages_in(&thread);
    let text = in_thread[0].body["content"].as_str().unwrap_or_default();
    assert!(text.contains("WorkerDown"), "{text}");
    assert!(
        in_thread
            .iter()
            .all(|m| m.body["content"].as_str().unwrap_or("").chars().count() <= 2000)
    );
    // The incident's later posts go to the thread, not the channel.
    let before = d.discord.messages_in(&thread).len();
    let (status, _) = d.app.command("Nelly", "/incident sev INC-1 P2").await;
    assert_eq!(status, 200);
    assert!(
        d.discord
            .wait_for(|f| f.messages_in(&thread).len() > before, WAIT)
            .await,
        "{:?}",
        d.discord.messages()
    );
    assert_eq!(d.discord.messages_in(CHANNEL_ID).len(), 1);
}

#[tokio::test]
async fn an_alert_posts_a_root_embed_with_buttons_and_its_text_in_a_thread_started_from_it() {
    root_embed_and_thread(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_root_embed_and_thread_work_on_postgres_too() {
    root_embed_and_thread(Backend::Postgres).await;
}

async fn ack_edits_the_root_embed(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    let root = d.open_incident().await;
    let (status, answer) = d
        .incident("ack", json!([{"name": "id", "type": 3, "value": "INC-1"}]))
        .await;
    assert_eq!(status, 200, "{answer}");
    let acked = |f: &FakeDiscord| {
        f.message_edits().iter().any(|e| {
            e.channel == CHANNEL_ID
                && e.id == root.id
                && e.body["embeds"][0]["fields"]
                    .to_string()
                    .contains("acknowledged")
        })
    };
    assert!(
        d.discord.wait_for(acked, WAIT).await,
        "{:?}",
        d.discord.message_edits()
    );
    let edit = d
        .discord
        .message_edits()
        .into_iter()
        .rfind(|e| e.id == root.id)
        .expect("an edit of the root");
    let fields = edit.body["embeds"][0]["fields"].to_string();
    assert!(fields.contains(&format!("discord:{USER_ID}")), "{fields}");
    let ids = custom_ids(&edit.body);
    assert!(
        !ids.iter().any(|i| i.starts_with("incident_ack")),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"incident_resolve:INC-1".to_string()),
        "{ids:?}"
    );
    // Still one root: edited, not posted again.
    assert_eq!(d.discord.messages_in(CHANNEL_ID).len(), 1);
}

#[tokio::test]
async fn an_ack_through_discord_edits_the_root_embed_in_place() {
    ack_edits_the_root_embed(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_ack_through_discord_edits_the_root_embed_on_postgres_too() {
    ack_edits_the_root_embed(Backend::Postgres).await;
}

async fn retried_after_a_429(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    d.discord.fail_next_messages(1);
    let root = d.open_incident().await;
    assert_eq!(d.discord.rate_limited(), 1);
    assert!(
        root.body["embeds"][0]["title"]
            .as_str()
            .unwrap_or("")
            .starts_with("INC-1")
    );
    let thread = d.discord.threads()[0].thread.clone();
    assert!(
        d.discord
            .wait_for(|f| !f.messages_in(&thread).is_empty(), WAIT)
            .await
    );
    assert_eq!(d.discord.threads().len(), 1, "one thread");
}

#[tokio::test]
async fn a_429_from_discord_is_retried_and_nothing_is_lost() {
    retried_after_a_429(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_429_from_discord_is_retried_on_postgres_too() {
    retried_after_a_429(Backend::Postgres).await;
}

/// `firstline discord register --config FILE` against `discord`: exit
/// code, stdout, stderr.
pub(crate) async fn register(
    discord: &FakeDiscord,
    dir: &tempfile::TempDir,
) -> (i32, String, String) {
    let token_file = secret_file(dir, "discord-token", BOT_TOKEN);
    let config = dir.path().join("firstline.toml");
    std::fs::write(
        &config,
        format!(
            "[chat]\nplatform = \"discord\"\nchannel = \"{CHANNEL_ID}\"\n\n[chat.discord]\nbot_token = {{ file = \"{token_file}\" }}\napplication_id = \"{APPLICATION_ID}\"\npublic_key = \"{}\"\nguild_id = \"{GUILD_ID}\"\napi_url = \"{}\"\n",
            DiscordKeys::generate().public_key_hex(),
            discord.api_url()
        ),
    )
    .expect("config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(["discord", "register", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("FIRSTLINE_CONFIG")
        .output()
        .await
        .expect("run firstline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn discord_register_puts_the_commands_from_the_grammar_and_again_the_same() {
    let discord = FakeDiscord::start().await;
    let dir = tempfile::tempdir().expect("temp dir");

    let (code, out, err) = register(&discord, &dir).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("registered 6 commands for guild {GUILD_ID}")),
        "{out}"
    );
    assert!(out.contains("/incident (11 subcommands)"), "{out}");
    let (code2, _, err2) = register(&discord, &dir).await;
    assert_eq!(code2, 0, "{err2}");

    let puts = discord.command_puts();
    assert_eq!(puts.len(), 2);
    let (app, guild, body) = &puts[0];
    assert_eq!((app.as_str(), guild.as_str()), (APPLICATION_ID, GUILD_ID));
    let commands = body.as_array().expect("a list of commands");
    let incident = commands
        .iter()
        .find(|c| c["name"] == "incident")
        .expect("/incident");
    let ack = incident["options"]
        .as_array()
        .and_then(|subs| subs.iter().find(|s| s["name"] == "ack"))
        .expect("/incident ack");
    assert_eq!(ack["type"], 1);
    assert_eq!(ack["options"][0]["name"], "id");
    assert_eq!(puts[1].2, *body, "a second run sends the same commands");
}

#[tokio::test]
async fn discord_register_names_discords_refusal_without_the_token() {
    let discord = FakeDiscord::start().await;
    discord.refuse_commands(403, "Missing Access");
    let dir = tempfile::tempdir().expect("temp dir");

    let (code, _, err) = register(&discord, &dir).await;

    assert_ne!(code, 0);
    assert!(err.contains("Discord refused the commands: 403"), "{err}");
    assert!(err.contains("Missing Access"), "{err}");
    assert!(!err.contains(BOT_TOKEN), "{err}");
}
