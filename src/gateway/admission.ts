import { type KeyFormat, keyFormat } from "../core/keys/format.ts";
import { AppSessionCache } from "../oauth/sessions.ts";
import type { Profile } from "../core/profile/profile.ts";
import type { Limiter } from "../limits/limiter.ts";
import { MemoryLimiter } from "../limits/memory.ts";
import { limitPolicy } from "../limits/policy.ts";
import type { Store } from "../store/store.ts";
import { type Arrival, type Authenticator, type AuthenticatorOptions, type Verification, authenticator } from "./auth.ts";
import { KeyCache } from "./key-cache.ts";
import { type RateLimitingOptions, type Spent, rateLimiting } from "./limits.ts";
import { Usage, type UsageOptions } from "./usage.ts";

export interface AdmissionOptions {
  profile: Profile;
  store: Store;
  /** Part of every key digest; kept outside the database. */
  serverSecret: string;
  /** Rate limits: in memory by default; a RedisLimiter shares them between nodes. */
  limiter?: Limiter;
  /** Keys kept in the cache (default 100,000). */
  cacheSize?: number;
  /** Rate-limit logs the default in-memory limiter keeps (default MAX_LOGS, src/limits/memory.ts). */
  limiterSize?: number;
  /** The network size an IPv6 client is counted by in per-address limits (default 64; src/limits/ip.ts). */
  ipv6Prefix?: number;
  usage?: UsageOptions;
  /** Which upstream requests spend the portal's budget as they arrive (default: all); see rateLimiting. */
  portalOnArrival?: RateLimitingOptions["portalOnArrival"];
  /** Signed-in sessions on the management API (src/gateway/session.ts); none for keygate as a library. */
  session?: AuthenticatorOptions["session"];
  now: () => number;
}

/** A request verified and counted: what it may do, and the limits it was counted in. */
export interface Admitted {
  verification: Verification;
  spent: Spent;
}

/**
 * How a request is admitted, in one place for the HTTP gateway (src/gateway/server.ts) and for
 * keygate as a library (src/gateway/verifier.ts): verification (src/gateway/auth.ts, the key
 * cache, the decision of src/core/verify/decide.ts), then rate limits, the last step — except that
 * the failed-authentication throttle is looked at before a key the cache does not hold is read
 * from the store.
 */
export interface Admission {
  readonly format: KeyFormat;
  readonly cache: KeyCache;
  readonly limiter: Limiter;
  readonly limits: ReturnType<typeof rateLimiting>;
  readonly auth: Authenticator;
  /** The app sessions (vibe_session_…) checked with authorization keys (docs/oauth.md). */
  readonly appSessions: AppSessionCache;
  /** Last-used times and the request log, written off the hot path. */
  readonly usage: Usage;
  /**
   * Synchronous when the key is cached and the limiter counts in this process: the hot path awaits
   * nothing. `wholeBudget`: an upstream route spends the portal's budget now, whatever
   * portalOnArrival says (verify mode: the backend that asked calls the portal itself).
   */
  admit(arrival: Arrival, options?: { wholeBudget?: boolean }): Admitted | Promise<Admitted>;
  close(): Promise<void>;
}

export function admission(options: AdmissionOptions): Admission {
  const { profile, store, serverSecret, now } = options;
  const format = keyFormat(profile.spec.keyTypes);
  const cache = new KeyCache(profile, store, { max: options.cacheSize, now });
  const limiter = options.limiter ?? new MemoryLimiter({ now, maxLogs: options.limiterSize });
  const limits = rateLimiting({ policy: limitPolicy(profile.spec.limits, { ipv6Prefix: options.ipv6Prefix }), limiter, store, cache, portalOnArrival: options.portalOnArrival });
  const usage = new Usage(store, { now, ...options.usage });
  const appSessions = new AppSessionCache(store, () => cache.dataGeneration);
  const auth = authenticator({ profile, format, serverSecret, cache, now, touched: (id, at) => usage.touch(id, at), throttled: (ip) => limits.throttled(ip), session: options.session, appSessions });
  const spend = (verification: Verification, wholeBudget: boolean): Admitted | Promise<Admitted> => {
    // Refused by the failed-authentication throttle before the lookup: that refusal is the outcome (nothing is counted).
    if (verification.throttled) return { verification, spent: verification.throttled };
    const spent = limits.spend(verification, wholeBudget);
    return spent instanceof Promise ? spent.then((s) => ({ verification, spent: s })) : { verification, spent };
  };
  return {
    format,
    cache,
    limiter,
    limits,
    auth,
    appSessions,
    usage,
    admit(arrival, options) {
      const whole = options?.wholeBudget ?? false;
      const verification = auth.authenticate(arrival);
      return verification instanceof Promise ? verification.then((v) => spend(v, whole)) : spend(verification, whole);
    },
    async close() {
      await usage.close();
      await limiter.close();
    },
  };
}
