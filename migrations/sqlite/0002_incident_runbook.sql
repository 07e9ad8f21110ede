ALTER TABLE incidents ADD COLUMN runbook_id TEXT;
