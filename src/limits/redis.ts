import { Redis } from "ioredis";
import { redisNamespace } from "./deployment.ts";
import { type Limit, type Limiter, type Outcome, stateOf } from "./limiter.ts";
import { MemoryLimiter } from "./memory.ts";

/**
 * One round trip per decision: the script reads both windows of every bucket, decides, and
 * counts the request in all of them or in none, atomically. Time is Redis's own (TIME), so nodes
 * with drifting clocks share one view of the windows (tests may pass their own clock). Bucket keys are built inside the script,
 * so this needs a single Redis (or a primary with replicas), not a Redis Cluster.
 */
const CONSUME = `
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local cost = tonumber(ARGV[2])
local count = ARGV[3] == '1'
local admitted = 1
local out = {0}
local current = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i + 2])
  local w = tonumber(ARGV[2 * i + 3])
  local idx = math.floor(now / w)
  current[i] = KEYS[i] .. ':' .. idx
  local cur = tonumber(redis.call('GET', current[i]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (idx - 1)) or '0')
  local elapsed = now - idx * w
  out[#out + 1] = prev
  out[#out + 1] = cur
  out[#out + 1] = elapsed
  if prev * (1 - elapsed / w) + cur + cost > limit then admitted = 0 end
end
if admitted == 1 and count then
  for i = 1, #KEYS do
    redis.call('INCRBY', current[i], cost)
    redis.call('PEXPIRE', current[i], 2 * tonumber(ARGV[2 * i + 3]) + 1000)
  end
end
out[1] = admitted
return out
`;

export interface RedisLimiterOptions {
  url: string;
  /** The deployment's id (src/limits/deployment.ts): counters live under kg:<id>:rl:. */
  deployment: string;
  /** How long a decision may wait for Redis before local limits stand in (ms, default 250). */
  timeoutMs?: number;
  /** A clock for tests; by default the script reads Redis's TIME. */
  now?: () => number;
  /** Told when Redis goes away and when it comes back. */
  onModeChange?: (mode: "redis" | "redis-degraded", reason: string) => void;
}

type RedisWithConsume = Redis & { kgConsume(...args: (string | number)[]): Promise<number[]> };

/**
 * Limits shared by every keygate node through Redis. When Redis is unreachable, each node keeps
 * serving with its own in-memory limits (degraded: each node admits up to the full limit) and
 * shares again as soon as Redis answers.
 */
export class RedisLimiter implements Limiter {
  readonly #redis: RedisWithConsume;
  readonly #fallback: MemoryLimiter;
  readonly #prefix: string;
  readonly #onModeChange: RedisLimiterOptions["onModeChange"];
  readonly #now: (() => number) | undefined;
  #degraded = false;
  #closing = false;

  constructor(options: RedisLimiterOptions) {
    this.#prefix = `${redisNamespace(options.deployment)}rl:`;
    this.#onModeChange = options.onModeChange;
    this.#now = options.now;
    this.#fallback = new MemoryLimiter({ now: options.now });
    this.#redis = new Redis(options.url, {
      lazyConnect: false,
      // Fail fast while disconnected: a decision never waits for a reconnect.
      enableOfflineQueue: false,
      // Decisions issued in the same tick share one write to Redis.
      enableAutoPipelining: true,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeoutMs ?? 250,
      retryStrategy: (times) => Math.min(times * 200, 2_000),
    }) as RedisWithConsume;
    this.#redis.defineCommand("kgConsume", { lua: CONSUME });
    this.#redis.on("error", (e: Error) => this.#setDegraded(true, e.message));
    this.#redis.on("close", () => this.#setDegraded(true, "connection closed"));
    this.#redis.on("ready", () => this.#setDegraded(false, "connected"));
  }

  get mode(): string {
    return this.#degraded ? "redis-degraded" : "redis";
  }

  /** Resolves once Redis answers (or rejects after timeoutMs). */
  async ready(timeoutMs = 5_000): Promise<void> {
    if (this.#redis.status === "ready") return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
      this.#redis.once("ready", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  consume(limits: readonly Limit[], cost: number): Promise<Outcome> {
    return this.#decide(limits, cost, true);
  }

  peek(limits: readonly Limit[], cost: number): Promise<Outcome> {
    return this.#decide(limits, cost, false);
  }

  async #decide(limits: readonly Limit[], cost: number, count: boolean): Promise<Outcome> {
    const local = () => (count ? this.#fallback.consume(limits, cost) : this.#fallback.peek(limits, cost));
    if (this.#redis.status !== "ready") {
      this.#setDegraded(true, `Redis is ${this.#redis.status}`);
      return local();
    }
    const args: (string | number)[] = [limits.length, ...limits.map((l) => this.#prefix + l.bucket), this.#now ? this.#now() : "", cost, count ? 1 : 0];
    for (const l of limits) args.push(l.limit, l.windowMs);
    let reply: number[];
    try {
      reply = await this.#redis.kgConsume(...args);
    } catch (e) {
      this.#setDegraded(true, (e as Error).message);
      return local();
    }
    if (this.#degraded) this.#setDegraded(false, "answering");
    const admitted = reply[0] === 1;
    const states = limits.map((limit, i) => {
      const [previous, current, elapsedMs] = [reply[1 + 3 * i]!, reply[2 + 3 * i]!, reply[3 + 3 * i]!];
      const { admits, ...state } = stateOf(limit, { previous, current, elapsedMs }, cost);
      return admitted ? state : { ...state, remaining: 0 };
    });
    return { admitted, states };
  }

  #setDegraded(degraded: boolean, reason: string): void {
    if (degraded === this.#degraded || this.#closing) return;
    this.#degraded = degraded;
    this.#onModeChange?.(degraded ? "redis-degraded" : "redis", reason);
  }

  async close(): Promise<void> {
    this.#closing = true;
    await this.#fallback.close();
    this.#redis.disconnect();
  }
}
