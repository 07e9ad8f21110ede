//! Slack under an alert storm (issue 19): what reaches the channel, how
//! fast, and whether anything is missing from it, against a fake Slack that
//! answers 429 to more than one `chat.postMessage` a second per channel.
//! Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench --bench slack_storm              # both scenarios; the second until its storm is over
//! cargo bench --bench slack_storm -- --quick   # a tenth of the alerts and incidents (a smoke run)
//! cargo bench --bench slack_storm -- --full    # the second also until its ~990 held roots are out (~35 min)
//! ```
//!
//! Two scenarios, each on a fresh SQLite store and a fresh fake Slack
//! (`tests/api/fake_slack.rs`), with the product's defaults (storm
//! threshold 10 incidents, window 60 s):
//!
//! 1. *10,000 alerts in 10 s over 50 groups*: every 100 ms each group gets
//!    one Alertmanager request of 2 new alerts (50 incidents);
//! 2. *1,000 new incidents in 10 s*: 1,000 groups of one alert each, 10
//!    requests every 100 ms.
//!
//! The server is the real app (library `App`, Slack platform) on a loopback
//! port. Times run from the first alert sent. Alert names match no bundled
//! runbook, so no checks run and the threads hold only what storms and
//! alerts put there.

// Benches build with cfg(test), so the fake's own tests come along unused.
#[allow(unused_imports)]
#[path = "../tests/api/fake_slack.rs"]
mod fake_slack;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use fake_slack::{FakeSlack, Message};
use firstline::app::App;
use firstline::chat::console::Sink;
use firstline::chat::storm::RELEASE_EVERY;
use serde_json::{Value, json};
use sqlx::Connection;

const TOKEN: &str = "xoxb-bench-token";
const SECRET: &str = "bench-signing-secret";
const CHANNEL: &str = "C0INCIDENT";
/// Ticks the sending is spread over, 100 ms apart (10 s).
const TICKS: usize = 100;
const TICK: Duration = Duration::from_millis(100);

struct Scenario {
    title: String,
    groups: usize,
    /// Alerts per group in all.
    per_group: usize,
    /// Wait for every held root to be posted (else stop when the storm is
    /// over and compute the drain).
    wait_drain: bool,
}

impl Scenario {
    fn alerts(&self) -> usize {
        self.groups * self.per_group
    }
}

/// What one run saw.
#[derive(Default)]
struct Figures {
    sent: usize,
    requests: usize,
    accepted: u64,
    refused: usize,
    send_s: f64,
    /// Calls by method, and how many of them were answered 429.
    calls: BTreeMap<String, (usize, usize)>,
    startup_calls: usize,
    ratelimited: usize,
    summary_all: Option<(f64, i64, usize)>,
    over: Option<(f64, i64, usize)>,
    final_at: Option<f64>,
    /// When the last thread reply went out (nothing more for 8 s after).
    threads_done_at: Option<f64>,
    /// Alerts thread replies name one by one (`➕ INC-7 firing: …`).
    reply_named: usize,
    drain_computed: Option<f64>,
    timed_out: Option<String>,
    roots: usize,
    duplicate_roots: usize,
    roots_final: usize,
    roots_not_final: Vec<String>,
    replies: usize,
    summaries: usize,
    summary_held: Option<i64>,
    summary_updates: u32,
    summary_text: Option<String>,
    listed: usize,
    listed_without_root: usize,
    roots_not_listed: usize,
    alerts_in_store: Option<i64>,
    timeline_individual: Option<i64>,
    timeline_counted: Option<i64>,
    slack_named: usize,
    slack_counted: usize,
    reply_counted: usize,
    roots_with_their_alert: Option<(usize, usize)>,
    outbox: BTreeMap<String, i64>,
    retried: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Warnings (a failed delivery, a slow journal sync) go to stderr.
    firstline::telemetry::init_logs("text", "warn");
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    let scale = if quick { 10 } else { 1 };
    let scenarios = [
        Scenario {
            title: format!(
                "{} alerts in 10 s over 50 groups",
                thousands(10_000 / scale)
            ),
            groups: 50,
            per_group: 200 / scale,
            wait_drain: true,
        },
        Scenario {
            title: format!("{} new incidents in 10 s", thousands(1_000 / scale)),
            groups: 1_000 / scale,
            per_group: 1,
            wait_drain: full,
        },
    ];
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "slack_storm: fake Slack answering 429 beyond 1 chat.postMessage/s per channel; storm threshold 10 incidents in 60 s (defaults); SQLite; {cores} cores"
    );
    for (i, s) in scenarios.iter().enumerate() {
        println!();
        println!("scenario {}: {}", i + 1, s.title);
        let f = run(s)
            .await
            .with_context(|| format!("scenario {}", i + 1))?;
        print(s, &f);
    }
    Ok(())
}

