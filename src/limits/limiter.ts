/**
 * Rate limits: sliding-window counters, one interface, two backends (memory, Redis).
 *
 * The algorithm (the same arithmetic in both backends): time is cut into fixed windows of the
 * limit's length; a bucket counts requests in the current and the previous window, and estimates
 * the requests of the last full window length as
 *
 *     estimate = previous × (1 − elapsed / window) + current
 *
 * A request of cost c is admitted when estimate + c ≤ limit for every limit that applies; then c
 * is added to each of them. Refused requests are not counted, so a client that keeps knocking
 * does not extend its own block. Capacity returns gradually as the previous window's share fades,
 * not all at once at a boundary. The estimate assumes the previous window's requests were evenly
 * spread; docs/limits.md states the accuracy this gives.
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
  /** Milliseconds until the current window ends. */
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
  close(): Promise<void>;
}

export interface Counts {
  previous: number;
  current: number;
  /** Milliseconds since the current window began. */
  elapsedMs: number;
}

export function estimate(limit: Limit, counts: Counts): number {
  return counts.previous * (1 - counts.elapsedMs / limit.windowMs) + counts.current;
}

/** The state of one limit for a request of `cost`, before deciding (admitted if every state admits). */
export function stateOf(limit: Limit, counts: Counts, cost: number): LimitState & { admits: boolean } {
  const used = estimate(limit, counts);
  const admits = used + cost <= limit.limit;
  const resetMs = limit.windowMs - counts.elapsedMs;
  return {
    limit,
    admits,
    remaining: admits ? Math.max(0, Math.floor(limit.limit - used - cost)) : 0,
    resetMs,
    retryAfterMs: admits ? 0 : retryAfter(limit, counts, cost),
  };
}

/** How long until previous × (1 − t/window) + current + cost ≤ limit, this window or the next. */
function retryAfter(limit: Limit, counts: Counts, cost: number): number {
  const { windowMs } = limit;
  const room = limit.limit - cost;
  if (room < 0) return windowMs * 2; // never admitted: report the longest meaningful wait
  // Within the current window: previous × (1 − (e + d)/W) + current ≤ room.
  if (counts.previous > 0 && counts.current <= room) {
    const e = windowMs * (1 - (room - counts.current) / counts.previous) - counts.elapsedMs;
    if (e <= windowMs - counts.elapsedMs) return Math.max(1, Math.ceil(e));
  }
  // In the next window the current count becomes the previous one: current × (1 − t/W) ≤ room.
  const untilNext = windowMs - counts.elapsedMs;
  const t = counts.current <= room ? 0 : windowMs * (1 - room / counts.current);
  return Math.max(1, Math.ceil(untilNext + t));
}
