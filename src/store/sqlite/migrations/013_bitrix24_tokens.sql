-- keygate schema 13 (SQLite): users' Bitrix24 OAuth tokens (issue 15 §2, docs/oauth.md "Real
-- Bitrix24 portals"). Once landed, never edit this file.
--
-- One row per portal and keygate user: the Bitrix24 user they are on the portal, the portal's
-- member_id and REST endpoint (client_endpoint), and their access and refresh tokens, sealed
-- together (AES-256-GCM under a key derived from the server secret, src/store/credentials.ts,
-- bound to the portal and user ids). `version` grows with every write: a refresh writes only over
-- the version it read (compare-and-swap), so two nodes refreshing at once keep one answer.
-- Deleting the user (foreign key) or removing them from the portal (trigger) deletes the row.
CREATE TABLE bitrix24_tokens (
  portal_id          TEXT    NOT NULL,
  user_id            TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  bitrix_user_id     INTEGER NOT NULL,
  member_id          TEXT    NOT NULL,
  client_endpoint    TEXT    NOT NULL,
  tokens             TEXT    NOT NULL, -- sealed {"access","refresh"}
  expires_at         INTEGER NOT NULL, -- the access token's end (epoch ms)
  refresh_expires_at INTEGER NOT NULL, -- the refresh token's end (epoch ms)
  version            INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL,
  PRIMARY KEY (portal_id, user_id)
) STRICT;

CREATE INDEX bitrix24_tokens_bitrix_user_idx ON bitrix24_tokens (portal_id, bitrix_user_id);

CREATE TRIGGER memberships_remove_bitrix24_tokens AFTER DELETE ON memberships BEGIN
  DELETE FROM bitrix24_tokens WHERE portal_id = OLD.portal_id AND user_id = OLD.user_id;
END;
