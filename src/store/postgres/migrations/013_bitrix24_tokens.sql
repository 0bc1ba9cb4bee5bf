-- keygate schema 13 (PostgreSQL): users' Bitrix24 OAuth tokens (issue 15 §2, docs/oauth.md "Real
-- Bitrix24 portals"). Once landed, never edit this file.
--
-- One row per portal and keygate user: the Bitrix24 user they are on the portal, the portal's
-- member_id and REST endpoint (client_endpoint), and their access and refresh tokens, sealed
-- together (AES-256-GCM under a key derived from the server secret, src/store/credentials.ts,
-- bound to the portal and user ids). `version` grows with every write: a refresh writes only over
-- the version it read (compare-and-swap), so two nodes refreshing at once keep one answer.
-- Deleting the user (foreign key) or removing them from the portal (trigger) deletes the row.
CREATE TABLE bitrix24_tokens (
  portal_id          text    NOT NULL,
  user_id            text    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  bitrix_user_id     integer NOT NULL,
  member_id          text    NOT NULL,
  client_endpoint    text    NOT NULL,
  tokens             text    NOT NULL, -- sealed {"access","refresh"}
  expires_at         bigint  NOT NULL, -- the access token's end (epoch ms)
  refresh_expires_at bigint  NOT NULL, -- the refresh token's end (epoch ms)
  version            integer NOT NULL,
  updated_at         bigint  NOT NULL,
  PRIMARY KEY (portal_id, user_id)
);

CREATE INDEX bitrix24_tokens_bitrix_user_idx ON bitrix24_tokens (portal_id, bitrix_user_id);

CREATE FUNCTION keygate_member_removed_bitrix24_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM bitrix24_tokens WHERE portal_id = OLD.portal_id AND user_id = OLD.user_id;
  RETURN NULL;
END $$;

CREATE TRIGGER memberships_remove_bitrix24_tokens AFTER DELETE ON memberships FOR EACH ROW EXECUTE FUNCTION keygate_member_removed_bitrix24_tokens();
