//! What must never happen again (issue 18): a second process on the same
//! store, a poison alert, a server that ignores Ctrl-C. Each test
//! reproduces the failure as a user met it.

use std::process::{Command, Stdio};
use std::time::Duration;

use firstline::app::App;
use firstline::chat::console::Sink;
use firstline::config;

use crate::helpers::{
    Backend, am_payload, down_group, fresh_database, spawn_app_on, spawn_with, test_env,
};

/// Runs the binary with `args` in `dir` against `db_url`: (exit code,
/// stdout, stderr). Killed after 60 s (a `serve` that wrongly starts).
fn firstline(dir: &std::path::Path, db_url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .args(["60", env!("CARGO_BIN_EXE_firstline")])
        .args(args)
        .current_dir(dir)
        .env("FIRSTLINE_STORE__URL", db_url)
        .env("FIRSTLINE_SERVER__LISTEN", "127.0.0.1:0")
        .env("FIRSTLINE_CHAT__CONSOLE_STDIN", "false")
        .env("FIRSTLINE_LOG__LEVEL", "warn")
        .env_remove("FIRSTLINE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run firstline");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn a_second_serve_is_refused_naming_the_first(backend: Backend) {
    let Some(app) = spawn_app_on(backend, &[]).await else {
        return;
    };
    let (status, _) = app.post_hook("alertmanager", down_group(1)).await;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().expect("dir");

    // The same store from another process: refused before it opens anything.
    let (code, _, stderr) = firstline(dir.path(), &app.db_url, &["serve"]);

    assert_ne!(code, 0, "a second serve must not start: {stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "the refusal names the holder's pid: {stderr}"
    );
    assert!(stderr.contains("already serving"), "{stderr}");
    // The first one goes on, its accepted alerts intact.
    let (status, _) = app.post_hook("alertmanager", down_group(2)).await;
    assert_eq!(status, 200);
    assert_eq!(app.incident_ids().await, ["INC-1", "INC-2"]);
}

#[tokio::test]
async fn a_second_serve_on_the_same_sqlite_store_is_refused_and_names_the_first_ones_pid() {
    a_second_serve_is_refused_naming_the_first(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_second_serve_on_the_same_postgres_database_is_refused_and_names_the_first_ones_pid() {
    a_second_serve_is_refused_naming_the_first(Backend::Postgres).await;
}

#[tokio::test]
async fn a_second_app_in_the_same_process_cannot_open_a_served_store_either() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    let config = config::load_with_env(None, test_env(&app.db_url, &[])).expect("config");

    let second = App::build(config, Sink::Silent).await;

    let err = second
        .err()
        .expect("the second build is refused")
        .to_string();
    assert!(err.contains("already serving"), "{err}");
    let (status, _) = app.post_hook("alertmanager", down_group(1)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_store_is_free_again_once_the_server_has_stopped() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    let (status, _) = app.post_hook("alertmanager", down_group(1)).await;
    assert_eq!(status, 200);

    let (dir, db_url) = app.stop().await;
    let again = spawn_with(dir, db_url, &[]).await;

    assert_eq!(again.incident_ids().await, ["INC-1"]);
}

#[tokio::test]
async fn read_only_commands_run_beside_serve_without_the_lock_or_migrations() {
    let Some(app) = spawn_app_on(Backend::Sqlite, &[]).await else {
        return;
    };
    let (status, _) = app.post_hook("alertmanager", down_group(7)).await;
    assert_eq!(status, 200);
    assert_eq!(app.incident_ids().await, ["INC-1"]);
    let dir = tempfile::tempdir().expect("dir");

    let (list, out, err) = firstline(dir.path(), &app.db_url, &["incident", "list"]);
    let (show, shown, _) = firstline(dir.path(), &app.db_url, &["incident", "show", "INC-1"]);
    let (export, md, _) = firstline(dir.path(), &app.db_url, &["incident", "export", "1"]);

    assert_eq!(list, 0, "{err}");
    assert!(out.contains("INC-1"), "{out}");
    assert_eq!(show, 0);
    assert!(shown.contains("INC-1"), "{shown}");
    assert_eq!(export, 0);
    assert!(md.contains("INC-1"), "{md}");
}

#[tokio::test]
async fn read_only_commands_on_an_unmigrated_store_say_to_migrate_and_write_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("old.db");
    // An empty SQLite file: a store no firstline has migrated.
    std::fs::write(&db, b"").expect("empty file");
    let url = format!("sqlite://{}", db.display());

    let (code, _, err) = firstline(dir.path(), &url, &["incident", "list"]);

    assert_ne!(code, 0);
    assert!(err.contains("firstline migrate"), "{err}");
    assert_eq!(
        std::fs::metadata(&db).expect("db").len(),
        0,
        "nothing written"
    );
    assert!(!dir.path().join("old.db.lock").exists(), "no lock taken");
}

async fn a_nul_in_an_alert_is_refused_and_intake_goes_on(backend: Backend) {
    let Some(app) = spawn_app_on(backend, &[]).await else {
        return;
    };
    let mut poison: serde_json::Value = serde_json::from_str(&down_group(9)).expect("a payload");
    poison["alerts"][0]["labels"]["team"] = "pay\u{0}ments".into();
    let poison = poison.to_string();
    assert!(poison.contains("\\u0000"));

    let (status, answer) = app.post_hook("alertmanager", poison).await;
    let (after, _) = app.post_hook("alertmanager", down_group(3)).await;

    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["field"], "alerts[0].labels.team", "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("NUL"),
        "{answer}"
    );
    assert_eq!(after, 200);
    assert_eq!(app.incident_ids().await, ["INC-1"]);
    let (ready, body) = app.get_json("/readyz").await;
    assert_eq!((ready, body["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn an_alert_with_a_nul_character_is_refused_on_sqlite_naming_the_field() {
    a_nul_in_an_alert_is_refused_and_intake_goes_on(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_alert_with_a_nul_character_is_refused_on_postgres_and_incidents_go_on() {
    a_nul_in_an_alert_is_refused_and_intake_goes_on(Backend::Postgres).await;
}

/// Makes the database itself refuse alerts titled `Poison…` (a trigger),
/// the way PostgreSQL refused NUL text: accepted at intake, failing at
/// every apply.
async fn poison_trigger(app: &crate::helpers::TestApp, backend: Backend) {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.db_url)
                .await
                .expect("sqlite");
            sqlx::query(
                "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN NEW.labels LIKE '%Poison%' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned row refused'); END",
            )
            .execute(&mut c)
            .await
            .expect("trigger");
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.db_url)
                .await
                .expect("postgres");
            sqlx::query(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                   IF NEW.labels LIKE '%Poison%' THEN RAISE EXCEPTION 'poisoned row refused'; END IF; \
                   RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .execute(&mut c)
            .await
            .expect("function");
            sqlx::query(
                "CREATE TRIGGER poison BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .execute(&mut c)
            .await
            .expect("trigger");
        }
    }
}

async fn a_poison_delivery_is_set_aside_and_the_rest_applied(backend: Backend) {
    let Some(app) = spawn_app_on(backend, &[]).await else {
        return;
    };
    poison_trigger(&app, backend).await;
    let poison = am_payload(
        "g-poison",
        &[(
            "Poison",
            "pay",
            "critical",
            "a:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );

    let (before, _) = app.post_hook("alertmanager", down_group(1)).await;
    let (status, _) = app.post_hook("alertmanager", poison).await;
    let (after, _) = app.post_hook("alertmanager", down_group(2)).await;

    assert_eq!((before, status, after), (200, 200, 200));
    // Both good alerts become incidents; the poison one waits its retries
    // out and is set aside, never blocking the one behind it for good.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dead = app.store.dead_delivery_count().await.expect("count");
        if dead == 1 && app.incident_ids().await.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead: {dead}, incidents: {:?}",
            app.incident_ids().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = app.store.dead_deliveries(10).await.expect("dead");
    assert!(dead[0].payload.contains("Poison"), "{:?}", dead[0]);
    assert!(
        dead[0].error.contains("poisoned row refused"),
        "{:?}",
        dead[0]
    );
    let (ready, body) = app.get_json("/readyz").await;
    assert_eq!(ready, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains("dead_deliveries"),
        "{body}"
    );
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("firstline_intake_dead_deliveries 1"),
        "{metrics}"
    );
    // And later alerts keep flowing.
    let (status, _) = app.post_hook("alertmanager", down_group(3)).await;
    assert_eq!(status, 200);
    assert_eq!(app.incident_ids().await.len(), 3);
}

#[tokio::test]
async fn a_delivery_that_fails_on_its_own_on_sqlite_is_set_aside_and_the_rest_are_applied() {
    a_poison_delivery_is_set_aside_and_the_rest_applied(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_delivery_that_fails_on_its_own_on_postgres_is_set_aside_and_the_rest_are_applied() {
    a_poison_delivery_is_set_aside_and_the_rest_applied(Backend::Postgres).await;
}

#[tokio::test]
async fn a_chat_command_with_a_nul_or_of_100_kb_gets_a_short_clean_answer() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    let (_, _) = app.post_hook("alertmanager", down_group(1)).await;

    let (_, nul) = app.command("ana", "/incident note INC-1 a\u{0}b").await;
    let long = format!("/incident note INC-1 {}", "x".repeat(100 * 1024));
    let (_, big) = app.command("ana", &long).await;

    let nul = nul["reply"].as_str().unwrap_or("").to_string();
    let big = big["reply"].as_str().unwrap_or("").to_string();
    assert!(nul.contains("NUL"), "{nul}");
    assert!(!nul.contains("database"), "{nul}");
    assert!(big.contains("at most 8 KB"), "{big}");
    assert!(big.len() < 200, "not echoed back: {} bytes", big.len());
}

#[tokio::test]
async fn a_resolved_incident_is_listed_as_resolved_at_its_resolve_time() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    let (_, _) = app.post_hook("alertmanager", down_group(1)).await;
    let (_, _) = app.command("ana", "/incident resolve INC-1").await;

    let (_, list) = app.command("ana", "/incident list all").await;

    let text = list["reply"].as_str().unwrap_or("").to_string();
    assert!(text.starts_with("✅ INC-1"), "{text}");
    assert!(!text.contains("🔴"), "{text}");
    assert!(text.contains("resolved since"), "{text}");
}

/// A pseudo-terminal: (the controlling side, the terminal's path).
fn pty() -> (std::os::fd::OwnedFd, std::path::PathBuf) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    (
        master,
        std::path::PathBuf::from(name.to_string_lossy().into_owned()),
    )
}

#[tokio::test]
async fn sigint_and_sigterm_stop_serve_within_seconds_while_the_console_reads_a_terminal() {
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let dir = tempfile::tempdir().expect("dir");
        let db_url = fresh_database(Backend::Sqlite, dir.path())
            .await
            .expect("sqlite");
        let (_master, tty) = pty();
        let terminal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tty)
            .expect("open the terminal");
        let mut child = Command::new(env!("CARGO_BIN_EXE_firstline"))
            .arg("serve")
            .current_dir(dir.path())
            .env("FIRSTLINE_STORE__URL", &db_url)
            .env("FIRSTLINE_SERVER__LISTEN", "127.0.0.1:0")
            .env("FIRSTLINE_CHAT__CONSOLE_STDIN", "true")
            .env("FIRSTLINE_LOG__LEVEL", "info")
            .env_remove("FIRSTLINE_CONFIG")
            .stdin(Stdio::from(terminal))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start firstline");
        // Wait until it serves (its log says so), then signal it.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut seen = String::new();
        while !seen.contains("type /help") {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no banner; got: {seen}"));
            seen.push_str(&line);
            seen.push('\n');
        }
        let pid = rustix::process::Pid::from_child(&child);

        rustix::process::kill_process(pid, signal).expect("signal");

        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "{signal:?}: serve did not stop within 10 s: {status:?}"
        );
    }
}

#[tokio::test]
async fn a_title_with_a_comma_and_equals_sign_does_not_join_another_services_incident() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");

    let (a, _) = app
        .post_hook(
            "generic",
            r#"{"title":"Inject","labels":{"service":"pay"}}"#,
        )
        .await;
    let (b, _) = app
        .post_hook("generic", r#"{"title":"Inject,service=pay"}"#)
        .await;

    assert_eq!((a, b), (200, 200));
    assert_eq!(app.incident_ids().await, ["INC-1", "INC-2"]);
    let (_, first) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(first["incident"]["title"], "Inject (service=pay)");
}

#[tokio::test]
async fn an_alert_starting_in_the_future_gives_no_negative_ttd_and_says_why() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");

    let (status, _) = app
        .post_hook(
            "generic",
            r#"{"title":"Skewed","labels":{"service":"clock"},"starts_at":"2999-01-01T00:00:00Z"}"#,
        )
        .await;

    assert_eq!(status, 200);
    let (_, pm) = app
        .get_json("/api/incidents/INC-1/postmortem?format=json")
        .await;
    let ttd = pm["response_times"]["ttd_ms"].as_i64().expect("a TTD");
    assert!((0..60_000).contains(&ttd), "TTD {ttd} ms: {pm}");
    let (_, timeline) = app.get_json("/api/incidents/INC-1/timeline").await;
    let notes: Vec<&str> = timeline["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "note")
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("2999-01-01") && n.contains("arrival")),
        "{notes:?}"
    );
}

