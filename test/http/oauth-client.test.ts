/**
 * keygate's OAuth flow driven by a real OAuth client library, oauth4webapi (issue 15 §1: "test it
 * with a real OAuth client library"): the library builds PKCE (S256) and state, validates the
 * authorization response, redeems the code at the token endpoint over a real socket with its own
 * client authentication, checks the token response against RFC 6749/7636, parses RFC 6749 §5.2
 * errors, and sends the session as a Bearer token to a protected resource.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as oauth from "oauth4webapi";
import { setPassword } from "../../src/accounts/links.ts";
import { createUser } from "../../src/manage/users.ts";
import { seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness } from "../support/gateway.ts";
import { type IssuedKey, addMember, makeKey, makePortal, ok } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const CALLBACK = "https://app.example/callback";

describe("OAuth sessions through an OAuth client library (oauth4webapi)", () => {
  let h: Harness;
  let app: IssuedKey;
  let cookie: string;
  let as: oauth.AuthorizationServer;
  let client: oauth.Client;
  /** keygate serves on plain http in tests: the library refuses that unless told. */
  const insecure = { [oauth.allowInsecureRequests]: true };

  before(async () => {
    h = await startHarness("sqlite", { listen: true });
    const portalId = await makePortal(h);
    await seedDemoData(h.store, portalId);
    app = await makeKey(h, portalId, { type: "app", name: "CRM Dashboard", scopes: ["crm", "user"], redirectUris: [CALLBACK] });
    const email = "library-user@example.com";
    const user = await createUser(h.kg, null, { email, name: "Library User" });
    await setPassword(h.kg, null, user, PASSWORD);
    await addMember(h, portalId, email);
    const r = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
    ok(r, 201);
    cookie = /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(r.headers["set-cookie"]))![1]!;
    as = { issuer: h.url!, authorization_endpoint: `${h.url}/v1/oauth/authorize`, token_endpoint: `${h.url}/v1/oauth/token`, revocation_endpoint: `${h.url}/v1/oauth/revoke` };
    client = { client_id: app.raw };
  });
  after(() => h.close());

  /** The browser's part: opens the authorization URL, submits the consent page with the decision; the redirect's URL. */
  async function consent(url: URL, decision: "allow" | "deny"): Promise<URL> {
    const page: Reply = await h.call("GET", `${url.pathname}${url.search}`, { headers: { cookie } });
    assert.equal(page.status, 200, `${page.status} ${JSON.stringify(page.body)}`);
    const fields = Object.fromEntries([...String(page.body).matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)))]));
    const r = await h.call("POST", "/v1/oauth/authorize", { headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ ...fields, decision }).toString() });
    assert.equal(r.status, 302, `${r.status} ${JSON.stringify(r.body)}`);
    return new URL(String(r.headers.location));
  }

  /** An authorization URL as an RFC 6749 client builds it: client_id, response_type=code, PKCE S256 and state. */
  async function authorizationUrl(): Promise<{ url: URL; verifier: string; state: string }> {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const url = new URL(as.authorization_endpoint!);
    url.search = new URLSearchParams({ client_id: client.client_id, response_type: "code", redirect_uri: CALLBACK, scope: "crm", state, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256" }).toString();
    return { url, verifier, state };
  }

  it("issue 15 §1: authorization URL with PKCE S256 and state → consent → code exchange and token response checked by the library → a data call with the session", async () => {
    const { url, verifier, state } = await authorizationUrl();
    const params = oauth.validateAuthResponse(as, client, await consent(url, "allow"), state);
    const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, CALLBACK, verifier, insecure);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, response);
    assert.match(tokens.access_token, /^vibe_session_/);
    assert.equal(tokens.token_type, "bearer");
    assert.equal(tokens.expires_in, 86_400);
    assert.equal(tokens.refresh_token, undefined);

    const me = await oauth.protectedResourceRequest(tokens.access_token, "GET", new URL(`${h.url}/v1/me`), new Headers({ "x-api-key": app.raw }), null, insecure);
    assert.equal(me.status, 200);
    const body = (await me.json()) as { data: { currentUser: { bitrixUserId: number } } };
    assert.equal(typeof body.data.currentUser.bitrixUserId, "number");
    const deals = await oauth.protectedResourceRequest(tokens.access_token, "GET", new URL(`${h.url}/v1/deals`), new Headers({ "x-api-key": app.raw }), null, insecure);
    assert.equal(deals.status, 200, await deals.clone().text());
    assert.ok(Array.isArray(((await deals.json()) as { data: unknown[] }).data));
  });

  it("the app key as its own client authentication (a custom ClientAuth sending app_key) is accepted the same way", async () => {
    const { url, verifier, state } = await authorizationUrl();
    const params = oauth.validateAuthResponse(as, client, await consent(url, "allow"), state);
    const appKeyAuth: oauth.ClientAuth = (_as, c, body) => body.set("app_key", c.client_id);
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, appKeyAuth, params, CALLBACK, verifier, insecure));
    assert.match(tokens.access_token, /^vibe_session_/);
  });

  it("RFC 6749 §5.2 errors reach the library as such: a wrong PKCE verifier is invalid_grant, a replayed code too", async () => {
    const { url, verifier, state } = await authorizationUrl();
    const params = oauth.validateAuthResponse(as, client, await consent(url, "allow"), state);
    const wrong = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, CALLBACK, oauth.generateRandomCodeVerifier(), insecure);
    await assert.rejects(oauth.processAuthorizationCodeResponse(as, client, wrong), (e: unknown) => e instanceof oauth.ResponseBodyError && e.error === "invalid_grant" && e.status === 400);
    await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, CALLBACK, verifier, insecure));
    const replay = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, CALLBACK, verifier, insecure);
    await assert.rejects(oauth.processAuthorizationCodeResponse(as, client, replay), (e: unknown) => e instanceof oauth.ResponseBodyError && e.error === "invalid_grant");
  });

  it("Deny reaches the library as access_denied with its state; the refresh_token grant is unsupported_grant_type; revocation ends the session (RFC 6750 invalid_token challenge)", async () => {
    const denied = await authorizationUrl();
    await assert.rejects(
      (async () => oauth.validateAuthResponse(as, client, await consent(denied.url, "deny"), denied.state))(),
      (e: unknown) => e instanceof oauth.AuthorizationResponseError && e.error === "access_denied",
    );
    const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), "anything", insecure);
    await assert.rejects(oauth.processRefreshTokenResponse(as, client, refresh), (e: unknown) => e instanceof oauth.ResponseBodyError && e.error === "unsupported_grant_type");

    const { url, verifier, state } = await authorizationUrl();
    const params = oauth.validateAuthResponse(as, client, await consent(url, "allow"), state);
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, CALLBACK, verifier, insecure));
    await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.None(), tokens.access_token, insecure));
    // RFC 6750 §3: the library reads the Bearer challenge keygate answers with.
    await assert.rejects(oauth.protectedResourceRequest(tokens.access_token, "GET", new URL(`${h.url}/v1/deals`), new Headers({ "x-api-key": app.raw }), null, insecure), (e: unknown) => {
      assert.ok(e instanceof oauth.WWWAuthenticateChallengeError, String(e));
      assert.equal(e.status, 401);
      assert.equal(e.cause[0]?.scheme, "bearer");
      assert.equal(e.cause[0]?.parameters.error, "invalid_token", JSON.stringify(e.cause));
      return true;
    });
  });
});
