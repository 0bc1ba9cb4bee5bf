/**
 * Scope advice benchmark (issue 18): GET /v1/keys/:id/scope-advice for a key with 10⁶ logged
 * requests; the goal is under a second.
 *
 * Method: one keygate in this process (buildServer, RogerIQ profile), per store: SQLite in a
 * file of its own (as `keygate serve` keeps it), and PostgreSQL when it answers (a schema of its
 * own, dropped afterwards). The owner's key holds `admin`; its log gets BENCH_ADVICE_REQUESTS
 * entries appended with the store's own batch insert (appendRequests, 10,000 a batch), spread
 * over 29 days (within the 30 the log keeps) and over every route of the profile, 1 in 50 of
 * them a refusal for a missing scope; another key of the same portal gets a tenth as many, so
 * the key's entries are not the whole table; PostgreSQL's table is then vacuumed and analysed, as autovacuum leaves a log
 * filled over days. Then the advice is asked for through HTTP (app.inject, the owner's management
 * key): once cold (right after the fill), then BENCH_ADVICE_TRIALS more times; figures are the
 * cold time, the median and the worst of the rest. The log is summed up by the database
 * (Store.requestRoutes, GROUP BY); keygate only sees one row per route.
 *
 * Environment: BENCH_ADVICE_REQUESTS (1,000,000), BENCH_ADVICE_TRIALS (7); PostgreSQL at
 * BENCH_DATABASE_URL (postgres://postgres@127.0.0.1:5432/test), in a schema of its own.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import pg from "pg";
import { buildServer } from "../src/gateway/server.ts";
import { createKey } from "../src/manage/keys.ts";
import { createPortal } from "../src/manage/portals.ts";
import { createUser, issueManagementKey } from "../src/manage/users.ts";
import { loadProfile } from "../src/profiles/index.ts";
import { openPostgresStore, openSqliteStore } from "../src/store/index.ts";
import type { RequestLogEntry, Store } from "../src/store/store.ts";
import { envNumber, median, round } from "./harness.ts";

const DAY = 86_400_000;
const BATCH = 10_000;

export interface AdviceRun {
  store: string;
  requests: number;
  routes: number;
  fillSeconds: number;
  coldMs: number;
  medianMs: number;
  maxMs: number;
  suggested: string[];
}

export interface ScopeAdviceBenchResult {
  method: { requests: number; trials: number; node: string };
  runs: AdviceRun[];
}

async function postgresReachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

async function fill(store: Store, keyId: string, count: number, routes: { method: string; path: string; requires: string | null }[], now: number): Promise<void> {
  for (let done = 0; done < count; done += BATCH) {
    const batch: RequestLogEntry[] = [];
    for (let i = done; i < Math.min(count, done + BATCH); i++) {
      const route = routes[i % routes.length]!;
      const refused = i % 50 === 0 && route.requires !== null;
      batch.push({
        keyId,
        at: now - 29 * DAY + Math.floor((i / count) * 29 * DAY),
        ip: `198.51.100.${i % 200}`,
        method: route.method,
        path: route.path.replace(/:[A-Za-z]+/g, String(i % 1000)),
        status: refused ? 403 : 200,
        latencyMs: 3.5,
        route: route.path,
        missingScope: refused ? route.requires : null,
      });
    }
    await store.appendRequests(batch);
  }
}

async function runOne(kind: "sqlite" | "postgres", requests: number, trials: number): Promise<AdviceRun> {
  const serverSecret = randomBytes(32).toString("base64url");
  let store: Store;
  let cleanup: () => Promise<void>;
  let settle = async () => {};
  if (kind === "sqlite") {
    const dir = mkdtempSync(join(os.tmpdir(), "keygate-advice-bench-"));
    store = await openSqliteStore(join(dir, "keygate.db"), { serverSecret });
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  } else {
    const url = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
    const schema = `kg_bench_advice_${randomBytes(4).toString("hex")}`;
    store = await openPostgresStore(url, { schema, max: 4, serverSecret });
    const sql = async (text: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(text).finally(() => client.end());
    };
    // A log filled over days has been through autovacuum (PostgreSQL vacuums insert-only tables
    // too): the benchmark's, filled in a minute, is vacuumed and analysed as it would have been.
    settle = () => sql(`VACUUM ANALYZE ${schema}.request_log`);
    cleanup = () => sql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  }
  await store.migrate();
  const profile = loadProfile("rogeriq");
  const now = Date.now();
  const app = buildServer({ profile, store, serverSecret, allowUpstream: ["127.0.0.1"] });
  await app.ready();
  try {
    const kg = app.keygate;
    const owner = await createUser(kg, null, { email: "owner@example.com" });
    const managementKey = (await issueManagementKey(kg, owner, profile.management.scopes)).rawKey;
    const actor = { user: owner, keyId: null, ip: null };
    const portal = await createPortal(kg, actor, { domain: "advice.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } });
    const key = (await createKey(kg, actor, { portalId: portal.id, name: "busy", scopes: ["admin"] })).key;
    const other = (await createKey(kg, actor, { portalId: portal.id, name: "other", scopes: ["read"] })).key;
    const apiType = profile.catalog.keyTypes.indexOf("api");
    const routes = profile.routes.map((r) => {
      const access = r.access[apiType]!;
      return { method: r.method, path: r.path, requires: access.denied || access.requirement === null ? null : access.requirement.text.join(",") };
    });
    const t0 = performance.now();
    await fill(store, key.id, requests, routes, now);
    await fill(store, other.id, Math.floor(requests / 10), routes.slice(0, 5), now);
    const fillSeconds = round((performance.now() - t0) / 1000, 1);
    await settle();

    const ask = async () => {
      const started = performance.now();
      const res = await app.inject({ method: "GET", url: `/v1/keys/${key.id}/scope-advice`, headers: { "x-api-key": managementKey } });
      const ms = performance.now() - started;
      if (res.statusCode !== 200) throw new Error(`scope advice answered ${res.statusCode}: ${res.body}`);
      const data = res.json().data as { window: { requests: number }; suggestedScopes: { scope: string }[]; observedRoutes: unknown[] };
      if (data.window.requests !== requests) throw new Error(`the advice saw ${data.window.requests} requests, not ${requests}`);
      return { ms, data };
    };
    const cold = await ask();
    const times: number[] = [];
    for (let i = 0; i < trials; i++) times.push((await ask()).ms);
    return {
      store: kind === "sqlite" ? "SQLite (file)" : "PostgreSQL",
      requests,
      routes: cold.data.observedRoutes.length,
      fillSeconds,
      coldMs: round(cold.ms, 1),
      medianMs: round(median(times), 1),
      maxMs: round(Math.max(...times), 1),
      suggested: cold.data.suggestedScopes.map((s) => s.scope),
    };
  } finally {
    await app.close();
    await store.close();
    await cleanup();
  }
}

export async function runScopeAdviceBench(): Promise<ScopeAdviceBenchResult> {
  const requests = envNumber("BENCH_ADVICE_REQUESTS", 1_000_000);
  const trials = envNumber("BENCH_ADVICE_TRIALS", 7);
  const runs = [await runOne("sqlite", requests, trials)];
  if (await postgresReachable(process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test")) runs.push(await runOne("postgres", requests, trials));
  return { method: { requests, trials, node: process.version }, runs };
}

export function scopeAdviceReport(r: ScopeAdviceBenchResult): string[] {
  const lines = [
    `Scope advice (issue 18): GET /v1/keys/:id/scope-advice for a key with ${r.method.requests.toLocaleString("en")} logged requests, once cold, then ${r.method.trials} times; goal: under 1 s`,
    "",
    "| store | routes seen | cold ms | median ms | max ms | filled in s |",
    "|---|---:|---:|---:|---:|---:|",
  ];
  for (const run of r.runs) lines.push(`| ${run.store} | ${run.routes} | ${run.coldMs} | ${run.medianMs} | ${run.maxMs} | ${run.fillSeconds} |`);
  return lines;
}
