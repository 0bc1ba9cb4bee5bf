/**
 * Issue 12, section 4: a profile that names no management key type gets keygate's own
 * (kg_mgmt_, keygate:keys, keygate:portals) with the management routes; one that names one
 * (VibeCode) keeps it. Through the library interface.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BUILTIN_PROFILES, ProfileError, type ProfileSpec, compileProfileData, generateKey, keyFormat, loadProfile } from "../../src/index.ts";
import { harness } from "./_helpers.ts";

const EXAMPLE = join(import.meta.dirname, "../fixtures/profiles/example.json");
const example = () => JSON.parse(readFileSync(EXAMPLE, "utf8")) as ProfileSpec;

describe("issue 12: keygate's management key type for profiles that name none", () => {
  for (const [id, apiType, apiScope, apiRoute] of [
    ["atender", "api", "knowledge:write", "POST /api/v1/kb/articles"],
    ["rogeriq", "api", "kb:write", "POST /v1/projects/p-1/kb/articles"],
  ] as const) {
    it(`${id}: a kg_mgmt_ management key type holding keygate:keys and keygate:portals, and nothing of the API`, () => {
      const p = loadProfile(id);
      const { scopes, errorCodes, key, assertAllowed, assertDenied } = harness(p);
      assert.equal(p.management.keyType.id, "management");
      assert.equal(p.management.keyType.prefix, "kg_mgmt_");
      assert.equal(p.management.keyType.portalless, true);
      assert.deepEqual(p.management.scopes, ["keygate:keys", "keygate:portals"]);
      assert.deepEqual(scopes("management", "keygate:keys"), ["keygate:keys"]);
      // The API's scopes, coarse scopes and bundles are not the management key's, and the reverse.
      for (const s of [apiScope, ...(id === "rogeriq" ? ["admin", "read"] : ["full_access"])]) assert.deepEqual(errorCodes("management", s), ["SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"], s);
      assert.deepEqual(errorCodes(apiType, "keygate:keys"), ["SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"]);

      const keys = key("management", "keygate:keys");
      assertAllowed(keys, "GET /v1/keys");
      assertAllowed(keys, "POST /v1/keys/k-1/rotate");
      assertAllowed(keys, "GET /v1/me");
      assertDenied(keys, "GET /v1/portals", "MANAGEMENT_SCOPE_REQUIRED");
      assertDenied(keys, apiRoute as `${string} /${string}`, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      assertDenied(key(apiType, apiScope), "GET /v1/keys", "MANAGEMENT_KEY_REQUIRED");
      assert.match(p.errorCodes.MANAGEMENT_KEY_REQUIRED!.message, /kg_mgmt_/);

      const raw = generateKey("kg_mgmt_");
      const format = keyFormat(p.spec.keyTypes);
      assert.equal(format.parse(raw), "management");
      assert.ok(new RegExp(format.scannerPattern).test(raw));
    });
  }

  it("a profile file that names no management key type gets the same", () => {
    const p = compileProfileData(example(), "example");
    assert.equal(p.management.keyType.prefix, "kg_mgmt_");
    assert.deepEqual(harness(p).errorCodes("management", "orders:read"), ["SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"]);
  });

  it("vibecode names its own (vibe_live_, vibe:mgmt:*): nothing is added", () => {
    const p = loadProfile("vibecode");
    assert.equal(p.management.keyType.prefix, "vibe_live_");
    assert.deepEqual(p.management.scopes, ["vibe:mgmt:keys", "vibe:mgmt:portals", "vibe:mgmt:feedback"]);
    assert.ok(!p.spec.keyTypes.some((k) => k.prefix === "kg_mgmt_"));
    assert.ok(!p.catalog.tokens.has("keygate:keys"));
    assert.equal(p.spec.keyTypes.length, BUILTIN_PROFILES.vibecode!.keyTypes.length);
  });

  it("a profile's own key type named management, or with the prefix kg_mgmt_, is a problem unless it is portalless", () => {
    for (const change of [{ id: "management" }, { prefix: "kg_mgmt_" }]) {
      const data = example();
      data.keyTypes[1] = { ...data.keyTypes[1]!, ...change };
      assert.throws(
        () => compileProfileData(data, "clash"),
        (e: unknown) => e instanceof ProfileError && e.problems.some((m) => m.includes("keygate's own management key type")),
        JSON.stringify(change),
      );
    }
    const own = example();
    own.keyTypes.push({ id: "admin", prefix: "acme_admin_", label: "Admin key", portalless: true });
    own.routes = own.routes.map((r) => (r.keyTypes === undefined && r.requires !== null ? { ...r, keyTypes: ["secret", "publishable"] } : r));
    const p = compileProfileData(own, "own");
    assert.equal(p.management.keyType.id, "admin");
    assert.ok(!p.spec.keyTypes.some((k) => k.prefix === "kg_mgmt_"));
  });
});
