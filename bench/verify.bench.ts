/**
 * In-process verification (issue 6, scenario 1): the whole decision on one presented key, per
 * call, awaited one call after the other, against a hand-written floor and against better-auth's
 * API-key plugin. Goals: keygate within 3× the floor, and at least 20× faster than better-auth.
 *
 *  - keygate: `createVerifier(...).verify({ key, method, path, ip })` (src/gateway/verifier.ts)
 *    on a data directory set up by `initInstance` (embedded SQLite, VibeCode), the profile's only
 *    change being its limits: `perMinute` and `portalRequestsPerSecond` raised to 10⁹, so that the
 *    in-memory limiter (the default) counts every call and refuses none. The key is a portal API
 *    key (`vibe_api_`, 47 characters) made with `createKey` on the sandbox portal: the scope
 *    benchmark's 10 scopes and an IP allow-list holding the caller's address, no rateLimit of its
 *    own. Each call: SHA-256 digest with the server secret, key-cache hit (a cached key's format and
 *    checksum were checked when it was loaded: the digest binds the exact string), the
 *    route match of `GET /v1/tasks/42` (needs `task` and `tasks`), status, expiry, IP allow-list,
 *    scopes, mode, 2 limits counted (platform per minute, portal per second), last-used time noted.
 *  - floor: what no verifier can skip: SHA-256 over the server secret and the same key
 *    (node:crypto `hash`), a `Map` lookup of the digest, a status check; an async function.
 *  - better-auth: `auth.api.verifyApiKey({ body: { key, permissions } })`, better-auth with
 *    `@better-auth/api-key` at its defaults (SHA-256 key hashing, 64-character keys, keys in the
 *    database, usage updates awaited, its per-key rate limit on with its 24-hour window) except:
 *    the rate limit's maxRequests raised from 10 to 10⁹ (as keygate's limits: counted, never
 *    refusing); email and password sign-up on, to create the user who owns the key through its
 *    API (`signUpEmail`), then `createApiKey` with `permissions` of 10 resources
 *    (`read`, `write`), verified with `{ task: ["read"], tasks: ["read"] }` (its counterpart of
 *    keygate's scope check); its logger off (on the measured path nothing logs: only the wrong-key
 *    check does). It has no IP allow-list, route table or read-only mode: those steps of keygate
 *    have no counterpart. Two stores:
 *      - SQLite: node:sqlite `DatabaseSync` on a file beside keygate's, as its docs show, schema
 *        made by its migrations (`getMigrations`), with the journal settings keygate's own store
 *        uses (WAL, synchronous NORMAL) rather than SQLite's defaults, so that neither pays for
 *        fsyncs the other does not;
 *      - memory: its `memoryAdapter` (meant for development and tests), no SQL at all: its
 *        fastest store, so that the comparison does not rest on SQLite.
 *    The API-key plugin's latest release (1.7.5) pins better-call 1.4.0 and @better-auth/utils
 *    0.4.2 exactly, which only better-auth 1.7.5 (its own release) matches, hence that version
 *    (and @better-auth/core 1.7.5 in devDependencies: without it npm resolves the plugin's peer
 *    @better-auth/core to the newest, which conflicts with those pins).
 *
 * Method: for each verifier in turn, a warm-up of at least WARMUP_MS (which also sizes a batch to
 * about BATCH_MS), then BATCHES batches; the median over the batches of the wall time per call,
 * p10 and p90 over the batches. Before measuring, each verifier must accept the key and refuse a
 * wrong one, and every measured call must be accepted (a rate limit that refused would void the
 * figures): otherwise the benchmark fails rather than report. "other CPU" is the machine's busy
 * CPU outside this process during a verifier's batches, in cores (noise from other work).
 */
