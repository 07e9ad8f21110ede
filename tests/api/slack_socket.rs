//! firstline as a Slack app in Socket Mode: the real server, its real
//! slack-morphism listener connected to the fake Slack's WebSocket, and
//! envelopes shaped as Slack documents them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_slack::{
    FakeSlack, block_actions_payload, command_form, command_payload, envelope, event_callback,
    redelivery, send_signed, unix_now,
};
use crate::helpers::Backend;
use crate::slack::{
    APP_TOKEN, CHANNEL, SlackApp, WAIT, header, secret_file, socket_app_with, start_up_error,
    trigger,
};

/// Slack's deadline for an acknowledgement.
const SLACK_DEADLINE: Duration = Duration::from_secs(3);

impl SlackApp {
    /// `/incident …` typed by Sam, as a `slash_commands` envelope: its
    /// acknowledgement, checked to be in Slack's time.
    async fn socket_command(&self, text: &str) -> Value {
        let e = envelope(
            "slash_commands",
            command_payload(&command_form(
                "/incident",
                text,
                "U0SAM",
                "sam",
                CHANNEL,
                &self.slack.response_url("cmd"),
                &trigger(),
            )),
        );
        let sent = Instant::now();
        let ack = self
            .slack
            .round_trip(&e, WAIT)
            .await
            .unwrap_or_else(|| panic!("no acknowledgement of /incident {text}"));
        assert!(
            ack.at.duration_since(sent) < SLACK_DEADLINE,
            "acknowledged after {:?}",
            ack.at.duration_since(sent)
        );
        ack.body
    }

    /// Sam presses a button of the root message; its acknowledgement.
    async fn press(&self, root_ts: &str, action_id: &str, response: &str) -> Value {
        let e = envelope(
            "interactive",
            block_actions_payload(
                "U0SAM",
                "sam",
                CHANNEL,
                root_ts,
                action_id,
                "incident",
                "INC-1",
                &self.slack.response_url(response),
            ),
        );
        let sent = Instant::now();
        let ack = self.slack.round_trip(&e, WAIT).await.expect("acknowledged");
        assert!(ack.at.duration_since(sent) < SLACK_DEADLINE);
        ack.body
    }

