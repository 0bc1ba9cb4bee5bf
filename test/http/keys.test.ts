/**
 * The keys API over HTTP (seed 001 "Management keys", seed 003 "Creating and using a key"):
 * creation and its refusals, reading and listing without secrets, change, delete, rotation with
 * its 24-hour grace, read-only portal keys, the portal policy, and the audit trail. Every suite
 * runs against both stores.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { keyDigest } from "../../src/core/keys/format.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { HOUR, MINUTE, type IssuedKey, addMember, fails, isoAt, keyIdOf, makeKey, makePortal, makeUser, ok, passesVerification, patchKey } from "./_fixtures.ts";

const GRACE = 24 * HOUR;

for (const kind of await storeKinds("http: keys")) {
  describe(`keys API [${kind}]`, () => {
    let h: Harness;
    let portalId: string;
    before(async () => {
      h = await startHarness(kind);
      portalId = await makePortal(h);
    });
    after(() => h.close());

    const post = (body: Record<string, unknown>, by = h.owner.key) => h.call("POST", "/v1/keys", { key: by, body });
    const count = async (pid = portalId) => ok(await h.call("GET", `/v1/keys?portalId=${pid}`, { key: h.owner.key })).length as number;
    /** Fails when the text holds a secret: a raw key, or the digest of one. */
    const assertNoSecrets = (what: string, value: unknown, raws: string[]) => {
      const text = JSON.stringify(value);
      assert.ok(!/"(rawKey|digest|keyDigest|hash)"/.test(text), `${what} has a secret field: ${text}`);
      for (const raw of raws) {
        assert.ok(!text.includes(raw), `${what} contains a raw key`);
        assert.ok(!text.includes(keyDigest(h.kg.serverSecret, raw)), `${what} contains a key digest`);
      }
    };

    describe("create (POST /v1/keys)", () => {
      it('seed 001: "Creates a new API key (vibe_api_) for the specified portal … The full key is returned in the rawKey field once"', async () => {
        const data = ok(await post({ portalId, name: "My Key", scopes: ["crm", "task"] }), 201);
        assert.match(data.rawKey, /^vibe_api_[0-9A-Za-z]{38}$/);
        assert.equal(data.keyPrefix, data.rawKey.slice(0, "vibe_api_".length + 6));
        assert.equal(data.keySuffix, data.rawKey.slice(-4));
        assert.equal(data.type, "api");
        assert.equal(data.name, "My Key");
        assert.equal(data.portalId, portalId);
        assert.equal(data.ownerId, h.owner.user.id);
        assert.deepEqual(data.scopes, ["crm", "task", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]);
        assert.equal(data.status, "ACTIVE");
        assert.equal(data.accessMode, "READWRITE", 'seed 003: "READWRITE … The default value for new keys"');
        assert.equal(data.expiresAt, null);
        assert.equal(data.rateLimit, null);
        assert.deepEqual(data.ipWhitelist, []);
        assert.ok(!("digest" in data));
        assert.equal(ok(await h.call("GET", "/v1/me", { key: data.rawKey })).keyId, data.id);
      });

      it("issue: every optional field (type, accessMode, expiresAt, rateLimit, ipWhitelist) is taken", async () => {
        const expiresAt = isoAt(h.clock.now + 30 * 24 * HOUR);
        const data = ok(await post({ portalId, name: "App", scopes: ["crm", "im"], type: "app", accessMode: "READONLY", expiresAt, rateLimit: 5, ipWhitelist: ["203.0.113.42"] }), 201);
        assert.match(data.rawKey, /^vibe_app_[0-9A-Za-z]{38}$/);
        assert.equal(data.keyPrefix, data.rawKey.slice(0, "vibe_app_".length + 6));
        assert.equal(data.type, "app");
        assert.deepEqual(data.scopes, ["crm", "im"]);
        assert.equal(data.accessMode, "READONLY");
        assert.equal(data.expiresAt, expiresAt);
        assert.equal(data.rateLimit, 5);
        assert.deepEqual(data.ipWhitelist, ["203.0.113.42"]);
        const me = ok(await h.call("GET", "/v1/me", { key: data.rawKey, ip: "203.0.113.42" }));
        assert.equal(me.type, "oauth_app");
        assert.deepEqual(me.rateLimit.requestsPerSecond, 5, 'seed 003: "returned by GET /v1/me in the rateLimit.requestsPerSecond field"');
      });

      it('seed 001: "MISSING_PORTAL_ID | 400 | portalId not provided in the request body"', async () => {
        const n = await count();
        for (const body of [{ name: "x", scopes: ["crm"] }, { portalId: null, name: "x", scopes: ["crm"] }, { portalId: "", name: "x", scopes: ["crm"] }]) {
          const e = fails(await post(body), 400, "MISSING_PORTAL_ID");
          assert.equal(e.param, "portalId");
        }
        assert.equal(await count(), n);
      });

      it('seed 001: "NOT_PORTAL_MEMBER | 403 | The key owner is not a member of the specified portal"', async () => {
        const stranger = await makeUser(h);
        const theirs = await makePortal(h, { by: stranger.key });
        fails(await post({ portalId: theirs, name: "x", scopes: ["crm"] }), 403, "NOT_PORTAL_MEMBER");
        fails(await h.call("GET", `/v1/keys?portalId=${theirs}`, { key: h.owner.key }), 403, "NOT_PORTAL_MEMBER");
        fails(await post({ portalId, name: "x", scopes: ["crm"] }, stranger.key), 403, "NOT_PORTAL_MEMBER");
        // A portal that does not exist at all.
        fails(await post({ portalId: "00000000-0000-4000-8000-000000000000", name: "x", scopes: ["crm"] }), 404, "PORTAL_NOT_FOUND");
      });

      it('seed 001: "PORTAL_NOT_LINKED | 400 | The portal is not connected to Bitrix24 Network — the key cannot be created"', async () => {
        const unlinked = await makePortal(h, { linked: false });
        const e = fails(await post({ portalId: unlinked, name: "x", scopes: ["crm"] }), 400, "PORTAL_NOT_LINKED");
        assert.equal(e.param, "portalId");
        assert.equal(await count(unlinked), 0);
        ok(await h.call("PATCH", `/v1/portals/${unlinked}`, { key: h.owner.key, body: { upstream: { kind: "sandbox" } } }));
        ok(await post({ portalId: unlinked, name: "x", scopes: ["crm"] }), 201);
      });

      it("issue: INVALID_SCOPES (400) lists EVERY bad scope in details.errors and stores nothing (create and PATCH)", async () => {
        const n = await count();
        const e = fails(await post({ portalId, name: "bad scopes", scopes: ["crn", "vibe:security", "vibe:mgmt:keys", "crm:read", "kb: write", "crm"] }), 400, "INVALID_SCOPES");
        assert.equal(e.param, "scopes");
        assert.deepEqual(
          e.details.errors.map((x: { scope: string; code: string }) => [x.scope, x.code]),
          [
            ["crn", "UNKNOWN_SCOPE"],
            ["vibe:security", "RESERVED_SCOPE"],
            ["vibe:mgmt:keys", "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"],
            ["crm:read", "SCOPE_TAKES_NO_ACTION"],
            ["kb: write", "BAD_SCOPE_SYNTAX"],
          ],
        );
        assert.equal(fails(await post({ portalId, name: "no scopes", scopes: [] }), 400, "INVALID_SCOPES").details.errors[0].code, "SCOPES_REQUIRED");
        assert.equal(await count(), n);

        const k = await makeKey(h, portalId, { scopes: ["crm"] });
        const patch = fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body: { scopes: ["crm", "crn", "vibe:airouter"], name: "changed" } }), 400, "INVALID_SCOPES");
        assert.equal(patch.details.errors.length, 2);
        const view = ok(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key }));
        assert.deepEqual(view.scopes, k.data.scopes);
        assert.equal(view.name, k.data.name);
      });

      it("issue: VALIDATION_ERROR (400) with `param` for bad name / expiresAt / rateLimit / unknown body fields / wrong types; nothing stored", async () => {
        const n = await count();
        const base = { portalId, name: "valid", scopes: ["crm"] };
        const cases: [Record<string, unknown>, string][] = [
          [{ name: "" }, "name"],
          [{ name: "   " }, "name"],
          [{ name: "x".repeat(201) }, "name"],
          [{ name: 5 }, "name"],
          [{ name: undefined }, "name"],
          [{ expiresAt: isoAt(h.clock.now - MINUTE) }, "expiresAt"],
          [{ expiresAt: isoAt(h.clock.now) }, "expiresAt"],
          [{ expiresAt: "not a date" }, "expiresAt"],
          [{ expiresAt: "2099-13-45T00:00:00Z" }, "expiresAt"],
          [{ expiresAt: "2099-02-30T00:00:00Z" }, "expiresAt"],
          [{ expiresAt: "2099-04-31" }, "expiresAt"],
          [{ expiresAt: "2099-02-29" }, "expiresAt"],
          [{ expiresAt: 4102444800000 }, "expiresAt"],
          [{ rateLimit: 0 }, "rateLimit"],
          [{ rateLimit: -5 }, "rateLimit"],
          [{ rateLimit: 1.5 }, "rateLimit"],
          [{ rateLimit: "10" }, "rateLimit"],
          [{ rateLimit: 100_001 }, "rateLimit"],
          [{ unknownField: 1 }, "unknownField"],
          [{ scopes: 5 }, "scopes"],
          [{ accessMode: "WRITE" }, "accessMode"],
          [{ ipWhitelist: "203.0.113.42" }, "ipWhitelist"],
          [{ type: "bogus" }, "type"],
          // Management keys are created with no portal (issue 12).
          [{ type: "management" }, "portalId"],
          // issue 12: scopes are a JSON list; one string is not taken for a list of one.
          [{ scopes: "crm" }, "scopes"],
          [{ scopes: "crm,im" }, "scopes"],
          [{ ipWhitelist: ["203.0.113.42", 7] }, "ipWhitelist.1"],
        ];
        for (const [change, param] of cases) {
          const e = fails(await post({ ...base, ...change }), 400, "VALIDATION_ERROR");
          assert.equal(e.param, param, `${JSON.stringify(change)}: ${JSON.stringify(e)}`);
        }
        assert.equal(await count(), n);
        // A real leap day is a date.
        assert.equal(ok(await post({ ...base, expiresAt: "2096-02-29T00:00:00Z" }), 201).expiresAt, "2096-02-29T00:00:00.000Z");
      });

      it("issue: invalid JSON → 400 INVALID_JSON", async () => {
        fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: "{not json" }), 400, "INVALID_JSON");
        fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: '{"portalId": "x",}' }), 400, "INVALID_JSON");
        const k = await makeKey(h, portalId);
        fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body: "{" }), 400, "INVALID_JSON");
      });
    });

    describe("read, list, change, delete", () => {
      it('seed 001: "GET /v1/keys/:id … Returns the key data without the secret" — no rawKey and no digest in reads, lists or changes', async () => {
        const k = await makeKey(h, portalId);
        const raws = [k.raw];
        assertNoSecrets("GET /v1/keys/:id", ok(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key })), raws);
        assertNoSecrets("GET /v1/keys", ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })), raws);
        assertNoSecrets("PATCH /v1/keys/:id", await patchKey(h, k.id, { name: "renamed" }), raws);
        assertNoSecrets("GET /v1/me", ok(await h.call("GET", "/v1/me", { key: k.raw })), raws);
        const rotated = ok(await h.call("POST", `/v1/keys/${k.id}/rotate`, { key: h.owner.key }), 201);
        const { rawKey: shownOnce, ...rest } = rotated;
        assertNoSecrets("POST /v1/keys/:id/rotate (besides the new key's rawKey)", rest, raws);
        raws.push(shownOnce);
        assertNoSecrets("GET /v1/keys after rotation", ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })), raws);
        assertNoSecrets("GET /v1/keys/:id of the new key", ok(await h.call("GET", `/v1/keys/${rotated.id}`, { key: h.owner.key })), raws);
        assertNoSecrets("DELETE /v1/keys/:id", ok(await h.call("DELETE", `/v1/keys/${rotated.id}`, { key: h.owner.key })), raws);
      });

      it('seed 001: "GET /v1/keys — The portalId parameter is required" → 400 MISSING_PORTAL_ID', async () => {
        fails(await h.call("GET", "/v1/keys", { key: h.owner.key }), 400, "MISSING_PORTAL_ID");
        fails(await h.call("GET", "/v1/keys?portalId=", { key: h.owner.key }), 400, "MISSING_PORTAL_ID");
      });

      it('seed 003: "A portal administrator sees other users\' keys in the shared list" — members see their own', async () => {
        const pid = await makePortal(h);
        const member = await makeUser(h);
        const admin2 = await makeUser(h);
        await addMember(h, pid, member.user.email, "MEMBER");
        await addMember(h, pid, admin2.user.email, "ADMIN");
        const mine = await makeKey(h, pid, { name: "owner's" });
        const theirs = await makeKey(h, pid, { name: "member's" }, { by: member.key });
        const ids = (list: { id: string }[]) => list.map((k) => k.id).sort();
        const list = ok(await h.call("GET", `/v1/keys?portalId=${pid}`, { key: h.owner.key }));
        assert.deepEqual(ids(list), [mine.id, theirs.id].sort());
        assert.deepEqual(ids(ok(await h.call("GET", `/v1/keys?portalId=${pid}`, { key: admin2.key }))), [mine.id, theirs.id].sort());
        assert.deepEqual(ids(ok(await h.call("GET", `/v1/keys?portalId=${pid}`, { key: member.key }))), [theirs.id]);
        // A portal key of another portal never shows up.
        assert.ok(!list.some((k: { portalId: string }) => k.portalId !== pid));
      });

      it("issue: someone else's key that you may not see → 404 KEY_NOT_FOUND on GET/PATCH/DELETE/rotate; an admin may act on a member's key", async () => {
        const pid = await makePortal(h);
        const member = await makeUser(h);
        const outsider = await makeUser(h);
        await addMember(h, pid, member.user.email, "MEMBER");
        const owners = await makeKey(h, pid);
        const members = await makeKey(h, pid, { name: "member's" }, { by: member.key });
        for (const [who, id] of [
          [member.key, owners.id],
          [outsider.key, owners.id],
          [outsider.key, members.id],
          [h.owner.key, "00000000-0000-4000-8000-000000000000"],
          [h.owner.key, member.id],
        ] as const) {
          fails(await h.call("GET", `/v1/keys/${id}`, { key: who }), 404, "KEY_NOT_FOUND");
          fails(await h.call("PATCH", `/v1/keys/${id}`, { key: who, body: { name: "mine now" } }), 404, "KEY_NOT_FOUND");
          fails(await h.call("POST", `/v1/keys/${id}/rotate`, { key: who }), 404, "KEY_NOT_FOUND");
          fails(await h.call("DELETE", `/v1/keys/${id}`, { key: who }), 404, "KEY_NOT_FOUND");
        }
        ok(await h.call("GET", `/v1/me`, { key: owners.raw }));
        assert.equal(ok(await h.call("GET", `/v1/keys/${owners.id}`, { key: h.owner.key })).name, "Test key");
        assert.equal(ok(await h.call("GET", `/v1/keys/${members.id}`, { key: h.owner.key })).name, "member's");
        assert.equal(ok(await h.call("GET", `/v1/keys/${members.id}`, { key: member.key })).name, "member's");
      });

      it('seed 003: "After saving, the owner receives a message … that the mode of their key was changed by an administrator"', async () => {
        const pid = await makePortal(h);
        const member = await makeUser(h);
        await addMember(h, pid, member.user.email, "MEMBER");
        const k = await makeKey(h, pid, { name: "member's" }, { by: member.key });
        await patchKey(h, k.id, { accessMode: "READONLY" });
        const notes = ok(await h.call("GET", "/v1/me/notifications", { key: member.key }));
        assert.equal(notes.length, 1);
        assert.equal(notes[0].kind, "key.access_mode_changed");
        assert.deepEqual(notes[0].data, { keyId: k.id, from: "READWRITE", to: "READONLY", by: h.owner.user.id });
        // The owner changing their own key's mode tells nobody.
        await patchKey(h, k.id, { accessMode: "READWRITE" }, member.key);
        assert.equal(ok(await h.call("GET", "/v1/me/notifications", { key: member.key })).length, 1);
      });

      it('seed 001: "PATCH /v1/keys/:id — Any of the fields below can be changed (all optional — pass only what you are changing)"', async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm"] });
        const expiresAt = isoAt(h.clock.now + 90 * 24 * HOUR);
        const view = await patchKey(h, k.id, { name: "New name", accessMode: "READONLY", ipWhitelist: ["192.168.1.100"], rateLimit: 7, expiresAt });
        assert.equal(view.name, "New name");
        assert.equal(view.accessMode, "READONLY");
        assert.deepEqual(view.ipWhitelist, ["192.168.1.100"]);
        assert.equal(view.rateLimit, 7);
        assert.equal(view.expiresAt, expiresAt);
        assert.deepEqual(view.scopes, k.data.scopes, "fields not given stay");
        const cleared = await patchKey(h, k.id, { rateLimit: null, expiresAt: null });
        assert.equal(cleared.rateLimit, null);
        assert.equal(cleared.expiresAt, null);
        assert.equal(cleared.name, "New name");
        for (const [body, param] of [
          [{ status: "EXPIRED" }, "status"],
          [{ unknownField: true }, "unknownField"],
          [{ expiresAt: isoAt(h.clock.now - 1) }, "expiresAt"],
          [{ rateLimit: 0 }, "rateLimit"],
          [{ name: "" }, "name"],
        ] as const) {
          assert.equal(fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body }), 400, "VALIDATION_ERROR").param, param);
        }
        fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body: {} }), 400, "VALIDATION_ERROR");
      });

      it('seed 003: "Expired | EXPIRED | The key\'s expiration has passed" — the status field shows EXPIRED', async () => {
        const k = await makeKey(h, portalId, { expiresAt: isoAt(h.clock.now + HOUR) });
        assert.equal(ok(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key })).status, "ACTIVE");
        h.clock.advance(HOUR);
        assert.equal(ok(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key })).status, "EXPIRED");
        const listed = ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).find((x: { id: string }) => x.id === k.id);
        assert.equal(listed.status, "EXPIRED");
        const r = await makeKey(h, portalId);
        assert.equal((await patchKey(h, r.id, { status: "REVOKED" })).status, "REVOKED");
      });

      it('seed 001: "DELETE /v1/keys/:id — Deletes the key" — later requests with it get INVALID_API_KEY', async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.deepEqual(ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key })), { id: k.id, deleted: true });
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "INVALID_API_KEY");
        fails(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key }), 404, "KEY_NOT_FOUND");
        fails(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }), 404, "KEY_NOT_FOUND");
      });

      it('seed 001: "If the key has active servers, 409 KEY_HAS_ACTIVE_SERVERS is returned — the servers must be deleted first"', async () => {
        const k = await makeKey(h, portalId);
        await h.store.addDependent({ keyId: k.id, kind: "server", dependentId: "srv-1", createdAt: h.clock.now });
        fails(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }), 409, "KEY_HAS_ACTIVE_SERVERS");
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        ok(await h.call("GET", `/v1/keys/${k.id}`, { key: h.owner.key }));
        await h.store.removeDependent(k.id, "server", "srv-1");
        ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }));
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "INVALID_API_KEY");
      });
    });

    describe("rotation (POST /v1/keys/:id/rotate)", () => {
      const rotate = async (id: string) => ok(await h.call("POST", `/v1/keys/${id}/rotate`, { key: h.owner.key }), 201);

      it('seed 001: "Creates a new key with the same settings" (name, scopes, accessMode, ipWhitelist, rateLimit, portal)', async () => {
        const old = await makeKey(h, portalId, { name: "Rotating", scopes: ["crm", "im"], accessMode: "READONLY", ipWhitelist: ["203.0.113.42", "2001:db8::1"], rateLimit: 3 });
        const fresh = await rotate(old.id);
        assert.match(fresh.rawKey, /^vibe_api_[0-9A-Za-z]{38}$/);
        assert.notEqual(fresh.rawKey, old.raw);
        assert.notEqual(fresh.id, old.id);
        assert.equal(fresh.keyPrefix, fresh.rawKey.slice(0, 15));
        assert.equal(fresh.keySuffix, fresh.rawKey.slice(-4));
        for (const field of ["name", "type", "portalId", "ownerId", "scopes", "accessMode", "ipWhitelist", "rateLimit"]) {
          assert.deepEqual(fresh[field], old.data[field], field);
        }
        assert.equal(fresh.status, "ACTIVE");
        assert.equal(fresh.rotatedFromId, old.id);
        assert.deepEqual(fresh.previousKey, { id: old.id, validUntil: isoAt(h.clock.now + GRACE) });
        const oldView = ok(await h.call("GET", `/v1/keys/${old.id}`, { key: h.owner.key }));
        assert.equal(oldView.rotatedToId, fresh.id);
        assert.equal(oldView.expiresAt, isoAt(h.clock.now + GRACE));
        ok(await h.call("GET", "/v1/me", { key: fresh.rawKey, ip: "203.0.113.42" }));
        fails(await h.call("GET", "/v1/me", { key: fresh.rawKey, ip: "198.51.100.7" }), 403, "IP_NOT_ALLOWED");
        fails(await h.call("POST", "/v1/leads", { key: fresh.rawKey, ip: "203.0.113.42", body: {} }), 403, "WRITE_BLOCKED_READONLY_KEY");
      });

      it('seed 003: "If you add a Bitrix24 scope in the settings of an already-existing key, GET /v1/me will show it … requests that need it will return BITRIX_ACCESS_DENIED" — "API key (vibe_api_) — reissue the key"', async () => {
        const old = await makeKey(h, portalId, { scopes: ["crm"] });
        const view = await patchKey(h, old.id, { scopes: ["crm", "imbot"] });
        assert.deepEqual(view.scopesPendingReissue, ["imbot"]);
        assert.ok(ok(await h.call("GET", "/v1/me", { key: old.raw })).scopes.includes("imbot"));
        const denied = fails(await h.call("GET", "/v1/bots", { key: old.raw }), 403, "BITRIX_ACCESS_DENIED");
        assert.equal(denied.details.requiredScope, "imbot");
        const fresh = await rotate(old.id);
        assert.deepEqual(fresh.scopesPendingReissue, []);
        assert.ok(fresh.scopesInEffect.includes("imbot"));
        passesVerification(await h.call("GET", "/v1/bots", { key: fresh.rawKey }));
        fails(await h.call("GET", "/v1/bots", { key: old.raw }), 403, "BITRIX_ACCESS_DENIED");
      });

      it('seed 003: "The old key keeps working for another 24 hours. When the transition period expires, the old key becomes invalid" (23h59m: works; 24h: 401 KEY_EXPIRED)', async () => {
        const old = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: old.raw }));
        const fresh = await rotate(old.id);
        ok(await h.call("GET", "/v1/me", { key: old.raw }));
        h.clock.advance(23 * HOUR + 59 * MINUTE);
        ok(await h.call("GET", "/v1/me", { key: old.raw }));
        fails(await h.call("GET", "/v1/deals", { key: old.raw }), 503, "SANDBOX_UNREACHABLE");
        h.clock.advance(MINUTE);
        const e = fails(await h.call("GET", "/v1/me", { key: old.raw }), 401, "KEY_EXPIRED");
        assert.equal(e.details.expiresAt, fresh.previousKey.validUntil);
        assert.equal(ok(await h.call("GET", `/v1/keys/${old.id}`, { key: h.owner.key })).status, "EXPIRED");
        ok(await h.call("GET", "/v1/me", { key: fresh.rawKey }));
        h.clock.advance(365 * 24 * HOUR);
        ok(await h.call("GET", "/v1/me", { key: fresh.rawKey }));
      });

      it('seed 003: "When the transition period expires, the old key becomes invalid" — PATCH cannot move a rotated key\'s end later (409 KEY_ALREADY_ROTATED), only sooner', async () => {
        const old = await makeKey(h, portalId);
        const fresh = await rotate(old.id);
        const graceEnd = fresh.previousKey.validUntil;
        for (const expiresAt of [null, isoAt(h.clock.now + GRACE + MINUTE), isoAt(h.clock.now + 365 * 24 * HOUR)]) {
          const e = fails(await h.call("PATCH", `/v1/keys/${old.id}`, { key: h.owner.key, body: { expiresAt } }), 409, "KEY_ALREADY_ROTATED");
          assert.equal(e.param, "expiresAt");
        }
        assert.equal(ok(await h.call("GET", `/v1/keys/${old.id}`, { key: h.owner.key })).expiresAt, graceEnd);
        // Other fields of a rotated key can still change, and its end can come sooner.
        assert.equal((await patchKey(h, old.id, { name: "Old one" })).expiresAt, graceEnd);
        assert.equal((await patchKey(h, old.id, { expiresAt: isoAt(h.clock.now + HOUR) })).expiresAt, isoAt(h.clock.now + HOUR));
        h.clock.advance(HOUR);
        fails(await h.call("GET", "/v1/me", { key: old.raw }), 401, "KEY_EXPIRED");
        h.clock.advance(2 * GRACE);
        fails(await h.call("GET", "/v1/me", { key: old.raw }), 401, "KEY_EXPIRED");
        ok(await h.call("GET", "/v1/me", { key: fresh.rawKey }));
      });

      it("issue: a key that expires before the grace ends keeps its own, earlier expiry", async () => {
        const old = await makeKey(h, portalId, { expiresAt: isoAt(h.clock.now + HOUR) });
        const fresh = await rotate(old.id);
        assert.equal(fresh.previousKey.validUntil, isoAt(h.clock.now + HOUR));
        h.clock.advance(HOUR);
        fails(await h.call("GET", "/v1/me", { key: old.raw }), 401, "KEY_EXPIRED");
      });

      it("issue: rotating twice → 409 KEY_ALREADY_ROTATED; the replacement can be rotated", async () => {
        const old = await makeKey(h, portalId);
        const fresh = await rotate(old.id);
        const e = fails(await h.call("POST", `/v1/keys/${old.id}/rotate`, { key: h.owner.key }), 409, "KEY_ALREADY_ROTATED");
        assert.equal(e.details.rotatedToId, fresh.id);
        const third = await rotate(fresh.id);
        assert.equal(third.rotatedFromId, fresh.id);
      });

      it("issue: rotating twice at the same time → one 201, one 409 KEY_ALREADY_ROTATED", async () => {
        const old = await makeKey(h, portalId);
        const replies = await Promise.all([1, 2, 3].map(() => h.call("POST", `/v1/keys/${old.id}/rotate`, { key: h.owner.key })));
        const made = replies.filter((r) => r.status === 201);
        assert.equal(made.length, 1, JSON.stringify(replies.map((r) => r.body)));
        for (const r of replies.filter((x) => x.status !== 201)) fails(r, 409, "KEY_ALREADY_ROTATED");
        assert.equal(ok(await h.call("GET", `/v1/keys/${old.id}`, { key: h.owner.key })).rotatedToId, made[0]!.body.data.id);
        const fromOld = ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).filter((k: { rotatedFromId: string | null }) => k.rotatedFromId === old.id);
        assert.equal(fromOld.length, 1);
      });

      it("issue: rotating a revoked key → 409 KEY_NOT_ACTIVE (and an expired one)", async () => {
        const revoked = await makeKey(h, portalId);
        await patchKey(h, revoked.id, { status: "REVOKED" });
        fails(await h.call("POST", `/v1/keys/${revoked.id}/rotate`, { key: h.owner.key }), 409, "KEY_NOT_ACTIVE");
        const expiring = await makeKey(h, portalId, { expiresAt: isoAt(h.clock.now + MINUTE) });
        h.clock.advance(MINUTE);
        fails(await h.call("POST", `/v1/keys/${expiring.id}/rotate`, { key: h.owner.key }), 409, "KEY_NOT_ACTIVE");
      });

      it('seed 003: "Authorization key (vibe_app_) — recreate the app with the required scope and complete authorization again (reissuing the key does not grant a scope here)"', async () => {
        const old = await makeKey(h, portalId, { type: "app", scopes: ["crm"] });
        await patchKey(h, old.id, { scopes: ["crm", "imbot"] });
        fails(await h.call("GET", "/v1/bots", { key: old.raw }), 403, "BITRIX_ACCESS_DENIED");
        const fresh = await rotate(old.id);
        assert.match(fresh.rawKey, /^vibe_app_[0-9A-Za-z]{38}$/);
        assert.deepEqual(fresh.scopes, ["crm", "imbot"]);
        assert.deepEqual(fresh.scopesPendingReissue, ["imbot"]);
        fails(await h.call("GET", "/v1/bots", { key: fresh.rawKey }), 403, "BITRIX_ACCESS_DENIED");
      });
    });

    describe("read-only portal keys (accessMode READONLY)", () => {
      let mcp: IssuedKey;
      before(async () => {
        mcp = await makeKey(h, portalId, { name: "MCP key", scopes: ["crm", "task", "tasks", "im", "log"], accessMode: "READONLY" });
      });

      it('seed 003: "POST /v1/leads with a key in READONLY mode returns 403" with exactly the example body', async () => {
        const r = await h.call("POST", "/v1/leads", { key: mcp.raw, body: { fields: { TITLE: "x" } } });
        assert.equal(r.status, 403);
        assert.deepEqual(r.body, {
          success: false,
          error: {
            code: "WRITE_BLOCKED_READONLY_KEY",
            message: "Key is in read-only mode. Switch to read+write in /keys to enable writes.",
            details: { method: "crm.item.add", keyName: "MCP key", currentMode: "READONLY", switchUrl: "/keys" },
          },
        });
      });

      it('seed 003: "any request proxied to Bitrix24 as a write operation is blocked: create, update, delete" — details.method is the upstream method', async () => {
        for (const [method, path, upstream] of [
          ["POST", "/v1/deals", "crm.item.add"],
          ["PATCH", "/v1/deals/7", "crm.item.update"],
          ["DELETE", "/v1/contacts/7", "crm.item.delete"],
          ["POST", "/v1/tasks", "tasks.task.add"],
          ["POST", "/v1/notifications", "im.notify.system.add"],
          ["POST", "/v1/chats/chat42/messages", "im.message.add"],
          ["POST", "/v1/posts", "log.blogpost.add"],
        ] as const) {
          const e = fails(await h.call(method, path, { key: mcp.raw, body: method === "DELETE" ? undefined : {} }), 403, "WRITE_BLOCKED_READONLY_KEY");
          assert.deepEqual(e.details, { method: upstream, keyName: "MCP key", currentMode: "READONLY", switchUrl: "/keys" }, `${method} ${path}`);
        }
      });

      it('seed 003: "GET requests and aggregation operations (POST /v1/<entity>/aggregate) run without restrictions" (not 403; they reach the data plane, whose sandbox this harness does not serve: 503 SANDBOX_UNREACHABLE)', async () => {
        for (const [method, path] of [
          ["GET", "/v1/deals"],
          ["GET", "/v1/deals/7"],
          ["GET", "/v1/deals/fields"],
          ["POST", "/v1/deals/aggregate"],
          ["POST", "/v1/deals/search"],
          ["POST", "/v1/tasks/aggregate"],
          ["POST", "/v1/batch"],
        ] as const) {
          const body = path === "/v1/batch" ? { calls: [{ entity: "deals", action: "list" }] } : method === "POST" ? {} : undefined;
          const r = await h.call(method, path, { key: mcp.raw, body });
          assert.notEqual(r.status, 403, `${method} ${path}: ${JSON.stringify(r.body)}`);
          fails(r, 503, "SANDBOX_UNREACHABLE");
        }
      });

      it('seed 003: "The GET /v1/me endpoint returns the key\'s effective mode in the data.accessMode field"', async () => {
        assert.equal(ok(await h.call("GET", "/v1/me", { key: mcp.raw })).accessMode, "READONLY");
        const rw = await makeKey(h, portalId);
        assert.equal(ok(await h.call("GET", "/v1/me", { key: rw.raw })).accessMode, "READWRITE");
      });

      it('seed 003: "No reissue is needed — the mode changes on a live key without replacing its value"', async () => {
        const k = await makeKey(h, portalId, { name: "Switching" });
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 503, "SANDBOX_UNREACHABLE");
        const view = await patchKey(h, k.id, { accessMode: "READONLY" });
        assert.equal(view.keyPrefix, k.data.keyPrefix);
        assert.equal(view.keySuffix, k.data.keySuffix);
        fails(await h.call("POST", "/v1/leads", { key: k.raw, body: {} }), 403, "WRITE_BLOCKED_READONLY_KEY");
      });

      it('seed 003: default portal policy READONLY — "ordinary portal members can create only read-only keys … 403 KEY_POLICY_READONLY_REQUIRED. The portal administrator is not subject to this restriction"; existing keys keep their mode', async () => {
        const pid = await makePortal(h);
        const member = await makeUser(h);
        await addMember(h, pid, member.user.email, "MEMBER");
        const existing = await makeKey(h, pid, {}, { by: member.key });
        ok(await h.call("PATCH", `/v1/portals/${pid}`, { key: h.owner.key, body: { defaultAccessMode: "READONLY" } }));
        const e = fails(await post({ portalId: pid, name: "rw", scopes: ["crm"], accessMode: "READWRITE" }, member.key), 403, "KEY_POLICY_READONLY_REQUIRED");
        assert.equal(e.param, "accessMode");
        assert.equal((await makeKey(h, pid, {}, { by: member.key })).data.accessMode, "READONLY");
        assert.equal((await makeKey(h, pid, { accessMode: "READONLY" }, { by: member.key })).data.accessMode, "READONLY");
        assert.equal((await makeKey(h, pid, { accessMode: "READWRITE" })).data.accessMode, "READWRITE");
        assert.equal((await makeKey(h, pid)).data.accessMode, "READONLY", "the policy is the default for admins too");
        assert.equal(ok(await h.call("GET", `/v1/keys/${existing.id}`, { key: member.key })).accessMode, "READWRITE");
        // The administrator changes the mode of another user's key in its card.
        assert.equal((await patchKey(h, existing.id, { accessMode: "READONLY" })).accessMode, "READONLY");
      });
    });

    // Seed 001's least privilege ("if the key is intended only for managing API keys, it does not
    // need the vibe:mgmt:feedback scope") means nothing if a key can reach a stronger one.
    describe("no key reaches a management key stronger than itself", () => {
      it('seed 001: "Without the required scope, a specific endpoint returns 403 MANAGEMENT_SCOPE_REQUIRED" — a vibe:mgmt:keys key cannot widen its own scopes', async () => {
        const u = await makeUser(h, "vibe:mgmt:keys");
        const r = await h.call("PATCH", `/v1/keys/${u.id}`, { key: u.key, body: { scopes: ["vibe:mgmt:keys", "vibe:mgmt:portals", "vibe:mgmt:feedback"] } });
        const e = fails(r, 403, "KEY_SCOPE_EXCEEDS_CALLER");
        assert.deepEqual(e.details?.scopes, ["vibe:mgmt:portals", "vibe:mgmt:feedback"]);
        fails(await h.call("GET", "/v1/portals", { key: u.key }), 403, "MANAGEMENT_SCOPE_REQUIRED");
      });

      it("seed 001: a vibe:mgmt:keys key cannot obtain the secret of a management key with more scopes by rotating it, nor change or delete it", async () => {
        const u = await makeUser(h, "vibe:mgmt:keys");
        const full = await u.another("vibe:mgmt:keys,vibe:mgmt:portals,vibe:mgmt:feedback");
        const id = await keyIdOf(h, full);
        fails(await h.call("POST", `/v1/keys/${id}/rotate`, { key: u.key }), 403, "KEY_SCOPE_EXCEEDS_CALLER");
        fails(await h.call("PATCH", `/v1/keys/${id}`, { key: u.key, body: { status: "REVOKED" } }), 403, "KEY_SCOPE_EXCEEDS_CALLER");
        fails(await h.call("DELETE", `/v1/keys/${id}`, { key: u.key }), 403, "KEY_SCOPE_EXCEEDS_CALLER");
        ok(await h.call("GET", "/v1/portals", { key: full }));
        // The stronger key may manage the weaker one.
        ok(await h.call("PATCH", `/v1/keys/${u.id}`, { key: full, body: { name: "keys only" } }));
      });

      it("a portal admin cannot rotate a member's key: the new secret would act as the member", async () => {
        const pid = await makePortal(h);
        const member = await makeUser(h);
        await addMember(h, pid, member.user.email, "MEMBER");
        const k = await makeKey(h, pid, {}, { by: member.key });
        fails(await h.call("POST", `/v1/keys/${k.id}/rotate`, { key: h.owner.key }), 403, "KEY_OWNER_ONLY");
        ok(await h.call("POST", `/v1/keys/${k.id}/rotate`, { key: member.key }), 201);
      });
    });

    describe("audit trail (GET /v1/portals/:id/audit)", () => {
      it("issue: every change writes an audit event (actor user, key used, source IP, time, before/after) — key create/update/rotate/delete; never a digest or rawKey", async () => {
        const pid = await makePortal(h);
        const ownerKeyId = await keyIdOf(h, h.owner.key);
        const ip = "192.0.2.10";
        const t0 = h.clock.now;
        const k = await makeKey(h, pid, { name: "Audited" }, { ip });
        h.clock.advance(MINUTE);
        ok(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, ip, body: { name: "Audited 2", scopes: ["crm", "im"] } }));
        h.clock.advance(MINUTE);
        ok(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, ip: `::ffff:${ip}`, body: { status: "REVOKED" } }));
        h.clock.advance(MINUTE);
        ok(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, ip, body: { status: "ACTIVE" } }));
        h.clock.advance(MINUTE);
        const fresh = ok(await h.call("POST", `/v1/keys/${k.id}/rotate`, { key: h.owner.key, ip }), 201);
        h.clock.advance(MINUTE);
        ok(await h.call("DELETE", `/v1/keys/${fresh.id}`, { key: h.owner.key, ip }));

        const events = ok(await h.call("GET", `/v1/portals/${pid}/audit`, { key: h.owner.key }));
        // Oldest first. A rotation writes two events at one instant: its key.rotate, then the new key's key.create.
        type Event = { at: string; action: string };
        const rank = (e: Event) => (e.action === "key.rotate" ? 0 : 1);
        const keyEvents = events
          .filter((e: { entityType: string }) => e.entityType === "key")
          .sort((a: Event, b: Event) => (a.at === b.at ? rank(a) - rank(b) : a.at < b.at ? -1 : 1));
        assert.deepEqual(
          keyEvents.map((e: { action: string; entityId: string }) => [e.action, e.entityId]),
          [
            ["key.create", k.id],
            ["key.update", k.id],
            ["key.update", k.id],
            ["key.update", k.id],
            ["key.rotate", k.id],
            ["key.create", fresh.id],
            ["key.delete", fresh.id],
          ],
        );
        for (const e of keyEvents) {
          assert.equal(e.actorUserId, h.owner.user.id);
          assert.equal(e.actorKeyId, ownerKeyId);
          assert.equal(e.sourceIp, ip);
          assert.equal(e.portalId, pid);
        }
        assert.deepEqual(
          keyEvents.map((e: { at: string }) => e.at),
          [t0, t0 + MINUTE, t0 + 2 * MINUTE, t0 + 3 * MINUTE, t0 + 4 * MINUTE, t0 + 4 * MINUTE, t0 + 5 * MINUTE].map(isoAt),
        );
        const [create, update, revoke, reactivate, rotation, created, deletion] = keyEvents;
        assert.equal(create.before, null);
        assert.equal(create.after.name, "Audited");
        assert.equal(update.before.name, "Audited");
        assert.equal(update.after.name, "Audited 2");
        assert.deepEqual(update.after.scopes, ["crm", "im", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]);
        assert.equal(revoke.before.status, "ACTIVE");
        assert.equal(revoke.after.status, "REVOKED");
        assert.equal(reactivate.after.status, "ACTIVE");
        assert.equal(rotation.before.rotatedToId, null);
        assert.equal(rotation.after.rotatedToId, fresh.id);
        assert.equal(created.after.rotatedFromId, k.id);
        assert.equal(deletion.before.id, fresh.id);
        assert.equal(deletion.after, null);
        assertNoSecrets("the audit trail", events, [k.raw, fresh.rawKey]);

        const onlyFresh = ok(await h.call("GET", `/v1/portals/${pid}/audit?keyId=${fresh.id}`, { key: h.owner.key }));
        assert.deepEqual(onlyFresh.map((e: { action: string }) => e.action), ["key.delete", "key.create"]);
      });

      it("issue: a refused change writes no audit event (INVALID_SCOPES, KEY_HAS_ACTIVE_SERVERS, KEY_ALREADY_ROTATED)", async () => {
        const pid = await makePortal(h);
        const k = await makeKey(h, pid);
        const audit = async () => ok(await h.call("GET", `/v1/portals/${pid}/audit`, { key: h.owner.key })).length as number;
        const before = await audit();
        fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body: { scopes: ["crn"] } }), 400, "INVALID_SCOPES");
        fails(await post({ portalId: pid, name: "x", scopes: ["crn"] }), 400, "INVALID_SCOPES");
        await h.store.addDependent({ keyId: k.id, kind: "server", dependentId: "srv-1", createdAt: h.clock.now });
        fails(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }), 409, "KEY_HAS_ACTIVE_SERVERS");
        assert.equal(await audit(), before);
        await h.store.removeDependent(k.id, "server", "srv-1");
        ok(await h.call("POST", `/v1/keys/${k.id}/rotate`, { key: h.owner.key }), 201);
        const rotatedOnce = await audit();
        assert.equal(rotatedOnce, before + 2);
        fails(await h.call("POST", `/v1/keys/${k.id}/rotate`, { key: h.owner.key }), 409, "KEY_ALREADY_ROTATED");
        assert.equal(await audit(), rotatedOnce);
      });

      it("issue: the audit trail is for portal admins — a member gets 403 NOT_PORTAL_ADMIN", async () => {
        const pid = await makePortal(h);
        const member = await makeUser(h);
        await addMember(h, pid, member.user.email, "MEMBER");
        fails(await h.call("GET", `/v1/portals/${pid}/audit`, { key: member.key }), 403, "NOT_PORTAL_ADMIN");
      });
    });
  });
}
