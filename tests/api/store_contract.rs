//! One contract, two backends: the same flow must behave the same on SQLite
//! and PostgreSQL (teloxide's storage-test pattern).

use firstline::domain::time::Millis;

use crate::helpers::{Backend, TestApp, am_payload, fixture, spawn_app_on};

async fn contract(app: TestApp) {
    // Intake, grouping and dedup.
    let (s, body) = app
        .post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    assert_eq!((s, body["accepted"].as_i64()), (200, Some(2)), "{body}");
    let (_, dup) = app
        .post_hook("alertmanager", fixture("alertmanager_firing.json"))
        .await;
    assert_eq!(dup["status"], "duplicate");
    let other = am_payload(
        "g2",
        &[(
            "DiskFull",
            "db",
            "warning",
            "db-1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    let (_, body) = app.post_hook("alertmanager", other).await;
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(app.incident_ids().await, ["INC-1", "INC-2"]);

    // Commands and state.
    let (s, _) = app.command("sam", "/incident ack INC-1").await;
    assert_eq!(s, 200);
    let (_, resolved) = app
        .post_hook("alertmanager", fixture("alertmanager_resolved.json"))
        .await;
    assert_eq!(resolved["accepted"], 2, "{resolved}");
    assert_eq!(
        app.incident_ids().await,
        ["INC-1", "INC-2"],
        "a resolution opens nothing"
    );
    let (s, _) = app.command("sam", "/incident resolve INC-1").await;
    assert_eq!(s, 200);

    // Reads.
    let (_, open) = app.get_json("/api/incidents").await;
    let open: Vec<&str> = open["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["incident"]["human_id"].as_str().unwrap())
        .collect();
    assert_eq!(open, ["INC-2"]);
    let (_, inc) = app.get_json("/api/incidents/INC-1").await;
    assert_eq!(inc["incident"]["state"], "resolved");
    assert_eq!(inc["incident"]["severity"], "P1");
    let kinds: Vec<String> = app.get_json("/api/incidents/INC-1/timeline").await.1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "alert_firing",
            "alert_firing",
            "state_changed",
            "alert_resolved",
            "alert_resolved",
            "state_changed",
            "state_changed"
        ]
    );
    let posts = app.wait_posts("INC-1", 4).await;
    assert_eq!(
        posts.len(),
        4,
        "opened, acked, mitigated, resolved: {posts:?}"
    );
    let (_, pm) = app
        .get_json("/api/incidents/INC-1/postmortem?format=json")
        .await;
    assert!(
        pm["response_times"]["ttr_ms"].as_i64().unwrap()
            >= pm["response_times"]["tta_ms"].as_i64().unwrap()
    );

    // Receipts: the MAX count keeps the newest, the TTL drops the old.
    let before = app.store.receipt_count().await.unwrap();
    assert_eq!(
        before, 5,
        "one receipt per alert delivery key: 2 firing, 1 other, 2 resolved"
    );
    let pruned = app.store.prune_receipts(Millis(0), 1).await.unwrap();
    assert_eq!(pruned, 4);
    assert_eq!(app.store.receipt_count().await.unwrap(), 1);
    let pruned = app
        .store
        .prune_receipts(Millis(i64::MAX), 1000)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    // With its receipt pruned, a redelivery is still recognised by the alert itself.
    let other = am_payload(
        "g2",
        &[(
            "DiskFull",
            "db",
            "warning",
            "db-1",
            "firing",
            "2026-11-23T00:00:00Z",
        )],
    );
    let (_, dup) = app.post_hook("alertmanager", other).await;
    assert_eq!(dup["status"], "duplicate", "{dup}");

    let metrics: String = app.get_text("/metrics").await.1;
    assert!(
        metrics.contains("firstline_incidents_open{severity=\"P2\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_store_contract_holds_on_sqlite() {
    contract(spawn_app_on(Backend::Sqlite, &[]).await.unwrap()).await;
}

#[tokio::test]
async fn the_store_contract_holds_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres, &[]).await else {
        return;
    };
    contract(app).await;
}
