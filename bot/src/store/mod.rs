//! The store: every durable fact lives here, on SQLite or PostgreSQL.
//!
//! Only this module names sqlx. The two backends share one implementation:
//! the SQL is portable (`$1` placeholders, `ON CONFLICT`, `RETURNING`, times
//! as BIGINT milliseconds, JSON as TEXT) and each operation's body is written
//! once and expanded for both pools by the `on_pool!` / `on_tx!` macros, so
//! the backends cannot drift apart. The same contract tests run on both.
//!
//! Writes that belong together (an alert, its incident, the timeline event
//! and the chat post intent) go through one transaction: the single writer
//! in `incident::ledger` wraps it in a [`Batch`], which serves a whole group
//! commit's lookups and inserts with a few multi-row statements.

mod rows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Postgres, Sqlite, Transaction};

use crate::domain::incident::{Incident, StoredAlert, TimelineEvent};
use crate::domain::time::Millis;
pub use batch::{Batch, Prefetch};
use rows::{AlertRow, IncidentRow, TimelineRow};
pub use rows::{ChatPost, OutboxItem, Receipt};

/// What can go wrong in the store. Callers answer `infra` / 503 for all of it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is not valid: {0}")]
    Corrupt(String),
    /// The store's schema is not the one this binary needs.
    #[error("{0}")]
    Schema(String),
    /// Another process serves this store (see [`StoreLock`]).
    #[error("{0}")]
    Locked(String),
    #[error("intake journal {}: {error}", path.display())]
    Journal {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A connection pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgPool),
}

/// The SQLite pool and its write gate. SQLite has one write lock per file;
/// a connection that finds it taken sleeps in its busy handler (1, 2, 5 …
/// up to 100 ms a try) rather than queueing. With the single writer
/// holding the lock almost continuously under load, the dispatchers' small
/// writes waited seconds, and the writer then slept behind them. Every
/// write on this process takes the gate first, a fair FIFO queue, so each
/// waits for at most the write in front of it.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    gate: Arc<tokio::sync::Mutex<()>>,
    /// The checkpoints' own connection, opened on first use at the
    /// writer's priority (a checkpoint is incident-making's work: it
    /// copies what the writer committed).
    checkpointer: Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>,
}

/// Held for the length of one write on SQLite; nothing on PostgreSQL,
/// whose row locks need no gate.
type WriteGuard = Option<tokio::sync::OwnedMutexGuard<()>>;

/// An open transaction on either backend. Dropped without `commit`, it
/// rolls back.
pub enum StoreTx<'c> {
    /// The transaction and the write gate it holds until it ends.
    Sqlite(Transaction<'c, Sqlite>, WriteGuard),
    Postgres(Transaction<'c, Postgres>),
}

/// A connection the single writer keeps across its batches. Taking one
/// from the pool per batch cost a pool round trip (and, on release, a
/// spawned task) on the hottest path; this one is held until it fails or
/// the pool starts closing.
///
/// On SQLite it is the writer's own connection, opened beside the pool
/// (see [`Store::writer_conn`]) so that its worker thread runs at a lower
/// priority than intake.
pub enum WriterConn {
    Sqlite(sqlx::SqliteConnection, Arc<tokio::sync::Mutex<()>>),
    Postgres(PoolConnection<Postgres>),
}

impl WriterConn {
    /// Opens a transaction on the held connection (on SQLite, `BEGIN
    /// IMMEDIATE`, as [`Store::begin`]).
    pub async fn begin(&mut self) -> Result<StoreTx<'_>> {
        Ok(match self {
            WriterConn::Sqlite(c, gate) => {
                let guard = gate.clone().lock_owned().await;
                StoreTx::Sqlite(c.begin_with("BEGIN IMMEDIATE").await?, Some(guard))
            }
            WriterConn::Postgres(c) => StoreTx::Postgres(c.begin().await?),
        })
    }

    /// Gives the connection up after an error: it is closed rather than
    /// returned, so a broken connection is never reused.
    pub fn discard(self) {
        match self {
            // Dropping it ends its worker thread and closes the file.
            WriterConn::Sqlite(c, _) => drop(c),
            WriterConn::Postgres(mut c) => c.close_on_drop(),
        }
    }
}

impl SqliteStore {
    /// A connection beside the pool, with the pool's options, whose worker
    /// thread runs below intake (see [`crate::priority`]).
    async fn open_at_writer_priority(&self) -> Result<sqlx::SqliteConnection> {
        let options = self.pool.connect_options();
        let runtime = tokio::runtime::Handle::current();
        // sqlx starts the connection's worker thread from the thread that
        // first polls the connect, so it inherits that thread's priority.
        let conn = crate::priority::at_background_priority(move || {
            runtime.block_on(sqlx::ConnectOptions::connect(&*options))
        })
        .await
        .map_err(sqlx::Error::Io)??;
        Ok(conn)
    }
}

