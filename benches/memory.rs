//! Memory benchmark: how much memory the real `firstline serve` holds
//! after starting on a store with a long history, and after taking large
//! request bodies.
//!
//! ```text
//! cargo bench --bench memory                          # 1,000,000 stored alerts, 100 bodies of ~1 MB
//! cargo bench --bench memory -- --quick               # 100,000 stored alerts, 20 bodies
//! cargo bench --bench memory -- --alerts 5000000 --bodies 200
//! ```
//!
//! Like the intake bench, cargo builds the release binary (`firstline`)
//! and this bench starts it as a child process (`firstline serve` on a
//! free loopback port, a SQLite store in a temp dir, settings through
//! `FIRSTLINE_*` variables), waits for `GET /readyz` and reads the
//! server's resident set (VmRSS, and its peak VmHWM) from
//! `/proc/<pid>/status` (Linux only).
//!
//! 1. Start-up with history. The server starts on a fresh file (creating
//!    the schema), is stopped, started again on the same empty store, and
//!    stopped; then `--alerts` alerts are inserted straight into the
//!    SQLite file and it is started a third time. For each start: the time
//!    from spawn to the first 200 from `/readyz`, VmRSS then, 5 s and 15 s
//!    later, the peak, and how long the background load of the dedup
//!    filter took (the server's `elapsed_ms`, logged at info level once
//!    the filter holds the stored alerts).
//! 2. Memory after big bodies. On a fresh store: idle VmRSS; then
//!    `--bodies` POSTs of ~1 MB each to `/hooks/generic`, 20 in flight at
//!    a time (all should answer 200; others are counted and printed); then
//!    VmRSS once `/metrics` shows `firstline_intake_backlog 0` (everything
//!    applied), 10 s and 30 s after that.
//!
//! Figures are printed, nothing is asserted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sqlx::Connection;
use tokio::task::JoinSet;

const DEFAULT_ALERTS: u64 = 1_000_000;
const DEFAULT_BODIES: usize = 100;
const QUICK_ALERTS: u64 = 100_000;
const QUICK_BODIES: usize = 20;
/// Requests of scenario 2 in flight at once.
const CONCURRENCY: usize = 20;
/// Characters of the `description` of a big body.
const DESCRIPTION_CHARS: usize = 1_000_000;
/// The server's default `server.max_body_bytes`; bodies stay below it.
const MAX_BODY_BYTES: usize = 1_048_576;
/// When VmRSS is read after a start, counted from the first 200 of `/readyz`.
const AFTER_START: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(15)];
/// When VmRSS is read after the big bodies, counted from the drained backlog.
const AFTER_DRAIN: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(30)];
/// The server's log line once the dedup filter holds the stored alerts.
const FILTER_LOADED: &str = "dedup filter loaded from the stored alerts";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const FILTER_LOG_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "usage: cargo bench --bench memory [-- [--quick] [--alerts N] [--bodies N]]";

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("memory bench: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("memory bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Options

struct Options {
    alerts: u64,
    bodies: usize,
    quick: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let (mut alerts, mut bodies, mut quick) = (None, None, false);
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--alerts" => alerts = Some(number(&arg, args.next())?),
                "--bodies" => bodies = Some(number(&arg, args.next())?),
                // Cargo appends `--bench` when it runs a harness-less bench.
                "--bench" => {}
                "-h" | "--help" => {
                    bail!("measures the server's memory at start-up and after big bodies")
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        let (default_alerts, default_bodies) = if quick {
            (QUICK_ALERTS, QUICK_BODIES)
        } else {
            (DEFAULT_ALERTS, DEFAULT_BODIES)
        };
        Ok(Options {
            alerts: alerts.unwrap_or(default_alerts),
            bodies: bodies.map_or(default_bodies, |n| n as usize),
            quick,
        })
    }
}

/// A whole number above 0 (`1_000_000` allowed).
fn number(flag: &str, value: Option<String>) -> Result<u64> {
    let value = value.unwrap_or_default();
    value
        .replace('_', "")
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("{flag} needs a whole number above 0, not {value:?}"))
}

