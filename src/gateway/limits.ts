import type { FastifyReply } from "fastify";
import type { Limit, LimitState, Limiter, Outcome } from "../limits/limiter.ts";
import { type LimitPolicy, rateLimitHeaders, refusing } from "../limits/policy.ts";
import type { Store } from "../store/store.ts";
import type { Verification } from "./auth.ts";
import type { KeyCache } from "./key-cache.ts";

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
}

/**
 * Spends the limits of a verified request (docs/limits.md): a request with a recognised key is
 * counted against its key's limits (nothing is spent when verification refused it: cost 0 only
 * reads the state for the headers); a request without one against its address, and a failed
 * authentication also against the address's failed-attempt budget.
 */
export function rateLimiting(options: { policy: LimitPolicy; limiter: Limiter; store: Store; cache: KeyCache }) {
  const { policy, limiter, store, cache } = options;

  const limitsName = (v: Verification) => (v.route?.upstream ? "limits upstream" : "limits");
  // Only a forwarded route's limits read the store (the portal's request limit).
  const keyLimits = (v: Verification): Limit[] | Promise<Limit[]> => {
    const record = v.key!.record;
    const upstream = v.route?.upstream ?? false;
    if (!upstream || record.portalId === null) return cache.deriveNow(v.key!, limitsName(v), () => policy.forKey(record, null, upstream));
    const portalId = record.portalId;
    return cache.derive(v.key!, limitsName(v), async () => policy.forKey(record, (await store.getPortal(portalId))?.requestLimit ?? null, upstream));
  };
  const decideSpent = (outcome: Outcome, cost: number): Spent => {
    // Rate limits are the last step of verification: a request it refused keeps its own code
    // (403, 401), even when the key is over a limit (one just lowered); only the headers tell.
    if (outcome.admitted || cost === 0) return { admitted: true, states: outcome.states };
    const worst = refusing(outcome.states) ?? outcome.states[0]!;
    return {
      admitted: false,
      states: outcome.states,
      code: worst.limit.kind === "portal" ? policy.portalLimitCode : "RATE_LIMITED",
      retryAfter: Math.max(1, Math.ceil(worst.retryAfterMs / 1000)),
    };
  };
  const consume = (limits: Limit[], cost: number): Spent | Promise<Spent> => {
    if (limiter.consumeNow) return decideSpent(limiter.consumeNow(limits, cost), cost);
    return limiter.consume(limits, cost).then((outcome) => decideSpent(outcome, cost));
  };

  return {
    /** Synchronous when the key's limits are known and the limiter counts in this process (the hot path). */
    spend(v: Verification): Spent | Promise<Spent> {
      if (!v.key) {
        const limits = policy.forAddress(v.clientIp);
        if (v.refusal?.code === "INVALID_API_KEY") limits.push(policy.failedAuth(v.clientIp));
        return consume(limits, 1);
      }
      // A request with a key that verification refused spends nothing: cost 0 only reads the state for the headers.
      const cost = v.refusal ? 0 : 1;
      // A key's limits change only with the key or its portal: worked out once, kept with the key.
      const limits = cache.peek<Limit[]>(v.key, limitsName(v)) ?? keyLimits(v);
      return limits instanceof Promise ? limits.then((l) => consume(l, cost)) : consume(limits, cost);
    },

    /** X-RateLimit-* (and RateLimit, RateLimit-Policy) on every response that was counted. */
    headers(reply: FastifyReply, states: LimitState[] | undefined): void {
      if (!states) return;
      reply.headers(rateLimitHeaders(states));
    },
  };
}
