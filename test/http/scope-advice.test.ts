/**
 * Issue 18: GET /v1/keys/:id/scope-advice, from real traffic sent here, on each profile: the
 * narrowest scopes that cover what a key did, its unused scopes, requests refused for a scope,
 * and a narrowing that, PATCHed, keeps the integration working.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";

/** A success in either envelope (VibeCode's {success, data}, the flat {data} of RogerIQ and Atender): its data. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function ok(r: Reply, status = 200): any {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.ok(r.body?.data !== undefined, JSON.stringify(r.body));
  return r.body.data;
}

/** A refusal in either envelope, by status and code. */
function fails(r: Reply, status: number, code: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body?.error?.code ?? r.body?.code, code, JSON.stringify(r.body));
}

async function makeKey(h: Harness, portalId: string, scopes: string[]): Promise<{ id: string; raw: string }> {
  const data = ok(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "Advised", scopes } }), 201);
  return { id: data.id, raw: data.rawKey };
}

async function addMember(h: Harness, portalId: string, email: string, role: "ADMIN" | "MEMBER" = "MEMBER"): Promise<void> {
  ok(await h.call("POST", `/v1/portals/${portalId}/members`, { key: h.owner.key, body: { email, role } }), 201);
}

/** An HTTP upstream that answers 200 to everything (RogerIQ, Atender). */
async function startUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

async function httpPortal(h: Harness, baseUrl: string): Promise<string> {
  const domain = `up-${Math.random().toString(16).slice(2, 8)}.example.com`;
  return ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain, upstream: { kind: "http", baseUrl } } }), 201).id;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function advice(h: Harness, keyId: string, by = h.owner.key): Promise<any> {
  return ok(await h.call("GET", `/v1/keys/${keyId}/scope-advice`, { key: by }));
}

for (const kind of await storeKinds("http: scope advice")) {
  describe(`scope advice: RogerIQ [${kind}]`, () => {
    let h: Harness;
    let up: Awaited<ReturnType<typeof startUpstream>>;
    let portalId: string;
    const P = "/v1/projects/p1";

    before(async () => {
      up = await startUpstream();
      h = await startHarness(kind, { profile: "rogeriq", allowUpstream: ["127.0.0.1"] });
      portalId = await httpPortal(h, up.url);
    });
    after(async () => {
      await h.close();
      await up.close();
    });

    it("issue 18: a key holding admin that only ever listed KB articles is advised kb:read; narrowing to it keeps the listing and refuses the rest", async () => {
      const key = await makeKey(h, portalId, ["admin"]);
      for (const q of ["", "?page=2", "?status=published&page=3"]) assert.equal((await h.call("GET", `${P}/kb/articles${q}`, { key: key.raw })).status, 200);
      const a = await advice(h, key.id);
      assert.deepEqual(a.observedRoutes, [{ method: "GET", route: "/v1/projects/:projectId/kb/articles", count: 3, lastAt: a.observedRoutes[0].lastAt, requires: ["kb:read"] }]);
      assert.ok(!Number.isNaN(Date.parse(a.observedRoutes[0].lastAt)));
      assert.deepEqual(a.suggestedScopes, [{ scope: "kb:read", reason: "covers", covers: ["kb:read"], held: true }]);
      assert.deepEqual(a.unusedScopes, [], "admin was used, only broader than needed");
      assert.deepEqual(a.neededNotHeld, []);
      assert.deepEqual(a.narrowTo, ["kb:read"]);
      assert.equal(a.window.requests, 3);
      assert.equal(a.window.unmatchedRequests, 0);
      assert.deepEqual(a.confidence.level, "low");
      assert.match(a.confidence.note, /Based on 3 requests/);
      assert.deepEqual(a.scopes, ["admin"]);

      const narrowed = ok(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { scopes: a.narrowTo } }));
      assert.deepEqual(narrowed.scopes, ["kb:read"]);
      assert.equal((await h.call("GET", `${P}/kb/articles`, { key: key.raw })).status, 200, "the integration still works");
      fails(await h.call("POST", `${P}/kb/articles`, { key: key.raw, body: { title: "x" } }), 403, "INSUFFICIENT_SCOPE");

      const after = await advice(h, key.id);
      assert.deepEqual(after.neededNotHeld.map((n: { method: string; route: string; missing: string[]; count: number }) => [n.method, n.route, n.missing, n.count]), [
        ["POST", "/v1/projects/:projectId/kb/articles", ["kb:write"], 1],
      ]);
      assert.deepEqual(after.suggestedScopes, [{ scope: "kb:write", reason: "covers", covers: ["kb:read", "kb:write"], held: false }], "the refused request counts: kb:write is needed, and not held");
      assert.equal(after.narrowTo, null, "nothing left to remove");
    });

    it("only the key's owner and its portal's admins get advice; a management key needs the keys scope; a portal key is no management key", async () => {
      const key = await makeKey(h, portalId, ["read"]);
      const stranger = await h.user("stranger@example.com");
      fails(await h.call("GET", `/v1/keys/${key.id}/scope-advice`, { key: stranger.key }), 404, "KEY_NOT_FOUND");
      const member = await h.user("member@example.com");
      await addMember(h, portalId, "member@example.com");
      fails(await h.call("GET", `/v1/keys/${key.id}/scope-advice`, { key: member.key }), 404, "KEY_NOT_FOUND");
      const admin = await h.user("admin@example.com");
      await addMember(h, portalId, "admin@example.com", "ADMIN");
      assert.deepEqual((await advice(h, key.id, admin.key)).suggestedScopes, []);
      const noKeysScope = await h.user("portals-only@example.com", "keygate:portals");
      fails(await h.call("GET", `/v1/keys/${key.id}/scope-advice`, { key: noKeysScope.key }), 403, "MANAGEMENT_SCOPE_REQUIRED");
      fails(await h.call("GET", `/v1/keys/${key.id}/scope-advice`, { key: key.raw }), 403, "MANAGEMENT_KEY_REQUIRED");
      fails(await h.call("GET", "/v1/keys/no-such-key/scope-advice", { key: h.owner.key }), 404, "KEY_NOT_FOUND");
    });
  });
}

