/**
 * Issue 12, "Accounts and sign-in", over HTTP: signing in with email and password, the session
 * cookie and its flags, CSRF, session fixation, throttled sign-ins, no email enumeration, sign-out
 * (here and everywhere), the lifetimes, one-time links and invitations, and a session acting on
 * the management API exactly as a management key of its user would — and no further.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createPasswordLink, setPassword } from "../../src/accounts/links.ts";
import { createUser } from "../../src/manage/users.ts";
import { type CallOptions, type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { HOUR, fails, makeKey, makePortal, ok } from "./_fixtures.ts";

const DAY = 24 * HOUR;
const PASSWORD = "correct horse battery staple";
let people = 0;

interface Browser {
  token: string;
  csrf: string;
  /** Calls with the cookie (and, with csrf: true, the CSRF header). */
  call(method: string, path: string, options?: CallOptions & { csrf?: boolean }): Promise<Reply>;
}

function setCookie(r: Reply): string {
  const header = r.headers["set-cookie"];
  assert.equal(typeof header, "string", `one Set-Cookie: ${JSON.stringify(header)}`);
  return header as string;
}

function tokenIn(r: Reply): string {
  const m = /^keygate_session=([A-Za-z0-9_-]+);/.exec(setCookie(r));
  assert.ok(m, setCookie(r));
  return m[1]!;
}

function browser(h: Harness, token: string, csrf: string): Browser {
  return {
    token,
    csrf,
    call: (method, path, o = {}) => h.call(method, path, { ...o, headers: { cookie: `keygate_session=${token}`, ...(o.csrf ? { "x-csrf-token": csrf } : {}), ...o.headers } }),
  };
}

async function signIn(h: Harness, email: string, password = PASSWORD, options: CallOptions = {}): Promise<Browser> {
  const r = await h.call("POST", "/v1/session", { ...options, body: { email, password } });
  const data = ok(r, 201);
  return browser(h, tokenIn(r), data.csrfToken);
}

/** A user with a password (set as the operator's CLI does). */
async function person(h: Harness, password = PASSWORD) {
  const user = await createUser(h.kg, null, { email: `person${++people}@example.com` });
  await setPassword(h.kg, null, user, password);
  return user;
}

