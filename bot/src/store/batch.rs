//! Group commit, the cheap way round: one writer transaction serves many
//! jobs, and this wrapper makes the per-alert work cost statements per
//! *batch* rather than per alert. Before the jobs run it fetches, in a few
//! multi-row statements, what they will ask for (their receipts, the alerts
//! with their fingerprints, the open incidents of their groups); while they
//! run it answers from memory and buffers alert and timeline inserts; before
//! the commit it writes the buffers as multi-row inserts.
//!
//! It offers the same operations as [`StoreTx`] so the ledger's rules read
//! the same whether a value came from memory or from the database.
//! Invariant: every write still happens inside the one transaction, so a
//! failed batch leaves nothing behind (the caches die with it).

// foldhash rather than SipHash: these maps are rebuilt for every batch,
// and hashing their keys was a few percent of the writer's CPU.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{INCIDENT_COLUMNS, NewAlert, NewEvent, NewIncident, ReceiptOutcome, Result, StoreTx};
use crate::domain::State;
use crate::domain::incident::Incident;
use crate::domain::time::Millis;

/// Rows per multi-row statement on SQLite. Small enough that binding stays
/// cheap: sqlx looks each numbered parameter up by name, which SQLite
/// answers by a linear scan, so thousands of `$N` cost quadratic time.
const SQLITE_CHUNK: usize = 64;

/// Rows per multi-row statement on PostgreSQL. sqlx does not set
/// TCP_NODELAY, and a statement whose messages leave in several writes
/// waits for the server's delayed ACK (~40 ms) under Nagle's algorithm:
/// small statements keep each round trip in one write.
const POSTGRES_CHUNK: usize = 8;

/// What the jobs of a batch will look up, gathered before they run.
#[derive(Debug, Default)]
pub struct Prefetch {
    /// (source, delivery key) of every alert.
    pub receipts: Vec<(String, String)>,
    /// (source, fingerprint) of every alert.
    pub fingerprints: Vec<(String, String)>,
    /// Group keys of every alert.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
struct AlertEntry {
    /// Row id, or −(index + 1) into the pending inserts.
    id: i64,
    incident_id: Option<i64>,
    status: String,
    starts_ms: i64,
}

#[derive(Debug, Clone)]
struct PendingAlert {
    incident_id: Option<i64>,
    source: String,
    fingerprint: String,
    status: String,
    name: String,
    starts_ms: i64,
    ends_ms: Option<i64>,
    labels: String,
    annotations: String,
    generator_url: Option<String>,
    now: i64,
}

#[derive(Debug, Clone)]
struct PendingEvent {
    incident_id: i64,
    at: i64,
    actor: String,
    kind: String,
    text: String,
    data: String,
}

/// A writer transaction with the batch's lookups in memory.
pub struct Batch<'c> {
    tx: StoreTx<'c>,
    /// Prefetched receipt outcomes; `None` once the first job used it.
    receipts: HashMap<(String, String), Option<ReceiptOutcome>>,
    /// Receipts seen again within the batch: their counter bump.
    bumps: HashMap<(String, String), i64>,
    fetched_fingerprints: HashSet<(String, String)>,
    alerts: HashMap<(String, String), Vec<AlertEntry>>,
    /// Group -> its open incident (None: known to have none).
    open: HashMap<String, Option<Incident>>,
    pending_alerts: Vec<PendingAlert>,
    pending_events: Vec<PendingEvent>,
}

