-- keygate schema 6 (SQLite): accounts and sign-in (docs/accounts.md). Once landed, never edit
-- this file.
--
-- A user's password is kept as a self-describing scrypt hash (NULL: none set yet: the user signs
-- in through a one-time link first). Sessions and one-time links keep only the SHA-256 of their
-- tokens. A one-time link is deleted when it is used.

ALTER TABLE users ADD COLUMN password_hash TEXT; -- $scrypt$ln=…,r=…,p=…$salt$hash; NULL = none

CREATE TABLE sessions (
  id           TEXT    NOT NULL PRIMARY KEY,
  user_id      TEXT    NOT NULL REFERENCES users (id),
  token_digest TEXT    NOT NULL,
  created_at   INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL, -- the idle lifetime counts from it; written at most once a minute
  expires_at   INTEGER NOT NULL, -- the absolute lifetime's end
  CONSTRAINT sessions_token_digest_key UNIQUE (token_digest)
) STRICT;

CREATE INDEX sessions_user_idx ON sessions (user_id);

-- purpose 'password': sets user_id's password (keygate init, users create, users reset-password);
-- purpose 'invitation': makes whoever has email a member of portal_id with role.
CREATE TABLE one_time_links (
  id           TEXT    NOT NULL PRIMARY KEY,
  purpose      TEXT    NOT NULL,
  token_digest TEXT    NOT NULL,
  email        TEXT    NOT NULL, -- lower-cased
  user_id      TEXT    REFERENCES users (id),
  portal_id    TEXT    REFERENCES portals (id),
  role         TEXT,
  created_by   TEXT,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  CONSTRAINT one_time_links_token_digest_key UNIQUE (token_digest)
) STRICT;

CREATE INDEX one_time_links_user_idx ON one_time_links (user_id);
CREATE INDEX one_time_links_portal_idx ON one_time_links (portal_id, created_at, id);
