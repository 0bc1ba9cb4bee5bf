/**
 * Rate-limiter micro-benchmark (issue 4): the cost of one decision, `Limiter.consume(limits, 1)`,
 * in this process, for the two backends, on a typical limit set:
 *
 *  - 2 limits: the key's platform (or tier) limit per minute and its own limit per second — what
 *    a request to keygate's own endpoints (GET /v1/me) spends when the key has a rateLimit;
 *  - 3 limits: the same and the portal's shared budget per second — what a request forwarded to
 *    the portal's upstream spends.
 *
 * Limits are 10⁹ so nothing is ever refused; the decisions cycle over 1,000 keys of 10 portals
 * (1,000 bucket sets, as many keys calling), each set built once, as the gateway keeps it with the
 * cached key.
 *
 *  - memory: MemoryLimiter.consume, awaited one after the other. Median over batches of the wall
 *    time per decision (it is all CPU).
 *  - redis:  RedisLimiter.consume against a real Redis (BENCH_REDIS_URL, default
 *    redis://127.0.0.1:6379; keys under a prefix of this run's own, deleted at the end), one Lua
 *    script round trip per decision; awaited one after the other (the latency of a decision), and
 *    with 50 in flight (as 50 connections would keep them: the throughput of one client
 *    connection). Besides the wall time per decision: this process's CPU per decision (what a
 *    keygate node pays) and, when Redis runs on this machine, Redis's CPU per decision (all of
 *    Redis's CPU over the batch: other clients of a shared Redis show up in it).
 *  - redis GET: the baseline of the Redis rows, a plain GET on a connection of the same client
 *    library: the round trip alone, which the limiter's script cannot beat.
 *  - headers: not a decision but what follows one on every counted response, building its
 *    X-RateLimit-*, RateLimit and RateLimit-Policy headers from the states (rateLimitHeaders),
 *    measured the same way as the memory rows (each call wrapped in a resolved promise, awaited).
 *
 * The runner's process, not pinned. If Redis does not answer, the Redis rows are skipped (the
 * result says how to start one); if it degrades during the run (a timeout: RedisLimiter then
 * falls back to memory silently) the benchmark fails rather than report the fallback's figures.
 *
 * Memory (issue 11.3): the heap a MemoryLimiter keeps per active subject (one limit's log), for a
 * few shapes and fills: thousands of subjects filled on a simulated clock, the heap and array buffers
 * measured after a full GC before and after, divided by the subjects. A subject whose
 * admissions all left the window is swept: idle subjects cost nothing.
 *
 * Environment: BENCH_LIMITER_BATCHES (15) batches per row after a warm-up batch; BENCH_REDIS_URL.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Redis } from "ioredis";
import type { Limit, Limiter } from "../src/limits/limiter.ts";
import { MemoryLimiter } from "../src/limits/memory.ts";
import { limitPolicy, rateLimitHeaders } from "../src/limits/policy.ts";
import { redisNamespace } from "../src/limits/deployment.ts";
import { RedisLimiter } from "../src/limits/redis.ts";
import { cpuSeconds, envNumber, round } from "./harness.ts";

export interface LimiterRow {
  /**
   * "redis GET": the baseline, a plain GET of one key over the same kind of connection (the round
   * trip alone). "headers": not a limiter, the rate-limit headers of a decision's states
   * (rateLimitHeaders), which keygate builds for every counted response.
   */
  limiter: "memory" | "redis" | "redis GET" | "headers";
  /** Limits per decision (0 for the baseline). */
  limits: number;
  /** Decisions in flight at once. */
  concurrency: number;
  /** Wall time per decision: median over the batches, and their 10th and 90th percentiles. */
  medianNs: number;
  p10Ns: number;
  p90Ns: number;
  /** This process's CPU (user + system) per decision, median over the batches. */
  cpuNs: number;
  /** Redis's CPU per decision over all the batches (null: Redis is not a process of this machine). */
  redisCpuNs: number | null;
  batches: number;
  callsPerBatch: number;
}

/** The memory one limit's log takes per active subject. */
export interface LimiterMemoryRow {
  /** The limit, e.g. "300 per minute". */
  limit: string;
  /** How full each subject's log is, e.g. "1 request", "300 requests (full)". */
  fill: string;
  /** Bytes of heap and array buffers per subject (the Map entry, the log and its ring). */
  bytesPerSubject: number;
  subjects: number;
}

