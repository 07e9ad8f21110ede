//! Findings an operator can trust (issue 15): a check is ok only when a
//! value was observed and met its expectation. Runbooks run through
//! `runbook::run` against axum servers on loopback ports, with targets read
//! from a real configuration file, and the findings post rendered as chat
//! shows it.

use std::collections::BTreeMap;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use firstline::chat::messages::Messages;
use firstline::runbook::load::{Catalog, Problem};
use firstline::runbook::run::{self, Report, RunContext, Status, Targets};
use serde_json::{Value, json};

use crate::helpers::{closed_address, serve};

/// A loopback base URL where nothing listens.
async fn closed_url() -> String {
    format!("http://{}", closed_address().await)
}

/// Targets as the configuration file declares them.
fn targets(toml: &str) -> Targets {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("firstline.toml");
    std::fs::write(&path, toml).expect("write config");
    firstline::config::load_with_env(Some(&path), Vec::new())
        .expect("the test configuration loads")
        .targets
}

/// Parses and lints one runbook; panics with the lint errors.
fn runbook(text: &str) -> (Catalog, Vec<Problem>) {
    let (catalog, problems) = Catalog::build(&[("test.toml".to_string(), text.to_string())], None);
    assert_eq!(catalog.entries.len(), 1, "the runbook loads: {problems:#?}");
    (catalog, problems)
}

