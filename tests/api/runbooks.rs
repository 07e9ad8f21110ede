//! Runbooks end to end: an alert opens an incident, its runbook's checks run
//! against real loopback targets, the findings are posted in order with the
//! likely bottleneck named; lint and the command line.

use std::time::Duration;

use axum::Json;
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::{Backend, am_payload, spawn_app_on};

const RUNBOOK: &str = r#"
version = 1
id = "workflow-events-failed"
title = "`status=failed` が増えた"
title_en = "Workflow events failing"
severity = "P2"
source = { seed = "000_9ac43e2251730027.txt", section = "4" }

[match]
alertname = ["WorkflowEventsFailed"]

[[checks]]
id = "summary"
title = "集計APIの取得可否"
probe = { kind = "http", target = "workflow_api", path = "/api/workflow-events/summary", query = { ym = "{{ ym }}", recent_limit = "20" } }
expect = [{ path = "status", fail_if = "!= 200" }, { path = "body.status", fail_if = "!= \"ok\"" }]

[[checks]]
id = "failed"
title = "status=failed の件数"
probe = { kind = "http", target = "workflow_api", path = "/api/workflow-events/summary", query = { ym = "{{ ym }}" } }
expect = [{ path = "body.by_status.failed", warn_if = "> 0", fail_if = "> 5", meaning = "investigate reason_class=infra first" }]

[[checks]]
id = "db"
title = "DB reachable"
probe = { kind = "tcp", target = "dead_db" }
expect = [{ path = "connected", fail_if = "!= true" }]

[[actions]]
id = "retry-with-backoff"
title = "同一 idempotency_key で再送"
kind = "manual"
reversible = true
"#;

/// The real app on SQLite with only `runbook` loaded (no bundled ones), and
/// `env` on top; the temp dir holds the runbook file.
async fn app_with_runbook(
    runbook: &str,
    env: &[(&str, &str)],
) -> (crate::helpers::TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("runbook.toml"), runbook).unwrap();
    let dirs = format!("[\"{}\"]", dir.path().display());
    let mut all = vec![
        ("FIRSTLINE_RUNBOOKS__BUNDLED", "false"),
        ("FIRSTLINE_RUNBOOKS__DIRS", dirs.as_str()),
    ];
    all.extend_from_slice(env);
    let app = spawn_app_on(Backend::Sqlite, &all).await.unwrap();
    (app, dir)
}

async fn summary_server(failed: u64) -> String {
    let app = axum::Router::new().route(
        "/api/workflow-events/summary",
        get(move || async move {
            Json(
                json!({"status": "ok", "by_status": {"success": 40, "failed": failed},
                        "by_reason_class": {"infra": failed}, "by_retry_advice": {}, "recent": []}),
            )
        }),
    );
    crate::helpers::serve(app).await
}

fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

