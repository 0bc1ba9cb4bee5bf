/**
 * Several keygate nodes: one store, one Redis. A change stored through one node reaches the
 * others' key caches through Redis pub/sub.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { keyFormat } from "../../src/core/keys/format.ts";
import { RedisInvalidation } from "../../src/gateway/invalidation.ts";
import { buildServer } from "../../src/gateway/server.ts";
import type { Keygate } from "../../src/manage/context.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { probeRedis, redisUrl, requireService } from "../support/services.ts";

const url = redisUrl();

if (await requireService("nodes sharing Redis", `Redis at ${url}`, () => probeRedis(url))) {
  describe("two keygate nodes on one store and one Redis", () => {
    const profile = loadProfile("vibecode");
    const serverSecret = randomBytes(32).toString("base64url");
    const channel = `kg:test:changes:${randomBytes(4).toString("hex")}`;
    let store: Store;
    let a: FastifyInstance;
    let b: FastifyInstance;
    let ownerKey: string;

    before(async () => {
      store = await openSqliteStore(":memory:");
      await store.migrate();
      const kg: Keygate = { profile, store, serverSecret, format: keyFormat(profile.spec.keyTypes), now: Date.now, keyChanged: () => {}, portalChanged: () => {} };
      const owner = await createUser(kg, null, { email: "owner@example.com" });
      ownerKey = (await issueManagementKey(kg, owner, "vibe:mgmt:keys,vibe:mgmt:portals")).rawKey;
      a = buildServer({ profile, store, serverSecret, invalidation: new RedisInvalidation(url, channel) });
      b = buildServer({ profile, store, serverSecret, invalidation: new RedisInvalidation(url, channel) });
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
}
