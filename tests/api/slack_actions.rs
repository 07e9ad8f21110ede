//! Approval-gated remediation end to end on Slack: the real slack-morphism
//! client against the fake Slack Web API, a signed `/action propose` from a
//! Slack user, and signed `reaction_added` events on the proposal message
//! as the votes. What counts is what a user notices: the proposal in the
//! incident's thread, the loopback admin endpoint called (or not), and what
//! the thread says.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::actions::{RUNBOOK, Service, service};
use crate::fake_slack::{Message, event_callback};
use crate::helpers::{Backend, am_payload};
use crate::slack::{CHANNEL, SlackApp, WAIT, slack_app_with_file};

struct Setup {
    s: SlackApp,
    svc: Service,
    _dir: tempfile::TempDir,
}

/// A Slack app with the runbook whose `restart` POSTs to a counting
/// loopback admin endpoint; `fixers` are Sam and Ann on Slack.
async fn setup(backend: Backend) -> Option<Setup> {
    let (svc, dir, toml) = fixers_runbook(&["slack:U0SAM", "slack:U0ANN"], "").await;
    let s = slack_app_with_file(backend, &toml, &[]).await?;
    s.slack.add_user("U0ANN", "ann", "Ann Lee");
    s.slack.add_user("U0BOB", "bob", "Bob Jones");
    Some(Setup { s, svc, _dir: dir })
}

/// The runbook `svc-down` whose `restart` POSTs to a fresh counting
/// loopback admin endpoint, in a folder of its own, and the configuration
/// that serves it with `members` (`platform:user`) as the fixers who may
/// approve, plus `approvals` (more `[approvals]` keys). Shared with the
/// Discord approval tests.
pub(crate) async fn fixers_runbook(
    members: &[&str],
    approvals: &str,
) -> (Service, tempfile::TempDir, String) {
    let svc = service(0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("svc.toml"), RUNBOOK.replace("RETRY", ""))
        .expect("write runbook");
    let members = members
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = format!(
        r#"
[runbooks]
bundled = false
dirs = ["{dir}"]
run_on_alert = false

[targets.admin]
kind = "http"
base_url = "{addr}"

[roles.fixers]
members = [{members}]

[approvals]
default_approvers = ["fixers"]
{approvals}

[actions]
verify_after_s = 0
"#,
        dir = dir.path().display(),
        addr = svc.addr,
    );
    (svc, dir, toml)
}

/// An alert of `severity` opens INC-1; its root message in the channel.
async fn open(s: &SlackApp, severity: &str) -> Message {
    let body = am_payload(
        "g-actions",
        &[(
            "SvcDown",
            "svc",
            severity,
            "svc:80",
            "firing",
            "2026-12-05T00:00:00Z",
        )],
    );
    let (code, _) = s.app.post_hook("alertmanager", body).await;
    assert_eq!(code, 200);
    let root = s.root().await;
    s.app.wait_posts("INC-1", 1).await;
    root
}

/// Sam types `/action propose restart INC-1`; the proposal message in the
/// incident's thread, as the fake Slack holds it.
async fn propose(s: &SlackApp, root: &Message) -> Message {
    let (code, answer) = s.command("/action", "propose restart INC-1").await;
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or_default()
            .contains("proposed #1 restart for INC-1"),
        "{answer}"
    );
    wait_thread(s, root, "Proposal #1").await
}

/// Waits until a message in the root's thread contains `needle`; returns it.
async fn wait_thread(s: &SlackApp, root: &Message, needle: &str) -> Message {
    assert!(
        s.slack
            .wait_for(
                |st| st
                    .thread(CHANNEL, &root.ts)
                    .iter()
                    .any(|m| m.text.contains(needle)),
                WAIT
            )
            .await,
        "no message in the thread contains {needle:?}: {:#?}",
        s.slack.thread(CHANNEL, &root.ts)
    );
    s.slack
        .thread(CHANNEL, &root.ts)
        .into_iter()
        .find(|m| m.text.contains(needle))
        .expect("found above")
}

/// How many messages in the root's thread contain `needle`.
fn in_thread(s: &SlackApp, root: &Message, needle: &str) -> usize {
    s.slack
        .thread(CHANNEL, &root.ts)
        .iter()
        .map(|m| m.text.matches(needle).count())
        .sum()
}

/// Slack delivers a signed `reaction_added` by `user` on message `ts`.
async fn react(s: &SlackApp, event_id: &str, user: &str, emoji: &str, ts: &str) {
    let body = event_callback(
        event_id,
        json!({"type": "reaction_added", "user": user, "reaction": emoji,
               "item_user": "U0BOT", "event_ts": "1733390000.000100",
               "item": {"type": "message", "channel": CHANNEL, "ts": ts}}),
    );
    let r = s.signed("/slack/events", "application/json", &body).await;
    assert_eq!(r.status().as_u16(), 200, "{event_id}");
}

/// A pause in which nothing must happen (a call that would come, comes
/// well within it).
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

