//! The intake journal's two tasks: the **journal writer**, which decides
//! what is new, appends it durably and answers the senders, and the
//! **applier**, which hands what was appended to the incident writer.
//!
//! ```text
//! hooks ─► Journal::accept ─► writer: dedup ─► append (group commit) ─► 2xx
//!                                                   │
//!              applier: read_after(applied) ◄───────┘
//!                 └─► Ledger::apply_journal ─► incidents, timeline, outbox
//!                                              + intake_applied, one transaction
//! ```
//!
//! A sender waits for the append only (~1 KB a delivery, sequential),
//! never for the incident work (~20 KB of index pages an alert): that is
//! what lets intake keep up with a storm while incidents follow a few
//! milliseconds behind. Reads that must see every accepted alert (the
//! incident API, chat commands) wait for the applier first
//! ([`Progress::caught_up`]).
//!
//! Dedup is decided here, before the answer: an alert is a duplicate when
//! its delivery key (groupKey, fingerprint, startsAt, status) has a receipt,
//! or the alert with that fingerprint and start is already stored with the
//! same status; "stored" covers both the database and what is journaled
//! but not yet applied, which this task keeps in memory (bounded by
//! `intake.max_backlog`). The incident writer applies the same rules
//! again, so a race between the two can cost an inexact count in an
//! answer, never a second incident.
//!
//! Most alerts of a storm are new, and asking the database about each
//! batch cost as much as appending it. So the writer keeps a Bloom filter
//! ([`Seen`]) of every (source, fingerprint) stored or journaled: an alert
//! the filter has never seen is new without a query; only the others (a
//! re-sent group, a resolve) are looked up.

use std::collections::VecDeque;

// foldhash rather than SipHash: every alert is looked up and remembered
// here a few times, and hashing was a few percent of intake's CPU.
use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use fastbloom::BloomFilter;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::domain::alert::{AlertStatus, ParsedWebhook, Source};
use crate::domain::time::{Clock, Millis};
use crate::incident::{Delivery, Idempotency, IngestOutcome, Ledger, LedgerError};
use crate::store::{DeadDelivery, JournalRecord, JournalStore, Receipt, Store, StoreError};

static TRIM: crate::log_limit::Every = crate::log_limit::Every::new(Duration::from_secs(5));
static BACKLOG_FULL: crate::log_limit::Every =
    crate::log_limit::Every::new(Duration::from_secs(10));
static APPEND_FAILED: crate::log_limit::Every =
    crate::log_limit::Every::new(Duration::from_secs(10));

/// What is stored per delivery (the `payload` column).
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    webhook: ParsedWebhook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency: Option<Idempotency>,
    answer: IngestOutcome,
}

/// [`Payload`] by reference, for writing.
#[derive(Serialize)]
struct PayloadRef<'a> {
    webhook: &'a ParsedWebhook,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency: Option<&'a Idempotency>,
    answer: &'a IngestOutcome,
}

/// How far intake and the incident writer have got; cheap to clone.
#[derive(Clone, Debug)]
pub struct Progress {
    applied: watch::Receiver<i64>,
    head: Arc<AtomicI64>,
    /// The applier's last error while it keeps failing; `None` once a run
    /// goes through (for `/readyz`).
    failing: Arc<std::sync::Mutex<Option<String>>>,
}

impl Progress {
    /// Waits until everything accepted before this call has been applied
    /// to incidents, for at most `limit`. `false` if the limit passed (the
    /// caller then reads what is there; the rest follows shortly).
    pub async fn caught_up(&self, limit: Duration) -> bool {
        let target = self.head.load(Ordering::Acquire);
        let mut applied = self.applied.clone();
        matches!(
            tokio::time::timeout(limit, applied.wait_for(|a| *a >= target)).await,
            Ok(Ok(_))
        )
    }

    /// Why incidents cannot be written just now, while the applier keeps
    /// failing (it retries; nothing accepted is dropped).
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Deliveries accepted and not yet applied.
    pub fn backlog(&self) -> i64 {
        (self.head.load(Ordering::Acquire) - *self.applied.borrow()).max(0)
    }
}

/// How long a read waits for the applier before answering with what is
/// there.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// Handle to the journal writer. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    jobs: mpsc::Sender<Entry>,
    progress: Progress,
}

struct Entry {
    source: Source,
    webhook: ParsedWebhook,
    idempotency: Option<Idempotency>,
    reply: oneshot::Sender<Result<IngestOutcome, LedgerError>>,
}

/// Settings of the two tasks.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    pub queue_capacity: usize,
    /// Deliveries per append; alerts per run handed to the incident writer.
    pub batch_max: usize,
    /// Least time between the starts of two runs handed to the incident
    /// writer (`store.apply_interval_ms`).
    pub apply_interval: Duration,
    /// Alerts (or deliveries, whichever is more) accepted but not yet
    /// applied beyond which intake answers 503 (the sender retries; nothing
    /// is lost). Bounds the dedup index in memory and the journal on disk.
    pub max_backlog: i64,
}

