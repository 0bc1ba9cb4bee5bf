-- keygate schema 7 (PostgreSQL): the change feed. Every stored change of a key (its version moved,
-- or it was created or deleted), a portal, a membership or a user appends a row, written by the
-- triggers below in the same transaction as the change, whoever makes it (a node, the operator
-- CLI, a later feature's store method). Every node reads the rows after the last one it saw,
-- about once a second, and drops what they name from its caches: with Redis pub/sub away or
-- silently deaf, a revocation still reaches every node (docs/operations.md, "Several nodes").
-- Sequence numbers are taken before commit, so a row may appear after a higher one, or never (a
-- rolled-back change): readers watch such gaps for a while. Rows are pruned after an hour by the
-- nodes. Once landed, never edit this file.

CREATE TABLE changes (
  seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at        bigint NOT NULL DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint, -- the database's clock, for pruning
  kind      text   NOT NULL, -- key, portal, member, user
  entity_id text   NOT NULL, -- the key's, portal's or user's id; a membership's portal id
  digest    text,            -- a key's digest (a cached key is found by it)
  version   bigint           -- the version the change brought the key to (a deleted key: one past its last)
);

CREATE INDEX changes_at_idx ON changes (at);

CREATE FUNCTION keygate_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO changes (kind, entity_id, digest, version) VALUES ('key', OLD.id, OLD.digest, OLD.version + 1);
  ELSE
    INSERT INTO changes (kind, entity_id, digest, version) VALUES ('key', NEW.id, NEW.digest, NEW.version);
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION keygate_portal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('portal', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
  RETURN NULL;
END $$;

CREATE FUNCTION keygate_membership_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('member', CASE WHEN TG_OP = 'DELETE' THEN OLD.portal_id ELSE NEW.portal_id END);
  RETURN NULL;
END $$;

CREATE FUNCTION keygate_user_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('user', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
  RETURN NULL;
END $$;

CREATE TRIGGER keys_change AFTER INSERT OR DELETE ON keys FOR EACH ROW EXECUTE FUNCTION keygate_key_changed();
-- touchKeys (last-used times) leaves version alone: no row for it, and no function call either.
CREATE TRIGGER keys_change_version AFTER UPDATE ON keys FOR EACH ROW WHEN (NEW.version IS DISTINCT FROM OLD.version) EXECUTE FUNCTION keygate_key_changed();
CREATE TRIGGER portals_change AFTER INSERT OR UPDATE OR DELETE ON portals FOR EACH ROW EXECUTE FUNCTION keygate_portal_changed();
CREATE TRIGGER memberships_change AFTER INSERT OR UPDATE OR DELETE ON memberships FOR EACH ROW EXECUTE FUNCTION keygate_membership_changed();
CREATE TRIGGER users_change AFTER UPDATE OR DELETE ON users FOR EACH ROW EXECUTE FUNCTION keygate_user_changed();
