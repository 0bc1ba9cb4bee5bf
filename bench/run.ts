/** `npm run bench`: runs every benchmark, prints a Markdown table and writes bench/results/<date>.json. */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { runScopeBench } from "./scopes.bench.ts";

const started = new Date();
const scopes = runScopeBench();
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? "unknown", memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };

const lines = ["| benchmark | profile | median ns/call | p10 | p90 |", "|---|---|---:|---:|---:|"];
for (const r of scopes) lines.push(`| ${r.name} | ${r.profile} | ${r.medianNs} | ${r.p10Ns} | ${r.p90Ns} |`);
console.log(`keygate benchmarks, ${started.toISOString()} — ${machine.cpus} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}\n`);
console.log(lines.join("\n"));

const dir = new URL("./results/", import.meta.url);
mkdirSync(dir, { recursive: true });
const file = new URL(`${started.toISOString().replace(/[:.]/g, "-")}.json`, dir);
writeFileSync(file, JSON.stringify({ started: started.toISOString(), machine, scopes }, null, 2));
console.log(`\nwrote ${file.pathname}`);
