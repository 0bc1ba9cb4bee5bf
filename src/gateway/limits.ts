import type { FastifyReply } from "fastify";
import type { Route } from "../core/profile/profile.ts";
import type { Limit, LimitState, Limiter, Outcome } from "../limits/limiter.ts";
import { type LimitPolicy, rateLimitHeaders, refusing } from "../limits/policy.ts";
import type { Store } from "../store/store.ts";
import type { Verification } from "./auth.ts";
import type { CachedKey, KeyCache } from "./key-cache.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The limits this request was counted in, for the X-RateLimit-* headers. */
    rateLimit?: LimitState[];
  }
}

export interface Spent {
  admitted: boolean;
  states: LimitState[];
  /** When refused: the code (RATE_LIMITED, or the profile's portal code) and seconds to wait. */
  code?: string;
  retryAfter?: number;
  /** When the portal's budget refused with the upstream's own code (VibeCode: BITRIX_UNAVAILABLE): {reason: "portal_budget"}, keygate's refusal, not Bitrix24's. */
  details?: { reason: "portal_budget" };
}

/** A limit refused a request after it arrived: the portal's budget, spent when keygate calls the portal (spendPortal). */
export class LimitRefusal extends Error {
  readonly code: string;
  /** Seconds until a request would be admitted. */
  readonly retryAfter: number;
  readonly details: Spent["details"];
  constructor(spent: Spent) {
    super(`refused by a rate limit: ${spent.code}`);
    this.name = "LimitRefusal";
    this.code = spent.code!;
    this.retryAfter = spent.retryAfter!;
    this.details = spent.details;
  }
}

export interface RateLimitingOptions {
  policy: LimitPolicy;
  limiter: Limiter;
  store: Store;
  cache: KeyCache;
  /**
   * Whether an admitted request on a route forwarded upstream spends the portal's budget as it
   * arrives (the default: a request streamed upstream cannot be read first). When not, the
   * handler answering it spends the budget with spendPortal once it is about to call the
   * portal, so a request refused for its own content spends none (VibeCode's data plane).
   */
  portalOnArrival?: (v: Verification) => boolean;
}

/**
 * Spends the limits of a verified request (docs/limits.md): a request with a recognised key is
 * counted against its key's limits (nothing is spent when verification refused it: cost 0 only
 * reads the state for the headers); a request without one against its address, and a failed
 * authentication also against the address's failed-attempt budget.
 */