#[tokio::test]
async fn an_alert_runs_its_runbook_and_the_findings_name_the_first_failing_check() {
    let base = summary_server(7).await;
    let dead = dead_address();
    let (app, _dir) = app_with_runbook(
        RUNBOOK,
        &[
            ("FIRSTLINE_TARGETS__WORKFLOW_API__KIND", "http"),
            ("FIRSTLINE_TARGETS__WORKFLOW_API__BASE_URL", base.as_str()),
            ("FIRSTLINE_TARGETS__DEAD_DB__KIND", "tcp"),
            ("FIRSTLINE_TARGETS__DEAD_DB__ADDRESS", dead.as_str()),
        ],
    )
    .await;
    let alert = am_payload(
        "g",
        &[(
            "WorkflowEventsFailed",
            "workflow",
            "warning",
            "api:8000",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );

    let (status, _) = app.post_hook("alertmanager", alert).await;
    let posts = app.wait_posts("INC-1", 2).await;

    assert_eq!(status, 200);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["runbook_id"], "workflow-events-failed");
    let text = posts[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with("🔎 INC-1 checks of runbook workflow-events-failed"),
        "{text}"
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert!(lines[0].starts_with("1. ✅ 集計APIの取得可否"), "{text}");
    assert!(lines[1].starts_with("2. ❌ status=failed の件数"), "{text}");
    assert!(
        lines[1].contains("body.by_status.failed = 7, breached > 5")
            && lines[1].contains("investigate reason_class=infra first"),
        "{text}"
    );
    // Whether it connects is what a tcp check observes: a refusal fails it.
    assert!(lines[2].starts_with("3. ❌ DB reachable"), "{text}");
    assert!(
        text.contains("Likely bottleneck: #2 status=failed の件数"),
        "{text}"
    );
    assert!(text.contains("retry-with-backoff (reversible)"), "{text}");
    let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
    let findings = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "findings")
        .cloned()
        .expect("findings event");
    let statuses: Vec<&str> = findings["data"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "fail", "fail"]);
    // The same number as the text's "#2", and the check it names.
    assert_eq!(findings["data"]["bottleneck"], 2);
    assert_eq!(findings["data"]["bottleneck_check"], "failed");
    let (_, pm) = app
        .get_json("/api/incidents/INC-1/postmortem?format=json")
        .await;
    let in_export = pm["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "findings")
        .cloned()
        .expect("findings event in the export");
    assert_eq!(in_export["data"]["bottleneck"], 2, "{in_export}");
}

#[tokio::test]
async fn runbook_run_from_chat_records_fresh_findings_on_the_incident() {
    let base = summary_server(0).await;
    let (app, _dir) = app_with_runbook(
        RUNBOOK,
        &[
            ("FIRSTLINE_RUNBOOKS__RUN_ON_ALERT", "false"),
            ("FIRSTLINE_TARGETS__WORKFLOW_API__KIND", "http"),
            ("FIRSTLINE_TARGETS__WORKFLOW_API__BASE_URL", base.as_str()),
        ],
    )
    .await;
    app.command("kim", "/incident declare workflow events look odd")
        .await;

    let (status, reply) = app
        .command("kim", "/runbook run workflow-events-failed INC-1")
        .await;
    let (_, unknown) = app.command("kim", "/runbook run no-such-runbook").await;
    let (_, list) = app.command("kim", "/runbook list").await;

    assert_eq!(status, 200, "{reply}");
    // Answered at once; the findings follow in the thread.
    assert_eq!(
        reply["reply"],
        "running 3 checks of workflow-events-failed for INC-1; the findings will be posted in its thread",
        "{reply}"
    );
    assert!(
        unknown["reply"]
            .as_str()
            .unwrap()
            .contains("no runbook \"no-such-runbook\"")
    );
    assert!(
        list["reply"]
            .as_str()
            .unwrap()
            .contains("workflow-events-failed [P2] Workflow events failing")
    );
    let posts = app.wait_posts("INC-1", 2).await;
    let text = posts[1]["text"].as_str().unwrap();
    assert!(
        text.contains("2. ✅ status=failed の件数"),
        "failed = 0 holds: {text}"
    );
    assert!(
        text.contains("3. ⛔ DB reachable [tcp → dead_db]: not run: target not configured"),
        "{text}"
    );
    assert!(
        text.contains("⚙ Not configured, so not checked: dead_db"),
        "{text}"
    );
    // The only failing check could not run (its target is not configured):
    // that is said, but not named as the bottleneck.
    assert!(text.contains("No check that ran failed."), "{text}");
}

const BACKLOG_RUNBOOK: &str = r#"
version = 1
id = "backlog"
title = "通知が届かない"
title_en = "Notifications are not delivered"
severity = "P2"
source = { seed = "001_1d45dcad95843ddb.txt", section = "4.1" }

[match]
alertname = ["NotificationBacklogHigh"]

[[checks]]
id = "backlog"
title = "Notification backlog"
probe = { kind = "http", target = "backlog_api", path = "/backlog" }
expect = [{ path = "body.backlog", warn_if = "> 10", fail_if = "> 50" }]

[[recovery]]
title = "backlog が減少傾向"
check = "backlog"
path = "body.backlog"
trend = "decreasing"
samples = 3
interval_s = 1
"#;

/// Serves `/backlog` answering the given values in turn (the last repeats).
async fn backlog_server(values: Vec<u64>) -> String {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/backlog",
        get(move || {
            let calls = calls.clone();
            let values = values.clone();
            async move {
                let i = calls
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .min(values.len() - 1);
                Json(json!({"backlog": values[i]}))
            }
        }),
    );
    crate::helpers::serve(app).await
}