fn print_header(binary: &Path, options: &Options) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&repo)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{c} (with uncommitted changes)"),
            _ => c,
        },
        None => "unknown (no git)".into(),
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("firstline memory benchmark");
    println!("binary:   {} serve", binary.display());
    println!("commit:   {commit}");
    println!("machine:  {cpus} CPUs (nproc)");
    println!(
        "options:  --alerts {} --bodies {}{}; bodies of {} bytes, {CONCURRENCY} in flight",
        options.alerts,
        options.bodies,
        if options.quick { " (--quick)" } else { "" },
        big_body(0, &"x".repeat(DESCRIPTION_CHARS)).len()
    );
    println!(
        "server:   env {} FIRSTLINE_SERVER__LISTEN=127.0.0.1:<free port> FIRSTLINE_STORE__URL=sqlite://<temp dir>/firstline.db",
        server_env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
}

// ---------------------------------------------------------------------------
// The whole run

async fn run(options: Options) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_firstline"));
    print_header(&binary, &options);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")?;

    let mut failed = Vec::new();
    println!(
        "== 1. start-up with history ({} stored alerts)",
        options.alerts
    );
    match startup_with_history(&binary, &client, options.alerts).await {
        Ok(rows) => print_starts(&rows),
        Err(e) => {
            println!("FAILED: {e:#}");
            failed.push("start-up with history");
        }
    }
    println!();
    println!(
        "== 2. memory after big bodies ({} POSTs of ~1 MB to /hooks/generic, {CONCURRENCY} in flight)",
        options.bodies
    );
    match big_bodies(&binary, &client, options.bodies).await {
        Ok(report) => report.print(),
        Err(e) => {
            println!("FAILED: {e:#}");
            failed.push("memory after big bodies");
        }
    }
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenario 1: start-up with history

/// One start of the server, measured.
struct Start {
    label: String,
    ready: Duration,
    rss_ready: Option<u64>,
    rss_after: Vec<Option<u64>>,
    hwm: Option<u64>,
    /// `(alerts, elapsed_ms)` of the server's dedup filter load, if logged.
    filter: Option<(Option<u64>, u64)>,
}

async fn startup_with_history(
    binary: &Path,
    client: &reqwest::Client,
    alerts: u64,
) -> Result<Vec<Start>> {
    let dir = tempfile::Builder::new()
        .prefix("firstline-bench-memory-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let db = dir.path().join("firstline.db");
    let mut rows = Vec::new();
    rows.push(measure_start(binary, &db, client, "fresh file (creates schema)", false).await?);
    rows.push(measure_start(binary, &db, client, "restart, 0 alerts", false).await?);
    let started = Instant::now();
    insert_history(&db, alerts).await?;
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "inserted {alerts} alerts in {:.1} s (database {:.0} MB)",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    rows.push(
        measure_start(
            binary,
            &db,
            client,
            &format!("restart, {alerts} alerts"),
            true,
        )
        .await?,
    );
    Ok(rows)
}

/// Starts the server on `db`, measures, and stops it.
async fn measure_start(
    binary: &Path,
    db: &Path,
    client: &reqwest::Client,
    label: &str,
    expect_filter: bool,
) -> Result<Start> {
    let mut server = Server::start(binary, db)?;
    let ready = server.wait_ready(client).await?;
    let rss_ready = server.memory().map(|m| m.rss_kb);
    let at_ready = Instant::now();
    let mut rss_after = Vec::new();
    for after in AFTER_START {
        tokio::time::sleep_until((at_ready + after).into()).await;
        server.ensure_alive()?;
        rss_after.push(server.memory().map(|m| m.rss_kb));
    }
    let hwm = server.memory().map(|m| m.hwm_kb);
    let mut filter = server.filter_load();
    let deadline = Instant::now() + FILTER_LOG_TIMEOUT;
    while expect_filter && filter.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.ensure_alive()?;
        filter = server.filter_load();
    }
    let start = Start {
        label: label.to_string(),
        ready,
        rss_ready,
        rss_after,
        hwm,
        filter,
    };
    println!(
        "{label}: ready after {} ms, VmRSS {}",
        start.ready.as_millis(),
        mb(start.rss_ready)
    );
    for line in server.warnings() {
        println!("  server: {line}");
    }
    server.stop().await?;
    Ok(start)
}

