-- Receipts are found by a 16-byte hash of (source, key) instead of the
-- text pair, as on SQLite (see migrations/sqlite/0004_receipt_hash.sql for
-- why). `key_hash` stays NULL for existing rows until `Store::migrate`
-- fills it in, so that one definition of the hash (in Rust) serves both
-- backends. Receipts are pruned in id order, so the age index goes.
ALTER TABLE receipts ADD COLUMN key_hash BYTEA UNIQUE;
ALTER TABLE receipts DROP CONSTRAINT receipts_source_key_key;
DROP INDEX receipts_age;
