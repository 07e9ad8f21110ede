-- Receipts are found by a 16-byte hash of (source, key) instead of the
-- text pair. The pair was ~100 bytes per index entry (an Alertmanager key
-- carries the groupKey, fingerprint, startsAt and status), and adding a
-- receipt for every alert of a storm to that wide random index was a third
-- of the incident writer's CPU and half of what it wrote to disk.
--
-- SQLite cannot drop a table constraint, so the table is rebuilt. It also
-- loses two things it paid for on every insert: AUTOINCREMENT (ids are
-- only an order for pruning, and nothing refers to them) and the index on
-- received_ms (receipts are pruned in id order, which is arrival order).
--
-- SQL has no SHA-256 here: `key_hash` stays NULL for the copied rows and
-- `Store::migrate` fills it in before anything reads it.
CREATE TABLE receipts_by_hash (
    id            INTEGER PRIMARY KEY,
    key_hash      BLOB    UNIQUE,
    source        TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    request_hash  TEXT,
    response      TEXT,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    received_ms   INTEGER NOT NULL
);
INSERT INTO receipts_by_hash (id, source, key, outcome, request_hash, response, duplicates, received_ms)
    SELECT id, source, key, outcome, request_hash, response, duplicates, received_ms FROM receipts ORDER BY id;
DROP TABLE receipts;
ALTER TABLE receipts_by_hash RENAME TO receipts;
