/**
 * keygate as a library: createVerifier gives a service the decision a request through the
 * gateway would get (docs/verification.md, "In process"), from the same store, with no HTTP.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { type Verifier, createVerifier, keyFormat, loadProfile } from "../../src/index.ts";
import type { Keygate } from "../../src/manage/context.ts";
import { createKey, updateKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import { createUser } from "../../src/manage/users.ts";
import { type Store, openSqliteStore } from "../../src/store/index.ts";
import { outboundPolicy } from "../../src/upstream/outbound.ts";

describe("createVerifier (keygate in process)", () => {
  let store: Store;
  let verifier: Verifier;
  let kg: Keygate;
  let actor: { user: Awaited<ReturnType<typeof createUser>>; keyId: null; ip: null };
  let portalId: string;
  const clock = { now: Date.parse("2026-11-22T12:00:00Z") };

  before(async () => {
    const serverSecret = randomBytes(32).toString("base64url");
    store = await openSqliteStore(":memory:", { serverSecret });
    await store.migrate();
    const profile = loadProfile("vibecode");
    verifier = createVerifier({ profile, store, serverSecret, now: () => clock.now });
    kg = {
      profile,
      store,
      serverSecret,
      format: keyFormat(profile.spec.keyTypes),
      outbound: outboundPolicy(),
      now: () => clock.now,
      keyChanged: (key) => verifier.keyChanged(key),
      portalChanged: () => {},
    };
    actor = { user: await createUser(kg, null, { email: "owner@example.com" }), keyId: null, ip: null };
    portalId = (await createPortal(kg, actor, { domain: "lib.example.com", upstream: { kind: "sandbox" } })).id;
  });
  after(async () => {
    await verifier.close();
    await store.close();
  });

  const key = async (scopes: string, extra: { accessMode?: "READONLY"; ipWhitelist?: string[] } = {}) => createKey(kg, actor, { portalId, name: `key ${scopes}`, scopes, ...extra });

  it("a key allowed on the route is valid: its id, type, portal, owner, mode, route and limits", async () => {
    const { key: record, rawKey } = await key("crm");
    const outcome = await verifier.verify({ key: rawKey, method: "GET", path: "/v1/deals/42?select=id", ip: "203.0.113.7" });
    assert.ok(outcome.valid, JSON.stringify(outcome));
    assert.equal(outcome.keyId, record.id);
    assert.equal(outcome.keyType, "api");
    assert.equal(outcome.portalId, portalId);
    assert.equal(outcome.ownerId, actor.user.id);
    assert.equal(outcome.accessMode, "READWRITE");
    assert.equal(outcome.route, "/v1/deals/:id");
    assert.deepEqual(outcome.params, { id: "42" });
    assert.ok(outcome.limits.length > 0 && outcome.limits.every((l) => l.remaining < l.limit.limit), "counted in the key's limits");
    assert.equal(verifier.cachedKeys, 1);
  });

  it("refusals carry the gateway's code and status: unknown key, missing scope, read-only write, unknown route", async () => {
    const { rawKey } = await key("crm", { accessMode: "READONLY" });
    const refused = async (request: { key: string; method: string; path: string }, code: string, status: number) => {
      const outcome = await verifier.verify({ ...request, ip: "203.0.113.7" });
      assert.ok(!outcome.valid, JSON.stringify(outcome));
      assert.equal(outcome.code, code);
      assert.equal(outcome.status, status);
    };
    await refused({ key: "vibe_api_nonsense", method: "GET", path: "/v1/deals" }, "INVALID_API_KEY", 401);
    await refused({ key: "", method: "GET", path: "/v1/deals" }, "MISSING_API_KEY", 401);
    await refused({ key: rawKey, method: "GET", path: "/v1/tasks" }, "SCOPE_DENIED", 403);
    await refused({ key: rawKey, method: "POST", path: "/v1/deals" }, "WRITE_BLOCKED_READONLY_KEY", 403);
    await refused({ key: rawKey, method: "GET", path: "/v1/nowhere" }, "ROUTE_NOT_FOUND", 404);
  });

  it("an IP allow-list: the listed address passes (in any spelling), another or none is refused", async () => {
    const { rawKey } = await key("crm", { ipWhitelist: ["2001:db8::1"] });
    assert.equal((await verifier.verify({ key: rawKey, method: "GET", path: "/v1/deals", ip: "2001:0db8:0:0:0:0:0:1" })).valid, true);
    for (const ip of ["2001:db8::2", undefined]) {
      const outcome = await verifier.verify({ key: rawKey, method: "GET", path: "/v1/deals", ip });
      assert.ok(!outcome.valid && outcome.code === "IP_NOT_ALLOWED", `${ip}: ${JSON.stringify(outcome)}`);
    }
  });

  it("a key revoked through the manage layer is refused on the very next verification (keyChanged)", async () => {
    const { key: record, rawKey } = await key("crm");
    assert.equal((await verifier.verify({ key: rawKey, method: "GET", path: "/v1/deals", ip: "203.0.113.7" })).valid, true);
    await updateKey(kg, actor, record.id, { status: "REVOKED" });
    const outcome = await verifier.verify({ key: rawKey, method: "GET", path: "/v1/deals", ip: "203.0.113.7" });
    assert.ok(!outcome.valid && outcome.code === "KEY_INACTIVE", JSON.stringify(outcome));
  });

  it("over its rate limit a key is refused RATE_LIMITED with the seconds to wait", async () => {
    const { key: record, rawKey } = await key("crm");
    await updateKey(kg, actor, record.id, { rateLimit: 2 });
    const verify = () => verifier.verify({ key: rawKey, method: "GET", path: "/v1/deals", ip: "203.0.113.7" });
    assert.equal((await verify()).valid, true);
    assert.equal((await verify()).valid, true);
    const outcome = await verify();
    assert.ok(!outcome.valid, JSON.stringify(outcome));
    assert.equal(outcome.code, "RATE_LIMITED");
    assert.equal(outcome.status, 429);
    assert.ok(outcome.retryAfter !== undefined && outcome.retryAfter >= 1);
  });
});
