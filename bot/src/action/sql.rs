//! `sql`: one write statement against a configured PostgreSQL target, in a
//! transaction rolled back if it touches more rows than `max_rows`.
//!
//! Placeholders never become SQL text: each `{{ … }}` is replaced by `$1`,
//! `$2`, … and its rendered value is bound as a text parameter. A column
//! that is not text needs a cast in the statement
//! (`WHERE id = {{ params.id }}::bigint`). A placeholder inside a quoted
//! string, a quoted identifier or a comment is refused, because there it
//! would be text, not a parameter.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
// Only store/ names sqlx, but this writes to a target's database (not the bot's store), as probe/sql.rs reads one.
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::http::{lookup, wrong_kind};
use super::{Env, Outcome, Vars};
use crate::probe::TargetSettings;
use crate::text::{clip, redact_url};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAction {
    /// A `[targets.NAME]` of kind `postgres` (a role that may write).
    pub target: String,
    /// One statement: `UPDATE`, `INSERT` or `DELETE`. Placeholders become
    /// bind parameters, never text pasted into the SQL.
    pub statement: String,
    /// More rows touched than this and the transaction is rolled back.
    pub max_rows: u64,
}

/// The statement, rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlPlan {
    pub target: String,
    /// The statement with `$1`, `$2`, … where its placeholders were,
    /// without a trailing `;`.
    pub statement: String,
    /// The values of `$1`, `$2`, …
    pub binds: Vec<String>,
    pub max_rows: u64,
    /// The target's URL for people: no password, no query.
    #[serde(default)]
    pub shown_url: String,
}

/// Characters of one bind value shown in `describe`.
const DESCRIBE_BIND: usize = 200;
/// SQLSTATE `query_canceled`: what `statement_timeout` raises.
const QUERY_CANCELED: &str = "57014";
/// SQLSTATEs a retry may clear: serialization failure, deadlock, lock
/// timeout, too many connections, the server shutting down / starting.
const TRANSIENT: &[&str] = &["40001", "40P01", "55P03", "53300", "57P01", "57P03"];

impl SqlPlan {
    /// `on orders (postgres://app@db:5432/orders): UPDATE outbox SET
    /// status = 'PENDING' WHERE id = $1::bigint with $1='42'; rolled back
    /// if more than 10 rows`
    pub fn describe(&self) -> String {
        let mut out = format!(
            "on {} ({}): {}",
            self.target, self.shown_url, self.statement
        );
        if !self.binds.is_empty() {
            let binds: Vec<String> = self
                .binds
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    format!(
                        "${}='{}'",
                        i + 1,
                        clip(v, DESCRIBE_BIND).replace('\'', "''")
                    )
                })
                .collect();
            out.push_str(&format!(" with {}", binds.join(", ")));
        }
        out.push_str(&format!(
            "; rolled back if more than {} row{}",
            self.max_rows,
            if self.max_rows == 1 { "" } else { "s" }
        ));
        out
    }

    /// `updated`, `inserted`, `deleted`.
    fn verb(&self) -> &'static str {
        match leading_keyword(&self.statement).as_deref() {
            Some("insert") => "inserted",
            Some("delete") => "deleted",
            _ => "updated",
        }
    }
}

pub fn prepare(spec: &SqlAction, vars: &Vars, env: &Env) -> Result<SqlPlan, String> {
    let target = lookup(env, &spec.target)?;
    let TargetSettings::Postgres { url, .. } = &target.settings else {
        return Err(wrong_kind(target, "postgres"));
    };
    let statement = single_statement(&spec.statement)?;
    match leading_keyword(statement).as_deref() {
        Some("update" | "insert" | "delete") => {}
        Some(other) => {
            return Err(format!(
                "the statement starts with {}: only UPDATE, INSERT or DELETE may run",
                other.to_ascii_uppercase()
            ));
        }
        None => return Err("the statement is empty".into()),
    }
    let (statement, binds) = bind_placeholders(statement, vars)?;
    Ok(SqlPlan {
        target: target.name.clone(),
        statement,
        binds,
        max_rows: spec.max_rows,
        shown_url: shown_url(url),
    })
}

