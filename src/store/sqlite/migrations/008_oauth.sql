-- keygate schema 8 (SQLite): OAuth sessions of authorization keys (docs/oauth.md). Once landed,
-- never edit this file.
--
-- An authorization key's registered redirect URIs; the codes its consent page gives out; the
-- sessions (vibe_session_…) its users hold. Codes and session tokens are kept only as SHA-256
-- digests. A session is bound to the key, the user who allowed it, the portal and the Bitrix24
-- (sandbox) user it acts as. Revoking or deleting the key, or removing the user from the portal,
-- deletes the sessions in the same transaction (triggers below), and every deleted session
-- appends a change-feed row, so every node drops the sessions it holds in its cache.

CREATE TABLE app_redirect_uris (
  key_id        TEXT    NOT NULL PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
  redirect_uris TEXT    NOT NULL, -- JSON array of exact strings
  updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE oauth_grants (
  id             TEXT    NOT NULL PRIMARY KEY,
  code_digest    TEXT    NOT NULL,
  key_id         TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  portal_id      TEXT    NOT NULL,
  bitrix_user_id INTEGER NOT NULL,
  redirect_uri   TEXT,             -- NULL: the zero-config flow (redeemed by GET /v1/oauth/poll)
  state_digest   TEXT    NOT NULL, -- the poll finds its grant by key and state
  code_challenge TEXT,             -- PKCE S256 challenge; NULL: none was sent
  created_at     INTEGER NOT NULL,
  expires_at     INTEGER NOT NULL,
  used_at        INTEGER,          -- set by the first redemption; a second one revokes what the first issued
  CONSTRAINT oauth_grants_code_digest_key UNIQUE (code_digest)
) STRICT;

CREATE INDEX oauth_grants_poll_idx ON oauth_grants (key_id, state_digest);
CREATE INDEX oauth_grants_expires_idx ON oauth_grants (expires_at);

CREATE TABLE app_sessions (
  id             TEXT    NOT NULL PRIMARY KEY,
  token_digest   TEXT    NOT NULL,
  key_id         TEXT    NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
  user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  portal_id      TEXT    NOT NULL,
  bitrix_user_id INTEGER NOT NULL,
  grant_id       TEXT    NOT NULL, -- the code it was issued for (a replayed code revokes it)
  created_at     INTEGER NOT NULL,
  expires_at     INTEGER NOT NULL,
  CONSTRAINT app_sessions_token_digest_key UNIQUE (token_digest)
) STRICT;

CREATE INDEX app_sessions_key_idx ON app_sessions (key_id);
CREATE INDEX app_sessions_member_idx ON app_sessions (portal_id, user_id);
CREATE INDEX app_sessions_grant_idx ON app_sessions (grant_id);
CREATE INDEX app_sessions_expires_idx ON app_sessions (expires_at);

CREATE TRIGGER app_sessions_change_delete AFTER DELETE ON app_sessions BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('session', OLD.key_id);
END;
CREATE TRIGGER keys_revoke_sessions AFTER UPDATE ON keys WHEN NEW.status = 'REVOKED' AND OLD.status IS NOT 'REVOKED' BEGIN
  DELETE FROM app_sessions WHERE key_id = NEW.id;
END;
CREATE TRIGGER memberships_remove_sessions AFTER DELETE ON memberships BEGIN
  DELETE FROM app_sessions WHERE portal_id = OLD.portal_id AND user_id = OLD.user_id;
END;
