//! Bench: time from an alert accepted to its runbook's findings stored and
//! posted, for a runbook of 8 checks against loopback targets (issue 3).
//! Prints figures; asserts nothing.
//!
//! Run: `cargo bench --bench findings` (`-- --quick` for 50 alerts).
//!
//! Then a `sql` check against the local PostgreSQL
//! (`FIRSTLINE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; skipped with the reason
//! when it does not answer): the same `SELECT 1` observed one check after
//! another through `probe::observe` as a read-only role made for the run,
//! next to the query alone on a connection already open.
//!
//! The server is the real app (library `App`, console platform, SQLite in a
//! temp dir) on a loopback port; the targets are axum servers in the same
//! process answering at once, plus TCP listeners. For each alert (each opens
//! its own incident) the bench measures from the 200 answer to the findings
//! post being in the store, and subtracts the slowest check's own duration
//! (from the stored findings) to show firstline's own overhead.

use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::get;
use firstline::app::App;
use firstline::chat::console::Sink;
use firstline::probe::sql::SqlProbe;
use firstline::probe::{ProbeSpec, observe};
use firstline::store::IncidentFilter;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const RUNBOOK: &str = r#"
version = 1
id = "bench-eight-checks"
title = "ベンチ"
title_en = "Bench: eight checks"
severity = "P2"
source = { seed = "bench", section = "-" }

[match]
alertname = ["BenchFindings"]

[[checks]]
id = "summary"
title = "summary API"
probe = { kind = "http", target = "api", path = "/api/workflow-events/summary", query = { ym = "{{ ym }}" } }
expect = [{ path = "body.status", fail_if = "!= \"ok\"" }]

[[checks]]
id = "failed"
title = "failed events"
probe = { kind = "http", target = "api", path = "/api/workflow-events/summary" }
expect = [{ path = "body.by_status.failed", warn_if = "> 0", fail_if = "> 5" }]

[[checks]]
id = "health"
title = "health"
probe = { kind = "http", target = "api", path = "/health" }
expect = [{ path = "status", fail_if = "!= 200" }]

[[checks]]
id = "logs"
title = "execution logs"
probe = { kind = "http", target = "api", path = "/execution-logs", query = { queued_to_dlq = "true", limit = "100" } }
expect = [{ path = "status", fail_if = "!= 200" }]

[[checks]]
id = "dlq"
title = "worker_dlq_total"
probe = { kind = "metrics", target = "api", metric = "worker_dlq_total" }
expect = [{ path = "sum", fail_if = "> 100" }]

[[checks]]
id = "failures"
title = "worker_failure_total"
probe = { kind = "metrics", target = "api", metric = "worker_failure_total" }
expect = [{ path = "sum", fail_if = "> 100" }]

[[checks]]
id = "db"
title = "database port"
probe = { kind = "tcp", target = "db" }
expect = [{ path = "connected", fail_if = "!= true" }]

[[checks]]
id = "broker"
title = "broker port"
probe = { kind = "tcp", target = "broker" }
expect = [{ path = "connected", fail_if = "!= true" }]
"#;

