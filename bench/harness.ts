/**
 * What the HTTP benchmarks share (bench/http.bench.ts, bench/limits.bench.ts,
 * bench/proxy.bench.ts): their knobs, pinning with taskset, child processes, the load generator,
 * CPU accounting from /proc, waiting for a quiet machine, and the measurement of one run.
 *
 * Knobs (environment), the same for every HTTP benchmark:
 *   BENCH_SECONDS (6)              length of each measured run
 *   BENCH_RUNS (3)                 measured runs per target
 *   BENCH_WARMUP_SECONDS (3)       length of the warm-up run
 *   BENCH_CONNECTIONS (50)         concurrent keep-alive connections
 *   BENCH_QUIET_WAIT_SECONDS (90)  how long in all (one budget for the whole `npm run bench`) to
 *                                  wait, before runs, for other work on a shared machine to finish
 *                                  (0: never wait)
 *   BENCH_CPU_PROF=<dir>           run the Node servers under node --cpu-prof, profiles written there
 *   BENCH_CPU_PROF_INTERVAL (1000) its sampling interval, µs
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import os from "node:os";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { LoadRequest, LoadResult } from "./loadgen.ts";

/** The VibeCode API key every benchmark uses: 10 scopes, the scope benchmark's (bench/scopes.bench.ts). */
export const KEY_SCOPES = ["crm", "task", "tasks", "im", "imbot", "disk", "user", "department", "log", "calendar"];

export const SERVER_CORE = 0;
export const LOADGEN_CORE = 1;
export const repo = new URL("../", import.meta.url);

export const envNumber = (name: string, fallback: number, allowZero = false): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !allowZero)) throw new Error(`${name} must be a ${allowZero ? "non-negative" : "positive"} number, not "${raw}"`);
  return value;
};

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Seconds left to wait for quiet; shared by every benchmark of one run. */
export interface QuietBudget {
  seconds: number;
}

export function quietBudgetFromEnv(): QuietBudget {
  return { seconds: envNumber("BENCH_QUIET_WAIT_SECONDS", 90, true) };
}

export interface Settings {
  seconds: number;
  runs: number;
  warmupSeconds: number;
  connections: number;
  /** Cores the servers and the load generator are pinned to; null = not pinned. */
  pinning: { server: number; loadgen: number } | null;
  /** node --cpu-prof arguments for the Node servers ([] unless BENCH_CPU_PROF is set). */
  profArgs: string[];
  profileDir: string | null;
}

export function settingsFromEnv(): Settings {
  // Short enough for the whole `npm run bench` to stay under 10 minutes on 2 cores.
  const seconds = envNumber("BENCH_SECONDS", 6);
  const profileDir = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : null;
  return {
    seconds,
    runs: Math.round(envNumber("BENCH_RUNS", 3)),
    warmupSeconds: envNumber("BENCH_WARMUP_SECONDS", Math.min(3, seconds)),
    connections: Math.round(envNumber("BENCH_CONNECTIONS", 50)),
    pinning: canPin() ? { server: SERVER_CORE, loadgen: LOADGEN_CORE } : null,
    profArgs: profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-interval=${envNumber("BENCH_CPU_PROF_INTERVAL", 1000)}`] : [],
    profileDir,
  };
}

export function pinningText(s: Settings, server = "servers"): string {
  return s.pinning ? `${server} on core ${s.pinning.server}, load generator on core ${s.pinning.loadgen}` : "not pinned (no taskset or < 2 cores)";
}

function canPin(): boolean {
  if (os.availableParallelism() < 2) return false;
  return spawnSync("taskset", ["-c", String(SERVER_CORE), "true"]).status === 0;
}

/** Environment for children: no KEYGATE_* from the caller (secret, database URL, data dir, Redis). */
export function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KEYGATE_")));
}

/** Starts a program, pinned to `core` with taskset unless core is null. */
export function spawnPinned(core: number | null, command: string, args: string[], stdio: "pipe" | "ipc"): ChildProcess {
  return spawn(core === null ? command : "taskset", core === null ? args : ["-c", String(core), command, ...args], {
    cwd: repo,
    env: childEnv(),
    stdio: stdio === "ipc" ? ["ignore", "inherit", "inherit", "ipc"] : ["ignore", "pipe", "pipe"],
  });
}

export function spawnNode(core: number | null, args: string[], stdio: "pipe" | "ipc"): ChildProcess {
  return spawnPinned(core, process.execPath, args, stdio);
}

/** Everything a piped child printed so far (stdout and stderr together). */
export function captureOutput(child: ChildProcess): { text(): string } {
  let out = "";
  const take = (chunk: Buffer) => {
    out += chunk.toString();
    if (out.length > 1_000_000) out = out.slice(-500_000);
  };
  child.stdout?.on("data", take);
  child.stderr?.on("data", take);
  return { text: () => out };
}

/** Resolves with everything printed so far once `ready` matches stdout; rejects if the child exits first. */
export function waitFor(child: ChildProcess, ready: RegExp, what: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    let out = "";
    let err = "";
    let done = false;
    const fail = (why: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      reject(new Error(`${what}: ${why}\nstdout:\n${out}\nstderr:\n${err}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
    child.stderr!.on("data", (chunk: Buffer) => {
      if (!done) err += chunk.toString();
    });
    // The listeners stay: they keep the pipes flowing (a child blocked on a full pipe stalls).
    child.stdout!.on("data", (chunk: Buffer) => {
      if (done) return;
      out += chunk.toString();
      if (ready.test(out)) {
        done = true;
        clearTimeout(timer);
        resolvePromise(out);
      }
    });
    child.once("exit", (code, signal) => fail(`exited early (${signal ?? code})`));
  });
}

