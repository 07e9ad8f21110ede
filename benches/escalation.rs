//! Escalation lateness benchmark (issue 16): how late escalation steps and
//! their pages go out when many incidents fall due together, and how soon
//! overdue steps go out after a SIGKILL and a restart.
//!
//! ```text
//! cargo bench --bench escalation                    # 10,000 incidents, SQLite and PostgreSQL
//! cargo bench --bench escalation -- --quick         # 1,000 incidents over 10 s (a smoke run)
//! cargo bench --bench escalation -- --sqlite-only   # or --postgres-only, or FIRSTLINE_BENCH_BACKEND=sqlite|postgres
//! cargo bench --bench escalation -- --no-restart    # or --restart-only
//! cargo bench --bench escalation -- --incidents 5000 --spread 30
//! ```
//!
//! Every run starts the real binary (`firstline serve`) as a child process
//! on a fresh store (a SQLite file in a temp dir, or a fresh PostgreSQL
//! database, created and dropped here), with the console platform and a
//! configuration file of two contacts paged by console DM (`chat_dm`:
//! printed, to /dev/null) and a P1 policy of two steps, `repeat = 0`:
//!
//! ```toml
//! [escalation.P1]
//! steps = [ { page = ["ann"], ack_within = "<spread + 15>s" },
//!           { page = ["bob"], ack_within = "1h" } ]
//! ```
//!
//! **Lateness.** N incidents are declared (`POST /console/commands`,
//! `/incident declare … --sev P1`) at an even pace over `spread` seconds
//! (open loop, at most 64 requests in flight). Step 1 of each is due when it
//! is declared; step 2 is due `ack_within` after step 1 fired, so the N
//! step-2 deadlines are spread over about `spread` seconds, starting 15 s
//! after the last declaration (the quiet gap keeps the declaring load out
//! of the step-2 window). Nobody acknowledges. Lateness is computed from
//! the store once everything is out: a step's due time is the `due_ms` the
//! previous step's `escalation` event recorded (step 1's is the
//! `escalation started` event's time), and it fired at its own event's
//! `at_ms` (the ledger batch's time, just before its commit); a page went
//! out at its `page` `sent` event's `at_ms` (recorded after the DM). Store
//! load is measured over the step-2 window (from 1 s before the first
//! step-2 deadline to the last step-2 page out): CPU of the server, of
//! PostgreSQL and of the rest of the machine (other work on this machine
//! shows there), the server's write syscalls and bytes (`/proc/<pid>/io`),
//! SQLite's file sizes, and for PostgreSQL the database's
//! `pg_stat_database` counters (read 11 s after the window, since idle
//! backends report their counters up to 10 s late; so they include those
//! seconds).
//!
//! **Restart.** Two rounds on fresh stores, 1,000 incidents declared as
//! fast as they go, step 1 `ack_within = "20s"`:
//!
//! 1. *killed before the deadlines*: SIGKILL once every step 1 has fired,
//!    restart once every step 2 is overdue;
//! 2. *killed while steps fire*: SIGKILL 300 ms after the first step-2
//!    deadline (steps are being claimed and fired), restart once every step 2
//!    is overdue. The rows the dead process held a claim (lease) on are
//!    counted.
//!
//! For each: how long after the restart (the new process's spawn) the
//! overdue steps fired and their pages went out (p50, max), and when the
//! server answered `/readyz`.
//!
//! Figures are printed; nothing is asserted. Pages still not out 180 s
//! after their window are reported as such (`NOT all out`) and left out of
//! the lateness figures, which then cover only the pages that went out.
//! PostgreSQL is reached at
//! `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `FIRSTLINE_TEST_POSTGRES_URL` says otherwise; if it cannot be reached,
//! that backend is skipped. Other `FIRSTLINE_SECTION__KEY` variables in the
//! environment are passed on to the server (e.g.
//! `FIRSTLINE_STORE__SQLITE_SYNCHRONOUS=normal`) and printed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const DEFAULT_INCIDENTS: usize = 10_000;
const DEFAULT_SPREAD_S: u64 = 60;
const QUICK_INCIDENTS: usize = 1_000;
const QUICK_SPREAD_S: u64 = 10;
/// Seconds between the last declaration and the first step-2 deadline.
const GAP_S: u64 = 15;
/// Declarations in flight at most.
const IN_FLIGHT: usize = 64;
/// Incidents of each restart round.
const RESTART_INCIDENTS: usize = 1_000;
/// Step 1's `ack_within` in the restart rounds.
const RESTART_ACK_S: u64 = 20;
/// In round 2, the kill comes this long after the first step-2 deadline.
const KILL_INTO_WINDOW: Duration = Duration::from_millis(300);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long steps and pages may take to be out after their window.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// PostgreSQL's idle backends report their counters up to 10 s late.
const PG_STATS_DELAY: Duration = Duration::from_secs(11);
const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Linux reports process CPU time in these ticks per second (USER_HZ).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

