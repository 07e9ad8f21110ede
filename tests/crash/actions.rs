//! An approved action across a crash: the real binary runs a runbook whose
//! `restart` action POSTs to an admin endpoint on loopback that counts the
//! call and then hangs, so the call is out and its result never recorded.
//! The server is SIGKILLed while it waits, and started again on the same
//! store. The try must come back as OUTCOME UNKNOWN (in the thread, in
//! `/api/.../actions`, on the timeline), and must never be sent a second
//! time: "sent but not recorded" is reported, not retried.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::{Value, json};

use super::{
    Backend, Server, drop_postgres_database, fresh_postgres_database, postgres_reachable,
    postgres_required, store_token,
};

const TOKEN: &str = "crash-console-token-5678";
/// How long the admin endpoint keeps a restart call waiting: far longer
/// than the test, and than anything that could time it out before the kill.
const HANG: Duration = Duration::from_secs(60);
/// After the restart, nothing may call the endpoint again within this.
const QUIET: Duration = Duration::from_secs(2);

const RUNBOOK: &str = r#"
version = 1
id = "svc-down"
title = "サービス停止"
title_en = "Service down"
severity = "P2"
source = { seed = "003", section = "5" }

[match]
alertname = ["SvcDown"]

# A runbook needs a check; it never runs here (run_on_alert = false).
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
run = { kind = "http", target = "admin", method = "POST", path = "/restart/svc" }
"#;

/// The admin endpoint: counts `POST /restart/svc`, then never answers in
/// time.
async fn hanging_admin() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let app = axum::Router::new().route(
        "/restart/svc",
        post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(HANG).await;
                (axum::http::StatusCode::ACCEPTED, "restarting")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the admin endpoint");
    let addr = listener.local_addr().expect("admin endpoint address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), calls)
}

fn config(dir: &Path, admin: &str) -> PathBuf {
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).expect("runbook dir");
    std::fs::write(runbooks.join("svc.toml"), RUNBOOK).expect("write the runbook");
    let token = dir.join("console-token");
    std::fs::write(&token, TOKEN).expect("write the console token");
    let text = format!(
        r#"
[runbooks]
bundled = false
dirs = ["{runbooks}"]
run_on_alert = false

[chat.console]
token = {{ file = "{token}" }}

[targets.admin]
kind = "http"
base_url = "{admin}"

[roles.fixers]
members = ["console:sam", "console:ann"]

[approvals]
default_approvers = ["fixers"]

[actions]
timeout_s = 60
verify_after_s = 0
"#,
        runbooks = runbooks.display(),
        token = token.display(),
    );
    let path = dir.join("firstline.toml");
    std::fs::write(&path, text).expect("write the configuration");
    path
}

