-- Alert storms, per chat channel (see `chat::storm`). While more incidents
-- open in a minute than `chat.storm_threshold`, new incidents' root posts
-- are held (their outbox items wait with status 'held') and one summary
-- message in the channel, updated in place, stands for them. `tally` is the
-- summary's counts (severities, alert names, services, newest) as JSON.
-- The summary is first posted through the outbox (`summary_outbox`, so a
-- crash never posts it twice), then updated in place (`message_ref`).
CREATE TABLE storms (
    id            BIGSERIAL PRIMARY KEY,
    channel       TEXT    NOT NULL,
    started_ms    BIGINT  NOT NULL,
    ended_ms      BIGINT,
    held          BIGINT  NOT NULL DEFAULT 0,
    tally         TEXT    NOT NULL DEFAULT '{}',
    updated_ms    BIGINT  NOT NULL,
    summary_outbox BIGINT,
    message_ref   TEXT,
    shown_ms      BIGINT
);
CREATE INDEX storms_open ON storms (channel, ended_ms);
-- How many incidents opened in the last minute: the storm's measure.
CREATE INDEX incidents_detected ON incidents (detected_ms);
-- One incident's outbox items (a held root holds back the rest).
CREATE INDEX outbox_lane ON outbox (incident_id, status);
