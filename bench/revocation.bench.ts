/**
 * Revocation benchmark (issue 6): how soon a revoked key stops working on the node that revoked
 * it. Goal: the very next request after `PATCH /v1/keys/:id {"status": "REVOKED"}` returns is
 * refused (401 KEY_INACTIVE).
 *
 * Method: one real keygate, `node bench/servers/keygate.ts --limits memory` (the server as
 * `keygate serve` builds it, embedded SQLite, the in-memory limiter) with VibeCode's platform
 * limit raised to 10⁹ a minute, so that no limit refuses anything. Per trial, through the
 * management API with the owner's management key: `POST /v1/keys` makes a portal API key, which
 * `GET /v1/me` uses 3 times (accepted: the key is now in the node's cache); a second connection
 * starts a stream of `GET /v1/me` with the key, one request after the other; once it has had 2
 * answers, `PATCH /v1/keys/:id {"status": "REVOKED"}` on the first connection, and as soon as its
 * answer is read, the next `GET /v1/me` with the key on that connection (again until one is
 * refused). Recorded: whether that very next request was refused with KEY_INACTIVE, the time from
 * the end of the PATCH's answer to the end of the first refusal, and, of the stream's requests
 * sent after the PATCH's answer was read, how many were accepted (must be 0; requests already on
 * their way when it returned may go either way, and are counted apart). The stream runs on until
 * 3 of its requests were sent after the PATCH returned. Any other answer (a 5xx, a 429) fails the
 * benchmark.
 *
 * Environment: BENCH_REVOCATION_TRIALS (200). Two undici connections (one each), not pinned.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "undici";
import { BUILTIN_PROFILES } from "../src/profiles/index.ts";
import { envNumber, KEY_SCOPES, median, round, spawnNode, stop, waitFor } from "./harness.ts";

export interface RevocationTrial {
  /** The first request after the PATCH returned was refused with KEY_INACTIVE. */
  nextRejected: boolean;
  /** From the end of the PATCH's answer to the end of the first refusal, ms. */
  latencyMs: number;
  /** Requests on the first connection until one was refused (1 = the very next). */
  requestsUntilRejected: number;
  patchMs: number;
  background: {
    /** Stream requests sent after the PATCH's answer was read… */
    sentAfterPatch: number;
    /** …of which accepted (must be 0). */
    acceptedAfterPatch: number;
    /** Stream requests on their way when the PATCH returned (sent before, answered after)… */
    inFlight: number;
    /** …of which accepted (allowed: they may have been decided before the revocation). */
    acceptedInFlight: number;
  };
}

export interface RevocationBenchResult {
  method: { trials: number; request: string; warmRequests: number; server: string; node: string };
  trials: RevocationTrial[];
  summary: {
    trials: number;
    nextRejected: number;
    backgroundSentAfterPatch: number;
    backgroundAcceptedAfterPatch: number;
    backgroundInFlight: number;
    backgroundAcceptedInFlight: number;
    latencyMedianMs: number;
    latencyP99Ms: number;
    latencyMaxMs: number;
    patchMedianMs: number;
    met: boolean;
  };
}

const BENCH_PER_MINUTE = 1_000_000_000;
const WARM_REQUESTS = 3;
/** Stream answers to wait for before revoking, and stream requests sent after the PATCH returned before stopping. */
const STREAM_BEFORE = 2;
const STREAM_AFTER = 3;
/** A revocation that has not taken effect after this many requests is a failure, not a latency. */
const MAX_ATTEMPTS = 1_000;

