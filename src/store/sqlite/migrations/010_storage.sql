-- keygate schema 10 (SQLite): object storage (vibe:storage, docs/storage.md). A row per object of
-- a portal; the bytes are a file `<dataDir>/objects/<blob>` written before the row points at it,
-- so a reader never sees half an object, and a replaced or deleted object's file is removed after
-- its row changed. Once landed, never edit this file.

CREATE TABLE storage_objects (
  portal_id    TEXT    NOT NULL REFERENCES portals (id),
  key          TEXT    NOT NULL, -- the object key, a/b/c.txt
  blob         TEXT    NOT NULL, -- the file holding the bytes
  size         INTEGER NOT NULL,
  content_type TEXT    NOT NULL,
  sha256       TEXT    NOT NULL, -- hex, the ETag
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  PRIMARY KEY (portal_id, key)
) STRICT;