/// The two running tasks.
pub struct JournalTasks {
    pub writer: tokio::task::JoinHandle<()>,
    pub applier: tokio::task::JoinHandle<()>,
}

impl Journal {
    /// Starts both tasks. Deliveries journaled before a restart and not
    /// yet applied are applied first, and count as stored for dedup.
    pub async fn start(
        store: Store,
        journal: JournalStore,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        settings: JournalSettings,
        stop: watch::Receiver<bool>,
    ) -> Result<(Journal, JournalTasks), StoreError> {
        let applied = store.applied_seq().await?;
        let last = journal.last_seq().await?.max(applied);
        // The filter of stored alerts fills in the background: start-up
        // does not wait for a scan of every alert ever stored. Until it
        // is in, every alert is looked up (exact, only slower).
        let mut seen = Seen::with_capacity(Seen::MIN_CAPACITY);
        seen.loading = true;
        let loaded = Seen::spawn_load(store.clone());
        let mut pending = Pending::default();
        let mut from = applied;
        loop {
            let records = journal.read_after(from, 1000).await?;
            let Some(end) = records.last().map(|r| r.seq) else {
                break;
            };
            for r in &records {
                if let Some(d) = decode(r) {
                    for a in &d.webhook.alerts {
                        seen.insert(d.source, &a.fingerprint);
                    }
                    pending.remember(&d);
                }
            }
            from = end;
        }
        if last > applied {
            info!(
                deliveries = last - applied,
                "intake journal: applying deliveries accepted before the restart"
            );
        }
        let (applied_tx, applied_rx) = watch::channel(applied);
        let head = Arc::new(AtomicI64::new(last));
        let failing = Arc::new(std::sync::Mutex::new(None));
        let progress = Progress {
            applied: applied_rx.clone(),
            head: head.clone(),
            failing: failing.clone(),
        };
        let wake = Arc::new(Notify::new());
        let handoff = Arc::new(Handoff::new(settings.batch_max * 8));
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let applier = Applier {
            store: store.clone(),
            ledger,
            clock: clock.clone(),
            failing: failing.clone(),
        };
        let writer = Writer {
            store,
            journal: journal.clone(),
            clock,
            pending,
            seen,
            loaded: Some(loaded),
            next_seq: last + 1,
            head,
            applied: applied_rx,
            pruned: 0,
            wake: wake.clone(),
            handoff: handoff.clone(),
            settings: settings.clone(),
        };
        let writer = tokio::spawn(writer.run(rx));
        let applier = tokio::spawn(apply_loop(
            journal, applier, applied_tx, wake, handoff, settings, stop,
        ));
        Ok((
            Journal { jobs: tx, progress },
            JournalTasks { writer, applier },
        ))
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Stores one delivery: answers once it is durable (or was already
    /// stored), [`LedgerError::Overloaded`] at once when the queue or the
    /// backlog is full.
    pub async fn accept(
        &self,
        source: Source,
        webhook: ParsedWebhook,
        idempotency: Option<Idempotency>,
    ) -> Result<IngestOutcome, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .try_send(Entry {
                source,
                webhook,
                idempotency,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LedgerError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => LedgerError::Stopped,
            })?;
        rx.await.map_err(|_| LedgerError::Stopped)?
    }
}

/// What is journaled and not yet applied, by the keys dedup asks about;
/// each value carries the journal sequence it came in with. `order` lists
/// each delivery's keys in sequence order, so forgetting what was applied
/// costs what is forgotten, not what is kept.
#[derive(Default)]
struct Pending {
    /// (source, delivery key).
    receipts: HashMap<(Source, String), i64>,
    /// (source, fingerprint, starts) -> latest status.
    alerts: HashMap<(Source, String, i64), (AlertStatus, i64)>,
    /// (source, idempotency key) -> (request hash, answer).
    idem: HashMap<(Source, String), (String, IngestOutcome, i64)>,
    order: VecDeque<(i64, Vec<PendingKey>)>,
}

enum PendingKey {
    Receipt(Source, String),
    Alert(Source, String, i64),
    Idem(Source, String),
}

impl Pending {
    fn remember(&mut self, d: &Delivery) {
        let mut keys = Vec::with_capacity(d.webhook.alerts.len() * 2 + 1);
        for a in &d.webhook.alerts {
            let key = (d.source, a.dedup_key());
            self.receipts.insert(key.clone(), d.seq);
            keys.push(PendingKey::Receipt(key.0, key.1));
            if let Some(s) = a.starts_at {
                let key = (d.source, a.fingerprint.clone(), s.0);
                self.alerts.insert(key.clone(), (a.status, d.seq));
                keys.push(PendingKey::Alert(key.0, key.1, key.2));
            }
        }
        if let Some(idem) = &d.idempotency {
            self.idem.insert(
                (d.source, idem.key.clone()),
                (idem.request_hash.clone(), d.answer.clone(), d.seq),
            );
            keys.push(PendingKey::Idem(d.source, idem.key.clone()));
        }
        self.order.push_back((d.seq, keys));
    }

