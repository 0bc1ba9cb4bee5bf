/**
 * HTTP benchmark: requests per second and p50/p99 latency of an authenticated GET /v1/me on a
 * real `keygate serve` (SQLite in a temporary data directory: key verification, key cache,
 * scope decision, rate limiting, request accounting, envelope, the /v1/me handler and its
 * store reads), against a bare Fastify route sending the same JSON text (serialised once on both
 * sides: keygate keeps each key's answer serialised), in the same run on
 * the same machine. keygate runs the VibeCode profile with its per-key platform limit raised
 * (BENCH_PER_MINUTE): the limiter counts every request but refuses none.
 *
 * Three processes: keygate and the bare server (each pinned to core 0 with taskset when the
 * machine has one and 2+ cores), and the load generator (autocannon, pinned to core 1). Only
 * 127.0.0.1 is loaded. Two keys are measured: the owner's management key `keygate serve` prints,
 * and a portal API key (vibe_api_, 10 scopes) created through the management API.
 *
 * Per target: one warm-up run, then BENCH_RUNS measured runs of BENCH_SECONDS each, the targets
 * interleaved round by round so drift hits both sides alike. Any non-2xx response, connection
 * error or timeout fails the benchmark.
 *
 * Environment:
 *   BENCH_SECONDS (10)            length of each measured run
 *   BENCH_RUNS (3)                measured runs per target
 *   BENCH_WARMUP_SECONDS (5)      length of the warm-up run
 *   BENCH_CONNECTIONS (50)        concurrent keep-alive connections
 *   BENCH_KEYS (management,api)   which keys to measure
 *   BENCH_QUIET_WAIT_SECONDS (90)  how long in all to wait, before runs, for other work on a
 *                                 shared machine to finish (0: never wait); one budget for
 *                                 every HTTP benchmark of a run (bench/harness.ts)
 *   BENCH_CPU_PROF=<dir>          run both servers under node --cpu-prof, profiles written there
 * CPU figures are in cores: the server's, the load generator's, and everything else's during
 * the run (noise: near 0 on a quiet machine); server CPU per response is in microseconds.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join } from "node:path";
import { BUILTIN_PROFILES } from "../src/profiles/index.ts";
import {
  type HttpRun,
  LoadGenerator,
  type LoadTarget,
  type QuietBudget,
  call,
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

export type { HttpRun } from "./harness.ts";

/**
 * The per-key platform limit keygate runs with here (VibeCode's is 300 a minute): high enough
 * that the limiter, which still counts every request, never refuses one of the benchmark's.
 */
const BENCH_PER_MINUTE = 1_000_000_000;
const requireHere = createRequire(import.meta.url);

export interface HttpSide {
  server: "keygate" | "bare";
  url: string;
  /** Body bytes of one response. */
  bodyBytes: number;
  warmup: HttpRun;
  runs: HttpRun[];
  median: { requestsPerSecond: number; p50Ms: number; p99Ms: number; serverCpu: number | null; serverCpuUs: number | null; loadgenCpu: number; otherCpu: number | null };
}

export interface HttpCase {
  /** Which key calls GET /v1/me. */
  key: "management" | "api";
  keygate: HttpSide;
  bare: HttpSide;
  /**
   * Of the medians: keygate / bare for req/s (the goal: at least 0.9) and latency (lower is
   * better); bare / keygate for server CPU per request (the req/s ratio a saturated core allows).
   */
  ratio: { requestsPerSecond: number; p50: number; p99: number; serverCpuUs: number | null };
}

export interface HttpBenchResult {
  method: {
    connections: number;
    seconds: number;
    warmupSeconds: number;
    runs: number;
    /** Cores the servers and the load generator were pinned to; null = not pinned. */
    pinning: { server: number; loadgen: number } | null;
    fastify: string;
    autocannon: string;
    profiles: string | null;
    /** Seconds spent waiting for other work on the machine before runs (budget BENCH_QUIET_WAIT_SECONDS). */
    quietWaitSeconds: number;
  };
  cases: HttpCase[];
}