const USAGE: &str = "usage: cargo bench --bench escalation [-- [--quick] [--incidents N] [--spread SECONDS] [--sqlite-only | --postgres-only] [--no-restart | --restart-only]]";

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("escalation bench: {e:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("escalation bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("escalation bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Options

struct Options {
    incidents: usize,
    spread_s: u64,
    sqlite: bool,
    postgres: bool,
    lateness: bool,
    restart: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut options = Options {
            incidents: DEFAULT_INCIDENTS,
            spread_s: DEFAULT_SPREAD_S,
            sqlite: true,
            postgres: true,
            lateness: true,
            restart: true,
        };
        match std::env::var("FIRSTLINE_BENCH_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("both") => {}
            Ok("sqlite") => options.postgres = false,
            Ok("postgres") => options.sqlite = false,
            Ok(other) => bail!("FIRSTLINE_BENCH_BACKEND={other:?}: sqlite, postgres or both"),
        }
        let mut args = args.peekable();
        let number = |name: &str, value: Option<String>| -> Result<u64> {
            let value = value.unwrap_or_default();
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{name} needs a whole number above 0, not {value:?}"))
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => {
                    options.incidents = QUICK_INCIDENTS;
                    options.spread_s = QUICK_SPREAD_S;
                }
                "--incidents" => options.incidents = number("--incidents", args.next())? as usize,
                "--spread" => options.spread_s = number("--spread", args.next())?,
                "--sqlite-only" => options.postgres = false,
                "--postgres-only" => options.sqlite = false,
                "--no-restart" => options.restart = false,
                "--restart-only" => options.lateness = false,
                // Cargo appends `--bench` when it runs a harness-less bench.
                "--bench" => {}
                "-h" | "--help" => bail!("runs the escalation scenarios against a real server"),
                other => bail!("unknown argument {other:?}"),
            }
        }
        if !options.sqlite && !options.postgres {
            bail!("no backend left to run (--sqlite-only and --postgres-only exclude each other)");
        }
        if !options.lateness && !options.restart {
            bail!("--no-restart and --restart-only exclude each other");
        }
        Ok(options)
    }
}

