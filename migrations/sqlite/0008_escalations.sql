-- Escalations (see `escalation::engine`): one row per incident whose
-- severity has a policy. `next_k` counts steps through every round (a
-- policy of 2 steps repeated twice has steps 0..5, and step 6 is its
-- exhaustion); `due_ms` is when it fires. The engine claims due rows with a
-- lease (`lease_until_ms`, `lease_owner`), so a process that dies holding
-- one leaves it to be claimed again once the lease runs out; firing a step
-- re-reads the row in the ledger's transaction, so a step whose escalation
-- was stopped (an acknowledgement) or moved on never fires. `run` counts
-- the escalation's starts (a reopened incident starts again): a page
-- written for an earlier run, or for a stopped one, is never sent.
-- `pagerduty` is set once a page went to PagerDuty, whose event is then
-- acknowledged and resolved with the incident.
CREATE TABLE escalations (
    incident_id    BIGINT  PRIMARY KEY REFERENCES incidents (id),
    run            BIGINT  NOT NULL DEFAULT 1,
    severity       TEXT    NOT NULL,
    started_ms     BIGINT  NOT NULL,
    next_k         BIGINT  NOT NULL,
    due_ms         BIGINT,
    state          TEXT    NOT NULL,
    reason         TEXT,
    pagerduty      BOOLEAN NOT NULL DEFAULT FALSE,
    lease_until_ms BIGINT  NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    updated_ms     BIGINT  NOT NULL
);
CREATE INDEX escalations_due ON escalations (state, due_ms);
-- Which process claimed a pending item (a page being sent). One process
-- serves a store at a time (`store::lock`), so at start-up the claims of
-- an earlier, dead process are released at once instead of waiting out
-- their lease.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
-- The dispatchers' look for due items walks pending items of one kind in
-- id order and stops after a batch, however large the backlog.
CREATE INDEX outbox_pending ON outbox (kind, id) WHERE status = 'pending';
