/**
 * keygate's placement handler end to end on both stores (issue 16 §3; public facts §2.3 step 1;
 * seed 003 "Embedding an app in the portal"; docs/placements.md): an authorization key's app
 * server is bound to a place without a handler (keygate's is the default), a member opens it
 * through the sandbox portal's page, which posts to the handler what Bitrix24 posts, and the
 * handler — having checked AUTH_ID against the portal — redirects to the app with a one-time
 * __init token naming the server, key, member and Bitrix24 user. A forged AUTH_ID, another
 * portal's member_id or token, and an API key are refused; /v1/me carries the procedure and
 * auth.gatewayInjected.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { readInitToken } from "../../src/apps/init-token.ts";
import { createServer as registerServer } from "../../src/store/servers.ts";
import { sandboxMemberId } from "../../src/upstream/sandbox/index.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { type IssuedKey, MINUTE, OAUTH_CALLBACK, fails, makeKey, makePortal, member, ok, openPlace, postToHandler as post, sessionOf } from "./_fixtures.ts";

for (const kind of await storeKinds("http: placement handler")) {
  describe(`placement handler [${kind}]`, () => {
    let h: Harness;
    let portal: string;
    let app: IssuedKey;
    let admin: { id: string; email: string; cookie: string };
    let session: string;
    let server: { id: string; appUrl: string };
    const as = () => ({ key: app.raw, bearer: session });

    before(async () => {
      h = await startHarness(kind, { listen: true, allowUpstream: ["127.0.0.1"], apps: {} });
      portal = await makePortal(h);
      ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
      app = await makeKey(h, portal, { type: "app", name: "Deal helper", scopes: ["crm", "placement", "user", "vibe:infra"], redirectUris: [OAUTH_CALLBACK] });
      admin = await member(h, portal, "ADMIN");
      session = await sessionOf(h, app.raw, admin.cookie);
      server = ok(await h.call("POST", "/v1/infra/servers", { ...as(), body: { name: "Deal helper", url: "http://127.0.0.1:9/" } }), 201);
    });
    after(() => h.close());
    // The sandbox drains 2 requests a second, as Bitrix24 does: each test starts with its bucket empty.
    beforeEach(() => h.clock.advance(2 * MINUTE));

    it("issue 16 §3: bind without handler → keygate's placement handler for the key's only server, <public url>/v1/bitrix-handler?app=<server id>", async () => {
      const made = ok(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "LEFT_MENU", title: "Deal helper" } }), 201);
      assert.equal(made.handler, `http://localhost:80/v1/bitrix-handler?app=${server.id}`);
      const listed = ok(await h.call("GET", "/v1/placements", as()));
      assert.ok(listed.some((b: { placement: string; handler: string }) => b.placement === "LEFT_MENU" && b.handler === made.handler), JSON.stringify(listed));
      // serverId names one of the key's servers; another is 404 SERVER_NOT_FOUND, and handler with serverId is ambiguous.
      const named = ok(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "CRM_DEAL_DETAIL_TAB", title: "Deal helper", serverId: server.id } }), 201);
      assert.equal(named.handler, made.handler);
      assert.equal(fails(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "CRM_LEAD_DETAIL_TAB", title: "x", serverId: "srv_nope" } }), 404, "SERVER_NOT_FOUND").param, "serverId");
      assert.equal(fails(await h.call("POST", "/v1/placements/bind", { ...as(), body: { placement: "CRM_LEAD_DETAIL_TAB", title: "x", serverId: server.id, handler: "https://app.example/h" } }), 400, "VALIDATION_ERROR").param, "serverId");
    });

    it("issue 16 §3: the sandbox portal lists what is bound, and opening it posts the handler what Bitrix24 posts; the handler redirects to the app with an __init naming the server, key, member and Bitrix24 user", async () => {
      const opener = await member(h, portal, "MEMBER");
      const list = await h.call("GET", `/sandbox/${portal}/placements`, { headers: { cookie: opener.cookie } });
      assert.equal(list.status, 200);
      assert.match(String(list.body), new RegExp(`/sandbox/${portal}/placements/LEFT_MENU/open\\?handler=`));
      const { action, fields, html } = await openPlace(h, portal, opener.cookie, "LEFT_MENU");
      assert.match(html, /<iframe name="app"/, "posted into a frame, as Bitrix24 does");
      assert.equal(action.pathname, "/v1/bitrix-handler");
      assert.equal(action.searchParams.get("app"), server.id);
      assert.deepEqual(Object.keys(fields).sort(), ["APP_SID", "AUTH_EXPIRES", "AUTH_ID", "DOMAIN", "LANG", "PLACEMENT", "PLACEMENT_OPTIONS", "PROTOCOL", "REFRESH_ID", "member_id", "status"]);
      assert.equal(fields["member_id"], sandboxMemberId(portal));
      assert.equal(fields["PLACEMENT"], "LEFT_MENU");
      assert.equal(fields["status"], "L");

      const r = await post(h, action, fields);
      assert.equal(r.status, 302, JSON.stringify(r.body));
      const to = new URL(String(r.headers.location));
      assert.equal(to.origin, server.appUrl, "the app's own origin on the app runtime");
      assert.equal(to.searchParams.get("placement"), "LEFT_MENU");
      assert.equal(to.searchParams.get("member_id"), sandboxMemberId(portal));
      assert.equal(to.searchParams.get("placement_options"), "{}");
      const claims = await readInitToken(h.kg.serverSecret, to.searchParams.get("__init")!, h.clock.now);
      assert.ok(claims, "a valid __init token");
      const sandboxUser = (await h.store.listSandboxItems(portal, "user")).find((u) => u.fields["EMAIL"] === opener.email)!;
      assert.deepEqual({ ...claims, jti: undefined, expiresAt: undefined }, { serverId: server.id, keyId: app.id, userId: opener.id, portalId: portal, bitrixUserId: sandboxUser.id, jti: undefined, expiresAt: undefined });
      assert.equal(claims.expiresAt, Math.floor((h.clock.now + 300_000) / 1000) * 1000, "5 minutes");
      // Each opening gets its own token.
      const again = await post(h, action, (await openPlace(h, portal, opener.cookie, "LEFT_MENU")).fields);
      const second = await readInitToken(h.kg.serverSecret, new URL(String(again.headers.location)).searchParams.get("__init")!, h.clock.now);
      assert.notEqual(second!.jti, claims.jti);
    });

    it("PLACEMENT_OPTIONS of a CRM card tab reach the app as placement_options", async () => {
      const { action, fields } = await openPlace(h, portal, admin.cookie, "CRM_DEAL_DETAIL_TAB", `?options=${encodeURIComponent('{"ID":"42"}')}`);
      const to = new URL(String((await post(h, action, fields)).headers.location));
      assert.equal(to.searchParams.get("placement"), "CRM_DEAL_DETAIL_TAB");
      assert.deepEqual(JSON.parse(to.searchParams.get("placement_options")!), { ID: "42" });
      assert.equal((await readInitToken(h.kg.serverSecret, to.searchParams.get("__init")!, h.clock.now))!.userId, admin.id);
    });

    it("a forged AUTH_ID is refused: 401 USER_AUTH_REQUIRED, as an HTML page for the person in the portal's frame; no AUTH_ID at all the same", async () => {
      const { action, fields } = await openPlace(h, portal, admin.cookie, "LEFT_MENU");
      const forged = await post(h, action, { ...fields, AUTH_ID: randomBytes(32).toString("hex") });
      assert.equal(forged.status, 401);
      assert.equal(forged.headers.location, undefined);
      fails(forged, 401, "USER_AUTH_REQUIRED");
      const page = await post(h, action, { ...fields, AUTH_ID: "forged" }, true);
      assert.equal(page.status, 401);
      assert.match(String(page.headers["content-type"]), /^text\/html/);
      assert.match(String(page.body), /<code id="code">USER_AUTH_REQUIRED<\/code>/);
      const { AUTH_ID: _, ...without } = fields;
      fails(await post(h, action, without), 401, "USER_AUTH_REQUIRED");
    });

    it("another portal's member_id, DOMAIN or token is refused: 401 USER_AUTH_REQUIRED", async () => {
      const other = await makePortal(h);
      const { action, fields } = await openPlace(h, portal, admin.cookie, "LEFT_MENU");
      fails(await post(h, action, { ...fields, member_id: sandboxMemberId(other) }), 401, "USER_AUTH_REQUIRED");
      fails(await post(h, action, { ...fields, DOMAIN: "elsewhere.bitrix24.ru" }), 401, "USER_AUTH_REQUIRED");
      // A live token of the other portal's user, posted with this portal's member_id: this portal does not accept it.
      await h.store.addSandboxItem(other, "placement", { PLACEMENT: "LEFT_MENU", HANDLER: action.href, TITLE: "x", USER_ID: 0 }, h.clock.now);
      const otherAdmin = await member(h, other, "ADMIN");
      const theirs = await openPlace(h, other, otherAdmin.cookie, "LEFT_MENU");
      fails(await post(h, action, { ...fields, AUTH_ID: theirs.fields["AUTH_ID"]! }), 401, "USER_AUTH_REQUIRED");
    });

    it("an unknown ?app= is 404 SERVER_NOT_FOUND; a server of an API key is 403 OAUTH_REQUIRED", async () => {
      const { action, fields } = await openPlace(h, portal, admin.cookie, "LEFT_MENU");
      fails(await post(h, new URL("/v1/bitrix-handler?app=srv_nope", action), fields), 404, "SERVER_NOT_FOUND");
      const api = await makeKey(h, portal, { name: "Personal", scopes: ["crm", "placement", "vibe:infra"] });
      const apiServer = ok(await h.call("POST", "/v1/infra/servers", { key: api.raw, body: { name: "Personal", url: "http://127.0.0.1:9/" } }), 201);
      fails(await post(h, new URL(`/v1/bitrix-handler?app=${apiServer.id}`, action), fields), 403, "OAUTH_REQUIRED");
    });

    it('seed 003: "The API key (vibe_api_) does not support embedding in the portal interface" — bind without handler with an API key: 403 OAUTH_REQUIRED', async () => {
      const api = await makeKey(h, portal, { name: "Personal 2", scopes: ["crm", "placement"] });
      fails(await h.call("POST", "/v1/placements/bind", { key: api.raw, body: { placement: "LEFT_MENU", title: "x" } }), 403, "OAUTH_REQUIRED");
    });

    it("without the app runtime (no appUrl), the handler answers 503 APP_RUNTIME_DISABLED", async () => {
      const node = await startHarness(kind, { alongside: h });
      try {
        const { action, fields } = await openPlace(h, portal, admin.cookie, "LEFT_MENU");
        const r = await node.call("POST", `${action.pathname}${action.search}`, { headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(fields).toString() });
        fails(r, 503, "APP_RUNTIME_DISABLED");
      } finally {
        await node.close();
      }
    });

    it('seed 003: "gets the placements section with the full embedding procedure" and auth.gatewayInjected — every step\'s URL is served', async () => {
      const me = ok(await h.call("GET", "/v1/me", { key: app.raw }));
      assert.deepEqual(me.auth.gatewayInjected, {
        description: me.auth.gatewayInjected.description,
        header: "X-Vibe-Authorization: Bearer vibe_session_*",
        docs: "http://localhost:80/v1/guide",
      });
      assert.match(me.auth.gatewayInjected.description, /placement/);
      const section = me.placements;
      assert.equal(section.handler, "http://localhost:80/v1/bitrix-handler?app=%3Cserver%20id%3E");
      assert.deepEqual(section.servers, [{ id: server.id, name: "Deal helper", handler: `http://localhost:80/v1/bitrix-handler?app=${server.id}` }]);
      assert.equal(section.sandboxPage, `http://localhost:80/sandbox/${portal}/placements`);
      const urls = (section.steps as string[]).flatMap((s) => [...s.matchAll(/(GET|POST) (https?:\/\/\S+)/g)].map((m) => [m[1]!, m[2]!] as const));
      assert.deepEqual(urls.map(([method, url]) => `${method} ${new URL(url).pathname}`), ["POST /v1/oauth/token", "POST /v1/infra/servers", "GET /v1/placements/available", "POST /v1/placements/bind", "GET /v1/placements", "POST /v1/placements/unbind"]);
      for (const [method, url] of urls.filter(([m]) => m === "GET")) ok(await h.call(method, new URL(url).pathname, as()));
      assert.equal((await h.call("GET", new URL(section.sandboxPage).pathname, { headers: { cookie: admin.cookie } })).status, 200);
      const api = await makeKey(h, portal, { name: "No embedding", scopes: ["crm"] });
      const apiMe = ok(await h.call("GET", "/v1/me", { key: api.raw }));
      assert.equal(apiMe.placements, undefined, "an API key has no placements section");
      assert.equal(apiMe.auth.gatewayInjected, undefined);
    });

    it("a Bitrix24 portal: DOMAIN must be the webhook's host and AUTH_ID pass the portal's user.current (auth=AUTH_ID in the body); a user keygate has not seen authorize the app is 403 PLACEMENT_USER_UNKNOWN", async () => {
      const LIVE = "live-token-of-user-7";
      const calls: unknown[] = [];
      // A stand-in for the portal's REST: user.current answers the token's user, as Bitrix24 does, or 401 invalid_token.
      const b24 = createServer((req, res) => {
        let body = "";
        req.on("data", (c: Buffer) => (body += c));
        req.on("end", () => {
          const params = JSON.parse(body || "{}") as { auth?: string };
          calls.push({ path: req.url, auth: params.auth });
          const answer = params.auth === LIVE ? { status: 200, body: { result: { ID: "7", NAME: "Ivan" } } } : { status: 401, body: { error: "invalid_token", error_description: "The access token provided is invalid." } };
          res.writeHead(answer.status, { "content-type": "application/json" }).end(JSON.stringify(answer.body));
        });
      });
      await new Promise<void>((resolve) => b24.listen(0, "127.0.0.1", resolve));
      try {
        const webhook = `http://127.0.0.1:${(b24.address() as AddressInfo).port}/rest/1/webhooktoken123/`;
        const real = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: `real-${randomBytes(3).toString("hex")}.bitrix24.ru`, upstream: { kind: "bitrix24", webhookUrl: webhook } } }), 201).id;
        const realApp = await makeKey(h, real, { type: "app", name: "Real", scopes: ["placement"] });
        // Registered in the store: over HTTP an authorization key registers with a session, got through this portal's OAuth, which the stand-in does not serve.
        const realServer = `srv_real_${randomBytes(3).toString("hex")}`;
        await registerServer(h.store, { id: realServer, name: "Real", url: "http://127.0.0.1:9/", keyId: realApp.id, userId: h.owner.user.id, portalId: real, blackholeStatus: "UNREACHABLE", checkedAt: null, createdAt: h.clock.now });
        const action = new URL(`http://localhost/v1/bitrix-handler?app=${realServer}`);
        const fields = { DOMAIN: "127.0.0.1", PROTOCOL: "1", LANG: "en", APP_SID: "x", AUTH_ID: LIVE, AUTH_EXPIRES: "3600", REFRESH_ID: "r", member_id: "da45a03b265edd8787f8a258d793cc5d", status: "L", PLACEMENT: "LEFT_MENU", PLACEMENT_OPTIONS: "{}" };
        fails(await post(h, action, { ...fields, DOMAIN: "elsewhere.bitrix24.ru" }), 401, "USER_AUTH_REQUIRED");
        assert.equal(calls.length, 0, "a foreign DOMAIN is refused before the portal is called");
        fails(await post(h, action, { ...fields, AUTH_ID: "forged" }), 401, "USER_AUTH_REQUIRED");
        const unknown = fails(await post(h, action, fields), 403, "PLACEMENT_USER_UNKNOWN");
        assert.match(unknown.message, /Bitrix24 user 7 /);
        assert.deepEqual(calls, [{ path: "/rest/user.current.json", auth: "forged" }, { path: "/rest/user.current.json", auth: LIVE }]);
      } finally {
        b24.close();
      }
    });
  });
}
