/**
 * No acknowledged write is lost when keygate is killed (issue 10: keep the figure that held).
 * `keygate serve` takes writes from several clients at once — keys created, renamed, revoked —
 * and is killed with SIGKILL in the middle of them, a few times over, on SQLite and on
 * PostgreSQL. After each restart every write that was answered 2xx is there, exactly as answered,
 * and every acknowledged key works. Bounded: three trials of about a second each per store.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import pg from "pg";
import { postgresUrl, probePostgres, redactUrl, requireService } from "../support/services.ts";
import { keygateJson, startServe } from "./run.ts";

const TRIALS = 3;
const WRITERS = 6;

interface Acknowledged {
  id: string;
  rawKey: string;
  name: string;
  status: "ACTIVE" | "REVOKED";
  /** A change sent but not answered when the server died: it may or may not have been stored. */
  unanswered?: { name: string; status: "ACTIVE" | "REVOKED" };
}

/** Clients writing as fast as they are answered until `stop`; what was answered 2xx is acknowledged. */
async function write(url: string, key: string, portalId: string, acknowledged: Map<string, Acknowledged>, stop: { now: boolean }, writer: number): Promise<void> {
  const call = (method: string, path: string, body: unknown) =>
    fetch(`${url}${path}`, { method, headers: { "X-Api-Key": key, "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let n = 0;
  while (!stop.now) {
    try {
      const name = `w${writer}-${++n}`;
      const created = await call("POST", "/v1/keys", { portalId, name, scopes: ["crm"] });
      if (created.status !== 201) continue;
      const data = ((await created.json()) as { data: { id: string; rawKey: string } }).data;
      acknowledged.set(data.id, { id: data.id, rawKey: data.rawKey, name, status: "ACTIVE" });
      const change = n % 2 === 0 ? { name: `${name}-renamed` } : { status: "REVOKED" as const };
      const current = acknowledged.get(data.id)!;
      current.unanswered = { name: current.name, status: current.status, ...change };
      const changed = await call("PATCH", `/v1/keys/${data.id}`, change);
      if (changed.status === 200) acknowledged.set(data.id, { ...current, ...change, unanswered: undefined });
    } catch {
      // The server was killed mid-request: that write was never acknowledged.
    }
  }
}

async function trials(dataDir: string, args: string[]): Promise<void> {
  const init = keygateJson("init", "--data-dir", dataDir, ...args);
  assert.equal(init.status, 0, init.stderr);
  const key = init.json.managementKey as string;
  const acknowledged = new Map<string, Acknowledged>();
  for (let trial = 0; trial < TRIALS; trial++) {
    const { child, url } = await startServe("--data-dir", dataDir, ...args);
    const portalId = ((await (await fetch(`${url}/v1/portals`, { headers: { "X-Api-Key": key } })).json()) as { data: { id: string }[] }).data[0]!.id;
    const stop = { now: false };
    const writers = Array.from({ length: WRITERS }, (_, i) => write(url, key, portalId, acknowledged, stop, trial * WRITERS + i));
    const before = acknowledged.size;
    // Killed once the writes are well under way, wherever they are.
    while (acknowledged.size < before + 40) await new Promise((r) => setTimeout(r, 5));
    child.kill("SIGKILL");
    await once(child, "exit");
    stop.now = true;
    await Promise.all(writers);
  }
  const { child, url } = await startServe("--data-dir", dataDir, ...args);
  try {
    const lost: string[] = [];
    for (const a of acknowledged.values()) {
      const r = await fetch(`${url}/v1/keys/${a.id}`, { headers: { "X-Api-Key": key } });
      const stored = r.status === 200 ? ((await r.json()) as { data: { name: string; status: string } }).data : undefined;
      const is = (state: { name: string; status: string } | undefined) => state !== undefined && stored?.name === state.name && stored.status === state.status;
      if (!is(a) && !is(a.unanswered)) lost.push(`${a.id}: acknowledged ${a.name}/${a.status}, stored ${stored?.name}/${stored?.status}`);
      const used = await fetch(`${url}/v1/me`, { headers: { "X-Api-Key": a.rawKey } });
      if (stored && used.status !== (stored.status === "ACTIVE" ? 200 : 401)) lost.push(`${a.id}: the ${stored.status} key answers ${used.status}`);
    }
    assert.ok(acknowledged.size >= TRIALS * 40, `writes were acknowledged: ${acknowledged.size}`);
    assert.deepEqual(lost, [], `${lost.length} of ${acknowledged.size} acknowledged writes lost or wrong`);
  } finally {
    child.kill("SIGTERM");
    await once(child, "exit");
  }
}

const url = postgresUrl();
const pgUp = await requireService("kill -9 under write load [postgres]", `PostgreSQL at ${redactUrl(url)}`, () => probePostgres(url));

describe("kill -9 under write load", { timeout: 120_000 }, () => {
  it("issue 10: SQLite — every acknowledged write survives SIGKILL, three times over", async () => {
    await trials(mkdtempSync(join(tmpdir(), "keygate-crash-")), []);
  });

  if (pgUp) {
    const schema = `kg_crash_${process.pid}`;
    const admin = async (sql: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(sql).finally(() => client.end());
    };
    after(() => admin(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
    it("issue 10: PostgreSQL — every acknowledged write survives SIGKILL, three times over", async () => {
      await admin(`CREATE SCHEMA ${schema}`);
      const withSchema = `${url}${url.includes("?") ? "&" : "?"}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
      await trials(mkdtempSync(join(tmpdir(), "keygate-crash-")), ["--database", withSchema]);
    });
  }
});
