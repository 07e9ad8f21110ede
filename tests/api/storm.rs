//! Storm mode in Slack: more new incidents in a window than
//! `chat.storm_threshold` put one summary in the channel instead of a root
//! per incident; held roots come out when someone acts, for a P1, and when
//! the storm is over — against a fake Slack that answers 429 to more than
//! one message a second per channel.

use std::time::Duration;

use sqlx::Connection;

use crate::fake_slack::Message;
use crate::helpers::{Backend, am_payload};
use crate::slack::{CHANNEL, SlackApp, slack_app_with};

/// Long enough for a dozen held roots to drain at one every 2 s.
const WAIT: Duration = Duration::from_secs(45);

/// Opens incident `i` (its own group and service) with a `severity` alert.
async fn open(s: &SlackApp, i: usize, severity: &str) {
    let body = am_payload(
        &format!("storm-{i}"),
        &[(
            "StormTest",
            &format!("svc-{i}"),
            severity,
            &format!("host-{i}"),
            "firing",
            "2026-12-05T00:00:00Z",
        )],
    );
    let (status, answer) = s.app.post_hook("alertmanager", body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Chat posts that needed more than one attempt (a 429 or any failure),
/// read from the store itself (`/metrics` counts the whole test process).
pub(crate) async fn retried_posts(db_url: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM outbox WHERE kind = 'chat_post' AND attempts > 1";
    if db_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(db_url).await.expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("count")
    } else {
        let mut c = sqlx::SqliteConnection::connect(db_url)
            .await
            .expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut c)
            .await
            .expect("count")
    }
}

/// What Slack shows of a message: its blocks' text where it has blocks
/// (the `text` is then only the notification fallback).
fn shown(m: &Message) -> String {
    match &m.blocks {
        Some(b) => b.to_string(),
        None => m.text.clone(),
    }
}

fn is_summary(m: &Message) -> bool {
    m.thread_ts.is_none() && shown(m).contains("Alert storm")
}

/// Roots of incidents: top-level messages that are not the summary.
fn roots(s: &SlackApp) -> Vec<Message> {
    s.slack
        .channel_messages(CHANNEL)
        .into_iter()
        .filter(|m| m.thread_ts.is_none() && !is_summary(m))
        .collect()
}

fn summaries(s: &SlackApp) -> Vec<Message> {
    s.slack
        .channel_messages(CHANNEL)
        .into_iter()
        .filter(is_summary)
        .collect()
}

