/**
 * Limits benchmark (issue 4): what rate limiting costs the throughput of an authenticated
 * GET /v1/me, with limits on in memory, on in Redis, and off, in the same run. Goal: limits cost
 * at most 5 % of the throughput with the memory limiter, at most 15 % with Redis.
 *
 * Three keygate processes, each `node bench/servers/keygate.ts` (the real server, built as
 * `keygate serve` builds it, on its own empty data directory with embedded SQLite, set up on first
 * start as `serve` does), differing only in the limiter:
 *
 *   off     a Limiter that admits everything and counts nothing (no rate-limit headers either)
 *   memory  the default MemoryLimiter (`keygate serve`)
 *   redis   RedisLimiter + RedisInvalidation on BENCH_REDIS_URL (default redis://127.0.0.1:6379),
 *           as `keygate serve --redis <url>`; skipped, with the command to start one, when nothing
 *           answers there
 *
 * A fourth, `memory-unmetered`, is `memory` with metrics off (`buildServer({metrics: false})`): against
 * it, `memory` gives what counting requests for GET /metrics costs the hot path (issue 14: goal
 * ≤ 3 %). Every other target runs with metrics on, as `keygate serve` does.
 *
 * The profile is VibeCode with its platform limit raised to 10⁹ a minute (as in bench/http.bench.ts);
 * the key is a portal API key (vibe_api_, the 10 scopes of the scope benchmark) with its own
 * rateLimit of 100,000 a second, so every request is counted in 2 limits (platform per minute, key
 * per second) and none is refused. Before the runs each server is checked: its /healthz names its
 * limiter, and ON responses carry the rate-limit headers of both limits, OFF ones none; the Redis
 * server must still say "redis" after the runs, and must never have logged that Redis went away.
 *
 * Pinning, load, runs and knobs are bench/http.bench.ts's (bench/harness.ts): the servers on core 0,
 * the load generator on core 1, a warm-up then BENCH_RUNS interleaved runs per target, medians.
 * Redis is not ours to pin: its CPU per request is reported beside keygate's (when it runs on this
 * machine), and it counts in "other CPU" no more.
 */
import type { ChildProcess } from "node:child_process";
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { BUILTIN_PROFILES } from "../src/profiles/index.ts";
import {
  type HttpRun,
  LoadGenerator,
  type LoadTarget,
  type MedianFigures,
  type QuietBudget,
  call,
  captureOutput,
  expectStatus,
  KEY_SCOPES,
  interleave,
  mediansOf,
  pinningText,
  quietBudgetFromEnv,
  round,
  settingsFromEnv,
  spawnNode,
  stop,
  waitFor,
} from "./harness.ts";

export type LimitsMode = "off" | "memory" | "redis" | "memory-unmetered";

export interface LimitsSide {
  limits: LimitsMode;
  url: string;
  bodyBytes: number;
  warmup: HttpRun;
  runs: HttpRun[];
  median: MedianFigures;
}

export interface LimitsRatio {
  /** memory, redis: against off; metrics: memory against memory-unmetered. */
  limits: "memory" | "redis" | "metrics";
  /** ON / OFF of the median req/s; 1 − it is the share of throughput limits cost. */
  requestsPerSecond: number;
  throughputCost: number;
  p50: number;
  p99: number;
  /** keygate's server CPU per request, ON − OFF, in µs: the limiter's cost per request. */
  serverCpuUsAdded: number | null;
  /** 1 − OFF / ON server CPU per request: the throughput share limits cost on a saturated core. */
  cpuCost: number | null;
  /** The ceiling on throughputCost: 0.05 (memory), 0.15 (Redis), 0.03 (metrics). */
  goal: number;
  met: boolean;
}

