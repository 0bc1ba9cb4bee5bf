/**
 * The rules of feedback tickets (seed 001, docs/feedback.md), without I/O: who sees which
 * tickets, who may change them, and which status changes the statuses' meanings allow.
 */
import type { Ticket, TicketScope, TicketStatus } from "../store/tickets.ts";
import type { UserRole } from "../store/store.ts";

/** Who asks, as far as tickets go. */
export interface Viewer {
  userId: string;
  role: UserRole;
  /** The portal of the portal key asking; null: a management key or a signed-in session. */
  keyPortalId: string | null;
  /** The portals the user administers (read for management keys only). */
  adminOf: string[];
}

/** The instance's team: the owner made by `keygate init` and users created with `--role staff`. */
export function isStaff(role: UserRole): boolean {
  return role === "owner" || role === "staff";
}

/** The team acts through a management key or the dashboard; a portal key is its owner's own, staff or not ("own tickets only"). */
export function isTeam(viewer: Viewer): boolean {
  return viewer.keyPortalId === null && isStaff(viewer.role);
}

/**
 * Seed 001: a portal key sees "own tickets only" — its owner's, sent from its portal; the team
 * "all platform tickets"; any other user's management key the tickets of the portals they
 * administer plus their own.
 */
export function ticketScope(viewer: Viewer): TicketScope {
  if (viewer.keyPortalId !== null) return { kind: "author", authorId: viewer.userId, portalId: viewer.keyPortalId };
  if (isStaff(viewer.role)) return { kind: "all" };
  return { kind: "author-or-portals", authorId: viewer.userId, portalIds: viewer.adminOf };
}

export function canSee(viewer: Viewer, ticket: Pick<Ticket, "authorId" | "portalId">): boolean {
  const scope = ticketScope(viewer);
  if (scope.kind === "all") return true;
  if (scope.kind === "author") return ticket.authorId === scope.authorId && ticket.portalId === scope.portalId;
  return ticket.authorId === scope.authorId || (ticket.portalId !== null && scope.portalIds.includes(ticket.portalId));
}

/** Writing in a ticket's thread: its author and the team; a portal's admins read their members' tickets, they do not answer for the team. */
export function canComment(viewer: Viewer, ticket: Pick<Ticket, "authorId" | "portalId">): boolean {
  return isTeam(viewer) || (ticket.authorId === viewer.userId && canSee(viewer, ticket));
}

/**
 * The changes the team may make, by the statuses' meanings (seed 001): NEW is only a ticket just
 * sent; NEEDS_REVIEW only the author's reply to AWAITING_USER sets; RESOLVED and ARCHIVED are
 * closed, reopened by taking them into work again (REVIEWING).
 */
export const TEAM_MOVES: Record<TicketStatus, readonly TicketStatus[]> = {
  NEW: ["REVIEWING", "AWAITING_USER", "RESOLVED", "ARCHIVED"],
  REVIEWING: ["AWAITING_USER", "RESOLVED", "ARCHIVED"],
  AWAITING_USER: ["REVIEWING", "RESOLVED", "ARCHIVED"],
  NEEDS_REVIEW: ["REVIEWING", "AWAITING_USER", "RESOLVED", "ARCHIVED"],
  RESOLVED: ["REVIEWING"],
  ARCHIVED: ["REVIEWING"],
};

/** What each status means (seed 001), for people and for the agents that work the queue (GET /v1/me). */
export const STATUS_MEANINGS: Record<TicketStatus, string> = {
  NEW: "The user has just submitted the ticket, no one has looked at it yet",
  REVIEWING: "The team has taken the ticket into work, the user is not yet receiving updates",
  AWAITING_USER: "The team asked the user a clarifying question — awaiting a reply (the user is notified, and emailed where SMTP is configured)",
  NEEDS_REVIEW: "The user replied to the clarification — the team reads the new comment and decides the next step",
  RESOLVED: "The fix is published in the production environment, the user has been notified",
  ARCHIVED: "Closed without a code change (duplicate, off-topic, not reproducible)",
};

/** Why the team cannot move a ticket from one status to another; undefined when it can (staying where it is is no change, and allowed). */
export function teamMoveRefusal(from: TicketStatus, to: TicketStatus): string | undefined {
  if (from === to || TEAM_MOVES[from].includes(to)) return undefined;
  if (to === "NEW") return "NEW is the status of a ticket just sent; a ticket never returns to it";
  if (to === "NEEDS_REVIEW") return "NEEDS_REVIEW is set by the author's reply to an AWAITING_USER ticket, not by the team";
  return `a ${from} ticket is closed: reopen it as REVIEWING first`;
}

/** The status after the author's reply: an answer to the team's question (AWAITING_USER) goes back to the team (NEEDS_REVIEW); otherwise it stays. */
export function statusAfterAuthorReply(current: TicketStatus): TicketStatus {
  return current === "AWAITING_USER" ? "NEEDS_REVIEW" : current;
}

/** The changes the author is told of (in the app, and by email where SMTP is configured): the team asks them something, or resolved the ticket. */
export function tellsAuthor(from: TicketStatus, to: TicketStatus): boolean {
  return from !== to && (to === "AWAITING_USER" || to === "RESOLVED");
}
