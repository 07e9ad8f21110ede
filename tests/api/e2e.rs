//! The walk a new user takes in README: send an Alertmanager alert, read the
//! incident, its timeline, its console post and its postmortem over HTTP.

use crate::helpers::{fixture, spawn_app};

#[tokio::test]
async fn an_alertmanager_alert_becomes_an_incident_with_a_timeline_a_console_post_and_a_postmortem()
{
    let app = spawn_app().await;

    let (status, accepted) = app
        .post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    let (_, incidents) = app.get_json("/api/incidents").await;
    let (_, timeline) = app.get_json("/api/incidents/INC-1/timeline").await;
    let posts = app.wait_posts("INC-1", 1).await;
    let (pm_status, postmortem) = app
        .get_text("/api/incidents/INC-1/postmortem?format=md")
        .await;
    let (_, health) = app.get_text("/healthz").await;
    let (ready, _) = app.get_text("/readyz").await;

    assert_eq!(status, 200, "{accepted}");
    assert_eq!(incidents["incidents"][0]["incident"]["human_id"], "INC-1");
    assert_eq!(
        incidents["incidents"][0]["incident"]["title"],
        "HighErrorRate (service=account)"
    );
    let events = timeline["events"].as_array().unwrap();
    assert_eq!(events[0]["kind"], "opened");
    assert!(
        events
            .iter()
            .filter(|e| e["kind"] == "alert_firing")
            .count()
            == 2
    );
    let text = posts[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("🔴 INC-1 [P1] HighErrorRate (service=account)"),
        "{text}"
    );
    assert!(
        text.contains("10.0.3.17:8080") && text.contains("10.0.4.22:8080"),
        "both alerts are listed: {text}"
    );
    assert!(
        text.contains("/incident ack INC-1"),
        "the post says what to do next: {text}"
    );
    assert_eq!(pm_status, 200);
    assert!(postmortem.contains("| TTD (detected − impact start) |"));
    assert!(postmortem.contains("## Timeline"));
    assert_eq!(health, "ok");
    assert_eq!(ready, 200);
}

#[tokio::test]
async fn metrics_count_alerts_by_source_and_status_and_show_open_incidents() {
    let app = spawn_app().await;
    app.post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    app.post_hook("alertmanager", b"nope".to_vec()).await;

    let (status, metrics) = app.get_text("/metrics").await;

    assert_eq!(status, 200);
    assert!(
        metrics.contains("firstline_alerts_total{source=\"alertmanager\",status=\"accepted\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("firstline_alerts_total{source=\"alertmanager\",status=\"rejected\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("firstline_incidents_open{severity=\"P1\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("firstline_outbox_pending"), "{metrics}");
}

#[tokio::test]
async fn api_reads_of_missing_or_malformed_ids_are_404_and_400_with_a_reason() {
    let app = spawn_app().await;

    let (missing, body) = app.get_json("/api/incidents/INC-7").await;
    let (bad, bad_body) = app.get_json("/api/incidents/seven").await;
    let (fmt, _) = app
        .get_json("/api/incidents/INC-7/postmortem?format=pdf")
        .await;

    assert_eq!(missing, 404);
    assert_eq!(body["error"], "INC-7 does not exist");
    assert_eq!(bad, 400);
    assert!(
        bad_body["error"]
            .as_str()
            .unwrap()
            .contains("not an incident id")
    );
    assert_eq!(fmt, 400);
}

#[tokio::test]
async fn every_alert_joining_an_incident_is_named_or_counted_in_its_thread() {
    let app = crate::helpers::spawn_app().await;
    let alert = |i: usize| {
        crate::helpers::am_payload(
            "g-join",
            &[(
                "JoinTest",
                "svc",
                "warning",
                &format!("host-{i}"),
                "firing",
                "2026-12-05T00:00:00Z",
            )],
        )
    };
    for i in 0..31 {
        assert_eq!(app.post_hook("alertmanager", alert(i)).await.0, 200);
    }
    // The opening names host-0; the next 20 are named one by one; the last
    // 10 are counted once the writer is idle.
    let posts = app.wait_posts("INC-1", 22).await;
    let texts: Vec<&str> = posts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert!(texts[0].contains("host-0"), "{texts:?}");
    for i in 1..=20 {
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("➕ INC-1 firing: JoinTest on host-")
                    && t.contains(&format!("host-{i}:"))),
            "host-{i}: {texts:?}"
        );
    }
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("➕ INC-1 10 more alert(s) fired")),
        "{texts:?}"
    );
}