/// Inserts one incident and `n` firing Alertmanager alerts (distinct
/// fingerprints) into the stopped server's SQLite file.
async fn insert_history(db: &Path, n: u64) -> Result<()> {
    let url = format!("sqlite://{}", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    sqlx::raw_sql("PRAGMA synchronous = OFF")
        .execute(&mut conn)
        .await
        .context("PRAGMA synchronous")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis() as i64;
    let incident: i64 = sqlx::query_scalar(
        "INSERT INTO incidents (group_key, title, severity, state, labels, detected_ms, resolved_ms, updated_ms) \
         VALUES ('service=history', 'History', 'P3', 'resolved', '{\"service\":\"history\"}', ?1, ?1, ?1) RETURNING id",
    )
    .bind(now)
    .fetch_one(&mut conn)
    .await
    .context("inserting the incident")?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO alerts (incident_id, source, fingerprint, status, name, starts_ms, ends_ms, labels, annotations, generator_url, received_ms, updated_ms) \
         SELECT ?2, 'alertmanager', printf('%016x', i), 'firing', 'HistoryAlert', ?3 - i, NULL, \
                '{\"alertname\":\"HistoryAlert\",\"instance\":\"host-' || i || ':9100\",\"service\":\"history\",\"severity\":\"warning\"}', \
                '{\"summary\":\"HistoryAlert on host-' || i || '\"}', NULL, ?3, ?3 \
         FROM n",
    )
    .bind(n as i64)
    .bind(incident)
    .bind(now)
    .execute(&mut conn)
    .await
    .context("inserting the alerts")?;
    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .context("checkpointing")?;
    conn.close().await.context("closing the database")?;
    Ok(())
}

fn print_starts(rows: &[Start]) {
    println!();
    let after: Vec<String> = AFTER_START
        .iter()
        .map(|d| format!("RSS +{}s", d.as_secs()))
        .collect();
    println!(
        "{:<34} {:>9} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "start", "ready", "RSS ready", after[0], after[1], "peak", "filter load"
    );
    for r in rows {
        let filter = match r.filter {
            Some((_, ms)) => format!("{ms} ms"),
            None => "-".into(),
        };
        println!(
            "{:<34} {:>6} ms {:>10} {:>10} {:>10} {:>10} {:>12}",
            r.label,
            r.ready.as_millis(),
            mb(r.rss_ready),
            mb(r.rss_after[0]),
            mb(r.rss_after[1]),
            mb(r.hwm),
            filter
        );
    }
    println!(
        "ready: spawn to the first 200 from /readyz; RSS +Ns: N s after that; peak: VmHWM at the last reading; filter load: the server's elapsed_ms for the dedup filter (\"-\": not logged, nothing stored)"
    );
    for r in rows {
        if let Some((Some(alerts), _)) = r.filter {
            println!("{}: the filter was loaded with {alerts} alerts", r.label);
        }
    }
}

// ---------------------------------------------------------------------------
// Scenario 2: memory after big bodies

struct BigBodies {
    bodies: usize,
    body_bytes: usize,
    rss_idle: Option<u64>,
    sent_in: Duration,
    rss_sent: Option<u64>,
    drained_in: Option<Duration>,
    rss_drained: Option<u64>,
    rss_after: Vec<Option<u64>>,
    hwm: Option<u64>,
    ok: usize,
    /// Non-200 answers and failed requests, by status or error.
    errors: BTreeMap<String, usize>,
    warnings: Vec<String>,
}