async fn run(s: &Scenario) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    let secret_file = dir.path().join("secret");
    std::fs::write(&token_file, TOKEN)?;
    std::fs::write(&secret_file, SECRET)?;
    let db = dir.path().join("bench.db");
    let slack = FakeSlack::start(TOKEN).await;
    slack.add_channel(CHANNEL);
    slack.enforce_post_rate(1);
    let env = [
        ("FIRSTLINE_SERVER__LISTEN", "127.0.0.1:0".to_string()),
        ("FIRSTLINE_STORE__URL", format!("sqlite://{}", db.display())),
        ("FIRSTLINE_CHAT__CONSOLE_STDIN", "false".into()),
        ("FIRSTLINE_LOG__LEVEL", "warn".into()),
        ("FIRSTLINE_CHAT__PLATFORM", "slack".into()),
        ("FIRSTLINE_CHAT__CHANNEL", CHANNEL.into()),
        (
            "FIRSTLINE_CHAT__SLACK__BOT_TOKEN__FILE",
            token_file.display().to_string(),
        ),
        (
            "FIRSTLINE_CHAT__SLACK__SIGNING_SECRET__FILE",
            secret_file.display().to_string(),
        ),
        ("FIRSTLINE_CHAT__SLACK__API_URL", slack.api_url()),
    ];
    let config =
        firstline::config::load_with_env(None, env.into_iter().map(|(k, v)| (k.to_string(), v)))
            .map_err(|e| anyhow::anyhow!("bench config: {e}"))?;
    let app = App::build(config, Sink::Silent).await?;
    let base = format!("http://{}", app.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stop_rx.await;
    }));
    f.startup_calls = slack.calls().len();
    let client = reqwest::Client::new();

    // Send: every tick, the tick's share of requests at once.
    let t0 = Instant::now();
    let sender = {
        let (client, base) = (client.clone(), base.clone());
        let (groups, per_group) = (s.groups, s.per_group);
        tokio::spawn(async move { send(&client, &base, groups, per_group, t0).await })
    };

    // Watch the channel until every root is out (or the storm is over).
    let expected = s.groups;
    let deadline = t0
        + if s.wait_drain {
            Duration::from_secs(120) + RELEASE_EVERY * (expected as u32 + 60)
        } else {
            Duration::from_secs(300)
        };
    let mut sender = Some(sender);
    loop {
        let now = t0.elapsed().as_secs_f64();
        if sender.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = sender.take()
        {
            let sent = h.await??;
            (f.sent, f.requests, f.accepted, f.refused, f.send_s) = sent;
        }
        let messages = slack.channel_messages(CHANNEL);
        let view = View::of(&messages);
        let held = view.held();
        if f.summary_all.is_none()
            && let Some(h) = held
            && h + view.roots.len() as i64 == expected as i64
        {
            f.summary_all = Some((now, h, view.roots.len()));
        }
        if f.over.is_none() && view.over() {
            f.over = Some((now, held.unwrap_or(0), view.roots.len()));
        }
        if f.over.is_some() && sender.is_none() && view.ids().len() >= expected {
            f.final_at = Some(now);
            break;
        }
        if !s.wait_drain && f.over.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            f.timed_out = Some(format!(
                "stopped waiting after {:.0} s: {} roots of {expected}, summary {}",
                now,
                view.ids().len(),
                if view.over() {
                    "over"
                } else if held.is_some() {
                    "under way"
                } else {
                    "not posted"
                }
            ));
            break;
        }
        let poll = if f.over.is_some() { 250 } else { 100 };
        tokio::time::sleep(Duration::from_millis(poll)).await;
    }
    if let Some(h) = sender.take() {
        (f.sent, f.requests, f.accepted, f.refused, f.send_s) = h.await??;
    }
    if f.final_at.is_none()
        && let Some((t, held, _)) = f.over
    {
        // Held roots go one every RELEASE_EVERY from the storm's end.
        f.drain_computed = Some(t + RELEASE_EVERY.as_secs_f64() * held as f64);
    }

    // The threads: the last counts are written once an incident has been
    // quiet for 3 s, and replies go out at the channel's pace; wait until
    // nothing more is posted for 8 s.
    if f.final_at.is_some() {
        let quiet = Duration::from_secs(8);
        let mut last = slack.count("chat.postMessage");
        let mut since = Instant::now();
        while since.elapsed() < quiet && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let n = slack.count("chat.postMessage");
            if n != last {
                last = n;
                since = Instant::now();
            }
        }
        f.threads_done_at = Some(t0.elapsed().as_secs_f64() - since.elapsed().as_secs_f64());
    }

    // What the channel says.
    let messages = slack.channel_messages(CHANNEL);
    let view = View::of(&messages);
    f.roots = view.roots.len();
    f.duplicate_roots = view.roots.len() - view.ids().len();
    f.replies = messages.iter().filter(|m| m.thread_ts.is_some()).count();
    f.summaries = view.summaries.len();
    f.summary_held = view.held();
    f.summary_updates = view.summaries.iter().map(|m| m.updates).sum();
    f.summary_text = view.summaries.first().map(|m| m.text.clone());
    for m in messages.iter().filter(|m| m.thread_ts.is_some()) {
        f.reply_counted += counted_in_reply(&m.text);
        f.reply_named += named_in_reply(&m.text);
    }
    for root in &view.roots {
        let (named, counted) = alerts_in_root(root);
        f.slack_named += named;
        f.slack_counted += counted;
    }
    for call in slack.calls().iter().skip(f.startup_calls) {
        let e = f.calls.entry(call.method.clone()).or_default();
        e.0 += 1;
        if call.status == 429 {
            e.1 += 1;
        }
    }
    f.ratelimited = slack.ratelimited();

    // What firstline says it has.
    let listed: Value = client
        .get(format!("{base}/api/incidents?state=all&limit=1000"))
        .send()
        .await?
        .json()
        .await?;
    let incidents: Vec<&Value> = listed["incidents"]
        .as_array()
        .map(|a| a.iter().map(|i| &i["incident"]).collect())
        .unwrap_or_default();
    f.listed = incidents.len();
    let by_id: HashMap<&str, &Value> = incidents
        .iter()
        .filter_map(|i| Some((i["human_id"].as_str()?, *i)))
        .collect();
    let root_ids = view.ids();
    f.listed_without_root = by_id
        .keys()
        .filter(|id| !root_ids.contains_key(*id))
        .count();
    f.roots_not_listed = root_ids
        .keys()
        .filter(|id| !by_id.contains_key(*id))
        .count();
    for (id, root) in &root_ids {
        match by_id.get(id) {
            Some(inc) if root_final(root, inc) => f.roots_final += 1,
            _ => f.roots_not_final.push(format!("{id}: {}", root.text)),
        }
    }
    if s.per_group > 1 {
        // Every alert stored, and on the timeline (one by one or counted).
        let (mut stored, mut individual, mut counted) = (0, 0, 0);
        for id in by_id.keys() {
            let inc: Value = client
                .get(format!("{base}/api/incidents/{id}"))
                .send()
                .await?
                .json()
                .await?;
            stored += inc["alert_counts"]["total"].as_i64().unwrap_or(0);
            let tl: Value = client
                .get(format!("{base}/api/incidents/{id}/timeline?limit=5000"))
                .send()
                .await?
                .json()
                .await?;
            for e in tl["events"].as_array().into_iter().flatten() {
                match e["kind"].as_str() {
                    Some("alert_firing") => individual += 1,
                    Some("alerts_counted") => counted += e["data"]["fired"].as_i64().unwrap_or(0),
                    _ => {}
                }
            }
        }
        f.alerts_in_store = Some(stored);
        f.timeline_individual = Some(individual);
        f.timeline_counted = Some(counted);
    } else {
        // One alert per incident: each root out must show its own alert.
        let with_alert = view
            .roots
            .iter()
            .filter(|r| {
                service_of(&r.text)
                    .is_some_and(|svc| opening(r).contains(&format!("on {}:", instance(svc, 0))))
            })
            .count();
        f.roots_with_their_alert = Some((with_alert, view.roots.len()));
    }

    // The outbox, straight from the store.
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM outbox WHERE kind = 'chat_post' GROUP BY status",
    )
    .fetch_all(&mut c)
    .await?;
    f.outbox = rows.into_iter().collect();
    f.retried =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'chat_post' AND attempts > 1")
            .fetch_one(&mut c)
            .await?;
    drop(c);

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    Ok(f)
}

