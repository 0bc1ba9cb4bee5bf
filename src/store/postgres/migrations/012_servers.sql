-- keygate schema 12 (PostgreSQL): servers, the user's own app servers keygate fronts
-- (/v1/infra/servers, docs/servers.md). Once landed, never edit this file.
--
-- A server belongs to the key that registered it and to that key's user (the session's user for
-- an authorization key); while it exists the key has a row in key_dependents (kind "server"),
-- written in the same transaction, so DELETE /v1/keys/:id answers 409 KEY_HAS_ACTIVE_SERVERS.
-- blackhole_status is what the last background check found (docs/servers.md, "Reachability").
CREATE TABLE servers (
  id               text   NOT NULL PRIMARY KEY,
  name             text   NOT NULL,
  url              text   NOT NULL,
  key_id           text   NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  user_id          text   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  portal_id        text   NOT NULL,
  blackhole_status text   NOT NULL, -- CONNECTED, UNREACHABLE
  checked_at       bigint, -- NULL = not checked yet
  created_at       bigint NOT NULL
);

CREATE INDEX servers_key_idx ON servers (key_id, created_at);
CREATE INDEX servers_user_idx ON servers (user_id, created_at);