impl<'c> Batch<'c> {
    pub fn new(tx: StoreTx<'c>) -> Batch<'c> {
        Batch {
            tx,
            receipts: HashMap::new(),
            bumps: HashMap::new(),
            fetched_fingerprints: HashSet::new(),
            alerts: HashMap::new(),
            open: HashMap::new(),
            pending_alerts: Vec::new(),
            pending_events: Vec::new(),
        }
    }

    fn chunk(&self) -> usize {
        match self.tx {
            StoreTx::Sqlite(..) => SQLITE_CHUNK,
            StoreTx::Postgres(_) => POSTGRES_CHUNK,
        }
    }

    /// Placeholders are `$N` (PostgreSQL) rather than `?` (SQLite).
    fn numbered(&self) -> bool {
        matches!(self.tx, StoreTx::Postgres(_))
    }

    fn rows(&self, rows: usize, cols: usize) -> String {
        super::rows(self.numbered(), rows, cols)
    }

    /// Fetches everything in `p` in a few multi-row statements. Receipts
    /// are recorded here (new ones inserted, known ones counted as a
    /// duplicate at commit), so each key's outcome is known.
    pub async fn prefetch(&mut self, p: &Prefetch, now: Millis) -> Result<()> {
        // Receipts: per chunk of distinct keys, a lookup, then one insert.
        let mut seen = HashSet::new();
        let keys: Vec<&(String, String)> = p
            .receipts
            .iter()
            .filter(|k| seen.insert((*k).clone()))
            .collect();
        for chunk in keys.chunks(self.chunk()) {
            let mut hashes: HashMap<[u8; 16], &(String, String)> = HashMap::new();
            for k in chunk {
                hashes.insert(super::receipt_hash(&k.0, &k.1), *k);
            }
            // Which are on record already: in a storm, none, and a query
            // that returns no rows is cheap. An upsert with RETURNING cost
            // a sixth of the writer's CPU, returning a row for every alert.
            let asked: Vec<[u8; 16]> = hashes.keys().copied().collect();
            let sql = format!(
                "SELECT key_hash, source, key FROM receipts WHERE key_hash IN ({})",
                super::padded_params(self.numbered(), 1, asked.len())
            );
            let known: Vec<(Vec<u8>, String, String)> = on_tx!(&mut self.tx, c => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql));
                for hash in super::padded(&asked) {
                    q = q.bind(hash.to_vec());
                }
                q.fetch_all(&mut *c).await?
            });
            for (hash, s, k) in known {
                let Some(asked) = <[u8; 16]>::try_from(hash.as_slice())
                    .ok()
                    .and_then(|h| hashes.remove(&h))
                else {
                    continue;
                };
                // A collision is recorded nowhere: its hash is taken.
                let outcome = if super::hash_collision(&asked.0, &asked.1, (&s, &k)) {
                    ReceiptOutcome::New
                } else {
                    *self.bumps.entry(asked.clone()).or_default() += 1;
                    ReceiptOutcome::Duplicate
                };
                self.receipts.insert(asked.clone(), Some(outcome));
            }
            if hashes.is_empty() {
                continue;
            }
            let new: Vec<([u8; 16], &(String, String))> =
                hashes.iter().map(|(h, k)| (*h, *k)).collect();
            for run in super::shaped(&new, self.chunk(), !self.numbered()) {
                let mut sql = String::from(
                    "INSERT INTO receipts (key_hash, source, key, outcome, received_ms) VALUES ",
                );
                sql.push_str(&self.rows(run.len(), 5));
                on_tx!(&mut self.tx, c => {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (hash, (s, k)) in run {
                        q = q.bind(hash.as_slice()).bind(s.as_str()).bind(k.as_str()).bind("accepted").bind(now.0);
                    }
                    q.execute(&mut *c).await.map(|_| ())?
                });
            }
            for k in hashes.into_values() {
                self.receipts.insert(k.clone(), Some(ReceiptOutcome::New));
            }
        }

        // Alerts by fingerprint, per source.
        let mut by_source: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut seen = HashSet::new();
        for (s, f) in &p.fingerprints {
            if seen.insert((s, f)) {
                by_source.entry(s.as_str()).or_default().push(f.as_str());
            }
        }
        for (source, fps) in by_source {
            for chunk in fps.chunks(self.chunk()) {
                let sql = format!(
                    "SELECT id, incident_id, status, fingerprint, starts_ms FROM alerts WHERE source = {} AND fingerprint IN ({}) ORDER BY id",
                    super::params(self.numbered(), 1, 1),
                    super::padded_params(self.numbered(), 2, chunk.len())
                );
                let rows: Vec<(i64, Option<i64>, String, String, i64)> = on_tx!(&mut self.tx, c => {
                    let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(source);
                    for f in super::padded(chunk) {
                        q = q.bind(f);
                    }
                    q.fetch_all(&mut *c).await?
                });
                for f in chunk {
                    self.fetched_fingerprints
                        .insert((source.to_string(), f.to_string()));
                }
                for (id, incident_id, status, fp, starts_ms) in rows {
                    self.alerts
                        .entry((source.to_string(), fp))
                        .or_default()
                        .push(AlertEntry {
                            id,
                            incident_id,
                            status,
                            starts_ms,
                        });
                }
            }
        }

        // Open incidents of the groups.
        let mut seen = HashSet::new();
        let groups: Vec<&String> = p.groups.iter().filter(|g| seen.insert(*g)).collect();
        for chunk in groups.chunks(self.chunk()) {
            let sql = format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE state <> 'resolved' AND group_key IN ({}) ORDER BY id",
                super::padded_params(self.numbered(), 1, chunk.len())
            );
            let rows: Vec<super::rows::IncidentRow> = on_tx!(&mut self.tx, c => {
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
                for g in super::padded(chunk) {
                    q = q.bind(g.as_str());
                }
                q.fetch_all(&mut *c).await?
            });
            for g in chunk {
                self.open.insert((*g).clone(), None);
            }
            for row in rows {
                let inc = Incident::try_from(row)?;
                self.open.insert(inc.group_key.clone(), Some(inc));
            }
        }
        Ok(())
    }

    /// As [`StoreTx::record_receipt`], from the prefetched outcomes when
    /// the key was prefetched.
    pub async fn record_receipt(
        &mut self,
        source: &str,
        key: &str,
        request_hash: Option<&str>,
        now: Millis,
    ) -> Result<ReceiptOutcome> {
        let k = (source.to_string(), key.to_string());
        match self.receipts.get_mut(&k) {
            Some(slot) => match slot.take() {
                Some(first) => Ok(first),
                None => {
                    *self.bumps.entry(k).or_default() += 1;
                    Ok(ReceiptOutcome::Duplicate)
                }
            },
            None => {
                let outcome = self
                    .tx
                    .record_receipt(source, key, request_hash, now)
                    .await?;
                self.receipts.insert(k, None);
                Ok(outcome)
            }
        }
    }

    pub async fn set_receipt_response(
        &mut self,
        source: &str,
        key: &str,
        outcome: &str,
        response: &str,
    ) -> Result<()> {
        self.tx
            .set_receipt_response(source, key, outcome, response)
            .await
    }

    /// As [`StoreTx::find_alert`]; sees alerts inserted earlier in the batch.
    pub async fn find_alert(
        &mut self,
        source: &str,
        fingerprint: &str,
        starts_ms: Option<i64>,
    ) -> Result<Option<(i64, Option<i64>, String)>> {
        let k = (source.to_string(), fingerprint.to_string());
        if !self.fetched_fingerprints.contains(&k) {
            self.flush_alerts().await?;
            return self.tx.find_alert(source, fingerprint, starts_ms).await;
        }
        Ok(self.alerts.get(&k).and_then(|entries| {
            entries
                .iter()
                .rev()
                .find(|e| starts_ms.is_none_or(|s| e.starts_ms == s))
                .map(|e| (e.id, e.incident_id, e.status.clone()))
        }))
    }

    /// Buffers the insert; the row is written before the commit.
    pub async fn insert_alert(&mut self, a: &NewAlert<'_>) -> Result<()> {
        let k = (a.source.to_string(), a.fingerprint.to_string());
        let id = -(self.pending_alerts.len() as i64) - 1;
        self.pending_alerts.push(PendingAlert {
            incident_id: a.incident_id,
            source: a.source.to_string(),
            fingerprint: a.fingerprint.to_string(),
            status: a.status.to_string(),
            name: a.name.to_string(),
            starts_ms: a.starts_ms,
            ends_ms: a.ends_ms,
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            generator_url: a.generator_url.map(str::to_string),
            now: a.now.0,
        });
        if self.fetched_fingerprints.contains(&k) {
            self.alerts.entry(k).or_default().push(AlertEntry {
                id,
                incident_id: a.incident_id,
                status: a.status.to_string(),
                starts_ms: a.starts_ms,
            });
        }
        Ok(())
    }

    /// As [`StoreTx::set_alert_status`], for a stored or a buffered alert.
    pub async fn set_alert_status(
        &mut self,
        source: &str,
        fingerprint: &str,
        id: i64,
        status: &str,
        ends_ms: Option<i64>,
        now: Millis,
    ) -> Result<()> {
        if let Some(entries) = self
            .alerts
            .get_mut(&(source.to_string(), fingerprint.to_string()))
            && let Some(e) = entries.iter_mut().find(|e| e.id == id)
        {
            e.status = status.to_string();
        }
        if id < 0 {
            if let Some(p) = self.pending_alerts.get_mut((-id - 1) as usize) {
                p.status = status.to_string();
                p.ends_ms = ends_ms;
            }
            Ok(())
        } else {
            self.tx.set_alert_status(id, status, ends_ms, now).await
        }
    }

    pub async fn firing_alerts(&mut self, incident_id: i64) -> Result<i64> {
        self.flush_alerts().await?;
        self.tx.firing_alerts(incident_id).await
    }

    pub async fn open_incident_for_group(&mut self, group_key: &str) -> Result<Option<Incident>> {
        if let Some(known) = self.open.get(group_key) {
            return Ok(known.clone());
        }
        let found = self.tx.open_incident_for_group(group_key).await?;
        self.open.insert(group_key.to_string(), found.clone());
        Ok(found)
    }

    pub async fn incident(&mut self, id: i64) -> Result<Option<Incident>> {
        if let Some(inc) = self.open.values().flatten().find(|i| i.id == id) {
            return Ok(Some(inc.clone()));
        }
        self.tx.incident(id).await
    }

    pub async fn insert_incident(&mut self, n: &NewIncident<'_>) -> Result<Incident> {
        let inc = self.tx.insert_incident(n).await?;
        self.open.insert(inc.group_key.clone(), Some(inc.clone()));
        Ok(inc)
    }

    pub async fn update_incident(&mut self, i: &Incident) -> Result<()> {
        self.tx.update_incident(i).await?;
        if let Some(slot) = self.open.get_mut(&i.group_key)
            && slot.as_ref().is_none_or(|cur| cur.id == i.id)
        {
            *slot = (i.state != State::Resolved).then(|| i.clone());
        } else if i.state != State::Resolved {
            // Reopened: it is the group's open incident again.
            self.open.insert(i.group_key.clone(), Some(i.clone()));
        }
        Ok(())
    }

    /// Buffers a timeline event (written, in order, before the commit).
    pub async fn append(&mut self, e: NewEvent<'_>) -> Result<()> {
        self.pending_events.push(PendingEvent {
            incident_id: e.incident_id,
            at: e.at.0,
            actor: e.actor.to_string(),
            kind: e.kind.to_string(),
            text: e.text.to_string(),
            data: e.data,
        });
        Ok(())
    }

    pub async fn enqueue(
        &mut self,
        incident_id: Option<i64>,
        kind: &str,
        payload: &serde_json::Value,
        now: Millis,
    ) -> Result<i64> {
        self.tx.enqueue(incident_id, kind, payload, now).await
    }

    pub async fn enqueue_at(
        &mut self,
        incident_id: Option<i64>,
        kind: &str,
        payload: &serde_json::Value,
        now: Millis,
        due: Millis,
    ) -> Result<i64> {
        self.tx
            .enqueue_at(incident_id, kind, payload, now, due)
            .await
    }

    /// The transaction itself, for statements that neither read nor write
    /// what the batch buffers (alerts, timeline events).
    pub fn tx(&mut self) -> &mut StoreTx<'c> {
        &mut self.tx
    }

    /// See [`StoreTx::escalation`].
    pub async fn escalation(&mut self, incident_id: i64) -> Result<Option<super::EscalationRow>> {
        self.tx.escalation(incident_id).await
    }

    /// See [`StoreTx::put_escalation`].
    pub async fn put_escalation(&mut self, e: &super::EscalationRow) -> Result<()> {
        self.tx.put_escalation(e).await
    }

    /// See [`StoreTx::last_acknowledger`]. Events of this batch not yet
    /// written are looked at first.
    pub async fn last_acknowledger(&mut self, incident_id: i64) -> Result<Option<String>> {
        if let Some(e) = self.pending_events.iter().rev().find(|e| {
            e.incident_id == incident_id
                && e.kind == "state_changed"
                && e.data.contains("\"to\":\"acknowledged\"")
        }) {
            return Ok(Some(e.actor.clone()));
        }
        self.tx.last_acknowledger(incident_id).await
    }

    /// See [`StoreTx::attempts_failed`], with this batch's own events.
    pub async fn attempts_failed(&mut self, incident_id: i64, what: &str) -> Result<usize> {
        let pending = self
            .pending_events
            .iter()
            .filter(|e| e.incident_id == incident_id && e.kind == "attempt_failed")
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(&e.data).ok())
            .filter(|d| d["what"] == what)
            .count();
        Ok(pending + self.tx.attempts_failed(incident_id, what).await?)
    }

    /// See [`StoreTx::outbox_delivered`].
    pub async fn outbox_delivered(&mut self, id: i64, now: Millis) -> Result<()> {
        self.tx.outbox_delivered(id, now).await
    }

    /// See [`StoreTx::release_held`].
    pub async fn release_held(&mut self, incident_id: i64, now: Millis) -> Result<u64> {
        self.tx.release_held(incident_id, now).await
    }

    async fn flush_alerts(&mut self) -> Result<()> {
        if self.pending_alerts.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_alerts);
        for chunk in super::shaped(&pending, self.chunk(), !self.numbered()) {
            let mut sql = String::from(
                "INSERT INTO alerts (incident_id, source, fingerprint, status, name, starts_ms, ends_ms, labels, annotations, generator_url, received_ms, updated_ms) VALUES ",
            );
            sql.push_str(&self.rows(chunk.len(), 12));
            on_tx!(&mut self.tx, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for a in chunk {
                    q = q.bind(a.incident_id).bind(a.source.as_str()).bind(a.fingerprint.as_str()).bind(a.status.as_str())
                        .bind(a.name.as_str()).bind(a.starts_ms).bind(a.ends_ms).bind(a.labels.as_str())
                        .bind(a.annotations.as_str()).bind(a.generator_url.as_deref()).bind(a.now).bind(a.now);
                }
                q.execute(&mut *c).await.map(|_| ())?
            });
        }
        // Buffered entries now exist as rows; their ids are no longer
        // needed by anything in this batch but a later status change, which
        // a flush-and-query handles: forget the negative ids.
        for entries in self.alerts.values_mut() {
            entries.retain(|e| e.id > 0);
        }
        let written: HashSet<(&str, &str)> = pending
            .iter()
            .map(|p| (p.source.as_str(), p.fingerprint.as_str()))
            .collect();
        self.fetched_fingerprints
            .retain(|k| !written.contains(&(k.0.as_str(), k.1.as_str())));
        Ok(())
    }

    async fn flush_events(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending_events);
        for chunk in super::shaped(&pending, self.chunk(), !self.numbered()) {
            let mut sql = String::from(
                "INSERT INTO timeline (incident_id, at_ms, actor, kind, text, data) VALUES ",
            );
            sql.push_str(&self.rows(chunk.len(), 6));
            on_tx!(&mut self.tx, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for e in chunk {
                    q = q.bind(e.incident_id).bind(e.at).bind(e.actor.as_str()).bind(e.kind.as_str()).bind(e.text.as_str()).bind(e.data.as_str());
                }
                q.execute(&mut *c).await.map(|_| ())?
            });
        }
        Ok(())
    }

    /// Records how far the intake journal is applied (see `journal`).
    pub async fn set_applied(&mut self, seq: i64) -> Result<()> {
        self.tx.set_applied(seq).await
    }

    /// Writes the buffers and commits.
    pub async fn commit(mut self) -> Result<()> {
        self.flush_alerts().await?;
        self.flush_events().await?;
        let bumps = std::mem::take(&mut self.bumps);
        for ((source, key), n) in bumps {
            on_tx!(&mut self.tx, c => sqlx::query("UPDATE receipts SET duplicates = duplicates + $1 WHERE key_hash = $2 AND source = $3 AND key = $4")
                .bind(n).bind(super::receipt_hash(&source, &key).as_slice()).bind(source.as_str()).bind(key.as_str())
                .execute(&mut *c).await.map(|_| ())?);
        }
        self.tx.commit().await
    }
}
