//! The data probes (`sql`, `nats`, `redis`) against the real services on
//! this machine, called through `firstline::probe::observe` with hand-built
//! targets.
//!
//! PostgreSQL tests get a fresh database each, shaped like the seeds'
//! tables, and run the seeds' check SQL verbatim. NATS tests get their own
//! stream. Where a service is not reachable the test prints why it was
//! skipped and passes, unless `FIRSTLINE_REQUIRE_POSTGRES=1`,
//! `FIRSTLINE_REQUIRE_NATS=1` or `FIRSTLINE_REQUIRE_REDIS=1` makes that a
//! failure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firstline::probe::nats::NatsProbe;
use firstline::probe::redis::RedisProbe;
use firstline::probe::sql::SqlProbe;
use firstline::probe::{Observation, ProbeError, ProbeSpec, Target, TargetSettings, observe};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(5);

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// Skips (prints why, returns `None`) or fails, per the service's
/// `FIRSTLINE_REQUIRE_*` variable.
fn skip_or_fail<T>(service: &str, var: &str, reason: String) -> Option<T> {
    if required(var) {
        panic!("{service} is required ({var}=1) but {reason}");
    }
    eprintln!("SKIPPED: {service} test: {reason} ({var}=1 makes this a failure)");
    None
}

fn target(name: &str, settings: TargetSettings, password: Option<&str>) -> Target {
    Target {
        name: name.into(),
        settings,
        secret_headers: BTreeMap::new(),
        password: password.map(SecretString::from),
        http_client: Default::default(),
        sql_connections: Default::default(),
    }
}

// ---------------------------------------------------------------- PostgreSQL

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The seeds' tables (001: notifications; 002: the account schema), with
/// rows whose expected counts the tests state.
const SCHEMA: &str = r#"
CREATE TABLE notifications (
    notification_id bigint,
    event_id text,
    status text,
    locked_by text,
    locked_at timestamptz,
    lease_until timestamptz,
    next_retry_at timestamptz,
    created_at timestamptz
);
CREATE SCHEMA account;
CREATE TABLE account.users (user_id bigint, status text, created_at timestamptz);
CREATE TABLE account.identities (provider text, user_id bigint);
CREATE TABLE account.audit_logs (action text, created_at timestamptz);

-- 2 PENDING (one 30 minutes old, one fresh), 1 PROCESSING for 20 minutes,
-- 3 SENT (clean), 1 FAILED waiting for a retry.
INSERT INTO notifications VALUES
    (1, 'evt-1', 'PENDING',    NULL,       NULL,                         NULL,                         NULL,                         NOW() - INTERVAL '30 minutes'),
    (2, 'evt-2', 'PENDING',    NULL,       NULL,                         NULL,                         NULL,                         NOW() - INTERVAL '1 minute'),
    (3, 'evt-3', 'PROCESSING', 'worker-1', NOW() - INTERVAL '20 minutes', NOW() - INTERVAL '19 minutes', NULL,                         NOW() - INTERVAL '20 minutes'),
    (4, 'evt-4', 'SENT',       NULL,       NULL,                         NULL,                         NULL,                         NOW() - INTERVAL '2 hours'),
    (5, 'evt-5', 'SENT',       NULL,       NULL,                         NULL,                         NULL,                         NOW() - INTERVAL '90 minutes'),
    (6, 'evt-6', 'SENT',       NULL,       NULL,                         NULL,                         NULL,                         NOW() - INTERVAL '1 hour'),
    (7, 'evt-7', 'FAILED',     NULL,       NULL,                         NULL,                         NOW() + INTERVAL '5 minutes', NOW() - INTERVAL '40 minutes');

INSERT INTO account.users VALUES
    (1, 'ACTIVE',           NOW() - INTERVAL '3 days'),
    (2, 'ACTIVE',           NOW() - INTERVAL '5 minutes'),
    (3, 'ACCOUNT_INACTIVE', NOW() - INTERVAL '2 days');
