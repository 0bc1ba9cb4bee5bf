/**
 * Issue 11.1: the OpenAPI document is the contract. Every operation of GET /v1/openapi.json is
 * called on a running keygate (the sandbox portal behind it), and every real response — status
 * and body, successes and refusals — is validated against the schema the document gives for that
 * operation and status. An operation without an operationId or response schemas, or one this test
 * never reached, fails it. The flat envelope (RogerIQ) is checked the same way on its operations.
 */
import type { AddressInfo } from "node:net";
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { buildServer } from "../../src/gateway/server.ts";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { createPasswordLink } from "../../src/accounts/links.ts";
import { portalAuthorizeUrl } from "../../src/oauth/bitrix24-flow.ts";
import { type Harness, type Reply, startHarness } from "../support/gateway.ts";
import { FAKE_AI_KEY, fakeOpenAi, fakeSearxng } from "../support/platform.ts";

interface Operation {
  operationId?: string;
  responses?: Record<string, { content?: Record<string, { schema: object }> }>;
}
type Doc = { paths: Record<string, Record<string, Operation>> };

/** The operations of a document by "METHOD /path/{param}", and a checker of replies against them. */
function contract(doc: Doc) {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats.default(ajv);
  const operations = new Map<string, Operation & { method: string; path: string }>();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) operations.set(`${method.toUpperCase()} ${path}`, { ...op, method: method.toUpperCase(), path });
  }
  const reached = new Map<string, Set<number>>();
  return {
    operations,
    reached,
    /** Validates a reply to `operation` ("GET /v1/keys/{id}") against the document. */
    check(operation: string, r: Reply): Reply {
      const op = operations.get(operation);
      assert.ok(op, `${operation} is in the document`);
      const content = op.responses?.[String(r.status)]?.content;
      // The OAuth flow's pages are HTML (docs/oauth.md).
      const schema = content?.["application/json"]?.schema ?? content?.["text/html"]?.schema;
      assert.ok(schema, `${operation} documents its ${r.status} response (got ${JSON.stringify(r.body).slice(0, 300)})`);
      const validate = ajv.compile(schema);
      assert.ok(validate(r.body), `${operation} ${r.status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(r.body).slice(0, 600)}`);
      reached.set(operation, (reached.get(operation) ?? new Set()).add(r.status));
      return r;
    },
  };
}

/** What each entity needs to be created (the rest: a title). */
const CREATE: Record<string, unknown> = {
  tasks: { title: "Contract", responsibleId: 1 },
  users: { name: "Contract", lastName: "Test", email: "contract@sandbox.example", departmentIds: [2] },
};

