//! The command line as an operator meets it.

use std::process::Command;

fn firstline(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(args)
        .current_dir(dir)
        .env_remove("FIRSTLINE_CONFIG")
        .output()
        .expect("run firstline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_without_a_file_explains_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = firstline(dir.path(), &["check-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("configuration OK (embedded default)"), "{out}");
    assert!(out.contains("sqlite://firstline.db"));
    assert!(out.contains("127.0.0.1:8080"));
}

#[test]
fn check_config_names_every_bad_key_with_its_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[server]\nlisten = \"everywhere\"\n\n[incidents]\ndefault_severity = \"P9\"\n",
    )
    .unwrap();
    let (code, _, err) = firstline(dir.path(), &["check-config", "--config", "bad.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("server.listen (line 2)"), "{err}");
    assert!(
        err.contains("incidents.default_severity (line 5): \"P9\" is not P1, P2 or P3"),
        "{err}"
    );
}

#[test]
fn check_config_lists_a_typo_a_wrong_type_and_an_inline_secret_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("three.toml"),
        "[server]\nmax_body_byts = 10\n\n[store]\nmax_connections = \"eight\"\n\n[intake.tokens]\nalertmanager = \"hunter2\"\n\n[incidents]\ndefault_severity = \"P9\"\n",
    )
    .unwrap();

    let (code, _, err) = firstline(dir.path(), &["check-config", "--config", "three.toml"]);

    assert_eq!(code, 2);
    assert!(err.contains("4 problem(s)"), "{err}");
    assert!(err.contains("server.max_body_byts (line 2)"), "{err}");
    assert!(err.contains("store.max_connections (line 5)"), "{err}");
    assert!(err.contains("intake.tokens.alertmanager (line 8)"), "{err}");
    assert!(
        err.contains("incidents.default_severity (line 11)"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn check_config_explains_socket_mode_and_its_app_token() {
    let dir = tempfile::tempdir().unwrap();
    let socket = |app_token: &str| {
        format!(
            "[chat]\nplatform = \"slack\"\nchannel = \"C0INC\"\n\n[chat.slack]\nmode = \"socket\"\nbot_token = {{ env = \"T_BOT\" }}\n{app_token}"
        )
    };
    std::fs::write(dir.path().join("none.toml"), socket("")).unwrap();
    std::fs::write(
        dir.path().join("swapped.toml"),
        socket("app_token = { env = \"T_APP\" }\n"),
    )
    .unwrap();
    let env = [("T_BOT", "xoxb-1-bot"), ("T_APP", "xoxb-2-bot-secret")];
    let check = |file: &str| firstline_env(dir.path(), &["check-config", "--config", file], &env);

    let (code, _, err) = check("none.toml");
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "chat.slack.app_token (line 5): is required: Socket Mode needs the app-level token (xapp-…"
        ),
        "{err}"
    );
    let (code, _, err) = check("swapped.toml");
    assert_eq!(code, 2);
    assert!(
        err.contains("chat.slack.app_token (line 8): looks like a bot token (xoxb-…)"),
        "{err}"
    );
    assert!(!err.contains("bot-secret"), "{err}");

    // With an app-level token (and no signing secret) it is fine, and says
    // which mode it is in.
    let env = [("T_BOT", "xoxb-1-bot"), ("T_APP", "xapp-1-A0-1-abc")];
    let (code, out, err) = firstline_env(
        dir.path(),
        &["check-config", "--config", "swapped.toml"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("slack (Socket Mode"), "{out}");
}

#[test]
fn check_config_refuses_a_pool_too_small_for_the_writer_and_incidents_lagging_seconds_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("small.toml"),
        "[store]\nmax_connections = 1\napply_interval_ms = 5000\n",
    )
    .unwrap();
    let (code, _, err) = firstline(dir.path(), &["check-config", "--config", "small.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("store.max_connections (line 2): must be at least 2"),
        "{err}"
    );
    assert!(
        err.contains("store.apply_interval_ms (line 3): must be at most 1000"),
        "{err}"
    );
}