async fn run_with(catalog: &Catalog, targets: &Targets, labels: &[(&str, &str)]) -> Report {
    let ctx = RunContext {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    run::run(&catalog.entries[0].runbook, targets, &ctx, 4).await
}

fn post(catalog: &Catalog, report: &Report) -> String {
    Messages::new(chrono_tz::UTC).findings(
        Some("INC-9"),
        report,
        &catalog.entries[0].runbook.actions,
    )
}

/// A Prometheus that answers every query with no series.
async fn empty_prometheus() -> String {
    let answer = json!({"status": "success", "data": {"resultType": "vector", "result": []}});
    serve(Router::new().route(
        "/api/v1/query",
        get(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    ))
    .await
}

const EMPTY_PROMETHEUS_RUNBOOK: &str = r#"
version = 1
id = "empty-prometheus"
title = "全サービス停止"
title_en = "All services down"
severity = "P1"
source = { seed = "test", section = "-" }

[[checks]]
id = "down"
title = "instances down"
probe = { kind = "prometheus", target = "prometheus", query = "count(up == 0)" }
expect = [{ path = "max", fail_if = "> 0" }]

[[checks]]
id = "down_absent_ok"
title = "instances down (absence means none)"
probe = { kind = "prometheus", target = "prometheus", query = "count(up == 0)" }
expect = [{ path = "max", fail_if = "> 0", missing = "ok" }]

[[checks]]
id = "failed_count"
title = "failed events (omitted when zero)"
probe = { kind = "prometheus", target = "prometheus", query = "sum(failed)" }
expect = [{ path = "sum", warn_if = "> 0", missing = 0 }]

[[checks]]
id = "availability"
title = "availability"
probe = { kind = "prometheus", target = "prometheus", query = "avg(up)" }
expect = [{ path = "min", fail_if = "< 0.999", missing = "fail", meaning = "no series: nothing is scraped" }]
"#;

#[tokio::test]
async fn an_empty_prometheus_answer_is_never_ok_unless_the_runbook_says_what_absence_means() {
    let url = empty_prometheus().await;
    let targets = targets(&format!(
        "[targets.prometheus]\nkind = \"prometheus\"\nurl = \"{url}\"\n"
    ));
    let (catalog, _) = runbook(EMPTY_PROMETHEUS_RUNBOOK);

    let report = run_with(&catalog, &targets, &[]).await;
    let by_id = |id: &str| {
        report
            .findings
            .iter()
            .find(|f| f.check_id == id)
            .expect("finding")
    };

    let down = by_id("down");
    assert_eq!(down.status, Status::Error, "{down:#?}");
    assert!(
        down.error.as_deref().unwrap_or("").contains("no data"),
        "{down:#?}"
    );
    assert_eq!(by_id("down_absent_ok").status, Status::Ok);
    assert_eq!(
        by_id("failed_count").status,
        Status::Ok,
        "missing = 0 judges a zero"
    );
    assert_eq!(by_id("failed_count").observed, Some(json!(0.0)));
    let availability = by_id("availability");
    assert_eq!(availability.status, Status::Fail);
    assert_eq!(availability.breaches[0].condition, "no data");
    assert_eq!(
        report.bottleneck,
        Some(0),
        "the first check that could not observe"
    );

    let text = post(&catalog, &report);
    assert!(!text.contains("observed null"), "{text}");
    assert!(text.contains("1. ⛔ instances down"), "{text}");
    assert!(
        text.contains("min: no data, which counts as fail — no series: nothing is scraped"),
        "{text}"
    );
}

const LABELLED_RUNBOOK: &str = r#"
version = 1
id = "labelled"
title = "ラベル"
title_en = "Label placeholders"
severity = "P2"
source = { seed = "test", section = "-" }

[match]
alertname = ["WorkflowFailing"]

[[checks]]
id = "workflow"
title = "the workflow's summary"
probe = { kind = "http", target = "api", path = "/workflows/{{ labels.workflow_id }}" }
expect = [{ path = "status", fail_if = "!= 200" }]

[[checks]]
id = "health"
title = "health"
probe = { kind = "http", target = "api", path = "/health" }
expect = [{ path = "status", fail_if = "!= 200" }]
"#;

#[tokio::test]
async fn a_placeholder_for_a_label_the_alert_lacks_does_not_run_and_names_the_label() {
    let base = serve(
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/workflows/wf-7", get(|| async { "found" }))
            // An empty label would have selected this: the old false "ok".
            .route("/workflows/", get(|| async { "every workflow" })),
    )
    .await;
    let targets = targets(&format!(
        "[targets.api]\nkind = \"http\"\nbase_url = \"{base}\"\n"
    ));
    let (catalog, problems) = runbook(LABELLED_RUNBOOK);
    let warning = problems
        .iter()
        .find(|p| p.warning)
        .expect("lint warns about the label");
    assert!(
        warning
            .to_string()
            .contains("needs alert label \"workflow_id\"")
            && warning.to_string().contains("test.toml:15: warning:"),
        "{warning}"
    );

    let without = run_with(&catalog, &targets, &[("alertname", "WorkflowFailing")]).await;
    let f = &without.findings[0];
    assert_eq!(f.status, Status::Error);
    assert_eq!(f.missing_labels, vec!["workflow_id".to_string()]);
    assert_eq!(
        without.bottleneck, None,
        "a check that did not run is no bottleneck"
    );
    let text = post(&catalog, &without);
    assert!(
        text.contains("not run: the alert has no label workflow_id"),
        "{text}"
    );
    assert!(text.contains("--label NAME=VALUE"), "{text}");
    assert!(text.contains("No check that ran failed."), "{text}");

    let with = run_with(&catalog, &targets, &[("workflow_id", "wf-7")]).await;
    assert_eq!(
        with.findings[0].status,
        Status::Ok,
        "{:#?}",
        with.findings[0]
    );
    assert_eq!(with.findings[0].observed, Some(json!(200)));
}

#[tokio::test]
async fn a_matcher_that_guarantees_the_label_silences_the_warning() {
    let guarded = LABELLED_RUNBOOK.replace(
        "alertname = [\"WorkflowFailing\"]",
        "alertname = [\"WorkflowFailing\"]\nlabels = [{ name = \"workflow_id\", op = \"=~\", value = \".+\" }]",
    );
    let (_, problems) = runbook(&guarded);
    assert!(problems.is_empty(), "{problems:#?}");
    let defaulted = LABELLED_RUNBOOK.replace(
        "{{ labels.workflow_id }}",
        "{{ labels.workflow_id | default('all') }}",
    );
    let (_, problems) = runbook(&defaulted);
    assert!(problems.is_empty(), "{problems:#?}");
}

const HEALTH_RUNBOOK: &str = r#"
version = 1
id = "health"
title = "サービス停止"
title_en = "Services down"
severity = "P2"
source = { seed = "test", section = "-" }

[[checks]]
id = "svc_a"
title = "service A /health"
probe = { kind = "http", target = "svc_a", path = "/health", attempts = 2, spacing_ms = 10, expect_status = 200 }
expect = [{ path = "status", fail_if = "!= 200", meaning = "service A does not answer" }]

[[checks]]
id = "svc_b"
title = "service B /health"
probe = { kind = "http", target = "svc_b", path = "/health", expect_status = 200 }
expect = [{ path = "status", fail_if = "!= 200" }]

[[checks]]
id = "svc_b_summary"
title = "service B summary (no expected status: an answer is needed)"
probe = { kind = "http", target = "svc_b", path = "/summary" }
expect = [{ path = "status", fail_if = "!= 200" }]

[[actions]]
id = "emergency_rollback"
title = "緊急ロールバック"
title_en = "Emergency rollback to the previous version"
kind = "rollback"
reversible = true

[[verdicts]]
id = "all_down"
title = "全サービスのヘルスチェック失敗 → P1"
title_en = "Every service fails its health check: a P1, roll back"
when = [{ checks = ["svc_a", "svc_b"], status = "fail" }]
action = "emergency_rollback"
severity = "P1"

[[verdicts]]
id = "some_down"
title = "一部サービス停止"
title_en = "Some services are down: check the failing ones"
when = [{ checks = ["svc_a"], status = "fail" }]

[[verdicts]]
id = "healthy"
title = "全サービス正常"
title_en = "Every service answers"
"#;

#[tokio::test]
async fn a_refused_health_check_is_the_failure_it_checks_and_the_verdict_points_to_the_rollback() {
    let (a, b) = (closed_url().await, closed_url().await);
    let targets = targets(&format!(
        "[targets.svc_a]\nkind = \"http\"\nbase_url = \"{a}\"\n\n[targets.svc_b]\nkind = \"http\"\nbase_url = \"{b}\"\n"
    ));
    let (catalog, problems) = runbook(HEALTH_RUNBOOK);
    assert!(problems.is_empty(), "{problems:#?}");

    let report = run_with(&catalog, &targets, &[]).await;
    assert_eq!(
        report.findings[0].status,
        Status::Fail,
        "{:#?}",
        report.findings[0]
    );
    assert_eq!(report.findings[0].observed, Some(json!(0)));
    assert_eq!(report.findings[1].status, Status::Fail);
    assert_eq!(
        report.findings[2].status,
        Status::Error,
        "without expect_status no answer is an error"
    );
    assert_eq!(report.bottleneck, Some(0));
    let verdict = report.verdict.as_ref().expect("a verdict applies");
    assert_eq!(verdict.id, "all_down");
    assert_eq!(verdict.action.as_deref(), Some("emergency_rollback"));

    let text = post(&catalog, &report);
    assert!(text.contains("1. ❌ service A /health"), "{text}");
    assert!(
        text.contains("status = 0, breached != 200 — service A does not answer"),
        "{text}"
    );
    assert!(
        text.contains("│ no answer: GET"),
        "the evidence says why: {text}"
    );
    assert!(
        text.contains("🧭 Verdict: 全サービスのヘルスチェック失敗 → P1 — Every service fails its health check: a P1, roll back"),
        "{text}"
    );
    assert!(text.contains("Severity by the runbook: P1"), "{text}");
    assert!(
        text.contains("Next: action emergency_rollback — Emergency rollback to the previous version (reversible)."),
        "{text}"
    );
}

#[tokio::test]
async fn with_every_service_up_the_fallback_verdict_applies_and_evidence_shows_the_attempt() {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = attempts.clone();
    let flaky = serve(Router::new().route(
        "/health",
        get(move || {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                } else {
                    (StatusCode::OK, "ok")
                }
            }
        }),
    ))
    .await;
    let up = serve(
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/summary", get(|| async { "ok" })),
    )
    .await;
    let targets = targets(&format!(
        "[targets.svc_a]\nkind = \"http\"\nbase_url = \"{flaky}\"\n\n[targets.svc_b]\nkind = \"http\"\nbase_url = \"{up}\"\n"
    ));
    let with_evidence = HEALTH_RUNBOOK.replace(
        "attempts = 2, spacing_ms = 10, expect_status = 200 }",
        "attempts = 2, spacing_ms = 10, expect_status = 200 }\nshow_evidence = \"always\"",
    );
    let (catalog, problems) = runbook(&with_evidence);
    assert!(problems.is_empty(), "{problems:#?}");
    let report = run_with(&catalog, &targets, &[]).await;
    assert_eq!(report.worst(), Status::Ok, "{:#?}", report.findings);
    assert_eq!(
        report.verdict.as_ref().map(|v| v.id.as_str()),
        Some("healthy")
    );
    let text = post(&catalog, &report);
    assert!(text.contains("│ HTTP 200 OK (attempt 2 of 2)"), "{text}");
    assert!(
        text.contains("🧭 Verdict: 全サービス正常 — Every service answers"),
        "{text}"
    );
}

