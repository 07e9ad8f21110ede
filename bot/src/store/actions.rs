//! Remediation proposals, their votes and their tries (see
//! `incident::actions`). Written in the ledger's transaction, except the
//! claim of a try, which commits before the action is sent.

use serde::Serialize;

use super::{Result, Store, StoreTx};
use crate::domain::time::Millis;

/// A proposal, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ProposalRow {
    pub id: i64,
    pub incident_id: i64,
    pub action_id: String,
    pub runbook_id: String,
    pub title: String,
    /// The action's `kind` in the runbook (restart, throttle, data_fix, …).
    pub category: String,
    /// `http`, `command`, `nats_publish`, `sql` or `manual`.
    pub run_kind: String,
    pub reversible: bool,
    /// JSON object of the parameters it was proposed with.
    pub params: String,
    /// Exactly what will run, secrets masked.
    pub described: String,
    pub hash: String,
    /// JSON array of the roles that may approve it.
    pub approvers: String,
    pub quorum: i64,
    pub two_person: bool,
    pub retry: Option<String>,
    pub proposer: String,
    pub proposer_identity: Option<String>,
    /// The post people react to.
    pub post_outbox_id: Option<i64>,
    pub state: String,
    pub reason: Option<String>,
    pub attempts: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub updated_ms: i64,
}

/// Proposal states.
pub mod state {
    pub const PROPOSED: &str = "proposed";
    pub const APPROVED: &str = "approved";
    pub const RUNNING: &str = "running";
    pub const RETRYING: &str = "retrying";
    pub const SUCCEEDED: &str = "succeeded";
    pub const VERIFIED: &str = "verified";
    pub const FAILED: &str = "failed";
    pub const UNKNOWN: &str = "unknown";
    pub const REJECTED: &str = "rejected";
    pub const EXPIRED: &str = "expired";
    pub const CANCELLED: &str = "cancelled";
    pub const DONE: &str = "done";
    /// A change under way: a second proposal on the incident waits (seed
    /// 002 §3.2, one change at a time).
    pub const IN_FLIGHT: [&str; 5] = [PROPOSED, APPROVED, RUNNING, RETRYING, SUCCEEDED];
}

impl ProposalRow {
    pub fn in_flight(&self) -> bool {
        state::IN_FLIGHT.contains(&self.state.as_str())
    }

    pub fn approver_roles(&self) -> Vec<String> {
        serde_json::from_str(&self.approvers).unwrap_or_default()
    }

    pub fn param_map(&self) -> std::collections::BTreeMap<String, String> {
        serde_json::from_str(&self.params).unwrap_or_default()
    }
}

/// A person's vote on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct VoteRow {
    pub proposal_id: i64,
    /// `slack:U…`, `console:sam`.
    pub identity: String,
    /// Their name, as shown.
    pub actor: String,
    /// `approve` or `reject`.
    pub vote: String,
    /// The proposal's hash when they voted.
    pub hash: String,
    pub at_ms: i64,
}

/// One try of an approved proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub proposal_id: i64,
    pub attempt: i64,
    pub idem_key: String,
    /// `sending`, `ok`, `failed` or `unknown`.
    pub state: String,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub summary: Option<String>,
    pub output: Option<String>,
}

/// Whether a try may be sent (see [`Store::claim_action_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunClaim {
    /// Recorded as sending: make the call.
    Go,
    /// It was recorded as sending before, by a process that did not live to
    /// record its result: the outcome is unknown, and it is not sent again.
    Unknown { started_ms: i64 },
    /// Its result is recorded already (a redelivered intent).
    Done,
    /// The proposal is not approved (any more): in this state.
    NotRunnable(String),
}

const COLUMNS: &str = "id, incident_id, action_id, runbook_id, title, category, run_kind, reversible, params, described, hash, approvers, quorum, two_person, retry, proposer, proposer_identity, post_outbox_id, state, reason, attempts, created_ms, expires_ms, updated_ms";
const RUN_COLUMNS: &str =
    "proposal_id, attempt, idem_key, state, started_ms, finished_ms, summary, output";

