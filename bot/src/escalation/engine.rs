//! The durable escalation engine: fires each incident's next step when it
//! falls due.
//!
//! Deadlines live in the store (`escalations`, one row per paging
//! incident), never only in memory. The engine claims due rows with a
//! lease (on PostgreSQL `FOR UPDATE SKIP LOCKED`, so several processes on
//! one database would share them) and hands each claim to the ledger,
//! which re-reads the row in its own transaction and fires the step only
//! if it is still running that run and that step (see
//! `incident::escalate::fire`). An acknowledgement goes through the same
//! ledger, so a step and an acknowledgement are decided one after the
//! other. A process that dies holding a claim leaves it to be claimed
//! again when the lease runs out; after a restart, overdue steps fire at
//! once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::domain::time::Clock;
use crate::incident::{Change, Ledger};
use crate::store::{Store, StoreError};

/// How long a claim holds a row: far longer than the ledger takes to fire
/// a step, so a claim runs out only when its process died.
pub const LEASE_MS: i64 = 30_000;
/// Rows claimed per look at the store.
const CLAIM: i64 = 512;
/// The longest sleep between looks (a row written by another process
/// wakes nobody here).
const POLL: Duration = Duration::from_secs(1);

/// What one [`Engine::step`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineReport {
    /// Steps claimed as due.
    pub claimed: usize,
    /// Claims the ledger refused (it logs why); their lease runs out and
    /// they are claimed again.
    pub failed: usize,
}

/// Fires due escalation steps through the ledger.
pub struct Engine {
    store: Store,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    /// Names this process on the rows it claims (for whoever reads them).
    owner: String,
}

impl Engine {
    pub fn new(store: Store, ledger: Ledger, clock: Arc<dyn Clock>, wake: Arc<Notify>) -> Engine {
        let owner = format!("pid-{}-{}", std::process::id(), clock.now().0);
        Engine {
            store,
            ledger,
            clock,
            wake,
            owner,
        }
    }

    /// The name this process claims rows under (pages use it too).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims every step due now and fires them, all at once, so the
    /// ledger commits them together.
    pub async fn step(&self) -> Result<EngineReport, StoreError> {
        let mut report = EngineReport::default();
        loop {
            let now = self.clock.now();
            let claimed = self
                .store
                .claim_due_escalations(now, &self.owner, LEASE_MS, CLAIM)
                .await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            let full = claimed.len() as i64 == CLAIM;
            report.claimed += claimed.len();
            let mut firing = JoinSet::new();
            for c in claimed {
                let ledger = self.ledger.clone();
                let lateness = now.0 - c.due_ms;
                metrics::histogram!("firstline_escalation_step_lateness_seconds")
                    .record(lateness.max(0) as f64 / 1000.0);
                firing.spawn(async move {
                    let change = Change::EscalationDue {
                        id: c.incident_id,
                        run: c.run,
                        k: c.next_k,
                    };
                    (c, ledger.change("firstline", change).await)
                });
            }
            while let Some(done) = firing.join_next().await {
                match done {
                    Ok((c, Ok(outcome))) => debug!(
                        incident_id = c.incident_id,
                        k = c.next_k,
                        what = %outcome.answer,
                        "escalation step"
                    ),
                    Ok((c, Err(e))) => {
                        report.failed += 1;
                        warn!(incident_id = c.incident_id, k = c.next_k, error = %e,
                            "escalation step could not be fired; it is tried again when its claim runs out")
                    }
                    Err(e) => {
                        report.failed += 1;
                        warn!(error = %e, "escalation step task ended abnormally")
                    }
                }
            }
            if !full {
                return Ok(report);
            }
        }
    }

    /// How long to sleep before the next row can be claimed.
    async fn until_next(&self) -> Duration {
        match self.store.next_escalation_due().await {
            Ok(Some(due)) => {
                let ms = (due.0 - self.clock.now().0).max(0) as u64;
                POLL.min(Duration::from_millis(ms))
            }
            _ => POLL,
        }
    }

