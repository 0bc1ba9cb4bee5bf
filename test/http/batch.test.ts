/**
 * Issue 10 item 6: POST /v1/batch is one Bitrix24 `batch` request, and a request refused for its
 * own content spends none of the portal's budget. Upstream requests are counted with the
 * sandbox's own request limit (a leaky bucket per portal, on the harness clock, which does not
 * move): a sandbox that admits n requests answers the n+1st with QUERY_LIMIT_EXCEEDED.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RedisLimiter } from "../../src/limits/redis.ts";
import { createSandbox, sandboxWebhookToken, seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { probeRedis, redisUrl, requireService } from "../support/services.ts";
import { MINUTE, fails, limited, makeKey, makePortal, ok, rateHeaders } from "./_fixtures.ts";

const ALL = ["crm", "task", "tasks", "user", "im", "log"];
const gets = (n: number, entity = "deals") => Array.from({ length: n }, (_, i) => ({ id: `g${i}`, entity, action: "get", entityId: (i % 4) + 1 }));

/** A seeded sandbox portal; its keygate budget the VibeCode default (10/s) unless requestLimit is given. */
async function portal(h: Harness, options: { requestLimit?: number; upstreamRequests?: number } = {}): Promise<string> {
  const id = await makePortal(h);
  await seedDemoData(h.store, id);
  if (options.requestLimit !== undefined) ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { requestLimit: options.requestLimit } }));
  if (options.upstreamRequests !== undefined) {
    // The sandbox admits this many requests, then refuses until its bucket drains (the clock stands still).
    await createSandbox(h.store, id, { token: sandboxWebhookToken(h.kg.serverSecret, id), limit: { requestBurst: options.upstreamRequests, requestsPerSecond: 0.000_001 } });
  }
  return id;
}

/** The sandbox's refusal: its request limit is spent. */
function upstreamSpent(r: Reply): void {
  assert.equal(fails(r, 502, "BITRIX_UNAVAILABLE").details?.error, "QUERY_LIMIT_EXCEEDED", JSON.stringify(r.body));
}

function portalLeft(r: Reply): number {
  const m = /"portal";r=(\d+);/.exec(rateHeaders(r).rateLimit);
  assert.ok(m, `the portal's budget is the tightest limit: ${rateHeaders(r).rateLimit}`);
  return Number(m[1]);
}