async fn approved_by_a_fixer_runs_once(backend: Backend) {
    let Some(Setup { s, svc, _dir }) = setup(backend).await else {
        return;
    };
    let root = open(&s, "warning").await;
    let proposal = propose(&s, &root).await;

    // The proposal went out as a chat.postMessage in the incident's thread,
    // with exactly what will run.
    let will_run = format!("POST {}/restart/svc", svc.addr);
    let sent = s.slack.calls_of("chat.postMessage");
    assert!(
        sent.iter().any(|c| c.body["thread_ts"] == json!(root.ts)
            && c.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("Proposal #1")
                    && t.contains(&will_run)
                    && t.contains("fixers (slack:U0SAM, slack:U0ANN)"))),
        "{sent:#?}"
    );
    assert_eq!(proposal.thread_ts.as_deref(), Some(root.ts.as_str()));
    quiet().await;
    assert_eq!(
        svc.restarts.load(Ordering::SeqCst),
        0,
        "nothing runs unapproved"
    );

    // Ann, a fixer, approves with a reaction on the proposal message.
    react(&s, "Ev0ANNOK1", "U0ANN", "white_check_mark", &proposal.ts).await;
    // The thread names each person once, as Slack shows them.
    wait_thread(
        &s,
        &root,
        "#1 restart approved by ann (slack:U0ANN) (proposed by sam (slack:U0SAM)): running it now",
    )
    .await;
    let done = wait_thread(&s, &root, "#1 restart try 1/1: done").await;
    assert!(done.text.contains("HTTP 202"), "{done:?}");
    assert!(
        done.text
            .contains("proposed by sam (slack:U0SAM), approved by ann (slack:U0ANN)"),
        "{done:?}"
    );
    assert_eq!(svc.restarts.load(Ordering::SeqCst), 1);

    // The same reaction delivered again as another event (Slack's event id
    // differs): the thread says it changes nothing, and nothing runs again.
    react(&s, "Ev0ANNOK2", "U0ANN", "white_check_mark", &proposal.ts).await;
    wait_thread(
        &s,
        &root,
        "ann (slack:U0ANN)'s :white_check_mark: on #1 restart changes nothing: it is already",
    )
    .await;
    quiet().await;
    assert_eq!(svc.restarts.load(Ordering::SeqCst), 1);
    assert_eq!(in_thread(&s, &root, "try 1/1: done"), 1);
    assert_eq!(in_thread(&s, &root, "try 2/"), 0);

    let (_, body) = s.app.get_json("/api/incidents/INC-1/actions").await;
    let p = &body["actions"][0];
    assert_eq!(p["proposer_identity"], "slack:U0SAM", "{p}");
    assert_eq!(p["votes"][0]["identity"], "slack:U0ANN", "{p}");
    assert_eq!(p["votes"].as_array().map(Vec::len), Some(1), "{p}");
    assert_eq!(p["tries"].as_array().map(Vec::len), Some(1), "{p}");
}

#[tokio::test]
async fn a_slack_fixers_reaction_on_the_proposal_runs_it_once() {
    approved_by_a_fixer_runs_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_slack_fixers_reaction_on_the_proposal_runs_it_once_on_postgres() {
    approved_by_a_fixer_runs_once(Backend::Postgres).await;
}

#[tokio::test]
async fn a_reaction_from_a_slack_user_without_the_role_does_not_count() {
    let Some(Setup { s, svc, _dir }) = setup(Backend::Sqlite).await else {
        return;
    };
    let root = open(&s, "warning").await;
    let proposal = propose(&s, &root).await;
    react(&s, "Ev0BOBOK1", "U0BOB", "white_check_mark", &proposal.ts).await;
    let why = wait_thread(&s, &root, "does not count").await;
    assert!(
        why.text.contains(
            "bob (slack:U0BOB)'s :white_check_mark: on #1 restart does not count: slack:U0BOB holds none of the roles"
        ),
        "{why:?}"
    );
    quiet().await;
    assert_eq!(svc.restarts.load(Ordering::SeqCst), 0);
    assert_eq!(in_thread(&s, &root, "try 1/1"), 0);
    let (_, body) = s.app.get_json("/api/incidents/INC-1/actions").await;
    assert_eq!(body["actions"][0]["state"], "proposed", "{body}");
}

#[tokio::test]
async fn on_a_p1_in_slack_the_proposer_alone_cannot_approve() {
    let Some(Setup { s, svc, _dir }) = setup(Backend::Sqlite).await else {
        return;
    };
    let root = open(&s, "critical").await;
    let proposal = propose(&s, &root).await;
    assert!(
        proposal
            .text
            .contains("P1: the proposer's own approval does not count"),
        "{proposal:?}"
    );
    react(&s, "Ev0SAMOK1", "U0SAM", "white_check_mark", &proposal.ts).await;
    let why = wait_thread(&s, &root, "two-person rule").await;
    assert!(why.text.contains("does not count"), "{why:?}");
    quiet().await;
    assert_eq!(svc.restarts.load(Ordering::SeqCst), 0);

    react(&s, "Ev0ANNOK1", "U0ANN", "white_check_mark", &proposal.ts).await;
    wait_thread(&s, &root, "#1 restart try 1/1: done").await;
    assert_eq!(svc.restarts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_roots_propose_button_posts_a_proposal_that_still_waits_for_approval() {
    let Some(Setup { s, svc, _dir }) = setup(Backend::Sqlite).await else {
        return;
    };
    let root = open(&s, "warning").await;
    // The root offers the runbook's runnable action.
    assert!(
        s.slack
            .wait_for(
                |st| st.message(CHANNEL, &root.ts).is_some_and(|m| m
                    .blocks
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("Propose restart"))),
                WAIT
            )
            .await,
        "the root offers no Propose button"
    );
    let body = crate::fake_slack::block_actions_form(
        "U0SAM",
        "sam",
        CHANNEL,
        &root.ts,
        "action_propose_0",
        "actions",
        "restart INC-1",
        &s.slack.response_url("propose"),
    );
    let r = s
        .signed("/slack/interactions", crate::slack::FORM, &body)
        .await;
    assert_eq!(r.status().as_u16(), 200);
    s.answered("propose", "proposed #1 restart for INC-1").await;
    let proposal = wait_thread(&s, &root, "Proposal #1").await;
    assert!(
        proposal.text.contains("Proposed by sam"),
        "{}",
        proposal.text
    );
    quiet().await;
    assert_eq!(
        svc.restarts.load(Ordering::SeqCst),
        0,
        "a proposal runs nothing"
    );
}
