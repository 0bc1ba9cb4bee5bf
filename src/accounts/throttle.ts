import type { Limit, Limiter } from "../limits/limiter.ts";

/**
 * Failed sign-ins are throttled per account (the email asked for, whether or not it exists: the
 * throttle must not tell) and per client address, in the same sliding windows as every other
 * limit (src/limits), so with Redis every node counts together. Only failures are counted; a
 * sign-in is refused before its password is checked once either budget is spent.
 */
export interface SignInThrottleSettings {
  /** Failed sign-ins per account per window. */
  perAccount: number;
  /** Failed sign-ins per client address per window. */
  perAddress: number;
  windowMs: number;
}

export const SIGN_IN_THROTTLE: SignInThrottleSettings = { perAccount: 10, perAddress: 30, windowMs: 15 * 60_000 };

export interface SignInThrottle {
  /** Seconds to wait when the next attempt would be refused; undefined when it may go ahead. Counts nothing. */
  refused(email: string, ip: string): Promise<number | undefined>;
  /** Counts a failed attempt against the account and the address. */
  failed(email: string, ip: string): Promise<void>;
}

export function signInThrottle(limiter: Limiter, settings: SignInThrottleSettings = SIGN_IN_THROTTLE): SignInThrottle {
  const limits = (email: string, ip: string): Limit[] => [
    { kind: "auth", bucket: `sign-in:account:${email}`, limit: settings.perAccount, windowMs: settings.windowMs, policy: "sign-in-account" },
    { kind: "auth", bucket: `sign-in:ip:${ip}`, limit: settings.perAddress, windowMs: settings.windowMs, policy: "sign-in-address" },
  ];
  return {
    async refused(email, ip) {
      const outcome = limiter.peek ? await limiter.peek(limits(email, ip), 1) : undefined;
      const wait = Math.max(0, ...(outcome?.states.map((s) => s.retryAfterMs) ?? []));
      return wait > 0 ? Math.ceil(wait / 1000) : undefined;
    },
    async failed(email, ip) {
      await limiter.consume(limits(email, ip), 1);
    },
  };
}
