import { Type as T } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import { parseIsoTime } from "../../core/time.ts";
import type { Portal } from "../../store/store.ts";
import { redactUpstream } from "../../upstream/redact.ts";
import { sandboxRootWebhookUrl, sandboxWebhookToken, sandboxWebhookUrl } from "../../upstream/sandbox/setup.ts";
import { sandboxApp } from "../../upstream/sandbox/oauth.ts";
import { addMember, createPortal, listMembers, portalForActor, removeMember, testConnection, updatePortal } from "../../manage/portals.ts";
import { BODY_CODES } from "../envelope.ts";
import type { App, GatewayContext } from "../server.ts";
import { actorOf } from "./actor.ts";

const Id = T.Object({ id: T.String() });
// One object for every kind (not a union per kind): a union's validation errors name the first
// branch's field (an unknown kind was reported as a missing webhookUrl). Which field belongs to
// which kind is checked by upstreamOrFail, which names the field at fault.
const Upstream = T.Union([
  T.Object(
    {
      kind: T.Unsafe<"bitrix24" | "sandbox" | "http">({ type: "string", enum: ["bitrix24", "sandbox", "http"], description: "Where the portal's data lives" }),
      webhookUrl: T.Optional(T.String({ description: "kind bitrix24 (required): the incoming webhook, https://<portal>/rest/<user id>/<token>/" })),
      baseUrl: T.Optional(T.String({ description: "kind http (required): the upstream's base URL" })),
      clientId: T.Optional(T.String({ description: "kind bitrix24, with clientSecret: the portal's Bitrix24 application (client_id), which signs users in for authorization keys (docs/oauth.md)" })),
      clientSecret: T.Optional(T.String({ description: "kind bitrix24, with clientId: the application's client_secret; kept sealed, never returned" })),
    },
    { additionalProperties: false },
  ),
  T.Null(),
]);
const tags = ["portals"];
const Time = T.String({ format: "date-time" });
const PortalView = T.Object({
  id: T.String(),
  domain: T.String(),
  name: T.String(),
  status: T.String(),
  defaultAccessMode: T.Union([T.Literal("READWRITE"), T.Literal("READONLY")]),
  linked: T.Boolean(),
  upstream: T.Union([T.Object({ kind: T.String(), webhookUrl: T.Optional(T.String({ description: "Masked" })), baseUrl: T.Optional(T.String({ description: "Masked" })), clientId: T.Optional(T.String({ description: "The Bitrix24 application's client_id (its client_secret is never returned)" })) }), T.Null()]),
  requestLimit: T.Union([T.Integer(), T.Null()]),
  allowedOrigins: T.Array(T.String(), { description: "Browser origins allowed to send this portal's keys (CORS)" }),
  createdAt: Time,
  sandboxWebhookUrl: T.Optional(T.String({ description: "Admins of a sandbox portal: its incoming webhook, for Bitrix24 clients" })),
  sandboxOAuth: T.Optional(
    T.Object(
      { clientId: T.String(), clientSecret: T.String(), authorizeUrl: T.String(), tokenUrl: T.String() },
      { description: "Admins of a sandbox portal: its Bitrix24 local application and OAuth endpoints (Bitrix24's full OAuth protocol; docs/oauth.md)" },
    ),
  ),
  role: T.Optional(T.Union([T.Literal("ADMIN"), T.Literal("MEMBER")], { description: "Your role" })),
});
const portalExample = {
  id: "c5a0b6f4-1f7e-4f43-9a3c-7d1e2b8c9d10",
  domain: "acme.bitrix24.ru",
  name: "Acme",
  status: "ACTIVE",
  defaultAccessMode: "READWRITE",
  linked: true,
  upstream: { kind: "bitrix24", webhookUrl: "https://acme.bitrix24.ru/rest/1/ab…yz/" },
  requestLimit: null,
  allowedOrigins: [],
  createdAt: "2026-11-22T12:00:00.000Z",
  role: "ADMIN",
};
const PORTAL_CODES = ["PORTAL_NOT_FOUND", "NOT_PORTAL_MEMBER", "NOT_PORTAL_ADMIN"];
/** One event of an audit trail (a portal's, a key's). */
export const AuditEventView = T.Object({
  id: T.String(),
  at: Time,
  action: T.String({ description: "key.create, key.update, key.rotate, key.delete, portal.create, portal.update, member.add, member.remove, …" }),
  actorUserId: T.Union([T.String(), T.Null()]),
  actorKeyId: T.Union([T.String(), T.Null()]),
  sourceIp: T.Union([T.String(), T.Null()]),
  entityType: T.String(),
  entityId: T.String(),
  portalId: T.Union([T.String(), T.Null()]),
  before: T.Optional(T.Unknown()),
  after: T.Optional(T.Unknown()),
});
const Role = T.Union([T.Literal("ADMIN"), T.Literal("MEMBER")]);
const Member = T.Object({ portalId: T.String(), userId: T.String(), role: Role, createdAt: Time, email: T.String(), name: T.String() });

