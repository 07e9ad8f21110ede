//! `firstline runbook run` as a script sees it: the exit code says whether
//! a check failed (1), or could not run (2), and stdout holds the report
//! only (logs, the probe libraries' included, stay off it).

use std::process::Command;

/// A runbook `rb` with the given checks (TOML `[[checks]]` tables).
fn runbook(checks: &str) -> String {
    format!(
        r#"
version = 1
id = "rb"
title = "rb"
title_en = "Exit codes"
severity = "P2"
source = {{ seed = "003_test.txt", section = "1" }}

[match]
alertname = ["Never"]
{checks}
"#
    )
}

/// A check of `target` (tcp) that holds `expect`.
fn tcp_check(id: &str, target: &str, expect: &str) -> String {
    format!(
        r#"
[[checks]]
id = "{id}"
title = "{id}"
probe = {{ kind = "tcp", target = "{target}" }}
expect = [{expect}]
timeout_ms = 5000
"#
    )
}

/// An http check of `target` (no expected status: no answer is an error,
/// the probe could not observe).
fn http_check(id: &str, target: &str) -> String {
    format!(
        r#"
[[checks]]
id = "{id}"
title = "{id}"
probe = {{ kind = "http", target = "{target}", path = "/summary" }}
expect = [{{ path = "status", fail_if = "!= 200" }}]
timeout_ms = 5000
"#
    )
}

/// Runs `firstline runbook run rb ARGS` with only `checks` loaded, the tcp
/// target `up` on a loopback listener that accepts, `down` (tcp) and
/// `down_http` (http) on a closed port, plus `env`.
fn run(checks: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rb.toml"), runbook(checks)).unwrap();
    // Held open for the run: the kernel completes connections to it.
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap().to_string();
    let down_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let dirs = format!("[\"{}\"]", dir.path().display());
    let mut all = vec!["runbook", "run", "rb"];
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(&all)
        .current_dir(dir.path())
        .env_remove("FIRSTLINE_CONFIG")
        .env_remove("RUST_LOG")
        .env("FIRSTLINE_RUNBOOKS__BUNDLED", "false")
        .env("FIRSTLINE_RUNBOOKS__DIRS", &dirs)
        .env("FIRSTLINE_TARGETS__UP__KIND", "tcp")
        .env("FIRSTLINE_TARGETS__UP__ADDRESS", &up_addr)
        .env("FIRSTLINE_TARGETS__DOWN__KIND", "tcp")
        .env("FIRSTLINE_TARGETS__DOWN__ADDRESS", &down_addr)
        .env("FIRSTLINE_TARGETS__DOWN_HTTP__KIND", "http")
        .env(
            "FIRSTLINE_TARGETS__DOWN_HTTP__BASE_URL",
            format!("http://{down_addr}"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("run firstline");
    drop(up);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const OK: &str = r#"{ path = "connected", fail_if = "!= true" }"#;
const WARNS: &str = r#"{ path = "connected", warn_if = "== true" }"#;
const FAILS: &str = r#"{ path = "connected", fail_if = "== true" }"#;

#[test]
fn every_check_passing_exits_0() {
    let (code, out, err) = run(&tcp_check("a", "up", OK), &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("exit 0: every check passed"), "{err}");
}

#[test]
fn a_warning_is_reported_but_exits_0() {
    let checks = tcp_check("a", "up", OK) + &tcp_check("b", "up", WARNS);
    let (code, out, err) = run(&checks, &[], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("⚠️"), "{out}");
    assert!(
        err.contains("1 warn, 1 ok — exit 0: no check failed, but some warn"),
        "{err}"
    );
}

#[test]
fn a_failing_check_exits_1_even_beside_checks_that_could_not_run() {
    let checks = tcp_check("a", "up", FAILS)
        + &http_check("b", "down_http")
        + &tcp_check("c", "nowhere", OK);
    let (code, out, err) = run(&checks, &[], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("exit 1: a check failed"), "{err}");
    assert!(err.contains("1 fail"), "{err}");
}

#[test]
fn checks_that_could_not_run_and_none_failing_exit_2() {
    let unconfigured = tcp_check("a", "up", OK) + &tcp_check("b", "nowhere", OK);
    let unreachable = tcp_check("a", "up", OK) + &http_check("b", "down_http");

    let (code, out, err) = run(&unconfigured, &[], &[]);
    let (code2, out2, err2) = run(&unreachable, &[], &[]);
    let (code3, out3, err3) = run(&tcp_check("a", "up", OK), &["--label", "oops"], &[]);

    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("1 not run (target not configured), 1 ok — exit 2"),
        "{err}"
    );
    assert_eq!(code2, 2, "{out2}{err2}");
    assert!(
        err2.contains("1 could not observe, 1 ok — exit 2"),
        "{err2}"
    );
    assert_eq!(code3, 2, "{out3}{err3}");
    assert!(
        err3.contains("--label \"oops\" is not NAME=VALUE"),
        "{err3}"
    );
}

#[test]
fn an_unknown_runbook_could_not_run_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(["runbook", "run", "no-such-runbook"])
        .current_dir(dir.path())
        .env_remove("FIRSTLINE_CONFIG")
        .output()
        .expect("run firstline");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no runbook \"no-such-runbook\""), "{err}");
}

