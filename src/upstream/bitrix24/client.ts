/**
 * A Bitrix24 REST client for an inbound webhook: https://<portal>/rest/<user id>/<token>/, and
 * the sandbox's http://<keygate>/sandbox/<portal id>/rest/<user id>/<token>/ alike; or, with
 * `auth`, for an OAuth application acting as a user: the token answer's client_endpoint
 * (https://<portal>/rest/) with auth=<access token> in every call's parameters.
 *
 *     const b24 = bitrix24Client(webhookUrl, { timeoutMs: 10_000 });
 *     const { result, total, next } = await b24.call("crm.item.list", { entityTypeId: 2, filter: { ">opportunity": 1000 }, start: 0 });
 *     const batch = await b24.batch({ deal: "crm.item.get?entityTypeId=2&id=5", me: { method: "user.get", params: { ID: 1 } } });
 *
 * A call is POST <webhook><method>.json with the parameters as a JSON body; Bitrix24 answers
 * {result, total?, next?, time} or {error, error_description} (errors.ts maps those, and network
 * failures, to an UpstreamError). Requests go through one keep-alive undici Pool per origin and
 * outbound policy, shared by every client of that origin; each connection goes only where the
 * policy allows (src/upstream/outbound.ts). closeBitrix24Pools() closes them (at shutdown).
 *
 * The webhook's token is a password: it is in no error, message or detail this module makes.
 */
import { Pool } from "undici";
import type { OutboundPolicy } from "../outbound.ts";
import { type Bitrix24ErrorBody, type NoAnswer, UpstreamError, upstreamErrorOf } from "./errors.ts";
import { encodeQuery } from "./query.ts";

/** Bitrix24's timing block of an answer (seconds since the epoch, durations in seconds). */
export interface Bitrix24Time {
  start: number;
  finish: number;
  duration: number;
  processing: number;
  date_start: string;
  date_finish: string;
  operating?: number;
  operating_reset_at?: number;
}

/** A successful answer: list methods add total, and next (the `start` of the next page) when there is one. */
export interface Bitrix24Response<T = unknown> {
  result: T;
  total?: number;
  next?: number;
  time?: Bitrix24Time;
}

/** A batch command: "method?query" as Bitrix24 takes it, or a method with parameters (encoded for you). */
export type BatchCommand = string | { method: string; params?: Record<string, unknown> };

/**
 * A batch answer, keyed by command id. Bitrix24 sends empty collections as [] and collections
 * of ids 0, 1, 2… as arrays; here they are always objects with string keys.
 */
export interface BatchResponse {
  result: Record<string, unknown>;
  result_error: Record<string, Bitrix24ErrorBody>;
  result_total: Record<string, number>;
  result_next: Record<string, number>;
  result_time: Record<string, unknown>;
  /** result_error as keygate errors (what each failed command means). */
  errors: Record<string, UpstreamError>;
  time?: Bitrix24Time;
}

export interface Bitrix24ClientOptions {
  /** The whole call, from connecting to the last byte of the answer; over it: BITRIX_UNAVAILABLE. */
  timeoutMs: number;
  /** Connections of the origin's pool (default 8); only the first client of an origin sets it. */
  connections?: number;
  /** Where connections may go: the gateway's policy, or INTERNAL for the built-in sandbox. */
  outbound: OutboundPolicy;
  /** OAuth: the URL is the portal's REST endpoint and each call carries the user's access token. */
  auth?: TokenAuth;
}

/**
 * A user's access token (src/oauth/bitrix24-tokens.ts). When Bitrix24 answers expired_token or
 * invalid_token, the client asks `renew` for another once and calls again.
 */
export interface TokenAuth {
  token(): Promise<string>;
  /** A token to use instead of `rejected` (refreshed, or refreshed by another node meanwhile); throws when there is none. */
  renew(rejected: string): Promise<string>;
}

/** Bitrix24's answers to an access token it no longer takes. */
const TOKEN_REJECTED = new Set(["expired_token", "invalid_token"]);

export interface Bitrix24Client {
  /** The webhook URL without its token (for logs and messages). */
  readonly redactedUrl: string;
  call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<Bitrix24Response<T>>;
  /** Up to 50 commands in one request (Bitrix24 refuses more); halt stops at the first failing command. */
  batch(cmd: Record<string, BatchCommand>, halt?: boolean): Promise<BatchResponse>;
}