async fn backlog_app(values: Vec<u64>) -> (crate::helpers::TestApp, tempfile::TempDir) {
    let base = backlog_server(values).await;
    let (app, _dir) = app_with_runbook(
        BACKLOG_RUNBOOK,
        &[
            ("FIRSTLINE_RUNBOOKS__RUN_ON_ALERT", "false"),
            ("FIRSTLINE_TARGETS__BACKLOG_API__KIND", "http"),
            ("FIRSTLINE_TARGETS__BACKLOG_API__BASE_URL", base.as_str()),
        ],
    )
    .await;
    let alert = am_payload(
        "g",
        &[(
            "NotificationBacklogHigh",
            "notification",
            "warning",
            "w:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    app.post_hook("alertmanager", alert).await;
    (app, _dir)
}

async fn recovery_samples(app: &crate::helpers::TestApp, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
        let samples: Vec<Value> = tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "recovery_sample")
            .cloned()
            .collect();
        if samples.len() >= n {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} recovery samples were taken");
}

#[tokio::test]
async fn a_backlog_that_falls_over_the_samples_marks_the_incident_mitigated() {
    let (app, _dir) = backlog_app(vec![120, 80, 40, 10]).await;

    let (status, _) = app.command("sam", "/incident ack INC-1").await;
    let samples = recovery_samples(&app, 3).await;

    assert_eq!(status, 200);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "mitigated", "{samples:?}");
    assert!(
        samples[2]["text"]
            .as_str()
            .unwrap()
            .contains("✓ body.backlog decreasing: 120 → 80 → 40"),
        "{samples:?}"
    );
    let posts = app.wait_posts("INC-1", 3).await;
    let last = posts.last().unwrap()["text"].as_str().unwrap();
    assert!(
        last.contains("acknowledged → mitigated by firstline: recovery criteria hold"),
        "{last}"
    );
}

#[tokio::test]
async fn a_backlog_that_does_not_fall_leaves_the_incident_acknowledged() {
    let (app, _dir) = backlog_app(vec![100, 120, 140, 160]).await;

    app.command("sam", "/incident ack INC-1").await;
    let samples = recovery_samples(&app, 3).await;

    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "acknowledged");
    assert!(
        samples[2]["text"]
            .as_str()
            .unwrap()
            .contains("✗ body.backlog decreasing: 100 → 120 → 140"),
        "{samples:?}"
    );
}

