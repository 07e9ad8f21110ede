-- Remediation actions (see `incident::actions`, `approval`, `action`).
-- A proposal is one action with its parameters, rendered into `described`
-- (exactly what will run, secrets masked) and bound to `hash`; approvals
-- count only for that hash. `post_outbox_id` is the chat post people react
-- to. States: proposed -> approved -> running (-> retrying) -> succeeded ->
-- verified, or failed / unknown / rejected / expired / cancelled; a manual
-- checklist item goes proposed -> done.
CREATE TABLE action_proposals (
    id                 BIGSERIAL PRIMARY KEY,
    incident_id        BIGINT  NOT NULL REFERENCES incidents (id),
    action_id          TEXT    NOT NULL,
    runbook_id         TEXT    NOT NULL,
    title              TEXT    NOT NULL,
    category           TEXT    NOT NULL,
    run_kind           TEXT    NOT NULL,
    reversible         BOOLEAN NOT NULL,
    params             TEXT    NOT NULL,
    described          TEXT    NOT NULL,
    hash               TEXT    NOT NULL,
    approvers          TEXT    NOT NULL,
    quorum             BIGINT  NOT NULL,
    two_person         BOOLEAN NOT NULL,
    retry              TEXT,
    proposer           TEXT    NOT NULL,
    proposer_identity  TEXT,
    post_outbox_id     BIGINT,
    state              TEXT    NOT NULL,
    reason             TEXT,
    attempts           BIGINT  NOT NULL DEFAULT 0,
    created_ms         BIGINT  NOT NULL,
    expires_ms         BIGINT  NOT NULL,
    updated_ms         BIGINT  NOT NULL
);
CREATE INDEX action_proposals_incident ON action_proposals (incident_id, id);
CREATE INDEX action_proposals_post ON action_proposals (post_outbox_id);
-- One vote per person and kind; withdrawing a reaction deletes it.
CREATE TABLE action_votes (
    proposal_id  BIGINT NOT NULL REFERENCES action_proposals (id),
    identity     TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    vote         TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (proposal_id, identity, vote)
);
-- Each try of an approved proposal. The row is written as 'sending' and
-- committed before the call goes out: a try found 'sending' after a crash
-- has an unknown outcome and is never made again by itself.
CREATE TABLE action_runs (
    proposal_id  BIGINT NOT NULL REFERENCES action_proposals (id),
    attempt      BIGINT NOT NULL,
    idem_key     TEXT   NOT NULL,
    state        TEXT   NOT NULL,
    started_ms   BIGINT NOT NULL,
    finished_ms  BIGINT,
    summary      TEXT,
    output       TEXT,
    PRIMARY KEY (proposal_id, attempt)
);