    /// Forgets the deliveries up to `seq` (applied: the database has them).
    fn forget_through(&mut self, seq: i64) {
        while self.order.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((s, keys)) = self.order.pop_front() {
                self.forget(s, keys);
            }
        }
    }

    /// Forgets the deliveries from `seq` on (their append failed).
    fn forget_from(&mut self, seq: i64) {
        while self.order.back().is_some_and(|(s, _)| *s >= seq) {
            if let Some((s, keys)) = self.order.pop_back() {
                self.forget(s, keys);
            }
        }
    }

    /// Removes `keys` where they still point at delivery `seq` (a later
    /// delivery of the same key keeps its entry).
    fn forget(&mut self, seq: i64, keys: Vec<PendingKey>) {
        for key in keys {
            match key {
                PendingKey::Receipt(src, k) => {
                    let k = (src, k);
                    if self.receipts.get(&k) == Some(&seq) {
                        self.receipts.remove(&k);
                    }
                }
                PendingKey::Alert(src, fp, starts) => {
                    let k = (src, fp, starts);
                    if self.alerts.get(&k).is_some_and(|(_, s)| *s == seq) {
                        self.alerts.remove(&k);
                    }
                }
                PendingKey::Idem(src, k) => {
                    let k = (src, k);
                    if self.idem.get(&k).is_some_and(|(_, _, s)| *s == seq) {
                        self.idem.remove(&k);
                    }
                }
            }
        }
    }
}

/// Every (source, fingerprint) stored as an alert or journaled, as a
/// Bloom filter: "not seen" is certain (the alert is new, no query
/// needed), "seen" only likely (the database is asked). Alerts are never
/// deleted, and every receipt belongs to a stored alert, so an unseen
/// fingerprint has neither an alert row nor a receipt. The filter is
/// filled from the database at start-up and sized for twice what is
/// there (at least [`Seen::MIN_CAPACITY`]). When inserts reach that, a
/// filter twice as large (and twice as strict) takes the next ones, so
/// false "seen" answers, which cost a query each, stay under twice
/// [`Seen::FALSE_POSITIVES`] however long the process runs.
struct Seen {
    /// While the stored alerts are still being read in (after start-up),
    /// "seen" for everything: the database is asked.
    loading: bool,
    /// Oldest first; only the last takes inserts.
    filters: Vec<BloomFilter>,
    /// Items the last filter was sized for, and inserted into it so far.
    capacity: usize,
    inserted: usize,
}

impl Seen {
    /// ~1.2 MB of filter, touched only as it fills.
    const MIN_CAPACITY: usize = 1 << 20;
    const FALSE_POSITIVES: f64 = 0.01;
    // Small pages: the scan's buffers stay small, so little is left
    // in the allocator's hands afterwards.
    const PAGE: i64 = 1_000;

    fn with_capacity(capacity: usize) -> Seen {
        Seen {
            loading: false,
            filters: vec![Self::filter(capacity, 0)],
            capacity,
            inserted: 0,
        }
    }

    /// The `n`th filter (from 0) holds `capacity` items at half the false
    /// positive rate of the one before.
    fn filter(capacity: usize, n: usize) -> BloomFilter {
        let rate = Self::FALSE_POSITIVES / f64::from(1u32 << n.min(20));
        BloomFilter::with_false_pos(rate).expected_items(capacity.max(1))
    }

