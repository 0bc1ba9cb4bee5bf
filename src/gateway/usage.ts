import type { Store } from "../store/store.ts";

/** Last-used times, collected on the hot path and written in batches off it. */
export class LastUsed {
  readonly #store: Store;
  #pending = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;
  #flushing: Promise<void> = Promise.resolve();

  constructor(store: Store, intervalMs = 5_000) {
    this.#store = store;
    this.#timer = setInterval(() => void this.flush(), intervalMs);
    this.#timer.unref();
  }

  touch(keyId: string, at: number): void {
    this.#pending.set(keyId, at);
  }

  /** Writes what has been collected; a failed write is retried with the next batch. */
  flush(): Promise<void> {
    if (this.#pending.size === 0) return this.#flushing;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#flushing = this.#flushing.then(() =>
      this.#store.touchKeys(batch).catch(() => {
        for (const [id, at] of batch) if (!this.#pending.has(id)) this.#pending.set(id, at);
      }),
    );
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
