-- keygate schema 4 (SQLite): the sandbox served at a host root finds a webhook by its token alone
-- (/rest/<user id>/<token>/, no portal id in the URL). Once landed, never edit this file.

CREATE INDEX sandbox_webhooks_by_token ON sandbox_webhooks (token_digest);