async fn big_bodies(binary: &Path, client: &reqwest::Client, bodies: usize) -> Result<BigBodies> {
    let dir = tempfile::Builder::new()
        .prefix("firstline-bench-memory-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let mut server = Server::start(binary, &dir.path().join("firstline.db"))?;
    server.wait_ready(client).await?;
    // Let the start-up settle before calling it idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = server.memory().map(|m| m.rss_kb);

    let description = "x".repeat(DESCRIPTION_CHARS);
    let body_bytes = big_body(0, &description).len();
    if body_bytes >= MAX_BODY_BYTES {
        bail!("a body of {body_bytes} bytes would exceed the server's {MAX_BODY_BYTES}");
    }
    let url = format!("{}/hooks/generic", server.base_url);
    let started = Instant::now();
    let (mut ok, mut errors) = (0usize, BTreeMap::<String, usize>::new());
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    loop {
        while next < bodies && tasks.len() < CONCURRENCY {
            let request = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(big_body(next, &description));
            tasks.spawn(async move {
                match request.send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        Err(format!(
                            "HTTP {status}: {}",
                            text.chars().take(200).collect::<String>()
                        ))
                    }
                    Err(e) => Err(format!("request failed: {e}")),
                }
            });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined.context("a request task panicked")? {
            Ok(()) => ok += 1,
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    let sent_in = started.elapsed();
    server.ensure_alive()?;
    let rss_sent = server.memory().map(|m| m.rss_kb);

    let drained_in = wait_drained(client, &server.base_url).await;
    let rss_drained = server.memory().map(|m| m.rss_kb);
    let at_drained = Instant::now();
    let mut rss_after = Vec::new();
    for after in AFTER_DRAIN {
        tokio::time::sleep_until((at_drained + after).into()).await;
        server.ensure_alive()?;
        rss_after.push(server.memory().map(|m| m.rss_kb));
    }
    let report = BigBodies {
        bodies,
        body_bytes,
        rss_idle,
        sent_in,
        rss_sent,
        drained_in: drained_in.map(|_| at_drained - started),
        rss_drained,
        rss_after,
        hwm: server.memory().map(|m| m.hwm_kb),
        ok,
        errors,
        warnings: server.warnings(),
    };
    server.stop().await?;
    Ok(report)
}

/// `{"title":"Big-<i>","labels":{"service":"mem"},"description":"xxxx…"}`.
fn big_body(i: usize, description: &str) -> String {
    format!(r#"{{"title":"Big-{i}","labels":{{"service":"mem"}},"description":"{description}"}}"#)
}

/// Polls `/metrics` until `firstline_intake_backlog 0`; `None` on timeout.
async fn wait_drained(client: &reqwest::Client, base_url: &str) -> Option<()> {
    let url = format!("{base_url}/metrics");
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(r) = client.get(&url).send().await
            && let Ok(text) = r.text().await
            && text.lines().any(|l| {
                l.strip_prefix("firstline_intake_backlog ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    == Some(0.0)
            })
        {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

impl BigBodies {
    fn print(&self) {
        println!(
            "idle VmRSS {} ({} bodies of {} bytes each)",
            mb(self.rss_idle),
            self.bodies,
            self.body_bytes
        );
        println!(
            "sent:      {} answered 200 in {:.1} s; VmRSS {} after the last answer",
            self.ok,
            self.sent_in.as_secs_f64(),
            mb(self.rss_sent)
        );
        match self.drained_in {
            Some(d) => println!(
                "applied:   firstline_intake_backlog 0 at {:.1} s from the first request; VmRSS {}",
                d.as_secs_f64(),
                mb(self.rss_drained)
            ),
            None => println!(
                "applied:   backlog not 0 after {} s; VmRSS {}",
                DRAIN_TIMEOUT.as_secs(),
                mb(self.rss_drained)
            ),
        }
        for (after, rss) in AFTER_DRAIN.iter().zip(&self.rss_after) {
            println!(
                "{:<10} VmRSS {}",
                format!("+{} s:", after.as_secs()),
                mb(*rss)
            );
        }
        println!("peak:      VmHWM {}", mb(self.hwm));
        let failed: usize = self.errors.values().sum();
        println!("non-200:   {failed}");
        for (error, n) in &self.errors {
            println!("  {n} x {error}");
        }
        for line in &self.warnings {
            println!("  server: {line}");
        }
    }
}

// ---------------------------------------------------------------------------
// The server under test

/// Settings every server gets (listen and store URL are added per start).
fn server_env() -> [(&'static str, &'static str); 2] {
    [
        // The dedup filter's load is logged at info.
        ("FIRSTLINE_LOG__LEVEL", "info"),
        ("FIRSTLINE_CHAT__CONSOLE_STDIN", "false"),
    ]
}

/// A running `firstline serve`; killed when dropped, also on panic.
struct Server {
    child: Child,
    pid: u32,
    base_url: String,
    spawned: Instant,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts the server on a free port with its SQLite store at `db`; its
    /// stderr goes to a new file beside `db`.
    fn start(binary: &Path, db: &Path) -> Result<Server> {
        let dir = db.parent().context("the database has no directory")?;
        let port = free_port()?;
        let stderr_path = (0..)
            .map(|n| dir.join(format!("server-{n}.stderr")))
            .find(|p| !p.exists())
            .context("no free stderr file name")?;
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .current_dir(dir)
            .envs(server_env())
            .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FIRSTLINE_STORE__URL", format!("sqlite://{}", db.display()))
            // RUST_LOG would win over log.level.
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Server {
            pid: child.id(),
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            spawned,
            stderr_path,
        })
    }

    /// Waits for the first 200 from `GET /readyz`; the time since spawn.
    async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<Duration> {
        let url = format!("{}/readyz", self.base_url);
        loop {
            self.ensure_alive()?;
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(self.spawned.elapsed());
            }
            if self.spawned.elapsed() > READY_TIMEOUT {
                bail!(
                    "the server was not ready after {} s; its stderr ends with:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.stderr_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn ensure_alive(&mut self) -> Result<()> {
        match self.child.try_wait().context("cannot check the server")? {
            None => Ok(()),
            Some(status) => bail!(
                "the server exited ({status}); its stderr ends with:\n{}",
                self.stderr_tail(20)
            ),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `STOP_TIMEOUT`.
    async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .child
                .try_wait()
                .context("cannot check the server")?
                .is_some()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "  the server did not stop within {} s of SIGTERM; killed",
            STOP_TIMEOUT.as_secs()
        );
        Ok(())
    }

    fn memory(&self) -> Option<Memory> {
        Memory::of(self.pid)
    }

    fn stderr_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_default()
            .lines()
            .map(without_ansi)
            .collect()
    }

    /// `(alerts, elapsed_ms)` from the dedup filter's log line, if logged.
    fn filter_load(&self) -> Option<(Option<u64>, u64)> {
        let line = self
            .stderr_lines()
            .into_iter()
            .find(|l| l.contains(FILTER_LOADED))?;
        let field = |name: &str| {
            let at = line.find(name)? + name.len();
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        };
        Some((field(" alerts="), field("elapsed_ms=")?))
    }

    /// Warning and error lines the server logged (at most the last 5).
    fn warnings(&self) -> Vec<String> {
        let lines: Vec<String> = self
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(|l| l.chars().take(300).collect())
            .collect();
        lines[lines.len().saturating_sub(5)..].to_vec()
    }

    fn stderr_tail(&self, n: usize) -> String {
        let lines = self.stderr_lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `line` without terminal colour codes (`ESC [ … m`).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A port nobody listens on right now (bound, read, released).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener
        .local_addr()
        .context("cannot read the bound port")?
        .port())
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kb: u64,
    /// Peak resident set size ("high water mark").
    hwm_kb: u64,
}

impl Memory {
    /// Reads VmRSS and VmHWM from /proc/<pid>/status (Linux only).
    fn of(pid: u32) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(Memory {
            rss_kb: field("VmRSS:")?,
            hwm_kb: field("VmHWM:")?,
        })
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a".into(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    )
}
