//! The dispatcher: delivers what the ledger wrote into the outbox, with
//! retries and backoff, in order per incident.
//!
//! Delivery is at-least-once towards the platform and exactly-once as the
//! user sees it: every post carries its outbox id, the store keeps one post
//! per outbox id, and an item is marked delivered only after its post is
//! recorded. A crash between the two leads to a redelivery that the
//! platform recognises and does not show again.
//!
//! Items of one incident go one at a time, in order; different incidents'
//! may go at once, up to the dispatcher's `parallel` (the runbook runner's
//! is `runbooks.max_parallel_runs`, so one incident's slow checks do not
//! hold up the next incident's findings).
//!
//! [`Dispatcher::step`] delivers everything due now and returns; tests call
//! it directly. `run` starts deliveries as they fall due until shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::chat::storm::Storms;
use crate::chat::{ChatPlatform, PostRequest, Posted, RootView};
use crate::config::OutboxSettings;
use crate::domain::incident::{Incident, format_duration};
use crate::domain::time::{Clock, Millis};
use crate::runbook::load::Catalog;
use crate::store::{OutboxItem, Store, StoreError};

/// What a `chat_post` intent carries.
#[derive(Debug, Deserialize)]
struct ChatPostPayload {
    channel: String,
    text: String,
    /// The message template (`opened`, `state_changed`, …).
    #[serde(default)]
    template: Option<String>,
}

/// Templates after which an incident's root message shows a new state.
const ROOT_CHANGES: [&str; 2] = ["state_changed", "severity_changed"];

/// Carries out one kind of outbox intent.
pub trait Handler: Send + Sync + 'static {
    /// The `kind` column this handler takes.
    const KIND: &'static str;

    fn handle(
        &self,
        item: &OutboxItem,
    ) -> impl std::future::Future<Output = Result<Handled, Failure>> + Send;
}

/// What a handler did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Carried out: the item is marked delivered.
    Done,
    /// Held back (an incident's root post during an alert storm): the
    /// handler marked it held, and it waits, with its incident's later
    /// items, until released (`chat::storm`).
    Held,
    /// Settled by the handler in the store already (a page cancelled
    /// because its escalation stopped, or one another process delivered):
    /// nothing to mark, and its incident's later items may follow.
    Settled,
}

/// Delivers chat posts through one chat platform.
pub struct ChatPoster<P: ChatPlatform> {
    store: Store,
    platform: Arc<P>,
    clock: Arc<dyn Clock>,
    /// For the failure modes an incident's root message shows.
    catalog: Option<Arc<Catalog>>,
    /// Storm mode: roots held behind one summary (`chat::storm`).
    storms: Option<Arc<Storms>>,
}

impl<P: ChatPlatform> ChatPoster<P> {
    pub fn new(store: Store, platform: Arc<P>, clock: Arc<dyn Clock>) -> Self {
        ChatPoster {
            store,
            platform,
            clock,
            catalog: None,
            storms: None,
        }
    }

    /// Holds new incidents' roots while incidents open faster than the
    /// channel can carry them.
    pub fn with_storms(mut self, storms: Arc<Storms>) -> Self {
        self.storms = Some(storms);
        self
    }

