/**
 * Scope engine micro-benchmark: median nanoseconds per call, over repeated batches.
 *  - check:         compiled key of 10 scopes against a route's precompiled requirement
 *  - match + check: route lookup by method and path, then the check
 *  - parse:         normalise a requested 10-scope list (key creation, PATCH)
 *  - compile:       compile a stored key's scopes to bit sets (each key-cache miss)
 */
import { loadProfile } from "../src/index.ts";
import { KEY_SCOPES } from "./harness.ts";

export interface BenchResult {
  name: string;
  profile: string;
  medianNs: number;
  p10Ns: number;
  p90Ns: number;
  batches: number;
  callsPerBatch: number;
}

let sink = 0;

function measure(name: string, profile: string, callsPerBatch: number, fn: () => number): BenchResult {
  for (let i = 0; i < callsPerBatch; i++) sink ^= fn(); // warm up: let the JIT settle
  const batches = 25;
  const perCall: number[] = [];
  for (let b = 0; b < batches; b++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < callsPerBatch; i++) sink ^= fn();
    perCall.push(Number(process.hrtime.bigint() - start) / callsPerBatch);
  }
  perCall.sort((a, b) => a - b);
  const at = (q: number) => Math.round(perCall[Math.floor(q * (perCall.length - 1))]! * 10) / 10;
  return { name, profile, medianNs: at(0.5), p10Ns: at(0.1), p90Ns: at(0.9), batches, callsPerBatch };
}

const cases = [
  {
    profile: "vibecode",
    keyType: "api",
    scopes: KEY_SCOPES,
    method: "GET",
    path: "/v1/tasks/42",
  },
  {
    profile: "rogeriq",
    keyType: "api",
    scopes: ["kb:write", "conversations:read", "contacts:read", "messages:read", "agent:read", "widget:read", "webhooks:read", "forms:read", "beacons:read", "projects:read"],
    method: "PATCH",
    path: "/v1/projects/p1/kb/articles/a1",
  },
  {
    profile: "atender",
    keyType: "api",
    scopes: ["knowledge:write", "conversations:read", "contacts:read", "tags:read", "users:read", "teams:read", "channels:read", "webhooks:write", "sla:read", "csat:read"],
    method: "GET",
    path: "/api/v1/kb/articles/7",
  },
];

export function runScopeBench(): BenchResult[] {
  const results: BenchResult[] = [];
  for (const c of cases) {
    const profile = loadProfile(c.profile);
    const list = profile.normalize(c.keyType, c.scopes);
    if (list.errors.length > 0) throw new Error(`bench scopes invalid: ${JSON.stringify(list.errors)}`);
    const key = profile.compileKey(c.keyType, profile.issue(list.scopes));
    const route = profile.match(c.method, c.path)!.value;
    if (!profile.checkRoute(key, route).allowed) throw new Error(`bench case ${c.profile} must be allowed`);
    results.push(measure("check", c.profile, 2_000_000, () => (profile.checkRoute(key, route).allowed ? 1 : 0)));
    results.push(measure("match + check", c.profile, 500_000, () => (profile.checkRoute(key, profile.match(c.method, c.path)!.value).allowed ? 1 : 0)));
    results.push(measure("parse", c.profile, 20_000, () => profile.normalize(c.keyType, c.scopes).scopes.length));
    const stored = profile.issue(list.scopes);
    results.push(measure("compile", c.profile, 100_000, () => profile.compileKey(c.keyType, stored).granted[0]!));
  }
  if (sink === 0.5) console.log(sink); // keeps the work observable
  return results;
}
