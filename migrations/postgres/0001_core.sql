-- firstline core schema (PostgreSQL). Times are UTC milliseconds since the epoch;
-- JSON is stored as TEXT. Keep in step with migrations/sqlite.

CREATE TABLE incidents (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_key         TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    severity          TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    labels            TEXT    NOT NULL DEFAULT '{}',
    impact_start_ms   BIGINT,
    detected_ms       BIGINT NOT NULL,
    acknowledged_ms   BIGINT,
    mitigated_ms      BIGINT,
    resolved_ms       BIGINT,
    updated_ms        BIGINT NOT NULL,
    truncated_alerts  BIGINT NOT NULL DEFAULT 0,
    chat_thread       TEXT
);
CREATE INDEX incidents_open_by_group ON incidents (group_key, state);
CREATE INDEX incidents_state ON incidents (state);

CREATE TABLE alerts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id      BIGINT REFERENCES incidents (id),
    source           TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    starts_ms        BIGINT NOT NULL,
    ends_ms          BIGINT,
    labels           TEXT    NOT NULL,
    annotations      TEXT    NOT NULL,
    generator_url    TEXT,
    received_ms      BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);
CREATE INDEX alerts_identity ON alerts (source, fingerprint, starts_ms);
CREATE INDEX alerts_incident ON alerts (incident_id, status);

CREATE TABLE timeline (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    at_ms        BIGINT NOT NULL,
    actor        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    data         TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);

CREATE TABLE receipts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    request_hash  TEXT,
    response      TEXT,
    duplicates    BIGINT NOT NULL DEFAULT 0,
    received_ms   BIGINT NOT NULL,
    UNIQUE (source, key)
);
CREATE INDEX receipts_age ON receipts (received_ms);

CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id      BIGINT REFERENCES incidents (id),
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending',
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL,
    delivered_ms     BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);

CREATE TABLE chat_posts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id    BIGINT UNIQUE REFERENCES outbox (id),
    platform     TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    thread       TEXT,
    message_ref  TEXT    NOT NULL,
    incident_id  BIGINT REFERENCES incidents (id),
    text         TEXT    NOT NULL,
    posted_ms    BIGINT NOT NULL
);
CREATE INDEX chat_posts_incident ON chat_posts (incident_id, id);
