/**
 * issue 11.4: a sandbox portal's admins see its incoming webhook URL in the portal view (it is an
 * HMAC of the server secret: nothing else tells it), members do not, and the URL works.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { sandboxWebhookToken, sandboxWebhookUrl } from "../../src/upstream/sandbox/index.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { addMember, fails, makePortal, makeUser, ok } from "./_fixtures.ts";

for (const kind of await storeKinds("http: sandbox webhook URL")) {
  describe(`issue 11.4: the sandbox's webhook URL in the portal view [${kind}]`, () => {
    let h: Harness;
    before(async () => (h = await startHarness(kind)));
    after(() => h.close());

    it("admins of a sandbox portal see sandboxWebhookUrl (list, one, create, change); members and other portals do not", async () => {
      const created = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: `sbx-${kind}.example.com`, upstream: { kind: "sandbox" } } }), 201);
      const expected = sandboxWebhookUrl("http://localhost:80", created.id, sandboxWebhookToken(h.kg.serverSecret, created.id));
      assert.equal(created.sandboxWebhookUrl, expected);
      assert.equal(ok(await h.call("PATCH", `/v1/portals/${created.id}`, { key: h.owner.key, body: { name: "Renamed" } })).sandboxWebhookUrl, expected);
      const listed = ok(await h.call("GET", "/v1/portals", { key: h.owner.key })).find((p: { id: string }) => p.id === created.id);
      assert.equal(listed.sandboxWebhookUrl, expected);

      const member = await makeUser(h);
      await addMember(h, created.id, member.user.email);
      const seen = ok(await h.call("GET", "/v1/portals", { key: member.key })).find((p: { id: string }) => p.id === created.id);
      assert.equal(seen.role, "MEMBER");
      assert.equal(seen.sandboxWebhookUrl, undefined, "only admins see the webhook: it reaches the sandbox as its administrator");
      const one = ok(await h.call("GET", `/v1/portals/${created.id}`, { key: h.owner.key }));
      assert.equal(one.role, "ADMIN");
      assert.equal(one.sandboxWebhookUrl, expected, "GET /v1/portals/:id shows it to admins too");
      const asMember = ok(await h.call("GET", `/v1/portals/${created.id}`, { key: member.key }));
      assert.equal(asMember.role, "MEMBER");
      assert.equal(asMember.sandboxWebhookUrl, undefined);
      const outsider = await makeUser(h);
      fails(await h.call("GET", `/v1/portals/${created.id}`, { key: outsider.key }), 404, "PORTAL_NOT_FOUND");

      const unlinked = await makePortal(h, { linked: false });
      assert.equal(ok(await h.call("GET", "/v1/portals", { key: h.owner.key })).find((p: { id: string }) => p.id === unlinked).sandboxWebhookUrl, undefined);

      // The URL is the sandbox's webhook: Bitrix24's REST protocol behind it.
      const answer = await h.call("POST", `${new URL(expected).pathname}crm.deal.list`, { body: { select: ["ID", "TITLE"] } });
      assert.equal(answer.status, 200);
      assert.ok(Array.isArray(answer.body.result));
    });
  });
}
