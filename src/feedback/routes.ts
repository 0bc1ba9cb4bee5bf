/**
 * The feedback endpoints (seed 001, docs/feedback.md): POST and GET /v1/feedback, GET and PATCH
 * /v1/feedback/:id, POST /v1/feedback/:id/comments. The profile's route table has already checked
 * the key type and scopes (vibe:feedback, vibe:mgmt:feedback); who sees and changes which ticket
 * is src/feedback/rules.ts.
 */
import { randomUUID } from "node:crypto";
import { Type as T } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { KeygateError } from "../core/errors.ts";
import { timeOrderedId } from "../core/time-ordered-id.ts";
import type { Actor } from "../manage/context.ts";
import type { OutboxSender } from "../mail/outbox-sender.ts";
import type { OutgoingEmail } from "../store/outbox.ts";
import type { Notification } from "../store/store.ts";
import {
  TICKET_CATEGORIES,
  TICKET_STATUSES,
  type CommentWithAuthor,
  type Ticket,
  type TicketChange,
  type TicketStatus,
  type TicketWithAuthor,
  changeTicket,
  createTicket,
  getTicket,
  listComments,
  listTickets,
} from "../store/tickets.ts";
import { BODY_CODES } from "../gateway/envelope.ts";
import { actorOf } from "../gateway/routes/actor.ts";
import type { App, GatewayContext } from "../gateway/server.ts";
import { type Viewer, canComment, canSee, isTeam, statusAfterAuthorReply, teamMoveRefusal, tellsAuthor, ticketScope } from "./rules.ts";

/** The most bytes a ticket's context may take as JSON: room for an error context and reproduction steps, not for logs. */
export const MAX_CONTEXT_BYTES = 16 * 1024;
export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 100;
const MAX_TITLE = 200;
const MAX_MESSAGE = 10_000;
const MAX_RESOLUTION = 2_000;
/** A change made on a ticket another request changed in between is worked out again from the new state, this many times at most. */
const ATTEMPTS = 5;

const tags = ["feedback"];
const Time = T.String({ format: "date-time" });
const enumOf = <V extends string>(values: readonly V[], description: string) => T.Unsafe<V>({ type: "string", enum: [...values], description });
const Category = enumOf(TICKET_CATEGORIES, "BUG, SUGGESTION, DOCS, CHAT, BOTS or OTHER");
const Status = enumOf(TICKET_STATUSES, "NEW, REVIEWING, AWAITING_USER, NEEDS_REVIEW, RESOLVED or ARCHIVED (docs/feedback.md)");
const Context = T.Object({}, { additionalProperties: true, description: `Any JSON object: an agent's error context, environment, reproduction steps (at most ${MAX_CONTEXT_BYTES} bytes as JSON)` });
const Text = (max: number, description?: string) => T.String({ minLength: 1, maxLength: max, ...(description ? { description } : {}) });

const TicketView = T.Object({
  id: T.String(),
  category: Category,
  title: T.String(),
  message: T.String(),
  context: T.Union([Context, T.Null()]),
  status: Status,
  resolution: T.Union([T.String(), T.Null()]),
  author: T.Object({ userId: T.String(), name: T.String(), keyId: T.Union([T.String(), T.Null()], { description: "The key it was sent with; null: the dashboard" }) }),
  portalId: T.Union([T.String(), T.Null()], { description: "The portal of the key it was sent with; null: a management key or the dashboard" }),
  createdAt: Time,
  updatedAt: Time,
});
const CommentView = T.Object({
  id: T.String(),
  author: T.Object({ userId: T.String(), name: T.String() }),
  byTeam: T.Boolean({ description: "Written by the instance's team, not by the ticket's author" }),
  message: T.String(),
  statusChange: T.Union([T.Object({ from: Status, to: Status }), T.Null()]),
  createdAt: Time,
});
const TicketWithThread = T.Composite([TicketView, T.Object({ comments: T.Array(CommentView, { description: "The thread, oldest first" }) })]);
const Id = T.Object({ id: T.String() });
const ticketExample = {
  id: "3f1c2a7e-8b4d-4e0f-9a61-2d5c7b9e0a13",
  category: "BUG",
  title: "POST /v1/deals answers 500 for an empty title",
  message: "Creating a deal without a title fails instead of answering 400.",
  context: { request: "POST /v1/deals", body: { title: "" }, requestId: "req_…" },
  status: "NEW",
  resolution: null,
  author: { userId: "9b0e…", name: "Ada", keyId: "5d2a…" },
  portalId: "c5a0b6f4-1f7e-4f43-9a3c-7d1e2b8c9d10",
  createdAt: "2026-12-06T10:00:00.000Z",
  updatedAt: "2026-12-06T10:00:00.000Z",
};

