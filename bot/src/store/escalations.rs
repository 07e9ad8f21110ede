//! Escalations (see `escalation::engine`): one row per paging incident,
//! claimed with a lease when due, and the claim of a page before it is
//! sent (never once its escalation stopped).

use super::{Result, Store, StoreTx};
use crate::domain::time::Millis;

/// An incident's escalation, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EscalationRow {
    pub incident_id: i64,
    /// Starts of this incident's escalation (a reopened incident starts
    /// again); pages carry the run they were written for.
    pub run: i64,
    /// The severity whose policy runs.
    pub severity: String,
    pub started_ms: i64,
    /// The next step to fire, counted through every round; the policy's
    /// length is its exhaustion.
    pub next_k: i64,
    /// When `next_k` fires; `None` once stopped or exhausted.
    pub due_ms: Option<i64>,
    /// `running`, `stopped` or `exhausted`.
    pub state: String,
    /// Why it stopped (`acknowledged by ann`).
    pub reason: Option<String>,
    /// A page went to PagerDuty: its event follows the incident.
    pub pagerduty: bool,
    pub updated_ms: i64,
}

impl EscalationRow {
    pub const RUNNING: &'static str = "running";
    pub const STOPPED: &'static str = "stopped";
    pub const EXHAUSTED: &'static str = "exhausted";

    pub fn is_running(&self) -> bool {
        self.state == Self::RUNNING
    }
}

/// A due escalation the engine claimed: it asks the ledger to fire step
/// `next_k` of run `run`, which re-reads the row and fires only if both
/// still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimedStep {
    pub incident_id: i64,
    pub run: i64,
    pub next_k: i64,
    pub due_ms: i64,
}

/// Whether a page may go out (see [`Store::claim_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageClaim {
    /// Claimed: send it. Its item is leased until the claim's lease ends,
    /// so a process that dies sending it leaves it to be retried.
    Go,
    /// Its escalation stopped (or started again) since it was written: it
    /// is cancelled, for the reason given.
    Stopped(String),
    /// Not pending any more (delivered or cancelled meanwhile).
    Gone,
}

const COLUMNS: &str =
    "incident_id, run, severity, started_ms, next_k, due_ms, state, reason, pagerduty, updated_ms";

impl StoreTx<'_> {
    /// The incident's escalation, locked for the rest of the transaction
    /// on PostgreSQL (SQLite's write transaction already excludes other
    /// writers), so a step and an acknowledgement are decided one after
    /// the other.
    pub async fn escalation(&mut self, incident_id: i64) -> Result<Option<EscalationRow>> {
        let lock = if matches!(self, StoreTx::Postgres(_)) {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT {COLUMNS} FROM escalations WHERE incident_id = $1{lock}");
        Ok(
            on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(incident_id).fetch_optional(&mut *c).await?),
        )
    }

    /// Writes the escalation (inserted or replaced) and frees its lease.
    pub async fn put_escalation(&mut self, e: &EscalationRow) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO escalations (incident_id, run, severity, started_ms, next_k, due_ms, state, reason, pagerduty, lease_until_ms, lease_owner, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, NULL, $10)
             ON CONFLICT (incident_id) DO UPDATE SET run = excluded.run, severity = excluded.severity,
               started_ms = excluded.started_ms, next_k = excluded.next_k, due_ms = excluded.due_ms,
               state = excluded.state, reason = excluded.reason, pagerduty = excluded.pagerduty,
               lease_until_ms = 0, lease_owner = NULL, updated_ms = excluded.updated_ms")
            .bind(e.incident_id).bind(e.run).bind(&e.severity).bind(e.started_ms).bind(e.next_k)
            .bind(e.due_ms).bind(&e.state).bind(&e.reason).bind(e.pagerduty).bind(e.updated_ms)
            .execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }
}

impl Store {
    /// Claims up to `limit` running escalations due at `now` whose lease
    /// has run out, for `lease_ms`: oldest due first. On PostgreSQL rows
    /// another process is claiming are skipped (`SKIP LOCKED`), so several
    /// processes on one database share the work without waiting.
    pub async fn claim_due_escalations(
        &self,
        now: Millis,
        owner: &str,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedStep>> {
        let _gate = self.write_gate().await;
        let skip = if matches!(self, Store::Postgres(_)) {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE escalations SET lease_until_ms = $2, lease_owner = $3
             WHERE incident_id IN (SELECT incident_id FROM escalations
                 WHERE state = 'running' AND due_ms <= $1 AND lease_until_ms <= $1
                 ORDER BY due_ms LIMIT $4{skip})
             RETURNING incident_id, run, next_k, due_ms"
        );
        let mut claimed: Vec<ClaimedStep> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(now.0).bind(now.0.saturating_add(lease_ms)).bind(owner).bind(limit)
            .fetch_all(p).await?);
        claimed.sort_by_key(|c| (c.due_ms, c.incident_id));
        Ok(claimed)
    }

