//! firstline as a Slack app (HTTP mode): the real server with the real
//! slack-morphism client pointed at the fake Slack Web API, and requests
//! to `/slack/*` signed the way Slack signs them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_slack::{
    FakeSlack, Message, SLACK_DOC_BODY, SLACK_DOC_SIGNATURE, SLACK_DOC_TIMESTAMP,
    block_actions_form, command_form, event_callback, send_signed, unix_now, url_verification,
};
use crate::helpers::{Backend, TestApp, am_payload, spawn_app_on, spawn_with};

const TOKEN: &str = "xoxb-firstline-test";
pub(crate) const APP_TOKEN: &str = "xapp-1-A0FAKE-1-firstline-test";
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5-test";
pub(crate) const CHANNEL: &str = "C0INCIDENT";
pub(crate) const FORM: &str = "application/x-www-form-urlencoded";
pub(crate) const WAIT: Duration = Duration::from_secs(10);
static TRIGGERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A Slack trigger id: Slack gives every invocation its own, so no two
/// commands are the same signed request.
pub(crate) fn trigger() -> String {
    format!(
        "trigger-{}",
        TRIGGERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub(crate) struct SlackApp {
    pub(crate) app: TestApp,
    pub(crate) slack: FakeSlack,
    _secrets: tempfile::TempDir,
    /// The settings it was started with, to start it again.
    env: Vec<(String, String)>,
}

/// Writes a secret `value` into `dir/name`; its path, for `{ file = … }`.
pub(crate) fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, value).expect("write secret");
    path.display().to_string()
}

/// The app on `backend` as a Slack app, talking to a fresh fake Slack.
async fn slack_app(backend: Backend) -> Option<SlackApp> {
    slack_app_with(backend, &[]).await
}

/// The same in Socket Mode: app token, no signing secret; returned once
/// its listener is connected.
pub(crate) async fn socket_app_with(backend: Backend, extra: &[(&str, &str)]) -> Option<SlackApp> {
    let mut env = vec![("FIRSTLINE_CHAT__SLACK__MODE", "socket")];
    env.extend_from_slice(extra);
    let s = start(backend, Mode::Socket, &env).await?;
    assert!(
        s.slack.wait_connections(1, WAIT).await,
        "the Socket Mode listener did not connect: {:?}",
        s.slack.calls_of("apps.connections.open")
    );
    Some(s)
}

pub(crate) async fn slack_app_with(backend: Backend, extra: &[(&str, &str)]) -> Option<SlackApp> {
    start(backend, Mode::Http, extra).await
}

#[derive(PartialEq)]
enum Mode {
    Http,
    Socket,
}

/// A Slack app (HTTP mode) with `toml` as its configuration file (for
/// contacts and policies).
pub(crate) async fn slack_app_with_file(
    backend: Backend,
    toml: &str,
    extra: &[(&str, &str)],
) -> Option<SlackApp> {
    start_configured(backend, Mode::Http, Some(toml), extra).await
}

async fn start(backend: Backend, mode: Mode, extra: &[(&str, &str)]) -> Option<SlackApp> {
    start_configured(backend, mode, None, extra).await
}

async fn start_configured(
    backend: Backend,
    mode: Mode,
    toml: Option<&str>,
    extra: &[(&str, &str)],
) -> Option<SlackApp> {
    let slack = FakeSlack::start(TOKEN).await;
    slack.accept_app_token(APP_TOKEN);
    slack.add_channel(CHANNEL);
    slack.add_user("U0SAM", "sam", "Sam Smith");
    let secrets = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, value: &str| secret_file(&secrets, name, value);
    let (token_file, signing_file, app_token_file) = (
        file("token", TOKEN),
        file("secret", SECRET),
        file("app-token", APP_TOKEN),
    );
    let api_url = slack.api_url();
    let mut env = vec![
        ("FIRSTLINE_CHAT__PLATFORM", "slack"),
        ("FIRSTLINE_CHAT__CHANNEL", CHANNEL),
        (
            "FIRSTLINE_CHAT__SLACK__BOT_TOKEN__FILE",
            token_file.as_str(),
        ),
        ("FIRSTLINE_CHAT__SLACK__API_URL", api_url.as_str()),
    ];
    env.push(match mode {
        Mode::Http => (
            "FIRSTLINE_CHAT__SLACK__SIGNING_SECRET__FILE",
            signing_file.as_str(),
        ),
        Mode::Socket => (
            "FIRSTLINE_CHAT__SLACK__APP_TOKEN__FILE",
            app_token_file.as_str(),
        ),
    });
    env.extend_from_slice(extra);
    let app = match toml {
        Some(toml) => crate::helpers::spawn_app_with_file_on(backend, toml, &env).await?,
        None => spawn_app_on(backend, &env).await?,
    };
    Some(SlackApp {
        app,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        slack,
        _secrets: secrets,
    })
}