    /// Fires steps as they fall due until `shutdown` turns true. Wakes
    /// when the ledger writes (an escalation started or re-planned), when
    /// the next step is due, and every second.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        match self
            .store
            .release_claims(&self.owner, self.clock.now())
            .await
        {
            Ok((0, 0)) => {}
            Ok((steps, pages)) => tracing::info!(
                steps,
                pages,
                "released what a process that stopped without finishing had claimed"
            ),
            Err(e) => warn!(error = %e, "escalation engine: could not release earlier claims"),
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.step().await {
                warn!(error = %e, "escalation engine: could not read the store");
            }
            let wait = self.until_next().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The engine with the ledger and a real SQLite store, on an injected
    //! clock: seed 003's 30-minute P1 policy runs in milliseconds.

    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::chat::messages::Messages;
    use crate::domain::State;
    use crate::domain::time::Millis;
    use crate::incident::Rules;
    use crate::store::ConnectOptions;

    /// A clock that moves only when told.
    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now(&self) -> Millis {
            Millis(self.0.load(Ordering::SeqCst))
        }
    }

    impl TestClock {
        fn advance(&self, ms: i64) {
            self.0.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Seed 003's P1: the tech lead at once, then the rotation; 5 minutes
    /// each, three rounds.
    const SEED_003_P1: &str = r#"
[contacts.tech_lead]
timezone = "Asia/Tokyo"
availability = "24/7"
page_via = ["chat_dm"]

[contacts.dba]
timezone = "Asia/Tokyo"
availability = "on_call"
page_via = ["chat_dm"]

[rotations.primary]
members = ["dba"]
handoff = "weekly Mon 10:00"

[escalation.P1]
steps = [
  { page = ["tech_lead"], ack_within = "5m" },
  { page = ["rotation:primary", "channel"], ack_within = "5m" },
]
repeat = 2
"#;

    struct Setup {
        engine: Engine,
        ledger: Ledger,
        store: Store,
        clock: Arc<TestClock>,
        _dir: tempfile::TempDir,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("firstline.toml");
        std::fs::write(&file, SEED_003_P1).expect("write config");
        let config = crate::config::load_with_env(Some(&file), Vec::new()).expect("valid config");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&ConnectOptions {
            url,
            max_connections: 4,
            sqlite_full_sync: false,
        })
        .await
        .expect("store");
        store.migrate().await.expect("migrate");
        // 2026-12-07 10:00 UTC, a Monday.
        let clock = Arc::new(TestClock(AtomicI64::new(1_796_637_600_000)));
        let rules = Arc::new(Rules {
            group_by: vec!["alertname".into()],
            severity_map: Default::default(),
            default_severity: crate::domain::Severity::P2,
            on_all_alerts_resolved: State::Resolved,
            channel: "#incidents".into(),
            messages: Messages::new(chrono_tz::UTC),
            catalog: Default::default(),
            run_on_alert: false,
            escalation: config.escalation.clone(),
            approval: config.approval.clone(),
            actions: config.action_env.clone(),
        });
        let (ledger, _) =
            Ledger::start(store.clone(), rules, clock.clone(), Vec::new(), 64, 64).expect("ledger");
        let engine = Engine::new(
            store.clone(),
            ledger.clone(),
            clock.clone(),
            Arc::new(Notify::new()),
        );
        Setup {
            engine,
            ledger,
            store,
            clock,
            _dir: dir,
        }
    }

    async fn declare(s: &Setup) -> i64 {
        let out = s
            .ledger
            .change(
                "sam",
                Change::Declare {
                    title: "checkout is down".into(),
                    severity: crate::domain::Severity::P1,
                },
            )
            .await
            .expect("declare");
        out.incident.id
    }

    async fn escalation_texts(s: &Setup, id: i64) -> Vec<String> {
        s.store
            .timeline_tail(id, 500)
            .await
            .expect("timeline")
            .into_iter()
            .filter(|e| e.kind == "escalation")
            .map(|e| e.text)
            .collect()
    }

