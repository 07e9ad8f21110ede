//! Escalation across a crash: the real binary runs a P1 policy whose first
//! step waits 2 s; it is SIGKILLed after the first page arrives, kept down
//! until the second step is overdue, and started again. The second step's
//! page must arrive exactly once, within 5 s of being due, at a webhook
//! receiver on loopback that checks the signature; and an acknowledged
//! incident's next step must never be paged, restart or not.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Backend, Server, drop_postgres_database, fresh_postgres_database, postgres_reachable,
    postgres_required,
};

const SECRET: &str = "crash-webhook-secret";
/// The longest a step may fire after it is due, across a restart.
const DUE_WITHIN: Duration = Duration::from_secs(5);

/// A page as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    contact: String,
    incident: String,
    page_id: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// A webhook receiver on loopback that keeps every correctly signed page
/// and refuses the rest (401).
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let keep = keep.clone();
            async move {
                let signature = headers
                    .get("x-firstline-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key size");
                mac.update(&body);
                let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                if signature != want {
                    return StatusCode::UNAUTHORIZED;
                }
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                keep.lock().expect("receiver lock").push(Received {
                    contact: v["contact"]["id"].as_str().unwrap_or("").to_string(),
                    incident: v["incident"].as_str().unwrap_or("").to_string(),
                    page_id: headers
                        .get("x-firstline-page-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                    at: chrono::Utc::now(),
                });
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

fn config(dir: &Path, hook: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[contacts.ann]
timezone = "UTC"
availability = "24/7"
page_via = ["webhook"]

[contacts.bob]
timezone = "UTC"
availability = "24/7"
page_via = ["webhook"]

[escalation.P1]
steps = [
  {{ page = ["ann"], ack_within = "2s" }},
  {{ page = ["bob"], ack_within = "60s" }},
]

[pagers.webhook]
url = "{hook}"
hmac_secret = {{ env = "FIRSTLINE_CRASH_WEBHOOK_SECRET" }}
"#
    );
    let path = dir.join("firstline.toml");
    std::fs::write(&path, text).expect("write the configuration");
    path
}

impl Server {
    async fn command(&self, user: &str, text: &str) -> Result<Value, String> {
        let r = self
            .client
            .post(format!("{}/console/commands", self.base))
            .json(&json!({"user": user, "text": text}))
            .send()
            .await
            .map_err(|e| format!("command {text:?}: {e}"))?;
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if body["ok"] != true {
            return Err(format!("command {text:?} was refused: {body}"));
        }
        Ok(body)
    }

    /// The `due_ms` the step-1 event recorded for step 2.
    async fn step2_due(&self, inc: &str) -> Result<i64, String> {
        let (_, body) = self
            .get_text(&format!("/api/incidents/{inc}/timeline?limit=500"))
            .await?;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["kind"] == "escalation" && e["data"]["action"] == "step" && e["data"]["k"] == 0
            })
            .and_then(|e| e["data"]["due_ms"].as_i64())
            .ok_or_else(|| format!("{inc}: no step-1 event with a due time: {body}"))
    }
}

async fn wait_for(
    got: &Arc<Mutex<Vec<Received>>>,
    what: impl Fn(&Received) -> bool,
    within: Duration,
) -> Option<Received> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = got.lock().expect("lock").iter().find(|r| what(r)).cloned() {
            return Some(r);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn round(backend: Backend, store: &str, dir: &Path) -> Result<(), String> {
    // SAFETY of the test: the secret reaches the child through its
    // environment, never the configuration file.
    // (std::env::set_var is process-wide; set once, same value.)
    unsafe { std::env::set_var("FIRSTLINE_CRASH_WEBHOOK_SECRET", SECRET) };
    let (hook, got) = receiver().await;
    let config = config(dir, &hook);
    let first = Server::start_with(dir, store, "first.log", Some(&config)).await?;
    first
        .command("sam", "/incident declare checkout is down --sev P1")
        .await?;
    first
        .command("sam", "/incident declare payments are down --sev P1")
        .await?;
    // INC-2 is acknowledged once its first page is out: its step 2 must
    // never be paged, restart or not.
    wait_for(
        &got,
        |r| r.contact == "ann" && r.incident == "INC-1",
        Duration::from_secs(10),
    )
    .await
    .ok_or_else(|| {
        format!(
            "INC-1's first page never arrived; log:\n{}",
            first.log_text()
        )
    })?;
    wait_for(
        &got,
        |r| r.contact == "ann" && r.incident == "INC-2",
        Duration::from_secs(10),
    )
    .await
    .ok_or_else(|| {
        format!(
            "INC-2's first page never arrived; log:\n{}",
            first.log_text()
        )
    })?;
    first.command("ann", "/incident ack INC-2").await?;
    let due = first.step2_due("INC-1").await?;

    // Between the steps: SIGKILL, and stay down until step 2 is overdue.
    let mut first = first;
    first.child.kill().map_err(|e| format!("kill: {e}"))?;
    let _ = first.child.wait();
    let overdue_at = due + 1_000;
    let wait = overdue_at - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    assert!(
        !got.lock().expect("lock").iter().any(|r| r.contact == "bob"),
        "bob was paged before step 2 was due"
    );
    let second = Server::start_with(dir, store, "second.log", Some(&config)).await?;

    let page = wait_for(
        &got,
        |r| r.contact == "bob",
        DUE_WITHIN + Duration::from_secs(5),
    )
    .await
    .ok_or_else(|| {
        format!(
            "{}: step 2 was never paged after the restart; log:\n{}",
            backend.name(),
            second.log_text()
        )
    })?;
    let late = page.at.timestamp_millis() - due;
    if late > DUE_WITHIN.as_millis() as i64 {
        return Err(format!(
            "{}: step 2 was paged {late} ms after it was due (at most {} ms)",
            backend.name(),
            DUE_WITHIN.as_millis()
        ));
    }
    // Well past anything in flight: exactly one page to bob, for INC-1.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bob: Vec<Received> = got
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.contact == "bob")
        .cloned()
        .collect();
    if bob.len() != 1 || bob[0].incident != "INC-1" {
        return Err(format!(
            "{}: expected one page to bob for INC-1, got {bob:?}",
            backend.name()
        ));
    }
    println!(
        "crash escalation {}: step 2 paged once, {late} ms after it was due (down until {} ms after), page {}",
        backend.name(),
        overdue_at - due,
        bob[0].page_id
    );
    drop(second);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_p1_reaches_its_second_step_once_and_on_time_across_sigkill_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite://{}", dir.path().join("firstline.db").display());
    if let Err(e) = round(Backend::Sqlite, &store, dir.path()).await {
        let kept = dir.keep();
        panic!("{e}\n(kept {})", kept.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_p1_reaches_its_second_step_once_and_on_time_across_sigkill_on_postgres()
{
    if let Err(why) = postgres_reachable().await {
        if postgres_required() {
            panic!("PostgreSQL is required (FIRSTLINE_REQUIRE_POSTGRES) but not reachable: {why}");
        }
        eprintln!("SKIPPED: escalation crash test on PostgreSQL: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, name) = fresh_postgres_database(9_000).await;
    match round(Backend::Postgres, &url, dir.path()).await {
        Ok(()) => drop_postgres_database(&name).await,
        Err(e) => {
            let kept = dir.keep();
            panic!("{e}\n(kept {} and database {name})", kept.display());
        }
    }
}
