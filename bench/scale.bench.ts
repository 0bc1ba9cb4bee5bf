/**
 * Scale benchmark (issue 6): how verification behaves as the key set grows. Goals: warm
 * verification (a key-cache hit) does not depend on the number of keys; cold verification (a
 * miss, one store lookup by digest) takes at most 20 µs on SQLite and 300 µs on PostgreSQL
 * (medians, at every size).
 *
 * Method:
 *  - One store per dialect, grown 10⁴ → 10⁵ → 10⁶ keys (BENCH_SCALE_SIZES), each step by bulk SQL
 *    in one transaction (bench/scale-fill.ts): filler rows with arbitrary unique digests, and
 *    among them, evenly spread, real keys made by src/manage/keys.ts createKey (VibeCode API keys
 *    of the scope benchmark's 10 scopes, with this run's server secret) on a throwaway store and
 *    written with the stores' own row encoder; their owner and portal rows are the same records.
 *    After each step a few real keys are read back through the store and must equal what
 *    createKey made (but for lastUsedAt, which the verifications set).
 *  - Per size, a fresh in-process verifier (createVerifier, the library export: the gateway's
 *    verification, key cache and in-memory rate limits) on the store. It first verifies 1,000
 *    warm-up keys twice (JIT, the pool's prepared statement), untimed; then **cold**: each of
 *    the size's BENCH_SCALE_SAMPLES (2,000) measured keys, added at that step and never read
 *    before, verified once (a cache miss), in random order; then **warm**: the same keys again,
 *    5 passes (cache hits). Every call is timed alone with process.hrtime.bigint(); median and
 *    p99 (nearest rank) per call. Every outcome must be valid, or there is no result.
 *    The request is `GET /v1/me` from 127.0.0.1. Beside them, the store's part of a miss:
 *    store.getKeyByDigest alone, timed the same way, on as many filler rows of the step (never read).
 *  - **Memory per cached key**, on the SQLite store: a fresh verifier verifies the warm-up keys,
 *    waits for its usage flush (last-used times are kept until written, about every second),
 *    collects garbage (gc exposed in process with v8.setFlagsFromString), reads heapUsed; then
 *    BENCH_SCALE_MEMORY_KEYS (20,000) more keys, the same again; the difference over the keys.
 *    Once with a limiter that keeps nothing (the cache alone), once with the default in-memory
 *    limiter (plus its per-key buckets, what a node holds per active key).
 *  - PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test): the
 *    benchmark works in a database of its own on that server, keygate_bench (created when
 *    missing, and then dropped at the end), in a schema of this run's own (dropped at the end).
 *    When nothing answers, the PostgreSQL rows are skipped and the result says why.
 *
 * The runner's process, not pinned; the machine may be shared, so p99 carries its noise.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { isDeepStrictEqual } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import pg from "pg";
import { keyFormat } from "../src/core/keys/format.ts";
import { type Verifier, type VerifyOutcome, createVerifier } from "../src/index.ts";
import type { Limiter, Outcome } from "../src/limits/limiter.ts";
import type { Keygate } from "../src/manage/context.ts";
import { createKey } from "../src/manage/keys.ts";
import { createPortal } from "../src/manage/portals.ts";
import { createUser } from "../src/manage/users.ts";
import { loadProfile } from "../src/profiles/index.ts";
import { openPostgresStore, openStore } from "../src/store/index.ts";
import type { KeyRecord, Membership, Portal, Store, User } from "../src/store/store.ts";
import { outboundPolicy } from "../src/upstream/outbound.ts";
import { envNumber, KEY_SCOPES, median, round } from "./harness.ts";
import { redactUrl } from "../test/support/services.ts";
import { type Filler, postgresFiller, sqliteFiller } from "./scale-fill.ts";

export type ScaleStore = "sqlite" | "postgres";

export interface Latency {
  samples: number;
  medianUs: number;
  p99Us: number;
}

export interface ScaleRow {
  store: ScaleStore;
  /** Rows in the keys table. */
  keys: number;
  cold: Latency;
  warm: Latency;
  /** The store's part of a miss: getKeyByDigest of rows nothing has read, alone. */
  lookup: Latency;
}

export interface ScaleGoal {
  store: ScaleStore;
  goal: string;
  measured: string;
  met: boolean;
}

