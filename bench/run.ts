/**
 * `npm run bench`: runs every benchmark, prints Markdown tables and writes them to
 * bench/results/<time>.md, the raw figures to bench/results/<time>.json.
 * BENCH_ONLY=<name>[,<name>…] runs some of them: verify, scopes, http, limiter, limits, proxy,
 * scale, revocation, memory, dashboard, sections, advice, session, apps. bench/harness.ts lists the knobs of the HTTP benchmarks (http, limits,
 * proxy); each file says what it measures and its own knobs. About 8–9 minutes on 2 cores with
 * the defaults (docs/benchmarks.md).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { quietBudgetFromEnv } from "./harness.ts";
import { type AppsBenchResult, appsReport, runAppsBench } from "./apps.bench.ts";
import { type DashboardBenchResult, dashboardReport, runDashboardBench } from "./dashboard.bench.ts";
import { type HttpBenchResult, httpTable, runHttpBench } from "./http.bench.ts";
import { type LimiterBenchResult, limiterTable, runLimiterBench } from "./limiter.bench.ts";
import { type LimitsBenchResult, limitsTable, runLimitsBench } from "./limits.bench.ts";
import { type MemoryBenchResult, memoryReport, runMemoryBench } from "./memory.bench.ts";
import { type ProxyBenchResult, proxyTable, runProxyBench } from "./proxy.bench.ts";
import { type RevocationBenchResult, revocationReport, runRevocationBench } from "./revocation.bench.ts";
import { type SessionBenchResult, runSessionBench, sessionReport } from "./session.bench.ts";
import { type ScaleBenchResult, runScaleBench, scaleReport } from "./scale.bench.ts";
import { type ScopeAdviceBenchResult, runScopeAdviceBench, scopeAdviceReport } from "./scope-advice.bench.ts";
import { type BenchResult, runScopeBench } from "./scopes.bench.ts";
import { type VerifyBenchResult, runVerifyBench, verifyReport } from "./verify.bench.ts";
import { type SectionsBenchResult, runSectionsBench, sectionsReport } from "./sections.bench.ts";

const NAMES = ["verify", "scopes", "http", "limiter", "limits", "proxy", "scale", "revocation", "memory", "dashboard", "sections", "advice", "session", "apps"] as const;
const only = (process.env.BENCH_ONLY ?? "")
  .split(",")
  .map((n) => n.trim())
  .filter(Boolean);
for (const n of only) if (!(NAMES as readonly string[]).includes(n)) throw new Error(`BENCH_ONLY lists ${NAMES.join(", ")} (comma-separated), not "${n}"`);
const wants = (name: (typeof NAMES)[number]) => only.length === 0 || only.includes(name);

const started = new Date();
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
// What is printed is also the Markdown file of the run.
const report: string[] = [];
const print = (...lines: string[]) => {
  console.log(lines.join("\n"));
  report.push(...lines);
};
print(`keygate benchmarks, ${started.toISOString()} — ${machine.cpus} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}\n`);
// One budget, for the whole run, of time spent waiting for other work on the machine to finish.
const quiet = quietBudgetFromEnv();
const seconds: Record<string, number> = {};
const timed = async <T>(name: string, run: () => T | Promise<T>): Promise<T> => {
  const t0 = Date.now();
  try {
    return await run();
  } finally {
    seconds[name] = Math.round((Date.now() - t0) / 100) / 10;
  }
};

let verify: VerifyBenchResult | undefined;
if (wants("verify")) {
  verify = await timed("verify", () => runVerifyBench());
  print(...verifyReport(verify));
}

let scopes: BenchResult[] | undefined;
if (wants("scopes")) {
  scopes = await timed("scopes", () => runScopeBench());
  const lines = ["| benchmark | profile | median ns/call | p10 | p90 |", "|---|---|---:|---:|---:|"];
  for (const r of scopes) lines.push(`| ${r.name} | ${r.profile} | ${r.medianNs} | ${r.p10Ns} | ${r.p90Ns} |`);
  print("", ...lines);
}

let http: HttpBenchResult | undefined;
if (wants("http")) {
  http = await timed("http", () => runHttpBench(undefined, quiet));
  const m = http.method;
  const pinning = m.pinning ? `servers on core ${m.pinning.server}, load generator on core ${m.pinning.loadgen}` : "not pinned";
  print(`\nHTTP: ${m.connections} connections, median of ${m.runs} × ${m.seconds} s after a ${m.warmupSeconds} s warm-up, ${pinning}; Fastify ${m.fastify}, autocannon ${m.autocannon}\n`);
  print(...httpTable(http));
}

let limiter: LimiterBenchResult | undefined;
if (wants("limiter")) {
  limiter = await timed("limiter", () => runLimiterBench());
  const m = limiter.method;
  print(`\nRate limiter, one decision in process: median of ${m.batches} batches, ${m.keys} keys${m.redis ? `; Redis ${m.redisVersion} at ${m.redis}` : ""}\n`);
  print(...limiterTable(limiter));
}

let limits: LimitsBenchResult | undefined;
if (wants("limits")) {
  limits = await timed("limits", () => runLimitsBench(undefined, quiet));
  const m = limits.method;
  const pinning = m.pinning ? `servers on core ${m.pinning.server}, load generator on core ${m.pinning.loadgen}` : "not pinned";
  print(`\nLimits on and off, ${m.route}: ${m.connections} connections, median of ${m.runs} × ${m.seconds} s after a ${m.warmupSeconds} s warm-up, ${pinning}; ${m.limitsPerRequest} limits per request${m.redis ? `; Redis ${m.redisVersion}` : ""}\n`);
  print(...limitsTable(limits));
}

let proxy: ProxyBenchResult | undefined;
if (wants("proxy")) {
  proxy = await timed("proxy", () => runProxyBench(undefined, quiet));
  const m = proxy.method;
  const pinning = m.pinning ? `proxy and upstream on core ${m.pinning.server}, load generator on core ${m.pinning.loadgen}` : "not pinned";
  print(`\nProxy: ${m.connections} connections, median of ${m.runs} × ${m.seconds} s after a ${m.warmupSeconds} s warm-up, ${pinning}; ${m.bodyBytes} B body, ${m.limitsPerRequest} limits per request in keygate; undici ${m.undici}${m.nginx ? `, nginx ${m.nginx}` : ""}\n`);
  print(...proxyTable(proxy));
}

// Beside the proxy: the app runtime forwards an app's pages as the proxy forwards API requests.
let apps: AppsBenchResult | undefined;
if (wants("apps")) {
  apps = await timed("apps", () => runAppsBench());
  print("", ...appsReport(apps));
}

let scale: ScaleBenchResult | undefined;
if (wants("scale")) {
  scale = await timed("scale", () => runScaleBench());
  print("", ...scaleReport(scale));
}

let session: SessionBenchResult | undefined;
if (wants("session")) {
  session = await timed("session", () => runSessionBench());
  print("", ...sessionReport(session));
}

let revocation: RevocationBenchResult | undefined;
if (wants("revocation")) {
  revocation = await timed("revocation", () => runRevocationBench());
  print("", ...revocationReport(revocation));
}

let memory: MemoryBenchResult | undefined;
if (wants("memory")) {
  memory = await timed("memory", () => runMemoryBench());
  print("", ...memoryReport(memory));
}
let dashboard: DashboardBenchResult | undefined;
if (wants("dashboard")) {
  dashboard = await timed("dashboard", () => runDashboardBench());
  print("", ...dashboardReport(dashboard));
}
let advice: ScopeAdviceBenchResult | undefined;
if (wants("advice")) {
  advice = await timed("advice", () => runScopeAdviceBench());
  print("", ...scopeAdviceReport(advice));
}

let sections: SectionsBenchResult | undefined;
if (wants("sections")) {
  sections = await timed("sections", () => runSectionsBench());
  print("", ...sectionsReport(sections));
}

const dir = new URL("./results/", import.meta.url);
mkdirSync(dir, { recursive: true });
const stem = started.toISOString().replace(/[:.]/g, "-");
const json = new URL(`${stem}.json`, dir);
const markdown = new URL(`${stem}.md`, dir);
print(`\n${Object.entries(seconds).map(([n, s]) => `${n} ${s} s`).join(", ")}; ${Math.round((Date.now() - started.getTime()) / 1000)} s in all`);
writeFileSync(json, JSON.stringify({ started: started.toISOString(), machine, seconds, verify, scopes, http, limiter, limits, proxy, scale, revocation, memory, dashboard, sections, advice, session, apps }, null, 2));
writeFileSync(markdown, `${report.join("\n")}\n`);
console.log(`wrote ${json.pathname} and ${markdown.pathname}`);
