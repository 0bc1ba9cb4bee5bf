/**
 * Key management under every profile (issue 12, sections 4 and 5): the management API and its
 * management key under Atender and RogerIQ, management keys a user creates for themselves (seed
 * 001 quickstart, step 1), RogerIQ scopes updated in place (seed 004), the READONLY portal policy
 * on update, and scope lists that are no list or name only auto-granted scopes.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";

/** The answer's data, in either envelope (VibeCode's {success, data}, the flat {data}). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function data(r: Reply, status = 200): any {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.ok(r.body?.success !== false && "data" in r.body, JSON.stringify(r.body));
  return r.body.data;
}

/** The refusal's code and param, in either envelope. */
function refused(r: Reply, status: number, code: string): { code: string; param?: string; details?: Record<string, unknown> } {
  const error = r.body?.success === false ? r.body.error : r.body;
  assert.equal(error?.code, code, JSON.stringify(r.body));
  assert.equal(r.status, status, JSON.stringify(r.body));
  return error;
}

const PROFILES = [
  { profile: "vibecode", prefix: "vibe_live_", scopes: ["vibe:mgmt:keys", "vibe:mgmt:portals", "vibe:mgmt:feedback"], apiScopes: ["crm"], apiPrefix: "vibe_api_", upstream: { kind: "sandbox" } },
  { profile: "atender", prefix: "kg_mgmt_", scopes: ["keygate:keys", "keygate:portals"], apiScopes: ["knowledge:write"], apiPrefix: "sa_live_", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } },
  { profile: "rogeriq", prefix: "kg_mgmt_", scopes: ["keygate:keys", "keygate:portals"], apiScopes: ["kb:write", "conversations:read"], apiPrefix: "riq_", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } },
] as const;