/// `n` distinct firing alerts of one group (service `big`), `per` a delivery.
fn storm(n: usize, per: usize) -> Vec<String> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(per)
        .map(|chunk| {
            let alerts: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "status": "firing",
                        "labels": {"alertname": "Down", "service": "big", "instance": format!("i-{i}")},
                        "annotations": {"summary": format!("instance i-{i} is down")},
                        "startsAt": "2026-11-23T00:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": format!("big-{i}"),
                    })
                })
                .collect();
            serde_json::json!({
                "version": "4", "groupKey": "big", "truncatedAlerts": 0, "status": "firing",
                "receiver": "firstline", "groupLabels": {}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "http://am.local", "alerts": alerts,
            })
            .to_string()
        })
        .collect()
}

#[tokio::test]
async fn one_big_incident_stays_readable_in_the_api_the_timeline_the_postmortem_and_chat() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    for body in storm(600, 100) {
        let (status, _) = app.post_hook("alertmanager", body).await;
        assert_eq!(status, 200);
    }

    // The counted arrivals are written once the writer is idle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let events = loop {
        let (_, t) = app.get_json("/api/incidents/INC-1/timeline").await;
        let events = t["events"].as_array().cloned().unwrap_or_default();
        if events.iter().any(|e| e["kind"] == "alerts_counted") {
            break events;
        }
        assert!(tokio::time::Instant::now() < deadline, "no aggregate: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (_, incident) = app.get_json("/api/incidents/INC-1").await;
    let mut seen = std::collections::BTreeSet::new();
    let mut next = Some("/api/incidents/INC-1/alerts?limit=250".to_string());
    let mut pages = 0;
    while let Some(url) = next {
        let (status, page) = app.get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        for a in page["alerts"].as_array().expect("alerts") {
            seen.insert(a["fingerprint"].as_str().unwrap_or("").to_string());
        }
        next = page["next"].as_str().map(str::to_string);
        pages += 1;
    }
    let (_, md) = app
        .get_text("/api/incidents/INC-1/postmortem?format=md")
        .await;
    let (_, chat) = app.command("ana", "/incident timeline INC-1").await;
    let chat = chat["reply"].as_str().unwrap_or("").to_string();

    // 1 opened + 1 first firing + 20 joined one by one + 1 aggregate of 579.
    let individual = events
        .iter()
        .filter(|e| e["kind"] == "alert_firing")
        .count();
    assert_eq!(individual, 21, "{events:?}");
    let counted: i64 = events
        .iter()
        .filter(|e| e["kind"] == "alerts_counted")
        .map(|e| e["data"]["fired"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 600 - 21);
    assert_eq!(incident["alert_counts"]["total"], 600);
    assert_eq!(incident["alerts"].as_array().map(Vec::len), Some(100));
    assert!(
        incident["alerts_next"].as_str().is_some(),
        "{}",
        incident["alerts_next"]
    );
    assert_eq!((seen.len(), pages), (600, 3));
    assert!(md.len() < 40_000, "postmortem of {} bytes", md.len());
    assert!(
        md.contains("## Alerts (600: 600 firing, 0 resolved)"),
        "{md}"
    );
    assert!(md.contains("/api/incidents/INC-1/alerts"), "{md}");
    assert!(chat.lines().count() <= 32, "{chat}");
}

#[tokio::test]
async fn a_reaction_with_a_500_kb_emoji_is_refused_in_a_line_not_echoed() {
    let app = spawn_app_on(Backend::Sqlite, &[]).await.expect("sqlite");
    let emoji = "x".repeat(500 * 1024);

    let r = app
        .client
        .post(format!("{}/console/reactions", app.addr))
        .json(&serde_json::json!({"user": "ana", "message_ref": "console-1", "emoji": emoji}))
        .send()
        .await
        .expect("request");

    assert_eq!(r.status().as_u16(), 422);
    let text = r.text().await.expect("body");
    assert!(text.len() < 300, "echoed back: {} bytes", text.len());
    assert!(text.contains("emoji"), "{text}");
}

#[tokio::test]
async fn a_postgres_store_lock_lost_with_its_session_is_taken_back_or_reported_on_readyz() {
    use sqlx::Connection;
    let Some(app) = spawn_app_on(Backend::Postgres, &[]).await else {
        return;
    };
    let mut admin = sqlx::PgConnection::connect(&app.db_url)
        .await
        .expect("postgres");
    let holder = "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                  WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()";
    let wait_ready = |want: &'static str| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (_, body) = app.get_json("/readyz").await;
                if body["status"] == want {
                    return body;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still {body}, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // The lock's session ends, and another process takes the lock first.
    let pid: i32 = sqlx::query_scalar(holder)
        .fetch_one(&mut admin)
        .await
        .expect("the app holds the lock");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut admin)
        .await
        .expect("terminate");
    // The backend exits a moment after it is signalled: take the lock as
    // soon as it is free (well before the app checks its session, 5 s).
    let mut taken = false;
    for _ in 0..100 {
        taken = sqlx::query_scalar("SELECT pg_try_advisory_lock(1718366574)")
            .fetch_one(&mut admin)
            .await
            .expect("take");
        if taken {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        taken,
        "the terminated session still holds the lock after 2 s"
    );
    let lost = wait_ready("not_ready").await;

    // Once it is free again, the app takes it back.
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut admin)
        .await
        .expect("unlock");
    wait_ready("ready").await;
    let again: i32 = sqlx::query_scalar(holder)
        .fetch_one(&mut admin)
        .await
        .expect("held again");

    assert!(
        lost["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains("held elsewhere"),
        "{lost}"
    );
    assert_ne!(again, pid);
}
