//! Issue 15: "The SQL probe cannot change anything, whoever its role is".
//! Dangerous queries (ending another session, `COPY … TO` a file on the
//! database host, `COPY … TO PROGRAM`) against the real PostgreSQL on this
//! machine, through a superuser target (refused when the connection opens)
//! and through lint (refused); roles made per test show which ones probe
//! and which are refused. Kept connections are checked here too.
//!
//! Skipped with the reason when PostgreSQL does not answer, unless
//! `FIRSTLINE_REQUIRE_POSTGRES=1` makes that a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firstline::probe::sql::SqlProbe;
use firstline::probe::{Observation, ProbeError, ProbeSpec, Target, TargetSettings, observe};
use firstline::runbook::load::Catalog;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

const TIMEOUT: Duration = Duration::from_secs(5);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test (or run) uses: `firstline_{what}_{pid}_{n}`.
fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "firstline_{what}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn admin_url() -> String {
    std::env::var("FIRSTLINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A connection as the (superuser) admin, or `None` after printing why the
/// test is skipped; a failure when `FIRSTLINE_REQUIRE_POSTGRES=1`.
async fn admin() -> Option<PgConnection> {
    let url = admin_url();
    let reason = match tokio::time::timeout(TIMEOUT, PgConnection::connect(&url)).await {
        Ok(Ok(c)) => return Some(c),
        Ok(Err(e)) => format!("cannot connect to {url}: {e}"),
        Err(_) => format!("{url} did not answer"),
    };
    if std::env::var("FIRSTLINE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (FIRSTLINE_REQUIRE_POSTGRES=1) but {reason}");
    }
    eprintln!(
        "SKIPPED: PostgreSQL test: {reason} (FIRSTLINE_REQUIRE_POSTGRES=1 makes this a failure)"
    );
    None
}

async fn exec(conn: &mut PgConnection, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The admin URL with `user` in place of its user.
fn url_as(user: &str) -> String {
    let url = admin_url();
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", &url));
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host_and_path}")
}

fn target(url: &str, allow_privileged: bool) -> Target {
    Target {
        name: "db".into(),
        settings: TargetSettings::Postgres {
            url: url.into(),
            password: None,
            allow_privileged,
        },
        secret_headers: BTreeMap::new(),
        password: None,
        http_client: Default::default(),
        sql_connections: Default::default(),
    }
}

async fn sql(target: &Target, query: &str) -> Result<Observation, ProbeError> {
    let spec = ProbeSpec::Sql(SqlProbe {
        target: "db".into(),
        query: query.into(),
        max_rows: 50,
    });
    observe(&spec, target, TIMEOUT).await
}

/// A login role made for one test, with `grants` (SQL after `GRANT … TO`),
/// dropped by [`Role::drop_role`].
struct Role {
    name: String,
}

impl Role {
    async fn new(admin: &mut PgConnection, grants: &[&str]) -> Role {
        let name = unique("role");
        exec(admin, format!("CREATE ROLE {name} LOGIN")).await;
        for grant in grants {
            exec(admin, format!("GRANT {grant} TO {name}")).await;
        }
        Role { name }
    }

    fn url(&self) -> String {
        url_as(&self.name)
    }

    async fn drop_role(self, admin: &mut PgConnection) {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{0}'; DROP ROLE IF EXISTS {0}",
            self.name
        )))
        .execute(admin)
        .await;
    }
}