export interface LimitsBenchResult {
  method: {
    connections: number;
    seconds: number;
    warmupSeconds: number;
    runs: number;
    pinning: { server: number; loadgen: number } | null;
    route: string;
    key: string;
    limitsPerRequest: number;
    redis: string | null;
    redisVersion: string | null;
    quietWaitSeconds: number;
  };
  sides: LimitsSide[];
  ratios: LimitsRatio[];
  skipped: string[];
}

const BENCH_PER_MINUTE = 1_000_000_000;
const KEY_RATE_LIMIT = 100_000;
const GOALS = { memory: 0.05, redis: 0.15, metrics: 0.03 } as const;

interface Server {
  mode: LimitsMode;
  child: ChildProcess;
  url: string;
  key: string;
  bodyBytes: number;
  output: { text(): string };
}

/** Redis at `url`: its version and, when it is a process of this machine, its pid; null when nothing answers. */
async function probeRedis(url: string): Promise<{ version: string | null; pid: number | undefined } | { error: string }> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 1_000, retryStrategy: () => null });
  probe.on("error", () => {});
  try {
    await probe.connect();
    const info = await probe.info("server");
    const pid = Number(/process_id:(\d+)/.exec(info)?.[1]);
    let local: number | undefined;
    try {
      if (pid && readFileSync(`/proc/${pid}/comm`, "utf8").includes("redis")) local = pid;
    } catch {
      // not a process of this machine
    }
    return { version: /redis_version:(\S+)/.exec(info)?.[1] ?? null, pid: local };
  } catch (e) {
    return { error: (e as Error).message };
  } finally {
    probe.disconnect();
  }
}

async function healthMode(url: string): Promise<string> {
  return (JSON.parse((await call("GET", `${url}/healthz`, undefined)).text) as { limits: string }).limits;
}