    /// When the next running escalation can be claimed (its step due, or
    /// its lease run out), to sleep until then.
    pub async fn next_escalation_due(&self) -> Result<Option<Millis>> {
        let v: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until_ms > due_ms THEN lease_until_ms ELSE due_ms END)
             FROM escalations WHERE state = 'running'")
            .fetch_one(p).await?);
        Ok(v.map(Millis))
    }

    /// The incident's escalation, for display.
    pub async fn escalation(&self, incident_id: i64) -> Result<Option<EscalationRow>> {
        let sql = format!("SELECT {COLUMNS} FROM escalations WHERE incident_id = $1");
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(incident_id).fetch_optional(p).await?),
        )
    }

    /// Claims page `outbox_id` before it is sent. A page of escalation run
    /// `run` is cancelled (never sent) if that run was stopped or replaced
    /// since the page was written; the check and the claim are one
    /// transaction that reads the escalation row under the same lock an
    /// acknowledgement takes, so an acknowledgement is either decided
    /// before (the page is cancelled) or after (the page was already on
    /// its way). A page typed by a person (`run` is `None`) is only
    /// claimed. The claim leases the item for `lease_ms`.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_page(
        &self,
        owner: &str,
        outbox_id: i64,
        incident_id: Option<i64>,
        run: Option<i64>,
        now: Millis,
        lease_ms: i64,
    ) -> Result<PageClaim> {
        let mut tx = self.begin().await?;
        if let (Some(incident), Some(run)) = (incident_id, run) {
            let e = tx.escalation(incident).await?;
            let stopped = match &e {
                None => Some("its escalation no longer exists".to_string()),
                Some(e) if e.run != run => {
                    Some("the escalation started again since it was written".to_string())
                }
                Some(e) if e.state == EscalationRow::STOPPED => Some(
                    e.reason
                        .clone()
                        .unwrap_or_else(|| "the escalation stopped".into()),
                ),
                Some(_) => None,
            };
            if let Some(reason) = stopped {
                let n = on_tx!(&mut tx, c => sqlx::query(
                    "UPDATE outbox SET status = 'cancelled', last_error = $1, delivered_ms = $2 WHERE id = $3 AND status = 'pending'")
                    .bind(&reason).bind(now.0).bind(outbox_id).execute(&mut *c).await?.rows_affected());
                tx.commit().await?;
                return Ok(if n == 1 {
                    PageClaim::Stopped(reason)
                } else {
                    PageClaim::Gone
                });
            }
        }
        let n = on_tx!(&mut tx, c => sqlx::query(
            "UPDATE outbox SET next_attempt_ms = $1, claimed_by = $3 WHERE id = $2 AND status = 'pending'")
            .bind(now.0.saturating_add(lease_ms)).bind(outbox_id).bind(owner).execute(&mut *c).await?.rows_affected());
        tx.commit().await?;
        Ok(if n == 1 {
            PageClaim::Go
        } else {
            PageClaim::Gone
        })
    }

    /// Releases what processes other than `owner` claimed (due steps,
    /// pages being sent): only one process serves a store at a time
    /// (`store::lock`), so they died holding them. Their steps and pages go
    /// at once rather than when the lease runs out. Returns how many
    /// (steps, pages) were released.
    pub async fn release_claims(&self, owner: &str, now: Millis) -> Result<(u64, u64)> {
        let _gate = self.write_gate().await;
        let steps = on_pool!(self, p => sqlx::query(
            "UPDATE escalations SET lease_until_ms = 0, lease_owner = NULL
             WHERE state = 'running' AND lease_owner IS NOT NULL AND lease_owner <> $1")
            .bind(owner).execute(p).await?.rows_affected());
        let pages = on_pool!(self, p => sqlx::query(
            "UPDATE outbox SET next_attempt_ms = $1, claimed_by = NULL
             WHERE status = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $2")
            .bind(now.0).bind(owner).execute(p).await?.rows_affected());
        Ok((steps, pages))
    }
}

impl StoreTx<'_> {
    /// Marks outbox item `id` delivered, in this transaction.
    pub async fn outbox_delivered(&mut self, id: i64, now: Millis) -> Result<()> {
        on_tx!(self, c => sqlx::query(super::OUTBOX_DELIVERED)
            .bind(now.0).bind(id).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }

    /// How many automatic attempts at `what` failed on the incident.
    pub async fn attempts_failed(&mut self, incident_id: i64, what: &str) -> Result<usize> {
        let rows: Vec<String> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT data FROM timeline WHERE incident_id = $1 AND kind = 'attempt_failed'")
            .bind(incident_id).fetch_all(&mut *c).await?);
        Ok(rows
            .iter()
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter(|d| d["what"] == what)
            .count())
    }

    /// Whoever last acknowledged the incident (the `assignee` a step may
    /// page when a reopened incident escalates again).
    pub async fn last_acknowledger(&mut self, incident_id: i64) -> Result<Option<String>> {
        Ok(on_tx!(self, c => sqlx::query_scalar(
            "SELECT actor FROM timeline WHERE incident_id = $1 AND kind = 'state_changed'
               AND data LIKE '%\"to\":\"acknowledged\"%' ORDER BY id DESC LIMIT 1")
            .bind(incident_id).fetch_optional(&mut *c).await?))
    }
}
