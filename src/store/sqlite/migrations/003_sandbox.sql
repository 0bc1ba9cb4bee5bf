-- keygate schema 3 (SQLite): the built-in sandbox portal. Once landed, never edit this file.
--
-- A sandbox stands in for a Bitrix24 portal (src/upstream/sandbox): its webhooks, and its
-- records (CRM items, tasks, users, notifications, …) as JSON. portal_id is the keygate portal
-- the sandbox serves; there is no foreign key to portals on purpose: a sandbox is set up before
-- or apart from the portal that links to it, like a Bitrix24 portal is. Deleting a sandbox
-- deletes its webhooks, records and id sequences (cascade).

CREATE TABLE sandboxes (
  portal_id           TEXT    NOT NULL PRIMARY KEY,
  request_burst       INTEGER NOT NULL, -- leaky bucket: requests that may queue up...
  requests_per_second REAL    NOT NULL, -- ...and how fast they drain
  created_at          INTEGER NOT NULL
) STRICT;

-- Only the SHA-256 (hex) of a webhook's token is kept.
CREATE TABLE sandbox_webhooks (
  portal_id    TEXT    NOT NULL REFERENCES sandboxes (portal_id) ON DELETE CASCADE,
  token_digest TEXT    NOT NULL,
  user_id      INTEGER NOT NULL,
  scopes       TEXT    NOT NULL, -- JSON array of Bitrix24 scopes
  created_at   INTEGER NOT NULL,
  PRIMARY KEY (portal_id, token_digest)
) STRICT;

-- id is numbered per portal and entity type (1, 2, 3…), from sandbox_sequences.
CREATE TABLE sandbox_items (
  portal_id   TEXT    NOT NULL REFERENCES sandboxes (portal_id) ON DELETE CASCADE,
  entity_type TEXT    NOT NULL, -- chosen by the sandbox: crm:2 (deals), task, user, …
  id          INTEGER NOT NULL,
  fields      TEXT    NOT NULL, -- JSON object
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (portal_id, entity_type, id)
) STRICT;

-- The last id given out per portal and entity type: ids are never reused, also after a delete.
CREATE TABLE sandbox_sequences (
  portal_id   TEXT    NOT NULL REFERENCES sandboxes (portal_id) ON DELETE CASCADE,
  entity_type TEXT    NOT NULL,
  last_id     INTEGER NOT NULL,
  PRIMARY KEY (portal_id, entity_type)
) STRICT;
