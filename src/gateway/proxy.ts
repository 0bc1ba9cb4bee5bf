import type { FastifyReply, FastifyRequest } from "fastify";
import type { Profile } from "../core/profile/profile.ts";
import { splitPath } from "../core/routes/router.ts";
import { rateLimitHeaders } from "../limits/policy.ts";
import type { Store, Upstream } from "../store/store.ts";
import { type Identity, identityHeaders, identitySecret } from "../upstream/http/identity.ts";
import { targetProblem } from "../upstream/http/path.ts";
import { ClientGone, HttpUpstream, type HttpUpstreamOptions, UpstreamError, hasRequestBody } from "../upstream/http/proxy.ts";
import type { Verification } from "./auth.ts";
import type { CachedKey } from "./key-cache.ts";
import type { GatewayContext } from "./server.ts";

/**
 * Forwarding verified requests to a portal's HTTP upstream (docs/upstreams.md, "HTTP upstream").
 *
 * The request is forwarded from the verification hook (onRequest), right after verification and
 * rate limiting admitted it, before Fastify reads the body: the body streams from the client to the upstream as
 * it arrives, never parsed and never buffered whole (keygate's JSON parser and its body limit do
 * not apply to forwarded requests). Only a request whose verification passed in this very request
 * (request.verification without a refusal) on a route marked `upstream` is forwarded, with the
 * target exactly as it was verified.
 */

/** Profiles whose upstream routes are served by another adapter (VibeCode: Bitrix24, the sandbox). */
const NOT_HTTP = new Set(["vibecode"]);

