import { routeFacts } from "./usage.ts";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { Type as T } from "@sinclair/typebox";
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from "fastify";
import { rateLimitHeaders } from "../limits/policy.ts";
import type { Store } from "../store/store.ts";
import { IDENTITY_HEADER } from "../upstream/http/identity.ts";
import { targetProblem } from "../upstream/http/path.ts";
import type { Admission, Admitted } from "./admission.ts";
import type { ClientFacts } from "./client.ts";
import { originAllowed, wwwAuthenticate } from "./conventions.ts";
import { type Envelope, type ErrorBody, errorBody } from "./envelope.ts";
import type { IdentityAssertions } from "./identity.ts";
import type { App, GatewayContext } from "./server.ts";

/**
 * Forward-auth (docs/upstreams.md, "Forward-auth"): keygate as the auth service of a reverse proxy
 * the team already runs — nginx `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`. The
 * proxy asks `/v1/forward-auth` (any method) about each request it received, describing it in
 * headers; keygate admits that original request exactly as it would admit it itself (the same
 * admission: src/gateway/admission.ts) and answers 200 with X-Keygate-Identity and the rate-limit
 * headers for the proxy to copy, or the refusal in the profile's envelope.
 *
 * nginx's auth_request passes on only a 401 or a 403 (any other status becomes its own 500) and
 * drops the body, so a request that says it comes from nginx (X-Original-URI) gets any other
 * refusal as a 403, and every refusal with the real status in X-Keygate-Status and the envelope in
 * X-Keygate-Error, for the configuration in docs/forward-auth/nginx.conf to answer with.
 */

export const FORWARD_AUTH_PATH = "/v1/forward-auth";

/** An answer to the proxy. */
interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface ForwardAuth {
  /** Whether a request target is forward-auth's. */
  handles(url: string): boolean;
  /** Checks the original request a proxy describes, and writes the answer (no framework). */
  serve(req: IncomingMessage, res: ServerResponse, id: string): void;
  /** The same check, for Fastify's route (requests injected without a socket). */
  check(req: IncomingMessage, id: string): Answer | Promise<Answer>;
}

export interface ForwardAuthOptions {
  admission: Admission;
  envelope: Envelope;
  client: ClientFacts;
  assertions: IdentityAssertions;
  store: Store;
  log: FastifyBaseLogger;
}

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name];
  return typeof value === "string" && value !== "" ? value : undefined;
};

/** Header values are Latin-1: anything else in an envelope travels \u-escaped (JSON reads it back). */
const latin1 = (json: string): string => json.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

