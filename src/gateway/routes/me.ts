import { Type as T } from "@sinclair/typebox";
import type { IncomingMessage } from "node:http";
import type { FastifyRequest } from "fastify";
import type { Route } from "../../core/profile/profile.ts";
import { scopeCatalog } from "../../core/profile/catalog.ts";
import { decide } from "../../core/verify/decide.ts";
import { DEFAULTS, limitPolicy, rateLimitHeaders } from "../../limits/policy.ts";
import { keyStatus } from "../../manage/keys.ts";
import { type KeptBody, conditionalGet, keptBody, sendKept } from "../conventions.ts";
import type { CachedKey } from "../key-cache.ts";
import type { App, GatewayContext } from "../server.ts";
import { actorOf } from "./actor.ts";
import { feedbackGuide } from "../../feedback/guide.ts";
import { gatewayInjected, placementGuide } from "./placement-guide.ts";
import { listServersFor } from "../../store/servers.ts";


function baseUrl(ctx: GatewayContext, request: FastifyRequest): string {
  return base(ctx, request.raw);
}

/** The base URL of the links in an answer: the public URL, or where this request was sent (by the trusted-proxy rules). */
function base(ctx: GatewayContext, req: IncomingMessage): string {
  return (ctx.publicUrl ?? `${ctx.client.protocol(req)}://${ctx.client.host(req)}`).replace(/\/$/, "");
}

/**
 * GET /v1/me's answer as the key cache keeps it for this request's base URL; undefined until the
 * route has worked it out. The server answers a request that finds it before Fastify sees it
 * (src/gateway/server.ts), with the same writer as the route.
 */
export function keptMe(ctx: GatewayContext, key: CachedKey, req: IncomingMessage): KeptBody | undefined {
  return ctx.cache.peek<KeptBody>(key, meEntry(ctx, req));
}

/** The name of GET /v1/me's answer in the key cache: one per base URL its links use. */
function meEntry(ctx: GatewayContext, req: IncomingMessage): string {
  return `me ${base(ctx, req)}`;
}

/**
 * Every route with what this key meets on it: allowed, or the code it would get. Without a
 * session by default (what the key can call as it is); hasSession: what it can call once a user
 * has authorized it, which is what its scopes allow.
 */
function endpointsFor(ctx: GatewayContext, request: FastifyRequest, hasSession = false) {
  const { key, clientIp } = request.auth;
  const now = ctx.kg.now();
  return ctx.kg.profile.routes.map((route) => {
    const denial = decide(ctx.kg.profile, key.verified, { method: route.method, route, clientIp, hasSession, now });
    return { route, denial };
  });
}

function describe(route: Route, keyTypeIndex: number) {
  const access = route.access[keyTypeIndex]!;
  return {
    method: route.method,
    path: route.path,
    description: route.description,
    requires: access.denied ? null : (access.requirement?.text ?? []),
    class: route.class,
    userContext: route.userContext,
  };
}

/** The profile's scope catalog (scopeCatalog): what a person picks a key's scopes from. */
const Catalog = T.Object({
  groups: T.Array(
    T.Object({
      id: T.String(),
      label: T.String(),
      description: T.String(),
      lockedAtIssue: T.Boolean({ description: "Scopes of this group added to an existing key take effect only when it is reissued" }),
      coarse: T.Boolean({ description: "Coarse scopes (read, write, admin) reach this group" }),
      scopes: T.Array(
        T.Object({
          scope: T.String(),
          resource: T.String(),
          action: T.Union([T.String(), T.Null()]),
          implies: T.Array(T.String()),
          description: T.String(),
          keyTypes: T.Array(T.String(), { description: "The key types that may hold it" }),
          autoGrant: T.Array(T.String(), { description: "Key types that always hold it, without choosing it" }),
          reserved: T.Boolean({ description: "Shown, not selectable" }),
          aliases: T.Array(T.String()),
        }),
      ),
    }),
  ),
  coarse: T.Array(T.Object({ scope: T.String(), description: T.String(), action: T.String() })),
  bundles: T.Array(T.Object({ id: T.String(), description: T.String(), scopes: T.Array(T.String()) }, { description: "Expanded into their scopes when a key is issued" })),
  companions: T.Array(T.Object({ scopes: T.Array(T.String()), note: T.String() })),
  recipes: T.Array(T.Object({ task: T.String(), scopes: T.Array(T.String()), note: T.Optional(T.String()) }, { description: "Which scopes for which task" })),
});

