-- keygate schema 2 (PostgreSQL): key tiers and the request log. Once landed, never edit this file.
--
-- keys.tier: a named rate-limit tier of the profile; NULL = the profile's default. Keys created
-- before this migration read back with tier NULL (adding a nullable column rewrites nothing).
ALTER TABLE keys ADD COLUMN tier text;

-- One row per request made with a key, appended in batches off the hot path. id is the insertion
-- order, the tie-break of equal times.
--
-- key_id has no foreign key on purpose: a per-row foreign key check makes the batch insert about
-- 1.5 times slower. The store keeps the log consistent instead: appendRequests inserts only rows
-- whose key it finds and locks (FOR KEY SHARE), and deleteKey deletes the key's log in its
-- transaction, under its lock on the key. Nothing else may write this table.
CREATE TABLE request_log (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key_id     text             NOT NULL,
  at         bigint           NOT NULL,
  ip         text             NOT NULL,
  method     text             NOT NULL,
  path       text             NOT NULL,
  status     integer          NOT NULL,
  latency_ms double precision NOT NULL
);

-- A key's log by time, newest first with the tie-break; also deleteKey's lookup.
CREATE INDEX request_log_key_at_idx ON request_log (key_id, at, id);
-- purgeRequests by age.
CREATE INDEX request_log_at_idx ON request_log (at);
