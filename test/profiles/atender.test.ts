/**
 * Atender profile against seed 002 (API scopes reference): `surface:action` scopes,
 * write implies read, the pre-built bundles and the least-privilege recipes.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadProfile } from "../../src/index.ts";
import { type Call, apiRoutes, apiScopes, harness, samplePath } from "./_helpers.ts";

const p = loadProfile("atender");
const { scopes, errorCodes, key, decide, assertAllowed, assertDenied, grants } = harness(p);

/** Surfaces seed 002 documents one by one, then the "Other surfaces" it lists. */
const DOCUMENTED = ["knowledge", "conversations", "contacts", "tags", "analytics"];
const OTHER = ["users", "settings", "search", "bulk", "webhooks", "channels", "automations", "agents", "snippets", "sla", "attachments", "notifications", "teams", "csat", "status"];
const SURFACES = [...DOCUMENTED, ...OTHER];

const WRITE_METHODS = ["POST", "PATCH", "DELETE"];
const KB_READS: Call[] = ["GET /api/v1/kb/articles", "GET /api/v1/kb/articles/a-1", "GET /api/v1/kb/categories", "GET /api/v1/kb/subcategories", "GET /api/v1/kb/tags", "GET /api/v1/kb/search?q=refund"];
const KB_WRITES: Call[] = ["POST /api/v1/kb/articles", "PATCH /api/v1/kb/articles/a-1", "DELETE /api/v1/kb/articles/a-1", "POST /api/v1/kb/categories", "DELETE /api/v1/kb/tags/t-1"];

const allScopes = () => apiScopes(p);
const everyOf = (action: string) => allScopes().filter((s) => s.endsWith(`:${action}`));
const sorted = (xs: readonly string[]) => [...xs].sort();

/** The routes of one surface, as sample calls. */
function surfaceCalls(surface: string): { reads: Call[]; writes: Call[] } {
  const routes = p.routes.filter((r) => r.spec.resource === surface);
  const calls = routes.map((r) => `${r.method} ${samplePath(r.path)}` as Call);
  return { reads: calls.filter((c) => c.startsWith("GET ")), writes: calls.filter((c) => WRITE_METHODS.some((m) => c.startsWith(`${m} `))) };
}

/** Asserts a key reaches exactly the listed surfaces: reads on `read`, reads and writes on `write`. */
function assertReach(list: string | string[], reach: { read?: string[]; write?: string[] }): void {
  const k = key("api", list);
  const label = JSON.stringify(list);
  for (const surface of SURFACES) {
    const { reads, writes } = surfaceCalls(surface);
    const canRead = reach.read?.includes(surface) || reach.write?.includes(surface);
    const canWrite = reach.write?.includes(surface);
    const expect = (call: Call, allowed: boolean) => (allowed ? assertAllowed(k, call, label) : void assertDenied(k, call, "INSUFFICIENT_SCOPE", label));
    for (const call of reads) expect(call, canRead === true);
    for (const call of writes) expect(call, canWrite === true);
  }
}

