//! Crash suite: `kill -9` in the middle of an alert storm, on both backends.
//!
//! What it guarantees, round after round: **every alert whose delivery was
//! answered 2xx is stored exactly once after a SIGKILL and a restart, and
//! nothing journaled is left unapplied.** Alerts of a delivery that got no
//! answer (or a non-2xx) may or may not be stored, but never twice.
//!
//! One round, on a fresh store (a SQLite file in a temp dir, or a fresh
//! PostgreSQL database):
//!
//! 1. start the real binary (`firstline serve`) as a child process on a
//!    free loopback port and wait for `/readyz`;
//! 2. four concurrent senders post a storm of distinct alerts (each
//!    Alertmanager v4 delivery carries 1–4 alerts, every one with its own
//!    fingerprint and labels), recording which deliveries were answered 2xx;
//! 3. every third round, a second `firstline serve` is started on the same
//!    store during the storm: it must exit non-zero saying the store is
//!    "already serving", and must damage nothing (the checks below);
//! 4. the server is SIGKILLed 50–600 ms into the storm;
//! 5. it is started again on the same store; the suite waits for the
//!    applier (`/api/incidents` waits for it, then `/metrics` until
//!    `firstline_intake_backlog 0`), stops it, opens the store directly and
//!    checks the `alerts` table (each acknowledged fingerprint exactly once,
//!    no fingerprint twice), `intake_applied` against the journal's head
//!    (read independently: the segment files beside the SQLite database, or
//!    the `intake_journal` table), that every journaled alert was stored,
//!    and that nothing was set aside in `dead_deliveries`.
//!
//! The kill delay, the sizes of deliveries and so on come from a small PRNG
//! seeded from the backend and round number printed on each round's line, so
//! a failing round can be run again alone (`FIRSTLINE_CRASH_ROUND=N`; the
//! timing of a crash can never be replayed exactly, only its plan).
//!
//! Defaults: 20 rounds on SQLite, 5 on PostgreSQL (the two run side by
//! side; under half a minute in a debug build on 2 cores). Longer, by hand
//! (a round takes about 0.5 s on SQLite, 1.5 s on PostgreSQL):
//!
//! ```text
//! FIRSTLINE_CRASH_ROUNDS=200 FIRSTLINE_CRASH_PG_ROUNDS=50 \
//!     cargo test -p firstline --test crash -- --nocapture
//! FIRSTLINE_CRASH_ROUND=17 cargo test -p firstline --test crash -- --nocapture
//! ```
//!
//! PostgreSQL rounds create a database per round through
//! `FIRSTLINE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drop it when the round
//! passes (a failing round's database is kept, and named). Where PostgreSQL
//! is not reachable they print `SKIPPED: ...` and pass, unless
//! `FIRSTLINE_REQUIRE_POSTGRES=1`, which makes that a failure. A failing
//! round keeps its temp dir (server logs, SQLite store) and names it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod actions;
mod escalation;
use sqlx::Connection;

/// Concurrent senders in a storm.
const SENDERS: u64 = 4;
/// The kill comes this many milliseconds into the storm (inclusive).
const KILL_AFTER_MS: (u64, u64) = (50, 600);
/// Every this many rounds, a second server tries the same store.
const SECOND_SERVER_EVERY: u64 = 3;
/// How long a server may take to answer `/readyz` with 200.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long the restarted server may take to apply what was journaled.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(60);
/// How long the second server may take to give up.
const SECOND_EXITS_WITHIN: Duration = Duration::from_secs(30);

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

    /// Mixed into the seed, so the two backends' rounds differ.
    fn salt(self) -> u64 {
        match self {
            Backend::Sqlite => 0x5117_e000,
            Backend::Postgres => 0x9057_9000,
        }
    }
}