for (const kind of await storeKinds("http: management")) {
  for (const p of PROFILES) {
    describe(`key management under ${p.profile} [${kind}]`, () => {
      let h: Harness;
      let portalId: string;
      before(async () => {
        h = await startHarness(kind, { profile: p.profile, allowUpstream: ["127.0.0.1"] });
        portalId = data(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: `${p.profile}.example.com`, upstream: p.upstream } }), 201).id;
      });
      after(() => h.close());

      it("issue 12: the owner's management key describes itself and holds every management scope of the profile", async () => {
        assert.ok(h.owner.key.startsWith(p.prefix), h.owner.key);
        const me = data(await h.call("GET", "/v1/me", { key: h.owner.key }));
        assert.equal(me.type, "management");
        assert.deepEqual(me.scopes, p.scopes);
        assert.deepEqual(me.portals.map((x: { id: string; role: string }) => [x.id, x.role]), [[portalId, "ADMIN"]]);
      });

      it("issue 12: /v1/keys answers under every profile: create an API key on a portal, list, get, revoke and delete it", async () => {
        const key = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "kb-bot", scopes: p.apiScopes } }), 201);
        assert.ok(key.rawKey.startsWith(p.apiPrefix), key.rawKey);
        assert.equal(data(await h.call("GET", "/v1/me", { key: key.rawKey })).keyId, key.id);
        assert.deepEqual(data(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).map((k: { id: string }) => k.id), [key.id]);
        assert.equal(data(await h.call("GET", `/v1/keys/${key.id}`, { key: h.owner.key })).name, "kb-bot");
        assert.equal(data(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { status: "REVOKED" } })).status, "REVOKED");
        refused(await h.call("GET", "/v1/me", { key: key.rawKey }), 401, "KEY_INACTIVE");
        data(await h.call("DELETE", `/v1/keys/${key.id}`, { key: h.owner.key }));
        refused(await h.call("GET", `/v1/keys/${key.id}`, { key: h.owner.key }), 404, "KEY_NOT_FOUND");
      });

      it("issue 12: an API key cannot manage keys, and a management key holds no API scope and calls no API route", async () => {
        const key = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "api", scopes: p.apiScopes } }), 201);
        refused(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: key.rawKey }), 403, "MANAGEMENT_KEY_REQUIRED");
        const e = refused(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { type: "management", name: "too much", scopes: [p.scopes[0], p.apiScopes[0]] } }), 400, "INVALID_SCOPES");
        assert.equal(e.param, "scopes");
      });

      it('seed 001 quickstart, step 1: a user creates, lists and revokes their own management keys with the profile\'s management scopes', async () => {
        const user = await h.user(`mgmt-${p.profile}@example.com`);
        const created = data(await h.call("POST", "/v1/keys", { key: user.key, body: { type: "management", name: "CI", scopes: [p.scopes[0]] } }), 201);
        assert.ok(created.rawKey.startsWith(p.prefix));
        assert.equal(created.portalId, null);
        assert.equal(created.ownerId, user.user.id);
        assert.deepEqual(created.scopes, [p.scopes[0]]);
        // It works as a management key with its one scope.
        data(await h.call("GET", `/v1/keys?type=management`, { key: created.rawKey }));
        refused(await h.call("GET", "/v1/portals", { key: created.rawKey }), 403, "MANAGEMENT_SCOPE_REQUIRED");

        const mine = data(await h.call("GET", "/v1/keys?type=management", { key: user.key }));
        assert.deepEqual(mine.map((k: { name: string }) => k.name).sort(), ["CI", "Management key"]);
        // Only their own: the owner's list does not show them.
        assert.ok(!data(await h.call("GET", "/v1/keys?type=management", { key: h.owner.key })).some((k: { id: string }) => k.id === created.id));
        refused(await h.call("GET", `/v1/keys/${created.id}`, { key: h.owner.key }), 404, "KEY_NOT_FOUND");

        assert.equal(data(await h.call("PATCH", `/v1/keys/${created.id}`, { key: user.key, body: { status: "REVOKED" } })).status, "REVOKED");
        refused(await h.call("GET", "/v1/me", { key: created.rawKey }), 401, "KEY_INACTIVE");
      });

      it("issue 12: a management key creates no management key stronger than itself, and management keys take no portal", async () => {
        const user = await h.user(`narrow-${p.profile}@example.com`, [p.scopes[0]]);
        const e = refused(await h.call("POST", "/v1/keys", { key: user.key, body: { type: "management", name: "wider", scopes: [...p.scopes] } }), 403, "KEY_SCOPE_EXCEEDS_CALLER");
        assert.equal(e.param, "scopes");
        assert.equal(refused(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { type: "management", portalId, name: "x", scopes: [p.scopes[0]] } }), 400, "VALIDATION_ERROR").param, "portalId");
        assert.equal(refused(await h.call("GET", "/v1/keys?type=bogus", { key: h.owner.key }), 400, "VALIDATION_ERROR").param, "type");
        refused(await h.call("GET", "/v1/keys", { key: h.owner.key }), 400, "MISSING_PORTAL_ID");
      });

      it('issue 12: POST /v1/keys {"scopes": "…"} (a string, not a list) is 400 with the field, on create and update', async () => {
        const e = refused(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "string", scopes: p.apiScopes[0] } }), 400, "VALIDATION_ERROR");
        assert.equal(e.param, "scopes");
        const key = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "list", scopes: p.apiScopes } }), 201);
        assert.equal(refused(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { scopes: p.apiScopes[0] } }), 400, "VALIDATION_ERROR").param, "scopes");
      });

      it("issue 12 (section 5): under a READONLY policy a member cannot make a key read-write, on create or update; an admin can; read-write keys stay so", async () => {
        const pid = data(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: `ro-${p.profile}.example.com`, upstream: p.upstream } }), 201).id;
        const member = await h.user(`member-${p.profile}@example.com`);
        data(await h.call("POST", `/v1/portals/${pid}/members`, { key: h.owner.key, body: { email: member.user.email, role: "MEMBER" } }), 201);
        const before = data(await h.call("POST", "/v1/keys", { key: member.key, body: { portalId: pid, name: "rw before", scopes: p.apiScopes } }), 201);
        assert.equal(before.accessMode, "READWRITE");
        data(await h.call("PATCH", `/v1/portals/${pid}`, { key: h.owner.key, body: { defaultAccessMode: "READONLY" } }));

        const ro = data(await h.call("POST", "/v1/keys", { key: member.key, body: { portalId: pid, name: "ro", scopes: p.apiScopes } }), 201);
        assert.equal(ro.accessMode, "READONLY");
        assert.equal(refused(await h.call("POST", "/v1/keys", { key: member.key, body: { portalId: pid, name: "rw", scopes: p.apiScopes, accessMode: "READWRITE" } }), 403, "KEY_POLICY_READONLY_REQUIRED").param, "accessMode");
        assert.equal(refused(await h.call("PATCH", `/v1/keys/${ro.id}`, { key: member.key, body: { accessMode: "READWRITE" } }), 403, "KEY_POLICY_READONLY_REQUIRED").param, "accessMode");
        assert.equal(data(await h.call("GET", `/v1/keys/${ro.id}`, { key: member.key })).accessMode, "READONLY", "nothing changed");

        // The key that was read-write before the policy stays so, and can still be changed otherwise.
        const kept = data(await h.call("PATCH", `/v1/keys/${before.id}`, { key: member.key, body: { name: "renamed", accessMode: "READWRITE" } }));
        assert.equal(kept.accessMode, "READWRITE");
        // The member may make it read-only, but not back.
        data(await h.call("PATCH", `/v1/keys/${before.id}`, { key: member.key, body: { accessMode: "READONLY" } }));
        refused(await h.call("PATCH", `/v1/keys/${before.id}`, { key: member.key, body: { accessMode: "READWRITE" } }), 403, "KEY_POLICY_READONLY_REQUIRED");

        // An administrator sets READWRITE, on their own keys and on the member's.
        assert.equal(data(await h.call("PATCH", `/v1/keys/${ro.id}`, { key: h.owner.key, body: { accessMode: "READWRITE" } })).accessMode, "READWRITE");
        const own = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId: pid, name: "admin ro", scopes: p.apiScopes, accessMode: "READONLY" } }), 201);
        assert.equal(data(await h.call("PATCH", `/v1/keys/${own.id}`, { key: h.owner.key, body: { accessMode: "READWRITE" } })).accessMode, "READWRITE");
      });
    });
  }
}

