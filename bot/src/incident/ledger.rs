//! The writer task and its handle. One task owns all writes to incidents
//! so that concurrent callers share transactions (group commit): it takes
//! every job queued while the previous commit was in flight, applies them
//! in one transaction and answers each caller only after that commit. A job
//! that breaks a batch is retried alone, so one bad job never fails its
//! neighbours.
//!
//! Alerts reach it from the intake journal (`intake::journal`), already
//! durable and answered: the journal's applier hands over a run of
//! deliveries, and the writer records how far it got in the same
//! transaction as what they changed.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{error, info, warn};

use super::apply::{
    self, Change, ChangeOutcome, Effects, Idempotency, IngestOutcome, LedgerError, Rules,
};
use super::joins::Joins;
use crate::domain::alert::{ParsedWebhook, Source};
use crate::domain::time::{Clock, Millis};
use crate::store::{Batch, Store, WriterConn};

/// A journaled delivery, as the writer applies it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: i64,
    /// When intake accepted it: the "now" of everything it changes, so an
    /// incident's detection time is its arrival, however late it is applied.
    pub received: Millis,
    pub source: Source,
    pub webhook: ParsedWebhook,
    pub idempotency: Option<Idempotency>,
    /// The answer its sender got; an idempotency key replays it.
    pub answer: IngestOutcome,
}

enum Job {
    Apply {
        deliveries: Vec<Delivery>,
        /// The journal position this run ends at.
        upto: i64,
        /// On failure the deliveries come back, for the applier to retry
        /// one by one (see `intake::journal`).
        reply: oneshot::Sender<Result<(), (LedgerError, Vec<Delivery>)>>,
    },
    Change {
        actor: String,
        change: Change,
        reply: oneshot::Sender<Result<ChangeOutcome, LedgerError>>,
    },
}

enum Outcome {
    Applied,
    Change(Box<ChangeOutcome>),
}

/// Handle to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    jobs: mpsc::Sender<Job>,
}

impl Ledger {
    /// Starts the writer task. Each of `wakes` (one per outbox dispatcher)
    /// is notified after every commit that wrote an intent.
    ///
    /// On SQLite the writer runs on a thread of its own below intake's
    /// priority (see [`crate::priority`]): its work, building and applying
    /// each run, then competes with intake through the kernel's scheduler
    /// rather than holding one of the runtime's few worker threads. On
    /// PostgreSQL it stays on the runtime: its pooled connection belongs
    /// to the runtime's I/O driver, and the database work is the server's.
    pub fn start(
        store: Store,
        rules: Arc<Rules>,
        clock: Arc<dyn Clock>,
        wakes: Vec<Arc<Notify>>,
        queue_capacity: usize,
        batch_max: usize,
    ) -> std::io::Result<(Ledger, tokio::task::AbortHandle)> {
        let (tx, rx) = mpsc::channel(queue_capacity);
        let writer = Writer {
            store,
            rules,
            clock,
            wakes,
            batch_max,
            conn: None,
            joins: Joins::default(),
        };
        let handle = if writer.store.backend() == "sqlite" {
            crate::priority::spawn_background("firstline-incidents", writer.run(rx))?
        } else {
            tokio::spawn(writer.run(rx)).abort_handle()
        };
        Ok((Ledger { jobs: tx }, handle))
    }

    /// Applies a run of journaled deliveries, and records `upto` as the
    /// journal position reached, in one transaction. On failure nothing of
    /// it is written, and the deliveries are handed back with the error.
    pub async fn apply_journal(
        &self,
        deliveries: Vec<Delivery>,
        upto: i64,
    ) -> Result<(), (LedgerError, Vec<Delivery>)> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Apply {
                deliveries,
                upto,
                reply,
            })
            .await
            .map_err(|_| (LedgerError::Stopped, Vec::new()))?;
        rx.await.map_err(|_| (LedgerError::Stopped, Vec::new()))?
    }

    /// Applies a person's change to an incident.
    pub async fn change(&self, actor: &str, change: Change) -> Result<ChangeOutcome, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Change {
                actor: actor.to_string(),
                change,
                reply,
            })
            .await
            .map_err(|_| LedgerError::Stopped)?;
        rx.await.map_err(|_| LedgerError::Stopped)?
    }
}

struct Writer {
    store: Store,
    rules: Arc<Rules>,
    clock: Arc<dyn Clock>,
    /// Woken after a commit that wrote outbox intents (one per dispatcher).
    wakes: Vec<Arc<Notify>>,
    batch_max: usize,
    /// Held across batches; dropped (closed) after a store error and taken
    /// afresh for the next batch.
    conn: Option<WriterConn>,
    /// Alert arrivals counted for the timeline (see `joins`); a batch
    /// works on a copy, kept only if it commits.
    joins: Joins,
}

