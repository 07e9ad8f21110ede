//! Intake benchmark: how many Alertmanager alerts the real `firstline serve`
//! stores per second, and how long a sender waits for its 200.
//!
//! ```text
//! cargo bench --bench intake                     # SQLite and PostgreSQL, 10 s per scenario
//! cargo bench --bench intake -- --quick          # 3 s per scenario
//! cargo bench --bench intake -- --sqlite-only    # or --postgres-only
//! cargo bench --bench intake -- --paced-only --seconds 60   # the latency scenario alone, longer
//! ```
//!
//! For each backend a fresh server is started as a child process (fresh
//! SQLite file in a temp dir, or a fresh PostgreSQL database created and
//! dropped here), and three scenarios run against it:
//!
//! - `single`: 16 connections in a closed loop, one new alert per request;
//! - `batched`: the same with 50 alerts (one Alertmanager group) per request;
//! - `paced`: open loop at 1,000 requests/s of one alert each, latency
//!   measured from the scheduled send time (no coordinated omission).
//!
//! Every alert is new (unique fingerprint and `startsAt`), so each one is
//! stored. Figures are printed, nothing is asserted. PostgreSQL is reached
//! at `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `FIRSTLINE_TEST_POSTGRES_URL` says otherwise; if it cannot be reached,
//! that backend is skipped. Other `FIRSTLINE_SECTION__KEY` variables in the
//! environment are passed on to the server (e.g. to compare
//! `FIRSTLINE_STORE__SQLITE_SYNCHRONOUS=normal`) and printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;
use sqlx::Connection;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Concurrent connections of the closed-loop scenarios.
const CONNECTIONS: usize = 16;
/// Alerts per request in the batched scenario.
const BATCH: usize = 50;
/// Distinct `service` label values, hence incidents the alerts join.
const SERVICES: u64 = 50;
/// Requests per second of the paced scenario.
const PACED_RATE: u64 = 1_000;
/// Requests the paced scenario may have in flight before the pacer waits
/// (waiting is still counted: latency runs from the scheduled time).
const MAX_IN_FLIGHT: usize = 512;
/// Load before the measured window of every scenario.
const WARMUP: Duration = Duration::from_secs(1);
/// Measured window per scenario.
const DURATION: Duration = Duration::from_secs(10);
const QUICK_DURATION: Duration = Duration::from_secs(3);
/// Safety bound on the requests of one closed-loop connection.
const MAX_REQUESTS_PER_CONNECTION: u64 = 5_000_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Linux reports process CPU time in these ticks per second (USER_HZ).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

const USAGE: &str = "usage: cargo bench --bench intake [-- [--quick | --seconds N] [--sqlite-only | --postgres-only] [--paced-only]]";

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("intake bench: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("intake bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("intake bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Options and settings

struct Options {
    /// The measured window of every scenario.
    duration: Duration,
    sqlite: bool,
    postgres: bool,
    /// Skip the closed-loop scenarios: a long paced run on its own shows
    /// the rare stalls that set its p99.
    paced_only: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            duration: DURATION,
            sqlite: true,
            postgres: true,
            paced_only: false,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.duration = QUICK_DURATION,
                "--seconds" => {
                    let value = args.next().unwrap_or_default();
                    let secs: u64 = value.parse().ok().filter(|s| *s > 0).with_context(|| {
                        format!("--seconds needs a whole number above 0, not {value:?}")
                    })?;
                    options.duration = Duration::from_secs(secs);
                }
                "--paced-only" => options.paced_only = true,
                "--sqlite-only" => options.postgres = false,
                "--postgres-only" => options.sqlite = false,
                // Cargo appends `--bench` when it runs a harness-less bench.
                "--bench" => {}
                "-h" | "--help" => bail!("runs the intake scenarios against a real server"),
                other => bail!("unknown argument {other:?}"),
            }
        }
        if !options.sqlite && !options.postgres {
            bail!("--sqlite-only and --postgres-only exclude each other");
        }
        Ok(options)
    }
}

