import type { Route } from "../core/profile/profile.ts";
import type { RequestLogEntry, Store } from "../store/store.ts";

const DAY = 86_400_000;

export interface UsageOptions {
  /** How often collected usage is written (ms, default 1000). */
  flushMs?: number;
  /** Days the request log is kept (default 30). */
  retentionDays?: number;
  now?: () => number;
  onError?: (error: Error) => void;
}

/**
 * What the scope advisor reads of a request (docs/scope-advice.md): the pattern of the route it
 * matched, and, when it was refused for a scope the key lacks, the unmet requirement.
 */
export function routeFacts(route: Route | undefined, refusal: { details?: Record<string, unknown> } | undefined): Pick<RequestLogEntry, "route" | "missingScope"> {
  const missing = refusal?.details?.missing;
  return { route: route?.path ?? null, missingScope: Array.isArray(missing) && missing.length > 0 ? missing.join(",") : null };
}

/**
 * Request accounting: last-used times and the request log, collected on the hot path in memory
 * and written in batches off it. A failed write is retried with the next batch (the log keeps at
 * most 100,000 entries waiting, dropping the oldest beyond that).
 */
export class Usage {
  readonly #store: Store;
  readonly #now: () => number;
  readonly #retentionMs: number;
  readonly #onError: (error: Error) => void;
  #lastUsed = new Map<string, number>();
  #log: RequestLogEntry[] = [];
  readonly #timer: NodeJS.Timeout;
  #writing: Promise<void> = Promise.resolve();
  #lastPurge = 0;

  constructor(store: Store, options: UsageOptions = {}) {
    this.#store = store;
    this.#now = options.now ?? Date.now;
    this.#retentionMs = (options.retentionDays ?? 30) * DAY;
    this.#onError = options.onError ?? (() => {});
    this.#timer = setInterval(() => void this.flush(), options.flushMs ?? 1_000);
    this.#timer.unref();
  }

  touch(keyId: string, at: number): void {
    this.#lastUsed.set(keyId, at);
  }

  /** A request answered for a key, now; the log keeps its target's path, not the query string. */
  record(request: Omit<RequestLogEntry, "at" | "path"> & { target: string }): void {
    const { target, ...entry } = request;
    const q = target.indexOf("?");
    if (this.#log.length >= 100_000) this.#log.shift();
    this.#log.push({ ...entry, at: this.#now(), path: q < 0 ? target : target.slice(0, q) });
  }

  /** Writes what has been collected, and purges the log past its retention once an hour. */
  flush(): Promise<void> {
    const lastUsed = this.#lastUsed;
    const log = this.#log;
    const purge = this.#now() - this.#lastPurge > 3_600_000;
    if (lastUsed.size === 0 && log.length === 0 && !purge) return this.#writing;
    this.#lastUsed = new Map();
    this.#log = [];
    if (purge) this.#lastPurge = this.#now();
    this.#writing = this.#writing.then(async () => {
      try {
        if (lastUsed.size > 0) await this.#store.touchKeys(lastUsed);
        if (log.length > 0) await this.#store.appendRequests(log);
        if (purge) await this.#store.purgeRequests(this.#now() - this.#retentionMs);
      } catch (e) {
        this.#onError(e as Error);
        for (const [id, at] of lastUsed) if (!this.#lastUsed.has(id)) this.#lastUsed.set(id, at);
        this.#log = [...log, ...this.#log].slice(-100_000);
      }
    });
    return this.#writing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