#[test]
fn json_names_the_bottleneck_by_the_same_number_as_the_text() {
    let checks = tcp_check("first", "up", OK) + &tcp_check("second", "up", FAILS);
    let (code, out, err) = run(&checks, &["--json"], &[]);
    let (_, text, _) = run(&checks, &[], &[]);

    assert_eq!(code, 1, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {out}"));
    assert_eq!(report["bottleneck"], 2, "{out}");
    assert_eq!(report["bottleneck_check"], "second", "{out}");
    assert!(text.contains("Likely bottleneck: #2 second"), "{text}");
}

const NATS_ADDR: &str = "127.0.0.1:4222";

#[test]
fn with_a_nats_check_stdout_holds_the_report_only() {
    if std::net::TcpStream::connect(NATS_ADDR).is_err() {
        let required = matches!(
            std::env::var("FIRSTLINE_REQUIRE_NATS").as_deref(),
            Ok("1") | Ok("true")
        );
        assert!(
            !required,
            "NATS is required but {NATS_ADDR} is not reachable"
        );
        eprintln!("SKIPPED: NATS is not reachable at {NATS_ADDR}");
        return;
    }
    let checks = r#"
[[checks]]
id = "bus"
title = "bus connected"
probe = { kind = "nats", target = "bus" }
expect = [{ path = "connected", fail_if = "!= true" }]
"#;
    let env = [
        ("FIRSTLINE_TARGETS__BUS__KIND", "nats"),
        ("FIRSTLINE_TARGETS__BUS__URL", "nats://127.0.0.1:4222"),
    ];

    let (code, out, err) = run(checks, &[], &env);
    let (json_code, json_out, json_err) = run(checks, &["--json"], &env);

    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("🔎 (no incident) checks of runbook rb"),
        "{out}"
    );
    assert!(out.contains("1. ✅ bus connected [nats → bus]"), "{out}");
    for noise in ["event:", "INFO", "WARN", "async_nats"] {
        assert!(!out.contains(noise), "{noise} on stdout: {out}");
    }
    // The library's connection chatter is held back by default.
    assert!(!err.contains("event: connected"), "{err}");
    assert_eq!(json_code, 0, "{json_out}{json_err}");
    let report: serde_json::Value = serde_json::from_str(&json_out)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {json_out}"));
    assert_eq!(report["findings"][0]["status"], "ok", "{json_out}");
}

/// `firstline runbook show ID` on the bundled runbooks, no configuration.
fn show(id: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(["runbook", "show", id])
        .current_dir(dir.path())
        .env_remove("FIRSTLINE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run firstline");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn runbook_show_says_how_each_bundled_action_runs() {
    let down = show("microservice-down");
    let not_delivered = show("notifications-not-delivered");
    let dlq = show("notifications-dlq-failed");
    let integrity = show("notifications-integrity");

    assert!(
        down.contains(
            "  - restart_service (restart, reversible): Restart the failing service (up to three attempts)\n"
        ),
        "{down}"
    );
    assert!(
        down.contains("      runs:      command restart_service\n"),
        "{down}"
    );
    assert!(
        down.contains("      params:    component={{ labels.service }}\n"),
        "{down}"
    );
    assert!(
        down.contains("      approvers: default approvers\n"),
        "{down}"
    );
    assert!(
        down.contains("      retry:     restart: up to 3 tries, check instances_down after each\n"),
        "{down}"
    );
    assert!(
        not_delivered
            .contains("      runs:      http POST notification_worker_admin /admin/parallelism\n"),
        "{not_delivered}"
    );
    assert!(
        not_delivered.contains("      retry:     one try\n"),
        "{not_delivered}"
    );
    assert!(
        not_delivered.contains(
            "  - check_nats_auth_network (manual, reversible): NATS reconnect loop: check authentication and network settings\n"
        ),
        "{not_delivered}"
    );
    assert!(
        not_delivered.contains(
            "      runs:      manual checklist item (ticked by a person, recorded on the timeline)\n"
        ),
        "{not_delivered}"
    );
    assert!(
        dlq.contains(
            "      runs:      nats_publish from DLQ stream NOTIFICATION_DLQ via nats (max 100)\n"
        ),
        "{dlq}"
    );
    assert!(
        integrity.contains(
            "  - clear_stale_lock_fields (data_fix, not reversible): Clear locked_by / next_retry_at on SENT rows (after the first recovery)\n"
        ),
        "{integrity}"
    );
    assert!(
        integrity.contains("      runs:      sql on notification_db_write (max_rows 500)\n"),
        "{integrity}"
    );
}
