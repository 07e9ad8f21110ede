//! Tests of the real binary as a process of its own. Restart safety:
//! accept alerts, kill -9, start again; nothing accepted is lost, no post
//! appears twice, the outbox resumes. And what `/metrics` counts, which in
//! the shared test process would mix every test's servers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{down_alert, down_group};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `firstline serve` in `dir` on `port`, its output thrown away.
fn start(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Child {
    serve_command(dir, port, env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start firstline")
}

fn serve_command(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_firstline"));
    command
        .arg("serve")
        .current_dir(dir)
        .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FIRSTLINE_CHAT__CONSOLE_STDIN", "false")
        .env("FIRSTLINE_LOG__LEVEL", "warn")
        .env_remove("FIRSTLINE_CONFIG")
        // The test's own settings win over the defaults above.
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// A client for the child server; installs the TLS provider reqwest needs
/// (in-process tests get it from `App::build`, these may run first).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Starts the server on a free port in `dir` and waits until it is ready.
async fn serve(dir: &std::path::Path, client: &reqwest::Client) -> (Child, String) {
    serve_with(dir, client, &[]).await
}

/// [`serve`] with more environment (settings) for the server.
async fn serve_with(
    dir: &std::path::Path,
    client: &reqwest::Client,
    env: &[(&str, &str)],
) -> (Child, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = start(dir, port, env);
    wait_ready(client, &base).await;
    (child, base)
}

/// POSTs an Alertmanager body: (HTTP status, answer text).
async fn post_alerts(client: &reqwest::Client, base: &str, body: String) -> (u16, String) {
    let r = client
        .post(format!("{base}/hooks/alertmanager"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("firstline did not become ready at {base}");
}

#[tokio::test]
async fn a_killed_server_restarts_with_everything_it_accepted_and_no_duplicate_posts() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (mut first, base) = serve(dir.path(), &client).await;

    // 20 groups -> 20 incidents -> 20 posts, then an unclean kill, likely
    // while some posts are still in the outbox.
    let mut accepted = 0;
    for i in 0..20 {
        let (status, _) = post_alerts(&client, &base, down_group(i)).await;
        if status == 200 {
            accepted += 1;
        }
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    assert_eq!(accepted, 20);

    let (mut second, base) = serve(dir.path(), &client).await;
    // Redelivery of everything (Alertmanager re-sends whole groups) is
    // recognised, not doubled.
    let body = down_alert("g0", 0, "firing");
    let again: Value = client
        .post(format!("{base}/hooks/alertmanager"))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut posts = Vec::new();
    for _ in 0..200 {
        let body: Value = get_json(&client, &format!("{base}/console/posts?limit=1000")).await;
        posts = body["posts"].as_array().cloned().unwrap_or_default();
        if posts.len() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let incidents: Value = get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    second.kill().expect("stop");
    let _ = second.wait();

    assert_eq!(again["status"], "duplicate");
    assert_eq!(
        incidents["incidents"].as_array().map(Vec::len),
        Some(20),
        "nothing accepted was lost"
    );
    assert_eq!(
        posts.len(),
        20,
        "one post per incident, none twice: {posts:?}"
    );
    let mut outbox_ids: Vec<_> = posts
        .iter()
        .map(|p| p["outbox_id"].as_i64().unwrap())
        .collect();
    outbox_ids.dedup();
    assert_eq!(outbox_ids.len(), 20);
    assert!(
        metrics.contains("firstline_outbox_pending 0"),
        "the outbox drained after the restart:\n{metrics}"
    );
}

/// Holds SQLite's write lock on the server's database, as a long
/// transaction of another program would: incident-making stops, intake
/// (which appends to its own journal file) does not.
async fn hold_write_lock(db: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .expect("take the write lock");
    conn
}

#[tokio::test]
async fn alerts_accepted_while_incidents_cannot_be_written_survive_a_crash_and_are_applied_after() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (mut first, base) = serve(dir.path(), &client).await;
    let lock = hold_write_lock(&dir.path().join("firstline.db")).await;

    let mut answers = Vec::new();
    for i in 0..5 {
        answers.push(post_alerts(&client, &base, down_group(i)).await);
    }
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    first.kill().expect("kill -9");
    let _ = first.wait();
    drop(lock);

    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "intake answers while the incident tables are locked: {answers:?}"
    );
    assert!(
        metrics.contains("firstline_intake_backlog 5"),
        "all five were accepted and none applied yet:\n{metrics}"
    );

    assert!(
        metrics.contains("firstline_intake_applied_alerts_total 0"),
        "the applier's counters are listed before its first run:\n{metrics}"
    );

    let (mut second, base) = serve(dir.path(), &client).await;
    let incidents: Value = get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    second.kill().expect("stop");
    let _ = second.wait();

    assert_eq!(
        incidents["incidents"].as_array().map(Vec::len),
        Some(5),
        "the journal was applied after the restart: {incidents}"
    );
    assert!(
        metrics.contains("firstline_intake_applied_alerts_total 5"),
        "the five journaled alerts were counted as applied:\n{metrics}"
    );
}

#[tokio::test]
async fn alerts_stored_before_a_restart_are_still_known_to_dedup_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (mut first, base) = serve(dir.path(), &client).await;
    for i in 0..2 {
        assert_eq!(post_alerts(&client, &base, down_group(i)).await.0, 200);
    }
    // The API waits for the incident writer: both alerts are in the
    // database, none only in the journal, when the server goes.
    let before: Value = get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    first.kill().expect("kill -9");
    let _ = first.wait();
    assert_eq!(before["incidents"].as_array().map(Vec::len), Some(2));

    let (mut second, base) = serve(dir.path(), &client).await;
    let (_, regroup) = post_alerts(&client, &base, down_group(0)).await;
    // The same alert from another Alertmanager route (another groupKey):
    // no receipt matches, the stored alert does.
    let other_route = down_alert("another-route", 0, "firing");
    let (_, rerouted) = post_alerts(&client, &base, other_route).await;
    let resolve = down_alert("g1", 1, "resolved");
    let (_, resolved) = post_alerts(&client, &base, resolve).await;
    let incidents: Value = get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    second.kill().expect("stop");
    let _ = second.wait();

    let answer = |text: &str| serde_json::from_str::<Value>(text).unwrap_or_default();
    assert_eq!(answer(&regroup)["status"], "duplicate", "{regroup}");
    assert_eq!(answer(&rerouted)["status"], "duplicate", "{rerouted}");
    assert_eq!(answer(&resolved)["accepted"], 1, "{resolved}");
    let incidents = incidents["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        incidents.len(),
        2,
        "no incident opened twice: {incidents:?}"
    );
    let svc1 = incidents
        .iter()
        .map(|i| &i["incident"])
        .find(|i| i["title"].as_str().is_some_and(|t| t.contains("svc-1")))
        .unwrap_or_else(|| panic!("svc-1's incident: {incidents:?}"));
    assert_eq!(svc1["state"], "mitigated", "the resolve reached it: {svc1}");
}

#[tokio::test]
async fn deliveries_left_in_the_old_journal_file_are_applied_after_an_upgrade() {
    use sqlx::Connection;
    // What the SQLite-file journal of earlier versions held after a crash:
    // the Alertmanager fixture (2 alerts), accepted and not yet applied.
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("firstline.db-intake");
    let rows: Vec<Value> =
        serde_json::from_slice(&crate::helpers::fixture("legacy_intake_journal.json")).unwrap();
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", legacy.display()))
            .await
            .expect("create the old journal");
    sqlx::query(
        "CREATE TABLE intake_journal (seq INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL,
         source TEXT NOT NULL, payload TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for r in &rows {
        sqlx::query("INSERT INTO intake_journal VALUES (?, ?, ?, ?)")
            .bind(r["seq"].as_i64())
            .bind(r["received_ms"].as_i64())
            .bind(r["source"].as_str())
            .bind(r["payload"].as_str())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();

    let client = client();
    let (mut first, base) = serve(dir.path(), &client).await;
    let incidents: Value = get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    let (_, again) = post_alerts(
        &client,
        &base,
        String::from_utf8(crate::helpers::fixture("alertmanager_firing.json")).unwrap(),
    )
    .await;
    first.kill().expect("stop");
    let _ = first.wait();

    let incidents = incidents["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(
        incidents[0]["incident"]["title"]
            .as_str()
            .map(|t| t.contains("HighErrorRate")),
        Some(true),
        "{incidents:?}"
    );
    assert!(
        again.contains("\"duplicate\""),
        "the moved alerts count for dedup: {again}"
    );
    assert!(
        !legacy.exists(),
        "the old journal file is removed once moved"
    );
    assert!(dir.path().join("firstline.db-intake.d").is_dir());
}

/// The value of an unlabelled counter or gauge in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Under a steady flow the incident writer does not commit once per
/// alert: what arrives within `store.apply_interval_ms` of a run goes
/// into the next one, which is what keeps a storm's disk writes down.
#[tokio::test]
async fn alerts_arriving_close_together_are_applied_in_a_few_runs_not_one_each() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (mut server, base) = serve_with(
        dir.path(),
        &client,
        &[("FIRSTLINE_STORE__APPLY_INTERVAL_MS", "1000")],
    )
    .await;
    let runs = |text: &str| metric(text, "firstline_intake_apply_runs_total");
    // A first alert, applied at once (the journal was quiet); the API
    // waits for it. Its run is the warm one: the first is slow.
    assert_eq!(post_alerts(&client, &base, down_group(0)).await.0, 200);
    get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    let before = runs(&get_text(&client, &format!("{base}/metrics")).await);

    // Ten more, 20 ms apart: each would have a run of its own if runs
    // followed each other at once; within a second of the first run they
    // wait for the next.
    let mut answers = Vec::new();
    for i in 1..=10 {
        answers.push(post_alerts(&client, &base, down_group(i)).await.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let incidents: Value = get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    server.kill().expect("stop");
    let _ = server.wait();

    assert_eq!(answers, [200; 10]);
    assert_eq!(
        incidents["incidents"].as_array().map(Vec::len),
        Some(11),
        "every alert made its incident: {incidents}"
    );
    assert_eq!(before, Some(1.0));
    assert_eq!(
        metric(&metrics, "firstline_intake_applied_alerts_total"),
        Some(11.0),
        "{metrics}"
    );
    let later = runs(&metrics).unwrap_or(f64::NAN) - 1.0;
    // One unless posting took seconds; back to back it would be ten.
    assert!(
        (1.0..=3.0).contains(&later),
        "the ten later alerts took {later} runs:\n{metrics}"
    );
}

/// A log collected from a pipe or a file (systemd, Docker, `> log`) is
/// read by people and parsers: no terminal colour codes in it.
#[tokio::test]
async fn logs_written_to_a_pipe_carry_no_terminal_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve_command(dir.path(), port, &[("FIRSTLINE_LOG__LEVEL", "info")])
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start firstline");
    wait_ready(&client, &base).await;
    // Something worth logging at info: an incident opens.
    assert_eq!(post_alerts(&client, &base, down_group(0)).await.0, 200);
    get_json(&client, &format!("{base}/api/incidents?state=all")).await;
    server.kill().expect("stop");
    let output = server.wait_with_output().expect("its output");
    let log = String::from_utf8_lossy(&output.stderr);

    assert!(log.contains("incident opened"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log:?}");
}

#[tokio::test]
async fn a_fresh_server_lists_its_counters_at_zero_from_the_first_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let (mut server, base) = serve(dir.path(), &client).await;

    let text = get_text(&client, &format!("{base}/metrics")).await;
    let _ = server.kill();
    let _ = server.wait();

    for name in [
        r#"firstline_alerts_total{source="alertmanager",status="accepted"}"#,
        r#"firstline_alerts_total{source="grafana",status="rejected"}"#,
        r#"firstline_alerts_total{source="generic",status="failed"}"#,
        "firstline_outbox_delivered_total",
        "firstline_outbox_failures_total",
        "firstline_intake_dead_deliveries_total",
        "firstline_intake_journal_lost_records_total",
        "firstline_http_refused_connections_total",
    ] {
        assert_eq!(metric(&text, name), Some(0.0), "{name} in:\n{text}");
    }
}
