//! The intake journal: every accepted delivery, appended and made durable
//! before its sender is answered, and read back by the incident writer,
//! which applies it to incidents at its own pace.
//!
//! Why a journal: applying an alert (receipt, alert row, timeline event,
//! each with its indexes) writes ~20 KB of random B-tree pages; appending
//! it to the journal writes its ~1 KB, sequentially. The sender waits only
//! for the append. On SQLite the journal is a folder of segment files
//! beside the database (`<database>-intake.d/`, [`FileJournal`]), written
//! and synced without SQL; on PostgreSQL it is a table (`intake_journal`),
//! and row locks keep its appends apart from the writer's transactions.
//!
//! Sequence numbers are assigned by the one journal writer (the caller),
//! never by the database, so a journal emptied by pruning cannot hand out
//! a number twice. The writer's progress (`intake_applied`) lives in the
//! main database and moves in the same transaction as what it applied.

use std::str::FromStr;

use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use std::collections::BTreeMap;

use super::{ConnectOptions, FileJournal, Result, Store, StoreError, StoreTx};

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

/// The journal's storage: segment files beside a SQLite database, or a
/// PostgreSQL table.
#[derive(Debug, Clone)]
pub enum JournalStore {
    File(FileJournal),
    Postgres(PgPool),
}

/// `firstline.db` + `suffix`, beside SQLite's own `-wal` and `-shm`.
pub(super) fn beside_sqlite(url: &str, suffix: &str) -> Result<std::path::PathBuf> {
    let opts = SqliteConnectOptions::from_str(url)?;
    let main = opts.get_filename();
    if main.as_os_str().is_empty() || main.to_string_lossy().contains(":memory:") {
        return Err(StoreError::Corrupt(format!(
            "{url}: an in-memory SQLite database cannot keep alerts durable; give a file path"
        )));
    }
    let mut name = main.as_os_str().to_owned();
    name.push(suffix);
    Ok(name.into())
}

/// The journal folder of a SQLite database URL: `firstline.db` ->
/// `firstline.db-intake.d`.
pub fn sqlite_journal_dir(url: &str) -> Result<std::path::PathBuf> {
    beside_sqlite(url, "-intake.d")
}

impl Store {
    /// Opens the intake journal that belongs to this store.
    pub async fn open_journal(&self, opts: &ConnectOptions) -> Result<JournalStore> {
        match self {
            Store::Sqlite(_) => {
                let journal =
                    FileJournal::open(sqlite_journal_dir(&opts.url)?, opts.sqlite_full_sync)
                        .await?;
                self.import_sqlite_journal(&opts.url, &journal).await?;
                Ok(JournalStore::File(journal))
            }
            Store::Postgres(p) => Ok(JournalStore::Postgres(p.clone())),
        }
    }

