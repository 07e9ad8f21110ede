//! `spawn_app()`: the real server on a free loopback port with its own
//! database, SQLite by default or PostgreSQL.
//!
//! PostgreSQL tests use `FIRSTLINE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) to create a fresh database
//! per test. Where PostgreSQL is not reachable they print why they were
//! skipped and pass, unless `FIRSTLINE_REQUIRE_POSTGRES=1` (set by
//! `.ci/run`), which makes them fail instead.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use firstline::app::App;
use firstline::chat::console::Sink;
use firstline::config;
use firstline::store::{JournalStore, Store};
use serde_json::Value;
use sqlx::Connection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: String,
    pub client: reqwest::Client,
    pub store: Store,
    /// The intake journal: with `store`, what "the store" means to intake.
    pub journal: JournalStore,
    pub db_url: String,
    /// Holds the SQLite file until the test ends.
    dir: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server task, to wait for its end ([`TestApp::stop`]).
    running: Option<tokio::task::JoinHandle<()>>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn admin_url() -> String {
    std::env::var("FIRSTLINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn postgres_required() -> bool {
    matches!(
        std::env::var("FIRSTLINE_REQUIRE_POSTGRES").as_deref(),
        Ok("1") | Ok("true")
    )
}

/// A fresh database URL on `backend`, or `None` (with the reason printed)
/// when PostgreSQL is not there and not required.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("firstline.db").display())),
        Backend::Postgres => {
            let admin = admin_url();
            let mut conn = match sqlx::PgConnection::connect(&admin).await {
                Ok(c) => c,
                Err(e) if !postgres_required() => {
                    eprintln!(
                        "SKIPPED: PostgreSQL test: cannot connect to {admin} ({e}); set FIRSTLINE_TEST_POSTGRES_URL or start PostgreSQL (FIRSTLINE_REQUIRE_POSTGRES=1 makes this a failure)"
                    );
                    return None;
                }
                Err(e) => panic!(
                    "PostgreSQL is required (FIRSTLINE_REQUIRE_POSTGRES) but {admin} is not reachable: {e}"
                ),
            };
            let name = format!(
                "firstline_test_{}_{}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin.clone());
            Some(format!("{base}/{name}"))
        }
    }
}

/// Settings for a test app: loopback port 0, the given store, quick outbox
/// polling, plus `extra` overrides (`("FIRSTLINE_X__Y", "v")`).
pub fn test_env(db_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "FIRSTLINE_SERVER__LISTEN".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("FIRSTLINE_STORE__URL".to_string(), db_url.to_string()),
        (
            "FIRSTLINE_STORE__MAX_CONNECTIONS".to_string(),
            "4".to_string(),
        ),
        (
            "FIRSTLINE_OUTBOX__POLL_INTERVAL_MS".to_string(),
            "50".to_string(),
        ),
        (
            "FIRSTLINE_OUTBOX__BASE_BACKOFF_MS".to_string(),
            "20".to_string(),
        ),
        (
            "FIRSTLINE_CHAT__CONSOLE_STDIN".to_string(),
            "false".to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Starts the real server on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(Backend::Sqlite, &[])
        .await
        .expect("sqlite is always available")
}

/// Starts the real server on `backend`; `None` when PostgreSQL is skipped.
pub async fn spawn_app_on(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = fresh_database(backend, dir.path()).await?;
    Some(spawn_with(dir, db_url, extra).await)
}

pub async fn spawn_with(dir: tempfile::TempDir, db_url: String, extra: &[(&str, &str)]) -> TestApp {
    spawn_configured(dir, db_url, None, extra).await
}

/// Starts the real server on SQLite with `toml` as its configuration file
/// (for nested tables the environment spells badly: contacts, rotations),
/// under the test settings of [`test_env`].
pub async fn spawn_app_with_file(toml: &str, extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = fresh_database(Backend::Sqlite, dir.path())
        .await
        .expect("sqlite is always available");
    let path = dir.path().join("firstline.toml");
    std::fs::write(&path, toml).expect("write the test configuration");
    spawn_configured(dir, db_url, Some(&path), extra).await
}

/// Starts the server again on a stopped app's folder and store (see
/// [`TestApp::stop`]) with `toml` as its configuration file.
pub async fn restart_with_file(
    dir: tempfile::TempDir,
    db_url: String,
    toml: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    let path = dir.path().join("firstline.toml");
    std::fs::write(&path, toml).expect("write the test configuration");
    spawn_configured(dir, db_url, Some(&path), extra).await
}

/// [`spawn_app_with_file`] on `backend`; `None` when PostgreSQL is
/// skipped.
pub async fn spawn_app_with_file_on(
    backend: Backend,
    toml: &str,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = fresh_database(backend, dir.path()).await?;
    let path = dir.path().join("firstline.toml");
    std::fs::write(&path, toml).expect("write the test configuration");
    Some(spawn_configured(dir, db_url, Some(&path), extra).await)
}

async fn spawn_configured(
    dir: tempfile::TempDir,
    db_url: String,
    file: Option<&std::path::Path>,
    extra: &[(&str, &str)],
) -> TestApp {
    let config = match config::load_with_env(file, test_env(&db_url, extra)) {
        Ok(c) => c,
        Err(e) => panic!("test config is valid: {e}"),
    };
    let app = App::build(config, Sink::Silent).await.expect("app builds");
    let addr = format!("http://{}", app.local_addr().expect("bound"));
    let store = app.store().clone();
    let journal = app.journal().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        let _ = app
            .run(async move {
                let _ = rx.await;
            })
            .await;
    });
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        store,
        journal,
        db_url,
        dir: Some(dir),
        shutdown: Some(tx),
        running: Some(running),
    }
}

