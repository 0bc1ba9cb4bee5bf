/**
 * Issue 10.3 through HTTP: an upstream's credentials are never returned — the portal views and
 * the audit trail show them masked — while the portal keeps working with them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";

const TOKEN = "w3bh00kT0kenSecret";
const QUERY_TOKEN = "qu3ryT0kenSecret";
const SECRETS = [TOKEN, QUERY_TOKEN];
const WEBHOOK = `https://acme.bitrix24.ru/rest/1/${TOKEN}/`;
// A user name and password in the URL are refused as an outbound rule (issue 10.2): tokens travel in the query.
const BASE_URL = `https://api.example.com/v2/?token=${QUERY_TOKEN}&region=eu#frag`;
const MASKED_WEBHOOK = "https://acme.bitrix24.ru/rest/1/***/";
const MASKED_BASE_URL = "https://api.example.com/v2/?token=***&region=***";

function ok(r: Reply) {
  assert.ok(r.status >= 200 && r.status < 300, `${r.status} ${JSON.stringify(r.body)}`);
  return r.body.data;
}

function holdsNoSecret(r: Reply): void {
  const text = JSON.stringify(r.body);
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `${secret} is in ${text}`);
}

for (const kind of await storeKinds("http: upstream credentials")) {
  describe(`issue 10.3: upstream credentials are never returned [${kind}]`, () => {
    let h: Harness;
    before(async () => (h = await startHarness(kind, { listen: true })));
    after(() => h.close());

    it("issue 10.3: the portal views show a Bitrix24 webhook and an HTTP base URL masked, and the portal keeps the real ones", async () => {
      const created = await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "acme.bitrix24.ru", upstream: { kind: "bitrix24", webhookUrl: WEBHOOK } } });
      holdsNoSecret(created);
      const id = ok(created).id as string;
      assert.deepEqual(ok(created).upstream, { kind: "bitrix24", webhookUrl: MASKED_WEBHOOK });

      const patched = await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { upstream: { kind: "http", baseUrl: BASE_URL } } });
      holdsNoSecret(patched);
      assert.deepEqual(ok(patched).upstream, { kind: "http", baseUrl: MASKED_BASE_URL });

      const listed = await h.call("GET", "/v1/portals", { key: h.owner.key });
      holdsNoSecret(listed);
      assert.deepEqual((ok(listed) as { id: string; upstream: unknown }[]).find((p) => p.id === id)?.upstream, { kind: "http", baseUrl: MASKED_BASE_URL });
      // The credentials are kept, only not shown: what the store hands the forwarding code.
      assert.deepEqual((await h.store.getPortal(id))?.upstream, { kind: "http", baseUrl: new URL(BASE_URL).toString() });
    });

    it("issue 10.3: the audit trail holds only masked upstreams", async () => {
      const id = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "audit.bitrix24.ru", upstream: { kind: "bitrix24", webhookUrl: WEBHOOK } } })).id as string;
      ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { upstream: { kind: "http", baseUrl: BASE_URL } } }));
      ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { name: "renamed" } }));
      const audit = await h.call("GET", `/v1/portals/${id}/audit`, { key: h.owner.key });
      holdsNoSecret(audit);
      const upstreams = (ok(audit) as { before?: { upstream: unknown } | null; after?: { upstream: unknown } | null }[]).flatMap((e) => [e.before?.upstream, e.after?.upstream]);
      assert.ok(upstreams.some((u) => JSON.stringify(u) === JSON.stringify({ kind: "bitrix24", webhookUrl: MASKED_WEBHOOK })), JSON.stringify(upstreams));
      assert.ok(upstreams.some((u) => JSON.stringify(u) === JSON.stringify({ kind: "http", baseUrl: MASKED_BASE_URL })), JSON.stringify(upstreams));
    });

    it("issue 10.3: a key still reads its portal's data through the sealed upstream (the sandbox)", async () => {
      const id = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "sandbox.example.com", upstream: { kind: "sandbox" } } })).id as string;
      await seedDemoData(h.store, id);
      const key = ok(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId: id, name: "reader", scopes: ["crm"] } })).rawKey as string;
      const deals = ok(await h.call("GET", "/v1/deals?limit=2", { key }));
      assert.equal(deals.length, 2);
    });
  });
}