// ---------------------------------------------------------------- tests ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_answered_2xx_survives_sigkill_exactly_once_on_sqlite() {
    let rounds = rounds("FIRSTLINE_CRASH_ROUNDS", 20);
    run_suite(Backend::Sqlite, rounds).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_answered_2xx_survives_sigkill_exactly_once_on_postgres() {
    if let Err(why) = postgres_reachable().await {
        if postgres_required() {
            panic!("PostgreSQL is required (FIRSTLINE_REQUIRE_POSTGRES) but not reachable: {why}");
        }
        eprintln!(
            "SKIPPED: crash suite on PostgreSQL: {why}; set FIRSTLINE_TEST_POSTGRES_URL or start PostgreSQL (FIRSTLINE_REQUIRE_POSTGRES=1 makes this a failure)"
        );
        return;
    }
    let rounds = rounds("FIRSTLINE_CRASH_PG_ROUNDS", 5);
    run_suite(Backend::Postgres, rounds).await;
}

#[test]
fn the_round_plan_depends_only_on_backend_and_round() {
    let a = Plan::new(Backend::Sqlite, 7);
    let b = Plan::new(Backend::Sqlite, 7);
    assert_eq!((a.seed, a.kill_after_ms), (b.seed, b.kill_after_ms));
    assert_eq!(a.sender_seeds, b.sender_seeds);
    assert_ne!(a.seed, Plan::new(Backend::Postgres, 7).seed);
    assert_ne!(a.seed, Plan::new(Backend::Sqlite, 8).seed);
    for round in 1..500 {
        let p = Plan::new(Backend::Sqlite, round);
        assert!((KILL_AFTER_MS.0..=KILL_AFTER_MS.1).contains(&p.kill_after_ms));
    }
}

#[test]
fn the_journal_reader_stops_at_a_torn_or_out_of_sequence_record() {
    let mut seg = Vec::new();
    for seq in 5..8 {
        seg.extend(frame(
            seq,
            r#"{"webhook":{"alerts":[{"fingerprint":"f"}]}}"#,
        ));
    }
    let good = seg.len();
    seg.extend(frame(9, "{}")); // not the next sequence number
    seg.extend(vec![0; 64]);
    let records = read_segment(&seg, 5);
    assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), [5, 6, 7]);
    let mut torn = seg[..good].to_vec();
    torn.extend(&frame(8, "{}")[..10]);
    assert_eq!(read_segment(&torn, 5).len(), 3);
    let mut bad_crc = seg[..good].to_vec();
    let mut last = frame(8, "{}");
    let n = last.len();
    last[n - 1] ^= 1;
    bad_crc.extend(last);
    assert_eq!(read_segment(&bad_crc, 5).len(), 3);
}

// ------------------------------------------------------------- settings ---

fn rounds(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{var}={v:?} is not a number of rounds: {e}")),
        Err(_) => default,
    }
}

/// `FIRSTLINE_CRASH_ROUND=N`: run round N only (to replay a failure's plan).
fn only_round() -> Option<u64> {
    let v = std::env::var("FIRSTLINE_CRASH_ROUND").ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("FIRSTLINE_CRASH_ROUND={v:?} is not a round number: {e}")),
    )
}

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

async fn admin_connection() -> Result<sqlx::PgConnection, String> {
    let admin = admin_url();
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&admin)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to {admin} ({e})")),
        Err(_) => Err(format!("no answer from {admin} within 10 s")),
    }
}

async fn postgres_reachable() -> Result<(), String> {
    let conn = admin_connection().await?;
    let _ = conn.close().await;
    Ok(())
}

// ----------------------------------------------------------------- plan ---

/// SplitMix64: small, good enough to spread kill times and sizes, and
/// reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (near enough).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What a round does, decided before it starts.
struct Plan {
    backend: Backend,
    round: u64,
    seed: u64,
    kill_after_ms: u64,
    second_server: bool,
    sender_seeds: Vec<u64>,
}

impl Plan {
    fn new(backend: Backend, round: u64) -> Plan {
        let seed = Rng((backend.salt() << 32) ^ round).next();
        let mut rng = Rng(seed);
        Plan {
            backend,
            round,
            seed,
            kill_after_ms: rng.between(KILL_AFTER_MS.0, KILL_AFTER_MS.1),
            second_server: round.is_multiple_of(SECOND_SERVER_EVERY),
            sender_seeds: (0..SENDERS).map(|_| rng.next()).collect(),
        }
    }