const METHOD = /^[a-zA-Z][a-zA-Z0-9_]*(\.[a-zA-Z0-9_]+)*$/;
/** Bitrix24 answers are JSON of a page of 50 records at most; more than this is not an answer. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** Pools by outbound policy, then origin: a connection one policy refuses is never shared with another's clients. */
const pools = new Map<OutboundPolicy, Map<string, Pool>>();

function poolFor(outbound: OutboundPolicy, origin: string, connections: number): Pool {
  let byOrigin = pools.get(outbound);
  if (byOrigin === undefined) pools.set(outbound, (byOrigin = new Map()));
  let pool = byOrigin.get(origin);
  if (pool === undefined || pool.closed || pool.destroyed) {
    pool = new Pool(origin, { connections, keepAliveTimeout: 10_000, connect: outbound.connector({ timeout: 10_000 }), maxResponseSize: MAX_RESPONSE_BYTES });
    byOrigin.set(origin, pool);
  }
  return pool;
}

/** Closes every pool (in-flight requests finish first). */
export async function closeBitrix24Pools(): Promise<void> {
  const all = [...pools.values()].flatMap((byOrigin) => [...byOrigin.values()]);
  pools.clear();
  await Promise.all(all.map((p) => p.close().catch(() => {})));
}

/**
 * The webhook URL with its token (the path segment after /rest/<user id>/) replaced by ***.
 * Anything unparsable becomes "(invalid webhook URL)".
 */
export function redactWebhookUrl(webhookUrl: string): string {
  try {
    const url = new URL(webhookUrl);
    url.username = "";
    url.password = "";
    url.search = "";
    url.hash = "";
    url.pathname = url.pathname.replace(/(\/rest\/[^/]+\/)[^/]+/, "$1***");
    return url.toString();
  } catch {
    return "(invalid webhook URL)";
  }
}

