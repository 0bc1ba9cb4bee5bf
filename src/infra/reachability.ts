/**
 * Whether keygate reaches the app servers it fronts (docs/servers.md, "Reachability"): every
 * `intervalMs` (default 30 s) each node sends every registered server a GET of its URL, through
 * the outbound rules (src/upstream/outbound.ts: a name that now resolves to a private address is
 * refused like any other), and records `CONNECTED` when any HTTP answer comes back within
 * `timeoutMs` (default 5 s; a 404 or 500 still proves the server is there), `UNREACHABLE` when
 * none does. A newly registered server is checked at once. close() stops the timer, aborts the
 * probes under way and waits for them.
 */
import { Agent, request } from "undici";
import type { OutboundPolicy } from "../upstream/outbound.ts";
import { type BlackholeStatus, type Server, listAllServers, recordCheck } from "../store/servers.ts";
import type { Store } from "../store/store.ts";

export const DEFAULT_CHECK_INTERVAL_MS = 30_000;
export const DEFAULT_CHECK_TIMEOUT_MS = 5_000;

export interface ReachabilityOptions {
  intervalMs?: number;
  timeoutMs?: number;
  now: () => number;
  /** A check failed unexpectedly (the store, not the server): logged, the next round retries. */
  onError?: (error: unknown) => void;
}

export class ServerChecks {
  readonly intervalMs: number;
  readonly #timeoutMs: number;
  readonly #agent: Agent;
  readonly #timer: NodeJS.Timeout;
  readonly #running = new Set<Promise<void>>();
  readonly #store: Store;
  readonly #options: ReachabilityOptions;
  /** Aborts the probes under way at close: a server that does not answer does not hold up a shutdown. */
  readonly #closing = new AbortController();
  #sweeping = false;
  #closed = false;

  constructor(store: Store, outbound: OutboundPolicy, options: ReachabilityOptions) {
    this.#store = store;
    this.#options = options;
    this.intervalMs = options.intervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    this.#agent = new Agent({ connect: outbound.connector({ timeout: this.#timeoutMs }), connections: 4, keepAliveTimeout: 1_000 });
    // unref: the checks never keep a process alive that has nothing else to do.
    this.#timer = setInterval(() => this.#sweep(), this.intervalMs).unref();
  }

  /** Checks one server now, in the background (a newly registered one). */
  checkSoon(server: Server): void {
    this.#track(this.#check(server));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#closing.abort();
    await Promise.allSettled([...this.#running]);
    await this.#agent.close();
  }

  #sweep(): void {
    // A round that outlasts the interval (many slow servers) is not doubled up.
    if (this.#sweeping || this.#closed) return;
    this.#sweeping = true;
    this.#track(
      listAllServers(this.#store)
        .then((servers) => Promise.all(servers.map((s) => this.#check(s))))
        .then(
          () => undefined,
          (e: unknown) => this.#options.onError?.(e),
        )
        .finally(() => (this.#sweeping = false)),
    );
  }

  #track(p: Promise<void>): void {
    this.#running.add(p);
    void p.finally(() => this.#running.delete(p));
  }

  async #check(server: Server): Promise<void> {
    if (this.#closed) return;
    const status = await this.#probe(server.url);
    if (this.#closed) return;
    await recordCheck(this.#store, server.id, status, this.#options.now()).catch((e: unknown) => this.#options.onError?.(e));
  }

  async #probe(url: string): Promise<BlackholeStatus> {
    try {
      const answer = await request(url, { dispatcher: this.#agent, method: "GET", headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs, signal: AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#timeoutMs)]) });
      await answer.body.dump();
      return "CONNECTED";
    } catch {
      return "UNREACHABLE";
    }
  }
}
