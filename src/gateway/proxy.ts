import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyBaseLogger } from "fastify";
import type { Profile } from "../core/profile/profile.ts";
import { splitPath } from "../core/routes/router.ts";
import { rateLimitHeaders } from "../limits/policy.ts";
import type { Store, Upstream } from "../store/store.ts";
import { type Identity, identityHeaders, identitySecret } from "../upstream/http/identity.ts";
import { targetProblem } from "../upstream/http/path.ts";
import type { OutboundPolicy } from "../upstream/outbound.ts";
import { ClientGone, ClientSignal, HttpUpstream, type HttpUpstreamOptions, UpstreamError, hasRequestBody } from "../upstream/http/proxy.ts";
import { redactBaseUrl } from "../upstream/redact.ts";
import { servedByBitrix24 } from "../upstream/sandbox/index.ts";
import type { Admitted } from "./admission.ts";
import type { Refusal, Verification } from "./auth.ts";
import type { CachedKey } from "./key-cache.ts";

/**
 * Forwarding verified requests to a portal's HTTP upstream (docs/upstreams.md, "HTTP upstream").
 *
 * The request is forwarded as it arrives, right after verification and rate limiting admitted it,
 * before Fastify sees it (src/gateway/server.ts): the body streams from the client to the upstream
 * as it arrives, never parsed and never buffered whole (keygate's JSON parser and its body limit
 * do not apply to forwarded requests). Only a request whose verification passed in this very
 * request on a route marked `upstream` is forwarded, with the target exactly as it was verified.
 * Whatever is refused, here or before, is answered by Fastify like any other refusal.
 */

/** What the forwarder needs to know of a request besides its key: its id, and where it came from. */
export interface ForwardedRequest {
  id: string;
  protocol: string;
  host: string;
  log: FastifyBaseLogger;
}

export interface HttpProxy {
  /** Whether a URL lies under a forwarded route prefix outside /v1/ (Atender's /api/…): it must be verified like /v1/. */
  covers(url: string): boolean;
  /** Forgets what is cached of a portal's upstream (it changed). */
  portalChanged(portalId: string): void;
  /** Whether a request verification passed is forwarded: a route marked `upstream`, in a profile forwarded over HTTP. */
  forwards(verification: Verification): boolean;
  /**
   * Forwards a request `forwards` accepted and streams the upstream's answer to the client;
   * resolves when it is done. Resolves to a refusal instead when nothing was sent
   * (VALIDATION_ERROR, PORTAL_NOT_LINKED, UPSTREAM_UNAVAILABLE, UPSTREAM_TIMEOUT): the caller answers it.
   */
  forward(req: IncomingMessage, res: ServerResponse, admitted: Admitted, request: ForwardedRequest, responding?: () => void): Promise<Refusal | undefined>;
  /** The upstream client (connection pools). */
  readonly upstream: HttpUpstream;
  close(): Promise<void>;
}

export function httpProxy(options: { profile: Profile; store: Store; serverSecret: string; now: () => number; outbound: OutboundPolicy; upstream?: HttpUpstreamOptions }): HttpProxy {
  const { profile, store, serverSecret, now } = options;
  // VibeCode's upstream routes are served by the Bitrix24 adapters (Bitrix24, the sandbox), not forwarded.
  const forwarding = !servedByBitrix24(profile);
  const upstream = new HttpUpstream(options.outbound, options.upstream);

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

  // `responding` is called as the upstream's response begins (Fastify's reply lets go of the raw response).
  const forward = async (req: IncomingMessage, res: ServerResponse, admitted: Admitted, request: ForwardedRequest, responding?: () => void): Promise<Refusal | undefined> => {
    const url = req.url!;
    const problem = targetProblem(url);
    if (problem !== undefined) return { code: "VALIDATION_ERROR", message: `keygate does not forward this path: ${problem}.`, param: "path" };
    const { key, clientIp } = admitted.verification as Verification & { key: CachedKey };
    const record = key.record;
    const target = record.portalId === null ? null : (portals.get(record.portalId) ?? (await portalUpstream(record.portalId)));
    if (target?.kind !== "http") {
      return {
        code: "PORTAL_NOT_LINKED",
        message: "The key's portal has no HTTP upstream: keygate has nowhere to forward this request.",
        hint: 'A portal administrator links it: PATCH /v1/portals/:id {"upstream": {"kind": "http", "baseUrl": "https://…"}}.',
      };
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
    const location = upstream.locate(target.baseUrl, url);
    const added = identityHeaders(secretOf(record.portalId!), identity, {
      method: req.method!,
      target: location.path,
      requestId: request.id,
      timestamp: Math.floor(now() / 1000),
    });
    added["x-forwarded-for"] = clientIp;
    added["x-forwarded-proto"] = request.protocol;
    if (request.host) added["x-forwarded-host"] = request.host;

    const gone = new ClientSignal();
    const onClose = () => {
      if (!res.writableFinished) gone.abort();
    };
    res.once("close", onClose);
    try {
      await upstream.forward(
        location.origin,
        { method: req.method!, path: location.path, headers: req.headers, body: hasRequestBody(req.headers) ? req : null, added, signal: gone },
        (status, headers) => {
          // The response streams as it arrives: X-Request-Id and the rate-limit headers are added here.
          responding?.();
          headers["x-request-id"] = request.id;
          const states = admitted.spent.states;
          if (states.length > 0) Object.assign(headers, rateLimitHeaders(states));
          res.writeHead(status, headers);
          return res;
        },
      );
    } catch (e) {
      if (e instanceof UpstreamError && !e.started && !res.headersSent) {
        request.log.warn({ err: e.cause, upstream: redactBaseUrl(target.baseUrl), reqId: request.id }, `upstream ${e.message}`);
        // The rest of an unread body would block the connection: it closes after the answer.
        if (!req.complete) res.setHeader("connection", "close");
        return { code: e.code, message: e.code === "UPSTREAM_TIMEOUT" ? "The upstream did not answer in time." : "The upstream could not be reached." };
      }
      if (!(e instanceof ClientGone)) request.log.warn({ err: e, upstream: redactBaseUrl(target.baseUrl), reqId: request.id }, "forwarding failed after the response began");
      // The client is gone, or the response had begun: nothing more can be said on it.
      res.destroy();
    } finally {
      res.off("close", onClose);
    }
    return undefined;
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