/// The environment every server gets (listen address and store URL are
/// added per server).
fn fixed_overrides() -> Vec<(String, String)> {
    [
        ("FIRSTLINE_LOG__LEVEL", "warn"),
        ("FIRSTLINE_CHAT__CONSOLE_STDIN", "false"),
        ("FIRSTLINE_CHAT__PLATFORM", "console"),
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

/// The configuration file: two contacts paged by console DM, and a P1
/// policy of two steps (the second waits an hour, so the policy does not
/// run out during the bench).
fn config_file(step1_ack_s: u64) -> String {
    format!(
        r#"# Written by benches/escalation.rs.
[contacts.ann]
timezone = "UTC"
availability = "24/7"
console = "ann"
page_via = ["chat_dm"]

[contacts.bob]
timezone = "UTC"
availability = "24/7"
console = "bob"
page_via = ["chat_dm"]

[escalation.P1]
steps = [
  {{ page = ["ann"], ack_within = "{step1_ack_s}s" }},
  {{ page = ["bob"], ack_within = "1h" }},
]
repeat = 0
"#
    )
}

fn print_settings(options: &Options, binary: &Path) -> Result<()> {
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
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("firstline.toml");
    std::fs::write(&file, config_file(options.spread_s + GAP_S))?;
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.extend(fixed_overrides());
    env.push(("FIRSTLINE_SERVER__LISTEN".into(), "127.0.0.1:8080".into()));
    env.push(("FIRSTLINE_STORE__URL".into(), "sqlite://bench.db".into()));
    let config = firstline::config::load_with_env(Some(&file), env)
        .map_err(|e| anyhow::anyhow!("the server would refuse its settings:\n{e}"))?;
    let s = &config.settings;
    println!("firstline escalation benchmark (issue 16)");
    println!(
        "machine:  {cpus} CPUs (nproc), {model}; the bench, the server and PostgreSQL share them; load average before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("server:   {} serve --config <file>", binary.display());
    for (k, v) in inherited_overrides() {
        println!("          env (inherited): {k}={v}");
    }
    println!(
        "          store.max_connections={} store.batch_max={} store.sqlite_synchronous={} outbox.poll_interval_ms={} chat.storm_threshold={}",
        s.store.max_connections,
        s.store.batch_max,
        s.store.sqlite_synchronous,
        s.outbox.poll_interval_ms,
        s.chat.storm_threshold,
    );
    println!(
        "policy:   P1: step 1 pages ann (console chat_dm), ack_within = spread + {GAP_S} s; step 2 pages bob (chat_dm), ack_within 1h; repeat 0"
    );
    if options.lateness {
        println!(
            "lateness: {} incidents declared over {} s ({:.0}/s, open loop, at most {IN_FLIGHT} in flight); their step-2 deadlines fall over ~{} s, {GAP_S} s after the last declaration",
            thousands(options.incidents),
            options.spread_s,
            options.incidents as f64 / options.spread_s as f64,
            options.spread_s
        );
    }
    if options.restart {
        println!(
            "restart:  {} incidents declared as fast as they go, step 1 ack_within {RESTART_ACK_S} s; SIGKILL (1) before the step-2 deadlines, (2) {} ms into them; restart once all are overdue",
            thousands(RESTART_INCIDENTS),
            KILL_INTO_WINDOW.as_millis()
        );
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------
// The whole run

async fn run(options: Options) -> Result<()> {
    // sqlx's TLS (PostgreSQL `sslmode=prefer`) needs a rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_firstline"));
    print_settings(&options, &binary)?;
    let admin = std::env::var("FIRSTLINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_string());
    let mut backends = Vec::new();
    if options.sqlite {
        backends.push(Backend::Sqlite);
    }
    if options.postgres {
        match admin_connection(&admin).await {
            Ok(c) => {
                let _ = c.close().await;
                backends.push(Backend::Postgres);
            }
            Err(e) => println!(
                "postgres: skipped ({} unreachable: {e:#})\n",
                firstline::text::redact_url(&admin)
            ),
        }
    }
    let mut failures = Vec::new();
    for backend in backends {
        if options.lateness {
            match lateness(backend, &binary, &admin, &options).await {
                Ok(r) => r.print(),
                Err(e) => {
                    println!("{}: lateness FAILED: {e:#}\n", backend.name());
                    failures.push(format!("{} lateness", backend.name()));
                }
            }
        }
        if options.restart {
            for kill in [Kill::BeforeDeadlines, Kill::WhileFiring] {
                match restart(backend, &binary, &admin, kill).await {
                    Ok(r) => r.print(),
                    Err(e) => {
                        println!(
                            "{}: restart ({}) FAILED: {e:#}\n",
                            backend.name(),
                            kill.name()
                        );
                        failures.push(format!("{} restart", backend.name()));
                    }
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!("the run failed for: {}", failures.join(", "));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

// ---------------------------------------------------------------------------
// Scenario 1: lateness

struct LatenessReport {
    backend: Backend,
    incidents: usize,
    declared: Declared,
    /// Seconds from the first declaration.
    step1_done_s: f64,
    /// Step-2 deadlines: first and last, in seconds from the first
    /// declaration, and the most falling in one second.
    window: (f64, f64, usize),
    done_s: f64,
    figures: Figures,
    load: Load,
    store_rows: Vec<(String, i64)>,
    /// Pages still not out when the bench stopped waiting.
    timed_out: Option<String>,
    warnings: Vec<String>,
}

async fn lateness(
    backend: Backend,
    binary: &Path,
    admin: &str,
    options: &Options,
) -> Result<LatenessReport> {
    let n = options.incidents;
    let store = FreshStore::create(backend, admin).await?;
    let ack_s = options.spread_s + GAP_S;
    let mut server = Server::start(binary, &store, config_file(ack_s), "server.stderr")?;
    server.wait_ready().await?;
    let mut db = Db::connect(&store.url).await?;
    println!(
        "{}: server pid {} ready at {}; declaring {} incidents over {} s",
        backend.name(),
        server.pid,
        server.base_url,
        thousands(n),
        options.spread_s
    );

    let t0_ms = epoch_ms();
    let t0 = Instant::now();
    let declared = declare(
        &server.base_url,
        n,
        Some(Duration::from_secs(options.spread_s)),
    )
    .await?;
    server.ensure_alive()?;
    if declared.ok != n {
        bail!(
            "only {} of {n} declarations succeeded (first failure: {})",
            declared.ok,
            declared.first_failure.clone().unwrap_or_default()
        );
    }
    // Every step 1 fired: the step-2 deadlines are known.
    wait_for(
        &mut server,
        &mut db,
        "every step 1 fired",
        "SELECT COUNT(*) FROM escalations WHERE next_k >= 1",
        n as i64,
        DRAIN_TIMEOUT,
    )
    .await?;
    let step1_done_s = t0.elapsed().as_secs_f64();
    let dues: Vec<i64> = db
        .scalars("SELECT due_ms FROM escalations WHERE next_k = 1 AND state = 'running'")
        .await?;
    if dues.len() != n {
        bail!("{} escalations wait for step 2, not {n}", dues.len());
    }
    let (first_due, last_due) = (
        *dues.iter().min().unwrap_or(&0),
        *dues.iter().max().unwrap_or(&0),
    );
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for d in &dues {
        *per_second.entry(d / 1000).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap_or(0);
    let window = (
        (first_due - t0_ms) as f64 / 1000.0,
        (last_due - t0_ms) as f64 / 1000.0,
        busiest,
    );
    println!(
        "{}: declared in {:.1} s, every step 1 fired at {:.1} s; step-2 deadlines from {:.1} s to {:.1} s (at most {busiest} in one second)",
        backend.name(),
        declared.seconds,
        step1_done_s,
        window.0,
        window.1
    );

    // The step-2 window, measured.
    sleep_until_epoch_ms(first_due - 1000).await;
    let before = Snapshot::take(&server, &mut db, &store).await;
    let window_started = Instant::now();
    wait_for(
        &mut server,
        &mut db,
        "every step 2 fired",
        "SELECT COUNT(*) FROM escalations WHERE next_k >= 2",
        n as i64,
        Duration::from_millis((last_due - epoch_ms()).max(0) as u64) + DRAIN_TIMEOUT,
    )
    .await?;
    let timed_out = wait_or_note(
        &mut server,
        &mut db,
        "every page out",
        "SELECT COUNT(*) FROM outbox WHERE kind = 'page' AND status <> 'pending'",
        2 * n as i64,
        DRAIN_TIMEOUT,
    )
    .await?;
    let done_s = t0.elapsed().as_secs_f64();
    let window_secs = window_started.elapsed().as_secs_f64();
    let mut after = Snapshot::take(&server, &mut db, &store).await;
    if backend == Backend::Postgres {
        tokio::time::sleep(PG_STATS_DELAY).await;
        after.pg = pg_stats(&mut db).await;
    }
    let load = Load::between(&before, &after, window_secs);

    let events = db.events().await?;
    let figures = Figures::from_events(&events, 2);
    let store_rows = db.row_counts().await?;
    server.ensure_alive()?;
    let warnings = server.warnings();
    drop(server);
    db.close().await;
    store.drop_now().await;
    Ok(LatenessReport {
        backend,
        incidents: n,
        declared,
        step1_done_s,
        window,
        done_s,
        figures,
        load,
        store_rows,
        timed_out,
        warnings,
    })
}

impl LatenessReport {
    fn print(&self) {
        let b = self.backend.name();
        let row = |k: &str, v: String| println!("  {k:<28} {v}");
        println!("{b}: lateness, {} incidents", thousands(self.incidents));
        row(
            "declared",
            format!(
                "{} in {:.1} s ({:.0}/s); answer p50 {} p99 {} max {}",
                thousands(self.declared.ok),
                self.declared.seconds,
                self.declared.ok as f64 / self.declared.seconds,
                ms(self.declared.latency.p50),
                ms(self.declared.latency.p99),
                ms(self.declared.latency.max)
            ),
        );
        row(
            "step-2 deadlines",
            format!(
                "{:.1} s to {:.1} s after the first declaration ({:.1} s; at most {} in one second); every step 1 had fired at {:.1} s",
                self.window.0,
                self.window.1,
                self.window.1 - self.window.0,
                self.window.2,
                self.step1_done_s
            ),
        );
        self.figures.print(&row, self.incidents);
        match &self.timed_out {
            None => row(
                "all out",
                format!("{:.1} s after the first declaration", self.done_s),
            ),
            Some(note) => row(
                "NOT all out",
                format!(
                    "stopped waiting {:.1} s after the first declaration ({note}); pages not out are left out of the lateness figures above",
                    self.done_s
                ),
            ),
        }
        self.load.print(&row, self.figures.fired[1]);
        row(
            "rows in the store",
            self.store_rows
                .iter()
                .map(|(t, n)| format!("{t} {}", thousands(*n as usize)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        for w in &self.warnings {
            row("server warning", w.clone());
        }
        println!();
    }
}

/// What the declarations saw.
struct Declared {
    ok: usize,
    seconds: f64,
    latency: Percentiles,
    first_failure: Option<String>,
}

/// Declares `n` P1 incidents, evenly over `over` (open loop: a late answer
/// does not delay the next request, up to [`IN_FLIGHT`] in flight), or as
/// fast as they go.
async fn declare(base: &str, n: usize, over: Option<Duration>) -> Result<Declared> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()?;
    let url = format!("{base}/console/commands");
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut set: JoinSet<(bool, i64, String)> = JoinSet::new();
    let mut seen = Answers::default();
    let t0 = Instant::now();
    for i in 0..n {
        if let Some(over) = over {
            let at = t0 + over.mul_f64(i as f64 / n as f64);
            tokio::time::sleep_until(at.into()).await;
        }
        let permit = slots.clone().acquire_owned().await?;
        let (client, url) = (client.clone(), url.clone());
        set.spawn(async move {
            let sent = Instant::now();
            let body = json!({"user": "sam", "text": format!("/incident declare bench outage {i} --sev P1")});
            let r = client.post(&url).json(&body).send().await;
            let took = sent.elapsed().as_micros() as i64;
            drop(permit);
            match r {
                Ok(r) if r.status() == 200 => (true, took, String::new()),
                Ok(r) => {
                    let status = r.status();
                    (false, took, format!("{status} {}", r.text().await.unwrap_or_default()))
                }
                Err(e) => (false, took, e.to_string()),
            }
        });
        while let Some(done) = set.try_join_next() {
            seen.add(done?);
        }
    }
    while let Some(done) = set.join_next().await {
        seen.add(done?);
    }
    let seconds = t0.elapsed().as_secs_f64();
    Ok(Declared {
        ok: seen.ok,
        seconds,
        latency: Percentiles::of_micros(&mut seen.took),
        first_failure: seen.first_failure,
    })
}

/// The answers to the declarations, as they come.
#[derive(Default)]
struct Answers {
    ok: usize,
    took: Vec<i64>,
    first_failure: Option<String>,
}

impl Answers {
    fn add(&mut self, (good, us, why): (bool, i64, String)) {
        self.took.push(us);
        if good {
            self.ok += 1;
        } else if self.first_failure.is_none() {
            self.first_failure = Some(why);
        }
    }
}

// ---------------------------------------------------------------------------
// Scenario 2: SIGKILL and restart

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    BeforeDeadlines,
    WhileFiring,
}

impl Kill {
    fn name(self) -> &'static str {
        match self {
            Kill::BeforeDeadlines => "killed before the step-2 deadlines",
            Kill::WhileFiring => "killed while step 2s fire",
        }
    }
}

struct RestartReport {
    backend: Backend,
    kill: Kill,
    declared: Declared,
    /// Step-2 deadlines relative to the kill (s).
    window: (f64, f64),
    /// Steps 2 fired before the kill, and their pages out before it.
    fired_before: usize,
    paged_before: usize,
    /// Escalation rows and page items the killed process held a claim
    /// (lease) on: incident → when the claim runs out.
    step_leases: HashMap<i64, i64>,
    page_leases: HashMap<i64, i64>,
    spawned_ms: i64,
    down_s: f64,
    ready_s: f64,
    /// Steps 2 the restarted process fired, and step-2 pages it sent, in
    /// ms after its spawn.
    fired: Percentiles,
    paged: Percentiles,
    /// Of those, the ones held by a claim of the killed process.
    leased_fired: Percentiles,
    leased_paged: Percentiles,
    duplicates: usize,
    missing: usize,
    timed_out: Option<String>,
    warnings: Vec<String>,
}

async fn restart(
    backend: Backend,
    binary: &Path,
    admin: &str,
    kill: Kill,
) -> Result<RestartReport> {
    let n = RESTART_INCIDENTS;
    let store = FreshStore::create(backend, admin).await?;
    let config = config_file(RESTART_ACK_S);
    let mut server = Server::start(binary, &store, config.clone(), "first.stderr")?;
    server.wait_ready().await?;
    let mut db = Db::connect(&store.url).await?;
    let declared = declare(&server.base_url, n, None).await?;
    if declared.ok != n {
        bail!(
            "only {} of {n} declarations succeeded (first failure: {})",
            declared.ok,
            declared.first_failure.clone().unwrap_or_default()
        );
    }
    wait_for(
        &mut server,
        &mut db,
        "every step 1 fired",
        "SELECT COUNT(*) FROM escalations WHERE next_k >= 1",
        n as i64,
        DRAIN_TIMEOUT,
    )
    .await?;
    let dues: Vec<i64> = db
        .scalars("SELECT due_ms FROM escalations WHERE next_k = 1 AND state = 'running'")
        .await?;
    let first_due = dues.iter().copied().min().unwrap_or(0);
    let last_due = dues.iter().copied().max().unwrap_or(0);
    match kill {
        Kill::BeforeDeadlines => {
            // Step 1's pages out too: only step 2 is left to do.
            wait_for(
                &mut server,
                &mut db,
                "every step-1 page out",
                "SELECT COUNT(*) FROM outbox WHERE kind = 'page' AND status <> 'pending'",
                n as i64,
                DRAIN_TIMEOUT,
            )
            .await?;
            if epoch_ms() > first_due - 500 {
                bail!("step 1 took too long: step 2 is already due");
            }
        }
        Kill::WhileFiring => {
            sleep_until_epoch_ms(first_due + KILL_INTO_WINDOW.as_millis() as i64).await
        }
    }
    let killed_ms = epoch_ms();
    server.kill()?;
    drop(server);
    // What the dead process left: steps 2 fired, pages out, claims held.
    let fired_before = db
        .scalar("SELECT COUNT(*) FROM escalations WHERE next_k >= 2")
        .await? as usize;
    let paged_before = db
        .scalar(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'page' AND status <> 'pending'
               AND payload LIKE '%\"k\":1,%'",
        )
        .await? as usize;
    let step_leases: HashMap<i64, i64> = db
        .pairs(&format!(
            "SELECT incident_id, lease_until_ms FROM escalations
             WHERE state = 'running' AND next_k = 1 AND lease_until_ms > {killed_ms}"
        ))
        .await?
        .into_iter()
        .collect();
    // A claimed page is kept from other claims by moving its next attempt
    // past the kill (`Store::claim_page`).
    let page_leases: HashMap<i64, i64> = db
        .pairs(&format!(
            "SELECT incident_id, next_attempt_ms FROM outbox
             WHERE kind = 'page' AND status = 'pending' AND next_attempt_ms > {killed_ms}"
        ))
        .await?
        .into_iter()
        .collect();
    // Down until every step 2 is overdue.
    sleep_until_epoch_ms(last_due + 1000).await;
    let spawned_ms = epoch_ms();
    let mut server = Server::start(binary, &store, config, "restarted.stderr")?;
    server.wait_ready().await?;
    let ready_s = (epoch_ms() - spawned_ms) as f64 / 1000.0;
    wait_for(
        &mut server,
        &mut db,
        "every step 2 fired after the restart",
        "SELECT COUNT(*) FROM escalations WHERE next_k >= 2",
        n as i64,
        DRAIN_TIMEOUT,
    )
    .await?;
    let timed_out = wait_or_note(
        &mut server,
        &mut db,
        "every page out after the restart",
        "SELECT COUNT(*) FROM outbox WHERE kind = 'page' AND status <> 'pending'",
        2 * n as i64,
        DRAIN_TIMEOUT,
    )
    .await?;
    let warnings = server.warnings();
    drop(server);
    let events = db.events().await?;
    db.close().await;
    store.drop_now().await;

    let mut step2: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut page2: HashMap<i64, i64> = HashMap::new();
    for e in &events {
        match (e.kind.as_str(), e.data["action"].as_str()) {
            ("escalation", Some("step")) if e.data["k"] == 1 => {
                step2.entry(e.incident_id).or_default().push(e.at_ms)
            }
            ("page", Some("sent")) if e.data["to"] == "bob" => {
                page2.entry(e.incident_id).or_insert(e.at_ms);
            }
            _ => {}
        }
    }
    let (mut fired, mut leased_fired) = (Vec::new(), Vec::new());
    let mut duplicates = 0;
    for (id, ats) in &step2 {
        duplicates += ats.len() - 1;
        if ats[0] >= spawned_ms {
            fired.push(ats[0] - spawned_ms);
            if step_leases.contains_key(id) {
                leased_fired.push(ats[0] - spawned_ms);
            }
        }
    }
    let (mut paged, mut leased_paged) = (Vec::new(), Vec::new());
    for (id, at) in &page2 {
        if *at >= spawned_ms {
            paged.push(at - spawned_ms);
            if page_leases.contains_key(id) {
                leased_paged.push(at - spawned_ms);
            }
        }
    }
    Ok(RestartReport {
        backend,
        kill,
        declared,
        window: (
            (first_due - killed_ms) as f64 / 1000.0,
            (last_due - killed_ms) as f64 / 1000.0,
        ),
        fired_before,
        paged_before,
        step_leases,
        page_leases,
        spawned_ms,
        down_s: (spawned_ms - killed_ms) as f64 / 1000.0,
        ready_s,
        fired: Percentiles::of_ms(&mut fired),
        paged: Percentiles::of_ms(&mut paged),
        leased_fired: Percentiles::of_ms(&mut leased_fired),
        leased_paged: Percentiles::of_ms(&mut leased_paged),
        duplicates,
        missing: n - step2.len(),
        timed_out,
        warnings,
    })
}

impl RestartReport {
    fn print(&self) {
        let row = |k: &str, v: String| println!("  {k:<28} {v}");
        println!(
            "{}: restart, {} ({} incidents)",
            self.backend.name(),
            self.kill.name(),
            thousands(RESTART_INCIDENTS)
        );
        row(
            "declared",
            format!(
                "{} in {:.1} s ({:.0}/s)",
                thousands(self.declared.ok),
                self.declared.seconds,
                self.declared.ok as f64 / self.declared.seconds
            ),
        );
        row(
            "step-2 deadlines",
            format!(
                "{:+.1} s to {:+.1} s from the SIGKILL",
                self.window.0, self.window.1
            ),
        );
        let runs_out = |leases: &HashMap<i64, i64>| match leases.values().max() {
            Some(until) => format!(
                " (claims run out {:.1} s after the restart)",
                (until - self.spawned_ms) as f64 / 1000.0
            ),
            None => String::new(),
        };
        row(
            "at the SIGKILL",
            format!(
                "{} steps 2 fired, {} of their pages out; claimed by the killed process: {} escalation rows{}, {} pages{}",
                self.fired_before,
                self.paged_before,
                self.step_leases.len(),
                runs_out(&self.step_leases),
                self.page_leases.len(),
                runs_out(&self.page_leases)
            ),
        );
        row(
            "restart",
            format!(
                "spawned {:.1} s after the SIGKILL (every step 2 overdue); /readyz 200 after {:.2} s",
                self.down_s, self.ready_s
            ),
        );
        row(
            "steps 2 fired after it",
            format!("{}: {} after the spawn", self.fired.n, self.fired.line_s()),
        );
        if !self.step_leases.is_empty() {
            row(
                "  of them, claimed at kill",
                format!("{}: {}", self.leased_fired.n, self.leased_fired.line_s()),
            );
        }
        row(
            "step-2 pages out after it",
            format!("{}: {} after the spawn", self.paged.n, self.paged.line_s()),
        );
        if !self.page_leases.is_empty() {
            row(
                "  of them, claimed at kill",
                format!("{}: {}", self.leased_paged.n, self.leased_paged.line_s()),
            );
        }
        row(
            "exactly once",
            format!(
                "{} steps 2 fired twice, {} never",
                self.duplicates, self.missing
            ),
        );
        if let Some(note) = &self.timed_out {
            row("NOT all out", note.clone());
        }
        for w in &self.warnings {
            row("server warning", w.clone());
        }
        println!();
    }
}

// ---------------------------------------------------------------------------
// Figures from the timeline

/// One `escalation` or `page` event.
struct Event {
    incident_id: i64,
    at_ms: i64,
    kind: String,
    data: Value,
}

/// A step's firing: when (its event's `at_ms`) and when the next step is
/// due (`due_ms`).
type Firing = (i64, Option<i64>);

/// Lateness of steps and their pages, per step.
struct Figures {
    /// Per step k: steps fired (distinct incidents), steps fired more than
    /// once, lateness of the step and of its page (ms).
    fired: Vec<usize>,
    duplicates: Vec<usize>,
    step: Vec<Percentiles>,
    page: Vec<Percentiles>,
    pages_sent: Vec<usize>,
}

impl Figures {
    /// Step k of an incident is due at the `due_ms` step k−1 recorded (step
    /// 0 when its escalation started); contact ann is paged by step 0, bob
    /// by step 1.
    fn from_events(events: &[Event], steps: usize) -> Figures {
        let mut started: HashMap<i64, i64> = HashMap::new();
        // (incident, k) -> every firing of that step.
        let mut fired: HashMap<(i64, i64), Vec<Firing>> = HashMap::new();
        let mut sent: HashMap<(i64, i64), i64> = HashMap::new();
        for e in events {
            match (e.kind.as_str(), e.data["action"].as_str()) {
                ("escalation", Some("started")) => {
                    started.entry(e.incident_id).or_insert(e.at_ms);
                }
                ("escalation", Some("step")) => {
                    let k = e.data["k"].as_i64().unwrap_or(-1);
                    fired
                        .entry((e.incident_id, k))
                        .or_default()
                        .push((e.at_ms, e.data["due_ms"].as_i64()));
                }
                ("page", Some("sent")) => {
                    let k = match e.data["to"].as_str() {
                        Some("ann") => 0,
                        Some("bob") => 1,
                        _ => continue,
                    };
                    sent.entry((e.incident_id, k)).or_insert(e.at_ms);
                }
                _ => {}
            }
        }
        let mut f = Figures {
            fired: vec![0; steps],
            duplicates: vec![0; steps],
            step: Vec::new(),
            page: Vec::new(),
            pages_sent: vec![0; steps],
        };
        for k in 0..steps as i64 {
            let mut late = Vec::new();
            let mut page_late = Vec::new();
            for (&(id, kk), firings) in &fired {
                if kk != k {
                    continue;
                }
                f.fired[k as usize] += 1;
                f.duplicates[k as usize] += firings.len() - 1;
                let due = if k == 0 {
                    started.get(&id).copied()
                } else {
                    fired
                        .get(&(id, k - 1))
                        .and_then(|p| p.first())
                        .and_then(|p| p.1)
                };
                let Some(due) = due else { continue };
                late.push(firings[0].0 - due);
                if let Some(at) = sent.get(&(id, k)) {
                    f.pages_sent[k as usize] += 1;
                    page_late.push(at - due);
                }
            }
            f.step.push(Percentiles::of_ms(&mut late));
            f.page.push(Percentiles::of_ms(&mut page_late));
        }
        f
    }

    fn print(&self, row: &dyn Fn(&str, String), incidents: usize) {
        for k in 0..self.fired.len() {
            let what = if k == 0 {
                "due when declared, under the declaring load"
            } else {
                "the deadline window"
            };
            row(
                &format!("step {} fired", k + 1),
                format!(
                    "{} of {} ({} fired twice); lateness {} ({what})",
                    thousands(self.fired[k]),
                    thousands(incidents),
                    self.duplicates[k],
                    self.step[k].line_s()
                ),
            );
            row(
                &format!("step {} page sent", k + 1),
                format!(
                    "{} of {}; lateness {}",
                    thousands(self.pages_sent[k]),
                    thousands(incidents),
                    self.page[k].line_s()
                ),
            );
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// From milliseconds; the figures are in milliseconds.
    fn of_ms(values: &mut [i64]) -> Percentiles {
        values.sort_unstable();
        let at = |q: f64| -> f64 {
            if values.is_empty() {
                return f64::NAN;
            }
            // Nearest rank.
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            values[rank - 1] as f64
        };
        Percentiles {
            n: values.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: values.last().map_or(f64::NAN, |v| *v as f64),
        }
    }

    fn of_micros(values: &mut [i64]) -> Percentiles {
        let p = Percentiles::of_ms(values);
        Percentiles {
            n: p.n,
            p50: p.p50 / 1000.0,
            p99: p.p99 / 1000.0,
            max: p.max / 1000.0,
        }
    }

    fn line_s(&self) -> String {
        if self.n == 0 {
            return "none".into();
        }
        format!(
            "p50 {} p99 {} max {}",
            secs(self.p50),
            secs(self.p99),
            secs(self.max)
        )
    }
}

fn secs(ms: f64) -> String {
    if ms.abs() < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

// ---------------------------------------------------------------------------
// Store load

struct Snapshot {
    server: Option<u64>,
    postgres: Option<u64>,
    bench: Option<u64>,
    machine: Option<u64>,
    io: Option<u64>,
    sqlite_bytes: Option<u64>,
    pg: Option<PgStats>,
}

#[derive(Debug, Clone, Copy)]
struct PgStats {
    xact_commit: i64,
    tup_inserted: i64,
    tup_updated: i64,
    tup_deleted: i64,
    blks_read: i64,
    blks_hit: i64,
    size: i64,
}

impl Snapshot {
    async fn take(server: &Server, db: &mut Db, store: &FreshStore) -> Snapshot {
        Snapshot {
            server: process_ticks(&server.pid.to_string()),
            postgres: postgres_ticks(),
            bench: process_ticks("self"),
            machine: machine_busy_ticks(),
            io: process_io(server.pid),
            sqlite_bytes: store.sqlite_bytes(),
            pg: match db {
                Db::Postgres(_) => pg_stats(db).await,
                Db::Sqlite(_) => None,
            },
        }
    }
}

async fn pg_stats(db: &mut Db) -> Option<PgStats> {
    let Db::Postgres(c) = db else { return None };
    let row: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, blks_read, blks_hit,
                pg_database_size(datname)
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(c)
    .await
    .ok()?;
    Some(PgStats {
        xact_commit: row.0,
        tup_inserted: row.1,
        tup_updated: row.2,
        tup_deleted: row.3,
        blks_read: row.4,
        blks_hit: row.5,
        size: row.6,
    })
}

/// What the store and the machine did over the step-2 window.
struct Load {
    secs: f64,
    server_cores: Option<f64>,
    postgres_cores: Option<f64>,
    bench_cores: Option<f64>,
    other_cores: Option<f64>,
    /// Bytes the server caused to be written to storage.
    io: Option<u64>,
    sqlite: Option<(u64, u64)>,
    pg: Option<(PgStats, PgStats)>,
}

impl Load {
    fn between(a: &Snapshot, b: &Snapshot, secs: f64) -> Load {
        let cores = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) if secs > 0.0 => {
                Some(y.saturating_sub(x) as f64 / CLOCK_TICKS_PER_SEC / secs)
            }
            _ => None,
        };
        let server = cores(a.server, b.server);
        let postgres = cores(a.postgres, b.postgres);
        let bench = cores(a.bench, b.bench);
        let other = match (cores(a.machine, b.machine), server, bench) {
            (Some(m), Some(s), Some(be)) => Some((m - s - be - postgres.unwrap_or(0.0)).max(0.0)),
            _ => None,
        };
        Load {
            secs,
            server_cores: server,
            postgres_cores: postgres,
            bench_cores: bench,
            other_cores: other,
            io: match (a.io, b.io) {
                (Some(x), Some(y)) => Some(y.saturating_sub(x)),
                _ => None,
            },
            sqlite: a.sqlite_bytes.zip(b.sqlite_bytes),
            pg: a.pg.zip(b.pg),
        }
    }

    fn print(&self, row: &dyn Fn(&str, String), steps: usize) {
        let c = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        row(
            "step-2 window",
            format!(
                "{:.1} s (1 s before the first deadline to the last page out)",
                self.secs
            ),
        );
        row(
            "CPU (cores busy)",
            format!(
                "server {}, PostgreSQL {}, bench {}, rest of the machine {}",
                c(self.server_cores),
                c(self.postgres_cores),
                c(self.bench_cores),
                c(self.other_cores)
            ),
        );
        if let Some(bytes) = self.io {
            row(
                "server writes to storage",
                format!(
                    "{} ({}/s; /proc/<pid>/io write_bytes)",
                    mib(bytes as i64),
                    mib((bytes as f64 / self.secs) as i64)
                ),
            );
        }
        if let Some((a, b)) = self.sqlite {
            row(
                "SQLite files",
                format!("{} -> {} (database + WAL)", mib(a as i64), mib(b as i64)),
            );
        }
        if let Some((a, b)) = self.pg {
            let commits = b.xact_commit - a.xact_commit;
            row(
                "PostgreSQL (this database)",
                format!(
                    "{} transactions committed ({:.0}/s over the window, {:.1} per step), {} rows inserted, {} updated, {} deleted; blocks {} read {} hit; size {} -> {} (counters read {} s after the window)",
                    thousands(commits as usize),
                    commits as f64 / self.secs,
                    commits as f64 / steps.max(1) as f64,
                    thousands((b.tup_inserted - a.tup_inserted) as usize),
                    thousands((b.tup_updated - a.tup_updated) as usize),
                    thousands((b.tup_deleted - a.tup_deleted) as usize),
                    thousands((b.blks_read - a.blks_read) as usize),
                    thousands((b.blks_hit - a.blks_hit) as usize),
                    mib(a.size),
                    mib(b.size),
                    PG_STATS_DELAY.as_secs()
                ),
            );
        }
    }
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// utime + stime of a process, in clock ticks, and its command name.
fn process_stat(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn process_ticks(pid: &str) -> Option<u64> {
    process_stat(pid).map(|(_, ticks)| ticks)
}

/// CPU ticks of all processes named `postgres` (a backend that exits
/// takes its ticks with it).
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

/// Busy (not idle, not waiting for IO) clock ticks of all CPUs.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - ticks.get(3)? - ticks.get(4)?)
}

/// Bytes the process caused to be written to storage (`write_bytes`; its
/// console output goes to /dev/null and is not counted).
fn process_io(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    field("write_bytes:")
}

// ---------------------------------------------------------------------------
// Reading the store

/// A connection of the bench's own to the server's store (read-only on
/// SQLite), to watch progress and read the timeline afterwards.
enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    async fn connect(url: &str) -> Result<Db> {
        if url.starts_with("sqlite:") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?.read_only(true);
            Ok(Db::Sqlite(
                sqlx::SqliteConnection::connect_with(&options).await?,
            ))
        } else {
            Ok(Db::Postgres(sqlx::PgConnection::connect(url).await?))
        }
    }

    async fn scalar(&mut self, sql: &str) -> Result<i64> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Db::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    async fn scalars(&mut self, sql: &str) -> Result<Vec<i64>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
            Db::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
        })
    }

    async fn pairs(&mut self, sql: &str) -> Result<Vec<(i64, i64)>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        Ok(match self {
            Db::Sqlite(c) => sqlx::query_as(sql).fetch_all(c).await?,
            Db::Postgres(c) => sqlx::query_as(sql).fetch_all(c).await?,
        })
    }

    async fn events(&mut self) -> Result<Vec<Event>> {
        let sql = "SELECT incident_id, at_ms, kind, data FROM timeline
                   WHERE kind IN ('escalation', 'page') ORDER BY id";
        let rows: Vec<(i64, i64, String, String)> = match self {
            Db::Sqlite(c) => sqlx::query_as(sql).fetch_all(c).await?,
            Db::Postgres(c) => sqlx::query_as(sql).fetch_all(c).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(incident_id, at_ms, kind, data)| Event {
                incident_id,
                at_ms,
                kind,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            })
            .collect())
    }

    async fn row_counts(&mut self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for table in [
            "incidents",
            "timeline",
            "outbox",
            "chat_posts",
            "escalations",
        ] {
            let n = self
                .scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .await?;
            out.push((table.to_string(), n));
        }
        Ok(out)
    }

    async fn close(self) {
        let _ = match self {
            Db::Sqlite(c) => c.close().await,
            Db::Postgres(c) => c.close().await,
        };
    }
}

/// Polls `sql` (a count) every 200 ms until it reaches `want`; an error
/// after `timeout`.
async fn wait_for(
    server: &mut Server,
    db: &mut Db,
    what: &str,
    sql: &str,
    want: i64,
    timeout: Duration,
) -> Result<()> {
    match wait_or_note(server, db, what, sql, want, timeout).await? {
        None => Ok(()),
        Some(note) => bail!(
            "{note}; the server's stderr ends with:\n{}",
            server.stderr_tail(20)
        ),
    }
}

/// [`wait_for`], but a timeout is a note (the figures are still worth
/// printing: what did not go out is counted as such).
async fn wait_or_note(
    server: &mut Server,
    db: &mut Db,
    what: &str,
    sql: &str,
    want: i64,
    timeout: Duration,
) -> Result<Option<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let have = db.scalar(sql).await?;
        if have >= want {
            return Ok(None);
        }
        server.ensure_alive()?;
        if Instant::now() > deadline {
            return Ok(Some(format!(
                "{what}: {have} of {want} after {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// Stores

/// A fresh store: a SQLite file in a temp dir, or a fresh PostgreSQL
/// database (dropped by [`FreshStore::drop_now`]). The temp dir also holds
/// the server's configuration file and stderr.
struct FreshStore {
    url: String,
    dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl FreshStore {
    async fn create(backend: Backend, admin: &str) -> Result<FreshStore> {
        let dir = tempfile::Builder::new()
            .prefix("firstline-escalation-bench-")
            .tempdir()
            .context("cannot create a temp dir")?;
        match backend {
            Backend::Sqlite => Ok(FreshStore {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                dir,
                pg: None,
            }),
            Backend::Postgres => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .context("the clock is before 1970")?
                    .as_nanos();
                let name = format!("firstline_escbench_{nanos}");
                let mut conn = admin_connection(admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                let _ = conn.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_string())
                    .unwrap_or(admin.to_string());
                Ok(FreshStore {
                    url: format!("{base}/{name}"),
                    dir,
                    pg: Some((admin.to_string(), name)),
                })
            }
        }
    }

    /// The SQLite database and its WAL, in bytes.
    fn sqlite_bytes(&self) -> Option<u64> {
        if self.pg.is_some() {
            return None;
        }
        let size = |name: &str| {
            std::fs::metadata(self.dir.path().join(name))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        Some(size("bench.db") + size("bench.db-wal"))
    }

    async fn drop_now(self) {
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = admin_connection(admin).await
        {
            if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            {
                println!("could not drop database {name}: {e}");
            }
            let _ = conn.close().await;
        }
    }
}

async fn admin_connection(admin: &str) -> Result<sqlx::PgConnection> {
    tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(admin))
        .await
        .context("no answer within 5 s")?
        .context("cannot connect")
}

// ---------------------------------------------------------------------------
// The server under test

/// A running `firstline serve`; killed when dropped.
struct Server {
    child: Child,
    pid: u32,
    base_url: String,
    stderr_path: PathBuf,
}

impl Server {
    fn start(binary: &Path, store: &FreshStore, config: String, log: &str) -> Result<Server> {
        let file = store.dir.path().join("firstline.toml");
        std::fs::write(&file, config).context("cannot write the configuration file")?;
        let port = free_port()?;
        let stderr_path = store.dir.path().join(log);
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("cannot create {}", stderr_path.display()))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .current_dir(store.dir.path())
            .env_remove("FIRSTLINE_CONFIG")
            .envs(fixed_overrides())
            .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FIRSTLINE_STORE__URL", &store.url)
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
        })
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
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
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(&mut self) -> Result<()> {
        self.child.kill().context("cannot SIGKILL the server")?;
        let _ = self.child.wait();
        Ok(())
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

    /// Warning and error lines the server logged (at most the last 5).
    fn warnings(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(|l| match l.char_indices().nth(300) {
                Some((at, _)) => format!("{}…", &l[..at]),
                None => l.to_string(),
            })
            .collect();
        let skip = lines.len().saturating_sub(5);
        let mut out: Vec<String> = lines[skip..].to_vec();
        if skip > 0 {
            out.insert(0, format!("({} warning/error lines; last 5:)", lines.len()));
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

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn sleep_until_epoch_ms(at: i64) {
    let wait = at - epoch_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