    /// Prefix of every fingerprint and label of this round.
    fn tag(&self) -> String {
        format!("crash-{}-r{}", self.backend.name(), self.round)
    }
}

// ---------------------------------------------------------------- suite ---

async fn run_suite(backend: Backend, rounds: u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let list: Vec<u64> = match only_round() {
        Some(r) => vec![r],
        None => (1..=rounds).collect(),
    };
    let started = Instant::now();
    let mut total_acked = 0;
    for &round in &list {
        let plan = Plan::new(backend, round);
        let dir = tempfile::Builder::new()
            .prefix(&format!("firstline-crash-{}-{round}-", backend.name()))
            .tempdir()
            .expect("a temp dir for the round");
        let (store, pg_name) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("firstline.db").display()),
                None,
            ),
            Backend::Postgres => {
                let (url, name) = fresh_postgres_database(round).await;
                (url, Some(name))
            }
        };
        let t = Instant::now();
        match run_round(&plan, dir.path(), &store).await {
            Ok(report) => {
                total_acked += report.acked;
                println!(
                    "crash {} round {round} seed {:#018x}: accepted {} alerts ({} deliveries), \
                     maybe-stored {} ({} stored), killed after {} ms (planned {}), {}applied seq {} \
                     ({} alerts applied after the restart), {:.1} s",
                    backend.name(),
                    plan.seed,
                    report.acked,
                    report.acked_posts,
                    report.maybe,
                    report.maybe_stored,
                    report.killed_after_ms,
                    plan.kill_after_ms,
                    if plan.second_server {
                        "second server refused, "
                    } else {
                        ""
                    },
                    report.applied_seq,
                    report.applied_after_restart,
                    t.elapsed().as_secs_f64(),
                );
                for note in &report.notes {
                    println!("    note: {note}");
                }
                if let Some(name) = pg_name {
                    drop_postgres_database(&name).await;
                }
            }
            Err(failure) => {
                let kept = dir.keep();
                let mut logs = String::new();
                for name in ["first.log", "second.log", "restarted.log"] {
                    let path = kept.join(name);
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        let tail: Vec<&str> = text.lines().rev().take(30).collect();
                        let _ = writeln!(logs, "--- {} (last 30 lines) ---", path.display());
                        for l in tail.into_iter().rev() {
                            let _ = writeln!(logs, "{l}");
                        }
                    }
                }
                panic!(
                    "crash {} round {round} seed {:#018x} (kill planned after {} ms) FAILED:\n{failure}\n\
                     store: {store} (kept), round folder kept: {}\n\
                     replay its plan: FIRSTLINE_CRASH_ROUND={round} cargo test -p firstline --test crash -- --nocapture on_{}\n{logs}",
                    backend.name(),
                    plan.seed,
                    plan.kill_after_ms,
                    kept.display(),
                    backend.name(),
                );
            }
        }
    }
    println!(
        "crash {}: {} round(s) passed, {total_acked} acknowledged alerts checked, {:.1} s",
        backend.name(),
        list.len(),
        started.elapsed().as_secs_f64()
    );
}

async fn fresh_postgres_database(round: u64) -> (String, String) {
    let mut conn = admin_connection()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL went away during the suite: {e}"));
    let name = format!(
        "firstline_crash_{}_{round}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the round's database");
    let _ = conn.close().await;
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin.clone());
    (format!("{base}/{name}"), name)
}

async fn drop_postgres_database(name: &str) {
    if let Ok(mut conn) = admin_connection().await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}

// ---------------------------------------------------------------- round ---

struct Report {
    acked: usize,
    acked_posts: usize,
    maybe: usize,
    maybe_stored: usize,
    killed_after_ms: u128,
    applied_seq: i64,
    /// Alerts the restarted server applied: what the kill left journaled
    /// and not yet applied.
    applied_after_restart: u64,
    notes: Vec<String>,
}

