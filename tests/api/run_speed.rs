//! Runbook runs do not wait for each other across incidents, and a run
//! asked for in chat is answered before its checks are done.
//!
//! The slow check is a loopback endpoint that answers only when the test
//! opens its gate: what is asserted is what a user can see while it is
//! held (an answer, another incident's findings), never how long anything
//! took.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use firstline::domain::time::Millis;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::helpers::{Backend, TestApp, am_payload, spawn_app_on};

/// One runbook per alert name: `slow` probes the gated endpoint, `fast`
/// one that answers at once.
fn runbook(id: &str, alertname: &str, path: &str) -> String {
    format!(
        r#"
version = 1
id = "{id}"
title = "{id}"
title_en = "{id} checks"
severity = "P2"
source = {{ seed = "003_test.txt", section = "1" }}

[match]
alertname = ["{alertname}"]

[[checks]]
id = "health"
title = "{id} health"
probe = {{ kind = "http", target = "api", path = "{path}" }}
expect = [{{ path = "status", fail_if = "!= 200" }}]
timeout_ms = 60000
"#
    )
}

/// The loopback service: `/slow` counts each request, then answers once
/// the gate is open; `/fast` answers at once.
struct Service {
    base: String,
    gate: watch::Sender<bool>,
    hits: watch::Receiver<usize>,
    fast_hits: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Shared {
    gate: watch::Receiver<bool>,
    hits: Arc<watch::Sender<usize>>,
    fast_hits: Arc<AtomicUsize>,
}

async fn slow(State(s): State<Shared>) -> Json<Value> {
    s.hits.send_modify(|n| *n += 1);
    let mut gate = s.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    Json(json!({"ok": true}))
}

async fn fast(State(s): State<Shared>) -> Json<Value> {
    s.fast_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({"ok": true}))
}

async fn service() -> Service {
    let (gate, gate_rx) = watch::channel(false);
    let (hits_tx, hits) = watch::channel(0usize);
    let fast_hits = Arc::new(AtomicUsize::new(0));
    let shared = Shared {
        gate: gate_rx,
        hits: Arc::new(hits_tx),
        fast_hits: fast_hits.clone(),
    };
    let app = axum::Router::new()
        .route("/slow", get(slow))
        .route("/fast", get(fast))
        .with_state(shared);
    Service {
        base: crate::helpers::serve(app).await,
        gate,
        hits,
        fast_hits,
    }
}

impl Service {
    /// Waits until `/slow` has been asked `n` times (a guard against a
    /// hang, not a measurement).
    async fn hit(&self, n: usize) {
        let mut hits = self.hits.clone();
        tokio::time::timeout(Duration::from_secs(20), hits.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("/slow was not asked {n} time(s)"))
            .unwrap();
    }

    fn hits(&self) -> usize {
        *self.hits.borrow()
    }

    fn fast_hits(&self) -> usize {
        self.fast_hits.load(Ordering::SeqCst)
    }

    fn open(&self) {
        let _ = self.gate.send(true);
    }
}

