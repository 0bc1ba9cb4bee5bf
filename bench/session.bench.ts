/**
 * The cost of an app session (issue 15): `GET /v1/deals` with an authorization key and a session
 * token (X-Api-Key: vibe_app_… + Authorization: Bearer vibe_session_…) against the same call with
 * an API key (X-Api-Key: vibe_api_…). Goal: the session check costs at most 10 % more.
 *
 * Method: one keygate in this process (buildServer, SQLite in memory, VibeCode with perMinute and
 * portalRequestsPerSecond raised to 10⁹ so no limit refuses), listening on 127.0.0.1; a sandbox
 * portal with the demo data and its request limit raised as well. The API key and the app key
 * hold the same scopes (crm); the session comes from the real flow (consent as a portal member,
 * code, POST /v1/oauth/token). Both calls reach the sandbox over HTTP: the API key through the
 * portal's webhook, the session through its user's own. Measured twice:
 *  - verification alone, in process: `admission(...).admit` on the same store (as every request
 *    goes through it: key cache hit, with the session the session cache hit too, limits counted);
 *  - the whole call over HTTP, one undici connection per variant, one request after the other.
 * The variants alternate in ROUNDS rounds of CALLS calls each (after a warm-up of the same size),
 * which of them goes first alternating too, so drift of the machine falls on both; reported: the median per-call time of each and the ratio
 * of the medians. Every measured answer must be 200 (else the benchmark fails).
 *
 * Environment: BENCH_SESSION_ROUNDS (15), BENCH_SESSION_CALLS (300 over HTTP; ×100 in process).
 */
import { createHash, randomBytes } from "node:crypto";
import { Client } from "undici";
import { setPassword } from "../src/accounts/links.ts";
import { compileProfile } from "../src/core/profile/profile.ts";
import { type Admission, admission } from "../src/gateway/admission.ts";
import { buildServer } from "../src/gateway/server.ts";
import { createUser, issueManagementKey } from "../src/manage/users.ts";
import { BUILTIN_PROFILES } from "../src/profiles/index.ts";
import { openSqliteStore } from "../src/store/index.ts";
import { createSandbox, sandboxWebhookToken, seedDemoData } from "../src/upstream/sandbox/index.ts";
import { envNumber, median, round } from "./harness.ts";

const HUGE = 1_000_000_000;
const CALLBACK = "https://app.example/callback";

export interface SessionBenchResult {
  rounds: number;
  calls: number;
  verify: { apiKeyUs: number; sessionUs: number; ratio: number };
  http: { apiKeyUs: number; sessionUs: number; ratio: number };
}

