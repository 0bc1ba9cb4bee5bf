-- keygate schema 6 (PostgreSQL): accounts and sign-in (docs/accounts.md). Once landed, never
-- edit this file.
--
-- A user's password is kept as a self-describing scrypt hash (NULL: none set yet: the user signs
-- in through a one-time link first). Sessions and one-time links keep only the SHA-256 of their
-- tokens. A one-time link is deleted when it is used.

ALTER TABLE users ADD COLUMN password_hash text; -- $scrypt$ln=…,r=…,p=…$salt$hash; NULL = none

CREATE TABLE sessions (
  id           text   NOT NULL PRIMARY KEY,
  user_id      text   NOT NULL REFERENCES users (id),
  token_digest text   NOT NULL,
  created_at   bigint NOT NULL,
  last_seen_at bigint NOT NULL, -- the idle lifetime counts from it; written at most once a minute
  expires_at   bigint NOT NULL, -- the absolute lifetime's end
  CONSTRAINT sessions_token_digest_key UNIQUE (token_digest)
);

CREATE INDEX sessions_user_idx ON sessions (user_id);

-- purpose 'password': sets user_id's password (keygate init, users create, users reset-password);
-- purpose 'invitation': makes whoever has email a member of portal_id with role.
CREATE TABLE one_time_links (
  id           text   NOT NULL PRIMARY KEY,
  purpose      text   NOT NULL,
  token_digest text   NOT NULL,
  email        text   NOT NULL, -- lower-cased
  user_id      text   REFERENCES users (id),
  portal_id    text   REFERENCES portals (id),
  role         text,
  created_by   text,
  created_at   bigint NOT NULL,
  expires_at   bigint NOT NULL,
  CONSTRAINT one_time_links_token_digest_key UNIQUE (token_digest)
);

CREATE INDEX one_time_links_user_idx ON one_time_links (user_id);
CREATE INDEX one_time_links_portal_idx ON one_time_links (portal_id, created_at, id);
