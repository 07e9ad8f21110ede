//! The `sql` probe. See [`SqlProbe`] for the data it observes.
//!
//! What keeps a check from changing anything, outermost first:
//! - the role: a connection whose role is a superuser (or can become one)
//!   or a member of `pg_signal_backend`, `pg_read_server_files`,
//!   `pg_write_server_files` or `pg_execute_server_program` is refused when
//!   it opens, unless the target says `allow_privileged = true`: such a
//!   role can end sessions, touch the host's files or run programs from a
//!   SELECT, which no read-only transaction stops;
//! - [`side_effects`] (lint, and again here): queries only, and none of
//!   PostgreSQL's functions that act beyond reading;
//! - the transaction: `BEGIN READ ONLY`, `SET LOCAL statement_timeout`,
//!   always rolled back; the `;` check keeps a second statement (a COMMIT)
//!   from ever reaching the server, and the query goes through the
//!   extended protocol (prepare, then execute), where PostgreSQL refuses
//!   more than one command anyway.
//!
//! Connections are kept per target between checks ([`Connections`]), so a
//! check costs its query and three round trips, not a new session.
//!
//! Values arrive in PostgreSQL's binary format and are turned into JSON by
//! column type (see [`cell`]); the crate's sqlx build has no chrono, JSON,
//! UUID or decimal support, so those few formats are decoded here.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use sqlx::postgres::{PgConnectOptions, PgRow, PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef};
use sqlx::{
    AssertSqlSafe, Column, Connection, Decode, Executor, PgConnection, Postgres, Row, SqlSafeStr,
    Statement, TypeInfo, ValueRef,
};

use super::{Observation, ProbeError, Target, TargetSettings};
use crate::text::redact_url;
use crate::text::trim_lines;

/// `kind = "sql"`: a query against a PostgreSQL target, always in a
/// read-only transaction with a statement timeout and a row cap (seed 001 /
/// 002's check SQL).
///
/// Data: `{"columns": ["status", "count"], "rows": [{"status": "PENDING",
/// "count": 12}, …], "row_count": 2, "truncated": false, "scalar": <first
/// column of the first row, or null>}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlProbe {
    /// A `postgres` target.
    pub target: String,
    /// One SELECT, as written in the seed.
    pub query: String,
    /// Rows kept (the rest is counted as truncated).
    #[serde(default = "default_max_rows")]
    pub max_rows: u32,
}

fn default_max_rows() -> u32 {
    50
}

/// Rows shown in the evidence table (the data keeps up to `max_rows`).
const EVIDENCE_ROWS: usize = 10;
/// Widest cell in the evidence table, in characters.
const EVIDENCE_CELL: usize = 40;
/// Time on top of the statement timeout for the round trips around the
/// query (BEGIN, prepare, ROLLBACK), so the server's own statement timeout
/// fires first and a slow query ends as a clean database error.
const ROUND_TRIPS: Duration = Duration::from_millis(500);
/// SQLSTATE `query_canceled`: what `statement_timeout` raises.
const QUERY_CANCELED: &str = "57014";
/// A goodbye to a connection not kept: short, and in the background.
const CLOSE: Duration = Duration::from_millis(200);
/// Connections a target keeps at most (the checks of a runbook run up to
/// `runbooks.concurrency`, 4 by default, at once).
const MAX_CONNECTIONS: usize = 4;
/// An idle connection is closed after this, so sessions do not linger on
/// the system under investigation.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// No connection is reused past this age, so the role's privileges are
/// checked again now and then.
const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// Prepared statements kept per connection: a target's checks repeat the
/// same few queries, and a small cache closes the ones it drops.
const STATEMENT_CACHE: usize = 32;

/// What the query returned, before it becomes JSON.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    truncated: bool,
}

/// Observes `p` on `target`.
pub async fn observe(
    p: &SqlProbe,
    target: &Target,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let name = target.name.as_str();
    let TargetSettings::Postgres { url, .. } = &target.settings else {
        return Err(ProbeError::Config(
            name.to_string(),
            format!(
                "the sql probe needs a postgres target, not {}",
                target.settings.kind()
            ),
        ));
    };
    let password = target.password.as_ref().map(|p| p.expose_secret());
    let secrets = Secrets::new(url, password);

    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ProbeError::Config(
            name.to_string(),
            format!(
                "{} is not a postgres:// url",
                secrets.scrub(&redact_url(url))
            ),
        ));
    }
    let query = single_statement(&p.query).map_err(|m| ProbeError::Failed(name.to_string(), m))?;
    // Lint refuses these too; checked again so a runbook loaded before
    // this check existed cannot run them. Reported once a connection is
    // open: a privileged role is the larger problem, and is named first.
    let mut refused = side_effects(query).map(|m| ProbeError::Failed(name.to_string(), m));

    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| {
            ProbeError::Config(
                name.to_string(),
                secrets.scrub(&format!("invalid postgres url {}: {e}", redact_url(url))),
            )
        })?
        .statement_cache_capacity(STATEMENT_CACHE);
    if let Some(password) = password {
        options = options.password(password);
    }
    if options.get_application_name().is_none() {
        options = options.application_name("firstline probe");
    }
    let fail = |e: &sqlx::Error| classify(name, url, timeout, e, &secrets);
    let timed_out = || ProbeError::Timeout(name.to_string(), timeout);

    let connections = &target.sql_connections;
    let _slot = match tokio::time::timeout(timeout, connections.slots.acquire()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) => {
            return Err(ProbeError::Failed(
                name.to_string(),
                "the target's connections are closed".into(),
            ));
        }
        Err(_) => return Err(timed_out()),
    };
    let max_rows = usize::try_from(p.max_rows).unwrap_or(usize::MAX);

    if let Some(Warm {
        mut conn, opened, ..
    }) = connections.take()
    {
        if let Some(refused) = refused.take() {
            connections.put_back(conn, opened);
            return Err(refused);
        }
        let outcome = tokio::time::timeout(
            timeout + ROUND_TRIPS,
            run(&mut conn, query, max_rows, timeout),
        )
        .await;
        match outcome {
            Ok(Ok(table)) => {
                connections.put_back(conn, opened);
                return Ok(observation(table));
            }
            // BEGIN failed, so nothing ran: the kept connection is gone
            // (server restarted, session ended). A new one below.
            Ok(Err(RunError { began: false, .. })) => drop(conn),
            Ok(Err(RunError { error, .. })) => {
                close_later(conn);
                return Err(fail(&error));
            }
            Err(_) => return Err(timed_out()),
        }
    }

    let allow_privileged = matches!(
        target.settings,
        TargetSettings::Postgres {
            allow_privileged: true,
            ..
        }
    );
    let mut conn = match tokio::time::timeout(timeout, open(&options, allow_privileged)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(Refusal::Privileged(m))) => {
            return Err(ProbeError::Config(name.to_string(), secrets.scrub(&m)));
        }
        Ok(Err(Refusal::Sql(e))) => return Err(fail(&e)),
        Err(_) => return Err(timed_out()),
    };
    let opened = Instant::now();
    if let Some(refused) = refused {
        connections.put_back(conn, opened);
        return Err(refused);
    }
    let outcome = tokio::time::timeout(
        timeout + ROUND_TRIPS,
        run(&mut conn, query, max_rows, timeout),
    )
    .await;
    match outcome {
        Ok(Ok(table)) => {
            connections.put_back(conn, opened);
            Ok(observation(table))
        }
        // Not kept: it may be inside an aborted transaction.
        Ok(Err(RunError { error, .. })) => {
            close_later(conn);
            Err(fail(&error))
        }
        // Dropped mid-query: the server rolls back when the socket closes.
        Err(_) => Err(timed_out()),
    }
}