/** A client for one webhook. Throws (synchronously) when the URL is not an http(s) URL. */
export function bitrix24Client(webhookUrl: string, options: Bitrix24ClientOptions): Bitrix24Client {
  let url: URL;
  try {
    url = new URL(webhookUrl);
  } catch {
    throw new Error("the Bitrix24 webhook URL is not a URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("the Bitrix24 webhook URL must be http(s)");
  const origin = url.origin;
  const base = url.pathname.endsWith("/") ? url.pathname : `${url.pathname}/`;
  const connections = options.connections ?? 8;
  const { timeoutMs, outbound, auth } = options;
  const redactedUrl = redactWebhookUrl(webhookUrl);

  /** A call, with the user's access token when there is one: renewed once when Bitrix24 no longer takes it. */
  async function post(method: string, params: Record<string, unknown>): Promise<{ status: number; body: unknown }> {
    if (auth === undefined) return send(method, params);
    const token = await auth.token();
    const answer = await send(method, { ...params, auth: token });
    const error = isObject(answer.body) ? answer.body["error"] : undefined;
    if (typeof error !== "string" || !TOKEN_REJECTED.has(error)) return answer;
    return send(method, { ...params, auth: await auth.renew(token) });
  }

  async function send(method: string, params: Record<string, unknown>): Promise<{ status: number; body: unknown }> {
    if (!METHOD.test(method)) throw new Error(`not a Bitrix24 method name: ${JSON.stringify(method)}`);
    let status: number;
    let text: string;
    try {
      const response = await poolFor(outbound, origin, connections).request({
        path: `${base}${method}.json`,
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json", "user-agent": "keygate" },
        body: JSON.stringify(params),
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      status = response.statusCode;
      text = await response.body.text();
    } catch (error) {
      throw networkError(method, redactedUrl, error);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status, body };
  }

  /** The answer's error, if it is one (Bitrix24 sends some errors with status 200). */
  function failure(method: string, status: number, body: unknown): UpstreamError | undefined {
    if (isObject(body) && body["error"] !== undefined && body["error"] !== null && body["error"] !== "") {
      return upstreamErrorOf(method, body as unknown as Bitrix24ErrorBody, status);
    }
    // Whatever else answered (a proxy's 502 page, a portal in maintenance, something that is not Bitrix24) looks unreachable to the caller.
    if (status < 200 || status >= 300 || !isObject(body) || !("result" in body)) return unanswered(method, { url: redactedUrl, reason: "not_rest", httpStatus: status });
    return undefined;
  }

  return {
    redactedUrl,

    async call<T>(method: string, params: Record<string, unknown> = {}): Promise<Bitrix24Response<T>> {
      const { status, body } = await post(method, params);
      const error = failure(method, status, body);
      if (error) throw error;
      const answer = body as Record<string, unknown>;
      const response: Bitrix24Response<T> = { result: answer["result"] as T };
      if (typeof answer["total"] === "number") response.total = answer["total"];
      if (typeof answer["next"] === "number") response.next = answer["next"];
      if (isObject(answer["time"])) response.time = answer["time"] as unknown as Bitrix24Time;
      return response;
    },

    async batch(cmd: Record<string, BatchCommand>, halt = false): Promise<BatchResponse> {
      const encoded: Record<string, string> = {};
      for (const [id, command] of Object.entries(cmd)) {
        if (typeof command === "string") encoded[id] = command;
        else {
          const query = encodeQuery(command.params ?? {});
          encoded[id] = query === "" ? command.method : `${command.method}?${query}`;
        }
      }
      const { status, body } = await post("batch", { halt: halt ? 1 : 0, cmd: encoded });
      const error = failure("batch", status, body);
      if (error) throw error;
      const answer = body as Record<string, unknown>;
      const inner = isObject(answer["result"]) ? answer["result"] : {};
      const result_error = keyed(inner["result_error"]) as Record<string, Bitrix24ErrorBody>;
      const errors: Record<string, UpstreamError> = {};
      for (const [id, e] of Object.entries(result_error)) {
        const command = cmd[id];
        const method = command === undefined ? "batch" : typeof command === "string" ? command.split("?")[0]! : command.method;
        errors[id] = upstreamErrorOf(method, isObject(e) ? (e as unknown as Bitrix24ErrorBody) : { error: String(e) });
      }
      const response: BatchResponse = {
        result: keyed(inner["result"]),
        result_error,
        result_total: keyed(inner["result_total"]) as Record<string, number>,
        result_next: keyed(inner["result_next"]) as Record<string, number>,
        result_time: keyed(inner["result_time"]),
        errors,
      };
      if (isObject(answer["time"])) response.time = answer["time"] as unknown as Bitrix24Time;
      return response;
    },
  };
}

/**
 * A form POST to Bitrix24's OAuth token server (https://oauth.bitrix.info/oauth/token/, or the
 * sandbox's): its status and JSON body (undefined when it is not JSON). Throws an UpstreamError
 * BITRIX_UNAVAILABLE when no answer came. The form holds secrets: no error names it.
 */
export async function postTokenForm(tokenUrl: string, form: Record<string, string>, options: { timeoutMs: number; outbound: OutboundPolicy }): Promise<{ status: number; body: unknown }> {
  const url = new URL(tokenUrl);
  const redacted = `${url.origin}${url.pathname}`;
  try {
    const response = await poolFor(options.outbound, url.origin, 2).request({
      path: `${url.pathname}${url.search}`,
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json", "user-agent": "keygate" },
      body: new URLSearchParams(form).toString(),
      signal: AbortSignal.timeout(options.timeoutMs),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    const text = await response.body.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: response.statusCode, body };
  } catch (error) {
    throw networkError("oauth.token", redacted, error);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** PHP's collections as objects with string keys: [] → {}, [a, b] → {"0": a, "1": b}. */
function keyed(value: unknown): Record<string, unknown> {
  if (Array.isArray(value)) return Object.fromEntries(value.map((v, i) => [String(i), v]));
  return isObject(value) ? value : {};
}

/**
 * No REST answer: the caller learns only that (a closed port, a timeout and an open port that is
 * not Bitrix24 look alike), the log learns why.
 */
function unanswered(method: string, noAnswer: NoAnswer): UpstreamError {
  return new UpstreamError("BITRIX_UNAVAILABLE", { method }, { message: "Bitrix24 could not be reached, or gave no REST answer.", noAnswer });
}

/** A failure without an answer: timeouts, refused or reset connections, DNS. The error's message is not kept (it could name the URL). */
function networkError(method: string, url: string, error: unknown): UpstreamError {
  const e = error as { name?: unknown; code?: unknown; cause?: { code?: unknown } };
  const code = typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : undefined;
  const timedOut = e?.name === "TimeoutError" || e?.name === "AbortError" || (code !== undefined && /TIMEOUT/i.test(code));
  const noAnswer: NoAnswer = { url, reason: timedOut ? "timeout" : "unreachable" };
  if (code !== undefined) noAnswer.code = code;
  return unanswered(method, noAnswer);
}
