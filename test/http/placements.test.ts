/**
 * Placements over HTTP (issue 16 §3; seed 003 "Embedding an app in the portal"; docs/placements.md):
 * GET /v1/placements/available, POST /v1/placements/bind, POST /v1/placements/unbind and
 * GET /v1/placements on a portal linked to the built-in sandbox, which keygate reaches over real
 * HTTP and which implements Bitrix24's placement.list, placement.bind, placement.unbind and
 * placement.get (keygate's own handler, the default of bind, and /v1/me's procedure: placement-handler.test.ts). The authorization key acts with a session token got through the real OAuth flow;
 * what the sandbox keeps is read back from the store: a refused request binds nothing. Both stores.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import { setPassword } from "../../src/accounts/links.ts";
import { createUser } from "../../src/manage/users.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { type IssuedKey, MINUTE, addMember, fails, makeKey, makePortal, ok } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const CALLBACK = "https://app.example/callback";
const STATE = "aAbBcCdDeEfFgGhH";
const APP = "https://app.example/placement";

/** A session token of a portal administrator for the app key, through the OAuth flow (sign-in, consent, code, token with PKCE). */
async function adminSession(h: Harness, portalId: string, appKey: string): Promise<string> {
  const email = `admin-${randomBytes(4).toString("hex")}@example.com`;
  const user = await createUser(h.kg, null, { email, name: "Portal Admin" });
  await setPassword(h.kg, null, user, PASSWORD);
  await addMember(h, portalId, email, "ADMIN");
  const signIn = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
  assert.equal(signIn.status, 201, JSON.stringify(signIn.body));
  const cookie = /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(signIn.headers["set-cookie"]))![1]!;
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const query = new URLSearchParams({ app_key: appKey, state: STATE, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: "S256" });
  const page = await h.call("GET", `/v1/oauth/authorize?${query}`, { headers: { cookie } });
  assert.equal(page.status, 200, JSON.stringify(page.body));
  const fields = Object.fromEntries([...String(page.body).matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)))]));
  const consent = await h.call("POST", "/v1/oauth/authorize", { headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ ...fields, decision: "allow" }).toString() });
  assert.equal(consent.status, 302, JSON.stringify(consent.body));
  const code = new URL(String(consent.headers.location)).searchParams.get("code")!;
  const token = await h.call("POST", "/v1/oauth/token", { body: { grant_type: "authorization_code", app_key: appKey, code, redirect_uri: CALLBACK, code_verifier: verifier } });
  assert.equal(token.status, 200, JSON.stringify(token.body));
  return token.body.access_token;
}

