//! Approval-gated remediation end to end on the console platform: a runbook
//! action proposed in the thread, approved by reaction from vouched role
//! holders (the console token), run exactly once against a real loopback
//! admin endpoint that counts its calls; and every path that must not run
//! it, tested not to, with the thread saying why.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, am_payload, spawn_app_with_file_on};

const TOKEN: &str = "console-secret-token-1234";

/// A runbook whose `restart` action POSTs to the admin target, and whose
/// `health` check reads the same service.
pub(crate) const RUNBOOK: &str = r#"
version = 1
id = "svc-down"
title = "サービス停止"
title_en = "Service down"
severity = "P2"
source = { seed = "003", section = "5" }

[match]
alertname = ["SvcDown"]

[[checks]]
id = "health"
title = "GET /health"
probe = { kind = "http", target = "admin", path = "/health" }
expect = [{ path = "status", fail_if = "!= 200" }]

[[actions]]
id = "restart"
title = "再起動"
title_en = "Restart the service"
kind = "restart"
reversible = true
params = { component = "svc" }
run = { kind = "http", target = "admin", method = "POST", path = "/restart/{{ params.component }}", expect_status = [202] }
RETRY

[[actions]]
id = "drain"
title = "手動でドレイン"
kind = "manual"
reversible = true

[[actions]]
id = "fix_rows"
title = "データ修正"
kind = "data_fix"
reversible = false
run = { kind = "http", target = "admin", path = "/fix" }
"#;

/// The loopback service: counts restarts; healthy once `healthy_after`
/// restarts happened (0: always healthy; usize::MAX: never).
#[derive(Clone)]
pub(crate) struct Service {
    pub(crate) restarts: Arc<AtomicUsize>,
    pub(crate) addr: String,
}

pub(crate) async fn service(healthy_after: usize) -> Service {
    let restarts = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (restarts.clone(), restarts.clone());
    let router = axum::Router::new()
        .route(
            "/restart/{component}",
            post(move || async move {
                r1.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::ACCEPTED, "restarting")
            }),
        )
        .route("/fix", post(|| async { "fixed" }))
        .route(
            "/health",
            get(move || async move {
                if r2.load(Ordering::SeqCst) >= healthy_after {
                    (axum::http::StatusCode::OK, "ok")
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }),
        );
    let addr = crate::helpers::serve(router).await;
    Service { restarts, addr }
}

struct Setup {
    app: TestApp,
    svc: Service,
    /// The configuration it runs with.
    toml: String,
    _dir: tempfile::TempDir,
}

/// The app with the runbook above, `fixers` = console:sam and console:ann,
/// and `extra` TOML appended.
async fn setup(backend: Backend, healthy_after: usize, retry: &str, extra: &str) -> Option<Setup> {
    setup_with(backend, healthy_after, retry, extra, true).await
}

/// [`setup`]; `token` false leaves the console routes without a token
/// (anyone on the port may call them, and name any user).
async fn setup_with(
    backend: Backend,
    healthy_after: usize,
    retry: &str,
    extra: &str,
    with_token: bool,
) -> Option<Setup> {
    let svc = service(healthy_after).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("svc.toml"), RUNBOOK.replace("RETRY", retry))
        .expect("write runbook");
    let token = dir.path().join("console-token");
    std::fs::write(&token, TOKEN).expect("write token");
    let toml = format!(
        r#"
[runbooks]
bundled = false
dirs = ["{dir}"]
run_on_alert = false

{console}

[targets.admin]
kind = "http"
base_url = "{addr}"

[roles.fixers]
members = ["console:sam", "console:ann", "slack:U0APPROVER"]

[approvals]
default_approvers = ["fixers"]

[actions]
verify_after_s = 0
{extra}
"#,
        dir = dir.path().display(),
        console = if with_token {
            format!(
                "[chat.console]\ntoken = {{ file = \"{}\" }}",
                token.display()
            )
        } else {
            String::new()
        },
        addr = svc.addr,
    );
    let app = spawn_app_with_file_on(backend, &toml, &[]).await?;
    Some(Setup {
        app,
        svc,
        toml,
        _dir: dir,
    })
}

/// Opens an incident on the runbook; returns `INC-n`.
async fn open(app: &TestApp, severity: &str) -> String {
    let body = am_payload(
        "g",
        &[(
            "SvcDown",
            "svc",
            severity,
            "svc:80",
            "firing",
            "2026-12-05T00:00:00Z",
        )],
    );
    let (code, _) = app.post_hook("alertmanager", body).await;
    assert_eq!(code, 200);
    let ids = app.incident_ids().await;
    ids.last().cloned().expect("an incident")
}