fn config_message(result: Result<Observation, ProbeError>) -> String {
    match result {
        Err(ProbeError::Config(target, message)) => {
            assert_eq!(target, "db");
            message
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
}

fn failed_message(result: Result<Observation, ProbeError>) -> String {
    match result {
        Err(ProbeError::Failed(target, message)) => {
            assert_eq!(target, "db");
            message
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

/// A session to try to end, and the file paths the COPY queries aim at.
/// The three queries issue 15's tester ran, each with the name its
/// refusal starts with.
fn dangerous_queries(
    victim_pid: i32,
    file: &std::path::Path,
    program_file: &std::path::Path,
) -> Vec<(String, &'static str)> {
    vec![
        (
            format!("SELECT pg_terminate_backend({victim_pid})"),
            "pg_terminate_backend()",
        ),
        (format!("COPY (SELECT 1) TO '{}'", file.display()), "COPY"),
        (
            format!(
                "COPY (SELECT 1) TO PROGRAM 'touch {}'",
                program_file.display()
            ),
            "COPY",
        ),
    ]
}

struct Bait {
    victim: PgConnection,
    victim_pid: i32,
    file: PathBuf,
    program_file: PathBuf,
}

impl Bait {
    async fn new() -> Bait {
        let mut victim = PgConnection::connect(&admin_url())
            .await
            .expect("open the victim session");
        let victim_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut victim)
            .await
            .expect("victim pid");
        Bait {
            victim,
            victim_pid,
            file: std::env::temp_dir().join(unique("copy")),
            program_file: std::env::temp_dir().join(unique("program")),
        }
    }

    fn queries(&self) -> Vec<(String, &'static str)> {
        dangerous_queries(self.victim_pid, &self.file, &self.program_file)
    }

    /// Nothing happened: the victim answers and no file exists.
    async fn assert_untouched(mut self) {
        // pg_terminate_backend only signals: give a terminated session a
        // moment to go before asking it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut self.victim)
            .await
            .expect("the victim session still answers");
        assert_eq!(one, 1);
        assert!(!self.file.exists(), "{} was written", self.file.display());
        assert!(
            !self.program_file.exists(),
            "{} was made by a program",
            self.program_file.display()
        );
        let _ = self.victim.close().await;
    }
}

#[tokio::test]
async fn a_superuser_target_is_refused_at_connect_and_the_dangerous_queries_do_nothing() {
    let Some(mut admin) = admin().await else {
        return;
    };
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut admin)
        .await
        .expect("admin role");
    let bait = Bait::new().await;
    let superuser = target(&admin_url(), false);

    for (query, _) in bait.queries() {
        let message = config_message(sql(&superuser, &query).await);
        assert!(
            message.contains(&format!("role {role:?} is a superuser")),
            "{query}: {message}"
        );
        assert!(message.contains("allow_privileged = true"), "{message}");
        assert!(message.contains("pg_read_all_data"), "{message}");
    }
    bait.assert_untouched().await;
    let _ = admin.close().await;
}

#[test]
fn lint_refuses_the_dangerous_queries_naming_them() {
    let file = std::env::temp_dir().join(unique("copy"));
    let program_file = std::env::temp_dir().join(unique("program"));
    for (query, name) in dangerous_queries(4242, &file, &program_file) {
        let problems = lint_one(&query);
        assert_eq!(problems.len(), 1, "{query}: {problems:?}");
        assert!(
            problems[0].starts_with(&format!("check \"look\": {name}")),
            "{query}: {problems:?}"
        );
    }
}

#[test]
fn lint_passes_identifiers_strings_and_comments_that_only_look_dangerous() {
    for query in [
        "SELECT copy_count, \"COPY\" FROM jobs WHERE note = 'COPY (SELECT 1) TO PROGRAM ''id'' '",
        "SELECT COUNT(*) FROM pg_stat_activity -- pg_terminate_backend(pid) by hand\n",
        "SELECT /* lo_import('/etc/passwd') */ status, $$pg_read_file('x')$$ FROM t",
        "WITH s AS (SELECT nextval_calls FROM stats) SELECT * FROM s",
    ] {
        assert_eq!(lint_one(query), Vec::<String>::new(), "{query}");
    }
}

/// Lint's messages for a runbook with one sql check running `query`.
fn lint_one(query: &str) -> Vec<String> {
    let text = format!(
        r#"
version = 1
id = "sql-safety"
title = "SQL safety"
title_en = "SQL safety"
severity = "P3"
source = {{ seed = "test", section = "-" }}

[match]
alertname = ["SqlSafety"]

[[checks]]
id = "look"
title = "look"
informational = true

[checks.probe]
kind = "sql"
target = "db"
query = '''
{query}
'''
"#
    );
    let (_, problems) = Catalog::build(&[("sql-safety.toml".into(), text)], None);
    problems.into_iter().map(|p| p.message).collect()
}

#[tokio::test]
async fn allow_privileged_lets_a_superuser_target_read_but_the_dangerous_queries_stay_refused() {
    let Some(admin) = admin().await else {
        return;
    };
    let bait = Bait::new().await;
    let superuser = target(&admin_url(), true);

    let obs = sql(&superuser, "SELECT 1 AS one").await.expect("observe");
    assert_eq!(obs.data["scalar"], json!(1));
    // The run-time check stands in for lint, for runbooks linted before it.
    for (query, name) in bait.queries() {
        let message = failed_message(sql(&superuser, &query).await);
        assert!(message.starts_with(name), "{query}: {message}");
    }
    bait.assert_untouched().await;
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_read_only_role_probes_and_its_connection_is_kept_between_checks() {
    let Some(mut admin) = admin().await else {
        return;
    };
    let role = Role::new(&mut admin, &["pg_read_all_data"]).await;
    let reader = target(&role.url(), false);

    let first = sql(
        &reader,
        "SELECT pg_backend_pid() AS pid, current_user::text AS who",
    )
    .await
    .expect("observe as a read-only role");
    let second = sql(&reader, "SELECT pg_backend_pid() AS pid")
        .await
        .expect("observe again");
    let counted = sql(&reader, "SELECT COUNT(*) FROM pg_catalog.pg_class")
        .await
        .expect("read the catalog");

    assert_eq!(first.data["rows"][0]["who"], json!(role.name));
    assert_eq!(
        first.data["scalar"], second.data["scalar"],
        "the second check reused the first one's session"
    );
    assert!(counted.data["scalar"].as_i64().unwrap_or(0) > 0);
    // The session rests idle between checks, not inside a transaction.
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
            .bind(first.data["scalar"].as_i64().unwrap_or(0) as i32)
            .fetch_optional(&mut admin)
            .await
            .expect("session state");
    assert_eq!(state.as_deref(), Some("idle"));
    role.drop_role(&mut admin).await;
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_failed_check_closes_its_connection_and_an_ended_one_is_replaced() {
    let Some(mut admin) = admin().await else {
        return;
    };
    let role = Role::new(&mut admin, &["pg_read_all_data"]).await;
    let reader = target(&role.url(), false);
    let pid = |o: &Observation| o.data["scalar"].as_i64().unwrap_or(-1);

    let before = sql(&reader, "SELECT pg_backend_pid()")
        .await
        .expect("observe");
    // Fails inside the transaction: that connection is not kept.
    let bad = sql(&reader, "SELECT no_such_column FROM pg_class").await;
    assert!(failed_message(bad).contains("no_such_column"));
    let after_error = sql(&reader, "SELECT pg_backend_pid()")
        .await
        .expect("observe");
    assert_ne!(pid(&before), pid(&after_error));

    // The kept session ends under it (a DBA, a restart): the next check
    // opens a new one instead of failing.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid(&after_error) as i32)
        .execute(&mut admin)
        .await
        .expect("end the kept session");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_end = sql(&reader, "SELECT pg_backend_pid()")
        .await
        .expect("observe after the session ended");
    assert_ne!(pid(&after_error), pid(&after_end));
    role.drop_role(&mut admin).await;
    let _ = admin.close().await;
}

#[tokio::test]
async fn a_member_of_pg_signal_backend_is_refused_naming_the_membership() {
    let Some(mut admin) = admin().await else {
        return;
    };
    // Through an intermediate role: membership is followed.
    let ops = Role::new(&mut admin, &["pg_signal_backend"]).await;
    exec(&mut admin, format!("ALTER ROLE {} NOLOGIN", ops.name)).await;
    let role = Role::new(&mut admin, &["pg_read_all_data", &ops.name]).await;

    let message = config_message(sql(&target(&role.url(), false), "SELECT 1").await);

    assert!(
        message.starts_with(&format!(
            "role {:?} is a member of pg_signal_backend (can end other sessions)",
            role.name
        )),
        "{message}"
    );
    assert!(message.contains("allow_privileged = true"), "{message}");
    // The refused connection was closed, not kept (its server process may
    // take a moment to go).
    let mut sessions = -1i64;
    for _ in 0..50 {
        sessions = sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE usename = $1")
            .bind(&role.name)
            .fetch_one(&mut admin)
            .await
            .expect("count sessions");
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sessions, 0);
    role.drop_role(&mut admin).await;
    ops.drop_role(&mut admin).await;
    let _ = admin.close().await;
}
