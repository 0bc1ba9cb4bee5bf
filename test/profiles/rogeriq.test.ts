/**
 * RogerIQ profile against seed 004 (Scopes): coarse read/write/admin plus
 * resource:read|write|admin, method defaults with per-route overrides, the recipes.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { BUILTIN_PROFILES, compileProfileData, loadProfile } from "../../src/index.ts";
import { type Call, apiRoutes, apiScopes, harness, samplePath } from "./_helpers.ts";

const p = loadProfile("rogeriq");
const { scopes, errorCodes, key, route, assertAllowed, assertDenied, grants } = harness(p);

/** Seed 004, "Resources": resource -> API tab (null: dashboard-only). */
const RESOURCES: [string, string | null][] = [
  ["conversations", "Conversations"],
  ["messages", "Messages"],
  ["contacts", "Contacts"],
  ["kb", "Knowledge Base"],
  ["agent", "Agent"],
  ["widget", "Widget"],
  ["integrations", "Integrations"],
  ["forms", "Forms"],
  ["beacons", "Beacons"],
  ["webhooks", "Webhooks"],
  ["projects", "Projects"],
  ["analytics", null],
  ["audit", null],
];
const IDS = RESOURCES.map(([id]) => id);
const ACTIONS = ["read", "write", "admin"] as const;
type Action = (typeof ACTIONS)[number];

const PROJECT_DELETE: Call = "DELETE /v1/orgs/o-1/projects/p-1";
const KB_PATCH: Call = "PATCH /v1/projects/p-1/kb/articles/a-1";
const P = "/v1/projects/p-1";

const callOf = (r: { method: string; path: string }) => `${r.method} ${samplePath(r.path)}` as Call;
const isRead = (method: string) => method === "GET" || method === "HEAD";
const isProjectDelete = (r: { method: string; path: string }) => r.method === "DELETE" && r.path === "/v1/orgs/:orgId/projects/:projectId";

/** Asserts that a key granted `list` covers exactly the (resource, action) pairs `expected` accepts. */
function assertCovers(list: string, expected: (resource: string, action: Action) => boolean): void {
  const k = key("api", list);
  for (const resource of IDS) {
    for (const action of ACTIONS) {
      const want = expected(resource, action);
      assert.equal(grants(k, `${resource}:${action}`), want, `[${list}] ${want ? "should" : "should not"} cover ${resource}:${action}`);
    }
  }
}

describe("RogerIQ: the scope hierarchy (seed 004)", () => {
  it('seed 004: "API keys carry an array of scope strings" — a list, or the CLI\'s comma-separated --scopes', () => {
    assert.deepEqual(scopes("api", ["kb:write", "conversations:read"]), ["conversations:read", "kb:write"]);
    assert.deepEqual(scopes("api", "kb:write,conversations:read"), ["conversations:read", "kb:write"]);
  });

  it('seed 004: "admin grants everything"', () => {
    assertCovers("admin", () => true);
  });

  it('seed 004: "write grants any *:read and *:write (not *:admin)"', () => {
    assertCovers("write", (_r, action) => action !== "admin");
  });

  it('seed 004: "read grants any *:read"', () => {
    assertCovers("read", (_r, action) => action === "read");
  });

  for (const [resource] of RESOURCES) {
    it(`seed 004: "<resource>:admin grants :read + :write + :admin on that resource" — ${resource}:admin`, () => {
      assertCovers(`${resource}:admin`, (r) => r === resource);
    });
  }

  for (const [resource] of RESOURCES) {
    it(`seed 004: "<resource>:write grants :read + :write on that resource" — ${resource}:write`, () => {
      assertCovers(`${resource}:write`, (r, action) => r === resource && action !== "admin");
    });
  }

  for (const [resource] of RESOURCES) {
    it(`seed 004: "<resource>:read grants :read only" — ${resource}:read`, () => {
      assertCovers(`${resource}:read`, (r, action) => r === resource && action === "read");
    });
  }

  it('seed 004: "A scope check succeeds if any granted scope covers the requested scope"', () => {
    assertCovers("conversations:read,kb:admin", (r, action) => r === "kb" || (r === "conversations" && action === "read"));
    assertCovers("read,projects:admin", (r, action) => action === "read" || r === "projects");
    assertCovers("write,audit:admin", (r, action) => action !== "admin" || r === "audit");
    assertAllowed(key("api", "contacts:read,kb:write"), KB_PATCH);
  });

  it("seed 004: coarse read, write and admin are scopes a key can hold as written", () => {
    assert.deepEqual(scopes("api", "read"), ["read"]);
    assert.deepEqual(scopes("api", "WRITE"), ["write"]);
    assert.deepEqual(scopes("api", "admin,kb:admin"), ["admin", "kb:admin"]);
  });
});