-- user 99 does not exist: one orphan identity.
INSERT INTO account.identities VALUES ('google', 1), ('github', 2), ('google', 3), ('google', 99);
INSERT INTO account.audit_logs VALUES
    ('SUSPEND', NOW() - INTERVAL '1 hour'),
    ('SUSPEND', NOW() - INTERVAL '2 hours'),
    ('LOGIN',   NOW() - INTERVAL '3 hours'),
    ('SUSPEND', NOW() - INTERVAL '3 days');
"#;

/// A fresh, seeded database and a read-only role to probe it with (probes
/// refuse a superuser); both dropped by [`TestDb::drop_db`].
struct TestDb {
    name: String,
    /// `pg_read_all_data` only: what the targets' documentation asks for.
    role: String,
    /// To the test database, for arranging and checking data.
    conn: PgConnection,
}

impl TestDb {
    async fn seeded() -> Option<TestDb> {
        let mut admin = match tokio::time::timeout(TIMEOUT, PgConnection::connect(ADMIN_URL)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return skip_or_fail(
                    "PostgreSQL",
                    "FIRSTLINE_REQUIRE_POSTGRES",
                    format!("cannot connect to {ADMIN_URL}: {e}"),
                );
            }
            Err(_) => {
                return skip_or_fail(
                    "PostgreSQL",
                    "FIRSTLINE_REQUIRE_POSTGRES",
                    format!("{ADMIN_URL} did not answer"),
                );
            }
        };
        let name = format!(
            "firstline_probe_{}_{}_{}",
            std::process::id(),
            nanos(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let role = format!("{name}_ro");
        // CREATE DATABASE runs alone (not in a multi-statement string).
        for sql in [
            format!("CREATE DATABASE {name}"),
            format!("CREATE ROLE {role} LOGIN; GRANT pg_read_all_data TO {role}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await
                .expect("create the test database and its read-only role");
        }
        let _ = admin.close().await;
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let mut conn = PgConnection::connect(&url)
            .await
            .expect("connect to the test database");
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .expect("seed the test database");
        Some(TestDb { name, role, conn })
    }

    fn target(&self) -> Target {
        target(
            "notification-db",
            TargetSettings::Postgres {
                url: format!("postgres://{}@127.0.0.1:5432/{}", self.role, self.name),
                password: None,
                allow_privileged: false,
            },
            None,
        )
    }

    async fn sql(&self, query: &str) -> Result<Observation, ProbeError> {
        self.sql_capped(query, 50).await
    }

    async fn sql_capped(&self, query: &str, max_rows: u32) -> Result<Observation, ProbeError> {
        let spec = ProbeSpec::Sql(SqlProbe {
            target: "notification-db".into(),
            query: query.into(),
            max_rows,
        });
        observe(&spec, &self.target(), TIMEOUT).await
    }

    /// A number from the arranging connection, to check what a probe did
    /// (or did not) change.
    async fn count(&mut self, query: &'static str) -> i64 {
        sqlx::query_scalar(query)
            .fetch_one(&mut self.conn)
            .await
            .expect("count")
    }

    async fn exec(&mut self, sql: &'static str) {
        sqlx::raw_sql(sql)
            .execute(&mut self.conn)
            .await
            .expect("arrange");
    }

    async fn drop_db(self) {
        let TestDb {
            name, role, conn, ..
        } = self;
        let _ = conn.close().await;
        if let Ok(mut admin) = PgConnection::connect(ADMIN_URL).await {
            for sql in [
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                format!("DROP ROLE IF EXISTS {role}"),
            ] {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}

fn failed_message(result: Result<Observation, ProbeError>) -> String {
    match result {
        Err(ProbeError::Failed(target, message)) => {
            assert_eq!(target, "notification-db");
            message
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

const STATUS_COUNTS: &str = "SELECT status, COUNT(*)
FROM notifications
GROUP BY status
ORDER BY status;";

const STUCK: &str = "SELECT COUNT(*)
FROM notifications
WHERE created_at < NOW() - INTERVAL '10 minutes'
  AND status IN ('PENDING', 'PROCESSING');";

const INTEGRITY: &str = "SELECT COUNT(*)
FROM notifications
WHERE status = 'SENT'
  AND (locked_by IS NOT NULL OR next_retry_at IS NOT NULL);";

#[tokio::test]
async fn the_status_count_query_returns_one_row_per_status_with_int8_counts() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };

    let obs = db.sql(STATUS_COUNTS).await.expect("observe");

    // COUNT(*) is int8, so counts are JSON numbers, not strings.
    assert_eq!(obs.data["columns"], json!(["status", "count"]));
    assert_eq!(
        obs.data["rows"],
        json!([
            {"status": "FAILED", "count": 1},
            {"status": "PENDING", "count": 2},
            {"status": "PROCESSING", "count": 1},
            {"status": "SENT", "count": 3},
        ])
    );
    assert_eq!(obs.data["row_count"], json!(4));
    assert_eq!(obs.data["truncated"], json!(false));
    assert_eq!(obs.data["scalar"], json!("FAILED"));
    // The evidence is an aligned table: header, rule, rows, a row count.
    let lines: Vec<&str> = obs.evidence.lines().collect();
    assert_eq!(lines[0], "status     | count", "{}", obs.evidence);
    assert_eq!(lines[1], "-----------+------");
    assert_eq!(lines[3], "PENDING    |     2");
    assert_eq!(lines.last(), Some(&"(4 rows)"));
    db.drop_db().await;
}

#[tokio::test]
async fn the_stuck_notifications_check_counts_old_pending_rows_and_not_fresh_ones() {
    let Some(mut db) = TestDb::seeded().await else {
        return;
    };

    // Rows 1 (PENDING, 30 min) and 3 (PROCESSING, 20 min) trip it; row 2 is
    // a minute old.
    let tripping = db.sql(STUCK).await.expect("observe");
    db.exec("UPDATE notifications SET status = 'SENT', locked_by = NULL, locked_at = NULL, lease_until = NULL WHERE notification_id IN (1, 3)")
        .await;
    let calm = db.sql(STUCK).await.expect("observe");

    assert_eq!(tripping.data["scalar"], json!(2));
    assert_eq!(tripping.data["rows"], json!([{"count": 2}]));
    assert_eq!(calm.data["scalar"], json!(0));
    assert_eq!(calm.data["row_count"], json!(1));
    db.drop_db().await;
}

#[tokio::test]
async fn the_integrity_check_counts_sent_rows_that_still_hold_a_lock_or_a_retry() {
    let Some(mut db) = TestDb::seeded().await else {
        return;
    };

    let clean = db.sql(INTEGRITY).await.expect("observe");
    db.exec("INSERT INTO notifications (notification_id, event_id, status, locked_by, created_at) VALUES (8, 'evt-8', 'SENT', 'worker-2', NOW())")
        .await;
    db.exec("INSERT INTO notifications (notification_id, event_id, status, next_retry_at, created_at) VALUES (9, 'evt-9', 'SENT', NOW(), NOW())")
        .await;
    let broken = db.sql(INTEGRITY).await.expect("observe");

    assert_eq!(clean.data["scalar"], json!(0));
    assert_eq!(broken.data["scalar"], json!(2));
    db.drop_db().await;
}

#[tokio::test]
async fn the_account_checks_run_verbatim_against_the_account_schema() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };

    let orphans = db
        .sql(
            "SELECT COUNT(*)
FROM account.identities i
LEFT JOIN account.users u ON u.user_id = i.user_id
WHERE u.user_id IS NULL;",
        )
        .await
        .expect("orphans");
    let providers = db
        .sql(
            "SELECT provider, COUNT(*)
FROM account.identities
GROUP BY provider
ORDER BY COUNT(*) DESC;",
        )
        .await
        .expect("providers");
    let users = db
        .sql("SELECT status, COUNT(*)\nFROM account.users\nGROUP BY status\nORDER BY status;")
        .await
        .expect("users");
    let audit = db
        .sql(
            "SELECT action, COUNT(*)
FROM account.audit_logs
WHERE created_at >= NOW() - INTERVAL '1 day'
GROUP BY action
ORDER BY action;",
        )
        .await
        .expect("audit");
    let recent = db
        .sql("SELECT COUNT(*)\nFROM account.users\nWHERE created_at >= NOW() - INTERVAL '10 minutes';")
        .await
        .expect("recent users");

    // Identity (google, 99) has no user.
    assert_eq!(orphans.data["scalar"], json!(1));
    assert_eq!(
        providers.data["rows"],
        json!([{"provider": "google", "count": 3}, {"provider": "github", "count": 1}])
    );
    assert_eq!(
        users.data["rows"],
        json!([{"status": "ACCOUNT_INACTIVE", "count": 1}, {"status": "ACTIVE", "count": 2}])
    );
    // The 3-day-old SUSPEND is outside the one-day window.
    assert_eq!(
        audit.data["rows"],
        json!([{"action": "LOGIN", "count": 1}, {"action": "SUSPEND", "count": 2}])
    );
    assert_eq!(recent.data["scalar"], json!(1));
    db.drop_db().await;
}

#[tokio::test]
async fn the_processing_rows_query_returns_timestamps_as_rfc3339_and_nulls_as_null() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };

    let obs = db
        .sql(
            "SELECT notification_id, event_id, locked_by, locked_at, lease_until
FROM notifications
WHERE status = 'PROCESSING'
ORDER BY locked_at
LIMIT 50;",
        )
        .await
        .expect("observe");
    let pending = db
        .sql("SELECT notification_id, locked_by, locked_at FROM notifications WHERE notification_id = 1")
        .await
        .expect("observe");

    let row = &obs.data["rows"][0];
    assert_eq!(row["notification_id"], json!(3));
    assert_eq!(row["event_id"], json!("evt-3"));
    assert_eq!(row["locked_by"], json!("worker-1"));
    for column in ["locked_at", "lease_until"] {
        let text = row[column].as_str().expect("a timestamp string");
        assert!(text.ends_with('Z'), "{column} = {text}");
        chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    }
    assert_eq!(pending.data["rows"][0]["locked_by"], Value::Null);
    assert_eq!(pending.data["rows"][0]["locked_at"], Value::Null);
    db.drop_db().await;
}

#[tokio::test]
async fn column_values_become_json_by_their_postgres_type() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };

