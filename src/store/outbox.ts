/**
 * The email outbox (migration 009): emails are written in the transaction of the change that
 * causes them (emailStatements), and sent afterwards by src/mail/outbox-sender.ts, which claims
 * each for a while before sending it, so that nodes sharing the store do not send one twice.
 * The queries are written once, for both dialects (src/store/sql.ts).
 */
import { columnList, type Row } from "./rows.ts";
import type { SqlStatement } from "./sql.ts";
import type { Store } from "./store.ts";

export interface OutgoingEmail {
  id: string;
  to: string;
  subject: string;
  body: string;
  createdAt: number;
}

/** An email of the outbox not sent yet. */
export interface PendingEmail extends OutgoingEmail {
  attempts: number;
  nextAttemptAt: number;
}

const COLUMNS = ["id", "to_address", "subject", "body", "created_at", "attempts", "next_attempt_at"] as const;

/** The statements that put the emails in the outbox: due at once, never tried. */
export function emailStatements(emails: OutgoingEmail[]): SqlStatement[] {
  return emails.map((e) => ({
    sql: `INSERT INTO email_outbox (${columnList(COLUMNS)}) VALUES (${COLUMNS.map(() => "?").join(", ")})`,
    params: [e.id, e.to, e.subject, e.body, e.createdAt, 0, e.createdAt],
  }));
}

function pendingFromRow(row: Row): PendingEmail {
  return {
    id: row["id"] as string,
    to: row["to_address"] as string,
    subject: row["subject"] as string,
    body: row["body"] as string,
    createdAt: Number(row["created_at"]),
    attempts: Number(row["attempts"]),
    nextAttemptAt: Number(row["next_attempt_at"]),
  };
}

/** Unsent emails due by `now` that have had fewer than `maxAttempts` tries, the longest waiting first. */
export async function dueEmails(store: Store, now: number, maxAttempts: number, limit: number): Promise<PendingEmail[]> {
  const rows = await store.sql.all(
    `SELECT ${columnList(COLUMNS)} FROM email_outbox WHERE sent_at IS NULL AND next_attempt_at <= ? AND attempts < ? ORDER BY next_attempt_at, id LIMIT ?`,
    [now, maxAttempts, limit],
  );
  return rows.map(pendingFromRow);
}

/** Takes the email for one try until `until` (counted as an attempt); false when another sender took it first. */
export function claimEmail(store: Store, email: PendingEmail, until: number): Promise<boolean> {
  return store.sql.atomically([
    {
      sql: "UPDATE email_outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ? AND sent_at IS NULL AND next_attempt_at = ?",
      params: [until, email.id, email.nextAttemptAt],
      mustChange: 1,
    },
  ]);
}

export async function markEmailSent(store: Store, id: string, at: number): Promise<void> {
  await store.sql.atomically([{ sql: "UPDATE email_outbox SET sent_at = ?, last_error = NULL WHERE id = ?", params: [at, id] }]);
}

/** Records the failure; the email is due again at `retryAt`. */
export async function markEmailFailed(store: Store, id: string, error: string, retryAt: number): Promise<void> {
  await store.sql.atomically([{ sql: "UPDATE email_outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?", params: [error.slice(0, 1000), retryAt, id] }]);
}
