import { type TSchema, Type as T } from "@sinclair/typebox";
import { KeygateError } from "../../core/errors.ts";
import { parseIsoTime } from "../../core/time.ts";
import { normalizeIp } from "../../limits/ip.ts";
import { createKey, deleteKey, keyAudit, keyForActor, keyUsage, keyView, listKeys, rotateKey, updateKey } from "../../manage/keys.ts";
import { BODY_CODES } from "../envelope.ts";
import type { App, GatewayContext } from "../server.ts";
import { actorOf } from "./actor.ts";
import { redirectUrisAllowed, redirectUrisView, setRedirectUris } from "../../oauth/apps.ts";
import { AuditEventView } from "./portals.ts";

const Id = T.Object({ id: T.String() });
const AccessMode = T.Union([T.Literal("READWRITE"), T.Literal("READONLY")]);
const Scopes = T.Array(T.String(), { description: "Scope strings (docs/scopes.md): a JSON list, never one string" });
const Expiry = T.Union([T.String({ description: "ISO-8601 date-time" }), T.Null()]);
const RateLimit = T.Union([T.Integer({ minimum: 1, description: "Requests per second" }), T.Null()]);
const Tier = T.Union([T.String({ description: "A rate-limit tier of the profile" }), T.Null()]);
const tags = ["keys"];
const RedirectUris = T.Array(T.String(), { description: "Authorization keys: the app's OAuth redirect URIs (https, or http on the loopback; no fragment), matched exactly (docs/oauth.md)" });
const Time = T.String({ format: "date-time" });
const Nullable = <S extends TSchema>(s: S) => T.Union([s, T.Null()]);
const KeyView = T.Object(
  {
    id: T.String(),
    name: T.String(),
    type: T.String({ description: "The key type (VibeCode: api, app, live)" }),
    keyPrefix: T.String(),
    keySuffix: T.String(),
    portalId: Nullable(T.String()),
    ownerId: T.String(),
    scopes: T.Array(T.String()),
    scopesInEffect: T.Array(T.String()),
    scopesPendingReissue: T.Array(T.String()),
    status: T.Unsafe<string>({ type: "string", enum: ["ACTIVE", "REVOKED", "EXPIRED"] }),
    accessMode: AccessMode,
    ipWhitelist: T.Array(T.String()),
    rateLimit: RateLimit,
    tier: Tier,
    expiresAt: Nullable(Time),
    createdAt: Time,
    updatedAt: Time,
    lastUsedAt: Nullable(Time),
    rotatedFromId: Nullable(T.String()),
    rotatedToId: Nullable(T.String()),
    redirectUris: T.Optional(T.Array(T.String(), { description: "Authorization keys: the app's registered OAuth redirect URIs, exact strings (docs/oauth.md); not in lists" })),
  },
  { additionalProperties: false },
);
const NewKey = T.Composite([KeyView, T.Object({ rawKey: T.String({ description: "The key's secret: shown once, never again" }) })]);
const keyExample = {
  id: "3f1c1d0e-8b7a-4c55-9f59-0d6e4e0a2b11",
  name: "CRM sync",
  type: "api",
  keyPrefix: "vibe_api_Zx3k",
  keySuffix: "Q9aw",
  portalId: "c5a0b6f4-1f7e-4f43-9a3c-7d1e2b8c9d10",
  ownerId: "8e2d5c3b-6a1f-4e0d-b9c8-7a6f5e4d3c2b",
  scopes: ["crm", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"],
  scopesInEffect: ["crm", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"],
  scopesPendingReissue: [],
  status: "ACTIVE",
  accessMode: "READWRITE",
  ipWhitelist: [],
  rateLimit: null,
  tier: null,
  expiresAt: null,
  createdAt: "2026-11-22T12:00:00.000Z",
  updatedAt: "2026-11-22T12:00:00.000Z",
  lastUsedAt: null,
  rotatedFromId: null,
  rotatedToId: null,
};

export function keyRoutes(app: App, { kg, envelope, usage, responses, aiUsage }: GatewayContext): void {
  const KEY_CODES = ["KEY_NOT_FOUND", "MANAGEMENT_KEY_REQUIRED"];
  app.get(
    "/v1/keys",
    {
      schema: {
        operationId: "listKeys",
        tags,
        summary: "List the keys of a portal (admins: every key; members: their own), or with type=management your own management keys",
        querystring: T.Object(
          {
            portalId: T.Optional(T.String({ description: "The portal (required unless type is the management key type)" })),
            type: T.Optional(T.String({ description: "Only keys of this type; the management key type: your own management keys, of no portal" })),
          },
          { additionalProperties: false },
        ),
        response: responses({ data: T.Array(KeyView), meta: T.Object({ total: T.Integer() }), examples: [[keyExample]], codes: ["PORTAL_NOT_FOUND", "NOT_PORTAL_MEMBER", "MISSING_PORTAL_ID"] }),
      },
    },
    async (request) => {
      const keys = await listKeys(kg, await actorOf(kg, request), request.query);
      return envelope.ok(keys.map((k) => keyView(kg, k)), { total: keys.length });
    },
  );

  app.post(
    "/v1/keys",
    {
      schema: {
        operationId: "createKey",
        tags,
        summary: "Create a key: an API key on a portal, or (type: the management key type, no portalId) a management key of your own; its secret is in rawKey, shown once",
        response: responses({
          status: 201,
          data: NewKey,
          description: "The new key, with its secret",
          examples: [{ ...keyExample, rawKey: "vibe_api_Zx3k…Q9aw" }],
          codes: [...BODY_CODES, "MISSING_PORTAL_ID", "PORTAL_NOT_FOUND", "NOT_PORTAL_MEMBER", "PORTAL_NOT_LINKED", "INVALID_SCOPES", "KEY_POLICY_READONLY_REQUIRED", "KEY_SCOPE_EXCEEDS_CALLER"],
        }),
        body: T.Object(
          {
            portalId: T.Optional(T.Union([T.String(), T.Null()])),
            name: T.String(),
            scopes: Scopes,
            type: T.Optional(T.String()),
            accessMode: T.Optional(AccessMode),
            expiresAt: T.Optional(Expiry),
            rateLimit: T.Optional(RateLimit),
            tier: T.Optional(Tier),
            ipWhitelist: T.Optional(T.Array(T.String())),
            redirectUris: T.Optional(RedirectUris),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const { redirectUris: asked, ...input } = request.body;
      const redirectUris = redirectUrisAllowed(kg, input.type, asked);
      const actor = await actorOf(kg, request);
      const { key, rawKey } = await createKey(kg, actor, input);
      if (redirectUris !== undefined) await setRedirectUris(kg, actor, key, redirectUris);
      return reply.code(201).send(envelope.ok({ ...keyView(kg, key), ...(await redirectUrisView(kg, key)), rawKey }));
    },
  );

  app.get(
    "/v1/keys/:id",
    { schema: { operationId: "getKey", tags, summary: "One key, without its secret", params: Id, response: responses({ data: KeyView, examples: [keyExample], codes: KEY_CODES }) } },
    async (request) => {
      const { key } = await keyForActor(kg, await actorOf(kg, request), request.params.id);
      return envelope.ok({ ...keyView(kg, key), ...(await redirectUrisView(kg, key)) });
    },
  );

  app.patch(
    "/v1/keys/:id",
    {
      schema: {
        operationId: "updateKey",
        tags,
        summary: "Change a key: name, scopes, status, accessMode, ipWhitelist, rateLimit, expiresAt, redirectUris (authorization keys)",
        params: Id,
        response: responses({
          data: KeyView,
          examples: [keyExample],
          codes: [...BODY_CODES, ...KEY_CODES, "INVALID_SCOPES", "KEY_POLICY_READONLY_REQUIRED", "KEY_SCOPE_EXCEEDS_CALLER", "LAST_MANAGEMENT_KEY", "NOT_PORTAL_ADMIN"],
        }),
        body: T.Object(
          {
            name: T.Optional(T.String()),
            scopes: T.Optional(Scopes),
            status: T.Optional(T.Union([T.Literal("ACTIVE"), T.Literal("REVOKED")])),
            accessMode: T.Optional(AccessMode),
            ipWhitelist: T.Optional(T.Array(T.String())),
            rateLimit: T.Optional(RateLimit),
            tier: T.Optional(Tier),
            expiresAt: T.Optional(Expiry),
            redirectUris: T.Optional(RedirectUris),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => {
      const { redirectUris: asked, ...input } = request.body;
      const actor = await actorOf(kg, request);
      let key = (await keyForActor(kg, actor, request.params.id)).key;
      const redirectUris = redirectUrisAllowed(kg, key.type, asked);
      if (Object.keys(input).length > 0 || redirectUris === undefined) key = await updateKey(kg, actor, request.params.id, input);
      if (redirectUris !== undefined) await setRedirectUris(kg, actor, key, redirectUris);
      return envelope.ok({ ...keyView(kg, key), ...(await redirectUrisView(kg, key)) });
    },
  );

  app.delete(
    "/v1/keys/:id",
    {
      schema: {
        operationId: "deleteKey",
        tags,
        summary: "Delete a key (409 KEY_HAS_ACTIVE_SERVERS while servers use it)",
        params: Id,
        response: responses({ data: T.Object({ id: T.String(), deleted: T.Literal(true) }), codes: [...KEY_CODES, "KEY_HAS_ACTIVE_SERVERS", "LAST_MANAGEMENT_KEY", "KEY_SCOPE_EXCEEDS_CALLER", "NOT_PORTAL_ADMIN"] }),
      },
    },
    async (request) => {
      const id = request.params.id;
      await deleteKey(kg, await actorOf(kg, request), id);
      return envelope.ok({ id, deleted: true });
    },
  );

  app.post(
    "/v1/keys/:id/rotate",
    {
      schema: {
        operationId: "rotateKey",
        tags,
        summary: "Reissue a key; the old one keeps working for 24 hours",
        params: Id,
        response: responses({
          status: 201,
          data: T.Composite([NewKey, T.Object({ previousKey: T.Object({ id: T.String(), validUntil: Time }) })]),
          description: "The new key, with its secret, and until when the old one works",
          codes: [...KEY_CODES, "KEY_OWNER_ONLY", "KEY_NOT_ACTIVE", "KEY_ALREADY_ROTATED", "KEY_SCOPE_EXCEEDS_CALLER"],
        }),
      },
    },
    async (request, reply) => {
      const { key, rawKey, old } = await rotateKey(kg, await actorOf(kg, request), request.params.id);
      return reply.code(201).send(envelope.ok({ ...keyView(kg, key), rawKey, previousKey: { id: old.id, validUntil: new Date(old.expiresAt!).toISOString() } }));
    },
  );

  app.get(
    "/v1/keys/:id/usage",
    {
      schema: {
        operationId: "getKeyUsage",
        tags,
        summary: "The key's usage: last used, requests per minute over the last hour, every address in the retained log, and a page of the request log (limit, ip, before)",
        params: Id,
        querystring: T.Object({ limit: T.Optional(T.String({ pattern: "^[0-9]+$" })), ip: T.Optional(T.String()), before: T.Optional(T.String()) }, { additionalProperties: false }),
        response: responses({
          data: T.Object({
            keyId: T.String(),
            lastUsedAt: Nullable(Time),
            requestsPerMinute: T.Array(T.Object({ minute: Time, requests: T.Integer() })),
            addresses: T.Array(T.Object({ ip: T.String(), requests: T.Integer(), lastSeen: Time })),
            requests: T.Array(T.Object({ at: Time, ip: T.String(), method: T.String(), path: T.String(), status: T.Integer(), latencyMs: T.Number() })),
            ai: T.Object(
              { requests: T.Integer(), promptTokens: T.Integer(), completionTokens: T.Integer(), totalTokens: T.Integer() },
              { description: "Chat completions (vibe:ai) the provider answered for the key, and the tokens it reported: counted in memory by the node that answers, since it started (docs/sections.md)" },
            ),
          }),
          codes: KEY_CODES,
        }),
      },
    },
    async (request) => {
      const query = request.query;
      const limit = Number(query.limit ?? 100);
      if (limit < 1 || limit > 1000) throw new KeygateError("VALIDATION_ERROR", { message: "limit is a whole number from 1 to 1000", param: "limit" });
      const before = query.before === undefined ? undefined : parseIsoTime(query.before);
      if (query.before !== undefined && before === undefined) {
        throw new KeygateError("VALIDATION_ERROR", { message: "before is an ISO-8601 date or date-time with its zone (2026-12-05T10:00:00Z)", param: "before" });
      }
      // Addresses are logged normalised: 2001:db8::1 finds 2001:db8:0:0:0:0:0:1.
      const ip = query.ip === undefined ? undefined : normalizeIp(query.ip);
      if (query.ip !== undefined && ip === undefined) throw new KeygateError("VALIDATION_ERROR", { message: "ip is an IPv4 or IPv6 address", param: "ip" });
      // What was collected but not written yet belongs in the answer.
      await usage.flush();
      return envelope.ok({ ...(await keyUsage(kg, await actorOf(kg, request), request.params.id, { limit, ip, before })), ai: aiUsage.of(request.params.id) });
    },
  );

  app.get(
    "/v1/keys/:id/audit",
    {
      schema: {
        operationId: "listKeyAudit",
        tags,
        summary: "The key's audit trail, newest first (its owner, its portal's admins)",
        params: Id,
        querystring: T.Object({ limit: T.Optional(T.String({ pattern: "^[0-9]+$" })) }, { additionalProperties: false }),
        response: responses({ data: T.Array(AuditEventView), meta: T.Object({ count: T.Integer() }), codes: KEY_CODES }),
      },
    },
    async (request) => {
      const limit = Number(request.query.limit ?? 50);
      if (limit < 1 || limit > 200) throw new KeygateError("VALIDATION_ERROR", { message: "limit is a whole number from 1 to 200", param: "limit" });
      const events = await keyAudit(kg, await actorOf(kg, request), request.params.id, limit);
      return envelope.ok(events.map((e) => ({ ...e, at: new Date(e.at).toISOString() })), { count: events.length });
    },
  );
}
