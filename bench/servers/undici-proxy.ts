/**
 * The baseline of the proxy benchmark: a bare reverse proxy, a node:http server that forwards
 * every request to one upstream with undici's dispatcher `stream` API, the way keygate forwards
 * (src/upstream/http/proxy.ts: one Agent, the same pool settings), and checks nothing: no key,
 * no limits, no identity headers, no request accounting, no logger. It drops the hop-by-hop
 * headers each way and the Host header, as any proxy must, and nothing else.
 *
 *     node bench/servers/undici-proxy.ts <upstream origin>     # http://127.0.0.1:<port>
 *
 * Prints "listening http://127.0.0.1:<port>" once ready; SIGTERM closes it.
 */
import { type IncomingHttpHeaders, type OutgoingHttpHeaders, createServer } from "node:http";
import { Agent } from "undici";
import { UPSTREAM_DEFAULTS } from "../../src/upstream/http/proxy.ts";

const origin = process.argv[2];
if (!origin) {
  console.error("usage: node bench/servers/undici-proxy.ts <upstream origin>");
  process.exit(2);
}

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
