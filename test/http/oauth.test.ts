/**
 * OAuth sessions of authorization keys over HTTP (issue 15 §1–3; seed 003 "Key types", "Passing
 * the key", the /v1/me modes; reference §2.2): keygate as the authorization server of its
 * vibe_app_ keys on the built-in sandbox portal — app key → authorize (sign-in, consent) → code →
 * token with PKCE → a data call as the user → poll → revoke — and the attacks of the issue: state
 * missing or short, redirect URIs that differ by one character, a trailing slash, case or an added
 * query, code replay, a code of app A redeemed by app B, a wrong PKCE verifier, a session used
 * with another app's key, framing of the consent page, an open redirect. Every suite runs against
 * both stores.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { setPassword } from "../../src/accounts/links.ts";
import { createUser } from "../../src/manage/users.ts";
import { seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { HOUR, type IssuedKey, MINUTE, addMember, fails, makeKey, makePortal, ok } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const CALLBACK = "https://app.example/callback";
const STATE = "aAbBcCdDeEfFgGhH";
let people = 0;

const pkce = () => {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
};
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
const location = (r: Reply) => String(r.headers.location);
const authorizeUrl = (params: Record<string, string>) => `/v1/oauth/authorize?${new URLSearchParams(params)}`;

interface Browser {
  email: string;
  cookie: string;
  /** GET with the cookie, as a browser opening a URL. */
  open(url: string): Promise<Reply>;
  /** Submits the consent page shown for this URL with the decision; the redirect. */
  decide(url: string, decision: "allow" | "deny"): Promise<Reply>;
}

async function person(h: Harness, portalId: string | null): Promise<Browser> {
  const email = `member${++people}@example.com`;
  const user = await createUser(h.kg, null, { email, name: `Member Number${people}` });
  await setPassword(h.kg, null, user, PASSWORD);
  if (portalId !== null) await addMember(h, portalId, email);
  const r = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
  ok(r, 201);
  const cookie = /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(r.headers["set-cookie"]))![1]!;
  const b: Browser = {
    email,
    cookie,
    open: (url) => h.call("GET", url, { headers: { cookie } }),
    async decide(url, decision) {
      const page = await b.open(url);
      assert.equal(page.status, 200, `${page.status} ${JSON.stringify(page.body)}`);
      const fields = Object.fromEntries([...String(page.body).matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)))]));
      return h.call("POST", "/v1/oauth/authorize", { headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: form({ ...fields, decision }) });
    },
  };
  return b;
}

/** The code in a redirect to the callback, checked to carry the state back. */
function codeIn(r: Reply, state = STATE, base = CALLBACK): string {
  assert.equal(r.status, 302, `${r.status} ${JSON.stringify(r.body)}`);
  const url = new URL(location(r), "http://keygate.test");
  assert.equal(`${url.origin}${url.pathname}`, base);
  assert.equal(url.searchParams.get("state"), state);
  return url.searchParams.get("code")!;
}

