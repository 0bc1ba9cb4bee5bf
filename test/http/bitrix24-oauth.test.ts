/**
 * Issue 15 §2 "Real Bitrix24 portals: keygate is a Bitrix24 OAuth client", over HTTP, with the
 * built-in sandbox standing in for a real portal: a portal of kind bitrix24 whose webhook is the
 * sandbox's (served by the same keygate), whose application is the sandbox portal's local one
 * (sandboxApp), with the sandbox's token server as --bitrix24-token-url. Authorize → the portal's
 * authorize → callback → code → token → data calls with auth=<access_token> as the user; refresh
 * before expiry, expired_token and revoked tokens; forged, expired and stolen callback states; an
 * authorization of another portal; tokens unreadable at rest; another node on the same store.
 * Every suite runs against both stores.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setPassword } from "../../src/accounts/links.ts";
import { readInitToken } from "../../src/apps/init-token.ts";
import { createUser } from "../../src/manage/users.ts";
import { loadBitrix24Tokens, userOfBitrixUser } from "../../src/oauth/bitrix24-tokens.ts";
import { ACCESS_TTL_MS, sandboxApp, sandboxMemberId, sandboxWebhookToken, sandboxWebhookUrl, seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { type IssuedKey, addMember, fails, hiddenFields, makeKey, makePortal, ok, openPlace, postToHandler } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const CALLBACK = "https://app.example/callback";
const STATE = "aAbBcCdDeEfFgGhH";
let people = 0;

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const location = (r: Reply) => new URL(String(r.headers.location), "http://keygate.test");
const pathOf = (url: URL) => `${url.pathname}${url.search}`;

interface Browser {
  userId: string;
  email: string;
  cookie: string;
  open(url: string): Promise<Reply>;
  /** Allows the app on keygate's consent page: the redirect to the portal's authorization. */
  allow(appKey: string, challenge?: string): Promise<URL>;
}