/// Marks outbox item `$2` delivered at `$1` (on the pool, or in a
/// transaction: `StoreTx::outbox_delivered`).
const OUTBOX_DELIVERED: &str = "UPDATE outbox SET status = 'delivered', delivered_ms = $1, attempts = attempts + 1, last_error = NULL, claimed_by = NULL WHERE id = $2";

/// Runs `$body` with `$p` bound to the backend's pool.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let $p = &s.pool;
                $body
            }
            Store::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the transaction's connection.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            StoreTx::Sqlite(t, _) => {
                let $c: &mut sqlx::SqliteConnection = &mut **t;
                $body
            }
            StoreTx::Postgres(t) => {
                let $c: &mut sqlx::PgConnection = &mut **t;
                $body
            }
        }
    };
}

/// `count` placeholders from parameter `first`, comma-separated: `?` on
/// SQLite (bound in order, no name lookup), `$N` on PostgreSQL.
fn params(numbered: bool, first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 5);
    push_params(&mut out, numbered, first, count);
    out
}

fn push_params(out: &mut String, numbered: bool, first: usize, count: usize) {
    use std::fmt::Write as _;
    for n in first..first + count {
        if n > first {
            out.push_str(", ");
        }
        if numbered {
            let _ = write!(out, "${n}");
        } else {
            out.push('?');
        }
    }
}

/// `(…), (…)`: `rows` tuples of `cols` placeholders from parameter 1,
/// written into one buffer (built for every multi-row statement).
fn rows(numbered: bool, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * (cols * 5 + 4));
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        push_params(&mut out, numbered, r * cols + 1, cols);
        out.push(')');
    }
    out
}

/// Splits `items` into runs of at most `max` rows for multi-row INSERTs;
/// with `powers_of_two`, runs whose lengths are powers of two (`max` is one
/// too). A statement is prepared once per distinct SQL text and then found
/// in sqlx's statement cache (100 per connection); on SQLite a statement per
/// exact run length gave the writer up to 64 texts per table, more than the
/// cache holds, so SQLite parsed and planned nearly every one afresh: a
/// tenth of the instructions the server spent per alert. Powers of two give
/// at most seven texts per table. PostgreSQL's runs of 8 fit the cache as
/// they are, and there every extra statement is a round trip.
fn shaped<T>(items: &[T], max: usize, powers_of_two: bool) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let n = rest.len().min(max);
        if n == 0 {
            return None;
        }
        let len = if powers_of_two { 1 << n.ilog2() } else { n };
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

/// The placeholders of an `IN (…)` list for [`padded`] values of `count`
/// items, from parameter `first`.
fn padded_params(numbered: bool, first: usize, count: usize) -> String {
    params(numbered, first, count.next_power_of_two())
}

/// `chunk` padded to the next power of two by repeating its last item, for
/// the values of an `IN (…)` list (placeholders by [`padded_params`]): a
/// repeated value changes no answer, and the statement's text is one of a
/// few (see [`shaped`]).
fn padded<T: Copy>(chunk: &[T]) -> impl Iterator<Item = T> + '_ {
    let extra = chunk.len().next_power_of_two() - chunk.len();
    let last = chunk.last().copied();
    chunk
        .iter()
        .copied()
        .chain(std::iter::repeat_n(last, extra).flatten())
}

mod actions;
mod batch;
mod escalations;
mod filelog;
mod journal;
mod lock;
mod storms;
pub use actions::{ProposalRow, RunClaim, RunRow, VoteRow, state as proposal_state};
pub use escalations::{ClaimedStep, EscalationRow, PageClaim};
pub use lock::StoreLock;
pub use storms::Storm;

pub use filelog::FileJournal;
pub use filelog::Lost;
pub use journal::{DeadDelivery, JournalRecord, JournalStore, sqlite_journal_dir};

/// Options for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
    /// SQLite: fsync every commit (`true`) or leave it to checkpoints.
    pub sqlite_full_sync: bool,
}

/// A new alert row.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    pub incident_id: Option<i64>,
    pub source: &'a str,
    pub fingerprint: &'a str,
    pub status: &'a str,
    pub name: &'a str,
    pub starts_ms: i64,
    pub ends_ms: Option<i64>,
    pub labels: String,
    pub annotations: String,
    pub generator_url: Option<&'a str>,
    pub now: Millis,
}

/// A new incident row.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    pub runbook_id: Option<&'a str>,
    pub group_key: &'a str,
    pub title: &'a str,
    pub severity: &'a str,
    pub labels: String,
    pub impact_start: Option<Millis>,
    pub detected: Millis,
}

/// A timeline entry to append.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub incident_id: i64,
    pub at: Millis,
    pub actor: &'a str,
    pub kind: &'a str,
    pub text: &'a str,
    /// The event's data as JSON text (an object).
    pub data: String,
}

/// The outcome of recording a delivery key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// First time this key was seen.
    New,
    /// Seen before; its duplicate counter was bumped.
    Duplicate,
}

/// Filter for listing incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentFilter {
    Open,
    All,
}

