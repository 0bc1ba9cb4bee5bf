/**
 * issue 14 §1: three keygate nodes on one PostgreSQL database (a pool each) and a Redis of their
 * own. Redis makes a change reach the other nodes fast; the store's change feed makes it reach
 * them at all: with Redis dead, and on a node whose subscription went deaf without a sign.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { type Server, type Socket, connect, createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import { RedisInvalidation } from "../../src/gateway/invalidation.ts";
import { buildServer } from "../../src/gateway/server.ts";
import { deploymentId } from "../../src/limits/deployment.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import { openPostgresStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { freePort, postgresUrl, probePostgres, redactUrl, requireService, startRedis } from "../support/services.ts";

/** The documented bound with Redis away (docs/operations.md, "Several nodes"): a poll a second, well inside it. */
const BOUND_MS = 5_000;

/**
 * A TCP relay to Redis that can go deaf: it then drops every byte both ways and keeps the
 * connections open, as a stateful firewall or a half-dead NAT does. ioredis sees nothing wrong.
 */
async function relay(port: number): Promise<{ port: number; deaf: boolean; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const state = { deaf: false };
  const server: Server = createServer((client) => {
    const upstream = connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.on("data", (chunk) => void (state.deaf || upstream.write(chunk)));
    upstream.on("data", (chunk) => void (state.deaf || client.write(chunk)));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    get deaf() {
      return state.deaf;
    },
    set deaf(value: boolean) {
      state.deaf = value;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const url = postgresUrl();
if (await requireService("issue 14: nodes without Redis", `PostgreSQL at ${redactUrl(url)}`, () => probePostgres(url))) {
  describe("issue 14 §1: three nodes, one PostgreSQL, a Redis that dies or goes deaf", () => {
    const profile = loadProfile("vibecode");
    const serverSecret = randomBytes(32).toString("base64url");
    const schema = `kg_feed_${randomBytes(6).toString("hex")}`;
    const stores: Store[] = [];
    const nodes: FastifyInstance[] = [];
    let redisPort: number;
    let redis: ChildProcess;
    let deafRelay: Awaited<ReturnType<typeof relay>>;
    let ownerKey: string;
    let portalId: string;

    const node = async (redisAt: number) => {
      const store = await openPostgresStore(url, { schema, max: 4, serverSecret });
      await store.migrate();
      stores.push(store);
      const app = buildServer({ profile, store, serverSecret, invalidation: new RedisInvalidation(`redis://127.0.0.1:${redisAt}`, deploymentId(serverSecret)) });
      await app.ready();
      nodes.push(app);
      return app;
    };
    const call = (app: FastifyInstance, method: "GET" | "POST" | "PATCH", path: string, key: string, body?: unknown) =>
      app.inject({ method, url: path, headers: { "x-api-key": key, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });
    const newKey = async (app: FastifyInstance) => (await call(app, "POST", "/v1/keys", ownerKey, { portalId, name: "k", scopes: ["crm"] })).json().data as { id: string; rawKey: string };
    /** Asks the node until it refuses the key, for at most the bound; how long it took, or undefined. */
    const refusedWithin = async (app: FastifyInstance, key: string, boundMs: number): Promise<number | undefined> => {
      const start = performance.now();
      while (performance.now() - start < boundMs) {
        const r = await call(app, "GET", "/v1/me", key);
        if (r.statusCode === 401) {
          assert.equal(r.json().error.code, "KEY_INACTIVE");
          return performance.now() - start;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      return undefined;
    };

    before(async () => {
      redisPort = await freePort();
      redis = await startRedis(redisPort);
      deafRelay = await relay(redisPort);
      const a = await node(redisPort);
      await node(redisPort);
      await node(deafRelay.port);
      const kg = a.keygate;
      const owner = await createUser(kg, null, { email: "owner@example.com" });
      ownerKey = (await issueManagementKey(kg, owner, "vibe:mgmt:keys,vibe:mgmt:portals")).rawKey;
      portalId = (await call(a, "POST", "/v1/portals", ownerKey, { domain: "feed.example.com", upstream: { kind: "sandbox" } })).json().data.id;
    });
    after(async () => {
      for (const app of nodes) await app.close();
      for (const s of stores) await s.close();
      await deafRelay.close();
      redis.kill("SIGKILL");
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
    });

    it("issue 14: with Redis up, a key revoked through one node is refused by the other two", async () => {
      const [a, b, c] = nodes as [FastifyInstance, FastifyInstance, FastifyInstance];
      const key = await newKey(a);
      for (const n of nodes) assert.equal((await call(n, "GET", "/v1/me", key.rawKey)).statusCode, 200, "every node caches the key");
      assert.equal((await call(a, "PATCH", `/v1/keys/${key.id}`, ownerKey, { status: "REVOKED" })).statusCode, 200);
      assert.notEqual(await refusedWithin(b, key.rawKey, BOUND_MS), undefined);
      assert.notEqual(await refusedWithin(c, key.rawKey, BOUND_MS), undefined);
    });

    it("issue 14: a node whose Redis subscription silently went deaf hears of a revocation from the change feed", async () => {
      const [a, b, c] = nodes as [FastifyInstance, FastifyInstance, FastifyInstance];
      const key = await newKey(a);
      for (const n of nodes) assert.equal((await call(n, "GET", "/v1/me", key.rawKey)).statusCode, 200);
      deafRelay.deaf = true;
      try {
        assert.equal((await call(a, "PATCH", `/v1/keys/${key.id}`, ownerKey, { status: "REVOKED" })).statusCode, 200);
        assert.notEqual(await refusedWithin(b, key.rawKey, BOUND_MS), undefined, "Redis told node b");
        assert.notEqual(await refusedWithin(c, key.rawKey, BOUND_MS), undefined, "node c heard nothing from Redis, and still refuses within the bound");
      } finally {
        deafRelay.deaf = false;
      }
    });

    it("issue 14: with Redis dead, a key revoked through one node is refused by the others within the bound; portal changes reach them too; and again once Redis is back", async () => {
      const [a, b, c] = nodes as [FastifyInstance, FastifyInstance, FastifyInstance];
      const key = await newKey(a);
      for (const n of nodes) assert.equal((await call(n, "GET", "/v1/me", key.rawKey)).statusCode, 200);
      redis.kill("SIGKILL");
      await new Promise((r) => redis.once("exit", r));
      assert.equal((await call(a, "PATCH", `/v1/keys/${key.id}`, ownerKey, { status: "REVOKED" })).statusCode, 200, "revoking needs no Redis");
      assert.equal((await call(a, "GET", "/v1/me", key.rawKey)).statusCode, 401, "the node that stored it: at once");
      assert.notEqual(await refusedWithin(b, key.rawKey, BOUND_MS), undefined, "node b");
      assert.notEqual(await refusedWithin(c, key.rawKey, BOUND_MS), undefined, "node c");

      // A portal change (its request limit, in every key's /v1/me) reaches the others' kept answers the same way.
      const other = await newKey(a);
      const limitOf = async (n: FastifyInstance) => (await call(n, "GET", "/v1/me", other.rawKey)).json().data.rateLimit.requestsPerSecond as number;
      for (const n of nodes) assert.equal(await limitOf(n), 10);
      assert.equal((await call(a, "PATCH", `/v1/portals/${portalId}`, ownerKey, { requestLimit: 7 })).statusCode, 200);
      for (const n of [b, c]) {
        const start = performance.now();
        while ((await limitOf(n)) !== 7 && performance.now() - start < BOUND_MS) await new Promise((r) => setTimeout(r, 20));
        assert.equal(await limitOf(n), 7);
      }
      // Revoked through the operator's way in (the store directly, as `keygate` commands do): no node published anything.
      await a.keygate.store.updateKey(other.id, { status: "REVOKED" }, Date.now(), { audit: [] });
      for (const n of nodes) assert.notEqual(await refusedWithin(n, other.rawKey, BOUND_MS), undefined);

      redis = await startRedis(redisPort);
      const third = await newKey(a);
      for (const n of nodes) assert.equal((await call(n, "GET", "/v1/me", third.rawKey)).statusCode, 200);
      assert.equal((await call(a, "PATCH", `/v1/keys/${third.id}`, ownerKey, { status: "REVOKED" })).statusCode, 200);
      assert.notEqual(await refusedWithin(b, third.rawKey, BOUND_MS), undefined);
      assert.notEqual(await refusedWithin(c, third.rawKey, BOUND_MS), undefined);
    });
  });
}
