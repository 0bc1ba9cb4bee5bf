/**
 * HTTP benchmark: requests per second and p50/p99 latency of an authenticated GET /v1/me on a
 * real `keygate serve` (SQLite in a temporary data directory: key verification, key cache,
 * scope decision, rate limiting, request accounting, envelope, the /v1/me handler and its
 * store reads), against a bare Fastify route returning the same JSON body, in the same run on
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
 *   BENCH_QUIET_WAIT_SECONDS (120) how long in all to wait, before runs, for other work on a
 *                                 shared machine to finish (0: never wait)
 *   BENCH_CPU_PROF=<dir>          run both servers under node --cpu-prof, profiles written there
 * CPU figures are in cores: the server's, the load generator's, and everything else's during
 * the run (noise: near 0 on a quiet machine); server CPU per response is in microseconds.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BUILTIN_PROFILES } from "../src/profiles/index.ts";
import type { LoadRequest, LoadResult } from "./loadgen.ts";

/**
 * The per-key platform limit keygate runs with here (VibeCode's is 300 a minute): high enough
 * that the limiter, which still counts every request, never refuses one of the benchmark's.
 */
const BENCH_PER_MINUTE = 1_000_000_000;
const SERVER_CORE = 0;
const LOADGEN_CORE = 1;
const repo = new URL("../", import.meta.url);
const requireHere = createRequire(import.meta.url);

export interface HttpRun {
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  responses: number;
  duration: number;
  /** CPU the server process used over the run, as a share of one core (null off Linux). */
  serverCpu: number | null;
  /** Server CPU time per response, in microseconds: steadier than req/s when the machine is shared. */
  serverCpuUs: number | null;
  loadgenCpu: number;
  /** CPU used by everything else on the machine during the run, in cores (null off Linux): noise. */
  otherCpu: number | null;
  /** CPU the hypervisor took from this machine during the run, in cores. */
  stealCpu: number | null;
}

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

const envNumber = (name: string, fallback: number, allowZero = false): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) throw new Error(`${name} must be a ${allowZero ? "non-negative" : "positive"} number, not "${raw}"`);
  return value;
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

function canPin(): boolean {
  if (os.availableParallelism() < 2) return false;
  return spawnSync("taskset", ["-c", String(SERVER_CORE), "true"]).status === 0;
}

/** Environment for children: no KEYGATE_* from the caller (secret, database URL, data dir). */
function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KEYGATE_")));
}

function spawnNode(core: number | null, args: string[], stdio: "pipe" | "ipc"): ChildProcess {
  const command = core === null ? process.execPath : "taskset";
  const argv = core === null ? args : ["-c", String(core), process.execPath, ...args];
  return spawn(command, argv, {
    cwd: repo,
    env: childEnv(),
    stdio: stdio === "ipc" ? ["ignore", "inherit", "inherit", "ipc"] : ["ignore", "pipe", "pipe"],
  });
}

/** Resolves with everything printed so far once `ready` matches stdout; rejects if the child exits first. */
function waitFor(child: ChildProcess, ready: RegExp, what: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    let out = "";
    let err = "";
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${why}\nstdout:\n${out}\nstderr:\n${err}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolvePromise(out);
      }
    });
    child.once("exit", (code, signal) => fail(`exited early (${signal ?? code})`));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

const clockTicks = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  return Number(r.stdout) > 0 ? Number(r.stdout) : 100;
})();

/** Busy (user + system + irq) and stolen CPU seconds of the whole machine, from /proc/stat; null where there is none. */
function machineCpu(): { busy: number; steal: number } | null {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
    return { busy: (user + nice + system + irq + softirq) / clockTicks, steal: steal / clockTicks };
  } catch {
    return null;
  }
}

/**
 * On a shared machine, waits (within a total budget) until the rest of it is quiet: under
 * QUIET_CORES busy while nothing of ours is loaded. Returns the seconds waited.
 */
const QUIET_CORES = 0.2;
async function waitForQuiet(budget: { seconds: number }, log: (line: string) => void): Promise<number> {
  let waited = 0;
  for (;;) {
    const before = machineCpu();
    await sleep(500);
    const after = machineCpu();
    if (!before || !after) return waited;
    const busy = (after.busy - before.busy) / 0.5;
    if (busy < QUIET_CORES || budget.seconds <= 0) {
      if (waited > 0) log(`  (waited ${waited} s for other work on the machine to finish${busy < QUIET_CORES ? "" : "; gave up, budget spent"})`);
      return waited;
    }
    waited += 0.5;
    budget.seconds -= 0.5;
  }
}

/** User + system CPU seconds of a process (all its threads), from /proc; null where there is none. */
function cpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return null;
  }
}

class LoadGenerator {
  readonly #child: ChildProcess;
  #next = 1;
  readonly #pending = new Map<number, { resolve: (r: LoadResult) => void; reject: (e: Error) => void }>();