describe("issue 11.1: the OpenAPI document is the contract [VibeCode]", () => {
  let h: Harness;
  let doc: Doc;
  let c: ReturnType<typeof contract>;
  let providers: { close(): Promise<void> }[];
  before(async () => {
    // The platform sections' providers, so their operations answer a success too.
    const [ai, search] = await Promise.all([fakeOpenAi(), fakeSearxng()]);
    providers = [ai, search];
    h = await startHarness("sqlite", { listen: true, platform: { ai: { baseUrl: ai.url, apiKey: FAKE_AI_KEY }, search: { url: search.url } }, apps: {} });
    doc = (await h.call("GET", "/v1/openapi.json", { key: h.owner.key })).body;
    c = contract(doc);
  });
  after(async () => {
    await h.close();
    await Promise.all(providers.map((p) => p.close()));
  });

  it("issue 11.1: every operation has an operationId (unique, camelCase), tags, a summary, a success response schema and its error responses in the envelope", () => {
    const ids = new Set<string>();
    for (const [name, op] of c.operations) {
      const o = op as Operation & { tags?: string[]; summary?: string };
      assert.match(o.operationId ?? "", /^[a-z][A-Za-z0-9]*$/, `${name} has a camelCase operationId`);
      assert.ok(!ids.has(o.operationId!), `${name}: operationId ${o.operationId} is unique`);
      ids.add(o.operationId!);
      assert.ok(o.tags?.length && o.summary, `${name} has tags and a summary`);
      const statuses = Object.keys(o.responses ?? {});
      // Forward-auth admits with no body (a proxy reads none): its success is documented without content.
      if (name === "GET /v1/forward-auth") assert.ok(o.responses!["200"] && !o.responses!["200"].content, `${name} documents its success without a body`);
      // The placement handler's success is the redirect into the app (docs/placements.md).
      else if (name === "POST /v1/bitrix-handler") assert.ok(o.responses!["302"], `${name} documents its redirect`);
      else assert.ok(statuses.some((s) => /^2\d\d$/.test(s) && o.responses![s]!.content), `${name} documents its success`);
      // The document itself and the JWKS are public: nothing to authenticate or count.
      if (name !== "GET /v1/openapi.json" && name !== "GET /.well-known/jwks.json" && name !== "GET /oauth/complete") {
        // The token endpoint checks the app key itself and is not counted (docs/oauth.md): its 401 is OAuth's invalid_client.
        for (const s of name === "POST /v1/oauth/token" ? ["401"] : ["401", "429"]) assert.ok(o.responses![s]?.content, `${name} documents its ${s}`);
      }
    }
    assert.deepEqual(doc.paths["/v1/keys"]!.post!.responses!["201"] !== undefined, true, "POST /v1/keys answers 201");
    assert.equal((doc as unknown as { servers: { url: string }[] }).servers[0]!.url, "/", "servers: relative without --public-url");
    const schemes = (doc as unknown as { components: { securitySchemes: Record<string, unknown> } }).components.securitySchemes;
    assert.deepEqual(Object.keys(schemes).sort(), ["apiKey", "bearer", "cookie", "session"]);
  });

  it("issue 11.1: the real response of every operation, success and refusal, is valid by the document", async () => {
    const owner = h.owner.key;
    const call = (operation: string, path: string, o: { key?: string; body?: unknown; headers?: Record<string, string> } = {}) => h.call(operation.split(" ")[0]!, path, { key: owner, ...o }).then((r) => c.check(operation, r));

    // self
    await call("GET /v1/guide", "/v1/guide");
    await call("GET /v1/openapi.json", "/v1/openapi.json");
    await call("GET /.well-known/jwks.json", "/.well-known/jwks.json", { key: undefined });
    await call("GET /v1/me", "/v1/me");
    await call("GET /v1/me", "/v1/me", { key: "" }).then((r) => assert.equal(r.status, 401));

    // portals
    const portal = (await call("POST /v1/portals", "/v1/portals", { body: { domain: "contract.bitrix24.ru", name: "Contract", upstream: { kind: "sandbox" } } })).body.data;
    await call("POST /v1/portals", "/v1/portals", { body: { domain: "contract.bitrix24.ru" } }).then((r) => assert.equal(r.status, 409));
    await call("GET /v1/portals", "/v1/portals");
    await call("GET /v1/portals/{id}", `/v1/portals/${portal.id}`);
    await call("PATCH /v1/portals/{id}", `/v1/portals/${portal.id}`, { body: { requestLimit: 1000 } });
    await call("PATCH /v1/portals/{id}", "/v1/portals/nope", { body: { name: "x" } }).then((r) => assert.equal(r.status, 404));
    const member = await h.user("member@example.com");
    await call("POST /v1/portals/{id}/members", `/v1/portals/${portal.id}/members`, { body: { email: "member@example.com" } });
    await call("POST /v1/portals/{id}/members", `/v1/portals/${portal.id}/members`, { body: { email: "nobody@example.com" } }).then((r) => assert.equal(r.status, 404));
    await call("GET /v1/portals/{id}/members", `/v1/portals/${portal.id}/members`).then((r) => assert.equal(r.body.data.length, 2));
    await call("GET /v1/portals/{id}/connection", `/v1/portals/${portal.id}/connection`).then((r) => assert.equal(r.body.data.ok, true));
    await call("GET /v1/portals/{id}/members", `/v1/portals/${portal.id}/members`, { key: member.key }).then((r) => assert.equal(r.status, 403));
    await call("DELETE /v1/portals/{id}/members/{userId}", `/v1/portals/${portal.id}/members/${member.user.id}`);

    // keys
    const scopes = ["crm", "task", "tasks", "user", "im", "log", "imbot", "vibe:verify"];
    const created = await call("POST /v1/keys", "/v1/keys", { body: { portalId: portal.id, name: "Contract key", scopes } });
    assert.equal(created.status, 201);
    const key = created.body.data;
    await call("POST /v1/keys", "/v1/keys", { body: { portalId: portal.id, name: "x", scopes: ["nope"] } }).then((r) => assert.equal(r.status, 400));
    await call("POST /v1/keys", "/v1/keys", { body: { portalId: portal.id, name: "x", scopes: ["crm"], extra: 1 } }).then((r) => assert.equal(r.status, 400));
    const listed = await call("GET /v1/keys", `/v1/keys?portalId=${portal.id}`);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    await call("GET /v1/keys/{id}", `/v1/keys/${key.id}`);
    await call("GET /v1/keys/{id}", "/v1/keys/nope").then((r) => assert.equal(r.status, 404));
    await call("PATCH /v1/keys/{id}", `/v1/keys/${key.id}`, { body: { name: "Renamed" } });
    await call("GET /v1/keys/{id}/usage", `/v1/keys/${key.id}/usage`);
    await call("GET /v1/keys/{id}/scope-advice", `/v1/keys/${key.id}/scope-advice`).then((r) => assert.equal(r.status, 200));
    await call("GET /v1/keys/{id}/audit", `/v1/keys/${key.id}/audit`).then((r) => assert.deepEqual(r.body.data.map((e: { action: string }) => e.action).sort(), ["key.create", "key.update"]));
    await call("GET /v1/keys/{id}/audit", "/v1/keys/nope/audit").then((r) => assert.equal(r.status, 404));
    const rotated = (await call("POST /v1/keys/{id}/rotate", `/v1/keys/${key.id}/rotate`)).body.data;
    await call("POST /v1/keys/{id}/rotate", `/v1/keys/${key.id}/rotate`).then((r) => assert.equal(r.status, 409));
    const api = rotated.rawKey as string;
    const spare = (await call("POST /v1/keys", "/v1/keys", { body: { portalId: portal.id, name: "Spare", scopes: ["crm"] } })).body.data;
    await call("DELETE /v1/keys/{id}", `/v1/keys/${spare.id}`);
    await call("GET /v1/portals/{id}/audit", `/v1/portals/${portal.id}/audit`);

    // notifications: an admin changing a member's key tells the member
    await call("POST /v1/portals/{id}/members", `/v1/portals/${portal.id}/members`, { body: { email: "member@example.com" } });
    const membersKey = (await call("POST /v1/keys", "/v1/keys", { key: member.key, body: { portalId: portal.id, name: "Member's", scopes: ["crm"] } })).body.data;
    await call("PATCH /v1/keys/{id}", `/v1/keys/${membersKey.id}`, { body: { accessMode: "READONLY" } });
    const inbox = (await call("GET /v1/me/notifications", "/v1/me/notifications", { key: member.key })).body.data;
    assert.equal(inbox.length, 1);
    await call("POST /v1/me/notifications/{id}/read", `/v1/me/notifications/${inbox[0].id}/read`, { key: member.key });
    await call("POST /v1/me/notifications/{id}/read", "/v1/me/notifications/none/read").then((r) => assert.equal(r.status, 404));

    // feedback tickets (issue 17): a portal key sends, the team (a staff user) answers
    const sender = (await call("POST /v1/keys", "/v1/keys", { body: { portalId: portal.id, name: "Feedback", scopes: ["vibe:feedback"] } })).body.data.rawKey;
    const staff = (await issueManagementKey(h.kg, await createUser(h.kg, null, { email: "staff@example.com", role: "staff" }), "vibe:mgmt:feedback")).rawKey;
    const ticket = (await call("POST /v1/feedback", "/v1/feedback", { key: sender, body: { category: "BUG", title: "Contract", message: "m", context: { a: 1 } } })).body.data;
    await call("POST /v1/feedback", "/v1/feedback", { key: sender, body: { category: "NOPE", title: "x", message: "m" } }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/feedback", "/v1/feedback?status=NEW", { key: staff });
    await call("GET /v1/feedback/{id}", `/v1/feedback/${ticket.id}`, { key: sender });
    await call("GET /v1/feedback/{id}", "/v1/feedback/nope", { key: staff }).then((r) => assert.equal(r.status, 404));
    await call("POST /v1/feedback/{id}/comments", `/v1/feedback/${ticket.id}/comments`, { key: staff, body: { message: "Which version?", status: "AWAITING_USER" } });
    await call("POST /v1/feedback/{id}/comments", `/v1/feedback/${ticket.id}/comments`, { key: sender, body: { message: "1.0", status: "RESOLVED" } }).then((r) => assert.equal(r.status, 403));
    await call("PATCH /v1/feedback/{id}", `/v1/feedback/${ticket.id}`, { key: staff, body: { status: "RESOLVED", resolution: "Fixed" } });
    await call("PATCH /v1/feedback/{id}", `/v1/feedback/${ticket.id}`, { key: staff, body: { status: "NEW" } }).then((r) => assert.equal(r.status, 400));

    // accounts: signing in and out, one-time links, invitations (issue 12)
    const who = await createUser(h.kg, null, { email: "signed-in@example.com" });
    const link = await createPasswordLink(h.kg, null, who);
    await h.call("POST", "/v1/password", { body: { token: link.token, password: "short" } }).then((r) => c.check("POST /v1/password", r));
    await h.call("POST", "/v1/password", { body: { token: link.token, password: "a long password" } }).then((r) => c.check("POST /v1/password", r));
    await h.call("POST", "/v1/session", { body: { email: who.email, password: "wrong password" } }).then((r) => c.check("POST /v1/session", r));
    const signedIn = c.check("POST /v1/session", await h.call("POST", "/v1/session", { body: { email: who.email, password: "a long password" } }));
    const cookie = { cookie: String(signedIn.headers["set-cookie"]).split(";")[0]!, "x-csrf-token": signedIn.body.data.csrfToken };
    await h.call("GET", "/v1/session", { headers: cookie }).then((r) => c.check("GET /v1/session", r));
    await h.call("GET", "/v1/session").then((r) => c.check("GET /v1/session", r));
    const invited = (await call("POST /v1/portals/{id}/invitations", `/v1/portals/${portal.id}/invitations`, { body: { email: who.email } })).body.data;
    await call("POST /v1/portals/{id}/invitations", "/v1/portals/nope/invitations", { body: { email: "x@example.com" } }).then((r) => assert.equal(r.status, 404));
    await call("GET /v1/portals/{id}/invitations", `/v1/portals/${portal.id}/invitations`);
    await h.call("POST", "/v1/invitations/accept", { headers: cookie, body: { token: new URL(invited.url).searchParams.get("token") } }).then((r) => c.check("POST /v1/invitations/accept", r));
    await h.call("POST", "/v1/invitations/accept", { headers: cookie, body: { token: "used" } }).then((r) => c.check("POST /v1/invitations/accept", r));
    const withdrawn = (await call("POST /v1/portals/{id}/invitations", `/v1/portals/${portal.id}/invitations`, { body: { email: "later@example.com" } })).body.data;
    await call("DELETE /v1/portals/{id}/invitations/{invitationId}", `/v1/portals/${portal.id}/invitations/${withdrawn.id}`);
    await call("DELETE /v1/portals/{id}/invitations/{invitationId}", `/v1/portals/${portal.id}/invitations/${withdrawn.id}`).then((r) => assert.equal(r.status, 404));
    await h.call("DELETE", "/v1/session", { headers: { cookie: cookie.cookie } }).then((r) => c.check("DELETE /v1/session", r));
    await h.call("DELETE", "/v1/sessions", { headers: cookie }).then((r) => c.check("DELETE /v1/sessions", r));
    const again = c.check("POST /v1/session", await h.call("POST", "/v1/session", { body: { email: who.email, password: "a long password" } }));
    await h.call("DELETE", "/v1/session", { headers: { cookie: String(again.headers["set-cookie"]).split(";")[0]!, "x-csrf-token": again.body.data.csrfToken } }).then((r) => c.check("DELETE /v1/session", r));

    // verify mode
    await call("POST /v1/verify", "/v1/verify", { key: api, body: { key: api, method: "GET", path: "/v1/deals" } }).then((r) => assert.equal(r.body.data.valid, true));
    const original = { "x-forwarded-method": "GET", "x-forwarded-uri": "/v1/deals" };
    const admitted = await h.call("GET", "/v1/forward-auth", { key: api, headers: original });
    assert.deepEqual([admitted.status, admitted.body], [200, ""], "admitted, with no body");
    c.reached.set("GET /v1/forward-auth", new Set([200]));
    await call("GET /v1/forward-auth", "/v1/forward-auth", { key: "", headers: original }).then((r) => assert.equal(r.status, 401));
    await call("GET /v1/forward-auth", "/v1/forward-auth", { key: api, headers: { ...original, "x-forwarded-uri": "/v1/keys" } }).then((r) => assert.equal(r.status, 403));
    await call("POST /v1/verify", "/v1/verify", { key: api, body: { key: "vibe_api_nope", method: "GET", path: "/v1/deals" } }).then((r) => assert.equal(r.body.data.valid, false));
    await call("POST /v1/verify", "/v1/verify", { key: api, body: { key: api, method: "GET" } }).then((r) => assert.equal(r.status, 400));

    // the data plane, on every entity the document has
    for (const [name, op] of c.operations) {
      const m = /^GET \/v1\/(\w+)$/.exec(name);
      if (!m || !(op as { tags?: string[] }).tags?.includes("entities")) continue;
      const entity = m[1]!;
      // The sandbox throttles as Bitrix24 does: each entity gets a fresh second.
      h.clock.advance(60_000);
      const as = (operation: string, path: string, body?: unknown) => call(operation, path, { key: api, body });
      const list = await as(`GET /v1/${entity}`, `/v1/${entity}?limit=2`);
      assert.equal(list.status, 200, `${entity}: ${JSON.stringify(list.body)}`);
      await as(`GET /v1/${entity}`, `/v1/${entity}?filter[id][$bogus]=1`).then((r) => assert.equal(r.status, 400));
      await as(`GET /v1/${entity}/fields`, `/v1/${entity}/fields`);
      const first = list.body.data[0];
      if (first) await as(`GET /v1/${entity}/{id}`, `/v1/${entity}/${first.id}`);
      await as(`GET /v1/${entity}/{id}`, `/v1/${entity}/999999`);
      await as(`POST /v1/${entity}/search`, `/v1/${entity}/search`, { limit: 1 });
      await as(`POST /v1/${entity}/aggregate`, `/v1/${entity}/aggregate`, { aggregate: [{ field: "id", function: "count" }] });
      if (c.operations.has(`POST /v1/${entity}`)) {
        const made = await as(`POST /v1/${entity}`, `/v1/${entity}`, CREATE[entity] ?? { title: "Contract" });
        assert.equal(made.status, 201, `${entity}: ${JSON.stringify(made.body)}`);
        const id = made.status === 201 ? made.body.data.id : (first?.id ?? 1);
        await as(`GET /v1/${entity}/{id}`, `/v1/${entity}/${id}`);
        await as(`PATCH /v1/${entity}/{id}`, `/v1/${entity}/${id}`, entity === "users" ? { name: "Contract 2" } : { title: "Contract 2" });
        if (c.operations.has(`DELETE /v1/${entity}/{id}`)) await as(`DELETE /v1/${entity}/{id}`, `/v1/${entity}/${id}`);
      }
    }
    h.clock.advance(60_000);
    const users = (await h.call("GET", "/v1/users?limit=1", { key: api })).body.data ?? [];
    await call("POST /v1/notifications", "/v1/notifications", { key: api, body: { userId: users[0]?.id ?? 1, message: "Hello" } });
    await call("POST /v1/chats/{dialogId}/messages", "/v1/chats/chat1/messages", { key: api, body: { message: "Hello" } });
    await call("POST /v1/posts", "/v1/posts", { key: api, body: { message: "Hello", title: "Contract" } });
    await call("POST /v1/posts", "/v1/posts", { key: api, body: { title: "no message" } }).then((r) => assert.equal(r.status, 400));
    await call("POST /v1/batch", "/v1/batch", { key: api, body: { calls: [{ entity: "deals", action: "list", params: { limit: 1 } }, { entity: "deals", action: "get", entityId: 999999 }] } });
    await call("POST /v1/batch", "/v1/batch", { key: api, body: { calls: [] } }).then((r) => assert.equal(r.status, 400));

    // the platform sections
    await call("POST /v1/chat/completions", "/v1/chat/completions", { key: api, body: { model: "echo-1", messages: [{ role: "user", content: "Hello" }] } });
    await call("POST /v1/chat/completions", "/v1/chat/completions", { key: api, body: { messages: [] } }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/models", "/v1/models", { key: api });
    await call("POST /v1/search", "/v1/search", { key: api, body: { query: "keygate", limit: 2 } }).then((r) => assert.equal(r.body.data.results.length, 2));
    await call("POST /v1/search", "/v1/search", { key: api, body: { query: "" } }).then((r) => assert.equal(r.status, 400));
    // chatbots (imbot)
    h.clock.advance(60_000);
    const bot = (await call("POST /v1/bots", "/v1/bots", { key: api, body: { code: "contract", name: "Contract", eventHandler: "https://bots.example.com/events" } })).body.data;
    await call("POST /v1/bots", "/v1/bots", { key: api, body: { code: "contract", name: "Contract", eventHandler: "https://bots.example.com/events" } }).then((r) => assert.equal(r.status, 409));
    await call("POST /v1/bots", "/v1/bots", { key: api, body: { code: "x", name: "x" } }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/bots", "/v1/bots", { key: api }).then((r) => assert.equal(r.body.data.length, 1));
    await call("POST /v1/bots/{id}/messages", `/v1/bots/${bot.id}/messages`, { key: api, body: { dialogId: "1", message: "Hello" } }).then((r) => assert.equal(r.status, 201));
    await call("DELETE /v1/bots/{id}", `/v1/bots/${bot.id}`, { key: api });
    await call("DELETE /v1/bots/{id}", `/v1/bots/${bot.id}`, { key: api }).then((r) => assert.equal(r.status, 404));

    // object storage: the API key holds vibe:storage (auto-granted)
    const object = "/v1/storage/objects/contract/a.txt";
    await call("PUT /v1/storage/objects/{*}", object, { key: api, body: "hello", headers: { "content-type": "text/plain" } }).then((r) => assert.equal(r.status, 201));
    await call("PUT /v1/storage/objects/{*}", "/v1/storage/objects/contract//b", { key: api, body: "x", headers: { "content-type": "text/plain" } }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/storage/objects/{*}", object, { key: api }).then((r) => assert.equal(r.body, "hello"));
    await call("GET /v1/storage/objects/{*}", object, { key: api, headers: { range: "bytes=9-" } }).then((r) => assert.equal(r.status, 416));
    await call("GET /v1/storage/objects", "/v1/storage/objects?prefix=contract/", { key: api }).then((r) => assert.equal(r.body.data.length, 1));
    await call("GET /v1/storage/objects", "/v1/storage/objects?limit=0", { key: api }).then((r) => assert.equal(r.status, 400));
    await call("DELETE /v1/storage/objects/{*}", object, { key: api });
    await call("DELETE /v1/storage/objects/{*}", object, { key: api }).then((r) => assert.equal(r.status, 404));

    // servers (vibe:infra); .invalid never resolves, so the background check fails at once
    const server = (await call("POST /v1/infra/servers", "/v1/infra/servers", { key: api, body: { name: "Contract app", url: "https://contract.example.invalid/" } })).body.data;
    await call("POST /v1/infra/servers", "/v1/infra/servers", { key: api, body: { name: "x", url: "http://10.0.0.1/" } }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/infra/servers", "/v1/infra/servers", { key: api }).then((r) => assert.equal(r.body.data.length, 1));
    await call("GET /v1/infra/servers/{id}", `/v1/infra/servers/${server.id}`, { key: api }).then((r) => assert.equal(r.body.data.appUrl, `http://${server.id}.localhost:${(h.appRuntime!.server.address() as AddressInfo).port}`));
    await call("DELETE /v1/infra/servers/{id}", `/v1/infra/servers/${server.id}`, { key: api });
    await call("GET /v1/infra/servers/{id}", `/v1/infra/servers/${server.id}`, { key: api }).then((r) => assert.equal(r.status, 404));

    // OAuth sessions of an authorization key (docs/oauth.md): authorize, consent, token, poll, revoke
    const callback = "https://app.example/cb";
    const appKey = (await call("POST /v1/keys", "/v1/keys", { body: { portalId: portal.id, type: "app", name: "Contract app", scopes: ["crm", "placement", "vibe:infra"], redirectUris: [callback] } })).body.data;
    const state = "contract-state-0123456789";
    const query = new URLSearchParams({ app_key: appKey.rawKey, state, redirect_uri: callback }).toString();
    await call("GET /v1/oauth/authorize", "/v1/oauth/authorize?app_key=x", { key: undefined }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/oauth/authorize", `/v1/oauth/authorize?${query}`, { key: undefined }).then((r) => assert.equal(r.status, 302));
    const signedInMember = c.check("POST /v1/session", await h.call("POST", "/v1/session", { body: { email: who.email, password: "a long password" } }));
    const browser = { cookie: String(signedInMember.headers["set-cookie"]).split(";")[0]! };
    const page = await call("GET /v1/oauth/authorize", `/v1/oauth/authorize?${query}`, { key: undefined, headers: browser });
    assert.equal(page.status, 200, String(page.body));
    const csrf = /name="csrf" value="([^"]+)"/.exec(String(page.body))![1]!;
    const consent = (fields: Record<string, string>) => call("POST /v1/oauth/authorize", "/v1/oauth/authorize", { key: undefined, headers: { ...browser, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(fields).toString() });
    await consent({ app_key: appKey.rawKey, state, redirect_uri: callback, decision: "allow" }).then((r) => assert.equal(r.status, 403));
    const allowed = await consent({ app_key: appKey.rawKey, state, redirect_uri: callback, csrf, decision: "allow" });
    assert.equal(allowed.status, 302);
    const code = new URL(String(allowed.headers.location)).searchParams.get("code")!;
    await call("POST /v1/oauth/token", "/v1/oauth/token", { key: undefined, body: { grant_type: "refresh_token" } }).then((r) => assert.equal(r.status, 400));
    await call("POST /v1/oauth/token", "/v1/oauth/token", { key: undefined, body: { grant_type: "authorization_code", app_key: "vibe_app_nope", code } }).then((r) => assert.equal(r.status, 401));
    const session = (await call("POST /v1/oauth/token", "/v1/oauth/token", { key: undefined, body: { grant_type: "authorization_code", app_key: appKey.rawKey, code, redirect_uri: callback } })).body.access_token;
    await call("GET /v1/me", "/v1/me", { key: appKey.rawKey, headers: { authorization: `Bearer ${session}` } }).then((r) => assert.equal(typeof r.body.data.currentUser.bitrixUserId, "number"));
    await call("GET /v1/oauth/poll", `/v1/oauth/poll?state=${state}`, { key: appKey.rawKey }).then((r) => assert.equal(r.body.status, "pending"));
    await call("GET /v1/oauth/poll", "/v1/oauth/poll", { key: appKey.rawKey }).then((r) => assert.equal(r.status, 400));
    // placements of the authorization key, as the session's user (docs/placements.md)
    const asUser = { key: appKey.rawKey, headers: { authorization: `Bearer ${session}` } };
    await call("GET /v1/placements/available", "/v1/placements/available", asUser).then((r) => assert.ok(r.body.data.includes("LEFT_MENU")));
    await call("GET /v1/placements/available", "/v1/placements/available", { key: appKey.rawKey }).then((r) => assert.equal(r.status, 401));
    await call("POST /v1/placements/bind", "/v1/placements/bind", { ...asUser, body: { placement: "LEFT_MENU", title: "Contract", handler: "https://app.example/placement" } }).then((r) => assert.equal(r.status, 201));
    await call("POST /v1/placements/bind", "/v1/placements/bind", { ...asUser, body: { placement: "LEFT_MENU", title: "Contract", handler: "https://app.example/placement" } }).then((r) => assert.equal(r.status, 409));
    await call("POST /v1/placements/bind", "/v1/placements/bind", { ...asUser, body: { placement: "LEFT_MENU" } }).then((r) => assert.equal(r.status, 400));
    await call("GET /v1/placements", "/v1/placements", asUser).then((r) => assert.equal(r.body.data.length, 1));
    await call("POST /v1/placements/unbind", "/v1/placements/unbind", { ...asUser, body: { placement: "LEFT_MENU" } }).then((r) => assert.equal(r.body.data.unbound.length, 1));
    await call("POST /v1/placements/unbind", "/v1/placements/unbind", { ...asUser, body: { placement: "LEFT_MENU" } }).then((r) => assert.equal(r.status, 404));
    // keygate's placement handler (the default of bind): the sandbox portal's page posts it what Bitrix24 posts
    await call("POST /v1/infra/servers", "/v1/infra/servers", { ...asUser, body: { name: "Contract embedded", url: "https://contract-app.example.invalid/" } });
    await call("POST /v1/placements/bind", "/v1/placements/bind", { ...asUser, body: { placement: "LEFT_MENU", title: "Contract" } }).then((r) => assert.equal(r.status, 201));
    const opened = String((await h.call("GET", `/sandbox/${portal.id}/placements/LEFT_MENU/open`, { headers: browser })).body);
    const handler = new URL(/<form id="placement" method="post" action="([^"]+)"/.exec(opened)![1]!.replace(/&#38;/g, "&"));
    const posted = Object.fromEntries([...opened.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!]));
    const handle = (fields: Record<string, string>) => call("POST /v1/bitrix-handler", `${handler.pathname}${handler.search}`, { key: undefined, headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(fields).toString() });
    await handle(posted).then((r) => assert.match(String(r.headers.location), /__init=/));
    await handle({ ...posted, AUTH_ID: "forged" }).then((r) => assert.equal(r.status, 401));
    await call("POST /v1/placements/unbind", "/v1/placements/unbind", { ...asUser, body: { placement: "LEFT_MENU" } }).then((r) => assert.equal(r.body.data.unbound.length, 1));
    await call("POST /v1/oauth/revoke", "/v1/oauth/revoke", { key: undefined, body: { token: session } });
    await call("POST /v1/oauth/revoke", "/v1/oauth/revoke", { key: undefined, body: {} }).then((r) => assert.equal(r.status, 400));
    await call("GET /oauth/complete", "/oauth/complete?error=access_denied&state=x", { key: undefined });
    // A real Bitrix24 portal's way back (issue 15 §2): a forged state is refused; the portal's denial goes back to the app
    const b24 = (await call("POST /v1/portals", "/v1/portals", { body: { domain: "contract-b24.bitrix24.ru", upstream: { kind: "bitrix24", webhookUrl: "https://93.184.216.34/rest/1/contracttoken/", clientId: "local.contract.0001", clientSecret: "contract-secret" } } })).body.data;
    await call("POST /v1/portals/{id}/members", `/v1/portals/${b24.id}/members`, { body: { email: who.email } });
    await call("GET /v1/oauth/bitrix24/callback", "/v1/oauth/bitrix24/callback?code=x&state=forged", { key: undefined, headers: browser }).then((r) => assert.equal(r.status, 400));
    const toPortal = new URL(await portalAuthorizeUrl(h.kg, (await h.store.getPortal(b24.id))!, { clientId: "local.contract.0001", clientSecret: "contract-secret" }, { keyId: appKey.id, portalId: b24.id, userId: who.id, state, redirectUri: callback, codeChallenge: null }, "https://keygate.test/cb"));
    const back = `/v1/oauth/bitrix24/callback?${new URLSearchParams({ error: "access_denied", state: toPortal.searchParams.get("state")! })}`;
    await call("GET /v1/oauth/bitrix24/callback", back, { key: undefined, headers: browser }).then((r) => assert.equal(new URL(String(r.headers.location)).searchParams.get("error"), "access_denied"));

    const missing = [...c.operations.keys()].filter((op) => !c.reached.has(op));
    assert.deepEqual(missing, [], "every operation of the document was called and its response validated");
    // The consent form's, the Bitrix24 callback's and the placement handler's success is a redirect (docs/oauth.md, docs/placements.md).
    const redirects = ["POST /v1/oauth/authorize", "GET /v1/oauth/bitrix24/callback", "POST /v1/bitrix-handler"];
    for (const [op, statuses] of c.reached) assert.ok([...statuses].some((s) => s >= 200 && s < (redirects.includes(op) ? 400 : 300)), `${op} answered a success at least once: ${[...statuses].join(", ")}`);
  });
});

describe("issue 11.1: the OpenAPI document is the contract [RogerIQ, the flat envelope]", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite", { profile: "rogeriq", allowUpstream: ["127.0.0.1"] })));
  after(() => h.close());

  it("issue 11.1: servers is --public-url when it is set", async () => {
    const app = buildServer({ profile: h.kg.profile, store: h.store, serverSecret: h.kg.serverSecret, publicUrl: "https://keys.example.com" });
    await app.ready();
    const doc = app.swagger() as unknown as { servers: { url: string }[] };
    await app.close();
    assert.deepEqual(doc.servers, [{ url: "https://keys.example.com" }]);
  });

  it("issue 11.1: the document is built per profile: the flat envelope's success and refusals are valid by RogerIQ's own document", async () => {
    const actor = { user: h.owner.user, keyId: null, ip: null };
    const portal = await createPortal(h.kg, actor, { domain: "riq.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } });
    const { rawKey } = await createKey(h.kg, actor, { portalId: portal.id, name: "riq", scopes: ["read"] });
    // RogerIQ's route table has no /v1/openapi.json: its document is read from a server of the profile.
    const app = buildServer({ profile: h.kg.profile, store: h.store, serverSecret: h.kg.serverSecret });
    await app.ready();
    const doc = app.swagger() as unknown as Doc;
    await app.close();
    const c = contract(doc);
    assert.ok(c.operations.size > 0);
    for (const [name, op] of c.operations) assert.ok(op.operationId, `${name} has an operationId`);
    c.check("GET /v1/me", await h.call("GET", "/v1/me", { key: rawKey }));
    const refused = c.check("GET /v1/me", await h.call("GET", "/v1/me", { key: "riq_nope" }));
    assert.equal(refused.status, 401);
    assert.equal(typeof refused.body.request_id, "string", "the flat envelope");
  });
});
