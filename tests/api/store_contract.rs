//! One contract, two backends: the same flow must behave the same on SQLite
//! and PostgreSQL (teloxide's storage-test pattern).

use firstline::domain::time::Millis;

use std::str::FromStr;

use crate::helpers::{
    Backend, TestApp, am_payload, fixture, fresh_database, spawn_app_on, spawn_with,
};

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
    let posts = app.wait_posts("INC-1", 6).await;
    assert_eq!(
        posts.len(),
        6,
        "opened, acked, each alert resolved, mitigated, resolved: {posts:?}"
    );
    assert!(
        posts[2]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("✅ INC-1 resolved: HighErrorRate"),
        "{posts:?}"
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

/// A database left by the version before receipts were found by hash:
/// migrations up to 0003 and an idempotency receipt written the old way.
async fn database_with_an_old_receipt(
    backend: Backend,
    dir: &std::path::Path,
    body: &[u8],
) -> Option<String> {
    use sha2::{Digest, Sha256};
    let url = fresh_database(backend, dir).await?;
    let before_hashing = |m: sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: m
            .migrations
            .iter()
            .filter(|m| m.version < 4)
            .cloned()
            .collect(),
        ..m
    };
    let insert = "INSERT INTO receipts (source, key, outcome, request_hash, response, received_ms)
                  VALUES ('generic', 'idem:order-42', 'accepted', $1, $2, $3)";
    let request_hash = hex::encode(Sha256::digest(body));
    let response = r#"{"accepted":3,"duplicates":0}"#;
    let now = chrono::Utc::now().timestamp_millis();
    // The same steps on either backend's pool type.
    macro_rules! old_version {
        ($pool:expr, $migrator:expr) => {{
            let pool = $pool;
            before_hashing($migrator).run(&pool).await.unwrap();
            sqlx::query(insert)
                .bind(&request_hash)
                .bind(response)
                .bind(now)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }};
    }
    match backend {
        Backend::Sqlite => {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            old_version!(
                sqlx::SqlitePool::connect_with(opts).await.unwrap(),
                sqlx::migrate!("../migrations/sqlite")
            )
        }
        Backend::Postgres => old_version!(
            sqlx::PgPool::connect(&url).await.unwrap(),
            sqlx::migrate!("../migrations/postgres")
        ),
    }
    Some(url)
}

async fn an_old_receipt_still_answers_for_its_key(backend: Backend) {
    let body = fixture("generic_single.json");
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database_with_an_old_receipt(backend, dir.path(), &body).await else {
        return;
    };

    let app = spawn_with(dir, url, &[]).await;
    let send = |body: Vec<u8>| {
        app.client
            .post(format!("{}/hooks/generic", app.addr))
            .header("Idempotency-Key", "order-42")
            .body(body)
            .send()
    };
    let replay = send(body.clone()).await.unwrap();
    assert_eq!(replay.status(), 200);
    let replay: serde_json::Value = replay.json().await.unwrap();
    let reused = send(fixture("generic_many.json")).await.unwrap();

    assert_eq!(replay["status"], "duplicate", "{replay}");
    assert_eq!(replay["replay_of"], "order-42");
    assert_eq!(
        replay["duplicates"], 3,
        "the answer given before the upgrade, as a replay: {replay}"
    );
    assert_eq!(reused.status(), 422, "same key, other body");
    assert_eq!(app.incident_ids().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_receipt_written_before_the_upgrade_still_answers_for_its_key_on_sqlite() {
    an_old_receipt_still_answers_for_its_key(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_receipt_written_before_the_upgrade_still_answers_for_its_key_on_postgres() {
    an_old_receipt_still_answers_for_its_key(Backend::Postgres).await;
}

/// One incident-writer batch that records these alert keys, in order,
/// after prefetching them; their outcomes.
async fn record_in_one_batch(
    app: &TestApp,
    keys: &[&str],
) -> Vec<firstline::store::ReceiptOutcome> {
    use firstline::store::{Batch, Prefetch};
    // Now, or the app's receipt janitor prunes them as past their TTL.
    let now = Millis(chrono::Utc::now().timestamp_millis());
    let prefetch = Prefetch {
        receipts: keys
            .iter()
            .map(|k| ("alertmanager".to_string(), k.to_string()))
            .collect(),
        ..Default::default()
    };
    let mut batch = Batch::new(app.store.begin().await.unwrap());
    batch.prefetch(&prefetch, now).await.unwrap();
    let mut outcomes = Vec::new();
    for k in keys {
        outcomes.push(
            batch
                .record_receipt("alertmanager", k, None, now)
                .await
                .unwrap(),
        );
    }
    batch.commit().await.unwrap();
    outcomes
}

/// The incident writer's receipts: a key it has recorded before is a
/// duplicate (in a later batch, and again within one), and its counter says
/// how often it came back.
async fn receipts_count_what_the_writer_saw_again(app: TestApp) {
    use firstline::store::ReceiptOutcome::{Duplicate, New};

    let first = record_in_one_batch(&app, &["a", "b"]).await;
    let second = record_in_one_batch(&app, &["a", "c", "a"]).await;

    assert_eq!(first, [New, New]);
    assert_eq!(second, [Duplicate, New, Duplicate]);
    let keys: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|k| ("alertmanager".to_string(), k.to_string()))
        .collect();
    let mut stored = app.store.receipts_for(&keys).await.unwrap();
    stored.sort_by(|x, y| x.key.cmp(&y.key));
    let counts: Vec<(&str, i64)> = stored
        .iter()
        .map(|r| (r.key.as_str(), r.duplicates))
        .collect();
    assert_eq!(counts, [("a", 2), ("b", 0), ("c", 0)]);
}

#[tokio::test]
async fn receipts_count_what_the_writer_saw_again_on_sqlite() {
    receipts_count_what_the_writer_saw_again(spawn_app_on(Backend::Sqlite, &[]).await.unwrap())
        .await;
}

#[tokio::test]
async fn receipts_count_what_the_writer_saw_again_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres, &[]).await else {
        return;
    };
    receipts_count_what_the_writer_saw_again(app).await;
}