for (const kind of await storeKinds("http: placements")) {
  describe(`placements [${kind}]`, () => {
    let h: Harness;
    let portal: string;
    let app: IssuedKey;
    let session: string;
    const bound = () => h.store.listSandboxItems(portal, "placement");
    const as = () => ({ key: app.raw, bearer: session });

    before(async () => {
      h = await startHarness(kind, { listen: true });
      portal = await makePortal(h);
      ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
      app = await makeKey(h, portal, { type: "app", name: "Deal helper", scopes: ["crm", "placement"], redirectUris: [CALLBACK] });
      session = await adminSession(h, portal, app.raw);
    });
    after(() => h.close());
    // The sandbox drains 2 requests a second, as Bitrix24 does: each test starts with its bucket empty.
    beforeEach(() => h.clock.advance(2 * MINUTE));

    it('seed 003: "The API key (vibe_api_) does not support embedding in the portal interface" — an API key gets 403 OAUTH_REQUIRED on all four routes, and binds nothing', async () => {
      const api = await makeKey(h, portal, { name: "Personal", scopes: ["crm", "placement"] });
      const before = (await bound()).length;
      fails(await h.call("GET", "/v1/placements/available", { key: api.raw }), 403, "OAUTH_REQUIRED");
      fails(await h.call("GET", "/v1/placements", { key: api.raw }), 403, "OAUTH_REQUIRED");
      fails(await h.call("POST", "/v1/placements/bind", { key: api.raw, body: { placement: "LEFT_MENU", title: "x", handler: APP } }), 403, "OAUTH_REQUIRED");
      fails(await h.call("POST", "/v1/placements/unbind", { key: api.raw, body: { placement: "LEFT_MENU" } }), 403, "OAUTH_REQUIRED");
      fails(await h.call("GET", "/v1/placements", { key: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      assert.equal((await bound()).length, before);
    });

    it('seed 003: "X-Api-Key + session token" — an authorization key without Authorization: Bearer gets 401 TOKEN_MISSING', async () => {
      fails(await h.call("GET", "/v1/placements/available", { key: app.raw }), 401, "TOKEN_MISSING");
      fails(await h.call("POST", "/v1/placements/bind", { key: app.raw, body: { placement: "LEFT_MENU", title: "x", handler: APP } }), 401, "TOKEN_MISSING");
    });

    it('seed 003: "Available spots are returned by GET /v1/placements/available" — placement.list of the key\'s portal; ?scope= narrows to one scope', async () => {
      const all = ok(await h.call("GET", "/v1/placements/available", as()));
      assert.ok(all.includes("LEFT_MENU") && all.includes("CRM_DEAL_DETAIL_TAB"), JSON.stringify(all));
      const crm = ok(await h.call("GET", "/v1/placements/available?scope=crm", as()));
      assert.ok(crm.length > 0 && crm.every((p: string) => p.startsWith("CRM_")), JSON.stringify(crm));
      const bad = fails(await h.call("GET", "/v1/placements/available?scope=CRM!", as()), 400, "VALIDATION_ERROR");
      assert.equal(bad.param, "scope");
    });

    it('seed 003: "the placement binding POST /v1/placements/bind" — 201, kept by the portal (placement.bind), listed by GET /v1/placements (placement.get); the same again is 409 PLACEMENT_ALREADY_BOUND', async () => {
      const made = ok(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "crm_deal_detail_tab", title: "Deal helper", handler: APP, description: "Helps with deals" } }), 201);
      assert.deepEqual(made, { placement: "CRM_DEAL_DETAIL_TAB", handler: APP, title: "Deal helper" });
      const stored = (await bound()).find((b) => b.fields["PLACEMENT"] === "CRM_DEAL_DETAIL_TAB" && b.fields["HANDLER"] === APP)!;
      assert.equal(stored.fields["TITLE"], "Deal helper");
      assert.equal(stored.fields["DESCRIPTION"], "Helps with deals");
      const listed = ok(await h.call("GET", "/v1/placements", as()));
      assert.deepEqual(
        listed.find((b: { placement: string }) => b.placement === "CRM_DEAL_DETAIL_TAB"),
        { placement: "CRM_DEAL_DETAIL_TAB", handler: APP, title: "Deal helper", description: "Helps with deals", userId: 0, options: {} },
      );
      const count = (await bound()).length;
      const again = fails(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "CRM_DEAL_DETAIL_TAB", title: "Deal helper", handler: APP } }), 409, "PLACEMENT_ALREADY_BOUND");
      assert.equal(again.param, "placement");
      assert.equal((await bound()).length, count);
    });

    it("POST /v1/placements/unbind removes one handler, or every handler of the place without handler (placement.unbind); what is not bound is 404 PLACEMENT_NOT_BOUND", async () => {
      for (const handler of [`${APP}/a`, `${APP}/b`, `${APP}/c`]) ok(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "CRM_LEAD_DETAIL_TAB", title: "Lead tab", handler } }), 201);
      const one = ok(await h.call("POST", "/v1/placements/unbind", { ...as(), body: { placement: "CRM_LEAD_DETAIL_TAB", handler: `${APP}/a` } }));
      assert.deepEqual(one.placement, "CRM_LEAD_DETAIL_TAB");
      assert.deepEqual(one.unbound.map((b: { handler: string }) => b.handler), [`${APP}/a`]);
      const handlersLeft = async () => (await bound()).filter((b) => b.fields["PLACEMENT"] === "CRM_LEAD_DETAIL_TAB").map((b) => b.fields["HANDLER"]);
      assert.deepEqual(await handlersLeft(), [`${APP}/b`, `${APP}/c`]);
      const notThere = fails(await h.call("POST", "/v1/placements/unbind", { ...as(), body: { placement: "CRM_LEAD_DETAIL_TAB", handler: `${APP}/a` } }), 404, "PLACEMENT_NOT_BOUND");
      assert.equal(notThere.param, "placement");
      const rest = ok(await h.call("POST", "/v1/placements/unbind", { ...as(), body: { placement: "crm_lead_detail_tab" } }));
      assert.deepEqual(rest.unbound.map((b: { handler: string }) => b.handler).sort(), [`${APP}/b`, `${APP}/c`]);
      assert.deepEqual(await handlersLeft(), []);
      assert.ok(!ok(await h.call("GET", "/v1/placements", as())).some((b: { placement: string }) => b.placement === "CRM_LEAD_DETAIL_TAB"));
    });

    it("bad input is 400 VALIDATION_ERROR with the field, before Bitrix24 is called (an unknown place: as the portal answers); nothing is bound", async () => {
      const before = (await bound()).length;
      const cases: [unknown, string][] = [
        [{ title: "x", handler: APP }, "placement"],
        [{ placement: "LEFT MENU", title: "x", handler: APP }, "placement"],
        [{ placement: "LEFT_MENU", handler: APP }, "title"],
        [{ placement: "LEFT_MENU", title: "   ", handler: APP }, "title"],
        [{ placement: "LEFT_MENU", title: "x", handler: "ftp://app.example/x" }, "handler"],
        // Without handler keygate's placement handler opens the key's server: this key has none.
        [{ placement: "LEFT_MENU", title: "x" }, "handler"],
        [{ placement: "LEFT_MENU", title: "x", handler: APP, extra: 1 }, "extra"],
        [{ placement: "NOWHERE_AT_ALL", title: "x", handler: APP }, "placement"],
      ];
      for (const [body, param] of cases) {
        const r = fails(await h.call("POST", "/v1/placements/bind", { ...as(), body }), 400, "VALIDATION_ERROR");
        assert.equal(r.param, param, JSON.stringify(body));
      }
      assert.equal(fails(await h.call("POST", "/v1/placements/unbind", { ...as(), body: {} }), 400, "VALIDATION_ERROR").param, "placement");
      assert.equal(fails(await h.call("POST", "/v1/placements/unbind", { ...as(), body: { placement: "LEFT_MENU", handler: "not a url" } }), 400, "VALIDATION_ERROR").param, "handler");
      assert.equal((await bound()).length, before);
    });
  });
}
