-- keygate schema 9 (PostgreSQL): feedback tickets (docs/feedback.md). Once landed, never edit this
-- file.
--
-- A ticket, its comment thread, and the emails waiting to be sent (an outbox: written in the
-- transaction of the change that causes them, sent afterwards when SMTP is configured). Tickets
-- and comments keep the key they were written with, without a foreign key: keys may be deleted,
-- the ticket stays. The context is kept as text (the JSON the client sent), as SQLite keeps it,
-- so src/store/tickets.ts reads both alike.

CREATE TABLE feedback_tickets (
  id            text   NOT NULL PRIMARY KEY,
  category      text   NOT NULL, -- BUG, SUGGESTION, DOCS, CHAT, BOTS, OTHER
  title         text   NOT NULL,
  message       text   NOT NULL,
  context       text, -- JSON object; NULL = none
  status        text   NOT NULL, -- NEW, REVIEWING, AWAITING_USER, NEEDS_REVIEW, RESOLVED, ARCHIVED
  resolution    text,
  author_id     text   NOT NULL REFERENCES users (id),
  author_key_id text,
  portal_id     text, -- the author's key's portal; NULL for tickets sent with a management key
  created_at    bigint NOT NULL,
  updated_at    bigint NOT NULL,
  version       integer NOT NULL -- bumped on every change: a change made on an older read is refused
);

CREATE INDEX feedback_tickets_created_idx ON feedback_tickets (created_at, id);
CREATE INDEX feedback_tickets_author_idx ON feedback_tickets (author_id, created_at);
CREATE INDEX feedback_tickets_portal_idx ON feedback_tickets (portal_id, created_at);

CREATE TABLE feedback_comments (
  id            text     NOT NULL PRIMARY KEY,
  ticket_id     text     NOT NULL REFERENCES feedback_tickets (id),
  author_id     text     NOT NULL REFERENCES users (id),
  author_key_id text,
  by_staff      smallint NOT NULL, -- 1: the instance's team, 0: the ticket's author
  message       text     NOT NULL,
  status_from   text, -- the status change made with the comment; NULL = none
  status_to     text,
  created_at    bigint   NOT NULL
);

CREATE INDEX feedback_comments_ticket_idx ON feedback_comments (ticket_id, created_at, id);

CREATE TABLE email_outbox (
  id              text    NOT NULL PRIMARY KEY,
  to_address      text    NOT NULL,
  subject         text    NOT NULL,
  body            text    NOT NULL,
  created_at      bigint  NOT NULL,
  attempts        integer NOT NULL,
  next_attempt_at bigint  NOT NULL,
  sent_at         bigint, -- NULL = not sent yet
  last_error      text
);

CREATE INDEX email_outbox_due_idx ON email_outbox (sent_at, next_attempt_at);
