-- keygate schema 10 (PostgreSQL): object storage (vibe:storage, docs/storage.md), shared by every
-- node. A row per object of a portal; the bytes are chunks of its blob, written before the row
-- points at the blob, so a reader never sees half an object; a replaced or deleted object's
-- chunks go in the transaction that changes its row. Once landed, never edit this file.

CREATE TABLE storage_objects (
  portal_id    text   NOT NULL REFERENCES portals (id),
  key          text   COLLATE "C" NOT NULL, -- the object key, a/b/c.txt; byte order, as SQLite sorts
  blob         text   NOT NULL, -- the chunks' blob id
  size         bigint NOT NULL,
  content_type text   NOT NULL,
  sha256       text   NOT NULL, -- hex, the ETag
  created_at   bigint NOT NULL,
  updated_at   bigint NOT NULL,
  PRIMARY KEY (portal_id, key)
);

-- Chunks of at most 256 KiB, by the offset of their first byte: a range read starts at the chunk
-- holding its first byte.
CREATE TABLE storage_chunks (
  blob   text   NOT NULL,
  start  bigint NOT NULL,
  data   bytea  NOT NULL,
  PRIMARY KEY (blob, start)
);
