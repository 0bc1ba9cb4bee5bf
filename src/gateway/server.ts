import { randomUUID } from "node:crypto";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, LogController } from "fastify";
import { KeygateError } from "../core/errors.ts";
import { UpstreamError as Bitrix24Error } from "../upstream/bitrix24/index.ts";
import { sandboxRoutes } from "../upstream/sandbox/index.ts";
import { keyFormat } from "../core/keys/format.ts";
import type { Profile } from "../core/profile/profile.ts";
import type { Keygate } from "../manage/context.ts";
import type { Limiter } from "../limits/limiter.ts";
import { MemoryLimiter } from "../limits/memory.ts";
import { limitPolicy } from "../limits/policy.ts";
import type { Store } from "../store/store.ts";
import type { HttpUpstreamOptions } from "../upstream/http/proxy.ts";
import { type Verification, authenticator } from "./auth.ts";
import { type ErrorBody, envelopeFor, errorBody } from "./envelope.ts";
import type { RedisInvalidation } from "./invalidation.ts";
import { KeyCache } from "./key-cache.ts";
import { rateLimiting } from "./limits.ts";
import { httpProxy } from "./proxy.ts";
import { keyRoutes } from "./routes/keys.ts";
import { entityRoutes } from "./routes/entities.ts";
import { meRoutes } from "./routes/me.ts";
import { portalRoutes } from "./routes/portals.ts";
import { verifyRoutes } from "./routes/verify.ts";
import { Usage } from "./usage.ts";

export interface ServerOptions {
  profile: Profile;
  store: Store;
  /** Part of every key digest; kept outside the database. */
  serverSecret: string;
  /** Structured logs (pino) to stdout; off in tests. */
  logger?: boolean;
  /** Addresses of proxies whose X-Forwarded-For is believed (Fastify trustProxy). */
  trustProxy?: string[];
  /** The public base URL used in self-descriptions (GET /v1/me); default: from the request. */
  publicUrl?: string;
  /** Rate limits: in memory by default; a RedisLimiter shares them between nodes. Closed with the server. */
  limiter?: Limiter;
  /** Timeouts and pools of the HTTP upstream (docs/upstreams.md); the defaults suit production. */
  httpUpstream?: HttpUpstreamOptions;
  /** Days the request log is kept (default 30). */
  requestLogDays?: number;
  /** Tells other nodes about changes, and hears theirs (Redis pub/sub). Closed with the server. */
  invalidation?: RedisInvalidation;
  now?: () => number;
}

declare module "fastify" {
  interface FastifyRequest {
    verification?: Verification;
  }
  interface FastifyInstance {
    /** The management operations of this server: changes made through it reach its caches (and, with Redis, the other nodes'). */
    keygate: Keygate;
  }
}

/** What route handlers share. */
export interface GatewayContext {
  kg: Keygate;
  envelope: ReturnType<typeof envelopeFor>;
  publicUrl: string | undefined;
  usage: Usage;
  cache: KeyCache;
  send(reply: FastifyReply, code: string, extra?: Partial<ErrorBody>): FastifyReply;
}

/**
 * Where the first string holding a NUL character is, as a field path (name, upstream.webhookUrl,
 * ipWhitelist[0]); undefined when there is none. No store keeps one (PostgreSQL text refuses it),
 * so such input is refused up front, the same on every store.
 */
function nulAt(value: unknown, path: string): string | undefined {
  if (typeof value === "string") return value.includes("\u0000") ? path || "body" : undefined;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const at = nulAt(item, `${path}[${i}]`);
      if (at !== undefined) return at;
    }
  } else if (value !== null && typeof value === "object") {
    for (const [field, item] of Object.entries(value)) {
      const at = nulAt(field, path ? `${path}.${field}` : field) ?? nulAt(item, path ? `${path}.${field}` : field);
      if (at !== undefined) return at;
    }
  }
  return undefined;
}

