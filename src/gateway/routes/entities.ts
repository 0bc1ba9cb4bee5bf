import type { FastifyInstance, FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import { decide } from "../../core/verify/decide.ts";
import { ENTITIES, type Entity } from "../../dataplane/entities.ts";
import { queryFromBody, queryFromSearchParams } from "../../dataplane/query.ts";
import * as data from "../../dataplane/service.ts";
import { type Bitrix24Client, bitrix24Client } from "../../upstream/bitrix24/index.ts";
import { sandboxWebhookToken, sandboxWebhookUrl } from "../../upstream/sandbox/index.ts";
import type { GatewayContext } from "../server.ts";

/** How long a Bitrix24 call may take before keygate answers BITRIX_UNAVAILABLE. */
const UPSTREAM_TIMEOUT_MS = 15_000;
const MAX_BATCH = 50;

/**
 * The VibeCode entity surface (seeds 000, 003; docs/dataplane.md): /v1/<entity> routes answered
 * from the portal's Bitrix24 (or the built-in sandbox, over real HTTP), and POST /v1/batch.
 * Verification, limits and the read-only block have run before any handler here.
 */
export function entityRoutes(app: FastifyInstance, ctx: GatewayContext, ownBaseUrl: () => string | undefined): void {
  const { kg, envelope } = ctx;

  /** The Bitrix24 client of the key's portal, kept with the key until its portal changes. */
  const clientFor = async (request: FastifyRequest): Promise<Bitrix24Client> => {
    const key = request.auth.key;
    const portalId = key.record.portalId;
    return (
      ctx.cache.peek<Bitrix24Client>(key, "bitrix24") ??
      ctx.cache.derive(key, "bitrix24", async () => {
        const portal = portalId === null ? undefined : await kg.store.getPortal(portalId);
        if (portal?.upstream?.kind === "bitrix24") return bitrix24Client(portal.upstream.webhookUrl, { timeoutMs: UPSTREAM_TIMEOUT_MS });
        if (portal?.upstream?.kind === "sandbox") {
          const base = ownBaseUrl();
          if (base === undefined) throw new KeygateError("NOT_IMPLEMENTED", { message: "The sandbox portal is served by this keygate over HTTP, and it is not listening." });
          return bitrix24Client(sandboxWebhookUrl(base, portal.id, sandboxWebhookToken(kg.serverSecret, portal.id)), { timeoutMs: UPSTREAM_TIMEOUT_MS });
        }
        throw new KeygateError("PORTAL_NOT_LINKED", { message: "The key's portal is not linked to Bitrix24 (or the sandbox): there is no data to reach." });
      })
    );
  };
  const id = (request: FastifyRequest) => (request.params as { id: string }).id;
  const searchParams = (request: FastifyRequest) => new URLSearchParams(request.url.includes("?") ? request.url.slice(request.url.indexOf("?") + 1) : "");

  for (const entity of Object.values(ENTITIES)) {
    const base = `/v1/${entity.name}`;
    const schema = { tags: ["entities"], hide: false };
    app.get(base, { schema: { ...schema, summary: `List ${entity.name}: limit, offset, select, order[field], filter[field]` } }, async (request) => {
      const { items, meta } = await data.list(await clientFor(request), entity, queryFromSearchParams(searchParams(request)));
      return envelope.ok(items, meta);
    });
    app.get(`${base}/fields`, { schema: { ...schema, summary: `The fields of ${entity.name}` } }, async (request) => envelope.ok(await data.fields(await clientFor(request), entity)));
    app.get(`${base}/:id`, { schema: { ...schema, summary: `One ${entity.name} record` } }, async (request) => envelope.ok(await data.get(await clientFor(request), entity, id(request))));
    app.post(base, { schema: { ...schema, summary: `Create a ${entity.name} record` } }, async (request, reply) =>
      reply.code(201).send(envelope.ok(await data.create(await clientFor(request), entity, request.body))),
    );
    app.patch(`${base}/:id`, { schema: { ...schema, summary: `Update a ${entity.name} record` } }, async (request) =>
      envelope.ok(await data.update(await clientFor(request), entity, id(request), request.body)),
    );
    if (entity.remove) {
      app.delete(`${base}/:id`, { schema: { ...schema, summary: `Delete a ${entity.name} record` } }, async (request) =>
        envelope.ok(await data.remove(await clientFor(request), entity, id(request))),
      );
    }
    app.post(`${base}/search`, { schema: { ...schema, summary: `Search ${entity.name}: {filter, select, order, limit, offset}` } }, async (request) => {
      const { items, meta } = await data.list(await clientFor(request), entity, queryFromBody(request.body));
      return envelope.ok(items, meta);
    });
    app.post(`${base}/aggregate`, { schema: { ...schema, summary: `Aggregate ${entity.name}: count, sum, avg, min, max, groupBy` } }, async (request) => {
      const { data: result, meta } = await data.aggregate(await clientFor(request), entity, request.body);
      return envelope.ok(result, meta);
    });
  }

  // Messaging and the Activity Stream (seed 000: im, log): one Bitrix24 method each.
  const action = (path: string, summary: string, command: (request: FastifyRequest) => { method: string; params: Record<string, unknown> }) =>
    app.post(path, { schema: { tags: ["messaging"], summary } }, async (request, reply) => {
      const { method, params } = command(request);
      const r = await (await clientFor(request)).call(method, params);
      // Bitrix24 answers the new message's id, or (log.blogpost.add) just true.
      return reply.code(201).send(envelope.ok(r.result === true ? { posted: true } : { id: r.result }));
    });
  action("/v1/notifications", "Send a system notification to a user: {userId, message}", (request) => {
    const b = body(request, ["userId", "message"]);
    return { method: "im.notify.system.add", params: { USER_ID: b.userId, MESSAGE: b.message } };
  });
  action("/v1/chats/:dialogId/messages", "Send a chat message: {message}", (request) => {
    const b = body(request, ["message"]);
    return { method: "im.message.add", params: { DIALOG_ID: (request.params as { dialogId: string }).dialogId, MESSAGE: b.message } };
  });
  action("/v1/posts", "Post to the Activity Stream: {message, title?}", (request) => {
    const b = body(request, ["message"], ["title"]);
    return { method: "log.blogpost.add", params: { POST_MESSAGE: b.message, ...(b.title === undefined ? {} : { POST_TITLE: b.title }) } };
  });

  app.post("/v1/batch", { schema: { tags: ["entities"], summary: "Up to 50 calls in one request: each is checked on its own and answered in results, errors, meta" } }, async (request) => {
    const calls = batchCalls(request.body);
    const results: Record<string, unknown> = {};
    const errors: Record<string, unknown> = {};
    const meta: Record<string, unknown> = {};
    const planned: { id: string; entity: Entity; action: string; entityId?: string; params: Record<string, unknown> }[] = [];
    for (const call of calls) {
      const entity = ENTITIES[call.entity];
      const route = entity ? routeOf(call.action, call.entity, call.entityId) : undefined;
      const match = route ? kg.profile.match(route[0], route[1]) : undefined;
      if (!entity || !match) {
        errors[call.id] = { code: "VALIDATION_ERROR", message: `unknown entity or action: ${call.entity}.${call.action}` };
        continue;
      }
      // Each call meets the same checks as the request it stands for: type, mode, scopes.
      const denial = decide(kg.profile, request.auth.key.verified, { method: match.value.method, route: match.value, clientIp: request.auth.clientIp, hasSession: false, now: kg.now() });
      if (denial) {
        errors[call.id] = { code: denial.code, message: envelope.def(denial.code).message, ...(denial.details ? { details: denial.details } : {}) };
        continue;
      }
      planned.push({ id: call.id, entity, action: call.action, entityId: call.entityId, params: call.params });
    }
    if (planned.length > 0) {
      const b24 = await clientFor(request);
      await Promise.all(
        planned.map(async (p) => {
          try {
            const value = await runCall(b24, p.entity, p.action, p.entityId, p.params);
            if (value && typeof value === "object" && "items" in value && "meta" in value) {
              results[p.id] = value.items;
              meta[p.id] = value.meta;
            } else results[p.id] = value;
          } catch (e) {
            if (!(e instanceof KeygateError) && !(e instanceof Error && "code" in e)) throw e;
            const err = e as Error & { code: string; details?: unknown };
            errors[p.id] = { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
          }
        }),
      );
    }
    return envelope.ok({ results, errors, meta });
  });
}

/** A JSON body with the required fields (strings or numbers) and nothing unknown. */
function body(request: FastifyRequest, required: string[], optional: string[] = []): Record<string, unknown> {
  const b = request.body;
  if (typeof b !== "object" || b === null || Array.isArray(b)) throw new KeygateError("VALIDATION_ERROR", { message: `the body is an object {${[...required, ...optional].join(", ")}}` });
  const record = b as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!required.includes(key) && !optional.includes(key)) throw new KeygateError("VALIDATION_ERROR", { message: `unknown field ${key}`, param: key });
  }
  for (const key of required) {
    const v = record[key];
    if ((typeof v !== "string" || v.trim() === "") && typeof v !== "number") throw new KeygateError("VALIDATION_ERROR", { message: `${key} is required`, param: key });
  }
  return record;
}

