import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { EventEmitter } from "node:events";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { Agent } from "undici";
import type { OutboundPolicy } from "../outbound.ts";

/**
 * The generic HTTP upstream: forwards a request keygate has verified to the portal's
 * `{kind: "http", baseUrl}`, streaming both bodies (undici's dispatcher `stream` API, one
 * keep-alive pool per origin), connecting only where the outbound policy allows
 * (src/upstream/outbound.ts). It knows nothing of keys or Fastify: the gateway
 * (src/gateway/proxy.ts) decides what to forward and adds the identity headers.
 * docs/upstreams.md, "HTTP upstream", states the rules.
 */

export interface HttpUpstreamOptions {
  /** Time to open a connection (TCP and TLS), ms. Default 5,000. */
  connectTimeoutMs?: number;
  /** Time from sending the request to the end of the response headers, ms. Default 30,000. */
  headersTimeoutMs?: number;
  /** Longest pause between two chunks of the response body, ms. Default 30,000. */
  bodyTimeoutMs?: number;
  /** How long an idle keep-alive connection is kept, ms. Default 4,000 (undici's). */
  keepAliveTimeoutMs?: number;
  /** Connections per upstream origin. Default 128. */
  connectionsPerOrigin?: number;
}

export const UPSTREAM_DEFAULTS = { connectTimeoutMs: 5_000, headersTimeoutMs: 30_000, bodyTimeoutMs: 30_000, keepAliveTimeoutMs: 4_000, connectionsPerOrigin: 128 } as const;

/** Why a forward failed: the upstream did not answer in time, or could not be reached. */
export class UpstreamError extends Error {
  readonly code: "UPSTREAM_TIMEOUT" | "UPSTREAM_UNAVAILABLE";
  /** The response had begun: the client got the status and part of the body. */
  readonly started: boolean;
  constructor(code: "UPSTREAM_TIMEOUT" | "UPSTREAM_UNAVAILABLE", message: string, started: boolean, cause: unknown) {
    super(message, { cause });
    this.name = "UpstreamError";
    this.code = code;
    this.started = started;
  }
}

/** The client went away before the response was complete: nothing to answer. */
export class ClientGone extends Error {
  constructor(cause: unknown) {
    super("the client closed the connection", { cause });
    this.name = "ClientGone";
  }
}

/**
 * Tells undici the client went away, so it stops the upstream request. undici takes an
 * EventEmitter that emits "abort" where it takes an AbortSignal; this one costs a fraction of an
 * AbortController's listener machinery, on every forwarded request.
 */
export class ClientSignal extends EventEmitter {
  gone = false;
  abort(): void {
    this.gone = true;
    this.emit("abort");
  }
}

/** Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way; Connection may name more. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection", "proxy-authenticate", "proxy-authorization"]);

/**
 * Request headers the upstream never sees: the hop-by-hop ones, the caller's credentials (the
 * keygate key travels in X-Api-Key or Authorization; Cookie may hold a session), Host (the
 * upstream's own is sent), Expect (Node answers 100-continue itself), and what keygate sets
 * itself (forwarding headers, identity headers) so a client cannot pass its own.
 */
const DROPPED_REQUEST = new Set([
  ...HOP_BY_HOP,
  "x-api-key",
  "authorization",
  "cookie",
  "host",
  "expect",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "x-request-id",
]);

/** Names listed in a Connection header, lower case. */
function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  // The usual values name no header of their own (keep-alive is hop-by-hop anyway).
  if (typeof value === "string" && !value.includes(",")) {
    const token = value.trim().toLowerCase();
    return token === "keep-alive" || token === "close" ? undefined : new Set([token]);
  }
  const tokens = new Set<string>();
  for (const part of Array.isArray(value) ? value : [value]) for (const t of part.split(",")) tokens.add(t.trim().toLowerCase());
  return tokens;
}

/**
 * The client's headers as the upstream gets them: without hop-by-hop and credential headers,
 * without any `x-keygate-*` header, plus `added` (which wins).
 */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, added: Record<string, string>, hasBody: boolean): Record<string, string | string[]> {
  const listed = connectionTokens(headers.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (DROPPED_REQUEST.has(name) || name.startsWith("proxy-") || name.startsWith("x-keygate-") || listed?.has(name)) continue;
    if (name === "content-length" && !hasBody) continue;
    out[name] = value;
  }
  for (const name in added) out[name] = added[name]!;
  return out;
}