async fn serve_targets() -> (String, String, String) {
    let app = axum::Router::new()
        .route(
            "/api/workflow-events/summary",
            get(|| async { Json(json!({"status": "ok", "by_status": {"success": 10, "failed": 1}})) }),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/execution-logs", get(|| async { Json(json!({"items": []})) }))
        .route(
            "/metrics",
            get(|| async { "worker_dlq_total{workflow_id=\"a\"} 3\nworker_failure_total 7\nworker_success_total 90\n" }),
        );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind http target");
    let http_addr = http.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(http, app).await;
    });
    let mut tcp = Vec::new();
    for _ in 0..2 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp target");
        tcp.push(l.local_addr().expect("addr").to_string());
        tokio::spawn(async move {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            }
        });
    }
    (
        format!("http://{http_addr}"),
        tcp[0].clone(),
        tcp[1].clone(),
    )
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 50 } else { 300 };
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench.toml"), RUNBOOK)?;
    let (api, db, broker) = serve_targets().await;
    let env = vec![
        ("FIRSTLINE_SERVER__LISTEN", "127.0.0.1:0".to_string()),
        (
            "FIRSTLINE_STORE__URL",
            format!("sqlite://{}", dir.path().join("bench.db").display()),
        ),
        ("FIRSTLINE_CHAT__CONSOLE_STDIN", "false".into()),
        ("FIRSTLINE_LOG__LEVEL", "warn".into()),
        ("FIRSTLINE_OUTBOX__POLL_INTERVAL_MS", "1000".into()),
        ("FIRSTLINE_RUNBOOKS__BUNDLED", "false".into()),
        (
            "FIRSTLINE_RUNBOOKS__DIRS",
            format!("[\"{}\"]", dir.path().display()),
        ),
        ("FIRSTLINE_RUNBOOKS__CONCURRENCY", "8".into()),
        ("FIRSTLINE_TARGETS__API__KIND", "http".into()),
        ("FIRSTLINE_TARGETS__API__BASE_URL", api),
        ("FIRSTLINE_TARGETS__DB__KIND", "tcp".into()),
        ("FIRSTLINE_TARGETS__DB__ADDRESS", db),
        ("FIRSTLINE_TARGETS__BROKER__KIND", "tcp".into()),
        ("FIRSTLINE_TARGETS__BROKER__ADDRESS", broker),
    ];
    let config =
        firstline::config::load_with_env(None, env.into_iter().map(|(k, v)| (k.to_string(), v)))
            .map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
    let app = App::build(config, Sink::Silent).await?;
    let base = format!("http://{}", app.local_addr()?);
    let store = app.store().clone();
    tokio::spawn(async move {
        let _ = app.run(std::future::pending()).await;
    });
    let client = reqwest::Client::new();

    let mut total = Vec::with_capacity(n);
    let mut overhead = Vec::with_capacity(n);
    let mut slowest_check = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({
            "version": "4", "groupKey": format!("bench-{i}"), "status": "firing", "receiver": "bench",
            "alerts": [{"status": "firing", "labels": {"alertname": "BenchFindings", "service": format!("svc-{i}")},
                        "annotations": {}, "startsAt": "2026-11-23T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": format!("bench-{i}")}],
        });
        let r = client
            .post(format!("{base}/hooks/alertmanager"))
            .json(&body)
            .send()
            .await?;
        let accepted = Instant::now();
        anyhow::ensure!(r.status() == 200, "alert {i} answered {}", r.status());
        // The answer counts alerts but names no incident (it is made after
        // the answer, from the journal): find it by its service label.
        let service = format!("svc-{i}");
        let mut incident = None;
        let deadline = accepted + Duration::from_secs(30);
        loop {
            if incident.is_none() {
                incident = store
                    .incidents(IncidentFilter::All, 5)
                    .await?
                    .into_iter()
                    .find(|inc| inc.labels.get("service") == Some(&service))
                    .map(|inc| inc.id);
            }
            let posts = match incident {
                Some(id) => store.chat_posts(Some(id), 10).await?,
                None => Vec::new(),
            };
            if let Some(incident) = incident
                && posts.iter().any(|p| p.text.starts_with("🔎"))
            {
                let t = accepted.elapsed().as_secs_f64() * 1000.0;
                let timeline = store.timeline_page(incident, 0, 10_000).await?;
                let slowest = timeline
                    .iter()
                    .find(|e| e.kind == "findings")
                    .and_then(|e| e.data["findings"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|f| f["duration_ms"].as_f64())
                    .fold(0.0, f64::max);
                total.push(t);
                slowest_check.push(slowest);
                overhead.push((t - slowest).max(0.0));
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no findings for the incident of {service} after 30 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    for v in [&mut total, &mut overhead, &mut slowest_check] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!(
        "findings bench: {n} alerts, each opening an incident whose runbook has 8 checks (4 http, 2 metrics, 2 tcp) against loopback targets; SQLite; {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("{:<44} {:>9} {:>9} {:>9}", "", "p50", "p99", "max");
    for (name, v) in [
        ("alert accepted -> findings stored and posted", &total),
        ("slowest check's own duration", &slowest_check),
        ("firstline overhead (total - slowest check)", &overhead),
    ] {
        println!(
            "{name:<44} {:>6.1} ms {:>6.1} ms {:>6.1} ms",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    println!(
        "(the poll for the post adds up to 0.2 ms; the slowest check is rounded down to whole ms)"
    );
    sql_check(n).await;
    Ok(())
}

/// `n` observations of a `sql` check (`SELECT 1`) against the local
/// PostgreSQL as a read-only role made for the run, printed beside the
/// query alone on an open connection. Prints why when skipped.
async fn sql_check(n: usize) {
    let admin_url = std::env::var("FIRSTLINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let shown = firstline::text::redact_url(&admin_url);
    let mut admin =
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&admin_url)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                println!("sql check: skipped: cannot connect to {shown}: {e}");
                return;
            }
            Err(_) => {
                println!("sql check: skipped: {shown} did not answer within 5 s");
                return;
            }
        };
    let options = match PgConnectOptions::from_str(&admin_url) {
        Ok(o) => o,
        Err(e) => {
            println!("sql check: skipped: {shown} is not a postgres url: {e}");
            return;
        }
    };
    let role = format!("firstline_bench_ro_{}", std::process::id());
    let made = sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN; GRANT pg_read_all_data TO {role}"
    )))
    .execute(&mut admin)
    .await;
    if let Err(e) = made {
        println!("sql check: skipped: cannot create the read-only role {role}: {e}");
        return;
    }
    let url = format!(
        "postgres://{role}@{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    );
    let result = sql_figures(&url, n).await;
    let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {role}")))
        .execute(&mut admin)
        .await;
    if let Err(e) = result {
        println!("sql check: failed: {e}");
    }
}

async fn sql_figures(url: &str, n: usize) -> anyhow::Result<()> {
    let config = firstline::config::load_with_env(
        None,
        [
            ("FIRSTLINE_TARGETS__PG__KIND", "postgres"),
            ("FIRSTLINE_TARGETS__PG__URL", url),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string())),
    )
    .map_err(|e| anyhow::anyhow!("sql bench config: {e}"))?;
    let target = config
        .targets
        .get("pg")
        .ok_or_else(|| anyhow::anyhow!("sql bench config has no target pg"))?
        .clone();
    let spec = ProbeSpec::Sql(SqlProbe {
        target: "pg".into(),
        query: "SELECT 1".into(),
        max_rows: 50,
    });
    let timeout = Duration::from_secs(5);
    let started = Instant::now();
    observe(&spec, &target, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("first sql check: {e}"))?;
    let first = started.elapsed().as_secs_f64() * 1000.0;
    let mut checks = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        observe(&spec, &target, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("sql check: {e}"))?;
        checks.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut conn = PgConnection::connect(url).await?;
    let mut alone = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        alone.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = conn.close().await;
    for v in [&mut checks, &mut alone] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!(
        "sql check: {n} + 1 checks of SELECT 1, one after another, against {} as a read-only role",
        firstline::text::redact_url(url)
    );
    println!("{:<44} {:>9} {:>9} {:>9}", "", "p50", "p99", "max");
    println!(
        "{:<44} {first:>6.2} ms",
        "first check (opens the connection)"
    );
    for (name, v) in [
        ("each further check (probe::observe)", &checks),
        ("the query alone on an open connection", &alone),
    ] {
        println!(
            "{name:<44} {:>6.2} ms {:>6.2} ms {:>6.2} ms",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    Ok(())
}
