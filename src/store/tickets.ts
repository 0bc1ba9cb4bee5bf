/**
 * Feedback tickets (migration 009, docs/feedback.md): tickets and their comment threads. The queries are written once, for both dialects, through the store's
 * thin dialect (src/store/sql.ts).
 *
 * A change of a ticket is made against the version it was read at: its comment, the
 * notifications and the emails it causes are written in the same transaction, or nothing is
 * (changeTicket answers false when the ticket changed in between).
 */
import { NOTIFICATION_COLUMNS, type Row, type SqlValue, columnList, notificationValues } from "./rows.ts";
import { type OutgoingEmail, emailStatements } from "./outbox.ts";
import type { SqlStatement } from "./sql.ts";
import type { Notification, Store } from "./store.ts";

export const TICKET_CATEGORIES = ["BUG", "SUGGESTION", "DOCS", "CHAT", "BOTS", "OTHER"] as const;
export const TICKET_STATUSES = ["NEW", "REVIEWING", "AWAITING_USER", "NEEDS_REVIEW", "RESOLVED", "ARCHIVED"] as const;
export type TicketCategory = (typeof TICKET_CATEGORIES)[number];
export type TicketStatus = (typeof TICKET_STATUSES)[number];

export interface Ticket {
  id: string;
  category: TicketCategory;
  title: string;
  message: string;
  /** Any JSON object the author attached (an agent's error context, environment, reproduction steps); null: none. */
  context: Record<string, unknown> | null;
  status: TicketStatus;
  resolution: string | null;
  authorId: string;
  /** The key it was sent with; null: a signed-in session. */
  authorKeyId: string | null;
  /** The portal of the key it was sent with; null: sent with a management key or session. */
  portalId: string | null;
  createdAt: number;
  updatedAt: number;
  version: number;
}

/** A ticket as lists and reads return it: with its author's name. */
export type TicketWithAuthor = Ticket & { authorName: string };

export interface TicketComment {
  id: string;
  ticketId: string;
  authorId: string;
  authorKeyId: string | null;
  /** Written by the instance's team (staff), not by the ticket's author. */
  byStaff: boolean;
  message: string;
  /** The status change made with the comment; null: none. */
  statusFrom: TicketStatus | null;
  statusTo: TicketStatus | null;
  createdAt: number;
}

export type CommentWithAuthor = TicketComment & { authorName: string };

/** Whose tickets a list may hold (src/feedback/rules.ts decides it). */
export type TicketScope =
  | { kind: "all" }
  /** The author's tickets sent from one portal (or, portalId null, from no portal). */
  | { kind: "author"; authorId: string; portalId: string | null }
  /** The author's own tickets, plus every ticket of these portals. */
  | { kind: "author-or-portals"; authorId: string; portalIds: string[] };

export interface TicketFilter {
  status?: TicketStatus;
  category?: TicketCategory;
  portalId?: string;
}

const TICKET_COLUMNS = [
  "id",
  "category",
  "title",
  "message",
  "context",
  "status",
  "resolution",
  "author_id",
  "author_key_id",
  "portal_id",
  "created_at",
  "updated_at",
  "version",
] as const;
const COMMENT_COLUMNS = ["id", "ticket_id", "author_id", "author_key_id", "by_staff", "message", "status_from", "status_to", "created_at"] as const;

const insert = (table: string, columns: readonly string[], params: SqlValue[]): SqlStatement => ({
  sql: `INSERT INTO ${table} (${columnList(columns)}) VALUES (${columns.map(() => "?").join(", ")})`,
  params,
});

function ticketValues(t: Ticket): SqlValue[] {
  return [t.id, t.category, t.title, t.message, t.context === null ? null : JSON.stringify(t.context), t.status, t.resolution, t.authorId, t.authorKeyId, t.portalId, t.createdAt, t.updatedAt, t.version];
}

function ticketFromRow(row: Row): TicketWithAuthor {
  return {
    id: row["id"] as string,
    category: row["category"] as TicketCategory,
    title: row["title"] as string,
    message: row["message"] as string,
    context: row["context"] === null ? null : (JSON.parse(row["context"] as string) as Record<string, unknown>),
    status: row["status"] as TicketStatus,
    resolution: (row["resolution"] ?? null) as string | null,
    authorId: row["author_id"] as string,
    authorKeyId: (row["author_key_id"] ?? null) as string | null,
    portalId: (row["portal_id"] ?? null) as string | null,
    createdAt: Number(row["created_at"]),
    updatedAt: Number(row["updated_at"]),
    version: Number(row["version"]),
    authorName: row["author_name"] as string,
  };
}