/** The keygate HTTP server. Every response carries X-Request-Id; every /v1 request is verified first. */
export function buildServer(options: ServerOptions): FastifyInstance {
  const { profile, store, serverSecret } = options;
  const now = options.now ?? Date.now;
  const envelope = envelopeFor(profile);
  const app = Fastify({
    logger: options.logger ?? false,
    // Per-request log lines would cost the hot path; request accounting records requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => `req_${randomUUID()}`,
    trustProxy: options.trustProxy && options.trustProxy.length > 0 ? options.trustProxy : false,
    // Unknown fields are refused, not silently dropped; types are not coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } },
    // The router refused the URL itself (bad percent-encoding, a path segment over 100
    // characters): no route and no verification, but keygate's envelope all the same.
    frameworkErrors: (error, request, reply) => {
      const message = error.code === "FST_ERR_MAX_PARAM_LENGTH" ? "The URL has a path segment longer than 100 characters." : "The URL is not valid (bad percent-encoding).";
      (reply as FastifyReply).header("x-request-id", request.id).code(400).send(envelope.error(errorBody(envelope, "VALIDATION_ERROR", { message }), request.id));
    },
  });
  const format = keyFormat(profile.spec.keyTypes);
  const cache = new KeyCache(profile, store);
  const limiter = options.limiter ?? new MemoryLimiter({ now });
  const limits = rateLimiting({ policy: limitPolicy(profile.spec.limits), limiter, store, cache });
  const proxy = httpProxy({ profile, store, serverSecret, now, upstream: options.httpUpstream });
  const usage = new Usage(store, { now, retentionDays: options.requestLogDays, onError: (e) => app.log.error({ err: e }, "request accounting write failed") });
  const kg: Keygate = {
    profile,
    store,
    serverSecret,
    format,
    now,
    keyChanged: (key) => {
      cache.invalidate(key);
      options.invalidation?.publish({ kind: "key", id: key.id, digest: key.digest }).catch((e: Error) => app.log.error({ err: e }, "could not tell other nodes of a key change"));
    },
    portalChanged: (portal) => {
      cache.dataChanged();
      proxy.portalChanged(portal.id);
      options.invalidation?.publish({ kind: "portal", id: portal.id }).catch((e: Error) => app.log.error({ err: e }, "could not tell other nodes of a portal change"));
    },
  };
  app.decorate("keygate", kg);
  if (options.invalidation) {
    const listening = options.invalidation.listen((change) => {
      if (change.kind === "key") cache.invalidate(change);
      else cache.dataChanged();
      if (change.kind === "portal") proxy.portalChanged(change.id);
    });
    app.addHook("onReady", () => listening);
  }
  const send = (reply: FastifyReply, code: string, extra: Partial<ErrorBody> = {}) =>
    reply.code(envelope.def(code).status).send(envelope.error(errorBody(envelope, code, extra), reply.request.id));
  const ctx: GatewayContext = { kg, envelope, publicUrl: options.publicUrl, usage, cache, send };
  const auth = authenticator({ profile, format, serverSecret, cache, now, touched: (id, at) => usage.touch(id, at) });

  // Callback-style hooks where nothing is awaited: no promise per request.
  app.addHook("onSend", (request, reply, payload, done) => {
    reply.header("x-request-id", request.id);
    limits.headers(reply, request.rateLimit);
    done(null, payload);
  });
  app.addHook("onRequest", async (request, reply) => {
    // The router decodes the path (/%761/me reaches /v1/me): the route it chose counts, not only the raw URL.
    // Forwarded routes outside /v1/ (Atender's /api/v1/…) are verified too.
    if (!request.url.startsWith("/v1/") && !request.routeOptions.url?.startsWith("/v1/") && !proxy.covers(request.url)) return;
    const verification = await auth.authenticate(request);
    request.verification = verification;
    const spent = await limits.spend(verification);
    request.rateLimit = spent.states;
    if (!spent.admitted) {
      reply.header("retry-after", String(spent.retryAfter));
      return send(reply, spent.code!, { retryAfter: spent.retryAfter });
    }
    if (verification.refusal) {
      const { code, ...extra } = verification.refusal;
      return send(reply, code, extra);
    }
    // A route forwarded to the portal's HTTP upstream: answered here, before the body is read.
    if (proxy.forwards(verification)) return proxy.forward(ctx, request, reply);
  });
  app.addHook("onResponse", (request, reply, done) => {
    const v = request.verification;
    const key = v?.key;
    if (!key) return done();
    // A change answered by keygate itself (not forwarded upstream): derived answers are recomputed, here and on other nodes.
    if (request.method !== "GET" && request.method !== "HEAD" && reply.statusCode < 400 && v.route !== undefined && !v.route.upstream) {
      cache.dataChanged();
      options.invalidation?.publish({ kind: "data" }).catch((e: Error) => app.log.error({ err: e }, "could not tell other nodes of a change"));
    }
    const q = request.url.indexOf("?");
    usage.record({
      keyId: key.record.id,
      at: now(),
      ip: request.verification!.clientIp,
      method: request.method,
      path: q < 0 ? request.url : request.url.slice(0, q),
      status: reply.statusCode,
      latencyMs: reply.elapsedTime,
    });
    done();
  });
  app.addHook("onClose", async () => {
    await usage.close();
    await limiter.close();
    await options.invalidation?.close();
    await proxy.close();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof KeygateError) return send(reply, error.code, { message: error.message, param: error.param, details: error.details });
    if (error instanceof Bitrix24Error) {
      // The catalog's hint for BITRIX_ACCESS_DENIED is about keygate's issue-time lock; this refusal is Bitrix24's own.
      const hint = error.code === "BITRIX_ACCESS_DENIED" ? "Bitrix24 refused: the portal's webhook, or its user, lacks this scope or right." : undefined;
      return send(reply, error.code, { message: error.message, param: error.param, details: { ...error.details }, hint });
    }
    if (error.validation) {
      const first = error.validation[0];
      const missing = (first?.params as { missingProperty?: string; additionalProperty?: string; allowedValues?: unknown[] } | undefined) ?? {};
      const path = [first?.instancePath.replace(/^\//, "").replace(/\//g, "."), missing.missingProperty ?? missing.additionalProperty].filter(Boolean).join(".");
      const problem = missing.allowedValues ? `must be one of ${missing.allowedValues.map((v) => JSON.stringify(v)).join(", ")}` : (first?.message ?? "invalid");
      const what = missing.additionalProperty ? `unknown field ${path}` : `${path || error.validationContext}: ${problem}`;
      return send(reply, "VALIDATION_ERROR", { message: `${error.validationContext === "querystring" ? "query " : ""}${what}`, param: path || undefined });
    }
    if (error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error.code === "FST_ERR_CTP_EMPTY_JSON_BODY" || error instanceof SyntaxError) return send(reply, "INVALID_JSON");
    if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return send(reply, "UNSUPPORTED_MEDIA_TYPE");
    if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return send(reply, "PAYLOAD_TOO_LARGE");
    request.log.error({ err: error }, "unhandled error");
    return send(reply, "INTERNAL_ERROR");
  });
  app.setNotFoundHandler((request, reply) => {
    // Reached only by requests the verification passed: the route is the profile's, the handler is not here.
    if (request.url.startsWith("/v1/") || proxy.covers(request.url)) return send(reply, "NOT_IMPLEMENTED");
    return send(reply, "ROUTE_NOT_FOUND");
  });

  app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: `keygate — ${profile.spec.title} profile`, version: "1", description: profile.spec.description },
      components: { securitySchemes: { apiKey: { type: "apiKey", in: "header", name: "X-Api-Key" }, bearer: { type: "http", scheme: "bearer" } } },
      security: [{ apiKey: [] }, { bearer: [] }],
    },
  });
  // The built-in sandbox portal: Bitrix24's REST protocol under /sandbox/, authenticated by its webhook tokens.
  app.register(sandboxRoutes, { store, now });
  // "limits" says whether rate limits are shared (redis), local (memory), or local for now (redis-degraded).
  app.get("/healthz", { schema: { hide: true } }, async () => ({ status: "ok", profile: profile.id, limits: limiter.mode }));
  app.register(async (v1) => {
    v1.addHook("preValidation", (request, reply, done) => {
      const param = nulAt(request.params, "") ?? nulAt(request.query, "") ?? nulAt(request.body, "");
      if (param === undefined) return done();
      send(reply, "VALIDATION_ERROR", { message: `${param} must not contain NUL characters`, param });
    });
    meRoutes(v1, ctx);
    keyRoutes(v1, ctx);
    portalRoutes(v1, ctx);
    verifyRoutes(v1, ctx, { limits, cache });
    entityRoutes(v1, ctx, () => {
      const address = app.server.address();
      return typeof address === "object" && address !== null ? `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}` : undefined;
    });
    v1.get("/v1/openapi.json", { schema: { summary: "OpenAPI 3.1 specification of this keygate", tags: ["self"] } }, async () => app.swagger());
  });
  return app;
}