/// How long the writer waits without a job before it writes the counted
/// alert arrivals of quiet incidents.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        loop {
            // `Store::close` waits for every pooled connection to come back
            // (the PostgreSQL writer's is one): give the held one up as soon
            // as the pool starts closing.
            let idle = self.joins.has_pending();
            let next = tokio::select! {
                job = rx.recv() => job,
                _ = self.store.closing(), if self.conn.is_some() => {
                    self.conn = None;
                    continue;
                }
                _ = tokio::time::sleep(IDLE_FLUSH), if idle => {
                    self.flush_counts().await;
                    continue;
                }
            };
            let Some(first) = next else { break };
            batch.push(first);
            while batch.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.apply_batch(std::mem::take(&mut batch)).await;
        }
    }

    async fn apply_batch(&mut self, batch: Vec<Job>) {
        let many = batch.len() > 1;
        match self.try_apply(&batch).await {
            Ok((outcomes, effects)) => {
                self.after_commit(&effects);
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    answer(job, outcome);
                }
            }
            Err(e) if many => {
                warn!(error = %e, jobs = batch.len(), "batch failed; retrying its jobs one by one");
                for job in batch {
                    let single = [job];
                    match self.try_apply(&single).await {
                        Ok((mut outcomes, effects)) => {
                            self.after_commit(&effects);
                            let [job] = single;
                            answer(job, outcomes.remove(0));
                        }
                        Err(e) => {
                            let [job] = single;
                            fail(job, e);
                        }
                    }
                }
            }
            Err(e) => {
                for job in batch {
                    fail(job, e.clone());
                }
            }
        }
    }

    /// Applies the jobs in one transaction. Domain refusals (unknown
    /// incident, forbidden transition) are per-job results and change
    /// nothing; a store error aborts the whole transaction.
    async fn try_apply(
        &mut self,
        batch: &[Job],
    ) -> Result<(Vec<Result<Outcome, LedgerError>>, Effects), LedgerError> {
        // A connection held since an earlier batch may have died in
        // between (a PostgreSQL restart, an idle timeout): a failure on it
        // is retried once on a fresh one before any sender hears of it.
        // The failed attempt committed nothing, or, if only its COMMIT's
        // answer was lost, the retry finds its receipts and answers
        // `duplicate`: the alerts are stored once either way.
        let held = self.conn.is_some();
        let result = self.apply_on_conn(batch).await;
        if result.is_err() && held {
            return self.apply_on_conn(batch).await;
        }
        result
    }

    /// Writes the counted alert arrivals of every incident (the writer is
    /// idle). A failure keeps the counts for the next try.
    async fn flush_counts(&mut self) {
        let mut joins = self.joins.clone();
        let counts = joins.flush(self.clock.now());
        let now = self.clock.now();
        let result = match held_conn(&mut self.conn, &self.store).await {
            Ok(conn) => {
                async {
                    let mut tx = Batch::new(conn.begin().await.map_err(store_err)?);
                    let mut effects = apply::Effects::default();
                    for c in &counts {
                        apply::aggregate_event(&mut tx, &self.rules, now, c, &mut effects).await?;
                    }
                    tx.commit().await.map_err(store_err)
                }
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.joins = joins;
                if !counts.is_empty() {
                    for wake in &self.wakes {
                        wake.notify_one();
                    }
                }
            }
            Err(e) => {
                self.drop_conn();
                warn!(error = %e, "could not write counted alert arrivals; will retry");
            }
        }
    }

    /// Closes the held connection after a failure: it is never reused.
    fn drop_conn(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }

    /// One attempt on the held connection (taken first if there is none);
    /// after a failure the connection is closed, never reused.
    async fn apply_on_conn(
        &mut self,
        batch: &[Job],
    ) -> Result<(Vec<Result<Outcome, LedgerError>>, Effects), LedgerError> {
        let joins = self.joins.clone();
        let conn = held_conn(&mut self.conn, &self.store).await?;
        let mut result = apply_jobs(conn, &self.rules, self.clock.now(), batch, joins).await;
        match &mut result {
            Ok((_, effects)) => self.joins = std::mem::take(&mut effects.joins),
            Err(_) => self.drop_conn(),
        }
        result
    }
}

