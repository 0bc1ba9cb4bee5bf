-- keygate schema 1 (PostgreSQL). Once landed, never edit this file: later changes go in new files.
--
-- Tables are created in the connection's search_path (the schema the store was opened with).
-- Times are epoch milliseconds (bigint). Lists and JSON values are jsonb. Enumerations (roles,
-- statuses, modes) are plain text without CHECK, as in SQLite: the store's types say which
-- values exist. Later features (OAuth sessions, feedback tickets, usage) add tables that refer to
-- these; they do not widen them. Unique constraints are named: the store maps them to conflicts.

CREATE TABLE users (
  id         text   NOT NULL PRIMARY KEY,
  email      text   NOT NULL, -- lower-cased by the store: unique regardless of case
  name       text   NOT NULL,
  role       text   NOT NULL,
  created_at bigint NOT NULL,
  CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE portals (
  id                  text   NOT NULL PRIMARY KEY,
  domain              text   NOT NULL,
  name                text   NOT NULL,
  status              text   NOT NULL,
  default_access_mode text   NOT NULL,
  upstream            jsonb,                    -- NULL = not linked
  request_limit       double precision,         -- requests per second; NULL = the default
  created_by          text   NOT NULL REFERENCES users (id),
  created_at          bigint NOT NULL,
  CONSTRAINT portals_domain_key UNIQUE (domain)
);

CREATE TABLE memberships (
  portal_id  text   NOT NULL REFERENCES portals (id),
  user_id    text   NOT NULL REFERENCES users (id),
  role       text   NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (portal_id, user_id)
);

CREATE INDEX memberships_user_idx ON memberships (user_id);

-- rotated_from_id / rotated_to_id have no foreign key on purpose: they are history and keep
-- naming a key after it has been deleted.
CREATE TABLE keys (
  id              text    NOT NULL PRIMARY KEY,
  type            text    NOT NULL,
  name            text    NOT NULL,
  owner_id        text    NOT NULL REFERENCES users (id),
  portal_id       text    REFERENCES portals (id), -- NULL for key types not bound to a portal
  digest          text    NOT NULL,
  key_prefix      text    NOT NULL,
  key_suffix      text    NOT NULL,
  scopes          jsonb   NOT NULL, -- array of strings
  issued_scopes   jsonb   NOT NULL, -- array of strings
  status          text    NOT NULL,
  access_mode     text    NOT NULL,
  ip_whitelist    jsonb   NOT NULL, -- array of strings
  rate_limit      double precision,
  expires_at      bigint,
  created_at      bigint  NOT NULL,
  updated_at      bigint  NOT NULL,
  last_used_at    bigint,
  rotated_from_id text,
  rotated_to_id   text,
  version         integer NOT NULL,
  CONSTRAINT keys_digest_key UNIQUE (digest)
);

CREATE INDEX keys_portal_idx ON keys (portal_id, created_at, id);
CREATE INDEX keys_owner_idx ON keys (owner_id, created_at, id);

CREATE TABLE key_dependents (
  key_id       text   NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  kind         text   NOT NULL,
  dependent_id text   NOT NULL,
  created_at   bigint NOT NULL,
  PRIMARY KEY (key_id, kind, dependent_id)
);

-- No foreign keys: the audit trail outlives what it describes.
CREATE TABLE audit_events (
  id            text   NOT NULL PRIMARY KEY,
  at            bigint NOT NULL,
  action        text   NOT NULL,
  actor_user_id text,
  actor_key_id  text,
  source_ip     text,
  entity_type   text   NOT NULL,
  entity_id     text   NOT NULL,
  portal_id     text,
  before_state  jsonb, -- NULL = absent (undefined)
  after_state   jsonb  -- NULL = absent (undefined)
);

CREATE INDEX audit_events_portal_at_idx ON audit_events (portal_id, at, id);
CREATE INDEX audit_events_entity_at_idx ON audit_events (entity_id, at, id);
CREATE INDEX audit_events_at_idx ON audit_events (at, id);

CREATE TABLE notifications (
  id         text   NOT NULL PRIMARY KEY,
  user_id    text   NOT NULL REFERENCES users (id),
  at         bigint NOT NULL,
  kind       text   NOT NULL,
  message    text   NOT NULL,
  data       jsonb, -- NULL = absent (undefined)
  read_at    bigint
);

CREATE INDEX notifications_user_at_idx ON notifications (user_id, at, id);