for (const kind of await storeKinds("http: batch")) {
  describe(`issue 10.6: a batch is one Bitrix24 request [${kind}]`, () => {
    let h: Harness;
    before(async () => {
      h = await startHarness(kind, { listen: true });
    });
    after(() => h.close());
    const batch = (key: string, calls: unknown) => h.call("POST", "/v1/batch", { key, body: { calls } });

    it("issue 10.6: a batch of 50 gets reaches Bitrix24 as exactly one request", async () => {
      const p = await portal(h, { requestLimit: 10_000, upstreamRequests: 1 });
      const key = (await makeKey(h, p, { scopes: ["crm"] })).raw;
      const data = ok(await batch(key, gets(50)));
      assert.deepEqual(data.errors, {});
      assert.equal(Object.keys(data.results).length, 50);
      assert.equal(data.results.g5.id, 2);
      // The sandbox admitted one request: the batch took it all.
      upstreamSpent(await h.call("GET", "/v1/deals/1", { key }));
    });

    it("issue 10.6: three batches of 50 gets in a row, under the VibeCode portal budget (10/s) and Bitrix24's own limit (a burst of 50) — 150 of 150 succeed", async () => {
      h.clock.advance(2 * MINUTE);
      const p = await portal(h);
      const key = (await makeKey(h, p, { scopes: ["crm"] })).raw;
      let succeeded = 0;
      for (let i = 0; i < 3; i++) {
        const r = await batch(key, gets(50));
        const data = ok(r);
        succeeded += Object.keys(data.results).length;
        assert.deepEqual(data.errors, {});
        assert.equal(portalLeft(r), 9 - i, "one unit of the portal's budget a batch");
      }
      assert.equal(succeeded, 150);
    });

    it("issue 10.6: calls that need a second command (a get after a user's write; the get that tells a missing task or user from a forbidden one) keep it in the same request; 50 such calls take two requests, never one a call", async () => {
      const p = await portal(h, { requestLimit: 10_000, upstreamRequests: 1 });
      const key = (await makeKey(h, p, { scopes: ALL })).raw;
      const data = ok(
        await batch(key, [
          { id: "hire", entity: "users", action: "create", params: { name: "Egor", lastName: "Belov", email: "egor.belov@batch.example", position: "Intern", departmentIds: [2] } },
          { id: "promote", entity: "users", action: "update", entityId: 2, params: { position: "Head of sales" } },
          { id: "ghostUser", entity: "users", action: "update", entityId: 999, params: { position: "x" } },
          { id: "ghostTask", entity: "tasks", action: "update", entityId: 999, params: { title: "x" } },
          { id: "goneTask", entity: "tasks", action: "delete", entityId: 998 },
          { id: "task", entity: "tasks", action: "update", entityId: 1, params: { title: "Renamed in a batch" } },
          { id: "deal", entity: "deals", action: "create", params: { title: "Batch deal", amount: 1234 } },
        ]),
      );
      // user.add answers an id: the user comes from a user.get reading it as $result[…].
      assert.equal(data.results.hire.name, "Egor");
      assert.equal(data.results.hire.position, "Intern");
      assert.ok(Number(data.results.hire.id) > 0);
      assert.equal(data.results.promote.position, "Head of sales");
      assert.equal(data.results.task.title, "Renamed in a batch");
      assert.equal(data.results.deal.title, "Batch deal");
      for (const id of ["ghostUser", "ghostTask", "goneTask"]) assert.equal(data.errors[id]?.code, "ENTITY_NOT_FOUND", `${id}: ${JSON.stringify(data.errors[id])}`);
      upstreamSpent(await h.call("GET", "/v1/deals/1", { key }));

      const two = await portal(h, { requestLimit: 10_000, upstreamRequests: 2 });
      const key2 = (await makeKey(h, two, { scopes: ALL })).raw;
      const missing = ok(await batch(key2, Array.from({ length: 50 }, (_, i) => ({ id: `t${i}`, entity: "tasks", action: "update", entityId: 900 + i, params: { title: "x" } }))));
      assert.deepEqual(new Set(Object.values(missing.errors).map((e) => (e as { code: string }).code)), new Set(["ENTITY_NOT_FOUND"]));
      assert.equal(Object.keys(missing.errors).length, 50);
      upstreamSpent(await h.call("GET", "/v1/deals/1", { key: key2 }));
    });

    it("issue 10.6: a list in a batch answers one Bitrix24 page (at most 50 records) with meta.total, hasMore and nextOffset to go on from", async () => {
      const p = await portal(h, { requestLimit: 10_000 });
      const key = (await makeKey(h, p, { scopes: ["crm"] })).raw;
      ok(await batch(key, Array.from({ length: 50 }, (_, i) => ({ entity: "deals", action: "create", params: { title: `Bulk ${i}` } }))));
      const first = ok(await batch(key, [{ id: "l", entity: "deals", action: "list", params: { limit: 100 } }]));
      assert.equal(first.results.l.length, 50);
      assert.deepEqual(first.meta.l, { total: 56, hasMore: true, nextOffset: 50 });
      const rest = ok(await batch(key, [{ id: "l", entity: "deals", action: "search", params: { limit: 100, offset: first.meta.l.nextOffset } }]));
      assert.deepEqual(
        rest.results.l.map((d: { id: number }) => Number(d.id)),
        [51, 52, 53, 54, 55, 56],
      );
      assert.deepEqual(rest.meta.l, { total: 56, hasMore: false });
    });

    it("issue 10.6: calls keygate refuses (scope, read-only mode) are per-call errors and never leave keygate: a batch of only those sends nothing and spends nothing", async () => {
      const p = await portal(h, { upstreamRequests: 1 });
      const crm = await makeKey(h, p, { scopes: ["crm"] });
      const ro = await makeKey(h, p, { scopes: ALL, accessMode: "READONLY" });
      const first = await batch(crm.raw, [{ id: "t", entity: "tasks", action: "list" }, { id: "u", entity: "users", action: "get", entityId: 1 }]);
      const refused = ok(first);
      assert.deepEqual([refused.errors.t.code, refused.errors.u.code], ["SCOPE_DENIED", "SCOPE_DENIED"]);
      const blocked = ok(await batch(ro.raw, [{ id: "add", entity: "deals", action: "create", params: { title: "no" } }, { id: "del", entity: "tasks", action: "delete", entityId: 1 }]));
      assert.deepEqual([blocked.errors.add.code, blocked.errors.del.code], ["WRITE_BLOCKED_READONLY_KEY", "WRITE_BLOCKED_READONLY_KEY"]);
      // Nothing was sent: the sandbox's one request is still there; nothing was spent: the portal's budget is whole.
      const mixed = await batch(crm.raw, [{ id: "t", entity: "tasks", action: "get", entityId: 1 }, ...gets(3)]);
      assert.equal(portalLeft(mixed), 9);
      const data = ok(mixed);
      assert.equal(data.errors.t.code, "SCOPE_DENIED");
      assert.equal(Object.keys(data.results).length, 3);
      upstreamSpent(await h.call("GET", "/v1/deals/1", { key: crm.raw }));
    });

    it("issue 10.6: a request refused for its own content is a 400 and spends none of the portal's budget — batches (51 calls, a bad filter, an unknown entity, aggregate, what a Bitrix24 batch cannot carry) and single routes", async () => {
      h.clock.advance(2 * MINUTE);
      const p = await portal(h, { upstreamRequests: 1 });
      const key = (await makeKey(h, p, { scopes: ALL })).raw;
      const refusals: [Reply, string, string][] = [
        [await batch(key, gets(51)), "VALIDATION_ERROR", "calls"],
        [await batch(key, [...gets(2), { id: "f", entity: "deals", action: "list", params: { filter: { amount: { $near: 5 } } } }]), "INVALID_FILTER_OPERATOR", "calls[2].params.filter.amount"],
        [await batch(key, [{ entity: "deals", action: "search", params: { filter: { "bad field": 1 } } }]), "VALIDATION_ERROR", "calls[0].params.filter.bad field"],
        [await batch(key, [{ entity: "deals", action: "list", params: { limit: 0 } }]), "VALIDATION_ERROR", "calls[0].params.limit"],
        [await batch(key, [{ entity: "constructor", action: "list" }]), "VALIDATION_ERROR", "calls[0].entity"],
        [await batch(key, [{ entity: "toString", action: "get", entityId: 1 }]), "VALIDATION_ERROR", "calls[0].entity"],
        [await batch(key, [{ entity: "widgets", action: "list" }]), "VALIDATION_ERROR", "calls[0].entity"],
        [await batch(key, [{ entity: "deals", action: "get", entityId: "abc" }]), "VALIDATION_ERROR", "calls[0].entityId"],
        [await batch(key, [{ entity: "users", action: "delete", entityId: 2 }]), "VALIDATION_ERROR", "calls[0].action"],
        [await batch(key, [{ entity: "deals", action: "aggregate", params: {} }]), "VALIDATION_ERROR", "calls[0].action"],
        [await batch(key, [{ entity: "deals", action: "update", entityId: 1, params: { comments: null } }]), "VALIDATION_ERROR", "calls[0].params.comments"],
        [await batch(key, [{ entity: "deals", action: "list", params: { filter: { id: [] } } }]), "VALIDATION_ERROR", "calls[0].params.filter.id"],
        [await batch(key, [{ entity: "deals", action: "create", params: { title: "$result[c0][item][title]" } }]), "VALIDATION_ERROR", "calls[0].params.title"],
        [await h.call("GET", "/v1/deals?filter[amount][$near]=5", { key }), "INVALID_FILTER_OPERATOR", "filter.amount"],
        [await h.call("GET", "/v1/deals?limit=0", { key }), "VALIDATION_ERROR", "limit"],
        [await h.call("GET", "/v1/deals/abc", { key }), "VALIDATION_ERROR", "id"],
        [await h.call("POST", "/v1/deals/search", { key, body: { filter: { "a-b": 1 } } }), "VALIDATION_ERROR", "filter.a-b"],
        [await h.call("POST", "/v1/deals/aggregate", { key, body: { aggregate: [{ field: "amount", function: "median" }] } }), "VALIDATION_ERROR", "aggregate[0].function"],
        [await h.call("POST", "/v1/notifications", { key, body: { userId: 2 } }), "VALIDATION_ERROR", "message"],
      ];
      for (const [r, code, param] of refusals) {
        assert.equal(fails(r, 400, code).param, param, JSON.stringify(r.body));
        assert.ok(!rateHeaders(r).policy.includes('"portal"'), `no unit of the portal's budget: ${rateHeaders(r).policy}`);
      }
      // All refused before anything left keygate: the portal's budget is whole, the sandbox's one request unused.
      const next = await h.call("GET", "/v1/deals/1", { key });
      assert.equal(ok(next).id, 1);
      assert.equal(portalLeft(next), 9);
      for (let i = 0; i < 9; i++) upstreamSpent(await h.call("GET", "/v1/deals/1", { key }));
      limited(await h.call("GET", "/v1/deals/1", { key }), 502, "BITRIX_UNAVAILABLE");
    });
  });
}

