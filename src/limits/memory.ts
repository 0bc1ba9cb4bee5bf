import { type Counts, type Limit, type Limiter, type Outcome, stateOf } from "./limiter.ts";

interface Bucket {
  window: number;
  previous: number;
  current: number;
  windowMs: number;
}

/** Sliding-window counters in this process: exact for one node, and the stand-in when Redis is down. */
export class MemoryLimiter implements Limiter {
  readonly mode = "memory";
  readonly #buckets = new Map<string, Bucket>();
  readonly #now: () => number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: { now?: () => number; sweepMs?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepMs ?? 60_000);
    this.#sweeper.unref();
  }

  consume(limits: readonly Limit[], cost: number): Promise<Outcome> {
    return Promise.resolve(this.consumeNow(limits, cost));
  }

  /** The same decision, synchronously. */
  consumeNow(limits: readonly Limit[], cost: number): Outcome {
    return this.#decide(limits, cost, true);
  }

  peek(limits: readonly Limit[], cost: number): Promise<Outcome> {
    return Promise.resolve(this.#decide(limits, cost, false));
  }

  peekNow(limits: readonly Limit[], cost: number): Outcome {
    return this.#decide(limits, cost, false);
  }

  #decide(limits: readonly Limit[], cost: number, count: boolean): Outcome {
    const now = this.#now();
    const buckets = limits.map((limit) => this.#bucket(limit, now));
    const states = limits.map((limit, i) => {
      const b = buckets[i]!;
      const counts: Counts = { previous: b.previous, current: b.current, elapsedMs: now - b.window * limit.windowMs };
      return stateOf(limit, counts, cost);
    });
    const admitted = states.every((s) => s.admits);
    if (admitted && count) for (const b of buckets) b.current += cost;
    // A refused request leaves nothing to spend right now, whichever limit refused it.
    return { admitted, states: admitted ? states : states.map((s) => ({ ...s, remaining: 0 })) };
  }

  #bucket(limit: Limit, now: number): Bucket {
    const window = Math.floor(now / limit.windowMs);
    // A bucket is counted with one window length (policy.ts names buckets per limit kind).
    const key = limit.bucket;
    let b = this.#buckets.get(key);
    if (!b) {
      b = { window, previous: 0, current: 0, windowMs: limit.windowMs };
      this.#buckets.set(key, b);
    } else if (b.window !== window) {
      b.previous = b.window === window - 1 ? b.current : 0;
      b.current = 0;
      b.window = window;
    }
    return b;
  }

  /** Drops buckets that no longer remember anything. */
  #sweep(): void {
    const now = this.#now();
    for (const [key, b] of this.#buckets) if (Math.floor(now / b.windowMs) - b.window >= 2) this.#buckets.delete(key);
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
  }
}
