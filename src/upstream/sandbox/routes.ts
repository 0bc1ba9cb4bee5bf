/**
 * The sandbox portal's REST endpoint: a Bitrix24-compatible inbound webhook served by keygate,
 *
 *     GET|POST /sandbox/<portal id>/rest/<user id>/<token>/<method>[.json]
 *
 * or, registered with `root: true` (a listener of its own: `keygate serve --sandbox-port`), at the
 * host root as Bitrix24 serves it, /rest/<user id>/<token>/<method>, where the token alone names
 * the portal (a token two portals share names none),
 * taking parameters as a JSON body, a form body or a query string (PHP-style nesting), and
 * answering {result, total?, next?, time} or {error, error_description} with Bitrix24's statuses.
 * In order: the client address's failed-credentials budget (20 wrong webhooks a minute; past it
 * 503 QUERY_LIMIT_EXCEEDED, before the webhook is looked up, so tokens cannot be guessed faster),
 * the webhook (401 INVALID_CREDENTIALS when no webhook of the portal has this user id
 * and token), the portal's request limit (503 QUERY_LIMIT_EXCEEDED), the method (404
 * ERROR_METHOD_NOT_FOUND), its scope (401 insufficient_scope), then the method's own checks.
 * `batch` runs up to 50 commands ({halt, cmd: {id: "method?query"}}) as one request of the limit,
 * each checked on its own; a command may use an earlier one's answer as $result[id][field].
 *
 *     app.register(sandboxRoutes, { store, now });
 *
 * Register it where no authentication hook reaches /sandbox/ (the gateway's reaches /v1/ only).
 * Its routes log at warn and above only: their URLs hold webhook tokens.
 */
import { createHash, randomBytes } from "node:crypto";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { MAX_JSON_DEPTH, jsonDeeperThan } from "../../core/json.ts";
import { parseQuery } from "../bitrix24/query.ts";
import type { SandboxWebhook, Store } from "../../store/store.ts";
import type { MethodContext, MethodResult } from "./context.ts";
import { BitrixFault, insufficientScope, internalError, invalidCredentials, methodNotFound, queryLimitExceeded } from "./fault.ts";
import { MemoryLimiter } from "../../limits/memory.ts";
import type { Limit } from "../../limits/limiter.ts";
import { LeakyBuckets } from "./limiter.ts";
import { METHODS } from "./methods.ts";
import { SERVER_DOMAIN, SandboxOAuth, sandboxMemberId } from "./oauth.ts";
import { SANDBOX_SCOPES } from "./setup.ts";
import { ENTITY } from "./context.ts";
import { appSid, bindingsPage, openPage, placementPageHeaders } from "./placement-pages.ts";
import { isRecord, isoTime, nulPath, toFlag, toText } from "./values.ts";

export interface SandboxRoutesOptions {
  store: Store;
  /** The clock (epoch ms): record times and the request limit. Default Date.now. */
  now?: () => number;
  /** Serve /rest/<user id>/<token>/<method> at the root, the portal found by the token; default: /sandbox/<portal id>/rest/…. */
  root?: boolean;
  /** The portals' Bitrix24 OAuth (src/upstream/sandbox/oauth.ts), under /sandbox/ only. */
  oauth?: SandboxOAuthOptions;
}

export interface SandboxOAuthOptions {
  /** The server secret: each portal's application credentials derive from it. */
  secret: string;
  /** The sandbox user the browser's keygate sign-in is on the portal; "sign-in" when not signed in, "not-member" when not the portal's. */
  userFor(request: FastifyRequest, portalId: string): Promise<number | "sign-in" | "not-member">;
}

/** Wrong webhooks (portal, user id, token) an address may try in a sliding minute. */
export const FAILED_CREDENTIALS_PER_MINUTE = 20;

/** Bitrix24 refuses a batch of more commands. */
export const MAX_BATCH = 50;