#[tokio::test]
async fn every_crossed_threshold_is_reported_not_only_the_first() {
    let base = serve(Router::new().route(
        "/summary",
        get(|| async {
            axum::Json(
                json!({"status": "degraded", "by_status": {"failed": 12, "rejected": 3},
                "items": [{"retryable": true}, {"retryable": false}, {"retryable": true}]}),
            )
        }),
    ))
    .await;
    let targets = targets(&format!(
        "[targets.api]\nkind = \"http\"\nbase_url = \"{base}\"\n"
    ));
    let (catalog, _) = runbook(
        r#"
version = 1
id = "summary"
title = "集計"
title_en = "Summary"
severity = "P2"
source = { seed = "test", section = "-" }

[[checks]]
id = "summary"
title = "summary"
probe = { kind = "http", target = "api", path = "/summary" }
expect = [
  { path = "body.status", fail_if = "!= \"ok\"", meaning = "the summary says it is not ok" },
  { path = "body.by_status.failed", warn_if = "> 0", fail_if = "> 10" },
  { path = "body.by_status.rejected", warn_if = "> 0" },
  { path = "count(body.items[retryable=true])", warn_if = "> 1" },
  { path = "ratio(body.by_status.rejected, body.by_status.failed)", fail_if = "> 1" },
]
"#,
    );
    let report = run_with(&catalog, &targets, &[]).await;
    let f = &report.findings[0];
    assert_eq!(f.status, Status::Fail);
    let crossed: Vec<(Status, &str, Option<&Value>)> = f
        .breaches
        .iter()
        .map(|b| (b.status, b.path.as_str(), b.observed.as_ref()))
        .collect();
    assert_eq!(
        crossed,
        vec![
            (Status::Fail, "body.status", Some(&json!("degraded"))),
            (Status::Fail, "body.by_status.failed", Some(&json!(12))),
            (Status::Warn, "body.by_status.rejected", Some(&json!(3))),
            (
                Status::Warn,
                "count(body.items[retryable=true])",
                Some(&json!(2))
            ),
        ]
    );
    let text = post(&catalog, &report);
    assert!(
        text.contains("body.status = degraded, breached != \"ok\" — the summary says it is not ok; body.by_status.failed = 12, breached > 10; body.by_status.rejected = 3, breached > 0; count(body.items[retryable=true]) = 2, breached > 1"),
        "{text}"
    );
}

