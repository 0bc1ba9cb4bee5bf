import { type TSchema, Type as T } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import type { Route } from "../../core/profile/profile.ts";
import { decide } from "../../core/verify/decide.ts";
import { type BatchAction, type Plan, notBatchable, plan, runBatch } from "../../dataplane/batch.ts";
import { ENTITIES } from "../../dataplane/entities.ts";
import { DEFAULT_LIMIT, MAX_LIMIT, queryFromBody, queryFromSearchParams } from "../../dataplane/query.ts";
import * as data from "../../dataplane/service.ts";
import type { rateLimiting } from "../limits.ts";
import { portalConnection } from "../portal-connection.ts";
import { BODY_CODES } from "../envelope.ts";
import type { App, GatewayContext } from "../server.ts";

const MAX_BATCH = 50;

/** A record: its fields pass through as the portal has them (GET /v1/<entity>/fields lists them). */
const Record_ = T.Object({}, { additionalProperties: true, description: "A record; fields as GET /v1/<entity>/fields lists them" });
const Open = (description: string) => T.Object({}, { additionalProperties: true, description });
const ListMeta = T.Object({ total: T.Integer(), hasMore: T.Boolean(), truncated: T.Optional(T.Boolean()) });
const Id = T.Object({ id: T.String() });
// Query strings as sent: filter[field] and order[field] are deep objects (filter[stage]=WON, filter[amount][$gte]=5).
const ListQuery = T.Object(
  {
    limit: T.Optional(T.String({ description: `1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` })),
    offset: T.Optional(T.String()),
    select: T.Optional(T.String({ description: "Comma-separated fields" })),
    filter: T.Optional(T.Unsafe<Record<string, string | Record<string, string>>>({ type: "object", additionalProperties: true, style: "deepObject", explode: true, description: "filter[field]=value, filter[field][$op]=value" })),
    order: T.Optional(T.Unsafe<Record<string, "asc" | "desc">>({ type: "object", additionalProperties: { type: "string", enum: ["asc", "desc"] }, style: "deepObject", explode: true, description: "order[field]=asc|desc" })),
  },
  { additionalProperties: true },
);
const SearchBody = T.Object(
  {
    filter: T.Optional(Open("{field: value} or {field: {$op: value}}")),
    select: T.Optional(T.Union([T.Array(T.String()), T.String()])),
    order: T.Optional(T.Object({}, { additionalProperties: T.Union([T.Literal("asc"), T.Literal("desc")]) })),
    limit: T.Optional(T.Integer()),
    offset: T.Optional(T.Integer()),
  },
  { additionalProperties: true },
);
const Text = T.Union([T.String(), T.Number()]);
const ENTITY_CODES = ["PORTAL_NOT_LINKED", "BITRIX24_AUTHORIZATION_EXPIRED", "SANDBOX_UNREACHABLE", "BITRIX_ERROR", "BITRIX_ACCESS_DENIED", "BITRIX_UNAVAILABLE", "UPSTREAM_UNAVAILABLE", "UPSTREAM_TIMEOUT"];
const capitalized = (name: string) => name[0]!.toUpperCase() + name.slice(1);
/** The entity's singular for operation ids: deals → Deal, companies → Company. */
const singular = (name: string) => capitalized(name.endsWith("ies") ? `${name.slice(0, -3)}y` : name.replace(/s$/, ""));

/**
 * The VibeCode entity surface (seeds 000, 003; docs/dataplane.md): /v1/<entity> routes answered
 * from the portal's Bitrix24 (or the built-in sandbox, over real HTTP), and POST /v1/batch.
 * Verification, limits and the read-only block have run before any handler here; the portal's
 * budget is spent here, when a request, its content checked, first calls the portal.
 */
