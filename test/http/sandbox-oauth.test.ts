/**
 * Issue 15 §2: the built-in sandbox implements Bitrix24's OAuth 2.0 (the "full OAuth protocol" of
 * apidocs.bitrix24.com/settings/oauth), so the real-portal path runs with no network: authorize on
 * the portal → code → the oauth.bitrix.info-shaped token exchange → REST calls with
 * auth=<access_token> → refresh; expired and ended (revoked by a refresh) tokens; wrong codes and
 * client credentials.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setPassword } from "../../src/accounts/links.ts";
import { createUser } from "../../src/manage/users.ts";
import { ACCESS_TTL_MS, sandboxApp, sandboxMemberId } from "../../src/upstream/sandbox/index.ts";
import { type Harness, startHarness } from "../support/gateway.ts";
import { addMember, makePortal, ok } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const CALLBACK = "https://app.example/b24/callback";
const STATE = "b24-state-0123456789";

describe("issue 15 §2: the sandbox's Bitrix24 OAuth", () => {
  let h: Harness;
  let portalId: string;
  let app: { clientId: string; clientSecret: string };
  let cookie: string;

  const signIn = async (email: string, portal: string | null): Promise<string> => {
    const user = await createUser(h.kg, null, { email, name: "Olga Petrova" });
    await setPassword(h.kg, null, user, PASSWORD);
    if (portal !== null) await addMember(h, portal, email);
    const r = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
    ok(r, 201);
    return /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(r.headers["set-cookie"]))![1]!;
  };
  const authorizeUrl = (clientId = app.clientId) => `/sandbox/${portalId}/oauth/authorize/?${new URLSearchParams({ client_id: clientId, response_type: "code", redirect_uri: CALLBACK, state: STATE })}`;
  /** The code the portal sends the browser back with. */
  const code = async (): Promise<string> => {
    const r = await h.call("GET", authorizeUrl(), { headers: { cookie } });
    assert.equal(r.status, 302, JSON.stringify(r.body));
    return new URL(String(r.headers.location)).searchParams.get("code")!;
  };
  /** The token server, as an application's server calls it (a form POST). */
  const token = async (fields: Record<string, string>) => {
    const r = await fetch(`${h.url}/sandbox/oauth/token/`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(fields) });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  const rest = async (endpoint: string, method: string, auth: string) => {
    const r = await fetch(`${endpoint}${method}?auth=${auth}`);
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };

  before(async () => {
    h = await startHarness("sqlite", { listen: true });
    portalId = await makePortal(h);
    app = sandboxApp(h.kg.serverSecret, portalId);
    cookie = await signIn("olga@example.com", portalId);
  });
  after(() => h.close());

  it("the portal's admins find its local application and OAuth endpoints in the portal view", async () => {
    const view = ok(await h.call("GET", `/v1/portals/${portalId}`, { key: h.owner.key }));
    const { authorizeUrl: authorize, tokenUrl, ...credentials } = view.sandboxOAuth;
    assert.deepEqual(credentials, app);
    assert.equal(new URL(authorize).pathname, `/sandbox/${portalId}/oauth/authorize/`);
    assert.equal(new URL(tokenUrl).pathname, "/sandbox/oauth/token/");
    const members = ok(await h.call("GET", `/v1/portals/${portalId}`, { headers: { cookie } }));
    assert.equal(members.sandboxOAuth, undefined, "members who are not admins do not see the application's secret");
  });

  it("authorize on the portal: not signed in → keygate's sign-in; signed in → redirect_uri?code&state&domain&member_id&scope&server_domain; not a member → 403", async () => {
    const away = await h.call("GET", authorizeUrl());
    assert.equal(away.status, 302);
    assert.equal(String(away.headers.location), `/sign-in?next=${encodeURIComponent(authorizeUrl())}`);

    const r = await h.call("GET", authorizeUrl(), { headers: { cookie } });
    assert.equal(r.status, 302, JSON.stringify(r.body));
    const back = new URL(String(r.headers.location));
    assert.equal(`${back.origin}${back.pathname}`, CALLBACK);
    assert.match(back.searchParams.get("code")!, /^[0-9a-f]{64}$/);
    assert.equal(back.searchParams.get("state"), STATE);
    assert.equal(back.searchParams.get("domain"), (await h.store.getPortal(portalId))!.domain);
    assert.equal(back.searchParams.get("member_id"), sandboxMemberId(portalId));
    assert.equal(back.searchParams.get("server_domain"), "oauth.bitrix.info");

    const stranger = await signIn("stranger@example.com", null);
    const refused = await h.call("GET", authorizeUrl(), { headers: { cookie: stranger } });
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error, "access_denied");
    const unknownApp = await h.call("GET", authorizeUrl("local.000000000000.0000"), { headers: { cookie } });
    assert.equal(unknownApp.status, 400);
    assert.equal(unknownApp.body.error, "invalid_client");
  });

  it("code exchange answers Bitrix24's fields; REST calls with auth=<access_token> act as the user; a code serves once and only with the application's secret", async () => {
    const c = await code();
    const wrongSecret = await token({ grant_type: "authorization_code", client_id: app.clientId, client_secret: "not-the-secret", code: c });
    assert.equal(wrongSecret.status, 401);
    assert.equal(wrongSecret.body.error, "invalid_client");
    const t = await token({ grant_type: "authorization_code", client_id: app.clientId, client_secret: app.clientSecret, code: c });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.deepEqual(Object.keys(t.body).sort(), ["access_token", "client_endpoint", "domain", "expires", "expires_in", "member_id", "refresh_token", "scope", "server_endpoint", "status", "user_id"]);
    assert.equal(t.body.expires_in, 3600);
    assert.equal(t.body.expires, Math.floor((h.clock.now + ACCESS_TTL_MS) / 1000));
    assert.equal(t.body.domain, "oauth.bitrix.info");
    assert.equal(t.body.member_id, sandboxMemberId(portalId));
    assert.equal(t.body.client_endpoint, `${h.url}/sandbox/${portalId}/rest/`);
    assert.equal(typeof t.body.user_id, "number");

    const me = await rest(String(t.body.client_endpoint), "user.current", String(t.body.access_token));
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.equal((me.body.result as { ID: string; EMAIL: string }).ID, String(t.body.user_id));
    assert.equal((me.body.result as { EMAIL: string }).EMAIL, "olga@example.com");

    const again = await token({ grant_type: "authorization_code", client_id: app.clientId, client_secret: app.clientSecret, code: c });
    assert.equal(again.status, 400);
    assert.equal(again.body.error, "invalid_grant");
    const other = await token({ grant_type: "password", client_id: app.clientId, client_secret: app.clientSecret });
    assert.equal(other.body.error, "unsupported_grant_type");
  });

  it("a code lives 30 seconds", async () => {
    const c = await code();
    h.clock.advance(30_000);
    const late = await token({ grant_type: "authorization_code", client_id: app.clientId, client_secret: app.clientSecret, code: c });
    assert.equal(late.status, 400);
    assert.equal(late.body.error, "invalid_grant");
  });

  it("an access token expires after an hour (401 expired_token); the refresh gives new tokens, and ends the old access and refresh tokens (401 invalid_token, invalid_grant)", async () => {
    const first = (await token({ grant_type: "authorization_code", client_id: app.clientId, client_secret: app.clientSecret, code: await code() })).body;
    const endpoint = String(first.client_endpoint);
    assert.equal((await rest(endpoint, "user.current", String(first.access_token))).status, 200);
    h.clock.advance(ACCESS_TTL_MS);
    const expired = await rest(endpoint, "user.current", String(first.access_token));
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error, "expired_token");

    const refreshed = await token({ grant_type: "refresh_token", client_id: app.clientId, client_secret: app.clientSecret, refresh_token: String(first.refresh_token) });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.notEqual(refreshed.body.access_token, first.access_token);
    assert.equal((await rest(endpoint, "user.current", String(refreshed.body.access_token))).status, 200);

    const reused = await token({ grant_type: "refresh_token", client_id: app.clientId, client_secret: app.clientSecret, refresh_token: String(first.refresh_token) });
    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, "invalid_grant");

    // A refresh ends the access token issued with the refresh token it used.
    const second = (await token({ grant_type: "refresh_token", client_id: app.clientId, client_secret: app.clientSecret, refresh_token: String(refreshed.body.refresh_token) })).body;
    const ended = await rest(endpoint, "user.current", String(refreshed.body.access_token));
    assert.equal(ended.status, 401);
    assert.equal(ended.body.error, "invalid_token");
    assert.equal((await rest(endpoint, "user.current", String(second.access_token))).status, 200);

    const unknown = await rest(endpoint, "user.current", "f".repeat(64));
    assert.equal(unknown.body.error, "invalid_token");
    const none = await fetch(`${endpoint}user.current`);
    assert.equal(none.status, 401);
  });
});