/** The SHA-256 (hex) of a webhook token: what the store keeps. */
export function tokenDigest(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

interface RouteParams {
  /** Absent at the host root. */
  portalId?: string;
  userId: string;
  token: string;
  method: string;
}

export async function sandboxRoutes(app: FastifyInstance, options: SandboxRoutesOptions): Promise<void> {
  const { store } = options;
  const now = options.now ?? Date.now;
  const buckets = new LeakyBuckets();
  const failures = new MemoryLimiter({ now });
  app.addHook("onClose", () => failures.close());
  const failedCredentials = (ip: string): Limit[] => [{ kind: "auth", bucket: `sandbox:ip:${ip}`, limit: FAILED_CREDENTIALS_PER_MINUTE, windowMs: 60_000, policy: "failed-credentials" }];

  // Bitrix24 takes an empty body as no parameters, and form bodies with PHP-style nesting.
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === "") return done(null, {});
    if (jsonDeeperThan(text, MAX_JSON_DEPTH)) return done(new BitrixFault(400, "ERROR_ARGUMENT", "The request body nests too deeply", ""), undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new BitrixFault(400, "ERROR_ARGUMENT", "The request body is not valid JSON", ""), undefined);
    }
  });
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => done(null, parseQuery(String(body))));
  app.addContentTypeParser("*", { parseAs: "string" }, (_request, _body, done) => done(null, {}));

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof BitrixFault) return reply.code(error.status).send(error.body());
    if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return reply.code(413).send({ error: "REQUEST_TOO_LARGE", error_description: "The request body is too large" });
    request.log.error({ err: error }, "sandbox method failed");
    const fault = internalError();
    return reply.code(fault.status).send(fault.body());
  });

  /** Runs one method for the webhook: exists, scope, parameters, the method. */
  async function runMethod(ctx: MethodContext, name: string, params: Record<string, unknown>): Promise<MethodResult> {
    const def = METHODS.get(name);
    if (def === undefined) throw methodNotFound();
    if (def.scopes.length > 0 && !def.scopes.some((s) => ctx.scopes.has(s))) throw insufficientScope();
    const nul = nulPath(params);
    if (nul !== undefined) throw new BitrixFault(400, "ERROR_ARGUMENT", `Parameter ${nul} holds a NUL character`, nul);
    return def.run(ctx, params);
  }

  async function runBatch(ctx: MethodContext, params: Record<string, unknown>): Promise<MethodResult> {
    const cmd = params["cmd"];
    const commands: [string, unknown][] = Array.isArray(cmd) ? cmd.map((c, i) => [String(i), c]) : isRecord(cmd) ? Object.entries(cmd) : [];
    if (commands.length > MAX_BATCH) throw new BitrixFault(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded");
    const halt = toFlag(params["halt"]) === true;
    const result: Record<string, unknown> = {};
    const errors: Record<string, unknown> = {};
    const totals: Record<string, unknown> = {};
    const nexts: Record<string, unknown> = {};
    const times: Record<string, unknown> = {};
    for (const [id, command] of commands) {
      const started = now();
      const t0 = performance.now();
      try {
        const text = toText(command) ?? "";
        const q = text.indexOf("?");
        const name = methodName(q < 0 ? text : text.slice(0, q));
        if (name === "batch") throw new BitrixFault(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage");
        const sub = substitute(q < 0 ? {} : parseQuery(text.slice(q + 1)), result) as Record<string, unknown>;
        const out = await runMethod(ctx, name, sub);
        result[id] = out.result;
        if (out.total !== undefined) totals[id] = out.total;
        if (out.next !== undefined) nexts[id] = out.next;
        times[id] = timeBlock(started, now(), performance.now() - t0);
      } catch (error) {
        if (!(error instanceof BitrixFault)) throw error;
        errors[id] = error.body();
        if (halt) break;
      }
    }
    return { result: { result: php(result), result_error: php(errors), result_total: php(totals), result_next: php(nexts), result_time: php(times) } };
  }

  async function findWebhook(portalId: string | undefined, digest: string): Promise<SandboxWebhook | undefined> {
    if (portalId !== undefined) return store.getSandboxWebhook(portalId, digest);
    const found = await store.sandboxWebhooksByToken(digest);
    return found.length === 1 ? found[0] : undefined;
  }

  /** The request's parameters: the query string and the body, as Bitrix24 merges them. */
  const paramsOf = (request: FastifyRequest): Record<string, unknown> => {
    const q = request.url.indexOf("?");
    return { ...(q < 0 ? {} : parseQuery(request.url.slice(q + 1))), ...(isRecord(request.body) ? request.body : {}) };
  };

  async function handle(request: FastifyRequest<{ Params: RouteParams }>, reply: FastifyReply): Promise<FastifyReply> {
    const started = now();
    const { userId, token } = request.params;
    // Bitrix24's answer to too many requests; a right token from the address waits too (it is not looked up).
    if (!failures.peekNow(failedCredentials(request.ip), 1).admitted) throw queryLimitExceeded();
    const webhook = await findWebhook(request.params.portalId, tokenDigest(token));
    if (webhook === undefined || String(webhook.userId) !== userId) {
      failures.consumeNow(failedCredentials(request.ip), 1);
      throw invalidCredentials();
    }
    return respond(reply, { portalId: webhook.portalId, userId: webhook.userId, scopes: webhook.scopes }, request.params.method, paramsOf(request), started);
  }

  /** Runs the method (or batch) for the caller, within the portal's request limit. */
  async function respond(reply: FastifyReply, caller: { portalId: string; userId: number; scopes: readonly string[] }, method: string, params: Record<string, unknown>, started: number): Promise<FastifyReply> {
    const t0 = performance.now();
    const { portalId } = caller;
    const sandbox = await store.getSandbox(portalId);
    if (sandbox === undefined || !buckets.take(portalId, sandbox.requestBurst, sandbox.requestsPerSecond, started)) throw queryLimitExceeded();
    const ctx: MethodContext = { store, portalId, userId: caller.userId, now: started, scopes: new Set(caller.scopes) };
    const name = methodName(method);
    const out = name === "batch" ? await runBatch(ctx, params) : await runMethod(ctx, name, params);
    const body: Record<string, unknown> = { result: out.result };
    if (out.next !== undefined) body["next"] = out.next;
    if (out.total !== undefined) body["total"] = out.total;
    body["time"] = timeBlock(started, now(), performance.now() - t0);
    return reply.code(200).send(body);
  }

  app.route<{ Params: RouteParams }>({
    method: ["GET", "POST"],
    url: options.root === true ? "/rest/:userId/:token/:method" : "/sandbox/:portalId/rest/:userId/:token/:method",
    logLevel: "warn",
    schema: { hide: true },
    handler: handle,
  });
  if (options.oauth !== undefined && options.root !== true) oauthRoutes(app, options.oauth);

  /** The portals' Bitrix24 OAuth: authorize, the token server, REST calls with auth=<access_token>. */
  function oauthRoutes(app: FastifyInstance, oauth: SandboxOAuthOptions): void {
    const state = new SandboxOAuth(oauth.secret, now);
    const base = (request: FastifyRequest) => `${request.protocol}://${request.host}`;
    const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);

    app.get<{ Params: { portalId: string } }>("/sandbox/:portalId/oauth/authorize/", { logLevel: "warn", schema: { hide: true } }, async (request, reply) => {
      const q = paramsOf(request);
      const portal = await store.getPortal(request.params.portalId);
      if (portal === undefined || (await store.getSandbox(portal.id)) === undefined) throw new BitrixFault(404, "NOT_FOUND", "Portal not found");
      let redirect: URL;
      try {
        redirect = new URL(text(q["redirect_uri"]) ?? "");
      } catch {
        throw new BitrixFault(400, "invalid_request", "redirect_uri: an absolute URL is required");
      }
      if (redirect.protocol !== "https:" && redirect.protocol !== "http:") throw new BitrixFault(400, "invalid_request", "redirect_uri: an http(s) URL is required");
      const who = await oauth.userFor(request, portal.id);
      if (who === "sign-in") return reply.header("cache-control", "no-store").redirect(`/sign-in?next=${encodeURIComponent(request.url)}`, 302);
      if (who === "not-member") throw new BitrixFault(403, "access_denied", "Only the portal's users can authorize applications on it");
      const code = state.authorize(portal.id, text(q["client_id"]), who);
      const answer: Record<string, string> = { code, domain: portal.domain, member_id: sandboxMemberId(portal.id), scope: "app", server_domain: SERVER_DOMAIN };
      const sentState = text(q["state"]);
      if (sentState !== undefined) answer["state"] = sentState;
      for (const [name, value] of Object.entries(answer)) redirect.searchParams.append(name, value);
      return reply.header("cache-control", "no-store").redirect(redirect.href, 302);
    });

    app.route({
      method: ["GET", "POST"],
      url: "/sandbox/oauth/token/",
      logLevel: "warn",
      schema: { hide: true },
      handler: async (request, reply) => {
        const answer = state.token(paramsOf(request), {
          clientEndpoint: (portalId) => `${base(request)}/sandbox/${encodeURIComponent(portalId)}/rest/`,
          serverEndpoint: `${base(request)}/sandbox/oauth/rest/`,
        });
        return reply.code(200).header("cache-control", "no-store").send(answer);
      },
    });

    /** The sandbox portal and its user the browser is (a signed-in member), or where the browser goes instead. */
    const portalUser = async (request: FastifyRequest, reply: FastifyReply, portalId: string) => {
      const portal = await store.getPortal(portalId);
      if (portal === undefined || (await store.getSandbox(portal.id)) === undefined) throw new BitrixFault(404, "NOT_FOUND", "Portal not found");
      const who = await oauth.userFor(request, portal.id);
      if (who === "sign-in") return { redirect: reply.header("cache-control", "no-store").redirect(`/sign-in?next=${encodeURIComponent(request.url)}`, 302) };
      if (who === "not-member") throw new BitrixFault(403, "access_denied", "Only the portal's users can open its applications");
      return { portal, userId: who };
    };

    // The places apps are bound to, as the portal's interface shows them (src/upstream/sandbox/placement-pages.ts).
    app.get<{ Params: { portalId: string } }>("/sandbox/:portalId/placements", { logLevel: "warn", schema: { hide: true } }, async (request, reply) => {
      const found = await portalUser(request, reply, request.params.portalId);
      if ("redirect" in found) return found.redirect;
      const bindings = await store.listSandboxItems(found.portal.id, ENTITY.placement);
      return reply.code(200).headers(placementPageHeaders(null)).send(bindingsPage(found.portal.id, found.portal.domain, bindings));
    });

    // A user opening a place: the fields Bitrix24 posts to its handler, with fresh tokens of the user.
    app.get<{ Params: { portalId: string; placement: string }; Querystring: Record<string, string | undefined> }>(
      "/sandbox/:portalId/placements/:placement/open",
      { logLevel: "warn", schema: { hide: true } },
      async (request, reply) => {
        const found = await portalUser(request, reply, request.params.portalId);
        if ("redirect" in found) return found.redirect;
        const { portal, userId } = found;
        const code = request.params.placement.toUpperCase();
        const handler = text(request.query["handler"]);
        const binding = (await store.listSandboxItems(portal.id, ENTITY.placement)).find((b) => b.fields["PLACEMENT"] === code && (handler === undefined || b.fields["HANDLER"] === handler));
        if (binding === undefined) throw new BitrixFault(404, "NOT_FOUND", `No application is bound to ${code}${handler === undefined ? "" : " with this handler"}`);
        let options = text(request.query["options"]) ?? "{}";
        try {
          const parsed: unknown = JSON.parse(options);
          if (!isRecord(parsed)) throw new Error("not an object");
        } catch {
          throw new BitrixFault(400, "ERROR_ARGUMENT", "options: a JSON object is required (PLACEMENT_OPTIONS)", "options");
        }
        options = JSON.stringify(JSON.parse(options));
        const tokens = state.issue(portal.id, userId, {
          clientEndpoint: (portalId) => `${base(request)}/sandbox/${encodeURIComponent(portalId)}/rest/`,
          serverEndpoint: `${base(request)}/sandbox/oauth/rest/`,
        });
        const fields = {
          DOMAIN: portal.domain,
          PROTOCOL: request.protocol === "https" ? "1" : "0",
          LANG: "en",
          APP_SID: appSid(),
          AUTH_ID: tokens.access_token,
          AUTH_EXPIRES: String(tokens.expires_in),
          REFRESH_ID: tokens.refresh_token,
          member_id: tokens.member_id,
          status: tokens.status,
          PLACEMENT: code,
          PLACEMENT_OPTIONS: options,
        };
        const nonce = randomBytes(16).toString("base64");
        const title = String(binding.fields["TITLE"] ?? "") || code;
        return reply.code(200).headers(placementPageHeaders(nonce)).send(openPage(portal.domain, title, String(binding.fields["HANDLER"]), fields, text(request.query["top"]) === "1", nonce));
      },
    );

    app.route<{ Params: { portalId: string; method: string } }>({
      method: ["GET", "POST"],
      url: "/sandbox/:portalId/rest/:method",
      logLevel: "warn",
      schema: { hide: true },
      handler: async (request, reply) => {
        const started = now();
        const params = paramsOf(request);
        const token = text(params["auth"]);
        delete params["auth"];
        if (token === undefined) throw new BitrixFault(401, "NO_AUTH_FOUND", "Wrong authorization data");
        const caller = state.caller(token);
        if (caller.portalId !== request.params.portalId) throw new BitrixFault(401, "invalid_token", "The access token provided is invalid.");
        return respond(reply, { ...caller, scopes: SANDBOX_SCOPES }, request.params.method, params, started);
      },
    });
  }
}

