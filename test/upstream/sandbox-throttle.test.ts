/**
 * Issue 10.7: the sandbox portal's webhook endpoint bounds token guessing per client address, as
 * the gateway bounds key guessing: past 20 wrong webhooks in a sliding minute an address gets
 * Bitrix24's 503 QUERY_LIMIT_EXCEEDED, before any lookup, until the window slides.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import { after, before, describe, it } from "node:test";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { createSandbox, sandboxRoutes } from "../../src/upstream/sandbox/index.ts";
import { FAILED_CREDENTIALS_PER_MINUTE } from "../../src/upstream/sandbox/routes.ts";

describe("sandbox webhook: failed-credentials throttle", () => {
  const clock = { now: Date.parse("2026-11-22T12:00:00Z") };
  let store: Store;
  let app: FastifyInstance;
  let path: string;

  before(async () => {
    store = await openSqliteStore(":memory:", { serverSecret: randomBytes(32).toString("base64url") });
    await store.migrate();
    path = await createSandbox(store, "prt_throttle", { token: "righttoken123", limit: { requestBurst: 1000, requestsPerSecond: 1000 }, now: () => clock.now });
    app = Fastify();
    await app.register(sandboxRoutes, { store, now: () => clock.now });
    await app.ready();
  });
  after(async () => {
    await app.close();
    await store.close();
  });

  const call = (p: string, ip: string) => app.inject({ method: "GET", url: `${p}user.get.json`, remoteAddress: ip });
  const wrong = () => path.replace("righttoken123", randomBytes(8).toString("hex"));

  it("issue 10.7: 20 wrong tokens a minute per address get 401 INVALID_CREDENTIALS, then 503 QUERY_LIMIT_EXCEEDED without a lookup — the right token too — while other addresses are unaffected; the budget returns as the window slides", async () => {
    const ip = "203.0.113.9";
    assert.equal((await call(path, ip)).statusCode, 200);
    for (let i = 0; i < FAILED_CREDENTIALS_PER_MINUTE; i++) {
      const r = await call(wrong(), ip);
      assert.equal(r.statusCode, 401);
      assert.equal(r.json().error, "INVALID_CREDENTIALS");
    }
    let lookups = 0;
    const getSandboxWebhook = store.getSandboxWebhook;
    store.getSandboxWebhook = (...args) => {
      lookups++;
      return getSandboxWebhook.apply(store, args);
    };
    try {
      for (const p of [wrong(), wrong(), path]) {
        const r = await call(p, ip);
        assert.equal(r.statusCode, 503);
        assert.deepEqual(r.json(), { error: "QUERY_LIMIT_EXCEEDED", error_description: "Too many requests" });
      }
      assert.equal(lookups, 0, "no webhook lookup for a throttled address");
      assert.equal((await call(path, "203.0.113.10")).statusCode, 200, "another address has its own budget");
      assert.equal((await call(wrong(), "203.0.113.10")).statusCode, 401);
    } finally {
      store.getSandboxWebhook = getSandboxWebhook;
    }
    clock.now += 2 * 60_000;
    assert.equal((await call(path, ip)).statusCode, 200);
  });
});