const iso = (ms: number) => new Date(ms).toISOString();

export function ticketView(t: TicketWithAuthor) {
  return {
    id: t.id,
    category: t.category,
    title: t.title,
    message: t.message,
    context: t.context,
    status: t.status,
    resolution: t.resolution,
    author: { userId: t.authorId, name: t.authorName, keyId: t.authorKeyId },
    portalId: t.portalId,
    createdAt: iso(t.createdAt),
    updatedAt: iso(t.updatedAt),
  };
}

function commentView(c: CommentWithAuthor) {
  return {
    id: c.id,
    author: { userId: c.authorId, name: c.authorName },
    byTeam: c.byStaff,
    message: c.message,
    statusChange: c.statusFrom === null || c.statusTo === null ? null : { from: c.statusFrom, to: c.statusTo },
    createdAt: iso(c.createdAt),
  };
}

/** Text as it is kept: trimmed; a field of only spaces is refused like an empty one. */
function text(value: string, param: string): string {
  const trimmed = value.trim();
  if (trimmed === "") throw new KeygateError("VALIDATION_ERROR", { message: `${param} must not be empty`, param });
  return trimmed;
}

/** `mail`: the outbox sender when SMTP is configured; without it the author is told in the app only. */
export function feedbackRoutes(app: App, ctx: GatewayContext, mail: OutboxSender | undefined): void {
  const { kg, envelope, responses } = ctx;

  async function viewerOf(request: FastifyRequest): Promise<{ actor: Actor; viewer: Viewer }> {
    const actor = await actorOf(kg, request);
    const portalless = request.auth.key.verified.keyType.portalless === true;
    const viewer: Viewer = { userId: actor.user.id, role: actor.user.role, keyPortalId: portalless ? null : request.auth.key.record.portalId, adminOf: [] };
    if (ticketScope(viewer).kind === "author-or-portals") {
      viewer.adminOf = (await kg.store.listPortalsForUser(actor.user.id)).filter((p) => p.role === "ADMIN").map((p) => p.id);
    }
    return { actor, viewer };
  }

  /** The ticket, if this viewer sees it: one they do not see is as good as missing (its existence is not told). */
  async function visibleTicket(viewer: Viewer, id: string): Promise<TicketWithAuthor> {
    const ticket = await getTicket(kg.store, id);
    if (ticket === undefined || !canSee(viewer, ticket)) throw new KeygateError("TICKET_NOT_FOUND", { param: "id" });
    return ticket;
  }

  async function withThread(id: string) {
    const ticket = await getTicket(kg.store, id);
    if (ticket === undefined) throw new KeygateError("TICKET_NOT_FOUND", { param: "id" });
    return { ...ticketView(ticket), comments: (await listComments(kg.store, id)).map(commentView) };
  }

  /** What the author is told when the team moves their ticket to `to` (seed 001: AWAITING_USER and RESOLVED): in the app, and by email where SMTP is configured. */
  async function tellings(ticket: Ticket, from: TicketStatus, to: TicketStatus, said: string | undefined): Promise<{ notifications: Notification[]; emails: OutgoingEmail[] }> {
    if (!tellsAuthor(from, to)) return { notifications: [], emails: [] };
    const asked = to === "AWAITING_USER";
    const message = asked
      ? `The team asks about your feedback "${ticket.title}"${said ? `: ${said}` : ""}`
      : `Your feedback "${ticket.title}" is resolved${ticket.resolution ? `: ${ticket.resolution}` : ""}`;
    const at = kg.now();
    const notifications: Notification[] = [{ id: randomUUID(), userId: ticket.authorId, at, kind: asked ? "feedback.awaiting_user" : "feedback.resolved", message, data: { ticketId: ticket.id, status: to }, readAt: null }];
    const author = mail === undefined ? undefined : await kg.store.getUser(ticket.authorId);
    if (author === undefined) return { notifications, emails: [] };
    const subject = asked ? `A question about your feedback "${ticket.title}"` : `Your feedback "${ticket.title}" is resolved`;
    const body = [
      message,
      "",
      asked ? "Reply in the ticket's thread: POST /v1/feedback/:id/comments {message}, or in the dashboard's Feedback section." : "Thank you for the report.",
      `Ticket: ${ticket.id}${ctx.publicUrl ? ` (${ctx.publicUrl.replace(/\/$/, "")}/feedback/${ticket.id})` : ""}`,
    ].join("\n");
    return { notifications, emails: [{ id: randomUUID(), to: author.email, subject, body, createdAt: at }] };
  }

  /** Applies a change worked out from the ticket as read, again on a fresh read when another request changed it in between. */
  async function change(viewer: Viewer, id: string, work: (ticket: TicketWithAuthor) => Promise<TicketChange>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const ticket = await visibleTicket(viewer, id);
      const planned = await work(ticket);
      if (await changeTicket(kg.store, planned)) {
        if (planned.emails.length > 0) mail?.kick();
        return;
      }
      if (attempt === ATTEMPTS) throw new Error(`feedback ticket ${id} kept changing under ${ATTEMPTS} attempts to change it`);
    }
  }

  app.post(
    "/v1/feedback",
    {
      schema: {
        operationId: "createFeedback",
        tags,
        summary: "Send feedback: a ticket with status NEW",
        body: T.Object(
          { category: Category, title: Text(MAX_TITLE), message: Text(MAX_MESSAGE), context: T.Optional(Context) },
          { additionalProperties: false },
        ),
        response: responses({ status: 201, data: TicketView, examples: [ticketExample], codes: BODY_CODES }),
      },
    },
    async (request, reply) => {
      const { actor, viewer } = await viewerOf(request);
      const body = request.body;
      const context = body.context ?? null;
      if (context !== null && Buffer.byteLength(JSON.stringify(context)) > MAX_CONTEXT_BYTES) {
        throw new KeygateError("VALIDATION_ERROR", { message: `context takes more than ${MAX_CONTEXT_BYTES} bytes as JSON`, param: "context" });
      }
      const now = kg.now();
      const ticket: Ticket = {
        // Time-ordered: tickets sent in the same millisecond list newest first in the order they came.
        id: timeOrderedId(now),
        category: body.category,
        title: text(body.title, "title"),
        message: text(body.message, "message"),
        context,
        status: "NEW",
        resolution: null,
        authorId: actor.user.id,
        authorKeyId: actor.keyId,
        portalId: viewer.keyPortalId,
        createdAt: now,
        updatedAt: now,
        version: 1,
      };
      await createTicket(kg.store, ticket);
      return reply.code(201).send(envelope.ok(ticketView({ ...ticket, authorName: actor.user.name })));
    },
  );

  app.get(
    "/v1/feedback",
    {
      schema: {
        operationId: "listFeedback",
        tags,
        summary: "Feedback tickets this key sees, newest first: a portal key its owner's own, the team's keys all, other management keys those of the portals they administer plus their own",
        querystring: T.Object(
          {
            status: T.Optional(Status),
            category: T.Optional(Category),
            portalId: T.Optional(T.String()),
            page: T.Optional(T.String({ pattern: "^[1-9][0-9]{0,8}$", description: "From 1 (default 1)" })),
            limit: T.Optional(T.String({ pattern: "^[1-9][0-9]{0,8}$", description: `Tickets per page (default ${DEFAULT_LIMIT}, capped at ${MAX_LIMIT})` })),
          },
          { additionalProperties: false },
        ),
        response: responses({
          data: T.Array(TicketView),
          meta: T.Object({ total: T.Integer(), page: T.Integer(), limit: T.Integer(), hasMore: T.Boolean() }),
          examples: [[ticketExample]],
        }),
      },
    },
    async (request) => {
      const { viewer } = await viewerOf(request);
      const { status, category, portalId } = request.query;
      const page = Number(request.query.page ?? 1);
      const limit = Math.min(Number(request.query.limit ?? DEFAULT_LIMIT), MAX_LIMIT);
      const offset = (page - 1) * limit;
      const { tickets, total } = await listTickets(kg.store, ticketScope(viewer), { status, category, portalId }, { offset, limit });
      return envelope.ok(tickets.map(ticketView), { total, page, limit, hasMore: offset + tickets.length < total });
    },
  );

  app.get(
    "/v1/feedback/:id",
    {
      schema: {
        operationId: "getFeedback",
        tags,
        summary: "One ticket with its full comment thread",
        params: Id,
        response: responses({ data: TicketWithThread, codes: ["TICKET_NOT_FOUND"] }),
      },
    },
    async (request) => {
      const { viewer } = await viewerOf(request);
      await visibleTicket(viewer, request.params.id);
      return envelope.ok(await withThread(request.params.id));
    },
  );

  app.post(
    "/v1/feedback/:id/comments",
    {
      schema: {
        operationId: "commentFeedback",
        tags,
        summary: "Write in a ticket's thread: the team replies and changes the status in one step; the author's reply to an AWAITING_USER ticket moves it to NEEDS_REVIEW",
        params: Id,
        body: T.Object(
          { message: Text(MAX_MESSAGE), status: T.Optional(T.Unsafe<TicketStatus>({ ...Status, description: "The team only: the status the ticket moves to with this comment" })) },
          { additionalProperties: false },
        ),
        response: responses({
          status: 201,
          data: TicketWithThread,
          codes: [...BODY_CODES, "TICKET_NOT_FOUND", "NOT_TICKET_AUTHOR", "FEEDBACK_TEAM_ONLY", "INVALID_STATUS_TRANSITION"],
        }),
      },
    },
    async (request, reply) => {
      const { actor, viewer } = await viewerOf(request);
      const { id } = request.params;
      const message = text(request.body.message, "message");
      const asked = request.body.status;
      const team = isTeam(viewer);
      await change(viewer, id, async (ticket) => {
        if (!canComment(viewer, ticket)) throw new KeygateError("NOT_TICKET_AUTHOR");
        if (asked !== undefined && !team) throw new KeygateError("FEEDBACK_TEAM_ONLY", { param: "status" });
        const to = team ? (asked ?? ticket.status) : statusAfterAuthorReply(ticket.status);
        const refusal = team ? teamMoveRefusal(ticket.status, to) : undefined;
        if (refusal !== undefined) throw new KeygateError("INVALID_STATUS_TRANSITION", { message: `status: ${refusal}`, param: "status", details: { from: ticket.status, to } });
        const now = kg.now();
        const moved = to !== ticket.status;
        return {
          ticket,
          status: to,
          resolution: ticket.resolution,
          at: now,
          comment: {
            // Time-ordered: comments written in the same millisecond keep their order in the thread (ORDER BY created_at, id).
            id: timeOrderedId(now),
            ticketId: id,
            authorId: actor.user.id,
            authorKeyId: actor.keyId,
            byStaff: team,
            message,
            statusFrom: moved ? ticket.status : null,
            statusTo: moved ? to : null,
            createdAt: now,
          },
          ...(await tellings(ticket, ticket.status, to, message)),
        };
      });
      return reply.code(201).send(envelope.ok(await withThread(id)));
    },
  );

  app.patch(
    "/v1/feedback/:id",
    {
      schema: {
        operationId: "updateFeedback",
        tags,
        summary: "The team: change a ticket's status and resolution (a comment with a status does both in one step)",
        params: Id,
        body: T.Object(
          { status: T.Optional(Status), resolution: T.Optional(T.Union([T.String({ maxLength: MAX_RESOLUTION }), T.Null()], { description: "What was done; null clears it" })) },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: responses({ data: TicketWithThread, codes: [...BODY_CODES, "TICKET_NOT_FOUND", "FEEDBACK_TEAM_ONLY", "INVALID_STATUS_TRANSITION"] }),
      },
    },
    async (request) => {
      const { viewer } = await viewerOf(request);
      const { id } = request.params;
      await visibleTicket(viewer, id);
      if (!isTeam(viewer)) throw new KeygateError("FEEDBACK_TEAM_ONLY");
      const { status: asked, resolution } = request.body;
      await change(viewer, id, async (ticket) => {
        const to = asked ?? ticket.status;
        const refusal = teamMoveRefusal(ticket.status, to);
        if (refusal !== undefined) throw new KeygateError("INVALID_STATUS_TRANSITION", { message: `status: ${refusal}`, param: "status", details: { from: ticket.status, to } });
        const kept = resolution === undefined ? ticket.resolution : resolution === null ? null : resolution.trim() || null;
        return { ticket, status: to, resolution: kept, at: kg.now(), ...(await tellings({ ...ticket, resolution: kept }, ticket.status, to, undefined)) };
      });
      return envelope.ok(await withThread(id));
    },
  );
}