export function entityRoutes(app: App, ctx: GatewayContext, limits: ReturnType<typeof rateLimiting>, ownBaseUrl: () => string | undefined): void {
  const { kg, envelope } = ctx;
  const responses = (data: TSchema, o: { status?: number; meta?: TSchema; codes?: string[]; examples?: unknown[] } = {}) =>
    ctx.responses({ data, ...o, codes: [...ENTITY_CODES, ...(o.codes ?? [])] });

  const portalOf = portalConnection(ctx, limits, ownBaseUrl);
  const id = (request: FastifyRequest) => (request.params as { id: string }).id;
  const searchParams = (request: FastifyRequest) => new URLSearchParams(request.url.includes("?") ? request.url.slice(request.url.indexOf("?") + 1) : "");

  for (const entity of Object.values(ENTITIES)) {
    const base = `/v1/${entity.name}`;
    const schema = { tags: ["entities"], hide: false };
    const one = singular(entity.name);
    const all = capitalized(entity.name);
    const example = { id: 1, title: `A ${one.toLowerCase()}` };
    app.get(
      base,
      {
        schema: {
          ...schema,
          operationId: `list${all}`,
          summary: `List ${entity.name}: limit, offset, select, order[field], filter[field]`,
          querystring: ListQuery,
          response: responses(T.Array(Record_), { meta: ListMeta, examples: [[example]], codes: ["INVALID_FILTER_OPERATOR"] }),
        },
      },
      async (request) => {
        const { items, meta } = await data.list(portalOf(request), entity, queryFromSearchParams(searchParams(request)));
        return envelope.ok(items, meta);
      },
    );
    app.get(
      `${base}/fields`,
      { schema: { ...schema, operationId: `get${one}Fields`, summary: `The fields of ${entity.name}`, response: responses(Open("Field name → its description (type, title, whether required)")) } },
      async (request) => envelope.ok(await data.fields(portalOf(request), entity)),
    );
    app.get(
      `${base}/:id`,
      { schema: { ...schema, operationId: `get${one}`, summary: `One ${entity.name} record`, params: Id, response: responses(Record_, { examples: [example], codes: ["ENTITY_NOT_FOUND"] }) } },
      async (request) => envelope.ok(await data.get(portalOf(request), entity, id(request))),
    );
    app.post(
      base,
      {
        schema: {
          ...schema,
          operationId: `create${one}`,
          summary: `Create a ${entity.name} record`,
          body: Open("The record's fields"),
          response: responses(Record_, { status: 201, examples: [example], codes: BODY_CODES }),
        },
      },
      async (request, reply) => reply.code(201).send(envelope.ok(await data.create(portalOf(request), entity, request.body))),
    );
    app.patch(
      `${base}/:id`,
      {
        schema: {
          ...schema,
          operationId: `update${one}`,
          summary: `Update a ${entity.name} record`,
          params: Id,
          body: Open("The fields to change"),
          response: responses(Record_, { examples: [example], codes: [...BODY_CODES, "ENTITY_NOT_FOUND"] }),
        },
      },
      async (request) => envelope.ok(await data.update(portalOf(request), entity, id(request), request.body)),
    );
    if (entity.remove) {
      app.delete(
        `${base}/:id`,
        {
          schema: {
            ...schema,
            operationId: `delete${one}`,
            summary: `Delete a ${entity.name} record`,
            params: Id,
            response: responses(T.Object({ id: T.Integer(), deleted: T.Literal(true) }), { codes: ["ENTITY_NOT_FOUND"] }),
          },
        },
        async (request) => envelope.ok(await data.remove(portalOf(request), entity, id(request))),
      );
    }
    app.post(
      `${base}/search`,
      {
        schema: {
          ...schema,
          operationId: `search${all}`,
          summary: `Search ${entity.name}: {filter, select, order, limit, offset}`,
          body: SearchBody,
          response: responses(T.Array(Record_), { meta: ListMeta, codes: [...BODY_CODES, "INVALID_FILTER_OPERATOR"] }),
        },
      },
      async (request) => {
        const { items, meta } = await data.list(portalOf(request), entity, queryFromBody(request.body));
        return envelope.ok(items, meta);
      },
    );
    app.post(
      `${base}/aggregate`,
      {
        schema: {
          ...schema,
          operationId: `aggregate${all}`,
          summary: `Aggregate ${entity.name}: count, sum, avg, min, max, groupBy`,
          body: Open("{aggregate: [{field, function}], groupBy?: [field], filter?}"),
          response: responses(T.Unknown({ description: "The aggregates, or a list of groups with theirs" }), { meta: T.Object({ total: T.Integer(), truncated: T.Boolean() }), codes: [...BODY_CODES, "INVALID_FILTER_OPERATOR"] }),
        },
      },
      async (request) => {
        const { data: result, meta } = await data.aggregate(portalOf(request), entity, request.body);
        return envelope.ok(result, meta);
      },
    );
  }

  // Messaging and the Activity Stream (seed 000: im, log): one Bitrix24 method each.
  const action = (path: string, operationId: string, summary: string, fields: Record<string, TSchema>, command: (request: FastifyRequest) => { method: string; params: Record<string, unknown> }) =>
    app.post(
      path,
      {
        schema: {
          operationId,
          tags: ["messaging"],
          summary,
          ...(path.includes(":dialogId") ? { params: T.Object({ dialogId: T.String() }) } : {}),
          // The handler names the field at fault; the schema documents the body.
          body: T.Object(fields, { additionalProperties: true }),
          response: responses(T.Union([T.Object({ id: T.Unknown({ description: "The new message's id" }) }), T.Object({ posted: T.Literal(true) })]), { status: 201, codes: BODY_CODES }),
        },
      },
      async (request, reply) => {
      const { method, params } = command(request);
      const r = await portalOf(request).call(method, params);
      // Bitrix24 answers the new message's id, or (log.blogpost.add) just true.
      return reply.code(201).send(envelope.ok(r.result === true ? { posted: true } : { id: r.result }));
      },
    );
  action("/v1/notifications", "sendNotification", "Send a system notification to a user: {userId, message}", { userId: Text, message: Text }, (request) => {
    const b = body(request, ["userId", "message"]);
    return { method: "im.notify.system.add", params: { USER_ID: b.userId, MESSAGE: b.message } };
  });
  action("/v1/chats/:dialogId/messages", "sendChatMessage", "Send a chat message: {message}", { message: Text }, (request) => {
    const b = body(request, ["message"]);
    return { method: "im.message.add", params: { DIALOG_ID: (request.params as { dialogId: string }).dialogId, MESSAGE: b.message } };
  });
  action("/v1/posts", "createPost", "Post to the Activity Stream: {message, title?}", { message: Text, title: T.Optional(Text) }, (request) => {
    const b = body(request, ["message"], ["title"]);
    return { method: "log.blogpost.add", params: { POST_MESSAGE: b.message, ...(b.title === undefined ? {} : { POST_TITLE: b.title }) } };
  });

  const CallError = T.Object({ code: T.String(), message: T.String(), details: T.Optional(Open("More about the refusal")) });
  app.post(
    "/v1/batch",
    {
      schema: {
        operationId: "batch",
        tags: ["entities"],
        summary: "Up to 50 calls in one request: each is checked on its own and answered in results, errors, meta",
        body: T.Object(
          {
            calls: T.Array(
              T.Object(
                {
                  id: T.Optional(T.String({ description: "Your name for the call (default: its index)" })),
                  entity: T.String(),
                  action: T.String({ description: "list, get, create, update, delete, fields, search" }),
                  entityId: T.Optional(T.Union([T.String(), T.Integer(), T.Null()])),
                  params: T.Optional(Open("As the single route's query or body")),
                },
                { additionalProperties: true },
              ),
            ),
          },
          { additionalProperties: true },
        ),
        response: responses(
          T.Object({
            results: Open("Call id → its answer"),
            errors: T.Object({}, { additionalProperties: CallError, description: "Call id → its refusal" }),
            meta: Open("Call id → its list meta"),
          }),
          { codes: [...BODY_CODES, "MISSING_ENTITY_ID", "INVALID_FILTER_OPERATOR"] },
        ),
      },
    },
    async (request) => {
    const results: Record<string, unknown> = {};
    const errors: Record<string, unknown> = {};
    const meta: Record<string, unknown> = {};
    const admitted = new Map<string, Plan>();
    const ids = new Map<string, string>();
    for (const call of batchCalls(request.body, (method, path) => kg.profile.match(method, path)?.value)) {
      // Each call meets the same checks as the request it stands for: type, mode, scopes.
      const denial = decide(kg.profile, request.auth.key.verified, { method: call.route.method, route: call.route, clientIp: request.auth.clientIp, hasSession: request.auth.appSession !== undefined, now: kg.now() });
      if (denial) errors[call.id] = { code: denial.code, message: envelope.def(denial.code).message, ...(denial.details ? { details: denial.details } : {}) };
      else {
        admitted.set(call.command, call.plan);
        ids.set(call.command, call.id);
      }
    }
    // Only what keygate admitted leaves it, in one Bitrix24 batch request (two for calls needing more than 50 commands).
    if (admitted.size > 0) {
      for (const [command, outcome] of await runBatch(portalOf(request), admitted)) {
        const id = ids.get(command)!;
        if ("error" in outcome) {
          const e = outcome.error;
          errors[id] = { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) };
        } else {
          results[id] = outcome.value;
          if (outcome.meta) meta[id] = outcome.meta;
        }
      }
    }
    return envelope.ok({ results, errors, meta });
    },
  );
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
  /** The call's id in the Bitrix24 batch (the client's ids are free text). */
  command: string;
  route: Route;
  plan: Plan;
}

