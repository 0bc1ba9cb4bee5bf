/**
 * Malformed and hostile input (issue 10, items 4 and 9): bodies nested thousands of levels deep,
 * field names that are Object.prototype's, malformed spellings of real routes, and a seeded,
 * bounded fuzz run over every shape of it. Whatever a client sends, keygate answers 4xx with its
 * envelope, never 5xx.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import fc from "fast-check";
import { sandboxWebhookToken, seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness } from "../support/gateway.ts";
import { fails, makeKey, makePortal, ok } from "./_fixtures.ts";

const PROTOTYPE_NAMES = ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf", "prototype", "__defineGetter__", "isPrototypeOf"];
const ALL = ["crm", "task", "tasks", "user", "im", "log"];

const nestedArrays = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
const nestedObjects = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

function show(r: Reply): string {
  return `${r.status} ${JSON.stringify(r.body)?.slice(0, 300)}`;
}

describe("hostile input [sqlite]", () => {
  let h: Harness;
  let portalId: string;
  let reader: string;

  before(async () => {
    h = await startHarness("sqlite", { listen: true });
    portalId = await makePortal(h);
    await seedDemoData(h.store, portalId);
    ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
    reader = (await makeKey(h, portalId, { scopes: ALL })).raw;
  });
  after(() => h.close());
  // Keygate's per-minute windows start empty, and the sandbox's bucket (2/s) is drained.
  beforeEach(() => h.clock.advance(2 * 60_000));

  const raw = (method: string, path: string, body: string, key = h.owner.key) => h.call(method, path, { key, body, headers: { "content-type": "application/json" } });

  it("issue 10.4: a body nested deeper than 64 levels is refused at parse time with 400 VALIDATION_ERROR on every route with a body", async () => {
    for (const body of [nestedArrays(8_000), nestedObjects(5_000), `{"name":"k","scopes":${nestedArrays(65)}}`]) {
      for (const [method, path] of [
        ["POST", "/v1/keys"],
        ["POST", "/v1/portals"],
        ["PATCH", "/v1/keys/00000000-0000-0000-0000-000000000000"],
      ]) {
        const error = fails(await raw(method!, path!, body), 400, "VALIDATION_ERROR");
        assert.match(error.message, /nests more than 64/);
      }
      for (const path of ["/v1/batch", "/v1/deals/search", "/v1/deals"]) fails(await raw("POST", path, body, reader), 400, "VALIDATION_ERROR");
    }
    // 64 levels is still JSON keygate reads (and then judges on its merits).
    const deepEnough = await raw("POST", "/v1/deals/search", `{"filter":{"title":${nestedArrays(62)}}}`, reader);
    assert.ok(deepEnough.status < 500 && !/nests more than/.test(JSON.stringify(deepEnough.body)), show(deepEnough));
    // Brackets inside strings are text, not nesting.
    ok(await raw("POST", "/v1/deals/search", JSON.stringify({ filter: { title: "[".repeat(10_000) } }), reader));
  });

  it("issue 10.4: the sandbox portal refuses a deeply nested body (JSON or form) as Bitrix24 would, not with a 5xx", async () => {
    const base = `/sandbox/${portalId}/rest/1/${sandboxWebhookToken(h.kg.serverSecret, portalId)}`;
    const json = await h.call("POST", `${base}/crm.item.list.json`, { body: nestedObjects(5_000) });
    assert.equal(json.status, 400, show(json));
    assert.equal(json.body.error, "ERROR_ARGUMENT");
    const form = await h.call("POST", `${base}/crm.item.list.json`, {
      body: `entityTypeId=2&filter${"[a]".repeat(5_000)}=1`,
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.ok(form.status < 500, show(form));
  });

  it("issue 10.4: Object.prototype's names in filter and order are field names like any other: 400 from the portal, never 500, never a function sent upstream", async () => {
    for (const name of PROTOTYPE_NAMES.filter((n) => /^[A-Za-z_]\w*$/.test(n))) {
      for (const entity of ["deals", "users", "tasks"]) {
        for (const query of [`filter[${name}]=x`, `filter[${name}][$gt]=1`, `order[${name}]=asc`, `filter[>=${name}]=1`]) {
          // Bitrix24's user.get, and so the sandbox, ignores filter fields it does not know: 200 there.
          h.clock.advance(600);
          const r = await h.call("GET", `/v1/${entity}?${query}`, { key: reader });
          assert.ok(r.status === 400 || r.status === 200, `${entity}?${query}: ${show(r)}`);
          assert.doesNotMatch(JSON.stringify(r.body), /native code|function /, `${entity}?${query}: ${show(r)}`);
        }
      }
      const op = fails(await h.call("GET", `/v1/deals?filter[amount][${name}]=1`, { key: reader }), 400, "INVALID_FILTER_OPERATOR");
      assert.equal(op.param, "filter.amount");
    }
    // The field reached the portal by its name: the sandbox names the field it does not know.
    assert.equal(fails(await h.call("GET", "/v1/deals?filter[constructor]=x", { key: reader }), 400, "VALIDATION_ERROR").param, "constructor");
  });

  it("issue 10.9: malformed spellings of real routes (/v1/me/, /v1//me, /v1/keys/:id/) are 404 ROUTE_NOT_FOUND, not 501", async () => {
    const id = ok(await h.call("GET", "/v1/me", { key: h.owner.key })).keyId as string;
    for (const [method, path] of [
      ["GET", "/v1/me/"],
      ["GET", "/v1//me"],
      ["GET", "//v1/me"],
      ["GET", `/v1/keys/${id}/`],
      ["PATCH", `/v1/keys/${id}/`],
      ["GET", `/v1/keys//${id}`],
      ["GET", "/v1/portals/"],
    ]) {
      fails(await h.call(method!, path!, { key: h.owner.key, ...(method === "PATCH" ? { body: { name: "x" } } : {}) }), 404, "ROUTE_NOT_FOUND");
    }
    ok(await h.call("GET", `/v1/keys/${id}`, { key: h.owner.key }));
  });

  it("issue 10.4: a seeded fuzz run (1,200 requests: routes, malformed paths, prototype names, deep and broken bodies, wrong types) gets no 5xx", async () => {
    const keyId = ok(await h.call("GET", "/v1/me", { key: h.owner.key })).keyId as string;
    const readonly = (await makeKey(h, portalId, { scopes: ALL, accessMode: "READONLY" })).raw;
    const token = sandboxWebhookToken(h.kg.serverSecret, portalId);
    const name = fc.oneof(fc.constantFrom(...PROTOTYPE_NAMES, "amount", "title", "id", "$gt", "$in", ">=amount", "!title"), fc.string({ maxLength: 12 }));
    const value = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom("", "\u0000", "%00", "1,2,3", "-1", "1e309", "NaN", "[]", "{}"));
    const route = fc.constantFrom(
      "/v1/me",
      "/v1/guide",
      "/v1/keys",
      `/v1/keys/${keyId}`,
      `/v1/keys/${keyId}/usage`,
      `/v1/keys/${keyId}/rotate`,
      "/v1/portals",
      `/v1/portals/${portalId}`,
      `/v1/portals/${portalId}/audit`,
      `/v1/portals/${portalId}/members`,
      "/v1/deals",
      "/v1/deals/1",
      "/v1/deals/search",
      "/v1/deals/aggregate",
      "/v1/deals/fields",
      "/v1/users",
      "/v1/tasks",
      "/v1/tasks/1",
      "/v1/contacts/constructor",
      "/v1/batch",
      "/v1/verify",
      "/v1/notifications",
      "/v1/me/notifications",
      "/v1/openapi.json",
      `/sandbox/${portalId}/rest/1/${token}/crm.item.list.json`,
      `/sandbox/${portalId}/rest/1/${token}/batch.json`,
      `/sandbox/${portalId}/rest/1/${token}/constructor.json`,
      `/sandbox/${portalId}/rest/1/wrong/crm.item.list.json`,
    );
    const path = fc
      .tuple(route, fc.oneof({ arbitrary: fc.constant(""), weight: 6 }, fc.constantFrom("/", "//", "/..", "/%2e%2e", "/%ZZ", "/x".repeat(3), `/${"a".repeat(120)}`, "/%00")), fc.boolean())
      .map(([r, tail, doubled]) => (doubled && tail !== "" ? r.replace("/v1/", "/v1//") : r) + tail);
    const query = fc
      .array(
        fc.tuple(fc.constantFrom("filter", "order", "filter[amount]", "select", "limit", "offset", "portalId", "ip", "before"), name, value).map(([k, n, v]) =>
          k === "select" || k === "limit" || k === "offset" || k === "portalId" || k === "ip" || k === "before" ? `${k}=${encodeURIComponent(v)}` : `${k}[${encodeURIComponent(n)}]=${encodeURIComponent(v)}`,
        ),
        { maxLength: 4 },
      )
      .map((parts) => (parts.length > 0 ? `?${parts.join("&")}` : ""));
    const jsonBody = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.dictionary(name, fc.oneof(value, fc.jsonValue({ maxDepth: 3 })), { maxKeys: 5 }).map((v) => JSON.stringify(v)),
      fc.record({ calls: fc.array(fc.record({ entity: fc.oneof(name, fc.constantFrom("deals", "users", "tasks")), action: fc.oneof(name, fc.constantFrom("list", "get", "create", "update", "delete", "fields", "search", "aggregate")), entityId: fc.oneof(value, fc.constant(undefined)), params: fc.dictionary(name, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }) }, { requiredKeys: ["entity", "action"] }), { maxLength: 5 }) }).map((v) => JSON.stringify(v)),
      fc.record({ filter: fc.dictionary(name, fc.oneof(value, fc.dictionary(name, value, { maxKeys: 2 })), { maxKeys: 3 }), order: fc.dictionary(name, value, { maxKeys: 2 }), limit: fc.oneof(value, fc.integer()) }).map((v) => JSON.stringify(v)),
      fc.record({ name: value, scopes: fc.oneof(fc.array(name, { maxLength: 3 }), value), portalId: fc.constantFrom(portalId, "", "constructor"), upstream: fc.oneof(fc.constant({ kind: "sandbox" }), fc.dictionary(name, value, { maxKeys: 2 })) }).map((v) => JSON.stringify(v)),
      fc.integer({ min: 60, max: 9_000 }).map(nestedArrays),
      fc.integer({ min: 60, max: 6_000 }).map(nestedObjects),
      fc.constantFrom("", "{", "nul\u0000", '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', "[1,2", '"just a string"', "null", "1e999"),
    );
    const request = fc.record({
      method: fc.oneof({ arbitrary: fc.constant("GET"), weight: 4 }, fc.constantFrom("POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD")),
      path,
      query,
      body: fc.option(jsonBody, { nil: undefined }),
      contentType: fc.constantFrom("application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"),
      key: fc.oneof({ arbitrary: fc.constantFrom(h.owner.key, reader, readonly), weight: 5 }, fc.constantFrom("", "vibe_api_garbage", undefined)),
    });

    const served: Record<number, number> = {};
    for (const r of fc.sample(request, { seed: 20261205, numRuns: 1_200 })) {
      // Under every limit, keygate's and the sandbox's (2/s).
      h.clock.advance(600);
      const url = `${r.path}${r.query}`;
      const sent = r.method === "GET" || r.method === "HEAD" ? undefined : r.body;
      const reply = await h.call(r.method, url, { key: r.key, ...(sent === undefined ? {} : { body: sent, headers: { "content-type": r.contentType } }) });
      served[reply.status] = (served[reply.status] ?? 0) + 1;
      assert.ok(reply.status < 500, `${r.method} ${url} (${r.contentType}) ${JSON.stringify(sent)?.slice(0, 200)} → ${show(reply)}`);
    }
    // The run reached past verification, not only refusals.
    assert.ok((served[200] ?? 0) + (served[201] ?? 0) > 20, JSON.stringify(served));
  });
});
