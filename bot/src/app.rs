//! Wiring: builds the store, the ledger, the chat platform, the dispatcher
//! and the HTTP server from a [`Config`], and runs them until shutdown.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::action::worker::ActionRunner;
use crate::chat::console::{Console, Sink};
use crate::chat::discord::Discord;
use crate::chat::discord::gateway::Gateway;
use crate::chat::discord::interactions::Interactions;
use crate::chat::handler::{self, CommandContext};
use crate::chat::messages::Messages;
use crate::chat::platform::Platform;
use crate::chat::slack::Slack;
use crate::chat::slack::inbound::Inbound;
use crate::chat::slack::socket::SocketMode;
use crate::chat::storm::Storms;
use crate::config::Config;
use crate::domain::State;
use crate::domain::time::{Clock, Millis, SystemClock};
use crate::escalation::engine::Engine;
use crate::escalation::pages::PageSender;
use crate::http::{self, AppState, Shared};
use crate::incident::{Change, Ledger, Rules};
use crate::intake::journal::{Journal, JournalSettings, JournalTasks};
use crate::outbox::{ChatPoster, Dispatcher};
use crate::pager::Pagers;
use crate::runbook::load::Catalog;
use crate::runbook::recovery::RecoveryWatcher;
use crate::runbook::worker::RunbookRunner;
use crate::store::{ConnectOptions, JournalStore, Store, StoreLock};
use crate::telemetry;
use crate::text::redact_url;

/// The longest a pager waits for its far side (an SMTP server, Twilio,
/// PagerDuty, a webhook) before the next channel is tried.
const PAGER_TIMEOUT: Duration = Duration::from_secs(10);
/// Incidents whose pages go out at the same time (one incident's pages go
/// in turn).
const PAGES_AT_ONCE: usize = 16;

/// Incidents whose actions run at the same time (one incident's tries go
/// in turn, and one change at a time).
const ACTIONS_AT_ONCE: usize = 8;
/// How often proposals past their time are looked for.
const EXPIRY_SWEEP: Duration = Duration::from_secs(5);

/// A built, not yet running, firstline.
pub struct App {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    store: Store,
    dispatcher: Dispatcher<ChatPoster<Platform>>,
    /// Storm mode's summaries (`chat::storm`), on the chat platform.
    storm_watch: (Arc<Storms>, Arc<Platform>),
    runner: Dispatcher<RunbookRunner>,
    recovery: Dispatcher<RecoveryWatcher>,
    /// Pages: a step's, a person's, PagerDuty's events.
    pages: Dispatcher<PageSender<Platform>>,
    /// Fires escalation steps as they fall due.
    engine: Engine,
    /// Tries of approved proposals (`action`).
    actions: Dispatcher<ActionRunner>,
    commands: CommandContext,
    /// Slack's Socket Mode listener, when `chat.slack.mode` is `socket`.
    socket: Option<SocketMode>,
    /// Discord's gateway (reactions), when `chat.discord` is configured.
    gateway: Option<Gateway>,
    config: Config,
    clock: Arc<dyn Clock>,
    writer: tokio::task::AbortHandle,
    journal: JournalStore,
    journal_tasks: JournalTasks,
    stop: watch::Sender<bool>,
    /// This process's claim on the store, held until `run` returns.
    lock: StoreLock,
    /// Shared with `/readyz`: set while the lock may be lost.
    lock_lost: Arc<std::sync::Mutex<Option<String>>>,
}

fn connect_options(config: &Config) -> ConnectOptions {
    let s = &config.settings.store;
    ConnectOptions {
        url: s.url.clone(),
        max_connections: s.max_connections,
        sqlite_full_sync: s.sqlite_synchronous == "full",
    }
}

/// Takes the store's one-process lock (see [`StoreLock`]); the first
/// thing a command that writes does, before it opens anything.
pub async fn lock_store(config: &Config) -> anyhow::Result<StoreLock> {
    let url = &config.settings.store.url;
    StoreLock::acquire(url).await.map_err(|e| match e {
        crate::store::StoreError::Locked(m) => anyhow::anyhow!(m),
        other => anyhow::anyhow!("cannot lock the store at {}: {other}", redact_url(url)),
    })
}