#[test]
fn incident_commands_on_a_fresh_directory_say_there_is_no_database_yet() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = firstline(dir.path(), &["incident", "list"]);
    assert_ne!(code, 0);
    assert!(err.contains("no database at firstline.db"), "{err}");
    assert!(
        !dir.path().join("firstline.db").exists(),
        "a read must not create a database"
    );
}

#[test]
fn migrate_then_incident_list_and_export_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = firstline(dir.path(), &["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("migrations applied"), "{out}");
    let (code, out, _) = firstline(dir.path(), &["incident", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("no open incidents"), "{out}");
    let (code, _, err) = firstline(
        dir.path(),
        &["incident", "export", "INC-4", "--format", "md"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("INC-4 does not exist"), "{err}");
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/firstline.toml");
    let (code, out, err) = firstline(
        dir.path(),
        &["check-config", "--config", example.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"), "{out}");
}

/// The escalation example commented out in deploy/firstline.toml,
/// uncommented.
fn escalation_example() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/firstline.toml");
    let text = std::fs::read_to_string(path).expect("deploy/firstline.toml");
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("# --- escalation example"))
        .skip(1)
        .take_while(|l| !l.starts_with("# --- end of the escalation example"))
        .collect();
    assert!(block.len() > 50, "the example is there");
    block
        .iter()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_escalation_example_is_seed_003_and_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed003.toml"), escalation_example()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(["check-config", "--config", "seed003.toml"])
        .current_dir(dir.path())
        .env_remove("FIRSTLINE_CONFIG")
        .env("SMTP_URL", "smtp://localhost:2525")
        .env("TWILIO_ACCOUNT_SID", "AC0")
        .env("TWILIO_AUTH_TOKEN", "token")
        .env("PAGERDUTY_ROUTING_KEY", "key")
        .env("PAGE_WEBHOOK_SECRET", "secret")
        .output()
        .expect("run firstline");

    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "escalation: 4 contact(s), 1 rotation(s); P1 2 steps x3 rounds (exhausted after 30m00s), P2 3 steps x2 rounds (exhausted after 1h30m), P3 2 steps x1 round (exhausted after 2h00m); pagers: chat, email, phone, pagerduty, webhook"
        ),
        "{stdout}"
    );
}

#[test]
fn check_config_explains_a_broken_escalation_tree_by_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = escalation_example()
        .replace(
            "\"rotation:primary\", \"team_lead\"",
            "\"rotation:primery\", \"team_lead\"",
        )
        .replace(
            "ack_within = \"15m\" },\n  { page = [\"tech_lead\"]",
            "ack_within = \"15 min\" },\n  { page = [\"tech_lead\"]",
        );
    std::fs::write(dir.path().join("broken.toml"), &broken).unwrap();
    let line = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let (code, _, err) = firstline(dir.path(), &["check-config", "--config", "broken.toml"]);

    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "escalation.P1.steps[1].page[0] (line {}): rotation \"primery\" is not defined (rotations: primary)",
            line("rotation:primery")
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "escalation.P2.steps[1].ack_within (line {}): \"15 min\" is not a duration",
            line("ack_within = \"15 min\"")
        )),
        "{err}"
    );
}

#[test]
fn the_shipped_example_configuration_lists_every_key_with_its_default() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/firstline.toml");
    let shipped: toml::Table =
        toml::from_str(&std::fs::read_to_string(path).expect("deploy/firstline.toml"))
            .expect("valid TOML");
    let defaults =
        toml::Table::try_from(firstline::config::Settings::default()).expect("defaults as TOML");

    let mut problems = Vec::new();
    compare_tables("", &defaults, &shipped, &mut problems);

    assert!(
        problems.is_empty(),
        "deploy/firstline.toml differs from the defaults:\n{}",
        problems.join("\n")
    );
}

/// Every key of `defaults` in `shipped` with the same value, and nothing more.
fn compare_tables(at: &str, defaults: &toml::Table, shipped: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in defaults {
        let name = format!("{at}{key}");
        match (value, shipped.get(key)) {
            (toml::Value::Table(d), Some(toml::Value::Table(s))) => {
                compare_tables(&format!("{name}."), d, s, out)
            }
            // Maps that are empty by default (tokens, targets) are shown
            // commented out.
            (toml::Value::Table(d), None) if d.is_empty() => {}
            (_, None) => out.push(format!("{name} is missing (default {value})")),
            (d, Some(s)) if d != s => out.push(format!("{name} = {s}, but the default is {d}")),
            _ => {}
        }
    }
    for key in shipped.keys() {
        if !defaults.contains_key(key) {
            out.push(format!("{at}{key} is not a setting"));
        }
    }
}