fn observation(table: Table) -> Observation {
    Observation {
        evidence: evidence(&table),
        data: data(table),
    }
}

/// The connections a `postgres` target keeps between its checks.
///
/// Opening a connection costs far more than a small query: a new server
/// process, and with TLS (sqlx's default `sslmode=prefer`) about 90 ms
/// even on the same machine, mostly two waits for the server's delayed
/// ACK inside the handshake (sqlx does not set TCP_NODELAY, and the
/// handshake writes twice before reading). So a connection that ended its
/// check cleanly (rolled back) is kept for the next one. At most [`MAX_CONNECTIONS`] per target; an idle one is closed
/// after [`IDLE_TIMEOUT`] so sessions do not linger on the system under
/// investigation, and none is reused past [`MAX_LIFETIME`], so the role's
/// privileges are checked again. A connection whose check failed is closed,
/// never kept. Connections belong to the tokio runtime that opened them,
/// like any socket: a kept one that no longer answers (another runtime, a
/// restarted server) fails at BEGIN and is replaced at once.
pub struct Connections {
    state: std::sync::Mutex<Kept>,
    /// One per check in progress.
    slots: tokio::sync::Semaphore,
}

#[derive(Default)]
struct Kept {
    /// Most recently used last.
    idle: Vec<Warm>,
    /// Whether a task is closing idle connections as they expire.
    reaper: bool,
}

struct Warm {
    conn: PgConnection,
    opened: Instant,
    idle_since: Instant,
}

impl Warm {
    /// When this connection must be closed if it stays idle.
    fn expires(&self) -> Instant {
        (self.idle_since + IDLE_TIMEOUT).min(self.opened + MAX_LIFETIME)
    }
}

impl Default for Connections {
    fn default() -> Connections {
        Connections {
            state: std::sync::Mutex::new(Kept::default()),
            slots: tokio::sync::Semaphore::new(MAX_CONNECTIONS),
        }
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("idle", &self.state().idle.len())
            .finish()
    }
}

impl Connections {
    fn state(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing in the lock can panic halfway; a poisoned one is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that has not expired.
    fn take(&self) -> Option<Warm> {
        let now = Instant::now();
        let mut state = self.state();
        while let Some(warm) = state.idle.pop() {
            if warm.expires() > now {
                return Some(warm);
            }
            close_later(warm.conn);
        }
        None
    }

    /// Keeps `conn` (clean: its transaction rolled back) for the next check.
    fn put_back(self: &Arc<Self>, conn: PgConnection, opened: Instant) {
        let now = Instant::now();
        if now >= opened + MAX_LIFETIME {
            close_later(conn);
            return;
        }
        let start_reaper = {
            let mut state = self.state();
            state.idle.push(Warm {
                conn,
                opened,
                idle_since: now,
            });
            !std::mem::replace(&mut state.reaper, true)
        };
        if start_reaper {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }
}

/// Closes idle connections as they expire; ends when none is left idle or
/// the target is gone.
async fn reap(connections: Weak<Connections>) {
    loop {
        let (expired, next) = {
            let Some(connections) = connections.upgrade() else {
                return;
            };
            let mut state = connections.state();
            let now = Instant::now();
            let (expired, kept): (Vec<Warm>, Vec<Warm>) = std::mem::take(&mut state.idle)
                .into_iter()
                .partition(|w| w.expires() <= now);
            state.idle = kept;
            let next = state.idle.iter().map(Warm::expires).min();
            if next.is_none() {
                state.reaper = false;
            }
            (expired, next)
        };
        for warm in expired {
            let _ = tokio::time::timeout(CLOSE, warm.conn.close()).await;
        }
        let Some(next) = next else {
            return;
        };
        tokio::time::sleep_until(next.into()).await;
    }
}

/// A clean goodbye in the background (the server ends the session and
/// rolls back whatever is open either way once the socket closes).
fn close_later(conn: PgConnection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(CLOSE, conn.close()).await;
    });
}