describe("Atender: scope structure (seed 002)", () => {
  it('seed 002: "Scopes follow a <surface>:<action> pattern" — every scope is surface:read or surface:write', () => {
    for (const scope of allScopes()) assert.match(scope, /^[a-z_]+:(read|write)$/, scope);
  });

  it("seed 002: a surface without its action, or with an unknown action, is not a scope", () => {
    assert.deepEqual(errorCodes("api", "knowledge"), ["SCOPE_ACTION_REQUIRED"]);
    assert.deepEqual(errorCodes("api", "knowledge:delete"), ["UNKNOWN_ACTION"]);
    assert.deepEqual(errorCodes("api", "wiki:read"), ["UNKNOWN_SCOPE"]);
  });

  for (const surface of SURFACES) {
    it(`seed 002: "Both :read and :write are available for most resources" — ${surface}:read and ${surface}:write exist`, () => {
      assert.deepEqual(scopes("api", `${surface}:read`), [`${surface}:read`]);
      assert.deepEqual(scopes("api", `${surface}:write`), [`${surface}:write`]);
    });
  }

  it('seed 002: "analytics:write — (rare — typically not granted to external integrations)" — it exists, and the integration bundle leaves it out', () => {
    assert.deepEqual(scopes("api", "analytics:write"), ["analytics:write"]);
    assert.ok(!scopes("api", "integration").includes("analytics:write"));
  });

  it('seed 002: "Each API key is granted one or more scopes"', () => {
    for (const empty of ["", " ,", [] as string[]]) {
      const result = p.normalize("api", empty);
      assert.deepEqual(result.errors.map((e) => e.code), ["SCOPES_REQUIRED"], JSON.stringify(empty));
      assert.deepEqual(result.scopes, []);
    }
  });

  it('seed 002: "Each scope gates a related set of endpoints" — every surface has routes, reads need :read, writes need :write', () => {
    for (const surface of SURFACES) {
      const { reads, writes } = surfaceCalls(surface);
      assert.ok(reads.length > 0 && writes.length > 0, `${surface} has read and write routes`);
      const reader = key("api", `${surface}:read`);
      const writer = key("api", `${surface}:write`);
      for (const call of reads) assertAllowed(reader, call);
      for (const call of writes) {
        const d = assertDenied(reader, call, "INSUFFICIENT_SCOPE");
        assert.deepEqual(d.missing, [`${surface}:write`]);
        assertAllowed(writer, call);
      }
    }
  });

  it('seed 002: "A key that doesn\'t have the required scope for an endpoint gets a 403 response" — INSUFFICIENT_SCOPE', () => {
    const d = assertDenied(key("api", "contacts:read"), "GET /api/v1/kb/articles", "INSUFFICIENT_SCOPE");
    assert.equal(d.reason, "scope");
    assert.deepEqual(d.missing, ["knowledge:read"]);
    assert.equal(p.errorCodes[d.code]?.status, 403);
  });
});

describe("Atender: the knowledge surface and the hierarchy (seed 002)", () => {
  it('seed 002: "knowledge:read lets the key call GET /api/v1/kb/*"', () => {
    const k = key("api", "knowledge:read");
    for (const call of KB_READS) assertAllowed(k, call);
    assertAllowed(k, "HEAD /api/v1/kb/articles");
  });

  it("seed 002: knowledge:read does not allow POST / PATCH / DELETE on /api/v1/kb/*", () => {
    const k = key("api", "knowledge:read");
    for (const call of KB_WRITES) {
      const d = assertDenied(k, call, "INSUFFICIENT_SCOPE");
      assert.deepEqual(d.missing, ["knowledge:write"]);
      assert.deepEqual(d.coveredBy, ["knowledge:write", "write_all", "full_access"]);
    }
  });

  it('seed 002: "knowledge:write adds POST / PATCH / DELETE on the same surface"', () => {
    const k = key("api", "knowledge:write");
    for (const call of KB_WRITES) assertAllowed(k, call);
  });

  it('seed 002: "A key with knowledge:write can also call GET endpoints under /api/v1/kb/* without needing knowledge:read separately"', () => {
    const k = key("api", "knowledge:write");
    for (const call of KB_READS) assertAllowed(k, call);
  });

  it('seed 002: ":write implies :read for the same surface" — for every surface, and for no other surface', () => {
    for (const surface of SURFACES) {
      const k = key("api", `${surface}:write`);
      assert.ok(grants(k, `${surface}:read`), `${surface}:write grants ${surface}:read`);
      for (const other of SURFACES.filter((s) => s !== surface)) {
        assert.equal(grants(k, `${other}:read`), false, `${surface}:write does not grant ${other}:read`);
      }
    }
  });

  it("seed 002: read does not imply write", () => {
    for (const surface of SURFACES) assert.equal(grants(key("api", `${surface}:read`), `${surface}:write`), false, surface);
  });

  it('seed 002: "This is checked at request time — you don\'t need to explicitly add both. Picking :write is sufficient."', () => {
    // The key stores only what was picked; the check expands it.
    assert.deepEqual(scopes("api", "knowledge:write"), ["knowledge:write"]);
    const stored = p.compileKey("api", p.issue(["knowledge:write"]));
    assertAllowed(stored, "GET /api/v1/kb/articles");
    // Listing both is accepted and changes nothing.
    const both = key("api", "knowledge:read,knowledge:write");
    for (const call of [...KB_READS, ...KB_WRITES]) assert.deepEqual(decide(both, call), decide(stored, call), call);
  });
});

