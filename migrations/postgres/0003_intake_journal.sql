-- The intake journal: deliveries accepted (durable, answered 2xx) and not
-- yet applied to incidents, and how far the incident writer has applied
-- them. On SQLite the journal is a separate file (see migrations/sqlite);
-- here row locks let both live in one database.
CREATE TABLE intake_journal (
    seq          BIGINT PRIMARY KEY,
    received_ms  BIGINT NOT NULL,
    source       TEXT   NOT NULL,
    payload      TEXT   NOT NULL
);
CREATE TABLE intake_applied (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL
);
INSERT INTO intake_applied (id, seq) VALUES (1, 0);