const redisReady = await requireService("http: batch on Redis", `Redis at ${redisUrl()}`, () => probeRedis(redisUrl()));

if (redisReady) {
  describe("issue 10.6: the portal's budget spent by the handler, on Redis", () => {
    let h: Harness;
    before(async () => {
      h = await startHarness("sqlite", {
        listen: true,
        limiter: async (now) => {
          const limiter = new RedisLimiter({ url: redisUrl(), deployment: `batch-${process.pid}-${Date.now()}`, now });
          await limiter.ready();
          return limiter;
        },
      });
    });
    after(() => h.close());

    it("issue 10.6: with a RedisLimiter, a 400 spends no unit of the portal's budget, a batch one, and the budget's refusal is 502 BITRIX_UNAVAILABLE with Retry-After", async () => {
      const p = await portal(h);
      const key = (await makeKey(h, p, { scopes: ["crm"] })).raw;
      fails(await h.call("POST", "/v1/batch", { key, body: { calls: gets(51) } }), 400, "VALIDATION_ERROR");
      fails(await h.call("GET", "/v1/deals?filter[amount][$near]=5", { key }), 400, "INVALID_FILTER_OPERATOR");
      for (let i = 0; i < 10; i++) {
        const r = await h.call("POST", "/v1/batch", { key, body: { calls: gets(50) } });
        assert.equal(Object.keys(ok(r).results).length, 50);
        assert.equal(portalLeft(r), 9 - i);
      }
      limited(await h.call("POST", "/v1/batch", { key, body: { calls: gets(1) } }), 502, "BITRIX_UNAVAILABLE");
      limited(await h.call("GET", "/v1/deals/1", { key }), 502, "BITRIX_UNAVAILABLE");
    });
  });
}
