/**
 * `npm run bench`: runs every benchmark, prints Markdown tables and writes bench/results/<date>.json.
 * BENCH_ONLY=scopes|http runs one of them; bench/http.bench.ts lists the HTTP benchmark's knobs.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { type HttpBenchResult, httpTable, runHttpBench } from "./http.bench.ts";
import { type BenchResult, runScopeBench } from "./scopes.bench.ts";

const only = process.env.BENCH_ONLY;
if (only !== undefined && only !== "" && only !== "scopes" && only !== "http") throw new Error(`BENCH_ONLY must be scopes or http, not "${only}"`);
const wants = (name: string) => !only || only === name;

const started = new Date();
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
console.log(`keygate benchmarks, ${started.toISOString()} — ${machine.cpus} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}\n`);

let scopes: BenchResult[] | undefined;
if (wants("scopes")) {
  scopes = runScopeBench();
  const lines = ["| benchmark | profile | median ns/call | p10 | p90 |", "|---|---|---:|---:|---:|"];
  for (const r of scopes) lines.push(`| ${r.name} | ${r.profile} | ${r.medianNs} | ${r.p10Ns} | ${r.p90Ns} |`);
  console.log(lines.join("\n"));
}

let http: HttpBenchResult | undefined;
if (wants("http")) {
  http = await runHttpBench();
  const m = http.method;
  const pinning = m.pinning ? `servers on core ${m.pinning.server}, load generator on core ${m.pinning.loadgen}` : "not pinned";
  console.log(`\nHTTP: ${m.connections} connections, median of ${m.runs} × ${m.seconds} s after a ${m.warmupSeconds} s warm-up, ${pinning}; Fastify ${m.fastify}, autocannon ${m.autocannon}\n`);
  console.log(httpTable(http).join("\n"));
}

const dir = new URL("./results/", import.meta.url);
mkdirSync(dir, { recursive: true });
const file = new URL(`${started.toISOString().replace(/[:.]/g, "-")}.json`, dir);
writeFileSync(file, JSON.stringify({ started: started.toISOString(), machine, scopes, http }, null, 2));
console.log(`\nwrote ${file.pathname}`);