    /// Root messages name the failure modes of the incident's runbook.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The incident as its root message shows it now.
    async fn root_view(&self, inc: &Incident, opening: Option<String>) -> RootView {
        let runbook = match (&self.catalog, &inc.runbook_id) {
            (Some(c), Some(id)) => c.get(id).map(|e| e.runbook.clone()),
            _ => None,
        };
        let failure_modes = runbook
            .as_ref()
            .map(|r| r.failure_modes.clone())
            .unwrap_or_default();
        let mut actions: Vec<_> = runbook
            .iter()
            .flat_map(|r| r.actions.iter())
            .filter(|a| a.run.is_some())
            .collect();
        actions.sort_by_key(|a| !a.reversible);
        let actions = actions.into_iter().map(|a| a.id.clone()).collect();
        // Who acknowledged: the last move to acknowledged on the timeline
        // (a store hiccup leaves the field out rather than the post).
        let acknowledged_by = match inc.acknowledged {
            None => None,
            Some(_) => self
                .store
                .timeline_tail(inc.id, 200)
                .await
                .unwrap_or_default()
                .iter()
                .rev()
                .find(|e| e.kind == "state_changed" && e.data["to"] == "acknowledged")
                .map(|e| e.actor.clone()),
        };
        RootView {
            id: inc.human_id.clone(),
            title: inc.title.clone(),
            severity: inc.severity.as_str().to_string(),
            state: inc.state.as_str().to_string(),
            runbook: inc.runbook_id.clone(),
            failure_modes,
            ttd: inc
                .milestones()
                .response_times()
                .ttd_ms
                .map(format_duration),
            acknowledged_by,
            open: inc.state != crate::domain::State::Resolved,
            opening,
            actions,
        }
    }
}

/// Works through the outbox intents of one kind.
///
/// Items of one incident are delivered one at a time, in id order; items of
/// different incidents (and items of no incident) may be delivered at the
/// same time, at most `parallel` deliveries at once (1 unless
/// [`Dispatcher::with_parallel`] says otherwise). While an incident's
/// delivery is in flight its later items wait, and an item backing off
/// after a failure holds back its incident's later items (the store's
/// `due_outbox` does not hand them out), so a thread never shows them out
/// of order.
pub struct Dispatcher<H: Handler> {
    inner: Arc<Inner<H>>,
    wake: Arc<Notify>,
    parallel: usize,
}

/// What the dispatcher's tasks share.
struct Inner<H: Handler> {
    store: Store,
    handler: H,
    clock: Arc<dyn Clock>,
    settings: OutboxSettings,
}

/// What one step did, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub delivered: usize,
    /// Held back by a storm (see [`Handled::Held`]).
    pub held: usize,
    pub failed: usize,
    pub dead: usize,
}

impl StepReport {
    fn add(&mut self, other: StepReport) {
        self.delivered += other.delivered;
        self.held += other.held;
        self.failed += other.failed;
        self.dead += other.dead;
    }
}

/// Items that must be delivered in turn: those of one incident, or a single
/// item of no incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    Incident(i64),
    Item(i64),
}

/// Due items in lanes, each lane's in id order, lanes in the order of their
/// oldest item.
fn lanes(due: Vec<OutboxItem>) -> Vec<(Lane, Vec<OutboxItem>)> {
    let mut out: Vec<(Lane, Vec<OutboxItem>)> = Vec::new();
    let mut at: HashMap<Lane, usize> = HashMap::new();
    for item in due {
        let lane = match item.incident_id {
            Some(i) => Lane::Incident(i),
            None => Lane::Item(item.id),
        };
        match at.get(&lane) {
            Some(&i) => out[i].1.push(item),
            None => {
                at.insert(lane, out.len());
                out.push((lane, vec![item]));
            }
        }
    }
    out
}

/// Items fetched per look at the store.
const FETCH: i64 = 256;

impl<H: Handler> Dispatcher<H> {
    pub fn new(
        store: Store,
        handler: H,
        clock: Arc<dyn Clock>,
        settings: OutboxSettings,
        wake: Arc<Notify>,
    ) -> Self {
        Dispatcher {
            inner: Arc::new(Inner {
                store,
                handler,
                clock,
                settings,
            }),
            wake,
            parallel: 1,
        }
    }

    /// Lets up to `parallel` incidents' deliveries run at the same time
    /// (at least 1). Each incident's own items still go one at a time.
    pub fn with_parallel(mut self, parallel: usize) -> Self {
        self.parallel = parallel.max(1);
        self
    }