pub async fn execute(plan: &SqlPlan, env: &Env, _key: &str) -> Outcome {
    let refused = |summary: String| Outcome {
        ok: false,
        summary,
        output: String::new(),
        retryable: false,
    };
    let target = match lookup(env, &plan.target) {
        Ok(t) => t,
        Err(m) => return refused(m),
    };
    let TargetSettings::Postgres { url, .. } = &target.settings else {
        return refused(wrong_kind(target, "postgres"));
    };
    let password = target.password.as_ref().map(|p| p.expose_secret());
    let scrub = |m: &str| scrub(m, url, password);
    let mut options = match PgConnectOptions::from_str(url) {
        Ok(o) => o,
        Err(e) => {
            return refused(scrub(&format!(
                "invalid postgres url {}: {e}",
                redact_url(url)
            )));
        }
    };
    if let Some(p) = password {
        options = options.password(p);
    }
    if options.get_application_name().is_none() {
        options = options.application_name("firstline action");
    }

    let mut conn =
        match tokio::time::timeout(env.timeout, PgConnection::connect_with(&options)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let retryable = transient(&e);
                return Outcome {
                    ok: false,
                    summary: scrub(&format!("cannot connect to {}: {e}", plan.shown_url)),
                    output: String::new(),
                    retryable,
                };
            }
            Err(_) => {
                return Outcome {
                    ok: false,
                    summary: format!(
                        "no connection to {} within {} s",
                        plan.shown_url,
                        env.timeout.as_secs()
                    ),
                    output: String::new(),
                    retryable: true,
                };
            }
        };
    let outcome = run(&mut conn, plan, env.timeout).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(Failure { error, step }) => Outcome {
            ok: false,
            summary: scrub(&describe_failure(&error, step, env.timeout)),
            output: String::new(),
            // Lost during COMMIT: it may have committed; a person checks.
            retryable: step != Step::Commit && transient(&error),
        },
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), conn.close()).await;
    outcome
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Begin,
    Statement,
    Rollback,
    Commit,
}

struct Failure {
    error: sqlx::Error,
    step: Step,
}

fn at(step: Step) -> impl FnOnce(sqlx::Error) -> Failure {
    move |error| Failure { error, step }
}

async fn run(
    conn: &mut PgConnection,
    plan: &SqlPlan,
    timeout: Duration,
) -> Result<Outcome, Failure> {
    let ms = timeout.as_millis().max(1);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; SET LOCAL statement_timeout = {ms}"
    )))
    .execute(&mut *conn)
    .await
    .map_err(at(Step::Begin))?;
    let mut query = sqlx::query(AssertSqlSafe(plan.statement.clone())).persistent(false);
    for value in &plan.binds {
        query = query.bind(value.clone());
    }
    let rows = match query.execute(&mut *conn).await {
        Ok(r) => r.rows_affected(),
        Err(e) => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(Failure {
                error: e,
                step: Step::Statement,
            });
        }
    };
    let verb = plan.verb();
    if rows > plan.max_rows {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut *conn)
            .await
            .map_err(at(Step::Rollback))?;
        return Ok(Outcome {
            ok: false,
            summary: format!(
                "would touch {rows} rows, more than max_rows {}: rolled back",
                plan.max_rows
            ),
            output: String::new(),
            retryable: false,
        });
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(at(Step::Commit))?;
    Ok(Outcome {
        ok: true,
        summary: format!(
            "{rows} row{} {verb}, committed",
            if rows == 1 { "" } else { "s" }
        ),
        output: String::new(),
        retryable: false,
    })
}

fn describe_failure(error: &sqlx::Error, step: Step, timeout: Duration) -> String {
    let what = match step {
        Step::Begin => "could not begin the transaction",
        Step::Statement => "the statement failed, rolled back",
        Step::Rollback => "the rollback failed (the server rolls back when the session ends)",
        Step::Commit => "the commit failed: check whether it took effect before trying again",
    };
    match error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(QUERY_CANCELED) => {
            format!(
                "{what}: statement timeout of {} s reached",
                timeout.as_secs()
            )
        }
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{what}: {} (SQLSTATE {code})", db.message()),
            None => format!("{what}: {}", db.message()),
        },
        other => format!("{what}: {other}"),
    }
}