  constructor(core: number | null) {
    this.#child = spawnNode(core, ["bench/loadgen.ts"], "ipc");
    this.#child.on("message", (m: LoadResult | { id: number; error: string }) => {
      const waiting = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if ("error" in m) waiting?.reject(new Error(`load generator: ${m.error}`));
      else waiting?.resolve(m);
    });
    this.#child.on("exit", (code) => {
      for (const w of this.#pending.values()) w.reject(new Error(`load generator exited (${code})`));
      this.#pending.clear();
    });
  }

  run(request: Omit<LoadRequest, "id">): Promise<LoadResult> {
    const id = this.#next++;
    return new Promise((resolvePromise, reject) => {
      this.#pending.set(id, { resolve: resolvePromise, reject });
      this.#child.send({ ...request, id });
    });
  }

  close(): Promise<void> {
    if (this.#child.connected) this.#child.disconnect();
    return stop(this.#child);
  }
}

async function call(method: string, url: string, key: string, body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method,
    headers: { "x-api-key": key, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

function expectStatus(what: string, r: { status: number; text: string }, status: number): { data: Record<string, unknown> } {
  if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 500)}`);
  return JSON.parse(r.text) as { data: Record<string, unknown> };
}

/** The 10 VibeCode scopes of the scope benchmark's key. */
const API_KEY_SCOPES = ["crm", "task", "tasks", "im", "imbot", "disk", "user", "department", "log", "calendar"];

interface Target {
  key: HttpCase["key"];
  server: HttpSide["server"];
  url: string;
  headers: Record<string, string>;
  pid: number | undefined;
  bodyBytes: number;
  warmup?: HttpRun;
  runs: HttpRun[];
}

export async function runHttpBench(log: (line: string) => void = (line) => console.error(line)): Promise<HttpBenchResult> {
  const seconds = envNumber("BENCH_SECONDS", 10);
  const runs = Math.round(envNumber("BENCH_RUNS", 3));
  const warmupSeconds = envNumber("BENCH_WARMUP_SECONDS", Math.min(5, seconds));
  const connections = Math.round(envNumber("BENCH_CONNECTIONS", 50));
  const profileDir = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : null;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const profArgs = profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [];
  const wantedKeys = (process.env.BENCH_KEYS || "management,api").split(",").map((k) => k.trim()) as HttpCase["key"][];
  for (const k of wantedKeys) if (k !== "management" && k !== "api") throw new Error(`BENCH_KEYS lists management and/or api, not "${k}"`);
  const quietWait = envNumber("BENCH_QUIET_WAIT_SECONDS", 120, true);
  const quietBudget = { seconds: quietWait };
  const pinned = canPin();
  const serverCore = pinned ? SERVER_CORE : null;
  const loadgenCore = pinned ? LOADGEN_CORE : null;
  log(`http bench: ${connections} connections, ${runs} × ${seconds} s per target after a ${warmupSeconds} s warm-up; ${pinned ? `servers on core ${SERVER_CORE}, load generator on core ${LOADGEN_CORE}` : "not pinned (no taskset or < 2 cores)"}`);

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
    const keygate = spawnNode(serverCore, [...profArgs, "bin/keygate.js", "serve", "--data-dir", join(tmp, "data"), "--port", "0", "--profile", profileFile], "pipe");
    children.push(keygate);
    const banner = await waitFor(keygate, /keygate listening on (http:\/\/\S+)/, "keygate serve");
    const keygateUrl = /keygate listening on (http:\/\/\S+)/.exec(banner)![1]!;
    const managementKey = /store it now\): (\S+)/.exec(banner)?.[1];
    if (!managementKey) throw new Error(`keygate serve printed no management key:\n${banner}`);

    // A portal API key, created the way a user would.
    const portal = expectStatus("POST /v1/portals", await call("POST", `${keygateUrl}/v1/portals`, managementKey, { domain: "bench.example.com", name: "bench", upstream: { kind: "sandbox" } }), 201);
    const created = expectStatus(
      "POST /v1/keys",
      await call("POST", `${keygateUrl}/v1/keys`, managementKey, { portalId: portal.data.id, type: "api", name: "bench api key", scopes: API_KEY_SCOPES }),
      201,
    );
    const keys = { management: managementKey, api: created.data.rawKey as string };

    // The bare server returns exactly the bodies keygate returns for these keys.
    const bodies: Record<string, unknown> = {};
    const bodyBytes: Record<string, number> = {};
    for (const [name, key] of Object.entries(keys)) {
      const me = await call("GET", `${keygateUrl}/v1/me`, key);
      expectStatus(`GET /v1/me (${name} key)`, me, 200);
      bodies[`/me/${name}`] = JSON.parse(me.text);
      bodyBytes[name] = Buffer.byteLength(me.text);
    }
    writeFileSync(join(tmp, "payloads.json"), JSON.stringify(bodies));
    const bare = spawnNode(serverCore, [...profArgs, "bench/servers/bare.ts", join(tmp, "payloads.json")], "pipe");
    children.push(bare);
    const bareUrl = /listening (http:\/\/\S+)/.exec(await waitFor(bare, /listening (http:\/\/\S+)/, "bare Fastify server"))![1]!;

    loadgen = new LoadGenerator(loadgenCore);
    const targets: Target[] = [];
    for (const [name, key] of Object.entries(keys) as [HttpCase["key"], string][]) {
      if (!wantedKeys.includes(name)) continue;
      targets.push({ key: name, server: "keygate", url: `${keygateUrl}/v1/me`, headers: { "x-api-key": key }, pid: keygate.pid, bodyBytes: bodyBytes[name]!, runs: [] });
      targets.push({ key: name, server: "bare", url: `${bareUrl}/me/${name}`, headers: { "x-api-key": key }, pid: bare.pid, bodyBytes: bodyBytes[name]!, runs: [] });
    }

    const measure = async (t: Target, duration: number, label: string): Promise<HttpRun> => {
      await waitForQuiet(quietBudget, log);
      const cpuBefore = cpuSeconds(t.pid);
      const machineBefore = machineCpu();
      const wallBefore = process.hrtime.bigint();
      const r = await loadgen!.run({ url: t.url, headers: t.headers, connections, seconds: duration });
      const cpuAfter = cpuSeconds(t.pid);
      const machineAfter = machineCpu();
      const wall = Number(process.hrtime.bigint() - wallBefore) / 1e9;
      if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0 || r.responses === 0) {
        throw new Error(`${t.server} GET /v1/me (${t.key} key), ${label}: ${r.responses} responses, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts; status codes ${JSON.stringify(r.statusCodes)}`);
      }
      const run: HttpRun = {
        requestsPerSecond: r.requestsPerSecond,
        p50Ms: r.p50Ms,
        p90Ms: r.p90Ms,
        p99Ms: r.p99Ms,
        maxMs: r.maxMs,
        responses: r.responses,
        duration: r.duration,
        serverCpu: cpuBefore === null || cpuAfter === null ? null : round((cpuAfter - cpuBefore) / wall),
        serverCpuUs: cpuBefore === null || cpuAfter === null ? null : Math.round(((cpuAfter - cpuBefore) / r.responses) * 1e6),
        loadgenCpu: r.loadgenCpu,
        otherCpu: null,
        stealCpu: null,
      };
      if (machineBefore && machineAfter && cpuBefore !== null && cpuAfter !== null) {
        // The load generator's own share is measured over its run, close enough to this window.
        run.otherCpu = round(Math.max(0, (machineAfter.busy - machineBefore.busy) / wall - (cpuAfter - cpuBefore) / wall - r.loadgenCpu));
        run.stealCpu = round((machineAfter.steal - machineBefore.steal) / wall);
      }
      log(`  ${label.padEnd(8)} ${t.server.padEnd(7)} ${t.key.padEnd(10)} ${String(run.requestsPerSecond).padStart(7)} req/s  p50 ${run.p50Ms} ms  p99 ${run.p99Ms} ms  server CPU ${run.serverCpu ?? "?"} (${run.serverCpuUs ?? "?"} µs/req)  loadgen CPU ${run.loadgenCpu}  other CPU ${run.otherCpu ?? "?"}  steal ${run.stealCpu ?? "?"}`);
      return run;
    };

    for (const t of targets) t.warmup = await measure(t, warmupSeconds, "warm-up");
    for (let i = 1; i <= runs; i++) for (const t of targets) t.runs.push(await measure(t, seconds, `run ${i}`));

    const side = (t: Target): HttpSide => ({
      server: t.server,
      url: t.url,
      bodyBytes: t.bodyBytes,
      warmup: t.warmup!,
      runs: t.runs,
      median: {
        requestsPerSecond: Math.round(median(t.runs.map((r) => r.requestsPerSecond))),
        p50Ms: round(median(t.runs.map((r) => r.p50Ms))),
        p99Ms: round(median(t.runs.map((r) => r.p99Ms))),
        serverCpu: t.runs.every((r) => r.serverCpu !== null) ? round(median(t.runs.map((r) => r.serverCpu!))) : null,
        serverCpuUs: t.runs.every((r) => r.serverCpuUs !== null) ? Math.round(median(t.runs.map((r) => r.serverCpuUs!))) : null,
        loadgenCpu: round(median(t.runs.map((r) => r.loadgenCpu))),
        otherCpu: t.runs.every((r) => r.otherCpu !== null) ? round(median(t.runs.map((r) => r.otherCpu!))) : null,
      },
    });
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
        connections,
        seconds,
        warmupSeconds,
        runs,
        pinning: pinned ? { server: SERVER_CORE, loadgen: LOADGEN_CORE } : null,
        fastify: (requireHere("fastify/package.json") as { version: string }).version,
        autocannon: (requireHere("autocannon/package.json") as { version: string }).version,
        profiles: profileDir,
        quietWaitSeconds: round(quietWait - quietBudget.seconds, 1),
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