describe("scope advice: Atender [sqlite]", () => {
  let h: Harness;
  let up: Awaited<ReturnType<typeof startUpstream>>;

  before(async () => {
    up = await startUpstream();
    h = await startHarness("sqlite", { profile: "atender", allowUpstream: ["127.0.0.1"] });
  });
  after(async () => {
    await h.close();
    await up.close();
  });

  it("issue 18: reading and writing KB articles with full_access is advised knowledge:write alone (write implies read); every other scope is unused", async () => {
    const portalId = await httpPortal(h, up.url);
    const key = await makeKey(h, portalId, ["full_access"]);
    assert.equal((await h.call("GET", "/api/v1/kb/articles", { bearer: key.raw })).status, 200);
    assert.equal((await h.call("GET", "/api/v1/kb/articles/5", { bearer: key.raw })).status, 200);
    assert.equal((await h.call("POST", "/api/v1/kb/articles", { bearer: key.raw, body: { title: "t" } })).status, 200);
    const a = await advice(h, key.id);
    assert.deepEqual(
      a.observedRoutes.map((r: { method: string; route: string; count: number; requires: string[] }) => [r.method, r.route, r.count, r.requires]),
      [
        ["GET", "/api/v1/kb/*", 2, ["knowledge:read"]],
        ["POST", "/api/v1/kb/*", 1, ["knowledge:write"]],
      ],
    );
    assert.deepEqual(a.suggestedScopes, [{ scope: "knowledge:write", reason: "covers", covers: ["knowledge:read", "knowledge:write"], held: true }]);
    assert.ok(a.unusedScopes.includes("contacts:read") && a.unusedScopes.includes("webhooks:write"));
    assert.ok(!a.unusedScopes.includes("knowledge:read") && !a.unusedScopes.includes("knowledge:write"));
    assert.deepEqual(a.narrowTo, ["knowledge:write"]);
    const narrowed = ok(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { scopes: a.narrowTo } }));
    assert.deepEqual(narrowed.scopes, ["knowledge:write"]);
    assert.equal((await h.call("GET", "/api/v1/kb/articles", { bearer: key.raw })).status, 200);
  });
});

describe("scope advice: VibeCode [sqlite]", () => {
  let h: Harness;

  before(async () => {
    h = await startHarness("sqlite", { listen: true });
  });
  after(async () => {
    await h.close();
  });

  it("issue 18: tasks need task and tasks together, the platform's auto-granted scopes stay, and a refused deal listing is needed but not held", async () => {
    const portalId = ok(await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "advised.bitrix24.ru", upstream: { kind: "sandbox" } } }), 201).id;
    const key = await makeKey(h, portalId, ["task", "tasks", "user", "disk"]);
    ok(await h.call("GET", "/v1/tasks", { key: key.raw }));
    ok(await h.call("GET", "/v1/tasks", { key: key.raw }));
    fails(await h.call("GET", "/v1/deals", { key: key.raw }), 403, "SCOPE_DENIED");
    assert.equal((await h.call("GET", "/v1/no-such-thing", { key: key.raw })).status, 404);
    const a = await advice(h, key.id);
    const byScope = new Map(a.suggestedScopes.map((s: { scope: string }) => [s.scope, s]));
    assert.deepEqual(byScope.get("task"), { scope: "task", reason: "covers", covers: ["task"], held: true });
    assert.deepEqual(byScope.get("tasks"), { scope: "tasks", reason: "covers", covers: ["tasks"], held: true });
    assert.deepEqual(byScope.get("crm"), { scope: "crm", reason: "covers", covers: ["crm"], held: false });
    assert.equal((byScope.get("vibe:ai") as { reason: string }).reason, "auto-granted");
    assert.deepEqual(a.unusedScopes, ["disk", "user"]);
    assert.deepEqual(
      a.neededNotHeld.map((n: { method: string; route: string; missing: string[]; count: number }) => [n.method, n.route, n.missing, n.count]),
      [["GET", "/v1/deals", ["crm"], 1]],
    );
    assert.equal(a.window.requests, 4);
    assert.equal(a.window.unmatchedRequests, 1, "the unknown path matched no route");
    // Narrowing only removes: crm (not held) is not added, disk and user go; Bitrix24 scopes stay in effect (no reissue needed).
    assert.deepEqual(a.narrowTo, ["task", "tasks", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]);
    const narrowed = ok(await h.call("PATCH", `/v1/keys/${key.id}`, { key: h.owner.key, body: { scopes: a.narrowTo } }));
    assert.deepEqual(narrowed.scopesPendingReissue, []);
    ok(await h.call("GET", "/v1/tasks", { key: key.raw }));
  });
});
