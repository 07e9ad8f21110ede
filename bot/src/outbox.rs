//! The dispatcher: delivers what the ledger wrote into the outbox, with
//! retries and backoff, in order per incident.
//!
//! Delivery is at-least-once towards the platform and exactly-once as the
//! user sees it: every post carries its outbox id, the store keeps one post
//! per outbox id, and an item is marked delivered only after its post is
//! recorded. A crash between the two leads to a redelivery that the
//! platform recognises and does not show again.
//!
//! [`Dispatcher::step`] delivers everything due now and returns; tests call
//! it directly, `run` loops it until shutdown.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::chat::{ChatPlatform, PostRequest};
use crate::config::OutboxSettings;
use crate::domain::time::{Clock, Millis};
use crate::store::{OutboxItem, Store, StoreError};

/// What a `chat_post` intent carries.
#[derive(Debug, Deserialize)]
struct ChatPostPayload {
    channel: String,
    text: String,
}

/// Carries out one kind of outbox intent.
pub trait Handler: Send + Sync + 'static {
    /// The `kind` column this handler takes.
    const KIND: &'static str;

    fn handle(
        &self,
        item: &OutboxItem,
    ) -> impl std::future::Future<Output = Result<(), Failure>> + Send;
}

/// Delivers chat posts through one chat platform.
pub struct ChatPoster<P: ChatPlatform> {
    store: Store,
    platform: Arc<P>,
    clock: Arc<dyn Clock>,
}

impl<P: ChatPlatform> ChatPoster<P> {
    pub fn new(store: Store, platform: Arc<P>, clock: Arc<dyn Clock>) -> Self {
        ChatPoster {
            store,
            platform,
            clock,
        }
    }
}

/// Works through the outbox intents of one kind.
pub struct Dispatcher<H: Handler> {
    store: Store,
    handler: H,
    clock: Arc<dyn Clock>,
    settings: OutboxSettings,
    wake: Arc<Notify>,
}

/// What one step did, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub delivered: usize,
    pub failed: usize,
    pub dead: usize,
}

impl<H: Handler> Dispatcher<H> {
    pub fn new(
        store: Store,
        handler: H,
        clock: Arc<dyn Clock>,
        settings: OutboxSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Dispatcher {
            store,
            handler,
            clock,
            settings,
            wake,
        }
    }

    /// Delivers until `shutdown` turns true. Wakes on the ledger's notify,
    /// when the next retry is due, and every poll interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok(r) if r.failed + r.dead > 0 => {
                    warn!(
                        delivered = r.delivered,
                        failed = r.failed,
                        dead = r.dead,
                        "outbox step had failures"
                    )
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "outbox step could not read the store"),
            }
            let wait = self.until_next_due().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        match self.store.next_outbox_due(H::KIND).await {
            Ok(Some(due)) => {
                let ms = (due.0 - self.clock.now().0).max(0) as u64;
                poll.min(Duration::from_millis(ms))
            }
            _ => poll,
        }
    }

    /// Delivers every item due now, oldest first. An incident whose item
    /// fails has its later items held back so its thread stays in order.
    pub async fn step(&self) -> Result<StepReport, StoreError> {
        let mut report = StepReport::default();
        let due = self
            .store
            .due_outbox(self.clock.now(), 256, H::KIND)
            .await?;
        let mut held: Vec<i64> = Vec::new();
        for item in due {
            if let Some(incident) = item.incident_id
                && held.contains(&incident)
            {
                continue;
            }
            match self.handler.handle(&item).await {
                Ok(()) => {
                    self.store
                        .outbox_delivered(item.id, self.clock.now())
                        .await?;
                    metrics::counter!("firstline_outbox_delivered_total").increment(1);
                    report.delivered += 1;
                }
                Err(failure) => {
                    if let Some(incident) = item.incident_id {
                        held.push(incident);
                    }
                    let attempts = item.attempts + 1;
                    let dead = !failure.retryable || attempts >= self.settings.max_attempts as i64;
                    let next = self.clock.now().0
                        + failure
                            .retry_after_ms
                            .unwrap_or_else(|| self.backoff_ms(attempts));
                    warn!(outbox_id = item.id, kind = H::KIND, incident_id = ?item.incident_id, attempts, dead, error = %failure.message, "delivery failed");
                    metrics::counter!("firstline_outbox_failures_total").increment(1);
                    self.store
                        .outbox_failed(item.id, Millis(next), &failure.message, dead)
                        .await?;
                    if dead {
                        report.dead += 1;
                    } else {
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Exponential backoff: base × 2^(attempts−1), capped.
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let exp = (attempts - 1).clamp(0, 30) as u32;
        let ms = self.settings.base_backoff_ms.saturating_mul(1u64 << exp);
        ms.min(self.settings.max_backoff_ms) as i64
    }
}

impl<P: ChatPlatform> Handler for ChatPoster<P> {
    const KIND: &'static str = "chat_post";

    async fn handle(&self, item: &OutboxItem) -> Result<(), Failure> {
        self.deliver_post(item).await
    }
}

impl<P: ChatPlatform> ChatPoster<P> {
    async fn deliver_post(&self, item: &OutboxItem) -> Result<(), Failure> {
        let payload: ChatPostPayload = serde_json::from_str(&item.payload)
            .map_err(|e| Failure::permanent(format!("malformed chat_post payload: {e}")))?;
        let thread = match item.incident_id {
            Some(id) => self
                .store
                .incident(id)
                .await
                .map_err(Failure::store)?
                .and_then(|i| i.chat_thread),
            None => None,
        };
        let req = PostRequest {
            outbox_id: item.id,
            incident_id: item.incident_id,
            channel: payload.channel,
            thread: thread.clone(),
            text: payload.text,
        };
        let posted = self.platform.post(&req).await.map_err(|e| Failure {
            message: e.to_string(),
            retryable: e.retryable,
            retry_after_ms: e.retry_after.map(|d| d.as_millis() as i64),
        })?;
        let record = crate::store::ChatPost {
            id: 0,
            outbox_id: Some(item.id),
            platform: self.platform.name().to_string(),
            channel: req.channel.clone(),
            thread: req.thread.clone(),
            message_ref: posted.message_ref.clone(),
            incident_id: item.incident_id,
            text: req.text.clone(),
            posted_ms: self.clock.now().0,
        };
        self.store
            .record_post(&record)
            .await
            .map_err(Failure::store)?;
        if let (Some(id), None) = (item.incident_id, thread) {
            self.store
                .set_chat_thread(id, &posted.thread)
                .await
                .map_err(Failure::store)?;
            info!(incident_id = id, thread = %posted.thread, "incident thread opened");
        }
        Ok(())
    }
}

/// Why an intent could not be carried out this time.
pub struct Failure {
    pub message: String,
    /// False parks the intent as dead at once.
    pub retryable: bool,
    /// When the far side said when to come back.
    pub retry_after_ms: Option<i64>,
}

impl Failure {
    pub fn permanent(message: String) -> Failure {
        Failure {
            message,
            retryable: false,
            retry_after_ms: None,
        }
    }
    pub fn store(e: StoreError) -> Failure {
        Failure {
            message: e.to_string(),
            retryable: true,
            retry_after_ms: None,
        }
    }
}
