-- How far the incident writer has applied the intake journal. The journal
-- itself is a separate SQLite file beside this one (`<db>-intake`), so that
-- appending to it never waits for the writer's larger transactions; this
-- row moves in the same transaction as the incidents it produced.
CREATE TABLE intake_applied (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL
);
INSERT INTO intake_applied (id, seq) VALUES (1, 0);