async fn wait_until(s: &SlackApp, what: &str, pred: impl Fn(&SlackApp) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pred(s) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}; channel: {:#?}",
            s.slack.channel_messages(CHANNEL)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn root_of(s: &SlackApp, id: &str) -> Option<Message> {
    roots(s)
        .into_iter()
        .find(|m| m.text.starts_with(&format!("{id} ")))
}

#[tokio::test]
async fn a_storm_holds_roots_behind_one_summary_and_a_person_or_a_p1_gets_a_root_at_once() {
    let Some(s) = slack_app_with(
        Backend::Sqlite,
        &[
            ("FIRSTLINE_CHAT__STORM_THRESHOLD", "4"),
            ("FIRSTLINE_CHAT__STORM_WINDOW_S", "600"),
        ],
    )
    .await
    else {
        return;
    };
    s.slack.enforce_post_rate(1);
    for i in 1..=20 {
        open(&s, i, "warning").await;
    }
    // One summary counting what it holds; far fewer roots than incidents.
    wait_until(&s, "the summary counts every held incident", |s| {
        let held = 20 - roots(s).len();
        summaries(s)
            .first()
            .is_some_and(|m| shown(m).contains(&format!("{held} new incidents")))
    })
    .await;
    let summary = shown(&summaries(&s).remove(0));
    assert!(roots(&s).len() <= 5, "{:#?}", roots(&s));
    assert!(summary.contains("P2 "), "{summary}");
    assert!(summary.contains("StormTest "), "{summary}");
    assert!(summary.contains("svc-"), "{summary}");
    assert!(summary.contains("INC-20 [P2]"), "newest: {summary}");
    assert!(summary.contains("/incident list"), "{summary}");

    // Every incident is reachable meanwhile.
    let (_, list) = s.app.get_json("/api/incidents?limit=100").await;
    assert_eq!(
        list["incidents"].as_array().map(Vec::len),
        Some(20),
        "{list}"
    );

    // Someone acts on a held incident: it gets its root, showing the act.
    let held = (1..=20)
        .map(|i| format!("INC-{i}"))
        .rev()
        .find(|id| root_of(&s, id).is_none())
        .expect("a held incident");
    let (status, answer) = s.command("/incident", &format!("sev {held} P3")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = s.command("/incident", &format!("ack {held}")).await;
    assert_eq!(status, 200, "{answer}");
    wait_until(&s, "the acknowledged incident has its root", |s| {
        root_of(s, &held).is_some_and(|m| m.text.contains("acknowledged"))
    })
    .await;
    // Its thread keeps the order things happened in: the severity change,
    // then the ack.
    wait_until(
        &s,
        "the severity change and the ack are in its thread",
        |s| {
            let root = root_of(s, &held).expect("root");
            let thread: String = s
                .slack
                .thread(CHANNEL, &root.ts)
                .iter()
                .map(shown)
                .collect();
            thread
                .find("severity P2 → P3")
                .zip(thread.find("acknowledged by"))
                .is_some_and(|(sev, ack)| sev < ack)
        },
    )
    .await;

    // A P1 during the storm gets its root, not a line in the summary.
    open(&s, 21, "critical").await;
    wait_until(&s, "the P1 has its root", |s| {
        root_of(s, "INC-21").is_some()
    })
    .await;
    assert_eq!(summaries(&s).len(), 1, "one summary, updated in place");
    assert_eq!(s.slack.ratelimited(), 0, "paced under Slack's limit");
}

async fn storm_subsides_across_a_restart(backend: Backend) {
    let Some(s) = slack_app_with(
        backend,
        &[
            ("FIRSTLINE_CHAT__STORM_THRESHOLD", "3"),
            ("FIRSTLINE_CHAT__STORM_WINDOW_S", "4"),
        ],
    )
    .await
    else {
        return;
    };
    s.slack.enforce_post_rate(1);
    for i in 1..=12 {
        open(&s, i, "warning").await;
    }
    wait_until(&s, "the storm summary is posted", |s| {
        !summaries(s).is_empty()
    })
    .await;
    // A restart in the middle of the storm loses nothing it held.
    let s = s.restart().await;
    s.slack.enforce_post_rate(1);
    wait_until(&s, "every incident has its root", |s| roots(s).len() == 12).await;
    wait_until(&s, "the summary says the storm is over", |s| {
        summaries(s)
            .first()
            .is_some_and(|m| shown(m).contains("Alert storm over"))
    })
    .await;
    let over = summaries(&s);
    assert_eq!(over.len(), 1, "one summary, updated in place: {over:#?}");
    // Nothing lost: every alert's service is in its incident's root, once.
    let roots = roots(&s);
    for i in 1..=12 {
        let id = format!("INC-{i}");
        let mine: Vec<&Message> = roots
            .iter()
            .filter(|m| m.text.starts_with(&format!("{id} ")))
            .collect();
        assert_eq!(mine.len(), 1, "{id}: {roots:#?}");
        let blocks = mine[0].blocks.clone().unwrap_or_default().to_string();
        assert!(blocks.contains(&format!("host-{i}")), "{id}: {blocks}");
    }
    assert_eq!(s.slack.ratelimited(), 0, "Slack never answered 429");
    assert_eq!(
        retried_posts(&s.app.db_url).await,
        0,
        "every post went out at its first attempt"
    );
}

#[tokio::test]
async fn a_storm_ends_when_it_subsides_and_every_held_root_follows_even_across_a_restart() {
    storm_subsides_across_a_restart(Backend::Sqlite).await;
}

#[tokio::test]
async fn storm_mode_works_on_postgres_too() {
    storm_subsides_across_a_restart(Backend::Postgres).await;
}

#[tokio::test]
async fn the_console_shows_one_storm_summary_too_and_an_ack_brings_the_incident_out() {
    let Some(app) = crate::helpers::spawn_app_on(
        Backend::Sqlite,
        &[
            ("FIRSTLINE_CHAT__STORM_THRESHOLD", "3"),
            ("FIRSTLINE_CHAT__STORM_WINDOW_S", "600"),
        ],
    )
    .await
    else {
        return;
    };
    for i in 1..=8 {
        let body = am_payload(
            &format!("c-{i}"),
            &[(
                "StormTest",
                &format!("svc-{i}"),
                "warning",
                "h",
                "firing",
                "2026-12-05T00:00:00Z",
            )],
        );
        assert_eq!(app.post_hook("alertmanager", body).await.0, 200);
    }
    let posts = |v: &serde_json::Value| v["posts"].as_array().cloned().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + WAIT;
    let summary = loop {
        let (_, all) = app.get_json("/console/posts").await;
        if let Some(p) = posts(&all).into_iter().find(|p| {
            p["incident_id"].is_null() && p["text"].as_str().unwrap_or("").contains("Alert storm")
        }) {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        summary["text"]
            .as_str()
            .unwrap_or("")
            .contains("/incident list"),
        "{summary}"
    );
    let (_, all) = app.get_json("/console/posts").await;
    let shown: Vec<i64> = posts(&all)
        .iter()
        .filter_map(|p| p["incident_id"].as_i64())
        .collect();
    assert!(!shown.contains(&8), "INC-8 is held: {all}");
    let (status, _) = app.command("sam", "/incident ack INC-8").await;
    assert_eq!(status, 200);
    app.wait_posts("INC-8", 2).await;
}
