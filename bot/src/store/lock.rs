//! One serving process per store.
//!
//! Two `firstline serve` on one store (a double systemd start, a second
//! terminal) would share the intake journal: the second one's start-up
//! clears what it takes for a crash's torn tail, which is the first one's
//! live tail, and accepted alerts are lost. So a process that writes takes
//! this lock **before it opens anything else** and holds it for its life:
//!
//! - SQLite: an exclusive `flock` on `<database>.lock`, beside the database
//!   and its journal folder, which holds the holder's pid for the message
//!   a second process prints. The kernel releases it when the process
//!   dies, however it dies, so a crash never leaves a stale lock.
//! - PostgreSQL: a session-level advisory lock, on a connection of its own
//!   whose `application_name` names the holder (pid and host). PostgreSQL
//!   releases it when that session ends.
//!
//! Read-only commands (`incident list/show/export`) take no lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::{Result, StoreError};

/// The advisory lock key on PostgreSQL (in its own database): "fl1n" in
/// ASCII, small enough that `pg_locks.classid` is 0 and `objid` is the key.
const PG_LOCK_KEY: i64 = 0x666c_316e;

/// Held for the life of the process that writes to the store.
#[derive(Debug)]
pub enum StoreLock {
    /// The locked `<database>.lock` file (the lock goes with the handle).
    File { file: File, path: PathBuf },
    /// The session that holds the advisory lock.
    Postgres(Box<PgConnection>),
    /// An in-memory SQLite database belongs to its process anyway.
    None,
}

impl StoreLock {
    /// Takes the store's lock, or says who holds it.
    pub async fn acquire(url: &str) -> Result<StoreLock> {
        if url.starts_with("sqlite:") {
            let path = match super::journal::beside_sqlite(url, ".lock") {
                Ok(p) => p,
                // In memory: nothing to share with another process.
                Err(_) => return Ok(StoreLock::None),
            };
            tokio::task::spawn_blocking(move || lock_file(path))
                .await
                .map_err(|e| StoreError::Corrupt(format!("store lock task: {e}")))?
        } else {
            lock_postgres(url).await
        }
    }

    /// Gives the lock up (also done by dropping it).
    pub async fn release(self) {
        if let StoreLock::Postgres(conn) = self {
            let _ = conn.close().await;
        }
    }
}

fn lock_file(path: PathBuf) -> Result<StoreLock> {
    let io = |e: std::io::Error| {
        StoreError::Locked(format!("cannot lock the store at {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another firstline (pid {holder})")
            };
            return Err(StoreError::Locked(format!(
                "{who} is already serving this store (it holds {}); stop it first, or give this one another store.url",
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(StoreLock::File { file, path })
}

async fn lock_postgres(url: &str) -> Result<StoreLock> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut name = format!("firstline pid {}", std::process::id());
    if !host.is_empty() {
        name.push_str(&format!(" on {host}"));
    }
    let opts = PgConnectOptions::from_str(url)?.application_name(&name);
    let mut conn = opts.connect().await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(PG_LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if got {
        return Ok(StoreLock::Postgres(Box::new(conn)));
    }
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid::bigint = $1 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1",
    )
    .bind(PG_LOCK_KEY)
    .fetch_optional(&mut conn)
    .await
    .ok()
    .flatten();
    let _ = conn.close().await;
    let who = match holder.filter(|h| !h.is_empty()) {
        Some(h) => format!("another process ({h})"),
        None => "another process".to_string(),
    };
    Err(StoreError::Locked(format!(
        "{who} is already serving this database (it holds advisory lock {PG_LOCK_KEY}); stop it first, or give this one another store.url"
    )))
}