/// Figures for `/metrics`, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct StoreGauges {
    /// (severity, count) of incidents not yet resolved.
    pub open_by_severity: Vec<(String, i64)>,
    pub outbox_pending: i64,
    pub outbox_dead: i64,
    /// Journaled deliveries set aside as unappliable (`dead_deliveries`).
    pub dead_deliveries: i64,
}

/// How many alerts an incident has, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertCounts {
    pub total: i64,
    pub firing: i64,
    pub resolved: i64,
}

const INCIDENT_COLUMNS: &str = "id, group_key, title, severity, state, labels, impact_start_ms, detected_ms, acknowledged_ms, mitigated_ms, resolved_ms, updated_ms, truncated_alerts, chat_thread, runbook_id";

/// How receipts are found: the first 16 bytes of SHA-256 over the source,
/// a zero byte and the key. Short, so the receipt index stays small and
/// cheap to write; cryptographic, because senders choose idempotency keys.
/// The stored `source` and `key` are returned with every lookup, so a
/// collision could never make one delivery pass for another.
pub(crate) fn receipt_hash(source: &str, key: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Whether the receipt row found under the hash of (`source`, `key`)
/// belongs to another pair: a hash collision. It is logged, and the caller
/// treats the delivery as new.
fn hash_collision(source: &str, key: &str, stored: (&str, &str)) -> bool {
    let collided = stored != (source, key);
    if collided {
        tracing::warn!(
            source,
            "receipt hash collision; the delivery is treated as new"
        );
    }
    collided
}

impl Store {
    /// Connects (creating a SQLite file if missing) and applies migrations.
    pub async fn connect(opts: &ConnectOptions) -> Result<Store> {
        let store = if opts.url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(&opts.url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(if opts.sqlite_full_sync {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                // Checkpoints run from a background task (Store::checkpoint)
                // so the writer's commits do not stall on them; this high
                // threshold is the safety net if that task stops.
                .pragma("wal_autocheckpoint", "20000")
                .pragma("cache_size", "-16384")
                // A multi-row insert keeps a statement journal of the pages
                // it changes; past 64 KB SQLite spills it to a temp file, and
                // writing that file was a tenth of the writer's CPU.
                .pragma("temp_store", "memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect)
                .await?;
            Store::Sqlite(SqliteStore {
                pool,
                gate: Arc::new(tokio::sync::Mutex::new(())),
                checkpointer: Arc::new(tokio::sync::Mutex::new(None)),
            })
        } else {
            // sqlx prepares every statement; after five runs PostgreSQL may
            // switch a statement to a generic plan made while the tables were
            // empty (a sequential scan), which then costs O(table) per alert
            // forever. Custom plans are re-planned with the current sizes.
            let connect = PgConnectOptions::from_str(&opts.url)?
                .options([("plan_cache_mode", "force_custom_plan")]);
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect)
                .await?;
            Store::Postgres(pool)
        };
        Ok(store)
    }

    /// Connects for reading only: SQLite opened read-only (never created,
    /// its journal mode left as the writer set it), PostgreSQL with every
    /// transaction read-only. Nothing here can write, so it needs no lock.
    pub async fn connect_read_only(opts: &ConnectOptions) -> Result<Store> {
        if opts.url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(&opts.url)?
                .read_only(true)
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect)
                .await?;
            Ok(Store::Sqlite(SqliteStore {
                pool,
                gate: Arc::new(tokio::sync::Mutex::new(())),
                checkpointer: Arc::new(tokio::sync::Mutex::new(None)),
            }))
        } else {
            let connect = PgConnectOptions::from_str(&opts.url)?
                .options([("default_transaction_read_only", "on")]);
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(connect)
                .await?;
            Ok(Store::Postgres(pool))
        }
    }

    /// Whether the store has every migration this binary knows; an error
    /// that says to migrate if not (for read-only commands, which do not).
    pub async fn check_schema(&self) -> Result<()> {
        let (migrator, applied) = match self {
            Store::Sqlite(s) => (
                sqlx::migrate!("../migrations/sqlite"),
                sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(&s.pool)
                    .await,
            ),
            Store::Postgres(p) => (
                sqlx::migrate!("../migrations/postgres"),
                sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
                    .fetch_all(p)
                    .await,
            ),
        };
        let applied = applied.unwrap_or_default();
        let missing = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .filter(|m| !applied.contains(&m.version))
            .count();
        if missing > 0 {
            return Err(StoreError::Schema(format!(
                "the store's schema lacks {missing} migration(s) this version needs; run `firstline migrate` (or start `firstline serve`, which applies them) first"
            )));
        }
        Ok(())
    }

    /// Applies the backend's migrations (idempotent), then fills in what
    /// SQL could not compute (see [`Store::hash_old_receipts`]).
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => sqlx::migrate!("../migrations/sqlite").run(&s.pool).await?,
            Store::Postgres(p) => sqlx::migrate!("../migrations/postgres").run(p).await?,
        }
        self.hash_old_receipts().await
    }

    /// Migration 0004 keeps the receipts of an earlier version with no
    /// `key_hash`; this computes it, so that they still answer for their
    /// keys. There are at most `intake.max_receipts` of them, once.
    async fn hash_old_receipts(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let rows: Vec<(i64, String, String)> = on_tx!(&mut tx, c => sqlx::query_as(
            "SELECT id, source, key FROM receipts WHERE key_hash IS NULL")
            .fetch_all(&mut *c).await?);
        if rows.is_empty() {
            return Ok(());
        }
        for (id, source, key) in &rows {
            on_tx!(&mut tx, c => sqlx::query("UPDATE receipts SET key_hash = $1 WHERE id = $2")
                .bind(receipt_hash(source, key).as_slice()).bind(id).execute(&mut *c).await.map(|_| ())?);
        }
        tx.commit().await?;
        tracing::info!(
            receipts = rows.len(),
            "receipts of an earlier version indexed by hash"
        );
        Ok(())
    }

    /// `sqlite` or `postgres`, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    pub async fn begin(&self) -> Result<StoreTx<'static>> {
        Ok(match self {
            // IMMEDIATE takes SQLite's write lock up front: a deferred
            // transaction that reads first and then writes fails at once
            // with SQLITE_BUSY when another connection wrote in between,
            // where IMMEDIATE simply waits. Within this process the write
            // gate orders writers first (see `SqliteStore`).
            Store::Sqlite(s) => {
                let guard = s.gate.clone().lock_owned().await;
                StoreTx::Sqlite(s.pool.begin_with("BEGIN IMMEDIATE").await?, Some(guard))
            }
            Store::Postgres(p) => StoreTx::Postgres(p.begin().await?),
        })
    }

    /// Takes the write gate (SQLite) for a write outside a transaction.
    async fn write_gate(&self) -> WriteGuard {
        match self {
            Store::Sqlite(s) => Some(s.gate.clone().lock_owned().await),
            Store::Postgres(_) => None,
        }
    }

    /// A connection for the single writer to hold (see [`WriterConn`]).
    ///
    /// On SQLite, sqlx runs each connection's database work on a worker
    /// thread of its own; the writer's is started below intake's priority
    /// (see [`crate::priority`]), like the writer itself.
    pub async fn writer_conn(&self) -> Result<WriterConn> {
        Ok(match self {
            Store::Sqlite(s) => {
                WriterConn::Sqlite(s.open_at_writer_priority().await?, s.gate.clone())
            }
            Store::Postgres(p) => WriterConn::Postgres(p.acquire().await?),
        })
    }

    /// SQLite: copies the WAL back into the database, holding the writer
    /// up only for the short second pass (PASSIVE checkpoints). PostgreSQL:
    /// nothing to do.
    ///
    /// It runs twice. The first pass copies the bulk while the writer goes
    /// on. The second runs under the write gate, so no commit lands while
    /// it copies what was committed meanwhile; it ends with the whole WAL
    /// copied, and the next commit starts the WAL again from its
    /// beginning. Without the second pass a checkpoint under steady load
    /// never caught up, and SQLite only restarts a WAL that was copied in
    /// full: the file grew for as long as the load lasted (80 MB in 30 s),
    /// each commit appended to it, and an fsync that must also record a
    /// file's new size costs about twice one that overwrites.
    ///
    /// Both passes run on a connection of their own, below intake's
    /// priority like the writer's (see [`crate::priority`]).
    pub async fn checkpoint(&self) -> Result<()> {
        let Store::Sqlite(s) = self else {
            return Ok(());
        };
        let mut held = s.checkpointer.lock().await;
        let conn = match &mut *held {
            Some(conn) => conn,
            None => held.insert(s.open_at_writer_priority().await?),
        };
        let passes = async {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *conn)
                .await?;
            let _gate = self.write_gate().await;
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut *conn)
                .await
        };
        if let Err(e) = passes.await {
            // Opened afresh next time rather than reused after a failure.
            *held = None;
            return Err(e.into());
        }
        Ok(())
    }

    /// Whether the database answers; `/readyz` uses it.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Resolves once [`Store::close`] has been called (at once if it was).
    pub async fn closing(&self) {
        on_pool!(self, p => p.close_event().await)
    }

    pub async fn close(&self) {
        if let Store::Sqlite(s) = self {
            s.checkpointer.lock().await.take();
        }
        on_pool!(self, p => p.close().await)
    }

    pub async fn incident(&self, id: i64) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")))
            .bind(id).fetch_optional(p).await?);
        row.map(Incident::try_from).transpose()
    }

    pub async fn incidents(&self, filter: IncidentFilter, limit: i64) -> Result<Vec<Incident>> {
        let sql = match filter {
            IncidentFilter::Open => format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state <> 'resolved' ORDER BY id DESC LIMIT $1"
            ),
            IncidentFilter::All => {
                format!("SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id DESC LIMIT $1")
            }
        };
        let rows: Vec<IncidentRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(limit).fetch_all(p).await?);
        rows.into_iter().map(Incident::try_from).collect()
    }

    /// Up to `limit` timeline events of the incident after event id
    /// `after` (0: from the start), oldest first: a page.
    pub async fn timeline_page(
        &self,
        incident_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<TimelineEvent>> {
        let rows: Vec<TimelineRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, incident_id, at_ms, actor, kind, text, data FROM timeline WHERE incident_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(incident_id).bind(after).bind(limit).fetch_all(p).await?);
        rows.into_iter().map(TimelineEvent::try_from).collect()
    }

    /// The incident's last `limit` timeline events, oldest first.
    pub async fn timeline_tail(&self, incident_id: i64, limit: i64) -> Result<Vec<TimelineEvent>> {
        let mut rows: Vec<TimelineRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, incident_id, at_ms, actor, kind, text, data FROM timeline WHERE incident_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(incident_id).bind(limit).fetch_all(p).await?);
        rows.reverse();
        rows.into_iter().map(TimelineEvent::try_from).collect()
    }

    /// How many timeline events the incident has.
    pub async fn timeline_count(&self, incident_id: i64) -> Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM timeline WHERE incident_id = $1")
            .bind(incident_id).fetch_one(p).await?),
        )
    }

    /// Up to `limit` alerts of the incident after alert id `after` (0:
    /// from the first), oldest first: a page.
    pub async fn alerts_page(
        &self,
        incident_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredAlert>> {
        let rows: Vec<AlertRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, incident_id, source, fingerprint, status, name, starts_ms, ends_ms, labels, annotations, generator_url, received_ms FROM alerts WHERE incident_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(incident_id).bind(after).bind(limit).fetch_all(p).await?);
        rows.into_iter().map(StoredAlert::try_from).collect()
    }

    /// The incident's last `limit` alerts, oldest first.
    pub async fn alerts_tail(&self, incident_id: i64, limit: i64) -> Result<Vec<StoredAlert>> {
        let mut rows: Vec<AlertRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT id, incident_id, source, fingerprint, status, name, starts_ms, ends_ms, labels, annotations, generator_url, received_ms FROM alerts WHERE incident_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(incident_id).bind(limit).fetch_all(p).await?);
        rows.reverse();
        rows.into_iter().map(StoredAlert::try_from).collect()
    }

    /// How many alerts the incident has, and how many of them fire.
    pub async fn alert_counts(&self, incident_id: i64) -> Result<AlertCounts> {
        let (total, firing): (i64, i64) = on_pool!(self, p => sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'firing' THEN 1 ELSE 0 END), 0) FROM alerts WHERE incident_id = $1")
            .bind(incident_id).fetch_one(p).await?);
        Ok(AlertCounts {
            total,
            firing,
            resolved: total - firing,
        })
    }

    /// Posts the bot made, oldest first; for one incident or (None) all.
    pub async fn chat_posts(&self, incident_id: Option<i64>, limit: i64) -> Result<Vec<ChatPost>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, outbox_id, platform, channel, thread, message_ref, incident_id, text, posted_ms FROM chat_posts
             WHERE ($1 IS NULL OR incident_id = $1) ORDER BY id LIMIT $2")
            .bind(incident_id).bind(limit).fetch_all(p).await?))
    }

    /// Records a post the platform made for outbox item `outbox_id`. Returns
    /// `false` if that item had already been posted (a redelivery after a
    /// crash), so the platform does not show it twice.
    pub async fn record_post(&self, post: &ChatPost) -> Result<bool> {
        let _gate = self.write_gate().await;
        let id: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO chat_posts (outbox_id, platform, channel, thread, message_ref, incident_id, text, posted_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (outbox_id) DO NOTHING RETURNING id")
            .bind(post.outbox_id).bind(&post.platform).bind(&post.channel).bind(&post.thread)
            .bind(&post.message_ref).bind(post.incident_id).bind(&post.text).bind(post.posted_ms)
            .fetch_optional(p).await?);
        Ok(id.is_some())
    }

    /// The post already made for an outbox item, if any.
    pub async fn post_for_outbox(&self, outbox_id: i64) -> Result<Option<ChatPost>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, outbox_id, platform, channel, thread, message_ref, incident_id, text, posted_ms FROM chat_posts WHERE outbox_id = $1")
            .bind(outbox_id).fetch_optional(p).await?))
    }

    /// The post with this platform reference (reactions point at one).
    pub async fn post_by_ref(&self, platform: &str, message_ref: &str) -> Result<Option<ChatPost>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, outbox_id, platform, channel, thread, message_ref, incident_id, text, posted_ms FROM chat_posts WHERE platform = $1 AND message_ref = $2")
            .bind(platform).bind(message_ref).fetch_optional(p).await?))
    }

    /// The incident's first post on `platform`: the one that opened its
    /// thread (its root, on Slack).
    pub async fn first_post(&self, platform: &str, incident_id: i64) -> Result<Option<ChatPost>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, outbox_id, platform, channel, thread, message_ref, incident_id, text, posted_ms FROM chat_posts
             WHERE incident_id = $1 AND platform = $2 ORDER BY id LIMIT 1")
            .bind(incident_id).bind(platform).fetch_optional(p).await?))
    }

    /// The incident whose thread reference ends with `suffix` (on Slack,
    /// `@CHANNEL`: the incident with that channel of its own).
    pub async fn incident_by_thread_suffix(&self, suffix: &str) -> Result<Option<i64>> {
        let pattern = format!("%{}", suffix.replace(['%', '_', '\\'], ""));
        Ok(on_pool!(self, p => sqlx::query_scalar(
            "SELECT id FROM incidents WHERE chat_thread LIKE $1 ORDER BY id DESC LIMIT 1")
            .bind(&pattern).fetch_optional(p).await?))
    }

    /// Remembers the incident's thread; the first post's reference wins.
    pub async fn set_chat_thread(&self, incident_id: i64, thread: &str) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query("UPDATE incidents SET chat_thread = $1 WHERE id = $2 AND chat_thread IS NULL")
            .bind(thread).bind(incident_id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Pending items of `kind` due at `now`, oldest first. An item behind
    /// an earlier item of its incident that is not due yet (backing off
    /// after a failure) or held (by a storm) is left out: an incident's
    /// items go in order.
    pub async fn due_outbox(&self, now: Millis, limit: i64, kind: &str) -> Result<Vec<OutboxItem>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, incident_id, kind, payload, attempts FROM outbox o
             WHERE status = 'pending' AND kind = $3 AND next_attempt_ms <= $1
               AND NOT EXISTS (SELECT 1 FROM outbox e
                   WHERE e.incident_id = o.incident_id AND e.id < o.id AND e.kind = o.kind
                     AND (e.status = 'held' OR (e.status = 'pending' AND e.next_attempt_ms > $1)))
             ORDER BY id LIMIT $2")
            .bind(now.0).bind(limit).bind(kind).fetch_all(p).await?))
    }

    /// Pending items of `kind` for `incident_id` after `after_id`, oldest
    /// first: the backlog behind the item being delivered (see
    /// `ChatPoster`'s merging).
    pub async fn pending_after(
        &self,
        kind: &str,
        incident_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<OutboxItem>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, incident_id, kind, payload, attempts FROM outbox
             WHERE status = 'pending' AND kind = $1 AND incident_id = $2 AND id > $3
             ORDER BY id LIMIT $4")
            .bind(kind).bind(incident_id).bind(after_id).bind(limit).fetch_all(p).await?))
    }

    /// The earliest time a pending item becomes due, to sleep until then.
    pub async fn next_outbox_due(&self, kind: &str) -> Result<Option<Millis>> {
        let v: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE status = 'pending' AND kind = $1").bind(kind).fetch_one(p).await?);
        Ok(v.map(Millis))
    }

    /// Whether outbox item `id` is still waiting to be delivered.
    pub async fn outbox_pending(&self, id: i64) -> Result<bool> {
        let n: i64 = on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE id = $1 AND status = 'pending'")
            .bind(id).fetch_one(p).await?);
        Ok(n > 0)
    }

    pub async fn outbox_delivered(&self, id: i64, now: Millis) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query(OUTBOX_DELIVERED)
            .bind(now.0).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Records a failed attempt: retried at `next` or, when `dead`, parked.
    pub async fn outbox_failed(
        &self,
        id: i64,
        next: Millis,
        error: &str,
        dead: bool,
    ) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $1, last_error = $2, status = $3, claimed_by = NULL WHERE id = $4")
            .bind(next.0).bind(error).bind(if dead { "dead" } else { "pending" }).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Drops receipts older than `older_than`, then the oldest beyond `max`
    /// (seed 000: TTL days and a MAX count). Returns how many went.
    pub async fn prune_receipts(&self, older_than: Millis, max: i64) -> Result<u64> {
        let _gate = self.write_gate().await;
        // In id order, which is arrival order, up to the first receipt that
        // is young enough: that walk costs only the rows it deletes, where
        // a `received_ms` index would cost a write per receipt. (A clock
        // stepped back may keep an older receipt until the ones before it
        // expire.)
        let by_age = on_pool!(self, p => sqlx::query(
            "DELETE FROM receipts WHERE id < COALESCE((SELECT id FROM receipts WHERE received_ms >= $1 ORDER BY id LIMIT 1), 9223372036854775807)")
            .bind(older_than.0).execute(p).await?.rows_affected());
        let by_count = on_pool!(self, p => sqlx::query(
            "DELETE FROM receipts WHERE id <= (SELECT id FROM receipts ORDER BY id DESC LIMIT 1 OFFSET $1)")
            .bind(max).execute(p).await?.rows_affected());
        Ok(by_age + by_count)
    }

    /// Records that `platform` delivered event `event_id`; false when it
    /// had been seen before (a platform's retry), so it is not acted on
    /// twice, also across a restart.
    pub async fn first_sight(&self, platform: &str, event_id: &str, now: Millis) -> Result<bool> {
        let _gate = self.write_gate().await;
        let inserted = on_pool!(self, p => sqlx::query(
            "INSERT INTO chat_events_seen (platform, event_id, seen_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(platform).bind(event_id).bind(now.0).execute(p).await?.rows_affected());
        Ok(inserted == 1)
    }

    /// Forgets one event, so the platform's retry of it is acted on (its
    /// handling failed).
    pub async fn forget_event(&self, platform: &str, event_id: &str) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query("DELETE FROM chat_events_seen WHERE platform = $1 AND event_id = $2")
            .bind(platform).bind(event_id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Forgets events seen before `older_than`.
    pub async fn prune_events_seen(&self, older_than: Millis) -> Result<u64> {
        let _gate = self.write_gate().await;
        Ok(
            on_pool!(self, p => sqlx::query("DELETE FROM chat_events_seen WHERE seen_ms < $1")
            .bind(older_than.0).execute(p).await?.rows_affected()),
        )
    }

    pub async fn receipt_count(&self) -> Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM receipts").fetch_one(p).await?),
        )
    }

    pub async fn gauges(&self) -> Result<StoreGauges> {
        let open_by_severity: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(
            "SELECT severity, COUNT(*) FROM incidents WHERE state <> 'resolved' GROUP BY severity ORDER BY severity")
            .fetch_all(p).await?);
        let (pending, dead): (i64, i64) = on_pool!(self, p => sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) FROM outbox")
            .fetch_one(p).await?);
        let dead_deliveries = self.dead_delivery_count().await?;
        Ok(StoreGauges {
            open_by_severity,
            outbox_pending: pending,
            outbox_dead: dead,
            dead_deliveries,
        })
    }
}