    let obs = db
        .sql(
            "SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float4 AS f4, 2.25::float8 AS f8,
                    12.50::numeric AS dec, 42::numeric AS whole, -0.0005::numeric AS tiny,
                    true AS yes, 'x'::text AS t, 'y'::varchar AS v, 'z'::char(3) AS c, 'pg_class'::name AS n,
                    TIMESTAMPTZ '2024-05-06 07:08:09.123+02' AS tz, TIMESTAMP '2024-05-06 07:08:09' AS ts,
                    DATE '2024-05-06' AS d, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
                    '{\"k\": [1, 2]}'::json AS j, '{\"k\": {\"n\": null}}'::jsonb AS jb, NULL::text AS nothing,
                    INTERVAL '1 day 02:03:04.5' AS iv, '\\xdead'::bytea AS b, '10.0.0.1'::inet AS ip",
        )
        .await
        .expect("observe");

    let row = &obs.data["rows"][0];
    assert_eq!(row["i2"], json!(1));
    assert_eq!(row["i4"], json!(2));
    assert_eq!(row["i8"], json!(3));
    assert_eq!(row["f4"], json!(1.5));
    assert_eq!(row["f8"], json!(2.25));
    assert_eq!(row["dec"], json!(12.5));
    assert_eq!(row["whole"], json!(42));
    assert_eq!(row["tiny"], json!(-0.0005));
    assert_eq!(row["yes"], json!(true));
    assert_eq!(row["t"], json!("x"));
    assert_eq!(row["v"], json!("y"));
    assert_eq!(row["c"], json!("z  "));
    assert_eq!(row["n"], json!("pg_class"));
    assert_eq!(row["tz"], json!("2024-05-06T05:08:09.123Z"));
    assert_eq!(row["ts"], json!("2024-05-06T07:08:09"));
    assert_eq!(row["d"], json!("2024-05-06"));
    assert_eq!(row["u"], json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(row["j"], json!({"k": [1, 2]}));
    assert_eq!(row["jb"], json!({"k": {"n": null}}));
    assert_eq!(row["nothing"], Value::Null);
    assert_eq!(row["iv"], json!("1 day 02:03:04.5"));
    assert_eq!(row["b"], json!("\\xdead"));
    // No decoder for inet in binary: named by type rather than guessed.
    assert_eq!(row["ip"], json!("<type INET>"));
    db.drop_db().await;
}

#[tokio::test]
async fn an_update_or_delete_is_refused_and_a_writing_cte_meets_the_read_only_transaction() {
    let Some(mut db) = TestDb::seeded().await else {
        return;
    };

    let update = db.sql("UPDATE notifications SET status = 'SENT'").await;
    let delete = db.sql("DELETE FROM notifications;").await;
    let cte = db
        .sql("WITH gone AS (DELETE FROM notifications RETURNING *) SELECT COUNT(*) FROM gone")
        .await;

    // Not queries: refused before they reach the server.
    let update = failed_message(update);
    assert!(update.starts_with("UPDATE is not a query"), "{update}");
    let delete = failed_message(delete);
    assert!(delete.starts_with("DELETE is not a query"), "{delete}");
    // A query that writes: the read-only transaction refuses it.
    let cte = failed_message(cte);
    assert!(cte.contains("read-only transaction"), "{cte}");
    assert_eq!(db.count("SELECT COUNT(*) FROM notifications").await, 7);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM notifications WHERE status = 'SENT'")
            .await,
        3
    );
    db.drop_db().await;
}