function commentFromRow(row: Row): CommentWithAuthor {
  return {
    id: row["id"] as string,
    ticketId: row["ticket_id"] as string,
    authorId: row["author_id"] as string,
    authorKeyId: (row["author_key_id"] ?? null) as string | null,
    byStaff: Number(row["by_staff"]) === 1,
    message: row["message"] as string,
    statusFrom: (row["status_from"] ?? null) as TicketStatus | null,
    statusTo: (row["status_to"] ?? null) as TicketStatus | null,
    createdAt: Number(row["created_at"]),
    authorName: row["author_name"] as string,
  };
}

const notificationStatements = (notifications: Notification[]): SqlStatement[] =>
  notifications.map((n) => insert("notifications", NOTIFICATION_COLUMNS, notificationValues(n)));

const SELECT_TICKET = `SELECT ${columnList(TICKET_COLUMNS, "t")}, u.name AS author_name FROM feedback_tickets t JOIN users u ON u.id = t.author_id`;

export async function createTicket(store: Store, ticket: Ticket): Promise<void> {
  await store.sql.atomically([insert("feedback_tickets", TICKET_COLUMNS, ticketValues(ticket))]);
}

export async function getTicket(store: Store, id: string): Promise<TicketWithAuthor | undefined> {
  const [row] = await store.sql.all(`${SELECT_TICKET} WHERE t.id = ?`, [id]);
  return row && ticketFromRow(row);
}

/** The thread, oldest first. */
export async function listComments(store: Store, ticketId: string): Promise<CommentWithAuthor[]> {
  const rows = await store.sql.all(
    `SELECT ${columnList(COMMENT_COLUMNS, "c")}, u.name AS author_name FROM feedback_comments c JOIN users u ON u.id = c.author_id
     WHERE c.ticket_id = ? ORDER BY c.created_at, c.id`,
    [ticketId],
  );
  return rows.map(commentFromRow);
}

/** A page of the tickets in scope that match the filter, newest first, and how many match in all. */
export async function listTickets(store: Store, scope: TicketScope, filter: TicketFilter, page: { offset: number; limit: number }): Promise<{ tickets: TicketWithAuthor[]; total: number }> {
  const clauses: string[] = [];
  const params: SqlValue[] = [];
  if (scope.kind === "author") {
    clauses.push(scope.portalId === null ? "t.author_id = ? AND t.portal_id IS NULL" : "t.author_id = ? AND t.portal_id = ?");
    params.push(scope.authorId, ...(scope.portalId === null ? [] : [scope.portalId]));
  } else if (scope.kind === "author-or-portals") {
    const portals = scope.portalIds.length === 0 ? "" : ` OR t.portal_id IN (${scope.portalIds.map(() => "?").join(", ")})`;
    clauses.push(`(t.author_id = ?${portals})`);
    params.push(scope.authorId, ...scope.portalIds);
  }
  for (const [column, value] of [["t.status", filter.status], ["t.category", filter.category], ["t.portal_id", filter.portalId]] as const) {
    if (value === undefined) continue;
    clauses.push(`${column} = ?`);
    params.push(value);
  }
  const where = clauses.length === 0 ? "" : ` WHERE ${clauses.join(" AND ")}`;
  const [count] = await store.sql.all(`SELECT COUNT(*) AS n FROM feedback_tickets t${where}`, params);
  const rows = await store.sql.all(`${SELECT_TICKET}${where} ORDER BY t.created_at DESC, t.id DESC LIMIT ? OFFSET ?`, [...params, page.limit, page.offset]);
  return { tickets: rows.map(ticketFromRow), total: Number(count?.["n"] ?? 0) };
}

export interface TicketChange {
  /** The ticket as it was read: the change applies only if it is still at this version. */
  ticket: Ticket;
  status: TicketStatus;
  resolution: string | null;
  at: number;
  comment?: TicketComment;
  notifications: Notification[];
  emails: OutgoingEmail[];
}

/** Applies the change with its comment, notifications and emails; false, with nothing written, when the ticket changed since it was read. */
export async function changeTicket(store: Store, change: TicketChange): Promise<boolean> {
  const { ticket, comment } = change;
  return store.sql.atomically([
    {
      sql: "UPDATE feedback_tickets SET status = ?, resolution = ?, updated_at = ?, version = version + 1 WHERE id = ? AND version = ?",
      params: [change.status, change.resolution, change.at, ticket.id, ticket.version],
      mustChange: 1,
    },
    ...(comment === undefined
      ? []
      : [
          insert("feedback_comments", COMMENT_COLUMNS, [
            comment.id,
            comment.ticketId,
            comment.authorId,
            comment.authorKeyId,
            comment.byStaff ? 1 : 0,
            comment.message,
            comment.statusFrom,
            comment.statusTo,
            comment.createdAt,
          ]),
        ]),
    ...notificationStatements(change.notifications),
    ...emailStatements(change.emails),
  ]);
}