    /// Moves what an earlier version journaled in a SQLite file
    /// (`<database>-intake`) and did not apply into `journal`, then
    /// removes that file. A crash in between repeats the copy from where
    /// `journal` ends.
    async fn import_sqlite_journal(&self, url: &str, journal: &FileJournal) -> Result<()> {
        let legacy = beside_sqlite(url, "-intake")?;
        if !legacy.is_file() {
            return Ok(());
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new().filename(&legacy))
            .await?;
        let mut from = self.applied_seq().await?.max(journal.last_seq());
        let mut moved = 0;
        loop {
            let records: Vec<JournalRecord> = sqlx::query_as(
                "SELECT seq, received_ms, source, payload FROM intake_journal WHERE seq > $1 ORDER BY seq LIMIT 1000",
            )
            .bind(from)
            .fetch_all(&pool)
            .await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                break;
            };
            moved += records.len();
            journal.append(records).await?;
            from = last;
        }
        pool.close().await;
        for suffix in ["", "-wal", "-shm"] {
            let mut path = legacy.clone().into_os_string();
            path.push(suffix);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StoreError::Journal {
                    path: path.into(),
                    error: e,
                });
            }
        }
        tracing::info!(
            deliveries = moved,
            from = %legacy.display(),
            to = %journal.dir().display(),
            "intake journal: moved the unapplied deliveries of the old journal file"
        );
        Ok(())
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

    /// Calls `each(source, fingerprint)` for every distinct pair stored as
    /// an alert, `page` at a time, reading only the `alerts_identity`
    /// index in its order (not the table). On SQLite this runs on a
    /// connection of its own with a small page cache, closed at the end,
    /// so that reading a million alerts does not leave the pool's caches
    /// full of index pages. The count of pairs read.
    pub async fn for_each_alert_identity(
        &self,
        page: i64,
        mut each: impl FnMut(&str, &str),
    ) -> Result<u64> {
        const FIRST: &str =
            "SELECT DISTINCT source, fingerprint FROM alerts ORDER BY source, fingerprint LIMIT $1";
        const NEXT: &str = "SELECT DISTINCT source, fingerprint FROM alerts WHERE (source, fingerprint) > ($2, $3) ORDER BY source, fingerprint LIMIT $1";
        let mut count = 0u64;
        let mut last: Option<(String, String)> = None;
        // One loop for both backends; `$conn` is what the queries run on.
        macro_rules! pages {
            ($conn:expr) => {
                loop {
                    let rows: Vec<(String, String)> = match &last {
                        None => sqlx::query_as(FIRST).bind(page).fetch_all($conn).await?,
                        Some((src, fp)) => {
                            sqlx::query_as(NEXT)
                                .bind(page)
                                .bind(src)
                                .bind(fp)
                                .fetch_all($conn)
                                .await?
                        }
                    };
                    count += rows.len() as u64;
                    rows.iter().for_each(|(src, fp)| each(src, fp));
                    if (rows.len() as i64) < page {
                        break;
                    }
                    last = rows.into_iter().last();
                }
            };
        }
        match self {
            Store::Sqlite(s) => {
                let opts = (*s.pool.connect_options())
                    .clone()
                    .pragma("cache_size", "-1024");
                let mut conn = sqlx::ConnectOptions::connect(&opts).await?;
                pages!(&mut conn);
                let _ = sqlx::Connection::close(conn).await;
            }
            Store::Postgres(p) => pages!(p),
        }
        Ok(count)
    }

    /// Receipts stored under any of `keys` ((source, key) pairs), with
    /// the answer kept for idempotency keys.
    pub async fn receipts_for(&self, keys: &[(String, String)]) -> Result<Vec<super::Receipt>> {
        let mut hashes: Vec<[u8; 16]> = keys
            .iter()
            .map(|(s, k)| super::receipt_hash(s, k))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut out: Vec<super::Receipt> = Vec::new();
        for chunk in hashes.chunks(self.chunk()) {
            let sql = format!(
                "SELECT source, key, outcome, request_hash, response, duplicates, received_ms FROM receipts WHERE key_hash IN ({})",
                super::padded_params(self.numbered(), 1, chunk.len())
            );
            let rows: Vec<super::Receipt> = on_pool!(self, p => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for h in super::padded(chunk) {
                    q = q.bind(h.to_vec());
                }
                q.fetch_all(p).await?
            });
            out.extend(rows);
        }
        // A hash collision returns another key's receipt: not ours.
        let asked: std::collections::HashSet<(&str, &str)> =
            keys.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
        out.retain(|r| asked.contains(&(r.source.as_str(), r.key.as_str())));
        Ok(out)
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
                    super::padded_params(self.numbered(), 2, chunk.len())
                );
                let rows: Vec<R> = on_pool!(self, p => {
                    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(source);
                    for v in super::padded(chunk) {
                        q = q.bind(v);
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

impl Store {
    /// Sets a journaled delivery that cannot be applied aside (see
    /// `dead_deliveries`), and records the journal as applied up to
    /// `upto`, in one transaction. NUL characters, which PostgreSQL's text
    /// cannot hold, are kept escaped as `\u0000`.
    pub async fn set_aside(&self, dead: &DeadDelivery, upto: i64) -> Result<()> {
        let clean = |s: &str| s.replace('\0', "\\u0000");
        let mut tx = self.begin().await?;
        on_tx!(&mut tx, c => sqlx::query(
            "INSERT INTO dead_deliveries (seq, received_ms, source, payload, error, set_aside_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING")
            .bind(dead.seq).bind(dead.received_ms).bind(dead.source.as_str())
            .bind(clean(&dead.payload)).bind(clean(&dead.error)).bind(dead.set_aside_ms)
            .execute(&mut *c).await.map(|_| ())?);
        tx.set_applied(upto).await?;
        tx.commit().await
    }

    /// How many deliveries are set aside.
    pub async fn dead_delivery_count(&self) -> Result<i64> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM dead_deliveries")
            .fetch_one(p).await?),
        )
    }

    /// The deliveries set aside, newest first (at most `limit`).
    pub async fn dead_deliveries(&self, limit: i64) -> Result<Vec<DeadDelivery>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT seq, received_ms, source, payload, error, set_aside_ms FROM dead_deliveries ORDER BY seq DESC LIMIT $1")
            .bind(limit).fetch_all(p).await?))
    }
}