impl SlackApp {
    /// Stops the server and starts it again on the same store and settings.
    pub(crate) async fn restart(self) -> SlackApp {
        self.restart_with(&[]).await
    }

    /// Stops the server and starts it again on the same store, with
    /// `changes` to its settings (`FIRSTLINE_CHAT__SLACK__MODE`, …).
    pub(crate) async fn restart_with(mut self, changes: &[(&str, &str)]) -> SlackApp {
        for (key, value) in changes {
            self.env.retain(|(k, _)| k != key);
            self.env.push((key.to_string(), value.to_string()));
        }
        let (dir, db_url) = self.app.stop().await;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let app = spawn_with(dir, db_url, &env).await;
        SlackApp { app, ..self }
    }

    /// Where the app token is kept, for switching to Socket Mode.
    pub(crate) fn app_token_file(&self) -> String {
        self._secrets.path().join("app-token").display().to_string()
    }

    pub(crate) async fn signed(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> reqwest::Response {
        send_signed(
            &self.app.client,
            &format!("{}{path}", self.app.addr),
            SECRET,
            content_type,
            body,
            unix_now(),
        )
        .await
    }

    /// `/incident …` typed by Sam in the channel; the JSON answer.
    pub(crate) async fn command(&self, command: &str, text: &str) -> (u16, Value) {
        self.command_in(CHANNEL, command, text).await
    }

    /// The same, typed in `channel`.
    pub(crate) async fn command_in(
        &self,
        channel: &str,
        command: &str,
        text: &str,
    ) -> (u16, Value) {
        let body = command_form(
            command,
            text,
            "U0SAM",
            "sam",
            channel,
            &self.slack.response_url("cmd"),
            &trigger(),
        );
        let r = self.signed("/slack/commands", FORM, &body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The incident's root message once there is one.
    pub(crate) async fn root(&self) -> Message {
        assert!(
            self.slack
                .wait_for(|s| !s.channel_messages(CHANNEL).is_empty(), WAIT)
                .await,
            "no root message in {CHANNEL}: {:?}",
            self.slack.calls()
        );
        self.slack.channel_messages(CHANNEL)[0].clone()
    }

    pub(crate) async fn open_incident(&self) -> Message {
        let body = am_payload(
            "g-slack",
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
        let root = self.root().await;
        // Recorded as the incident's post, so a reaction on it is found.
        self.app.wait_posts("INC-1", 1).await;
        root
    }

    /// Waits until the root message's header shows `state`.
    pub(crate) async fn root_shows(&self, state: &str, root_ts: &str) {
        assert!(
            self.slack
                .wait_for(
                    |st| st
                        .message(CHANNEL, root_ts)
                        .is_some_and(|m| header(&m).contains(state)),
                    WAIT
                )
                .await,
            "the root does not show {state}: {:?}",
            self.slack.message(CHANNEL, root_ts)
        );
    }

    /// Waits for the first answer POSTed to `response_url(id)` and checks
    /// that it says `words`.
    pub(crate) async fn answered(&self, id: &str, words: &str) {
        assert!(
            self.slack
                .wait_for(|st| !st.responses(id).is_empty(), WAIT)
                .await,
            "nothing arrived at the response_url {id:?}"
        );
        let answer = self.slack.responses(id)[0].to_string();
        assert!(answer.contains(words), "{answer}");
    }

    /// The timeline and the postmortem say who changed INC-1's state, from
    /// Slack.
    pub(crate) async fn timeline_and_postmortem_name_sam(&self) {
        let tl = self.timeline().await;
        assert!(
            tl.iter()
                .any(|e| e["kind"] == "state_changed" && e["actor"] == "sam (slack:U0SAM)"),
            "{tl:?}"
        );
        let (_, pm) = self
            .app
            .get_text("/api/incidents/INC-1/postmortem?format=md")
            .await;
        assert!(pm.contains("sam (slack:U0SAM)"), "{pm}");
    }

    pub(crate) async fn timeline(&self) -> Vec<Value> {
        let (_, tl) = self.app.get_json("/api/incidents/INC-1/timeline").await;
        tl["events"].as_array().cloned().unwrap_or_default()
    }
}

pub(crate) fn header(m: &Message) -> String {
    m.blocks
        .as_ref()
        .and_then(|b| b[0]["text"]["text"].as_str())
        .unwrap_or("")
        .to_string()
}

async fn alert_to_ack_through_slack(backend: Backend) {
    let Some(s) = slack_app(backend).await else {
        return;
    };
    let root = s.open_incident().await;

    // The root: blocks with the state at a glance, a text fallback, buttons.
    assert_eq!(header(&root), "🔴 INC-1 · P1 · triggered", "{root:?}");
    assert!(root.text.starts_with("INC-1 [P1]"), "{root:?}");
    let blocks = root.blocks.clone().unwrap_or(Value::Null).to_string();
    assert!(blocks.contains("WorkerDown"), "the opening text: {blocks}");
    assert!(
        blocks.contains("incident_ack") && blocks.contains("incident_resolve"),
        "{blocks}"
    );

    // A signed /incident ack from Slack: answered at once, to Sam only.
    let (status, answer) = s.command("/incident", "ack INC-1").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or("")
            .contains("INC-1 acknowledged by sam (slack:U0SAM)"),
        "{answer}"
    );

    // The root is updated in place and names who acknowledged.
    let root_ts = root.ts.clone();
    s.root_shows("acknowledged", &root_ts).await;
    let updated = s.slack.message(CHANNEL, &root_ts).expect("root");
    assert!(updated.updates >= 1);
    let fields = updated.blocks.clone().unwrap_or(Value::Null).to_string();
    assert!(fields.contains("sam (slack:U0SAM)"), "{fields}");
    assert!(
        !fields.contains("incident_ack"),
        "no Acknowledge once acknowledged: {fields}"
    );
    // Everything else goes in the thread.
    let thread = s.slack.thread(CHANNEL, &root_ts);
    assert!(
        thread.iter().any(|m| m.text.contains("acknowledged")),
        "{thread:?}"
    );
    assert_eq!(
        s.slack
            .channel_messages(CHANNEL)
            .iter()
            .filter(|m| m.thread_ts.is_none())
            .count(),
        1
    );

    s.timeline_and_postmortem_name_sam().await;
}

#[tokio::test]
async fn an_alert_opens_a_root_in_slack_and_a_signed_ack_updates_it_naming_the_slack_user() {
    alert_to_ack_through_slack(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_slack_flow_works_on_postgres_too() {
    alert_to_ack_through_slack(Backend::Postgres).await;
}

#[tokio::test]
async fn forged_tampered_stale_replayed_or_unsigned_requests_get_401_and_change_nothing() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    s.open_incident().await;
    let url = format!("{}/slack/commands", s.app.addr);
    let body = command_form(
        "/incident",
        "ack INC-1",
        "U0SAM",
        "sam",
        CHANNEL,
        &s.slack.response_url("x"),
        "t",
    );
    let c = &s.app.client;
    let now = unix_now();

    let wrong_secret = send_signed(c, &url, "not-the-secret", FORM, &body, now).await;
    let stale = send_signed(c, &url, SECRET, FORM, &body, now - 6 * 60).await;
    let tampered = c
        .post(&url)
        .header("content-type", FORM)
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            crate::fake_slack::slack_signature(SECRET, now, &body),
        )
        .body(body.replace("ack", "resolve"))
        .send()
        .await
        .expect("send");
    let unsigned = c
        .post(&url)
        .header("content-type", FORM)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    // Slack's own worked example: correctly signed, but from 2018.
    let documented = c
        .post(&url)
        .header("content-type", FORM)
        .header("x-slack-request-timestamp", SLACK_DOC_TIMESTAMP.to_string())
        .header("x-slack-signature", SLACK_DOC_SIGNATURE)
        .body(SLACK_DOC_BODY)
        .send()
        .await
        .expect("send");

    for (what, r) in [
        ("wrong secret", wrong_secret),
        ("stale", stale),
        ("tampered", tampered),
        ("unsigned", unsigned),
        ("Slack's 2018 example", documented),
    ] {
        assert_eq!(r.status().as_u16(), 401, "{what}");
        let why: Value = r.json().await.unwrap_or(Value::Null);
        assert!(why["error"].is_string(), "{what}: {why}");
    }
    // A good request works once; sent again it is a replay.
    let ts = unix_now();
    let first = send_signed(c, &url, SECRET, FORM, &body.replace("ack", "sev"), ts).await;
    assert_eq!(first.status().as_u16(), 200);
    let again = send_signed(c, &url, SECRET, FORM, &body.replace("ack", "sev"), ts).await;
    assert_eq!(again.status().as_u16(), 401);
    let why: Value = again.json().await.unwrap_or(Value::Null);
    assert!(
        why["error"].as_str().unwrap_or("").contains("replay"),
        "{why}"
    );

    let (_, inc) = s.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(
        inc["incident"]["state"], "triggered",
        "nothing changed: {inc}"
    );
}

#[tokio::test]
async fn the_events_endpoint_answers_slacks_url_verification() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    let r = s
        .signed(
            "/slack/events",
            "application/json",
            &url_verification("ch4ll3nge"),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["challenge"], "ch4ll3nge");
}

#[tokio::test]
async fn a_button_press_acknowledges_as_the_command_does_and_answers_the_presser() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    let root = s.open_incident().await;
    let body = block_actions_form(
        "U0SAM",
        "sam",
        CHANNEL,
        &root.ts,
        "incident_ack",
        "incident",
        "INC-1",
        &s.slack.response_url("button"),
    );
    let r = s.signed("/slack/interactions", FORM, &body).await;
    assert_eq!(r.status().as_u16(), 200);

    s.answered("button", "INC-1 acknowledged by sam (slack:U0SAM)")
        .await;
    s.root_shows("acknowledged", &root.ts).await;
}

#[tokio::test]
async fn a_reaction_on_a_bot_message_reaches_the_timeline_once_even_when_slack_resends_it() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    let root = s.open_incident().await;
    let reaction = |kind: &str| {
        json!({"type": kind, "user": "U0SAM", "reaction": "white_check_mark",
               "item_user": "U0BOT", "event_ts": "1733380000.000200",
               "item": {"type": "message", "channel": CHANNEL, "ts": root.ts}})
    };
    let added = event_callback("Ev0ADDED", reaction("reaction_added"));
    let first = s.signed("/slack/events", "application/json", &added).await;
    // Slack re-sends it (X-Slack-Retry-Num), signed anew.
    let retry = s
        .app
        .client
        .post(format!("{}/slack/events", s.app.addr))
        .header("content-type", "application/json")
        .header("x-slack-retry-num", "1")
        .header("x-slack-request-timestamp", (unix_now() + 1).to_string())
        .header(
            "x-slack-signature",
            crate::fake_slack::slack_signature(SECRET, unix_now() + 1, &added),
        )
        .body(added.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(retry.status().as_u16(), 200);
    let removed = event_callback("Ev0REMOVED", reaction("reaction_removed"));
    assert_eq!(
        s.signed("/slack/events", "application/json", &removed)
            .await
            .status()
            .as_u16(),
        200
    );

    let reactions: Vec<String> = s
        .timeline()
        .await
        .iter()
        .filter(|e| e["kind"] == "reaction")
        .map(|e| e["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        reactions,
        [
            format!(
                "sam (slack:U0SAM) reacted :white_check_mark: to message {CHANNEL}/{}",
                root.ts
            ),
            format!(
                "sam (slack:U0SAM) removed their :white_check_mark: from message {CHANNEL}/{}",
                root.ts
            ),
        ],
        "once each"
    );
}

#[tokio::test]
async fn a_429_from_slack_is_waited_out_and_the_post_still_arrives_once() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    s.slack.fail_next("chat.postMessage", 1, 429);
    let root = s.open_incident().await;
    assert_eq!(s.slack.ratelimited(), 1);
    assert_eq!(header(&root), "🔴 INC-1 · P1 · triggered");
    assert_eq!(
        s.slack
            .channel_messages(CHANNEL)
            .iter()
            .filter(|m| m.thread_ts.is_none())
            .count(),
        1,
        "one root, not two"
    );
}

#[tokio::test]
async fn slack_routes_answer_404_when_firstline_is_not_a_slack_app() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .client
        .post(format!("{}/slack/commands", app.addr))
        .body("x=1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("chat.platform"),
        "{body}"
    );
}