/// Types a command on the console with the token (a vouched console user).
async fn say(app: &TestApp, user: &str, inc: &str, text: &str) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/console/commands", app.addr))
        .bearer_auth(TOKEN)
        .json(&json!({"user": user, "text": text, "incident": inc}))
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Reacts to a console post, with the token unless `vouched` is false.
async fn react(
    app: &TestApp,
    user: &str,
    message_ref: &str,
    emoji: &str,
    removed: bool,
    vouched: bool,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/console/reactions", app.addr))
        .json(
            &json!({"user": user, "message_ref": message_ref, "emoji": emoji, "removed": removed}),
        );
    if vouched {
        req = req.bearer_auth(TOKEN);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The message ref of the incident's post that starts with `prefix`,
/// waiting for it.
async fn post_ref(app: &TestApp, inc: &str, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = app.get_json(&format!("/api/incidents/{inc}/posts")).await;
        if let Some(p) = body["posts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["text"].as_str().is_some_and(|t| t.starts_with(prefix)))
        {
            return p["message_ref"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{inc}: no post starting {prefix:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until some post of the incident contains `needle`; returns it.
async fn wait_post(app: &TestApp, inc: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = app.get_json(&format!("/api/incidents/{inc}/posts")).await;
        if let Some(t) = body["posts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .find(|t| t.contains(needle))
        {
            return t.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{inc}: no post containing {needle:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn proposal_state(app: &TestApp, inc: &str, n: usize) -> Value {
    let (code, body) = app.get_json(&format!("/api/incidents/{inc}/actions")).await;
    assert_eq!(code, 200, "{body}");
    body["actions"][n].clone()
}

/// A pause in which nothing must happen (a call that would come, comes
/// well within it).
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

#[tokio::test]
async fn a_proposal_approved_by_a_fixer_runs_once_and_is_audited() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(s) = setup(backend, 0, "", "").await else {
            continue;
        };
        let inc = open(&s.app, "warning").await;
        let (code, list) = say(&s.app, "sam", &inc, "/action list").await;
        assert_eq!(code, 200, "{list}");
        let list = list["reply"].as_str().unwrap_or_default().to_string();
        // Reversible first, and how each runs.
        assert!(
            list.contains("• restart — Restart the service · restart · reversible · runs: http"),
            "{list}"
        );
        assert!(
            list.find("• restart").unwrap_or(0) < list.find("• fix_rows").unwrap_or(0),
            "{list}"
        );
        let (code, r) = say(&s.app, "sam", &inc, "/action propose restart").await;
        assert_eq!(code, 200, "{r}");
        assert!(
            r["reply"]
                .as_str()
                .unwrap_or_default()
                .contains("proposed #1 restart"),
            "{r}"
        );
        let proposal = wait_post(&s.app, &inc, "Proposal #1").await;
        // Exactly what will run, against what, who may approve, expiry.
        assert!(
            proposal.contains(&format!("POST {}/restart/svc", s.svc.addr)),
            "{proposal}"
        );
        assert!(proposal.contains("Reversible: yes"), "{proposal}");
        assert!(
            proposal.contains("fixers (console:sam, console:ann, slack:U0APPROVER)"),
            "{proposal}"
        );
        assert!(proposal.contains("Expires "), "{proposal}");
        quiet().await;
        assert_eq!(
            s.svc.restarts.load(Ordering::SeqCst),
            0,
            "nothing runs unapproved"
        );

        let msg = post_ref(&s.app, &inc, "Proposal #1").await;
        let (code, r) = react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
        assert_eq!(code, 200, "{r}");
        let done = wait_post(&s.app, &inc, "#1 restart try 1/1: done").await;
        assert!(done.contains("HTTP 202"), "{done}");
        assert!(done.contains("proposed by sam, approved by ann"), "{done}");
        wait_post(&s.app, &inc, "no recovery criteria").await;
        assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);
        let (_, metrics) = s.app.get_text("/metrics").await;
        assert!(
            metrics.contains("firstline_action_tries_total{kind=\"http\",outcome=\"ok\"}"),
            "{metrics}"
        );

        // The same approval again changes nothing.
        let (_, r) = react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
        assert!(
            r["reply"].as_str().unwrap_or_default().contains("already"),
            "{r}"
        );
        quiet().await;
        assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);

        let p = proposal_state(&s.app, &inc, 0).await;
        assert_eq!(p["state"], "verified", "{p}");
        assert_eq!(p["proposer"], "sam");
        assert_eq!(p["proposer_identity"], "console:sam");
        assert_eq!(p["votes"][0]["identity"], "console:ann");
        assert_eq!(p["tries"][0]["state"], "ok");
        let (_, tl) = s
            .app
            .get_json(&format!("/api/incidents/{inc}/timeline"))
            .await;
        let texts: Vec<&str> = tl["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "action")
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("sam proposed #1 restart")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("approved by ann")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("try 1/1: done")),
            "{texts:?}"
        );
        let (_, pm) = s
            .app
            .get_text(&format!("/api/incidents/{inc}/postmortem?format=md"))
            .await;
        assert!(pm.contains("restart"), "{pm}");
    }
}

#[tokio::test]
async fn nothing_runs_without_an_approval_that_counts_and_the_thread_says_why() {
    let Some(s) = setup(Backend::Sqlite, 0, "quorum = 2", "").await else {
        return;
    };
    let inc = open(&s.app, "warning").await;
    say(&s.app, "sam", &inc, "/action propose restart").await;
    let msg = post_ref(&s.app, &inc, "Proposal #1").await;

    // Someone without the role.
    react(&s.app, "bob", &msg, "white_check_mark", false, true).await;
    let why = wait_post(
        &s.app,
        &inc,
        "bob's :white_check_mark: on #1 restart does not count",
    )
    .await;
    assert!(why.contains("console:bob holds none of the roles"), "{why}");

    // Without the console token, the console routes take nothing.
    let (code, _) = react(&s.app, "sam", &msg, "white_check_mark", false, false).await;
    assert_eq!(code, 401);

    // A vote on another message.
    let root = post_ref(&s.app, &inc, "").await;
    react(&s.app, "ann", &root, "white_check_mark", false, true).await;
    wait_post(
        &s.app,
        &inc,
        "approvals count only on the proposal message of #1",
    )
    .await;

    // One of two, then withdrawn: back to none.
    react(&s.app, "sam", &msg, "white_check_mark", false, true).await;
    wait_post(&s.app, &inc, "1 of 2 approvals; waiting for 1 more").await;
    react(&s.app, "sam", &msg, "white_check_mark", true, true).await;
    wait_post(
        &s.app,
        &inc,
        "withdrew their approval of #1 restart (0 of 2 approvals)",
    )
    .await;
    react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
    wait_post(&s.app, &inc, "ann approved #1 restart: 1 of 2").await;

    // A second proposal waits for the first.
    let (code, r) = say(&s.app, "sam", &inc, "/action propose drain").await;
    assert_eq!(code, 422, "{r}");
    assert!(
        r["reply"]
            .as_str()
            .unwrap_or_default()
            .contains("has a change under way: #1 restart (proposed)"),
        "{r}"
    );

    // A data fix before the first recovery.
    // (Rejected first so the one-at-a-time rule is not what answers.)
    react(&s.app, "ann", &msg, "x", false, true).await;
    wait_post(&s.app, &inc, "#1 restart rejected by ann").await;
    let (code, r) = say(&s.app, "sam", &inc, "/action propose fix_rows").await;
    assert_eq!(code, 422, "{r}");
    assert!(
        r["reply"]
            .as_str()
            .unwrap_or_default()
            .contains("refused until the first recovery"),
        "{r}"
    );

    // Approving after the rejection changes nothing.
    react(&s.app, "sam", &msg, "white_check_mark", false, true).await;
    wait_post(&s.app, &inc, "changes nothing: it is already rejected").await;
    quiet().await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
    let p = proposal_state(&s.app, &inc, 0).await;
    assert_eq!(p["state"], "rejected", "{p}");
}

#[tokio::test]
async fn on_a_p1_the_proposer_alone_cannot_approve() {
    let Some(s) = setup(Backend::Sqlite, 0, "", "").await else {
        return;
    };
    let inc = open(&s.app, "critical").await;
    say(&s.app, "sam", &inc, "/action propose restart").await;
    let proposal = wait_post(&s.app, &inc, "Proposal #1").await;
    assert!(
        proposal.contains("P1: the proposer's own approval does not count"),
        "{proposal}"
    );
    let msg = post_ref(&s.app, &inc, "Proposal #1").await;
    react(&s.app, "sam", &msg, "white_check_mark", false, true).await;
    wait_post(&s.app, &inc, "two-person rule").await;
    quiet().await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
    react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
    wait_post(&s.app, &inc, "try 1/1: done").await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_expired_proposal_runs_nothing() {
    // Its own configuration: proposals expire after a second.
    let svc = service(0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("svc.toml"), RUNBOOK.replace("RETRY", "")).expect("runbook");
    let token = dir.path().join("t");
    std::fs::write(&token, TOKEN).expect("token");
    let toml = format!(
        "[runbooks]\nbundled = false\ndirs = [\"{}\"]\nrun_on_alert = false\n[chat.console]\ntoken = {{ file = \"{}\" }}\n[targets.admin]\nkind = \"http\"\nbase_url = \"{}\"\n[roles.fixers]\nmembers = [\"console:ann\"]\n[approvals]\ndefault_approvers = [\"fixers\"]\nexpire_after = \"1s\"\n",
        dir.path().display(),
        token.display(),
        svc.addr
    );
    let app = spawn_app_with_file_on(Backend::Sqlite, &toml, &[])
        .await
        .expect("sqlite");
    let inc = open(&app, "warning").await;
    say(&app, "sam", &inc, "/action propose restart").await;
    let msg = post_ref(&app, &inc, "Proposal #1").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    react(&app, "ann", &msg, "white_check_mark", false, true).await;
    wait_post(&app, &inc, "#1 restart expired at").await;
    wait_post(&app, &inc, "changes nothing: it expired").await;
    quiet().await;
    assert_eq!(svc.restarts.load(Ordering::SeqCst), 0);
    let (_, body) = app.get_json(&format!("/api/incidents/{inc}/actions")).await;
    assert_eq!(body["actions"][0]["state"], "expired", "{body}");
}

#[tokio::test]
async fn an_approval_delivered_many_times_at_once_runs_the_action_once() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(s) = setup(backend, 0, "", "").await else {
            continue;
        };
        let inc = open(&s.app, "warning").await;
        say(&s.app, "sam", &inc, "/action propose restart").await;
        let msg = post_ref(&s.app, &inc, "Proposal #1").await;
        let mut all = Vec::new();
        for _ in 0..8 {
            let app = &s.app;
            let msg = msg.clone();
            all.push(async move { react(app, "ann", &msg, "white_check_mark", false, true).await });
        }
        let answers = futures_util::future::join_all(all).await;
        assert!(answers.iter().all(|(c, _)| *c == 200), "{answers:?}");
        wait_post(&s.app, &inc, "try 1/1: done").await;
        quiet().await;
        assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 1, "{backend:?}");
    }
}

#[tokio::test]
async fn a_restart_plan_tries_until_the_health_check_passes() {
    let Some(s) = setup(
        Backend::Sqlite,
        3,
        "retry = \"restart\"\nverify = \"health\"",
        "",
    )
    .await
    else {
        return;
    };
    let inc = open(&s.app, "warning").await;
    say(&s.app, "sam", &inc, "/action propose restart").await;
    let proposal = wait_post(&s.app, &inc, "Proposal #1").await;
    assert!(
        proposal.contains("up to 3 tries, check health after each"),
        "{proposal}"
    );
    let msg = post_ref(&s.app, &inc, "Proposal #1").await;
    react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
    let first = wait_post(&s.app, &inc, "#1 restart try 1/3: FAILED").await;
    assert!(first.contains("health check: ✗"), "{first}");
    wait_post(&s.app, &inc, "#1 restart try 2/3: FAILED").await;
    let third = wait_post(&s.app, &inc, "#1 restart try 3/3: done").await;
    assert!(third.contains("health check: ✓"), "{third}");
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_restart_plan_that_never_recovers_escalates() {
    let Some(s) = setup(
        Backend::Sqlite,
        usize::MAX,
        "retry = \"restart\"\nverify = \"health\"",
        "\n[contacts.lead]\navailability = \"24/7\"\n\n[escalation.P2]\nsteps = [{ page = [\"lead\"], ack_within = \"30m\" }]\n",
    )
    .await
    else {
        return;
    };
    let inc = open(&s.app, "warning").await;
    say(&s.app, "sam", &inc, "/action propose restart").await;
    let msg = post_ref(&s.app, &inc, "Proposal #1").await;
    react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
    let last = wait_post(&s.app, &inc, "#1 restart try 3/3: FAILED").await;
    assert!(
        last.contains("escalating now: 3 automatic attempts at action restart failed"),
        "{last}"
    );
    assert!(last.contains("all 3 tries failed"), "{last}");
    quiet().await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 3);
    let p = proposal_state(&s.app, &inc, 0).await;
    assert_eq!(p["state"], "failed", "{p}");
}

#[tokio::test]
async fn a_manual_item_is_ticked_and_recorded() {
    let Some(s) = setup(Backend::Sqlite, 0, "", "").await else {
        return;
    };
    let inc = open(&s.app, "warning").await;
    say(&s.app, "sam", &inc, "/action propose drain").await;
    let item = wait_post(&s.app, &inc, "Checklist item #1").await;
    assert!(
        item.contains("react :white_check_mark: here once it is done"),
        "{item}"
    );
    let msg = post_ref(&s.app, &inc, "Checklist item #1").await;
    react(&s.app, "bob", &msg, "white_check_mark", false, true).await;
    wait_post(&s.app, &inc, "checklist item #1 drain done: ticked by bob").await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_approval_forged_through_the_open_console_route_never_counts() {
    // No console token: anyone who reaches the port can name any user.
    let Some(s) = setup_with(Backend::Sqlite, 0, "", "", false).await else {
        return;
    };
    let inc = open(&s.app, "warning").await;
    let (code, r) = s
        .app
        .command("sam", &format!("/action propose restart {inc}"))
        .await;
    assert_eq!(code, 200, "{r}");
    let msg = post_ref(&s.app, &inc, "Proposal #1").await;
    // A Slack approver's id, and a console approver's name.
    for user in ["U0APPROVER", "ann"] {
        react(&s.app, user, &msg, "white_check_mark", false, false).await;
        let why = wait_post(
            &s.app,
            &inc,
            &format!("{user}'s :white_check_mark: on #1 restart does not count"),
        )
        .await;
        assert!(why.contains("does not vouch for who sent it"), "{why}");
    }
    quiet().await;
    assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
    let p = proposal_state(&s.app, &inc, 0).await;
    assert_eq!(p["state"], "proposed", "{p}");
    assert_eq!(p["votes"], json!([]), "{p}");
}

#[tokio::test]
async fn approvals_given_before_the_action_changed_do_not_count() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(s) = setup(backend, 0, "quorum = 2", "").await else {
            continue;
        };
        let inc = open(&s.app, "warning").await;
        say(&s.app, "sam", &inc, "/action propose restart").await;
        let msg = post_ref(&s.app, &inc, "Proposal #1").await;
        react(&s.app, "sam", &msg, "white_check_mark", false, true).await;
        wait_post(&s.app, &inc, "1 of 2 approvals").await;
        // The admin target moves: the same action would now call another
        // service than the one sam approved.
        let moved = service(0).await;
        let toml = s.toml.replace(&s.svc.addr, &moved.addr);
        let (dir, db_url) = s.app.stop().await;
        let app = crate::helpers::restart_with_file(dir, db_url, &toml, &[]).await;
        react(&app, "ann", &msg, "white_check_mark", false, true).await;
        let why = wait_post(
            &app,
            &inc,
            "ann's :white_check_mark: on #1 restart does not count",
        )
        .await;
        assert!(
            why.contains("restart changed since it was proposed"),
            "{why}"
        );
        assert!(why.contains(&moved.addr), "{why}");
        assert!(why.contains("earlier approvals no longer count"), "{why}");
        quiet().await;
        assert_eq!(s.svc.restarts.load(Ordering::SeqCst), 0);
        assert_eq!(moved.restarts.load(Ordering::SeqCst), 0);
        let (_, body) = app.get_json(&format!("/api/incidents/{inc}/actions")).await;
        assert_eq!(body["actions"][0]["state"], "cancelled", "{body}");
        // Proposed again, it shows the new target and needs new approvals.
        let (code, r) = say(&app, "sam", &inc, "/action propose restart").await;
        assert_eq!(code, 200, "{r}");
        let again = wait_post(&app, &inc, "Proposal #2").await;
        assert!(again.contains(&moved.addr), "{again}");
    }
}

#[tokio::test]
async fn after_a_try_the_recovery_criteria_are_checked_again_and_the_verdict_posted() {
    // The runbook gains a recovery criterion over its health check.
    let recovery = "\n[[recovery]]\ntitle = \"health answers\"\ncheck = \"health\"\npath = \"status\"\ntrend = \"below\"\nthreshold = 300\nsamples = 2\ninterval_s = 1\n";
    let Some(s) = setup(Backend::Sqlite, 0, recovery, "").await else {
        return;
    };
    let inc = open(&s.app, "warning").await;
    say(&s.app, "sam", &inc, "/action propose restart").await;
    let msg = post_ref(&s.app, &inc, "Proposal #1").await;
    react(&s.app, "ann", &msg, "white_check_mark", false, true).await;
    let done = wait_post(&s.app, &inc, "#1 restart try 1/1: done").await;
    assert!(
        done.contains("re-checking the runbook's recovery criteria now"),
        "{done}"
    );
    let verdict = wait_post(&s.app, &inc, "recovery re-check after #1 restart:").await;
    assert!(
        verdict.contains(&format!("recovered, {inc} is mitigated")),
        "{verdict}"
    );
    let p = proposal_state(&s.app, &inc, 0).await;
    assert_eq!(p["state"], "verified", "{p}");
    // The change is verified: the next one may be proposed.
    let (code, r) = say(&s.app, "sam", &inc, "/action propose drain").await;
    assert_eq!(code, 200, "{r}");
}

#[tokio::test]
async fn an_approved_allowlisted_command_writes_its_file_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runbook = r#"
version = 1
id = "svc-cmd"
title = "サービス停止"
title_en = "Service down"
severity = "P2"
source = { seed = "003", section = "5" }

[match]
alertname = ["SvcDown"]

[[checks]]
id = "noop"
title = "placeholder check"
probe = { kind = "tcp", target = "nowhere" }
expect = [{ path = "connected", fail_if = "!= true" }]

[[actions]]
id = "restart"
title = "再起動"
kind = "restart"
reversible = true
params = { component = "{{ labels.service }}" }
run = { kind = "command", command = "touch_marker" }
"#;
    std::fs::write(dir.path().join("svc.toml"), runbook).expect("runbook");
    let token = dir.path().join("t");
    std::fs::write(&token, TOKEN).expect("token");
    let toml = format!(
        r#"
[runbooks]
bundled = false
dirs = ["{dir}"]
run_on_alert = false
[chat.console]
token = {{ file = "{token}" }}
[roles.fixers]
members = ["console:ann"]
[approvals]
default_approvers = ["fixers"]
[actions.commands.touch_marker]
argv = ["touch", "{marker}-{{{{ params.component }}}}"]
"#,
        dir = dir.path().display(),
        token = token.display(),
        marker = dir.path().join("restarted").display(),
    );
    // The placeholder must be a whole argument: this configuration is refused.
    let refused = firstline::config::load_with_env(
        Some(&write(&dir, "bad.toml", &toml)),
        crate::helpers::test_env("sqlite::memory:", &[]),
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("actions.commands.touch_marker.argv[1]"),
        "{message}"
    );
    let toml = toml.replace(
        &format!(
            "\"{}-{{{{ params.component }}}}\"",
            dir.path().join("restarted").display()
        ),
        "\"{{ params.component }}\"",
    );
    let toml = toml.replace(
        "argv = [\"touch\",",
        &format!("workdir = \"{}\"\nargv = [\"touch\",", dir.path().display()),
    );
    let app = spawn_app_with_file_on(Backend::Sqlite, &toml, &[])
        .await
        .expect("sqlite");
    let inc = open(&app, "warning").await;
    let (code, r) = say(&app, "sam", &inc, "/action propose restart").await;
    assert_eq!(code, 200, "{r}");
    let proposal = wait_post(&app, &inc, "Proposal #1").await;
    // The label filled the parameter; the argv is shown as it will run.
    assert!(proposal.contains("touch svc"), "{proposal}");
    assert!(!dir.path().join("svc").exists(), "nothing runs unapproved");
    let msg = post_ref(&app, &inc, "Proposal #1").await;
    react(&app, "ann", &msg, "white_check_mark", false, true).await;
    let done = wait_post(&app, &inc, "#1 restart try 1/1: done").await;
    assert!(done.contains("exit 0"), "{done}");
    assert!(
        dir.path().join("svc").exists(),
        "the command ran in its workdir"
    );
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}
