/**
 * Issue 17 §2, `vibe:search`: POST /v1/search {query, limit?} through the operator's SearXNG (a
 * fake one started here, its JSON API), results normalised to {title, url, snippet}; the section
 * unconfigured → 503; bad input → 400 with the field, nothing sent to the engine.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { type Harness, startHarness } from "../support/gateway.ts";
import { fakeSearxng } from "../support/platform.ts";
import { fails, makeKey, makePortal, ok } from "./_fixtures.ts";

describe("issue 17 §2: vibe:search through SearXNG's JSON API", () => {
  let h: Harness;
  let engine: Awaited<ReturnType<typeof fakeSearxng>>;
  let portalId: string;
  let api: string;
  const search = (body: unknown, key = api) => h.call("POST", "/v1/search", { key, body });
  before(async () => {
    engine = await fakeSearxng();
    h = await startHarness("sqlite", { platform: { search: { url: engine.url } } });
    portalId = await makePortal(h);
    api = (await makeKey(h, portalId)).raw;
  });
  after(async () => {
    await h.close();
    await engine.close();
  });

  it("results normalised to {title, url, snippet}, best first, in keygate's envelope with meta.count", async () => {
    engine.received.length = 0;
    const r = await search({ query: "keygate", limit: 2 });
    const data = ok(r);
    assert.deepEqual(data, {
      query: "keygate",
      engine: "searxng",
      results: [
        { title: "keygate 1", url: "https://example.com/keygate/1", snippet: "About keygate, part 1" },
        { title: "keygate 2", url: "https://example.com/keygate/2", snippet: "About keygate, part 2" },
      ],
    });
    assert.deepEqual(r.body.meta, { count: 2 });
    const asked = new URL(engine.received[0]!.url, "http://x");
    assert.deepEqual([asked.pathname, asked.searchParams.get("q"), asked.searchParams.get("format")], ["/search", "keygate", "json"]);
    assert.equal(engine.received[0]!.headers["x-api-key"], undefined, "the key stays in keygate");
  });

  it("only http(s) URLs, each once; a result without a title is titled by its URL; pages are read until limit (default 10) or a page brings nothing", async () => {
    engine.received.length = 0;
    const data = ok(await search({ query: "q" }));
    assert.deepEqual(data.results.map((x: { url: string }) => x.url), [1, 2, 3, 4, 5].map((n) => `https://example.com/q/${n}`));
    assert.equal(data.results[2].title, "https://example.com/q/3");
    assert.equal(engine.received.length, 3, "page 3 brought nothing: no page 4");
  });

  it("seed 000: vibe:search is added to every API key; a key without it → 403 SCOPE_DENIED; a read-only key may search", async () => {
    const app = await makeKey(h, portalId, { type: "app", scopes: ["crm"] });
    engine.received.length = 0;
    fails(await search({ query: "x" }, app.raw), 403, "SCOPE_DENIED");
    fails(await search({ query: "x" }, h.owner.key), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
    assert.equal(engine.received.length, 0);
    const ro = await makeKey(h, portalId, { accessMode: "READONLY" });
    assert.equal(ok(await search({ query: "x", limit: 1 }, ro.raw)).results.length, 1);
  });

  it("public facts §4: POST /v1/search is limited to 60 a minute per key, with the rate-limit headers; the 61st → 429 RATE_LIMITED; the key's other requests keep the platform's 300", async () => {
    const key = (await makeKey(h, portalId)).raw;
    for (let i = 1; i <= 60; i++) {
      const r = await search({ query: "q", limit: 1 }, key);
      ok(r);
      assert.equal(r.headers["x-ratelimit-limit"], "60");
      assert.equal(r.headers["x-ratelimit-remaining"], String(60 - i));
    }
    const over = await search({ query: "q", limit: 1 }, key);
    assert.equal(over.status, 429);
    assert.equal(over.body.error.code, "RATE_LIMITED");
    assert.equal(over.headers["retry-after"], String(over.body.error.retryAfter));
    assert.ok(over.body.error.retryAfter >= 1 && over.body.error.retryAfter <= 60, JSON.stringify(over.body));
    assert.equal(over.headers["x-ratelimit-remaining"], "0");
    assert.match(String(over.headers["ratelimit-policy"]), /"POST \/v1\/search";q=60;w=60/);
    const me = await h.call("GET", "/v1/me", { key });
    assert.equal(me.status, 200);
    assert.equal(me.headers["x-ratelimit-limit"], "300", "searching spent none of the platform limit's 300");
    assert.equal(me.headers["x-ratelimit-remaining"], "299");
    ok(await search({ query: "q", limit: 1 })); // another key has its own 60
    h.clock.advance(60_000);
    ok(await search({ query: "q", limit: 1 }, key)); // a minute later the key searches again
  });

  it("bad input → 400 with the field, and nothing reaches the engine", async () => {
    engine.received.length = 0;
    for (const [body, param] of [
      [{}, "query"],
      [{ query: "" }, "query"],
      [{ query: "   " }, "query"],
      [{ query: 42 }, "query"],
      [{ query: "x".repeat(2001) }, "query"],
      [{ query: "x", limit: 0 }, "limit"],
      [{ query: "x", limit: 51 }, "limit"],
      [{ query: "x", limit: 2.5 }, "limit"],
      [{ query: "x", limit: "5" }, "limit"],
      [{ query: "x", engine: "google" }, "engine"],
    ] as const) {
      assert.equal(fails(await search(body), 400, "VALIDATION_ERROR").param, param, JSON.stringify(body));
    }
    fails(await search("{"), 400, "INVALID_JSON");
    assert.equal(engine.received.length, 0);
  });

  it("the engine failing: unreachable → 502, JSON off (403) → 502 with a hint, not JSON → 502, too slow → 504", async () => {
    fails(await search({ query: "broken" }), 502, "UPSTREAM_UNAVAILABLE");
    const slow = createServer(() => {});
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    const port = (slow.address() as { port: number }).port;
    const other = [
      await startHarness("sqlite", { platform: { search: { url: `http://127.0.0.1:${port}`, timeoutMs: 200 } } }),
      await startHarness("sqlite", { platform: { search: { url: `${engine.url}/nowhere` } } }),
    ];
    try {
      const keyOf = async (x: Harness) => (await makeKey(x, await makePortal(x))).raw;
      fails(await other[0]!.call("POST", "/v1/search", { key: await keyOf(other[0]!), body: { query: "x" } }), 504, "UPSTREAM_TIMEOUT");
      const off = fails(await other[1]!.call("POST", "/v1/search", { key: await keyOf(other[1]!), body: { query: "x" } }), 502, "UPSTREAM_UNAVAILABLE");
      assert.match(off.hint, /search\.formats/);
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
      fails(await other[0]!.call("POST", "/v1/search", { key: await keyOf(other[0]!), body: { query: "x" } }), 502, "UPSTREAM_UNAVAILABLE");
    } finally {
      await Promise.all(other.map((x) => x.close()));
    }
  });

  it("/v1/me and /v1/guide: search available, POST /v1/search listed", async () => {
    assert.deepEqual(ok(await h.call("GET", "/v1/me", { key: api })).sections.search, { scope: "vibe:search", available: true });
    const guide = ok(await h.call("GET", "/v1/guide", { key: api }));
    assert.ok(guide.endpoints.some((e: { method: string; path: string }) => e.method === "POST" && e.path === "/v1/search"));
  });
});

describe("issue 17 §2: search without an engine → 503 SECTION_NOT_CONFIGURED", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite")));
  after(() => h.close());

  it("POST /v1/search → 503 naming --search-url, and /v1/me and /v1/guide say it is not available", async () => {
    const api = (await makeKey(h, await makePortal(h))).raw;
    const e = fails(await h.call("POST", "/v1/search", { key: api, body: { query: "x" } }), 503, "SECTION_NOT_CONFIGURED");
    assert.deepEqual(e.details, { section: "search", scope: "vibe:search", setting: "--search-url", env: "KEYGATE_SEARCH_URL" });
    assert.deepEqual(ok(await h.call("GET", "/v1/me", { key: api })).sections.search, { scope: "vibe:search", available: false, setting: "--search-url (KEYGATE_SEARCH_URL)" });
    assert.ok(!ok(await h.call("GET", "/v1/guide", { key: api })).endpoints.some((x: { path: string }) => x.path === "/v1/search"));
  });
});
