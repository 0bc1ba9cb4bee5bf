import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";

for (const kind of await storeKinds("http: smoke")) {
  describe(`smoke [${kind}]`, () => {
    let h: Harness;
    before(async () => (h = await startHarness(kind)));
    after(() => h.close());

    it("a management key creates a portal and a key; the key describes itself", async () => {
      const portal = await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "acme.bitrix24.ru", upstream: { kind: "sandbox" } } });
      assert.equal(portal.status, 201, JSON.stringify(portal.body));
      const created = await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId: portal.body.data.id, name: "My Key", scopes: ["crm", "task"] } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const me = await h.call("GET", "/v1/me", { key: created.body.data.rawKey });
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.equal(me.body.data.type, "personal");
      assert.deepEqual(me.body.data.scopes, ["crm", "task", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]);
      assert.match(String(me.headers["x-request-id"]), /^req_/);
    });
  });
}