async fn app(service: &Service, extra: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.toml"),
        runbook("slow", "SlowDown", "/slow"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fast.toml"),
        runbook("fast", "FastDown", "/fast"),
    )
    .unwrap();
    let dirs = format!("[\"{}\"]", dir.path().display());
    let mut env = vec![
        ("FIRSTLINE_RUNBOOKS__BUNDLED", "false"),
        ("FIRSTLINE_RUNBOOKS__DIRS", dirs.as_str()),
        ("FIRSTLINE_TARGETS__API__KIND", "http"),
        ("FIRSTLINE_TARGETS__API__BASE_URL", service.base.as_str()),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_on(Backend::Sqlite, &env).await.unwrap();
    (app, dir)
}

fn alert(group: &str, name: &str) -> String {
    am_payload(
        group,
        &[(
            name,
            group,
            "warning",
            "a:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    )
}

/// The incident's findings posts (the console posts of its thread).
async fn findings_posts(app: &TestApp, incident: &str) -> Vec<String> {
    let (_, body) = app
        .get_json(&format!("/api/incidents/{incident}/posts"))
        .await;
    body["posts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["text"].as_str().map(str::to_string))
        .filter(|t| t.contains("checks of runbook"))
        .collect()
}

async fn timeline_kinds(app: &TestApp, incident: &str) -> Vec<String> {
    let (_, tl) = app
        .get_json(&format!("/api/incidents/{incident}/timeline"))
        .await;
    tl["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_slow_runbook_run_does_not_hold_up_another_incidents_findings() {
    let svc = service().await;
    let (app, _dir) = app(&svc, &[]).await;

    app.post_hook("alertmanager", alert("g-slow", "SlowDown"))
        .await;
    // INC-1's check is under way and held.
    svc.hit(1).await;
    app.post_hook("alertmanager", alert("g-fast", "FastDown"))
        .await;
    let fast = app.wait_posts("INC-2", 2).await;

    // INC-2's findings are out while INC-1's run is still held.
    assert!(
        fast[1]["text"]
            .as_str()
            .unwrap()
            .contains("checks of runbook fast"),
        "{fast:?}"
    );
    assert!(findings_posts(&app, "INC-1").await.is_empty());
    assert!(
        !timeline_kinds(&app, "INC-1")
            .await
            .contains(&"findings".to_string())
    );

    svc.open();
    let slow = app.wait_posts("INC-1", 2).await;
    assert!(
        slow[1]["text"]
            .as_str()
            .unwrap()
            .contains("checks of runbook slow"),
        "{slow:?}"
    );
}

#[tokio::test]
async fn two_runs_for_one_incident_take_turns_in_order() {
    let svc = service().await;
    let (app, _dir) = app(&svc, &[]).await;

    app.post_hook("alertmanager", alert("g-slow", "SlowDown"))
        .await;
    svc.hit(1).await;
    // A second run of INC-1, asked while its first is held.
    let (status, reply) = app.command("kim", "/runbook run fast INC-1").await;
    // Another incident's run goes through meanwhile, so the runner has
    // looked at the outbox since the second run was written.
    app.post_hook("alertmanager", alert("g-fast", "FastDown"))
        .await;
    app.wait_posts("INC-2", 2).await;

    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["reply"],
        "running 1 check of fast for INC-1; the findings will be posted in its thread"
    );
    // INC-1's second run has not started beside its first: `/fast` was
    // asked by INC-2's run only.
    assert!(findings_posts(&app, "INC-1").await.is_empty());
    assert_eq!(svc.hits(), 1);
    assert_eq!(svc.fast_hits(), 1);

    svc.open();
    app.wait_posts("INC-1", 3).await;
    let findings = findings_posts(&app, "INC-1").await;
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(
        findings[0].contains("checks of runbook slow"),
        "{findings:?}"
    );
    assert!(
        findings[1].contains("checks of runbook fast"),
        "{findings:?}"
    );
    let kinds = timeline_kinds(&app, "INC-1").await;
    let requested = kinds.iter().position(|k| k == "runbook_requested");
    assert!(requested.is_some(), "{kinds:?}");
}

#[tokio::test]
async fn runbook_run_in_chat_answers_before_its_checks_are_done() {
    let svc = service().await;
    let (app, _dir) = app(&svc, &[("FIRSTLINE_RUNBOOKS__RUN_ON_ALERT", "false")]).await;
    app.command("kim", "/incident declare the slow service is slow")
        .await;

    // Answered while the check is held (it cannot have finished).
    let (status, for_incident) = app.command("kim", "/runbook run slow INC-1").await;
    let (status_no_incident, alone) = app.command("kim", "/runbook run slow").await;
    let (_, in_thread) = app
        .client
        .post(format!("{}/console/commands", app.addr))
        .json(&json!({"user": "kim", "text": "/runbook run fast", "incident": "INC-1"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|v| (0, v))
        .unwrap();
    let (_, missing) = app.command("kim", "/runbook run slow INC-9").await;

    assert_eq!(status, 200, "{for_incident}");
    assert_eq!(
        for_incident["reply"],
        "running 1 check of slow for INC-1; the findings will be posted in its thread"
    );
    assert_eq!(status_no_incident, 200, "{alone}");
    assert_eq!(
        alone["reply"],
        "running 1 check of slow; the findings will be posted here when done"
    );
    // Typed in INC-1's thread: that incident is meant.
    assert_eq!(
        in_thread["reply"],
        "running 1 check of fast for INC-1; the findings will be posted in its thread"
    );
    assert_eq!(missing["reply"], "INC-9 does not exist", "{missing}");
    svc.hit(2).await;
    assert!(findings_posts(&app, "INC-1").await.is_empty());

    svc.open();
    // INC-1: opened, then the two runs' findings in the order asked.
    app.wait_posts("INC-1", 3).await;
    let findings = findings_posts(&app, "INC-1").await;
    assert!(
        findings[0].contains("checks of runbook slow"),
        "{findings:?}"
    );
    assert!(
        findings[1].contains("checks of runbook fast"),
        "{findings:?}"
    );
    // The run of no incident is posted into the channel, as a reply.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let (_, posts) = app.get_json("/console/posts").await;
        let found = posts["posts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|p| p["incident_id"].is_null());
        if let Some(p) = found {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no post of the run without an incident: {posts}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let text = reply["text"].as_str().unwrap();
    assert!(
        text.contains("(no incident) checks of runbook slow") && text.contains("✅"),
        "{text}"
    );
    // The rerun line is a command that works as typed.
    assert!(text.ends_with("Rerun: /runbook run slow"), "{text}");
    assert_eq!(reply["channel"], "#incidents");
}

/// An item backing off after a failure holds back its incident's later
/// items, and only those (the store's side of per-incident order).
async fn a_backing_off_item_holds_back_only_its_incident(backend: Backend) {
    let Some(app) = spawn_app_on(backend, &[]).await else {
        return;
    };
    app.command("kim", "/incident declare one").await;
    app.command("kim", "/incident declare two").await;
    // A kind no dispatcher takes, so only this test moves these items.
    let kind = "test_only";
    let mut tx = app.store.begin().await.unwrap();
    let mut ids = Vec::new();
    for incident in [Some(1), Some(1), Some(2), None] {
        ids.push(
            tx.enqueue(incident, kind, &json!({}), Millis(0))
                .await
                .unwrap(),
        );
    }
    tx.commit().await.unwrap();
    let due = |now: i64| {
        let store = app.store.clone();
        async move {
            store
                .due_outbox(Millis(now), 10, kind)
                .await
                .unwrap()
                .iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        }
    };

    let all = due(1_000).await;
    app.store
        .outbox_failed(ids[0], Millis(5_000), "down", false)
        .await
        .unwrap();
    let while_backing_off = due(1_000).await;
    let once_due_again = due(5_000).await;

    assert_eq!(all, ids);
    assert_eq!(while_backing_off, [ids[2], ids[3]]);
    assert_eq!(once_due_again, ids);
}

#[tokio::test]
async fn a_backing_off_item_holds_back_only_its_incident_on_sqlite() {
    a_backing_off_item_holds_back_only_its_incident(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_backing_off_item_holds_back_only_its_incident_on_postgres() {
    a_backing_off_item_holds_back_only_its_incident(Backend::Postgres).await;
}