interface Target extends LoadTarget {
  key: HttpCase["key"];
  server: HttpSide["server"];
  bodyBytes: number;
}

export async function runHttpBench(log: (line: string) => void = (line) => console.error(line), quiet: QuietBudget = quietBudgetFromEnv()): Promise<HttpBenchResult> {
  const s = settingsFromEnv();
  if (s.profileDir) mkdirSync(s.profileDir, { recursive: true });
  const wantedKeys = (process.env.BENCH_KEYS || "management,api").split(",").map((k) => k.trim()) as HttpCase["key"][];
  for (const k of wantedKeys) if (k !== "management" && k !== "api") throw new Error(`BENCH_KEYS lists management and/or api, not "${k}"`);
  const quietAtStart = quiet.seconds;
  const serverCore = s.pinning?.server ?? null;
  log(`http bench: ${s.connections} connections, ${s.runs} × ${s.seconds} s per target after a ${s.warmupSeconds} s warm-up; ${pinningText(s)}`);

  const tmp = mkdtempSync(join(os.tmpdir(), "keygate-bench-"));
  const children: ChildProcess[] = [];
  let loadgen: LoadGenerator | undefined;
  try {
    // keygate as an operator starts it: an empty data directory, set up on first start, with the
    // VibeCode profile as a profile file whose only change is the platform limit.
    const spec = JSON.parse(JSON.stringify(BUILTIN_PROFILES.vibecode!)) as NonNullable<(typeof BUILTIN_PROFILES)["vibecode"]>;
    spec.limits = { ...spec.limits, perMinute: BENCH_PER_MINUTE };
    const profileFile = join(tmp, "vibecode-bench.json");
    writeFileSync(profileFile, JSON.stringify(spec));
    const keygate = spawnNode(serverCore, [...s.profArgs, "bin/keygate.js", "serve", "--data-dir", join(tmp, "data"), "--port", "0", "--profile", profileFile], "pipe");
    children.push(keygate);
    const banner = await waitFor(keygate, /keygate listening on (http:\/\/\S+)/, "keygate serve");
    const keygateUrl = /keygate listening on (http:\/\/\S+)/.exec(banner)![1]!;
    const managementKey = /store it now\): (\S+)/.exec(banner)?.[1];
    if (!managementKey) throw new Error(`keygate serve printed no management key:\n${banner}`);

    // A portal API key, created the way a user would.
    const portal = expectStatus("POST /v1/portals", await call("POST", `${keygateUrl}/v1/portals`, managementKey, { domain: "bench.example.com", name: "bench", upstream: { kind: "sandbox" } }), 201);
    const created = expectStatus(
      "POST /v1/keys",
      await call("POST", `${keygateUrl}/v1/keys`, managementKey, { portalId: portal.data.id, type: "api", name: "bench api key", scopes: KEY_SCOPES }),
      201,
    );
    const keys = { management: managementKey, api: created.data.rawKey as string };

    // The bare server returns exactly the bodies keygate returns for these keys, as text (serialised once, as keygate keeps them).
    const bodies: Record<string, string> = {};
    const bodyBytes: Record<string, number> = {};
    for (const [name, key] of Object.entries(keys)) {
      const me = await call("GET", `${keygateUrl}/v1/me`, key);
      expectStatus(`GET /v1/me (${name} key)`, me, 200);
      bodies[`/me/${name}`] = me.text;
      bodyBytes[name] = Buffer.byteLength(me.text);
    }
    writeFileSync(join(tmp, "payloads.json"), JSON.stringify(bodies));
    const bare = spawnNode(serverCore, [...s.profArgs, "bench/servers/bare.ts", join(tmp, "payloads.json")], "pipe");
    children.push(bare);
    const bareUrl = /listening (http:\/\/\S+)/.exec(await waitFor(bare, /listening (http:\/\/\S+)/, "bare Fastify server"))![1]!;

    loadgen = new LoadGenerator(s.pinning?.loadgen ?? null);
    const targets: Target[] = [];
    for (const [name, key] of Object.entries(keys) as [HttpCase["key"], string][]) {
      if (!wantedKeys.includes(name)) continue;
      const headers = { "x-api-key": key };
      targets.push({ key: name, server: "keygate", label: `keygate ${name.padEnd(10)}`, url: `${keygateUrl}/v1/me`, headers, pid: keygate.pid, bodyBytes: bodyBytes[name]! });
      targets.push({ key: name, server: "bare", label: `bare    ${name.padEnd(10)}`, url: `${bareUrl}/me/${name}`, headers, pid: bare.pid, bodyBytes: bodyBytes[name]! });
    }

    const measured = await interleave(loadgen, targets, s, quiet, log);

    const side = (t: Target): HttpSide => {
      const m = measured.get(t)!;
      const med = mediansOf(m.runs);
      return {
        server: t.server,
        url: t.url,
        bodyBytes: t.bodyBytes,
        warmup: m.warmup,
        runs: m.runs,
        median: { requestsPerSecond: med.requestsPerSecond, p50Ms: med.p50Ms, p99Ms: med.p99Ms, serverCpu: med.serverCpu, serverCpuUs: med.serverCpuUs, loadgenCpu: med.loadgenCpu, otherCpu: med.otherCpu },
      };
    };
    const cases: HttpCase[] = wantedKeys.map((key) => {
      const k = side(targets.find((t) => t.key === key && t.server === "keygate")!);
      const b = side(targets.find((t) => t.key === key && t.server === "bare")!);
      return {
        key,
        keygate: k,
        bare: b,
        ratio: {
          requestsPerSecond: round(k.median.requestsPerSecond / b.median.requestsPerSecond, 3),
          p50: round(k.median.p50Ms / b.median.p50Ms, 3),
          p99: round(k.median.p99Ms / b.median.p99Ms, 3),
          serverCpuUs: k.median.serverCpuUs === null || b.median.serverCpuUs === null ? null : round(b.median.serverCpuUs / k.median.serverCpuUs, 3),
        },
      };
    });
    return {
      method: {
        connections: s.connections,
        seconds: s.seconds,
        warmupSeconds: s.warmupSeconds,
        runs: s.runs,
        pinning: s.pinning,
        fastify: (requireHere("fastify/package.json") as { version: string }).version,
        autocannon: (requireHere("autocannon/package.json") as { version: string }).version,
        profiles: s.profileDir,
        quietWaitSeconds: round(quietAtStart - quiet.seconds, 1),
      },
      cases,
    };
  } finally {
    await loadgen?.close();
    for (const child of children) await stop(child);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The Markdown table of an HTTP benchmark result: medians per side, then the ratio per key. */
export function httpTable(result: HttpBenchResult): string[] {
  const lines = [
    "| GET /v1/me with | server | median req/s | p50 ms | p99 ms | req/s per run | server CPU µs/req | server CPU | loadgen CPU | other CPU |",
    "|---|---|---:|---:|---:|---|---:|---:|---:|---:|",
  ];
  for (const c of result.cases) {
    for (const s of [c.keygate, c.bare]) {
      const name = s.server === "keygate" ? "keygate" : "bare Fastify (same body)";
      lines.push(
        `| ${c.key} key (${s.bodyBytes} B) | ${name} | ${s.median.requestsPerSecond} | ${s.median.p50Ms} | ${s.median.p99Ms} | ${s.runs.map((r) => r.requestsPerSecond).join(" / ")} | ${s.median.serverCpuUs ?? "–"} | ${s.median.serverCpu ?? "–"} | ${s.median.loadgenCpu} | ${s.median.otherCpu ?? "–"} |`,
      );
    }
  }
  lines.push("", "| GET /v1/me with | keygate / bare req/s | p50 keygate / bare | p99 keygate / bare | bare / keygate CPU per request | goal ≥ 0.9 (req/s) |", "|---|---:|---:|---:|---:|---|");
  for (const c of result.cases) {
    lines.push(`| ${c.key} key | ${c.ratio.requestsPerSecond} | ${c.ratio.p50} | ${c.ratio.p99} | ${c.ratio.serverCpuUs ?? "–"} | ${c.ratio.requestsPerSecond >= 0.9 ? "met" : "not met"} |`);
  }
  return lines;
}
