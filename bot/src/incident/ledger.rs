//! The writer task and its handle. One task owns all writes so that
//! concurrent senders share transactions (group commit): it takes every job
//! queued while the previous commit was in flight, applies them in one
//! transaction and answers each sender only after that commit. A job that
//! breaks a batch is retried alone, so one bad job never fails its
//! neighbours.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{error, warn};

use super::apply::{
    self, Change, ChangeOutcome, Effects, Idempotency, IngestOutcome, LedgerError, Rules,
};
use crate::domain::alert::{ParsedWebhook, Source};
use crate::domain::time::Clock;
use crate::store::{Batch, Store, WriterConn};

enum Job {
    Ingest {
        source: Source,
        webhook: ParsedWebhook,
        idempotency: Option<Idempotency>,
        reply: oneshot::Sender<Result<IngestOutcome, LedgerError>>,
    },
    Change {
        actor: String,
        change: Change,
        reply: oneshot::Sender<Result<ChangeOutcome, LedgerError>>,
    },
}

enum Outcome {
    Ingest(IngestOutcome),
    Change(ChangeOutcome),
}

/// Handle to the writer. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    jobs: mpsc::Sender<Job>,
}

impl Ledger {
    /// Starts the writer task. Each of `wakes` (one per outbox dispatcher)
    /// is notified after every commit that wrote an intent.
    pub fn start(
        store: Store,
        rules: Arc<Rules>,
        clock: Arc<dyn Clock>,
        wakes: Vec<Arc<Notify>>,
        queue_capacity: usize,
        batch_max: usize,
    ) -> (Ledger, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue_capacity);
        let writer = Writer {
            store,
            rules,
            clock,
            wakes,
            batch_max,
            conn: None,
        };
        let handle = tokio::spawn(writer.run(rx));
        (Ledger { jobs: tx }, handle)
    }

    /// Stores the alerts of one delivery. Answers once they are durable;
    /// [`LedgerError::Overloaded`] at once if the queue is full.
    pub async fn ingest(
        &self,
        source: Source,
        webhook: ParsedWebhook,
        idempotency: Option<Idempotency>,
    ) -> Result<IngestOutcome, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .try_send(Job::Ingest {
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
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.batch_max);
        loop {
            // `Store::close` waits for every connection to come back: give
            // the held one up as soon as the pool starts closing.
            let next = tokio::select! {
                job = rx.recv() => job,
                _ = self.store.closing(), if self.conn.is_some() => {
                    self.conn = None;
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
                    fail(job, LedgerError::Store(e.to_string()));
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

    /// One attempt on the held connection (taken first if there is none);
    /// after a failure the connection is closed, never reused.
    async fn apply_on_conn(
        &mut self,
        batch: &[Job],
    ) -> Result<(Vec<Result<Outcome, LedgerError>>, Effects), LedgerError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self
                .conn
                .insert(self.store.writer_conn().await.map_err(store_err)?),
        };
        let result = apply_jobs(conn, &self.rules, self.clock.now(), batch).await;
        if result.is_err()
            && let Some(conn) = self.conn.take()
        {
            conn.discard();
        }
        result
    }
}

/// The body of [`Writer::try_apply`] on the writer's connection.
async fn apply_jobs(
    conn: &mut WriterConn,
    rules: &Rules,
    now: crate::domain::time::Millis,
    batch: &[Job],
) -> Result<(Vec<Result<Outcome, LedgerError>>, Effects), LedgerError> {
    let mut tx = Batch::new(conn.begin().await.map_err(store_err)?);
    let deliveries = batch.iter().filter_map(|job| match job {
        Job::Ingest {
            source, webhook, ..
        } => Some((*source, webhook)),
        Job::Change { .. } => None,
    });
    tx.prefetch(&apply::prefetch_for(rules, deliveries), now)
        .await
        .map_err(store_err)?;
    let mut effects = Effects::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = match job {
            Job::Ingest {
                source,
                webhook,
                idempotency,
                ..
            } => apply::ingest(
                &mut tx,
                rules,
                now,
                *source,
                webhook,
                idempotency.as_ref(),
                &mut effects,
            )
            .await
            .map(Outcome::Ingest),
            Job::Change { actor, change, .. } => {
                apply::change(&mut tx, rules, now, actor, change, &mut effects)
                    .await
                    .map(Outcome::Change)
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

impl Writer {
    fn after_commit(&self, effects: &Effects) {
        if effects.enqueued > 0 {
            for wake in &self.wakes {
                wake.notify_one();
            }
        }
        for (source, status, n) in &effects.alert_counts {
            metrics::counter!("firstline_alerts_total", "source" => *source, "status" => *status)
                .increment(*n);
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
        (Job::Ingest { reply, .. }, Ok(Outcome::Ingest(o))) => {
            let _ = reply.send(Ok(o));
        }
        (Job::Change { reply, .. }, Ok(Outcome::Change(o))) => {
            let _ = reply.send(Ok(o));
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
        Job::Ingest { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Job::Change { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}