/// Sends `per_group` new alerts to each of `groups` groups over `TICKS`
/// ticks (at least one alert a request, several when a group has more than
/// `TICKS`). Returns (alerts, requests, accepted, refused requests, seconds).
async fn send(
    client: &reqwest::Client,
    base: &str,
    groups: usize,
    per_group: usize,
    t0: Instant,
) -> anyhow::Result<(usize, usize, u64, usize, f64)> {
    // (group, first alert, alerts) per request, spread evenly over the ticks.
    let mut plan: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); TICKS];
    if per_group >= TICKS {
        let per_req = per_group / TICKS;
        for (tick, reqs) in plan.iter_mut().enumerate() {
            for g in 0..groups {
                reqs.push((g, tick * per_req, per_req));
            }
        }
    } else {
        // Fewer alerts than ticks per group: a request of each group's
        // `per_group`-th share; requests spread round-robin.
        let mut n = 0;
        for k in 0..per_group {
            for g in 0..groups {
                plan[n * TICKS / (groups * per_group)].push((g, k, 1));
                n += 1;
            }
        }
    }
    let (mut sent, mut requests, mut accepted, mut refused) = (0, 0, 0u64, 0);
    for (tick, reqs) in plan.into_iter().enumerate() {
        tokio::time::sleep_until((t0 + TICK * tick as u32).into()).await;
        let mut set = tokio::task::JoinSet::new();
        for (g, first, n) in reqs {
            let body = payload(g, first, n);
            let (client, url) = (client.clone(), format!("{base}/hooks/alertmanager"));
            sent += n;
            requests += 1;
            set.spawn(async move {
                let r = client.post(url).body(body).send().await?;
                let ok = r.status() == 200;
                let v: Value = r.json().await.unwrap_or(Value::Null);
                anyhow::Ok((ok, v["accepted"].as_u64().unwrap_or(0)))
            });
        }
        while let Some(done) = set.join_next().await {
            match done? {
                Ok((true, n)) => accepted += n,
                _ => refused += 1,
            }
        }
    }
    Ok((
        sent,
        requests,
        accepted,
        refused,
        t0.elapsed().as_secs_f64(),
    ))
}

