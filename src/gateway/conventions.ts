/**
 * keygate's HTTP conventions that are its own rules (docs/api.md, "HTTP conventions"): CORS
 * decided by the key's portal, the WWW-Authenticate challenge of a 401, and ETag revalidation.
 */
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import negotiate from "@fastify/accept-negotiator";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Store } from "../store/store.ts";
import type { CachedKey, KeyCache } from "./key-cache.ts";

/** What a browser page may read of keygate's answers besides the CORS-safelisted headers. */
const EXPOSED = "X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, RateLimit, RateLimit-Policy, Retry-After";
/** The request headers a preflight allows when it names none: the credentials and a JSON body. */
const ALLOWED_HEADERS = "X-Api-Key, Authorization, Content-Type";
/** Seconds a browser keeps a preflight's answer (Chromium caps it at 7200). */
const PREFLIGHT_MAX_AGE = "600";
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. It never carries a key. */
export function isPreflight(req: IncomingMessage): boolean {
  return req.method === "OPTIONS" && req.headers.origin !== undefined && req.headers["access-control-request-method"] !== undefined;
}

/**
 * The preflight's answer. It carries no key, so it cannot know the portal whose origins decide:
 * it allows the origin, method and headers asked, and the request that follows — with its key —
 * is refused (ORIGIN_NOT_ALLOWED) unless the key's portal lists the origin. Nothing is done and
 * nothing is read by a page before that.
 */
export function preflightHeaders(req: IncomingMessage): Record<string, string> {
  const method = req.headers["access-control-request-method"]!;
  const asked = req.headers["access-control-request-headers"];
  return {
    "access-control-allow-origin": req.headers.origin!,
    "access-control-allow-methods": TOKEN.test(method) ? method : "GET",
    "access-control-allow-headers": asked !== undefined && asked.split(",").every((h) => TOKEN.test(h.trim())) ? asked : ALLOWED_HEADERS,
    "access-control-max-age": PREFLIGHT_MAX_AGE,
    vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
  };
}

/** Lets the page at `origin` read this response (set on the raw response: a forwarded answer's headers are merged over it). */
export function allowOrigin(res: ServerResponse, origin: string): void {
  res.setHeader("access-control-allow-origin", origin);
  res.setHeader("access-control-expose-headers", EXPOSED);
  res.setHeader("vary", "Origin");
}

const ORIGINS = "allowed origins";

/** Whether the key's portal lets pages of `origin` send its keys: worked out once per key, kept with it until the portal changes. */
export function originAllowed(store: Store, cache: KeyCache, key: CachedKey, origin: string): boolean | Promise<boolean> {
  const portalId = key.record.portalId;
  if (portalId === null) return false;
  const origins = cache.peek<ReadonlySet<string>>(key, ORIGINS);
  if (origins !== undefined) return origins.has(origin);
  return cache.derive(key, ORIGINS, async () => new Set((await store.getPortal(portalId))?.allowedOrigins ?? [])).then((o) => o.has(origin));
}

const REALM = 'realm="keygate"';

/**
 * The challenge of a 401 (RFC 9110 §11.6.1): keys are sent in X-Api-Key (the "ApiKey" scheme,
 * keygate's) or as Bearer tokens; session tokens as Bearer (RFC 6750 §3: no error code when no
 * credentials came, invalid_token when they did not pass).
 */
export function wwwAuthenticate(code: string, request: { headers: IncomingHttpHeaders }): string {
  switch (code) {
    // No key came; a signed-in browser's cookie (docs/accounts.md) is no HTTP authentication scheme, so the key schemes are offered.
    case "MISSING_API_KEY":
    case "SESSION_REQUIRED":
    case "INVALID_CREDENTIALS":
      return `ApiKey ${REALM}, Bearer ${REALM}`;
    case "TOKEN_MISSING":
    case "UNAUTHENTICATED":
      return `Bearer ${REALM}`;
    case "INVALID_SESSION":
      return `Bearer ${REALM}, error="invalid_token"`;
    default:
      return request.headers["x-api-key"] === undefined ? `Bearer ${REALM}, error="invalid_token"` : `ApiKey ${REALM}, error="invalid_key"`;
  }
}

