//! The dispatcher: retries with backoff, order per incident, and exactly
//! one visible post per intent even across a crash.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use firstline::chat::console::{Console, Sink};
use firstline::chat::{ChatError, ChatPlatform, PostRequest, Posted};
use firstline::config::OutboxSettings;
use firstline::domain::time::{Millis, SystemClock};
use firstline::outbox::{ChatPoster, Dispatcher};
use firstline::store::{ChatPost, Store};
use serde_json::json;
use tokio::sync::Notify;

use crate::helpers::{Backend, fresh_database};

/// The console platform behind a link that fails the first `failures`
/// calls, as a chat API having a bad minute would.
struct Flaky {
    inner: Console,
    failures: AtomicUsize,
    calls: AtomicUsize,
}

impl ChatPlatform for Flaky {
    fn name(&self) -> &'static str {
        "console"
    }
    async fn post(&self, req: &PostRequest) -> Result<Posted, ChatError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(ChatError {
                platform: "console",
                message: "503 from the chat API".into(),
                retry_after: None,
                retryable: true,
            });
        }
        self.inner.post(req).await
    }
    async fn update(&self, message_ref: &str, text: &str) -> Result<(), ChatError> {
        self.inner.update(message_ref, text).await
    }
    async fn direct_message(&self, user: &str, text: &str) -> Result<(), ChatError> {
        self.inner.direct_message(user, text).await
    }
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
    let store = Store::connect(&firstline::store::ConnectOptions {
        url,
        max_connections: 2,
        sqlite_full_sync: false,
    })
    .await
    .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

async fn enqueue_posts(store: &Store, texts: &[&str]) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let inc = tx
        .insert_incident(&firstline::store::NewIncident {
            runbook_id: None,
            group_key: "g",
            title: "t",
            severity: "P2",
            labels: "{}".into(),
            impact_start: None,
            detected: Millis(1),
        })
        .await
        .unwrap();
    for text in texts {
        tx.enqueue(
            Some(inc.id),
            "chat_post",
            &json!({"channel": "#incidents", "text": text}),
            Millis(0),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    inc.id
}

fn settings() -> OutboxSettings {
    OutboxSettings {
        max_attempts: 5,
        base_backoff_ms: 1,
        max_backoff_ms: 1,
        poll_interval_ms: 10,
    }
}

#[tokio::test]
async fn a_failing_platform_is_retried_and_the_thread_keeps_its_order() {
    let (store, _dir) = store().await;
    let id = enqueue_posts(&store, &["first", "second"]).await;
    let clock = Arc::new(SystemClock);
    let platform = Arc::new(Flaky {
        inner: Console::new(store.clone(), clock.clone(), Sink::Silent),
        failures: AtomicUsize::new(2),
        calls: AtomicUsize::new(0),
    });
    let dispatcher = Dispatcher::new(
        store.clone(),
        ChatPoster::new(store.clone(), platform.clone(), clock.clone()),
        clock,
        settings(),
        Arc::new(Notify::new()),
    );

    let first = dispatcher.step().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = dispatcher.step().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let third = dispatcher.step().await.unwrap();

    assert_eq!(
        (first.failed, first.delivered),
        (1, 0),
        "'second' is held back behind the failed 'first'"
    );
    assert_eq!((second.failed, second.delivered), (1, 0));
    assert_eq!(third.delivered, 2);
    let posts = store.chat_posts(Some(id), 10).await.unwrap();
    let texts: Vec<_> = posts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(texts, ["first", "second"]);
    assert_eq!(store.gauges().await.unwrap().outbox_pending, 0);
}

#[tokio::test]
async fn an_intent_posted_just_before_a_crash_is_not_shown_twice() {
    let (store, _dir) = store().await;
    let id = enqueue_posts(&store, &["only once"]).await;
    let item = store
        .due_outbox(Millis(i64::MAX / 2), 10, "chat_post")
        .await
        .unwrap()
        .remove(0);
    // The platform posted it, then the process died before marking it.
    let posted = ChatPost {
        id: 0,
        outbox_id: Some(item.id),
        platform: "console".into(),
        channel: "#incidents".into(),
        thread: None,
        message_ref: format!("console-{}", item.id),
        incident_id: Some(id),
        text: "only once".into(),
        posted_ms: 1,
    };
    assert!(store.record_post(&posted).await.unwrap());
    let clock = Arc::new(SystemClock);
    let console = Arc::new(Console::new(store.clone(), clock.clone(), Sink::Silent));
    let dispatcher = Dispatcher::new(
        store.clone(),
        ChatPoster::new(store.clone(), console, clock.clone()),
        clock,
        settings(),
        Arc::new(Notify::new()),
    );

    let report = dispatcher.step().await.unwrap();

    assert_eq!(report.delivered, 1, "the redelivery completes the intent");
    assert_eq!(
        store.chat_posts(Some(id), 10).await.unwrap().len(),
        1,
        "and shows nothing twice"
    );
    assert_eq!(store.gauges().await.unwrap().outbox_pending, 0);
}

#[tokio::test]
async fn an_intent_that_keeps_failing_is_parked_as_dead_after_max_attempts() {
    let (store, _dir) = store().await;
    enqueue_posts(&store, &["doomed"]).await;
    let clock = Arc::new(SystemClock);
    let platform = Arc::new(Flaky {
        inner: Console::new(store.clone(), clock.clone(), Sink::Silent),
        failures: AtomicUsize::new(usize::MAX / 2),
        calls: AtomicUsize::new(0),
    });
    let dispatcher = Dispatcher::new(
        store.clone(),
        ChatPoster::new(store.clone(), platform.clone(), clock.clone()),
        clock,
        settings(),
        Arc::new(Notify::new()),
    );

    for _ in 0..10 {
        dispatcher.step().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }

    assert_eq!(
        platform.calls.load(Ordering::SeqCst),
        5,
        "outbox.max_attempts bounds the attempts"
    );
    let gauges = store.gauges().await.unwrap();
    assert_eq!((gauges.outbox_pending, gauges.outbox_dead), (0, 1));
}