#[tokio::test]
async fn an_alert_joining_an_incident_without_a_runbook_brings_its_runbook() {
    let runbook = BACKLOG_RUNBOOK.replace(
        "alertname = [\"NotificationBacklogHigh\"]",
        "labels = [{ name = \"team\", op = \"=\", value = \"notify\" }]",
    );
    let base = backlog_server(vec![5]).await;
    let (app, _dir) = app_with_runbook(
        &runbook,
        &[
            ("FIRSTLINE_TARGETS__BACKLOG_API__KIND", "http"),
            ("FIRSTLINE_TARGETS__BACKLOG_API__BASE_URL", base.as_str()),
        ],
    )
    .await;
    let plain = am_payload(
        "g1",
        &[(
            "QueueSlow",
            "notification",
            "warning",
            "w:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    let mut tagged: Value = serde_json::from_str(&am_payload(
        "g2",
        &[(
            "QueueSlow",
            "notification",
            "warning",
            "w:2",
            "firing",
            "2026-11-23T00:00:01Z",
        )],
    ))
    .unwrap();
    tagged["alerts"][0]["labels"]["team"] = json!("notify");

    app.post_hook("alertmanager", plain).await;
    let (_, before) = app.get_json("/api/incidents/INC-1").await;
    let (_, joined) = app.post_hook("alertmanager", tagged.to_string()).await;
    let posts = app.wait_posts("INC-1", 3).await;

    assert!(before["incident"]["runbook_id"].is_null());
    assert_eq!(joined["accepted"], 1, "{joined}");
    assert_eq!(app.incident_ids().await, ["INC-1"]);
    let (_, after) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(after["incident"]["runbook_id"], "backlog");
    // The thread says the alert joined, then what its runbook found.
    assert_eq!(
        posts[1]["text"], "➕ INC-1 firing: QueueSlow on w:2: QueueSlow on w:2",
        "{posts:?}"
    );
    assert!(
        posts[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("🔎 INC-1 checks of runbook backlog"),
        "{posts:?}"
    );
}

/// The bundled catalog (every seed's runbooks), linted without targets.
fn bundled_catalog() -> firstline::runbook::load::Catalog {
    let sources = firstline::runbook::load::bundled_sources();
    let (catalog, problems) = firstline::runbook::load::Catalog::build(&sources, None);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        catalog.entries.len(),
        sources.len(),
        "every bundled file loads"
    );
    catalog
}

#[test]
fn every_bundled_runbook_draws_its_seeds_conclusions_and_ends_with_a_fallback() {
    let catalog = bundled_catalog();

    for entry in &catalog.entries {
        let rb = &entry.runbook;
        assert!(
            rb.verdicts.iter().any(|v| !v.when.is_empty()),
            "{}: no conditional verdict",
            rb.id
        );
        let last = rb
            .verdicts
            .last()
            .unwrap_or_else(|| panic!("{}: no verdict", rb.id));
        assert!(
            last.when.is_empty(),
            "{}: the last verdict ({}) must be the fallback, without conditions",
            rb.id,
            last.id
        );
        for v in &rb.verdicts {
            if let Some(action) = &v.action {
                assert!(
                    rb.actions.iter().any(|a| &a.id == action),
                    "{}: verdict {} points to {action}, which is not an action of the runbook",
                    rb.id,
                    v.id
                );
            }
        }
    }
}

/// An Execution Logs API (seed 004 §3) answering `records` for every query.
async fn execution_logs_server(records: Value) -> String {
    let app = axum::Router::new().route(
        "/execution-logs",
        get(move || {
            let records = records.clone();
            async move { Json(json!({ "items": records })) }
        }),
    );
    crate::helpers::serve(app).await
}

#[tokio::test]
async fn a_dlq_alert_with_non_retryable_records_ends_with_the_business_error_verdict() {
    let base = execution_logs_server(json!([
        {"trace_id": "t-1", "workflow_id": "wf-42", "status": "failed", "retryable": false,
         "queued_to_dlq": true, "attempts": 1, "last_error": "payload.customer_id is required",
         "payload_snapshot": {"customer_id": null}, "action_duration_ms": 120},
        {"trace_id": "t-2", "workflow_id": "wf-42", "status": "failed", "retryable": false,
         "queued_to_dlq": true, "attempts": 1, "last_error": "payload.customer_id is required",
         "payload_snapshot": {"customer_id": null}, "action_duration_ms": 95},
    ]))
    .await;
    // The bundled runbooks, with only the Execution Logs API configured:
    // the Prometheus and /metrics checks do not run.
    let app = spawn_app_on(
        Backend::Sqlite,
        &[
            ("FIRSTLINE_TARGETS__EXECUTION_LOGS__KIND", "http"),
            ("FIRSTLINE_TARGETS__EXECUTION_LOGS__BASE_URL", base.as_str()),
        ],
    )
    .await
    .expect("the SQLite app starts");
    let mut alert: Value = serde_json::from_str(&am_payload(
        "g",
        &[(
            "DLQGrowing",
            "worker",
            "warning",
            "worker:8000",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    ))
    .expect("the payload is JSON");
    alert["alerts"][0]["labels"]["workflow_id"] = json!("wf-42");

    let (status, _) = app.post_hook("alertmanager", alert.to_string()).await;
    let posts = app.wait_posts("INC-1", 2).await;

    assert_eq!(status, 200);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["runbook_id"], "dlq-growth");
    let text = posts[1]["text"].as_str().expect("a text post");
    assert!(
        text.starts_with("🔎 INC-1 checks of runbook dlq-growth"),
        "{text}"
    );
    assert!(
        text.contains(
            "🧭 Verdict: Бизнес-ошибка (не retryable): исправить входные данные/конфигурацию."
        ),
        "{text}"
    );
    assert!(
        text.contains("count(body.items[retryable=false]) = 2"),
        "the verdict says why: {text}"
    );
    assert!(
        text.contains("Next: action fix_input_or_config — Fix the input data / configuration (business error) (not reversible)."),
        "{text}"
    );
    assert!(
        text.contains("payload.customer_id is required"),
        "the DLQ records are shown: {text}"
    );
}

/// A Prometheus where the nine workflow instances are down: `sum(1 - up)`
/// is 9, every instance's availability 0.
async fn prometheus_all_down() -> String {
    let app = axum::Router::new().route(
        "/api/v1/query",
        get(
            |axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                let query = q.get("query").cloned().unwrap_or_default();
                let result: Vec<Value> = if query.starts_with("sum(1 - up") {
                    vec![json!({"metric": {}, "value": [1_700_000_000, "9"]})]
                } else {
                    (1..=9)
                        .map(|i| json!({"metric": {"instance": format!("svc:800{i}")}, "value": [1_700_000_000, "0"]}))
                        .collect()
                };
                Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
            },
        ),
    );
    crate::helpers::serve(app).await
}

#[tokio::test]
async fn every_health_check_refused_makes_microservice_down_a_p1_with_the_emergency_rollback() {
    let source = firstline::runbook::load::bundled_sources()
        .into_iter()
        .find(|(name, _)| name.ends_with("microservice-down.toml"))
        .expect("microservice-down is bundled");
    // The seed's 10 attempts 5 s apart would take minutes against a refused
    // port; two attempts keep the check's logic and the test fast.
    let text = source.1.replace(
        "attempts = 10, spacing_ms = 5000",
        "attempts = 2, spacing_ms = 10",
    );
    assert!(text.contains("attempts = 2, spacing_ms = 10"));
    let (catalog, problems) =
        firstline::runbook::load::Catalog::build(&[(source.0.clone(), text)], None);
    assert!(problems.is_empty(), "{problems:#?}");
    let rb = &catalog.entries.first().expect("the runbook loads").runbook;
    // Prometheus sees the nine instances down as well, as it would.
    let prometheus = prometheus_all_down().await;
    let mut config =
        format!("[targets.prometheus]\nkind = \"prometheus\"\nurl = \"{prometheus}\"\n\n");
    for check in rb.checks.iter().filter(|c| c.probe.kind() == "http") {
        config.push_str(&format!(
            "[targets.{}]\nkind = \"http\"\nbase_url = \"http://{}\"\n\n",
            check.probe.target(),
            dead_address()
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("firstline.toml");
    std::fs::write(&path, &config).expect("write config");
    let targets = firstline::config::load_with_env(Some(&path), Vec::new())
        .expect("the test configuration loads")
        .targets;

    let report = firstline::runbook::run::run(
        rb,
        &targets,
        &firstline::runbook::run::RunContext::default(),
        9,
    )
    .await;

    let health: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.probe == "http")
        .map(|f| f.status.as_str())
        .collect();
    assert_eq!(health, ["fail"; 9], "{:#?}", report.findings);
    assert_eq!(report.worst(), firstline::runbook::run::Status::Fail);
    let verdict = report.verdict.as_ref().expect("a verdict applies");
    assert_eq!(verdict.id, "all_down");
    assert_eq!(verdict.severity.as_deref(), Some("P1"));
    assert_eq!(verdict.action.as_deref(), Some("emergency_rollback"));
    let post = firstline::chat::messages::Messages::new(chrono_tz::UTC).findings(
        Some("INC-3"),
        &report,
        &rb.actions,
    );
    assert!(
        post.contains("🧭 Verdict: 全サービス停止 → P1: 即座に責任者連絡、緊急ロールバック"),
        "{post}"
    );
    assert!(post.contains("Severity by the runbook: P1"), "{post}");
    assert!(
        post.contains("Next: action emergency_rollback — Emergency rollback to the previous stable version (reversible)."),
        "{post}"
    );
}

/// A runbook with one check (`health`) and the given `[[actions]]`.
fn runbook_with_actions(actions: &str) -> String {
    format!(
        r#"version = 1
id = "acts"
title = "acts"
title_en = "Actions"
severity = "P2"
source = {{ seed = "003_test.txt", section = "1" }}

[[checks]]
id = "health"
title = "health"
probe = {{ kind = "tcp", target = "svc" }}
informational = true
{actions}"#
    )
}

/// 1-based line of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the runbook"))
        + 1
}

/// 1-based line of the first line holding `needle` after the one holding
/// `anchor`.
fn line_after(text: &str, anchor: &str, needle: &str) -> usize {
    let start = line_of(text, anchor);
    text.lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not after {anchor:?}"))
}

/// The problems of `text` as `acts.toml:LINE: message` lines.
fn lint_actions_of(text: &str) -> Vec<String> {
    let (_, problems) = firstline::runbook::load::Catalog::build(
        &[("acts.toml".to_string(), text.to_string())],
        None,
    );
    problems.iter().map(ToString::to_string).collect()
}

fn assert_problem(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p == expected),
        "expected {expected:?} among:\n{}",
        problems.join("\n")
    );
}