export interface ScaleBenchResult {
  method: {
    sizes: number[];
    /** Measured keys per size (cold: once each; warm: warmPasses times each). */
    samples: number;
    warmPasses: number;
    warmupKeys: number;
    memoryKeys: number;
    request: string;
    key: string;
    cacheCapacity: number;
    sqlite: string;
    postgres: string | null;
    node: string;
  };
  rows: ScaleRow[];
  /** Heap bytes per cached key: the cache alone, and with the in-memory limiter's state for the key. */
  memory: { keys: number; cacheBytesPerKey: number; withLimiterBytesPerKey: number };
  goals: ScaleGoal[];
  /** Seconds each phase took. */
  phases: { phase: string; seconds: number }[];
  skipped: string[];
}

const PROFILE = "vibecode";
const REQUEST = { method: "GET", path: "/v1/me", ip: "127.0.0.1" } as const;
const WARMUP_KEYS = 1_000;
const WARM_PASSES = 5;
/** The verifier's default, passed explicitly: far above the keys any verifier here caches. */
const CACHE_CAPACITY = 100_000;
const GOALS = { coldSqliteUs: 20, coldPostgresUs: 300, warmSpread: 1.5 } as const;
const BENCH_DATABASE = "keygate_bench";
/** Real keys read back through the store after each step and compared with what createKey made. */
const ROUND_TRIPS = 5;

interface RealKey {
  raw: string;
  record: KeyRecord;
}

/** What the real keys belong to, and the keys, made by keygate's management code on a throwaway store. */
interface World {
  owner: User;
  portal: Portal;
  membership: Membership;
  keys: RealKey[];
}

/** Admits everything and keeps nothing: the memory figure of the cache alone. */
const ADMITTED: Promise<Outcome> = Promise.resolve({ admitted: true, states: [] });
const keepNothing: Limiter = { mode: "off", consume: () => ADMITTED, close: async () => {} };

const profile = loadProfile(PROFILE);

async function makeWorld(serverSecret: string, count: number): Promise<World> {
  const store = await openStore({ dataDir: ":memory:", serverSecret });
  try {
    const kg: Keygate = { profile, store, serverSecret, format: keyFormat(profile.spec.keyTypes), outbound: outboundPolicy(), now: Date.now, keyChanged: () => {}, portalChanged: () => {} };
    const owner = await createUser(kg, null, { email: "scale-bench@keygate.local", name: "Scale bench", role: "owner" });
    const actor = { user: owner, keyId: null, ip: null };
    const portal = await createPortal(kg, actor, {
      domain: "scale-bench.bitrix24.com",
      upstream: { kind: "bitrix24", webhookUrl: "https://scale-bench.bitrix24.com/rest/1/benchwebhooktoken/" },
    });
    const membership = (await store.getMember(portal.id, owner.id))!;
    const keys: RealKey[] = [];
    for (let i = 0; i < count; i++) {
      const { key, rawKey } = await createKey(kg, actor, { portalId: portal.id, type: "api", name: `scale bench key ${i}`, scopes: KEY_SCOPES });
      keys.push({ raw: rawKey, record: key });
    }
    return { owner, portal, membership, keys };
  } finally {
    await store.close();
  }
}

