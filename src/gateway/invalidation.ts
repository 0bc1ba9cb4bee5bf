import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { redisNamespace } from "../limits/deployment.ts";

/**
 * A change another node must hear about: a key to drop from its cache (from the change feed, with
 * the version the change brought it to: a copy at least as new stays), a portal's settings, or any
 * other stored change; "all" (from the change feed only): anything may have changed.
 */
export type Change = { kind: "key"; id: string; digest: string; version?: number } | { kind: "portal"; id: string } | { kind: "data" } | { kind: "all" };

/**
 * Cache invalidation across keygate nodes over Redis pub/sub: every node publishes the changes
 * it stores and drops what others publish. On one node the cache is invalidated synchronously
 * before a change is answered; other nodes hear of it a Redis round trip later.
 */
export class RedisInvalidation {
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #channel: string;
  readonly #node = randomUUID();
  #timing: ((operation: string, seconds: number) => void) | undefined;

  /** `deployment`: the deployment's id (src/limits/deployment.ts): its nodes hear each other on kg:<id>:changes, and no one else. */
  constructor(url: string, deployment: string) {
    const options = { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: (times: number) => Math.min(times * 200, 2_000) };
    this.#publisher = new Redis(url, options);
    this.#subscriber = new Redis(url, { ...options, enableOfflineQueue: true });
    this.#channel = `${redisNamespace(deployment)}changes`;
    for (const client of [this.#publisher, this.#subscriber]) client.on("error", () => {});
  }

  /**
   * Resolves once this node listens for others' changes, or once Redis turned out unreachable: a
   * node starting during a Redis outage starts all the same (the store's change feed tells it of
   * changes meanwhile) and subscribes when Redis answers.
   */
  async listen(onChange: (change: Change) => void): Promise<void> {
    this.#subscriber.on("message", (_channel: string, message: string) => {
      const { node, change } = JSON.parse(message) as { node: string; change: Change };
      if (node !== this.#node) onChange(change);
    });
    const subscribe = (): Promise<void> =>
      this.#subscriber.subscribe(this.#channel).then(
        () => undefined,
        () => void this.#subscriber.once("ready", () => void subscribe()),
      );
    await subscribe();
  }

  /** Tells `timing` how long each publish took, for /metrics. */
  observe(timing: (operation: string, seconds: number) => void): void {
    this.#timing = timing;
  }

  /** Tells the other nodes; a failure is reported, the local change stands. */
  publish(change: Change): Promise<void> {
    const started = performance.now();
    return this.#publisher
      .publish(this.#channel, JSON.stringify({ node: this.#node, change }))
      .then(() => undefined)
      .finally(() => this.#timing?.("publish", (performance.now() - started) / 1000));
  }

  async close(): Promise<void> {
    this.#publisher.disconnect();
    this.#subscriber.disconnect();
  }
}