fn firstline_env(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_firstline"))
        .args(args)
        .current_dir(dir)
        .env_remove("FIRSTLINE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run firstline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_bundled_runbook_passes_lint_against_the_example_targets() {
    let dir = tempfile::tempdir().unwrap();
    let targets = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../templates/runbooks/targets.example.toml");
    let (code, out, err) = firstline_env(
        dir.path(),
        &["runbook", "lint", "--config", targets.to_str().unwrap()],
        &[("EXECUTION_LOGS_API_KEY", "example-key")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 problem(s)"), "{out}");
    let (_, list, _) = firstline(dir.path(), &["runbook", "list"]);
    for seed_runbook in [
        "workflow-events-failed",
        "notifications-not-delivered",
        "login-failures",
        "microservice-down",
        "dlq-growth",
    ] {
        assert!(
            list.contains(seed_runbook),
            "{seed_runbook} missing from:\n{list}"
        );
    }
}

#[test]
fn lint_names_the_file_and_line_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        r#"version = 1
id = "bad"
title = "壊れた"
title_en = "Broken"
severity = "P2"
source = { seed = "x", section = "1" }

[[checks]]
id = "a"
title = "A"
probe = { kind = "sql", target = "nowhere", query = "SELECT 1; DELETE FROM t" }
expect = [{ path = "scalar", fail_if = "~ 3" }]

[[checks]]
id = "b"
title = "B"
probe = { kind = "http", target = "nowhere", path = "/{{ lables.x }}" }

[[recovery]]
title = "r"
check = "zzz"
path = "scalar"
trend = "sideways"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("typo.toml"),
        "version = 1\nid = \"t\"\ntitel = \"x\"\nseverity = 2\n\n[[checks]]\nid = \"c\"\nprobe = { kind = \"sql\", target = \"db\", qurey = \"SELECT 1\" }\n",
    )
    .unwrap();

    let (code, out, _) = firstline(dir.path(), &["runbook", "lint", "."]);

    assert_eq!(code, 1);
    let expect = [
        "bad.toml:11: check \"a\": unknown target \"nowhere\"",
        "bad.toml:11: check \"a\": one SQL statement per check",
        "bad.toml:12: check \"a\": \"~ 3\" does not start with",
        "bad.toml:17: check \"b\": probe.path: unknown placeholder {{ lables }}",
        "check \"b\" has no expect thresholds",
        "recovery \"r\": check \"zzz\" is not a check of this runbook",
        "trend \"sideways\" is not one of decreasing, not_increasing, below",
        "typo.toml:3: unknown field `titel`",
        "typo.toml:4: invalid type: integer `2`",
        "typo.toml:8: ",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
}

#[test]
fn every_option_and_argument_in_help_has_text() {
    let dir = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 12] = [
        &[],
        &["serve"],
        &["check-config"],
        &["migrate"],
        &["incident", "list"],
        &["incident", "show"],
        &["incident", "export"],
        &["runbook", "list"],
        &["runbook", "show"],
        &["runbook", "lint"],
        &["runbook", "run"],
        &["incident"],
    ];
    let mut bare = Vec::new();
    for args in commands {
        let mut with_help = args.to_vec();
        with_help.push("--help");
        let (code, out, err) = firstline(dir.path(), &with_help);
        assert_eq!(code, 0, "{args:?}: {err}");
        for line in out.lines() {
            let t = line.trim();
            let entry = line.starts_with(' ') && t.starts_with(['-', '<', '[']);
            // Help text follows an entry after a gap of two spaces or more.
            if entry && !t.contains("  ") {
                bare.push(format!("{args:?}: {t}"));
            }
        }
    }
    assert!(bare.is_empty(), "without help text:\n{}", bare.join("\n"));
}