/// An Alertmanager v4 request of `n` new alerts of group `g`, from `first`.
fn payload(g: usize, first: usize, n: usize) -> String {
    let svc = format!("svc-{g:04}");
    let alerts: Vec<Value> = (first..first + n)
        .map(|k| {
            let inst = instance(&svc, k);
            json!({
                "status": "firing",
                "labels": {"alertname": "BenchStorm", "service": svc, "severity": "warning", "instance": inst},
                "annotations": {"summary": format!("bench alert {k} of {svc}")},
                "startsAt": "2026-12-05T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": format!("bench-{svc}-{k}"),
            })
        })
        .collect();
    json!({
        "version": "4", "groupKey": format!("{{}}:{{service=\"{svc}\"}}"), "truncatedAlerts": 0,
        "status": "firing", "receiver": "firstline", "groupLabels": {"service": svc},
        "commonLabels": {"alertname": "BenchStorm", "service": svc}, "commonAnnotations": {},
        "externalURL": "http://am.local", "alerts": alerts,
    })
    .to_string()
}

fn instance(svc: &str, k: usize) -> String {
    format!("{svc}-host-{k}")
}

/// The channel's top-level messages: the storm summary and incident roots.
struct View<'a> {
    summaries: Vec<&'a Message>,
    roots: Vec<&'a Message>,
}

