/**
 * Rate limits: a sliding log, one interface, two backends (memory, Redis).
 *
 * The property (docs/limits.md has the proof): for a limit of N per window W, any interval of
 * length W holds at most N admitted units (N × 1.01 at most for N > EXACT_UP_TO), and a client
 * sending evenly at N per W is never refused.
 *
 * Each subject keeps the log of its admissions in the last W, oldest first. Up to EXACT_UP_TO it
 * is every admission's time; above, admissions are grouped (logShape), so the log never holds
 * more than about 100 groups. A request of cost c is admitted when, for every limit that applies,
 * the units counted in the window (time > now − W) plus c fit in N; then c is logged in all of
 * them. Refused requests are not logged, so a client that keeps knocking does not extend its own
 * block. Retry-After is exact: the moment the log's oldest entries leave the window and make room.
 */

export type LimitKind = "platform" | "key" | "portal" | "auth";

export interface Limit {
  kind: LimitKind;
  /** The bucket: who is counted (e.g. "platform:key:<id>", "auth:ip:203.0.113.7"). */
  bucket: string;
  limit: number;
  windowMs: number;
  /** The name shown in RateLimit-Policy, e.g. "platform". */
  policy: string;
}

export interface LimitState {
  limit: Limit;
  /** Requests left in the window after this one (0 when refused). */
  remaining: number;
  /** Milliseconds until the oldest request counted leaves the window (0: none is counted): when `remaining` grows again. */
  resetMs: number;
  /** When refused: milliseconds until a request of the same cost would be admitted. */
  retryAfterMs: number;
}

export interface Outcome {
  admitted: boolean;
  /** One state per limit, in the order given. */
  states: LimitState[];
}

export interface Limiter {
  /** Checks every limit; counts `cost` in all of them only when all admit. */
  consume(limits: readonly Limit[], cost: number): Promise<Outcome>;
  /** The same decision synchronously, for a limiter that keeps its counters in this process (the hot path takes it when it can). */
  consumeNow?(limits: readonly Limit[], cost: number): Outcome;
  /**
   * The decision `consume` would make now, counting nothing: a look before work that a refusal
   * would spare (the failed-authentication throttle before a store lookup). A limiter without it
   * is only ever consumed.
   */
  peek?(limits: readonly Limit[], cost: number): Promise<Outcome>;
  /** `peek`, synchronously (a limiter that keeps its counters in this process). */
  peekNow?(limits: readonly Limit[], cost: number): Outcome;
  /** "memory", "redis", or "redis-degraded" while Redis is unreachable and local limits stand in. */
  readonly mode: string;
  /** Tells `timing` how long each round trip to a shared backend took (operation: consume, peek), for /metrics. */
  observe?(timing: (operation: string, seconds: number) => void): void;
  close(): Promise<void>;
}

/** Limits up to this many units log every admission: exact. Larger ones log groups (a tolerance of at most 1 %). */
export const EXACT_UP_TO = 1_000;

/**
 * How a limit of `limit` units is logged: admissions are grouped up to `group` units at a time
 * (1: every admission on its own; a burst at one instant is always one group), each group with
 * the times of its first and newest admission. Only the oldest group can straddle the window's
 * edge; the log then counts just its newest unit as still in the window (it may be the only one),
 * so a client within its limit is never refused, and up to group − 1 units that are in fact still
 * in the window go uncounted: any interval of the window's length holds at most `bound` units,
 * limit + group − 1, and (group − 1) / limit ≤ 1 %.
 */
export function logShape(limit: number): { group: number; bound: number } {
  const group = limit <= EXACT_UP_TO ? 1 : Math.floor(limit / 100) + 1;
  return { group, bound: limit + group - 1 };
}

/**
 * The state of one limit after a decision. `used`: the units counted in the window before this
 * request; `resetMs`: until the log next gives units back (0: it holds none); `retryAfterMs`: 0
 * when this limit admits the request.
 */
export function stateOf(limit: Limit, admitted: boolean, cost: number, used: number, resetMs: number, retryAfterMs: number): LimitState {
  return { limit, remaining: admitted ? Math.max(0, limit.limit - used - cost) : 0, resetMs, retryAfterMs };
}