/// Why [`open`] gave no connection.
enum Refusal {
    Sql(sqlx::Error),
    /// The role can do more than read (the message says what and the fix).
    Privileged(String),
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Refusal {
        Refusal::Sql(e)
    }
}

/// The roles whose members can act beyond the database's tables, with
/// what they can do.
const PRIVILEGED_ROLES: &[(&str, &str)] = &[
    ("pg_signal_backend", "end other sessions"),
    ("pg_read_server_files", "read files on the database host"),
    ("pg_write_server_files", "write files on the database host"),
    (
        "pg_execute_server_program",
        "run programs on the database host",
    ),
];

/// Opens a connection and, unless `allow_privileged`, refuses a role that
/// is a superuser, can become one (`SET ROLE`), or is a member of one of
/// [`PRIVILEGED_ROLES`]: a read-only transaction does not stop them.
async fn open(options: &PgConnectOptions, allow_privileged: bool) -> Result<PgConnection, Refusal> {
    let mut conn = PgConnection::connect_with(options).await?;
    if allow_privileged {
        return Ok(conn);
    }
    // pg_has_role(…, 'MEMBER') follows memberships through other roles and
    // is true of every role for a superuser.
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT current_user::text, r.rolname::text, r.rolsuper
         FROM pg_catalog.pg_roles r
         WHERE (r.rolsuper OR r.rolname IN ('pg_signal_backend', 'pg_read_server_files',
                                            'pg_write_server_files', 'pg_execute_server_program'))
           AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
         ORDER BY r.rolsuper DESC, r.rolname",
    )
    .persistent(false)
    .fetch_all(&mut conn)
    .await?;
    match privileged(&rows) {
        None => Ok(conn),
        Some(message) => {
            let _ = tokio::time::timeout(CLOSE, conn.close()).await;
            Err(Refusal::Privileged(message))
        }
    }
}

/// The refusal for a role with `rows` (session role, privileged role it is
/// a member of, whether that one is a superuser), or `None`.
fn privileged(rows: &[(String, String, bool)]) -> Option<String> {
    let (role, _, _) = rows.first()?;
    let fix = "Connect as a read-only role instead (CREATE ROLE firstline_ro LOGIN; GRANT pg_read_all_data TO firstline_ro), or set allow_privileged = true on this target to accept the risk";
    let what = if let Some((_, superuser, _)) = rows.iter().find(|(_, _, s)| *s) {
        let who = if superuser == role {
            format!("role {role:?} is a superuser")
        } else {
            format!("role {role:?} can become superuser {superuser:?} (SET ROLE)")
        };
        format!(
            "{who}: a check's query could end other sessions, read and write files on the database host and run programs there, read-only transaction or not"
        )
    } else {
        let memberships: Vec<String> = rows
            .iter()
            .filter_map(|(_, member_of, _)| {
                PRIVILEGED_ROLES
                    .iter()
                    .find(|(r, _)| r == member_of)
                    .map(|(r, can)| format!("{r} (can {can})"))
            })
            .collect();
        format!(
            "role {role:?} is a member of {}: a check's query could do that, read-only transaction or not",
            memberships.join(", ")
        )
    };
    Some(format!("{what}. {fix}"))
}

/// Refuses anything but one statement; returns the query without its
/// trailing `;`. Deliberately blunt: a `;` inside a string literal is refused
/// too, which a runbook author can avoid and a parser could get wrong.
fn single_statement(query: &str) -> Result<&str, String> {
    let trimmed = query.trim();
    let body = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
    if body.is_empty() {
        return Err("the query is empty".into());
    }
    if body.contains(';') {
        return Err("only one statement is allowed: the query has a `;` before its end".into());
    }
    Ok(body)
}

/// Statements a check may be: queries. Anything else (`COPY`, `DO`,
/// `CALL`, `LOAD`, `CHECKPOINT`, `LISTEN`, `SET ROLE`, `PREPARE`, …) can act
/// in ways a read-only transaction does not stop, and a list of them would
/// always be one short.
const QUERY_STATEMENTS: &[&str] = &["select", "with", "values", "table", "show", "explain"];

/// Functions a query can call that act beyond reading, by exact name, with
/// what they do.
const SIDE_EFFECT_FUNCTIONS: &[(&str, &str)] = &[
    ("pg_terminate_backend", "ends other sessions"),
    ("pg_cancel_backend", "cancels other sessions' queries"),
    ("loread", "reads large objects through a descriptor"),
    ("lowrite", "writes large objects"),
    ("pg_read_file", "reads files on the database host"),
    ("pg_read_binary_file", "reads files on the database host"),
    ("pg_stat_file", "reads file metadata on the database host"),
    ("pg_logdir_ls", "lists the database host's log directory"),
    ("pg_reload_conf", "reloads the server configuration"),
    ("pg_switch_wal", "switches the server's WAL file"),
    ("pg_switch_xlog", "switches the server's WAL file"),
    ("pg_start_backup", "starts a server backup"),
    ("pg_stop_backup", "stops a server backup"),
    ("pg_drop_replication_slot", "drops a replication slot"),
    ("pg_replication_slot_advance", "advances a replication slot"),
    (
        "pg_sync_replication_slots",
        "synchronises replication slots",
    ),
    ("pg_promote", "promotes a standby server"),
    ("pg_logical_emit_message", "writes a message into the WAL"),
    ("pg_log_standby_snapshot", "writes a snapshot into the WAL"),
    ("pg_notify", "sends a notification to listening sessions"),
    (
        "set_config",
        "changes a setting (the role among them) for the session",
    ),
    (
        "nextval",
        "advances a sequence (a rollback does not undo it)",
    ),
    ("setval", "sets a sequence (a rollback does not undo it)"),
    ("pg_stat_statements_reset", "resets statistics"),
    (
        "pg_log_backend_memory_contexts",
        "writes into the server log",
    ),
    ("txid_current", "assigns a transaction id"),
    ("pg_current_xact_id", "assigns a transaction id"),
    ("pg_import_system_collations", "creates collations"),
    ("pg_truncate_visibility_map", "truncates a visibility map"),
    // These run a text argument as SQL, which this check cannot see into.
    ("query_to_xml", "runs its text argument as SQL, unchecked"),
    (
        "query_to_xmlschema",
        "runs its text argument as SQL, unchecked",
    ),
    (
        "query_to_xml_and_xmlschema",
        "runs its text argument as SQL, unchecked",
    ),
    ("ts_stat", "runs its text argument as SQL, unchecked"),
    ("ts_rewrite", "can run its text argument as SQL, unchecked"),
];

