/**
 * Issue 11.3: the portal's budget answers 502 BITRIX_UNAVAILABLE as seed 003 says, and
 * details.reason tells keygate's own refusal (its portal budget: with Retry-After, waiting which
 * is enough) from Bitrix24 refusing with QUERY_LIMIT_EXCEEDED and from Bitrix24 not answering.
 * A portal linked to the built-in sandbox, reached over real HTTP; the harness clock.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { freePort } from "../support/services.ts";
import { MINUTE, fails, limited, makeKey, makePortal, ok } from "./_fixtures.ts";

for (const kind of await storeKinds("http: portal budget")) {
  describe(`issue 11.3: the portal's budget and Bitrix24's refusals [${kind}]`, () => {
    let h: Harness;
    before(async () => {
      h = await startHarness(kind, { listen: true, allowUpstream: ["127.0.0.1"] });
    });
    after(() => h.close());
    // keygate's windows and the sandbox's bucket (2 a second) start empty.
    beforeEach(() => h.clock.advance(2 * MINUTE));

    const portal = async (requestLimit: number | null): Promise<{ id: string; key: string }> => {
      const id = await makePortal(h);
      await seedDemoData(h.store, id);
      ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { requestLimit } }));
      return { id, key: (await makeKey(h, id, { scopes: ["crm"] })).raw };
    };

    it('issue 11.3: keygate\'s portal budget spent → 502 BITRIX_UNAVAILABLE, details.reason "portal_budget", with Retry-After that is enough to wait', async () => {
      const { key } = await portal(2);
      ok(await h.call("GET", "/v1/deals/1", { key }));
      h.clock.advance(400);
      ok(await h.call("GET", "/v1/deals/1", { key }));
      const r = await h.call("GET", "/v1/deals/1", { key });
      const e = limited(r, 502, "BITRIX_UNAVAILABLE");
      assert.deepEqual(e.details, { reason: "portal_budget" });
      assert.equal(r.headers["retry-after"], "1", "the first request leaves the one-second window in 600 ms: 1 s, rounded up");
      h.clock.advance(e.retryAfter * 1_000);
      ok(await h.call("GET", "/v1/deals/1", { key }));
    });

    it('issue 11.3: Bitrix24 refusing with QUERY_LIMIT_EXCEEDED → 502 BITRIX_UNAVAILABLE, details.reason "query_limit_exceeded", no Retry-After (keygate cannot know when)', async () => {
      // keygate's budget out of the way; the sandbox admits a burst of 50.
      const { key } = await portal(10_000);
      const replies = await Promise.all(Array.from({ length: 52 }, () => h.call("GET", "/v1/deals/1", { key })));
      const refused = replies.filter((r) => r.status !== 200);
      assert.equal(refused.length, 2);
      for (const r of refused) {
        const e = fails(r, 502, "BITRIX_UNAVAILABLE");
        assert.equal(e.details.reason, "query_limit_exceeded");
        assert.equal(e.details.error, "QUERY_LIMIT_EXCEEDED");
        assert.equal(r.headers["retry-after"], undefined);
      }
    });

    it('issue 11.3: Bitrix24 not answering → 502 BITRIX_UNAVAILABLE, details.reason "no_answer" (and nothing more of why)', async () => {
      const { id, key } = await portal(10_000);
      const port = await freePort();
      ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { upstream: { kind: "bitrix24", webhookUrl: `http://127.0.0.1:${port}/rest/1/abcdefghijklmnop/` } } }));
      const r = await h.call("GET", "/v1/deals/1", { key });
      const e = fails(r, 502, "BITRIX_UNAVAILABLE");
      assert.deepEqual(e.details, { method: "crm.item.get", reason: "no_answer" });
      assert.equal(r.headers["retry-after"], undefined);
    });
  });
}
