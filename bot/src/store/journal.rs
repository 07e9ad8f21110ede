//! The intake journal: every accepted delivery, appended and made durable
//! before its sender is answered, and read back by the incident writer,
//! which applies it to incidents at its own pace.
//!
//! Why a journal: applying an alert (receipt, alert row, timeline event,
//! each with its indexes) writes ~20 KB of random B-tree pages; appending
//! it to the journal writes its ~1 KB, sequentially. The sender waits only
//! for the append. On SQLite the journal is a file of its own
//! (`<database>-intake`), with its own write lock, so appends never queue
//! behind the writer's larger transactions; on PostgreSQL it is a table
//! (`intake_journal`), and row locks give the same independence.
//!
//! Sequence numbers are assigned by the one journal writer (the caller),
//! never by the database, so a journal emptied by pruning cannot hand out
//! a number twice. The writer's progress (`intake_applied`) lives in the
//! main database and moves in the same transaction as what it applied.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use std::collections::BTreeMap;

use super::{ConnectOptions, Result, Store, StoreError, StoreTx};

/// One journaled delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JournalRecord {
    pub seq: i64,
    pub received_ms: i64,
    pub source: String,
    /// The delivery as the intake side serialised it (JSON).
    pub payload: String,
}

/// Rows (or keys) per statement on PostgreSQL: the Nagle reasoning of
/// `batch::POSTGRES_CHUNK`. SQLite takes more per statement, each
/// statement being a hand-off to sqlx's worker thread.
const POSTGRES_CHUNK: usize = 8;
const SQLITE_CHUNK: usize = 64;
/// Records per append statement on SQLite: its 32,766 parameters, 4 a
/// record.
const SQLITE_APPEND_ROWS: usize = 8_000;

/// The journal's storage: a SQLite file of its own, or a PostgreSQL table.
#[derive(Debug, Clone)]
pub enum JournalStore {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the journal's pool.
macro_rules! on_journal {
    ($j:expr, $p:ident => $body:expr) => {
        match $j {
            JournalStore::Sqlite($p) => $body,
            JournalStore::Postgres($p) => $body,
        }
    };
}

/// The SQLite journal file of a database URL: `firstline.db` ->
/// `firstline.db-intake`, beside SQLite's own `-wal` and `-shm`.
pub fn sqlite_journal_path(url: &str) -> Result<std::path::PathBuf> {
    let opts = SqliteConnectOptions::from_str(url)?;
    let main = opts.get_filename();
    if main.as_os_str().is_empty() || main.to_string_lossy().contains(":memory:") {
        return Err(StoreError::Corrupt(format!(
            "{url}: an in-memory SQLite database cannot keep alerts durable; give a file path"
        )));
    }
    let mut name = main.as_os_str().to_owned();
    name.push("-intake");
    Ok(name.into())
}

impl Store {
    /// Opens the intake journal that belongs to this store.
    pub async fn open_journal(&self, opts: &ConnectOptions) -> Result<JournalStore> {
        match self {
            Store::Sqlite(_) => {
                let path = sqlite_journal_path(&opts.url)?;
                let connect = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(if opts.sqlite_full_sync {
                        sqlx::sqlite::SqliteSynchronous::Full
                    } else {
                        sqlx::sqlite::SqliteSynchronous::Normal
                    })
                    .busy_timeout(Duration::from_secs(5));
                // One connection appends (the journal writer, which also
                // prunes); the others serve the incident writer's reads.
                let pool = SqlitePoolOptions::new()
                    .max_connections(3)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(connect)
                    .await?;
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS intake_journal (
                        seq          INTEGER PRIMARY KEY,
                        received_ms  INTEGER NOT NULL,
                        source       TEXT    NOT NULL,
                        payload      TEXT    NOT NULL
                    )",
                )
                .execute(&pool)
                .await?;
                Ok(JournalStore::Sqlite(pool))
            }
            Store::Postgres(p) => Ok(JournalStore::Postgres(p.clone())),
        }
    }