/// Families of such functions, by the start of their name.
const SIDE_EFFECT_PREFIXES: &[(&str, &str)] = &[
    (
        "lo_",
        "reads or writes large objects and files on the database host",
    ),
    (
        "dblink",
        "opens a connection where this transaction's read-only rule does not reach",
    ),
    ("pg_ls_", "lists directories on the database host"),
    (
        "pg_file_",
        "writes, renames or removes files on the database host",
    ),
    ("pg_rotate_logfile", "rotates the server log"),
    (
        "pg_create_",
        "creates a restore point or a replication slot",
    ),
    ("pg_copy_", "copies a replication slot"),
    (
        "pg_logical_slot_",
        "reads (and consumes) a replication slot's changes",
    ),
    ("pg_replication_origin_", "works replication origins"),
    ("pg_backup_", "starts or stops a server backup"),
    ("pg_wal_replay_", "pauses or resumes a standby's replay"),
    ("pg_xlog_replay_", "pauses or resumes a standby's replay"),
    (
        "pg_advisory_",
        "takes an advisory lock (a session-level one outlives the check)",
    ),
    (
        "pg_try_advisory_",
        "takes an advisory lock (a session-level one outlives the check)",
    ),
    ("pg_stat_reset", "resets statistics"),
    ("pg_restore_", "overwrites planner statistics"),
    ("pg_clear_", "clears planner statistics"),
    ("binary_upgrade_", "is for pg_upgrade only"),
];

/// What in `query` would act beyond reading, if anything: a statement other
/// than a query (`COPY` among them) or a call of a function that ends
/// sessions, touches the database host's files, administers the server,
/// takes advisory locks, advances sequences or runs text as SQL.
///
/// Words are matched case-insensitively and whole; string literals
/// (`'…'`, `E'…'`, `$tag$…$tag$`), comments and quoted identifiers are not
/// read as code, except that a quoted identifier called as a function
/// (`"lo_import"(…)`) is checked like a plain one. A check for lint and a
/// second guard at run time; the real guards are the read-only transaction
/// and a role that cannot do these things (see [`observe`]).
pub fn side_effects(query: &str) -> Option<String> {
    let tokens = tokens(query);
    let first = tokens.iter().find(|t| !matches!(t, Token::Open));
    match first {
        None => {}
        Some(Token::Word(w)) if QUERY_STATEMENTS.contains(&w.as_str()) => {}
        Some(Token::Word(w)) if w == "copy" => {
            return Some(
                "COPY is not allowed: it writes and reads files on the database host and runs programs there (TO PROGRAM); a check is one query (SELECT, WITH, VALUES, TABLE, SHOW, EXPLAIN)".into(),
            );
        }
        Some(Token::Word(w)) => {
            return Some(format!(
                "{} is not a query: a check is one SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN",
                w.to_uppercase()
            ));
        }
        Some(_) => {
            return Some(
                "the query does not start with SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN".into(),
            );
        }
    }
    for pair in tokens.windows(2) {
        if !matches!(pair[1], Token::Open) {
            continue;
        }
        let name = match &pair[0] {
            Token::Word(w) => w.clone(),
            Token::Quoted(q) => q.to_lowercase(),
            Token::UnicodeQuoted => {
                return Some(
                    "a function named with U&\"…\" escapes cannot be checked: write its name plainly".into(),
                );
            }
            _ => continue,
        };
        let exact = SIDE_EFFECT_FUNCTIONS
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, what)| *what);
        let family = || {
            SIDE_EFFECT_PREFIXES
                .iter()
                .find(|(p, _)| name.starts_with(p))
                .map(|(_, what)| *what)
        };
        if let Some(what) = exact.or_else(family) {
            return Some(format!(
                "{name}() is not allowed: it {what}; a check only reads"
            ));
        }
    }
    None
}

/// What [`side_effects`] reads of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word (keyword or identifier), lower-cased.
    Word(String),
    /// A quoted identifier, unescaped.
    Quoted(String),
    /// A `U&"…"` identifier, whose escapes are not decoded.
    UnicodeQuoted,
    /// `(`.
    Open,
    /// Anything else: numbers, operators, punctuation, parameters.
    Other,
}