#[tokio::test]
async fn two_statements_are_refused_and_the_second_never_runs() {
    let Some(mut db) = TestDb::seeded().await else {
        return;
    };

    // A COMMIT would end the read-only transaction: this is why a second
    // statement must never reach the server.
    let sneaky = db.sql("SELECT 1; COMMIT; DELETE FROM notifications").await;
    let two = db.sql("SELECT 1; SELECT 2;").await;

    let sneaky = failed_message(sneaky);
    assert!(sneaky.contains("only one statement"), "{sneaky}");
    assert!(failed_message(two).contains("only one statement"));
    assert_eq!(db.count("SELECT COUNT(*) FROM notifications").await, 7);
    db.drop_db().await;
}

#[tokio::test]
async fn rows_beyond_max_rows_are_dropped_and_marked_truncated() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };
    let query = "SELECT notification_id FROM notifications ORDER BY notification_id";

    let capped = db.sql_capped(query, 3).await.expect("observe");
    let exact = db.sql_capped(query, 7).await.expect("observe");
    let empty = db
        .sql("SELECT status FROM notifications WHERE false")
        .await
        .expect("observe");

    assert_eq!(capped.data["row_count"], json!(3));
    assert_eq!(capped.data["truncated"], json!(true));
    assert_eq!(
        capped.data["rows"],
        json!([{"notification_id": 1}, {"notification_id": 2}, {"notification_id": 3}])
    );
    assert!(capped.evidence.contains("truncated"), "{}", capped.evidence);
    // Exactly max_rows rows is not truncated.
    assert_eq!(exact.data["row_count"], json!(7));
    assert_eq!(exact.data["truncated"], json!(false));
    // No rows: the columns are still known and the scalar is null.
    assert_eq!(empty.data["columns"], json!(["status"]));
    assert_eq!(empty.data["rows"], json!([]));
    assert_eq!(empty.data["scalar"], Value::Null);
    db.drop_db().await;
}

