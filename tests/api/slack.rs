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
const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5-test";
pub(crate) const CHANNEL: &str = "C0INCIDENT";
const FORM: &str = "application/x-www-form-urlencoded";
const WAIT: Duration = Duration::from_secs(10);
static TRIGGERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub(crate) struct SlackApp {
    pub(crate) app: TestApp,
    pub(crate) slack: FakeSlack,
    _secrets: tempfile::TempDir,
    /// The settings it was started with, to start it again.
    env: Vec<(String, String)>,
}

/// The app on `backend` as a Slack app, talking to a fresh fake Slack.
async fn slack_app(backend: Backend) -> Option<SlackApp> {
    slack_app_with(backend, &[]).await
}

pub(crate) async fn slack_app_with(backend: Backend, extra: &[(&str, &str)]) -> Option<SlackApp> {
    let slack = FakeSlack::start(TOKEN).await;
    slack.add_channel(CHANNEL);
    slack.add_user("U0SAM", "sam", "Sam Smith");
    let secrets = tempfile::tempdir().expect("temp dir");
    let token_file = secrets.path().join("token");
    let secret_file = secrets.path().join("secret");
    std::fs::write(&token_file, TOKEN).expect("write token");
    std::fs::write(&secret_file, SECRET).expect("write secret");
    let (token_file, secret_file) = (
        token_file.display().to_string(),
        secret_file.display().to_string(),
    );
    let api_url = slack.api_url();
    let mut env = vec![
        ("FIRSTLINE_CHAT__PLATFORM", "slack"),
        ("FIRSTLINE_CHAT__CHANNEL", CHANNEL),
        (
            "FIRSTLINE_CHAT__SLACK__BOT_TOKEN__FILE",
            token_file.as_str(),
        ),
        (
            "FIRSTLINE_CHAT__SLACK__SIGNING_SECRET__FILE",
            secret_file.as_str(),
        ),
        ("FIRSTLINE_CHAT__SLACK__API_URL", api_url.as_str()),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_on(backend, &env).await?;
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
        let (dir, db_url) = self.app.stop().await;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let app = spawn_with(dir, db_url, &env).await;
        SlackApp { app, ..self }
    }

    async fn signed(&self, path: &str, content_type: &str, body: &str) -> reqwest::Response {
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
            // Slack gives every invocation its own trigger id, so no two
            // commands are the same signed request.
            &format!(
                "trigger-{}",
                TRIGGERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        );
        let r = self.signed("/slack/commands", FORM, &body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The incident's root message once there is one.
    async fn root(&self) -> Message {
        assert!(
            self.slack
                .wait_for(|s| !s.channel_messages(CHANNEL).is_empty(), WAIT)
                .await,
            "no root message in {CHANNEL}: {:?}",
            self.slack.calls()
        );
        self.slack.channel_messages(CHANNEL)[0].clone()
    }

    async fn open_incident(&self) -> Message {
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
    async fn root_shows(&self, state: &str, root_ts: &str) {
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

    async fn timeline(&self) -> Vec<Value> {
        let (_, tl) = self.app.get_json("/api/incidents/INC-1/timeline").await;
        tl["events"].as_array().cloned().unwrap_or_default()
    }
}

fn header(m: &Message) -> String {
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

    // The timeline and the postmortem say who acknowledged, from Slack.
    let tl = s.timeline().await;
    assert!(
        tl.iter()
            .any(|e| e["kind"] == "state_changed" && e["actor"] == "sam (slack:U0SAM)"),
        "{tl:?}"
    );
    let (_, pm) = s
        .app
        .get_text("/api/incidents/INC-1/postmortem?format=md")
        .await;
    assert!(pm.contains("sam (slack:U0SAM)"), "{pm}");
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

    assert!(
        s.slack
            .wait_for(|st| !st.responses("button").is_empty(), WAIT)
            .await,
        "no answer to the button"
    );
    let answer = s.slack.responses("button")[0].to_string();
    assert!(
        answer.contains("INC-1 acknowledged by sam (slack:U0SAM)"),
        "{answer}"
    );
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
    assert!(
        s.slack
            .wait_for(|st| !st.responses("cmd").is_empty(), WAIT)
            .await,
        "the result never followed"
    );
    let late = s.slack.responses("cmd")[0].to_string();
    assert!(
        late.contains("INC-1 acknowledged by sam (slack:U0SAM)"),
        "{late}"
    );
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

#[tokio::test]
async fn start_up_stops_with_what_to_fix_when_the_token_or_the_channel_is_wrong() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.add_channel(CHANNEL);
    let secrets = tempfile::tempdir().expect("temp dir");
    let (wrong_token, secret) = (secrets.path().join("t"), secrets.path().join("s"));
    std::fs::write(&wrong_token, "xoxb-revoked").expect("write");
    std::fs::write(&secret, SECRET).expect("write");
    let build = |token: std::path::PathBuf, channel: &'static str| {
        let api_url = slack.api_url();
        let secret = secret.display().to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        async move {
            let db = format!("sqlite://{}", dir.path().join("f.db").display());
            let env = crate::helpers::test_env(
                &db,
                &[
                    ("FIRSTLINE_CHAT__PLATFORM", "slack"),
                    ("FIRSTLINE_CHAT__CHANNEL", channel),
                    (
                        "FIRSTLINE_CHAT__SLACK__BOT_TOKEN__FILE",
                        token.display().to_string().as_str(),
                    ),
                    (
                        "FIRSTLINE_CHAT__SLACK__SIGNING_SECRET__FILE",
                        secret.as_str(),
                    ),
                    ("FIRSTLINE_CHAT__SLACK__API_URL", api_url.as_str()),
                ],
            );
            let config = firstline::config::load_with_env(None, env).expect("valid config");
            let built =
                firstline::app::App::build(config, firstline::chat::console::Sink::Silent).await;
            drop(dir);
            built.err().map(|e| format!("{e:#}")).unwrap_or_default()
        }
    };
    let token_refused = build(wrong_token.clone(), CHANNEL).await;
    assert!(
        token_refused.contains("Slack refused the bot token (invalid_auth)")
            && token_refused.contains("chat.slack.bot_token"),
        "{token_refused}"
    );
    assert!(
        !token_refused.contains("xoxb-revoked"),
        "no secret in the message"
    );

    let good_token = secrets.path().join("good");
    std::fs::write(&good_token, TOKEN).expect("write");
    let no_channel = build(good_token, "C0NOWHERE").await;
    assert!(
        no_channel.contains("no channel \"C0NOWHERE\" the bot can see")
            && no_channel.contains("/invite"),
        "{no_channel}"
    );
}
