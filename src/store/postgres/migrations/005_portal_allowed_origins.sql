-- keygate schema 5 (PostgreSQL): the browser origins whose pages may send a portal's keys (CORS,
-- docs/api.md); none by default. Once landed, never edit this file.

ALTER TABLE portals ADD COLUMN allowed_origins jsonb NOT NULL DEFAULT '[]'; -- array of origins
