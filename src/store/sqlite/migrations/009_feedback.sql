-- keygate schema 9 (SQLite): feedback tickets (docs/feedback.md). Once landed, never edit this file.
--
-- A ticket, its comment thread, and the emails waiting to be sent (an outbox: written in the
-- transaction of the change that causes them, sent afterwards when SMTP is configured). Tickets
-- and comments keep the key they were written with, without a foreign key: keys may be deleted,
-- the ticket stays.

CREATE TABLE feedback_tickets (
  id            TEXT    NOT NULL PRIMARY KEY,
  category      TEXT    NOT NULL, -- BUG, SUGGESTION, DOCS, CHAT, BOTS, OTHER
  title         TEXT    NOT NULL,
  message       TEXT    NOT NULL,
  context       TEXT, -- JSON object; NULL = none
  status        TEXT    NOT NULL, -- NEW, REVIEWING, AWAITING_USER, NEEDS_REVIEW, RESOLVED, ARCHIVED
  resolution    TEXT,
  author_id     TEXT    NOT NULL REFERENCES users (id),
  author_key_id TEXT,
  portal_id     TEXT, -- the author's key's portal; NULL for tickets sent with a management key
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  version       INTEGER NOT NULL -- bumped on every change: a change made on an older read is refused
) STRICT;

CREATE INDEX feedback_tickets_created_idx ON feedback_tickets (created_at, id);
CREATE INDEX feedback_tickets_author_idx ON feedback_tickets (author_id, created_at);
CREATE INDEX feedback_tickets_portal_idx ON feedback_tickets (portal_id, created_at);

CREATE TABLE feedback_comments (
  id            TEXT    NOT NULL PRIMARY KEY,
  ticket_id     TEXT    NOT NULL REFERENCES feedback_tickets (id),
  author_id     TEXT    NOT NULL REFERENCES users (id),
  author_key_id TEXT,
  by_staff      INTEGER NOT NULL, -- 1: the instance's team, 0: the ticket's author
  message       TEXT    NOT NULL,
  status_from   TEXT, -- the status change made with the comment; NULL = none
  status_to     TEXT,
  created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX feedback_comments_ticket_idx ON feedback_comments (ticket_id, created_at, id);

CREATE TABLE email_outbox (
  id              TEXT    NOT NULL PRIMARY KEY,
  to_address      TEXT    NOT NULL,
  subject         TEXT    NOT NULL,
  body            TEXT    NOT NULL,
  created_at      INTEGER NOT NULL,
  attempts        INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  sent_at         INTEGER, -- NULL = not sent yet
  last_error      TEXT
) STRICT;

CREATE INDEX email_outbox_due_idx ON email_outbox (sent_at, next_attempt_at);
