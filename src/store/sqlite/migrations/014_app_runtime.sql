-- keygate schema 14 (SQLite): the app runtime's sign-in (docs/apps.md). Once landed, never edit
-- this file.
--
-- app_init_spent: the jti of every `__init` token the runtime exchanged, kept until the token
-- expires, so a replay is refused on every node (the primary key is the one-time rule).
--
-- app_runtime_sessions: the browser's HttpOnly cookie of an app's host, kept as its SHA-256,
-- mapped to the app session (app_sessions, whose grant_id is then `init:<jti>`, the token it was
-- exchanged for) and to the server whose host set it. The runtime needs the raw session token
-- (it sends X-Vibe-Authorization: Bearer vibe_session_… to the app server), so it is kept sealed
-- (AES-256-GCM under a key derived from the server secret, src/store/credentials.ts). Deleting
-- the session (revoked key, removed member, expiry) or the server deletes the row.
CREATE TABLE app_init_spent (
  jti        TEXT    NOT NULL PRIMARY KEY,
  expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX app_init_spent_expires_idx ON app_init_spent (expires_at);

CREATE TABLE app_runtime_sessions (
  cookie_digest TEXT    NOT NULL PRIMARY KEY,
  session_id    TEXT    NOT NULL REFERENCES app_sessions (id) ON DELETE CASCADE,
  server_id     TEXT    NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
  sealed_token  TEXT    NOT NULL,
  created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX app_runtime_sessions_session_idx ON app_runtime_sessions (session_id);
CREATE INDEX app_runtime_sessions_server_idx ON app_runtime_sessions (server_id);