export interface HttpProxy {
  /** Whether a URL lies under a forwarded route prefix outside /v1/ (Atender's /api/…): it must be verified like /v1/. */
  covers(url: string): boolean;
  /** Forgets what is cached of a portal's upstream (it changed). */
  portalChanged(portalId: string): void;
  /** Whether a request verification passed is forwarded: a route marked `upstream`, in a profile forwarded over HTTP. */
  forwards(verification: Verification): boolean;
  /** Forwards a request `forwards` accepted (or answers PORTAL_NOT_LINKED, VALIDATION_ERROR, 502, 504). */
  forward(ctx: GatewayContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
  /** The upstream client (connection pools). */
  readonly upstream: HttpUpstream;
  close(): Promise<void>;
}

export function httpProxy(options: { profile: Profile; store: Store; serverSecret: string; now: () => number; upstream?: HttpUpstreamOptions }): HttpProxy {
  const { profile, store, serverSecret, now } = options;
  const forwarding = !NOT_HTTP.has(profile.id);
  const upstream = new HttpUpstream(options.upstream);

  // First path segments of the forwarded routes that /v1/ does not already cover.
  const firsts = new Set<string>();
  let coversAll = false;
  if (forwarding) {
    for (const route of profile.routes) {
      if (!route.upstream) continue;
      const first = splitPath(route.path)[0] ?? "";
      if (first.startsWith(":") || first === "*" || first === "") coversAll = true;
      else if (first !== "v1") firsts.add(first);
    }
  }

  // Portals' upstreams by id; a load that raced with a change serves its request but is not kept.
  const portals = new Map<string, Upstream | null>();
  let generation = 0;
  const portalUpstream = async (portalId: string): Promise<Upstream | null> => {
    const cached = portals.get(portalId);
    if (cached !== undefined) return cached;
    const at = generation;
    const found = (await store.getPortal(portalId))?.upstream ?? null;
    if (at === generation) portals.set(portalId, found);
    return found;
  };
  const secrets = new Map<string, string>();
  const secretOf = (portalId: string): string => {
    let secret = secrets.get(portalId);
    if (secret === undefined) secrets.set(portalId, (secret = identitySecret(serverSecret, portalId)));
    return secret;
  };
  // The scopes header of a key, computed once per cache entry (a changed key is a new entry).
  const scopeHeaders = new WeakMap<CachedKey, string>();
  const scopesOf = (key: CachedKey): string => {
    let value = scopeHeaders.get(key);
    if (value === undefined) {
      value = profile.effective({ scopes: key.record.scopes, issued: key.record.issuedScopes }).join(",");
      scopeHeaders.set(key, value);
    }
    return value;
  };

  // A refusal resolves when it has been sent (a FastifyReply is thenable), as the verification hook's do.
  const forward = async (ctx: GatewayContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const problem = targetProblem(request.url);
    if (problem !== undefined) return ctx.send(reply, "VALIDATION_ERROR", { message: `keygate does not forward this path: ${problem}.`, param: "path" });
    const { key, clientIp } = request.auth;
    const record = key.record;
    const target = record.portalId === null ? null : await portalUpstream(record.portalId);
    if (target?.kind !== "http") {
      return ctx.send(reply, "PORTAL_NOT_LINKED", {
        message: "The key's portal has no HTTP upstream: keygate has nowhere to forward this request.",
        hint: 'A portal administrator links it: PATCH /v1/portals/:id {"upstream": {"kind": "http", "baseUrl": "https://…"}}.',
      });
    }
    const identity: Identity = {
      keyId: record.id,
      keyType: record.type,
      portalId: record.portalId!,
      ownerId: record.ownerId,
      scopes: scopesOf(key),
      accessMode: record.accessMode,
      clientIp,
    };
    // The signature binds the path as the upstream receives it (with the base URL's path).
    const location = upstream.locate(target.baseUrl, request.url);
    const added = identityHeaders(secretOf(record.portalId!), identity, {
      method: request.method,
      target: location.path,
      requestId: request.id,
      timestamp: Math.floor(now() / 1000),
    });
    added["x-forwarded-for"] = clientIp;
    added["x-forwarded-proto"] = request.protocol;
    if (request.host) added["x-forwarded-host"] = request.host;

    const controller = new AbortController();
    const res = reply.raw;
    const onClose = () => {
      if (!res.writableFinished) controller.abort();
    };
    res.once("close", onClose);
    try {
      await upstream.forward(
        location.origin,
        { method: request.method, path: location.path, headers: request.headers, body: hasRequestBody(request.headers) ? request.raw : null, added, signal: controller.signal },
        (status, headers) => {
          // From here the response is written as it streams; Fastify's onSend hooks do not run,
          // so what they add (X-Request-Id, the rate-limit headers) is added here. onResponse
          // (request accounting) still runs when the response finishes.
          reply.hijack();
          headers["x-request-id"] = request.id;
          if (request.rateLimit) Object.assign(headers, rateLimitHeaders(request.rateLimit));
          res.writeHead(status, headers);
          return res;
        },
      );
    } catch (e) {
      if (e instanceof UpstreamError && !e.started && !res.headersSent) {
        request.log.warn({ err: e.cause, upstream: target.baseUrl }, `upstream ${e.message}`);
        // The rest of an unread body would block the connection: it closes after the answer.
        if (!request.raw.complete) reply.header("connection", "close");
        return ctx.send(reply, e.code, { message: e.code === "UPSTREAM_TIMEOUT" ? "The upstream did not answer in time." : "The upstream could not be reached." });
      }
      if (!(e instanceof ClientGone)) request.log.warn({ err: e, upstream: target.baseUrl }, "forwarding failed after the response began");
      // The client is gone, or the response had begun: nothing more can be said on it.
      if (!reply.sent) reply.hijack();
      res.destroy();
    } finally {
      res.off("close", onClose);
    }
  };

  return {
    upstream,
    covers(url) {
      if (!forwarding) return false;
      if (coversAll) return true;
      if (firsts.size === 0) return false;
      let i = 0;
      while (url.charCodeAt(i) === 47) i++;
      let end = i;
      while (end < url.length) {
        const c = url.charCodeAt(end);
        if (c === 47 || c === 63 || c === 35) break;
        end++;
      }
      return firsts.has(url.slice(i, end));
    },
    portalChanged(portalId) {
      generation++;
      portals.delete(portalId);
    },
    // Only what verification passed in this request, on a forwarded route.
    forwards: (v) => forwarding && v.refusal === undefined && v.key !== undefined && v.route?.upstream === true,
    forward,
    close: () => upstream.close(),
  };
}