/// The environment overrides every server gets (listen and store URL are
/// added per run).
fn fixed_overrides() -> Vec<(String, String)> {
    [
        ("FIRSTLINE_LOG__LEVEL", "warn"),
        ("FIRSTLINE_CHAT__CONSOLE_STDIN", "false"),
        ("FIRSTLINE_INTAKE__MAX_RECEIPTS", "10000000"),
        ("FIRSTLINE_INTAKE__QUEUE_CAPACITY", "100000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Settings variables (`FIRSTLINE_…__…`) inherited from our environment,
/// other than the ones the bench sets itself.
fn inherited_overrides() -> Vec<(String, String)> {
    let ours = ["SERVER__LISTEN", "STORE__URL"];
    let fixed = fixed_overrides();
    std::env::vars()
        .filter(|(k, _)| {
            let upper = k.to_ascii_uppercase();
            upper
                .strip_prefix("FIRSTLINE_")
                .is_some_and(|rest| rest.contains("__") && !ours.contains(&rest))
                && !fixed.iter().any(|(f, _)| f.eq_ignore_ascii_case(k))
        })
        .collect()
}

/// Prints the machine and the settings the servers will run with, as the
/// server itself will read them.
fn print_settings(options: &Options, binary: &Path, bodies: &BodyCost) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.extend(fixed_overrides());
    env.push(("FIRSTLINE_SERVER__LISTEN".into(), "127.0.0.1:8080".into()));
    env.push(("FIRSTLINE_STORE__URL".into(), "sqlite://bench.db".into()));
    let config = firstline::config::load_with_env(None, env)
        .map_err(|e| anyhow::anyhow!("the server would refuse its settings:\n{e}"))?;
    let s = &config.settings;

    println!(
        "firstline intake benchmark{}",
        if options.paced_only {
            " (--paced-only)"
        } else {
            ""
        }
    );
    println!("machine:  {cpus} CPUs (nproc), {model}; the client and the server share them");
    println!("server:   {} serve", binary.display());
    println!(
        "          env: {}",
        fixed_overrides()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "          env: FIRSTLINE_SERVER__LISTEN=127.0.0.1:<free port> FIRSTLINE_STORE__URL=<fresh SQLite file | fresh PostgreSQL database>"
    );
    for (k, v) in inherited_overrides() {
        println!("          env (inherited): {k}={v}");
    }
    println!(
        "          store.max_connections={} store.batch_max={} store.sqlite_synchronous={} intake.queue_capacity={} intake.max_receipts={}",
        s.store.max_connections,
        s.store.batch_max,
        s.store.sqlite_synchronous,
        s.intake.queue_capacity,
        s.intake.max_receipts
    );
    println!(
        "load:     {} s warm-up, then {} s measured per scenario; single: {CONNECTIONS} connections x 1 alert; batched: {CONNECTIONS} connections x {BATCH} alerts; paced: {PACED_RATE} req/s x 1 alert, open loop, at most {MAX_IN_FLIGHT} in flight",
        WARMUP.as_secs(),
        options.duration.as_secs()
    );
    println!(
        "          every alert new (unique fingerprint and startsAt), alertname=BenchAlert, service=svc-0..svc-{}, severity=warning",
        SERVICES - 1
    );
    println!(
        "bodies:   spliced into pre-serialised templates (no JSON serialisation while measuring): {:.1} us per 1-alert body ({} B), {:.1} us per {BATCH}-alert body ({} B)",
        bodies.single_us, bodies.single_bytes, bodies.batch_us, bodies.batch_bytes
    );
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------
// The whole run

async fn run(options: Options) -> Result<()> {
    // sqlx's TLS (PostgreSQL `sslmode=prefer`) needs a rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_firstline"));
    let cost = BodyMaker::new().check_and_measure()?;
    print_settings(&options, &binary, &cost)?;
    let maker = Arc::new(BodyMaker::new());

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    if options.sqlite {
        match bench_backend("sqlite", None, &binary, &options, &maker).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                println!("sqlite: FAILED: {e:#}");
                failures.push("sqlite");
            }
        }
    }
    if options.postgres {
        let admin = std::env::var("FIRSTLINE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_string());
        match PgDatabase::create(&admin).await {
            Err(e) => println!(
                "postgres: skipped ({} unreachable or refused: {e:#})",
                firstline::text::redact_url(&admin)
            ),
            Ok(mut db) => {
                println!(
                    "postgres: fresh database {} at {}",
                    db.name,
                    firstline::text::redact_url(&admin)
                );
                let result =
                    bench_backend("postgres", Some(&db.url), &binary, &options, &maker).await;
                if let Err(e) = db.drop_now().await {
                    println!("postgres: could not drop database {}: {e:#}", db.name);
                }
                match result {
                    Ok(report) => reports.push(report),
                    Err(e) => {
                        println!("postgres: FAILED: {e:#}");
                        failures.push("postgres");
                    }
                }
            }
        }
    }

    print_table(&reports);
    if !failures.is_empty() {
        bail!("the run failed for: {}", failures.join(", "));
    }
    Ok(())
}

/// Everything measured on one backend.
struct BackendReport {
    backend: &'static str,
    scenarios: Vec<ScenarioResult>,
    idle_rss_kb: Option<u64>,
    peak_rss_kb: Option<u64>,
    end_rss_kb: Option<u64>,
    server_warnings: Vec<String>,
}

async fn bench_backend(
    backend: &'static str,
    postgres_url: Option<&str>,
    binary: &Path,
    options: &Options,
    maker: &Arc<BodyMaker>,
) -> Result<BackendReport> {
    let mut server = Server::start(binary, postgres_url)?;
    server.wait_ready().await?;
    let idle_rss_kb = server.memory().map(|m| m.rss_kb);
    println!(
        "{backend}: server pid {} ready at {}, idle RSS {}",
        server.pid,
        server.base_url,
        mb(idle_rss_kb)
    );

    let duration = options.duration;
    let mut scenarios = Vec::new();
    let plans = [
        (format!("single ({CONNECTIONS} conn)"), 1),
        (format!("batched ({CONNECTIONS}x{BATCH})"), BATCH),
    ];
    for (name, alerts) in plans.into_iter().filter(|_| !options.paced_only) {
        let cpu = CpuClock::start(server.pid);
        let mut result =
            closed_loop(&server.base_url, CONNECTIONS, alerts, maker, duration).await?;
        result.name = name;
        result.cpu = cpu.stop();
        result.drain = wait_applied(&server.base_url).await;
        println!("{backend}: {}", result.summary());
        scenarios.push(result);
        server.ensure_alive()?;
    }
    let cpu = CpuClock::start(server.pid);
    let mut result = paced(&server.base_url, PACED_RATE, maker, duration).await?;
    result.name = format!("paced {PACED_RATE}/s");
    result.cpu = cpu.stop();
    result.drain = wait_applied(&server.base_url).await;
    println!("{backend}: {}", result.summary());
    scenarios.push(result);
    server.ensure_alive()?;

    let memory = server.memory();
    let server_warnings = server.warnings();
    Ok(BackendReport {
        backend,
        scenarios,
        idle_rss_kb,
        peak_rss_kb: memory.map(|m| m.hwm_kb),
        end_rss_kb: memory.map(|m| m.rss_kb),
        server_warnings,
    })
}

// ---------------------------------------------------------------------------
// The server under test

/// A running `firstline serve`; killed when dropped, also on panic.
struct Server {
    child: Child,
    pid: u32,
    base_url: String,
    stderr_path: PathBuf,
    // Declared last: removed after the child is gone.
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts the server on a free port with a fresh SQLite file in a temp
    /// dir, or on `postgres_url`.
    fn start(binary: &Path, postgres_url: Option<&str>) -> Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("firstline-bench-")
            .tempdir()
            .context("cannot create a temp dir for the server")?;
        let port = free_port()?;
        let store_url = match postgres_url {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", dir.path().join("bench.db").display()),
        };
        let stderr_path = dir.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .current_dir(dir.path())
            .envs(fixed_overrides())
            .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FIRSTLINE_STORE__URL", &store_url)
            // RUST_LOG would win over log.level and flood stderr.
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Server {
            pid: child.id(),
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            stderr_path,
            _dir: dir,
        })
    }

    /// Waits for `GET /readyz` to answer 200.
    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .context("cannot build the HTTP client")?;
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.ensure_alive()?;
            if let Ok(r) = client.get(&url).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server was not ready after {} s; its stderr ends with:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.stderr_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn ensure_alive(&mut self) -> Result<()> {
        match self
            .child
            .try_wait()
            .context("cannot check the server process")?
        {
            None => Ok(()),
            Some(status) => bail!(
                "the server exited ({status}); its stderr ends with:\n{}",
                self.stderr_tail(20)
            ),
        }
    }

    fn memory(&self) -> Option<Memory> {
        Memory::of(self.pid)
    }

    /// Warning and error lines the server logged (at most the last 5).
    fn warnings(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(without_ansi)
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(|l| match l.char_indices().nth(400) {
                Some((at, _)) => format!("{}…", &l[..at]),
                None => l,
            })
            .collect();
        let skip = lines.len().saturating_sub(5);
        let mut out: Vec<String> = lines[skip..].to_vec();
        if skip > 0 {
            out.insert(
                0,
                format!("({} warning/error lines in all; last 5:)", lines.len()),
            );
        }
        out
    }

    fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
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
            // Skip up to and including the final letter of the sequence.
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

/// CPU time over a scenario, from /proc (Linux only), to see who used the
/// shared cores: the server, PostgreSQL's processes, this bench, and
/// everything else on the machine (which makes the figures pessimistic).
struct CpuClock {
    server_pid: u32,
    started: Instant,
    before: CpuTicks,
}

#[derive(Debug, Clone, Copy)]
struct CpuTicks {
    server: Option<u64>,
    postgres: Option<u64>,
    bench: Option<u64>,
    machine: Option<u64>,
}

impl CpuTicks {
    fn now(server_pid: u32) -> CpuTicks {
        CpuTicks {
            server: process_ticks(&server_pid.to_string()),
            postgres: postgres_ticks(),
            bench: process_ticks("self"),
            machine: machine_busy_ticks(),
        }
    }
}

/// Average cores busy over a scenario.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    server: Option<f64>,
    postgres: Option<f64>,
    bench: Option<f64>,
    /// The machine's busy time not accounted for by the three above.
    other: Option<f64>,
}