/// One round; `Err` says what went wrong (the caller keeps the evidence).
async fn run_round(plan: &Plan, dir: &Path, store: &str) -> Result<Report, String> {
    let mut notes = Vec::new();
    let mut first = Server::start(dir, store, "first.log").await?;

    // The storm.
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = plan
        .sender_seeds
        .iter()
        .enumerate()
        .map(|(i, &seed)| {
            tokio::spawn(send_storm(
                first.base.clone(),
                store_token(store),
                plan.tag(),
                i,
                seed,
                stop.clone(),
            ))
        })
        .collect();
    let storm = Instant::now();

    // A second server on the same store, while the first serves.
    let second = if plan.second_server {
        let port = free_port();
        let log = dir.join("second.log");
        let child = serve_command(dir, port, store, &log)?
            .spawn()
            .map_err(|e| format!("cannot start the second server: {e}"))?;
        Some((child, log))
    } else {
        None
    };

    tokio::time::sleep_until((storm + Duration::from_millis(plan.kill_after_ms)).into()).await;
    let second_outcome = match second {
        // The first must still be serving when the second tries: wait
        // for its verdict before the kill.
        Some((child, log)) => Some(wait_exit(child, &log).await),
        None => None,
    };
    first
        .child
        .kill()
        .map_err(|e| format!("cannot SIGKILL the server: {e}"))?;
    let killed_after_ms = storm.elapsed().as_millis();
    let _ = first.child.wait();
    stop.store(true, Ordering::Release);

    let mut log = StormLog::default();
    for s in senders {
        let one = s.await.map_err(|e| format!("a sender panicked: {e}"))?;
        log.absorb(one);
    }
    if log.odd_answers > 0 {
        notes.push(format!(
            "{} 2xx answer(s) did not count every alert of their delivery as accepted",
            log.odd_answers
        ));
    }
    if log.refused > 0 {
        notes.push(format!(
            "{} delivery(ies) answered non-2xx during the storm: {:?}",
            log.refused, log.refusals
        ));
    }

    let mut problems = Vec::new();
    if let Some(outcome) = second_outcome {
        match outcome {
            Ok((status, stderr)) => {
                if status.success() {
                    problems.push(format!(
                        "the second server on a served store exited successfully ({status}); its log:\n{stderr}"
                    ));
                }
                if !stderr.contains("already serving") {
                    problems.push(format!(
                        "the second server's stderr does not say \"already serving\" ({status}):\n{stderr}"
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
    }

    // Restart on the same store and let the applier catch up.
    let mut restarted = Server::start(dir, store, "restarted.log").await?;
    let catch_up = restarted.catch_up().await;
    let _ = restarted.child.kill();
    let _ = restarted.child.wait();
    let applied_after_restart = match catch_up {
        Ok(n) => n,
        Err(e) => {
            problems.push(e);
            0
        }
    };

    // The store itself, with no server on it.
    let seen = match inspect_store(plan.backend, dir, store).await {
        Ok(seen) => seen,
        Err(e) => {
            problems.push(e);
            return Err(problems.join("\n"));
        }
    };
    let stored = &seen.fingerprints;

    let mut lost: Vec<&String> = log
        .acked
        .iter()
        .filter(|f| !stored.contains_key(*f))
        .collect();
    lost.sort();
    if !lost.is_empty() {
        problems.push(format!(
            "LOST: {} alert(s) answered 2xx are not stored, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    let mut twice: Vec<(&String, &i64)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    if !twice.is_empty() {
        problems.push(format!(
            "DUPLICATE: {} fingerprint(s) stored more than once, e.g. {:?}",
            twice.len(),
            &twice[..twice.len().min(10)]
        ));
    }
    let maybe: HashSet<&String> = log.maybe.iter().collect();
    let acked: HashSet<&String> = log.acked.iter().collect();
    let mut unknown: Vec<&String> = stored
        .keys()
        .filter(|f| !acked.contains(f) && !maybe.contains(f))
        .collect();
    unknown.sort();
    if !unknown.is_empty() {
        problems.push(format!(
            "{} stored alert(s) were never sent, e.g. {:?}",
            unknown.len(),
            &unknown[..unknown.len().min(10)]
        ));
    }
    if seen.journal_head > seen.applied_seq {
        problems.push(format!(
            "UNAPPLIED: the journal ends at seq {} but intake_applied is {}",
            seen.journal_head, seen.applied_seq
        ));
    }
    if seen.applied_seq < log.acked_posts as i64 {
        problems.push(format!(
            "intake_applied is {} but {} deliveries were answered 2xx (one journal record each)",
            seen.applied_seq, log.acked_posts
        ));
    }
    if let Some(gap) = &seen.journal_gap {
        problems.push(format!("JOURNAL GAP: {gap}"));
    }
    let mut journaled_not_stored: Vec<&String> = seen
        .journaled
        .iter()
        .filter(|f| !stored.contains_key(*f))
        .collect();
    journaled_not_stored.sort();
    if !journaled_not_stored.is_empty() {
        problems.push(format!(
            "{} journaled alert(s) are not stored, e.g. {:?}",
            journaled_not_stored.len(),
            &journaled_not_stored[..journaled_not_stored.len().min(10)]
        ));
    }
    if seen.dead_deliveries > 0 {
        problems.push(format!(
            "{} delivery(ies) were set aside in dead_deliveries",
            seen.dead_deliveries
        ));
    }
    if seen.unreadable_segments > 0 {
        notes.push(format!(
            "{} journal segment(s) set aside as unreadable (a torn first write of a new segment)",
            seen.unreadable_segments
        ));
    }
    if log.acked.is_empty() {
        notes.push("the kill came before any delivery was answered".into());
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}\n(accepted {} alerts in {} deliveries, {} maybe-stored, killed after {killed_after_ms} ms; \
             stored {} fingerprints, applied seq {}, journal head {})",
            problems.join("\n"),
            log.acked.len(),
            log.acked_posts,
            log.maybe.len(),
            stored.len(),
            seen.applied_seq,
            seen.journal_head,
        ));
    }
    Ok(Report {
        acked: log.acked.len(),
        acked_posts: log.acked_posts,
        maybe: log.maybe.len(),
        maybe_stored: log.maybe.iter().filter(|f| stored.contains_key(*f)).count(),
        killed_after_ms,
        applied_seq: seen.applied_seq,
        applied_after_restart,
        notes,
    })
}

// --------------------------------------------------------------- server ---

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The bearer token of the server on `store` (see [`serve_command`]).
fn store_token(store: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    store.hash(&mut h);
    format!("crash-{:016x}", h.finish())
}

/// `firstline serve` in `dir` on `port` against `store`, its stderr
/// appended to `log`.
fn serve_command(dir: &Path, port: u16, store: &str, log: &Path) -> Result<Command, String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_firstline"));
    command
        .arg("serve")
        .current_dir(dir)
        .env_remove("FIRSTLINE_CONFIG")
        .env("FIRSTLINE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("FIRSTLINE_CHAT__CONSOLE_STDIN", "false")
        .env("FIRSTLINE_LOG__LEVEL", "warn")
        .env("FIRSTLINE_STORE__URL", store)
        // Intake takes only this store's senders: the suites run side by
        // side, and a port one suite's killed server let go of can be the
        // next port the other suite's server binds, while the first
        // suite's senders are still posting to it.
        .env(
            "FIRSTLINE_INTAKE__TOKENS__ALERTMANAGER__ENV",
            "FIRSTLINE_CRASH_TOKEN",
        )
        .env("FIRSTLINE_CRASH_TOKEN", store_token(store))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Ok(command)
}

/// Waits for a child that should exit by itself: its status and stderr.
async fn wait_exit(mut child: Child, log: &Path) -> Result<(ExitStatus, String), String> {
    let deadline = Instant::now() + SECOND_EXITS_WITHIN;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let stderr = std::fs::read_to_string(log).unwrap_or_default();
                return Ok((status, stderr));
            }
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "the second server on a served store was still running after {SECONDS} s (killed); its log:\n{stderr}",
                    SECONDS = SECOND_EXITS_WITHIN.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for the second server: {e}")),
        }
    }
}

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
    client: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a server behind a failed round.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `firstline serve` and waits until `/readyz` answers 200.
    async fn start(dir: &Path, store: &str, log_name: &str) -> Result<Server, String> {
        Server::start_with(dir, store, log_name, None).await
    }

    /// [`Server::start`] with a configuration file.
    async fn start_with(
        dir: &Path,
        store: &str,
        log_name: &str,
        config: Option<&Path>,
    ) -> Result<Server, String> {
        let port = free_port();
        let log = dir.join(log_name);
        let mut command = serve_command(dir, port, store, &log)?;
        if let Some(config) = config {
            command.env("FIRSTLINE_CONFIG", config);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start firstline: {e}"))?;
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            client: client(),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{log_name}: firstline exited ({status}) before it was ready; its log:\n{}",
                    server.log_text()
                ));
            }
            if let Ok(r) = server
                .client
                .get(format!("{}/readyz", server.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status() == 200
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let _ = server.child.kill();
                return Err(format!(
                    "{log_name}: firstline was not ready at {} within {} s; its log:\n{}",
                    server.base,
                    READY_WITHIN.as_secs(),
                    server.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get_text(&self, path: &str) -> Result<(u16, String), String> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = r.status().as_u16();
        Ok((
            status,
            r.text()
                .await
                .map_err(|e| format!("GET {path}: reading the body: {e}"))?,
        ))
    }

    /// Waits until everything journaled before the restart is applied:
    /// how many alerts it applied (those the kill left in the journal).
    async fn catch_up(&self) -> Result<u64, String> {
        // Waits for the applier (at most 5 s).
        let (status, body) = self.get_text("/api/incidents?state=all").await?;
        if status != 200 {
            return Err(format!(
                "GET /api/incidents after the restart: {status} {body}"
            ));
        }
        let deadline = Instant::now() + CATCH_UP_WITHIN;
        let metrics = loop {
            let (_, metrics) = self.get_text("/metrics").await?;
            if metric(&metrics, "firstline_intake_backlog") == Some(0.0) {
                break metrics;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the restarted server did not catch up within {} s:\n{}\nits log:\n{}",
                    CATCH_UP_WITHIN.as_secs(),
                    metrics
                        .lines()
                        .filter(|l| l.starts_with("firstline_intake"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for name in [
            "firstline_intake_dead_deliveries",
            "firstline_intake_journal_lost_records_total",
        ] {
            if let Some(n) = metric(&metrics, name)
                && n != 0.0
            {
                return Err(format!("after the restart {name} is {n}"));
            }
        }
        let (status, ready) = self.get_text("/readyz").await?;
        let ready: Value = serde_json::from_str(&ready).unwrap_or(Value::Null);
        if status != 200 || ready["status"] != "ready" {
            return Err(format!(
                "after catching up /readyz answers {status} {ready}"
            ));
        }
        Ok(metric(&metrics, "firstline_intake_applied_alerts_total").unwrap_or(0.0) as u64)
    }
}

/// A client for a child server (reqwest needs the TLS provider installed).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

/// The value of an unlabelled counter or gauge in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// ---------------------------------------------------------------- storm ---

/// What one sender saw.
#[derive(Default)]
struct StormLog {
    /// Fingerprints of alerts in deliveries answered 2xx.
    acked: Vec<String>,
    acked_posts: usize,
    /// Fingerprints of alerts in deliveries without a 2xx (no answer,
    /// or a refusal): stored or not, never twice.
    maybe: Vec<String>,
    refused: usize,
    refusals: HashMap<u16, usize>,
    /// 2xx answers whose `accepted` was not the delivery's alert count.
    odd_answers: usize,
}

impl StormLog {
    fn absorb(&mut self, other: StormLog) {
        self.acked.extend(other.acked);
        self.acked_posts += other.acked_posts;
        self.maybe.extend(other.maybe);
        self.refused += other.refused;
        for (code, n) in other.refusals {
            *self.refusals.entry(code).or_default() += n;
        }
        self.odd_answers += other.odd_answers;
    }
}

/// Posts distinct alerts as fast as answers come until `stop`.
async fn send_storm(
    base: String,
    token: String,
    tag: String,
    sender: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> StormLog {
    let client = client();
    let url = format!("{base}/hooks/alertmanager");
    let mut rng = Rng(seed);
    let mut log = StormLog::default();
    let mut post = 0u64;
    while !stop.load(Ordering::Acquire) {
        let count = rng.between(1, 4);
        let fingerprints: Vec<String> = (0..count)
            .map(|j| format!("{tag}-s{sender}-p{post}-a{j}"))
            .collect();
        let body = storm_body(&tag, sender, post, &fingerprints);
        post += 1;
        match client
            .post(&url)
            .header("content-type", "application/json")
            .bearer_auth(&token)
            .body(body)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                // The 2xx is the promise, whatever happens to the body.
                let answer: Value = r.json().await.unwrap_or(Value::Null);
                if answer["accepted"].as_u64() != Some(count) {
                    log.odd_answers += 1;
                }
                log.acked.extend(fingerprints);
                log.acked_posts += 1;
            }
            Ok(r) => {
                log.refused += 1;
                *log.refusals.entry(r.status().as_u16()).or_default() += 1;
                log.maybe.extend(fingerprints);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(_) => {
                // Killed mid-request, or not listening any more.
                log.maybe.extend(fingerprints);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    log
}

/// An Alertmanager v4 delivery of new firing alerts, one per fingerprint,
/// each with labels of its own (a few services, so a few incidents).
fn storm_body(tag: &str, sender: usize, post: u64, fingerprints: &[String]) -> String {
    let alerts: Vec<Value> = fingerprints
        .iter()
        .map(|fp| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": "CrashStorm",
                    "service": format!("{tag}-svc-{sender}-{}", post % 4),
                    "severity": "warning",
                    "instance": fp,
                },
                "annotations": {"summary": format!("storm alert {fp}")},
                "startsAt": "2026-11-23T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": fp,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": format!("{tag}-s{sender}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "firstline",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am.local",
        "alerts": alerts,
    })
    .to_string()
}

// ---------------------------------------------------------------- store ---

/// What the store holds once no server is on it.
struct Seen {
    /// Alert fingerprint -> rows.
    fingerprints: HashMap<String, i64>,
    applied_seq: i64,
    /// The highest sequence number left in the journal (0 when empty).
    journal_head: i64,
    /// Fingerprints of the alerts of every record left in the journal.
    journaled: Vec<String>,
    /// Records missing between what is left in the journal.
    journal_gap: Option<String>,
    dead_deliveries: i64,
    unreadable_segments: usize,
}

async fn inspect_store(backend: Backend, dir: &Path, store: &str) -> Result<Seen, String> {
    const ALERTS: &str = "SELECT fingerprint, COUNT(*) FROM alerts GROUP BY fingerprint";
    const APPLIED: &str = "SELECT seq FROM intake_applied WHERE id = 1";
    const DEAD: &str = "SELECT COUNT(*) FROM dead_deliveries";
    let db = |e: sqlx::Error| format!("reading the store {store}: {e}");
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(store).await.map_err(db)?;
            let rows: Vec<(String, i64)> = sqlx::query_as(ALERTS)
                .fetch_all(&mut conn)
                .await
                .map_err(db)?;
            let applied_seq: i64 = sqlx::query_scalar(APPLIED)
                .fetch_one(&mut conn)
                .await
                .map_err(db)?;
            let dead_deliveries: i64 = sqlx::query_scalar(DEAD)
                .fetch_one(&mut conn)
                .await
                .map_err(db)?;
            let _ = conn.close().await;
            let journal = read_file_journal(&dir.join("firstline.db-intake.d"))?;
            Ok(Seen {
                fingerprints: rows.into_iter().collect(),
                applied_seq,
                journal_head: journal.head,
                journaled: journal.fingerprints,
                journal_gap: journal.gap,
                dead_deliveries,
                unreadable_segments: journal.unreadable,
            })
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(store).await.map_err(db)?;
            let rows: Vec<(String, i64)> = sqlx::query_as(ALERTS)
                .fetch_all(&mut conn)
                .await
                .map_err(db)?;
            let applied_seq: i64 = sqlx::query_scalar(APPLIED)
                .fetch_one(&mut conn)
                .await
                .map_err(db)?;
            let dead_deliveries: i64 = sqlx::query_scalar(DEAD)
                .fetch_one(&mut conn)
                .await
                .map_err(db)?;
            let records: Vec<(i64, String)> =
                sqlx::query_as("SELECT seq, payload FROM intake_journal ORDER BY seq")
                    .fetch_all(&mut conn)
                    .await
                    .map_err(db)?;
            let _ = conn.close().await;
            let mut gap = None;
            for pair in records.windows(2) {
                if pair[1].0 != pair[0].0 + 1 && gap.is_none() {
                    gap = Some(format!(
                        "intake_journal jumps from seq {} to {}",
                        pair[0].0, pair[1].0
                    ));
                }
            }
            Ok(Seen {
                fingerprints: rows.into_iter().collect(),
                applied_seq,
                journal_head: records.last().map(|r| r.0).unwrap_or(0),
                journaled: records
                    .iter()
                    .flat_map(|r| payload_fingerprints(&r.1))
                    .collect(),
                journal_gap: gap,
                dead_deliveries,
                unreadable_segments: 0,
            })
        }
    }
}

/// The fingerprints of the alerts of one journaled delivery.
fn payload_fingerprints(payload: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    v["webhook"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| a["fingerprint"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

struct FileJournalSeen {
    head: i64,
    fingerprints: Vec<String>,
    gap: Option<String>,
    unreadable: usize,
}

/// Reads the SQLite deployment's journal segments (`<db>-intake.d/`)
/// without the server's code: `len u32 LE | crc32 u32 LE | body`, the body
/// `seq i64 LE | received_ms i64 LE | source length u8 | source | payload`;
/// a segment named by its first sequence number; its records end at the
/// first one that is torn, zeros, or out of sequence.
fn read_file_journal(dir: &Path) -> Result<FileJournalSeen, String> {
    let mut seen = FileJournalSeen {
        head: 0,
        fingerprints: Vec::new(),
        gap: None,
        unreadable: 0,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(seen),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".unreadable") {
            seen.unreadable += 1;
        }
        if let Some(first) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<i64>().ok())
        {
            segments.push((first, entry.path()));
        }
    }
    segments.sort();
    let mut expected: Option<i64> = None;
    for (first, path) in segments {
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let records = read_segment(&bytes, first);
        if let Some(next) = expected
            && first != next
            && seen.gap.is_none()
        {
            seen.gap = Some(format!(
                "segment {} starts at seq {first}, the one before ends at {}",
                path.display(),
                next - 1
            ));
        }
        for (seq, payload) in &records {
            seen.head = seen.head.max(*seq);
            seen.fingerprints.extend(payload_fingerprints(payload));
        }
        expected = Some(first + records.len() as i64);
    }
    Ok(seen)
}

/// The in-sequence records at the start of one segment: (seq, payload).
fn read_segment(bytes: &[u8], first: i64) -> Vec<(i64, String)> {
    const HEADER: usize = 8;
    const BODY_FIXED: usize = 17;
    let mut out = Vec::new();
    let mut at = 0;
    let mut next = first;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len < BODY_FIXED {
            break;
        }
        let Some(body) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let mut seq = [0; 8];
        seq.copy_from_slice(&body[..8]);
        let seq = i64::from_le_bytes(seq);
        if seq != next {
            break;
        }
        let source_end = BODY_FIXED + body[16] as usize;
        let Some(payload) = body.get(source_end..) else {
            break;
        };
        out.push((seq, String::from_utf8_lossy(payload).into_owned()));
        next += 1;
        at += HEADER + len;
    }
    out
}

/// One record as the journal writes it (for the reader's own test).
fn frame(seq: i64, payload: &str) -> Vec<u8> {
    let source = b"alertmanager";
    let mut body = Vec::new();
    body.extend(seq.to_le_bytes());
    body.extend(0i64.to_le_bytes());
    body.push(source.len() as u8);
    body.extend(source);
    body.extend(payload.as_bytes());
    let mut out = Vec::new();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(crc32fast::hash(&body).to_le_bytes());
    out.extend(body);
    out
}