export async function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

const clockTicks = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  return Number(r.stdout) > 0 ? Number(r.stdout) : 100;
})();

/** Busy (user + system + irq) and stolen CPU seconds of the whole machine, from /proc/stat; null where there is none. */
export function machineCpu(): { busy: number; steal: number } | null {
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
export async function waitForQuiet(budget: QuietBudget, log: (line: string) => void): Promise<number> {
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

function ownCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return null;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/)) if (c) out.push(Number(c));
    }
  } catch {
    // no /proc, or the kernel has no children files: the process alone
  }
  return out;
}

/**
 * User + system CPU seconds of a process (all its threads) and of its living descendants (an
 * nginx master's workers), from /proc; null where there is none.
 */
export function cpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  const own = ownCpuSeconds(pid);
  if (own === null) return null;
  let total = own;
  for (const child of childrenOf(pid)) total += cpuSeconds(child) ?? 0;
  return total;
}

export class LoadGenerator {
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

export interface Reply {
  status: number;
  text: string;
  headers: Headers;
}

export async function call(method: string, url: string, key: string | undefined, body?: unknown): Promise<Reply> {
  const res = await fetch(url, {
    method,
    headers: { ...(key === undefined ? {} : { "x-api-key": key }), ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

export function expectStatus(what: string, r: Reply, status: number): { data: Record<string, unknown> } {
  if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 500)}`);
  return JSON.parse(r.text) as { data: Record<string, unknown> };
}

/** The figures of one run of one target. */
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
  /** Other processes serving the run (an upstream, Redis): their CPU in cores and µs per response. */
  companions?: Record<string, { cpu: number | null; cpuUs: number | null }>;
}

export interface MedianFigures {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  serverCpu: number | null;
  serverCpuUs: number | null;
  loadgenCpu: number;
  otherCpu: number | null;
  companions?: Record<string, { cpu: number | null; cpuUs: number | null }>;
}

/** One thing to load: a URL with its headers, the process serving it, and the processes helping it. */
export interface LoadTarget {
  /** How the log names it, e.g. "keygate     api". */
  label: string;
  url: string;
  headers: Record<string, string>;
  pid: number | undefined;
  companions?: { name: string; pid: number | undefined }[];
}

/**
 * One run: waits for quiet, loads the target for `duration` seconds, reads the CPU of the server,
 * its companions, the load generator and the machine. Any non-2xx response, connection error or
 * timeout fails it.
 */
export async function measureRun(
  loadgen: LoadGenerator,
  t: LoadTarget,
  opts: { connections: number; duration: number; label: string; quiet: QuietBudget; log: (line: string) => void },
): Promise<HttpRun> {
  await waitForQuiet(opts.quiet, opts.log);
  const companions = t.companions ?? [];
  const cpuBefore = cpuSeconds(t.pid);
  const companionsBefore = companions.map((c) => cpuSeconds(c.pid));
  const machineBefore = machineCpu();
  const wallBefore = process.hrtime.bigint();
  const r = await loadgen.run({ url: t.url, headers: t.headers, connections: opts.connections, seconds: opts.duration });
  const cpuAfter = cpuSeconds(t.pid);
  const companionsAfter = companions.map((c) => cpuSeconds(c.pid));
  const machineAfter = machineCpu();
  const wall = Number(process.hrtime.bigint() - wallBefore) / 1e9;
  if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0 || r.responses === 0) {
    throw new Error(`${t.label.replace(/\s+/g, " ")} ${t.url}, ${opts.label}: ${r.responses} responses, ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts; status codes ${JSON.stringify(r.statusCodes)}`);
  }
  const usage = (before: number | null, after: number | null) => ({
    cpu: before === null || after === null ? null : round((after - before) / wall),
    cpuUs: before === null || after === null ? null : Math.round(((after - before) / r.responses) * 1e6),
  });
  const server = usage(cpuBefore, cpuAfter);
  const run: HttpRun = {
    requestsPerSecond: r.requestsPerSecond,
    p50Ms: r.p50Ms,
    p90Ms: r.p90Ms,
    p99Ms: r.p99Ms,
    maxMs: r.maxMs,
    responses: r.responses,
    duration: r.duration,
    serverCpu: server.cpu,
    serverCpuUs: server.cpuUs,
    loadgenCpu: r.loadgenCpu,
    otherCpu: null,
    stealCpu: null,
  };
  if (companions.length > 0) run.companions = Object.fromEntries(companions.map((c, i) => [c.name, usage(companionsBefore[i]!, companionsAfter[i]!)]));
  if (machineBefore && machineAfter && cpuBefore !== null && cpuAfter !== null) {
    // The load generator's own share is measured over its run, close enough to this window.
    const ours = (cpuAfter - cpuBefore) / wall + r.loadgenCpu + Object.values(run.companions ?? {}).reduce((a, c) => a + (c.cpu ?? 0), 0);
    run.otherCpu = round(Math.max(0, (machineAfter.busy - machineBefore.busy) / wall - ours));
    run.stealCpu = round((machineAfter.steal - machineBefore.steal) / wall);
  }
  const extra = Object.entries(run.companions ?? {})
    .map(([name, c]) => `  ${name} CPU ${c.cpu ?? "?"} (${c.cpuUs ?? "?"} µs/req)`)
    .join("");
  opts.log(
    `  ${opts.label.padEnd(8)} ${t.label} ${String(run.requestsPerSecond).padStart(7)} req/s  p50 ${run.p50Ms} ms  p99 ${run.p99Ms} ms  server CPU ${run.serverCpu ?? "?"} (${run.serverCpuUs ?? "?"} µs/req)${extra}  loadgen CPU ${run.loadgenCpu}  other CPU ${run.otherCpu ?? "?"}  steal ${run.stealCpu ?? "?"}`,
  );
  return run;
}

/** Medians over runs of each figure (a figure missing in any run is null). */
export function mediansOf(runs: HttpRun[]): MedianFigures {
  const of = (pick: (r: HttpRun) => number | null, digits: number): number | null => (runs.every((r) => pick(r) !== null) ? round(median(runs.map((r) => pick(r)!)), digits) : null);
  const m: MedianFigures = {
    requestsPerSecond: Math.round(median(runs.map((r) => r.requestsPerSecond))),
    p50Ms: round(median(runs.map((r) => r.p50Ms))),
    p99Ms: round(median(runs.map((r) => r.p99Ms))),
    serverCpu: of((r) => r.serverCpu, 2),
    serverCpuUs: of((r) => r.serverCpuUs, 0),
    loadgenCpu: round(median(runs.map((r) => r.loadgenCpu))),
    otherCpu: of((r) => r.otherCpu, 2),
  };
  const names = Object.keys(runs[0]?.companions ?? {});
  if (names.length > 0) {
    m.companions = Object.fromEntries(
      names.map((n) => [n, { cpu: of((r) => r.companions?.[n]?.cpu ?? null, 2), cpuUs: of((r) => r.companions?.[n]?.cpuUs ?? null, 0) }]),
    );
  }
  return m;
}

/**
 * Runs targets the benchmarks' way: one warm-up run each, then `runs` measured runs interleaved
 * round by round (A, B, C, A, B, C, …) so drift hits every target alike.
 */
export async function interleave<T extends LoadTarget>(
  loadgen: LoadGenerator,
  targets: T[],
  s: Settings,
  quiet: QuietBudget,
  log: (line: string) => void,
  between?: (t: T) => Promise<void>,
): Promise<Map<T, { warmup: HttpRun; runs: HttpRun[] }>> {
  const out = new Map<T, { warmup: HttpRun; runs: HttpRun[] }>();
  for (const t of targets) {
    out.set(t, { warmup: await measureRun(loadgen, t, { connections: s.connections, duration: s.warmupSeconds, label: "warm-up", quiet, log }), runs: [] });
    await between?.(t);
  }
  for (let i = 1; i <= s.runs; i++) {
    for (const t of targets) {
      out.get(t)!.runs.push(await measureRun(loadgen, t, { connections: s.connections, duration: s.seconds, label: `run ${i}`, quiet, log }));
      await between?.(t);
    }
  }
  return out;
}

/** A free TCP port on 127.0.0.1 (for servers that cannot be told to pick one, like nginx). */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolvePromise, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePromise(port));
    });
  });
}