/// Connects to the configured store without writing: no lock, no
/// migrations (a schema older than this binary is an error that says to
/// migrate), every transaction read-only. For `incident list/show/export`,
/// which may run beside `serve`.
pub async fn open_store_read_only(config: &Config) -> anyhow::Result<Store> {
    let s = &config.settings.store;
    let store = Store::connect_read_only(&connect_options(config))
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(&s.url)))?;
    if let Err(e) = store.check_schema().await {
        store.close().await;
        return Err(anyhow::anyhow!(e));
    }
    Ok(store)
}

/// Connects to the configured store and applies its migrations. The
/// caller holds the store's lock ([`lock_store`]).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let s = &config.settings.store;
    let store = Store::connect(&connect_options(config))
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(&s.url)))?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

impl App {
    /// Builds everything and binds the listener (port 0 picks a free one).
    pub async fn build(config: Config, sink: Sink) -> anyhow::Result<App> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Before any task starts: a metric recorded before the recorder is
        // installed is lost (the applier lists its counters at start-up).
        let metrics = telemetry::metrics_handle();
        http::hooks::register_metrics();
        metrics::counter!("firstline_outbox_delivered_total").increment(0);
        metrics::counter!("firstline_outbox_failures_total").increment(0);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // Before anything is opened: a second process must not touch the
        // first one's journal (see `store::lock`).
        let lock = lock_store(&config).await?;
        let lock_lost = Arc::new(std::sync::Mutex::new(None));
        let store = open_store(&config).await?;
        let messages = Messages::new(config.timezone);
        // Targets are not held against runbooks here: a check whose target
        // is missing reports that as its finding, so the rest still runs.
        let (catalog, problems) = Catalog::load(
            config.settings.runbooks.bundled,
            &config.settings.runbooks.dirs,
            None,
        );
        for p in &problems {
            if p.warning {
                warn!(problem = %p, "runbook warning");
            } else {
                warn!(problem = %p, "runbook not loaded");
            }
        }
        let missing: std::collections::BTreeSet<&str> = catalog
            .entries
            .iter()
            .flat_map(|e| e.runbook.checks.iter().map(|c| c.probe.target()))
            .filter(|t| !config.targets.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            warn!(
                "{} runbook target(s) not configured; `firstline runbook lint` lists them",
                missing.len()
            );
        }
        info!(
            runbooks = catalog.entries.len(),
            left_out = problems.iter().filter(|p| !p.warning).count(),
            "runbooks loaded"
        );
        let catalog = Arc::new(catalog);
        let targets = Arc::new(config.targets.clone());
        let rules = Arc::new(Rules {
            catalog: catalog.clone(),
            run_on_alert: config.settings.runbooks.run_on_alert,
            group_by: config.settings.incidents.group_by.clone(),
            severity_map: config.severity_map.clone(),
            default_severity: config.default_severity,
            on_all_alerts_resolved: if config.settings.incidents.on_all_alerts_resolved
                == "resolved"
            {
                State::Resolved
            } else {
                State::Mitigated
            },
            channel: config.settings.chat.channel.clone(),
            approval: config.approval.clone(),
            actions: config.action_env.clone(),
            messages: messages.clone(),
            escalation: config.escalation.clone(),
        });
        let rules_for_actions = rules.clone();
        let wake = Arc::new(Notify::new());
        let wake_runner = Arc::new(Notify::new());
        let wake_recovery = Arc::new(Notify::new());
        let wake_pages = Arc::new(Notify::new());
        let wake_engine = Arc::new(Notify::new());
        let wake_actions = Arc::new(Notify::new());
        let (ledger, writer) = Ledger::start(
            store.clone(),
            rules,
            clock.clone(),
            vec![
                wake.clone(),
                wake_runner.clone(),
                wake_recovery.clone(),
                wake_pages.clone(),
                wake_engine.clone(),
                wake_actions.clone(),
            ],
            config.settings.intake.queue_capacity,
            config.settings.store.batch_max,
        )
        .context("cannot start the incident writer")?;
        let (stop, stop_rx) = watch::channel(false);
        let journal_store = store
            .open_journal(&connect_options(&config))
            .await
            .context("cannot open the intake journal")?;
        let (journal, journal_tasks) = Journal::start(
            store.clone(),
            journal_store.clone(),
            ledger.clone(),
            clock.clone(),
            JournalSettings {
                queue_capacity: config.settings.intake.queue_capacity,
                batch_max: config.settings.store.batch_max,
                apply_interval: Duration::from_millis(config.settings.store.apply_interval_ms),
                max_backlog: config.settings.intake.max_backlog as i64,
            },
            stop_rx,
        )
        .await
        .context("cannot read the intake journal")?;
        let slack = match &config.slack {
            Some(cfg) => {
                let slack = Slack::new(cfg).map_err(|e| anyhow::anyhow!("Slack: {e}"))?;
                slack
                    .check(&config.settings.chat.channel)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Some(slack)
            }
            None => None,
        };
        let discord_client = match &config.discord {
            Some(cfg) => Some(Discord::new(cfg).map_err(|e| anyhow::anyhow!("Discord: {e}"))?),
            None => None,
        };
        let platform = Arc::new(match (&slack, &discord_client) {
            (Some(s), _) => Platform::Slack(s.clone()),
            (None, Some(d)) => Platform::Discord(d.clone()),
            (None, None) => Platform::Console(Console::new(store.clone(), clock.clone(), sink)),
        });
        let storms = Arc::new(Storms::new(
            store.clone(),
            clock.clone(),
            messages.clone(),
            config.settings.chat.storm_threshold,
            Duration::from_secs(config.settings.chat.storm_window_s.into()),
        ));
        let storm_watch = (storms.clone(), platform.clone());
        let engine = Engine::new(store.clone(), ledger.clone(), clock.clone(), wake_engine);
        let pagers = Pagers::build(&config.pagers, PAGER_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("pagers: {e}"))?;
        let pages = Dispatcher::new(
            store.clone(),
            PageSender {
                store: store.clone(),
                ledger: ledger.clone(),
                platform: platform.clone(),
                pagers: Arc::new(pagers),
                escalation: config.escalation.clone(),
                messages: messages.clone(),
                clock: clock.clone(),
                channel: config.settings.chat.channel.clone(),
                owner: engine.owner().to_string(),
            },
            clock.clone(),
            config.settings.outbox.clone(),
            wake_pages,
        )
        .with_parallel(PAGES_AT_ONCE);
        let dispatcher = Dispatcher::new(
            store.clone(),
            ChatPoster::new(store.clone(), platform, clock.clone())
                .with_catalog(catalog.clone())
                .with_storms(storms),
            clock.clone(),
            config.settings.outbox.clone(),
            wake.clone(),
        );
        let runner = Dispatcher::new(
            store.clone(),
            RunbookRunner {
                catalog: catalog.clone(),
                targets: targets.clone(),
                ledger: ledger.clone(),
                clock: clock.clone(),
                concurrency: config.settings.runbooks.concurrency,
            },
            clock.clone(),
            config.settings.outbox.clone(),
            wake_runner,
        )
        .with_parallel(config.settings.runbooks.max_parallel_runs);
        let recovery = Dispatcher::new(
            store.clone(),
            RecoveryWatcher {
                catalog: catalog.clone(),
                targets: targets.clone(),
                ledger: ledger.clone(),
                clock: clock.clone(),
            },
            clock.clone(),
            config.settings.outbox.clone(),
            wake_recovery,
        );
        let actions = Dispatcher::new(
            store.clone(),
            ActionRunner {
                store: store.clone(),
                ledger: ledger.clone(),
                rules: rules_for_actions,
                targets: targets.clone(),
                clock: clock.clone(),
                settle: Duration::from_secs(config.settings.actions.verify_after_s),
            },
            clock.clone(),
            config.settings.outbox.clone(),
            wake_actions,
        )
        .with_parallel(ACTIONS_AT_ONCE);
        let commands = CommandContext {
            ledger: ledger.clone(),
            progress: journal.progress().clone(),
            store: store.clone(),
            messages: messages.clone(),
            catalog: catalog.clone(),
            targets: targets.clone(),
            concurrency: config.settings.runbooks.concurrency,
            channel: config.settings.chat.channel.clone(),
            posts_wake: wake.clone(),
            escalation: config.escalation.clone(),
            clock: clock.clone(),
            runs: Arc::new(tokio::sync::Semaphore::new(
                config.settings.runbooks.max_parallel_runs,
            )),
        };
        // What Slack sends: over HTTP (`/slack/*`) or through Socket Mode.
        let inbound = slack.map(|s| Inbound::new(s, commands.clone()));
        // What Discord sends (`/discord/interactions`), answered through
        // the same client incident posts go out with.
        let discord = discord_client.map(|d| Interactions::new(d, commands.clone()));
        let socket = inbound.clone().and_then(SocketMode::new);
        let gateway = match (&config.discord, &discord) {
            (Some(cfg), Some(interactions)) => {
                Some(Gateway::new(cfg, commands.clone(), interactions.clone()))
            }
            _ => None,
        };
        let state = AppState::new(Shared {
            store: store.clone(),
            ledger,
            journal,
            journal_store: journal_store.clone(),
            lock_lost: lock_lost.clone(),
            messages,
            tokens: Arc::new(config.tokens.clone()),
            api_tokens: config.api_tokens.clone(),
            console: config.console.clone(),
            max_body_bytes: config.settings.server.max_body_bytes,
            commands: commands.clone(),
            metrics,
            slack: inbound,
            discord,
            pagerduty_webhook: config.pagers.pagerduty_webhook.clone(),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (server.listen)", config.listen))?;
        Ok(App {
            listener,
            router: http::router(state),
            store,
            dispatcher,
            storm_watch,
            runner,
            recovery,
            pages,
            engine,
            actions,
            commands,
            socket,
            gateway,
            config,
            clock,
            writer,
            journal: journal_store,
            journal_tasks,
            stop,
            lock,
            lock_lost,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The intake journal (on SQLite a file of its own, on PostgreSQL a
    /// table of [`App::store`]).
    pub fn journal(&self) -> &JournalStore {
        &self.journal
    }

    /// Serves until `shutdown` resolves, then stops the background tasks.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            router,
            store,
            dispatcher,
            storm_watch,
            runner,
            recovery,
            pages,
            engine,
            actions,
            commands,
            socket,
            gateway,
            config,
            clock,
            writer,
            journal,
            journal_tasks,
            stop: stop_tx,
            lock,
            lock_lost,
        } = self;
        let stop_rx = stop_tx.subscribe();
        let lock = tokio::spawn(lock.keep(
            config.settings.store.url.clone(),
            lock_lost,
            stop_rx.clone(),
        ));
        let dispatcher = tokio::spawn(dispatcher.run(stop_rx.clone()));
        let (storms, platform) = storm_watch;
        let storm_watch = tokio::spawn(storms.watch(platform, stop_rx.clone()));
        let runner = tokio::spawn(runner.run(stop_rx.clone()));
        let recovery = tokio::spawn(recovery.run(stop_rx.clone()));
        let pages = tokio::spawn(pages.run(stop_rx.clone()));
        let engine = tokio::spawn(engine.run(stop_rx.clone()));
        let actions = tokio::spawn(actions.run(stop_rx.clone()));
        let expiry = tokio::spawn(crate::action::worker::expire_proposals(
            store.clone(),
            commands.ledger.clone(),
            clock.clone(),
            EXPIRY_SWEEP,
            stop_rx.clone(),
        ));
        let checkpointer = tokio::spawn(checkpoints(store.clone(), stop_rx.clone()));
        let janitor = tokio::spawn(prune_receipts(
            store.clone(),
            clock.clone(),
            config.clone(),
            stop_rx.clone(),
        ));
        let socket = socket.map(|s| tokio::spawn(s.run(stop_rx.clone())));
        let gateway = gateway.map(|g| tokio::spawn(g.run(stop_rx.clone())));
        if config.settings.chat.console_stdin && std::io::stdin().is_terminal() {
            tokio::spawn(console_stdin(commands.clone(), stop_rx.clone()));
        }
        info!(addr = %listener.local_addr()?, store = store.backend(), platform = %config.settings.chat.platform, "firstline is serving");
        for warning in config.exposure_warnings() {
            warn!("{warning}");
        }
        let server = &config.settings.server;
        let limits = http::serve::Limits {
            max_connections: server.max_connections,
            header_timeout: Duration::from_millis(server.header_timeout_ms),
            body_timeout: Duration::from_millis(server.body_timeout_ms),
        };
        http::serve::serve(listener, router, limits, shutdown)
            .await
            .context("HTTP server failed")?;
        info!("shutting down");
        let _ = stop_tx.send(true);
        if let Some(socket) = socket {
            let _ = socket.await;
        }
        if let Some(gateway) = gateway {
            let _ = gateway.await;
        }
        let _ = dispatcher.await;
        let _ = storm_watch.await;
        let _ = runner.await;
        let _ = recovery.await;
        let _ = engine.await;
        let _ = pages.await;
        let _ = actions.await;
        let _ = expiry.await;
        let _ = janitor.await;
        let _ = checkpointer.await;
        // What is journaled and not yet applied is applied at the next
        // start; nothing accepted is lost by stopping here.
        let _ = journal_tasks.applier.await;
        journal_tasks.writer.abort();
        drop(commands);
        writer.abort();
        journal.close().await;
        store.close().await;
        if let Ok(lock) = lock.await {
            lock.release().await;
        }
        Ok(())
    }
}

/// Keeps SQLite's WAL short with a checkpoint every second (see
/// `Store::checkpoint`), off the writer's path but for its short second pass.
async fn checkpoints(store: Store, mut stop: watch::Receiver<bool>) {
    if store.backend() != "sqlite" {
        return;
    }
    loop {
        if let Err(e) = store.checkpoint().await {
            warn!(error = %e, "WAL checkpoint failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Applies seed 000's receipt rules: TTL days, then a MAX count, oldest
/// first; at start-up and every second, so that during an alert storm the
/// table stays near its cap (a small table keeps its index cheap to write).
async fn prune_receipts(
    store: Store,
    clock: Arc<dyn Clock>,
    config: Config,
    mut stop: watch::Receiver<bool>,
) {
    let ttl_ms = config.settings.intake.receipt_ttl_days as i64 * 86_400_000;
    let max = config.settings.intake.max_receipts as i64;
    loop {
        match store
            .prune_receipts(Millis(clock.now().0 - ttl_ms), max)
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(
                pruned = n,
                "receipts pruned (intake.receipt_ttl_days / intake.max_receipts)"
            ),
            Err(e) => warn!(error = %e, "receipt pruning failed; will retry"),
        }
        // Chat platforms retry an event within minutes; a day is plenty.
        if let Err(e) = store
            .prune_events_seen(Millis(clock.now().0 - 86_400_000))
            .await
        {
            warn!(error = %e, "pruning seen chat events failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Reads commands typed into the terminal: `/incident ack INC-1`, or
/// `react MESSAGE_REF EMOJI` to react to a post.
async fn console_stdin(ctx: CommandContext, mut stop: watch::Receiver<bool>) {
    let user = std::env::var("USER").unwrap_or_else(|_| "console".into());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    eprintln!("console: type /help for commands, `react MESSAGE_REF EMOJI` to react to a post");
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = stop.changed() => return,
        };
        let Ok(Some(line)) = line else { return };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let reply = if let Some(rest) = line.strip_prefix("react ") {
            react(&ctx, &user, rest).await
        } else {
            let me = crate::approval::Identity::new("console", &user);
            handler::handle_by(&ctx, &user, Some(&me), line, None)
                .await
                .text
        };
        println!("{reply}");
    }
}

async fn react(ctx: &CommandContext, user: &str, rest: &str) -> String {
    let mut parts = rest.split_whitespace();
    let (Some(message_ref), Some(emoji)) = (parts.next(), parts.next()) else {
        return "usage: react MESSAGE_REF EMOJI (e.g. react console-3 white_check_mark)".into();
    };
    let emoji = emoji.trim_matches(':');
    if let Err(e) = handler::check_reaction(user, emoji, message_ref) {
        return e;
    }
    match ctx.store.post_by_ref("console", message_ref).await {
        Ok(Some(post)) => match post.incident_id {
            Some(id) => {
                let change = Change::Reaction {
                    id,
                    emoji: emoji.into(),
                    message_ref: message_ref.into(),
                    removed: false,
                    // Typed at the terminal the bot runs in.
                    by: Some(crate::approval::Identity::new("console", user)),
                };
                match ctx.ledger.change(user, change).await {
                    Ok(o) => o.answer,
                    Err(e) => e.to_string(),
                }
            }
            None => "that post belongs to no incident".into(),
        },
        Ok(None) => format!("no console post {message_ref}"),
        Err(e) => format!("could not look the post up: {e}"),
    }
}
