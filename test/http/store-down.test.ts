/**
 * issue 14: a node whose store (PostgreSQL) went away answers at once with 503 STORE_UNAVAILABLE
 * — a change it cannot write, an answer it has to read — never a 500, never a request left
 * hanging; a key it holds keeps being answered; once the store is back, so is everything.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import { buildServer } from "../../src/gateway/server.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import { openPostgresStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { type Relay, tcpRelay } from "../support/relay.ts";
import { postgresUrl, probePostgres, redactUrl, requireService } from "../support/services.ts";

const url = postgresUrl();
/** Well under a load balancer's usual timeouts: a client is told, not kept waiting. */
const FAST_MS = 3_000;
/** The store's bound on a query (--store-timeout-seconds; the test's is shorter than the default 5 s). */
const STORE_TIMEOUT_MS = 1_000;
/** Scheduling slack on a busy 2-core machine. */
const SLACK_MS = 750;

if (await requireService("issue 14: the store away", `PostgreSQL at ${redactUrl(url)}`, () => probePostgres(url))) {
  describe("issue 14: a node whose store went away", () => {
    const schema = `kg_down_${randomBytes(6).toString("hex")}`;
    const serverSecret = randomBytes(32).toString("base64url");
    let relay: Relay;
    let store: Store;
    let app: FastifyInstance;
    let ownerKey: string;
    let key: { id: string; rawKey: string };
    let portalId: string;

    const call = async (method: "GET" | "POST" | "PATCH", path: string, apiKey: string, body?: unknown) => {
      const started = performance.now();
      const r = await app.inject({ method, url: path, headers: { "x-api-key": apiKey, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
      return { status: r.statusCode, json: r.json(), ms: performance.now() - started };
    };

    before(async () => {
      relay = await tcpRelay(Number(new URL(url).port || 5432));
      const u = new URL(url);
      u.port = String(relay.port);
      store = await openPostgresStore(u.toString(), { schema, max: 4, serverSecret, timeoutMs: STORE_TIMEOUT_MS });
      await store.migrate();
      app = buildServer({ profile: loadProfile("vibecode"), store, serverSecret });
      await app.ready();
      const owner = await createUser(app.keygate, null, { email: "owner@example.com" });
      ownerKey = (await issueManagementKey(app.keygate, owner, "vibe:mgmt:keys,vibe:mgmt:portals")).rawKey;
      portalId = (await call("POST", "/v1/portals", ownerKey, { domain: "down.example.com", upstream: { kind: "sandbox" } })).json.data.id;
      key = (await call("POST", "/v1/keys", ownerKey, { portalId, name: "k", scopes: ["crm"] })).json.data;
    });
    after(async () => {
      await app.close();
      await store.close();
      await relay.close();
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
    });

    it("issue 14: revoking a key with the store away answers 503 STORE_UNAVAILABLE at once; GET /v1/me of a held key is answered or 503, never 500", async () => {
      assert.equal((await call("GET", "/v1/me", key.rawKey)).status, 200, "the node holds the key and its answer");
      assert.equal((await call("GET", "/v1/me", ownerKey)).status, 200);
      await relay.down();
      try {
        const revoke = await call("PATCH", `/v1/keys/${key.id}`, ownerKey, { status: "REVOKED" });
        assert.equal(revoke.status, 503, JSON.stringify(revoke.json));
        assert.equal(revoke.json.error.code, "STORE_UNAVAILABLE");
        assert.ok(revoke.ms < FAST_MS, `answered in ${revoke.ms.toFixed(0)} ms`);
        const me = await call("GET", "/v1/me", key.rawKey);
        assert.ok(me.status === 200 || me.status === 503, `GET /v1/me answered ${me.status}: ${JSON.stringify(me.json)}`);
        if (me.status === 503) assert.equal(me.json.error.code, "STORE_UNAVAILABLE");
        assert.ok(me.ms < FAST_MS, `answered in ${me.ms.toFixed(0)} ms`);
        const list = await call("GET", "/v1/keys", ownerKey);
        assert.equal(list.status, 503, JSON.stringify(list.json));
        assert.equal(list.json.error.code, "STORE_UNAVAILABLE");
      } finally {
        await relay.up();
      }
      const back = await call("PATCH", `/v1/keys/${key.id}`, ownerKey, { status: "REVOKED" });
      assert.equal(back.status, 200, JSON.stringify(back.json));
      assert.equal((await call("GET", "/v1/me", key.rawKey)).status, 401, "nothing was stored while the store was away; now the revocation is");
    });

    it("a store that silently drops packets (no reset) answers 503 STORE_UNAVAILABLE within the store's bound; once it answers again, so does everything", async () => {
      relay.deaf = true;
      try {
        const list = await call("GET", `/v1/keys?portalId=${portalId}`, ownerKey);
        assert.equal(list.status, 503, JSON.stringify(list.json));
        assert.equal(list.json.error.code, "STORE_UNAVAILABLE");
        assert.ok(list.ms < STORE_TIMEOUT_MS + SLACK_MS, `a read answered in ${list.ms.toFixed(0)} ms (bound ${STORE_TIMEOUT_MS} ms)`);
        const write = await call("PATCH", `/v1/keys/${key.id}`, ownerKey, { name: "renamed while deaf" });
        assert.equal(write.status, 503, JSON.stringify(write.json));
        assert.equal(write.json.error.code, "STORE_UNAVAILABLE");
        assert.ok(write.ms < STORE_TIMEOUT_MS + SLACK_MS, `a write answered in ${write.ms.toFixed(0)} ms (bound ${STORE_TIMEOUT_MS} ms)`);
        // More requests than pooled connections: those waiting for a connection are bounded too (the wait, then the query).
        const burst = await Promise.all(Array.from({ length: 8 }, () => call("GET", `/v1/keys?portalId=${portalId}`, ownerKey)));
        for (const r of burst) {
          assert.equal(r.status, 503, JSON.stringify(r.json));
          assert.ok(r.ms < 2 * STORE_TIMEOUT_MS + SLACK_MS, `a queued read answered in ${r.ms.toFixed(0)} ms (bound 2 × ${STORE_TIMEOUT_MS} ms)`);
        }
      } finally {
        relay.deaf = false;
      }
      // The connections that timed out were discarded: a reused one would still wait for its lost answer.
      const again = await Promise.all(Array.from({ length: 8 }, () => call("GET", `/v1/keys?portalId=${portalId}`, ownerKey)));
      for (const r of again) assert.equal(r.status, 200, JSON.stringify(r.json));
      const write = await call("PATCH", `/v1/keys/${key.id}`, ownerKey, { name: "renamed" });
      assert.equal(write.status, 200, JSON.stringify(write.json));
      assert.equal(write.json.data.name, "renamed");
    });

    it("a transaction whose statement got no answer fails within the bound: its connection is destroyed, not rolled back (a ROLLBACK would wait a second bound)", async () => {
      await store.sql.all("SELECT 1", []); // a pooled connection, idle, for the transaction to take
      relay.deaf = true;
      const started = performance.now();
      try {
        await assert.rejects(store.sql.atomically([{ sql: "SELECT 1", params: [] }]), /Query read timeout/);
      } finally {
        relay.deaf = false;
      }
      const ms = performance.now() - started;
      assert.ok(ms < STORE_TIMEOUT_MS + SLACK_MS, `failed after ${ms.toFixed(0)} ms (bound ${STORE_TIMEOUT_MS} ms)`);
      assert.equal(await store.sql.atomically([{ sql: "SELECT 1", params: [] }]), true, "the next transaction runs on a sound connection");
    });
  });
}
