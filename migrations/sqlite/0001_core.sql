-- firstline core schema (SQLite). Times are UTC milliseconds since the epoch;
-- JSON is stored as TEXT. Keep in step with migrations/postgres.

CREATE TABLE incidents (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    group_key         TEXT    NOT NULL,
    title             TEXT    NOT NULL,
    severity          TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    labels            TEXT    NOT NULL DEFAULT '{}',
    impact_start_ms   INTEGER,
    detected_ms       INTEGER NOT NULL,
    acknowledged_ms   INTEGER,
    mitigated_ms      INTEGER,
    resolved_ms       INTEGER,
    updated_ms        INTEGER NOT NULL,
    truncated_alerts  INTEGER NOT NULL DEFAULT 0,
    chat_thread       TEXT
);
CREATE INDEX incidents_open_by_group ON incidents (group_key, state);
CREATE INDEX incidents_state ON incidents (state);

CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id      INTEGER REFERENCES incidents (id),
    source           TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    starts_ms        INTEGER NOT NULL,
    ends_ms          INTEGER,
    labels           TEXT    NOT NULL,
    annotations      TEXT    NOT NULL,
    generator_url    TEXT,
    received_ms      INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL
);
CREATE INDEX alerts_identity ON alerts (source, fingerprint, starts_ms);
CREATE INDEX alerts_incident ON alerts (incident_id, status);

CREATE TABLE timeline (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    at_ms        INTEGER NOT NULL,
    actor        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    data         TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_incident ON timeline (incident_id, id);

CREATE TABLE receipts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    request_hash  TEXT,
    response      TEXT,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    received_ms   INTEGER NOT NULL,
    UNIQUE (source, key)
);
CREATE INDEX receipts_age ON receipts (received_ms);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id      INTEGER REFERENCES incidents (id),
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    delivered_ms     INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);

CREATE TABLE chat_posts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id    INTEGER UNIQUE REFERENCES outbox (id),
    platform     TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    thread       TEXT,
    message_ref  TEXT    NOT NULL,
    incident_id  INTEGER REFERENCES incidents (id),
    text         TEXT    NOT NULL,
    posted_ms    INTEGER NOT NULL
);
CREATE INDEX chat_posts_incident ON chat_posts (incident_id, id);
