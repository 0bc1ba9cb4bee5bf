/**
 * Several keygate nodes: one store, one Redis. A change stored through one node reaches the
 * others' key caches through Redis pub/sub. Deployments with different server secrets on one
 * Redis share nothing there (issue 10.8).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { generateKey, keyFormat } from "../../src/core/keys/format.ts";
import { type Change, RedisInvalidation } from "../../src/gateway/invalidation.ts";
import { buildServer } from "../../src/gateway/server.ts";
import type { Keygate } from "../../src/manage/context.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { deploymentId } from "../../src/limits/deployment.ts";
import { RedisLimiter } from "../../src/limits/redis.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { outboundPolicy } from "../../src/upstream/outbound.ts";
import { probeRedis, redisUrl, requireService } from "../support/services.ts";

const url = redisUrl();

if (await requireService("nodes sharing Redis", `Redis at ${url}`, () => probeRedis(url))) {
  describe("two keygate nodes on one store and one Redis", () => {
    const profile = loadProfile("vibecode");
    const serverSecret = randomBytes(32).toString("base64url");
    // As keygate serve: the deployment id derived from the (shared) server secret.
    const deployment = deploymentId(serverSecret);
    let store: Store;
    let a: FastifyInstance;
    let b: FastifyInstance;
    let ownerKey: string;

    before(async () => {
      store = await openSqliteStore(":memory:", { serverSecret });
      await store.migrate();
      const kg: Keygate = { profile, store, serverSecret, format: keyFormat(profile.spec.keyTypes), outbound: outboundPolicy(), now: Date.now, keyChanged: () => {}, portalChanged: () => {} };
      const owner = await createUser(kg, null, { email: "owner@example.com" });
      ownerKey = (await issueManagementKey(kg, owner, "vibe:mgmt:keys,vibe:mgmt:portals")).rawKey;
      a = buildServer({ profile, store, serverSecret, invalidation: new RedisInvalidation(url, deployment) });
      b = buildServer({ profile, store, serverSecret, invalidation: new RedisInvalidation(url, deployment) });
      await Promise.all([a.ready(), b.ready()]);
    });
    after(async () => {
      await a.close();
      await b.close();
      await store.close();
    });

    const call = (node: FastifyInstance, method: "GET" | "POST" | "PATCH", path: string, key: string, body?: unknown) =>
      node.inject({ method, url: path, headers: { "x-api-key": key, ...(body ? { "content-type": "application/json" } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });

    it("a key revoked through one node is refused by the other (its cached copy is dropped)", async () => {
      const portal = (await call(a, "POST", "/v1/portals", ownerKey, { domain: "nodes.example.com", upstream: { kind: "sandbox" } })).json().data;
      const key = (await call(a, "POST", "/v1/keys", ownerKey, { portalId: portal.id, name: "k", scopes: ["crm"] })).json().data;
      assert.equal((await call(b, "GET", "/v1/me", key.rawKey)).statusCode, 200, "node b caches the key");
      assert.equal((await call(a, "PATCH", `/v1/keys/${key.id}`, ownerKey, { status: "REVOKED" })).statusCode, 200);
      assert.equal((await call(a, "GET", "/v1/me", key.rawKey)).statusCode, 401, "the node that stored the change: the very next request");
      // The other node hears of it one Redis round trip later.
      let status = 200;
      for (let i = 0; i < 200 && status === 200; i++) {
        await new Promise((r) => setTimeout(r, 10));
        status = (await call(b, "GET", "/v1/me", key.rawKey)).statusCode;
      }
      assert.equal(status, 401);
      assert.equal((await call(b, "GET", "/v1/me", key.rawKey)).json().error.code, "KEY_INACTIVE");
    });
  });

  describe("issue 10.8: deployments sharing one Redis", () => {
    const profile = loadProfile("vibecode");
    const [x, y] = [randomBytes(32).toString("base64url"), randomBytes(32).toString("base64url")];
    let store: Store;
    const servers: FastifyInstance[] = [];
    /** A node of the deployment with this secret, built as keygate serve --redis builds it. */
    const node = async (serverSecret: string) => {
      const limiter = new RedisLimiter({ url, deployment: deploymentId(serverSecret) });
      await limiter.ready();
      const app = buildServer({ profile, store, serverSecret, limiter, invalidation: new RedisInvalidation(url, deploymentId(serverSecret)) });
      await app.ready();
      servers.push(app);
      return app;
    };
    const guess = (app: FastifyInstance, ip: string) => app.inject({ method: "GET", url: "/v1/me", headers: { "x-api-key": generateKey("vibe_api_") }, remoteAddress: ip });

    before(async () => {
      store = await openSqliteStore(":memory:", { serverSecret: x });
      await store.migrate();
    });
    after(async () => {
      for (const app of servers) await app.close();
      await store.close();
    });

    it("issue 10.8: an address throttled by one deployment is not throttled by another on the same Redis; by another node of its own deployment it is", async () => {
      const [x1, x2, y1] = [await node(x), await node(x), await node(y)];
      const ip = `198.51.100.${1 + (randomBytes(1)[0]! % 200)}`;
      for (let i = 0; i < 20; i++) assert.equal((await guess(x1, ip)).statusCode, 401);
      assert.equal((await guess(x1, ip)).statusCode, 429);
      assert.equal((await guess(x2, ip)).statusCode, 429, "the same secret: the same deployment, one budget");
      const other = await guess(y1, ip);
      assert.equal(other.statusCode, 401, "another deployment: its own budget");
      assert.equal(other.headers["x-ratelimit-remaining"], "19");
    });

    it("issue 10.8: a deployment hears its own nodes' cache invalidations and not another's", async () => {
      const heard = { x: [] as Change[], y: [] as Change[] };
      const listeners = [new RedisInvalidation(url, deploymentId(x)), new RedisInvalidation(url, deploymentId(y))];
      const publisher = new RedisInvalidation(url, deploymentId(x));
      try {
        await listeners[0]!.listen((c) => heard.x.push(c));
        await listeners[1]!.listen((c) => heard.y.push(c));
        await publisher.publish({ kind: "key", id: "k1", digest: "d1" });
        for (let i = 0; i < 200 && heard.x.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
        assert.deepEqual(heard.x, [{ kind: "key", id: "k1", digest: "d1" }]);
        // Published after x heard its change: had y been listening on the same channel, it would have heard it by now.
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(heard.y, []);
      } finally {
        for (const c of [...listeners, publisher]) await c.close();
      }
    });

    it("issue 10.8: the deployment id is derived from the server secret (12 hex characters), the same on every node, different for another secret", () => {
      assert.match(deploymentId(x), /^[0-9a-f]{12}$/);
      assert.equal(deploymentId(x), deploymentId(x));
      assert.notEqual(deploymentId(x), deploymentId(y));
    });
  });
}