impl StoreTx<'_> {
    /// Inserts a proposal (its `id` is ignored) and returns its id.
    pub async fn insert_proposal(&mut self, p: &ProposalRow) -> Result<i64> {
        Ok(on_tx!(self, c => sqlx::query_scalar(
            "INSERT INTO action_proposals (incident_id, action_id, runbook_id, title, category, run_kind, reversible, params, described, hash, approvers, quorum, two_person, retry, proposer, proposer_identity, post_outbox_id, state, reason, attempts, created_ms, expires_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) RETURNING id")
            .bind(p.incident_id).bind(&p.action_id).bind(&p.runbook_id).bind(&p.title)
            .bind(&p.category).bind(&p.run_kind).bind(p.reversible).bind(&p.params)
            .bind(&p.described).bind(&p.hash).bind(&p.approvers).bind(p.quorum)
            .bind(p.two_person).bind(&p.retry).bind(&p.proposer).bind(&p.proposer_identity)
            .bind(p.post_outbox_id).bind(&p.state).bind(&p.reason).bind(p.attempts)
            .bind(p.created_ms).bind(p.expires_ms).bind(p.updated_ms)
            .fetch_one(&mut *c).await?))
    }

    /// A proposal, locked for the rest of the transaction on PostgreSQL.
    pub async fn proposal(&mut self, id: i64) -> Result<Option<ProposalRow>> {
        let lock = if matches!(self, StoreTx::Postgres(_)) {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT {COLUMNS} FROM action_proposals WHERE id = $1{lock}");
        Ok(
            on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id).fetch_optional(&mut *c).await?),
        )
    }

    /// The proposal whose post is outbox item `outbox_id`.
    pub async fn proposal_by_post(&mut self, outbox_id: i64) -> Result<Option<ProposalRow>> {
        let sql = format!("SELECT {COLUMNS} FROM action_proposals WHERE post_outbox_id = $1");
        Ok(
            on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(outbox_id).fetch_optional(&mut *c).await?),
        )
    }

    /// The incident's proposals, oldest first.
    pub async fn proposals_of(&mut self, incident_id: i64) -> Result<Vec<ProposalRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM action_proposals WHERE incident_id = $1 ORDER BY id");
        Ok(
            on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(incident_id).fetch_all(&mut *c).await?),
        )
    }

    /// Writes a proposal's state, reason, post, attempts.
    pub async fn update_proposal(&mut self, p: &ProposalRow) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "UPDATE action_proposals SET state = $2, reason = $3, post_outbox_id = $4, attempts = $5, updated_ms = $6 WHERE id = $1")
            .bind(p.id).bind(&p.state).bind(&p.reason).bind(p.post_outbox_id).bind(p.attempts)
            .bind(p.updated_ms).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }

    pub async fn votes(&mut self, proposal_id: i64) -> Result<Vec<VoteRow>> {
        Ok(on_tx!(self, c => sqlx::query_as(
            "SELECT proposal_id, identity, actor, vote, hash, at_ms FROM action_votes WHERE proposal_id = $1 ORDER BY at_ms, identity")
            .bind(proposal_id).fetch_all(&mut *c).await?))
    }

    /// Records a vote; false when the person had already cast it (a
    /// reaction delivered twice).
    pub async fn put_vote(&mut self, v: &VoteRow) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "INSERT INTO action_votes (proposal_id, identity, actor, vote, hash, at_ms) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (proposal_id, identity, vote) DO NOTHING")
            .bind(v.proposal_id).bind(&v.identity).bind(&v.actor).bind(&v.vote).bind(&v.hash).bind(v.at_ms)
            .execute(&mut *c).await?.rows_affected());
        Ok(n == 1)
    }

    /// Withdraws a vote; false when there was none.
    pub async fn delete_vote(
        &mut self,
        proposal_id: i64,
        identity: &str,
        vote: &str,
    ) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "DELETE FROM action_votes WHERE proposal_id = $1 AND identity = $2 AND vote = $3")
            .bind(proposal_id).bind(identity).bind(vote).execute(&mut *c).await?.rows_affected());
        Ok(n == 1)
    }

    /// Records a try's result.
    pub async fn finish_run(&mut self, r: &RunRow) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "UPDATE action_runs SET state = $3, finished_ms = $4, summary = $5, output = $6 WHERE proposal_id = $1 AND attempt = $2")
            .bind(r.proposal_id).bind(r.attempt).bind(&r.state).bind(r.finished_ms)
            .bind(&r.summary).bind(&r.output).execute(&mut *c).await.map(|_| ())?);
        Ok(())
    }
}