/// A journaled delivery set aside because it could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct DeadDelivery {
    pub seq: i64,
    pub received_ms: i64,
    pub source: String,
    /// The delivery as JSON.
    pub payload: String,
    /// The store's error, as the last attempt got it.
    pub error: String,
    pub set_aside_ms: i64,
}

impl StoreTx<'_> {
    /// Records that the journal has been applied up to `seq`.
    pub async fn set_applied(&mut self, seq: i64) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE intake_applied SET seq = $1 WHERE id = 1")
            .bind(seq).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }
}

/// The PostgreSQL INSERT of `chunk` (its strings encoded straight from
/// the records, not cloned first).
fn insert_records(
    chunk: &[JournalRecord],
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let sql = format!(
        "INSERT INTO intake_journal (seq, received_ms, source, payload) VALUES {}",
        super::rows(true, chunk.len(), 4)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in chunk {
        q = q
            .bind(r.seq)
            .bind(r.received_ms)
            .bind(r.source.as_str())
            .bind(r.payload.as_str());
    }
    q
}

impl JournalStore {
    /// The highest sequence number in the journal (0 when empty).
    pub async fn last_seq(&self) -> Result<i64> {
        match self {
            JournalStore::File(f) => Ok(f.last_seq()),
            JournalStore::Postgres(p) => Ok(sqlx::query_scalar::<_, Option<i64>>(
                "SELECT MAX(seq) FROM intake_journal",
            )
            .fetch_one(p)
            .await?
            .unwrap_or(0)),
        }
    }

    /// Appends the records durably: when this returns, they survive a
    /// crash (and a power loss).
    pub async fn append(&self, records: Vec<JournalRecord>) -> Result<()> {
        let p = match self {
            JournalStore::File(f) => return f.append(records).await,
            JournalStore::Postgres(p) => p,
        };
        if records.len() <= POSTGRES_CHUNK {
            // One statement is atomic on its own: no BEGIN and COMMIT
            // round trips.
            insert_records(&records).execute(p).await?;
        } else {
            let mut tx = p.begin().await?;
            for chunk in records.chunks(POSTGRES_CHUNK) {
                insert_records(chunk).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Up to `limit` records after `seq`, in order.
    pub async fn read_after(&self, seq: i64, limit: i64) -> Result<Vec<JournalRecord>> {
        match self {
            JournalStore::File(f) => f.read_after(seq, limit).await,
            JournalStore::Postgres(p) => Ok(sqlx::query_as(
                "SELECT seq, received_ms, source, payload FROM intake_journal WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(seq)
            .bind(limit)
            .fetch_all(p)
            .await?),
        }
    }

    /// Drops the records up to `seq` (already applied).
    pub async fn prune_through(&self, seq: i64) -> Result<u64> {
        match self {
            JournalStore::File(f) => f.prune_through(seq).await,
            JournalStore::Postgres(p) => {
                Ok(sqlx::query("DELETE FROM intake_journal WHERE seq <= $1")
                    .bind(seq)
                    .execute(p)
                    .await?
                    .rows_affected())
            }
        }
    }

    /// Records the reader found missing (SQLite's segment files; the
    /// PostgreSQL table has no gaps to find).
    pub fn lost(&self) -> super::Lost {
        match self {
            JournalStore::File(f) => f.lost(),
            JournalStore::Postgres(_) => super::Lost::default(),
        }
    }

    /// On SQLite, refuses later appends (tests: a journal that cannot be
    /// written); PostgreSQL's journal goes with the store's pool.
    pub async fn close(&self) {
        if let JournalStore::File(f) = self {
            f.close();
        }
    }
}
