-- keygate schema 3 (PostgreSQL): the built-in sandbox portal. Once landed, never edit this file.
--
-- A sandbox stands in for a Bitrix24 portal (src/upstream/sandbox): its webhooks, and its
-- records (CRM items, tasks, users, notifications, …) as JSON. portal_id is the keygate portal
-- the sandbox serves; there is no foreign key to portals on purpose: a sandbox is set up before
-- or apart from the portal that links to it, like a Bitrix24 portal is. Deleting a sandbox
-- deletes its webhooks, records and id sequences (cascade).

CREATE TABLE sandboxes (
  portal_id           text             NOT NULL PRIMARY KEY,
  request_burst       integer          NOT NULL, -- leaky bucket: requests that may queue up...
  requests_per_second double precision NOT NULL, -- ...and how fast they drain
  created_at          bigint           NOT NULL
);

-- Only the SHA-256 (hex) of a webhook's token is kept.
CREATE TABLE sandbox_webhooks (
  portal_id    text    NOT NULL REFERENCES sandboxes (portal_id) ON DELETE CASCADE,
  token_digest text    NOT NULL,
  user_id      integer NOT NULL,
  scopes       jsonb   NOT NULL, -- array of Bitrix24 scopes
  created_at   bigint  NOT NULL,
  PRIMARY KEY (portal_id, token_digest)
);

-- id is numbered per portal and entity type (1, 2, 3…), from sandbox_sequences.
CREATE TABLE sandbox_items (
  portal_id   text    NOT NULL REFERENCES sandboxes (portal_id) ON DELETE CASCADE,
  entity_type text    NOT NULL, -- chosen by the sandbox: crm:2 (deals), task, user, …
  id          integer NOT NULL,
  fields      jsonb   NOT NULL, -- object
  created_at  bigint  NOT NULL,
  updated_at  bigint  NOT NULL,
  PRIMARY KEY (portal_id, entity_type, id)
);

-- The last id given out per portal and entity type: ids are never reused, also after a delete.
-- addSandboxItem bumps it and inserts in one statement (the bump's row lock orders concurrent adds).
CREATE TABLE sandbox_sequences (
  portal_id   text    NOT NULL REFERENCES sandboxes (portal_id) ON DELETE CASCADE,
  entity_type text    NOT NULL,
  last_id     integer NOT NULL,
  PRIMARY KEY (portal_id, entity_type)
);