function shuffled<T>(xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function latency(ns: Float64Array): Latency {
  const sorted = [...ns].sort((a, b) => a - b);
  const p99 = sorted[Math.max(0, Math.ceil(0.99 * sorted.length) - 1)]!;
  return { samples: sorted.length, medianUs: round(median(sorted) / 1000, 2), p99Us: round(p99 / 1000, 2) };
}

function mustBeValid(outcome: VerifyOutcome): void {
  if (!outcome.valid) throw new Error(`a real key was refused (${outcome.code}): the figures would not be of a verification`);
}

async function verifyOrFail(verifier: Verifier, raw: string): Promise<void> {
  mustBeValid(await verifier.verify({ key: raw, ...REQUEST }));
}

/** Times each verification alone; fails on any refusal. */
async function timeEach(verifier: Verifier, keys: readonly string[], passes: number): Promise<Float64Array> {
  const ns = new Float64Array(keys.length * passes);
  let n = 0;
  for (let p = 0; p < passes; p++) {
    for (const key of keys) {
      const t0 = process.hrtime.bigint();
      const outcome = await verifier.verify({ key, ...REQUEST });
      ns[n++] = Number(process.hrtime.bigint() - t0);
      mustBeValid(outcome);
    }
  }
  return ns;
}

async function measureSize(store: Store, serverSecret: string, warmup: readonly string[], measured: readonly string[]): Promise<{ cold: Latency; warm: Latency }> {
  const verifier = createVerifier({ profile, store, serverSecret, cacheSize: CACHE_CAPACITY });
  try {
    for (let pass = 0; pass < 2; pass++) for (const raw of warmup) await verifyOrFail(verifier, raw);
    const order = shuffled(measured);
    const cold = await timeEach(verifier, order, 1);
    const warm = await timeEach(verifier, order, WARM_PASSES);
    if (verifier.cachedKeys !== warmup.length + measured.length) {
      throw new Error(`the verifier caches ${verifier.cachedKeys} keys, expected ${warmup.length + measured.length}: the warm figures would not all be cache hits`);
    }
    return { cold: latency(cold), warm: latency(warm) };
  } finally {
    await verifier.close();
  }
}

/** Times store.getKeyByDigest alone, once per digest; every row must be found. */
async function timeLookups(store: Store, digests: readonly string[]): Promise<Latency> {
  const ns = new Float64Array(digests.length);
  for (const [i, digest] of digests.entries()) {
    const t0 = process.hrtime.bigint();
    const record = await store.getKeyByDigest(digest);
    ns[i] = Number(process.hrtime.bigint() - t0);
    if (!record) throw new Error("a filler row was not found by its digest");
  }
  return latency(ns);
}

/** Heap bytes per key a verifier's cache holds (with `limiter`'s state for it, when it keeps any). */
async function heapPerKey(store: Store, serverSecret: string, warmup: readonly string[], keys: readonly string[], limiter: Limiter | undefined): Promise<number> {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const settled = async () => {
    // The verifier keeps last-used times until its usage flush (every second) writes them.
    await sleep(1_200);
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const verifier = createVerifier({ profile, store, serverSecret, limiter, cacheSize: CACHE_CAPACITY });
  try {
    for (const raw of warmup) await verifyOrFail(verifier, raw);
    const before = await settled();
    for (const raw of keys) await verifyOrFail(verifier, raw);
    const after = await settled();
    if (verifier.cachedKeys !== warmup.length + keys.length) throw new Error(`the verifier caches ${verifier.cachedKeys} keys, expected ${warmup.length + keys.length}`);
    return Math.round((after - before) / keys.length);
  } finally {
    await verifier.close();
  }
}

/** Grows the store step by step and measures at each size. */
async function runStore(
  kind: ScaleStore,
  store: Store,
  filler: Filler,
  plan: { sizes: number[]; warmup: RealKey[]; measured: RealKey[][]; memory: RealKey[] },
  serverSecret: string,
  timed: <T>(phase: string, run: () => Promise<T>) => Promise<T>,
): Promise<ScaleRow[]> {
  const rows: ScaleRow[] = [];
  for (const [i, size] of plan.sizes.entries()) {
    const measured = plan.measured[i]!;
    const added = [...(i === 0 ? plan.warmup : []), ...measured, ...(i === plan.sizes.length - 1 ? plan.memory : [])];
    await timed(`${kind}: fill to ${size.toLocaleString("en-US")} keys`, () => filler.grow(size, shuffled(added.map((k) => k.record))));
    const m = await timed(`${kind}: measure at ${size.toLocaleString("en-US")} keys`, async () => ({
      ...(await measureSize(
        store,
        serverSecret,
        plan.warmup.map((k) => k.raw),
        measured.map((k) => k.raw),
      )),
      lookup: await timeLookups(store, filler.sample(measured.length)),
    }));
    // After the measurement, so that no measured row is read first; the verifications set lastUsedAt.
    for (const k of measured.slice(0, ROUND_TRIPS)) {
      const stored = await store.getKeyByDigest(k.record.digest);
      if (!stored || !isDeepStrictEqual({ ...stored, lastUsedAt: null }, k.record)) throw new Error(`${kind}: key ${k.record.id} reads back as ${JSON.stringify(stored)}, not as createKey made it`);
    }
    rows.push({ store: kind, keys: size, ...m });
  }
  return rows;
}

async function seed(store: Store, world: World): Promise<void> {
  await store.createUser(world.owner, { audit: [] });
  await store.createPortal(world.portal, world.membership, { audit: [] });
}

function goalsOf(rows: ScaleRow[]): ScaleGoal[] {
  const goals: ScaleGoal[] = [];
  for (const store of ["sqlite", "postgres"] as const) {
    const mine = rows.filter((r) => r.store === store);
    if (mine.length === 0) continue;
    const first = mine[0]!;
    const last = mine.at(-1)!;
    const spread = round(last.warm.medianUs / first.warm.medianUs, 2);
    goals.push({
      store,
      goal: `warm verification independent of the key count: median at ${last.keys.toLocaleString("en-US")} keys ≤ ${GOALS.warmSpread} × at ${first.keys.toLocaleString("en-US")}`,
      measured: `${last.warm.medianUs} / ${first.warm.medianUs} µs = ${spread} ×`,
      met: spread <= GOALS.warmSpread,
    });
    const limit = store === "sqlite" ? GOALS.coldSqliteUs : GOALS.coldPostgresUs;
    const worst = Math.max(...mine.map((r) => r.cold.medianUs));
    goals.push({ store, goal: `cold median ≤ ${limit} µs at every size`, measured: `at most ${worst} µs`, met: worst <= limit });
  }
  return goals;
}

/** The URL with another database name. */
function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Connects to PostgreSQL at `url`: its version, or why not. */
async function probePostgres(url: string): Promise<{ version: string } | { error: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on("error", () => {});
  try {
    await client.connect();
    return { version: (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version };
  } catch (e) {
    return { error: (e as Error).message || (e as Error).name };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs `fn` on a client of `url` and closes it. */
async function onPostgres<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function runScaleBench(log: (line: string) => void = (line) => console.error(line)): Promise<ScaleBenchResult> {
  const sizes = (process.env.BENCH_SCALE_SIZES || "10000,100000,1000000").split(",").map((x) => Number(x.trim()));
  if (sizes.some((x, i) => !Number.isInteger(x) || x <= 0 || (i > 0 && x <= sizes[i - 1]!))) throw new Error("BENCH_SCALE_SIZES must be increasing whole numbers, comma-separated");
  const samples = Math.round(envNumber("BENCH_SCALE_SAMPLES", 2_000));
  const memoryKeys = Math.round(envNumber("BENCH_SCALE_MEMORY_KEYS", 20_000));
  if (sizes[0]! < WARMUP_KEYS + samples) throw new Error(`the first size must hold the ${WARMUP_KEYS} warm-up and ${samples} measured keys`);
  if (sizes.at(-1)! - (sizes.at(-2) ?? 0) < samples + memoryKeys) throw new Error(`the last step must add room for ${samples} measured and ${memoryKeys} memory keys`);
  const databaseUrl = process.env.BENCH_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";

  const phases: { phase: string; seconds: number }[] = [];
  const timed = async <T>(phase: string, run: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const out = await run();
    const seconds = round((Date.now() - t0) / 1000, 1);
    phases.push({ phase, seconds });
    log(`scale bench: ${phase}: ${seconds} s`);
    return out;
  };

  const serverSecret = randomBytes(32).toString("base64url");
  const world = await timed(`create ${WARMUP_KEYS + samples * sizes.length + memoryKeys} real keys (createKey)`, () => makeWorld(serverSecret, WARMUP_KEYS + samples * sizes.length + memoryKeys));
  const take = (() => {
    let next = 0;
    return (n: number) => world.keys.slice(next, (next += n));
  })();
  const plan = { sizes, warmup: take(WARMUP_KEYS), measured: sizes.map(() => take(samples)), memory: take(memoryKeys) };

  const rows: ScaleRow[] = [];
  const skipped: string[] = [];
  let memory: ScaleBenchResult["memory"];
  const tmp = mkdtempSync(join(os.tmpdir(), "keygate-bench-scale-"));
  try {
    const store = await openStore({ dataDir: tmp, serverSecret });
    const filler = sqliteFiller(join(tmp, "keygate.db"), world.keys[0]!.record);
    try {
      await seed(store, world);
      rows.push(...(await runStore("sqlite", store, filler, plan, serverSecret, timed)));
      const warmup = plan.warmup.map((k) => k.raw);
      const keys = plan.memory.map((k) => k.raw);
      memory = await timed(`memory per cached key (${memoryKeys} keys)`, async () => ({
        keys: memoryKeys,
        cacheBytesPerKey: await heapPerKey(store, serverSecret, warmup, keys, keepNothing),
        withLimiterBytesPerKey: await heapPerKey(store, serverSecret, warmup, keys, undefined),
      }));
    } finally {
      await filler.close();
      await store.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }

  let postgres: string | null = null;
  const probe = await probePostgres(databaseUrl);
  if ("error" in probe) {
    skipped.push(`postgres: nothing answers at ${redactUrl(databaseUrl)} (${probe.error}); start PostgreSQL or set BENCH_DATABASE_URL.`);
    log(`scale bench: ${skipped.at(-1)}`);
  } else {
    postgres = probe.version;
    const created = await onPostgres(databaseUrl, async (c) => {
      if ((await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [BENCH_DATABASE])).rowCount) return false;
      await c.query(`CREATE DATABASE ${BENCH_DATABASE}`);
      return true;
    });
    const benchUrl = withDatabase(databaseUrl, BENCH_DATABASE);
    const schema = `scale_${randomBytes(6).toString("hex")}`;
    try {
      const store = await openPostgresStore(benchUrl, { schema, serverSecret });
      let filler: Filler | undefined;
      try {
        await store.migrate();
        await seed(store, world);
        filler = await postgresFiller(benchUrl, schema, world.keys[0]!.record);
        rows.push(...(await runStore("postgres", store, filler, plan, serverSecret, timed)));
      } finally {
        await filler?.close();
        await store.close();
      }
    } finally {
      await onPostgres(benchUrl, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
      if (created) await onPostgres(databaseUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${BENCH_DATABASE}`));
    }
  }

  const sqlite = (new DatabaseSync(":memory:").prepare("SELECT sqlite_version() AS v").get() as { v: string }).v;
  return {
    method: {
      sizes,
      samples,
      warmPasses: WARM_PASSES,
      warmupKeys: WARMUP_KEYS,
      memoryKeys,
      request: `${REQUEST.method} ${REQUEST.path} from ${REQUEST.ip}`,
      key: `VibeCode API key (vibe_api_), ${KEY_SCOPES.length} scopes, made by createKey`,
      cacheCapacity: CACHE_CAPACITY,
      sqlite,
      postgres,
      node: process.version,
    },
    rows,
    memory,
    goals: goalsOf(rows),
    phases,
    skipped,
  };
}

/** The Markdown lines of a scale benchmark result: latency per store and size, memory, goals. */
export function scaleTable(result: ScaleBenchResult): string[] {
  const name = { sqlite: `SQLite ${result.method.sqlite}`, postgres: `PostgreSQL ${result.method.postgres ?? ""}`.trim() };
  const lines = [
    "| store | keys in the store | cold median µs | cold p99 µs | warm median µs | warm p99 µs | store lookup alone, median µs | p99 µs |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of result.rows) {
    lines.push(`| ${name[r.store]} | ${r.keys.toLocaleString("en-US")} | ${r.cold.medianUs} | ${r.cold.p99Us} | ${r.warm.medianUs} | ${r.warm.p99Us} | ${r.lookup.medianUs} | ${r.lookup.p99Us} |`);
  }
  const m = result.memory;
  lines.push(
    "",
    `Memory per cached key (${m.keys.toLocaleString("en-US")} keys, V8 heap after GC): ${m.cacheBytesPerKey} B for the cache alone, ${m.withLimiterBytesPerKey} B with the in-memory limiter's state for the key.`,
    "",
    "| store | goal | measured | |",
    "|---|---|---|---|",
  );
  for (const g of result.goals) lines.push(`| ${name[g.store]} | ${g.goal} | ${g.measured} | ${g.met ? "met" : "not met"} |`);
  for (const s of result.skipped) lines.push("", `Skipped: ${s}`);
  return lines;
}


/** The heading and the tables, as printed by `npm run bench` and by this file alone. */
export function scaleReport(result: ScaleBenchResult): string[] {
  const m = result.method;
  return [
    `Scale: ${m.samples} measured keys per size (cold once each, warm ${m.warmPasses} passes), ${m.request}, ${m.key}; sizes ${m.sizes.map((s) => s.toLocaleString("en-US")).join(" → ")}; Node ${m.node}\n`,
    ...scaleTable(result),
  ];
}

if (import.meta.main) console.log(scaleReport(await runScaleBench()).join("\n"));
