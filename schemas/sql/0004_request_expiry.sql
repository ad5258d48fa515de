-- 0004: request ids are remembered for a day, not forever. Each row keeps the
-- hybrid-logical-clock time of the command that wrote it, and every new row
-- removes the rows a day older than itself: the same rows on every replica,
-- since the time comes from the command. Rows written before this migration
-- have time 0 and go with the first write after it.
ALTER TABLE requests ADD COLUMN ts_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX requests_by_time ON requests (ts_ms);