    /// The last journal sequence number applied to incidents.
    pub async fn applied_seq(&self) -> Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar("SELECT seq FROM intake_applied WHERE id = 1")
            .fetch_optional(p).await?)
            .unwrap_or(0),
        )
    }

    /// The highest alert id (0 with none): an upper bound of the number
    /// of stored alerts that costs no scan.
    pub async fn max_alert_id(&self) -> Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM alerts")
            .fetch_one(p).await?)
            .unwrap_or(0),
        )
    }

    /// (id, source, fingerprint) of up to `limit` stored alerts after
    /// `after_id`, in id order: the whole table, a page at a time.
    pub async fn alert_keys_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, source, fingerprint FROM alerts WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id).bind(limit).fetch_all(p).await?))
    }

    /// Receipts stored under any of `keys` ((source, key) pairs), with
    /// the answer kept for idempotency keys.
    pub async fn receipts_for(&self, keys: &[(String, String)]) -> Result<Vec<super::Receipt>> {
        self.select_by_source(
            "SELECT source, key, outcome, request_hash, response, duplicates, received_ms FROM receipts",
            "key",
            keys,
        )
        .await
    }

    /// (source, fingerprint, starts_ms, status) of the stored alerts with
    /// any of these (source, fingerprint) pairs, oldest first.
    pub async fn alert_states(
        &self,
        fingerprints: &[(String, String)],
    ) -> Result<Vec<(String, String, i64, String)>> {
        let mut rows: Vec<(i64, String, String, i64, String)> = self
            .select_by_source(
                "SELECT id, source, fingerprint, starts_ms, status FROM alerts",
                "fingerprint",
                fingerprints,
            )
            .await?;
        rows.sort_unstable_by_key(|r| r.0);
        Ok(rows
            .into_iter()
            .map(|(_, s, f, st, status)| (s, f, st, status))
            .collect())
    }

    /// `select … WHERE source = ? AND column IN (…)` for every (source,
    /// value) pair, a statement per source and chunk of values.
    async fn select_by_source<R>(
        &self,
        select: &str,
        column: &str,
        pairs: &[(String, String)],
    ) -> Result<Vec<R>>
    where
        R: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let mut out = Vec::new();
        for (source, values) in by_source(pairs) {
            for chunk in values.chunks(self.chunk()) {
                let sql = format!(
                    "{select} WHERE source = {} AND {column} IN ({})",
                    super::params(self.numbered(), 1, 1),
                    super::params(self.numbered(), 2, chunk.len())
                );
                let rows: Vec<R> = on_pool!(self, p => {
                    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(source);
                    for v in chunk {
                        q = q.bind(*v);
                    }
                    q.fetch_all(p).await?
                });
                out.extend(rows);
            }
        }
        Ok(out)
    }

    fn chunk(&self) -> usize {
        match self {
            Store::Sqlite(_) => SQLITE_CHUNK,
            Store::Postgres(_) => POSTGRES_CHUNK,
        }
    }

    /// Placeholders are `$N` (PostgreSQL) rather than `?` (SQLite).
    fn numbered(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}

/// The second halves of `pairs`, distinct, per first half.
fn by_source(pairs: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (s, k) in pairs {
        if seen.insert((s, k)) {
            out.entry(s.as_str()).or_default().push(k.as_str());
        }
    }
    out
}

impl StoreTx<'_> {
    /// Records that the journal has been applied up to `seq`.
    pub async fn set_applied(&mut self, seq: i64) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE intake_applied SET seq = $1 WHERE id = 1")
            .bind(seq).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }
}

impl JournalStore {
    /// The highest sequence number in the journal (0 when empty).
    pub async fn last_seq(&self) -> Result<i64> {
        Ok(on_journal!(self, p => sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM intake_journal")
            .fetch_one(p).await?)
        .unwrap_or(0))
    }

    /// Appends the records in one transaction: when this returns, they
    /// survive a crash (and, with `synchronous=full`, a power loss).
    pub async fn append(&self, records: &[JournalRecord]) -> Result<()> {
        let (numbered, size) = match self {
            JournalStore::Sqlite(_) => (false, SQLITE_APPEND_ROWS),
            JournalStore::Postgres(_) => (true, POSTGRES_CHUNK),
        };
        let insert = |chunk: &[JournalRecord]| {
            format!(
                "INSERT INTO intake_journal (seq, received_ms, source, payload) VALUES {}",
                super::rows(numbered, chunk.len(), 4)
            )
        };
        macro_rules! bind_all {
            ($sql:expr, $chunk:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe($sql));
                for r in $chunk {
                    q = q
                        .bind(r.seq)
                        .bind(r.received_ms)
                        .bind(r.source.as_str())
                        .bind(r.payload.as_str());
                }
                q
            }};
        }
        on_journal!(self, p => {
            if records.len() <= size {
                // One statement is atomic on its own: no BEGIN and COMMIT
                // round trips (on SQLite, each a hand-off to sqlx's worker
                // thread, ~0.2 ms under load).
                bind_all!(insert(records), records).execute(p).await?;
            } else {
                let mut tx = p.begin().await?;
                for chunk in records.chunks(size) {
                    bind_all!(insert(chunk), chunk).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        });
        Ok(())
    }

    /// Up to `limit` records after `seq`, in order.
    pub async fn read_after(&self, seq: i64, limit: i64) -> Result<Vec<JournalRecord>> {
        Ok(on_journal!(self, p => sqlx::query_as(
            "SELECT seq, received_ms, source, payload FROM intake_journal WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq).bind(limit).fetch_all(p).await?))
    }

    /// Drops the records up to `seq` (already applied).
    pub async fn prune_through(&self, seq: i64) -> Result<u64> {
        Ok(
            on_journal!(self, p => sqlx::query("DELETE FROM intake_journal WHERE seq <= $1")
            .bind(seq).execute(p).await?.rows_affected()),
        )
    }

    pub async fn close(&self) {
        if let JournalStore::Sqlite(p) = self {
            p.close().await;
        }
    }
}