export function portalView(portal: Portal) {
  return {
    id: portal.id,
    domain: portal.domain,
    name: portal.name,
    status: portal.status,
    defaultAccessMode: portal.defaultAccessMode,
    linked: portal.upstream !== null,
    // Shown, never returned: the credentials in it are masked.
    upstream: portal.upstream === null ? null : redactUpstream(portal.upstream),
    requestLimit: portal.requestLimit,
    allowedOrigins: portal.allowedOrigins,
    createdAt: new Date(portal.createdAt).toISOString(),
  };
}

export function portalRoutes(app: App, ctx: GatewayContext): void {
  const { kg, envelope, responses } = ctx;
  /**
   * The portal as its admins see it: a sandbox portal's incoming webhook too, which Bitrix24
   * clients use as they would a real portal's. Its token is derived from the server secret, never
   * stored: on the sandbox at a host root (--sandbox-port) when there is one, else under /sandbox/.
   */
  const adminView = (portal: Portal, request: FastifyRequest) => {
    if (portal.upstream?.kind !== "sandbox") return portalView(portal);
    const token = sandboxWebhookToken(kg.serverSecret, portal.id);
    const sandboxWebhook =
      ctx.sandboxUrl === undefined ? sandboxWebhookUrl(ctx.publicUrl ?? `${request.protocol}://${request.host}`, portal.id, token) : sandboxRootWebhookUrl(ctx.sandboxUrl, token);
    // The sandbox's Bitrix24 OAuth lives under /sandbox/ on keygate itself (not on the root listener).
    const oauthBase = `${(ctx.publicUrl ?? `${request.protocol}://${request.host}`).replace(/\/+$/, "")}/sandbox`;
    const app = sandboxApp(kg.serverSecret, portal.id);
    const sandboxOAuth = { ...app, authorizeUrl: `${oauthBase}/${encodeURIComponent(portal.id)}/oauth/authorize/`, tokenUrl: `${oauthBase}/oauth/token/` };
    return { ...portalView(portal), sandboxWebhookUrl: sandboxWebhook, sandboxOAuth };
  };

  app.get("/v1/portals", { schema: { operationId: "listPortals", response: responses({ data: T.Array(PortalView), meta: T.Object({ total: T.Integer() }), examples: [[portalExample]] }), tags, summary: "The portals you are a member of, with your role; a sandbox portal's admins see its webhook URL" } }, async (request) => {
    const actor = await actorOf(kg, request);
    const portals = await kg.store.listPortalsForUser(actor.user.id);
    return envelope.ok(portals.map((p) => ({ ...(p.role === "ADMIN" ? adminView(p, request) : portalView(p)), role: p.role })), { total: portals.length });
  });

  app.get(
    "/v1/portals/:id",
    {
      schema: {
        operationId: "getPortal",
        response: responses({ data: PortalView, examples: [portalExample], codes: PORTAL_CODES }),
        tags,
        summary: "One of your portals, with your role; a sandbox portal's admins see its webhook URL",
        params: Id,
      },
    },
    async (request) => {
      const { portal, role } = await portalForActor(kg, await actorOf(kg, request), request.params.id);
      return envelope.ok({ ...(role === "ADMIN" ? adminView(portal, request) : portalView(portal)), role });
    },
  );

  app.post(
    "/v1/portals",
    {
      schema: {
        operationId: "createPortal",
        tags,
        summary: "Create a portal; you become its ADMIN. Without an upstream it is not linked.",
        response: responses({ status: 201, data: PortalView, examples: [portalExample], codes: [...BODY_CODES, "PORTAL_DOMAIN_TAKEN"] }),
        body: T.Object({ domain: T.String(), name: T.Optional(T.String()), upstream: T.Optional(Upstream) }, { additionalProperties: false }),
      },
    },
    async (request, reply) => {
      const portal = await createPortal(kg, await actorOf(kg, request), request.body);
      return reply.code(201).send(envelope.ok({ ...adminView(portal, request), role: "ADMIN" }));
    },
  );

  app.patch(
    "/v1/portals/:id",
    {
      schema: {
        operationId: "updatePortal",
        response: responses({ data: PortalView, examples: [portalExample], codes: [...BODY_CODES, ...PORTAL_CODES] }),
        tags,
        summary: "Change a portal (admins): defaultAccessMode (the default portal policy), name, upstream, requestLimit, allowedOrigins (CORS)",
        params: Id,
        body: T.Object(
          {
            name: T.Optional(T.String()),
            defaultAccessMode: T.Optional(T.Union([T.Literal("READWRITE"), T.Literal("READONLY")])),
            upstream: T.Optional(Upstream),
            requestLimit: T.Optional(T.Union([T.Integer({ minimum: 1 }), T.Null()])),
            allowedOrigins: T.Optional(T.Array(T.String(), { description: "Browser origins whose pages may send this portal's keys, exactly as browsers send Origin (https://app.example.com); [] (the default): none" })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => {
      const portal = await updatePortal(kg, await actorOf(kg, request), request.params.id, request.body);
      return envelope.ok(adminView(portal, request));
    },
  );

  app.post(
    "/v1/portals/:id/members",
    {
      schema: {
        operationId: "addPortalMember",
        tags,
        summary: "Add a member, or change a member's role (admins)",
        response: responses({
          status: 201,
          data: Member,
          codes: [...BODY_CODES, ...PORTAL_CODES, "USER_NOT_FOUND", "LAST_PORTAL_ADMIN"],
        }),
        params: Id,
        body: T.Object({ email: T.String(), role: T.Optional(T.Union([T.Literal("ADMIN"), T.Literal("MEMBER")])) }, { additionalProperties: false }),
      },
    },
    async (request, reply) => {
      const member = await addMember(kg, await actorOf(kg, request), request.params.id, request.body);
      return reply.code(201).send(envelope.ok({ ...member, createdAt: new Date(member.createdAt).toISOString() }));
    },
  );

  app.get(
    "/v1/portals/:id/connection",
    {
      schema: {
        operationId: "testPortalConnection",
        tags,
        summary: "Tests the portal's upstream now (admins): a Bitrix24 webhook answers server.time, an HTTP API its base URL",
        params: Id,
        response: responses({
          data: T.Object({
            ok: T.Boolean(),
            kind: T.String(),
            message: T.String(),
            latencyMs: T.Integer(),
            status: T.Optional(T.Integer({ description: "kind http: the status the base URL answered with" })),
          }),
          codes: [...PORTAL_CODES, "PORTAL_NOT_LINKED"],
        }),
      },
    },
    async (request) => envelope.ok(await testConnection(kg, await actorOf(kg, request), request.params.id)),
  );

  app.get(
    "/v1/portals/:id/members",
    {
      schema: {
        operationId: "listPortalMembers",
        tags,
        summary: "The portal's members with their email, name and role (admins), oldest first",
        params: Id,
        response: responses({ data: T.Array(Member), meta: T.Object({ total: T.Integer() }), codes: PORTAL_CODES }),
      },
    },
    async (request) => {
      const members = await listMembers(kg, await actorOf(kg, request), request.params.id);
      return envelope.ok(members.map((m) => ({ ...m, createdAt: new Date(m.createdAt).toISOString() })), { total: members.length });
    },
  );

  app.delete(
    "/v1/portals/:id/members/:userId",
    {
      schema: {
        operationId: "removePortalMember",
        tags,
        summary: "Remove a member (admins); a portal keeps at least one admin",
        params: T.Object({ id: T.String(), userId: T.String() }),
        response: responses({ data: T.Object({ portalId: T.String(), userId: T.String(), removed: T.Literal(true) }), codes: [...PORTAL_CODES, "USER_NOT_FOUND", "LAST_PORTAL_ADMIN"] }),
      },
    },
    async (request) => {
      const { id, userId } = request.params;
      await removeMember(kg, await actorOf(kg, request), id, userId);
      return envelope.ok({ portalId: id, userId, removed: true });
    },
  );

  app.get(
    "/v1/portals/:id/audit",
    {
      schema: {
        operationId: "listPortalAudit",
        tags,
        summary: "The portal's audit trail (admins), newest first",
        response: responses({
          data: T.Array(AuditEventView),
          meta: T.Object({ count: T.Integer() }),
          codes: PORTAL_CODES,
        }),
        params: Id,
        querystring: T.Object({ limit: T.Optional(T.String({ pattern: "^[0-9]+$" })), before: T.Optional(T.String()), keyId: T.Optional(T.String()) }, { additionalProperties: false }),
      },
    },
    async (request) => {
      const { id } = request.params;
      const query = request.query;
      await portalForActor(kg, await actorOf(kg, request), id, "ADMIN");
      const limit = Number(query.limit ?? 50);
      if (limit < 1 || limit > 200) throw new KeygateError("VALIDATION_ERROR", { message: "limit is a whole number from 1 to 200", param: "limit" });
      const before = query.before === undefined ? undefined : parseIsoTime(query.before);
      if (query.before !== undefined && before === undefined) {
        throw new KeygateError("VALIDATION_ERROR", { message: "before is an ISO-8601 date or date-time with its zone (2026-12-05T10:00:00Z)", param: "before" });
      }
      const events = await kg.store.listAudit({ portalId: id, entityId: query.keyId, limit, before });
      return envelope.ok(events.map((e) => ({ ...e, at: new Date(e.at).toISOString() })), { count: events.length });
    },
  );
}
