/**
 * The app runtime's cost (issue 16 §2): a GET through the runtime — host to server, the cookie to
 * its user (cached), the X-Vibe-* identity added, keygate's cookies and the browser's X-Vibe-*
 * headers taken out, streamed through undici — against the same GET straight to the app server.
 * Reported beside the proxy benchmark (bench/proxy.bench.ts), which measures keygate's forwarding
 * of API requests; this one measures the forwarding of an app's pages.
 *
 * Method: one keygate in this process (buildServer, SQLite in memory, VibeCode, the runtime on a
 * port of its own), the app server (node:http, the same 1 KB JSON for every request) in this
 * process too, so both variants pay the same server cost out of the same CPU. The user is the
 * owner, signed in by the real exchange (an `__init` token minted as the placement handler does,
 * spent for the cookie). Two measures, the variants alternating in ROUNDS rounds (after a warm-up
 * round), which goes first alternating too:
 *  - latency: one undici connection, CALLS requests one after the other; the median per-call time;
 *  - throughput: CONCURRENCY requests in flight on as many connections for SECONDS; req/s.
 * Every answer must be 200 with the app's body (else the benchmark fails).
 *
 * Environment: BENCH_APPS_ROUNDS (9), BENCH_APPS_CALLS (500), BENCH_APPS_CONCURRENCY (32),
 * BENCH_APPS_SECONDS (2).
 */
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Client, Pool } from "undici";
import { buildServer } from "../src/gateway/server.ts";
import { createUser, issueManagementKey } from "../src/manage/users.ts";
import { loadProfile } from "../src/profiles/index.ts";
import { openSqliteStore } from "../src/store/index.ts";
import { sandboxUserFor } from "../src/upstream/sandbox/index.ts";
import { envNumber, median, round } from "./harness.ts";

export interface AppsBenchResult {
  rounds: number;
  calls: number;
  concurrency: number;
  seconds: number;
  latency: { directUs: number; runtimeUs: number; addedUs: number; ratio: number };
  throughput: { directRps: number; runtimeRps: number; ratio: number };
}

const BODY = JSON.stringify({ items: Array.from({ length: 12 }, (_, i) => ({ id: i, title: `Article ${i}`, status: "published", words: 400 + i })) });