impl<'a> View<'a> {
    fn of(messages: &'a [Message]) -> View<'a> {
        let (summaries, roots) = messages
            .iter()
            .filter(|m| m.thread_ts.is_none())
            .partition(|m| m.text.contains("Alert storm"));
        View { summaries, roots }
    }

    /// The held count the (first) summary shows.
    fn held(&self) -> Option<i64> {
        let text = &self.summaries.first()?.text;
        let after = if let Some(rest) = text.split_once("Alert storm: ") {
            rest.1
        } else {
            text.split_once("): ")?.1
        };
        after.split_whitespace().next()?.parse().ok()
    }

    fn over(&self) -> bool {
        self.summaries
            .first()
            .is_some_and(|m| m.text.contains("Alert storm over"))
    }

    /// Roots by incident id (`INC-7`); a second root of one id is dropped.
    fn ids(&self) -> HashMap<&'a str, &'a Message> {
        let mut out = HashMap::new();
        for r in &self.roots {
            if let Some(id) = r.text.split(' ').next().filter(|w| w.starts_with("INC-")) {
                out.entry(id).or_insert(*r);
            }
        }
        out
    }
}

/// A root shows its incident's final state: the plain-text fallback
/// (`INC-7 [P2] title — triggered`) and the header block say the state and
/// severity the API has for it.
fn root_final(root: &Message, inc: &Value) -> bool {
    let (Some(sev), Some(state)) = (inc["severity"].as_str(), inc["state"].as_str()) else {
        return false;
    };
    let id = inc["human_id"].as_str().unwrap_or("");
    let header = root
        .blocks
        .as_ref()
        .and_then(|b| b[0]["text"]["text"].as_str())
        .unwrap_or("");
    root.text.starts_with(&format!("{id} [{sev}] "))
        && root.text.ends_with(&format!(" — {state}"))
        && header.ends_with(&format!("{id} · {sev} · {state}"))
}

/// The opening text a root shows under its facts (its third block).
fn opening(root: &Message) -> &str {
    root.blocks
        .as_ref()
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"]["text"].as_str())
        .find(|t| t.contains("State: "))
        .unwrap_or("")
}

/// `svc-0042` from a root's `INC-7 [P2] BenchStorm (service=svc-0042) — …`.
fn service_of(text: &str) -> Option<&str> {
    let rest = text.split_once("service=")?.1;
    rest.split(')').next()
}

/// Alerts a root names one by one and counts ("… and N more"), from its
/// "Alerts in this delivery (N):" list.
fn alerts_in_root(root: &Message) -> (usize, usize) {
    let text = opening(root);
    let named = text
        .lines()
        .filter(|l| l.trim_start().starts_with('•'))
        .count();
    let counted = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("… and "))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (named, counted)
}

/// Alerts a thread reply names one by one: its `➕ INC-7 firing: …` lines
/// (merged replies carry several).
fn named_in_reply(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("➕ INC-") && l.contains(" firing"))
        .count()
}

/// Alerts a thread reply counts ("N more alert(s)…", "N more alerts
/// joined…"), if any.
fn counted_in_reply(text: &str) -> usize {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[1] == "more" && w[2].starts_with("alert"))
        .filter_map(|w| w[0].parse::<usize>().ok())
        .sum()
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

fn at(t: Option<(f64, i64, usize)>, what: &str) -> String {
    match t {
        Some((t, held, roots)) => format!("{t:.1} s ({what}: held {held}, roots out {roots})"),
        None => "not reached".into(),
    }
}

