-- keygate schema 12 (SQLite): servers, the user's own app servers keygate fronts
-- (/v1/infra/servers, docs/servers.md). Once landed, never edit this file.
--
-- A server belongs to the key that registered it and to that key's user (the session's user for
-- an authorization key); while it exists the key has a row in key_dependents (kind "server"),
-- written in the same transaction, so DELETE /v1/keys/:id answers 409 KEY_HAS_ACTIVE_SERVERS.
-- blackhole_status is what the last background check found (docs/servers.md, "Reachability").
CREATE TABLE servers (
  id               TEXT    NOT NULL PRIMARY KEY,
  name             TEXT    NOT NULL,
  url              TEXT    NOT NULL,
  key_id           TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  user_id          TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  portal_id        TEXT    NOT NULL,
  blackhole_status TEXT    NOT NULL, -- CONNECTED, UNREACHABLE
  checked_at       INTEGER, -- NULL = not checked yet
  created_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX servers_key_idx ON servers (key_id, created_at);
CREATE INDEX servers_user_idx ON servers (user_id, created_at);