export async function runLimitsBench(log: (line: string) => void = (line) => console.error(line), quiet: QuietBudget = quietBudgetFromEnv()): Promise<LimitsBenchResult> {
  const s = settingsFromEnv();
  if (s.profileDir) mkdirSync(s.profileDir, { recursive: true });
  const quietAtStart = quiet.seconds;
  const redisUrl = process.env.BENCH_REDIS_URL || "redis://127.0.0.1:6379";
  const skipped: string[] = [];
  const redis = await probeRedis(redisUrl);
  const modes: LimitsMode[] = ["off", "memory", "memory-unmetered"];
  if ("error" in redis) {
    skipped.push(
      `redis: nothing answers at ${redisUrl} (${redis.error}). Start one (Debian/Ubuntu: apt-get install -y redis-server; then redis-server --port 6379 --save '' --daemonize yes) or set BENCH_REDIS_URL.`,
    );
    log(`limits bench: ${skipped.at(-1)}`);
  } else modes.push("redis");
  log(`limits bench: GET /v1/me, limits ${modes.join(" / ")}; ${s.connections} connections, ${s.runs} × ${s.seconds} s per target after a ${s.warmupSeconds} s warm-up; ${pinningText(s)}`);

  const tmp = mkdtempSync(join(os.tmpdir(), "keygate-bench-limits-"));
  const servers: Server[] = [];
  let loadgen: LoadGenerator | undefined;
  try {
    const spec = JSON.parse(JSON.stringify(BUILTIN_PROFILES.vibecode!)) as NonNullable<(typeof BUILTIN_PROFILES)["vibecode"]>;
    spec.limits = { ...spec.limits, perMinute: BENCH_PER_MINUTE };
    const profileFile = join(tmp, "vibecode-bench.json");
    writeFileSync(profileFile, JSON.stringify(spec));

    for (const mode of modes) {
      const args = [...s.profArgs, "bench/servers/keygate.ts", "--data-dir", join(tmp, `data-${mode}`), "--profile", profileFile, "--limits", mode];
      if (mode === "redis") args.push("--redis", redisUrl);
      const child = spawnNode(s.pinning?.server ?? null, args, "pipe");
      const output = captureOutput(child);
      // Pushed before it is ready, so that it is stopped whatever happens.
      const server = { mode, child, url: "", key: "", bodyBytes: 0, output } as Server;
      servers.push(server);
      const banner = await waitFor(child, /keygate listening on (http:\/\/\S+)/, `keygate (limits ${mode})`);
      server.url = /keygate listening on (http:\/\/\S+)/.exec(banner)![1]!;
      const managementKey = /store it now\): (\S+)/.exec(banner)?.[1];
      if (!managementKey) throw new Error(`keygate (limits ${mode}) printed no management key:\n${banner}`);
      const portal = expectStatus("POST /v1/portals", await call("POST", `${server.url}/v1/portals`, managementKey, { domain: "bench.example.com", name: "bench", upstream: { kind: "sandbox" } }), 201);
      const created = expectStatus(
        "POST /v1/keys",
        await call("POST", `${server.url}/v1/keys`, managementKey, { portalId: portal.data.id, type: "api", name: "bench api key", scopes: KEY_SCOPES, rateLimit: KEY_RATE_LIMIT }),
        201,
      );
      server.key = created.data.rawKey as string;

      // Check that the limiter is the one meant, and counts (or not).
      const health = await healthMode(server.url);
      if (health !== (mode === "memory-unmetered" ? "memory" : mode)) throw new Error(`keygate (limits ${mode}): /healthz says limits "${health}"`);
      const me = await call("GET", `${server.url}/v1/me`, server.key);
      expectStatus(`GET /v1/me (limits ${mode})`, me, 200);
      server.bodyBytes = Buffer.byteLength(me.text);
      const policy = me.headers.get("ratelimit-policy");
      if (mode === "off" ? policy !== null || me.headers.get("x-ratelimit-limit") !== null : (policy?.split(",").length ?? 0) !== 2) {
        throw new Error(`keygate (limits ${mode}): unexpected rate-limit headers on GET /v1/me: RateLimit-Policy ${JSON.stringify(policy)}`);
      }
    }

    loadgen = new LoadGenerator(s.pinning?.loadgen ?? null);
    const redisPid = "error" in redis ? undefined : redis.pid;
    const targets: (LoadTarget & { mode: LimitsMode })[] = servers.map((sv) => ({
      mode: sv.mode,
      label: `keygate limits ${sv.mode.padEnd(6)}`,
      url: `${sv.url}/v1/me`,
      headers: { "x-api-key": sv.key },
      pid: sv.child.pid,
      // Redis serves the redis target only; for the others its CPU (other clients') is noise, in "other CPU".
      companions: sv.mode === "redis" && redisPid !== undefined ? [{ name: "redis", pid: redisPid }] : undefined,
    }));
    const redisServer = servers.find((sv) => sv.mode === "redis");
    const checkRedis = async () => {
      if (!redisServer) return;
      const health = await healthMode(redisServer.url);
      if (health !== "redis" || /Redis is unreachable/.test(redisServer.output.text())) {
        throw new Error(`keygate (limits redis) lost Redis during the benchmark (/healthz: ${health}): its figures would be the in-memory fallback's\n${redisServer.output.text().slice(-2000)}`);
      }
    };
    const measured = await interleave(loadgen, targets, s, quiet, log, async (t) => {
      if (t.mode === "redis") await checkRedis();
    });

    const sides: LimitsSide[] = targets.map((t) => {
      const m = measured.get(t)!;
      return { limits: t.mode, url: t.url, bodyBytes: servers.find((sv) => sv.mode === t.mode)!.bodyBytes, warmup: m.warmup, runs: m.runs, median: mediansOf(m.runs) };
    });
    const off = sides.find((x) => x.limits === "off")!;
    const unmetered = sides.find((x) => x.limits === "memory-unmetered")!;
    const pairs = sides
      .filter((x): x is LimitsSide & { limits: "memory" | "redis" } => x.limits === "memory" || x.limits === "redis")
      .map((on): { name: LimitsRatio["limits"]; on: LimitsSide; off: LimitsSide } => ({ name: on.limits, on, off }));
    pairs.push({ name: "metrics", on: sides.find((x) => x.limits === "memory")!, off: unmetered });
    const ratios: LimitsRatio[] = pairs.map(({ name, on, off }) => {
        const rps = round(on.median.requestsPerSecond / off.median.requestsPerSecond, 3);
        const cpuOn = on.median.serverCpuUs;
        const cpuOff = off.median.serverCpuUs;
        return {
          limits: name,
          requestsPerSecond: rps,
          throughputCost: round(1 - rps, 3),
          p50: round(on.median.p50Ms / off.median.p50Ms, 3),
          p99: round(on.median.p99Ms / off.median.p99Ms, 3),
          serverCpuUsAdded: cpuOn === null || cpuOff === null ? null : cpuOn - cpuOff,
          cpuCost: cpuOn === null || cpuOff === null ? null : round(1 - cpuOff / cpuOn, 3),
          goal: GOALS[name],
          met: 1 - rps <= GOALS[name],
        };
      });
    return {
      method: {
        connections: s.connections,
        seconds: s.seconds,
        warmupSeconds: s.warmupSeconds,
        runs: s.runs,
        pinning: s.pinning,
        route: "GET /v1/me",
        key: `VibeCode portal API key, 10 scopes, rateLimit ${KEY_RATE_LIMIT}/s; platform limit ${BENCH_PER_MINUTE}/min`,
        limitsPerRequest: 2,
        redis: "error" in redis ? null : redisUrl,
        redisVersion: "error" in redis ? null : redis.version,
        quietWaitSeconds: round(quietAtStart - quiet.seconds, 1),
      },
      sides,
      ratios,
      skipped,
    };
  } finally {
    await loadgen?.close();
    for (const sv of servers) await stop(sv.child);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The Markdown tables of a limits benchmark result: medians per limiter, then ON against OFF. */
export function limitsTable(result: LimitsBenchResult): string[] {
  const lines = [
    "| GET /v1/me, limits | median req/s | p50 ms | p99 ms | req/s per run | keygate CPU µs/req | keygate CPU | Redis CPU µs/req | loadgen CPU | other CPU |",
    "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
  ];
  const name = { off: "off (admits all, counts nothing)", memory: "on, memory", redis: "on, Redis", "memory-unmetered": "on, memory, metrics off" };
  for (const x of result.sides) {
    const redisUs = x.limits === "redis" ? (x.median.companions?.redis?.cpuUs ?? "–") : "–";
    lines.push(
      `| ${name[x.limits]} | ${x.median.requestsPerSecond} | ${x.median.p50Ms} | ${x.median.p99Ms} | ${x.runs.map((r) => r.requestsPerSecond).join(" / ")} | ${x.median.serverCpuUs ?? "–"} | ${x.median.serverCpu ?? "–"} | ${redisUs} | ${x.median.loadgenCpu} | ${x.median.otherCpu ?? "–"} |`,
    );
  }
  lines.push(
    "",
    "| limits (metrics: memory against memory with metrics off) | ON / OFF req/s | throughput cost | goal | p50 ON / OFF | p99 ON / OFF | keygate CPU µs/req added | cost on a saturated core (CPU) |",
    "|---|---:|---:|---|---:|---:|---:|---:|",
  );
  for (const r of result.ratios) {
    const pct = (x: number) => `${round(x * 100, 1)} %`;
    lines.push(
      `| ${r.limits} | ${r.requestsPerSecond} | ${pct(r.throughputCost)} | ≤ ${pct(r.goal)}: ${r.met ? "met" : "not met"} | ${r.p50} | ${r.p99} | ${r.serverCpuUsAdded ?? "–"} | ${r.cpuCost === null ? "–" : pct(r.cpuCost)} |`,
    );
  }
  for (const s of result.skipped) lines.push("", `Skipped: ${s}`);
  return lines;
}
