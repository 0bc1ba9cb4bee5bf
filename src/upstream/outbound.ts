import dns, { type LookupAddress, type LookupOptions } from "node:dns";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { buildConnector } from "undici";

/**
 * Where keygate may send requests (docs/upstreams.md, "Outbound requests"): every URL a portal
 * gives keygate to call (a Bitrix24 webhook, an HTTP upstream, and any later one) must point to
 * a public unicast address. Loopback, private, link-local (cloud metadata), carrier-grade NAT,
 * multicast, broadcast, unspecified and reserved addresses are refused, unless the operator
 * allows the host or its range (`keygate serve --allow-upstream`). The rule is checked twice:
 * when the URL is set (`problem`, so the admin hears of it at once) and on every connection
 * (`connector`, on the address actually connected to, so a name that resolves elsewhere later,
 * DNS rebinding, is refused too).
 *
 *     const outbound = outboundPolicy(["10.0.0.0/8", "b24.internal"]);
 *     await outbound.problem(new URL("http://127.0.0.1/"));   // "must point to a public address …"
 *     new Pool(origin, { connect: outbound.connector({ timeout: 5_000 }) });
 */
export interface OutboundPolicy {
  /** Whether keygate may connect to `host` (the URL's host name or IP) at `address`. */
  allows(host: string, address: string): boolean;
  /** Why keygate will not call this URL (a sentence without the field's name), or undefined when it may. */
  problem(url: URL): Promise<string | undefined>;
  /** An undici connector that refuses a disallowed address before connecting to it. */
  connector(options?: buildConnector.BuildOptions): buildConnector.connector;
}

/** The error a refused connection fails with (logged, never shown to API callers). */
export class OutboundRefused extends Error {
  readonly code = "EOUTBOUNDREFUSED";
  constructor(host: string, address: string) {
    super(`keygate does not connect to ${host} at ${address}: not a public address, and --allow-upstream does not allow it`);
    this.name = "OutboundRefused";
  }
}

/** How long a URL's host name may take to resolve when it is set; past that the connection's check decides. */
const RESOLVE_TIMEOUT_MS = 2_000;

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * The operator's allowances: host names, IP addresses and CIDR ranges (IPv4 or IPv6). Throws an
 * Error naming the first entry that is none of these.
 */
export function outboundPolicy(allow: readonly string[] = []): OutboundPolicy {
  const hosts = new Set<string>();
  const ranges: Range[] = [];
  for (const raw of allow) {
    const entry = raw.trim().toLowerCase();
    const bare = unbracket(entry);
    if (entry.includes("/")) {
      try {
        ranges.push(ipaddr.parseCIDR(entry));
      } catch {
        throw new Error(`"${raw}" is not a CIDR range such as 10.0.0.0/8 or fd00::/8`);
      }
    } else if (ipaddr.isValid(bare)) {
      const ip = ipaddr.parse(bare);
      ranges.push([ip, ip.kind() === "ipv4" ? 32 : 128]);
    } else if (/^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/.test(entry)) {
      hosts.add(entry);
    } else {
      throw new Error(`"${raw}" is not a host name, an IP address or a CIDR range`);
    }
  }

  const allows = (host: string, address: string): boolean => {
    if (hosts.has(unbracket(host))) return true;
    if (!ipaddr.isValid(address)) return false;
    // IPv4-mapped IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is.
    const ip = ipaddr.process(address);
    if (ranges.some(([base, bits]) => base.kind() === ip.kind() && ip.match(base, bits))) return true;
    return ip.range() === "unicast";
  };

  // Wraps the system resolver (what net.connect would use) and refuses when any address it gives is not allowed.
  const lookup = (hostname: string, options: LookupOptions, callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void): void => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const refused = addresses.find((a) => !allows(hostname, a.address));
      if (refused) return callback(new OutboundRefused(hostname, refused.address), []);
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  return {
    allows,

    async problem(url) {
      if (url.username !== "" || url.password !== "") return "must not carry a user name or password";
      const host = unbracket(url.hostname);
      if (hosts.has(host)) return undefined;
      let addresses: string[];
      // RFC 6761: localhost and every name under it is loopback, whatever a resolver says.
      if (host === "localhost" || host.endsWith(".localhost")) addresses = ["127.0.0.1"];
      else if (isIP(host) !== 0) addresses = [host];
      else {
        // A name that does not resolve (yet) is accepted: nothing can be reached through it, and each connection is checked.
        const found = await resolve(host);
        if (found === undefined) return undefined;
        addresses = found;
      }
      if (addresses.every((address) => allows(host, address))) return undefined;
      return "must point to a public address: keygate does not call loopback, private, link-local, multicast or reserved addresses unless the operator allows the host (keygate serve --allow-upstream)";
    },

    connector(options = {}) {
      const connect = buildConnector({ ...options, lookup } as buildConnector.BuildOptions);
      return (target, callback) => {
        // net.connect resolves no IP literal, so the lookup above never sees one: it is checked here.
        const host = unbracket(target.hostname);
        if (isIP(host) !== 0 && !allows(host, host)) {
          process.nextTick(callback, new OutboundRefused(host, host), null);
          return;
        }
        connect(target, callback);
      };
    },
  };
}

/**
 * keygate's own address (the built-in sandbox): internal, so not checked. Never for a URL a portal
 * gives. Over HTTPS (`--tls-cert`) its certificate names the public host, not the listening
 * address keygate calls itself on, so it is not checked either: the peer is keygate itself.
 */
export const INTERNAL: OutboundPolicy = {
  allows: () => true,
  problem: () => Promise.resolve(undefined),
  connector: (options = {}) => buildConnector({ ...options, rejectUnauthorized: false }),
};

function unbracket(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

async function resolve(host: string): Promise<string[] | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((done) => (timer = setTimeout(() => done(undefined), RESOLVE_TIMEOUT_MS).unref()));
  try {
    const found = await Promise.race([dns.promises.lookup(host, { all: true }), timeout]);
    return found?.map((a) => a.address);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}