#[test]
fn lint_names_the_file_and_line_of_each_action_mistake() {
    let text = runbook_with_actions(
        r#"
[[actions]]
id = "bad_retry"
title = "bad retry"
kind = "restart"
reversible = true
retry = "sometimes"
run = { kind = "command", command = "restart_service" }

[[actions]]
id = "restart_unverified"
title = "restart without verify"
kind = "restart"
reversible = true
retry = "restart"
run = { kind = "command", command = "restart_service" }

[[actions]]
id = "verify_nothing"
title = "verify names no check"
kind = "restart"
reversible = true
retry = "restart"
verify = "no_such_check"
run = { kind = "command", command = "restart_service" }

[[actions]]
id = "manual_run"
title = "a manual action that runs"
kind = "manual"
reversible = true
[actions.run]
kind = "command"
command = "restart_service"

[[actions]]
id = "bad_placeholder"
title = "a placeholder outside params, labels and incident"
kind = "throttle"
reversible = true
params = { value = 1 }
[actions.run]
kind = "http"
target = "admin"
path = "/admin/parallelism"
body = '{ "parallelism": {{ params.value }}, "token": "{{ secrets.token }}" }'

[[actions]]
id = "nobody"
title = "empty approver, no quorum"
kind = "throttle"
reversible = true
approvers = [""]
quorum = 0
"#,
    );

    let problems = lint_actions_of(&text);

    let at = |needle: &str, after: &str| line_after(&text, after, needle);
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"bad_retry\": retry \"sometimes\" is not one of backoff, restart",
            line_of(&text, "retry = \"sometimes\"")
        ),
    );
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"restart_unverified\": retry = \"restart\" needs verify = \"<check id>\", the check that says whether a try worked",
            at("retry = \"restart\"", "id = \"restart_unverified\"")
        ),
    );
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"verify_nothing\": verify \"no_such_check\" is not a check of this runbook",
            line_of(&text, "verify = \"no_such_check\"")
        ),
    );
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"manual_run\": kind \"manual\" is a checklist item and cannot have run; give it its category (restart, throttle, rollback, republish, config_fix, data_fix)",
            at("[actions.run]", "id = \"manual_run\"")
        ),
    );
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"bad_placeholder\": run.body: unknown placeholder {{{{ secrets }}}}; available: params, labels, incident",
            line_of(&text, "secrets.token")
        ),
    );
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"nobody\": approvers[0] is empty: name a [roles.NAME]",
            line_of(&text, "approvers = [\"\"]")
        ),
    );
    assert_problem(
        &problems,
        &format!(
            "acts.toml:{}: action \"nobody\": quorum must be at least 1",
            line_of(&text, "quorum = 0")
        ),
    );
    assert!(
        problems.iter().all(|p| !p.contains("warning")),
        "no warnings here: {problems:#?}"
    );
}