/// Whether trying again could help: the connection, a timeout, a lock or a
/// serialization conflict; not a statement the database refused.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c == QUERY_CANCELED || TRANSIENT.contains(&c.as_ref())),
        _ => false,
    }
}

/// `message` without the password (given, or written in the URL).
fn scrub(message: &str, url: &str, password: Option<&str>) -> String {
    let mut out = message.to_string();
    let in_url = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string));
    for secret in password.map(str::to_string).into_iter().chain(in_url) {
        if !secret.is_empty() && out.contains(&secret) {
            out = out.replace(&secret, "••••");
        }
    }
    out
}

/// `postgres://user@host:5432/db`: no password, no query.
fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => redact_url(url),
    }
}

/// The statement without surrounding space and its one trailing `;`.
/// Deliberately blunt: a `;` anywhere else (even in a string literal) is
/// refused, so a second statement can never ride along.
fn single_statement(statement: &str) -> Result<&str, String> {
    let trimmed = statement.trim();
    let body = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
    if body.is_empty() {
        return Err("the statement is empty".into());
    }
    if body.contains(';') {
        return Err("only one statement is allowed: the statement has a `;` before its end".into());
    }
    Ok(body)
}

/// The first word after leading space and comments, lower case.
fn leading_keyword(statement: &str) -> Option<String> {
    let mut rest = statement;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (!word.is_empty()).then(|| word.to_ascii_lowercase())
}

/// Replaces each `{{ … }}` by `$1`, `$2`, … and renders each one alone as
/// that parameter's value. Refuses `{% … %}`, a placeholder inside quotes,
/// and `$1`-style parameters written by hand (they would take the wrong
/// values).
fn bind_placeholders(statement: &str, vars: &Vars) -> Result<(String, Vec<String>), String> {
    if statement.contains("{%") {
        return Err(
            "the statement has a {% … %} block: only {{ … }} placeholders are allowed".into(),
        );
    }
    if hand_written_parameter(statement) {
        return Err(
            "the statement has a $1-style parameter: write values as {{ … }} placeholders".into(),
        );
    }
    let mut out = String::with_capacity(statement.len());
    let mut binds = Vec::new();
    let mut rest = statement;
    while let Some(open) = rest.find("{{") {
        let before = &rest[..open];
        out.push_str(before);
        let Some(close) = rest[open..].find("}}") else {
            return Err("a {{ placeholder in the statement is not closed".into());
        };
        let placeholder = &rest[open..open + close + 2];
        if let Some(where_) = quoted_or_commented(&out) {
            return Err(format!(
                "{placeholder} is {where_}: write it bare in the SQL (it is bound as a text value)"
            ));
        }
        let value = super::render(placeholder, vars)?;
        binds.push(value);
        out.push_str(&format!("${}", binds.len()));
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    if out.contains("}}") {
        return Err("the statement has a }} without its {{".into());
    }
    Ok((out, binds))
}

/// Where the end of `sql` is, if not in plain SQL: inside a '…' string,
/// a "…" identifier or a comment (a doubled quote leaves and re-enters the
/// string, so it needs no special case).
fn quoted_or_commented(sql: &str) -> Option<&'static str> {
    #[derive(PartialEq)]
    enum At {
        Sql,
        Single,
        Double,
        Line,
        Block,
    }
    let mut at = At::Sql;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        at = match (at, c) {
            (At::Sql, '\'') => At::Single,
            (At::Sql, '"') => At::Double,
            (At::Sql, '-') if chars.peek() == Some(&'-') => {
                chars.next();
                At::Line
            }
            (At::Sql, '/') if chars.peek() == Some(&'*') => {
                chars.next();
                At::Block
            }
            (At::Single, '\'') | (At::Double, '"') | (At::Line, '\n') => At::Sql,
            (At::Block, '*') if chars.peek() == Some(&'/') => {
                chars.next();
                At::Sql
            }
            (same, _) => same,
        };
    }
    match at {
        At::Sql => None,
        At::Single | At::Double => Some("inside quotes"),
        At::Line | At::Block => Some("inside a comment"),
    }
}

/// `$` followed by a digit, outside nothing in particular: blunt on purpose.
fn hand_written_parameter(sql: &str) -> bool {
    sql.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit())
}