impl CpuClock {
    fn start(server_pid: u32) -> CpuClock {
        CpuClock {
            server_pid,
            started: Instant::now(),
            before: CpuTicks::now(server_pid),
        }
    }

    fn stop(self) -> CpuUse {
        let after = CpuTicks::now(self.server_pid);
        let secs = self.started.elapsed().as_secs_f64();
        let cores = |before: Option<u64>, after: Option<u64>| match (before, after) {
            (Some(b), Some(a)) if secs > 0.0 => {
                Some(a.saturating_sub(b) as f64 / CLOCK_TICKS_PER_SEC / secs)
            }
            _ => None,
        };
        let server = cores(self.before.server, after.server);
        let postgres = cores(self.before.postgres, after.postgres);
        let bench = cores(self.before.bench, after.bench);
        let other = match (cores(self.before.machine, after.machine), server, bench) {
            (Some(m), Some(s), Some(b)) => Some((m - s - b - postgres.unwrap_or(0.0)).max(0.0)),
            _ => None,
        };
        CpuUse {
            server,
            postgres,
            bench,
            other,
        }
    }
}

/// utime + stime of a process, in clock ticks, and its command name.
fn process_stat(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn process_ticks(pid: &str) -> Option<u64> {
    process_stat(pid).map(|(_, ticks)| ticks)
}

/// CPU ticks of all processes named `postgres` (server and backends; a
/// backend that exits during a scenario takes its ticks with it).
fn postgres_ticks() -> Option<u64> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|pid| process_stat(&pid))
            .filter(|(name, _)| name == "postgres")
            .map(|(_, ticks)| ticks)
            .sum(),
    )
}