import { hash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { apiKey } from "@better-auth/api-key";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { getMigrations } from "better-auth/db/migration";
import { SANDBOX_DOMAIN, initInstance } from "../src/cli/setup.ts";
import { BUILTIN_PROFILES, createVerifier, generateKey, keyDigest } from "../src/index.ts";
import { createKey } from "../src/manage/keys.ts";
import { KEY_SCOPES, machineCpu, round } from "./harness.ts";

const BATCHES = 25;
const WARMUP_MS = 500;
const BATCH_MS = 120;
const MIN_BATCH_CALLS = 20;
const HUGE = 1_000_000_000;
const CLIENT_IP = "203.0.113.7";
const METHOD = "GET";
const PATH = "/v1/tasks/42";
/** better-auth's counterpart: the same 10 names as resources, and what the route needs of them. */
const PERMISSIONS = Object.fromEntries(KEY_SCOPES.map((s) => [s, ["read", "write"]]));
const REQUIRED = { task: ["read"], tasks: ["read"] };

type VerifierName = "keygate" | "floor" | "better-auth (SQLite)" | "better-auth (memory)";

export interface VerifyRow {
  verifier: VerifierName;
  /** Wall time per call: median over the batches, their 10th and 90th percentiles. */
  medianUs: number;
  p10Us: number;
  p90Us: number;
  batches: number;
  callsPerBatch: number;
  /** Busy CPU of the rest of the machine during the batches, in cores; null off Linux. */
  otherCpu: number | null;
}

export interface VerifyBenchResult {
  method: {
    batches: number;
    batchMs: number;
    warmupMs: number;
    request: string;
    keyLength: { keygate: number; betterAuth: number };
    node: string;
    betterAuth: string;
    betterAuthApiKey: string;
  };
  rows: VerifyRow[];
  /** Of the medians. */
  ratios: { keygateOverFloor: number; betterAuthSqliteOverKeygate: number; betterAuthMemoryOverKeygate: number };
  goals: { withinThreeTimesFloor: boolean; twentyTimesFasterThanBetterAuth: boolean };
}

/**
 * One verifier under test: its own call, returning its own promise (no wrapper of ours around
 * it), the benchmark key and a wrong one.
 */
interface Side {
  verifier: VerifierName;
  call(key: string): Promise<{ valid: boolean }>;
  key: string;
  wrongKey: string;
}

const elapsedMs = (since: bigint) => Number(process.hrtime.bigint() - since) / 1e6;

async function measure(side: Side): Promise<VerifyRow> {
  const { call, key } = side;
  if (!(await call(key)).valid) throw new Error(`${side.verifier}: the benchmark key is refused; no figures`);
  if ((await call(side.wrongKey)).valid) throw new Error(`${side.verifier}: a wrong key is accepted; no figures`);
  let refused = 0;
  let warmupCalls = 0;
  const warmupStart = process.hrtime.bigint();
  while (elapsedMs(warmupStart) < WARMUP_MS) {
    if (!(await call(key)).valid) refused++;
    warmupCalls++;
  }
  const callsPerBatch = Math.max(MIN_BATCH_CALLS, Math.round((BATCH_MS * warmupCalls) / elapsedMs(warmupStart)));
  const perCallUs: number[] = [];
  const machineBefore = machineCpu();
  const ownBefore = process.cpuUsage();
  const wallBefore = process.hrtime.bigint();
  for (let b = 0; b < BATCHES; b++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < callsPerBatch; i++) if (!(await call(key)).valid) refused++;
    perCallUs.push((elapsedMs(start) * 1000) / callsPerBatch);
  }
  const wallSeconds = elapsedMs(wallBefore) / 1000;
  const own = process.cpuUsage(ownBefore);
  const machineAfter = machineCpu();
  if (refused > 0) throw new Error(`${side.verifier}: ${refused} calls with the benchmark key were refused during the run; no figures`);
  perCallUs.sort((a, b) => a - b);
  const at = (q: number) => round(perCallUs[Math.floor(q * (perCallUs.length - 1))]!, 3);
  const otherCpu = machineBefore && machineAfter ? round(Math.max(0, (machineAfter.busy - machineBefore.busy - (own.user + own.system) / 1e6) / wallSeconds)) : null;
  return { verifier: side.verifier, medianUs: at(0.5), p10Us: at(0.1), p90Us: at(0.9), batches: BATCHES, callsPerBatch, otherCpu };
}