export function rateLimiting(options: RateLimitingOptions) {
  const { policy, limiter, store, cache } = options;
  const portalOnArrival = options.portalOnArrival ?? (() => true);

  /** Every limit of the key; on a forwarded route with the portal's budget (its request limit is read from the store). */
  const keyLimits = (key: CachedKey, upstream: boolean): Limit[] | Promise<Limit[]> => {
    const name = upstream ? "limits upstream" : "limits";
    const hit = cache.peek<Limit[]>(key, name);
    if (hit) return hit;
    const record = key.record;
    if (!upstream || record.portalId === null) return cache.deriveNow(key, name, () => policy.forKey(record, null, upstream));
    const portalId = record.portalId;
    return cache.derive(key, name, async () => policy.forKey(record, (await store.getPortal(portalId))?.requestLimit ?? null, upstream));
  };
  /** `limits` (named `name` in the key cache) as they are on the route: with its own per-key limit when it has one (policy.forRoute), kept with the key per route. */
  const withRoute = (key: CachedKey, route: Route | undefined, name: string, limits: Limit[] | Promise<Limit[]>): Limit[] | Promise<Limit[]> => {
    const perMinute = route?.spec.perMinute;
    if (route === undefined || perMinute === undefined) return limits;
    const routeName = `${name} + ${route.method} ${route.path}`;
    const hit = cache.peek<Limit[]>(key, routeName);
    if (hit) return hit;
    const add = (all: Limit[]) => cache.deriveNow(key, routeName, () => policy.forRoute(key.record, route, perMinute, all));
    return limits instanceof Promise ? limits.then(add) : add(limits);
  };
  /** A part of the key's upstream limits (the same Limit objects, so RateLimit-Policy strings stay cached), kept with the key. */
  const upstreamPart = (key: CachedKey, portal: boolean): Limit[] | Promise<Limit[]> => {
    const name = portal ? "limits: the portal's" : "limits: upstream before the portal";
    const part = (all: Limit[]) => cache.deriveNow(key, name, () => all.filter((l) => (l.kind === "portal") === portal));
    const hit = cache.peek<Limit[]>(key, name);
    if (hit) return hit;
    const all = keyLimits(key, true);
    return all instanceof Promise ? all.then(part) : part(all);
  };
  const decideSpent = (outcome: Outcome, cost: number): Spent => {
    // Rate limits are the last step of verification: a request it refused keeps its own code
    // (403, 401), even when the key is over a limit (one just lowered); only the headers tell.
    if (outcome.admitted || cost === 0) return { admitted: true, states: outcome.states };
    const worst = refusing(outcome.states) ?? outcome.states[0]!;
    const code = worst.limit.kind === "portal" ? policy.portalLimitCode : "RATE_LIMITED";
    return {
      admitted: false,
      states: outcome.states,
      code,
      // Whole seconds, rounded up: a client that waits them is admitted.
      retryAfter: Math.max(1, Math.ceil(worst.retryAfterMs / 1000)),
      // A portal code of the upstream's own (VibeCode's BITRIX_UNAVAILABLE) says whose refusal it is.
      ...(code !== "RATE_LIMITED" && { details: { reason: "portal_budget" as const } }),
    };
  };
  const consume = (limits: Limit[], cost: number): Spent | Promise<Spent> => {
    if (limits.length === 0) return { admitted: true, states: [] };
    if (limiter.consumeNow) return decideSpent(limiter.consumeNow(limits, cost), cost);
    return limiter.consume(limits, cost).then((outcome) => decideSpent(outcome, cost));
  };
  const then = (limits: Limit[] | Promise<Limit[]>, cost: number): Spent | Promise<Spent> => (limits instanceof Promise ? limits.then((l) => consume(l, cost)) : consume(limits, cost));

  return {
    /**
     * Synchronous when the key's limits are known and the limiter counts in this process (the hot
     * path). `whole`: every limit at once, the portal's budget included, whatever portalOnArrival
     * says (verify mode: nothing of keygate's calls the portal later).
     */
    spend(v: Verification, whole = false): Spent | Promise<Spent> {
      if (!v.key) {
        const limits = policy.forAddress(v.clientIp);
        if (v.refusal?.code === "INVALID_API_KEY") limits.push(policy.failedAuth(v.clientIp));
        return consume(limits, 1);
      }
      // A request with a key that verification refused spends nothing: cost 0 only reads the state for the headers.
      if (v.refusal) return then(withRoute(v.key, v.route, "refused", keyLimits(v.key, v.route?.upstream ?? false)), 0);
      // A key's limits change only with the key or its portal: worked out once, kept with the key.
      if (!v.route?.upstream) return then(withRoute(v.key, v.route, "limits", keyLimits(v.key, false)), 1);
      const arrival = whole || portalOnArrival(v);
      return then(withRoute(v.key, v.route, arrival ? "limits upstream" : "upstream before the portal", arrival ? keyLimits(v.key, true) : upstreamPart(v.key, false)), 1);
    },

    /**
     * One unit of the portal's budget for an admitted request whose arrival left it to the
     * handler (portalOnArrival): spent when keygate is about to call the portal. The states
     * join the request's for the headers; refused: the profile's portal code and Retry-After.
     */
    spendPortal(v: Verification): Spent | Promise<Spent> {
      return then(upstreamPart(v.key!, true), 1);
    },

    /**
     * Before an unknown key is read from the store: the refusal a failed attempt from this address
     * would get now, when its failed-authentication budget is spent; nothing is counted.
     */
    throttled(ip: string): Spent | undefined | Promise<Spent | undefined> {
      const limits = policy.forAddress(ip);
      limits.push(policy.failedAuth(ip));
      const refused = (o: Outcome) => (o.states.at(-1)!.retryAfterMs > 0 ? decideSpent(o, 1) : undefined);
      if (limiter.peekNow) return refused(limiter.peekNow(limits, 1));
      return limiter.peek?.(limits, 1).then(refused);
    },

    /** X-RateLimit-* (and RateLimit, RateLimit-Policy) on every response that was counted. */
    headers(reply: FastifyReply, states: LimitState[] | undefined): void {
      if (!states) return;
      reply.headers(rateLimitHeaders(states));
    },
  };
}