    /// Delivers until `shutdown` turns true, starting a lane whenever one
    /// is due and a slot is free: a slow delivery holds up only its own
    /// incident. Wakes on the ledger's notify, when a delivery ends, when
    /// the next retry is due, and every poll interval. At shutdown it waits
    /// for the deliveries under way (an item is marked delivered only after
    /// its handler is done, so one cut short would simply run again).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut running: JoinSet<Result<StepReport, StoreError>> = JoinSet::new();
        let mut busy: HashMap<tokio::task::Id, Lane> = HashMap::new();
        // Lanes fetched and not started yet: a delivery that ends starts the
        // next of these instead of asking the store again, so a backlog of
        // N items costs N / FETCH queries rather than N.
        let mut queue: std::collections::VecDeque<(Lane, Vec<OutboxItem>)> = Default::default();
        let mut fetch = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if running.len() < self.parallel {
                if fetch || queue.is_empty() {
                    fetch = false;
                    match self.inner.due().await {
                        Ok(due) => queue = lanes(due).into(),
                        Err(e) => {
                            warn!(kind = H::KIND, error = %e, "outbox: could not read the store")
                        }
                    }
                }
                while running.len() < self.parallel {
                    let Some((lane, items)) = queue.pop_front() else {
                        break;
                    };
                    // Under way: its items come again in a later fetch.
                    if busy.values().any(|l| *l == lane) {
                        continue;
                    }
                    let inner = self.inner.clone();
                    let task = running.spawn(async move { inner.deliver(items).await });
                    busy.insert(task.id(), lane);
                }
            }
            // With deliveries under way, their end wakes us and the due
            // items in the store include theirs: only poll.
            let wait = if running.is_empty() {
                self.inner.until_next_due().await
            } else {
                Duration::from_millis(self.inner.settings.poll_interval_ms)
            };
            tokio::select! {
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    finished(&mut busy, done);
                }
                _ = self.wake.notified() => fetch = true,
                _ = tokio::time::sleep(wait) => fetch = true,
                _ = shutdown.changed() => {}
            }
        }
        while let Some(done) = running.join_next_with_id().await {
            finished(&mut busy, done);
        }
    }

    /// Delivers every item due now, oldest first, up to `parallel` lanes at
    /// once, and returns when they are done. An incident whose item fails
    /// has its later items held back so its thread stays in order.
    pub async fn step(&self) -> Result<StepReport, StoreError> {
        let mut report = StepReport::default();
        let mut lanes = lanes(self.inner.due().await?).into_iter();
        let mut running: JoinSet<Result<StepReport, StoreError>> = JoinSet::new();
        loop {
            while running.len() < self.parallel {
                let Some((_, items)) = lanes.next() else {
                    break;
                };
                let inner = self.inner.clone();
                running.spawn(async move { inner.deliver(items).await });
            }
            let Some(done) = running.join_next().await else {
                return Ok(report);
            };
            match done {
                Ok(r) => report.add(r?),
                Err(e) => {
                    warn!(kind = H::KIND, error = %e, "outbox delivery task ended abnormally")
                }
            }
        }
    }
}

/// Logs what a lane's delivery did and frees its lane.
fn finished(
    busy: &mut HashMap<tokio::task::Id, Lane>,
    done: Result<(tokio::task::Id, Result<StepReport, StoreError>), tokio::task::JoinError>,
) {
    let id = match &done {
        Ok((id, _)) => *id,
        Err(e) => e.id(),
    };
    busy.remove(&id);
    match done {
        Ok((_, Ok(r))) if r.failed + r.dead > 0 => warn!(
            delivered = r.delivered,
            failed = r.failed,
            dead = r.dead,
            "outbox deliveries had failures"
        ),
        Ok((_, Ok(_))) => {}
        Ok((_, Err(e))) => warn!(error = %e, "outbox: could not record a delivery in the store"),
        Err(e) => warn!(error = %e, "outbox delivery task ended abnormally"),
    }
}