#[tokio::test]
async fn a_bad_column_fails_with_the_database_message_naming_it() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };

    let result = db.sql("SELECT no_such_column FROM notifications").await;

    let message = failed_message(result);
    assert!(message.contains("no_such_column"), "{message}");
    db.drop_db().await;
}

#[tokio::test]
async fn a_query_outliving_the_timeout_is_cut_by_the_statement_timeout() {
    let Some(db) = TestDb::seeded().await else {
        return;
    };
    let spec = ProbeSpec::Sql(SqlProbe {
        target: "notification-db".into(),
        query: "SELECT pg_sleep(30)".into(),
        max_rows: 50,
    });

    let result = observe(&spec, &db.target(), Duration::from_secs(1)).await;

    assert!(
        matches!(result, Err(ProbeError::Timeout(ref t, _)) if t == "notification-db"),
        "{result:?}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn an_unreachable_postgres_port_is_unreachable_and_no_secret_is_shown() {
    // Port 1 on loopback refuses connections; no PostgreSQL needed.
    let target = target(
        "notification-db",
        TargetSettings::Postgres {
            url: "postgres://probe:url-secret@127.0.0.1:1/app".into(),
            password: None,
            allow_privileged: false,
        },
        Some("password-secret"),
    );
    let spec = ProbeSpec::Sql(SqlProbe {
        target: "notification-db".into(),
        query: "SELECT 1".into(),
        max_rows: 50,
    });

    let result = observe(&spec, &target, TIMEOUT).await;

    let Err(ProbeError::Unreachable(name, message)) = result else {
        panic!("expected Unreachable, got {result:?}");
    };
    assert_eq!(name, "notification-db");
    assert!(!message.contains("url-secret"), "{message}");
    assert!(!message.contains("password-secret"), "{message}");
}

// ---------------------------------------------------------------------- NATS

const NATS_URL: &str = "nats://127.0.0.1:4222";

fn nats_target(url: &str) -> Target {
    target("bus", TargetSettings::Nats { url: url.into() }, None)
}

async fn nats(
    stream: Option<&str>,
    consumer: Option<&str>,
    url: &str,
) -> Result<Observation, ProbeError> {
    let spec = ProbeSpec::Nats(NatsProbe {
        target: "bus".into(),
        stream: stream.map(str::to_string),
        consumer: consumer.map(str::to_string),
    });
    observe(&spec, &nats_target(url), TIMEOUT).await
}

async fn nats_client() -> Option<async_nats::Client> {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(TIMEOUT)
        .connect(NATS_URL);
    match tokio::time::timeout(TIMEOUT, connect).await {
        Ok(Ok(client)) => Some(client),
        Ok(Err(e)) => skip_or_fail(
            "NATS",
            "FIRSTLINE_REQUIRE_NATS",
            format!("cannot connect to {NATS_URL}: {e}"),
        ),
        Err(_) => skip_or_fail(
            "NATS",
            "FIRSTLINE_REQUIRE_NATS",
            format!("{NATS_URL} did not answer"),
        ),
    }
}

#[tokio::test]
async fn the_nats_probe_reports_stream_state_and_consumer_backlog() {
    let Some(client) = nats_client().await else {
        return;
    };
    let js = async_nats::jetstream::new(client.clone());
    let id = nanos();
    let stream_name = format!("FIRSTLINE_TEST_{id}");
    // Arrange and act inside one block so the stream is deleted even when a
    // step fails; the results are checked after the clean-up.
    let outcome = async {
        let stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: stream_name.clone(),
                subjects: vec![format!("firstline.test.{id}.>")],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create stream: {e}"))?;
        stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("notifier".into()),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create consumer: {e}"))?;
        for i in 0..5 {
            js.publish(
                format!("firstline.test.{id}.notification"),
                format!("n{i}").into(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?
            .await
            .map_err(|e| format!("publish ack: {e}"))?;
        }
        // Two pull requests of one message each, not acknowledged, through
        // the JetStream API's request / reply (no stream combinators
        // needed). Each gets its own inbox: a delivered message carries its
        // stream subject, which the client's shared request inbox would not
        // recognise.
        let next = format!("$JS.API.CONSUMER.MSG.NEXT.{stream_name}.notifier");
        let mut delivered = Vec::new();
        for _ in 0..2 {
            let request = async_nats::Request::new()
                .payload(r#"{"batch": 1, "no_wait": true}"#.into())
                .inbox(client.new_inbox());
            let msg = client
                .send_request(next.clone(), request)
                .await
                .map_err(|e| format!("pull one: {e}"))?;
            delivered.push(msg);
        }

        // Act: the consumer after two unacknowledged deliveries, then after
        // one acknowledgement.
        let with_consumer = nats(Some(&stream_name), Some("notifier"), NATS_URL).await;
        let ack_subject = delivered[0].reply.clone().ok_or("no ack subject")?;
        // A request (not a publish) so the server has applied the ack before
        // the next look: the reply only comes once it has.
        client
            .request(ack_subject, "+ACK".into())
            .await
            .map_err(|e| format!("ack: {e}"))?;
        let after_ack = nats(Some(&stream_name), Some("notifier"), NATS_URL).await;
        let stream_only = nats(Some(&stream_name), None, NATS_URL).await;
        let missing_consumer = nats(Some(&stream_name), Some("nobody"), NATS_URL).await;
        Ok::<_, String>((
            delivered,
            with_consumer,
            after_ack,
            stream_only,
            missing_consumer,
        ))
    }
    .await;
    let deleted = js.delete_stream(&stream_name).await;
    let (delivered, with_consumer, after_ack, stream_only, missing_consumer) =
        outcome.expect("arrange");
    deleted.expect("delete stream");

    assert_eq!(&delivered[0].payload[..], b"n0");
    assert_eq!(&delivered[1].payload[..], b"n1");
    let obs = with_consumer.expect("observe");
    assert_eq!(obs.data["connected"], json!(true));
    let s = &obs.data["stream"];
    assert_eq!(s["messages"], json!(5));
    assert_eq!(s["first_seq"], json!(1));
    assert_eq!(s["last_seq"], json!(5));
    assert_eq!(s["consumers"], json!(1));
    assert!(s["bytes"].as_u64().is_some_and(|b| b > 0), "{s}");
    // 5 published, 2 delivered and unacknowledged: 3 never delivered
    // (pending), 2 ack pending, nothing redelivered yet (ack_wait is 30 s),
    // delivered up to stream seq 2 and nothing acknowledged.
    let c = &obs.data["consumer"];
    assert_eq!(c["num_pending"], json!(3));
    assert_eq!(c["num_ack_pending"], json!(2));
    assert_eq!(c["backlog"], json!(5));
    assert_eq!(c["num_redelivered"], json!(0));
    assert_eq!(c["delivered_stream_seq"], json!(2));
    assert_eq!(c["ack_floor_stream_seq"], json!(0));
    assert!(
        obs.evidence
            .starts_with("connected to nats://127.0.0.1:4222 (server "),
        "{}",
        obs.evidence
    );
    assert!(obs.evidence.contains("backlog 5"), "{}", obs.evidence);
    // Acknowledging the first message moves the ack floor to it and shrinks
    // the backlog by one.
    let c = &after_ack.expect("observe after ack").data["consumer"];
    assert_eq!(c["num_ack_pending"], json!(1));
    assert_eq!(c["num_pending"], json!(3));
    assert_eq!(c["backlog"], json!(4));
    assert_eq!(c["ack_floor_stream_seq"], json!(1));
    let stream_only = stream_only.expect("observe stream only");
    assert_eq!(stream_only.data["consumer"], Value::Null);
    assert_eq!(stream_only.data["stream"]["messages"], json!(5));
    match missing_consumer {
        Err(ProbeError::Failed(t, m)) => {
            assert_eq!(t, "bus");
            assert!(m.contains("consumer nobody not found"), "{m}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn the_nats_probe_without_a_stream_reports_the_connection() {
    let Some(_client) = nats_client().await else {
        return;
    };

    let obs = nats(None, None, NATS_URL).await.expect("observe");

    assert_eq!(
        obs.data,
        json!({"connected": true, "stream": null, "consumer": null})
    );
    assert!(
        obs.evidence
            .starts_with("connected to nats://127.0.0.1:4222 (server "),
        "{}",
        obs.evidence
    );
    assert!(obs.evidence.contains(" version "), "{}", obs.evidence);
}

#[tokio::test]
async fn a_missing_nats_stream_fails_naming_it() {
    let Some(_client) = nats_client().await else {
        return;
    };
    let name = format!("FIRSTLINE_MISSING_{}", nanos());

    let result = nats(Some(&name), None, NATS_URL).await;

    match result {
        Err(ProbeError::Failed(t, m)) => {
            assert_eq!(t, "bus");
            assert_eq!(m, format!("stream {name} not found"));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_nats_consumer_without_its_stream_is_a_config_error() {
    // Refused before connecting, so the URL does not matter.
    let result = nats(None, Some("notifier"), "nats://127.0.0.1:1").await;

    assert!(
        matches!(result, Err(ProbeError::Config(ref t, _)) if t == "bus"),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unreachable_nats_server_is_observed_as_not_connected() {
    let o = nats(Some("EVENTS"), Some("notifier"), "nats://127.0.0.1:1")
        .await
        .expect("a server that does not answer is an observation");

    assert_eq!(o.data["connected"], false);
    assert_eq!(
        o.data["consumer"],
        serde_json::Value::Null,
        "nothing known of it"
    );
    assert!(
        o.evidence.contains("cannot connect to nats://127.0.0.1:1"),
        "{}",
        o.evidence
    );
}

// --------------------------------------------------------------------- Redis

const REDIS_ADDR: &str = "127.0.0.1:6379";

async fn redis(url: &str, timeout: Duration) -> Result<Observation, ProbeError> {
    let spec = ProbeSpec::Redis(RedisProbe {
        target: "cache".into(),
    });
    let target = target("cache", TargetSettings::Redis { url: url.into() }, None);
    observe(&spec, &target, timeout).await
}

async fn redis_reachable() -> bool {
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(REDIS_ADDR)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => skip_or_fail::<()>(
            "Redis",
            "FIRSTLINE_REQUIRE_REDIS",
            format!("cannot connect to {REDIS_ADDR}: {e}"),
        )
        .is_some(),
        Err(_) => skip_or_fail::<()>(
            "Redis",
            "FIRSTLINE_REQUIRE_REDIS",
            format!("{REDIS_ADDR} did not answer"),
        )
        .is_some(),
    }
}

#[tokio::test]
async fn the_redis_probe_answers_pong_with_a_latency() {
    if !redis_reachable().await {
        return;
    }

    let obs = redis(&format!("redis://{REDIS_ADDR}"), TIMEOUT)
        .await
        .expect("observe");

    assert_eq!(obs.data["pong"], json!(true));
    let latency = obs.data["latency_ms"]
        .as_f64()
        .expect("latency is a number");
    assert!(latency >= 0.0, "{latency}");
    assert!(
        obs.evidence
            .starts_with("PONG from redis://127.0.0.1:6379 in "),
        "{}",
        obs.evidence
    );
}

#[tokio::test]
async fn an_unreachable_redis_port_is_unreachable() {
    let result = redis("redis://127.0.0.1:1", TIMEOUT).await;

    assert!(
        matches!(result, Err(ProbeError::Unreachable(ref t, _)) if t == "cache"),
        "{result:?}"
    );
}

/// A loopback server speaking just enough RESP to answer every command
/// with `reply` (or never answering, when `reply` is `None`).
async fn fake_redis(reply: Option<&'static [u8]>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(used) = resp_command_len(&buf) {
                        buf.drain(..used);
                        if let Some(reply) = reply
                            && socket.write_all(reply).await.is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("redis://{addr}")
}

/// The length of the first complete RESP array command in `buf`.
fn resp_command_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (header, mut at) = line(buf, 0)?;
    let count: usize = std::str::from_utf8(header.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    for _ in 0..count {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        at = next + len + 2;
        if buf.len() < at {
            return None;
        }
    }
    Some(at)
}

#[tokio::test]
async fn a_redis_answer_other_than_pong_is_malformed() {
    let url = fake_redis(Some(b"+NOPE\r\n")).await;

    let result = redis(&url, TIMEOUT).await;

    assert!(
        matches!(result, Err(ProbeError::Malformed(ref t, _)) if t == "cache"),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_redis_server_that_never_answers_times_out() {
    let url = fake_redis(None).await;

    let result = redis(&url, Duration::from_secs(1)).await;

    assert!(
        matches!(result, Err(ProbeError::Timeout(ref t, _)) if t == "cache"),
        "{result:?}"
    );
}
