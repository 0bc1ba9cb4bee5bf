/**
 * The `feedback` object of a management key's GET /v1/me (seed 001): the endpoints, statuses,
 * categories and filters an AI agent needs to work the ticket queue from that answer alone.
 */
import { TICKET_CATEGORIES, TICKET_STATUSES } from "../store/tickets.ts";
import type { UserRole } from "../store/store.ts";
import { DEFAULT_LIMIT, MAX_CONTEXT_BYTES, MAX_LIMIT } from "./routes.ts";
import { STATUS_MEANINGS, TEAM_MOVES, isStaff } from "./rules.ts";

export function feedbackGuide(base: string, role: UserRole) {
  const team = isStaff(role);
  const url = `${base}/v1/feedback`;
  return {
    sees: team ? "every ticket of this keygate (you are one of its team)" : "the tickets of the portals you administer, plus your own",
    team,
    endpoints: {
      list: `GET ${url}?status=&category=&portalId=&page=&limit= — tickets, newest first; meta {total, page, limit, hasMore}`,
      get: `GET ${url}/:id — one ticket with its comment thread (comments, oldest first)`,
      comment: team
        ? `POST ${url}/:id/comments {message, status?} — reply to the author and change the status in one step`
        : `POST ${url}/:id/comments {message} — reply in the thread of a ticket you wrote`,
      ...(team ? { update: `PATCH ${url}/:id {status?, resolution?} — change status and resolution without a comment` } : {}),
      create: `POST ${url} {category, title, message, context?} — send a ticket (context: a JSON object, at most ${MAX_CONTEXT_BYTES} bytes)`,
    },
    statuses: TICKET_STATUSES.map((status) => ({ status, meaning: STATUS_MEANINGS[status], teamMovesTo: [...TEAM_MOVES[status]] })),
    transitionRules: [
      "No ticket returns to NEW; only the author's reply to an AWAITING_USER ticket sets NEEDS_REVIEW.",
      "RESOLVED and ARCHIVED tickets are reopened as REVIEWING first.",
      "Any other change answers 400 INVALID_STATUS_TRANSITION (param status, details {from, to}).",
      "Moving a ticket to AWAITING_USER or RESOLVED tells its author (in the app; by email where SMTP is configured).",
    ],
    categories: [...TICKET_CATEGORIES],
    filters: {
      status: [...TICKET_STATUSES],
      category: [...TICKET_CATEGORIES],
      portalId: "a portal's id (GET /v1/portals)",
      page: "from 1 (default 1)",
      limit: `tickets per page, default ${DEFAULT_LIMIT}, capped at ${MAX_LIMIT}`,
      example: `GET ${url}?status=NEW&category=BUG&page=1&limit=${DEFAULT_LIMIT}`,
    },
    ...(team
      ? {
          workflow: [
            `1. GET ${url}?status=NEW (then NEEDS_REVIEW): the tickets waiting for the team`,
            `2. GET ${url}/:id: read the ticket, its context and thread`,
            `3. POST ${url}/:id/comments {message, status: "AWAITING_USER"} to ask the author; {status: "REVIEWING"} to take it into work`,
            `4. PATCH ${url}/:id {status: "RESOLVED", resolution} once the fix is live, or {status: "ARCHIVED", resolution} to close it without a change`,
          ],
        }
      : {}),
    docs: `${base}/v1/guide`,
  };
}