impl Store {
    /// Records try `attempt` of proposal `proposal_id` as sending, and
    /// commits, before the action goes out. A try already recorded is never
    /// sent again: if its result was recorded it is [`RunClaim::Done`],
    /// otherwise a process died between sending it and recording what
    /// happened, and its outcome is [`RunClaim::Unknown`].
    pub async fn claim_action_run(
        &self,
        proposal_id: i64,
        attempt: i64,
        key: &str,
        now: Millis,
    ) -> Result<RunClaim> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM action_runs WHERE proposal_id = $1 AND attempt = $2"
        );
        let found: Option<RunRow> = on_tx!(&mut tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(proposal_id).bind(attempt).fetch_optional(&mut *c).await?);
        let lock = if matches!(tx, StoreTx::Postgres(_)) {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT state FROM action_proposals WHERE id = $1{lock}");
        let state: Option<String> = on_tx!(&mut tx, c => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(proposal_id).fetch_optional(&mut *c).await?);
        let runnable = matches!(
            state.as_deref(),
            Some(state::APPROVED | state::RETRYING | state::RUNNING)
        );
        let claim = match found {
            Some(r) if r.state == "sending" => RunClaim::Unknown {
                started_ms: r.started_ms,
            },
            Some(_) => RunClaim::Done,
            None if !runnable => RunClaim::NotRunnable(state.unwrap_or_else(|| "gone".into())),
            None => {
                on_tx!(&mut tx, c => sqlx::query(
                    "UPDATE action_proposals SET state = 'running', attempts = $2, updated_ms = $3 WHERE id = $1")
                    .bind(proposal_id).bind(attempt).bind(now.0)
                    .execute(&mut *c).await.map(|_| ())?);
                on_tx!(&mut tx, c => sqlx::query(
                    "INSERT INTO action_runs (proposal_id, attempt, idem_key, state, started_ms) VALUES ($1, $2, $3, 'sending', $4)")
                    .bind(proposal_id).bind(attempt).bind(key).bind(now.0)
                    .execute(&mut *c).await.map(|_| ())?);
                RunClaim::Go
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    /// A proposal, for the action worker.
    pub async fn proposal(&self, id: i64) -> Result<Option<ProposalRow>> {
        let sql = format!("SELECT {COLUMNS} FROM action_proposals WHERE id = $1");
        Ok(
            on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(id).fetch_optional(p).await?),
        )
    }

    /// The incident's proposals, votes and tries, oldest first (the audit).
    pub async fn actions_of(
        &self,
        incident_id: i64,
    ) -> Result<(Vec<ProposalRow>, Vec<VoteRow>, Vec<RunRow>)> {
        let sql =
            format!("SELECT {COLUMNS} FROM action_proposals WHERE incident_id = $1 ORDER BY id");
        let proposals: Vec<ProposalRow> = on_pool!(self, p => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(incident_id).fetch_all(p).await?);
        let votes: Vec<VoteRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT v.proposal_id, v.identity, v.actor, v.vote, v.hash, v.at_ms FROM action_votes v
             JOIN action_proposals p ON p.id = v.proposal_id WHERE p.incident_id = $1 ORDER BY v.at_ms")
            .bind(incident_id).fetch_all(p).await?);
        let runs: Vec<RunRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT r.proposal_id, r.attempt, r.idem_key, r.state, r.started_ms, r.finished_ms, r.summary, r.output FROM action_runs r
             JOIN action_proposals p ON p.id = r.proposal_id WHERE p.incident_id = $1 ORDER BY r.proposal_id, r.attempt")
            .bind(incident_id).fetch_all(p).await?);
        Ok((proposals, votes, runs))
    }
}

impl StoreTx<'_> {
    /// The proposal whose post has the platform reference `message_ref`.
    pub async fn proposal_by_message(&mut self, message_ref: &str) -> Result<Option<ProposalRow>> {
        let cols: String = COLUMNS
            .split(", ")
            .map(|c| format!("p.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM action_proposals p JOIN chat_posts c ON c.outbox_id = p.post_outbox_id
             WHERE c.message_ref = $1 ORDER BY p.id DESC LIMIT 1"
        );
        Ok(
            on_tx!(self, c => sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
            .bind(message_ref).fetch_optional(&mut *c).await?),
        )
    }
}

impl Store {
    /// Proposals still waiting for approval whose time ran out.
    pub async fn expired_proposals(&self, now: Millis, limit: i64) -> Result<Vec<(i64, i64)>> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT incident_id, id FROM action_proposals WHERE state = 'proposed' AND expires_ms <= $1 ORDER BY expires_ms LIMIT $2")
            .bind(now.0).bind(limit).fetch_all(p).await?))
    }
}