#[tokio::test]
async fn a_command_not_done_in_time_answers_working_on_it_and_the_result_follows() {
    // No time at all: every command takes the late path.
    let Some(s) = slack_app_with(
        Backend::Sqlite,
        &[("FIRSTLINE_CHAT__SLACK__ANSWER_WITHIN_MS", "0")],
    )
    .await
    else {
        return;
    };
    s.open_incident().await;
    let (status, answer) = s.command("/incident", "ack INC-1").await;
    assert_eq!(status, 200);
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("working on it: /incident ack INC-1"),
        "{answer}"
    );
    s.answered("cmd", "INC-1 acknowledged by sam (slack:U0SAM)")
        .await;
}

#[test]
fn the_app_manifest_registers_every_top_level_command_at_the_commands_route() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/slack/manifest.yaml"),
    )
    .expect("deploy/slack/manifest.yaml");
    let mut listed: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- command: /"))
        .collect();
    listed.sort_unstable();
    let mut known: Vec<&str> = commands::COMMANDS
        .iter()
        .map(|(name, _, _)| name.split_whitespace().next().unwrap_or(name))
        .filter(|name| *name != "help")
        .collect();
    known.sort_unstable();
    known.dedup();
    assert_eq!(listed, known, "the manifest and the grammar disagree");
    for route in ["/slack/commands", "/slack/events", "/slack/interactions"] {
        assert!(manifest.contains(route), "{route} is not in the manifest");
    }
    for event in ["reaction_added", "reaction_removed"] {
        assert!(manifest.contains(event), "{event} is not subscribed");
    }
}