interface BatchCall {
  id: string;
  entity: string;
  action: string;
  entityId?: string;
  params: Record<string, unknown>;
}

const ACTIONS = new Set(["list", "get", "create", "update", "delete", "fields", "search", "aggregate"]);

function batchCalls(body: unknown): BatchCall[] {
  const calls = (body as { calls?: unknown } | null)?.calls;
  if (!Array.isArray(calls) || calls.length === 0 || calls.length > MAX_BATCH) {
    throw new KeygateError("VALIDATION_ERROR", { message: `calls is a list of 1 to ${MAX_BATCH} calls {id?, entity, action, entityId?, params?}`, param: "calls" });
  }
  const ids = new Set<string>();
  return calls.map((c: unknown, i) => {
    const call = (c ?? {}) as Record<string, unknown>;
    const where = `calls[${i}]`;
    const id = call.id === undefined ? String(i) : call.id;
    if (typeof id !== "string" || id === "" || id.length > 64 || ids.has(id)) throw new KeygateError("VALIDATION_ERROR", { message: `${where}.id must be a unique string of 1 to 64 characters`, param: `${where}.id` });
    ids.add(id);
    if (typeof call.entity !== "string") throw new KeygateError("VALIDATION_ERROR", { message: `${where}.entity is required`, param: `${where}.entity` });
    if (typeof call.action !== "string" || !ACTIONS.has(call.action)) throw new KeygateError("VALIDATION_ERROR", { message: `${where}.action is one of ${[...ACTIONS].join(", ")}`, param: `${where}.action` });
    const params = call.params ?? {};
    if (typeof params !== "object" || params === null || Array.isArray(params)) throw new KeygateError("VALIDATION_ERROR", { message: `${where}.params is an object`, param: `${where}.params` });
    const needsId = ["get", "update", "delete"].includes(call.action);
    if (needsId && (call.entityId === undefined || call.entityId === null || call.entityId === "")) {
      throw new KeygateError("MISSING_ENTITY_ID", { message: `${where}: ${call.action} needs entityId at the call level`, param: `${where}.entityId` });
    }
    return { id, entity: call.entity, action: call.action, entityId: needsId ? String(call.entityId) : undefined, params: params as Record<string, unknown> };
  });
}

/** The route a batch call stands for, so it meets the same checks. */
function routeOf(action: string, entity: string, entityId: string | undefined): [string, string] | undefined {
  const base = `/v1/${entity}`;
  const item = `${base}/${encodeURIComponent(entityId ?? "")}`;
  const table: Record<string, [string, string]> = {
    list: ["GET", base],
    fields: ["GET", `${base}/fields`],
    get: ["GET", item],
    create: ["POST", base],
    update: ["PATCH", item],
    delete: ["DELETE", item],
    search: ["POST", `${base}/search`],
    aggregate: ["POST", `${base}/aggregate`],
  };
  return table[action];
}

async function runCall(b24: Bitrix24Client, entity: Entity, action: string, entityId: string | undefined, params: Record<string, unknown>): Promise<unknown> {
  switch (action) {
    case "list":
    case "search":
      return data.list(b24, entity, queryFromBody(params));
    case "get":
      return data.get(b24, entity, entityId!);
    case "create":
      return data.create(b24, entity, params);
    case "update":
      return data.update(b24, entity, entityId!, params);
    case "delete":
      return data.remove(b24, entity, entityId!);
    case "fields":
      return data.fields(b24, entity);
    default:
      return (await data.aggregate(b24, entity, params)).data;
  }
}