/// The writer's connection held across batches (`slot`), taken from
/// `store` first if there is none.
async fn held_conn<'a>(
    slot: &'a mut Option<WriterConn>,
    store: &Store,
) -> Result<&'a mut WriterConn, LedgerError> {
    if slot.is_none() {
        *slot = Some(store.writer_conn().await.map_err(store_err)?);
    }
    slot.as_mut()
        .ok_or_else(|| LedgerError::Store("no writer connection".into()))
}

/// The body of [`Writer::try_apply`] on the writer's connection.
async fn apply_jobs(
    conn: &mut WriterConn,
    rules: &Rules,
    now: crate::domain::time::Millis,
    batch: &[Job],
    joins: Joins,
) -> Result<(Vec<Result<Outcome, LedgerError>>, Effects), LedgerError> {
    let mut tx = Batch::new(conn.begin().await.map_err(store_err)?);
    let deliveries = batch.iter().flat_map(|job| match job {
        Job::Apply { deliveries, .. } => deliveries.as_slice(),
        Job::Change { .. } => &[],
    });
    let deliveries = deliveries.map(|d| (d.source, &d.webhook));
    tx.prefetch(&apply::prefetch_for(rules, deliveries), now)
        .await
        .map_err(store_err)?;
    let mut effects = Effects {
        joins,
        ..Effects::default()
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = match job {
            Job::Apply {
                deliveries, upto, ..
            } => {
                apply_deliveries(&mut tx, rules, deliveries, &mut effects).await?;
                tx.set_applied(*upto).await.map_err(store_err)?;
                Ok(Outcome::Applied)
            }
            Job::Change { actor, change, .. } => {
                apply::change(&mut tx, rules, now, actor, change, &mut effects)
                    .await
                    .map(|o| Outcome::Change(Box::new(o)))
            }
        };
        match outcome {
            Err(LedgerError::Store(e)) => return Err(LedgerError::Store(e)),
            other => outcomes.push(other),
        }
    }
    tx.commit().await.map_err(store_err)?;
    Ok((outcomes, effects))
}

/// Applies each delivery at its own arrival time. A delivery the rules
/// refuse (an idempotency key reused with another body, which intake
/// normally refuses first) changes nothing and is logged; a store error
/// fails the whole run, to be retried.
async fn apply_deliveries(
    tx: &mut Batch<'_>,
    rules: &Rules,
    deliveries: &[Delivery],
    effects: &mut Effects,
) -> Result<(), LedgerError> {
    for d in deliveries {
        let outcome = apply::ingest(
            tx,
            rules,
            d.received,
            d.source,
            &d.webhook,
            d.idempotency.as_ref(),
            effects,
        )
        .await;
        match outcome {
            Ok(outcome) => {
                if !outcome.opened.is_empty() {
                    info!(source = d.source.as_str(), seq = d.seq, incidents = ?outcome.opened, "incident opened");
                }
                if let Some(idem) = &d.idempotency
                    && outcome.replay_of.is_none()
                {
                    // A replay gets the answer the sender got.
                    let response = serde_json::to_string(&d.answer).unwrap_or_default();
                    tx.set_receipt_response(
                        d.source.as_str(),
                        &format!("idem:{}", idem.key),
                        "accepted",
                        &response,
                    )
                    .await
                    .map_err(store_err)?;
                }
            }
            Err(LedgerError::Store(e)) => return Err(LedgerError::Store(e)),
            Err(e) => {
                warn!(source = d.source.as_str(), seq = d.seq, error = %e, "journaled delivery changed nothing");
            }
        }
    }
    Ok(())
}

impl Writer {
    fn after_commit(&self, effects: &Effects) {
        if effects.enqueued > 0 {
            for wake in &self.wakes {
                wake.notify_one();
            }
        }
    }
}

fn store_err(e: crate::store::StoreError) -> LedgerError {
    LedgerError::Store(e.to_string())
}

fn answer(job: Job, outcome: Result<Outcome, LedgerError>) {
    // A sender that gave up (timeout, disconnect) no longer listens; its job
    // is stored all the same, which is what it will find when it retries.
    match (job, outcome) {
        (Job::Apply { reply, .. }, Ok(Outcome::Applied)) => {
            let _ = reply.send(Ok(()));
        }
        (Job::Change { reply, .. }, Ok(Outcome::Change(o))) => {
            let _ = reply.send(Ok(*o));
        }
        (job, Err(e)) => fail(job, e),
        (job, Ok(_)) => {
            error!("writer produced an outcome of the wrong kind");
            fail(job, LedgerError::Store("internal: outcome mismatch".into()));
        }
    }
}

fn fail(job: Job, e: LedgerError) {
    match job {
        Job::Apply {
            reply, deliveries, ..
        } => {
            let _ = reply.send(Err((e, deliveries)));
        }
        Job::Change { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}
