import { randomUUID } from "node:crypto";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import compress from "@fastify/compress";
import swagger from "@fastify/swagger";
import { Type } from "@sinclair/typebox";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController, type RawServerDefault } from "fastify";
import { KeygateError } from "../core/errors.ts";
import { MAX_JSON_DEPTH, jsonDeeperThan } from "../core/json.ts";
import { UpstreamError as Bitrix24Error } from "../upstream/bitrix24/index.ts";
import { sandboxRoutes } from "../upstream/sandbox/index.ts";
import { sandboxOAuthUser } from "./sandbox-oauth-user.ts";
import { dashboardRoutes } from "../web/dashboard.ts";
import type { Profile, Route } from "../core/profile/profile.ts";
import type { Keygate } from "../manage/context.ts";
import type { Limiter } from "../limits/limiter.ts";
import type { Store } from "../store/store.ts";
import { identitySigner } from "../upstream/http/identity.ts";
import type { HttpUpstreamOptions } from "../upstream/http/proxy.ts";
import { outboundPolicy } from "../upstream/outbound.ts";
import { rateLimitHeaders, refusing } from "../limits/policy.ts";
import { type Admitted, admission } from "./admission.ts";
import type { Verification } from "./auth.ts";
import { type ClientFacts, clientFacts } from "./client.ts";
import { BROTLI_OPTIONS, COMPRESS_THRESHOLD, ENCODINGS, allowOrigin, conditionalGet, etagOf, isPreflight, originAllowed, preflightHeaders, sendKept, wwwAuthenticate } from "./conventions.ts";
import { type ErrorBody, envelopeFor, errorBody, responsesFor } from "./envelope.ts";
import { ChangeFeed } from "./change-feed.ts";
import type { Change, RedisInvalidation } from "./invalidation.ts";
import type { CachedKey, KeyCache } from "./key-cache.ts";
import { LimitRefusal } from "./limits.ts";
import { forwardAuth, forwardAuthRoutes } from "./forward-auth.ts";
import { identityAssertions } from "./identity.ts";
import { type LogLevel, loggerOptions } from "./logging.ts";
import { isStoreUnavailable } from "../store/unavailable.ts";
import { Metrics, timedStore } from "./metrics.ts";
import { httpProxy } from "./proxy.ts";
import { jwksRoute } from "./routes/jwks.ts";
import { keyRoutes } from "./routes/keys.ts";
import { scopeAdviceRoutes } from "./routes/scope-advice.ts";
import { entityRoutes } from "./routes/entities.ts";
import { keptMe, meRoutes } from "./routes/me.ts";
import { portalRoutes } from "./routes/portals.ts";
import { verifyRoutes } from "./routes/verify.ts";
import { DEFAULT_MAX_OBJECT_BYTES, storageRoutes } from "./routes/storage.ts";
import { botRoutes } from "./routes/bots.ts";
import { placementRoutes } from "./routes/placements.ts";
import { serverRoutes } from "./routes/servers.ts";
import { ServerChecks } from "../infra/reachability.ts";
import { AppRuntime } from "../apps/runtime.ts";
import { portalConnection } from "./portal-connection.ts";
import { accountRoutes, isAccountPath } from "./routes/accounts.ts";
import { sessionAuthenticator } from "./session.ts";
import { feedbackRoutes } from "../feedback/routes.ts";
import { type MailSettings, OutboxSender } from "../mail/outbox-sender.ts";
import { SESSION_LIFETIMES, type SessionLifetimes } from "../accounts/sessions.ts";
import { SIGN_IN_THROTTLE, type SignInThrottleSettings, signInThrottle } from "../accounts/throttle.ts";
import { type Usage, routeFacts } from "./usage.ts";
import { AiUsage, type PlatformOptions, Sections, platformRoutes } from "../platform/index.ts";
import { isOAuthPath, oauthRoutes } from "../oauth/routes.ts";
import { BITRIX24_TOKEN_URL, Bitrix24UserTokens } from "../oauth/bitrix24-tokens.ts";
import { isPlacementHandlerPath, placementHandlerRoutes } from "../apps/placement-handler.ts";
import type { AppSession } from "../store/store.ts";