impl<H: Handler> Inner<H> {
    async fn due(&self) -> Result<Vec<OutboxItem>, StoreError> {
        self.store
            .due_outbox(self.clock.now(), FETCH, H::KIND)
            .await
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

    /// Delivers one lane's items in order, stopping at the first failure
    /// (the rest wait behind it).
    async fn deliver(self: Arc<Self>, items: Vec<OutboxItem>) -> Result<StepReport, StoreError> {
        let mut report = StepReport::default();
        for (n, item) in items.into_iter().enumerate() {
            // Delivered meanwhile, with an earlier item of its lane (posts
            // waiting for one thread go out merged): nothing left to do.
            if n > 0 && !self.store.outbox_pending(item.id).await? {
                continue;
            }
            // Its own task, so a handler that panics fails this item (and
            // backs it off) rather than the dispatcher.
            let handled = {
                let inner = self.clone();
                let item = item.clone();
                tokio::spawn(async move { inner.handler.handle(&item).await }).await
            };
            let outcome = handled.unwrap_or_else(|e| {
                Err(Failure {
                    message: format!("the {} handler crashed: {e}", H::KIND),
                    retryable: true,
                    retry_after_ms: None,
                })
            });
            match outcome {
                Ok(Handled::Held) => {
                    report.held += 1;
                    // Its incident's later items wait behind it.
                    break;
                }
                Ok(Handled::Settled) => {}
                Ok(Handled::Done) => {
                    self.store
                        .outbox_delivered(item.id, self.clock.now())
                        .await?;
                    metrics::counter!("firstline_outbox_delivered_total").increment(1);
                    report.delivered += 1;
                }
                Err(failure) => {
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
                    // The incident's later items wait for the next look.
                    break;
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

    async fn handle(&self, item: &OutboxItem) -> Result<Handled, Failure> {
        self.deliver_post(item).await
    }
}

impl<P: ChatPlatform> ChatPoster<P> {
    async fn deliver_post(&self, item: &OutboxItem) -> Result<Handled, Failure> {
        let payload: ChatPostPayload = serde_json::from_str(&item.payload)
            .map_err(|e| Failure::permanent(format!("malformed chat_post payload: {e}")))?;
        let incident = match item.incident_id {
            Some(id) => self.store.incident(id).await.map_err(Failure::store)?,
            None => None,
        };
        let thread = incident.as_ref().and_then(|i| i.chat_thread.clone());
        let root = match (&incident, &thread) {
            (Some(inc), None) => Some(self.root_view(inc, Some(payload.text.clone())).await),
            _ => None,
        };
        // Posted before (a retry after the root update failed, a crash after
        // the platform took it, or merged into an earlier post): not shown
        // twice.
        let earlier = self
            .store
            .post_for_outbox(item.id)
            .await
            .map_err(Failure::store)?;
        // An incident's first post, in a storm: held behind the summary.
        if let (Some(inc), None, None, Some(storms)) = (&incident, &thread, &earlier, &self.storms)
            && storms
                .hold(item.id, &payload.channel, inc)
                .await
                .map_err(Failure::store)?
        {
            return Ok(Handled::Held);
        }
        let mut templates = vec![payload.template.clone()];
        let posted = match earlier {
            Some(p) => Posted {
                thread: p.thread.clone().unwrap_or_else(|| p.message_ref.clone()),
                message_ref: p.message_ref,
            },
            None => {
                // Messages waiting behind this one for the same thread go
                // out with it, as one post, where the platform paces posts.
                let merged = match (item.incident_id, &thread) {
                    // A proposal is a message of its own: people react to it.
                    (Some(id), Some(_))
                        if self.platform.merges_backlog()
                            && payload.template.as_deref() != Some(PROPOSAL_TEMPLATE) =>
                    {
                        self.backlog(id, item.id, &payload).await?
                    }
                    _ => Vec::new(),
                };
                let mut text = payload.text.clone();
                for (_, p) in &merged {
                    text.push_str("\n\n");
                    text.push_str(&p.text);
                    templates.push(p.template.clone());
                }
                let req = PostRequest {
                    outbox_id: item.id,
                    incident_id: item.incident_id,
                    channel: payload.channel.clone(),
                    thread: thread.clone(),
                    text,
                    template: payload.template.clone(),
                    root,
                };
                let posted = self.platform.post(&req).await.map_err(chat_failure)?;
                let now = self.clock.now();
                let parts = std::iter::once((item.id, &payload.text))
                    .chain(merged.iter().map(|(id, p)| (*id, &p.text)));
                for (outbox_id, text) in parts {
                    let record = crate::store::ChatPost {
                        id: 0,
                        outbox_id: Some(outbox_id),
                        platform: self.platform.name().to_string(),
                        channel: payload.channel.clone(),
                        thread: thread.clone(),
                        message_ref: posted.message_ref.clone(),
                        incident_id: item.incident_id,
                        text: text.clone(),
                        posted_ms: now.0,
                    };
                    self.store
                        .record_post(&record)
                        .await
                        .map_err(Failure::store)?;
                }
                for (id, _) in &merged {
                    self.store
                        .outbox_delivered(*id, now)
                        .await
                        .map_err(Failure::store)?;
                }
                if !merged.is_empty() {
                    info!(
                        incident_id = item.incident_id,
                        merged = merged.len() + 1,
                        "posts waiting for one thread went out as one"
                    );
                }
                posted
            }
        };
        if let (Some(id), None) = (item.incident_id, &thread) {
            self.store
                .set_chat_thread(id, &posted.thread)
                .await
                .map_err(Failure::store)?;
            info!(incident_id = id, thread = %posted.thread, "incident thread opened");
        }
        // The root shows the state the thread just announced (once for a
        // merged post, however many changes it carried).
        if let (Some(inc), Some(thread)) = (&incident, &thread)
            && templates
                .iter()
                .flatten()
                .any(|t| ROOT_CHANGES.contains(&t.as_str()))
        {
            let opening = self
                .store
                .first_post(self.platform.name(), inc.id)
                .await
                .map_err(Failure::store)?
                .map(|p| p.text);
            // Read again: the post was about this change, the incident row
            // may have moved further since the intent was written.
            let now = self
                .store
                .incident(inc.id)
                .await
                .map_err(Failure::store)?
                .unwrap_or_else(|| inc.clone());
            let view = self.root_view(&now, opening).await;
            self.platform
                .refresh_root(thread, &view)
                .await
                .map_err(chat_failure)?;
        }
        Ok(Handled::Done)
    }
}

impl<P: ChatPlatform> ChatPoster<P> {
    /// The posts waiting behind `after` for incident `id`'s thread that fit
    /// one message with `first` (in order, stopping at the first that does
    /// not fit, so order in the thread is kept).
    async fn backlog(
        &self,
        id: i64,
        after: i64,
        first: &ChatPostPayload,
    ) -> Result<Vec<(i64, ChatPostPayload)>, Failure> {
        let waiting = self
            .store
            .pending_after(Self::KIND, id, after, MERGE_AT_MOST)
            .await
            .map_err(Failure::store)?;
        let mut size = first.text.chars().count();
        let mut out = Vec::new();
        for item in waiting {
            let Ok(p) = serde_json::from_str::<ChatPostPayload>(&item.payload) else {
                break;
            };
            size += 2 + p.text.chars().count();
            if p.channel != first.channel
                || size > MERGED_CHARS
                || p.template.as_deref() == Some(PROPOSAL_TEMPLATE)
            {
                break;
            }
            out.push((item.id, p));
        }
        Ok(out)
    }
}

use crate::incident::actions::PROPOSAL_TEMPLATE;

/// Posts merged into one at most (see `ChatPoster::backlog`).
const MERGE_AT_MOST: i64 = 50;
/// The longest merged post: within Slack's 3,000 characters a section.
const MERGED_CHARS: usize = 2_900;

fn chat_failure(e: crate::chat::ChatError) -> Failure {
    Failure {
        message: e.to_string(),
        retryable: e.retryable,
        retry_after_ms: e.retry_after.map(|d| d.as_millis() as i64),
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