describe("RogerIQ: resources (seed 004)", () => {
  it('seed 004: "Resources" — every resource of the table exists as resource:read|write|admin, and no other', () => {
    assert.deepEqual([...new Set(apiScopes(p).map((s) => s.split(":")[0]))].sort(), [...IDS].sort());
    for (const id of IDS) {
      for (const action of ACTIONS) assert.deepEqual(scopes("api", `${id}:${action}`), [`${id}:${action}`]);
    }
  });

  it("seed 004: a resource needs an action, and only read, write and admin exist", () => {
    assert.deepEqual(errorCodes("api", "kb"), ["SCOPE_ACTION_REQUIRED"]);
    assert.deepEqual(errorCodes("api", "kb:delete"), ["UNKNOWN_ACTION"]);
    assert.deepEqual(errorCodes("api", "insights:read"), ["UNKNOWN_SCOPE"]);
  });

  it('seed 004: "API tab" — every resource with an API tab has routes; analytics and audit are "(dashboard-only)"', () => {
    for (const [id, tab] of RESOURCES) {
      const routes = apiRoutes(p).filter((r) => r.spec.resource === id || JSON.stringify(r.spec.requires ?? "").includes(`"${id}:`));
      if (tab === null) assert.equal(routes.length, 0, `${id} is dashboard-only`);
      else assert.ok(routes.length > 0, `${id} (${tab}) has API routes`);
    }
  });

  it('seed 004: "Each API key is granted" at least one scope — an empty list is refused', () => {
    assert.deepEqual(errorCodes("api", ""), ["SCOPES_REQUIRED"]);
  });
});

describe("RogerIQ: method -> required scope (seed 004)", () => {
  it('seed 004: "GET, HEAD — read; POST, PATCH, PUT, DELETE — write" (the default rule)', () => {
    assert.deepEqual(p.spec.methodDefaults, { GET: "read", POST: "write", PUT: "write", PATCH: "write", DELETE: "write" });
  });

  it("seed 004: every route without an override requires its resource's read (GET, HEAD) or write (POST, PATCH, PUT, DELETE)", () => {
    for (const r of apiRoutes(p)) {
      if (r.spec.requires !== undefined) continue;
      const resource = r.spec.resource!;
      const needed = isRead(r.method) ? "read" : "write";
      const call = callOf(r);
      assertAllowed(key("api", `${resource}:${needed}`), call);
      if (needed === "write") assert.deepEqual(assertDenied(key("api", `${resource}:read`), call, "INSUFFICIENT_SCOPE").missing, [`${resource}:write`], call);
      const other = resource === "kb" ? "contacts" : "kb";
      assertDenied(key("api", `${other}:admin`), call, "INSUFFICIENT_SCOPE");
    }
  });

  it('seed 004: "GET, HEAD — read" — a HEAD request is checked like the GET route', () => {
    const reader = key("api", "read");
    for (const r of apiRoutes(p).filter((x) => x.method === "GET")) {
      const head = `HEAD ${samplePath(r.path)}` as Call;
      assert.equal(route(head), r);
      assertAllowed(reader, head);
    }
  });

  it('seed 004: "POST, PATCH, PUT, DELETE — write" — PUT and HEAD routes get the default too (profile with extra routes)', () => {
    const base = BUILTIN_PROFILES.rogeriq!;
    const extended = compileProfileData(
      {
        ...base,
        id: "rogeriq-extended",
        routes: [
          ...base.routes,
          { method: "PUT", path: "/v1/projects/:projectId/widget", resource: "widget" },
          { method: "HEAD", path: "/v1/projects/:projectId/forms/:id/exists", resource: "forms" },
        ],
      },
      "rogeriq-extended",
    );
    const h = harness(extended);
    h.assertAllowed(h.key("api", "widget:write"), "PUT /v1/projects/p-1/widget");
    assert.deepEqual(h.assertDenied(h.key("api", "widget:read"), "PUT /v1/projects/p-1/widget", "INSUFFICIENT_SCOPE").missing, ["widget:write"]);
    h.assertAllowed(h.key("api", "forms:read"), "HEAD /v1/projects/p-1/forms/f-1/exists");
  });

  it('seed 004: "Specific routes also require their resource-scoped verb" — PATCH on a KB article: "a key with ["kb:write"] works"', () => {
    assertAllowed(key("api", "kb:write"), KB_PATCH);
    assertAllowed(key("api", "kb:admin"), KB_PATCH);
  });

  it('seed 004: PATCH on a KB article — "write (or admin) coarse — old broad keys" still work', () => {
    assertAllowed(key("api", "write"), KB_PATCH);
    assertAllowed(key("api", "admin"), KB_PATCH);
  });

  it('seed 004: PATCH on a KB article — "A key with ["read"] gets INSUFFICIENT_SCOPE"', () => {
    const d = assertDenied(key("api", "read"), KB_PATCH, "INSUFFICIENT_SCOPE");
    assert.equal(d.reason, "scope");
    assert.deepEqual(d.missing, ["kb:write"]);
    assert.deepEqual(d.coveredBy, ["write", "admin", "kb:write", "kb:admin"]);
    assert.equal(p.errorCodes.INSUFFICIENT_SCOPE?.status, 403);
    assertDenied(key("api", "kb:read"), KB_PATCH, "INSUFFICIENT_SCOPE");
    assertDenied(key("api", "conversations:write"), KB_PATCH, "INSUFFICIENT_SCOPE");
  });
});

