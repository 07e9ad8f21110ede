-- Journaled deliveries that failed to apply on their own, again and again,
-- while the store answered (a "poison" alert). The applier sets each aside
-- here, with the error, and moves on; they are kept for inspection
-- (`/readyz` and `/metrics` count them).
CREATE TABLE dead_deliveries (
    seq           BIGINT PRIMARY KEY,
    received_ms   BIGINT NOT NULL,
    source        TEXT   NOT NULL,
    payload       TEXT   NOT NULL,
    error         TEXT   NOT NULL,
    set_aside_ms  BIGINT NOT NULL
);
