import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
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
  readonly #upstreamSeconds: Histogram<"kind">;

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
    this.#upstreamSeconds = new Histogram({
      name: "keygate_upstream_seconds",
      help: "Requests forwarded to an HTTP upstream, until its answer was sent",
      labelNames: ["kind"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    });
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

  upstream(kind: string, seconds: number): void {
    this.#upstreamSeconds.observe({ kind }, seconds);
  }
}