describe("RogerIQ: destructive operations (seed 004)", () => {
  it('seed 004: "DELETE /v1/orgs/:orgId/projects/:projectId — projects:admin"', () => {
    assertAllowed(key("api", "projects:admin"), PROJECT_DELETE);
    const d = assertDenied(key("api", "projects:write"), PROJECT_DELETE, "INSUFFICIENT_SCOPE");
    assert.deepEqual(d.missing, ["projects:admin"]);
  });

  it('seed 004: "A few routes are gated on <resource>:admin (or coarse admin)" — coarse write is not enough for project deletion, admin is', () => {
    const d = assertDenied(key("api", "write"), PROJECT_DELETE, "INSUFFICIENT_SCOPE");
    assert.deepEqual(d.missing, ["projects:admin"]);
    assert.deepEqual(d.coveredBy, ["admin", "projects:admin"]);
    assert.ok(!d.coveredBy.includes("write") && !d.coveredBy.includes("projects:write"));
    assertAllowed(key("api", "admin"), PROJECT_DELETE);
  });

  it('seed 004: "Most DELETEs require <resource>:write" — every other DELETE passes with resource:write and fails with resource:read', () => {
    const deletes = apiRoutes(p).filter((r) => r.method === "DELETE" && !isProjectDelete(r));
    assert.ok(deletes.length >= 5);
    for (const r of deletes) {
      const resource = r.spec.resource!;
      assertAllowed(key("api", `${resource}:write`), callOf(r));
      assertAllowed(key("api", "write"), callOf(r));
      assertDenied(key("api", `${resource}:read`), callOf(r), "INSUFFICIENT_SCOPE");
    }
  });

  it('seed 004: "Project deletion is the notable exception" — the only route coarse write cannot call', () => {
    const writer = key("api", "write");
    const refused = apiRoutes(p).filter((r) => !p.checkRoute(writer, r).allowed).map((r) => `${r.method} ${r.path}`);
    assert.deepEqual(refused, ["DELETE /v1/orgs/:orgId/projects/:projectId"]);
  });
});

