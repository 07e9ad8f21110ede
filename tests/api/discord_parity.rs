//! Parity: one scripted incident (declare, ack, status, note, severity,
//! runbook run, resolve, refusals) typed on the console, as signed Slack
//! slash commands and as signed Discord interactions, each against its own
//! fresh app and fake. After every step the incident is in the same state
//! and the caller read the same answer, once formatting is set aside.

use serde_json::{Value, json};

use crate::discord::{DiscordApp, USER_ID, WAIT, content, discord_app, nelly};
use crate::fake_discord::command;
use crate::fake_slack::command_form;
use crate::helpers::{Backend, TestApp, spawn_app_on};
use crate::slack::{CHANNEL, FORM, SlackApp, slack_app_with, trigger};

/// One step: the line typed on the console and in Slack, the same command
/// as Discord's client sends it (command name and its options), and
/// whether it must be refused.
struct Step {
    line: &'static str,
    discord: (&'static str, Value),
    refused: bool,
}

fn sub(name: &str, options: Value) -> Value {
    json!([{"name": name, "type": 1, "options": options}])
}

fn opt(name: &str, value: &str) -> Value {
    json!({"name": name, "type": 3, "value": value})
}

fn script() -> Vec<Step> {
    let id = || opt("id", "INC-1");
    let step = |line, name, options, refused| Step {
        line,
        discord: (name, options),
        refused,
    };
    vec![
        step(
            "/incident declare checkout is down --sev P1",
            "incident",
            sub(
                "declare",
                json!([opt("title", "checkout is down"), opt("sev", "P1")]),
            ),
            false,
        ),
        step(
            "/incident ack INC-1",
            "incident",
            sub("ack", json!([id()])),
            false,
        ),
        step(
            "/incident status INC-1",
            "incident",
            sub("status", json!([id()])),
            false,
        ),
        step(
            "/incident note INC-1 restarted the worker, queue draining",
            "incident",
            sub(
                "note",
                json!([id(), opt("text", "restarted the worker, queue draining")]),
            ),
            false,
        ),
        // Discord lists required options first; the answer must not care.
        step(
            "/incident sev INC-1 P2",
            "incident",
            sub("sev", json!([opt("severity", "P2"), id()])),
            false,
        ),
        step(
            "/runbook run microservice-down INC-1",
            "runbook",
            sub(
                "run",
                json!([
                    opt("runbook-id", "microservice-down"),
                    opt("incident-id", "INC-1")
                ]),
            ),
            false,
        ),
        step(
            "/incident resolve INC-1 worker restarted",
            "incident",
            sub("resolve", json!([id(), opt("note", "worker restarted")])),
            false,
        ),
        step(
            "/incident ack INC-9",
            "incident",
            sub("ack", json!([opt("id", "INC-9")])),
            true,
        ),
        step(
            "/incident resolve INC-1",
            "incident",
            sub("resolve", json!([id()])),
            true,
        ),
        step(
            "/incident sev INC-1 P2",
            "incident",
            sub("sev", json!([id(), opt("severity", "P2")])),
            true,
        ),
        // Bad usage: an id that is not one.
        step(
            "/incident ack yesterday",
            "incident",
            sub("ack", json!([opt("id", "yesterday")])),
            true,
        ),
        step(
            "/runbook show no-such-runbook",
            "runbook",
            sub("show", json!([opt("runbook-id", "no-such-runbook")])),
            true,
        ),
        step(
            "/help incident sev",
            "help",
            json!([opt("command", "incident sev")]),
            false,
        ),
        step(
            "/incident status INC-1",
            "incident",
            sub("status", json!([id()])),
            false,
        ),
    ]
}

/// What the caller read, and whether the platform showed it as a refusal.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    ok: bool,
    text: String,
}

