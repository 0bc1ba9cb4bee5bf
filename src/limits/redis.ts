import { Redis } from "ioredis";
import { redisNamespace } from "./deployment.ts";
import { type Limit, type Limiter, logShape, type Outcome, stateOf } from "./limiter.ts";
import { MemoryLimiter } from "./memory.ts";

/**
 * One round trip per decision: the script prunes, reads and decides every limit's log
 * (limiter.ts, the same arithmetic as memory.ts), and logs the request in all of them or in none,
 * atomically. A log is a list of "newest:first:units:total" groups, oldest first, where total is
 * the units logged up to that group since the list began: the log's units are the newest's total
 * minus the oldest's, read at the two ends, with no counter beside it to keep. The list expires a
 * window after the newest admission, so an idle subject leaves nothing behind. Time is Redis's
 * own (TIME), so nodes with drifting clocks share one view of the windows (tests may pass their
 * own clock). Bucket keys are built inside the script, so this needs a single Redis (or a primary
 * with replicas), not a Redis Cluster.
 *
 * Per limit it answers (on Redis's clock): the units counted before this request, the
 * milliseconds until the log next gives units back (0: it holds none), and when this limit
 * refuses, the milliseconds until a request of this cost fits.
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
-- An entry's newest time, first time, units and running total (nil: none).
local function parse(e)
  if not e then return nil end
  local newest, first, units, total = string.match(e, '(%d+):(%d+):(%d+):(%d+)')
  return tonumber(newest), tonumber(first), tonumber(units), tonumber(total)
end
local function entry(key, k)
  return parse(redis.call('LINDEX', key, k))
end
local admitted = 1
local out = {0}
-- Per limit, read in the first pass: the oldest entry's newest and first times, the newest entry.
local hn, hf, ln, lf, lu, lt = {}, {}, {}, {}, {}, {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local limit = tonumber(ARGV[3 * i + 1])
  local w = tonumber(ARGV[3 * i + 3])
  local oldest = redis.call('LINDEX', key, 0)
  local newest, first, units, total = parse(oldest)
  if newest then
    -- One group (a burst, or a grouped log's open group) is both ends: read once.
    local last = redis.call('LINDEX', key, -1)
    if last == oldest then ln[i], lf[i], lu[i], lt[i] = newest, first, units, total else ln[i], lf[i], lu[i], lt[i] = parse(last) end
  end
  while newest and newest <= now - w do
    redis.call('LPOP', key)
    newest, first, units, total = entry(key, 0)
  end
  if not newest then ln[i] = nil end
  hn[i], hf[i] = newest, first
  local u = 0
  if newest then u = lt[i] - total + units end
  -- An oldest group that straddles the window's edge counts only its newest unit.
  local used = u
  if newest and first <= now - w then used = u - units + 1 end
  local retry = 0
  if used + cost > limit then
    admitted = 0
    if cost > limit then
      retry = w
    else
      local left = u
      local at = now
      local k = 0
      while true do
        local gn, gf, gu = entry(key, k)
        if not gn or left + cost <= limit then retry = at - now break end
        at = math.max(at, gf + w)
        if left - gu + 1 + cost <= limit then retry = at - now break end
        left = left - gu
        at = gn + w
        k = k + 1
      end
    end
  end
  out[3 * i - 1] = used
  out[3 * i + 1] = retry
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local group = tonumber(ARGV[3 * i + 2])
  local w = tonumber(ARGV[3 * i + 3])
  if admitted == 1 and count and cost > 0 then
    local n = ln[i]
    if n and (lu[i] + cost <= group or (lf[i] == n and n >= now)) then
      n = math.max(n, now)
      redis.call('LSET', key, -1, string.format('%d:%d:%d:%d', n, lf[i], lu[i] + cost, lt[i] + cost))
      -- The newest group is the oldest too (first times differ between groups): its newest time moved.
      if hf[i] == lf[i] then hn[i] = n end
    else
      redis.call('RPUSH', key, string.format('%d:%d:%d:%d', now, now, cost, (n and lt[i] or 0) + cost))
      if not hn[i] then hn[i], hf[i] = now, now end
    end
    redis.call('PEXPIRE', key, w + 1000)
  end
  local reset = 0
  if hn[i] then
    if hf[i] + w > now then reset = hf[i] + w - now else reset = hn[i] + w - now end
  end
  out[3 * i] = reset
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
  /** Rate-limit logs the local stand-in holds at most while Redis is away (default: MemoryLimiter's). */
  maxLogs?: number;
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
  #timing: ((operation: string, seconds: number) => void) | undefined;

  constructor(options: RedisLimiterOptions) {
    this.#prefix = `${redisNamespace(options.deployment)}rl:`;
    this.#onModeChange = options.onModeChange;
    this.#now = options.now;
    this.#fallback = new MemoryLimiter({ now: options.now, maxLogs: options.maxLogs });
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

  observe(timing: (operation: string, seconds: number) => void): void {
    this.#timing = timing;
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
    for (const l of limits) args.push(l.limit, logShape(l.limit).group, l.windowMs);
    let reply: number[];
    const started = performance.now();
    try {
      reply = await this.#redis.kgConsume(...args);
    } catch (e) {
      this.#setDegraded(true, (e as Error).message);
      return local();
    } finally {
      this.#timing?.(count ? "consume" : "peek", (performance.now() - started) / 1000);
    }
    if (this.#degraded) this.#setDegraded(false, "answering");
    const admitted = reply[0] === 1;
    const states = limits.map((limit, i) => stateOf(limit, admitted, cost, reply[1 + 3 * i]!, reply[2 + 3 * i]!, reply[3 + 3 * i]!));
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
