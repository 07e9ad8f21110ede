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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

use super::{Result, StoreError};

/// The advisory lock key on PostgreSQL (in its own database): "fl1n" in
/// ASCII, small enough that `pg_locks.classid` is 0 and `objid` is the key.
const PG_LOCK_KEY: i64 = 0x666c_316e;

/// How often the PostgreSQL lock's session is checked.
const CHECK_EVERY: Duration = Duration::from_secs(5);

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

    /// Keeps the lock held until `stop`, then hands it back for release.
    /// A PostgreSQL advisory lock lives as long as its session: a server
    /// restart or a cut connection ends it silently, and a second process
    /// could then take it. So its session is checked every
    /// [`CHECK_EVERY`]; once it is gone the lock is taken again on a new
    /// one. Until then, or if another process got it first, `lost` says
    /// why (for `/readyz`). SQLite's lock is the kernel's: nothing to do.
    pub async fn keep(
        mut self,
        url: String,
        lost: Arc<Mutex<Option<String>>>,
        mut stop: watch::Receiver<bool>,
    ) -> StoreLock {
        if !matches!(self, StoreLock::Postgres(_)) {
            let _ = stop.changed().await;
            return self;
        }
        let set = |why: Option<String>| *lost.lock().unwrap_or_else(|p| p.into_inner()) = why;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = stop.changed() => return self,
            }
            let alive = match &mut self {
                StoreLock::Postgres(conn) => {
                    sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok()
                }
                StoreLock::File { .. } | StoreLock::None => true,
            };
            if alive {
                continue;
            }
            match lock_postgres(&url).await {
                Ok(again) => {
                    self = again;
                    set(None);
                    tracing::warn!(
                        "the store lock's PostgreSQL session had ended; the lock is held again"
                    );
                }
                Err(StoreError::Locked(m)) => {
                    tracing::error!(holder = %m, "the store lock was lost while its PostgreSQL session was down, and another process holds it now: stop one of the two");
                    set(Some(format!(
                        "the store lock was lost and is held elsewhere: {m}"
                    )));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the store lock's PostgreSQL session ended; taking the lock again when the database answers");
                    set(Some("the store lock's PostgreSQL session ended; it is taken again when the database answers".into()));
                }
            }
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