    #[tokio::test]
    async fn seed_003s_p1_pages_every_five_minutes_for_three_rounds_then_runs_out() {
        let s = setup().await;
        let id = declare(&s).await;
        let mut fired = Vec::new();
        // Minute by minute through 35 simulated minutes.
        for minute in 0..=35 {
            let report = s.engine.step().await.expect("step");
            assert_eq!(report.failed, 0);
            if report.claimed > 0 {
                fired.push(minute);
            }
            s.clock.advance(60_000);
        }
        // Steps at 0, 5, 10, 15, 20, 25; exhausted at 30.
        assert_eq!(fired, [0, 5, 10, 15, 20, 25, 30]);
        let texts = escalation_texts(&s, id).await;
        assert!(
            texts[1].contains("step 1/2 of P1 (round 1/3): paging tech_lead"),
            "{texts:#?}"
        );
        assert!(
            texts[2].contains("step 2/2 of P1 (round 1/3): paging dba (chat_dm), the channel"),
            "{texts:#?}"
        );
        assert!(
            texts[6].contains("step 2/2 of P1 (round 3/3)"),
            "{texts:#?}"
        );
        assert!(texts[7].starts_with("escalation exhausted"), "{texts:#?}");
        assert_eq!(texts.len(), 8, "{texts:#?}");
    }

    #[tokio::test]
    async fn an_ack_at_minute_seven_means_nothing_fires_after_it() {
        let s = setup().await;
        let id = declare(&s).await;
        for _ in 0..7 {
            s.engine.step().await.expect("step");
            s.clock.advance(60_000);
        }
        s.ledger
            .change(
                "ann",
                Change::SetState {
                    id,
                    to: State::Acknowledged,
                    note: None,
                },
            )
            .await
            .expect("ack");
        for _ in 0..40 {
            let report = s.engine.step().await.expect("step");
            assert_eq!(report.claimed, 0, "a step was claimed after the ack");
            s.clock.advance(60_000);
        }
        let texts = escalation_texts(&s, id).await;
        assert!(
            texts
                .last()
                .is_some_and(|t| t
                    == "escalation stopped after step 2/2 of P1 (round 1/3): acknowledged by ann"),
            "{texts:#?}"
        );
    }

    #[tokio::test]
    async fn three_failed_automatic_attempts_page_the_next_step_at_once() {
        let s = setup().await;
        let id = declare(&s).await;
        s.engine.step().await.expect("step 1");
        let fail = |n: u32| Change::AutomaticAttemptFailed {
            id,
            what: "restart api-worker".into(),
            error: format!("exit status {n}"),
        };
        for n in 1..=2 {
            s.ledger
                .change("firstline", fail(n))
                .await
                .expect("attempt");
            assert_eq!(s.engine.step().await.expect("step").claimed, 0);
        }
        // Another thing failing does not count towards this one.
        s.ledger
            .change(
                "firstline",
                Change::AutomaticAttemptFailed {
                    id,
                    what: "rollback".into(),
                    error: "timeout".into(),
                },
            )
            .await
            .expect("attempt");
        let out = s
            .ledger
            .change("firstline", fail(3))
            .await
            .expect("attempt");
        assert!(
            out.answer
                .contains("3 automatic attempts at restart api-worker failed; step 2/2 of P1 (round 1/3) pages at once"),
            "{}",
            out.answer
        );
        // No time passes: step 2 is due now.
        assert_eq!(s.engine.step().await.expect("step").claimed, 1);
        let texts = escalation_texts(&s, id).await;
        assert!(
            texts.last().is_some_and(|t| t.contains("step 2/2")),
            "{texts:#?}"
        );

        // Once acknowledged, three more failures start the chain again
        // where it was, until acknowledged again.
        s.ledger
            .change(
                "firstline",
                Change::SetState {
                    id,
                    to: State::Acknowledged,
                    note: None,
                },
            )
            .await
            .expect("ack");
        for n in 4..=6 {
            s.ledger
                .change("firstline", fail(n))
                .await
                .expect("attempt");
        }
        assert_eq!(s.engine.step().await.expect("step").claimed, 1);
        let texts = escalation_texts(&s, id).await;
        assert!(
            texts
                .last()
                .is_some_and(|t| t.contains("step 1/2 of P1 (round 2/3)")),
            "{texts:#?}"
        );
    }
}