export interface LimiterBenchResult {
  method: { batches: number; keys: number; redis: string | null; redisVersion: string | null };
  rows: LimiterRow[];
  memory: LimiterMemoryRow[];
  /** Why rows are missing. */
  skipped: string[];
}

const KEYS = 1_000;
const PORTALS = 10;
const HUGE = 1_000_000_000;
/** Decisions per batch against Redis: one at a time, and 50 in flight (a batch takes about 0.1 s on the development machine). */
const SEQUENTIAL_CALLS = 300;
const CONCURRENT_CALLS = 2_000;

/** The limit sets of KEYS keys, built by the real policy (the VibeCode shape: platform per minute, key and portal per second). */
function limitSets(withPortal: boolean): Limit[][] {
  const policy = limitPolicy({ perMinute: HUGE });
  const sets: Limit[][] = [];
  for (let i = 0; i < KEYS; i++) {
    const key = { id: `bench-key-${i}`, rateLimit: HUGE, tier: null, portalId: `bench-portal-${i % PORTALS}` };
    sets.push(policy.forKey(key, withPortal ? HUGE : null, withPortal));
  }
  for (const set of sets) if (set.length !== (withPortal ? 3 : 2)) throw new Error(`limit set of ${set.length}, expected ${withPortal ? 3 : 2}`);
  return sets;
}

/** Redis's pid on this machine, when INFO's process_id is a redis-server here; else undefined. */
function localRedisPid(info: string): number | undefined {
  const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
  if (!pid) return undefined;
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").includes("redis") ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function runBatch(limiter: Limiter, sets: Limit[][], calls: number, concurrency: number, start: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < calls) {
      const i = next++;
      const outcome = await limiter.consume(sets[(start + i) % sets.length]!, 1);
      if (!outcome.admitted) throw new Error("the limiter refused a decision: the benchmark's limits must never refuse");
    }
  };
  if (concurrency === 1) await worker();
  else await Promise.all(Array.from({ length: concurrency }, worker));
}

async function measure(
  limiter: Limiter,
  row: Pick<LimiterRow, "limiter" | "limits" | "concurrency">,
  sets: Limit[][],
  calls: number,
  batches: number,
  redisPid: number | undefined,
  check: () => void,
): Promise<LimiterRow> {
  await runBatch(limiter, sets, calls, row.concurrency, 0); // warm-up: JIT, connections, script cache
  check();
  const wall: number[] = [];
  const cpu: number[] = [];
  let redisCpuSeconds: number | null = 0;
  for (let b = 0; b < batches; b++) {
    const redisBefore = cpuSeconds(redisPid);
    const cpuBefore = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await runBatch(limiter, sets, calls, row.concurrency, (b + 1) * calls);
    wall.push(Number(process.hrtime.bigint() - t0) / calls);
    const c = process.cpuUsage(cpuBefore);
    cpu.push(((c.user + c.system) * 1000) / calls);
    const redisAfter = cpuSeconds(redisPid);
    // Summed, not a median: Redis's CPU comes in clock ticks (10 ms), about a tenth of a batch.
    redisCpuSeconds = redisBefore === null || redisAfter === null || redisCpuSeconds === null ? null : redisCpuSeconds + redisAfter - redisBefore;
  }
  check();
  const sorted = [...wall].sort((a, b) => a - b);
  const at = (xs: number[], q: number) => xs[Math.floor(q * (xs.length - 1))]!;
  const med = (xs: number[]) => at([...xs].sort((a, b) => a - b), 0.5);
  return {
    ...row,
    medianNs: round(at(sorted, 0.5), 1),
    p10Ns: round(at(sorted, 0.1), 1),
    p90Ns: round(at(sorted, 0.9), 1),
    cpuNs: round(med(cpu), 1),
    redisCpuNs: redisPid === undefined || redisCpuSeconds === null ? null : round((redisCpuSeconds * 1e9) / (calls * batches), 1),
    batches,
    callsPerBatch: calls,
  };
}

const MINUTE = 60_000;
const DAY = 86_400_000;

