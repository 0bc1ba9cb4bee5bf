/**
 * The baseline of the proxy benchmark: a bare reverse proxy, a node:http server that forwards
 * every request to one upstream with undici's dispatcher `stream` API, the way keygate forwards
 * (src/upstream/http/proxy.ts: one Agent, the same pool settings), and checks nothing: no key,
 * no limits, no identity headers, no request accounting, no logger. It drops the hop-by-hop
 * headers each way and the Host header, as any proxy must, and nothing else.
 *
 *     node bench/servers/undici-proxy.ts <upstream origin> [--identity]    # http://127.0.0.1:<port>
 *
 * With --identity it also adds what keygate's forwarding contract adds to every request
 * (docs/upstreams.md): a fresh X-Request-Id, X-Forwarded-For/-Proto/-Host, and X-Keygate-Identity,
 * one assertion signed at start (src/upstream/http/identity.ts) and sent on every request, as
 * keygate sends a key's kept assertion: the cost of that contract alone, on both sides of the
 * wire, without any verification, limits or accounting.
 *
 * Prints "listening http://127.0.0.1:<port>" once ready; SIGTERM closes it.
 */
import { randomUUID } from "node:crypto";
import { type IncomingHttpHeaders, type OutgoingHttpHeaders, createServer } from "node:http";
import { Agent } from "undici";
import { IDENTITY_HEADER, identitySigner } from "../../src/upstream/http/identity.ts";
import { UPSTREAM_DEFAULTS } from "../../src/upstream/http/proxy.ts";

const origin = process.argv[2];
const withIdentity = process.argv[3] === "--identity";
if (!origin || (process.argv[3] !== undefined && !withIdentity)) {
  console.error("usage: node bench/servers/undici-proxy.ts <upstream origin> [--identity]");
  process.exit(2);
}

const CLIENT_IP = "127.0.0.1";
const ASSERTION = identitySigner({ serverSecret: "bench-server-secret", issuer: "keygate" }).sign(
  {
    aud: origin,
    sub: "key_0d6f3c2a9b8e4f71a2c5d9e0b1f4a7c3",
    key_type: "api",
    portal: "portal_5e2b8d1c7a4f4e0b9c3d6a8f2e1b7c40",
    owner: "user_9a1c4e7b2d5f4a8c0e3b6d9f1a2c5e8b",
    scopes: ["kb:read"],
    access_mode: "READWRITE",
  },
  Math.floor(Date.now() / 1000),
);

const HOP_BY_HOP = new Set(["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection", "proxy-authenticate", "proxy-authorization", "host"]);
const agent = new Agent({
  connect: { timeout: UPSTREAM_DEFAULTS.connectTimeoutMs },
  headersTimeout: UPSTREAM_DEFAULTS.headersTimeoutMs,
  bodyTimeout: UPSTREAM_DEFAULTS.bodyTimeoutMs,
  keepAliveTimeout: UPSTREAM_DEFAULTS.keepAliveTimeoutMs,
  connections: UPSTREAM_DEFAULTS.connectionsPerOrigin,
});

function requestHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  if (withIdentity) {
    out[IDENTITY_HEADER] = ASSERTION;
    out["x-request-id"] = `req_${randomUUID()}`;
    out["x-forwarded-for"] = CLIENT_IP;
    out["x-forwarded-proto"] = "http";
    if (headers.host) out["x-forwarded-host"] = headers.host;
  }
  return out;
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

const server = createServer((req, res) => {
  const hasBody = req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
  agent
    .stream({ origin, path: req.url!, method: req.method as "GET", headers: requestHeaders(req.headers), body: hasBody ? req : null }, ({ statusCode, headers }) => {
      res.writeHead(statusCode, responseHeaders(headers as Record<string, string | string[] | undefined>));
      return res;
    })
    .catch((e: Error) => {
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end(`upstream: ${e.message}\n`);
      else res.destroy();
    });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`listening http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`);
});
const close = () => {
  server.closeAllConnections();
  server.close(() => void agent.close().then(() => process.exit(0)));
};
process.once("SIGTERM", close);
process.once("SIGINT", close);