/// A documented example payload from tests/fixtures.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

impl TestApp {
    /// Stops the server and waits until it has let go of the store: its
    /// folder and store URL, to start another on.
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
        let dir = self.dir.take().expect("the test folder");
        (dir, self.db_url.clone())
    }

    pub async fn post_hook(&self, source: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/hooks/{source}", self.addr))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.addr))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Human ids of every incident, oldest first (`INC-1`, …). Intake
    /// answers before incidents are made; the API waits for them.
    pub async fn incident_ids(&self) -> Vec<String> {
        let (_, list) = self.get_json("/api/incidents?state=all").await;
        let mut ids: Vec<(i64, String)> = list["incidents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        (
                            i["incident"]["id"].as_i64().unwrap_or_default(),
                            i["incident"]["human_id"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids.into_iter().map(|(_, h)| h).collect()
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Types `text` as `user` on the console platform.
    pub async fn command(&self, user: &str, text: &str) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}/console/commands", self.addr))
            .json(&serde_json::json!({"user": user, "text": text}))
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The incident's console posts once at least `n` are out (the
    /// dispatcher delivers asynchronously); panics after 10 s.
    pub async fn wait_posts(&self, incident: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self
                .get_json(&format!("/api/incidents/{incident}/posts"))
                .await;
            let posts = body["posts"].as_array().cloned().unwrap_or_default();
            if posts.len() >= n {
                return posts;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{incident}: expected {n} posts, have {}: {posts:?}",
                    posts.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An Alertmanager v4 webhook with the given alerts
/// (`(alertname, service, severity, instance, status, starts_at)`).
pub fn am_payload(group: &str, alerts: &[(&str, &str, &str, &str, &str, &str)]) -> String {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(name, service, severity, instance, status, starts)| {
            serde_json::json!({
                "status": status,
                "labels": {"alertname": name, "service": service, "severity": severity, "instance": instance},
                "annotations": {"summary": format!("{name} on {instance}")},
                "startsAt": starts,
                "endsAt": if *status == "resolved" { "2026-11-23T01:00:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": format!("{name}-{service}-{instance}"),
            })
        })
        .collect();
    serde_json::json!({
        "version": "4", "groupKey": group, "truncatedAlerts": 0, "status": "firing", "receiver": "firstline",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.local",
        "alerts": alerts,
    })
    .to_string()
}

/// Group `g{i}`: one critical `Down` alert of service `svc-{i}`, firing
/// since 2026-11-23T00:00:00Z; each `i` opens its own incident.
pub fn down_group(i: usize) -> String {
    down_alert(&format!("g{i}"), i, "firing")
}

/// The alert of [`down_group`]`(i)` with `status`, in group `group`.
pub fn down_alert(group: &str, i: usize, status: &str) -> String {
    am_payload(
        group,
        &[(
            "Down",
            &format!("svc-{i}"),
            "critical",
            "a:1",
            status,
            "2026-11-23T00:00:00Z",
        )],
    )
}

/// Serves `router` on a free loopback port; returns `http://127.0.0.1:PORT`
/// (probe targets and other fakes).
pub async fn serve(router: axum::Router) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A loopback `host:port` where nothing listens (bound, then released).
pub async fn closed_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    addr.to_string()
}