const ACTIONS = new Set(["list", "get", "create", "update", "delete", "fields", "search"]);
const NEEDS_ID = new Set(["get", "update", "delete"]);

/**
 * The batch's calls, every one checked before anything is spent or sent: its shape, its entity
 * and action (a route of the profile), its entityId and params (planned as Bitrix24 commands, with
 * the single routes' checks). Anything wrong is the whole batch's 400, naming the call.
 */
function batchCalls(body: unknown, routeOf: (method: string, path: string) => Route | undefined): BatchCall[] {
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
    if (call.action === "aggregate") throw new KeygateError("VALIDATION_ERROR", { message: `${where}: aggregate is not a batch action; use POST /v1/<entity>/aggregate`, param: `${where}.action` });
    if (typeof call.action !== "string" || !ACTIONS.has(call.action)) throw new KeygateError("VALIDATION_ERROR", { message: `${where}.action is one of ${[...ACTIONS].join(", ")}`, param: `${where}.action` });
    const action = call.action as BatchAction;
    // An own property only: "constructor" or "toString" is no entity.
    const entity = typeof call.entity === "string" && Object.hasOwn(ENTITIES, call.entity) ? ENTITIES[call.entity]! : undefined;
    if (!entity) throw new KeygateError("VALIDATION_ERROR", { message: `${where}.entity is one of ${Object.keys(ENTITIES).join(", ")}`, param: `${where}.entity` });
    const params = call.params ?? {};
    if (typeof params !== "object" || params === null || Array.isArray(params)) throw new KeygateError("VALIDATION_ERROR", { message: `${where}.params is an object`, param: `${where}.params` });
    if (NEEDS_ID.has(action) && (call.entityId === undefined || call.entityId === null || call.entityId === "")) {
      throw new KeygateError("MISSING_ENTITY_ID", { message: `${where}: ${action} needs entityId at the call level`, param: `${where}.entityId` });
    }
    const entityId = NEEDS_ID.has(action) ? String(call.entityId) : undefined;
    const [method, path] = ROUTES[action](`/v1/${entity.name}`, encodeURIComponent(entityId ?? ""));
    const route = routeOf(method, path);
    if (!route) throw new KeygateError("VALIDATION_ERROR", { message: `${where}: ${entity.name} have no ${action}`, param: `${where}.action` });
    const unsent = notBatchable(params);
    if (unsent !== undefined) {
      throw new KeygateError("VALIDATION_ERROR", { message: `${where}.params.${unsent}: null, an empty list or "$result[" cannot travel in a Bitrix24 batch; send this call on its own route`, param: `${where}.params.${unsent}` });
    }
    const command = `c${i}`;
    try {
      return { id, command, route, plan: plan(entity, action, entityId, params as Record<string, unknown>, command) };
    } catch (e) {
      if (!(e instanceof KeygateError)) throw e;
      const param = e.param === undefined ? where : e.param === "id" ? `${where}.entityId` : `${where}.params.${e.param}`;
      throw new KeygateError(e.code, { message: `${where}: ${e.message}`, param, details: e.details });
    }
  });
}

/** The request each batch action stands for, so a call meets the same checks. */
const ROUTES: Record<BatchAction, (base: string, id: string) => [string, string]> = {
  list: (base) => ["GET", base],
  fields: (base) => ["GET", `${base}/fields`],
  get: (base, id) => ["GET", `${base}/${id}`],
  create: (base) => ["POST", base],
  update: (base, id) => ["PATCH", `${base}/${id}`],
  delete: (base, id) => ["DELETE", `${base}/${id}`],
  search: (base) => ["POST", `${base}/search`],
};
