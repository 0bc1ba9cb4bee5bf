-- keygate schema 2 (SQLite): key tiers and the request log. Once landed, never edit this file.
--
-- keys.tier: a named rate-limit tier of the profile; NULL = the profile's default. Keys created
-- before this migration read back with tier NULL.
ALTER TABLE keys ADD COLUMN tier TEXT;

-- One row per request made with a key, appended in batches off the hot path. id (the rowid) is
-- the insertion order, the tie-break of equal times. Deleting a key deletes its log (cascade).
CREATE TABLE request_log (
  id         INTEGER NOT NULL PRIMARY KEY,
  key_id     TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  at         INTEGER NOT NULL,
  ip         TEXT    NOT NULL,
  method     TEXT    NOT NULL,
  path       TEXT    NOT NULL,
  status     INTEGER NOT NULL,
  latency_ms REAL    NOT NULL
) STRICT;

-- A key's log by time (SQLite ends every index with the rowid: (key_id, at, id)); also the cascade's lookup.
CREATE INDEX request_log_key_at_idx ON request_log (key_id, at);
-- purgeRequests by age.
CREATE INDEX request_log_at_idx ON request_log (at);