describe("Atender: pre-built bundles (seed 002)", () => {
  const bundle = (id: string) => sorted(scopes("api", id));

  it('seed 002: "basic — contacts:read, conversations:read, tags:read"', () => {
    assert.deepEqual(bundle("basic"), ["contacts:read", "conversations:read", "tags:read"]);
    assertReach("basic", { read: ["contacts", "conversations", "tags"] });
  });

  it('seed 002: "read_all — Every :read scope"', () => {
    assert.deepEqual(bundle("read_all"), sorted(everyOf("read")));
    assert.deepEqual(bundle("read_all"), sorted(SURFACES.map((s) => `${s}:read`)));
    assertReach("read_all", { read: SURFACES });
  });

  it('seed 002: "write_all — Every :write scope"', () => {
    assert.deepEqual(bundle("write_all"), sorted(everyOf("write")));
    assert.deepEqual(bundle("write_all"), sorted(SURFACES.map((s) => `${s}:write`)));
    assertReach("write_all", { write: SURFACES });
  });

  it('seed 002: "full_access — Every scope"', () => {
    assert.deepEqual(bundle("full_access"), sorted(allScopes()));
    const k = key("api", "full_access");
    for (const r of apiRoutes(p)) assert.equal(p.checkRoute(k, r).allowed, true, `${r.method} ${r.path}`);
  });

  it('seed 002: "analytics_only — analytics:read, conversations:read"', () => {
    assert.deepEqual(bundle("analytics_only"), ["analytics:read", "conversations:read"]);
    assertReach("analytics_only", { read: ["analytics", "conversations"] });
  });

  it('seed 002: "integration — A balanced set covering most integration needs" — exists and is narrower than full_access', () => {
    const members = bundle("integration");
    assert.ok(members.length > 0);
    for (const s of members) assert.ok(allScopes().includes(s), s);
    assert.ok(members.length < allScopes().length);
  });

  it('seed 002: "Pick a bundle instead of selecting individual scopes" — a bundle expands at issue and records where its scopes came from', () => {
    const list = p.normalize("api", "basic,contacts:write");
    assert.deepEqual(list.errors, []);
    assert.deepEqual(sorted(list.scopes), ["contacts:read", "contacts:write", "conversations:read", "tags:read"]);
    assert.deepEqual(list.sources.get("tags:read"), ["basic"]);
    assert.deepEqual(sorted(list.sources.get("contacts:read") ?? []), ["basic"]);
    const explained = p.explain("api", list).find((e) => e.resource === "contacts");
    assert.deepEqual(sorted(explained?.actions ?? []), ["read", "write"]);
    assert.deepEqual(sorted(explained?.via ?? []), ["basic", "contacts:write"]);
  });

  it("seed 002: the bundles named are exactly basic, read_all, write_all, full_access, analytics_only, integration", () => {
    assert.deepEqual(sorted((p.spec.bundles ?? []).map((b) => b.id)), sorted(["basic", "read_all", "write_all", "full_access", "analytics_only", "integration"]));
  });
});

describe("Atender: picking minimum scopes (seed 002)", () => {
  it("seed 002: the profile's recipes are the seed's least-privilege list", () => {
    assert.deepEqual(
      (p.spec.recipes ?? []).map((r) => sorted(r.scopes)),
      [["knowledge:read", "knowledge:write"], ["analytics:read", "conversations:read"], ["contacts:write"], ["full_access"]],
    );
  });

  it('seed 002: "Sync KB articles from a markdown vault — knowledge:read, knowledge:write (nothing else)"', () => {
    assertReach("knowledge:read,knowledge:write", { write: ["knowledge"] });
  });

  it('seed 002: "Read-only BI dashboard — analytics:read, conversations:read"', () => {
    assertReach("analytics:read,conversations:read", { read: ["analytics", "conversations"] });
  });

  it('seed 002: "Customer onboarding tool that creates contacts — contacts:write"', () => {
    const k = key("api", "contacts:write");
    assertAllowed(k, "POST /api/v1/contacts/c-1");
    assertReach("contacts:write", { write: ["contacts"] });
  });

  it('seed 002: "Internal admin tool that fully manages everything — full_access"', () => {
    assertReach("full_access", { write: SURFACES });
  });
});

describe("Atender: normalising a requested list", () => {
  it("trims, lower-cases and dedupes, and rejects the whole list if one token is bad", () => {
    assert.deepEqual(scopes("api", " Knowledge:READ , knowledge:read"), ["knowledge:read"]);
    const bad = p.normalize("api", "knowledge:read,contacts,tags:delete");
    assert.deepEqual(bad.errors.map((e) => [e.scope, e.code]), [["contacts", "SCOPE_ACTION_REQUIRED"], ["tags:delete", "UNKNOWN_ACTION"]]);
    assert.deepEqual(bad.scopes, []);
  });
});