impl Server {
    /// Opens INC-1 with an Alertmanager delivery the runbook matches.
    async fn open_svc_incident(&self, store: &str) -> Result<(), String> {
        let body = json!({
            "version": "4", "groupKey": "g", "truncatedAlerts": 0, "status": "firing",
            "receiver": "firstline", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am.local",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "SvcDown", "service": "svc", "severity": "warning", "instance": "svc:80"},
                "annotations": {"summary": "SvcDown on svc:80"},
                "startsAt": "2026-12-05T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": "SvcDown-svc-svc:80",
            }],
        });
        let r = self
            .client
            .post(format!("{}/hooks/alertmanager", self.base))
            .bearer_auth(store_token(store))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("alertmanager hook: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("alertmanager hook answered {}", r.status()));
        }
        // Waits for the applier.
        let (_, list) = self.get_text("/api/incidents?state=all").await?;
        if !list.contains("INC-1") {
            return Err(format!("no INC-1 after the alert: {list}"));
        }
        Ok(())
    }

    /// A console command by a vouched user (the token).
    async fn console_say(&self, user: &str, text: &str) -> Result<Value, String> {
        let r = self
            .client
            .post(format!("{}/console/commands", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({"user": user, "text": text, "incident": "INC-1"}))
            .send()
            .await
            .map_err(|e| format!("command {text:?}: {e}"))?;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if body["ok"] != true {
            return Err(format!("command {text:?} was refused: {body}"));
        }
        Ok(body)
    }

    /// A reaction by a vouched user (the token).
    async fn console_react(
        &self,
        user: &str,
        message_ref: &str,
        emoji: &str,
    ) -> Result<(), String> {
        let r = self
            .client
            .post(format!("{}/console/reactions", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({"user": user, "message_ref": message_ref, "emoji": emoji, "removed": false}))
            .send()
            .await
            .map_err(|e| format!("reaction {emoji}: {e}"))?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("reaction {emoji} by {user}: {status} {body}"));
        }
        Ok(())
    }

    async fn get_json(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.get_text(path).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
    }

    /// The first post of INC-1 `what` finds, waiting up to `within`.
    async fn wait_post(
        &self,
        what: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Result<Option<Value>, String> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.get_json("/api/incidents/INC-1/posts").await?;
            if let Some(p) = v["posts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["text"].as_str().is_some_and(&what))
            {
                return Ok(Some(p.clone()));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// What the store says between the kill and the restart, read with no
/// server on it: the tries' states, the proposals', and the `action`
/// outbox items' statuses.
async fn on_record(backend: Backend, store: &str) -> Result<[Vec<String>; 3], String> {
    use sqlx::Connection;
    const QUERIES: [&str; 3] = [
        "SELECT state FROM action_runs ORDER BY proposal_id, attempt",
        "SELECT state FROM action_proposals ORDER BY id",
        "SELECT status FROM outbox WHERE kind = 'action' ORDER BY id",
    ];
    let db = |e: sqlx::Error| format!("reading the store {store}: {e}");
    let mut out: [Vec<String>; 3] = Default::default();
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(store).await.map_err(db)?;
            for (q, o) in QUERIES.iter().zip(out.iter_mut()) {
                *o = sqlx::query_scalar(*q)
                    .fetch_all(&mut conn)
                    .await
                    .map_err(db)?;
            }
            let _ = conn.close().await;
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(store).await.map_err(db)?;
            for (q, o) in QUERIES.iter().zip(out.iter_mut()) {
                *o = sqlx::query_scalar(*q)
                    .fetch_all(&mut conn)
                    .await
                    .map_err(db)?;
            }
            let _ = conn.close().await;
        }
    }
    Ok(out)
}

async fn wait_calls(calls: &AtomicUsize, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while calls.load(Ordering::SeqCst) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

async fn round(backend: Backend, store: &str, dir: &Path) -> Result<(), String> {
    let t = Instant::now();
    let (admin, calls) = hanging_admin().await;
    let config = config(dir, &admin);
    let first = Server::start_with(dir, store, "first.log", Some(&config)).await?;
    first.open_svc_incident(store).await?;
    let r = first.console_say("sam", "/action propose restart").await?;
    if !r["reply"]
        .as_str()
        .unwrap_or_default()
        .contains("proposed #1 restart")
    {
        return Err(format!("unexpected answer to the proposal: {r}"));
    }
    let proposal = first
        .wait_post(|t| t.starts_with("Proposal #1"), Duration::from_secs(10))
        .await?
        .ok_or_else(|| format!("no proposal post; log:\n{}", first.log_text()))?;
    let message_ref = proposal["message_ref"]
        .as_str()
        .ok_or_else(|| format!("the proposal post has no message_ref: {proposal}"))?
        .to_string();
    first
        .console_react("ann", &message_ref, "white_check_mark")
        .await?;

    // The call is out, and hangs: the try is recorded as sending, its result
    // is not.
    if !wait_calls(&calls, 1, Duration::from_secs(10)).await {
        return Err(format!(
            "the approved action never reached the admin endpoint; log:\n{}",
            first.log_text()
        ));
    }
    let mut first = first;
    first.child.kill().map_err(|e| format!("kill: {e}"))?;
    let _ = first.child.wait();
    let killed_at = t.elapsed();

    // Sent but not recorded: the try is on record as sending (committed
    // before the call), and the intent is still undelivered, so the next
    // process finds it.
    let [runs, proposals, items] = on_record(backend, store).await?;
    if runs != ["sending"] || proposals != ["running"] || items != ["pending"] {
        return Err(format!(
            "{}: after the kill expected one try 'sending', proposal 'running', action item 'pending'; \
             got tries {runs:?}, proposals {proposals:?}, action items {items:?}",
            backend.name()
        ));
    }

    let second = Server::start_with(dir, store, "second.log", Some(&config)).await?;
    let unknown = second
        .wait_post(|t| t.contains("OUTCOME UNKNOWN"), Duration::from_secs(10))
        .await?
        .ok_or_else(|| {
            format!(
                "{}: no OUTCOME UNKNOWN post after the restart (the admin endpoint was called {} time(s)); log:\n{}",
                backend.name(),
                calls.load(Ordering::SeqCst),
                second.log_text()
            )
        })?;
    let text = unknown["text"].as_str().unwrap_or_default();
    if !text.starts_with("⚠ #1 restart: OUTCOME UNKNOWN") {
        return Err(format!("unexpected unknown-outcome post: {text}"));
    }

    // The audit.
    let actions = second.get_json("/api/incidents/INC-1/actions").await?;
    let list = actions["actions"].as_array().cloned().unwrap_or_default();
    if list.len() != 1 {
        return Err(format!("expected one proposal, got {actions}"));
    }
    let p = &list[0];
    if p["state"] != "unknown" {
        return Err(format!("proposal #1 is not unknown: {p}"));
    }
    let tries = p["tries"].as_array().cloned().unwrap_or_default();
    if tries.len() != 1 || tries[0]["state"] != "unknown" || tries[0]["attempt"] != 1 {
        return Err(format!("expected one unknown try: {p}"));
    }
    if p["votes"]
        .as_array()
        .is_none_or(|v| !v.iter().any(|v| v["identity"] == "console:ann"))
    {
        return Err(format!("ann's approval is not in the audit: {p}"));
    }

    // The timeline.
    let timeline = second
        .get_json("/api/incidents/INC-1/timeline?limit=500")
        .await?;
    let tried: Vec<&Value> = timeline["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "action" && e["data"]["op"] == "tried")
        .collect();
    if tried.len() != 1
        || tried[0]["data"]["state"] != "unknown"
        || tried[0]["data"]["proposal"] != 1
        || tried[0]["data"]["attempt"] != 1
        || !tried[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("OUTCOME UNKNOWN"))
    {
        return Err(format!(
            "expected one unknown `tried` action event on the timeline, got {tried:?}"
        ));
    }

    // Never sent again, and said once.
    tokio::time::sleep(QUIET).await;
    let n = calls.load(Ordering::SeqCst);
    if n != 1 {
        return Err(format!(
            "{}: the admin endpoint was called {n} times; an action sent before a crash must never be sent again; log:\n{}",
            backend.name(),
            second.log_text()
        ));
    }
    let posts = second.get_json("/api/incidents/INC-1/posts").await?;
    let unknowns = posts["posts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["text"]
                .as_str()
                .is_some_and(|t| t.contains("OUTCOME UNKNOWN"))
        })
        .count();
    if unknowns != 1 {
        return Err(format!(
            "expected one OUTCOME UNKNOWN post, got {unknowns}: {posts}"
        ));
    }
    println!(
        "crash actions {}: one call, killed {:.1} s in, OUTCOME UNKNOWN after the restart, no second call ({:.1} s)",
        backend.name(),
        killed_at.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    drop(second);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_sent_before_sigkill_is_reported_unknown_and_never_sent_again_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}", dir.path().join("firstline.db").display());
    if let Err(e) = round(Backend::Sqlite, &store, dir.path()).await {
        let kept = dir.keep();
        panic!("{e}\n(kept {})", kept.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_sent_before_sigkill_is_reported_unknown_and_never_sent_again_on_postgres() {
    if let Err(why) = postgres_reachable().await {
        if postgres_required() {
            panic!("PostgreSQL is required (FIRSTLINE_REQUIRE_POSTGRES) but not reachable: {why}");
        }
        eprintln!("SKIPPED: action crash test on PostgreSQL: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, name) = fresh_postgres_database(9_100).await;
    match round(Backend::Postgres, &url, dir.path()).await {
        Ok(()) => drop_postgres_database(&name).await,
        Err(e) => {
            let kept = dir.keep();
            panic!("{e}\n(kept {} and database {name})", kept.display());
        }
    }
}
