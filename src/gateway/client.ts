import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import proxyAddr from "@fastify/proxy-addr";
import { normalizeIp } from "../limits/ip.ts";

/**
 * Where a request came from, by Fastify's trustProxy rules (the same library, the same rules), so
 * that requests verified before Fastify sees them (src/gateway/admission.ts) and the routes
 * Fastify serves agree: behind a trusted proxy, the address, protocol and host it forwarded;
 * otherwise the connection's own.
 */
export interface ClientFacts {
  /** The client's address, normalised (src/limits/ip.ts). */
  ip(req: IncomingMessage): string;
  protocol(req: IncomingMessage): string;
  host(req: IncomingMessage): string;
}

/** The last entry of a header a chain of proxies appended to. */
const last = (value: string): string => {
  const i = value.lastIndexOf(",");
  return (i < 0 ? value : value.slice(i + 1)).trim();
};

export function clientFacts(trustProxy: readonly string[] | undefined): ClientFacts {
  const trust = trustProxy && trustProxy.length > 0 ? proxyAddr.compile([...trustProxy]) : undefined;
  // Without trusted proxies the address is the socket's: normalised once per connection.
  const socketIps = new WeakMap<object, string>();
  const trusted = (req: IncomingMessage): boolean => trust !== undefined && req.socket.remoteAddress !== undefined && trust(req.socket.remoteAddress, 0);
  return {
    ip(req) {
      if (trust) {
        const forwarded = proxyAddr(req, trust);
        return normalizeIp(forwarded) ?? forwarded;
      }
      let ip = socketIps.get(req.socket);
      if (ip === undefined) {
        const remote = req.socket.remoteAddress ?? "";
        ip = normalizeIp(remote) ?? remote;
        socketIps.set(req.socket, ip);
      }
      return ip;
    },
    protocol(req) {
      const proto = req.headers["x-forwarded-proto"];
      if (typeof proto === "string" && proto !== "" && trusted(req)) return last(proto);
      return (req.socket as TLSSocket).encrypted ? "https" : "http";
    },
    host(req) {
      const host = req.headers["x-forwarded-host"];
      if (typeof host === "string" && host !== "" && trusted(req)) return last(host);
      return req.headers.host ?? "";
    },
  };
}