/// The same answer as any platform's, whatever its formatting: Slack's
/// escaping of `& < >` undone; the "⚠️ " Slack and Discord put before a
/// refusal dropped (the console says it with `ok: false`, kept in
/// [`Answer::ok`]); the caller's name (each platform names its users its
/// own way: `Ann`, `sam (slack:U0SAM)`, `Nelly (discord:…)`) as `<user>`;
/// every word that starts with a digit (times, durations, counts) as `#`.
fn normalise(text: &str, user: &str) -> String {
    let text = text
        .trim()
        .strip_prefix("⚠️")
        .unwrap_or(text.trim())
        .trim_start()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace(user, "<user>");
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|w| match w.starts_with(|c: char| c.is_ascii_digit()) {
                    true => "#",
                    false => w,
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a person sees of INC-1 after a step: its state, severity, title,
/// which milestones are set, and the timeline events the commands wrote
/// (kind and text, with the caller as `<user>`). Events written later by
/// the runbook runner and the escalation engine are left out: when they
/// land is not the command's doing.
async fn incident_state(app: &TestApp, user: &str) -> Value {
    let (_, shown) = app.get_json("/api/incidents/INC-1").await;
    let inc = &shown["incident"];
    if inc.is_null() {
        return Value::Null;
    }
    let (_, tl) = app
        .get_json("/api/incidents/INC-1/timeline?limit=500")
        .await;
    let by_commands = [
        "opened",
        "state_changed",
        "severity_changed",
        "note",
        "runbook_requested",
    ];
    let events: Vec<Value> = tl["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| by_commands.contains(&e["kind"].as_str().unwrap_or("")))
        .map(|e| {
            json!([
                e["kind"],
                e["text"].as_str().unwrap_or("").replace(user, "<user>")
            ])
        })
        .collect();
    json!({
        "state": inc["state"],
        "severity": inc["severity"],
        "title": inc["title"],
        "acknowledged": !inc["acknowledged"].is_null(),
        "mitigated": !inc["mitigated"].is_null(),
        "resolved": !inc["resolved"].is_null(),
        "events": events,
    })
}

/// One platform's client, on its own app.
enum Client {
    Console(TestApp),
    Slack(SlackApp),
    Discord(Box<DiscordApp>),
}

const CONSOLE_USER: &str = "Ann";
const SLACK_USER: &str = "sam (slack:U0SAM)";

impl Client {
    fn name(&self) -> &'static str {
        match self {
            Client::Console(_) => "console",
            Client::Slack(_) => "slack",
            Client::Discord(_) => "discord",
        }
    }

    fn app(&self) -> &TestApp {
        match self {
            Client::Console(app) => app,
            Client::Slack(s) => &s.app,
            Client::Discord(d) => &d.app,
        }
    }

    /// How this platform names the caller on the timeline.
    fn user(&self) -> String {
        match self {
            Client::Console(_) => CONSOLE_USER.into(),
            Client::Slack(_) => SLACK_USER.into(),
            Client::Discord(_) => format!("Nelly (discord:{USER_ID})"),
        }
    }

    /// Sends step `n` the way this platform's client does; the answer the
    /// caller reads (a late one is waited for where it arrives).
    async fn send(&self, n: usize, step: &Step) -> Answer {
        match self {
            Client::Console(app) => {
                let (status, body) = app.command(CONSOLE_USER, step.line).await;
                let ok = body["ok"].as_bool().unwrap_or(false);
                assert_eq!(status, if ok { 200 } else { 422 }, "{body}");
                Answer {
                    ok,
                    text: body["reply"].as_str().unwrap_or_default().to_string(),
                }
            }
            Client::Slack(s) => {
                let (name, text) = step.line.split_once(' ').unwrap_or((step.line, ""));
                let respond_at = format!("step-{n}");
                let form = command_form(
                    name,
                    text,
                    "U0SAM",
                    "sam",
                    CHANNEL,
                    &s.slack.response_url(&respond_at),
                    &trigger(),
                );
                let r = s.signed("/slack/commands", FORM, &form).await;
                assert_eq!(r.status().as_u16(), 200, "{}", step.line);
                let body: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(body["response_type"], "ephemeral", "{body}");
                let mut said = body["text"].as_str().unwrap_or_default().to_string();
                if said.starts_with("working on it") {
                    assert!(
                        s.slack
                            .wait_for(|st| !st.responses(&respond_at).is_empty(), WAIT)
                            .await,
                        "the late answer to {:?} never came",
                        step.line
                    );
                    said = s.slack.responses(&respond_at)[0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                }
                Answer {
                    ok: !said.starts_with("⚠️"),
                    text: said,
                }
            }
            Client::Discord(d) => {
                let (name, options) = &step.discord;
                let (i, token) = command(name, options.clone(), nelly());
                let (status, body) = d.send(&i).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["data"]["flags"], 64, "only the caller sees it: {body}");
                let said = match body["type"].as_u64() {
                    Some(4) => body["data"]["content"].as_str().unwrap_or_default().into(),
                    // Deferred: the answer is edited in through the REST API.
                    Some(5) => {
                        let edits = d.discord.wait_edits(&token, WAIT).await;
                        assert!(!edits.is_empty(), "the late answer to {name} never came");
                        edits[0].body["content"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string()
                    }
                    _ => panic!("not an answer: {body}"),
                };
                Answer {
                    ok: !said.starts_with("⚠️"),
                    text: said,
                }
            }
        }
    }
}

/// Runs the script on `client`: per step, the normalised answer and the
/// incident's state.
async fn run(client: &Client) -> Vec<(Answer, Value)> {
    let mut out = Vec::new();
    for (n, step) in script().iter().enumerate() {
        let answer = client.send(n, step).await;
        assert_eq!(
            answer.ok,
            !step.refused,
            "{}: {:?} answered {answer:?}",
            client.name(),
            step.line
        );
        let user = client.user();
        let state = incident_state(client.app(), &user).await;
        out.push((
            Answer {
                ok: answer.ok,
                text: normalise(&answer.text, &user),
            },
            state,
        ));
    }
    out
}

async fn same_incident_everywhere(backend: Backend) {
    let Some(console) = spawn_app_on(backend, &[]).await else {
        return;
    };
    let Some(slack) = slack_app_with(backend, &[]).await else {
        return;
    };
    let Some(discord) = discord_app(backend, &[]).await else {
        return;
    };
    let clients = [
        Client::Console(console),
        Client::Slack(slack),
        Client::Discord(Box::new(discord)),
    ];
    let mut runs = Vec::new();
    for client in &clients {
        runs.push((client.name(), run(client).await));
    }
    let (_, console_run) = &runs[0];
    for (name, run) in &runs[1..] {
        for (n, step) in script().iter().enumerate() {
            let (want_answer, want_state) = &console_run[n];
            let (answer, state) = &run[n];
            assert_eq!(
                answer, want_answer,
                "{name} answered {:?} unlike the console",
                step.line
            );
            assert_eq!(
                state, want_state,
                "after {:?} INC-1 on {name} is not as on the console",
                step.line
            );
        }
    }
    // The script did what it says, on every platform alike.
    let last = &console_run[console_run.len() - 1];
    assert_eq!(last.1["state"], "resolved", "{:#}", last.1);
    assert_eq!(last.1["severity"], "P2", "{:#}", last.1);
    let answers: Vec<&str> = console_run.iter().map(|(a, _)| a.text.as_str()).collect();
    assert_eq!(answers[0], "INC-1 declared: checkout is down");
    assert_eq!(answers[1], "INC-1 acknowledged by <user>");
    assert_eq!(answers[4], "INC-1 is now P2 (was P1)");
}

#[tokio::test]
async fn the_same_commands_give_the_same_incident_and_answers_on_console_slack_and_discord() {
    same_incident_everywhere(Backend::Sqlite).await;
}

#[tokio::test]
async fn console_slack_and_discord_agree_on_postgres_too() {
    same_incident_everywhere(Backend::Postgres).await;
}

/// On the console a command names its incident's thread (`incident`); in
/// Slack, the incident's own channel; on Discord, the thread started from
/// the incident's root message. Without an id, a command typed there means
/// that incident, and one typed in the channel asks which.
async fn thread_means_its_incident(backend: Backend) {
    let Some(d) = discord_app(backend, &[]).await else {
        return;
    };
    d.open_incident().await;
    let thread = d.discord.threads()[0].thread.clone();
    let ack = || command("incident", sub("ack", json!([])), nelly()).0;

    let (status, in_channel) = d.send(&ack()).await;
    assert_eq!(status, 200, "{in_channel}");
    let (_, console) = d.app.command(CONSOLE_USER, "/incident ack").await;
    assert_eq!(console["ok"], false, "{console}");
    assert_eq!(
        normalise(content(&in_channel), "-"),
        normalise(console["reply"].as_str().unwrap_or_default(), "-"),
    );
    let (_, inc) = d.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "triggered", "{inc}");

    let mut in_thread = ack();
    in_thread["channel_id"] = json!(thread);
    let (status, answer) = d.send(&in_thread).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        content(&answer),
        format!("INC-1 acknowledged by Nelly (discord:{USER_ID})"),
        "{answer}"
    );
    let (_, inc) = d.app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "acknowledged", "{inc}");
}

#[tokio::test]
async fn a_command_without_an_id_in_an_incidents_discord_thread_means_that_incident() {
    thread_means_its_incident(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_discord_thread_means_its_incident_on_postgres_too() {
    thread_means_its_incident(Backend::Postgres).await;
}
