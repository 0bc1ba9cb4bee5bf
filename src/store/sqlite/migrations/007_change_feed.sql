-- keygate schema 7 (SQLite): the change feed. Every stored change of a key (its version moved, or
-- it was created or deleted), a portal, a membership or a user appends a row, written by the
-- triggers below in the same transaction as the change, whoever makes it (a node, the operator
-- CLI, a later feature's store method). Every node reads the rows after the last one it saw,
-- about once a second, and drops what they name from its caches: with Redis pub/sub away or
-- silently deaf, a revocation still reaches every node (docs/operations.md, "Several nodes").
-- Rows are pruned after an hour by the nodes. Once landed, never edit this file.

CREATE TABLE changes (
  seq       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
  at        INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)), -- the database's clock, for pruning
  kind      TEXT    NOT NULL, -- key, portal, member, user
  entity_id TEXT    NOT NULL, -- the key's, portal's or user's id; a membership's portal id
  digest    TEXT,             -- a key's digest (a cached key is found by it)
  version   INTEGER           -- the version the change brought the key to (a deleted key: one past its last)
) STRICT;

CREATE INDEX changes_at_idx ON changes (at);

-- touchKeys (last-used times) leaves version alone: no row for it.
CREATE TRIGGER keys_change_insert AFTER INSERT ON keys BEGIN
  INSERT INTO changes (kind, entity_id, digest, version) VALUES ('key', NEW.id, NEW.digest, NEW.version);
END;
CREATE TRIGGER keys_change_update AFTER UPDATE ON keys WHEN NEW.version IS NOT OLD.version BEGIN
  INSERT INTO changes (kind, entity_id, digest, version) VALUES ('key', NEW.id, NEW.digest, NEW.version);
END;
CREATE TRIGGER keys_change_delete AFTER DELETE ON keys BEGIN
  INSERT INTO changes (kind, entity_id, digest, version) VALUES ('key', OLD.id, OLD.digest, OLD.version + 1);
END;

CREATE TRIGGER portals_change_insert AFTER INSERT ON portals BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('portal', NEW.id);
END;
CREATE TRIGGER portals_change_update AFTER UPDATE ON portals BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('portal', NEW.id);
END;
CREATE TRIGGER portals_change_delete AFTER DELETE ON portals BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('portal', OLD.id);
END;

CREATE TRIGGER memberships_change_insert AFTER INSERT ON memberships BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('member', NEW.portal_id);
END;
CREATE TRIGGER memberships_change_update AFTER UPDATE ON memberships BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('member', NEW.portal_id);
END;
CREATE TRIGGER memberships_change_delete AFTER DELETE ON memberships BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('member', OLD.portal_id);
END;

CREATE TRIGGER users_change_update AFTER UPDATE ON users BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('user', NEW.id);
END;
CREATE TRIGGER users_change_delete AFTER DELETE ON users BEGIN
  INSERT INTO changes (kind, entity_id) VALUES ('user', OLD.id);
END;