/// Busy (not idle, not waiting for IO) clock ticks of all CPUs since boot.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice],
    // guest time being already counted in user.
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - ticks.get(3)? - ticks.get(4)?)
}

// ---------------------------------------------------------------------------
// PostgreSQL: one fresh database per run

struct PgDatabase {
    admin_url: String,
    name: String,
    /// The database's own URL, for the server.
    url: String,
    dropped: bool,
}

impl PgDatabase {
    async fn create(admin_url: &str) -> Result<PgDatabase> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_nanos();
        let name = format!("firstline_bench_{nanos}");
        let mut conn = admin_connection(admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = conn.close().await;
        Ok(PgDatabase {
            url: with_database(admin_url, &name)?,
            admin_url: admin_url.to_string(),
            name,
            dropped: false,
        })
    }

    async fn drop_now(&mut self) -> Result<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for PgDatabase {
    /// After a panic: drop the database from a thread with its own runtime.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let outcome = std::thread::spawn(move || -> Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a runtime to drop the database")?
                .block_on(drop_database(&admin, &name))
        })
        .join();
        if !matches!(outcome, Ok(Ok(()))) {
            eprintln!(
                "postgres: could not drop database {}; drop it by hand",
                self.name
            );
        }
    }
}

async fn admin_connection(admin_url: &str) -> Result<sqlx::PgConnection> {
    tokio::time::timeout(PG_CONNECT_TIMEOUT, sqlx::PgConnection::connect(admin_url))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", PG_CONNECT_TIMEOUT.as_secs()))?
        .context("cannot connect")
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = admin_connection(admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .with_context(|| format!("DROP DATABASE {name}"))?;
    let _ = conn.close().await;
    Ok(())
}

/// `url` with its database (path) replaced by `name`, query kept.
fn with_database(url: &str, name: &str) -> Result<String> {
    let authority = url
        .find("://")
        .with_context(|| format!("{} is not a URL", firstline::text::redact_url(url)))?
        + 3;
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let path = main[authority..]
        .find('/')
        .map_or(main.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &main[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Request bodies

/// Per-request values spliced into a pre-serialised body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The JSON string `"@@alerts@@"`, replaced by the alert objects.
    Alerts,
    Service,
    Fingerprint,
    StartsAt,
    Instance,
}

const MARKERS: [(&str, Slot); 5] = [
    ("\"@@alerts@@\"", Slot::Alerts),
    ("@@service@@", Slot::Service),
    ("@@fingerprint@@", Slot::Fingerprint),
    ("@@starts_at@@", Slot::StartsAt),
    ("@@instance@@", Slot::Instance),
];

/// A JSON document serialised once, split at its markers.
struct Template {
    /// Literal text; one more piece than there are slots.
    text: Vec<String>,
    slots: Vec<Slot>,
}

impl Template {
    fn compile(value: &serde_json::Value) -> Template {
        let mut rest = value.to_string();
        let (mut text, mut slots) = (Vec::new(), Vec::new());
        loop {
            let next = MARKERS
                .iter()
                .filter_map(|(marker, slot)| rest.find(marker).map(|at| (at, marker.len(), *slot)))
                .min_by_key(|(at, _, _)| *at);
            let Some((at, len, slot)) = next else { break };
            text.push(rest[..at].to_string());
            slots.push(slot);
            rest = rest[at + len..].to_string();
        }
        text.push(rest);
        Template { text, slots }
    }

    fn render(&self, out: &mut String, fill: &mut dyn FnMut(Slot, &mut String)) {
        for (text, slot) in self.text.iter().zip(&self.slots) {
            out.push_str(text);
            fill(*slot, out);
        }
        if let Some(last) = self.text.last() {
            out.push_str(last);
        }
    }
}

/// Makes Alertmanager v4 webhook bodies, every alert new: alert number `n`
/// has a fingerprint and an instance of its own and starts `n` ms after
/// midnight yesterday (UTC).
struct BodyMaker {
    single: Template,
    group: Template,
    alert: Template,
    /// `YYYY-MM-DD` of yesterday.
    day: String,
    next_alert: AtomicU64,
    next_request: AtomicU64,
}

impl BodyMaker {
    fn new() -> BodyMaker {
        let labels = json!({
            "alertname": "BenchAlert",
            "instance": "@@instance@@",
            "job": "node",
            "service": "svc-@@service@@",
            "severity": "warning",
        });
        let annotations = json!({
            "summary": "BenchAlert on svc-@@service@@",
            "description": "Synthetic alert @@fingerprint@@ on @@instance@@ from the firstline intake benchmark.",
        });
        let alert = json!({
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": "@@starts_at@@",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.bench.local:9090/graph?g0.expr=up%7Bjob%3D%22node%22%7D+%3D%3D+0&g0.tab=1",
            "fingerprint": "@@fingerprint@@",
        });
        let envelope = |common_labels: serde_json::Value, common_annotations: serde_json::Value| {
            json!({
                "version": "4",
                "groupKey": "{}:{alertname=\"BenchAlert\", service=\"svc-@@service@@\"}",
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "firstline",
                "groupLabels": {"alertname": "BenchAlert", "service": "svc-@@service@@"},
                "commonLabels": common_labels,
                "commonAnnotations": common_annotations,
                "externalURL": "http://alertmanager.bench.local:9093",
                "alerts": ["@@alerts@@"],
            })
        };
        // With one alert everything is common; in a group, what all share.
        let single = envelope(labels.clone(), annotations.clone());
        let group = envelope(
            json!({"alertname": "BenchAlert", "job": "node", "service": "svc-@@service@@", "severity": "warning"}),
            json!({"summary": "BenchAlert on svc-@@service@@"}),
        );
        BodyMaker {
            single: Template::compile(&single),
            group: Template::compile(&group),
            alert: Template::compile(&alert),
            day: (chrono::Utc::now() - chrono::Duration::days(1))
                .format("%Y-%m-%d")
                .to_string(),
            next_alert: AtomicU64::new(0),
            next_request: AtomicU64::new(0),
        }
    }

    /// A body of `alerts` new alerts of one group (one service).
    fn render(&self, alerts: usize) -> String {
        let first = self.next_alert.fetch_add(alerts as u64, Ordering::Relaxed);
        let service = self.next_request.fetch_add(1, Ordering::Relaxed) % SERVICES;
        let envelope = if alerts == 1 {
            &self.single
        } else {
            &self.group
        };
        let mut out = String::with_capacity(600 + 900 * alerts);
        envelope.render(&mut out, &mut |slot, out| {
            if slot == Slot::Alerts {
                for i in 0..alerts {
                    if i > 0 {
                        out.push(',');
                    }
                    self.alert.render(out, &mut |slot, out| {
                        self.fill(slot, first + i as u64, service, out);
                    });
                }
            } else {
                self.fill(slot, first, service, out);
            }
        });
        out
    }

    fn fill(&self, slot: Slot, n: u64, service: u64, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = match slot {
            Slot::Alerts => Ok(()),
            Slot::Service => write!(out, "{service}"),
            // An odd multiplier is a bijection on u64: unique, random-looking.
            Slot::Fingerprint => write!(out, "{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            Slot::Instance => write!(
                out,
                "10.{}.{}.{}:9100",
                (n >> 16) & 0xff,
                (n >> 8) & 0xff,
                n & 0xff
            ),
            Slot::StartsAt => {
                let ms = n % 86_400_000;
                write!(
                    out,
                    "{}T{:02}:{:02}:{:02}.{:03}Z",
                    self.day,
                    ms / 3_600_000,
                    ms / 60_000 % 60,
                    ms / 1000 % 60,
                    ms % 1000
                )
            }
        };
    }

    /// Checks that bodies are what the server's own Alertmanager parser
    /// accepts, and measures what making one costs the client.
    fn check_and_measure(&self) -> Result<BodyCost> {
        for alerts in [1, BATCH] {
            let body = self.render(alerts);
            let value: serde_json::Value = serde_json::from_str(&body)
                .with_context(|| format!("a {alerts}-alert body is not JSON: {body}"))?;
            for field in [
                "version",
                "groupKey",
                "status",
                "receiver",
                "groupLabels",
                "commonLabels",
                "commonAnnotations",
                "externalURL",
                "alerts",
            ] {
                if value.get(field).is_none() {
                    bail!("a {alerts}-alert body lacks {field}: {body}");
                }
            }
            let parsed = firstline::intake::alertmanager::parse(body.as_bytes())
                .map_err(|e| anyhow::anyhow!("firstline refuses a {alerts}-alert body: {e}"))?;
            if parsed.alerts.len() != alerts {
                bail!(
                    "a {alerts}-alert body parsed as {} alerts",
                    parsed.alerts.len()
                );
            }
            let mut fingerprints: Vec<&str> = parsed
                .alerts
                .iter()
                .map(|a| a.fingerprint.as_str())
                .collect();
            fingerprints.sort_unstable();
            fingerprints.dedup();
            if fingerprints.len() != alerts || parsed.alerts.iter().any(|a| a.starts_at.is_none()) {
                bail!("a {alerts}-alert body repeats a fingerprint or lacks a start: {body}");
            }
        }
        let time = |alerts: usize, n: u32| {
            let started = Instant::now();
            let mut bytes = 0;
            for _ in 0..n {
                bytes = std::hint::black_box(self.render(alerts)).len();
            }
            (started.elapsed().as_secs_f64() * 1e6 / f64::from(n), bytes)
        };
        let (single_us, single_bytes) = time(1, 2_000);
        let (batch_us, batch_bytes) = time(BATCH, 200);
        Ok(BodyCost {
            single_us,
            single_bytes,
            batch_us,
            batch_bytes,
        })
    }
}

struct BodyCost {
    single_us: f64,
    single_bytes: usize,
    batch_us: f64,
    batch_bytes: usize,
}

// ---------------------------------------------------------------------------
// Sending and counting

/// What the server answers (the parts counted here).
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
}

enum Outcome {
    Answered {
        accepted: u64,
        duplicates: u64,
    },
    /// `kind` groups failures in the report; `detail` is the first example.
    Failed {
        kind: String,
        detail: String,
    },
}

fn http_client(max_idle: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(max_idle)
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot build the HTTP client")
}

async fn send(client: &reqwest::Client, url: &str, body: String) -> Outcome {
    let transport = |e: reqwest::Error| Outcome::Failed {
        kind: if e.is_timeout() {
            "timeout".into()
        } else if e.is_connect() {
            "connect error".into()
        } else {
            "transport error".into()
        },
        detail: e.to_string(),
    };
    let response = match client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return transport(e),
    };
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return transport(e),
    };
    if status != reqwest::StatusCode::OK {
        return Outcome::Failed {
            kind: format!("HTTP {}", status.as_u16()),
            detail: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
        };
    }
    match serde_json::from_slice::<Answer>(&bytes) {
        Ok(a) => Outcome::Answered {
            accepted: a.accepted,
            duplicates: a.duplicates,
        },
        Err(e) => Outcome::Failed {
            kind: "unreadable 200 answer".into(),
            detail: e.to_string(),
        },
    }
}