export interface ServerOptions {
  profile: Profile;
  store: Store;
  /** Part of every key digest; kept outside the database. */
  serverSecret: string;
  /** Structured logs (pino) to stdout, credentials redacted (src/gateway/logging.ts); off in tests. */
  logger?: boolean;
  /** The level of those logs (default info). */
  logLevel?: LogLevel;
  /** Count requests and serve them at GET /metrics (default true; src/gateway/metrics.ts). */
  metrics?: boolean;
  /** Addresses of proxies whose X-Forwarded-For is believed (Fastify trustProxy). */
  trustProxy?: string[];
  /** The public base URL used in self-descriptions (GET /v1/me); default: from the request. */
  publicUrl?: string;
  /** Rate limits: in memory by default; a RedisLimiter shares them between nodes. Closed with the server. */
  limiter?: Limiter;
  /** Keys the key cache holds at most (default 100,000), the least recently used leaving first. */
  cacheSize?: number;
  /** Rate-limit logs the default in-memory limiter holds at most (default 250,000; docs/limits.md). */
  limiterSize?: number;
  /** The network size an IPv6 client is counted by in per-address limits (default 64; 128: each address). */
  ipv6Prefix?: number;
  /** Timeouts and pools of the HTTP upstream (docs/upstreams.md); the defaults suit production. */
  httpUpstream?: HttpUpstreamOptions;
  /** Host names, IP addresses and CIDR ranges upstream URLs may point to besides public addresses (docs/upstreams.md, "Outbound requests"). */
  allowUpstream?: string[];
  /** Days the request log is kept (default 30). */
  requestLogDays?: number;
  /** Tells other nodes about changes, and hears theirs (Redis pub/sub). Closed with the server. */
  invalidation?: RedisInvalidation;
  /** How often the store's change feed is read (ms, default 1000): how stale this node can be when Redis cannot tell it of a change (src/gateway/change-feed.ts). */
  changePollMs?: number;
  /** How long and how many clients may hold the server (docs/operations.md); the defaults suit production. */
  clientLimits?: Partial<ClientLimits>;
  /** The providers of the platform sections (AI, search; docs/sections.md); a section left out answers 503 SECTION_NOT_CONFIGURED. */
  platform?: PlatformOptions;
  /** Serve HTTPS with this certificate chain and private key (PEM); default: plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Lifetimes of signed-in sessions (docs/accounts.md); default 7 days idle, 30 days in all. */
  sessions?: Partial<SessionLifetimes>;
  /** Failed sign-ins allowed per account and per address (docs/accounts.md). */
  signInThrottle?: Partial<SignInThrottleSettings>;
  /** The key generation identity assertions are signed with (default 1): raised on every node to rotate the keys (docs/upstreams.md, "The identity assertion"). */
  identityKeyGeneration?: number;
  /** SMTP for the emails keygate sends (feedback tickets' authors, docs/feedback.md); default: none, in-app notifications only. */
  mail?: MailSettings;
  /** The largest object PUT /v1/storage/objects/<key> stores, in bytes (default 100 MiB; docs/storage.md). */
  storageMaxObjectBytes?: number;
  /** How often each registered server's reachability is checked (default 30 s; docs/servers.md). */
  serverCheckIntervalMs?: number;
  /** The app runtime (`serve --apps-port`, `--apps-domain`; docs/apps.md): built with the server, listened on by the caller (`appRuntime.server`); none: off, servers' appUrl is null. */
  apps?: { domain?: string; port?: number; upstream?: HttpUpstreamOptions };
  /** The base URL of the sandbox served at a host root (`keygate serve --sandbox-port`), for the sandbox's webhook URL; default: the /sandbox/ path of this server. */
  sandboxUrl?: string;
  /** Bitrix24's OAuth token server (`serve --bitrix24-token-url`, default https://oauth.bitrix.info/oauth/token/); a path is on this keygate (its sandbox's /sandbox/oauth/token/). */
  bitrix24TokenUrl?: string;
  now?: () => number;
}

export interface ClientLimits {
  /** The whole request, headers and body, must arrive within this (Node's requestTimeout); then 408 and the connection closes. */
  requestTimeoutMs: number;
  /** The headers must arrive within this. */
  headersTimeoutMs: number;
  /** A connection where nothing moves either way for this long is closed (nginx's client_body_timeout between two reads). */
  idleTimeoutMs: number;
  /** An idle keep-alive connection is closed after this: longer than load balancers' usual 60 s, so they close first. */
  keepAliveTimeoutMs: number;
  /** Open connections at once; more are closed as they arrive. */
  maxConnections: number;
  /** How often the request and headers timeouts are checked. */
  checkIntervalMs: number;
}

/**
 * nginx's 60 s client_header_timeout and client_body_timeout are the reference; 72 s keep-alive is
 * Fastify's. No cap on requests per connection (nginx's keepalive_requests): past it Node answers
 * 503 to a request already on its way instead of closing, which fails clients that reuse connections.
 */
export const CLIENT_LIMITS: ClientLimits = {
  requestTimeoutMs: 60_000,
  headersTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 72_000,
  maxConnections: 10_000,
  checkIntervalMs: 1_000,
};

/** What an authenticated request carries to its handler. */
export interface AuthContext {
  key: CachedKey;
  route: Route;
  params: Record<string, string>;
  clientIp: string;
  /** A signed-in session made the request (then `key` is the stand-in it acts as, src/gateway/session.ts). */
  session?: { id: string; userId: string };
  /** The user session an authorization key's request acts for (docs/oauth.md). */
  appSession?: AppSession;
}

declare module "fastify" {
  interface FastifyRequest {
    verification?: Verification;
    auth: AuthContext;
  }
  interface FastifyInstance {
    /** The management operations of this server: changes made through it reach its caches (and, with Redis, the other nodes'). */
    keygate: Keygate;
    /** The app runtime (ServerOptions.apps), to listen on its own port; none without it. */
    appRuntime?: AppRuntime;
  }
}

