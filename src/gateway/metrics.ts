import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Store } from "../store/store.ts";
import type { KeyCache } from "./key-cache.ts";

/**
 * What `GET /metrics` shows (Prometheus text, prom-client; docs/operations.md, "Metrics"). Labels
 * are bounded: a route's template (never its URL), a method, a status, an error code, a kind of
 * limit — never a key, a user or an address.
 *
 * The hot path only adds to plain numbers in Maps (no prom-client call, no label hashing per
 * request); the counters are filled from them when Prometheus scrapes.
 */
export class Metrics {
  readonly registry = new Registry();
  /** "<method> <route template> <status>" → requests answered. */
  readonly #requests = new Map<string, number>();
  /** Verification outcome ("ok" or the refusal's code) → requests. */
  readonly #verifications = new Map<string, number>();
  /** Kind of limit (platform, key, portal, auth) → requests it refused. */
  readonly #refusals = new Map<string, number>();
  readonly #storeSeconds: Histogram<"operation">;
  readonly #redisSeconds: Histogram<"operation">;
  readonly #upstreamSeconds: Histogram<"portal">;
  /** Portal id (or "other") → upstream calls that failed, by code: "<portal> <code>" → calls. */
  readonly #upstreamErrors = new Map<string, number>();
  /** The portals that have a label of their own: the first PORTAL_LABELS seen; later ones are "other". */
  readonly #portals = new Set<string>();

  constructor(cache: KeyCache) {
    const registry = this.registry;
    const requests = this.#requests;
    const verifications = this.#verifications;
    const refusals = this.#refusals;
    /** A counter whose values are copied from `from` at each scrape, its label names split from the Map's keys. */
    const copied = (name: string, help: string, labelNames: string[], from: Map<string, number>) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [registry],
        collect() {
          this.reset();
          for (const [key, n] of from) {
            const values = key.split(" ");
            this.inc(Object.fromEntries(labelNames.map((l, i) => [l, values[i] ?? ""])), n);
          }
        },
      });
    copied("keygate_http_requests_total", "Requests answered, by method, route template and status", ["method", "route", "status"], requests);
    copied("keygate_verifications_total", "Verified requests by outcome: ok, or the refusal's error code", ["code"], verifications);
    copied("keygate_rate_limited_total", "Requests a rate limit refused, by the kind of limit (platform, key, portal, auth)", ["limit"], refusals);
    new Counter({
      name: "keygate_key_cache_hits_total",
      help: "Verifications that found their key in the key cache",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cache.hits);
      },
    });
    new Counter({
      name: "keygate_key_cache_misses_total",
      help: "Verifications that read their key from the store (or found it unknown)",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cache.misses);
      },
    });
    new Gauge({
      name: "keygate_key_cache_keys",
      help: "Keys in the key cache",
      registers: [registry],
      collect() {
        this.set(cache.size);
      },
    });
    this.#storeSeconds = new Histogram({
      name: "keygate_store_seconds",
      help: "Store round trips: the change feed's reads (one a second) and readiness checks",
      labelNames: ["operation"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
      registers: [registry],
    });
    this.#redisSeconds = new Histogram({
      name: "keygate_redis_seconds",
      help: "Redis round trips: rate-limit decisions (consume, peek) and change messages (publish)",
      labelNames: ["operation"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    });
    this.#upstreamSeconds = new Histogram({
      name: "keygate_upstream_seconds",
      help: `Calls to a portal's upstream (an HTTP upstream until its answer was sent; a Bitrix24 REST call), by portal id: the first ${PORTAL_LABELS} portals, then "other"`,
      labelNames: ["portal"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
    copied("keygate_upstream_errors_total", `Calls to a portal's upstream that failed, by portal id (the first ${PORTAL_LABELS}, then "other") and error code`, ["portal", "code"], this.#upstreamErrors);
    collectDefaultMetrics({ register: registry, prefix: "keygate_" });
  }

  /** A request answered: `route` is its template (a profile's or Fastify's), or "unmatched". */
  request(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  verification(code: string): void {
    this.#verifications.set(code, (this.#verifications.get(code) ?? 0) + 1);
  }

  refused(limit: string): void {
    this.#refusals.set(limit, (this.#refusals.get(limit) ?? 0) + 1);
  }

  store(operation: string, seconds: number): void {
    this.#storeSeconds.observe({ operation }, seconds);
  }

  redis(operation: string, seconds: number): void {
    this.#redisSeconds.observe({ operation }, seconds);
  }

  /** A call to the portal's upstream took `seconds`; `error`: the code it failed with. */
  upstream(portalId: string, seconds: number, error?: string): void {
    const portal = this.#portals.has(portalId) || (this.#portals.size < PORTAL_LABELS && this.#portals.add(portalId)) ? portalId : "other";
    this.#upstreamSeconds.observe({ portal }, seconds);
    if (error !== undefined) {
      const key = `${portal} ${error}`;
      this.#upstreamErrors.set(key, (this.#upstreamErrors.get(key) ?? 0) + 1);
    }
  }
}

/** Portals with a label of their own in the upstream metrics: past them, "other" keeps the series bounded. */
export const PORTAL_LABELS = 500;

/**
 * The store with every call timed into `observe` (operation: the method's name, a bounded set).
 * Calls on the verification hot path reach the store only on a key-cache miss.
 */
export function timedStore(store: Store, observe: (operation: string, seconds: number) => void): Store {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      if (typeof value !== "function" || typeof name !== "string") return value;
      return (...args: unknown[]) => {
        const started = performance.now();
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) return result.finally(() => observe(name, (performance.now() - started) / 1000));
        observe(name, (performance.now() - started) / 1000);
        return result;
      };
    },
  });
}