export function forwardAuth(options: ForwardAuthOptions): ForwardAuth {
  const { admission, envelope, client, assertions, store, log } = options;
  const { cache, usage } = admission;

  const refusal = (req: IncomingMessage, id: string, code: string, extra: Partial<ErrorBody>, headers: Record<string, string>, nginx: boolean): Answer => {
    const status = envelope.def(code).status;
    const body = JSON.stringify(envelope.error(errorBody(envelope, code, extra), id));
    headers["content-type"] = "application/json; charset=utf-8";
    if (status === 401) headers["www-authenticate"] = wwwAuthenticate(code, req);
    if (code === "METHOD_NOT_ALLOWED") headers.allow = (extra.details?.allow as string[]).join(", ");
    if (!nginx) return { status, headers, body };
    // nginx reads no body of auth_request's answer (and keeps the connection only when there is
    // none): the status and the envelope travel in headers.
    headers["x-keygate-status"] = String(status);
    headers["x-keygate-error"] = latin1(body);
    delete headers["content-type"];
    return { status: status === 401 ? 401 : 403, headers, body: "" };
  };

  const answer = (req: IncomingMessage, id: string, admitted: Admitted, original: { method: string; uri: string }, nginx: boolean, started: number): Answer | Promise<Answer> => {
    const { verification: v, spent } = admitted;
    const headers: Record<string, string> = { "x-request-id": id, "cache-control": "no-store", ...rateLimitHeaders(spent.states) };
    const done = (a: Answer): Answer => {
      if (v.key) usage.record({ keyId: v.key.record.id, ip: v.clientIp, method: original.method, target: original.uri, status: a.headers["x-keygate-status"] ? Number(a.headers["x-keygate-status"]) : a.status, latencyMs: performance.now() - started, ...routeFacts(v.route, v.refusal) });
      return a;
    };
    if (!spent.admitted) {
      headers["retry-after"] = String(spent.retryAfter);
      return done(refusal(req, id, spent.code!, { retryAfter: spent.retryAfter, details: spent.details }, headers, nginx));
    }
    const allowed = (): Answer => {
      if (v.refusal) {
        const { code, ...extra } = v.refusal;
        return done(refusal(req, id, code, extra, headers, nginx));
      }
      headers[IDENTITY_HEADER] = assertions(v.key!, `${client.protocol(req)}://${client.host(req)}`);
      // No body: a proxy reads none of an admission, and nginx (auth_request) and Caddy reuse the
      // connection to keygate only after an answer without one.
      return done({ status: 200, headers, body: "" });
    };
    // A browser's page: its origin must be one its key's portal lists, as for a request to keygate itself (docs/api.md, "CORS").
    const origin = req.headers.origin;
    if (origin === undefined || v.key === undefined) return allowed();
    const refuseOrigin = (ok: boolean): Answer => {
      if (!ok) v.refusal = { code: "ORIGIN_NOT_ALLOWED", details: { origin } };
      return allowed();
    };
    const ok = originAllowed(store, cache, v.key, origin);
    return ok instanceof Promise ? ok.then(refuseOrigin) : refuseOrigin(ok);
  };

  const check = (req: IncomingMessage, id: string): Answer | Promise<Answer> => {
    const started = performance.now();
    const h = req.headers;
    const nginx = header(h, "x-original-uri") !== undefined;
    const method = header(h, "x-original-method") ?? header(h, "x-forwarded-method");
    const uri = header(h, "x-original-uri") ?? header(h, "x-forwarded-uri");
    const headers: Record<string, string> = { "x-request-id": id, "cache-control": "no-store" };
    if (method === undefined || uri === undefined) {
      const missing = method === undefined ? "X-Original-Method or X-Forwarded-Method" : "X-Original-URI or X-Forwarded-Uri";
      return refusal(req, id, "VALIDATION_ERROR", { message: `forward-auth needs the original request: ${missing} is missing`, param: missing.split(" ")[0] }, headers, nginx);
    }
    if (!/^[A-Za-z]{1,16}$/.test(method)) return refusal(req, id, "VALIDATION_ERROR", { message: "the original method is not an HTTP method", param: nginx ? "X-Original-Method" : "X-Forwarded-Method" }, headers, nginx);
    const problem = uri.startsWith("/") ? targetProblem(uri) : "it must start with /";
    if (problem !== undefined) return refusal(req, id, "VALIDATION_ERROR", { message: `keygate does not admit this path: ${problem}.`, param: nginx ? "X-Original-URI" : "X-Forwarded-Uri" }, headers, nginx);
    const original = { method: method.toUpperCase(), uri };
    // A CORS preflight carries no key: never verified nor counted, as at keygate's own door; the upstream answers it.
    if (original.method === "OPTIONS" && h.origin !== undefined && h["access-control-request-method"] !== undefined) return { status: 200, headers, body: "" };
    // The proxy passes the client's headers on: the key is where the client put it, the address the trusted-proxy rules give.
    const admitted = admission.admit({ method: original.method, url: uri, headers: h, clientIp: client.ip(req) });
    return admitted instanceof Promise ? admitted.then((a) => answer(req, id, a, original, nginx, started)) : answer(req, id, admitted, original, nginx, started);
  };

  const write = (res: ServerResponse, a: Answer): void => {
    a.headers["content-length"] = String(Buffer.byteLength(a.body));
    res.writeHead(a.status, a.headers);
    res.end(a.body);
  };

  return {
    handles(url) {
      return url.startsWith(FORWARD_AUTH_PATH) && (url.length === FORWARD_AUTH_PATH.length || url.charCodeAt(FORWARD_AUTH_PATH.length) === 63);
    },
    serve(req, res, id) {
      const failed = (e: unknown) => {
        log.error({ err: e, reqId: id }, "forward-auth failed");
        write(res, refusal(req, id, "INTERNAL_ERROR", {}, { "x-request-id": id }, header(req.headers, "x-original-uri") !== undefined));
      };
      // The original request's body stays with the proxy; anything sent here is not read.
      req.resume();
      try {
        const a = check(req, id);
        if (a instanceof Promise) a.then((x) => write(res, x), failed);
        else write(res, a);
      } catch (e) {
        failed(e);
      }
    },
    check,
  };
}

/**
 * The route of forward-auth, for the OpenAPI document and for requests injected without a socket
 * (a request on a socket is answered as it arrives: src/gateway/server.ts). Documented under GET;
 * every other method is answered alike.
 */
export function forwardAuthRoutes(app: App, ctx: GatewayContext, fa: ForwardAuth): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const a = await fa.check(request.raw, request.id);
    return reply.code(a.status).headers(a.headers).send(a.body);
  };
  app.get(
    FORWARD_AUTH_PATH,
    {
      schema: {
        operationId: "forwardAuth",
        tags: ["verify"],
        summary:
          "Forward-auth, for nginx auth_request, Caddy forward_auth and Traefik ForwardAuth (any method): admits the original request described by X-Original-Method and X-Original-URI, or X-Forwarded-Method, X-Forwarded-Uri and X-Forwarded-Host, with the client's key, and counts it",
        response: {
          ...ctx.responses({ data: T.Null(), codes: ["ROUTE_NOT_FOUND", "METHOD_NOT_ALLOWED", "ORIGIN_NOT_ALLOWED"] }),
          200: T.Null({ description: "Admitted, with no body: X-Keygate-Identity, X-Request-Id and the rate-limit headers are for the proxy to pass on" }),
        },
      },
    },
    handler,
  );
  app.route({ method: ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"], url: FORWARD_AUTH_PATH, schema: { hide: true }, handler });
}