/// PostgreSQL's lexical structure, as far as words, calls, strings,
/// quoted identifiers and comments go. Unterminated strings or comments
/// run to the end (the server refuses the query anyway).
fn tokens(query: &str) -> Vec<Token> {
    let chars: Vec<char> = query.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let is_word_start = |c: char| c.is_alphabetic() || c == '_' || !c.is_ascii();
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii();
    // Index past a '…' string whose opening quote is at `i`; `backslash`
    // for E'…' strings, where \' does not end it.
    let skip_string = |mut i: usize, backslash: bool| -> usize {
        i += 1;
        while let Some(c) = at(i) {
            if backslash && c == '\\' {
                i += 2;
                continue;
            }
            if c == '\'' {
                if at(i + 1) == Some('\'') {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        i
    };
    // Index past a "…" identifier at `i`, and its text.
    let skip_quoted = |mut i: usize| -> (usize, String) {
        let mut text = String::new();
        i += 1;
        while let Some(c) = at(i) {
            if c == '"' {
                if at(i + 1) == Some('"') {
                    text.push('"');
                    i += 2;
                    continue;
                }
                return (i + 1, text);
            }
            text.push(c);
            i += 1;
        }
        (i, text)
    };

    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        match c {
            _ if c.is_whitespace() => i += 1,
            '-' if at(i + 1) == Some('-') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0usize;
                while let Some(c) = at(i) {
                    if c == '/' && at(i + 1) == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if c == '*' && at(i + 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '\'' => i = skip_string(i, false),
            '"' => {
                let (next, text) = skip_quoted(i);
                out.push(Token::Quoted(text));
                i = next;
            }
            '$' => {
                // $1 is a parameter; $tag$ … $tag$ (or $$ … $$) a string.
                let mut j = i + 1;
                while at(j).is_some_and(|c| c.is_alphanumeric() || c == '_' || !c.is_ascii()) {
                    j += 1;
                }
                let tag_ok = at(i + 1).is_none_or(|c| !c.is_ascii_digit());
                if tag_ok && at(j) == Some('$') {
                    let tag = &chars[i..=j];
                    let mut k = j + 1;
                    i = loop {
                        match chars.get(k..k + tag.len()) {
                            None => break chars.len(),
                            Some(s) if s == tag => break k + tag.len(),
                            Some(_) => k += 1,
                        }
                    };
                } else {
                    out.push(Token::Other);
                    i = j.max(i + 1);
                }
            }
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            _ if is_word_start(c) => {
                let start = i;
                while at(i).is_some_and(is_word_char) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
                match (word.as_str(), at(i), at(i + 1)) {
                    ("e", Some('\''), _) => i = skip_string(i, true),
                    ("b" | "x" | "n", Some('\''), _) => i = skip_string(i, false),
                    ("u", Some('&'), Some('\'')) => i = skip_string(i + 1, false),
                    ("u", Some('&'), Some('"')) => {
                        i = skip_quoted(i + 1).0;
                        out.push(Token::UnicodeQuoted);
                    }
                    _ => out.push(Token::Word(word)),
                }
            }
            _ if c.is_ascii_digit() => {
                while at(i).is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    i += 1;
                }
                out.push(Token::Other);
            }
            _ => {
                out.push(Token::Other);
                i += 1;
            }
        }
    }
    out
}

/// BEGIN READ ONLY, statement timeout, the query (at most `max_rows` + 1
/// rows read), ROLLBACK.
async fn run(
    conn: &mut PgConnection,
    query: &str,
    max_rows: usize,
    timeout: Duration,
) -> Result<Table, RunError> {
    let timeout_ms = timeout.as_millis().max(1);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {timeout_ms}"
    )))
    .execute(&mut *conn)
    .await
    .map_err(|error| RunError {
        error,
        began: false,
    })?;
    query_in_transaction(conn, query, max_rows)
        .await
        .map_err(|error| RunError { error, began: true })
}

/// Why [`run`] failed, and whether the transaction had begun (if not,
/// nothing ran).
struct RunError {
    error: sqlx::Error,
    began: bool,
}

/// The query (at most `max_rows` + 1 rows read), then ROLLBACK.
async fn query_in_transaction(
    conn: &mut PgConnection,
    query: &str,
    max_rows: usize,
) -> Result<Table, sqlx::Error> {
    let statement = (&mut *conn)
        .prepare(AssertSqlSafe(query.to_string()).into_sql_str())
        .await?;
    let columns = unique_names(statement.columns().iter().map(|c| c.name().to_string()));

    let mut rows = Vec::new();
    let mut truncated = false;
    {
        let mut stream = statement.query().fetch(&mut *conn);
        while let Some(row) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            let row = row?;
            if rows.len() == max_rows {
                // One row past the cap is enough to know there are more;
                // dropping the stream leaves the rest to be discarded.
                truncated = true;
                break;
            }
            rows.push((0..row.len()).map(|i| cell(&row, i)).collect());
        }
    }

    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    Ok(Table {
        columns,
        rows,
        truncated,
    })
}

/// Column names made unique (`count`, `count_2`) so each is a key of the
/// row objects; `columns` lists the same names.
fn unique_names(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let mut candidate = name.clone();
        let mut n = 2;
        while out.contains(&candidate) {
            candidate = format!("{name}_{n}");
            n += 1;
        }
        out.push(candidate);
    }
    out
}

fn data(table: Table) -> Value {
    let scalar = table
        .rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(Value::Null);
    let row_count = table.rows.len();
    let rows: Vec<Value> = table
        .rows
        .into_iter()
        .map(|cells| {
            let object: Map<String, Value> = table.columns.iter().cloned().zip(cells).collect();
            Value::Object(object)
        })
        .collect();
    serde_json::json!({
        "columns": table.columns,
        "rows": rows,
        "row_count": row_count,
        "truncated": table.truncated,
        "scalar": scalar,
    })
}

