/**
 * Issue 15 §2 through HTTP: a portal linked to a real Bitrix24 for apps carries its Bitrix24
 * application's credentials (client_id, client_secret), set by the portal's admin with the
 * portal PATCH route. The client_id is shown; the client_secret is never returned — not by the
 * portal views, the list, nor the audit trail — and bad input stores nothing.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Harness, type Reply, startHarness } from "../support/gateway.ts";
import { fails, ok } from "./_fixtures.ts";

const WEBHOOK = "https://acme.bitrix24.ru/rest/1/w3bh00kT0kenSecret/";
const MASKED_WEBHOOK = "https://acme.bitrix24.ru/rest/1/***/";
const CLIENT_ID = "local.6667fc928a50a9.70414732";
const CLIENT_SECRET = "ZeKyeYIgy2NsHZqsIHY6GfG1VsecretValue";

const holdsNoSecret = (r: Reply) => assert.ok(!JSON.stringify(r.body).includes(CLIENT_SECRET), JSON.stringify(r.body));

describe("issue 15 §2: a Bitrix24 portal's application credentials", () => {
  let h: Harness;
  let id: string;
  before(async () => {
    h = await startHarness("sqlite", { listen: true });
    id = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "acme.bitrix24.ru", upstream: { kind: "bitrix24", webhookUrl: WEBHOOK } } }), 201).id;
  });
  after(() => h.close());

  it("issue 15 §2: the portal's admin sets client_id and client_secret with PATCH /v1/portals/:id; the views show the client_id, never the secret", async () => {
    const patched = await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { upstream: { kind: "bitrix24", webhookUrl: WEBHOOK, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET } } });
    holdsNoSecret(patched);
    assert.deepEqual(ok(patched).upstream, { kind: "bitrix24", webhookUrl: MASKED_WEBHOOK, clientId: CLIENT_ID });
    const read = await h.call("GET", `/v1/portals/${id}`, { key: h.owner.key });
    holdsNoSecret(read);
    assert.deepEqual(ok(read).upstream, { kind: "bitrix24", webhookUrl: MASKED_WEBHOOK, clientId: CLIENT_ID });
    holdsNoSecret(await h.call("GET", "/v1/portals", { key: h.owner.key }));
    const audit = await h.call("GET", `/v1/portals/${id}/audit`, { key: h.owner.key });
    holdsNoSecret(audit);
    assert.ok(JSON.stringify(ok(audit)).includes(CLIENT_ID));
    // Kept, only not shown: what the store hands keygate's Bitrix24 OAuth client.
    assert.deepEqual((await h.store.getPortal(id))?.upstream, { kind: "bitrix24", webhookUrl: WEBHOOK, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
  });

  it("bad credentials answer 400 VALIDATION_ERROR naming the field, and store nothing: one without the other, spaces, other upstream kinds", async () => {
    const before = (await h.store.getPortal(id))?.upstream;
    const cases: [Record<string, unknown>, string][] = [
      [{ kind: "bitrix24", webhookUrl: WEBHOOK, clientId: CLIENT_ID }, "upstream.clientSecret"],
      [{ kind: "bitrix24", webhookUrl: WEBHOOK, clientSecret: CLIENT_SECRET }, "upstream.clientId"],
      [{ kind: "bitrix24", webhookUrl: WEBHOOK, clientId: "local app", clientSecret: CLIENT_SECRET }, "upstream.clientId"],
      [{ kind: "bitrix24", webhookUrl: WEBHOOK, clientId: CLIENT_ID, clientSecret: "" }, "upstream.clientSecret"],
      [{ kind: "bitrix24", webhookUrl: WEBHOOK, clientId: CLIENT_ID, clientSecret: "x".repeat(201) }, "upstream.clientSecret"],
      [{ kind: "sandbox", clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }, "upstream.clientId"],
    ];
    for (const [upstream, param] of cases) {
      const r = fails(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { upstream } }), 400, "VALIDATION_ERROR");
      assert.equal(r.param, param, JSON.stringify(upstream));
      holdsNoSecret({ status: 400, headers: {}, body: r } as Reply);
    }
    assert.deepEqual((await h.store.getPortal(id))?.upstream, before);
  });

  it("linking the webhook again without them removes the application's credentials", async () => {
    ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { upstream: { kind: "bitrix24", webhookUrl: WEBHOOK } } }));
    assert.deepEqual((await h.store.getPortal(id))?.upstream, { kind: "bitrix24", webhookUrl: WEBHOOK });
  });
});
