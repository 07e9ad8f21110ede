//! Alert intake over HTTP: every format, dedup, auth, and bad input.

use serde_json::Value;

use crate::helpers::{Backend, am_payload, down_group, fixture, spawn_app, spawn_app_on};

#[tokio::test]
async fn an_alertmanager_group_opens_one_incident_holding_both_alerts() {
    let app = spawn_app().await;

    let (status, body) = app
        .post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["accepted"], 2);
    assert!(
        body.get("opened").is_none(),
        "incidents are made after the answer: {body}"
    );
    assert_eq!(app.incident_ids().await, ["INC-1"]);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(
        inc["incident"]["severity"], "P1",
        "severity=critical maps to P1"
    );
    assert_eq!(inc["incident"]["state"], "triggered");
    assert_eq!(inc["alerts"].as_array().map(Vec::len), Some(2));
    // Impact start is the earliest startsAt of the group (09:26:53.48Z).
    let earliest = chrono::DateTime::parse_from_rfc3339("2026-03-14T09:26:53.48Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!(inc["incident"]["impact_start"], earliest);
    let ttd = inc["response_times"]["ttd_ms"].as_i64().expect("ttd");
    assert_eq!(
        ttd,
        inc["incident"]["detected"].as_i64().unwrap() - earliest
    );
}

#[tokio::test]
async fn a_redelivered_group_is_answered_as_duplicate_and_opens_nothing() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    let (_, before) = app.get_json("/api/incidents/INC-1/timeline").await;

    let (status, body) = app
        .post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;

    assert_eq!(status, 200, "Alertmanager must not retry a duplicate");
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["reason_class"], "duplicate");
    assert_eq!(body["retry_advice"], "do_not_retry");
    let (_, list) = app.get_json("/api/incidents?state=all").await;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1));
    let (_, after) = app.get_json("/api/incidents/INC-1/timeline").await;
    assert_eq!(
        before["events"], after["events"],
        "a duplicate adds nothing to the timeline"
    );
}

#[tokio::test]
async fn resolved_alerts_update_their_incident_and_never_open_a_new_one() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;

    let (status, body) = app
        .post_hook("alertmanager", fixture("alertmanager_resolved.json"))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(app.incident_ids().await, ["INC-1"], "it opened nothing");
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(
        inc["incident"]["state"], "mitigated",
        "all alerts resolved -> mitigated by default"
    );
    assert!(
        inc["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "resolved")
    );
    let (_, list) = app.get_json("/api/incidents?state=all").await;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_resolved_alert_for_no_open_incident_is_stored_without_opening_one() {
    let app = spawn_app().await;
    let body = am_payload(
        "{}:{alertname=\"Gone\"}",
        &[(
            "Gone",
            "api",
            "critical",
            "a:1",
            "resolved",
            "2026-11-23T00:00:00Z",
        )],
    );

    let (status, answer) = app.post_hook("alertmanager", body).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let (_, list) = app.get_json("/api/incidents?state=all").await;
    assert_eq!(list["incidents"], serde_json::json!([]));
}

#[tokio::test]
async fn truncated_alerts_are_recorded_on_the_incident_and_its_timeline() {
    let app = spawn_app().await;

    let (status, _) = app
        .post_hook("alertmanager", fixture("alertmanager_truncated.json"))
        .await;

    assert_eq!(status, 200);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["truncated_alerts"], 3);
    let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "alerts_truncated")
    );
    let posts = app.wait_posts("INC-1", 1).await;
    assert!(
        posts[0]["text"]
            .as_str()
            .unwrap()
            .contains("left out 3 more alert(s)")
    );
}