/// A psql-like table: header, rule, up to [`EVIDENCE_ROWS`] rows, a count.
fn evidence(table: &Table) -> String {
    let shown = &table.rows[..table.rows.len().min(EVIDENCE_ROWS)];
    let text: Vec<Vec<String>> = shown
        .iter()
        .map(|r| r.iter().map(render_cell).collect())
        .collect();
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, header)| {
            text.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([header.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();

    let mut lines = Vec::new();
    let header: Vec<String> = table
        .columns
        .iter()
        .zip(&widths)
        .map(|(h, w)| format!("{h:<w$}"))
        .collect();
    lines.push(header.join(" | ").trim_end().to_string());
    lines.push(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    for (cells, values) in text.iter().zip(shown) {
        let line: Vec<String> = cells
            .iter()
            .zip(values)
            .zip(&widths)
            .map(|((c, v), w)| {
                if v.is_number() {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        lines.push(line.join(" | ").trim_end().to_string());
    }
    let n = table.rows.len();
    let plural = if n == 1 { "row" } else { "rows" };
    lines.push(match (table.truncated, n > shown.len()) {
        (true, _) => format!("({n} {plural} kept, more truncated; {} shown)", shown.len()),
        (false, true) => format!("({n} {plural}, {} shown)", shown.len()),
        (false, false) => format!("({n} {plural})"),
    });
    trim_lines(&lines.join("\n"), 20, 2000)
}

fn render_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() > EVIDENCE_CELL {
        let mut cut: String = one_line.chars().take(EVIDENCE_CELL - 1).collect();
        cut.push('…');
        cut
    } else {
        one_line
    }
}

/// Column `i` of `row` as JSON, by its PostgreSQL type.
fn cell(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let type_info = raw.type_info().into_owned();
    let type_name = type_info.name().to_string();
    convert(raw, &type_info).unwrap_or_else(|| Value::String(format!("<type {type_name}>")))
}

fn convert(raw: PgValueRef<'_>, type_info: &PgTypeInfo) -> Option<Value> {
    if raw.format() == PgValueFormat::Text {
        // Only the simple protocol sends text; kept for completeness.
        return raw.as_str().ok().map(|s| Value::String(s.to_string()));
    }
    let bytes = raw.as_bytes().ok()?;
    let value = match type_info.name() {
        "INT2" => Value::from(decode::<i16>(raw)?),
        "INT4" => Value::from(decode::<i32>(raw)?),
        "INT8" => Value::from(decode::<i64>(raw)?),
        "OID" => Value::from(u32::from_be_bytes(bytes.try_into().ok()?)),
        "FLOAT4" => float(f64::from(decode::<f32>(raw)?)),
        "FLOAT8" => float(decode::<f64>(raw)?),
        "NUMERIC" => number_from_text(&numeric_text(bytes)?),
        "BOOL" => Value::Bool(decode::<bool>(raw)?),
        "TIMESTAMPTZ" => {
            Value::String(timestamp(i64::from_be_bytes(bytes.try_into().ok()?), true)?)
        }
        "TIMESTAMP" => Value::String(timestamp(
            i64::from_be_bytes(bytes.try_into().ok()?),
            false,
        )?),
        "DATE" => Value::String(date(i32::from_be_bytes(bytes.try_into().ok()?))?),
        "TIME" => Value::String(time_of_day(i64::from_be_bytes(bytes.try_into().ok()?))?),
        "INTERVAL" => Value::String(interval(bytes)?),
        "UUID" => Value::String(uuid(bytes)?),
        "JSON" => serde_json::from_slice(bytes).ok()?,
        "JSONB" => match bytes.split_first() {
            Some((1, json)) => serde_json::from_slice(json).ok()?,
            _ => return None,
        },
        "BYTEA" => Value::String(format!("\\x{}", hex::encode(bytes))),
        // TEXT, VARCHAR, NAME, CHAR (bpchar), "CHAR", UNKNOWN, citext and
        // enums are sent as their UTF-8 text in binary format too.
        "TEXT" | "VARCHAR" | "NAME" | "CHAR" | "\"CHAR\"" | "UNKNOWN" | "citext" => {
            Value::String(std::str::from_utf8(bytes).ok()?.to_string())
        }
        _ if matches!(type_info.kind(), PgTypeKind::Enum(_)) => {
            Value::String(std::str::from_utf8(bytes).ok()?.to_string())
        }
        _ => return None,
    };
    Some(value)
}

fn decode<'r, T: Decode<'r, Postgres>>(raw: PgValueRef<'r>) -> Option<T> {
    T::decode(raw).ok()
}

/// A float as a JSON number; NaN and the infinities (which JSON cannot
/// hold) as PostgreSQL spells them.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// A decimal text as a JSON number: an integer when it is one and fits,
/// else the nearest f64; `NaN` / `Infinity` stay strings.
fn number_from_text(text: &str) -> Value {
    if !text.contains(['.', 'e', 'E'])
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::from(i);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => float(f),
        _ => Value::String(text.to_string()),
    }
}

/// NUMERIC's binary format: `ndigits`, `weight`, `sign`, `dscale` (i16 /
/// u16 each), then `ndigits` base-10000 digits, the first worth
/// 10000^weight.
fn numeric_text(bytes: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    // The base-10000 digit worth 10000^power.
    let digit_at = |power: i64| -> u16 {
        let index = weight - power;
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };

    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit_at(weight).to_string());
        for power in (0..weight).rev() {
            out.push_str(&format!("{:04}", digit_at(power)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut power = -1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit_at(power)));
            power -= 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Some(out)
}

/// Microseconds since 2000-01-01 (PostgreSQL's epoch).
fn pg_epoch() -> Option<chrono::NaiveDateTime> {
    NaiveDate::from_ymd_opt(2000, 1, 1)?.and_hms_opt(0, 0, 0)
}

fn timestamp(micros: i64, utc: bool) -> Option<String> {
    match micros {
        i64::MAX => return Some("infinity".into()),
        i64::MIN => return Some("-infinity".into()),
        _ => {}
    }
    let naive = pg_epoch()?.checked_add_signed(TimeDelta::microseconds(micros))?;
    Some(if utc {
        DateTime::<Utc>::from_naive_utc_and_offset(naive, Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    } else {
        naive.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    })
}

fn date(days: i32) -> Option<String> {
    match days {
        i32::MAX => return Some("infinity".into()),
        i32::MIN => return Some("-infinity".into()),
        _ => {}
    }
    let day = pg_epoch()?
        .date()
        .checked_add_signed(TimeDelta::days(i64::from(days)))?;
    Some(day.format("%Y-%m-%d").to_string())
}

fn time_of_day(micros: i64) -> Option<String> {
    let t = chrono::NaiveTime::from_hms_opt(0, 0, 0)?
        .overflowing_add_signed(TimeDelta::microseconds(micros))
        .0;
    Some(t.format("%H:%M:%S%.f").to_string())
}

/// INTERVAL as PostgreSQL prints it by default (`1 day 02:03:04.5`).
fn interval(bytes: &[u8]) -> Option<String> {
    let micros = i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
    let days = i32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
    let months = i32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?);
    let unit =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    let mut parts = Vec::new();
    let (years, months) = (i64::from(months) / 12, i64::from(months) % 12);
    if years != 0 {
        parts.push(unit(years, "year", "years"));
    }
    if months != 0 {
        parts.push(unit(months, "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(i64::from(days), "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let total = micros.unsigned_abs();
        let (secs, frac) = (total / 1_000_000, total % 1_000_000);
        let mut clock = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        if frac != 0 {
            clock.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(clock);
    }
    Some(parts.join(" "))
}

fn uuid(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 16 {
        return None;
    }
    let h = hex::encode(bytes);
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Turns a sqlx error into what the runbook reports, without secrets.
fn classify(
    target: &str,
    url: &str,
    timeout: Duration,
    err: &sqlx::Error,
    secrets: &Secrets,
) -> ProbeError {
    let target = target.to_string();
    match err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(QUERY_CANCELED) => {
            ProbeError::Timeout(target, timeout)
        }
        sqlx::Error::Database(db) => ProbeError::Failed(target, secrets.scrub(db.message())),
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            ProbeError::Timeout(target, timeout)
        }
        sqlx::Error::Io(e) => ProbeError::Unreachable(
            target,
            secrets.scrub(&format!("cannot connect to {}: {e}", redact_url(url))),
        ),
        sqlx::Error::Tls(e) => ProbeError::Unreachable(
            target,
            secrets.scrub(&format!("tls with {} failed: {e}", redact_url(url))),
        ),
        sqlx::Error::Configuration(e) => ProbeError::Config(target, secrets.scrub(&e.to_string())),
        sqlx::Error::Protocol(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            ProbeError::Malformed(target, secrets.scrub(&err.to_string()))
        }
        other => ProbeError::Failed(target, secrets.scrub(&other.to_string())),
    }
}

/// The secrets a message must never carry: the target's password and any
/// password written into the URL.
pub(super) struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub(super) fn new(url: &str, password: Option<&str>) -> Secrets {
        let mut values: Vec<String> = password.into_iter().map(str::to_string).collect();
        if let Some(p) = url_password(url) {
            values.push(p.to_string());
        }
        values.retain(|v| !v.is_empty());
        Secrets { values }
    }

    /// `message` with every secret replaced by `***`.
    pub(super) fn scrub(&self, message: &str) -> String {
        self.values.iter().fold(message.to_string(), |m, secret| {
            m.replace(secret.as_str(), "***")
        })
    }
}

/// The password of `scheme://user:password@host/…`, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_semicolon_is_accepted_and_a_second_statement_refused() {
        assert_eq!(single_statement("SELECT 1;\n").unwrap(), "SELECT 1");
        assert_eq!(single_statement("  SELECT 1  ").unwrap(), "SELECT 1");
        assert!(single_statement("SELECT 1; DELETE FROM t").is_err());
        assert!(single_statement("SELECT 1;;").is_err());
        assert!(single_statement(" ; ").is_err());
    }

    #[test]
    fn side_effects_name_the_statement_or_function() {
        let refused = |q: &str| side_effects(q).unwrap_or_else(|| panic!("not refused: {q}"));
        assert!(refused("COPY (SELECT 1) TO '/tmp/x'").starts_with("COPY"));
        assert!(refused("copy t FROM PROGRAM 'id'").starts_with("COPY"));
        assert!(refused("  (COPY (SELECT 1) TO STDOUT)").starts_with("COPY"));
        assert!(refused("DO $$BEGIN PERFORM 1; END$$").starts_with("DO is not a query"));
        assert!(refused("CALL p()").starts_with("CALL"));
        assert!(refused("LOAD 'x'").starts_with("LOAD"));
        assert!(refused("SET ROLE postgres").starts_with("SET"));
        for (q, name) in [
            ("SELECT pg_terminate_backend(42)", "pg_terminate_backend()"),
            (
                "select PG_CANCEL_BACKEND (pid) from pg_stat_activity",
                "pg_cancel_backend()",
            ),
            (
                "SELECT pg_catalog.pg_terminate_backend/* x */(1)",
                "pg_terminate_backend()",
            ),
            (
                "SELECT \"pg_terminate_backend\"(1)",
                "pg_terminate_backend()",
            ),
            ("SELECT lo_import('/etc/passwd')", "lo_import()"),
            ("SELECT lo_export(1, '/tmp/x')", "lo_export()"),
            (
                "SELECT * FROM dblink('db', 'DELETE FROM t') AS t(x int)",
                "dblink()",
            ),
            ("SELECT dblink_exec('db', 'x')", "dblink_exec()"),
            ("SELECT pg_read_file('/etc/passwd')", "pg_read_file()"),
            ("SELECT pg_read_binary_file('/x')", "pg_read_binary_file()"),
            ("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir()"),
            ("SELECT pg_stat_file('x')", "pg_stat_file()"),
            ("SELECT pg_reload_conf()", "pg_reload_conf()"),
            ("SELECT pg_rotate_logfile()", "pg_rotate_logfile()"),
            ("SELECT pg_switch_wal()", "pg_switch_wal()"),
            (
                "SELECT pg_create_restore_point('x')",
                "pg_create_restore_point()",
            ),
            ("SELECT pg_backup_start('x')", "pg_backup_start()"),
            (
                "SELECT pg_create_logical_replication_slot('s', 'p')",
                "pg_create_logical_replication_slot()",
            ),
            (
                "SELECT pg_drop_replication_slot('s')",
                "pg_drop_replication_slot()",
            ),
            (
                "SELECT pg_replication_origin_create('o')",
                "pg_replication_origin_create()",
            ),
            (
                "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
                "pg_logical_slot_get_changes()",
            ),
            ("SELECT pg_promote()", "pg_promote()"),
            (
                "SELECT pg_logical_emit_message(true, 'p', 'm')",
                "pg_logical_emit_message()",
            ),
            ("SELECT pg_notify('c', 'x')", "pg_notify()"),
            (
                "SELECT set_config('role', 'postgres', true)",
                "set_config()",
            ),
            ("SELECT nextval('s')", "nextval()"),
            ("SELECT setval('s', 1)", "setval()"),
            ("SELECT pg_advisory_lock(1)", "pg_advisory_lock()"),
            (
                "SELECT pg_try_advisory_xact_lock(1)",
                "pg_try_advisory_xact_lock()",
            ),
            ("SELECT pg_stat_reset()", "pg_stat_reset()"),
            (
                "SELECT pg_stat_reset_shared('wal')",
                "pg_stat_reset_shared()",
            ),
            (
                "SELECT pg_log_backend_memory_contexts(1)",
                "pg_log_backend_memory_contexts()",
            ),
            ("SELECT pg_wal_replay_pause()", "pg_wal_replay_pause()"),
            ("SELECT txid_current()", "txid_current()"),
            ("SELECT pg_current_xact_id()", "pg_current_xact_id()"),
            (
                "SELECT pg_import_system_collations('pg_catalog')",
                "pg_import_system_collations()",
            ),
            (
                "SELECT query_to_xml('SELECT pg_terminate_backend(1)', true, false, '')",
                "query_to_xml()",
            ),
            (
                "WITH x AS (SELECT 1) SELECT pg_terminate_backend(1) FROM x",
                "pg_terminate_backend()",
            ),
        ] {
            let m = refused(q);
            assert!(m.starts_with(name), "{q}: {m}");
        }
        assert!(refused("SELECT U&\"\\0070g_terminate_backend\"(1)").contains("U&"));
    }

    #[test]
    fn side_effects_ignore_strings_comments_identifiers_and_harmless_calls() {
        for q in [
            "SELECT copy_count FROM t",
            "SELECT 'COPY' AS x, 'pg_terminate_backend(1)' AS y",
            "SELECT E'it\\'s pg_terminate_backend(1)' AS y",
            "SELECT 'it''s pg_terminate_backend(1)'",
            "SELECT $$ lo_import('/x') $$, $q$ pg_read_file('/x') $q$",
            "SELECT 1 -- pg_terminate_backend(1)\n",
            "SELECT /* COPY /* nested */ pg_terminate_backend(1) */ 1",
            "SELECT \"copy\", \"pg_terminate_backend\" FROM t",
            "SELECT COUNT(*) FROM pg_stat_activity WHERE state = 'idle'",
            "SELECT pg_sleep(0.1), now(), current_user, txid_current_if_assigned()",
            "SELECT lo_value, nextval_count FROM t WHERE dblink_name = 'x'",
            "SELECT * FROM pg_file_settings",
            "  (SELECT 1) UNION (SELECT 2)",
            "with recent as (select 1) select * from recent",
            "VALUES (1)",
            "TABLE t",
            "SHOW statement_timeout",
            "EXPLAIN SELECT 1",
            "SELECT $1",
            "",
        ] {
            assert_eq!(side_effects(q), None, "{q}");
        }
    }

    #[test]
    fn a_privileged_role_is_named_with_what_it_can_do_and_the_fix() {
        let row = |who: &str, role: &str, su: bool| (who.to_string(), role.to_string(), su);
        assert_eq!(privileged(&[]), None);
        let su = privileged(&[
            row("postgres", "postgres", true),
            row("postgres", "pg_signal_backend", false),
        ])
        .unwrap_or_default();
        assert!(su.starts_with("role \"postgres\" is a superuser: "), "{su}");
        assert!(
            su.contains("end other sessions") && su.contains("run programs"),
            "{su}"
        );
        assert!(
            su.contains("allow_privileged = true") && su.contains("pg_read_all_data"),
            "{su}"
        );
        let via = privileged(&[row("ops", "admin", true)]).unwrap_or_default();
        assert!(
            via.starts_with("role \"ops\" can become superuser \"admin\""),
            "{via}"
        );
        let member = privileged(&[
            row("probe", "pg_signal_backend", false),
            row("probe", "pg_write_server_files", false),
        ])
        .unwrap_or_default();
        assert!(
            member.starts_with("role \"probe\" is a member of pg_signal_backend (can end other sessions), pg_write_server_files (can write files on the database host)"),
            "{member}"
        );
        assert!(member.contains("allow_privileged = true"), "{member}");
    }

    #[test]
    fn numeric_binary_values_read_as_decimal_text() {
        // 12345.678: ndigits 3, weight 1, dscale 3, digits 1 2345 6780.
        let mut b = Vec::new();
        for w in [3u16, 1, 0, 3, 1, 2345, 6780] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).unwrap(), "12345.678");
        // -0.0005: ndigits 1, weight -1, sign neg, dscale 4, digit 5.
        let mut b = Vec::new();
        for w in [1u16, (-1i16) as u16, 0x4000, 4, 5] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_text(&b).unwrap(), "-0.0005");
        // 0: no digits.
        let b: Vec<u8> = [0u16, 0, 0, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(numeric_text(&b).unwrap(), "0");
        assert_eq!(number_from_text("12"), Value::from(12));
        assert_eq!(number_from_text("NaN"), Value::String("NaN".into()));
    }

    #[test]
    fn url_passwords_are_found_and_scrubbed() {
        assert_eq!(
            url_password("postgres://u:s3cret@h:5432/db"),
            Some("s3cret")
        );
        assert_eq!(url_password("postgres://u@h/db"), None);
        let s = Secrets::new("postgres://u:s3cret@h/db", Some("other"));
        assert_eq!(s.scrub("s3cret and other"), "*** and ***");
    }
}