describe("issue 12: Atender — the default tier is the plan of portals' keys, not of management keys", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite", { profile: "atender", allowUpstream: ["127.0.0.1"] })));
  after(() => h.close());

  it("docs/limits.md: a management key without a tier has the platform limit; an API key the default tier (starter)", async () => {
    const management = await h.call("GET", "/v1/me", { key: h.owner.key });
    assert.match(String(management.headers["ratelimit-policy"]), /^"platform";q=300;w=60$/);
    const portalId = data(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "tiers.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } } }), 201).id;
    const key = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "api", scopes: ["contacts:read"] } }), 201);
    assert.match(String((await h.call("GET", "/v1/me", { key: key.rawKey })).headers["ratelimit-policy"]), /"tier-starter";q=60;w=60/);
  });
});

describe("issue 12: RogerIQ — a key's scopes are updated in place (seed 004)", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite", { profile: "rogeriq", allowUpstream: ["127.0.0.1"] })));
  after(() => h.close());

  it('seed 004: "lets you update scopes in place" — the new scopes are in effect at once, on the same secret', async () => {
    const portalId = data(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "riq.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } } }), 201).id;
    const key = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "metrics-reader", scopes: ["read"] } }), 201);
    const updated = data(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { scopes: ["kb:write", "conversations:read"] } }));
    assert.deepEqual(updated.scopes, ["conversations:read", "kb:write"]);
    assert.deepEqual(updated.scopesInEffect, updated.scopes);
    assert.deepEqual(updated.scopesPendingReissue, []);
    const me = data(await h.call("GET", "/v1/me", { key: key.rawKey }));
    assert.deepEqual(me.scopesInEffect, ["conversations:read", "kb:write"]);
    const writes = me.api.endpoints.filter((e: { method: string; path: string }) => e.method === "POST" && e.path.endsWith("/kb/articles"));
    assert.equal(writes.length, 1, "kb:write is in effect: the KB article endpoint is open to the key");
  });
});

describe("issue 12: VibeCode — a key whose only scopes are auto-granted ones is refused", () => {
  let h: Harness;
  let portalId: string;
  before(async () => {
    h = await startHarness("sqlite");
    portalId = data(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "auto.example.com", upstream: { kind: "sandbox" } } }), 201).id;
  });
  after(() => h.close());

  it('docs/scopes.md: auto-granted scopes "do not count toward at least one scope" — 400 INVALID_SCOPES (SCOPES_REQUIRED) with the field, on create and update', async () => {
    for (const scopes of [["vibe:ai"], ["vibe:ai", "vibe:search", "vibe:infra", "vibe:storage"]]) {
      const e = refused(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "auto only", scopes } }), 400, "INVALID_SCOPES");
      assert.equal(e.param, "scopes");
      assert.deepEqual((e.details!.errors as { code: string }[]).map((x) => x.code), ["SCOPES_REQUIRED"]);
    }
    const key = data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "crm", scopes: ["crm", "vibe:ai"] } }), 201);
    assert.equal(refused(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { scopes: ["vibe:ai"] } }), 400, "INVALID_SCOPES").param, "scopes");
    // Authorization keys are granted nothing automatically: vibe:ai alone is a scope for them.
    data(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "app", type: "app", scopes: ["vibe:ai"] } }), 201);
  });
});