#[tokio::test]
async fn grafana_alerts_open_and_resolve_incidents() {
    let app = spawn_app().await;

    let (status, body) = app
        .post_hook("grafana", fixture("grafana_firing.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    let opened = app.incident_ids().await;
    assert!(!opened.is_empty());
    let (status, body) = app
        .post_hook("grafana", fixture("grafana_resolved.json"))
        .await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(app.incident_ids().await, opened, "it opened nothing");
    for id in opened {
        let (_, inc) = app.get_json(&format!("/api/incidents/{id}")).await;
        assert_eq!(inc["incident"]["state"], "mitigated");
    }
}

#[tokio::test]
async fn a_generic_alert_with_an_idempotency_key_is_stored_once_and_replayed() {
    let app = spawn_app().await;
    let send = |body: Vec<u8>, key: &'static str| {
        app.client
            .post(format!("{}/hooks/generic", app.addr))
            .header("Idempotency-Key", key)
            .body(body)
            .send()
    };

    let first: Value = send(fixture("generic_single.json"), "evt-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = send(fixture("generic_single.json"), "evt-1").await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    let reused = send(fixture("generic_many.json"), "evt-1").await.unwrap();

    assert_eq!(first["status"], "accepted");
    assert_eq!(again["status"], "duplicate");
    assert_eq!(first["accepted"], 1, "{first}");
    assert_eq!(
        again["duplicates"], 1,
        "the replay counts what was stored: {again}"
    );
    assert_eq!(again["replay_of"], "evt-1");
    assert_eq!(reused.status(), 422);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(reused["field"], "Idempotency-Key");
    assert_eq!(reused["retry_advice"], "retry_after_fix");
    let (_, list) = app.get_json("/api/incidents?state=all").await;
    assert_eq!(list["incidents"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn bad_bodies_get_a_4xx_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("alertmanager", b"{not json".to_vec(), 400, "body"),
        ("alertmanager", br#"{"version":"3","alerts":[]}"#.to_vec(), 422, "version"),
        ("alertmanager", br#"{"version":"4","alerts":"many"}"#.to_vec(), 422, "alerts"),
        (
            "alertmanager",
            br#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"yesterday"}]}"#.to_vec(),
            422,
            "alerts[0].startsAt",
        ),
        (
            "alertmanager",
            br#"{"version":"4","alerts":[{"status":"firing","labels":{"alertname":7},"startsAt":"2026-11-23T00:00:00Z"}]}"#.to_vec(),
            422,
            "alerts[0].labels.alertname",
        ),
        ("generic", br#"{"title":"Disk full","sevrity":"critical"}"#.to_vec(), 422, "sevrity"),
        ("generic", br#"{"status":"firing"}"#.to_vec(), 422, "title"),
    ];
    for (source, body, code, field) in cases {
        let (status, answer) = app.post_hook(source, body.clone()).await;
        assert_eq!(
            status,
            code,
            "{source} {}: {answer}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(answer["status"], "rejected");
        assert_eq!(answer["reason_class"], "validation");
        assert!(
            answer["field"].as_str().unwrap_or("").contains(field),
            "{answer}"
        );
    }
    let (_, list) = app.get_json("/api/incidents?state=all").await;
    assert_eq!(list["incidents"], serde_json::json!([]));
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413_and_a_json_answer() {
    let app = spawn_app_on(
        Backend::Sqlite,
        &[("FIRSTLINE_SERVER__MAX_BODY_BYTES", "2048")],
    )
    .await
    .unwrap();
    let big = am_payload(
        "g",
        &[(
            "Big",
            &"x".repeat(4000),
            "critical",
            "a:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );

    let (status, answer) = app.post_hook("alertmanager", big).await;

    assert_eq!(status, 413);
    assert_eq!(answer["status"], "rejected");
    assert!(answer["error"].as_str().unwrap().contains("2048"));
}

#[tokio::test]
async fn an_unknown_source_is_a_404_naming_the_valid_ones() {
    let app = spawn_app().await;
    let (status, answer) = app.post_hook("zabbix", "{}").await;
    assert_eq!(status, 404);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("/hooks/alertmanager")
    );
}

#[tokio::test]
async fn a_source_with_a_token_refuses_missing_and_wrong_bearers_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("am.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let path = token_file.display().to_string();
    let app = spawn_app_on(
        Backend::Sqlite,
        &[(
            "FIRSTLINE_INTAKE__TOKENS__ALERTMANAGER__FILE",
            path.as_str(),
        )],
    )
    .await
    .unwrap();
    let post = |auth: Option<&'static str>| {
        let mut req = app
            .client
            .post(format!("{}/hooks/alertmanager", app.addr))
            .body(fixture("alertmanager_firing.json"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };

    let none = post(None).await.unwrap();
    let wrong = post(Some("Bearer guess")).await.unwrap();
    let right = post(Some("Bearer s3cret-token")).await.unwrap();

    assert_eq!(none.status(), 401);
    assert_eq!(wrong.status(), 401);
    let wrong: Value = wrong.json().await.unwrap();
    assert_eq!(wrong["reason_class"], "auth");
    assert!(
        !wrong.to_string().contains("s3cret"),
        "the answer must not leak the token"
    );
    assert_eq!(right.status(), 200);
}

#[tokio::test]
async fn a_higher_severity_alert_joining_an_incident_raises_its_severity() {
    let app = spawn_app().await;
    let warn = am_payload(
        "g1",
        &[(
            "Latency",
            "checkout",
            "warning",
            "a:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    let crit = am_payload(
        "g2",
        &[(
            "Latency",
            "checkout",
            "critical",
            "a:2",
            "firing",
            "2026-11-23T00:01:00Z",
        )],
    );

    app.post_hook("alertmanager", warn).await;
    let (_, before) = app.get_json("/api/incidents/INC-1").await;
    let (_, body) = app.post_hook("alertmanager", crit).await;

    assert_eq!(before["incident"]["severity"], "P2");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(
        app.incident_ids().await,
        ["INC-1"],
        "same alertname+service: same incident"
    );
    let (_, after) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(after["incident"]["severity"], "P1");
    let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
    assert!(
        tl["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "severity_changed")
    );
}

#[tokio::test]
async fn intake_answers_503_with_retry_after_when_the_store_is_down_and_keeps_what_it_had() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    // Applied to incidents before the outage (the API waits for that); the
    // restart tests cover what is only journaled when the store goes away.
    assert_eq!(app.incident_ids().await, ["INC-1"]);
    // Both halves: a new alert needs only the journal to be accepted.
    app.store.close().await;
    app.journal.close().await;

    let r = app
        .client
        .post(format!("{}/hooks/alertmanager", app.addr))
        .body(fixture("alertmanager_truncated.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 503, "Alertmanager retries 5xx only");
    assert!(r.headers().get("retry-after").is_some());
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["reason_class"], "infra");
    assert_eq!(answer["retry_advice"], "retry_with_backoff");
    let reopened = firstline::store::Store::connect(&firstline::store::ConnectOptions {
        url: app.db_url.clone(),
        max_connections: 1,
        sqlite_full_sync: true,
    })
    .await
    .unwrap();
    let incidents = reopened
        .incidents(firstline::store::IncidentFilter::All, 10)
        .await
        .unwrap();
    assert_eq!(
        incidents.len(),
        1,
        "the alert accepted before the outage is still there"
    );
}

#[tokio::test]
async fn concurrent_deliveries_sharing_commits_still_make_one_incident_and_count_each_duplicate() {
    let app = spawn_app().await;
    let bodies: Vec<String> = (0..20)
        .map(|i| {
            let instance = format!("10.0.0.{i}:80");
            am_payload(
                "g",
                &[(
                    "Storm",
                    "api",
                    "warning",
                    instance.as_str(),
                    "firing",
                    "2026-11-23T00:00:00Z",
                )],
            )
        })
        .collect();

    // Every alert twice, all at once: the writer batches them into shared
    // transactions, within which the second copy must count as a duplicate.
    let sends = bodies
        .iter()
        .chain(bodies.iter())
        .map(|b| app.post_hook("alertmanager", b.clone()));
    let answers = futures_join_all(sends).await;

    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let accepted: i64 = answers
        .iter()
        .map(|(_, a)| a["accepted"].as_i64().unwrap_or(0))
        .sum();
    let duplicates: i64 = answers
        .iter()
        .map(|(_, a)| a["duplicates"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!((accepted, duplicates), (20, 20));
    let (_, list) = app.get_json("/api/incidents?state=all").await;
    assert_eq!(
        list["incidents"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["alerts"].as_array().map(Vec::len), Some(20));
    let (_, tl) = app.get_json("/api/incidents/INC-1/timeline").await;
    let firing = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "alert_firing")
        .count();
    assert_eq!(firing, 20);
    assert_eq!(app.store.receipt_count().await.unwrap(), 20);
}

/// Runs the futures concurrently on this task and collects their outputs.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    // The futures borrow the app, so they cannot be spawned: poll them all
    // from one task until each is done.
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.map(|f| Some(Box::pin(f))).collect();
    let mut out = Vec::with_capacity(pending.len());
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.extend(r);
    }
    out
}

#[tokio::test]
async fn alerts_are_still_stored_after_postgres_drops_every_connection() {
    let Some(app) = spawn_app_on(Backend::Postgres, &[]).await else {
        return;
    };
    let first = am_payload(
        "g",
        &[(
            "Before",
            "api",
            "warning",
            "a:1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    let (status, body) = app.post_hook("alertmanager", first).await;
    assert_eq!(status, 200, "{body}");

    // What a PostgreSQL restart or failover does to a running bot: every
    // connection it holds, the writer's included, is cut.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db_url)
        .await
        .unwrap();
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "the bot held connections to cut");

    let second = am_payload(
        "g",
        &[(
            "After",
            "web",
            "critical",
            "b:1",
            "firing",
            "2026-11-23T00:01:00Z",
        )],
    );
    let (status, body) = app.post_hook("alertmanager", second).await;
    assert_eq!(
        status, 200,
        "the writer takes a fresh connection instead of failing the sender: {body}"
    );
    assert_eq!(body["status"], "accepted");
    let (status, inc) = app.get_json("/api/incidents/INC-2").await;
    assert_eq!(status, 200, "{inc}");
}

#[tokio::test]
async fn intake_sheds_load_with_503_once_the_unapplied_backlog_is_full_and_recovers() {
    use sqlx::Connection;
    let app = spawn_app_on(Backend::Sqlite, &[("FIRSTLINE_INTAKE__MAX_BACKLOG", "2")])
        .await
        .expect("sqlite is always available");
    // Another program's long write transaction: incidents cannot be made.
    let mut lock = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();

    let (first, _) = app.post_hook("alertmanager", down_group(0)).await;
    let (second, _) = app.post_hook("alertmanager", down_group(1)).await;
    let (third, shed) = app.post_hook("alertmanager", down_group(2)).await;
    drop(lock);

    assert_eq!((first, second), (200, 200), "the backlog holds two");
    assert_eq!(third, 503, "{shed}");
    assert_eq!(shed["reason_class"], "infra");
    assert_eq!(shed["retry_advice"], "retry_with_backoff");
    assert_eq!(app.incident_ids().await, ["INC-1", "INC-2"]);
    let (retried, body) = app.post_hook("alertmanager", down_group(2)).await;
    assert_eq!(retried, 200, "once applied, the retry is accepted: {body}");
    assert_eq!(app.incident_ids().await, ["INC-1", "INC-2", "INC-3"]);
}

/// The nice value of each thread of this process whose name starts with
/// `prefix` (Linux truncates names to 15 bytes), and of the calling thread.
#[cfg(target_os = "linux")]
fn nice_values(prefix: &str) -> (Vec<i32>, i32) {
    fn nice(stat: &str) -> i32 {
        // Field 19; the name (field 2) may hold spaces, so count after it.
        let rest = &stat[stat.rfind(')').expect("stat has a name") + 2..];
        rest.split(' ')
            .nth(16)
            .expect("nice")
            .parse()
            .expect("a number")
    }
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc") {
        let dir = task.expect("task").path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.starts_with(prefix)
            && let Ok(stat) = std::fs::read_to_string(dir.join("stat"))
        {
            found.push(nice(&stat));
        }
    }
    let own = nice(&std::fs::read_to_string("/proc/thread-self/stat").expect("own stat"));
    (found, own)
}

/// In a storm the senders' answers come first: on SQLite, incidents are
/// made on a thread of their own whose priority is below intake's.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn incidents_are_made_on_a_thread_below_intakes_priority_on_sqlite() {
    let app = spawn_app().await;

    let (status, body) = app
        .post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    app.wait_posts("INC-1", 1).await;
    let (writers, intake) = nice_values("firstline-incid");

    assert_eq!(status, 200, "{body}");
    assert!(
        !writers.is_empty(),
        "no firstline-incidents thread is running"
    );
    let expected = (intake + firstline::priority::BACKGROUND_NICE).min(19);
    assert!(
        writers.iter().all(|n| *n == expected),
        "incident writers run at nice {writers:?}, intake at {intake}"
    );
    // Nothing sinks further: what the writer starts (its SQLite worker)
    // runs at the writer's level.
    let (all, _) = nice_values("");
    assert!(
        all.iter().all(|n| *n == intake || *n == expected),
        "threads at nice {all:?}; intake {intake}, background {expected}"
    );
}
