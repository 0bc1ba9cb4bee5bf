-- keygate schema 11 (PostgreSQL): what each logged request asked for, for the scope advisor
-- (GET /v1/keys/:id/scope-advice, docs/scope-advice.md). Once landed, never edit this file.
--
-- route: the pattern of the profile's route the request matched (/rest/crm.deal.list,
--   /v1/keys/:id), never the raw path; NULL when it matched none, and for entries logged before
--   this migration (the advisor does not count them).
-- missing_scope: for a request refused because the key lacks a scope, the unmet requirement
--   (clauses joined by ",", alternatives within one by "|"); NULL otherwise.
-- Nullable columns without a default: adding them rewrites nothing.
ALTER TABLE request_log ADD COLUMN route text;
ALTER TABLE request_log ADD COLUMN missing_scope text;