#[test]
fn lint_names_every_broken_verdict_reference() {
    let broken = HEALTH_RUNBOOK
        .replace(
            "action = \"emergency_rollback\"",
            "action = \"reboot_everything\"",
        )
        .replace(
            "checks = [\"svc_a\"], status = \"fail\"",
            "checks = [\"svc_z\"], status = \"down\"",
        )
        + "\n[[verdicts]]\nid = \"after_fallback\"\ntitle = \"x\"\nwhen = [{ checks = [\"svc_a\"], path = \"status\" }]\n";
    let (catalog, problems) = Catalog::build(&[("test.toml".to_string(), broken)], None);
    assert!(catalog.entries.is_empty());
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let all = text.join("\n");
    for needle in [
        "verdict \"all_down\": action \"reboot_everything\" is not an action of this runbook",
        "verdict \"some_down\": \"svc_z\" is not a check of this runbook",
        "verdict \"some_down\": status \"down\" is not one of ok, warn, fail, error",
        "verdict \"healthy\" has no conditions, so it always applies",
        "verdict \"after_fallback\": path and is go together",
    ] {
        assert!(all.contains(needle), "{needle:?} in\n{all}");
    }
}

#[tokio::test]
async fn an_answer_several_checks_read_is_shown_once_and_referred_to_after() {
    let base = serve(Router::new().route(
        "/summary",
        get(|| async { axum::Json(json!({"status": "ok", "by_status": {"failed": 3}})) }),
    ))
    .await;
    let targets = targets(&format!(
        "[targets.api]\nkind = \"http\"\nbase_url = \"{base}\"\n"
    ));
    let (catalog, _) = runbook(
        r#"
version = 1
id = "summary-twice"
title = "集計"
title_en = "Summary"
severity = "P2"
source = { seed = "test", section = "-" }

[[checks]]
id = "status"
title = "summary status"
probe = { kind = "http", target = "api", path = "/summary" }
expect = [{ path = "body.status", fail_if = "!= \"ok\"" }]
show_evidence = "always"

[[checks]]
id = "failed"
title = "failed events"
probe = { kind = "http", target = "api", path = "/summary" }
expect = [{ path = "body.by_status.failed", warn_if = "> 0" }]
"#,
    );
    let report = run_with(&catalog, &targets, &[]).await;
    let text = post(&catalog, &report);
    assert_eq!(
        text.matches("│ by_status: {\"failed\":3}").count(),
        1,
        "{text}"
    );
    assert!(text.contains("│ (the same answer as #1)"), "{text}");
}