/** The upstream's response headers as the client gets them: without hop-by-hop headers. */
export function clientResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const listed = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || name.startsWith("proxy-") || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** Whether a request carries a body (RFC 9112 §6.3: Transfer-Encoding or a non-zero Content-Length). */
export function hasRequestBody(headers: IncomingHttpHeaders): boolean {
  if (headers["transfer-encoding"] !== undefined) return true;
  const length = headers["content-length"];
  return length !== undefined && length !== "0";
}

export interface ForwardRequest {
  method: string;
  /** Path and query string as the upstream gets them (`locate`). */
  path: string;
  /** The client's headers. */
  headers: IncomingHttpHeaders;
  /** The client's body, streamed as it arrives; null when there is none. */
  body: Readable | null;
  /** Headers keygate adds (identity, X-Request-Id, X-Forwarded-*). */
  added: Record<string, string>;
  /** Aborts the upstream request (the client went away). */
  signal?: ClientSignal;
}

/** Called once, when the upstream's status and headers have arrived: returns where the body goes. */
export type Respond = (status: number, headers: OutgoingHttpHeaders) => Writable;

const TIMEOUTS = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ETIMEDOUT"]);

interface Base {
  origin: string;
  /** The base URL's path without its trailing slash ("" for the root). */
  prefix: string;
}

/** Where a request goes: the upstream's origin, and the path and query string it receives. */
export interface Location {
  origin: string;
  path: string;
}

export class HttpUpstream {
  readonly #agent: Agent;
  readonly #options: Required<HttpUpstreamOptions>;
  readonly #bases = new Map<string, Base>();

  constructor(outbound: OutboundPolicy, options: HttpUpstreamOptions = {}) {
    this.#options = { ...UPSTREAM_DEFAULTS, ...options };
    const o = this.#options;
    // One Agent: it keeps a keep-alive pool per origin.
    this.#agent = new Agent({
      connect: outbound.connector({ timeout: o.connectTimeoutMs }),
      headersTimeout: o.headersTimeoutMs,
      bodyTimeout: o.bodyTimeoutMs,
      keepAliveTimeout: o.keepAliveTimeoutMs,
      connections: o.connectionsPerOrigin,
    });
  }

  #base(baseUrl: string): Base {
    let base = this.#bases.get(baseUrl);
    if (!base) {
      const url = new URL(baseUrl);
      base = { origin: url.origin, prefix: url.pathname.replace(/\/+$/, "") };
      if (this.#bases.size > 10_000) this.#bases.clear();
      this.#bases.set(baseUrl, base);
    }
    return base;
  }

  /**
   * Where a target (path and query string, already checked: src/upstream/http/path.ts) goes on
   * an upstream: a base URL's path is a prefix (base `https://api.example.com/rogeriq` and
   * target `/v1/x?y` give `https://api.example.com/rogeriq/v1/x?y`).
   */
  locate(baseUrl: string, target: string): Location {
    const base = this.#base(baseUrl);
    return { origin: base.origin, path: base.prefix + target };
  }

  /**
   * Forwards one request. Resolves when the response body has been written out. Rejects with an
   * UpstreamError (the upstream timed out or could not be reached; `started` when the response
   * had begun) or a ClientGone.
   */
  async forward(origin: string, request: ForwardRequest, respond: Respond): Promise<void> {
    let started = false;
    // undici destroys a request body it gave up on; the client's own stream must survive that
    // (destroying it closes the connection before the 502 is sent), so it goes through a pipe.
    let body: PassThrough | null = null;
    if (request.body) {
      body = new PassThrough({ highWaterMark: 64 * 1024 });
      request.body.pipe(body);
    }
    try {
      await this.#agent.stream(
        {
          origin,
          path: request.path,
          method: request.method as "GET",
          headers: upstreamRequestHeaders(request.headers, request.added, body !== null),
          body,
          signal: request.signal,
        },
        ({ statusCode, headers }) => {
          started = true;
          return respond(statusCode, clientResponseHeaders(headers as Record<string, string | string[] | undefined>));
        },
      );
    } catch (e) {
      if (request.body && body) request.body.unpipe(body);
      if (request.signal?.gone) throw new ClientGone(e);
      const code = (e as { code?: string }).code ?? "";
      const timeout = TIMEOUTS.has(code);
      throw new UpstreamError(timeout ? "UPSTREAM_TIMEOUT" : "UPSTREAM_UNAVAILABLE", `${timeout ? "timed out" : "unreachable"}: ${code || (e as Error).message}`, started, e);
    }
  }

  get options(): Readonly<Required<HttpUpstreamOptions>> {
    return this.#options;
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
