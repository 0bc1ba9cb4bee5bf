import type { Profile } from "../core/profile/profile.ts";
import type { LimitState, Limiter } from "../limits/limiter.ts";
import { normalizeIp } from "../limits/ip.ts";
import type { Store } from "../store/store.ts";
import { admission } from "./admission.ts";
import { envelopeFor } from "./envelope.ts";

/**
 * keygate as a library (docs/verification.md, "In process"): the decision a request through the
 * gateway would get — the same verification, key cache and rate limits — for a service that
 * checks keys itself, in its own process, without HTTP. Keys are read from the store keygate's
 * management API writes; a change made elsewhere reaches this cache through `keyChanged` (or a
 * restart), so a process that manages keys through another keygate should listen on Redis
 * (src/gateway/invalidation.ts) and pass the changes on.
 */
export interface VerifierOptions {
  profile: Profile;
  store: Store;
  serverSecret: string;
  /** In memory by default; a RedisLimiter shares the limits with the gateways. Closed with the verifier. */
  limiter?: Limiter;
  /** Keys kept in the cache (default 100,000). */
  cacheSize?: number;
  /** The network size an IPv6 client is counted by in per-address limits (default 64). */
  ipv6Prefix?: number;
  now?: () => number;
}

export interface VerifyRequest {
  /** The key as the client sent it. */
  key: string;
  method: string;
  /** Path (and query string) of the request, matched against the profile's route table. */
  path: string;
  /** The client's address; without it a key with an IP allow-list is refused, and keyless limits are shared by all. */
  ip?: string;
}

export type VerifyOutcome =
  | {
      valid: true;
      keyId: string;
      keyType: string;
      portalId: string | null;
      ownerId: string;
      accessMode: string;
      /** The route of the profile that matched, and its path parameters. */
      route: string;
      params: Record<string, string>;
      limits: LimitState[];
    }
  | {
      valid: false;
      /** The error code a gateway would answer (docs/api.md), and its status. */
      code: string;
      status: number;
      message?: string;
      /** Seconds to wait, when a rate limit refused. */
      retryAfter?: number;
      limits: LimitState[];
    };

export interface Verifier {
  verify(request: VerifyRequest): Promise<VerifyOutcome>;
  /** A key changed in the store (revoked, scopes, expiry): the next verification reads it again. */
  keyChanged(key: { id: string; digest: string }): void;
  /** Keys in the cache now. */
  readonly cachedKeys: number;
  /** Writes what is left of the usage records and closes the limiter. */
  close(): Promise<void>;
}

const MAX_IPS = 10_000;

export function createVerifier(options: VerifierOptions): Verifier {
  const { def } = envelopeFor(options.profile);
  const a = admission({ ...options, now: options.now ?? Date.now });
  // Callers pass addresses as they come; normalising one (ipaddr.js) costs more than the rest of a cached decision.
  const ips = new Map<string, string>();
  const normalized = (ip: string | undefined): string => {
    if (ip === undefined) return "";
    let n = ips.get(ip);
    if (n === undefined) {
      if (ips.size >= MAX_IPS) ips.clear();
      n = normalizeIp(ip) ?? ip;
      ips.set(ip, n);
    }
    return n;
  };
  return {
    async verify(request) {
      const { verification: v, spent } = await a.admit({ method: request.method.toUpperCase(), url: request.path, headers: { "x-api-key": request.key }, clientIp: normalized(request.ip) });
      if (!spent.admitted) {
        const code = spent.code!;
        return { valid: false, code, status: def(code).status, retryAfter: spent.retryAfter, limits: spent.states };
      }
      if (v.refusal) {
        const { code, message } = v.refusal;
        return { valid: false, code, status: def(code).status, message, limits: spent.states };
      }
      const record = v.key!.record;
      return {
        valid: true,
        keyId: record.id,
        keyType: record.type,
        portalId: record.portalId,
        ownerId: record.ownerId,
        accessMode: record.accessMode,
        route: v.route!.path,
        params: v.params ?? {},
        limits: spent.states,
      };
    },
    keyChanged: (key) => a.cache.invalidate(key),
    get cachedKeys() {
      return a.cache.size;
    },
    close: () => a.close(),
  };
}