for (const kind of await storeKinds("http: accounts")) {
  describe(`accounts and sign-in [${kind}]`, () => {
    let h: Harness;
    before(async () => (h = await startHarness(kind, { trustProxy: ["10.0.0.1"] })));
    after(() => h.close());

    it("issue 12: signing in sets an HttpOnly, SameSite=Lax session cookie (Secure behind HTTPS) and returns the user and CSRF token; GET /v1/session reads it back", async () => {
      const user = await person(h);
      const r = await h.call("POST", "/v1/session", { body: { email: user.email.toUpperCase(), password: PASSWORD } });
      const data = ok(r, 201);
      assert.deepEqual(data.user, { id: user.id, email: user.email, name: user.name, role: "user" });
      const cookie = setCookie(r);
      assert.match(cookie, /; Path=\/;/);
      assert.match(cookie, /; HttpOnly;/);
      assert.match(cookie, /; SameSite=Lax$/);
      assert.doesNotMatch(cookie, /Secure/, "plain HTTP: no Secure flag");
      assert.equal(data.expiresAt, new Date(h.clock.now + 30 * DAY).toISOString());
      assert.equal(data.idleExpiresAt, new Date(h.clock.now + 7 * DAY).toISOString());
      const again = ok(await browser(h, tokenIn(r), data.csrfToken).call("GET", "/v1/session"));
      assert.deepEqual(again, data);
      fails(await h.call("GET", "/v1/session"), 401, "SESSION_REQUIRED");
      fails(await h.call("GET", "/v1/session", { headers: { cookie: "keygate_session=forged" } }), 401, "SESSION_REQUIRED");

      const https = await h.call("POST", "/v1/session", { ip: "10.0.0.1", headers: { "x-forwarded-proto": "https" }, body: { email: user.email, password: PASSWORD } });
      assert.match(setCookie(https), /; HttpOnly; SameSite=Lax; Secure$/, "behind a trusted HTTPS proxy: Secure");
    });

    it("issue 12: no email enumeration: a wrong password and an unknown email get the same status, code and message, and no cookie", async () => {
      const user = await person(h);
      const noPassword = await createUser(h.kg, null, { email: `nopass${++people}@example.com` });
      const answers = [];
      for (const [email, password] of [[user.email, "wrong password!!"], [`nobody${people}@example.com`, PASSWORD], [noPassword.email, PASSWORD]] as const) {
        const r = await h.call("POST", "/v1/session", { ip: "192.0.2.50", body: { email, password } });
        assert.equal(r.headers["set-cookie"], undefined);
        const e = fails(r, 401, "INVALID_CREDENTIALS");
        answers.push({ status: r.status, error: e });
      }
      assert.deepEqual(answers[1], answers[0]);
      assert.deepEqual(answers[2], answers[0]);
    });

    it("issue 12: session fixation is impossible: a cookie sent with the sign-in is ignored and a new token issued, every time", async () => {
      const victim = await person(h);
      const attacker = await person(h);
      const planted = await signIn(h, attacker.email);
      const r = await h.call("POST", "/v1/session", { headers: { cookie: `keygate_session=${planted.token}` }, body: { email: victim.email, password: PASSWORD } });
      const token = tokenIn(r);
      assert.notEqual(token, planted.token);
      assert.equal(ok(await planted.call("GET", "/v1/session")).user.id, attacker.id, "the planted token is still only the attacker's own session");
      assert.equal(ok(await browser(h, token, "").call("GET", "/v1/session")).user.id, victim.id);
      const second = await signIn(h, victim.email);
      assert.notEqual(second.token, token, "each sign-in gets its own token");
    });

    it("issue 12: a change made with the cookie needs the session's X-CSRF-Token; a read does not; a key header is unaffected", async () => {
      const user = await person(h);
      const portal = await makePortal(h);
      ok(await h.call("POST", `/v1/portals/${portal}/members`, { key: h.owner.key, body: { email: user.email } }), 201);
      const b = await signIn(h, user.email);
      const other = await signIn(h, user.email);
      const body = { portalId: portal, name: "From the dashboard", scopes: ["crm"] };
      fails(await b.call("POST", "/v1/keys", { body }), 403, "CSRF_TOKEN_INVALID");
      fails(await b.call("POST", "/v1/keys", { body, headers: { "x-csrf-token": "guess" } }), 403, "CSRF_TOKEN_INVALID");
      fails(await b.call("POST", "/v1/keys", { body, headers: { "x-csrf-token": other.csrf } }), 403, "CSRF_TOKEN_INVALID");
      assert.deepEqual(ok(await b.call("GET", `/v1/keys?portalId=${portal}`)), [], "the refused changes made nothing");
      const made = ok(await b.call("POST", "/v1/keys", { body, csrf: true }), 201);
      assert.match(made.rawKey, /^vibe_api_/);
      fails(await b.call("DELETE", "/v1/session"), 403, "CSRF_TOKEN_INVALID");
      fails(await b.call("DELETE", "/v1/sessions"), 403, "CSRF_TOKEN_INVALID");
      ok(await b.call("GET", "/v1/session"), 200);
      // A page of another origin gets nothing done with the cookie, CSRF token or not.
      fails(await b.call("PATCH", `/v1/keys/${made.id}`, { csrf: true, headers: { origin: "https://evil.example" }, body: { name: "x" } }), 403, "ORIGIN_NOT_ALLOWED");
      fails(await h.call("POST", "/v1/session", { headers: { origin: "https://evil.example" }, body: { email: user.email, password: PASSWORD } }), 403, "ORIGIN_NOT_ALLOWED");
      // A key header wins over the cookie: no CSRF rule, the key's own rights.
      const viaKey = await h.call("POST", "/v1/keys", { key: h.owner.key, headers: { cookie: `keygate_session=${b.token}` }, body: { ...body, name: "By key" } });
      assert.equal(ok(viaKey, 201).ownerId, h.owner.user.id, "made as the key's owner, not the cookie's user");
    });

    it("issue 12: failed sign-ins are throttled per account (known or not, the same) with Retry-After; the right password waits too", async () => {
      const user = await person(h);
      for (let i = 0; i < 10; i++) fails(await h.call("POST", "/v1/session", { ip: `198.51.100.${i}`, body: { email: user.email, password: "wrong password!!" } }), 401, "INVALID_CREDENTIALS");
      const r = await h.call("POST", "/v1/session", { ip: "198.51.100.99", body: { email: user.email, password: PASSWORD } });
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, "SIGN_IN_THROTTLED");
      assert.ok(Number(r.headers["retry-after"]) > 0);
      assert.equal(r.headers["set-cookie"], undefined);
      const unknown = `ghost${people}@example.com`;
      for (let i = 0; i < 10; i++) await h.call("POST", "/v1/session", { ip: `198.51.101.${i}`, body: { email: unknown, password: "wrong password!!" } });
      const ghost = await h.call("POST", "/v1/session", { ip: "198.51.101.99", body: { email: unknown, password: PASSWORD } });
      assert.equal(ghost.status, 429, "an unknown email is throttled alike: the throttle tells nothing either");
      h.clock.advance(16 * 60_000);
      ok(await h.call("POST", "/v1/session", { ip: "198.51.100.99", body: { email: user.email, password: PASSWORD } }), 201);
    });

    it("issue 12: failed sign-ins are throttled per address, over any emails", async () => {
      const user = await person(h);
      for (let i = 0; i < 30; i++) await h.call("POST", "/v1/session", { ip: "203.0.113.77", body: { email: `spray${i}-${people}@example.com`, password: "wrong password!!" } });
      const r = await h.call("POST", "/v1/session", { ip: "203.0.113.77", body: { email: user.email, password: PASSWORD } });
      assert.equal(r.status, 429);
      assert.equal(r.body.error.code, "SIGN_IN_THROTTLED");
      ok(await h.call("POST", "/v1/session", { ip: "203.0.113.78", body: { email: user.email, password: PASSWORD } }), 201);
      h.clock.advance(16 * 60_000);
    });

    it("issue 12: one user cannot see or change another's keys with a session; a portal admin's session sees its members' keys, as the admin's key would", async () => {
      const alice = await person(h);
      const bob = await person(h);
      const alicePortal = await makePortal(h);
      ok(await h.call("POST", `/v1/portals/${alicePortal}/members`, { key: h.owner.key, body: { email: alice.email } }), 201);
      const bobPortal = await makePortal(h);
      ok(await h.call("POST", `/v1/portals/${bobPortal}/members`, { key: h.owner.key, body: { email: bob.email } }), 201);
      const a = await signIn(h, alice.email);
      const b = await signIn(h, bob.email);
      const bobsKey = ok(await b.call("POST", "/v1/keys", { csrf: true, body: { portalId: bobPortal, name: "Bob's", scopes: ["crm"] } }), 201);
      fails(await a.call("GET", `/v1/keys/${bobsKey.id}`), 404, "KEY_NOT_FOUND");
      fails(await a.call("PATCH", `/v1/keys/${bobsKey.id}`, { csrf: true, body: { name: "Mine now" } }), 404, "KEY_NOT_FOUND");
      fails(await a.call("DELETE", `/v1/keys/${bobsKey.id}`, { csrf: true }), 404, "KEY_NOT_FOUND");
      fails(await a.call("POST", `/v1/keys/${bobsKey.id}/rotate`, { csrf: true }), 404, "KEY_NOT_FOUND");
      fails(await a.call("GET", `/v1/keys/${bobsKey.id}/usage`), 404, "KEY_NOT_FOUND");
      const listing = await a.call("GET", `/v1/keys?portalId=${bobPortal}`);
      assert.ok([403, 404].includes(listing.status), JSON.stringify(listing.body));
      assert.deepEqual(ok(await a.call("GET", "/v1/portals")).map((p: { id: string }) => p.id), [alicePortal]);
      assert.equal(ok(await b.call("GET", `/v1/keys/${bobsKey.id}`)).name, "Bob's");
      // The owner (admin of bobPortal) signed in sees Bob's key in the shared list and can revoke it.
      await setPassword(h.kg, null, h.owner.user, PASSWORD);
      const owner = await signIn(h, h.owner.user.email);
      assert.ok(ok(await owner.call("GET", `/v1/keys?portalId=${bobPortal}`)).some((k: { id: string }) => k.id === bobsKey.id));
      assert.equal(ok(await owner.call("PATCH", `/v1/keys/${bobsKey.id}`, { csrf: true, body: { status: "REVOKED" } })).status, "REVOKED");
      // A session describes no key: /v1/me is for keys.
      fails(await a.call("GET", "/v1/me"), 401, "MISSING_API_KEY");
      // It acts as a management key does: no data-plane access.
      fails(await a.call("GET", "/v1/deals"), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
    });

    it("issue 12: a session acts as its user: it sees only what the user may, what it creates is the user's, and the audit trail names the user with no key", async () => {
      const user = await person(h);
      const b = await signIn(h, user.email);
      const portal = await makePortal(h);
      ok(await h.call("POST", `/v1/portals/${portal}/members`, { key: h.owner.key, body: { email: user.email } }), 201);
      const key = await makeKey(h, portal);
      fails(await b.call("GET", `/v1/keys/${key.id}`), 404, "KEY_NOT_FOUND");
      const own = ok(await b.call("POST", "/v1/keys", { csrf: true, body: { portalId: portal, name: "Mine", scopes: ["crm"] } }), 201);
      assert.equal(ok(await h.call("GET", "/v1/me", { key: own.rawKey })).owner.userId, user.id);
      const audit = ok(await h.call("GET", `/v1/portals/${portal}/audit?keyId=${own.id}`, { key: h.owner.key }));
      assert.deepEqual([audit[0].action, audit[0].actorUserId, audit[0].actorKeyId], ["key.create", user.id, null], "the user acted, through no key");
    });

    it("issue 12: signing out ends the session and clears the cookie; signing out everywhere ends every session of the user only", async () => {
      const user = await person(h);
      const other = await person(h);
      const one = await signIn(h, user.email);
      const two = await signIn(h, user.email);
      const three = await signIn(h, user.email);
      const theirs = await signIn(h, other.email);
      const out = await one.call("DELETE", "/v1/session", { csrf: true });
      assert.deepEqual(ok(out), { signedOut: 1 });
      assert.match(setCookie(out), /^keygate_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Lax$/);
      fails(await one.call("GET", "/v1/session"), 401, "SESSION_REQUIRED");
      ok(await two.call("GET", "/v1/session"));
      assert.deepEqual(ok(await two.call("DELETE", "/v1/sessions", { csrf: true })), { signedOut: 2 });
      fails(await two.call("GET", "/v1/session"), 401, "SESSION_REQUIRED");
      fails(await three.call("GET", "/v1/portals"), 401, "SESSION_REQUIRED");
      ok(await theirs.call("GET", "/v1/session"));
    });

    it("issue 12: a session ends after 7 idle days, and after 30 days however often it is used", async () => {
      const user = await person(h);
      const idle = await signIn(h, user.email);
      const busy = await signIn(h, user.email);
      h.clock.advance(6 * DAY);
      ok(await busy.call("GET", "/v1/portals"));
      h.clock.advance(DAY + 1);
      fails(await idle.call("GET", "/v1/session"), 401, "SESSION_REQUIRED");
      // Used every few days (each use moves the idle end on) until just before day 30...
      for (const days of [5, 5, 5, 4, 3]) {
        h.clock.advance(days * DAY);
        ok(await busy.call("GET", "/v1/session"));
      }
      // ...then day 30 ends it all the same.
      h.clock.advance(DAY);
      fails(await busy.call("GET", "/v1/session"), 401, "SESSION_REQUIRED");
    });

    it("issue 12: a one-time link sets the password once within 24 hours, signs in, and ends the user's other sessions", async () => {
      const user = await person(h);
      const before = await signIn(h, user.email);
      const { token } = await createPasswordLink(h.kg, null, user);
      const weak = fails(await h.call("POST", "/v1/password", { body: { token, password: "short" } }), 400, "VALIDATION_ERROR");
      assert.equal(weak.param, "password");
      const set = await h.call("POST", "/v1/password", { body: { token, password: "a brand new password" } });
      assert.equal(ok(set, 201).user.id, user.id);
      assert.match(setCookie(set), /HttpOnly/);
      fails(await before.call("GET", "/v1/session"), 401, "SESSION_REQUIRED");
      fails(await h.call("POST", "/v1/password", { body: { token, password: "yet another password" } }), 400, "LINK_INVALID");
      await signIn(h, user.email, "a brand new password");
      fails(await h.call("POST", "/v1/session", { body: { email: user.email, password: PASSWORD } }), 401, "INVALID_CREDENTIALS");
      const late = await createPasswordLink(h.kg, null, user);
      const replaced = await createPasswordLink(h.kg, null, user);
      fails(await h.call("POST", "/v1/password", { body: { token: late.token, password: "a third password!" } }), 400, "LINK_INVALID");
      h.clock.advance(24 * HOUR);
      fails(await h.call("POST", "/v1/password", { body: { token: replaced.token, password: "a third password!" } }), 400, "LINK_INVALID");
      fails(await h.call("POST", "/v1/password", { body: { token: "nonsense", password: "a third password!" } }), 400, "LINK_INVALID");
    });

    it("issue 12: a portal admin invites by email; the invitee sets a password with the link and is a member; non-admins cannot invite", async () => {
      await setPassword(h.kg, null, h.owner.user, PASSWORD);
      const admin = await signIn(h, h.owner.user.email);
      const portal = await makePortal(h);
      const email = `invitee${++people}@example.com`;
      const made = ok(await admin.call("POST", `/v1/portals/${portal}/invitations`, { csrf: true, body: { email: email.toUpperCase(), role: "MEMBER" } }), 201);
      assert.equal(made.email, email);
      const token = new URL(made.url).searchParams.get("token")!;
      assert.match(made.url, /\/set-password\?token=[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(ok(await admin.call("GET", `/v1/portals/${portal}/invitations`)).map((i: { id: string }) => i.id), [made.id]);
      const joined = await h.call("POST", "/v1/password", { body: { token, password: "the invitee's password" } });
      const invitee = browser(h, tokenIn(joined), ok(joined, 201).csrfToken);
      const portals = ok(await invitee.call("GET", "/v1/portals"));
      assert.deepEqual(portals.map((p: { id: string; role: string }) => [p.id, p.role]), [[portal, "MEMBER"]]);
      assert.deepEqual(ok(await admin.call("GET", `/v1/portals/${portal}/invitations`)), [], "used: no longer pending");
      fails(await invitee.call("POST", `/v1/portals/${portal}/invitations`, { csrf: true, body: { email: "x@example.com" } }), 403, "NOT_PORTAL_ADMIN");
      fails(await admin.call("POST", `/v1/portals/${portal}/invitations`, { csrf: true, body: { email } }), 409, "ALREADY_PORTAL_MEMBER");
      // The same through the owner's management key: one API.
      const viaKey = ok(await h.call("POST", `/v1/portals/${portal}/invitations`, { key: h.owner.key, body: { email: `later${people}@example.com` } }), 201);
      ok(await h.call("DELETE", `/v1/portals/${portal}/invitations/${viaKey.id}`, { key: h.owner.key }));
      fails(await h.call("POST", "/v1/password", { body: { token: new URL(viaKey.url).searchParams.get("token")!, password: "a withdrawn link!" } }), 400, "LINK_INVALID");
      fails(await h.call("DELETE", `/v1/portals/${portal}/invitations/${viaKey.id}`, { key: h.owner.key }), 404, "INVITATION_NOT_FOUND");
    });

    it("issue 12: an invitation for someone who has a password cannot change it: they sign in and accept it; nobody else can", async () => {
      const portal = await makePortal(h);
      const existing = await person(h);
      const stranger = await person(h);
      const made = ok(await h.call("POST", `/v1/portals/${portal}/invitations`, { key: h.owner.key, body: { email: existing.email, role: "ADMIN" } }), 201);
      const token = new URL(made.url).searchParams.get("token")!;
      fails(await h.call("POST", "/v1/password", { body: { token, password: "takeover attempt!" } }), 409, "INVITATION_NEEDS_SIGN_IN");
      await signIn(h, existing.email);
      const s = await signIn(h, stranger.email);
      fails(await s.call("POST", "/v1/invitations/accept", { csrf: true, body: { token } }), 403, "INVITATION_FOR_ANOTHER_USER");
      const e = await signIn(h, existing.email);
      assert.deepEqual(ok(await e.call("POST", "/v1/invitations/accept", { csrf: true, body: { token } })), { portalId: portal, role: "ADMIN" });
      fails(await e.call("POST", "/v1/invitations/accept", { csrf: true, body: { token } }), 400, "LINK_INVALID");
      assert.equal(ok(await e.call("GET", `/v1/portals/${portal}`)).role, "ADMIN");
    });
  });
}

describe("accounts under every profile", () => {
  for (const profile of ["atender", "rogeriq"]) {
    it(`issue 12: under ${profile}, a signed-in session acts as keygate's management key of its user (portals, invitations), CSRF included`, async () => {
      const h = await startHarness("sqlite", { profile });
      try {
        await setPassword(h.kg, null, h.owner.user, PASSWORD);
        // The profile's flat envelope: {data} without "success".
        const r = await h.call("POST", "/v1/session", { body: { email: h.owner.user.email, password: PASSWORD } });
        assert.equal(r.status, 201, JSON.stringify(r.body));
        const b = browser(h, tokenIn(r), r.body.data.csrfToken);
        const made = await b.call("POST", "/v1/portals", { csrf: true, body: { domain: `${profile}.example.com` } });
        assert.equal(made.status, 201, JSON.stringify(made.body));
        const portal = made.body.data.id as string;
        assert.equal((await b.call("POST", `/v1/portals/${portal}/invitations`, { body: { email: "new@example.com" } })).status, 403, "no CSRF token, no change");
        const invited = await b.call("POST", `/v1/portals/${portal}/invitations`, { csrf: true, body: { email: "new@example.com" } });
        assert.equal(invited.status, 201, JSON.stringify(invited.body));
        const listed = await b.call("GET", `/v1/portals/${portal}/invitations`);
        assert.deepEqual(listed.body.data.map((i: { email: string }) => i.email), ["new@example.com"]);
      } finally {
        await h.close();
      }
    });
  }
});