#[test]
fn an_undeclared_param_in_run_is_a_warning_and_the_runbook_still_loads() {
    let text = runbook_with_actions(
        r#"
[[actions]]
id = "lower"
title = "lower parallelism"
kind = "throttle"
reversible = true
params = { component = "{{ labels.service }}" }
[actions.run]
kind = "http"
target = "admin"
path = "/admin/{{ params.component }}/parallelism"
body = '{ "parallelism": {{ params.valeu }} }'
"#,
    );

    let (catalog, problems) =
        firstline::runbook::load::Catalog::build(&[("acts.toml".to_string(), text.clone())], None);

    assert_eq!(catalog.entries.len(), 1, "a warning leaves it loaded");
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [format!(
            "acts.toml:{}: warning: action \"lower\": run.body uses params.valeu, which params does not declare; it must be given when proposing (valeu=…)",
            line_of(&text, "params.valeu")
        )]
    );
}

#[test]
fn lint_against_the_configuration_names_unknown_action_targets_and_commands() {
    let text = runbook_with_actions(
        r#"
[[actions]]
id = "restart"
title = "restart"
kind = "restart"
reversible = true
run = { kind = "command", command = "restart_everything" }

[[actions]]
id = "fix"
title = "fix rows"
kind = "data_fix"
reversible = false
[actions.run]
kind = "sql"
target = "svc"
max_rows = 10
statement = "UPDATE t SET a = NULL WHERE b"
"#,
    );
    let targets: std::collections::BTreeMap<String, firstline::probe::TargetSettings> =
        toml::from_str("[svc]\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n").unwrap();
    let commands = std::collections::BTreeSet::from(["restart_service".to_string()]);

    let (_, problems) = firstline::runbook::load::Catalog::build_checked(
        &[("acts.toml".to_string(), text.clone())],
        Some(&targets),
        Some(&commands),
    );

    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_problem(
        &shown,
        &format!(
            "acts.toml:{}: action \"restart\": unknown command \"restart_everything\"; configure [actions.commands.restart_everything] argv = [...]",
            line_of(&text, "restart_everything")
        ),
    );
    assert_problem(
        &shown,
        &format!(
            "acts.toml:{}: action \"fix\": run.target: a sql action needs a postgres target, and \"svc\" is of kind tcp",
            line_after(&text, "id = \"fix\"", "target = \"svc\"")
        ),
    );
}