/** The platform sections (src/platform/sections.ts): which are available on this keygate. */
const SectionsSchema = T.Record(
  T.String(),
  T.Object({
    scope: T.String(),
    available: T.Boolean({ description: "Connected to a provider; otherwise its endpoints answer 503 SECTION_NOT_CONFIGURED" }),
    setting: T.Optional(T.String({ description: "When not available: the keygate serve flag (and variable) that connects it" })),
  }),
  { description: "The platform sections (ai, search, …) and whether each is available here (docs/sections.md)" },
);

const ErrorCodes = T.Object({}, { additionalProperties: T.Object({ status: T.Integer(), message: T.String() }), description: "Every error code of the profile, with its status and message" });
const Endpoint = T.Object({
  method: T.String(),
  path: T.String(),
  description: T.Optional(T.String()),
  requires: T.Union([T.Array(T.String()), T.Null()], { description: "The scopes it needs; null: this key type may not call it" }),
  class: T.String(),
  userContext: T.Boolean(),
});

export function meRoutes(app: App, ctx: GatewayContext): void {
  const { kg, envelope, responses } = ctx;
  // What this keygate serves, with its OpenAPI identity: the guide lists these (a route of the
  // profile that has no handler answers 501 NOT_IMPLEMENTED, and is left out), from the same
  // schemas as /v1/openapi.json. Routes registered after this hook, on this instance, are seen.
  const served = new Map<string, { operationId?: string; summary?: string }>();
  app.addHook("onRoute", (route) => {
    const schema = route.schema as { operationId?: string; summary?: string; hide?: boolean } | undefined;
    for (const method of [route.method].flat()) if (method !== "HEAD" && !schema?.hide) served.set(`${method} ${route.url}`, { operationId: schema?.operationId, summary: schema?.summary });
  });
  const policy = limitPolicy(kg.profile.spec.limits);
  // The same for every key: built once.
  const codes = Object.fromEntries(Object.entries(kg.profile.errorCodes).map(([code, d]) => [code, { status: d.status, message: d.message }]));
  const errorCodes = () => codes;
  const { groups, coarse, bundles, companions, recipes } = scopeCatalog(kg.profile);
  const catalog = { groups, coarse, bundles, companions, recipes };

  app.get(
    "/v1/me",
    {
      schema: {
        operationId: "getMe",
        tags: ["self"],
        summary: "Key self-description: type, portal, scopes, limits, endpoints, error codes",
        response: responses({
          data: T.Object(
            {
              type: T.String(),
              keyType: T.String(),
              keyId: T.String(),
              name: T.String(),
              keyPrefix: T.String(),
              keySuffix: T.String(),
              status: T.String(),
              accessMode: T.String(),
              expiresAt: T.Union([T.String({ format: "date-time" }), T.Null()]),
              scopes: T.Array(T.String()),
              scopesInEffect: T.Array(T.String()),
              scopesPendingReissue: T.Array(T.String()),
              owner: T.Object({ name: T.String(), userId: T.String() }),
              errorCodes: ErrorCodes,
              sections: SectionsSchema,
              currentUser: T.Union([
                T.Null(),
                T.Object({ bitrixUserId: T.Integer({ description: "The Bitrix24 user the session acts for" }), _note: T.String() }, { description: "With Authorization: Bearer vibe_session_… (docs/oauth.md)" }),
              ]),
            },
            // The rest depends on the key type (portals and quickstart for management keys; portal, rateLimit, auth, capabilities, api for portal keys).
            { additionalProperties: true },
          ),
        }),
      },
    },
    async (request, reply) => {
      // The answer depends on the key and the data around it, not on the request: it is worked out
      // once and kept, serialised with its ETag, until the key or anything stored changes (docs/verification.md).
      // With an app session, kept per session user: only currentUser and what needs a session differ.
      const user = request.auth.appSession?.bitrixUserId;
      const entry = user === undefined ? meEntry(ctx, request.raw) : `${meEntry(ctx, request.raw)} user ${user}`;
      const me =
        (user === undefined ? keptMe(ctx, request.auth.key, request.raw) : undefined) ??
        (await ctx.cache.derive(request.auth.key, entry, async () => keptBody(JSON.stringify(await describeKey(request)))));
      // Written as kept, by the writer the server's arrival path uses too: no serialiser, no compression per request.
      reply.hijack();
      sendKept(request.raw, reply.raw, me, { "x-request-id": request.id, ...(request.rateLimit ? rateLimitHeaders(request.rateLimit) : {}) });
    },
  );

  async function describeKey(request: FastifyRequest): Promise<unknown> {
    const { key } = request.auth;
    const record = key.record;
    const keyType = key.verified.keyType;
    const actor = await actorOf(kg, request);
    const base = baseUrl(ctx, request);
    const appSession = request.auth.appSession;
    const endpoints = endpointsFor(ctx, request, appSession !== undefined);
    // A section not connected answers 503: not something the key can do.
    const allowed = endpoints.filter((e) => e.denial === undefined && !ctx.sections.unavailableRoute(`${e.route.method} ${e.route.path}`));
    const line = (r: Route) => `${r.method} ${base}${r.path}${r.description ? ` — ${r.description}` : ""}`;
    const common = {
      type: keyType.selfType ?? keyType.id,
      keyType: keyType.id,
      keyId: record.id,
      name: record.name,
      keyPrefix: record.keyPrefix,
      keySuffix: record.keySuffix,
      status: keyStatus(record, kg.now()),
      accessMode: record.accessMode,
      expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt).toISOString(),
      scopes: record.scopes,
      scopesInEffect: kg.profile.effective({ scopes: record.scopes, issued: record.issuedScopes }),
      scopesPendingReissue: kg.profile.pending({ scopes: record.scopes, issued: record.issuedScopes }),
      owner: { name: actor.user.name, userId: actor.user.id },
      errorCodes: errorCodes(),
      sections: ctx.sections.states,
      currentUser:
        appSession === undefined
          ? null
          : { bitrixUserId: appSession.bitrixUserId, _note: "The Bitrix24 user this session acts for: the user who authorized the app (24 hours from then)." },
    };

    if (keyType.portalless) {
      const portals = await kg.store.listPortalsForUser(actor.user.id);
      const counts = new Map<string, number>();
      for (const kt of kg.profile.spec.keyTypes.filter((k) => !k.portalless)) {
        for (const [portalId, n] of await kg.store.countKeysByPortal(portals.map((p) => p.id), kt.id)) counts.set(portalId, (counts.get(portalId) ?? 0) + n);
      }
      return envelope.ok({
        ...common,
        capabilities: allowed.map((e) => line(e.route)),
        portals: portals.map((p) => ({ id: p.id, domain: p.domain, name: p.name, status: p.status, role: p.role, appKeyCount: counts.get(p.id) ?? 0 })),
        totalAppKeys: [...counts.values()].reduce((a, b) => a + b, 0),
        quickstart: {
          step1: `GET ${base}/v1/portals — list available portals`,
          step2: `GET ${base}/v1/keys?portalId=<id> — list APP keys for a portal`,
          step3: `POST ${base}/v1/keys { portalId, name, scopes } — create an APP key`,
          step4: "Use the APP key for entity API calls (deals, tasks, etc.)",
        },
        docs: `${base}/v1/guide`,
        // Seed 001: what an agent needs to work the feedback queue, for keys that may list tickets.
        ...(allowed.some((e) => e.route.method === "GET" && e.route.path === "/v1/feedback") ? { feedback: feedbackGuide(base, actor.user.role) } : {}),
      });
    }

    const portal = record.portalId === null ? undefined : await kg.store.getPortal(record.portalId);
    const tier = policy.tier(record.tier);
    const availability = (method: string, path: string) => {
      const found = endpoints.find((e) => e.route.method === method && e.route.path === path);
      if (!found) return { available: false, reason: "ROUTE_NOT_FOUND" };
      if (!found.denial) return { available: true };
      return { available: false, reason: found.denial.code === found.route.sessionError ? "SESSION_REQUIRED" : found.denial.code };
    };
    const data: Record<string, unknown> = {
      ...common,
      portal: portal?.domain ?? null,
      portalId: record.portalId,
      rateLimit: {
        requestsPerSecond: record.rateLimit ?? portal?.requestLimit ?? kg.profile.spec.limits?.portalRequestsPerSecond ?? null,
        perMinute: tier?.perMinute ?? kg.profile.spec.limits?.perMinute ?? DEFAULTS.perMinute,
        tier: tier?.id ?? null,
      },
      auth: keyType.sessionUser
        ? {
            header: "X-Api-Key: <this-key> + Authorization: Bearer <session-token>",
            steps: ["1. Redirect user to oauth.authorizeUrl + state (+ redirect_uri)", "2. Exchange code for session token", "3. Call API with both headers"],
            gatewayInjected: gatewayInjected(base),
          }
        : {
            personalKey: `X-Api-Key: ${keyType.prefix}… (no Bearer)`,
            bearer: `Authorization: Bearer ${keyType.prefix}… (for clients that can only send Bearer)`,
          },
      capabilities: {
        endpoints: allowed.map((e) => line(e.route)),
        servers: { list: availability("GET", "/v1/infra/servers"), create: availability("POST", "/v1/infra/servers") },
      },
      api: { baseUrl: `${base}/v1`, endpoints: allowed.map((e) => describe(e.route, key.verified.scopes.keyTypeIndex)), guide: `${base}/v1/guide` },
    };
    if (keyType.sessionUser) {
      data.app = { title: record.name, id: record.id };
      data.oauth = {
        authorizeUrl: `${base}/v1/oauth/authorize?app_key=${record.keyPrefix}…`,
        authorizeUrlNote: "Template URL — append state (16–512 random characters you verify on return) and optionally redirect_uri before redirecting the user.",
        requiredParams: { state: { required: true, minLength: 16, maxLength: 512 }, redirect_uri: { required: false }, scope: { required: false } },
        tokenUrl: `${base}/v1/oauth/token`,
        revokeUrl: `${base}/v1/oauth/revoke`,
      };
      const servers = (await listServersFor(kg.store, { keyId: record.id, userId: appSession?.userId ?? record.ownerId, portalId: record.portalId! })).filter((s) => s.keyId === record.id);
      data.placements = placementGuide(base, { sandboxPortalId: portal?.upstream?.kind === "sandbox" ? portal.id : null, servers }, availability);
    }
    return envelope.ok(data);
  }

  app.get(
    "/v1/guide",
    {
      schema: {
        operationId: "getGuide",
        tags: ["self"],
        summary: "API reference of what this keygate serves: filtered by the key's scopes for portal keys, full for management keys",
        response: responses({
          data: T.Object({
            profile: T.Object({ id: T.String(), title: T.String(), description: T.Optional(T.String()) }),
            baseUrl: T.String(),
            filteredByScopes: T.Boolean(),
            endpoints: T.Array(
              T.Composite([
                Endpoint,
                T.Object({
                  allowed: T.Boolean(),
                  forwarded: T.Boolean({ description: "Sent on as it is to the portal's HTTP upstream: not an operation of this document" }),
                  operationId: T.Optional(T.String({ description: "The operation in /v1/openapi.json (routes forwarded to the portal's upstream have none)" })),
                  summary: T.Optional(T.String()),
                }),
              ]),
            ),
            keyTypes: T.Array(
              T.Object({
                id: T.String(),
                prefix: T.String(),
                label: T.Optional(T.String()),
                description: T.Optional(T.String()),
                portalless: T.Optional(T.Boolean({ description: "Not bound to a portal (management keys)" })),
                sessionUser: T.Optional(T.Boolean({ description: "Acts for the user of a session token (authorization keys)" })),
              }),
            ),
            catalog: Catalog,
            scannerPattern: T.String(),
            errorCodes: ErrorCodes,
            sections: SectionsSchema,
          }),
        }),
      },
      onSend: conditionalGet,
    },
    async (request) => {
    const { key } = request.auth;
    const keyType = key.verified.keyType;
    const full = keyType.portalless === true;
    // Filtered by scopes (seed 001), not by the session an authorization key sends only with user calls;
    // only what is served: a handler here, or — the key's portal having an HTTP upstream, or for a
    // management key any portal — forwarded there.
    const portal = key.record.portalId === null ? undefined : await kg.store.getPortal(key.record.portalId);
    const forwards = full || portal?.upstream?.kind === "http";
    const endpoints = endpointsFor(ctx, request, true).filter(
      (e) => (full || e.denial === undefined) && (served.has(`${e.route.method} ${e.route.path}`) || (e.route.upstream && forwards)) && !ctx.sections.unavailableRoute(`${e.route.method} ${e.route.path}`),
    );
    return envelope.ok({
      profile: { id: kg.profile.id, title: kg.profile.spec.title, description: kg.profile.spec.description },
      baseUrl: `${baseUrl(ctx, request)}/v1`,
      filteredByScopes: !full,
      endpoints: endpoints.map((e) => ({
        ...describe(e.route, key.verified.scopes.keyTypeIndex),
        allowed: e.denial === undefined,
        forwarded: !served.has(`${e.route.method} ${e.route.path}`),
        ...served.get(`${e.route.method} ${e.route.path}`),
      })),
      keyTypes: kg.profile.spec.keyTypes.map((k) => ({ id: k.id, prefix: k.prefix, label: k.label, description: k.description, portalless: k.portalless, sessionUser: k.sessionUser })),
      catalog,
      scannerPattern: kg.format.scannerPattern,
      errorCodes: errorCodes(),
      sections: ctx.sections.states,
    });
    },
  );

  app.get(
    "/v1/me/notifications",
    {
      schema: {
        operationId: "listNotifications",
        tags: ["self"],
        summary: "Notifications for the key's owner, newest first",
        querystring: T.Object({ limit: T.Optional(T.String({ pattern: "^[0-9]+$" })) }, { additionalProperties: false }),
        response: responses({
          data: T.Array(
            T.Object({
              id: T.String(),
              userId: T.String(),
              at: T.String({ format: "date-time" }),
              kind: T.String(),
              message: T.String(),
              data: T.Optional(T.Unknown({ description: "What it is about (any JSON)" })),
              readAt: T.Union([T.String({ format: "date-time" }), T.Null()]),
            }),
          ),
        }),
      },
    },
    async (request) => {
      const actor = await actorOf(kg, request);
      const limit = Math.min(Number(request.query.limit ?? 50), 200);
      const list = await kg.store.listNotifications(actor.user.id, limit);
      return envelope.ok(list.map((n) => ({ ...n, at: new Date(n.at).toISOString(), readAt: n.readAt === null ? null : new Date(n.readAt).toISOString() })));
    },
  );

  app.post(
    "/v1/me/notifications/:id/read",
    {
      schema: {
        operationId: "readNotification",
        tags: ["self"],
        summary: "Mark a notification read",
        params: T.Object({ id: T.String() }),
        response: responses({ data: T.Object({ id: T.String(), read: T.Literal(true) }), codes: ["NOTIFICATION_NOT_FOUND"] }),
      },
    },
    async (request, reply) => {
      const actor = await actorOf(kg, request);
      const id = request.params.id;
      if (!(await kg.store.markNotificationRead(actor.user.id, id, kg.now()))) return ctx.send(reply, "NOTIFICATION_NOT_FOUND");
      return envelope.ok({ id, read: true });
    },
  );
}