/** A Fastify instance whose routes are typed from their TypeBox schemas. */
export type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

/** What route handlers share. */
export interface GatewayContext {
  kg: Keygate;
  envelope: ReturnType<typeof envelopeFor>;
  publicUrl: string | undefined;
  /** ServerOptions.sandboxUrl. */
  sandboxUrl: string | undefined;
  usage: Usage;
  cache: KeyCache;
  /** Where a request came from, by the trusted-proxy rules. */
  client: ClientFacts;
  send(reply: FastifyReply, code: string, extra?: Partial<ErrorBody>): FastifyReply;
  /** A route's response schemas in the profile's envelope. */
  responses: ReturnType<typeof responsesFor>;
  /** The platform sections and which are available (src/platform/sections.ts). */
  sections: Sections;
  /** AI tokens per key, counted in memory (src/platform/ai/usage.ts). */
  aiUsage: AiUsage;
  /** A call to a portal's upstream took `seconds` (failed with `error`, a code), for /metrics. */
  upstreamCalled?: (portalId: string, seconds: number, error?: string) => void;
  /** A server's public URL on the app runtime; null when the runtime is off. */
  appUrl(serverId: string): string | null;
  /** Users' Bitrix24 OAuth tokens on real portals (src/oauth/bitrix24-tokens.ts). */
  bitrix24Tokens: Bitrix24UserTokens;
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

/** Whether a URL's path has no empty segment and no trailing slash (/ itself aside). */
function canonical(url: string): boolean {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  return !path.includes("//") && (path.length === 1 || !path.endsWith("/"));
}

/** A request verified before Fastify saw it: its id, and how it was admitted (or why admitting it failed). */
interface Arrived {
  id: string;
  admitted?: Admitted;
  failure?: unknown;
}
const ARRIVED = Symbol("keygate.arrived");
type ArrivingMessage = IncomingMessage & { [ARRIVED]?: Arrived };

const requestId = () => `req_${randomUUID()}`;

/**
 * The keygate HTTP server. Every response carries X-Request-Id; every /v1 request (and every
 * request under a forwarded route's prefix) is verified and counted as it arrives, before Fastify
 * sees it. A request for the portal's HTTP upstream is forwarded there and then, so the
 * forwarding path — the gateway's hottest — costs no framework; everything else, refusals
 * included, is answered by Fastify's routes and hooks, which find the request already admitted.
 */
export function buildServer(options: ServerOptions): FastifyInstance {
  const { profile, serverSecret } = options;
  /** Store round trips for /metrics (keygate_store_seconds), told to the metrics once they exist. */
  let storeTimed = (_operation: string, _seconds: number): void => {};
  const store = options.metrics === false ? options.store : timedStore(options.store, (operation, seconds) => storeTimed(operation, seconds));
  const now = options.now ?? Date.now;
  const envelope = envelopeFor(profile);
  const client = clientFacts(options.trustProxy);
  let handOver: (req: IncomingMessage, res: ServerResponse) => void = () => {};
  /** Set once the server starts closing (SIGTERM): answers then close their connections. */
  let closing = false;
  const app = Fastify({
    logger: options.logger ? loggerOptions(options.logLevel) : false,
    // Per-request log lines would cost the hot path; request accounting records requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: (req) => (req as ArrivingMessage)[ARRIVED]?.id ?? requestId(),
    trustProxy: options.trustProxy && options.trustProxy.length > 0 ? options.trustProxy : false,
    // Unknown fields are refused, not silently dropped; types are not coerced.
    // style and explode: OpenAPI's serialisation of a query parameter (filter[field]=…), not validation.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, keywords: ["style", "explode"] } },
    // The router refused the URL itself (bad percent-encoding, a path segment over 100
    // characters): no route, but keygate's envelope all the same.
    frameworkErrors: (error, request, reply) => {
      const message = error.code === "FST_ERR_MAX_PARAM_LENGTH" ? "The URL has a path segment longer than 100 characters." : "The URL is not valid (bad percent-encoding).";
      // No hook runs for it; a request counted as it arrived says so all the same.
      limits.headers(reply as FastifyReply, (request.raw as ArrivingMessage)[ARRIVED]?.admitted?.spent.states);
      (reply as FastifyReply).header("x-request-id", request.id).code(400).send(envelope.error(errorBody(envelope, "VALIDATION_ERROR", { message }), request.id));
    },
    // The server Fastify would make, with keygate's client limits, and arriving requests going through `arrive` first.
    serverFactory: (handler) => {
      handOver = handler;
      const limits = { ...CLIENT_LIMITS, ...options.clientLimits };
      const serverOptions = { requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.headersTimeoutMs, keepAliveTimeout: limits.keepAliveTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs };
      const onRequest = (req: IncomingMessage, res: ServerResponse) => {
        // Draining: answered, then the connection closes, so a load balancer's kept-alive
        // connection moves to another node instead of holding this one until the drain deadline.
        if (closing) res.setHeader("connection", "close");
        arrive(req, res);
      };
      const server = options.tls ? createHttpsServer({ ...serverOptions, ...options.tls }, onRequest) : createServer(serverOptions, onRequest);
      server.maxConnections = limits.maxConnections;
      server.setTimeout(limits.idleTimeoutMs);
      return server;
    },
  });
  const a = admission({
    profile,
    store,
    serverSecret,
    limiter: options.limiter,
    cacheSize: options.cacheSize,
    limiterSize: options.limiterSize,
    ipv6Prefix: options.ipv6Prefix,
    now,
    usage: { retentionDays: options.requestLogDays, onError: (e) => app.log.error({ err: e }, "request accounting write failed") },
    // A request streamed upstream spends the portal's budget as it arrives; the data plane's handlers spend it when they call the portal.
    portalOnArrival: (v) => proxy.forwards(v),
    session: (arrival, token) => sessions(arrival, token),
  });
  const { cache, limits, usage, limiter, format } = a;
  const metrics = options.metrics === false ? undefined : new Metrics(cache);
  if (metrics !== undefined) {
    storeTimed = (operation, seconds) => metrics.store(operation, seconds);
    options.limiter?.observe?.((operation, seconds) => metrics.redis(operation, seconds));
    options.invalidation?.observe((operation, seconds) => metrics.redis(operation, seconds));
  }
  /** A request verified and counted: its outcome, and the limit that refused it, for /metrics. */
  const measured = (admitted: Admitted): void => {
    if (metrics === undefined) return;
    metrics.verification(admitted.verification.refusal?.code ?? "ok");
    if (!admitted.spent.admitted) metrics.refused(refusing(admitted.spent.states)?.limit.kind ?? "unknown");
  };
  const outbound = outboundPolicy(options.allowUpstream);
  const signer = identitySigner({ serverSecret, generation: options.identityKeyGeneration, issuer: options.publicUrl ?? "keygate" });
  const assertions = identityAssertions(profile, cache, signer, now);
  const proxy = httpProxy({ profile, store, assertions, outbound, upstream: options.httpUpstream });
  const serverChecks = new ServerChecks(store, outbound, { intervalMs: options.serverCheckIntervalMs, now, onError: (e) => app.log.error({ err: e }, "could not check the servers' reachability") });
  const kg: Keygate = {
    profile,
    store,
    serverSecret,
    format,
    outbound,
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
  const lifetimes: SessionLifetimes = { ...SESSION_LIFETIMES, ...options.sessions };
  const sessions = sessionAuthenticator(kg, lifetimes);
  /** Another node's change, heard over Redis or read from the store's change feed. */
  const changed = (change: Change) => {
    if (change.kind === "key") cache.invalidate(change, change.version);
    else if (change.kind === "all") cache.clear();
    else cache.dataChanged();
    if (change.kind === "portal") proxy.portalChanged(change.id);
    else if (change.kind === "all") proxy.portalChanged();
  };
  if (options.invalidation) {
    const listening = options.invalidation.listen(changed);
    app.addHook("onReady", () => listening);
  }
  const mail = options.mail && new OutboxSender(store, options.mail, now, (e) => app.log.warn({ err: e }, "email outbox"));
  const feed = new ChangeFeed(options.store, { pollMs: options.changePollMs, onRead: metrics && ((seconds) => metrics.store("change_feed_read", seconds)), onError: (e) => app.log.warn({ err: e }, "could not read the store's change feed") });
  app.addHook("onReady", () => feed.start((changes) => changes.forEach(changed)));
  const send = (reply: FastifyReply, code: string, extra: Partial<ErrorBody> = {}) => {
    const status = envelope.def(code).status;
    if (status === 401) reply.header("www-authenticate", wwwAuthenticate(code, reply.request));
    if (code === "METHOD_NOT_ALLOWED") reply.header("allow", (extra.details?.allow as string[]).join(", "));
    return reply.code(status).send(envelope.error(errorBody(envelope, code, extra), reply.request.id));
  };
  /** This keygate's origin as the browser sees it: the public URL's, or the request's own. */
  const ownOrigin = (request: FastifyRequest): string => (options.publicUrl ? new URL(options.publicUrl).origin : `${client.protocol(request.raw)}://${client.host(request.raw)}`);
  /** Sessions were deleted here: this node's cached ones are read again now, other nodes' at once over Redis (or from the change feed). */
  const sessionsRevoked = () => {
    cache.dataChanged();
    options.invalidation?.publish({ kind: "data" }).catch((e: Error) => app.log.error({ err: e }, "could not tell other nodes of a revoked session"));
  };
  const runtime =
    options.apps &&
    new AppRuntime({
      profile,
      store,
      serverSecret,
      outbound,
      now,
      generation: () => cache.dataGeneration,
      ...options.apps,
      // Served over TLS by keygate, or (with a domain, behind a TLS proxy) as the public URL says.
      secure: options.tls !== undefined || (options.apps.domain !== undefined && options.publicUrl?.startsWith("https:") === true),
      tls: options.tls,
      onError: (e) => app.log.error({ err: e }, "app runtime"),
    });
  if (runtime) app.decorate("appRuntime", runtime);
  const fa = forwardAuth({ admission: a, envelope, client, assertions, store, log: app.log });
  /** This keygate's own listening address (its sandbox is called there), or undefined when it is not listening. */
  const ownBaseUrl = () => {
    const address = app.server.address();
    return typeof address === "object" && address !== null ? `${options.tls ? "https" : "http"}://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}` : undefined;
  };
  const bitrix24Tokens = new Bitrix24UserTokens(kg, { tokenUrl: options.bitrix24TokenUrl ?? BITRIX24_TOKEN_URL, ownBaseUrl });
  const ctx: GatewayContext = { kg, envelope, publicUrl: options.publicUrl, sandboxUrl: options.sandboxUrl, usage, cache, client, send, responses: responsesFor(profile), sections: new Sections(profile, options.platform ?? {}), aiUsage: new AiUsage(), upstreamCalled: metrics && ((portalId, seconds, error) => metrics.upstream(portalId, seconds, error)), bitrix24Tokens, appUrl: (id) => runtime?.appUrl(id) ?? null };

  const arrive = (req: ArrivingMessage, res: ServerResponse): void => {
    const url = req.url!;
    // Anything else is not verified here: Fastify's onRequest hook looks at the route its router chose.
    // Signing in and out is not verified here either: those routes read the cookie themselves.
    if ((!url.startsWith("/v1/") && !proxy.covers(url)) || isAccountPath(url) || isOAuthPath(url) || isPlacementHandlerPath(url)) return handOver(req, res);
    // A proxy's question about a request it received: answered here, as the proxy's hot path (docs/upstreams.md, "Forward-auth").
    if (fa.handles(url)) return fa.serve(req, res, requestId());
    // A CORS preflight carries no key: never verified nor counted (Fastify's onRequest hook answers it).
    if (isPreflight(req)) return handOver(req, res);
    const started = performance.now();
    const arrived: Arrived = { id: requestId() };
    req[ARRIVED] = arrived;
    const clientIp = client.ip(req);
    let admitted: Admitted | Promise<Admitted>;
    try {
      admitted = a.admit({ method: req.method!, url, headers: req.headers, clientIp });
    } catch (e) {
      return fail(req, res, arrived, e);
    }
    if (admitted instanceof Promise) admitted.then((ad) => proceed(req, res, arrived, ad, started), (e: unknown) => fail(req, res, arrived, e));
    else proceed(req, res, arrived, admitted, started);
  };

  /** Admitting or forwarding failed: Fastify's hook rethrows it, and the error handler answers. */
  const fail = (req: ArrivingMessage, res: ServerResponse, arrived: Arrived, e: unknown): void => {
    arrived.failure = e;
    handOver(req, res);
  };

  /**
   * Forwards an admitted request for the HTTP upstream, and answers GET /v1/me from its kept
   * answer; hands anything else (refusals too) to Fastify.
   */
  const proceed = (req: ArrivingMessage, res: ServerResponse, arrived: Arrived, admitted: Admitted, started: number): void => {
    arrived.admitted = admitted;
    measured(admitted);
    const v = admitted.verification;
    // A browser's request (Origin) is answered by the onRequest hook, once its origin is known to be allowed.
    if (!admitted.spent.admitted || req.headers.origin !== undefined) return handOver(req, res);
    if (!proxy.forwards(v)) {
      // The answer every client polls, worked out once per key by the route (docs/verification.md): sent with no framework.
      const me = v.refusal === undefined && v.session === undefined && v.appSession === undefined && req.method === "GET" && req.url === "/v1/me" ? keptMe(ctx, v.key!, req) : undefined;
      if (me === undefined) return handOver(req, res);
      sendKept(req, res, me, { "x-request-id": arrived.id, ...rateLimitHeaders(admitted.spent.states) });
      metrics?.request("GET", "/v1/me", res.statusCode);
      return usage.record({ keyId: v.key!.record.id, ip: v.clientIp, method: "GET", target: "/v1/me", status: res.statusCode, latencyMs: performance.now() - started, ...routeFacts(v.route, undefined) });
    }
    // Authenticated answers are not cached by default; the upstream's own Cache-Control replaces this.
    res.setHeader("cache-control", "no-store");
    proxy.forward(req, res, admitted, { id: arrived.id, protocol: client.protocol(req), host: client.host(req), log: app.log }).then(
      (refusal) => {
        // Forwarded: logged here (Fastify's onResponse logs the rest).
        if (refusal === undefined) {
          const latencyMs = performance.now() - started;
          metrics?.request(req.method!, v.route!.path, res.statusCode);
          metrics?.upstream(v.key!.record.portalId ?? "none", latencyMs / 1000);
          return usage.record({ keyId: v.key!.record.id, ip: v.clientIp, method: req.method!, target: req.url!, status: res.statusCode, latencyMs, ...routeFacts(v.route, undefined) });
        }
        if (refusal.code.startsWith("UPSTREAM_")) metrics?.upstream(v.key!.record.portalId ?? "none", (performance.now() - started) / 1000, refusal.code);
        v.refusal = refusal;
        handOver(req, res);
      },
      (e: unknown) => fail(req, res, arrived, e),
    );
  };

  // Callback-style hooks where nothing is awaited: no promise per request.
  app.addHook("onSend", (request, reply, payload, done) => {
    reply.header("x-request-id", request.id);
    limits.headers(reply, request.rateLimit);
    // Every verified request's answer (refusals too): no store by default; routes may say otherwise.
    if (request.verification !== undefined && !reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
    done(null, payload);
  });
  app.addHook("onRequest", async (request, reply) => {
    const arrived = (request.raw as ArrivingMessage)[ARRIVED];
    if (arrived?.failure !== undefined) throw arrived.failure;
    let admitted = arrived?.admitted;
    // Not admitted as it arrived: injected (app.inject), or a path the router decoded into /v1/
    // (/%761/me reaches /v1/me: the route it chose counts, not only the raw URL).
    const late = admitted === undefined;
    if (admitted === undefined) {
      if (!request.url.startsWith("/v1/") && !request.routeOptions.url?.startsWith("/v1/") && !proxy.covers(request.url)) return;
      if (isAccountPath(request.routeOptions.url ?? request.url) || isOAuthPath(request.routeOptions.url ?? request.url) || isPlacementHandlerPath(request.routeOptions.url ?? request.url)) return;
      // Forward-auth's route admits the request the proxy describes, not its own.
      if (fa.handles(request.url)) return;
      if (isPreflight(request.raw)) return reply.code(204).headers(preflightHeaders(request.raw)).send();
      admitted = await a.admit({ method: request.method, url: request.url, headers: request.headers, clientIp: client.ip(request.raw) });
      measured(admitted);
    }
    const { verification, spent } = admitted;
    request.verification = verification;
    request.rateLimit = spent.states;
    const origin = request.headers.origin;
    if (origin !== undefined && verification.session !== undefined) {
      // The dashboard's own pages only: a signed-in session is never lent to another origin.
      if (origin !== ownOrigin(request)) verification.refusal ??= { code: "ORIGIN_NOT_ALLOWED", details: { origin } };
    } else if (origin !== undefined && verification.key !== undefined) {
      // A browser's page: its origin must be one its key's portal lists, or nothing is done (docs/api.md, "CORS").
      if (await originAllowed(store, cache, verification.key, origin)) allowOrigin(reply.raw, origin);
      else verification.refusal = { code: "ORIGIN_NOT_ALLOWED", details: { origin } };
    }
    if ((late || origin !== undefined) && spent.admitted && proxy.forwards(verification)) {
      reply.raw.setHeader("cache-control", "no-store");
      // Fastify hands the raw response over when the upstream's begins; onResponse still records it.
      const refusal = await proxy.forward(request.raw, reply.raw, admitted, { id: request.id, protocol: client.protocol(request.raw), host: client.host(request.raw), log: request.log }, () => reply.hijack());
      if (refusal === undefined) {
        if (!reply.sent) reply.hijack();
        return;
      }
      verification.refusal = refusal;
    }
    if (!spent.admitted) {
      reply.header("retry-after", String(spent.retryAfter));
      return send(reply, spent.code!, { retryAfter: spent.retryAfter, details: spent.details });
    }
    if (verification.refusal) {
      const { code, ...extra } = verification.refusal;
      return send(reply, code, extra);
    }
    // The profile's router reads /v1/me/ and /v1//me as /v1/me, and Fastify's reads /v1/portals/
    // as /v1/portals/:id with an empty id: an endpoint is only its path as the route writes it.
    // A route ending in * takes the rest of the path as it is: its handler judges it (a storage object key).
    if (!canonical(request.url) && !verification.route!.path.endsWith("/*")) return send(reply, "ROUTE_NOT_FOUND");
    request.auth = { key: verification.key!, route: verification.route!, params: verification.params!, clientIp: verification.clientIp, session: verification.session, appSession: verification.appSession };
  });
  app.addHook("onResponse", (request, reply, done) => {
    const v = request.verification;
    // A route's template, the profile's or Fastify's: never the URL itself (bounded labels).
    metrics?.request(request.method, v?.route?.path ?? request.routeOptions.url ?? "unmatched", reply.statusCode);
    const key = v?.key;
    if (!key) return done();
    // A change answered by keygate itself (not forwarded upstream): derived answers are recomputed, here and on other nodes.
    if (request.method !== "GET" && request.method !== "HEAD" && reply.statusCode < 400 && v.route !== undefined && !v.route.upstream) {
      cache.dataChanged();
      options.invalidation?.publish({ kind: "data" }).catch((e: Error) => app.log.error({ err: e }, "could not tell other nodes of a change"));
    }
    // A session's requests are not a key's usage.
    if (!v.session) usage.record({ keyId: key.record.id, ip: v.clientIp, method: request.method, target: request.url, status: reply.statusCode, latencyMs: reply.elapsedTime, ...routeFacts(v.route, v.refusal) });
    done();
  });
  app.addHook("preClose", (done) => {
    closing = true;
    done();
  });
  app.addHook("onClose", async () => {
    await feed.close();
    await mail?.close();
    await a.close();
    await options.invalidation?.close();
    await proxy.close();
    await serverChecks.close();
    await runtime?.close();
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof KeygateError) return send(reply, error.code, { message: error.message, param: error.param, details: error.details });
    if (error instanceof LimitRefusal) {
      reply.header("retry-after", String(error.retryAfter));
      return send(reply, error.code, { retryAfter: error.retryAfter, details: error.details });
    }
    if (error instanceof Bitrix24Error) {
      if (error.noAnswer) request.log.warn({ bitrix24: error.noAnswer }, "Bitrix24 gave no REST answer");
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
    // A client that goes away mid-request is routine, not keygate's error; nobody is left to answer.
    if (request.raw.destroyed) {
      request.log.debug({ err: error }, "the client went away before its request was read");
      return reply;
    }
    if (isStoreUnavailable(error)) {
      request.log.warn({ err: error }, "the store does not answer");
      return send(reply, "STORE_UNAVAILABLE");
    }
    request.log.error({ err: error }, "unhandled error");
    return send(reply, "INTERNAL_ERROR");
  });
  app.setNotFoundHandler((request, reply) => {
    // Reached only by requests the verification passed, on a path as its route writes it (onRequest): the route is the profile's, the handler is not here.
    if (request.url.startsWith("/v1/") || proxy.covers(request.url)) return send(reply, "NOT_IMPLEMENTED");
    return send(reply, "ROUTE_NOT_FOUND");
  });

  app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: `keygate — ${profile.spec.title} profile`, version: "1", description: profile.spec.description },
      servers: [{ url: options.publicUrl ?? "/" }],
      tags: [
        { name: "self", description: "What a key can do, and this document" },
        { name: "keys", description: "Managing API keys" },
        { name: "portals", description: "Portals, their members, policy and audit trail" },
        { name: "accounts", description: "Signing in (cookie sessions), passwords, invitations" },
        { name: "verify", description: "Verify mode, for services that keep keygate beside them" },
        { name: "entities", description: "The portal's records (VibeCode)" },
        { name: "messaging", description: "Notifications, chat messages and Activity Stream posts (VibeCode)" },
        { name: "feedback", description: "Feedback tickets and their threads (docs/feedback.md)" },
        { name: "platform", description: "The platform sections: AI models, web search (docs/sections.md)" },
        { name: "bots", description: "Chatbots of the key's portal, through Bitrix24's imbot methods (VibeCode imbot)" },
        { name: "placements", description: "Embedding an authorization key's app in the portal, through Bitrix24's placement methods (VibeCode placement)" },
        { name: "storage", description: "Object storage of the key's portal (VibeCode vibe:storage)" },
        { name: "oauth", description: "Authorization keys' OAuth flow: users sign in to apps, which get session tokens (docs/oauth.md)" },
      ],
      components: {
        securitySchemes: {
          apiKey: { type: "apiKey", in: "header", name: "X-Api-Key" },
          bearer: { type: "http", scheme: "bearer", description: "An API or management key as a bearer token" },
          session: { type: "http", scheme: "bearer", description: "A user's session token (the OAuth flow), sent with an authorization key in X-Api-Key" },
          cookie: { type: "apiKey", in: "cookie", name: "keygate_session", description: "A signed-in browser's session (POST /v1/session); changes also need its X-CSRF-Token header" },
        },
      },
      security: [{ apiKey: [] }, { bearer: [] }, { apiKey: [], session: [] }, { cookie: [] }],
    },
  });
  // keygate's own answers over 1 KiB, as the client accepts (brotli, gzip). Forwarded requests
  // never reach Fastify's reply (`arrive` streams them, the late path hijacks): an upstream's
  // body passes as the upstream sent it. Request bodies are not decompressed.
  app.register(compress, { global: true, globalDecompression: false, threshold: COMPRESS_THRESHOLD, encodings: ENCODINGS, brotliOptions: BROTLI_OPTIONS });
  // The built-in sandbox portal: Bitrix24's REST protocol under /sandbox/, authenticated by its webhook tokens.
  app.register(sandboxRoutes, { store, now, oauth: { secret: kg.serverSecret, userFor: sandboxOAuthUser(kg, lifetimes) } });
  // "limits" says whether rate limits are shared (redis), local (memory), or local for now (redis-degraded).
  // The dashboard's pages and assets (web/); their own plugin, so no hook of theirs runs for /v1/.
  app.register(dashboardRoutes);
  app.get("/healthz", { schema: { hide: true } }, async () => ({ status: "ok", profile: profile.id, limits: limiter.mode }));
  app.register(async (root) => jwksRoute(root.withTypeProvider<TypeBoxTypeProvider>(), signer));
  if (metrics !== undefined) {
    // Prometheus text (docs/operations.md, "Metrics"): no key; keep it off the public side of the load balancer.
    app.get("/metrics", { schema: { hide: true } }, async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  // Readiness (docs/operations.md): 503 while the store does not answer within 2 s. Redis away is
  // the documented degraded mode (local limits, invalidation by the change feed): still ready.
  app.get("/readyz", { schema: { hide: true } }, async (_request, reply) => {
    const started = performance.now();
    const store = await Promise.race([
      options.store.lastChange().then(
        () => {
          metrics?.store("readiness", (performance.now() - started) / 1000);
          return "ok" as const;
        },
        () => "unreachable" as const,
      ),
      new Promise<"unreachable">((resolve) => setTimeout(resolve, 2_000, "unreachable").unref()),
    ]);
    const redis = limiter.mode === "memory" ? "not configured" : limiter.mode === "redis" ? "ok" : "degraded";
    return reply.code(store === "ok" ? 200 : 503).send({ status: store === "ok" ? "ready" : "not ready", store, redis });
  });
  app.register(async (v1) => {
    // Fastify's own JSON parser (it refuses __proto__ and constructor.prototype), after a depth bound.
    const json = v1.getDefaultJsonParser("error", "error");
    // Bodies are JSON: text/plain (which Fastify parses by default) gets 415 like any other type.
    v1.removeContentTypeParser("text/plain");
    v1.removeContentTypeParser("application/json");
    v1.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
      if (jsonDeeperThan(body as string, MAX_JSON_DEPTH)) {
        return done(new KeygateError("VALIDATION_ERROR", { message: `the JSON body nests more than ${MAX_JSON_DEPTH} arrays or objects inside one another`, param: "body" }), undefined);
      }
      json(request, body as string, done);
    });
    v1.addHook("preValidation", (request, reply, done) => {
      const param = nulAt(request.params, "") ?? nulAt(request.query, "") ?? nulAt(request.body, "");
      if (param === undefined) return done();
      send(reply, "VALIDATION_ERROR", { message: `${param} must not contain NUL characters`, param });
    });
    const typed: App = v1.withTypeProvider<TypeBoxTypeProvider>();
    meRoutes(typed, ctx);
    keyRoutes(typed, ctx);
    scopeAdviceRoutes(typed, ctx);
    portalRoutes(typed, ctx);
    feedbackRoutes(typed, ctx, mail);
    verifyRoutes(typed, ctx, a);
    platformRoutes(typed, ctx, ctx.sections, options.platform ?? {}, ctx.aiUsage, metrics?.registry);
    forwardAuthRoutes(typed, ctx, fa);
    accountRoutes(typed, ctx, { client, lifetimes, throttle: signInThrottle(limiter, { ...SIGN_IN_THROTTLE, ...options.signInThrottle }) });
    // Its own plugin: the consent form and the token endpoint take form bodies, no other route does.
    typed.register(async (oauth) => oauthRoutes(oauth.withTypeProvider<TypeBoxTypeProvider>(), ctx, { lifetimes, revoked: sessionsRevoked }));
    entityRoutes(typed, ctx, limits, ownBaseUrl);
    botRoutes(typed, ctx, portalConnection(ctx, limits, ownBaseUrl));
    placementRoutes(typed, ctx, portalConnection(ctx, limits, ownBaseUrl));
    // Its own plugin: a portal posts it a form, with no key (src/apps/placement-handler.ts).
    typed.register(async (handler) => placementHandlerRoutes(handler.withTypeProvider<TypeBoxTypeProvider>(), ctx, { ownBaseUrl }));
    serverRoutes(typed, ctx, serverChecks);
    // Its own context: request bodies are the objects' bytes, not JSON.
    v1.register(async (storage) => storageRoutes(storage.withTypeProvider<TypeBoxTypeProvider>(), ctx, { maxObjectBytes: options.storageMaxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES }));
    typed.get(
      "/v1/openapi.json",
      {
        schema: {
          operationId: "getOpenApi",
          summary: "OpenAPI 3.1 specification of this keygate (not enveloped: the document itself)",
          tags: ["self"],
          response: { ...ctx.responses({ data: Type.Unknown() }), 200: Type.Unsafe<unknown>(Type.Object({ openapi: Type.String() }, { additionalProperties: true, description: "The OpenAPI 3.1 document" })) },
        },
        // ETag and If-None-Match: 304 (docs/api.md, "HTTP conventions").
        onSend: conditionalGet,
      },
      // The document does not change while the server runs: serialised and hashed once, on the first request.
      async (_request, reply) => {
        document ??= (() => {
          const body = JSON.stringify(app.swagger());
          return { body, etag: etagOf(body) };
        })();
        return reply.type("application/json; charset=utf-8").header("etag", document.etag).send(document.body);
      },
    );
  });
  let document: { body: string; etag: string } | undefined;
  return app;
}