    /// The reactions on the timeline, as its text says them.
    async fn reactions(&self) -> Vec<String> {
        self.timeline()
            .await
            .iter()
            .filter(|e| e["kind"] == "reaction")
            .map(|e| e["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits until the fake has seen `n` connections with one open.
    async fn connected(&self, n: usize) {
        assert!(
            self.slack.wait_connections(n, WAIT).await,
            "no new Socket Mode connection ({} opened, wanted {n})",
            self.slack.connections_opened()
        );
    }
}

fn reaction(kind: &str, root_ts: &str) -> Value {
    json!({"type": kind, "user": "U0SAM", "reaction": "white_check_mark",
           "item_user": "U0BOT", "event_ts": "1733380000.000200",
           "item": {"type": "message", "channel": CHANNEL, "ts": root_ts}})
}

fn event_envelope(event_id: &str, event: Value) -> Value {
    let callback: Value = serde_json::from_str(&event_callback(event_id, event)).expect("json");
    envelope("events_api", callback)
}

async fn alert_to_ack_by_slash_command(backend: Backend) {
    let Some(s) = socket_app_with(backend, &[]).await else {
        return;
    };
    let root = s.open_incident().await;
    assert_eq!(header(&root), "🔴 INC-1 · P1 · triggered", "{root:?}");

    // The acknowledgement carries the answer, for Sam only.
    let ack = s.socket_command("ack INC-1").await;
    assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("INC-1 acknowledged by sam (slack:U0SAM)"),
        "{ack}"
    );

    // The root is updated in place and names who acknowledged.
    s.root_shows("acknowledged", &root.ts).await;
    let fields = s
        .slack
        .message(CHANNEL, &root.ts)
        .and_then(|m| m.blocks)
        .unwrap_or(Value::Null)
        .to_string();
    assert!(fields.contains("sam (slack:U0SAM)"), "{fields}");

    s.timeline_and_postmortem_name_sam().await;

    // Nothing comes over HTTP in Socket Mode, and /slack/* says so.
    let r = s
        .app
        .client
        .post(format!("{}/slack/commands", s.app.addr))
        .body("command=%2Fincident&text=resolve+INC-1")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    let why: Value = r.json().await.unwrap_or(Value::Null);
    assert!(
        why["error"].as_str().unwrap_or("").contains("Socket Mode"),
        "{why}"
    );
}

#[tokio::test]
async fn socket_mode_alert_to_ack_by_slash_command_names_the_slack_user() {
    alert_to_ack_by_slash_command(Backend::Sqlite).await;
}

#[tokio::test]
async fn socket_mode_alert_to_ack_by_slash_command_on_postgres() {
    alert_to_ack_by_slash_command(Backend::Postgres).await;
}

async fn buttons_do_what_the_commands_do(backend: Backend) {
    let Some(s) = socket_app_with(backend, &[]).await else {
        return;
    };
    let root = s.open_incident().await;

    // Acknowledge: acknowledged at once, the answer follows to the presser.
    let ack = s.press(&root.ts, "incident_ack", "ack-button").await;
    assert!(
        ack.get("payload").is_none(),
        "a bare acknowledgement: {ack}"
    );
    s.answered("ack-button", "INC-1 acknowledged by sam (slack:U0SAM)")
        .await;
    s.root_shows("acknowledged", &root.ts).await;

    // Resolve.
    s.press(&root.ts, "incident_resolve", "resolve-button")
        .await;
    s.root_shows("resolved", &root.ts).await;
    let tl = s.timeline().await;
    assert!(
        tl.iter().any(|e| e["kind"] == "state_changed"
            && e["actor"] == "sam (slack:U0SAM)"
            && e["text"].as_str().unwrap_or("").contains("resolved")),
        "{tl:?}"
    );
}

#[tokio::test]
async fn socket_mode_buttons_acknowledge_and_resolve_as_the_commands_do() {
    buttons_do_what_the_commands_do(Backend::Sqlite).await;
}

#[tokio::test]
async fn socket_mode_buttons_on_postgres() {
    buttons_do_what_the_commands_do(Backend::Postgres).await;
}

async fn a_redelivered_reaction_counts_once(backend: Backend) {
    let Some(s) = socket_app_with(backend, &[]).await else {
        return;
    };
    let root = s.open_incident().await;
    let first = event_envelope("Ev0SOCKET", reaction("reaction_added", &root.ts));
    let ack = s
        .slack
        .round_trip(&first, WAIT)
        .await
        .expect("acknowledged");
    assert!(ack.body.get("payload").is_none(), "{}", ack.body);
    // Slack sends it again (as if the first acknowledgement was lost).
    let again = redelivery(&first, 1);
    assert!(s.slack.round_trip(&again, WAIT).await.is_some());

    assert_eq!(
        s.reactions().await,
        [format!(
            "sam (slack:U0SAM) reacted :white_check_mark: to message {CHANNEL}/{}",
            root.ts
        )],
        "once"
    );
}

#[tokio::test]
async fn socket_mode_a_reaction_slack_sends_twice_reaches_the_ledger_once() {
    a_redelivered_reaction_counts_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn socket_mode_a_reaction_sent_twice_on_postgres() {
    a_redelivered_reaction_counts_once(Backend::Postgres).await;
}

async fn reconnects_and_stops(backend: Backend) {
    let Some(s) = socket_app_with(backend, &[]).await else {
        return;
    };
    s.open_incident().await;
    let opens = s.slack.count_ok("apps.connections.open");
    let opened = s.slack.connections_opened();

    // Slack warns it is about to close the connection: a new one is opened
    // (a new apps.connections.open) and commands still arrive.
    s.slack.disconnect_all();
    s.connected(opened + 1).await;
    assert!(s.slack.count_ok("apps.connections.open") > opens);
    let ack = s.socket_command("sev INC-1 P2").await;
    assert!(
        ack["payload"]["text"].as_str().unwrap_or("").contains("P2"),
        "{ack}"
    );

    // Slack closes a connection without a warning: the same.
    let opened = s.slack.connections_opened();
    s.slack.close_all();
    s.connected(opened + 1).await;
    let ack = s.socket_command("ack INC-1").await;
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("INC-1 acknowledged by sam (slack:U0SAM)"),
        "{ack}"
    );

    // firstline stops: its connections close.
    let SlackApp { app, slack, .. } = s;
    app.stop().await;
    assert!(
        slack.wait_for(|st| st.open_connections() == 0, WAIT).await,
        "a connection stayed open after shutdown"
    );
}

#[tokio::test]
async fn socket_mode_reconnects_after_a_disconnect_or_a_closed_socket_and_stops_on_shutdown() {
    reconnects_and_stops(Backend::Sqlite).await;
}

#[tokio::test]
async fn socket_mode_reconnects_on_postgres() {
    reconnects_and_stops(Backend::Postgres).await;
}

#[tokio::test]
async fn socket_mode_past_answer_within_a_command_says_working_on_it_and_an_event_still_lands() {
    let Some(s) = socket_app_with(
        Backend::Sqlite,
        &[("FIRSTLINE_CHAT__SLACK__ANSWER_WITHIN_MS", "0")],
    )
    .await
    else {
        return;
    };
    let root = s.open_incident().await;
    let ack = s.socket_command("ack INC-1").await;
    assert!(
        ack["payload"]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("working on it: /incident ack INC-1"),
        "{ack}"
    );
    s.answered("cmd", "INC-1 acknowledged by sam (slack:U0SAM)")
        .await;

    // An event is acknowledged by then too, and still acted on, once.
    let e = event_envelope("Ev0LATE", reaction("reaction_added", &root.ts));
    assert!(s.slack.round_trip(&e, WAIT).await.is_some());
    let deadline = Instant::now() + WAIT;
    while s.reactions().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.reactions().await.len(), 1);
}

#[tokio::test]
async fn an_event_handled_over_http_is_not_acted_on_again_after_switching_to_socket_mode() {
    let Some(s) = crate::slack::slack_app_with(Backend::Sqlite, &[]).await else {
        return;
    };
    let root = s.open_incident().await;
    let event = reaction("reaction_added", &root.ts);
    let body = event_callback("Ev0SWITCH", event.clone());
    let over_http = s.signed("/slack/events", "application/json", &body).await;
    assert_eq!(over_http.status().as_u16(), 200);

    // The same app, now in Socket Mode: Slack delivers the event again.
    let app_token = s.app_token_file();
    let s = s
        .restart_with(&[
            ("FIRSTLINE_CHAT__SLACK__MODE", "socket"),
            ("FIRSTLINE_CHAT__SLACK__APP_TOKEN__FILE", app_token.as_str()),
        ])
        .await;
    s.connected(1).await;
    let again = event_envelope("Ev0SWITCH", event);
    assert!(s.slack.round_trip(&again, WAIT).await.is_some());
    assert_eq!(s.reactions().await.len(), 1, "recognised across the switch");

    // And HTTP mode is off: even a correctly signed request is not taken.
    let url = format!("{}/slack/events", s.app.addr);
    let secret = "8f742231b10e8888abcd99yyyzzz85a5-test";
    let signed = send_signed(
        &s.app.client,
        &url,
        secret,
        "application/json",
        &body,
        unix_now(),
    )
    .await;
    assert_eq!(signed.status().as_u16(), 404);
}

#[tokio::test]
async fn socket_mode_start_up_names_a_refused_or_unreachable_app_token() {
    let slack = FakeSlack::start("xoxb-firstline-test").await;
    slack.accept_app_token(APP_TOKEN);
    slack.add_channel(CHANNEL);
    let secrets = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, value: &str| secret_file(&secrets, name, value);
    let bot = file("bot", "xoxb-firstline-test");
    let build = |app_token: String| {
        let (slack, bot) = (&slack, bot.clone());
        async move {
            start_up_error(
                slack,
                &[
                    ("FIRSTLINE_CHAT__CHANNEL", CHANNEL),
                    ("FIRSTLINE_CHAT__SLACK__MODE", "socket"),
                    ("FIRSTLINE_CHAT__SLACK__BOT_TOKEN__FILE", bot.as_str()),
                    ("FIRSTLINE_CHAT__SLACK__APP_TOKEN__FILE", app_token.as_str()),
                ],
            )
            .await
        }
    };

    let refused = build(file("revoked", "xapp-1-revoked-token")).await;
    assert!(
        refused.contains("Slack refused the app token (invalid_auth)")
            && refused.contains("chat.slack.app_token")
            && refused.contains("connections:write"),
        "{refused}"
    );
    assert!(
        !refused.contains("revoked-token"),
        "no secret in the message: {refused}"
    );

    slack.fail_next("apps.connections.open", 1, 503);
    let down = build(file("good", APP_TOKEN)).await;
    assert!(
        down.contains("apps.connections.open") && down.contains("503"),
        "{down}"
    );
    assert!(
        !down.contains(APP_TOKEN),
        "no secret in the message: {down}"
    );

    // With a good token it starts.
    assert_eq!(build(file("good", APP_TOKEN)).await, "");
}

#[test]
fn the_socket_mode_manifest_is_the_http_one_without_urls_and_with_socket_mode_on() {
    let read = |name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../deploy/slack")
                .join(name),
        )
        .unwrap_or_else(|e| panic!("deploy/slack/{name}: {e}"))
    };
    let (http, socket) = (read("manifest.yaml"), read("manifest-socket.yaml"));
    // The YAML itself, without comments and without the URL lines.
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter(|l| {
                let t = l.trim_start();
                !(t.starts_with("url:") || t.starts_with("request_url:"))
            })
            .map(|l| l.replace("socket_mode_enabled: false", "socket_mode_enabled: true"))
            .collect()
    };
    assert_eq!(
        body(&socket),
        body(&http),
        "same commands, scopes and events"
    );
    assert!(socket.contains("socket_mode_enabled: true"));
    assert!(!socket.contains("url:"), "Socket Mode has no request URLs");
    assert!(
        socket.contains("connections:write"),
        "says which scope the app-level token needs"
    );
}