#[tokio::test]
async fn messages_waiting_for_one_thread_go_out_as_one_post_and_the_root_shows_the_last_state() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    let root = s.open_incident().await;
    // Slack is slow to take posts: changes pile up behind the first.
    s.slack
        .delay("chat.postMessage", Duration::from_millis(400));
    for sev in ["P2", "P3", "P2", "P3", "P2", "P3"] {
        let (status, answer) = s.command("/incident", &format!("sev INC-1 {sev}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    s.root_shows("· P3 ·", &root.ts).await;
    // Every change is in the thread, in order, in fewer posts than changes.
    assert!(
        s.slack
            .wait_for(
                |st| st
                    .thread(CHANNEL, &root.ts)
                    .iter()
                    .map(|m| m.text.matches("severity").count())
                    .sum::<usize>()
                    >= 6,
                WAIT
            )
            .await,
        "{:?}",
        s.slack.thread(CHANNEL, &root.ts)
    );
    let thread = s.slack.thread(CHANNEL, &root.ts);
    assert!(
        thread.len() < 6,
        "merged: {} posts for 6 changes",
        thread.len()
    );
    let all: String = thread
        .iter()
        .map(|m| m.text.clone())
        .collect::<Vec<_>>()
        .join("\n");
    let order: Vec<&str> = all
        .lines()
        .filter_map(|l| l.split(" → ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(order, ["P2", "P3", "P2", "P3", "P2", "P3"], "{all}");
    assert_eq!(s.slack.ratelimited(), 0);
    // The root is updated once per post, not once per change merged into
    // it, and no merged item is handled a second time.
    let updates = s.slack.message(CHANNEL, &root.ts).expect("root").updates;
    assert!(
        updates as usize <= thread.len(),
        "{updates} root updates for {} posts",
        thread.len()
    );
    assert_eq!(crate::storm::retried_posts(&s.app.db_url).await, 0);
}

#[tokio::test]
async fn an_event_slack_resends_after_a_restart_is_still_acted_on_only_once() {
    let Some(s) = slack_app(Backend::Sqlite).await else {
        return;
    };
    let root = s.open_incident().await;
    let added = event_callback(
        "Ev0ONCE",
        json!({"type": "reaction_added", "user": "U0SAM", "reaction": "eyes",
               "item_user": "U0BOT", "event_ts": "1733380000.000300",
               "item": {"type": "message", "channel": CHANNEL, "ts": root.ts}}),
    );
    let first = s.signed("/slack/events", "application/json", &added).await;
    assert_eq!(first.status().as_u16(), 200);

    let s = s.restart().await;
    // Slack did not see the first answer and sends the event again, signed
    // anew (a later timestamp).
    let retry = send_signed(
        &s.app.client,
        &format!("{}/slack/events", s.app.addr),
        SECRET,
        "application/json",
        &added,
        unix_now() + 1,
    )
    .await;
    assert_eq!(retry.status().as_u16(), 200);

    let reactions = s
        .timeline()
        .await
        .iter()
        .filter(|e| e["kind"] == "reaction")
        .count();
    assert_eq!(
        reactions, 1,
        "the re-sent event is recognised across the restart"
    );
}

/// Why `App::build` refused to start with `extra` settings against `slack`
/// (empty if it started).
pub(crate) async fn start_up_error(slack: &FakeSlack, extra: &[(&str, &str)]) -> String {
    let api_url = slack.api_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("f.db").display());
    let mut settings = vec![
        ("FIRSTLINE_CHAT__PLATFORM", "slack"),
        ("FIRSTLINE_CHAT__SLACK__API_URL", api_url.as_str()),
    ];
    settings.extend_from_slice(extra);
    let env = crate::helpers::test_env(&db, &settings);
    let config = firstline::config::load_with_env(None, env).expect("valid config");
    let built = firstline::app::App::build(config, firstline::chat::console::Sink::Silent).await;
    built.err().map(|e| format!("{e:#}")).unwrap_or_default()
}

#[tokio::test]
async fn start_up_stops_with_what_to_fix_when_the_token_or_the_channel_is_wrong() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.add_channel(CHANNEL);
    let secrets = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, value: &str| secret_file(&secrets, name, value);
    let (wrong_token, good_token, secret) = (
        file("t", "xoxb-revoked"),
        file("good", TOKEN),
        file("s", SECRET),
    );
    let build = |token: String, channel: &'static str| {
        let slack = &slack;
        let secret = secret.clone();
        async move {
            start_up_error(
                slack,
                &[
                    ("FIRSTLINE_CHAT__CHANNEL", channel),
                    ("FIRSTLINE_CHAT__SLACK__BOT_TOKEN__FILE", token.as_str()),
                    (
                        "FIRSTLINE_CHAT__SLACK__SIGNING_SECRET__FILE",
                        secret.as_str(),
                    ),
                ],
            )
            .await
        }
    };
    let token_refused = build(wrong_token, CHANNEL).await;
    assert!(
        token_refused.contains("Slack refused the bot token (invalid_auth)")
            && token_refused.contains("chat.slack.bot_token"),
        "{token_refused}"
    );
    assert!(
        !token_refused.contains("xoxb-revoked"),
        "no secret in the message"
    );

    let no_channel = build(good_token, "C0NOWHERE").await;
    assert!(
        no_channel.contains("no channel \"C0NOWHERE\" the bot can see")
            && no_channel.contains("/invite"),
        "{no_channel}"
    );
}