/// Counts of the measured requests of one scenario.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    answered: u64,
    alerts_sent: u64,
    accepted: u64,
    duplicates: u64,
    /// kind -> (count, first detail)
    errors: BTreeMap<String, (u64, String)>,
    /// Completion of the last measured request.
    last_done: Option<Instant>,
    /// (completion, alerts accepted) of every measured answer.
    accepted_at: Vec<(Instant, u64)>,
    /// Completion of the first measured refusal (a 503 when intake sheds).
    first_error: Option<Instant>,
}

impl Tally {
    fn record(&mut self, latency: Duration, done: Instant, alerts: usize, outcome: Outcome) {
        self.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        self.alerts_sent += alerts as u64;
        self.last_done = self.last_done.max(Some(done));
        match outcome {
            Outcome::Answered {
                accepted,
                duplicates,
            } => {
                self.answered += 1;
                self.accepted += accepted;
                self.duplicates += duplicates;
                self.accepted_at.push((done, accepted));
            }
            Outcome::Failed { kind, detail } => {
                self.first_error = Some(self.first_error.map_or(done, |f| f.min(done)));
                self.error(kind, detail)
            }
        }
    }

    fn error(&mut self, kind: String, detail: String) {
        self.errors.entry(kind).or_insert((0, detail)).0 += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.answered += other.answered;
        self.alerts_sent += other.alerts_sent;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        for (kind, (n, detail)) in other.errors {
            self.errors.entry(kind).or_insert((0, detail)).0 += n;
        }
        self.last_done = self.last_done.max(other.last_done);
        self.accepted_at.extend(other.accepted_at);
        self.first_error = match (self.first_error, other.first_error) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }
}