    /// Reads every stored (source, fingerprint) into a filter, in the
    /// background (retrying after a failure); the writer takes it in with
    /// [`Seen::absorb`].
    fn spawn_load(store: Store) -> oneshot::Receiver<Seen> {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            loop {
                match Seen::load(&store).await {
                    Ok(seen) => {
                        let _ = tx.send(seen);
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "intake: reading stored alerts for the dedup filter failed; every alert is looked up meanwhile; will retry");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
        rx
    }

    async fn load(store: &Store) -> Result<Seen, StoreError> {
        let started = std::time::Instant::now();
        let upper = usize::try_from(store.max_alert_id().await?).unwrap_or(0);
        // Only the writer's own filter, absorbed after this one, takes
        // inserts later: this one is sized for what is stored (an upper
        // bound).
        let mut seen = Seen::with_capacity(upper.max(1));
        let count = store
            .for_each_alert_identity(Self::PAGE, |source, fingerprint| {
                seen.insert_key(source, fingerprint)
            })
            .await?;
        crate::memory::return_freed_memory();
        if count > 0 {
            info!(
                alerts = count,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "intake: dedup filter loaded from the stored alerts"
            );
        }
        Ok(seen)
    }

    /// Takes in the filter of stored alerts read in the background. Its
    /// filters go first; this one's (what was journaled meanwhile) stay,
    /// the last still taking inserts: together they cover everything.
    fn absorb(&mut self, loaded: Seen) {
        let mut filters = loaded.filters;
        filters.append(&mut self.filters);
        self.filters = filters;
        self.loading = false;
    }

    fn insert(&mut self, source: Source, fingerprint: &str) {
        self.insert_key(source.as_str(), fingerprint);
    }

    fn insert_key(&mut self, source: &str, fingerprint: &str) {
        if self.inserted >= self.capacity {
            self.capacity = self.capacity.saturating_mul(2);
            self.inserted = 0;
            self.filters
                .push(Self::filter(self.capacity, self.filters.len()));
        }
        if let Some(last) = self.filters.last_mut() {
            last.insert(&(source, fingerprint));
        }
        self.inserted += 1;
    }

    fn may_have(&self, source: Source, fingerprint: &str) -> bool {
        if self.loading {
            return true;
        }
        let key = (source.as_str(), fingerprint);
        self.filters.iter().any(|f| f.contains(&key))
    }
}

/// What the database already holds about a batch's keys.
#[derive(Default)]
struct Known {
    receipts: HashMap<(String, String), Receipt>,
    /// (source, fingerprint, starts) -> status of the latest such alert.
    alerts: HashMap<(String, String, i64), String>,
}

struct Writer {
    store: Store,
    journal: JournalStore,
    clock: Arc<dyn Clock>,
    pending: Pending,
    seen: Seen,
    /// The filter of stored alerts, while it is read in the background.
    loaded: Option<oneshot::Receiver<Seen>>,
    next_seq: i64,
    head: Arc<AtomicI64>,
    applied: watch::Receiver<i64>,
    /// Journal records up to here are deleted.
    pruned: i64,
    /// Wakes the applier after an append.
    wake: Arc<Notify>,
    /// Hands what was appended to the applier.
    handoff: Arc<Handoff>,
    settings: JournalSettings,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(self.settings.batch_max);
        loop {
            let first = tokio::select! {
                job = rx.recv() => job,
                _ = tick.tick() => {
                    self.prune().await;
                    continue;
                }
            };
            let Some(first) = first else { break };
            batch.push(first);
            while batch.len() < self.settings.batch_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.handle(std::mem::take(&mut batch)).await;
        }
    }

    /// Deletes the records the incident writer has applied.
    async fn prune(&mut self) {
        let applied = *self.applied.borrow();
        if applied <= self.pruned {
            return;
        }
        match self.journal.prune_through(applied).await {
            Ok(_) => self.pruned = applied,
            Err(e) => {
                warn!(error = %e, "intake journal: pruning applied records failed; will retry")
            }
        }
    }

    async fn handle(&mut self, batch: Vec<Entry>) {
        if let Some(rx) = &mut self.loaded {
            match rx.try_recv() {
                Ok(loaded) => {
                    self.seen.absorb(loaded);
                    self.loaded = None;
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
                Err(oneshot::error::TryRecvError::Closed) => self.loaded = None,
            }
        }
        let applied = *self.applied.borrow();
        // Applied entries are in the database now: the lookups below see
        // them there (they run after the commit that applied them).
        self.pending.forget_through(applied);
        let deliveries = self.next_seq - 1 - applied;
        let alerts = self.pending.receipts.len() as i64;
        if deliveries.max(alerts) >= self.settings.max_backlog {
            if let Some(held_back) = BACKLOG_FULL.due() {
                warn!(
                    deliveries,
                    alerts,
                    held_back,
                    "intake journal is full (intake.max_backlog): answering 503 until incidents catch up (at most one such warning every 10 s)"
                );
            }
            for e in batch {
                let _ = e.reply.send(Err(LedgerError::Overloaded));
            }
            return;
        }
        let known = match self.lookup(&batch).await {
            Ok(k) => k,
            Err(e) => {
                for entry in batch {
                    let _ = entry.reply.send(Err(LedgerError::Store(e.to_string())));
                }
                return;
            }
        };
        let now = self.clock.now();
        let first = self.next_seq;
        let mut records = Vec::new();
        let mut handed = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for mut entry in batch {
            let result = self.decide(&mut entry, now, &known, &mut records, &mut handed);
            answers.push((entry, result));
        }
        if !records.is_empty() {
            if let Err(e) = self.journal.append(records).await {
                // Nothing of this batch is stored: forget it, and fail
                // every answer (a duplicate of something in this batch
                // is no longer one).
                if let Some(held_back) = APPEND_FAILED.due() {
                    error!(error = %e, held_back, "intake journal: append failed; answering 503 (at most one such error every 10 s)");
                }
                self.pending.forget_from(first);
                self.next_seq = first;
                for (entry, _) in answers {
                    let _ = entry
                        .reply
                        .send(Err(LedgerError::Store(format!("journal append: {e}"))));
                }
                return;
            }
            self.head.store(self.next_seq - 1, Ordering::Release);
            self.handoff.push(handed);
            self.wake.notify_one();
        }
        for (entry, result) in answers {
            if let Ok(o) = &result {
                let src = entry.source.as_str();
                if o.accepted > 0 {
                    metrics::counter!("firstline_alerts_total", "source" => src, "status" => "accepted")
                        .increment(o.accepted as u64);
                }
                if o.duplicates > 0 {
                    metrics::counter!("firstline_alerts_total", "source" => src, "status" => "duplicate")
                        .increment(o.duplicates as u64);
                }
            }
            let _ = entry.reply.send(result);
        }
    }

    /// Reads what the database holds about the batch's keys.
    async fn lookup(&self, batch: &[Entry]) -> Result<Known, StoreError> {
        let mut receipt_keys = Vec::new();
        let mut fingerprints = Vec::new();
        for e in batch {
            let src = e.source.as_str().to_string();
            if let Some(idem) = &e.idempotency {
                receipt_keys.push((src.clone(), format!("idem:{}", idem.key)));
            }
            for a in &e.webhook.alerts {
                // Never seen: no receipt, no stored alert to ask about.
                if self.seen.may_have(e.source, &a.fingerprint) {
                    receipt_keys.push((src.clone(), a.dedup_key()));
                    fingerprints.push((src.clone(), a.fingerprint.clone()));
                }
            }
        }
        let mut known = Known::default();
        for r in self.store.receipts_for(&receipt_keys).await? {
            known.receipts.insert((r.source.clone(), r.key.clone()), r);
        }
        // Oldest first, so the latest alert with a start wins.
        for (source, fp, starts, status) in self.store.alert_states(&fingerprints).await? {
            known.alerts.insert((source, fp, starts), status);
        }
        Ok(known)
    }

    /// Decides one delivery: its answer, and the record to append (only its
    /// new alerts). Remembers what it journals, so later deliveries of the
    /// same batch see it.
    fn decide(
        &mut self,
        entry: &mut Entry,
        now: Millis,
        known: &Known,
        records: &mut Vec<JournalRecord>,
        handed: &mut Vec<Delivery>,
    ) -> Result<IngestOutcome, LedgerError> {
        let source = entry.source;
        let src = source.as_str();
        if let Some(idem) = &entry.idempotency {
            let replay = match self.pending.idem.get(&(source, idem.key.clone())) {
                Some((hash, answer, _)) => Some((Some(hash.clone()), Some(answer.clone()))),
                None => known
                    .receipts
                    .get(&(src.to_string(), format!("idem:{}", idem.key)))
                    .map(|r| {
                        let answer = r
                            .response
                            .as_deref()
                            .and_then(|r| serde_json::from_str(r).ok());
                        (r.request_hash.clone(), answer)
                    }),
            };
            if let Some((hash, answer)) = replay {
                if hash.as_deref() != Some(idem.request_hash.as_str()) {
                    return Err(LedgerError::KeyReused(idem.key.clone()));
                }
                // A replay of a stored key gets the original answer.
                let mut original: IngestOutcome = answer.unwrap_or_default();
                original.duplicates += original.accepted;
                original.accepted = 0;
                original.replay_of = Some(idem.key.clone());
                return Ok(original);
            }
        }

        let delivered = entry.webhook.alerts.len();
        let mut fresh = Vec::new();
        for a in std::mem::take(&mut entry.webhook.alerts) {
            let key = a.dedup_key();
            let seen = self.pending.receipts.contains_key(&(source, key.clone()))
                || known.receipts.contains_key(&(src.to_string(), key));
            let same_state = a.starts_at.is_some_and(|s| {
                let stored = match self
                    .pending
                    .alerts
                    .get(&(source, a.fingerprint.clone(), s.0))
                {
                    Some((status, _)) => Some(status.as_str()),
                    None => known
                        .alerts
                        .get(&(src.to_string(), a.fingerprint.clone(), s.0))
                        .map(String::as_str),
                };
                stored == Some(a.status.as_str())
            });
            if !seen && !same_state {
                self.seen.insert(source, &a.fingerprint);
                fresh.push(a);
            }
        }
        let answer = IngestOutcome {
            accepted: fresh.len() as u32,
            duplicates: (delivered - fresh.len()) as u32,
            ..Default::default()
        };
        if fresh.is_empty() && entry.idempotency.is_none() {
            return Ok(answer);
        }
        let delivery = Delivery {
            seq: self.next_seq,
            received: now,
            source,
            webhook: ParsedWebhook {
                alerts: fresh,
                truncated_alerts: entry.webhook.truncated_alerts,
                receiver: entry.webhook.receiver.clone(),
            },
            idempotency: entry.idempotency.clone(),
            answer: answer.clone(),
        };
        let payload = serde_json::to_string(&PayloadRef {
            webhook: &delivery.webhook,
            idempotency: delivery.idempotency.as_ref(),
            answer: &answer,
        })
        .map_err(|e| LedgerError::Store(format!("cannot encode the delivery: {e}")))?;
        self.pending.remember(&delivery);
        records.push(JournalRecord {
            seq: delivery.seq,
            received_ms: now.0,
            source: src.to_string(),
            payload,
        });
        handed.push(delivery);
        self.next_seq += 1;
        Ok(answer)
    }
}

/// A record as the incident writer applies it; `None` (and an error in
/// the log) for one that cannot be read back.
fn decode(r: &JournalRecord) -> Option<Delivery> {
    let Some(source) = Source::parse(&r.source) else {
        error!(seq = r.seq, source = %r.source, "intake journal: record of an unknown source skipped");
        return None;
    };
    match serde_json::from_str::<Payload>(&r.payload) {
        Ok(p) => Some(Delivery {
            seq: r.seq,
            received: Millis(r.received_ms),
            source,
            webhook: p.webhook,
            idempotency: p.idempotency,
            answer: p.answer,
        }),
        Err(e) => {
            error!(seq = r.seq, error = %e, "intake journal: unreadable record skipped");
            None
        }
    }
}

/// Counts applied runs and their alerts. Their ratio is the applier's mean
/// run: small runs mean many commits, each rewriting the same hot index
/// pages, so an alert costs more to apply.
fn count_run(runs: u64, alerts: u64) {
    metrics::counter!("firstline_intake_apply_runs_total").increment(runs);
    metrics::counter!("firstline_intake_applied_alerts_total").increment(alerts);
}

/// Alerts a delivery counts for in a run (at least one: a delivery with
/// none still carries an idempotency key to record).
fn weight(d: &Delivery) -> i64 {
    d.webhook.alerts.len().max(1) as i64
}

/// The deliveries the writer has just appended, handed to the applier as
/// they are, so that it need not read back and decode what was encoded a
/// moment before (a twentieth of the instructions the server spent per
/// alert). It holds at most `max_alerts`: past that, while incidents lag
/// behind a storm, the oldest are dropped and the applier reads those from the
/// journal, as it does after a restart. The journal stays the record; this
/// is only a shortcut to its newest part.
struct Handoff {
    queue: std::sync::Mutex<(VecDeque<Delivery>, i64)>,
    max_alerts: i64,
}

impl Handoff {
    fn new(max_alerts: usize) -> Handoff {
        Handoff {
            queue: std::sync::Mutex::new((VecDeque::new(), 0)),
            max_alerts: max_alerts.max(1) as i64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<Delivery>, i64)> {
        // Nothing here can panic while holding the lock, but a poisoned
        // queue is still a valid queue.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds deliveries just made durable, in sequence order.
    fn push(&self, deliveries: Vec<Delivery>) {
        let mut guard = self.lock();
        let (queue, alerts) = &mut *guard;
        for d in deliveries {
            *alerts += weight(&d);
            queue.push_back(d);
        }
        while *alerts > self.max_alerts {
            match queue.pop_front() {
                Some(d) => *alerts -= weight(&d),
                None => break,
            }
        }
    }

    /// The deliveries that follow `applied` without a gap, up to `batch`
    /// alerts (at least one delivery). Empty when the next one is not
    /// here: never handed over (accepted before a restart) or dropped.
    fn take_after(&self, applied: i64, batch: i64) -> Vec<Delivery> {
        let mut guard = self.lock();
        let (queue, alerts) = &mut *guard;
        let mut out: Vec<Delivery> = Vec::new();
        let (mut next, mut taken) = (applied + 1, 0);
        while let Some(front) = queue.front() {
            if front.seq > next || (!out.is_empty() && taken >= batch) {
                break;
            }
            let Some(d) = queue.pop_front() else { break };
            *alerts -= weight(&d);
            // Older than `applied`: applied from the journal already.
            if d.seq == next {
                taken += weight(&d);
                next += 1;
                out.push(d);
            }
        }
        out
    }
}

/// Hands journaled deliveries to the incident writer, in order, until
/// `stop`. A store error is retried (with backoff) rather than skipped:
/// nothing accepted is dropped while the database is away.
async fn apply_loop(
    journal: JournalStore,
    applier: Applier,
    applied: watch::Sender<i64>,
    wake: Arc<Notify>,
    handoff: Arc<Handoff>,
    settings: JournalSettings,
    mut stop: watch::Receiver<bool>,
) {
    let (batch, interval) = (settings.batch_max as i64, settings.apply_interval);
    // Listed in /metrics from the start, not from the first run.
    count_run(0, 0);
    metrics::counter!("firstline_intake_dead_deliveries_total").increment(0);
    let mut backoff = Duration::from_millis(100);
    let mut alerts_per_delivery = 1;
    let mut last_run: Option<Instant> = None;
    let mut worked = false;
    loop {
        if *stop.borrow() {
            return;
        }
        // At a steady 1,000 alerts/s a run starting as soon as the last
        // one committed held one or two alerts: ~960 commits and fsyncs a
        // second, each rewriting the same index pages, and 0.75 cores.
        // Waiting out the interval lets a run gather the alerts that
        // arrive meanwhile (~100 commits a second, half the CPU); after a
        // quiet spell a run starts at once.
        if let Some(wait) = last_run.map(|t| interval.saturating_sub(t.elapsed()))
            && !wait.is_zero()
        {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        let from = *applied.borrow();
        let mut run = Run {
            deliveries: handoff.take_after(from, batch),
            upto: from,
            alerts: 0,
        };
        if let Some(last) = run.deliveries.last() {
            run.upto = last.seq;
            run.alerts = run.deliveries.iter().map(weight).sum();
        } else {
            // Read about as many deliveries as make `batch` alerts, going
            // by the size of the last ones.
            let limit = (batch / alerts_per_delivery.max(1)).clamp(1, batch);
            match journal.read_after(from, limit).await {
                Ok(records) if records.is_empty() => {
                    // Caught up after work: SQLite's freed buffers (a run
                    // of 1 MB alerts leaves tens of MB) go back to the
                    // system, at most every 5 s (a steady flow catches up
                    // after every run).
                    if worked && TRIM.due().is_some() {
                        worked = false;
                        crate::memory::return_freed_memory();
                    }
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
                Ok(records) => run = Run::read(&records, from, batch),
                Err(e) => {
                    let e = LedgerError::Store(e.to_string());
                    if !applier.retry_later(&e, &mut backoff, &mut stop).await {
                        return;
                    }
                    continue;
                }
            }
        }
        alerts_per_delivery = run.alerts / (run.deliveries.len().max(1) as i64);
        let (upto, alerts) = (run.upto, run.alerts);
        last_run = Some(Instant::now());
        let outcome = match applier.ledger.apply_journal(run.deliveries, upto).await {
            Ok(()) => {
                count_run(1, alerts as u64);
                worked = true;
                applied.send_replace(upto);
                Ok(())
            }
            Err((LedgerError::Stopped, _)) => return,
            // One bad delivery must not hold up every one behind it.
            Err((_, deliveries)) => {
                applier
                    .one_by_one(deliveries, upto, &applied, &mut stop)
                    .await
            }
        };
        match outcome {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                applier.set_failing(None);
            }
            Err(None) => return,
            Err(Some(e)) => {
                if !applier.retry_later(&e, &mut backoff, &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// Tries a delivery this many times on its own, with the store answering
/// every time, before it is set aside as poison.
const POISON_ATTEMPTS: u32 = 3;

/// What the applier works with besides the journal.
struct Applier {
    store: Store,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    /// Shared with [`Progress::failing`].
    failing: Arc<std::sync::Mutex<Option<String>>>,
}

impl Applier {
    fn set_failing(&self, e: Option<String>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Logs a failed run and waits out its backoff (doubled for next
    /// time); `false` if the applier is told to stop meanwhile.
    async fn retry_later(
        &self,
        e: &LedgerError,
        backoff: &mut Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        self.set_failing(Some(e.to_string()));
        warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "intake journal: applying to incidents failed; will retry");
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = stop.changed() => return false,
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(10));
        true
    }

    /// Applies a run that failed as a whole one delivery at a time (the
    /// last one ending at `upto`). A delivery that fails
    /// [`POISON_ATTEMPTS`] times while the store answers (the failure is
    /// its own, as with text PostgreSQL cannot hold) is set aside in
    /// `dead_deliveries` and the rest go on. `Err(Some(e))` when the store
    /// itself fails (the caller retries later; what was not applied is
    /// read again from the journal), `Err(None)` when told to stop.
    async fn one_by_one(
        &self,
        deliveries: Vec<Delivery>,
        upto: i64,
        applied: &watch::Sender<i64>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), Option<LedgerError>> {
        let n = deliveries.len();
        for (i, mut d) in deliveries.into_iter().enumerate() {
            let end = if i + 1 == n { upto } else { d.seq };
            let mut attempt = 0;
            loop {
                let e = match self.ledger.apply_journal(vec![d], end).await {
                    Ok(()) => {
                        count_run(1, 0);
                        applied.send_replace(end);
                        break;
                    }
                    Err((LedgerError::Stopped, _)) => return Err(None),
                    Err((e, mut back)) => match back.pop() {
                        Some(again) => {
                            d = again;
                            e
                        }
                        None => return Err(None),
                    },
                };
                attempt += 1;
                if let Err(down) = self.store.ping().await {
                    return Err(Some(LedgerError::Store(down.to_string())));
                }
                if attempt >= POISON_ATTEMPTS {
                    self.set_aside(&d, end, &e).await.map_err(Some)?;
                    applied.send_replace(end);
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100 << attempt)) => {}
                    _ = stop.changed() => return Err(None),
                }
            }
        }
        Ok(())
    }

    async fn set_aside(&self, d: &Delivery, upto: i64, e: &LedgerError) -> Result<(), LedgerError> {
        let payload = serde_json::to_string(&PayloadRef {
            webhook: &d.webhook,
            idempotency: d.idempotency.as_ref(),
            answer: &d.answer,
        })
        .unwrap_or_default();
        let dead = DeadDelivery {
            seq: d.seq,
            received_ms: d.received.0,
            source: d.source.as_str().to_string(),
            payload,
            error: e.to_string(),
            set_aside_ms: self.clock.now().0,
        };
        self.store
            .set_aside(&dead, upto)
            .await
            .map_err(|se| LedgerError::Store(se.to_string()))?;
        metrics::counter!("firstline_intake_dead_deliveries_total").increment(1);
        error!(
            seq = d.seq,
            source = d.source.as_str(),
            alerts = d.webhook.alerts.len(),
            error = %e,
            "intake journal: a delivery failed {POISON_ATTEMPTS} times on its own and was set aside (dead_deliveries); the ones after it are applied"
        );
        Ok(())
    }
}

/// One run for the incident writer: deliveries up to journal position
/// `upto`, `alerts` alerts in all.
struct Run {
    deliveries: Vec<Delivery>,
    upto: i64,
    alerts: i64,
}

impl Run {
    /// At most `batch` alerts of `records` (at least one delivery): the
    /// writer's transaction stays short, so chat commands queued behind it
    /// wait little. A record that cannot be decoded is skipped (and
    /// logged), but counts as applied.
    fn read(records: &[JournalRecord], from: i64, batch: i64) -> Run {
        let mut run = Run {
            deliveries: Vec::new(),
            upto: from,
            alerts: 0,
        };
        for r in records {
            if !run.deliveries.is_empty() && run.alerts >= batch {
                break;
            }
            run.upto = r.seq;
            if let Some(d) = decode(r) {
                run.alerts += weight(&d);
                run.deliveries.push(d);
            }
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::{Delivery, Handoff, Seen};
    use crate::domain::alert::{ParsedWebhook, Source};
    use crate::domain::time::Millis;

    fn delivery(seq: i64) -> Delivery {
        Delivery {
            seq,
            received: Millis(0),
            source: Source::Generic,
            webhook: ParsedWebhook::default(),
            idempotency: None,
            answer: Default::default(),
        }
    }

    fn seqs(run: &[Delivery]) -> Vec<i64> {
        run.iter().map(|d| d.seq).collect()
    }

    #[test]
    fn the_applier_takes_handed_deliveries_in_order_up_to_its_batch() {
        let handoff = Handoff::new(100);
        handoff.push((1..=5).map(delivery).collect());
        assert_eq!(seqs(&handoff.take_after(0, 3)), [1, 2, 3]);
        assert_eq!(seqs(&handoff.take_after(3, 3)), [4, 5]);
        assert!(handoff.take_after(5, 3).is_empty());
    }

    #[test]
    fn what_the_handoff_dropped_is_left_to_the_journal() {
        // Room for three: 1 and 2 are dropped, so the applier at 0 must
        // read them from the journal, and only then take 3 to 5 here.
        let handoff = Handoff::new(3);
        handoff.push((1..=5).map(delivery).collect());
        assert!(handoff.take_after(0, 10).is_empty());
        assert_eq!(seqs(&handoff.take_after(2, 10)), [3, 4, 5]);
    }

    #[test]
    fn deliveries_applied_from_the_journal_are_not_handed_again() {
        let handoff = Handoff::new(100);
        handoff.push((1..=4).map(delivery).collect());
        assert_eq!(seqs(&handoff.take_after(2, 10)), [3, 4]);
        // Accepted before a restart (never handed): nothing to take.
        let handoff = Handoff::new(100);
        handoff.push((7..=8).map(delivery).collect());
        assert!(handoff.take_after(4, 10).is_empty());
    }

    #[test]
    fn the_dedup_filter_grows_past_its_size_without_forgetting_or_saying_seen_too_often() {
        let mut seen = Seen::with_capacity(1_000);
        let fingerprint = |i: usize| format!("fp-{i}");

        for i in 0..20_000 {
            seen.insert(Source::Alertmanager, &fingerprint(i));
        }
        let forgotten = (0..20_000)
            .filter(|i| !seen.may_have(Source::Alertmanager, &fingerprint(*i)))
            .count();
        let false_seen = (20_000..120_000)
            .filter(|i| seen.may_have(Source::Alertmanager, &fingerprint(*i)))
            .count();

        assert_eq!(forgotten, 0, "a stored alert must never read as new");
        assert!(seen.filters.len() > 1, "it grew");
        // Twice 1 % at most; one filter of 1,000 holding 20,000 would
        // answer "seen" for nearly everything.
        assert!(
            false_seen < 2_000,
            "{false_seen} of 100,000 new keys read as seen"
        );
    }
}