/** A full garbage collection, without --expose-gc on the command line. */
function collect(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

const heap = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/**
 * The memory per active subject of `limit` per `windowMs`, each subject sent `requests` requests
 * of `cost` spread over the window (each one at a time of its own).
 */
function memoryPerSubject(limit: number, windowMs: number, requests: number, cost: number, subjects: number): number {
  const clock = { now: 1_000 * DAY };
  const limiter = new MemoryLimiter({ now: () => clock.now });
  const limits: Limit[] = Array.from({ length: subjects }, (_, i) => ({ kind: "platform", bucket: `memory:${i}`, limit, windowMs, policy: "platform" }));
  collect();
  const before = heap();
  for (let r = 0; r < requests; r++) {
    clock.now += Math.floor(windowMs / (requests + 1));
    for (const l of limits) if (!limiter.consumeNow([l], cost).admitted) throw new Error(`memory bench: a request of ${l.bucket} refused`);
  }
  collect();
  const bytes = (heap() - before) / subjects;
  void limiter.close();
  return bytes;
}

function runMemory(log: (line: string) => void): LimiterMemoryRow[] {
  const rows: LimiterMemoryRow[] = [];
  const measure = (limit: string, fill: string, subjects: number, f: () => number) => {
    const row = { limit, fill, subjects, bytesPerSubject: Math.round(f()) };
    rows.push(row);
    log(`  memory    ${limit.padEnd(26)} ${fill.padEnd(34)} ${row.bytesPerSubject} bytes per subject`);
  };
  measure("300 per minute (exact)", "1 request", 20_000, () => memoryPerSubject(300, MINUTE, 1, 1, 20_000));
  measure("300 per minute (exact)", "30 requests", 5_000, () => memoryPerSubject(300, MINUTE, 30, 1, 5_000));
  measure("300 per minute (exact)", "300 requests (full)", 2_000, () => memoryPerSubject(300, MINUTE, 300, 1, 2_000));
  measure("10 per second (exact)", "10 requests (full)", 10_000, () => memoryPerSubject(10, 1_000, 10, 1, 10_000));
  // Requests of a whole group's units each: every one makes a group, as many small ones over the day would.
  measure("10,000 per day (grouped)", "1 request", 20_000, () => memoryPerSubject(10_000, DAY, 1, 1, 20_000));
  measure("10,000 per day (grouped)", "10,000 units in 99 groups (full)", 2_000, () => memoryPerSubject(10_000, DAY, 99, 101, 2_000));
  measure("1,000,000 per day (grouped)", "1,000,000 units in 99 groups (full)", 2_000, () => memoryPerSubject(1_000_000, DAY, 99, 10_001, 2_000));
  return rows;
}

export async function runLimiterBench(log: (line: string) => void = (line) => console.error(line)): Promise<LimiterBenchResult> {
  const batches = Math.round(envNumber("BENCH_LIMITER_BATCHES", 15));
  const redisUrl = process.env.BENCH_REDIS_URL || "redis://127.0.0.1:6379";
  const rows: LimiterRow[] = [];
  const skipped: string[] = [];
  const sets = { 2: limitSets(false), 3: limitSets(true) };
  const add = (r: LimiterRow) => {
    rows.push(r);
    log(`  ${r.limiter.padEnd(9)} ${r.limits} limits  ${String(r.concurrency).padStart(2)} in flight  ${round(r.medianNs / 1000, 3)} µs/decision (p10 ${round(r.p10Ns / 1000, 3)}, p90 ${round(r.p90Ns / 1000, 3)})  CPU here ${round(r.cpuNs / 1000, 3)} µs  Redis CPU ${r.redisCpuNs === null ? "–" : round(r.redisCpuNs / 1000, 3)} µs`);
  };
  log(`limiter bench: ${batches} batches per row, ${KEYS} keys`);

  const memory = new MemoryLimiter();
  try {
    for (const n of [2, 3] as const) add(await measure(memory, { limiter: "memory", limits: n, concurrency: 1 }, sets[n], 50_000, batches, undefined, () => {}));
    // The headers every counted response carries, from the states of one decision.
    for (const n of [2, 3] as const) {
      const states = (await memory.consume(sets[n][0]!, 1)).states;
      const headers: Limiter = { mode: "headers", consume: () => Promise.resolve({ admitted: rateLimitHeaders(states)["x-ratelimit-limit"] !== undefined, states }), close: async () => {} };
      add(await measure(headers, { limiter: "headers", limits: n, concurrency: 1 }, sets[n], 50_000, batches, undefined, () => {}));
    }
  } finally {
    await memory.close();
  }

  // Redis: is there one?
  const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 1_000, retryStrategy: () => null });
  probe.on("error", () => {});
  let info: string | null = null;
  try {
    await probe.connect();
    info = await probe.info("server");
  } catch (e) {
    skipped.push(
      `redis: nothing answers at ${redisUrl} (${(e as Error).message}). Start one (Debian/Ubuntu: apt-get install -y redis-server; then redis-server --port 6379 --save '' --daemonize yes) or set BENCH_REDIS_URL.`,
    );
    log(`  ${skipped.at(-1)}`);
  }
  let redisVersion: string | null = null;
  if (info !== null) {
    redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? null;
    const redisPid = localRedisPid(info);
    const deployment = `bench-${randomBytes(6).toString("hex")}`;
    const prefix = redisNamespace(deployment);
    let degraded: string | undefined;
    const limiter = new RedisLimiter({ url: redisUrl, deployment, onModeChange: (mode, reason) => mode === "redis-degraded" && (degraded ??= reason) });
    const check = () => {
      if (degraded !== undefined || limiter.mode !== "redis") throw new Error(`Redis degraded during the limiter benchmark (${degraded ?? limiter.mode}): the figures would be the in-memory fallback's`);
    };
    try {
      await limiter.ready(5_000);
      // The round trip alone: a GET on a client set up as RedisLimiter sets up its own.
      const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, commandTimeout: 250 });
      client.on("error", () => {});
      const get: Limiter = { mode: "redis GET", consume: () => client.get(`${prefix}get`).then(() => ({ admitted: true, states: [] })), close: async () => {} };
      try {
        await client.connect();
        for (const concurrency of [1, 50]) add(await measure(get, { limiter: "redis GET", limits: 0, concurrency }, sets[2], concurrency === 1 ? SEQUENTIAL_CALLS : CONCURRENT_CALLS, batches, redisPid, () => {}));
      } finally {
        client.disconnect();
      }
      for (const n of [2, 3] as const) {
        add(await measure(limiter, { limiter: "redis", limits: n, concurrency: 1 }, sets[n], SEQUENTIAL_CALLS, batches, redisPid, check));
        add(await measure(limiter, { limiter: "redis", limits: n, concurrency: 50 }, sets[n], CONCURRENT_CALLS, batches, redisPid, check));
      }
    } finally {
      await limiter.close();
      // This run's keys, whatever their TTL.
      let cursor = "0";
      do {
        const [next, keys] = await probe.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        if (keys.length > 0) await probe.del(...keys);
        cursor = next;
      } while (cursor !== "0");
    }
  }
  probe.disconnect();
  // Last: its thousands of subjects would otherwise weigh on the timed rows' heap.
  const memoryRows = runMemory(log);
  return { method: { batches, keys: KEYS, redis: info === null ? null : redisUrl, redisVersion }, rows, memory: memoryRows, skipped };
}

export function limiterTable(result: LimiterBenchResult): string[] {
  const µs = (ns: number | null) => (ns === null ? "–" : String(round(ns / 1000, ns < 10_000 ? 3 : 1)));
  const lines = [
    "| limiter | limits per decision | in flight | median µs/decision | p10 | p90 | CPU here µs/decision | Redis CPU µs/decision |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of result.rows) lines.push(`| ${r.limiter} | ${r.limits} | ${r.concurrency} | ${µs(r.medianNs)} | ${µs(r.p10Ns)} | ${µs(r.p90Ns)} | ${µs(r.cpuNs)} | ${µs(r.redisCpuNs)} |`);
  lines.push("", "Memory per active subject (one limit's log, MemoryLimiter):", "", "| limit | the subject's log holds | bytes per subject | subjects measured |", "|---|---|---:|---:|");
  for (const m of result.memory) lines.push(`| ${m.limit} | ${m.fill} | ${m.bytesPerSubject} | ${m.subjects} |`);
  for (const s of result.skipped) lines.push("", `Skipped: ${s}`);
  return lines;
}