fn print(s: &Scenario, f: &Figures) {
    let row = |k: &str, v: String| println!("  {k:<34} {v}");
    row(
        "sent",
        format!(
            "{} alerts in {} requests over {:.1} s; {} accepted, {} requests refused",
            thousands(f.sent),
            thousands(f.requests),
            f.send_s,
            thousands(f.accepted as usize),
            f.refused
        ),
    );
    let method = |m: &str| f.calls.get(m).copied().unwrap_or_default();
    let (posts, posts_429) = method("chat.postMessage");
    let (updates, _) = method("chat.update");
    let others: Vec<String> = f
        .calls
        .iter()
        .filter(|(m, _)| *m != "chat.postMessage" && *m != "chat.update")
        .map(|(m, (n, _))| format!("{m} {n}"))
        .collect();
    row(
        "Slack calls",
        format!(
            "chat.postMessage {posts} ({posts_429} answered 429), chat.update {updates}, others {} (+ {} at start-up: auth.test, conversations.info)",
            if others.is_empty() {
                "0".into()
            } else {
                others.join(", ")
            },
            f.startup_calls
        ),
    );
    row("429s received", f.ratelimited.to_string());
    row(
        "summary shows every held incident",
        at(f.summary_all, "held + roots = incidents"),
    );
    row("storm over", at(f.over, "at that moment"));
    let final_row = match (f.final_at, f.drain_computed) {
        (Some(t), _) => format!("{t:.1} s"),
        (None, Some(t)) => format!(
            "≈ {t:.0} s = storm over + {} held × {} s (not waited for; --full waits)",
            f.over.map(|o| o.1).unwrap_or(0),
            RELEASE_EVERY.as_secs()
        ),
        (None, None) => "not reached".into(),
    };
    row("every root in its final state", final_row);
    if let Some(t) = f.threads_done_at {
        row("last thread reply out", format!("{t:.1} s"));
    }
    if let Some(why) = &f.timed_out {
        row("(timed out)", why.clone());
    }
    row(
        "channel",
        format!(
            "{} roots ({} duplicates), {} in their final state{}; {} summary ({} updates, held {}); {} thread replies",
            f.roots,
            f.duplicate_roots,
            f.roots_final,
            if f.roots_not_final.is_empty() {
                String::new()
            } else {
                format!(" (not: {})", f.roots_not_final.join("; "))
            },
            f.summaries,
            f.summary_updates,
            f.summary_held.map(|h| h.to_string()).unwrap_or("-".into()),
            f.replies
        ),
    );
    let held = f.summary_held.unwrap_or(0);
    let roots_before = f.over.map(|o| o.2).unwrap_or(f.roots);
    row(
        "incidents accounted for",
        format!(
            "{} listed by GET /api/incidents (of {}); at the storm's end {} held + {} roots = {}; {} listed without a root now, {} roots not listed",
            thousands(f.listed),
            thousands(s.groups),
            held,
            roots_before,
            held + roots_before as i64,
            f.listed_without_root,
            f.roots_not_listed
        ),
    );
    if let (Some(stored), Some(ind), Some(cnt)) =
        (f.alerts_in_store, f.timeline_individual, f.timeline_counted)
    {
        row(
            "alerts stored (API alert_counts)",
            format!(
                "{} of {}",
                thousands(stored as usize),
                thousands(s.alerts())
            ),
        );
        row(
            "alerts on the timelines",
            format!(
                "{} = {} one by one + {} counted (\"N more alert(s) fired\")",
                thousands((ind + cnt) as usize),
                thousands(ind as usize),
                thousands(cnt as usize)
            ),
        );
        row(
            "alerts Slack names or counts",
            format!(
                "{} of {} = {} named + {} counted (\"… and N more\") in the roots + {} named + {} counted in thread replies",
                thousands(f.slack_named + f.slack_counted + f.reply_named + f.reply_counted),
                thousands(s.alerts()),
                f.slack_named,
                f.slack_counted,
                f.reply_named,
                f.reply_counted
            ),
        );
    }
    if let Some((with, of)) = f.roots_with_their_alert {
        row(
            "roots showing their alert",
            format!(
                "{with} of {of} roots out; {} incidents held (counted in the summary, 1 alert each)",
                s.groups.saturating_sub(of)
            ),
        );
    }
    if let Some(text) = &f.summary_text {
        row("the summary's last text", String::new());
        for line in text.lines() {
            println!("      | {line}");
        }
    }
    row(
        "outbox (chat_post)",
        format!(
            "{}; {} needed more than one attempt",
            f.outbox
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            f.retried
        ),
    );
}