for (const kind of await storeKinds("http: bitrix24 oauth")) {
  describe(`issue 15 §2: real Bitrix24 portals, keygate as a Bitrix24 OAuth client [${kind}]`, () => {
    let h: Harness;
    let sandboxId: string;
    let otherSandboxId: string;
    let portalId: string;
    let app: IssuedKey;
    let olga: Browser;

    const person = async (portals: string[]): Promise<Browser> => {
      const email = `b24member${++people}@example.com`;
      const user = await createUser(h.kg, null, { email, name: `Member Number${people}` });
      await setPassword(h.kg, null, user, PASSWORD);
      for (const p of portals) await addMember(h, p, email);
      const r = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
      ok(r, 201);
      const cookie = /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(r.headers["set-cookie"]))![1]!;
      const b: Browser = {
        userId: user.id,
        email,
        cookie,
        open: (url) => h.call("GET", url, { headers: { cookie } }),
        async allow(appKey, challenge) {
          const params: Record<string, string> = { app_key: appKey, state: STATE, redirect_uri: CALLBACK };
          if (challenge !== undefined) Object.assign(params, { code_challenge: challenge, code_challenge_method: "S256" });
          const page = await b.open(`/v1/oauth/authorize?${new URLSearchParams(params)}`);
          assert.equal(page.status, 200, `${page.status} ${JSON.stringify(page.body)}`);
          const fields = hiddenFields(String(page.body));
          const r = await h.call("POST", "/v1/oauth/authorize", { headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: form({ ...fields, decision: "allow" }) });
          assert.equal(r.status, 302, JSON.stringify(r.body));
          return location(r);
        },
      };
      return b;
    };
    /** The portal's authorization, then its redirect: the callback URL keygate is sent back to. */
    const authorizeOnPortal = async (b: Browser, portalUrl: URL): Promise<URL> => {
      const r = await b.open(pathOf(portalUrl));
      assert.equal(r.status, 302, JSON.stringify(r.body));
      return location(r);
    };
    /** Keygate's consent → the portal → the callback: the app's code (the redirect to CALLBACK). */
    const codeFor = async (b: Browser, challenge?: string): Promise<string> => {
      const back = await b.open(pathOf(await authorizeOnPortal(b, await b.allow(app.raw, challenge))));
      assert.equal(back.status, 302, JSON.stringify(back.body));
      const to = location(back);
      assert.equal(`${to.origin}${to.pathname}`, CALLBACK);
      assert.equal(to.searchParams.get("state"), STATE);
      assert.equal(to.searchParams.get("error"), null, to.href);
      return to.searchParams.get("code")!;
    };
    const sessionFor = async (b: Browser): Promise<string> => {
      const verifier = randomBytes(32).toString("base64url");
      const code = await codeFor(b, createHash("sha256").update(verifier).digest("base64url"));
      const r = await h.call("POST", "/v1/oauth/token", { body: { grant_type: "authorization_code", app_key: app.raw, code, redirect_uri: CALLBACK, code_verifier: verifier } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.access_token;
    };
    /** The sandbox's token server, as anyone holding a refresh token calls it. */
    const sandboxToken = async (fields: Record<string, string>) => {
      const r = await fetch(`${h.url}/sandbox/oauth/token/`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: form(fields) });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };

    before(async () => {
      h = await startHarness(kind, { listen: true, allowUpstream: ["127.0.0.1"], bitrix24TokenUrl: "/sandbox/oauth/token/", apps: {} });
      sandboxId = await makePortal(h);
      otherSandboxId = await makePortal(h);
      await seedDemoData(h.store, sandboxId);
      const webhookUrl = sandboxWebhookUrl(h.url!, sandboxId, sandboxWebhookToken(h.kg.serverSecret, sandboxId));
      const b24 = sandboxApp(h.kg.serverSecret, sandboxId);
      portalId = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "acme.bitrix24.ru", upstream: { kind: "bitrix24", webhookUrl, ...b24 } } }), 201).id;
      for (const id of [sandboxId, portalId]) ok(await h.call("PATCH", `/v1/portals/${id}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
      app = await makeKey(h, portalId, { type: "app", name: "CRM Dashboard", scopes: ["crm", "user", "placement", "vibe:infra"], redirectUris: [CALLBACK] });
      olga = await person([sandboxId, portalId]);
    });
    after(() => h.close());

    it("issue 15 §2: Allow sends the browser to the portal's Bitrix24 authorize URL with the application's client_id, keygate's callback and an opaque state; the consent page's form may lead there", async () => {
      const page = await olga.open(`/v1/oauth/authorize?${new URLSearchParams({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK })}`);
      assert.match(String(page.headers["content-security-policy"]), new RegExp(`form-action 'self' https://app\\.example ${new URL(h.url!).origin.replace(/\./g, "\\.")};`));
      const to = await olga.allow(app.raw);
      assert.equal(`${to.origin}${to.pathname}`, `${h.url}/sandbox/${sandboxId}/oauth/authorize/`);
      assert.equal(to.searchParams.get("client_id"), sandboxApp(h.kg.serverSecret, sandboxId).clientId);
      assert.equal(to.searchParams.get("response_type"), "code");
      assert.equal(new URL(to.searchParams.get("redirect_uri")!).pathname, "/v1/oauth/bitrix24/callback");
      const state = to.searchParams.get("state")!;
      assert.ok(!state.includes(STATE) && !Buffer.from(state.split(".").join(""), "base64url").toString("latin1").includes(STATE), "the app's state is not readable in the portal's state");
    });

    it("issue 15 §2: authorize → Bitrix24 authorize → callback → code → token → GET /v1/deals reaches the portal with auth=<access_token> as the user", async () => {
      const session = await sessionFor(olga);
      const me = ok(await h.call("GET", "/v1/me", { key: app.raw, bearer: session }));
      const stored = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
      assert.equal(me.currentUser.bitrixUserId, stored.bitrixUserId, "the session acts as the token answer's user_id");
      assert.equal(stored.memberId, sandboxMemberId(sandboxId));
      assert.equal(stored.clientEndpoint, `${h.url}/sandbox/${sandboxId}/rest/`);
      assert.equal(stored.expiresAt, h.clock.now + ACCESS_TTL_MS);
      assert.equal(await userOfBitrixUser(h.store, portalId, stored.bitrixUserId), olga.userId, "the keygate user is found by their Bitrix24 user id");

      const deals = ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session }));
      assert.equal(deals.length, 6);
      const created = ok(await h.call("POST", "/v1/deals", { key: app.raw, bearer: session, body: { title: "Written through OAuth" } }), 201);
      const deal = ok(await h.call("GET", `/v1/deals/${created.id}`, { key: app.raw, bearer: session }));
      assert.equal(Number(deal.createdBy), stored.bitrixUserId, "Bitrix24 saw the user's access token");
      // The access token is the user's on the portal itself: the sandbox answers it directly too.
      const direct = (await (await fetch(`${stored.clientEndpoint}user.current?auth=${stored.accessToken}`)).json()) as { result: { ID: string; EMAIL: string } };
      assert.equal(direct.result.EMAIL, olga.email);
    });

    it("issue 15 §2: tokens are encrypted at rest — the raw row holds neither the access nor the refresh token", async () => {
      const stored = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
      const rows = await h.store.sql.all("SELECT * FROM bitrix24_tokens WHERE portal_id = ? AND user_id = ?", [portalId, olga.userId]);
      assert.equal(rows.length, 1);
      const raw = JSON.stringify(rows[0]);
      for (const secret of [stored.accessToken, stored.refreshToken]) assert.ok(!raw.includes(secret), "a token is in the database in the clear");
      assert.match(String(rows[0]!["tokens"]), /^\{"v":1,"iv":/);
    });

    it("issue 15 §2: keygate refreshes the access token itself before it expires (less than a minute left), and the call goes on", async () => {
      const session = await sessionFor(olga);
      const before = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
      h.clock.advance(ACCESS_TTL_MS - 30_000);
      // Three calls at once: one refresh (a second would spend the refresh token the first replaced).
      const calls = await Promise.all([1, 2, 3].map(() => h.call("GET", "/v1/deals", { key: app.raw, bearer: session })));
      for (const r of calls) assert.equal(ok(r).length, 7);
      const after = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
      assert.equal(after.version, before.version + 1, "one refresh");
      assert.notEqual(after.accessToken, before.accessToken);
      assert.notEqual(after.refreshToken, before.refreshToken);
      assert.equal(after.expiresAt, h.clock.now + ACCESS_TTL_MS);
    });

    it("issue 15 §2: another node on the same store calls with the stored tokens; a Bitrix24 expired_token there triggers one refresh and a retry; a node whose token another node's refresh ended (invalid_token) takes the stored tokens", async () => {
      const session = await sessionFor(olga);
      const node2 = await startHarness(kind, { alongside: h, allowUpstream: ["127.0.0.1"], bitrix24TokenUrl: `${h.url}/sandbox/oauth/token/` });
      try {
        assert.equal(ok(await node2.call("GET", "/v1/deals", { key: app.raw, bearer: session })).length, 7);
        // The portal's clock runs ahead of what the row says: keygate believes the token valid, Bitrix24 answers expired_token.
        const before = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
        h.clock.advance(ACCESS_TTL_MS);
        await h.store.sql.atomically([{ sql: "UPDATE bitrix24_tokens SET expires_at = ? WHERE portal_id = ? AND user_id = ?", params: [h.clock.now + ACCESS_TTL_MS, portalId, olga.userId] }]);
        const node3 = await startHarness(kind, { alongside: h, allowUpstream: ["127.0.0.1"], bitrix24TokenUrl: `${h.url}/sandbox/oauth/token/` });
        try {
          assert.equal(ok(await node3.call("GET", "/v1/deals", { key: app.raw, bearer: session })).length, 7);
        } finally {
          await node3.close();
        }
        const refreshed = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
        assert.equal(refreshed.version, before.version + 1, "one refresh");
        // The first node's token has ended: it reads the row and uses the tokens the other node stored (no second refresh).
        assert.equal(ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session })).length, 7);
        assert.equal((await loadBitrix24Tokens(h.kg, portalId, olga.userId))!.version, refreshed.version);

        // The second node refreshes while the first still holds a token it believes good: Bitrix24 refuses it there
        // (invalid_token), and the first node takes the stored tokens again instead of refreshing.
        await h.store.sql.atomically([{ sql: "UPDATE bitrix24_tokens SET expires_at = ? WHERE portal_id = ? AND user_id = ?", params: [h.clock.now + 30_000, portalId, olga.userId] }]);
        assert.equal(ok(await node2.call("GET", "/v1/deals", { key: app.raw, bearer: session })).length, 7);
        assert.equal((await loadBitrix24Tokens(h.kg, portalId, olga.userId))!.version, refreshed.version + 1);
        assert.equal(ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session })).length, 7);
        assert.equal((await loadBitrix24Tokens(h.kg, portalId, olga.userId))!.version, refreshed.version + 1, "no refresh on the first node");
      } finally {
        await node2.close();
      }
    });

    it("issue 15 §2: revoked Bitrix24 tokens (the refresh token spent elsewhere) → 401 BITRIX24_AUTHORIZATION_EXPIRED, the stored tokens are deleted; authorizing again restores access", async () => {
      const session = await sessionFor(olga);
      const stored = (await loadBitrix24Tokens(h.kg, portalId, olga.userId))!;
      const b24 = sandboxApp(h.kg.serverSecret, sandboxId);
      const elsewhere = await sandboxToken({ grant_type: "refresh_token", client_id: b24.clientId, client_secret: b24.clientSecret, refresh_token: stored.refreshToken });
      assert.equal(elsewhere.status, 200, "the refresh elsewhere ends the access and refresh tokens keygate holds");
      const r = fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session }), 401, "BITRIX24_AUTHORIZATION_EXPIRED");
      assert.match(r.message, /authorize the app again/);
      assert.equal(await loadBitrix24Tokens(h.kg, portalId, olga.userId), undefined, "the dead tokens are deleted");
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session }), 401, "BITRIX24_AUTHORIZATION_EXPIRED");
      const again = await sessionFor(olga);
      assert.equal(ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: again })).length, 7);
    });

    it("issue 15 §2: a forged callback state, one older than 10 minutes, and one of another user are refused; nothing is stored", async () => {
      const forged = await olga.open(`/v1/oauth/bitrix24/callback?${new URLSearchParams({ code: "abc", state: "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..x.y.z" })}`);
      assert.equal(fails(forged, 400, "INVALID_REQUEST").param, "state");
      fails(await olga.open("/v1/oauth/bitrix24/callback?code=abc"), 400, "INVALID_REQUEST");

      const late = await person([sandboxId, portalId]);
      const toPortal = await late.allow(app.raw);
      h.clock.advance(601_000);
      const r = fails(await late.open(pathOf(await authorizeOnPortal(late, toPortal))), 400, "INVALID_REQUEST");
      assert.match(r.message, /10 minutes/);

      const victim = await person([sandboxId, portalId]);
      const callback = await authorizeOnPortal(late, await late.allow(app.raw));
      fails(await victim.open(pathOf(callback)), 401, "SESSION_REQUIRED");
      for (const b of [late, victim]) assert.equal(await loadBitrix24Tokens(h.kg, portalId, b.userId), undefined);
    });

    it("issue 15 §2: an authorization carrying the member_id of another portal is refused (error=access_denied); so are a denial and a wrong code on the portal — never a 500", async () => {
      const ivan = await person([sandboxId, portalId]);
      const callback = await authorizeOnPortal(ivan, await ivan.allow(app.raw));
      const denied = (url: URL) => {
        assert.equal(`${url.origin}${url.pathname}`, CALLBACK);
        assert.equal(url.searchParams.get("error"), "access_denied");
        assert.equal(url.searchParams.get("state"), STATE);
        assert.equal(url.searchParams.get("code"), null);
      };
      const other = new URL(callback);
      other.searchParams.set("member_id", sandboxMemberId(otherSandboxId));
      const r = await ivan.open(pathOf(other));
      assert.equal(r.status, 302, JSON.stringify(r.body));
      denied(location(r));

      const wrongCode = new URL(callback);
      wrongCode.searchParams.set("code", "0".repeat(64));
      denied(location(await ivan.open(pathOf(wrongCode))));
      const refusal = new URL(callback);
      refusal.searchParams.delete("code");
      refusal.searchParams.set("error", "access_denied");
      denied(location(await ivan.open(pathOf(refusal))));
      assert.equal(await loadBitrix24Tokens(h.kg, portalId, ivan.userId), undefined);
    });

    it("issue 15 §2: a Bitrix24 portal without an application (clientId, clientSecret) answers a clear 400 PORTAL_NOT_LINKED", async () => {
      const webhookUrl = sandboxWebhookUrl(h.url!, sandboxId, sandboxWebhookToken(h.kg.serverSecret, sandboxId));
      const bare = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "bare.bitrix24.ru", upstream: { kind: "bitrix24", webhookUrl } } }), 201).id;
      const key = await makeKey(h, bare, { type: "app", name: "No app", scopes: ["crm"], redirectUris: [CALLBACK] });
      const member = await person([bare]);
      const r = fails(await member.open(`/v1/oauth/authorize?${new URLSearchParams({ app_key: key.raw, state: STATE, redirect_uri: CALLBACK })}`), 400, "PORTAL_NOT_LINKED");
      assert.match(r.message, /upstream\.clientId and upstream\.clientSecret/);
    });

    it("issue 15 §2: removing the user from the portal deletes their Bitrix24 tokens", async () => {
      const anna = await person([sandboxId, portalId]);
      await sessionFor(anna);
      assert.notEqual(await loadBitrix24Tokens(h.kg, portalId, anna.userId), undefined);
      ok(await h.call("DELETE", `/v1/portals/${portalId}/members/${anna.userId}`, { key: h.owner.key }));
      assert.equal(await loadBitrix24Tokens(h.kg, portalId, anna.userId), undefined);
    });

    it("issue 16 §3 on a real portal: a user who authorized the app once opens it from a place — AUTH_ID checked at the portal, the user found by their Bitrix24 id, the portal's fresh tokens kept, the browser sent to the app with __init", async () => {
      const ivan = await person([sandboxId, portalId]);
      const session = await sessionFor(ivan);
      const server = ok(await h.call("POST", "/v1/infra/servers", { key: app.raw, bearer: session, body: { name: "CRM Dashboard", url: "http://127.0.0.1:9/" } }), 201);
      // Bound through the user's own Bitrix24 tokens, on the portal the sandbox stands in for.
      const bound = ok(await h.call("POST", "/v1/placements/bind", { key: app.raw, bearer: session, body: { placement: "CRM_DEAL_DETAIL_TAB", title: "CRM Dashboard" } }), 201);
      assert.match(bound.handler, new RegExp(`/v1/bitrix-handler\\?app=${server.id}$`));
      // What the portal posts when ivan opens the place: its own DOMAIN, and a fresh token pair of the application for him.
      const { action, fields } = await openPlace(h, sandboxId, ivan.cookie, "CRM_DEAL_DETAIL_TAB");
      const before = (await loadBitrix24Tokens(h.kg, portalId, ivan.userId))!;
      const r = await postToHandler(h, action, { ...fields, DOMAIN: "acme.bitrix24.ru" });
      assert.equal(r.status, 302, JSON.stringify(r.body));
      const to = new URL(String(r.headers.location));
      assert.equal(to.origin, server.appUrl);
      const claims = (await readInitToken(h.kg.serverSecret, to.searchParams.get("__init")!, h.clock.now))!;
      assert.deepEqual([claims.serverId, claims.keyId, claims.userId, claims.portalId, claims.bitrixUserId], [server.id, app.id, ivan.userId, portalId, before.bitrixUserId]);
      const after = (await loadBitrix24Tokens(h.kg, portalId, ivan.userId))!;
      assert.equal(after.accessToken, fields["AUTH_ID"], "the posted AUTH_ID is the user's access token now");
      assert.equal(after.refreshToken, fields["REFRESH_ID"]);
      assert.ok(after.version > before.version);
      // The session goes on with them.
      assert.ok(ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session })).length > 0);

      // Refusals: a DOMAIN that is not the portal's, another portal's member_id for a known user, a forged AUTH_ID, a Bitrix24 user keygate does not know.
      fails(await postToHandler(h, action, { ...fields, DOMAIN: "evil.bitrix24.ru" }), 401, "USER_AUTH_REQUIRED");
      const fresh = (await openPlace(h, sandboxId, ivan.cookie, "CRM_DEAL_DETAIL_TAB")).fields;
      fails(await postToHandler(h, action, { ...fresh, DOMAIN: "acme.bitrix24.ru", member_id: sandboxMemberId(otherSandboxId) }), 401, "USER_AUTH_REQUIRED");
      fails(await postToHandler(h, action, { ...fresh, DOMAIN: "acme.bitrix24.ru", AUTH_ID: randomBytes(32).toString("hex") }), 401, "USER_AUTH_REQUIRED");
      const stranger = await person([sandboxId, portalId]);
      const theirs = (await openPlace(h, sandboxId, stranger.cookie, "CRM_DEAL_DETAIL_TAB")).fields;
      fails(await postToHandler(h, action, { ...theirs, DOMAIN: "acme.bitrix24.ru" }), 403, "PLACEMENT_USER_UNKNOWN");
    });
  });
}
