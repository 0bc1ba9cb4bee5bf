-- keygate schema 1 (SQLite). Once landed, never edit this file: later changes go in new files.
--
-- Times are epoch milliseconds (INTEGER). Lists and JSON values are JSON text. Enumerations
-- (roles, statuses, modes) are plain TEXT without CHECK: SQLite cannot change a CHECK without
-- rebuilding the table, and the store's types already say which values exist. Later features
-- (OAuth sessions, feedback tickets, usage) add tables that refer to these; they do not widen them.

CREATE TABLE users (
  id         TEXT    NOT NULL PRIMARY KEY,
  email      TEXT    NOT NULL, -- lower-cased by the store: unique regardless of case
  name       TEXT    NOT NULL,
  role       TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  CONSTRAINT users_email_key UNIQUE (email)
) STRICT;

CREATE TABLE portals (
  id                  TEXT    NOT NULL PRIMARY KEY,
  domain              TEXT    NOT NULL,
  name                TEXT    NOT NULL,
  status              TEXT    NOT NULL,
  default_access_mode TEXT    NOT NULL,
  upstream            TEXT,             -- JSON; NULL = not linked
  request_limit       REAL,             -- requests per second; NULL = the default
  created_by          TEXT    NOT NULL REFERENCES users (id),
  created_at          INTEGER NOT NULL,
  CONSTRAINT portals_domain_key UNIQUE (domain)
) STRICT;

CREATE TABLE memberships (
  portal_id  TEXT    NOT NULL REFERENCES portals (id),
  user_id    TEXT    NOT NULL REFERENCES users (id),
  role       TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (portal_id, user_id)
) STRICT;

CREATE INDEX memberships_user_idx ON memberships (user_id);

-- rotated_from_id / rotated_to_id have no foreign key on purpose: they are history and keep
-- naming a key after it has been deleted.
CREATE TABLE keys (
  id              TEXT    NOT NULL PRIMARY KEY,
  type            TEXT    NOT NULL,
  name            TEXT    NOT NULL,
  owner_id        TEXT    NOT NULL REFERENCES users (id),
  portal_id       TEXT    REFERENCES portals (id), -- NULL for key types not bound to a portal
  digest          TEXT    NOT NULL,
  key_prefix      TEXT    NOT NULL,
  key_suffix      TEXT    NOT NULL,
  scopes          TEXT    NOT NULL, -- JSON array of strings
  issued_scopes   TEXT    NOT NULL, -- JSON array of strings
  status          TEXT    NOT NULL,
  access_mode     TEXT    NOT NULL,
  ip_whitelist    TEXT    NOT NULL, -- JSON array of strings
  rate_limit      REAL,
  expires_at      INTEGER,
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  last_used_at    INTEGER,
  rotated_from_id TEXT,
  rotated_to_id   TEXT,
  version         INTEGER NOT NULL,
  CONSTRAINT keys_digest_key UNIQUE (digest)
) STRICT;

CREATE INDEX keys_portal_idx ON keys (portal_id, created_at, id);
CREATE INDEX keys_owner_idx ON keys (owner_id, created_at, id);

CREATE TABLE key_dependents (
  key_id       TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  kind         TEXT    NOT NULL,
  dependent_id TEXT    NOT NULL,
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (key_id, kind, dependent_id)
) STRICT;

-- No foreign keys: the audit trail outlives what it describes.
CREATE TABLE audit_events (
  id            TEXT    NOT NULL PRIMARY KEY,
  at            INTEGER NOT NULL,
  action        TEXT    NOT NULL,
  actor_user_id TEXT,
  actor_key_id  TEXT,
  source_ip     TEXT,
  entity_type   TEXT    NOT NULL,
  entity_id     TEXT    NOT NULL,
  portal_id     TEXT,
  before_state  TEXT, -- JSON; NULL = absent (undefined)
  after_state   TEXT  -- JSON; NULL = absent (undefined)
) STRICT;

CREATE INDEX audit_events_portal_at_idx ON audit_events (portal_id, at, id);
CREATE INDEX audit_events_entity_at_idx ON audit_events (entity_id, at, id);
CREATE INDEX audit_events_at_idx ON audit_events (at, id);

CREATE TABLE notifications (
  id         TEXT    NOT NULL PRIMARY KEY,
  user_id    TEXT    NOT NULL REFERENCES users (id),
  at         INTEGER NOT NULL,
  kind       TEXT    NOT NULL,
  message    TEXT    NOT NULL,
  data       TEXT, -- JSON; NULL = absent (undefined)
  read_at    INTEGER
) STRICT;

CREATE INDEX notifications_user_at_idx ON notifications (user_id, at, id);
