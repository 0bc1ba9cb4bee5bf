import type { LimitsSpec, TierSpec } from "../core/profile/spec.ts";
import { clientSubject } from "./ip.ts";
import type { Limit, LimitState } from "./limiter.ts";

/**
 * Which limits apply to a request (seed 003): the platform limit per source, the key's own limit,
 * and the portal's shared budget for requests forwarded upstream. docs/limits.md has the rules.
 */
export const DEFAULTS = { perMinute: 300, failedAuthPerMinute: 20 } as const;
const MINUTE = 60_000;
const SECOND = 1_000;
const DAY = 86_400_000;

export interface LimitPolicy {
  /** Limits for a request made with a valid key. */
  forKey(key: { id: string; rateLimit: number | null; tier: string | null; portalId: string | null }, portalRps: number | null, upstream: boolean): Limit[];
  /**
   * A key's limits on a route with its own per-key limit (the profile route's perMinute): that
   * limit, counted per key and route, in place of the key's per-minute platform (or tier) limit;
   * its other limits stay.
   */
  forRoute(key: { id: string }, route: { method: string; path: string }, perMinute: number, keyLimits: readonly Limit[]): Limit[];
  /** The platform limit of a request without a valid key: its client IP (an IPv6 client's network, see clientSubject) is the source. */
  forAddress(ip: string): Limit[];
  /** Failed authentication attempts from an address, or an IPv6 client's network (spent only when authentication fails). */
  failedAuth(ip: string): Limit;
  tier(id: string | null): TierSpec | undefined;
  portalLimitCode: string;
}

/** `ipv6Prefix`: the network size an IPv6 client is counted by (default 64; 128: each address). */
export function limitPolicy(spec: LimitsSpec | undefined, options: { ipv6Prefix?: number } = {}): LimitPolicy {
  const { ipv6Prefix } = options;
  const perMinute = spec?.perMinute ?? DEFAULTS.perMinute;
  const tiers = new Map((spec?.tiers ?? []).map((t) => [t.id, t]));
  const tierOf = (id: string | null) => tiers.get(id ?? spec?.defaultTier ?? "");
  // A portal budget applies where the portal sets one, or the profile gives a default (VibeCode: 10/s).
  const portalDefault = spec?.portalRequestsPerSecond ?? null;
  const failed = spec?.failedAuthPerMinute ?? DEFAULTS.failedAuthPerMinute;
  return {
    portalLimitCode: spec?.portalLimitCode ?? "RATE_LIMITED",
    tier: tierOf,
    forKey(key, portalRps, upstream) {
      // The default tier is the API's plan, for portals' keys: a management key (no portal) has the platform limit unless given a tier.
      const tier = key.tier === null && key.portalId === null ? undefined : tierOf(key.tier);
      const limits: Limit[] = [{ kind: "platform", bucket: `platform:key:${key.id}`, limit: tier?.perMinute ?? perMinute, windowMs: MINUTE, policy: tier ? `tier-${tier.id}` : "platform" }];
      if (tier?.perDay !== undefined) limits.push({ kind: "platform", bucket: `day:key:${key.id}`, limit: tier.perDay, windowMs: DAY, policy: `tier-${tier.id}-day` });
      if (tier?.perSecond !== undefined) limits.push({ kind: "platform", bucket: `burst:key:${key.id}`, limit: tier.perSecond, windowMs: SECOND, policy: `tier-${tier.id}-burst` });
      if (key.rateLimit !== null) limits.push({ kind: "key", bucket: `key:${key.id}`, limit: key.rateLimit, windowMs: SECOND, policy: "key" });
      const portalLimit = portalRps ?? portalDefault;
      if (upstream && key.portalId !== null && portalLimit !== null) {
        limits.push({ kind: "portal", bucket: `portal:${key.portalId}`, limit: portalLimit, windowMs: SECOND, policy: "portal" });
      }
      return limits;
    },
    forRoute(key, route, perMinute, keyLimits) {
      const name = `${route.method} ${route.path}`;
      const own: Limit = { kind: "platform", bucket: `route:${name}:key:${key.id}`, limit: perMinute, windowMs: MINUTE, policy: name };
      return [own, ...keyLimits.filter((l) => !(l.kind === "platform" && l.windowMs === MINUTE))];
    },
    forAddress(ip) {
      return [{ kind: "platform", bucket: `platform:ip:${clientSubject(ip, ipv6Prefix)}`, limit: perMinute, windowMs: MINUTE, policy: "platform" }];
    },
    failedAuth(ip) {
      return { kind: "auth", bucket: `auth:ip:${clientSubject(ip, ipv6Prefix)}`, limit: failed, windowMs: MINUTE, policy: "failed-auth" };
    },
  };
}

/**
 * The limit a client should watch: the one with the fewest requests left (then the smallest). On a
 * refused request every limit shows nothing left, so it is the one that refused (the longest
 * wait): the headers then agree with Retry-After instead of naming a limit that had room.
 */
export function tightest(states: readonly LimitState[]): LimitState | undefined {
  const refused = refusing(states);
  if (refused) return refused;
  let best: LimitState | undefined;
  for (const s of states) {
    if (!best || s.remaining < best.remaining || (s.remaining === best.remaining && s.limit.limit < best.limit.limit)) best = s;
  }
  return best;
}

/** RateLimit-Policy strings by the limits they describe: a key's limits are the same objects request after request. */
const policies = new WeakMap<Limit, { limits: Limit[]; header: string }>();

function policyHeader(states: readonly LimitState[]): string {
  const first = states[0]!.limit;
  const cached = policies.get(first);
  if (cached && cached.limits.length === states.length && cached.limits.every((l, i) => l === states[i]!.limit)) return cached.header;
  const header = states.map((s) => `"${s.limit.policy}";q=${s.limit.limit};w=${Math.round(s.limit.windowMs / 1000)}`).join(", ");
  policies.set(first, { limits: states.map((s) => s.limit), header });
  return header;
}

/** X-RateLimit-* for the tightest limit, and the IETF RateLimit / RateLimit-Policy fields for all. */
export function rateLimitHeaders(states: readonly LimitState[]): Record<string, string> {
  const t = tightest(states);
  if (!t) return {};
  const reset = Math.max(0, Math.ceil(t.resetMs / 1000));
  return {
    "x-ratelimit-limit": String(t.limit.limit),
    "x-ratelimit-remaining": String(t.remaining),
    "x-ratelimit-reset": String(reset),
    "ratelimit-policy": policyHeader(states),
    ratelimit: `"${t.limit.policy}";r=${t.remaining};t=${reset}`,
  };
}

/** The refusing limit of a refused request: the one whose wait is longest. */
export function refusing(states: readonly LimitState[]): LimitState | undefined {
  let worst: LimitState | undefined;
  for (const s of states) if (s.retryAfterMs > 0 && (!worst || s.retryAfterMs > worst.retryAfterMs)) worst = s;
  return worst;
}
