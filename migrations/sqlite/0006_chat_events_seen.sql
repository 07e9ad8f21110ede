-- Events a chat platform delivered, by the platform's own id (Slack's
-- `event_id`): platforms re-send an event they think was not answered in
-- time, and one that was already handled must not act twice, also across a
-- restart. Rows older than a day are pruned (Slack retries within minutes).
CREATE TABLE chat_events_seen (
    platform  TEXT   NOT NULL,
    event_id  TEXT   NOT NULL,
    seen_ms   BIGINT NOT NULL,
    PRIMARY KEY (platform, event_id)
);
CREATE INDEX chat_events_seen_by_time ON chat_events_seen (seen_ms);
