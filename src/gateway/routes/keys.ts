import { Type as T } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import { createKey, deleteKey, keyForActor, keyUsage, keyView, listKeys, rotateKey, updateKey } from "../../manage/keys.ts";
import type { GatewayContext } from "../server.ts";
import { actorOf } from "./actor.ts";

const Id = T.Object({ id: T.String() });
const AccessMode = T.Union([T.Literal("READWRITE"), T.Literal("READONLY")]);
const Scopes = T.Union([T.Array(T.String()), T.String()], { description: "Scopes as a list, or one comma-separated string" });
const Expiry = T.Union([T.String({ description: "ISO-8601 date-time" }), T.Null()]);
const RateLimit = T.Union([T.Integer({ minimum: 1, description: "Requests per second" }), T.Null()]);
const Tier = T.Union([T.String({ description: "A rate-limit tier of the profile" }), T.Null()]);
const tags = ["keys"];

export function keyRoutes(app: FastifyInstance, { kg, envelope, usage }: GatewayContext): void {
  app.get(
    "/v1/keys",
    { schema: { tags, summary: "List the keys of a portal (admins: every key; members: their own)", querystring: T.Object({ portalId: T.Optional(T.String()) }) } },
    async (request) => {
      const { portalId } = request.query as { portalId?: string };
      const keys = await listKeys(kg, await actorOf(kg, request), portalId);
      return envelope.ok(keys.map((k) => keyView(kg, k)), { total: keys.length });
    },
  );

  app.post(
    "/v1/keys",
    {
      schema: {
        tags,
        summary: "Create a key; its secret is in rawKey, shown once",
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
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const { key, rawKey } = await createKey(kg, await actorOf(kg, request), request.body as Parameters<typeof createKey>[2]);
      return reply.code(201).send(envelope.ok({ ...keyView(kg, key), rawKey }));
    },
  );

  app.get("/v1/keys/:id", { schema: { tags, summary: "One key, without its secret", params: Id } }, async (request) => {
    const { key } = await keyForActor(kg, await actorOf(kg, request), (request.params as { id: string }).id);
    return envelope.ok(keyView(kg, key));
  });

  app.patch(
    "/v1/keys/:id",
    {
      schema: {
        tags,
        summary: "Change a key: name, scopes, status, accessMode, ipWhitelist, rateLimit, expiresAt",
        params: Id,
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
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => {
      const key = await updateKey(kg, await actorOf(kg, request), (request.params as { id: string }).id, request.body as Parameters<typeof updateKey>[3]);
      return envelope.ok(keyView(kg, key));
    },
  );

  app.delete("/v1/keys/:id", { schema: { tags, summary: "Delete a key (409 KEY_HAS_ACTIVE_SERVERS while servers use it)", params: Id } }, async (request) => {
    const id = (request.params as { id: string }).id;
    await deleteKey(kg, await actorOf(kg, request), id);
    return envelope.ok({ id, deleted: true });
  });

  app.post("/v1/keys/:id/rotate", { schema: { tags, summary: "Reissue a key; the old one keeps working for 24 hours", params: Id } }, async (request, reply) => {
    const { key, rawKey, old } = await rotateKey(kg, await actorOf(kg, request), (request.params as { id: string }).id);
    return reply.code(201).send(envelope.ok({ ...keyView(kg, key), rawKey, previousKey: { id: old.id, validUntil: new Date(old.expiresAt!).toISOString() } }));
  });

  app.get(
    "/v1/keys/:id/usage",
    {
      schema: {
        tags,
        summary: "The key's usage: last used, requests per minute over the last hour, the addresses and the recent request log",
        params: Id,
        querystring: T.Object({ limit: T.Optional(T.String({ pattern: "^[0-9]+$" })), ip: T.Optional(T.String()), before: T.Optional(T.String()) }, { additionalProperties: false }),
      },
    },
    async (request) => {
      const query = request.query as { limit?: string; ip?: string; before?: string };
      const limit = Number(query.limit ?? 100);
      if (limit < 1 || limit > 1000) throw new KeygateError("VALIDATION_ERROR", { message: "limit is a whole number from 1 to 1000", param: "limit" });
      const before = query.before === undefined ? undefined : Date.parse(query.before);
      if (Number.isNaN(before)) throw new KeygateError("VALIDATION_ERROR", { message: "before is an ISO-8601 time", param: "before" });
      // What was collected but not written yet belongs in the answer.
      await usage.flush();
      return envelope.ok(await keyUsage(kg, await actorOf(kg, request), (request.params as { id: string }).id, { limit, ip: query.ip, before }));
    },
  );
}