impl StoreTx<'_> {
    pub async fn commit(self) -> Result<()> {
        match self {
            StoreTx::Sqlite(t, _gate) => t.commit().await?,
            StoreTx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Records delivery key `key` of `source`: [`ReceiptOutcome::New`] the
    /// first time, [`ReceiptOutcome::Duplicate`] (and a bumped counter) after.
    pub async fn record_receipt(
        &mut self,
        source: &str,
        key: &str,
        request_hash: Option<&str>,
        now: Millis,
    ) -> Result<ReceiptOutcome> {
        let (s, k, duplicates): (String, String, i64) = on_tx!(self, c => sqlx::query_as(
            "INSERT INTO receipts (key_hash, source, key, outcome, request_hash, received_ms) VALUES ($1, $2, $3, 'accepted', $4, $5)
             ON CONFLICT (key_hash) DO UPDATE SET duplicates = receipts.duplicates + 1 RETURNING source, key, duplicates")
            .bind(receipt_hash(source, key).as_slice()).bind(source).bind(key).bind(request_hash).bind(now.0)
            .fetch_one(&mut *c).await?);
        Ok(
            if hash_collision(source, key, (&s, &k)) || duplicates == 0 {
                ReceiptOutcome::New
            } else {
                ReceiptOutcome::Duplicate
            },
        )
    }

    /// Stores the answer given for an idempotency key, to replay it.
    pub async fn set_receipt_response(
        &mut self,
        source: &str,
        key: &str,
        outcome: &str,
        response: &str,
    ) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE receipts SET outcome = $1, response = $2 WHERE key_hash = $3 AND source = $4 AND key = $5")
            .bind(outcome).bind(response).bind(receipt_hash(source, key).as_slice()).bind(source).bind(key)
            .execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }

    /// The alert with this identity: an exact `starts_ms` match, or, when the
    /// sender gave no start, the latest one with the fingerprint.
    pub async fn find_alert(
        &mut self,
        source: &str,
        fingerprint: &str,
        starts_ms: Option<i64>,
    ) -> Result<Option<(i64, Option<i64>, String)>> {
        Ok(match starts_ms {
            Some(s) => on_tx!(self, c => sqlx::query_as(
                "SELECT id, incident_id, status FROM alerts WHERE source = $1 AND fingerprint = $2 AND starts_ms = $3 ORDER BY id DESC LIMIT 1")
                .bind(source).bind(fingerprint).bind(s).fetch_optional(&mut *c).await?),
            None => on_tx!(self, c => sqlx::query_as(
                "SELECT id, incident_id, status FROM alerts WHERE source = $1 AND fingerprint = $2 ORDER BY id DESC LIMIT 1")
                .bind(source).bind(fingerprint).fetch_optional(&mut *c).await?),
        })
    }

    pub async fn set_alert_status(
        &mut self,
        id: i64,
        status: &str,
        ends_ms: Option<i64>,
        now: Millis,
    ) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE alerts SET status = $1, ends_ms = $2, updated_ms = $3 WHERE id = $4")
            .bind(status).bind(ends_ms).bind(now.0).bind(id).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }

    pub async fn firing_alerts(&mut self, incident_id: i64) -> Result<i64> {
        Ok(on_tx!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM alerts WHERE incident_id = $1 AND status = 'firing'")
            .bind(incident_id).fetch_one(&mut *c).await?))
    }

    /// The newest incident of this group that is not resolved.
    pub async fn open_incident_for_group(&mut self, group_key: &str) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE group_key = $1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1")))
            .bind(group_key).fetch_optional(&mut *c).await?);
        row.map(Incident::try_from).transpose()
    }

    pub async fn incident(&mut self, id: i64) -> Result<Option<Incident>> {
        let row: Option<IncidentRow> = on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1")))
            .bind(id).fetch_optional(&mut *c).await?);
        row.map(Incident::try_from).transpose()
    }

    pub async fn insert_incident(&mut self, n: &NewIncident<'_>) -> Result<Incident> {
        let row: IncidentRow = on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO incidents (group_key, title, severity, state, labels, impact_start_ms, detected_ms, updated_ms, runbook_id)
             VALUES ($1, $2, $3, 'triggered', $4, $5, $6, $6, $7) RETURNING {INCIDENT_COLUMNS}")))
            .bind(n.group_key).bind(n.title).bind(n.severity).bind(&n.labels)
            .bind(n.impact_start.map(|m| m.0)).bind(n.detected.0).bind(n.runbook_id).fetch_one(&mut *c).await?);
        Incident::try_from(row)
    }

    /// Writes the incident's mutable fields back.
    pub async fn update_incident(&mut self, i: &Incident) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "UPDATE incidents SET title = $1, severity = $2, state = $3, impact_start_ms = $4, acknowledged_ms = $5,
             mitigated_ms = $6, resolved_ms = $7, updated_ms = $8, truncated_alerts = $9, runbook_id = $11 WHERE id = $10")
            .bind(&i.title).bind(i.severity.as_str()).bind(i.state.as_str())
            .bind(i.impact_start.map(|m| m.0)).bind(i.acknowledged.map(|m| m.0))
            .bind(i.mitigated.map(|m| m.0)).bind(i.resolved.map(|m| m.0)).bind(i.updated.0)
            .bind(i.truncated_alerts).bind(i.id).bind(i.runbook_id.as_deref()).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }

    /// Writes an intent for the dispatcher (a chat post now; pages and
    /// actions later), due at once.
    pub async fn enqueue(
        &mut self,
        incident_id: Option<i64>,
        kind: &str,
        payload: &serde_json::Value,
        now: Millis,
    ) -> Result<i64> {
        self.enqueue_at(incident_id, kind, payload, now, now).await
    }

    /// Writes an intent due at `due` (a recovery sample a minute from now).
    pub async fn enqueue_at(
        &mut self,
        incident_id: Option<i64>,
        kind: &str,
        payload: &serde_json::Value,
        now: Millis,
        due: Millis,
    ) -> Result<i64> {
        Ok(on_tx!(self, c => sqlx::query_scalar(
            "INSERT INTO outbox (incident_id, kind, payload, next_attempt_ms, created_ms) VALUES ($1, $2, $3, $5, $4) RETURNING id")
            .bind(incident_id).bind(kind).bind(payload.to_string()).bind(now.0).bind(due.0).fetch_one(&mut *c).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::{padded, padded_params, params, rows, shaped};

    #[test]
    fn placeholders_are_numbered_on_postgres_and_positional_on_sqlite() {
        assert_eq!(params(true, 2, 3), "$2, $3, $4");
        assert_eq!(params(false, 2, 3), "?, ?, ?");
        assert_eq!(rows(true, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(rows(false, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(params(true, 1, 0), "");
    }

    #[test]
    fn multi_row_statements_come_in_runs_that_cover_every_row() {
        let items: Vec<u32> = (0..100).collect();
        let runs: Vec<&[u32]> = shaped(&items, 64, true).collect();
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [64, 32, 4]
        );
        assert_eq!(runs.concat(), items);
        let lens: Vec<usize> = shaped(&items[..7], 4, true).map(<[u32]>::len).collect();
        assert_eq!(lens, [4, 2, 1]);
        assert_eq!(shaped(&items[..0], 64, true).count(), 0);
        let plain: Vec<usize> = shaped(&items[..21], 8, false).map(<[u32]>::len).collect();
        assert_eq!(plain, [8, 8, 5]);
    }

    #[test]
    fn in_lists_are_padded_to_a_power_of_two_with_their_last_value() {
        assert_eq!(padded(&[1, 2, 3]).collect::<Vec<_>>(), [1, 2, 3, 3]);
        assert_eq!(padded_params(false, 1, 3), "?, ?, ?, ?");
        assert_eq!(padded_params(true, 2, 2), "$2, $3");
        assert_eq!(padded(&[1, 2]).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(padded(&[7]).collect::<Vec<_>>(), [7]);
        assert_eq!(padded::<u8>(&[]).count(), 0);
    }
}