describe("RogerIQ: recipes (seed 004)", () => {
  const kbBot = () => key("api", "kb:write,conversations:read");

  it("seed 004: the profile's recipes are the seed's kb-bot, metrics-reader (two forms) and ops-ci keys", () => {
    assert.deepEqual(
      (p.spec.recipes ?? []).map((r) => r.scopes.join(",")),
      ["kb:write,conversations:read", "read", "conversations:read,contacts:read,analytics:read", "admin"],
    );
    for (const r of p.spec.recipes ?? []) assert.deepEqual(p.normalize("api", r.scopes).errors, [], r.task);
  });

  it('seed 004: kb-bot (kb:write,conversations:read) "can: search KB, list articles, create / update / publish KB articles"', () => {
    const k = kbBot();
    for (const call of [`GET ${P}/kb/search?q=refund`, `GET ${P}/kb/articles`, `GET ${P}/kb/articles/a-1`, `POST ${P}/kb/articles`, `PATCH ${P}/kb/articles/a-1`, `POST ${P}/kb/articles/a-1/publish`] as Call[]) {
      assertAllowed(k, call, "kb-bot");
    }
  });

  it('seed 004: kb-bot can "read conversations to pull context"', () => {
    const k = kbBot();
    assertAllowed(k, `GET ${P}/conversations`, "kb-bot");
    assertAllowed(k, `GET ${P}/conversations/c-1`, "kb-bot");
    assertAllowed(k, `GET ${P}/conversations/c-1/messages`, "kb-bot");
    assertDenied(k, `PATCH ${P}/conversations/c-1`, "INSUFFICIENT_SCOPE", "kb-bot");
  });

  it('seed 004: kb-bot "cannot: send replies"', () => {
    const d = assertDenied(kbBot(), `POST ${P}/conversations/c-1/messages`, "INSUFFICIENT_SCOPE", "kb-bot");
    assert.deepEqual(d.missing, ["messages:write"]);
    assert.deepEqual(d.coveredBy, ["write", "admin", "messages:write", "messages:admin"]);
  });

  it('seed 004: kb-bot "cannot: ... change agent config"', () => {
    assert.deepEqual(assertDenied(kbBot(), `PATCH ${P}/agent/config`, "INSUFFICIENT_SCOPE", "kb-bot").missing, ["agent:write"]);
  });

  it('seed 004: kb-bot "cannot: ... modify the widget"', () => {
    assert.deepEqual(assertDenied(kbBot(), `PATCH ${P}/widget`, "INSUFFICIENT_SCOPE", "kb-bot").missing, ["widget:write"]);
  });

  it('seed 004: kb-bot "cannot: ... manage integrations"', () => {
    for (const call of [`POST ${P}/integrations`, `PATCH ${P}/integrations/i-1`, `DELETE ${P}/integrations/i-1`] as Call[]) {
      assert.deepEqual(assertDenied(kbBot(), call, "INSUFFICIENT_SCOPE", "kb-bot").missing, ["integrations:write"], call);
    }
  });

  it('seed 004: "Read-only metrics scraper — --scopes read" reads everything and writes nothing', () => {
    const k = key("api", "read");
    for (const r of apiRoutes(p)) {
      // keygate's own endpoints (requires nothing) are open to every key.
      if (isRead(r.method) || r.spec.requires === null) assertAllowed(k, callOf(r), "read");
      else assertDenied(k, callOf(r), "INSUFFICIENT_SCOPE", "read");
    }
  });

  it('seed 004: "Or fully granular: --scopes conversations:read,contacts:read,analytics:read"', () => {
    const k = key("api", "conversations:read,contacts:read,analytics:read");
    for (const s of ["conversations:read", "contacts:read", "analytics:read"]) assert.ok(grants(k, s), s);
    for (const r of apiRoutes(p)) {
      // A conversation's messages are part of reading the conversation.
      // keygate's own self-description (requires nothing) is open to every key.
      const allowed = r.spec.requires === null || (isRead(r.method) && (r.spec.resource === "conversations" || r.spec.resource === "contacts" || r.path.endsWith("/conversations/:id/messages")));
      if (allowed) assertAllowed(k, callOf(r), "metrics-reader");
      else assertDenied(k, callOf(r), "INSUFFICIENT_SCOPE", "metrics-reader");
    }
  });

  it('seed 004: "Full-access ops key (CI pipelines) — --scopes admin" can call every route', () => {
    const k = key("api", "admin");
    for (const r of apiRoutes(p)) assertAllowed(k, callOf(r), "admin");
  });
});

describe("RogerIQ: migration from coarse to granular (seed 004)", () => {
  it('seed 004: "Coarse read / write / admin continue to work everywhere"', () => {
    const reader = key("api", "read");
    const writer = key("api", "write");
    const admin = key("api", "admin");
    for (const r of apiRoutes(p)) {
      assertAllowed(admin, callOf(r), "admin");
      if (isRead(r.method)) assertAllowed(reader, callOf(r), "read");
      if (!isProjectDelete(r)) assertAllowed(writer, callOf(r), "write");
    }
  });

  it('seed 004: "Granular scopes are additive" — a key holding coarse and granular scopes gets both', () => {
    const k = key("api", "read,kb:write");
    assertAllowed(k, KB_PATCH);
    assertAllowed(k, `GET ${P}/contacts`);
    assertDenied(k, `POST ${P}/contacts`, "INSUFFICIENT_SCOPE");
    assertCovers("read,kb:write", (r, action) => action === "read" || (r === "kb" && action === "write"));
  });
});

describe("RogerIQ: normalising a requested list", () => {
  it("trims, lower-cases and dedupes; one bad token rejects the list", () => {
    assert.deepEqual(scopes("api", " KB:Write , kb:write,READ "), ["read", "kb:write"]);
    const bad = p.normalize("api", "kb:write,kb:delete,kb");
    assert.deepEqual(bad.errors.map((e) => [e.scope, e.code]), [["kb:delete", "UNKNOWN_ACTION"], ["kb", "SCOPE_ACTION_REQUIRED"]]);
    assert.deepEqual(bad.scopes, []);
  });
});