/** keygate: a data directory set up as `keygate init` does, a portal API key, the in-process verifier. */
async function keygateSides(tmp: string): Promise<{ sides: Side[]; keyLength: number; close(): Promise<void> }> {
  const spec = structuredClone(BUILTIN_PROFILES.vibecode!);
  spec.limits = { ...spec.limits, perMinute: HUGE, portalRequestsPerSecond: HUGE };
  const profileFile = join(tmp, "vibecode-bench.json");
  writeFileSync(profileFile, JSON.stringify(spec));
  // database "": SQLite in the data directory even when KEYGATE_DATABASE_URL names a PostgreSQL.
  const { instance, ownerId } = await initInstance({ dataDir: join(tmp, "keygate"), database: "", profile: profileFile });
  const { kg } = instance;
  const owner = (await kg.store.getUser(ownerId))!;
  const sandbox = (await kg.store.listPortalsForUser(ownerId)).find((p) => p.domain === SANDBOX_DOMAIN)!;
  const { key: record, rawKey } = await createKey(kg, { user: owner, keyId: null, ip: null }, { portalId: sandbox.id, type: "api", name: "verify bench", scopes: KEY_SCOPES, ipWhitelist: [CLIENT_IP] });
  const wrongKey = generateKey(kg.profile.keyType("api")!.prefix);
  const verifier = createVerifier({ profile: kg.profile, store: kg.store, serverSecret: kg.serverSecret });
  // The floor, on the same key and secret: digest, map lookup, status.
  const records = new Map([[keyDigest(kg.serverSecret, rawKey), { status: record.status }]]);
  const floor = async (key: string) => ({ valid: records.get(hash("sha256", kg.serverSecret + key, "base64url"))?.status === "ACTIVE" });

  return {
    sides: [
      { verifier: "floor", call: floor, key: rawKey, wrongKey },
      { verifier: "keygate", call: (key) => verifier.verify({ key, method: METHOD, path: PATH, ip: CLIENT_IP }), key: rawKey, wrongKey },
    ],
    keyLength: rawKey.length,
    close: async () => {
      await verifier.close();
      await instance.close();
    },
  };
}

/** better-auth with its API-key plugin on one store: a user signed up through its API, who owns one key. */
async function betterAuthSide(verifier: VerifierName, database: DatabaseSync | ReturnType<typeof memoryAdapter>): Promise<{ side: Side; keyLength: number }> {
  const auth = betterAuth({
    database,
    secret: randomBytes(32).toString("base64url"),
    baseURL: "http://127.0.0.1:3000",
    emailAndPassword: { enabled: true },
    logger: { disabled: true },
    plugins: [apiKey({ rateLimit: { maxRequests: HUGE } })],
  });
  // Its migrations build SQL schemas; the memory adapter needs none (getMigrations would exit the process).
  if (database instanceof DatabaseSync) await (await getMigrations(auth.options)).runMigrations();
  const { user } = await auth.api.signUpEmail({ body: { email: "owner@example.com", password: randomBytes(16).toString("base64url"), name: "Owner" } });
  const { key } = await auth.api.createApiKey({ body: { userId: user.id, name: "verify bench", permissions: PERMISSIONS } });
  // A near miss: the same key with its last character changed.
  const wrongKey = key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");
  return { side: { verifier, call: (k) => auth.api.verifyApiKey({ body: { key: k, permissions: REQUIRED } }), key, wrongKey }, keyLength: key.length };
}

const versionOf = (pkg: string) => (JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), "utf8")) as { version: string }).version;

