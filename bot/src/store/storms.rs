//! Alert storms (see `chat::storm`): the storm rows, holding and releasing
//! incidents' root posts, and the measures the storm is judged by.

use super::{Result, Store, StoreTx};
use crate::domain::time::Millis;

/// One storm in one channel, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Storm {
    pub id: i64,
    pub channel: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    /// Incidents whose root post it holds (or held).
    pub held: i64,
    /// The summary's counts, JSON (`chat::storm::Tally`).
    pub tally: String,
    pub updated_ms: i64,
    /// The outbox item that posts the summary.
    pub summary_outbox: Option<i64>,
    /// The summary message, once posted.
    pub message_ref: Option<String>,
    /// When the summary last showed `updated_ms`'s state.
    pub shown_ms: Option<i64>,
}

const STORM_COLUMNS: &str = "id, channel, started_ms, ended_ms, held, tally, updated_ms, summary_outbox, message_ref, shown_ms";

/// Holds a pending item unless a person acted on its incident: a timeline
/// event of a person's kind whose actor is not a machine (alert senders and
/// `firstline` itself).
static HOLD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let machines = ["firstline"]
        .into_iter()
        .chain(crate::domain::alert::Source::ALL.map(|s| s.as_str()))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "UPDATE outbox SET status = 'held' WHERE id = $1 AND status = 'pending'
           AND NOT EXISTS (SELECT 1 FROM timeline t WHERE t.incident_id = outbox.incident_id
             AND t.kind IN ('opened', 'state_changed', 'severity_changed', 'note', 'followup', 'runbook_requested', 'reaction')
             AND t.actor NOT IN ({machines}))"
    )
});

impl Store {
    /// Incidents opened after `since`: how fast a channel is filling.
    pub async fn incidents_opened_since(&self, since: Millis) -> Result<i64> {
        Ok(on_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM incidents WHERE detected_ms > $1")
            .bind(since.0).fetch_one(p).await?))
    }

    /// The channel's storm under way, if any.
    pub async fn open_storm(&self, channel: &str) -> Result<Option<Storm>> {
        let sql = format!(
            "SELECT {STORM_COLUMNS} FROM storms WHERE channel = $1 AND ended_ms IS NULL ORDER BY id DESC LIMIT 1"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(channel).fetch_optional(p).await?),
        )
    }

    /// Every storm under way (one a channel), and any ended one whose
    /// summary does not show its end yet: what the watch looks after.
    pub async fn storms_to_show(&self) -> Result<Vec<Storm>> {
        let sql = format!(
            "SELECT {STORM_COLUMNS} FROM storms WHERE ended_ms IS NULL OR shown_ms IS NULL OR shown_ms < updated_ms ORDER BY id"
        );
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(p).await?),
        )
    }

    /// Starts a storm in `channel`, with the outbox item that posts its
    /// summary (`summary`, a `chat_post` payload), in one transaction.
    pub async fn start_storm(
        &self,
        channel: &str,
        summary: &serde_json::Value,
        now: Millis,
    ) -> Result<Storm> {
        let _gate = self.write_gate().await;
        let (id, outbox): (i64, i64) = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let outbox: i64 = sqlx::query_scalar(
                "INSERT INTO outbox (incident_id, kind, payload, next_attempt_ms, created_ms) VALUES (NULL, 'chat_post', $1, $2, $2) RETURNING id")
                .bind(summary.to_string()).bind(now.0).fetch_one(&mut *tx).await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO storms (channel, started_ms, updated_ms, summary_outbox) VALUES ($1, $2, $2, $3) RETURNING id")
                .bind(channel).bind(now.0).bind(outbox).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (id, outbox)
        });
        Ok(Storm {
            id,
            channel: channel.to_string(),
            started_ms: now.0,
            ended_ms: None,
            held: 0,
            tally: "{}".into(),
            updated_ms: now.0,
            summary_outbox: Some(outbox),
            message_ref: None,
            shown_ms: None,
        })
    }

    /// Holds outbox item `outbox_id` (an incident's first post) for storm
    /// `storm`, whose counts are now `tally`; false if the storm has ended
    /// meanwhile, a person has acted on the incident, or the item is not
    /// pending. One transaction, the storm
    /// row first: `end_storm` waits for it, so a post is never held by a
    /// storm that already released its posts.
    pub async fn hold_post(
        &self,
        storm: i64,
        outbox_id: i64,
        tally: &str,
        now: Millis,
    ) -> Result<bool> {
        let _gate = self.write_gate().await;
        Ok(on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let open = sqlx::query(
                "UPDATE storms SET held = held + 1, tally = $1, updated_ms = $2 WHERE id = $3 AND ended_ms IS NULL")
                .bind(tally).bind(now.0).bind(storm).execute(&mut *tx).await?.rows_affected();
            let held = open == 1 && sqlx::query(sqlx::AssertSqlSafe(HOLD.clone()))
                .bind(outbox_id).execute(&mut *tx).await?.rows_affected() == 1;
            if held {
                tx.commit().await?;
            } else {
                tx.rollback().await?;
            }
            held
        }))
    }

    /// Records where the summary of storm `id` was posted.
    pub async fn storm_posted(&self, id: i64, message_ref: &str) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query("UPDATE storms SET message_ref = $1 WHERE id = $2")
            .bind(message_ref).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Records that the summary shows the storm as of `shown`.
    pub async fn storm_shown(&self, id: i64, shown: Millis) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query("UPDATE storms SET shown_ms = $1 WHERE id = $2")
            .bind(shown.0).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Ends storm `id`; its held posts stay held, to be let go a few at a
    /// time ([`Store::release_oldest_held`]).
    pub async fn end_storm(&self, id: i64, now: Millis) -> Result<()> {
        let _gate = self.write_gate().await;
        on_pool!(self, p => sqlx::query("UPDATE storms SET ended_ms = $1, updated_ms = $1 WHERE id = $2")
            .bind(now.0).bind(id).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Lets the `limit` oldest held posts go (due now); how many went.
    pub async fn release_oldest_held(&self, limit: i64, now: Millis) -> Result<u64> {
        let _gate = self.write_gate().await;
        Ok(on_pool!(self, p => sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_ms = $1
             WHERE id IN (SELECT id FROM outbox WHERE status = 'held' ORDER BY id LIMIT $2)")
            .bind(now.0).bind(limit).execute(p).await?.rows_affected()))
    }
}

impl StoreTx<'_> {
    /// Lets an incident's held posts go (a person acted on it, or it became
    /// P1): its root is posted at once, its thread follows.
    pub async fn release_held(&mut self, incident_id: i64, now: Millis) -> Result<u64> {
        Ok(on_tx!(self, c => sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_ms = $1 WHERE incident_id = $2 AND status = 'held'")
            .bind(now.0).bind(incident_id).execute(&mut *c).await?.rows_affected()))
    }
}
