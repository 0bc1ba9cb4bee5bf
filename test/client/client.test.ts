/**
 * Issue 11.1: the typed client (`keygate/client`) against a running keygate: management calls,
 * verify mode and the entities, with paths, queries and bodies checked by TypeScript (this file
 * is type-checked by `npm test`: the @ts-expect-error lines must stay errors).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as fromPackage from "keygate/client";
import { KeygateClientError, keygateClient, unwrap } from "../../src/client/index.ts";
import { type Harness, startHarness } from "../support/gateway.ts";

describe("issue 11.1: the typed client", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite", { listen: true })));
  after(() => h.close());

  it("issue 11.1: create a key, list keys, verify, create and list deals with a typed query and body, on a running server", async () => {
    const admin = keygateClient({ baseUrl: h.url!, key: h.owner.key });
    const portal = unwrap(await admin.POST("/v1/portals", { body: { domain: "client.bitrix24.ru", upstream: { kind: "sandbox" } } }));
    const created = await admin.POST("/v1/keys", { body: { portalId: portal.id, name: "Client key", scopes: ["crm", "vibe:verify"] } });
    assert.equal(created.response.status, 201);
    const key = unwrap(created);
    assert.match(key.rawKey, /^vibe_api_/);
    const listed = unwrap(await admin.GET("/v1/keys", { params: { query: { portalId: portal.id } } }));
    assert.deepEqual(
      listed.map((k) => k.id),
      [key.id],
    );

    const api = keygateClient({ baseUrl: h.url!, key: key.rawKey });
    const verdict = unwrap(await api.POST("/v1/verify", { body: { key: key.rawKey, method: "GET", path: "/v1/deals" } }));
    assert.equal(verdict.valid, true);

    const deal = unwrap(await api.POST("/v1/deals", { body: { title: "Typed", amount: 1200 } }));
    assert.equal(deal.title, "Typed");
    const deals = await api.GET("/v1/deals", { params: { query: { limit: "5", select: "id,title,amount", filter: { title: "Typed" }, order: { id: "desc" } } } });
    assert.equal(deals.response.status, 200);
    assert.deepEqual(
      deals.data!.data.map((d) => d.title),
      ["Typed"],
    );
    assert.equal(deals.data!.meta!.total, 1);

    // A refusal is thrown with its code.
    const bearer = keygateClient({ baseUrl: h.url!, key: "vibe_api_nope", bearer: true });
    assert.throws(() => unwrap({ error: { success: false, error: { code: "X", message: "m" } }, response: new Response(null, { status: 400 }) }), KeygateClientError);
    const refused = await bearer.GET("/v1/me");
    assert.equal(refused.response.status, 401);
    assert.throws(() => unwrap(refused), (e: KeygateClientError) => e.code === "INVALID_API_KEY" && e.status === 401);
  });

  it('issue 11.1: the client is the package\'s "keygate/client" entry point', () => {
    assert.equal(fromPackage.keygateClient, keygateClient);
  });

  it("issue 11.1: TypeScript checks the query of GET /v1/deals and the body of POST /v1/deals and POST /v1/keys", () => {
    const api = keygateClient({ baseUrl: "http://127.0.0.1:1", key: "k" });
    // Never called: these lines are here for tsc.
    const typeChecks = () => {
      void api.GET("/v1/deals", { params: { query: { limit: "10", offset: "0", filter: { stageId: "WON" }, order: { amount: "desc" } } } });
      void api.POST("/v1/deals", { body: { title: "A deal", amount: 10 } });
      // @ts-expect-error order is asc or desc
      void api.GET("/v1/deals", { params: { query: { order: { amount: "up" } } } });
      // @ts-expect-error limit is sent as the query string's text
      void api.GET("/v1/deals", { params: { query: { limit: 10 } } });
      // @ts-expect-error name and scopes are required
      void api.POST("/v1/keys", { body: { portalId: "p" } });
      // @ts-expect-error no such path
      void api.GET("/v1/nothing");
    };
    assert.equal(typeof typeChecks, "function");
  });
});
