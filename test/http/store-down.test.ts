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

if (await requireService("issue 14: the store away", `PostgreSQL at ${redactUrl(url)}`, () => probePostgres(url))) {
  describe("issue 14: a node whose store went away", () => {
    const schema = `kg_down_${randomBytes(6).toString("hex")}`;
    const serverSecret = randomBytes(32).toString("base64url");
    let relay: Relay;
    let store: Store;
    let app: FastifyInstance;
    let ownerKey: string;
    let key: { id: string; rawKey: string };

    const call = async (method: "GET" | "POST" | "PATCH", path: string, apiKey: string, body?: unknown) => {
      const started = performance.now();
      const r = await app.inject({ method, url: path, headers: { "x-api-key": apiKey, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
      return { status: r.statusCode, json: r.json(), ms: performance.now() - started };
    };

    before(async () => {
      relay = await tcpRelay(Number(new URL(url).port || 5432));
      const u = new URL(url);
      u.port = String(relay.port);
      store = await openPostgresStore(u.toString(), { schema, max: 4, serverSecret });
      await store.migrate();
      app = buildServer({ profile: loadProfile("vibecode"), store, serverSecret });
      await app.ready();
      const owner = await createUser(app.keygate, null, { email: "owner@example.com" });
      ownerKey = (await issueManagementKey(app.keygate, owner, "vibe:mgmt:keys,vibe:mgmt:portals")).rawKey;
      const portal = (await call("POST", "/v1/portals", ownerKey, { domain: "down.example.com", upstream: { kind: "sandbox" } })).json.data;
      key = (await call("POST", "/v1/keys", ownerKey, { portalId: portal.id, name: "k", scopes: ["crm"] })).json.data;
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
  });
}