/** A strong validator of a body: computed once where the body is kept (GET /v1/me), else per answer. */
export function etagOf(body: string): string {
  return `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`;
}

/** keygate's own answers of at least this many bytes are compressed, as the client accepts. */
export const COMPRESS_THRESHOLD = 1024;
/** In the order keygate prefers them when a client accepts both equally. */
export const ENCODINGS: ("br" | "gzip")[] = ["br", "gzip"];
/** Brotli quality 4 for every answer keygate compresses, kept or not (Cloudflare's measurements): most of the gain for little CPU. */
export const BROTLI_OPTIONS = { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } };

/** A kept answer's body, its validator, and its compressed forms once a client asked for them. */
export interface KeptBody {
  body: string;
  etag: string;
  br?: Buffer;
  gzip?: Buffer;
}

export function keptBody(body: string): KeptBody {
  return { body, etag: etagOf(body) };
}

/**
 * The bytes of a kept answer for a client's Accept-Encoding, with their Content-Encoding
 * (undefined: as is). Each compressed form is made once and kept with the body, so a client that
 * asks for compression costs no compression per request.
 */
export function encoded(kept: KeptBody, acceptEncoding: string | undefined): { bytes: string | Buffer; encoding?: "br" | "gzip" } {
  if (acceptEncoding === undefined || kept.body.length < COMPRESS_THRESHOLD) return { bytes: kept.body };
  const encoding = negotiate(acceptEncoding, ENCODINGS);
  if (encoding === "br") return { bytes: (kept.br ??= brotliCompressSync(kept.body, BROTLI_OPTIONS)), encoding };
  if (encoding === "gzip") return { bytes: (kept.gzip ??= gzipSync(kept.body)), encoding };
  return { bytes: kept.body };
}

/**
 * Sends a kept answer with keygate's conventions for it: its ETag, `private, no-cache`, 304 when
 * If-None-Match names it, compressed as the client accepts (Vary: Accept-Encoding). One writer for
 * GET /v1/me whether Fastify's route or the server's arrival path answers it, so both send the
 * same bytes and headers. `headers` are the request's own (X-Request-Id, the rate-limit headers).
 */
export function sendKept(req: IncomingMessage, res: ServerResponse, kept: KeptBody, headers: Record<string, string>): void {
  const out: Record<string, string | number> = { ...headers, etag: kept.etag, "cache-control": "private, no-cache" };
  if (kept.body.length >= COMPRESS_THRESHOLD) out.vary = "Accept-Encoding";
  if (notModified(req.headers["if-none-match"], kept.etag)) {
    res.writeHead(304, out).end();
    return;
  }
  const { bytes, encoding } = encoded(kept, req.headers["accept-encoding"]);
  out["content-type"] = "application/json; charset=utf-8";
  out["content-length"] = Buffer.byteLength(bytes);
  if (encoding !== undefined) out["content-encoding"] = encoding;
  res.writeHead(200, out).end(bytes);
}

/** Whether a client's If-None-Match names this validator (then the answer is 304). */
export function notModified(ifNoneMatch: string | undefined, etag: string): boolean {
  return ifNoneMatch !== undefined && matches(ifNoneMatch, etag);
}

function matches(ifNoneMatch: string, etag: string): boolean {
  if (ifNoneMatch.trim() === "*") return true;
  // Weak comparison (RFC 9110 §13.1.2): W/"x" matches "x".
  return ifNoneMatch.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}

/**
 * The route's onSend hook for GET /v1/me, /v1/guide and /v1/openapi.json: an ETag (the handler's,
 * or the body's digest), `private, no-cache` (the client keeps the answer and asks again with
 * If-None-Match), and 304 without a body when it matches.
 */
export function conditionalGet(request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload?: unknown) => void): void {
  if (reply.statusCode !== 200 || typeof payload !== "string") return done(null, payload);
  let etag = reply.getHeader("etag") as string | undefined;
  if (etag === undefined) reply.header("etag", (etag = etagOf(payload)));
  reply.header("cache-control", "private, no-cache");
  if (!notModified(request.headers["if-none-match"], etag)) return done(null, payload);
  reply.code(304).removeHeader("content-type");
  done(null, "");
}