for (const kind of await storeKinds("http: oauth")) {
  describe(`OAuth sessions of authorization keys [${kind}]`, () => {
    let h: Harness;
    let portalId: string;
    let app: IssuedKey;
    let member: Browser;
    const token = (body: Record<string, string>, asForm = false) =>
      h.call("POST", "/v1/oauth/token", asForm ? { headers: { "content-type": "application/x-www-form-urlencoded" }, body: form(body) } : { body });
    /** A full flow for the member: a session token. */
    const sessionFor = async (b: Browser, key = app.raw): Promise<string> => {
      const { verifier, challenge } = pkce();
      const code = codeIn(await b.decide(authorizeUrl({ app_key: key, state: STATE, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: "S256" }), "allow"));
      const r = await token({ grant_type: "authorization_code", app_key: key, code, redirect_uri: CALLBACK, code_verifier: verifier });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.access_token;
    };

    before(async () => {
      h = await startHarness(kind, { listen: true });
      portalId = await makePortal(h);
      await seedDemoData(h.store, portalId);
      ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
      app = await makeKey(h, portalId, { type: "app", name: "CRM Dashboard", scopes: ["crm", "user", "vibe:infra"], redirectUris: [CALLBACK, "http://localhost:5173/cb?x=1"] });
      member = await person(h, portalId);
    });
    after(() => h.close());

    it("an authorization key registers exact redirectUris (POST /v1/keys, PATCH /v1/keys/:id); other key types have none", async () => {
      assert.deepEqual(app.data.redirectUris, [CALLBACK, "http://localhost:5173/cb?x=1"]);
      const patched = ok(await h.call("PATCH", `/v1/keys/${app.id}`, { key: h.owner.key, body: { redirectUris: [CALLBACK, "http://localhost:5173/cb?x=1", "https://app.example/other"] } }));
      assert.deepEqual(patched.redirectUris, [CALLBACK, "http://localhost:5173/cb?x=1", "https://app.example/other"]);
      assert.deepEqual(ok(await h.call("GET", `/v1/keys/${app.id}`, { key: h.owner.key })).redirectUris, patched.redirectUris);
      const api = await makeKey(h, portalId);
      assert.equal(api.data.redirectUris, undefined);
      fails(await h.call("PATCH", `/v1/keys/${api.id}`, { key: h.owner.key, body: { redirectUris: [CALLBACK] } }), 400, "VALIDATION_ERROR");
      for (const bad of ["http://app.example/cb", "https://app.example/cb#frag", "/relative"]) {
        const r = fails(await h.call("PATCH", `/v1/keys/${app.id}`, { key: h.owner.key, body: { redirectUris: [bad] } }), 400, "VALIDATION_ERROR");
        assert.equal(r.param, "redirectUris[0]");
      }
      assert.deepEqual(ok(await h.call("GET", `/v1/keys/${app.id}`, { key: h.owner.key })).redirectUris, patched.redirectUris, "nothing stored on bad input");
    });

    it('seed 003: "Opening authorizeUrl as is returns 400 INVALID_REQUEST \\"state: Required\\"" — the refusals that must not redirect answer the envelope, with no header needed', async () => {
      const me = ok(await h.call("GET", "/v1/me", { key: app.raw }));
      const template = new URL(me.oauth.authorizeUrl);
      const r = fails(await h.call("GET", `${template.pathname}${template.search}`), 400, "INVALID_REQUEST");
      assert.equal(r.message, "state: Required");
      fails(await h.call("GET", authorizeUrl({ app_key: app.raw })), 400, "INVALID_REQUEST");
      for (const state of ["a".repeat(15), "a".repeat(513)]) fails(await h.call("GET", authorizeUrl({ app_key: app.raw, state })), 400, "INVALID_REQUEST");
      fails(await h.call("GET", authorizeUrl({ app_key: `vibe_app_${"x".repeat(40)}`, state: STATE })), 401, "INVALID_API_KEY");
      const api = await makeKey(h, portalId);
      fails(await h.call("GET", authorizeUrl({ app_key: api.raw, state: STATE })), 401, "INVALID_API_KEY");
    });

    it("attack: a redirect_uri that differs in one character, by a trailing slash, by case or by an added query is refused (400 INVALID_REDIRECT_URI), never redirected to (no open redirect)", async () => {
      for (const uri of ["https://app.example/callbacc", `${CALLBACK}/`, "https://APP.example/callback", "https://app.example/Callback", `${CALLBACK}?next=https://evil.example`, "https://evil.example/callback"]) {
        const r = await member.open(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: uri }));
        fails(r, 400, "INVALID_REDIRECT_URI");
        assert.equal(r.headers.location, undefined, uri);
      }
    });

    it("not signed in: the browser is sent to the dashboard's sign-in, which brings it back", async () => {
      const url = authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK });
      const r = await h.call("GET", url);
      assert.equal(r.status, 302);
      assert.equal(location(r), `/sign-in?next=${encodeURIComponent(url)}`);
    });

    it("issue 15: the consent page names the app, the portal and the scopes, has Allow and Deny, and cannot be framed (clickjacking)", async () => {
      const r = await member.open(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK }));
      assert.equal(r.status, 200);
      const page = String(r.body);
      assert.match(page, /CRM Dashboard/);
      assert.match(page, /\.bitrix24\.ru/);
      assert.match(page, /<code>crm<\/code>/);
      assert.match(page, />Allow</);
      assert.match(page, />Deny</);
      assert.match(String(r.headers["content-security-policy"]), /frame-ancestors 'none'/);
      assert.match(String(r.headers["content-security-policy"]), /form-action 'self' https:\/\/app\.example/);
      assert.equal(r.headers["x-frame-options"], "DENY");
      assert.equal(r.headers["cache-control"], "no-store");
    });

    it("only members of the app's portal can authorize it", async () => {
      const outsider = await person(h, null);
      fails(await outsider.open(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK })), 403, "NOT_PORTAL_MEMBER");
    });

    it('seed 003: "X-Api-Key + Authorization: Bearer vibe_session_*" — code → token with PKCE (JSON and form) → a data call as the user, /v1/me fills currentUser', async () => {
      const { verifier, challenge } = pkce();
      const code = codeIn(await member.decide(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: "S256" }), "allow"));
      const r = await token({ grant_type: "authorization_code", app_key: app.raw, code, redirect_uri: CALLBACK, code_verifier: verifier }, true);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(Object.keys(r.body).sort(), ["access_token", "expires_in", "token_type"], "no refresh_token");
      assert.equal(r.body.token_type, "Bearer");
      assert.equal(r.body.expires_in, 86400);
      assert.match(r.body.access_token, /^vibe_session_[0-9A-Za-z]{32}$/);
      assert.equal(r.headers["cache-control"], "no-store");
      const session = r.body.access_token;

      const me = ok(await h.call("GET", "/v1/me", { key: app.raw, bearer: session }));
      assert.equal(typeof me.currentUser.bitrixUserId, "number");
      assert.equal(typeof me.currentUser._note, "string");
      assert.equal(me.capabilities.servers.create.available, true, JSON.stringify(me.capabilities.servers));
      const bare = ok(await h.call("GET", "/v1/me", { key: app.raw }));
      assert.equal(bare.currentUser, null);
      assert.deepEqual(bare.capabilities.servers.create, { available: false, reason: "SESSION_REQUIRED" });

      fails(await h.call("GET", "/v1/deals", { key: app.raw }), 401, "TOKEN_MISSING");
      const deals = ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session }));
      assert.equal(deals.length, 6);
      // What the app writes is authored by the session's user (the sandbox user made for the member).
      const created = ok(await h.call("POST", "/v1/deals", { key: app.raw, bearer: session, body: { title: "Written for the member" } }), 201);
      const deal = ok(await h.call("GET", `/v1/deals/${created.id}`, { key: app.raw, bearer: session }));
      assert.equal(Number(deal.createdBy), me.currentUser.bitrixUserId);
      const users = ok(await h.call("GET", "/v1/users", { key: app.raw, bearer: session, headers: {} }));
      assert.ok(users.some((u: Record<string, unknown>) => String(u.EMAIL ?? u.email).toLowerCase() === member.email && Number(u.ID ?? u.id) === me.currentUser.bitrixUserId));
    });

    it("the refresh_token grant is refused (unsupported_grant_type); token errors follow RFC 6749 §5.2", async () => {
      const r = await token({ grant_type: "refresh_token", refresh_token: "x", app_key: app.raw });
      assert.equal(r.status, 400);
      assert.deepEqual(Object.keys(r.body).sort(), ["error", "error_description"]);
      assert.equal(r.body.error, "unsupported_grant_type");
      assert.equal((await token({ grant_type: "authorization_code", app_key: app.raw })).body.error, "invalid_request");
      const unknown = await token({ grant_type: "authorization_code", app_key: `vibe_app_${"x".repeat(40)}`, code: "abc" });
      assert.equal(unknown.status, 401);
      assert.equal(unknown.body.error, "invalid_client");
      assert.equal((await token({ grant_type: "authorization_code", app_key: app.raw, code: "not-a-code", redirect_uri: CALLBACK })).body.error, "invalid_grant");
      const notJson = await h.call("POST", "/v1/oauth/token", { headers: { "content-type": "application/json" }, body: "{" });
      assert.equal(notJson.body.error, "invalid_request");
    });

    it("attack: code replay — a second use is refused and revokes the session the first use issued", async () => {
      const code = codeIn(await member.decide(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK }), "allow"));
      const first = await token({ grant_type: "authorization_code", app_key: app.raw, code, redirect_uri: CALLBACK });
      assert.equal(first.status, 200);
      ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: first.body.access_token }));
      const second = await token({ grant_type: "authorization_code", app_key: app.raw, code, redirect_uri: CALLBACK });
      assert.equal(second.status, 400);
      assert.equal(second.body.error, "invalid_grant");
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: first.body.access_token }), 401, "INVALID_SESSION");
    });

    it("attack: a code of app A redeemed by app B, a redirect_uri other than the code's, a PKCE verifier that does not match, a verifier for a code without challenge", async () => {
      const other = await makeKey(h, portalId, { type: "app", name: "Other app", scopes: ["crm"], redirectUris: [CALLBACK] });
      const { verifier, challenge } = pkce();
      const code = codeIn(await member.decide(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: "S256" }), "allow"));
      const attempt = (body: Record<string, string>) => token({ grant_type: "authorization_code", code, redirect_uri: CALLBACK, ...body });
      assert.equal((await attempt({ app_key: other.raw, code_verifier: verifier })).body.error, "invalid_grant");
      assert.equal((await attempt({ app_key: app.raw, code_verifier: verifier, redirect_uri: "http://localhost:5173/cb?x=1" })).body.error, "invalid_grant");
      assert.equal((await attempt({ app_key: app.raw, code_verifier: pkce().verifier })).body.error, "invalid_grant");
      assert.equal((await attempt({ app_key: app.raw })).body.error, "invalid_grant", "a challenge needs its verifier");
      assert.equal((await attempt({ app_key: app.raw, code_verifier: verifier })).status, 200, "the failed attempts did not use the code up");
      const plain = codeIn(await member.decide(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK }), "allow"));
      assert.equal((await token({ grant_type: "authorization_code", app_key: app.raw, code: plain, redirect_uri: CALLBACK, code_verifier: verifier })).body.error, "invalid_grant");
      fails(await h.call("GET", authorizeUrl({ app_key: app.raw, state: STATE, code_challenge: challenge, code_challenge_method: "plain" })), 400, "INVALID_REQUEST");
    });

    it("codes live at most 60 seconds", async () => {
      const code = codeIn(await member.decide(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK }), "allow"));
      h.clock.advance(61_000);
      const r = await token({ grant_type: "authorization_code", app_key: app.raw, code, redirect_uri: CALLBACK });
      assert.equal(r.body.error, "invalid_grant");
    });

    it("Deny sends the browser to redirect_uri?error=access_denied&state=…, keeping the registered URI's own query", async () => {
      const r = await member.decide(authorizeUrl({ app_key: app.raw, state: STATE, redirect_uri: "http://localhost:5173/cb?x=1" }), "deny");
      assert.equal(r.status, 302);
      const url = new URL(location(r));
      assert.equal(`${url.origin}${url.pathname}`, "http://localhost:5173/cb");
      assert.equal(url.searchParams.get("x"), "1");
      assert.equal(url.searchParams.get("error"), "access_denied");
      assert.equal(url.searchParams.get("state"), STATE);
      assert.equal(url.searchParams.get("code"), null);
    });

    it("the consent form needs the signed-in session's CSRF token", async () => {
      const r = await h.call("POST", "/v1/oauth/authorize", {
        headers: { cookie: member.cookie, "content-type": "application/x-www-form-urlencoded" },
        body: form({ app_key: app.raw, state: STATE, redirect_uri: CALLBACK, decision: "allow", csrf: "forged" }),
      });
      fails(r, 403, "CSRF_TOKEN_INVALID");
    });

    it('reference §2.2 zero-config flow: no redirect_uri → keygate\'s /oauth/complete page; GET /v1/oauth/poll is "pending", then once "complete" with the session', async () => {
      const state = randomBytes(16).toString("hex");
      const poll = () => h.call("GET", `/v1/oauth/poll?${new URLSearchParams({ app_key: app.raw, state })}`, { key: app.raw });
      assert.deepEqual(ok2(await poll()), { success: true, status: "pending" });
      const r = await member.decide(authorizeUrl({ app_key: app.raw, state }), "allow");
      assert.equal(r.status, 302);
      assert.ok(location(r).startsWith("/oauth/complete?"), location(r));
      const page = await h.call("GET", location(r));
      assert.equal(page.status, 200);
      assert.match(String(page.body), /may continue/);
      const done = ok2(await poll());
      assert.equal(done.status, "complete");
      assert.match(done.access_token, /^vibe_session_/);
      assert.equal(done.expires_in, 86400);
      fails(await poll(), 400, "INVALID_REQUEST");
      ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: done.access_token }));
    });

    it("sessions: another app's key → 401 SESSION_APP_MISMATCH; unknown → INVALID_SESSION; after 24 hours → TOKEN_EXPIRED; POST /v1/oauth/revoke (RFC 7009) ends one", async () => {
      const session = await sessionFor(member);
      const other = await makeKey(h, portalId, { type: "app", name: "Other app", scopes: ["crm"] });
      fails(await h.call("GET", "/v1/deals", { key: other.raw, bearer: session }), 401, "SESSION_APP_MISMATCH");
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: `vibe_session_${"A".repeat(32)}` }), 401, "INVALID_SESSION");
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: "garbage" }), 401, "INVALID_SESSION");

      const revoked = await sessionFor(member);
      ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: revoked }));
      ok(await h.call("POST", "/v1/oauth/revoke", { body: { token: revoked } }));
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: revoked }), 401, "INVALID_SESSION");
      ok(await h.call("POST", "/v1/oauth/revoke", { body: { token: revoked } }), 200);

      h.clock.advance(24 * HOUR);
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session }), 401, "TOKEN_EXPIRED");
      // A week after it ended, the next grant of any app deletes it: it is then unknown.
      h.clock.advance(7 * 24 * HOUR + MINUTE);
      // (The member's own sign-in has ended meanwhile, idle for a week: someone signs in anew.)
      await sessionFor(await person(h, portalId));
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: session }), 401, "INVALID_SESSION");
    });

    it("revoking or deleting the app key ends its sessions; removing the user from the portal ends the user's sessions there", async () => {
      const key = await makeKey(h, portalId, { type: "app", name: "Short-lived app", scopes: ["crm"], redirectUris: [CALLBACK] });
      const session = await sessionFor(await person(h, portalId), key.raw);
      ok(await h.call("GET", "/v1/deals", { key: key.raw, bearer: session }));
      ok(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { status: "REVOKED" } }));
      fails(await h.call("GET", "/v1/deals", { key: key.raw, bearer: session }), 401, "INVALID_SESSION");
      fails(await h.call("GET", "/v1/deals", { key: key.raw }), 401, "KEY_INACTIVE");
      ok(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { status: "ACTIVE" } }));
      fails(await h.call("GET", "/v1/deals", { key: key.raw, bearer: session }), 401, "INVALID_SESSION");

      const leaving = await person(h, portalId);
      const hers = await sessionFor(leaving);
      ok(await h.call("GET", "/v1/deals", { key: app.raw, bearer: hers }));
      const members = ok(await h.call("GET", `/v1/portals/${portalId}/members`, { key: h.owner.key }));
      const userId = members.find((m: { email?: string; userId: string }) => m.email === leaving.email)?.userId;
      assert.ok(userId, JSON.stringify(members));
      ok(await h.call("DELETE", `/v1/portals/${portalId}/members/${userId}`, { key: h.owner.key }));
      fails(await h.call("GET", "/v1/deals", { key: app.raw, bearer: hers }), 401, "INVALID_SESSION");
    });
  });
}

/** A poll answer: top level, not the envelope's data. */
function ok2(r: Reply) {
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}