export async function runVerifyBench(): Promise<VerifyBenchResult> {
  const tmp = mkdtempSync(join(os.tmpdir(), "keygate-verify-bench-"));
  let sqlite: DatabaseSync | undefined;
  let keygate: Awaited<ReturnType<typeof keygateSides>> | undefined;
  try {
    keygate = await keygateSides(tmp);
    sqlite = new DatabaseSync(join(tmp, "better-auth.db"));
    sqlite.exec("PRAGMA journal_mode = WAL");
    sqlite.exec("PRAGMA synchronous = NORMAL");
    const baSqlite = await betterAuthSide("better-auth (SQLite)", sqlite);
    const baMemory = await betterAuthSide("better-auth (memory)", memoryAdapter({ user: [], session: [], account: [], verification: [], apikey: [] }));

    const rows: VerifyRow[] = [];
    for (const side of [...keygate.sides, baSqlite.side, baMemory.side]) rows.push(await measure(side));
    const median = (v: VerifierName) => rows.find((r) => r.verifier === v)!.medianUs;
    const ratios = {
      keygateOverFloor: round(median("keygate") / median("floor"), 2),
      betterAuthSqliteOverKeygate: round(median("better-auth (SQLite)") / median("keygate"), 1),
      betterAuthMemoryOverKeygate: round(median("better-auth (memory)") / median("keygate"), 1),
    };
    return {
      method: {
        batches: BATCHES,
        batchMs: BATCH_MS,
        warmupMs: WARMUP_MS,
        request: `${METHOD} ${PATH} from ${CLIENT_IP}`,
        keyLength: { keygate: keygate.keyLength, betterAuth: baSqlite.keyLength },
        node: process.version,
        betterAuth: versionOf("better-auth"),
        betterAuthApiKey: versionOf("@better-auth/api-key"),
      },
      rows,
      ratios,
      goals: {
        withinThreeTimesFloor: ratios.keygateOverFloor <= 3,
        twentyTimesFasterThanBetterAuth: Math.min(ratios.betterAuthSqliteOverKeygate, ratios.betterAuthMemoryOverKeygate) >= 20,
      },
    };
  } finally {
    await keygate?.close();
    sqlite?.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

const WHAT: Record<VerifierName, string> = {
  keygate: "the whole decision: digest, cache hit (format and checksum are checked on a miss), route, status, IP, scopes, mode, 2 limits",
  floor: "SHA-256 of secret + key, Map lookup, status check",
  "better-auth (SQLite)": "verifyApiKey with permissions; node:sqlite file (WAL)",
  "better-auth (memory)": "verifyApiKey with permissions; memoryAdapter",
};

export function verifyTable(result: VerifyBenchResult): string[] {
  const met = (ok: boolean) => (ok ? "met" : "not met");
  const { ratios, goals } = result;
  return [
    "| verifier | what one call does | median µs/call | p10 | p90 | calls/batch | other CPU |",
    "|---|---|---:|---:|---:|---:|---:|",
    ...result.rows.map((r) => `| ${r.verifier} | ${WHAT[r.verifier]} | ${r.medianUs} | ${r.p10Us} | ${r.p90Us} | ${r.callsPerBatch} | ${r.otherCpu ?? "–"} |`),
    "",
    "| ratio of medians | value | goal |",
    "|---|---:|---|",
    `| keygate / floor | ${ratios.keygateOverFloor} | ≤ 3× floor: ${met(goals.withinThreeTimesFloor)} |`,
    `| better-auth (SQLite) / keygate | ${ratios.betterAuthSqliteOverKeygate} | ≥ 20× faster than better-auth: ${met(ratios.betterAuthSqliteOverKeygate >= 20)} |`,
    `| better-auth (memory) / keygate | ${ratios.betterAuthMemoryOverKeygate} | ≥ 20× faster than better-auth: ${met(ratios.betterAuthMemoryOverKeygate >= 20)} |`,
  ];
}


/** The heading and the table, as printed by `npm run bench` and by this file alone. */
export function verifyReport(result: VerifyBenchResult): string[] {
  const m = result.method;
  return [`In-process verification, ${m.request}: median of ${m.batches} batches of about ${m.batchMs} ms after a ${m.warmupMs} ms warm-up; Node ${m.node}, better-auth ${m.betterAuth}, @better-auth/api-key ${m.betterAuthApiKey}; keys of ${m.keyLength.keygate} (keygate) and ${m.keyLength.betterAuth} (better-auth) characters\n`, ...verifyTable(result)];
}

if (import.meta.main) console.log(verifyReport(await runVerifyBench()).join("\n"));