/// The figures of one scenario.
struct ScenarioResult {
    name: String,
    /// The end of the warm-up.
    measure_start: Instant,
    /// From the end of the warm-up to the last measured answer.
    elapsed: Duration,
    tally: Tally,
    /// Sorted copy of the latencies.
    sorted_us: Vec<u64>,
    cpu: CpuUse,
    notes: Vec<String>,
    /// How long after the last answer the incidents caught up with what
    /// was accepted (the intake journal's backlog reached 0).
    drain: Option<Duration>,
}

/// Waits until the server has applied every accepted alert to incidents
/// (`firstline_intake_backlog` is 0) and says how long that took; `None`
/// if it did not within two minutes.
async fn wait_applied(base_url: &str) -> Option<Duration> {
    let client = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        let text = match client.get(format!("{base_url}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let backlog = text
            .lines()
            .find_map(|l| l.strip_prefix("firstline_intake_backlog "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if backlog == Some(0.0) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

impl ScenarioResult {
    fn new(measure_start: Instant, mut tally: Tally, notes: Vec<String>) -> ScenarioResult {
        let elapsed = tally.last_done.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(measure_start)
        });
        let mut sorted_us = std::mem::take(&mut tally.latencies_us);
        sorted_us.sort_unstable();
        ScenarioResult {
            name: String::new(),
            measure_start,
            elapsed,
            tally,
            sorted_us,
            cpu: CpuUse::default(),
            notes,
            drain: None,
        }
    }

    fn per_sec(&self, n: u64) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { n as f64 / secs } else { 0.0 }
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        let n = self.sorted_us.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
        Some(self.sorted_us[rank - 1])
    }

    /// Alerts applied to incidents per second, counting the catch-up
    /// after the load (approximate: the warm-up's alerts are applied too).
    fn applied_per_sec(&self) -> Option<f64> {
        let secs = (self.elapsed + self.drain?).as_secs_f64();
        (secs > 0.0).then(|| self.tally.accepted as f64 / secs)
    }

    fn drain_text(&self) -> String {
        match (self.drain, self.applied_per_sec()) {
            (Some(d), Some(rate)) => format!(
                "incidents caught up {:.1} s after the load ({rate:.0} alerts/s applied)",
                d.as_secs_f64()
            ),
            _ => "incidents did not catch up within 120 s".into(),
        }
    }

    /// Alerts accepted per second before the first refusal, and for how
    /// long: what intake took before it began to shed load.
    fn before_first_error(&self) -> Option<(f64, Duration)> {
        let first = self.tally.first_error?;
        let secs = first.saturating_duration_since(self.measure_start);
        let accepted: u64 = self
            .tally
            .accepted_at
            .iter()
            .filter(|(done, _)| *done < first)
            .map(|(_, n)| n)
            .sum();
        (secs.as_secs_f64() > 0.0).then(|| (accepted as f64 / secs.as_secs_f64(), secs))
    }

    fn summary(&self) -> String {
        let shed = match self.before_first_error() {
            Some((rate, secs)) => format!(
                "; before the first refusal ({:.1} s): {rate:.0} alerts/s",
                secs.as_secs_f64()
            ),
            None => String::new(),
        };
        format!(
            "{}: {:.0} req/s, {:.0} alerts/s, p50 {}, p90 {}, p99 {}, max {}, {} errors ({} requests in {:.1} s){shed}; {}",
            self.name,
            self.per_sec(self.tally.answered),
            self.per_sec(self.tally.accepted),
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
            self.tally.error_count(),
            self.sorted_us.len(),
            self.elapsed.as_secs_f64(),
            self.drain_text()
        )
    }
}

// ---------------------------------------------------------------------------
// Scenarios

/// `connections` tasks, each sending its next request when the previous one
/// is answered, for the warm-up plus `duration`.
async fn closed_loop(
    base_url: &str,
    connections: usize,
    alerts: usize,
    maker: &Arc<BodyMaker>,
    duration: Duration,
) -> Result<ScenarioResult> {
    let client = http_client(connections)?;
    let url = Arc::new(format!("{base_url}/hooks/alertmanager"));
    let warm_end = Instant::now() + WARMUP;
    let end = warm_end + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (client, url, maker) = (client.clone(), url.clone(), maker.clone());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            for _ in 0..MAX_REQUESTS_PER_CONNECTION {
                let body = maker.render(alerts);
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let outcome = send(&client, &url, body).await;
                let done = Instant::now();
                if start >= warm_end {
                    tally.record(done - start, done, alerts, outcome);
                }
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        tally.merge(joined.context("a client task panicked")?);
    }
    Ok(ScenarioResult::new(warm_end, tally, Vec::new()))
}

/// One measured or warm-up request of the paced scenario.
struct Sample {
    measured: bool,
    /// From the scheduled send time to the answer.
    latency: Duration,
    done: Instant,
    outcome: Outcome,
}

/// Open loop: request `i` is due at `start + i / rate`, whatever happened
/// to the earlier ones. A blocking thread keeps the schedule (finer than
/// tokio's 1 ms timer) and hands each request to its own task.
async fn paced(
    base_url: &str,
    rate: u64,
    maker: &Arc<BodyMaker>,
    duration: Duration,
) -> Result<ScenarioResult> {
    let client = http_client(MAX_IN_FLIGHT)?;
    let url = Arc::new(format!("{base_url}/hooks/alertmanager"));
    let interval_ns = 1_000_000_000 / rate;
    let warmup_requests = rate * WARMUP.as_secs();
    let total = warmup_requests + rate * duration.as_secs();
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = start + WARMUP;
    let send_deadline = measure_start + duration + Duration::from_secs(5);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let runtime = tokio::runtime::Handle::current();
    let maker = maker.clone();

    let pacer = tokio::task::spawn_blocking(move || {
        let mut lags_us = Vec::with_capacity(total as usize);
        let mut waited_for_slot = 0u64;
        for i in 0..total {
            let body = maker.render(1);
            let scheduled = start + Duration::from_nanos(i * interval_ns);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            if in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                waited_for_slot += 1;
                while in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT
                    && Instant::now() < send_deadline
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            if Instant::now() >= send_deadline {
                break;
            }
            lags_us.push(scheduled.elapsed().as_micros() as u64);
            in_flight.fetch_add(1, Ordering::AcqRel);
            let (client, url, tx, in_flight) =
                (client.clone(), url.clone(), tx.clone(), in_flight.clone());
            runtime.spawn(async move {
                let outcome = send(&client, &url, body).await;
                let done = Instant::now();
                in_flight.fetch_sub(1, Ordering::AcqRel);
                let _ = tx.send(Sample {
                    measured: i >= warmup_requests,
                    latency: done - scheduled,
                    done,
                    outcome,
                });
            });
        }
        (lags_us, waited_for_slot)
    });

    // Every task holds a sender; the channel closes when the last answers.
    let mut tally = Tally::default();
    let mut received = 0u64;
    let collect_deadline = send_deadline + REQUEST_TIMEOUT + Duration::from_secs(5);
    let mut notes = Vec::new();
    loop {
        match tokio::time::timeout_at(collect_deadline.into(), rx.recv()).await {
            Ok(Some(sample)) => {
                received += 1;
                if sample.measured {
                    tally.record(sample.latency, sample.done, 1, sample.outcome);
                }
            }
            Ok(None) => break,
            Err(_) => {
                notes.push("some requests were still unanswered at the deadline".into());
                break;
            }
        }
    }
    let (mut lags_us, waited_for_slot) = pacer.await.context("the pacer thread panicked")?;
    let sent = lags_us.len() as u64;
    if sent < total {
        notes.push(format!(
            "only {sent} of {total} requests were sent before the deadline"
        ));
    }
    if received < sent {
        tally.error("unanswered".into(), "no answer by the deadline".into());
    }
    lags_us.sort_unstable();
    let lag_p99 = lags_us
        .get((lags_us.len() * 99 / 100).min(lags_us.len().saturating_sub(1)))
        .copied();
    notes.push(format!(
        "pacer send lag p99 {}, max {}",
        ms(lag_p99),
        ms(lags_us.last().copied())
    ));
    if waited_for_slot > 0 {
        notes.push(format!(
            "{MAX_IN_FLIGHT} requests were in flight at {waited_for_slot} send times: the server fell behind {rate}/s, sends were delayed, and the delay is in the latencies"
        ));
    }
    Ok(ScenarioResult::new(measure_start, tally, notes))
}

// ---------------------------------------------------------------------------
// Report

fn ms(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us < 10_000 => format!("{:.2} ms", us as f64 / 1000.0),
        Some(us) if us < 100_000 => format!("{:.1} ms", us as f64 / 1000.0),
        Some(us) => format!("{:.0} ms", us as f64 / 1000.0),
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or_else(
        || "n/a".into(),
        |kb| format!("{:.1} MB", kb as f64 / 1024.0),
    )
}

fn cores(c: Option<f64>) -> String {
    c.map_or_else(|| "-".into(), |c| format!("{c:.2}"))
}

fn print_table(reports: &[BackendReport]) {
    println!();
    if reports.is_empty() {
        println!("no backend ran, nothing to report");
        return;
    }
    println!(
        "{:<9} {:<18} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}  {:>5} {:>5} {:>5} {:>5}",
        "backend",
        "scenario",
        "reqs/s",
        "alerts/s",
        "applied/s",
        "p50",
        "p90",
        "p99",
        "max",
        "errors",
        "srv",
        "pg",
        "bench",
        "other"
    );
    for report in reports {
        for s in &report.scenarios {
            println!(
                "{:<9} {:<18} {:>9.1} {:>10.1} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}  {:>5} {:>5} {:>5} {:>5}",
                report.backend,
                s.name,
                s.per_sec(s.tally.answered),
                s.per_sec(s.tally.accepted),
                s.applied_per_sec()
                    .map_or("-".into(), |r| format!("{r:.1}")),
                ms(s.percentile(50.0)),
                ms(s.percentile(90.0)),
                ms(s.percentile(99.0)),
                ms(s.percentile(100.0)),
                s.tally.error_count(),
                cores(s.cpu.server),
                cores(s.cpu.postgres),
                cores(s.cpu.bench),
                cores(s.cpu.other)
            );
        }
        println!(
            "{:<9} idle RSS {}, peak RSS {} (RSS at the end {})",
            report.backend,
            mb(report.idle_rss_kb),
            mb(report.peak_rss_kb),
            mb(report.end_rss_kb)
        );
    }
    println!();
    println!(
        "reqs/s counts 200 answers, alerts/s the alerts they report accepted; latencies are per request (paced: from the scheduled send time); srv/pg/bench/other = average cores busy: the server, PostgreSQL's processes, this bench, everything else on the machine"
    );
    for report in reports {
        for s in &report.scenarios {
            let t = &s.tally;
            for (kind, (n, detail)) in &t.errors {
                println!("{} {}: {n} x {kind}, e.g. {detail}", report.backend, s.name);
            }
            let unaccepted = t.alerts_sent.saturating_sub(t.accepted);
            if t.error_count() == 0 && unaccepted > 0 {
                println!(
                    "{} {}: {unaccepted} alerts sent were not reported accepted ({} duplicates)",
                    report.backend, s.name, t.duplicates
                );
            }
            if let Some(other) = s.cpu.other
                && other > 0.25
            {
                println!(
                    "{} {}: other processes kept {other:.2} cores busy: the figures understate firstline",
                    report.backend, s.name
                );
            }
            for note in &s.notes {
                println!("{} {}: {note}", report.backend, s.name);
            }
        }
        for line in &report.server_warnings {
            println!("{} server: {line}", report.backend);
        }
    }
}