export async function runSessionBench(): Promise<SessionBenchResult> {
  const rounds = envNumber("BENCH_SESSION_ROUNDS", 15);
  const calls = envNumber("BENCH_SESSION_CALLS", 300);
  const spec = structuredClone(BUILTIN_PROFILES.vibecode!);
  spec.limits = { ...spec.limits, perMinute: HUGE, portalRequestsPerSecond: HUGE };
  const profile = compileProfile(spec);
  const serverSecret = randomBytes(32).toString("base64url");
  const store = await openSqliteStore(":memory:", { serverSecret });
  await store.migrate();
  const app = buildServer({ profile, store, serverSecret });
  const base = await app.listen({ host: "127.0.0.1", port: 0 });
  const client = new Client(base, { pipelining: 1 });
  const request = async (method: string, path: string, headers: Record<string, string>, body?: string) => {
    const r = await client.request({ method: method as "GET", path, headers: body === undefined ? headers : { "content-type": "application/json", ...headers }, body });
    const text = await r.body.text();
    return { status: r.statusCode, text, headers: r.headers };
  };
  const json = async (method: string, path: string, headers: Record<string, string>, body?: unknown) => {
    const r = await request(method, path, headers, body === undefined ? undefined : JSON.stringify(body));
    if (r.status >= 400) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return JSON.parse(r.text) as Record<string, unknown>;
  };
  try {
    const owner = await createUser(app.keygate, null, { email: "owner@bench.example" });
    const manage = { "x-api-key": (await issueManagementKey(app.keygate, owner, profile.management.scopes)).rawKey };
    const portal = (await json("POST", "/v1/portals", manage, { domain: "bench.bitrix24.ru", upstream: { kind: "sandbox" } })).data as { id: string };
    await createSandbox(store, portal.id, { token: sandboxWebhookToken(serverSecret, portal.id), limit: { requestBurst: HUGE, requestsPerSecond: HUGE } });
    await seedDemoData(store, portal.id);
    const apiKey = ((await json("POST", "/v1/keys", manage, { portalId: portal.id, name: "Bench API key", scopes: ["crm"] })).data as { rawKey: string }).rawKey;
    const appKey = ((await json("POST", "/v1/keys", manage, { portalId: portal.id, type: "app", name: "Bench app", scopes: ["crm"], redirectUris: [CALLBACK] })).data as { rawKey: string }).rawKey;

    // The session, by the real flow: the owner (an admin of the portal) signs in and allows the app.
    await setPassword(app.keygate, null, owner, "bench password 1234");
    const signIn = await request("POST", "/v1/session", {}, JSON.stringify({ email: owner.email, password: "bench password 1234" }));
    const cookie = String(signIn.headers["set-cookie"]).split(";")[0]!;
    const verifier = randomBytes(32).toString("base64url");
    const query = new URLSearchParams({ app_key: appKey, state: randomBytes(12).toString("hex"), redirect_uri: CALLBACK, code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256" });
    const page = await request("GET", `/v1/oauth/authorize?${query}`, { cookie });
    const fields = Object.fromEntries([...page.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)))]));
    const consent = await client.request({ method: "POST", path: "/v1/oauth/authorize", headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ ...fields, decision: "allow" }).toString() });
    await consent.body.text();
    const code = new URL(String(consent.headers.location)).searchParams.get("code");
    if (code === null) throw new Error(`consent gave no code: ${consent.statusCode}`);
    const session = (await json("POST", "/v1/oauth/token", {}, { grant_type: "authorization_code", app_key: appKey, code, redirect_uri: CALLBACK, code_verifier: verifier })).access_token as string;

    const variants = {
      apiKey: { "x-api-key": apiKey },
      session: { "x-api-key": appKey, authorization: `Bearer ${session}` },
    };
    const verifyOnce = async (headers: Record<string, string>) => {
      const r = await request("GET", "/v1/deals?limit=1", headers);
      if (r.status !== 200) throw new Error(`GET /v1/deals: ${r.status} ${r.text}`);
    };
    const httpTimes: Record<keyof typeof variants, number[]> = { apiKey: [], session: [] };
    for (let round_ = -1; round_ < rounds; round_++) {
      // Which goes first alternates too: a round's second half is not always the same variant's.
      for (const name of (round_ % 2 === 0 ? ["apiKey", "session"] : ["session", "apiKey"]) as (keyof typeof variants)[]) {
        const t0 = performance.now();
        for (let i = 0; i < calls; i++) await verifyOnce(variants[name]);
        if (round_ >= 0) httpTimes[name].push(((performance.now() - t0) * 1000) / calls);
      }
    }
    const verifyTimes = await measureVerification(admission({ profile, store, serverSecret, now: Date.now }), variants, rounds, calls * 100);
    const http = { apiKeyUs: round(median(httpTimes.apiKey), 1), sessionUs: round(median(httpTimes.session), 1), ratio: round(median(httpTimes.session) / median(httpTimes.apiKey), 3) };
    return { rounds, calls, verify: verifyTimes, http };
  } finally {
    await client.close();
    await app.close();
    await store.close();
  }
}

/** The verification of `GET /v1/deals` alone, by an admission on the server's store (src/gateway/admission.ts): what every request goes through. */
async function measureVerification(a: Admission, variants: Record<"apiKey" | "session", Record<string, string>>, rounds: number, calls: number) {
  const admit = (arrival: Parameters<Admission["admit"]>[0]) => a.admit(arrival);
  const times: Record<"apiKey" | "session", number[]> = { apiKey: [], session: [] };
  for (let r = -1; r < rounds; r++) {
    for (const name of r % 2 === 0 ? (["apiKey", "session"] as const) : (["session", "apiKey"] as const)) {
      const headers = variants[name];
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) {
        let v = admit({ method: "GET", url: "/v1/deals?limit=1", headers, clientIp: "127.0.0.1" });
        if (v instanceof Promise) v = await v;
        if (v.verification.refusal !== undefined || !v.spent.admitted) throw new Error(`${name}: refused ${JSON.stringify(v.verification.refusal)}`);
      }
      if (r >= 0) times[name].push(((performance.now() - t0) * 1000) / calls);
    }
  }
  await a.close();
  return { apiKeyUs: round(median(times.apiKey), 3), sessionUs: round(median(times.session), 3), ratio: round(median(times.session) / median(times.apiKey), 3) };
}

export function sessionReport(r: SessionBenchResult): string[] {
  const verdict = (ratio: number) => (ratio <= 1.1 ? "met" : "**not met**");
  return [
    "## App sessions (issue 15): GET /v1/deals, API key vs authorization key + session",
    "",
    `${r.rounds} alternating rounds; median per call.`,
    "",
    "| measured | API key | app key + session | ratio | goal ≤ 1.10 |",
    "|---|---:|---:|---:|---|",
    `| verification in process (${r.calls * 100} calls a round) | ${r.verify.apiKeyUs} µs | ${r.verify.sessionUs} µs | ${r.verify.ratio} | ${verdict(r.verify.ratio)} |`,
    `| whole call over HTTP to the sandbox (${r.calls} calls a round) | ${r.http.apiKeyUs} µs | ${r.http.sessionUs} µs | ${r.http.ratio} | ${verdict(r.http.ratio)} |`,
    "",
  ];
}