export async function runAppsBench(): Promise<AppsBenchResult> {
  const rounds = envNumber("BENCH_APPS_ROUNDS", 9);
  const calls = envNumber("BENCH_APPS_CALLS", 500);
  const concurrency = envNumber("BENCH_APPS_CONCURRENCY", 32);
  const seconds = envNumber("BENCH_APPS_SECONDS", 2);
  const upstream = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(BODY));
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const profile = loadProfile("vibecode");
  const serverSecret = randomBytes(32).toString("base64url");
  const store = await openSqliteStore(":memory:", { serverSecret });
  await store.migrate();
  const app = buildServer({ profile, store, serverSecret, allowUpstream: ["127.0.0.1"], apps: {}, metrics: false });
  await app.ready();
  const runtime = app.appRuntime!;
  await new Promise<void>((resolve) => runtime.server.listen(0, "127.0.0.1", resolve));
  const runtimeOrigin = `http://127.0.0.1:${(runtime.server.address() as AddressInfo).port}`;
  const inject = async (method: string, url: string, key: string, body: unknown) => {
    const r = await app.inject({ method: method as "POST", url, headers: { "x-api-key": key, "content-type": "application/json" }, payload: JSON.stringify(body) });
    if (r.statusCode >= 400) throw new Error(`${method} ${url}: ${r.statusCode} ${r.body}`);
    return (r.json() as { data: Record<string, string> }).data;
  };
  const clients: (Client | Pool)[] = [];
  try {
    const owner = await createUser(app.keygate, null, { email: "owner@bench.example", name: "Bench Owner" });
    const manage = (await issueManagementKey(app.keygate, owner, profile.management.scopes)).rawKey;
    const portal = await inject("POST", "/v1/portals", manage, { domain: "apps-bench.bitrix24.ru", upstream: { kind: "sandbox" } });
    const apiKey = (await inject("POST", "/v1/keys", manage, { portalId: portal.id, name: "Bench API key", scopes: ["crm", "vibe:infra"] })).rawKey!;
    const appKey = await inject("POST", "/v1/keys", manage, { portalId: portal.id, type: "app", name: "Bench app", scopes: ["crm"] });
    const server = await inject("POST", "/v1/infra/servers", apiKey, { name: "Bench app", url: `${upstreamUrl}/` });
    const bitrixUserId = await sandboxUserFor(store, portal.id!, owner, serverSecret);
    const entry = new URL(await runtime.entryUrl({ serverId: server.id!, keyId: appKey.id!, userId: owner.id, portalId: portal.id!, bitrixUserId }, { placement: "DEFAULT" }));
    const host = entry.host;
    const exchange = new Client(runtimeOrigin);
    clients.push(exchange);
    const signedIn = await exchange.request({ method: "GET", path: `${entry.pathname}${entry.search}`, headers: { host } });
    await signedIn.body.text();
    if (signedIn.statusCode !== 302) throw new Error(`the __init exchange answered ${signedIn.statusCode}`);
    const cookie = String(signedIn.headers["set-cookie"]).split(";")[0]!;

    const variants = {
      direct: { origin: upstreamUrl, headers: {} as Record<string, string> },
      runtime: { origin: runtimeOrigin, headers: { host, cookie } },
    };
    type Name = keyof typeof variants;
    const check = (status: number, text: string, name: string) => {
      if (status !== 200 || text !== BODY) throw new Error(`${name}: ${status} ${text.slice(0, 200)}`);
    };
    const latencyOf = async (name: Name, client: Client) => {
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) {
        const r = await client.request({ method: "GET", path: "/articles?status=published", headers: variants[name].headers });
        check(r.statusCode, await r.body.text(), name);
      }
      return ((performance.now() - t0) * 1000) / calls;
    };
    const throughputOf = async (name: Name, pool: Pool) => {
      const end = performance.now() + seconds * 1000;
      let done = 0;
      const worker = async () => {
        while (performance.now() < end) {
          const r = await pool.request({ method: "GET", path: "/articles?status=published", headers: variants[name].headers });
          check(r.statusCode, await r.body.text(), name);
          done++;
        }
      };
      const t0 = performance.now();
      await Promise.all(Array.from({ length: concurrency }, worker));
      return done / ((performance.now() - t0) / 1000);
    };
    const single = { direct: new Client(variants.direct.origin), runtime: new Client(variants.runtime.origin) };
    const pools = { direct: new Pool(variants.direct.origin, { connections: concurrency }), runtime: new Pool(variants.runtime.origin, { connections: concurrency }) };
    clients.push(single.direct, single.runtime, pools.direct, pools.runtime);
    const latency: Record<Name, number[]> = { direct: [], runtime: [] };
    const throughput: Record<Name, number[]> = { direct: [], runtime: [] };
    for (let r = -1; r < rounds; r++) {
      for (const name of (r % 2 === 0 ? ["direct", "runtime"] : ["runtime", "direct"]) as Name[]) {
        const us = await latencyOf(name, single[name]);
        const rps = await throughputOf(name, pools[name]);
        if (r >= 0) {
          latency[name].push(us);
          throughput[name].push(rps);
        }
      }
    }
    const d = median(latency.direct);
    const rt = median(latency.runtime);
    return {
      rounds,
      calls,
      concurrency,
      seconds,
      latency: { directUs: round(d, 1), runtimeUs: round(rt, 1), addedUs: round(rt - d, 1), ratio: round(rt / d, 3) },
      throughput: { directRps: Math.round(median(throughput.direct)), runtimeRps: Math.round(median(throughput.runtime)), ratio: round(median(throughput.runtime) / median(throughput.direct), 3) },
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await app.close();
    await store.close();
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  }
}

export function appsReport(r: AppsBenchResult): string[] {
  return [
    "## App runtime (issue 16 §2): a GET through the runtime against the same GET straight to the app server",
    "",
    `${r.rounds} alternating rounds, medians; the app server, keygate and the load in one process (one CPU's worth shared by all).`,
    "",
    "| measured | straight to the app server | through the app runtime | ratio |",
    "|---|---:|---:|---:|",
    `| latency, one connection, ${r.calls} calls a round | ${r.latency.directUs} µs | ${r.latency.runtimeUs} µs (+${r.latency.addedUs} µs) | ${r.latency.ratio} |`,
    `| throughput, ${r.concurrency} in flight, ${r.seconds} s a round | ${r.throughput.directRps} req/s | ${r.throughput.runtimeRps} req/s | ${r.throughput.ratio} |`,
    "",
  ];
}
