/**
 * What a key says about itself and the platform — GET /v1/me for the three key types, GET
 * /v1/guide, GET /v1/openapi.json — and the owner's notifications, over HTTP on both stores
 * (seeds 001 and 003). Every test is named after the seed sentence or rule it checks; each makes
 * its own users, portals and keys through the API.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { type CallOptions, type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";

type Who = Awaited<ReturnType<Harness["user"]>>;
const PLATFORM_AUTO = ["vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"];

/** The data of a successful reply with the given status. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function ok(r: Reply, status = 200): any {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.success, true, JSON.stringify(r.body));
  return r.body.data;
}

/** A refusal: the status, the code, a message and, when given, the field at fault. */
function refused(r: Reply, status: number, code: string, param?: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.success, false, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code, JSON.stringify(r.body));
  assert.ok(typeof r.body.error.message === "string" && r.body.error.message.length > 0);
  if (param !== undefined) assert.equal(r.body.error.param, param, JSON.stringify(r.body));
}

/** "METHOD /path" of guide and api entries. */
const routeLines = (entries: { method: string; path: string }[]) => entries.map((e) => `${e.method} ${e.path}`);

for (const kind of await storeKinds("http: self-description")) {
  describe(`self-description [${kind}]`, () => {
    let h: Harness;
    let seq = 0;
    before(async () => (h = await startHarness(kind, { listen: true })));
    after(() => h.close());

    const uniq = (label: string) => `${label}-${++seq}`;
    const newUser = (label: string, scopes?: string) => h.user(`${uniq(label)}@example.com`, scopes);
    const as = (who: Who | string, method: string, path: string, options: Omit<CallOptions, "key"> = {}) =>
      h.call(method, path, { key: typeof who === "string" ? who : who.key, ...options });
    const me = async (key: string) => ok(await h.call("GET", "/v1/me", { key }));

    async function createPortal(admin: Who, body: Record<string, unknown> = {}) {
      return ok(await as(admin, "POST", "/v1/portals", { body: { domain: `${uniq("portal")}.bitrix24.ru`, upstream: { kind: "sandbox" }, ...body } }), 201);
    }
    async function createKey(who: Who, portalId: string, body: Record<string, unknown> = {}) {
      return ok(await as(who, "POST", "/v1/keys", { body: { portalId, name: uniq("key"), scopes: ["crm"], ...body } }), 201);
    }
    async function addMember(admin: Who, portalId: string, who: Who, role: "ADMIN" | "MEMBER" = "MEMBER") {
      ok(await as(admin, "POST", `/v1/portals/${portalId}/members`, { body: { email: who.user.email, role } }), 201);
    }
    /** An admin with a portal, a member of it with a key, and a user outside it. */
    async function team() {
      const admin = await newUser("admin");
      const member = await newUser("member");
      const outsider = await newUser("outsider");
      const portal = await createPortal(admin);
      await addMember(admin, portal.id, member);
      const key = await createKey(member, portal.id, { name: "Member key" });
      return { admin, member, outsider, portal, key };
    }

    describe("GET /v1/me — API key (vibe_api_)", () => {
      it("returns the key type, portal, scopes (the four platform scopes added automatically), limits, auth, owner and expiry", async () => {
        const admin = await newUser("ivan");
        const portal = await createPortal(admin);
        const key = await createKey(admin, portal.id, { scopes: ["crm", "tasks", "user"], expiresAt: "2027-06-01T00:00:00Z" });
        const d = await me(key.rawKey);
        assert.equal(d.type, "personal");
        assert.equal(d.portal, portal.domain);
        assert.deepEqual(d.scopes, ["crm", "tasks", "user", ...PLATFORM_AUTO]);
        assert.deepEqual(d.scopesInEffect, d.scopes);
        assert.deepEqual(d.scopesPendingReissue, []);
        assert.equal(d.accessMode, "READWRITE");
        assert.equal(d.rateLimit.requestsPerSecond, 10);
        assert.match(d.auth.personalKey, /^X-Api-Key: vibe_api_/);
        assert.deepEqual(d.owner, { name: admin.user.name, userId: admin.user.id });
        assert.equal(d.expiresAt, "2027-06-01T00:00:00.000Z");
        assert.equal(d.currentUser, null, "no session user behind an API key");
      });

      it("contains the api (map of available endpoints), capabilities and errorCodes sections", async () => {
        const admin = await newUser("sections");
        const portal = await createPortal(admin);
        const key = await createKey(admin, portal.id, { scopes: ["crm"] });
        const d = await me(key.rawKey);
        const api = routeLines(d.api.endpoints);
        for (const line of ["GET /v1/me", "GET /v1/deals", "POST /v1/deals", "GET /v1/contacts/:id", "GET /v1/infra/servers"]) assert.ok(api.includes(line), line);
        assert.ok(!api.includes("GET /v1/tasks"), "a crm key's map leaves out tasks");
        assert.ok(!api.some((l) => l.includes("/v1/portals") || l.includes("/v1/keys")), "no management endpoints for an API key");
        assert.match(d.api.baseUrl, /\/v1$/);
        assert.ok(d.capabilities.endpoints.some((l: string) => /^GET \S+\/v1\/deals — /.test(l)));
        assert.deepEqual(d.capabilities.servers.create, { available: true }, "an API key acts as its owner: no session needed");
        assert.deepEqual(d.errorCodes.WRITE_BLOCKED_READONLY_KEY, { status: 403, message: "Key is in read-only mode. Switch to read+write in /keys to enable writes." });
        assert.equal(d.errorCodes.KEY_INACTIVE.status, 401);
        assert.equal(d.errorCodes.KEY_POLICY_READONLY_REQUIRED.status, 403);
        assert.equal(d.errorCodes.BITRIX_ACCESS_DENIED.status, 403);
      });

      it("If you add a Bitrix24 scope in the settings of an already-existing key, GET /v1/me will show it in the list, but requests that need it will return BITRIX_ACCESS_DENIED", async () => {
        const admin = await newUser("locked");
        const portal = await createPortal(admin);
        const key = await createKey(admin, portal.id, { scopes: ["crm"] });
        refused(await h.call("GET", "/v1/users", { key: key.rawKey }), 403, "SCOPE_DENIED");
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { scopes: ["crm", "user"] } }));

        const d = await me(key.rawKey);
        assert.ok(d.scopes.includes("user"), "shown in the list");
        assert.deepEqual(d.scopesPendingReissue, ["user"]);
        assert.ok(!d.scopesInEffect.includes("user"));
        assert.ok(d.scopesInEffect.includes("crm"));
        refused(await h.call("GET", "/v1/users", { key: key.rawKey }), 403, "BITRIX_ACCESS_DENIED");

        // API key: reissue the key — the new one holds the scope.
        const rotated = ok(await as(admin, "POST", `/v1/keys/${key.id}/rotate`), 201);
        const after = await me(rotated.rawKey);
        assert.deepEqual(after.scopesPendingReissue, []);
        assert.ok(after.scopesInEffect.includes("user"));
        assert.equal((await h.call("GET", "/v1/users", { key: rotated.rawKey })).status, 200, "the reissued key reads the portal's users");
      });

      it("The value in effect for the key is returned by GET /v1/me in rateLimit.requestsPerSecond: the key's limit, else the portal's, else 10", async () => {
        const admin = await newUser("limits");
        const portal = await createPortal(admin);
        const plain = await createKey(admin, portal.id);
        const own = await createKey(admin, portal.id, { rateLimit: 3 });
        assert.equal((await me(plain.rawKey)).rateLimit.requestsPerSecond, 10, "about 10 requests per second by default");
        assert.equal((await me(own.rawKey)).rateLimit.requestsPerSecond, 3);

        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { requestLimit: 25 } }));
        assert.equal((await me(plain.rawKey)).rateLimit.requestsPerSecond, 25);
        assert.equal((await me(own.rawKey)).rateLimit.requestsPerSecond, 3, "the key's own limit wins");

        ok(await as(admin, "PATCH", `/v1/keys/${own.id}`, { body: { rateLimit: null } }));
        assert.equal((await me(own.rawKey)).rateLimit.requestsPerSecond, 25);
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { requestLimit: null } }));
        assert.equal((await me(own.rawKey)).rateLimit.requestsPerSecond, 10);
      });

      it("The GET /v1/me endpoint returns the key's effective mode in the data.accessMode field", async () => {
        const admin = await newUser("mode");
        const portal = await createPortal(admin);
        const key = await createKey(admin, portal.id, { accessMode: "READONLY" });
        assert.equal((await me(key.rawKey)).accessMode, "READONLY");
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READWRITE" } }));
        assert.equal((await me(key.rawKey)).accessMode, "READWRITE");
      });
    });

    describe("GET /v1/me — authorization key (vibe_app_)", () => {
      it("Response for an authorization key: type oauth_app, the app {title, id}, and oauth {authorizeUrl, requiredParams.state 16–512, tokenUrl, revokeUrl}", async () => {
        const admin = await newUser("appowner");
        const portal = await createPortal(admin);
        const app = await createKey(admin, portal.id, { type: "app", name: "CRM Dashboard", scopes: ["crm", "vibe:infra"] });
        assert.match(app.rawKey, /^vibe_app_/);
        const d = await me(app.rawKey);
        assert.equal(d.type, "oauth_app");
        assert.equal(d.portal, portal.domain);
        assert.deepEqual(d.scopes, ["crm", "vibe:infra"]);
        assert.deepEqual(d.app, { title: "CRM Dashboard", id: app.id });
        assert.match(d.oauth.authorizeUrl, /\/v1\/oauth\/authorize\?app_key=vibe_app_/);
        assert.ok(!d.oauth.authorizeUrl.includes(app.rawKey), "the template does not repeat the secret");
        assert.deepEqual(d.oauth.requiredParams.state, { required: true, minLength: 16, maxLength: 512 });
        assert.equal(d.oauth.requiredParams.redirect_uri.required, false);
        assert.match(d.oauth.tokenUrl, /\/v1\/oauth\/token$/);
        assert.match(d.oauth.revokeUrl, /\/v1\/oauth\/revoke$/);
        assert.match(d.auth.header, /X-Api-Key: .*\+ Authorization: Bearer/);
        assert.deepEqual(d.owner, { name: admin.user.name, userId: admin.user.id });
        assert.equal(d.currentUser, null, "no session: keygate issues none yet");
      });

      it("capabilities.servers.create is not available to an authorization key without a session: reason SESSION_REQUIRED", async () => {
        const admin = await newUser("appservers");
        const portal = await createPortal(admin);
        const app = await createKey(admin, portal.id, { type: "app", scopes: ["crm", "vibe:infra"] });
        const d = await me(app.rawKey);
        assert.deepEqual(d.capabilities.servers.create, { available: false, reason: "SESSION_REQUIRED" });
        assert.deepEqual(d.capabilities.servers.list, { available: true }, "listing needs no user");
        refused(await h.call("POST", "/v1/infra/servers", { key: app.rawKey, body: {} }), 401, "UNAUTHENTICATED");
      });
    });

    describe("GET /v1/me — management key (vibe_live_)", () => {
      it("returns type management, keyPrefix, keySuffix, expiresAt, capabilities, the portals with role and key counts, totalAppKeys and a quickstart", async () => {
        const user = await newUser("manager");
        const other = await newUser("otheradmin");
        const own = await createPortal(user);
        await createKey(user, own.id);
        await createKey(user, own.id);
        await createKey(user, own.id, { type: "app" });
        h.clock.advance(1000);
        const shared = await createPortal(other);
        await addMember(other, shared.id, user);
        await createKey(user, shared.id);
        h.clock.advance(1000);
        const unlinked = ok(await as(user, "POST", "/v1/portals", { body: { domain: `${uniq("unlinked")}.bitrix24.ru` } }), 201);

        const d = await me(user.key);
        assert.equal(d.type, "management");
        assert.match(d.keyPrefix, /^vibe_live_\w+$/);
        assert.ok(user.key.startsWith(d.keyPrefix));
        assert.equal(d.keySuffix, user.key.slice(-4));
        assert.equal(d.expiresAt, null);
        assert.deepEqual(d.owner, { name: user.user.name, userId: user.user.id });
        assert.deepEqual(
          d.portals.map((p: Record<string, unknown>) => ({ id: p.id, domain: p.domain, status: p.status, role: p.role, appKeyCount: p.appKeyCount })),
          [
            { id: own.id, domain: own.domain, status: "ACTIVE", role: "ADMIN", appKeyCount: 3 },
            { id: shared.id, domain: shared.domain, status: "ACTIVE", role: "MEMBER", appKeyCount: 1 },
            { id: unlinked.id, domain: unlinked.domain, status: "ACTIVE", role: "ADMIN", appKeyCount: 0 },
          ],
        );
        assert.equal(d.totalAppKeys, 4, "management keys are not counted");
        assert.deepEqual(Object.keys(d.quickstart), ["step1", "step2", "step3", "step4"]);
        assert.match(d.quickstart.step1, /^GET \S+\/v1\/portals — list available portals$/);
        assert.match(d.quickstart.step2, /^GET \S+\/v1\/keys\?portalId=<id> — list APP keys for a portal$/);
        assert.match(d.quickstart.step3, /^POST \S+\/v1\/keys \{ portalId, name, scopes \} — create an APP key$/);
        assert.equal(d.quickstart.step4, "Use the APP key for entity API calls (deals, tasks, etc.)");
        assert.equal(d.currentUser, null);
      });

      it("capabilities are lines \"METHOD URL — description\" of the endpoints this management key can call", async () => {
        const full = await me((await newUser("allscopes")).key);
        assert.ok(Array.isArray(full.capabilities));
        for (const line of full.capabilities) assert.match(line, /^(GET|POST|PATCH|PUT|DELETE) https?:\/\/\S+\/v1\/\S* — \S/, line);
        const paths = full.capabilities.map((l: string) => l.replace(/^(\S+) https?:\/\/[^/]+(\S*) — .*$/, "$1 $2"));
        for (const line of ["GET /v1/me", "GET /v1/guide", "GET /v1/portals", "GET /v1/keys", "POST /v1/keys", "PATCH /v1/keys/:id", "DELETE /v1/keys/:id", "POST /v1/keys/:id/rotate", "GET /v1/feedback"]) {
          assert.ok(paths.includes(line), line);
        }
        assert.ok(!paths.includes("GET /v1/deals"), "no Bitrix24 entities for a management key");

        const keysOnly = await me((await newUser("keysonly", "vibe:mgmt:keys")).key);
        const keysPaths = keysOnly.capabilities.map((l: string) => l.replace(/^(\S+) https?:\/\/[^/]+(\S*) — .*$/, "$1 $2"));
        assert.ok(keysPaths.includes("POST /v1/keys"));
        assert.ok(keysPaths.includes("GET /v1/me"));
        assert.ok(!keysPaths.includes("GET /v1/portals"), "without vibe:mgmt:portals, /v1/portals is not offered");
        assert.ok(!keysPaths.includes("GET /v1/feedback"));
      });

      it("The endpoints /v1/me, /v1/guide, and /v1/openapi.json are available to any management key without a separate scope", async () => {
        const feedbackOnly = await newUser("feedbackonly", "vibe:mgmt:feedback");
        assert.equal((await me(feedbackOnly.key)).type, "management");
        ok(await as(feedbackOnly, "GET", "/v1/guide"));
        const spec = await as(feedbackOnly, "GET", "/v1/openapi.json");
        assert.equal(spec.status, 200);
        refused(await as(feedbackOnly, "GET", "/v1/portals"), 403, "MANAGEMENT_SCOPE_REQUIRED");
        refused(await as(feedbackOnly, "GET", "/v1/keys?portalId=x"), 403, "MANAGEMENT_SCOPE_REQUIRED");
      });
    });

    describe("GET /v1/me — every key type", () => {
      it("/v1/me is reachable by every key type with no scope required, also by a read-only key", async () => {
        const admin = await newUser("everytype");
        const portal = await createPortal(admin);
        const api = await createKey(admin, portal.id, { accessMode: "READONLY" });
        const app = await createKey(admin, portal.id, { type: "app", accessMode: "READONLY" });
        const mgmtId = (await me(admin.key)).keyId;
        ok(await as(admin, "PATCH", `/v1/keys/${mgmtId}`, { body: { accessMode: "READONLY" } }));
        const minimal = await newUser("minimal", "vibe:mgmt:feedback");

        const types: [string, string][] = [
          [api.rawKey, "personal"],
          [app.rawKey, "oauth_app"],
          [admin.key, "management"],
          [minimal.key, "management"],
        ];
        for (const [key, type] of types) {
          assert.equal((await me(key)).type, type);
          ok(await h.call("GET", "/v1/guide", { key }));
          assert.equal((await h.call("GET", "/v1/openapi.json", { key })).status, 200);
        }
        assert.equal((await me(api.rawKey)).accessMode, "READONLY");
        assert.equal((await me(app.rawKey)).accessMode, "READONLY");
        assert.equal((await me(admin.key)).accessMode, "READONLY");
        // Sent as Authorization: Bearer, for clients that can only send Bearer (API and management keys).
        assert.equal((await ok(await h.call("GET", "/v1/me", { bearer: api.rawKey }))).type, "personal");
        assert.equal((await ok(await h.call("GET", "/v1/me", { bearer: admin.key }))).type, "management");
      });

      it("a management key in read-only mode can read settings and the event log but cannot create keys or change a portal", async () => {
        const admin = await newUser("readonlymgmt");
        const portal = await createPortal(admin);
        ok(await as(admin, "PATCH", `/v1/keys/${(await me(admin.key)).keyId}`, { body: { accessMode: "READONLY" } }));
        ok(await as(admin, "GET", "/v1/portals"));
        ok(await as(admin, "GET", `/v1/portals/${portal.id}/audit`));
        ok(await as(admin, "GET", `/v1/keys?portalId=${portal.id}`));
        const blocked = await as(admin, "POST", "/v1/keys", { body: { portalId: portal.id, name: "K", scopes: ["crm"] } });
        refused(blocked, 403, "WRITE_BLOCKED_READONLY_KEY");
        assert.equal(blocked.body.error.details.method, undefined, "for management keys, details.method is not returned");
        refused(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { name: "changed" } }), 403, "WRITE_BLOCKED_READONLY_KEY");
        assert.equal(ok(await as(admin, "GET", "/v1/portals"))[0].name, portal.name);
      });
    });

    describe("GET /v1/guide", () => {
      it("API reference (/v1/guide): filtered by scopes for portal keys — a crm key's guide lists the /v1/deals routes and not the /v1/tasks routes", async () => {
        const admin = await newUser("guide");
        const portal = await createPortal(admin);
        for (const type of ["api", "app"]) {
          const key = await createKey(admin, portal.id, { type, scopes: ["crm"] });
          const g = ok(await h.call("GET", "/v1/guide", { key: key.rawKey }));
          assert.equal(g.filteredByScopes, true);
          const lines = routeLines(g.endpoints);
          for (const line of ["GET /v1/deals", "POST /v1/deals", "GET /v1/deals/:id", "PATCH /v1/deals/:id", "DELETE /v1/deals/:id", "POST /v1/deals/aggregate", "GET /v1/leads"]) {
            assert.ok(lines.includes(line), `${type}: ${line}`);
          }
          assert.ok(!lines.some((l) => l.includes("/v1/tasks")), `${type}: no task routes without the task scopes`);
          assert.ok(!lines.some((l) => l.includes("/v1/portals")), `${type}: no management routes`);
          assert.ok(
            g.endpoints.every((e: { allowed: boolean }) => e.allowed),
            "only what the key may call",
          );
        }
        const tasks = await createKey(admin, portal.id, { scopes: ["task", "tasks"] });
        const lines = routeLines(ok(await h.call("GET", "/v1/guide", { key: tasks.rawKey })).endpoints);
        assert.ok(lines.includes("GET /v1/tasks"));
        assert.ok(!lines.includes("GET /v1/deals"));
      });

      it("Returns the full API reference with all entities (no scope filtering) for management keys: Full (all entities)", async () => {
        for (const who of [await newUser("fullguide"), await newUser("fullguide-feedback", "vibe:mgmt:feedback")]) {
          const g = ok(await as(who, "GET", "/v1/guide"));
          assert.equal(g.filteredByScopes, false);
          // Every entity and management route keygate serves (issue 11.1: only what works).
          const lines = routeLines(g.endpoints);
          for (const line of ["GET /v1/deals", "GET /v1/tasks/:id", "POST /v1/batch", "GET /v1/keys", "POST /v1/verify", "GET /v1/openapi.json"]) assert.ok(lines.includes(line), line);
          const entry = (line: string) => g.endpoints.find((e: { method: string; path: string }) => `${e.method} ${e.path}` === line);
          assert.equal(entry("GET /v1/deals").allowed, false, "listed, though a management key cannot call it");
          assert.equal(entry("GET /v1/tasks").allowed, false);
          assert.equal(entry("GET /v1/me").allowed, true);
        }
      });

      it("issue 11.1: the guide is generated from the same source as /v1/openapi.json and lists only what works: no route answering 501 NOT_IMPLEMENTED, each with its operationId and summary", async () => {
        const who = await newUser("guide-works");
        const g = ok(await as(who, "GET", "/v1/guide"));
        const doc = (await as(who, "GET", "/v1/openapi.json")).body;
        const operations = new Map<string, { operationId: string; summary: string }>();
        for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, { operationId: string; summary: string }>>)) {
          for (const [method, op] of Object.entries(methods)) operations.set(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ":$1").replace("{*}", "*")}`, op);
        }
        const lines = routeLines(g.endpoints);
        // Issue 16: servers are served now, so the guide lists them; every line that is not forwarded is an operation of the document (below), never a 501.
        assert.ok(lines.includes("GET /v1/infra/servers"));
        refused(await as(who, "GET", "/v1/infra/servers"), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        // Issue 17: the feedback endpoints work now, so the guide lists them.
        ok(await as(who, "GET", "/v1/feedback"));
        assert.ok(lines.includes("GET /v1/feedback"));
        for (const e of g.endpoints.filter((e: { forwarded: boolean }) => !e.forwarded)) {
          const op = operations.get(`${e.method} ${e.path}`);
          assert.ok(op, `${e.method} ${e.path} is an operation of the document`);
          assert.equal(e.operationId, op.operationId);
          assert.equal(e.summary, op.summary);
        }
        assert.ok(g.endpoints.length > 50);
      });
    });

    describe("GET /v1/openapi.json", () => {
      it("Returns the machine-readable OpenAPI 3.1 specification, valid by the OpenAPI schema, documenting the management routes", async () => {
        const who = await newUser("openapi", "vibe:mgmt:feedback");
        const r = await as(who, "GET", "/v1/openapi.json");
        assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 500));
        const doc = r.body;
        assert.match(doc.openapi, /^3\.1\./);
        const validator = new Validator();
        const result = await validator.validate(doc);
        assert.equal(result.valid, true, JSON.stringify(result.errors, null, 1)?.slice(0, 3000));
        assert.equal(validator.version, "3.1");

        const operations: Record<string, string[]> = {
          "/v1/me": ["get"],
          "/v1/keys": ["get", "post"],
          "/v1/keys/{id}": ["get", "patch", "delete"],
          "/v1/keys/{id}/rotate": ["post"],
          "/v1/portals": ["get", "post"],
          "/v1/portals/{id}": ["patch"],
          "/v1/portals/{id}/members": ["post"],
          "/v1/portals/{id}/members/{userId}": ["delete"],
          "/v1/portals/{id}/audit": ["get"],
          "/v1/me/notifications": ["get"],
        };
        for (const [path, methods] of Object.entries(operations)) {
          assert.ok(doc.paths[path], `${path} is documented`);
          for (const method of methods) assert.ok(doc.paths[path][method], `${method.toUpperCase()} ${path} is documented`);
        }
        const createPortalBody = doc.paths["/v1/portals"].post.requestBody.content["application/json"].schema;
        assert.ok(createPortalBody.properties.domain, "POST /v1/portals documents its body");
        assert.deepEqual(createPortalBody.required, ["domain"]);
        const createKeyBody = doc.paths["/v1/keys"].post.requestBody.content["application/json"].schema;
        for (const field of ["portalId", "name", "scopes", "accessMode"]) assert.ok(createKeyBody.properties[field], `POST /v1/keys documents ${field}`);
        assert.ok(!JSON.stringify(doc).includes("/healthz"), "internal routes are hidden");
      });
    });

    describe("notifications", () => {
      it("GET /v1/me/notifications lists the key owner's notifications, newest first, and nobody else's", async () => {
        const { admin, member, outsider, key } = await team();
        h.clock.advance(1000);
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        h.clock.advance(1000);
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READWRITE" } }));

        const inbox = ok(await as(member, "GET", "/v1/me/notifications"));
        assert.deepEqual(
          inbox.map((n: { data: { to: string } }) => n.data.to),
          ["READWRITE", "READONLY"],
        );
        assert.ok(inbox.every((n: { userId: string; kind: string }) => n.userId === member.user.id && n.kind === "key.access_mode_changed"));
        assert.deepEqual(ok(await as(member, "GET", "/v1/me/notifications?limit=1")), inbox.slice(0, 1));
        assert.deepEqual(ok(await as(admin, "GET", "/v1/me/notifications")), []);
        assert.deepEqual(ok(await as(outsider, "GET", "/v1/me/notifications")), []);
      });

      it("POST /v1/me/notifications/:id/read marks it read; reading it again keeps the first time", async () => {
        const { admin, member, key } = await team();
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        const [note] = ok(await as(member, "GET", "/v1/me/notifications"));
        assert.equal(note.readAt, null);
        h.clock.advance(5000);
        const readAt = new Date(h.clock.now).toISOString();
        assert.deepEqual(ok(await as(member, "POST", `/v1/me/notifications/${note.id}/read`)), { id: note.id, read: true });
        assert.equal(ok(await as(member, "GET", "/v1/me/notifications"))[0].readAt, readAt);
        h.clock.advance(5000);
        ok(await as(member, "POST", `/v1/me/notifications/${note.id}/read`));
        assert.equal(ok(await as(member, "GET", "/v1/me/notifications"))[0].readAt, readAt);
      });

      // Seed 003: for API and authorization keys only "any request proxied to Bitrix24 as a write
      // operation is blocked"; marking the owner's own notification read proxies nothing.
      it("a read-only API key reads and marks its owner's notifications: read-only mode blocks only writes proxied to Bitrix24", async () => {
        const { admin, key } = await team();
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        const [note] = ok(await h.call("GET", "/v1/me/notifications", { key: key.rawKey }));
        assert.equal(note.data.keyId, key.id);
        assert.deepEqual(ok(await h.call("POST", `/v1/me/notifications/${note.id}/read`, { key: key.rawKey })), { id: note.id, read: true });
      });

      it("someone else cannot mark a notification read: 404 NOTIFICATION_NOT_FOUND, and it stays unread", async () => {
        const { admin, member, outsider, key } = await team();
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        const [note] = ok(await as(member, "GET", "/v1/me/notifications"));
        refused(await as(admin, "POST", `/v1/me/notifications/${note.id}/read`), 404, "NOTIFICATION_NOT_FOUND");
        refused(await as(outsider, "POST", `/v1/me/notifications/${note.id}/read`), 404, "NOTIFICATION_NOT_FOUND");
        refused(await as(member, "POST", "/v1/me/notifications/00000000-0000-4000-8000-000000000000/read"), 404, "NOTIFICATION_NOT_FOUND");
        assert.equal(ok(await as(member, "GET", "/v1/me/notifications"))[0].readAt, null);
      });

      it("bad input to the notification endpoints answers 4xx with a code and a message, never a 500", async () => {
        const { member } = await team();
        refused(await as(member, "GET", "/v1/me/notifications?limit=abc"), 400, "VALIDATION_ERROR", "limit");
        refused(await as(member, "GET", "/v1/me/notifications?limit=-1"), 400, "VALIDATION_ERROR", "limit");
        refused(await as(member, "GET", "/v1/me/notifications?unread=true"), 400, "VALIDATION_ERROR", "unread");
        refused(await as(member, "POST", "/v1/me/notifications/%00/read"), 400, "VALIDATION_ERROR", "id");
        refused(await as(member, "POST", `/v1/me/notifications/${"n".repeat(5000)}/read`), 400, "VALIDATION_ERROR");
        refused(await as(member, "POST", "/v1/me/notifications/%E0%A4%A/read"), 400, "VALIDATION_ERROR");
        refused(await as(member, "POST", `/v1/me/notifications/${encodeURIComponent("' OR '1'='1")}/read`), 404, "NOTIFICATION_NOT_FOUND");
        assert.deepEqual(ok(await as(member, "GET", "/v1/me/notifications?limit=0")), []);
      });
    });
  });
}