/** "crm.item.list.json" → "crm.item.list" (lower case). */
function methodName(raw: string): string {
  return raw.trim().replace(/\.json$/i, "").toLowerCase();
}

/** Bitrix24's timing block (seconds). */
function timeBlock(startMs: number, finishMs: number, processingMs: number): Record<string, unknown> {
  return {
    start: startMs / 1000,
    finish: finishMs / 1000,
    duration: Math.max(0, finishMs - startMs) / 1000,
    processing: processingMs / 1000,
    date_start: isoTime(startMs),
    date_finish: isoTime(finishMs),
    operating_reset_at: Math.floor(startMs / 1000) + 600,
    operating: 0,
  };
}

/** A collection as PHP's json_encode writes it: empty or keyed 0, 1, 2… in order → an array. */
function php(collection: Record<string, unknown>): unknown {
  const entries = Object.entries(collection);
  if (entries.every(([k], i) => k === String(i))) return entries.map(([, v]) => v);
  return collection;
}

const REFERENCE = /\$result\[([^\]]+)\]((?:\[[^\]]*\])*)/g;

/** $result[id][a][b] in the values of a command, from the answers so far: a value that is only a reference takes the referred value as it is. */
function substitute(value: unknown, results: Record<string, unknown>): unknown {
  if (typeof value === "string") {
    const lookup = (id: string, path: string): unknown => {
      let node: unknown = results[id];
      for (const m of path.matchAll(/\[([^\]]*)\]/g)) node = isRecord(node) || Array.isArray(node) ? (node as Record<string, unknown>)[m[1]!] : undefined;
      return node;
    };
    const whole = new RegExp(`^${REFERENCE.source}$`).exec(value);
    if (whole) return lookup(whole[1]!, whole[2] ?? "") ?? "";
    return value.replace(REFERENCE, (_, id: string, path: string) => {
      const v = lookup(id, path);
      return v === undefined || v === null || typeof v === "object" ? "" : String(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, results));
  if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, results)]));
  return value;
}
