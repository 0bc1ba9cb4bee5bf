/**
 * The verification pipeline over HTTP (docs/verification.md, seeds 001 and 003): where the
 * credential comes from, which code each fault gets, which code a request with several faults
 * gets, what happens after verification (the handler, 404), and that every change to a key reaches the
 * very next request through the key cache. Every suite runs against both stores.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { HOUR, MINUTE, addMember, badChecksum, changeOneChar, fails, isoAt, keyIdOf, makeKey, makePortal, makeUser, ok, passesVerification, patchKey, unknownKey } from "./_fixtures.ts";

const OUTSIDE = "198.51.100.7";
const ALLOWED = "203.0.113.42";

for (const kind of await storeKinds("http: verify")) {
  describe(`verification [${kind}]`, () => {
    let h: Harness;
    let portalId: string;
    before(async () => {
      h = await startHarness(kind);
      portalId = await makePortal(h);
    });
    after(() => h.close());
    // Each test starts with a fresh failed-authentication budget for its address (20 a minute).
    beforeEach(() => h.clock.advance(2 * MINUTE));

    /** An app key (vibe_app_) on the shared portal. */
    const appKey = (body: Record<string, unknown> = {}) => makeKey(h, portalId, { type: "app", name: "CRM Dashboard", scopes: ["crm", "vibe:infra"], ...body });
    /** A management user whose second key (holding `scopes`) is switched to READONLY over HTTP. */
    const readOnlyManagementKey = async (scopes: string) => {
      const u = await makeUser(h);
      await addMember(h, portalId, u.user.email, "ADMIN");
      const key = await u.another(scopes);
      await patchKey(h, await keyIdOf(h, key), { accessMode: "READONLY" }, u.key);
      return { ...u, readOnly: key };
    };

    describe("credential (step 1)", () => {
      it('seed 003: "API key (vibe_api_) … Authorization: X-Api-Key header"', async () => {
        const k = await makeKey(h, portalId);
        const me = ok(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.equal(me.type, "personal");
        assert.equal(me.keyId, k.id);
      });

      it('seed 003: "can pass the API key itself (vibe_api_…) in this header instead of X-Api-Key — for the key both headers are equivalent"', async () => {
        const k = await makeKey(h, portalId);
        assert.equal(ok(await h.call("GET", "/v1/me", { bearer: k.raw })).keyId, k.id);
        fails(await h.call("GET", "/v1/deals", { bearer: k.raw }), 503, "SANDBOX_UNREACHABLE");
        fails(await h.call("GET", "/v1/tasks", { bearer: k.raw }), 403, "SCOPE_DENIED");
      });

      it('seed 003: "the method applies only to vibe_api_ and vibe_live_ keys" — a management key as Bearer works', async () => {
        const portals = ok(await h.call("GET", "/v1/portals", { bearer: h.owner.key }));
        assert.ok(portals.some((p: { id: string }) => p.id === portalId));
      });

      it('seed 003: "For the authorization key (vibe_app_…) … the key itself always goes in X-Api-Key" — as Bearer: 401 INVALID_API_KEY', async () => {
        const k = await appKey();
        fails(await h.call("GET", "/v1/me", { bearer: k.raw }), 401, "INVALID_API_KEY");
        fails(await h.call("GET", "/v1/deals", { bearer: k.raw }), 401, "INVALID_API_KEY");
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
      });

      it('seed 003: "If Authorization: Bearer is not passed for a vibe_app_ key, endpoints that need user context return 401 TOKEN_MISSING"', async () => {
        const k = await appKey();
        // Creating a server answers seed 003's own code for the same refusal (UNAUTHENTICATED, test/http/servers.test.ts).
        const e = fails(await h.call("POST", "/v1/notifications", { key: k.raw, body: {} }), 401, "TOKEN_MISSING");
        assert.equal(typeof e.hint, "string", "the refusal points at a working option");
        fails(await h.call("GET", "/v1/deals", { key: k.raw }), 401, "TOKEN_MISSING");
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 401, "TOKEN_MISSING");
      });

      it('seed 003: "The /v1/me and /v1/oauth/* endpoints work without Bearer" and "Reads (GET /v1/infra/servers, GET /v1/me) do not need a session"', async () => {
        const k = await appKey();
        const me = ok(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.equal(me.type, "oauth_app");
        assert.equal(me.currentUser, null);
        assert.deepEqual(me.capabilities.servers.create, { available: false, reason: "SESSION_REQUIRED" });
        ok(await h.call("GET", "/v1/infra/servers", { key: k.raw }));
        // The OAuth flow answers its own refusals (docs/oauth.md), never TOKEN_MISSING.
        const authorize = fails(await h.call("GET", `/v1/oauth/authorize?app_key=${k.raw}`, { key: k.raw }), 400, "INVALID_REQUEST");
        assert.equal(authorize.message, "state: Required");
        const token = await h.call("POST", "/v1/oauth/token", { key: k.raw, body: {} });
        assert.equal(token.status, 400);
        assert.equal(token.body.error, "invalid_request");
        assert.deepEqual((await h.call("GET", "/v1/oauth/poll?state=aAbBcCdDeEfFgGhH", { key: k.raw })).body, { success: true, status: "pending" });
      });

      it("issue: a Bearer next to an app key is a session token; one keygate did not issue → 401 INVALID_SESSION", async () => {
        const k = await appKey();
        const session = { key: k.raw, headers: { authorization: "Bearer vibe_session_0123456789abcdef" } };
        fails(await h.call("GET", "/v1/me", session), 401, "INVALID_SESSION");
        fails(await h.call("POST", "/v1/infra/servers", { ...session, body: {} }), 401, "INVALID_SESSION");
        fails(await h.call("GET", "/v1/deals", session), 401, "INVALID_SESSION");
      });

      it("issue: two different keys in X-Api-Key and Authorization: Bearer → 400 AMBIGUOUS_CREDENTIALS", async () => {
        const a = await makeKey(h, portalId);
        const b = await makeKey(h, portalId);
        const app = await appKey();
        fails(await h.call("GET", "/v1/me", { key: a.raw, bearer: b.raw }), 400, "AMBIGUOUS_CREDENTIALS");
        fails(await h.call("GET", "/v1/me", { key: h.owner.key, bearer: a.raw }), 400, "AMBIGUOUS_CREDENTIALS");
        fails(await h.call("GET", "/v1/me", { key: app.raw, bearer: a.raw }), 400, "AMBIGUOUS_CREDENTIALS");
        // A well-formed key is a key even when no store holds it.
        fails(await h.call("GET", "/v1/me", { key: a.raw, bearer: unknownKey() }), 400, "AMBIGUOUS_CREDENTIALS");
        // The same key in both headers is one credential.
        assert.equal(ok(await h.call("GET", "/v1/me", { key: a.raw, bearer: a.raw })).keyId, a.id);
      });
    });

    describe("one code per fault", () => {
      it('verification step 1: no credential → 401 MISSING_API_KEY (seed 003: "X-Api-Key header")', async () => {
        const e = fails(await h.call("GET", "/v1/me"), 401, "MISSING_API_KEY");
        assert.equal(typeof e.hint, "string");
        fails(await h.call("GET", "/v1/me", { headers: { "x-api-key": "   " } }), 401, "MISSING_API_KEY");
        fails(await h.call("GET", "/v1/me", { headers: { authorization: "Basic dXNlcjpwYXNz" } }), 401, "MISSING_API_KEY");
        fails(await h.call("GET", "/v1/deals"), 401, "MISSING_API_KEY");
      });

      it("verification step 2: a malformed or mistyped key → 401 INVALID_API_KEY (bad checksum, one character changed, random string)", async () => {
        const k = await makeKey(h, portalId);
        // Cached before the 20 failures spend the address's budget: an uncached key would then be throttled (docs/limits.md).
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        const bad = [
          badChecksum(k.raw),
          changeOneChar(k.raw),
          changeOneChar(k.raw, 12),
          "hello-world",
          "vibe_api_",
          `vibe_api_${"A".repeat(38)}`,
          k.raw.slice(0, -1),
          `${k.raw}x`,
          k.raw.replace("vibe_api_", "vibe_apx_"),
          k.raw.replace("vibe_api_", "VIBE_API_"),
        ];
        for (const raw of bad) {
          fails(await h.call("GET", "/v1/me", { key: raw }), 401, "INVALID_API_KEY");
          fails(await h.call("GET", "/v1/me", { bearer: raw }), 401, "INVALID_API_KEY");
        }
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
      });

      it('seed 003: "INVALID_API_KEY — Key not found" (well-formed, valid checksum, never issued)', async () => {
        for (const prefix of ["vibe_api_", "vibe_app_", "vibe_live_"]) {
          fails(await h.call("GET", "/v1/me", { key: unknownKey(prefix) }), 401, "INVALID_API_KEY");
        }
      });

      it("verification step 3: a deleted key → 401 INVALID_API_KEY", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }));
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "INVALID_API_KEY");
      });

      it('seed 003: "Revoke moves the key to the REVOKED state: subsequent requests are rejected with 401 KEY_INACTIVE"', async () => {
        const k = await makeKey(h, portalId);
        await patchKey(h, k.id, { status: "REVOKED" });
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "KEY_INACTIVE");
        fails(await h.call("GET", "/v1/deals", { key: k.raw }), 401, "KEY_INACTIVE");
        fails(await h.call("GET", "/v1/me", { bearer: k.raw }), 401, "KEY_INACTIVE");
      });

      it('seed 003: "After expiration, requests with the key are rejected with code KEY_EXPIRED"', async () => {
        const expiresAt = h.clock.now + HOUR;
        const k = await makeKey(h, portalId, { expiresAt: isoAt(expiresAt) });
        h.clock.advance(HOUR - 1);
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        h.clock.advance(1);
        const e = fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "KEY_EXPIRED");
        assert.deepEqual(e.details, { expiresAt: isoAt(expiresAt) });
      });

      it('seed 003: "A request from an address outside the list is rejected with code 403 IP_NOT_ALLOWED"', async () => {
        const k = await makeKey(h, portalId, { ipWhitelist: [ALLOWED] });
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: ALLOWED }));
        const e = fails(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE }), 403, "IP_NOT_ALLOWED");
        assert.deepEqual(e.details, { ip: OUTSIDE });
        fails(await h.call("GET", "/v1/deals", { key: k.raw, ip: "203.0.113.43" }), 403, "IP_NOT_ALLOWED");
      });

      it('seed 003: "If the list is empty, there is no IP restriction"', async () => {
        const k = await makeKey(h, portalId, { ipWhitelist: [] });
        for (const ip of [OUTSIDE, ALLOWED, "2001:db8::99", "127.0.0.1"]) ok(await h.call("GET", "/v1/me", { key: k.raw, ip }));
      });

      it('seed 003: "Exact IPv4 and IPv6 addresses are supported" — compared after normalisation (2001:0db8:0:0:0:0:0:1 = 2001:db8::1, ::ffff:203.0.113.42 = 203.0.113.42)', async () => {
        const k = await makeKey(h, portalId, { ipWhitelist: ["192.168.1.100", "203.0.113.42", "2001:db8::1"] });
        for (const ip of ["192.168.1.100", "203.0.113.42", "2001:db8::1", "2001:0db8:0:0:0:0:0:1", "2001:DB8:0::1", "::ffff:203.0.113.42", "::ffff:192.168.1.100"]) {
          ok(await h.call("GET", "/v1/me", { key: k.raw, ip }));
        }
        for (const ip of ["2001:db8::2", "203.0.113.43", "::ffff:203.0.113.43", "192.168.1.1", "::1"]) {
          fails(await h.call("GET", "/v1/me", { key: k.raw, ip }), 403, "IP_NOT_ALLOWED");
        }
      });

      it("docs/verification.md: allow-list entries are normalised when stored (other spellings of the same address match)", async () => {
        const k = await makeKey(h, portalId, { ipWhitelist: ["2001:0DB8:0:0:0:0:0:1", "::ffff:198.51.100.9", " 192.0.2.5 "] });
        assert.equal(k.data.ipWhitelist.length, 3);
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "2001:db8::1" }));
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "198.51.100.9" }));
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "192.0.2.5" }));
        // The same address twice in two spellings is one entry.
        const dup = await makeKey(h, portalId, { ipWhitelist: ["2001:db8::1", "2001:0db8:0:0:0:0:0:1"] });
        assert.equal(dup.data.ipWhitelist.length, 1);
      });

      it('seed 003: "CIDR subnets are not supported" — refused at creation and on PATCH with 400 VALIDATION_ERROR and param, nothing stored', async () => {
        const before = ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).length;
        const e = fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "cidr", scopes: ["crm"], ipWhitelist: ["203.0.113.0/24"] } }), 400, "VALIDATION_ERROR");
        assert.equal(e.param, "ipWhitelist[0]");
        assert.match(e.message, /CIDR/);
        const second = fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "cidr", scopes: ["crm"], ipWhitelist: ["192.0.2.1", "2001:db8::/32"] } }), 400, "VALIDATION_ERROR");
        assert.equal(second.param, "ipWhitelist[1]");
        const notAnAddress = fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "bad ip", scopes: ["crm"], ipWhitelist: ["1.2.3"] } }), 400, "VALIDATION_ERROR");
        assert.equal(notAnAddress.param, "ipWhitelist[0]");
        assert.equal(ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).length, before);

        const k = await makeKey(h, portalId, { ipWhitelist: [ALLOWED] });
        const patch = fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body: { ipWhitelist: ["10.0.0.0/8"] } }), 400, "VALIDATION_ERROR");
        assert.equal(patch.param, "ipWhitelist[0]");
        assert.deepEqual(ok(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key })).ipWhitelist, k.data.ipWhitelist);
      });

      it('seed 001: "When calling Bitrix24 entity endpoints, 403 MANAGEMENT_KEY_NO_ENTITY_ACCESS is returned"', async () => {
        fails(await h.call("GET", "/v1/deals", { key: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        fails(await h.call("POST", "/v1/tasks", { key: h.owner.key, body: {} }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        fails(await h.call("GET", "/v1/deals", { bearer: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        fails(await h.call("GET", "/v1/bots", { key: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      });

      it('seed 001: "Without the required scope, a specific endpoint returns 403 MANAGEMENT_SCOPE_REQUIRED" (only vibe:mgmt:keys on GET /v1/portals)', async () => {
        const u = await makeUser(h, "vibe:mgmt:keys");
        await addMember(h, portalId, u.user.email);
        const e = fails(await h.call("GET", "/v1/portals", { key: u.key }), 403, "MANAGEMENT_SCOPE_REQUIRED");
        assert.equal(e.details.requiredScope, "vibe:mgmt:portals");
        fails(await h.call("POST", "/v1/portals", { key: u.key, body: { domain: "never.bitrix24.ru" } }), 403, "MANAGEMENT_SCOPE_REQUIRED");
        fails(await h.call("GET", "/v1/feedback", { key: u.key }), 403, "MANAGEMENT_SCOPE_REQUIRED");
        ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: u.key }));
      });

      it('seed 001: "The endpoints /v1/me, /v1/guide, and /v1/openapi.json are available to any management key without a separate scope"', async () => {
        const u = await makeUser(h, "vibe:mgmt:feedback");
        assert.equal(ok(await h.call("GET", "/v1/me", { key: u.key })).type, "management");
        ok(await h.call("GET", "/v1/guide", { key: u.key }));
        const spec = await h.call("GET", "/v1/openapi.json", { key: u.key });
        assert.equal(spec.status, 200);
        assert.equal(spec.body.openapi, "3.1.0");
      });

      it('seed 003: "Management keys (vibe_live_) — blocking is by HTTP method: POST, PATCH, PUT, DELETE are rejected, GET and HEAD pass" — details {keyName, currentMode, switchUrl}, no details.method', async () => {
        const u = await readOnlyManagementKey("vibe:mgmt:keys,vibe:mgmt:portals");
        const target = await makeKey(h, portalId, {}, { by: u.key });
        const blocked = { keyName: "Management key", currentMode: "READONLY", switchUrl: "/keys" };
        const writes: [string, string, unknown][] = [
          ["POST", "/v1/keys", { portalId, name: "x", scopes: ["crm"] }],
          ["PATCH", `/v1/keys/${target.id}`, { name: "renamed" }],
          ["DELETE", `/v1/keys/${target.id}`, undefined],
          ["POST", `/v1/keys/${target.id}/rotate`, undefined],
          ["POST", "/v1/portals", { domain: "readonly.bitrix24.ru" }],
          ["PATCH", `/v1/portals/${portalId}`, { name: "renamed" }],
        ];
        for (const [method, path, body] of writes) {
          const e = fails(await h.call(method, path, { key: u.readOnly, body }), 403, "WRITE_BLOCKED_READONLY_KEY");
          assert.deepEqual(e.details, blocked, `${method} ${path}`);
          assert.equal(e.message, "Key is in read-only mode. Switch to read+write in /keys to enable writes.");
        }
        ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: u.readOnly }));
        ok(await h.call("GET", `/v1/keys/${target.id}`, { key: u.readOnly }));
        ok(await h.call("GET", "/v1/portals", { key: u.readOnly }));
        ok(await h.call("GET", `/v1/portals/${portalId}/audit`, { key: u.readOnly }));
        const head = await h.call("HEAD", "/v1/portals", { key: u.readOnly });
        assert.equal(head.status, 200);
        assert.equal(ok(await h.call("GET", "/v1/me", { key: u.readOnly })).accessMode, "READONLY");
        // Nothing was written.
        assert.equal(ok(await h.call("GET", `/v1/keys/${target.id}`, { key: u.key })).name, "Test key");
      });

      it("docs/verification.md step 11: a portal key missing a scope → 403 SCOPE_DENIED with details.requiredScope", async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm"] });
        const tasks = fails(await h.call("GET", "/v1/tasks", { key: k.raw }), 403, "SCOPE_DENIED");
        assert.equal(tasks.details.requiredScope, "task,tasks");
        assert.deepEqual(tasks.details.missing, ["task", "tasks"]);
        const bots = fails(await h.call("GET", "/v1/bots", { key: k.raw }), 403, "SCOPE_DENIED");
        assert.equal(bots.details.requiredScope, "imbot");
        assert.ok(bots.details.coveredBy.includes("imbot"));
        const users = fails(await h.call("GET", "/v1/users", { key: k.raw }), 403, "SCOPE_DENIED");
        assert.equal(users.details.requiredScope, "user|user_basic|user_brief");
        fails(await h.call("GET", "/v1/feedback", { key: k.raw }), 403, "SCOPE_DENIED");
      });

      it('docs/verification.md step 10: "portal key on a management endpoint 403 MANAGEMENT_KEY_REQUIRED; API key on placements 403 OAUTH_REQUIRED"', async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm", "placement"] });
        fails(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: k.raw }), 403, "MANAGEMENT_KEY_REQUIRED");
        fails(await h.call("GET", "/v1/portals", { key: k.raw }), 403, "MANAGEMENT_KEY_REQUIRED");
        fails(await h.call("POST", "/v1/keys", { key: k.raw, body: { portalId, name: "x", scopes: ["crm"] } }), 403, "MANAGEMENT_KEY_REQUIRED");
        fails(await h.call("GET", "/v1/placements/available", { key: k.raw }), 403, "OAUTH_REQUIRED");
      });
    });

    describe("order of the checks (docs/verification.md)", () => {
      it("step 1 before the route: no credential on an unknown path → 401 MISSING_API_KEY", async () => {
        fails(await h.call("GET", "/v1/no-such-thing"), 401, "MISSING_API_KEY");
      });

      it("steps 2–3 before the route: a malformed, unknown or deleted key on an unknown path → 401 INVALID_API_KEY", async () => {
        const k = await makeKey(h, portalId);
        fails(await h.call("GET", "/v1/no-such-thing", { key: "garbage" }), 401, "INVALID_API_KEY");
        fails(await h.call("GET", "/v1/no-such-thing", { key: unknownKey() }), 401, "INVALID_API_KEY");
        ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }));
        fails(await h.call("GET", "/v1/no-such-thing", { key: k.raw }), 401, "INVALID_API_KEY");
      });

      it("step 2 before step 8: an app key sent as Bearer on a user-context route → INVALID_API_KEY, not TOKEN_MISSING", async () => {
        const k = await appKey();
        fails(await h.call("POST", "/v1/infra/servers", { bearer: k.raw, body: {} }), 401, "INVALID_API_KEY");
      });

      it("step 4 before status: a revoked key on an unknown path → 404 ROUTE_NOT_FOUND", async () => {
        const k = await makeKey(h, portalId);
        await patchKey(h, k.id, { status: "REVOKED" });
        fails(await h.call("GET", "/v1/no-such-thing", { key: k.raw }), 404, "ROUTE_NOT_FOUND");
      });

      it("step 5 before status: a revoked app key with a session token → 401 INVALID_SESSION", async () => {
        const k = await appKey();
        await patchKey(h, k.id, { status: "REVOKED" });
        fails(await h.call("GET", "/v1/me", { key: k.raw, headers: { authorization: "Bearer vibe_session_x" } }), 401, "INVALID_SESSION");
      });

      it("issue: revoked AND expired AND wrong IP → 401 KEY_INACTIVE", async () => {
        const k = await makeKey(h, portalId, { expiresAt: isoAt(h.clock.now + HOUR), ipWhitelist: [ALLOWED] });
        await patchKey(h, k.id, { status: "REVOKED" });
        h.clock.advance(2 * HOUR);
        fails(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE }), 401, "KEY_INACTIVE");
        fails(await h.call("GET", "/v1/deals", { key: k.raw, ip: OUTSIDE }), 401, "KEY_INACTIVE");
      });

      it("issue: expired + wrong IP → 401 KEY_EXPIRED", async () => {
        const k = await makeKey(h, portalId, { expiresAt: isoAt(h.clock.now + HOUR), ipWhitelist: [ALLOWED] });
        h.clock.advance(HOUR);
        fails(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE }), 401, "KEY_EXPIRED");
      });

      it("step 7 before 8: an expired app key without a session on a user-context route → 401 KEY_EXPIRED", async () => {
        const k = await appKey({ expiresAt: isoAt(h.clock.now + HOUR) });
        h.clock.advance(HOUR);
        fails(await h.call("POST", "/v1/infra/servers", { key: k.raw, body: {} }), 401, "KEY_EXPIRED");
      });

      it("step 8 before 9: an app key without a session from a wrong IP on a user-context route → 401 TOKEN_MISSING (UNAUTHENTICATED when creating a server, seed 003)", async () => {
        const k = await appKey({ ipWhitelist: [ALLOWED] });
        fails(await h.call("POST", "/v1/notifications", { key: k.raw, ip: OUTSIDE, body: {} }), 401, "TOKEN_MISSING");
        fails(await h.call("POST", "/v1/infra/servers", { key: k.raw, ip: OUTSIDE, body: {} }), 401, "UNAUTHENTICATED");
        fails(await h.call("GET", "/v1/infra/servers", { key: k.raw, ip: OUTSIDE }), 403, "IP_NOT_ALLOWED");
      });

      it("issue: wrong IP + management key on an entity route → 403 IP_NOT_ALLOWED", async () => {
        const u = await makeUser(h);
        await patchKey(h, u.id, { ipWhitelist: [ALLOWED] }, u.key);
        fails(await h.call("GET", "/v1/deals", { key: u.key, ip: OUTSIDE }), 403, "IP_NOT_ALLOWED");
        fails(await h.call("GET", "/v1/deals", { key: u.key, ip: ALLOWED }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        // And a portal key from a wrong IP on a management endpoint.
        const k = await makeKey(h, portalId, { ipWhitelist: [ALLOWED] });
        fails(await h.call("GET", "/v1/portals", { key: k.raw, ip: OUTSIDE }), 403, "IP_NOT_ALLOWED");
      });

      it("step 10 before 11: a management key without the scope on an entity route → MANAGEMENT_KEY_NO_ENTITY_ACCESS; a read-only one writing an entity → the same", async () => {
        const u = await makeUser(h, "vibe:mgmt:feedback");
        fails(await h.call("GET", "/v1/deals", { key: u.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        const ro = await readOnlyManagementKey("vibe:mgmt:portals");
        fails(await h.call("POST", "/v1/deals", { key: ro.readOnly, body: {} }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      });

      it("issue: read-only management key without the scope doing POST /v1/keys → 403 MANAGEMENT_SCOPE_REQUIRED (scope before mode)", async () => {
        const u = await readOnlyManagementKey("vibe:mgmt:portals");
        const e = fails(await h.call("POST", "/v1/keys", { key: u.readOnly, body: { portalId, name: "x", scopes: ["crm"] } }), 403, "MANAGEMENT_SCOPE_REQUIRED");
        assert.equal(e.details.requiredScope, "vibe:mgmt:keys");
        // With the scope, the mode is what refuses it.
        fails(await h.call("POST", "/v1/portals", { key: u.readOnly, body: { domain: "ro-scope.bitrix24.ru" } }), 403, "WRITE_BLOCKED_READONLY_KEY");
      });

      it("step 11, portal keys: access mode before scopes — a read-only key without crm writing a lead → WRITE_BLOCKED_READONLY_KEY, reading leads → SCOPE_DENIED", async () => {
        const k = await makeKey(h, portalId, { scopes: ["im"], accessMode: "READONLY" });
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 403, "WRITE_BLOCKED_READONLY_KEY");
        fails(await h.call("GET", "/v1/leads", { key: k.raw }), 403, "SCOPE_DENIED");
      });

      it("step 10 before 11, portal keys: a read-only API key without placement on POST /v1/placements/bind → OAUTH_REQUIRED", async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm"], accessMode: "READONLY" });
        fails(await h.call("POST", "/v1/placements/bind", { key: k.raw, body: {} }), 403, "OAUTH_REQUIRED");
      });
    });

    describe("after verification, and the envelope", () => {
      it("issue: an allowed request reaches its handler only after verification passes (GET /v1/deals for an allowed API key: the sandbox portal, not listening in this harness, answers 503 SANDBOX_UNREACHABLE)", async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm", "task", "tasks"] });
        for (const [method, path] of [
          ["GET", "/v1/deals"],
          ["GET", "/v1/deals/42"],
          ["GET", "/v1/tasks"],
          ["POST", "/v1/leads"],
        ] as const) {
          fails(await h.call(method, path, { key: k.raw, body: method === "POST" ? {} : undefined }), 503, "SANDBOX_UNREACHABLE");
        }
        // Verification comes first: the same endpoint without a key is a 401, with a missing scope a 403.
        fails(await h.call("GET", "/v1/deals"), 401, "MISSING_API_KEY");
        fails(await h.call("GET", "/v1/bots", { key: k.raw }), 403, "SCOPE_DENIED");
      });

      it("issue: unknown paths under /v1 → 404 ROUTE_NOT_FOUND after the key is verified", async () => {
        const k = await makeKey(h, portalId);
        const e = fails(await h.call("GET", "/v1/no-such-thing", { key: k.raw }), 404, "ROUTE_NOT_FOUND");
        assert.equal(typeof e.hint, "string");
        fails(await h.call("GET", "/v1/deals/1/2/3", { key: k.raw }), 404, "ROUTE_NOT_FOUND");
        // A path the route table has under other methods is 405 with Allow (issue 11.2).
        fails(await h.call("PUT", "/v1/deals/1", { key: k.raw, body: {} }), 405, "METHOD_NOT_ALLOWED");
        fails(await h.call("DELETE", "/v1/me", { key: h.owner.key }), 405, "METHOD_NOT_ALLOWED");
        fails(await h.call("GET", "/v1/no-such-thing", { key: h.owner.key }), 404, "ROUTE_NOT_FOUND");
        fails(await h.call("GET", "/v1/no-such-thing"), 401, "MISSING_API_KEY");
      });

      // The router decodes the path, the verification matches it as sent: an encoded spelling of
      // /v1 must neither skip verification nor reach a handler.
      it('docs/verification.md: "Every request under /v1/ is verified before any handler runs" — also an encoded spelling of /v1', async () => {
        for (const path of ["/%761/openapi.json", "/%761/me", "/%761/portals", "/%76%31/keys?portalId=x"]) {
          const r = await h.call("GET", path);
          assert.ok(r.status === 401 || r.status === 404, `GET ${path} without a key reached a handler: ${r.status} ${JSON.stringify(r.body).slice(0, 120)}`);
        }
      });

      it("issue: every response (success and error) carries X-Request-Id, a different one per request", async () => {
        const k = await makeKey(h, portalId);
        const replies = [
          await h.call("GET", "/v1/me", { key: k.raw }),
          await h.call("GET", "/v1/me"),
          await h.call("GET", "/v1/me", { key: "nope" }),
          await h.call("GET", "/v1/deals", { key: k.raw }),
          await h.call("GET", "/v1/no-such-thing", { key: k.raw }),
          await h.call("POST", "/v1/keys", { key: h.owner.key, body: "{not json" }),
          await h.call("GET", "/healthz"),
          await h.call("GET", "/elsewhere"),
        ];
        const ids = replies.map((r) => String(r.headers["x-request-id"] ?? ""));
        for (const id of ids) assert.match(id, /^req_/);
        assert.equal(new Set(ids).size, ids.length);
      });

      it('issue: the VibeCode envelope {"success":true,"data":…} / {"success":false,"error":{"code","message","hint"?,"details"?}}', async () => {
        const k = await makeKey(h, portalId, { accessMode: "READONLY", name: "Envelope" });
        const success = await h.call("GET", "/v1/me", { key: k.raw });
        assert.deepEqual(Object.keys(success.body).sort(), ["data", "success"]);
        assert.equal(success.body.success, true);
        const missing = await h.call("GET", "/v1/me");
        assert.deepEqual(missing.body, { success: false, error: { code: "MISSING_API_KEY", message: missing.body.error.message, hint: missing.body.error.hint } });
        const blocked = await h.call("POST", "/v1/deals", { key: k.raw, body: {} });
        assert.deepEqual(Object.keys(blocked.body.error).sort(), ["code", "details", "message"]);
        const list = await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key });
        assert.deepEqual(Object.keys(list.body).sort(), ["data", "meta", "success"]);
      });
    });

    describe("key cache: a change is visible to the very next request", () => {
      it("issue: revoke via PATCH {status:REVOKED}, then re-activate via PATCH {status:ACTIVE}", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        fails(await h.call("GET", "/v1/deals", { key: k.raw }), 503, "SANDBOX_UNREACHABLE");
        await patchKey(h, k.id, { status: "REVOKED" });
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "KEY_INACTIVE");
        await patchKey(h, k.id, { status: "ACTIVE" });
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
      });

      it("issue: delete → the next request gets INVALID_API_KEY", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }));
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "INVALID_API_KEY");
        fails(await h.call("GET", "/v1/me", { bearer: k.raw }), 401, "INVALID_API_KEY");
      });

      it("issue: scopes — removing one takes effect at once; a platform scope added takes effect at once; a Bitrix24 scope added is shown but refused with BITRIX_ACCESS_DENIED", async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm", "im"] });
        fails(await h.call("GET", "/v1/deals", { key: k.raw }), 503, "SANDBOX_UNREACHABLE");
        fails(await h.call("GET", "/v1/feedback", { key: k.raw }), 403, "SCOPE_DENIED");
        await patchKey(h, k.id, { scopes: ["im"] });
        fails(await h.call("GET", "/v1/deals", { key: k.raw }), 403, "SCOPE_DENIED");
        await patchKey(h, k.id, { scopes: ["im", "vibe:feedback"] });
        // Issue 17: the feedback endpoints answer (the key's own tickets: none yet).
        assert.deepEqual(ok(await h.call("GET", "/v1/feedback", { key: k.raw })), []);
        const view = await patchKey(h, k.id, { scopes: ["im", "crm", "vibe:feedback"] });
        assert.ok(view.scopes.includes("crm"));
        assert.deepEqual(view.scopesPendingReissue, ["crm"]);
        assert.ok(ok(await h.call("GET", "/v1/me", { key: k.raw })).scopes.includes("crm"));
        fails(await h.call("GET", "/v1/deals", { key: k.raw }), 403, "BITRIX_ACCESS_DENIED");
      });

      it("issue: accessMode — READONLY blocks the next write, READWRITE lets the next one through", async () => {
        const k = await makeKey(h, portalId);
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 503, "SANDBOX_UNREACHABLE");
        await patchKey(h, k.id, { accessMode: "READONLY" });
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 403, "WRITE_BLOCKED_READONLY_KEY");
        assert.equal(ok(await h.call("GET", "/v1/me", { key: k.raw })).accessMode, "READONLY");
        await patchKey(h, k.id, { accessMode: "READWRITE" });
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 503, "SANDBOX_UNREACHABLE");
      });

      it("issue: name — the next refusal names the key by its new name", async () => {
        const k = await makeKey(h, portalId, { name: "Before", accessMode: "READONLY" });
        assert.equal(fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 403, "WRITE_BLOCKED_READONLY_KEY").details.keyName, "Before");
        await patchKey(h, k.id, { name: "After" });
        assert.equal(fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 403, "WRITE_BLOCKED_READONLY_KEY").details.keyName, "After");
      });

      it("issue: ipWhitelist — set, then cleared", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE }));
        await patchKey(h, k.id, { ipWhitelist: [ALLOWED] });
        fails(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE }), 403, "IP_NOT_ALLOWED");
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: ALLOWED }));
        await patchKey(h, k.id, { ipWhitelist: [] });
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE }));
      });

      it("issue: expiresAt — set, passed, cleared", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        await patchKey(h, k.id, { expiresAt: isoAt(h.clock.now + MINUTE) });
        assert.equal(ok(await h.call("GET", "/v1/me", { key: k.raw })).expiresAt, isoAt(h.clock.now + MINUTE));
        h.clock.advance(MINUTE);
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "KEY_EXPIRED");
        await patchKey(h, k.id, { expiresAt: null });
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        await patchKey(h, k.id, { expiresAt: isoAt(h.clock.now + HOUR) });
        h.clock.advance(HOUR);
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "KEY_EXPIRED");
      });

      it("issue: a management key's own changes (scopes, mode, revoke) reach its next request", async () => {
        const u = await makeUser(h);
        ok(await h.call("GET", "/v1/portals", { key: u.key }));
        await patchKey(h, u.id, { scopes: ["vibe:mgmt:keys"] }, u.key);
        fails(await h.call("GET", "/v1/portals", { key: u.key }), 403, "MANAGEMENT_SCOPE_REQUIRED");
        await patchKey(h, u.id, { accessMode: "READONLY" }, u.key);
        fails(await h.call("PATCH", `/v1/keys/${u.id}`, { key: u.key, body: { accessMode: "READWRITE" } }), 403, "WRITE_BLOCKED_READONLY_KEY");
        const other = await u.another("vibe:mgmt:keys");
        await patchKey(h, u.id, { status: "REVOKED" }, other);
        fails(await h.call("GET", "/v1/me", { key: u.key }), 401, "KEY_INACTIVE");
      });
    });
  });

  describe(`client address behind a trusted proxy [${kind}]`, () => {
    let h: Harness;
    let portalId: string;
    before(async () => {
      h = await startHarness(kind, { trustProxy: ["127.0.0.1"] });
      portalId = await makePortal(h);
    });
    after(() => h.close());

    it('docs/verification.md: "the first untrusted address of X-Forwarded-For" is the client address, only from a proxy listed in --trust-proxy', async () => {
      const k = await makeKey(h, portalId, { ipWhitelist: [ALLOWED] });
      ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "127.0.0.1", headers: { "x-forwarded-for": ALLOWED } }));
      ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "127.0.0.1", headers: { "x-forwarded-for": `::ffff:${ALLOWED}` } }));
      const e = fails(await h.call("GET", "/v1/me", { key: k.raw, ip: "127.0.0.1" }), 403, "IP_NOT_ALLOWED");
      assert.equal(e.details.ip, "127.0.0.1");
      // From a socket that is not a trusted proxy, X-Forwarded-For is not believed.
      fails(await h.call("GET", "/v1/me", { key: k.raw, ip: OUTSIDE, headers: { "x-forwarded-for": ALLOWED } }), 403, "IP_NOT_ALLOWED");
      passesVerification(await h.call("GET", "/v1/me", { key: k.raw, ip: ALLOWED }));
    });
  });
}