interface Answer {
  status: number;
  code: string | null;
  body: Record<string, unknown>;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

async function send(client: Client, method: "GET" | "POST" | "PATCH", path: string, key: string, body?: unknown): Promise<Answer> {
  const res = await client.request({
    method,
    path,
    headers: { "x-api-key": key, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const parsed = (await res.body.json()) as Record<string, unknown>;
  return { status: res.statusCode, code: ((parsed.error as { code?: string } | undefined)?.code ?? null) as string | null, body: parsed };
}

function expect(what: string, a: Answer, status: number, code: string | null = null): Answer {
  if (a.status !== status || a.code !== code) throw new Error(`${what}: expected ${status}${code ? ` ${code}` : ""}, got ${a.status} ${a.code ?? ""}: ${JSON.stringify(a.body).slice(0, 300)}`);
  return a;
}

const refused = (a: Answer) => a.status === 401 && a.code === "KEY_INACTIVE";

async function trial(main: Client, stream: Client, managementKey: string, portalId: string, n: number): Promise<RevocationTrial> {
  const created = expect("POST /v1/keys", await send(main, "POST", "/v1/keys", managementKey, { portalId, type: "api", name: `revocation bench ${n}`, scopes: KEY_SCOPES }), 201).body.data as {
    id: string;
    rawKey: string;
  };
  const key = created.rawKey;
  for (let i = 0; i < WARM_REQUESTS; i++) expect("GET /v1/me before the revocation", await send(main, "GET", "/v1/me", key), 200);

  // The stream: one request after the other on the second connection, each with its send time.
  const sent: { at: number; answer?: Answer; answeredAt?: number }[] = [];
  let patchedAt = Infinity;
  let stopping = false;
  let failed: unknown;
  const streaming = (async () => {
    try {
      while (!stopping) {
        const request: (typeof sent)[number] = { at: now() };
        sent.push(request);
        request.answer = await send(stream, "GET", "/v1/me", key);
        request.answeredAt = now();
        if (request.answer.status !== 200 && !refused(request.answer)) expect("the stream's GET /v1/me", request.answer, 200);
        stopping ||= sent.filter((r) => r.at > patchedAt).length >= STREAM_AFTER;
      }
    } catch (error) {
      failed = error;
    }
  })();
  try {
    while (sent.filter((r) => r.answer?.status === 200).length < STREAM_BEFORE) {
      if (failed !== undefined) throw failed;
      await sleep(1);
    }

    const patchStart = now();
    expect("PATCH /v1/keys/:id", await send(main, "PATCH", `/v1/keys/${created.id}`, managementKey, { status: "REVOKED" }), 200);
    patchedAt = now();
    let attempts = 0;
    let first: Answer | undefined;
    let rejectedAt = 0;
    while (attempts < MAX_ATTEMPTS) {
      attempts++;
      const a = await send(main, "GET", "/v1/me", key);
      if (refused(a)) {
        rejectedAt = now();
        first ??= a;
        break;
      }
      expect("GET /v1/me after the revocation", a, 200);
      first ??= a;
    }
    if (rejectedAt === 0) throw new Error(`key ${created.id} was still accepted ${MAX_ATTEMPTS} requests after its revocation returned`);
    await streaming;
    if (failed !== undefined) throw failed;
    const after = sent.filter((r) => r.at > patchedAt);
    const inFlight = sent.filter((r) => r.at <= patchedAt && r.answeredAt! > patchedAt);
    return {
      nextRejected: attempts === 1,
      latencyMs: round(rejectedAt - patchedAt, 3),
      requestsUntilRejected: attempts,
      patchMs: round(patchedAt - patchStart, 3),
      background: {
        sentAfterPatch: after.length,
        acceptedAfterPatch: after.filter((r) => r.answer?.status === 200).length,
        inFlight: inFlight.length,
        acceptedInFlight: inFlight.filter((r) => r.answer?.status === 200).length,
      },
    };
  } finally {
    stopping = true;
    await streaming;
  }
}

export async function runRevocationBench(log: (line: string) => void = (line) => console.error(line)): Promise<RevocationBenchResult> {
  const trials = Math.round(envNumber("BENCH_REVOCATION_TRIALS", 200));
  const tmp = mkdtempSync(join(os.tmpdir(), "keygate-bench-revocation-"));
  const spec = JSON.parse(JSON.stringify(BUILTIN_PROFILES.vibecode!)) as NonNullable<(typeof BUILTIN_PROFILES)["vibecode"]>;
  spec.limits = { ...spec.limits, perMinute: BENCH_PER_MINUTE };
  const profileFile = join(tmp, "vibecode-bench.json");
  writeFileSync(profileFile, JSON.stringify(spec));
  const server = spawnNode(null, ["bench/servers/keygate.ts", "--data-dir", join(tmp, "data"), "--profile", profileFile, "--limits", "memory"], "pipe");
  let main: Client | undefined;
  let stream: Client | undefined;
  try {
    const banner = await waitFor(server, /keygate listening on (http:\/\/\S+)/, "keygate (revocation)");
    const url = /keygate listening on (http:\/\/\S+)/.exec(banner)![1]!;
    const managementKey = /store it now\): (\S+)/.exec(banner)?.[1];
    if (!managementKey) throw new Error(`keygate printed no management key:\n${banner}`);
    main = new Client(url);
    stream = new Client(url);
    const portal = expect("POST /v1/portals", await send(main, "POST", "/v1/portals", managementKey, { domain: "revocation.example.com", name: "revocation bench", upstream: { kind: "sandbox" } }), 201);
    const portalId = (portal.body.data as { id: string }).id;
    log(`revocation bench: ${trials} trials on ${url}`);

    const results: RevocationTrial[] = [];
    for (let n = 0; n < trials; n++) results.push(await trial(main, stream, managementKey, portalId, n));

    const latencies = results.map((t) => t.latencyMs).sort((a, b) => a - b);
    const sum = (pick: (t: RevocationTrial) => number) => results.reduce((a, t) => a + pick(t), 0);
    const nextRejected = results.filter((t) => t.nextRejected).length;
    const acceptedAfterPatch = sum((t) => t.background.acceptedAfterPatch);
    return {
      method: {
        trials,
        request: "GET /v1/me",
        warmRequests: WARM_REQUESTS,
        server: "bench/servers/keygate.ts --limits memory (embedded SQLite), VibeCode with perMinute 10⁹",
        node: process.version,
      },
      trials: results,
      summary: {
        trials,
        nextRejected,
        backgroundSentAfterPatch: sum((t) => t.background.sentAfterPatch),
        backgroundAcceptedAfterPatch: acceptedAfterPatch,
        backgroundInFlight: sum((t) => t.background.inFlight),
        backgroundAcceptedInFlight: sum((t) => t.background.acceptedInFlight),
        latencyMedianMs: round(median(latencies), 3),
        latencyP99Ms: latencies[Math.max(0, Math.ceil(0.99 * latencies.length) - 1)]!,
        latencyMaxMs: latencies.at(-1)!,
        patchMedianMs: round(median(results.map((t) => t.patchMs)), 3),
        met: nextRejected === trials && acceptedAfterPatch === 0,
      },
    };
  } finally {
    await main?.close();
    await stream?.close();
    await stop(server);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The Markdown lines of a revocation benchmark result. */
export function revocationTable(result: RevocationBenchResult): string[] {
  const s = result.summary;
  return [
    "| trials | next request refused (KEY_INACTIVE) | stream requests accepted after the PATCH returned | PATCH → first refusal, median ms | p99 ms | max ms | PATCH median ms | goal: the very next request |",
    "|---:|---:|---:|---:|---:|---:|---:|---|",
    `| ${s.trials} | ${s.nextRejected} / ${s.trials} | ${s.backgroundAcceptedAfterPatch} of ${s.backgroundSentAfterPatch} | ${s.latencyMedianMs} | ${s.latencyP99Ms} | ${s.latencyMaxMs} | ${s.patchMedianMs} | ${s.met ? "met" : "not met"} |`,
    "",
    `Stream requests on their way when the PATCH returned: ${s.backgroundInFlight}, of which accepted ${s.backgroundAcceptedInFlight} (either answer is right for them).`,
  ];
}


/** The heading and the table, as printed by `npm run bench` and by this file alone. */
export function revocationReport(result: RevocationBenchResult): string[] {
  const m = result.method;
  return [`Revocation: ${m.trials} trials, ${m.request}, ${m.server}; Node ${m.node}\n`, ...revocationTable(result)];
}

if (import.meta.main) console.log(revocationReport(await runRevocationBench()).join("\n"));
