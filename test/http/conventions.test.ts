/**
 * HTTP conventions (issue 11 section 2, docs/api.md "HTTP conventions"): CORS decided by the key's
 * portal, 405 with Allow, 415 for non-JSON bodies, gzip and brotli of keygate's own answers (never
 * of a forwarded one), Cache-Control, ETag and If-None-Match, WWW-Authenticate on 401, and entity
 * ids as numbers. Browser-style sequences go over a real socket with fetch; every suite runs
 * against both stores.
 */
import assert from "node:assert/strict";
import { type IncomingHttpHeaders, type Server, createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal, updatePortal } from "../../src/manage/portals.ts";
import { seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { MINUTE, fails, makeKey, makePortal, ok } from "./_fixtures.ts";

const APP = "https://app.example.com";
const EVIL = "https://evil.example.net";

/** A GET over a real socket, the body as bytes (not decompressed). */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

for (const kind of await storeKinds("http: conventions")) {
  describe(`issue 11.2: HTTP conventions [${kind}]`, () => {
    let h: Harness;
    let portalId: string;
    let key: string;

    before(async () => {
      h = await startHarness(kind, { listen: true, allowUpstream: ["127.0.0.1"] });
      portalId = await makePortal(h);
      await seedDemoData(h.store, portalId);
      ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
      key = (await makeKey(h, portalId, { scopes: ["crm", "task", "tasks", "user"] })).raw;
    });
    after(() => h.close());
    // keygate's windows and the sandbox's bucket start empty.
    beforeEach(() => h.clock.advance(2 * MINUTE));

    describe("CORS", () => {
      it("issue 11.2: a preflight is never authenticated: 204 with the origin, method and the key headers allowed", async () => {
        const r = await fetch(`${h.url}/v1/deals`, {
          method: "OPTIONS",
          headers: { origin: APP, "access-control-request-method": "GET", "access-control-request-headers": "x-api-key" },
        });
        assert.equal(r.status, 204);
        assert.equal(r.headers.get("access-control-allow-origin"), APP);
        assert.equal(r.headers.get("access-control-allow-methods"), "GET");
        assert.equal(r.headers.get("access-control-allow-headers"), "x-api-key");
        assert.ok(r.headers.get("vary")?.includes("Origin"));
        // Without Access-Control-Request-Headers: the credentials and a JSON body.
        const plain = await h.call("OPTIONS", "/v1/keys", { headers: { origin: APP, "access-control-request-method": "POST" } });
        assert.equal(plain.status, 204);
        assert.equal(plain.headers["access-control-allow-headers"], "X-Api-Key, Authorization, Content-Type");
      });

      it("issue 11.2: allowed origins are empty by default: a page's request is refused, nothing is done, the page reads nothing", async () => {
        const fresh = await makePortal(h);
        const k = (await makeKey(h, fresh, { scopes: ["crm"] })).raw;
        const view = ok(await h.call("GET", "/v1/portals", { key: h.owner.key })).find((p: { id: string }) => p.id === fresh);
        assert.deepEqual(view.allowedOrigins, []);
        const r = await h.call("POST", "/v1/deals", { key: k, body: { title: "from a page" }, headers: { origin: APP } });
        fails(r, 403, "ORIGIN_NOT_ALLOWED");
        assert.equal(r.headers["access-control-allow-origin"], undefined);
        const titles = ok(await h.call("GET", "/v1/deals?limit=100", { key: k })).map((d: { title: string }) => d.title);
        assert.ok(!titles.includes("from a page"), "the refused write was not made");
      });

      it("issue 11.2: a browser-style preflight then request, from an origin the key's portal allows: the page reads the answer and the rate-limit headers", async () => {
        const set = ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { allowedOrigins: [APP] } }));
        assert.deepEqual(set.allowedOrigins, [APP]);
        const pre = await fetch(`${h.url}/v1/deals?limit=1`, { method: "OPTIONS", headers: { origin: APP, "access-control-request-method": "GET", "access-control-request-headers": "x-api-key" } });
        assert.equal(pre.status, 204);
        const r = await fetch(`${h.url}/v1/deals?limit=1`, { headers: { origin: APP, "x-api-key": key } });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("access-control-allow-origin"), APP);
        const exposed = r.headers.get("access-control-expose-headers") ?? "";
        for (const name of ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy", "Retry-After", "X-Request-Id"]) assert.ok(exposed.split(", ").includes(name), `${name} in ${exposed}`);
        assert.match(r.headers.get("vary") ?? "", /Origin/);
        assert.equal(((await r.json()) as { data: unknown[] }).data.length, 1);
        // Another origin, same key: refused, no Access-Control-Allow-Origin.
        const evil = await fetch(`${h.url}/v1/deals?limit=1`, { headers: { origin: EVIL, "x-api-key": key } });
        assert.equal(evil.status, 403);
        assert.equal(evil.headers.get("access-control-allow-origin"), null);
        assert.equal(((await evil.json()) as { error: { code: string } }).error.code, "ORIGIN_NOT_ALLOWED");
        // A server (no Origin) is not concerned.
        assert.equal((await fetch(`${h.url}/v1/deals?limit=1`, { headers: { "x-api-key": key } })).status, 200);
        ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { allowedOrigins: [] } }));
        fails(await h.call("GET", "/v1/deals?limit=1", { key, headers: { origin: APP } }), 403, "ORIGIN_NOT_ALLOWED");
      });

      it("issue 11.2: allowedOrigins are exact origins: a path, a trailing slash, a wildcard, another scheme or upper case are refused", async () => {
        for (const [i, bad] of ["https://app.example.com/", "https://app.example.com/x", "*", "null", "ftp://app.example.com", "https://App.example.com", "https://app.example.com:443"].entries()) {
          const r = await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { allowedOrigins: [APP, bad] } });
          assert.equal(fails(r, 400, "VALIDATION_ERROR").param, "allowedOrigins[1]", `${i}: ${bad}`);
        }
        fails(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { allowedOrigins: "https://app.example.com" } }), 400, "VALIDATION_ERROR");
        ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { allowedOrigins: ["http://localhost:5173", APP] } }));
        ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { allowedOrigins: [] } }));
      });
    });

    it("issue 11.2: a known path with an unknown method is 405 METHOD_NOT_ALLOWED with Allow; an unknown path stays 404", async () => {
      const r = await h.call("PUT", "/v1/deals/1", { key, body: { title: "x" } });
      const error = fails(r, 405, "METHOD_NOT_ALLOWED");
      const allow = String(r.headers.allow).split(", ");
      for (const m of ["GET", "HEAD", "PATCH", "DELETE"]) assert.ok(allow.includes(m), `${m} in ${r.headers.allow}`);
      assert.ok(!allow.includes("PUT"));
      assert.deepEqual(error.details.allow, allow);
      const me = await h.call("DELETE", "/v1/me", { key });
      fails(me, 405, "METHOD_NOT_ALLOWED");
      assert.equal(me.headers.allow, "GET, HEAD");
      fails(await h.call("PUT", "/v1/nothing-here", { key }), 404, "ROUTE_NOT_FOUND");
    });

    it("issue 11.2: a text/plain body is 415 UNSUPPORTED_MEDIA_TYPE, like any other non-JSON type", async () => {
      for (const type of ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded"]) {
        fails(await h.call("POST", "/v1/deals", { key, body: "title=x", headers: { "content-type": type } }), 415, "UNSUPPORTED_MEDIA_TYPE");
      }
    });

    it("issue 11.2: a big deal list is compressed as the client accepts (brotli, gzip) and decompresses to the same JSON; small answers are not", async () => {
      const url = `${h.url}/v1/deals?limit=100`;
      const plain = await rawGet(url, { "x-api-key": key });
      assert.equal(plain.headers["content-encoding"], undefined);
      assert.ok(plain.body.length > 1024, `the list is over the threshold: ${plain.body.length} bytes`);
      const json = JSON.parse(plain.body.toString());
      const br = await rawGet(url, { "x-api-key": key, "accept-encoding": "gzip, br" });
      assert.equal(br.headers["content-encoding"], "br");
      assert.match(String(br.headers.vary), /accept-encoding/i);
      assert.ok(br.body.length < plain.body.length);
      assert.deepEqual(JSON.parse(brotliDecompressSync(br.body).toString()), json);
      const gz = await rawGet(url, { "x-api-key": key, "accept-encoding": "gzip" });
      assert.equal(gz.headers["content-encoding"], "gzip");
      assert.deepEqual(JSON.parse(gunzipSync(gz.body).toString()), json);
      const small = await rawGet(`${h.url}/v1/deals/1`, { "x-api-key": key, "accept-encoding": "gzip, br" });
      assert.equal(small.status, 200);
      assert.equal(small.headers["content-encoding"], undefined, "under 1 KiB: as it is");
    });

    it("issue 11.2: every authenticated answer is Cache-Control: no-store, those holding a new secret included", async () => {
      const created = await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "Secret", scopes: ["crm"] } });
      const data = ok(created, 201);
      assert.equal(created.headers["cache-control"], "no-store");
      const rotated = await h.call("POST", `/v1/keys/${data.id}/rotate`, { key: h.owner.key });
      ok(rotated, 201);
      assert.equal(rotated.headers["cache-control"], "no-store");
      assert.equal((await h.call("GET", "/v1/keys", { key: h.owner.key, headers: {} })).headers["cache-control"], "no-store");
      assert.equal((await h.call("GET", "/v1/deals", { key })).headers["cache-control"], "no-store");
      assert.equal((await h.call("GET", "/v1/deals")).headers["cache-control"], "no-store", "a refusal too");
    });

    for (const path of ["/v1/me", "/v1/guide", "/v1/openapi.json"]) {
      it(`issue 11.2: ${path} has an ETag; If-None-Match with it is 304 without a body, until the answer changes`, async () => {
        const first = await h.call("GET", path, { key });
        assert.equal(first.status, 200);
        const etag = first.headers.etag as string;
        assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
        assert.equal(first.headers["cache-control"], "private, no-cache");
        const again = await h.call("GET", path, { key, headers: { "if-none-match": etag } });
        assert.equal(again.status, 304);
        assert.equal(again.body, "");
        assert.equal(again.headers.etag, etag);
        assert.equal((await h.call("GET", path, { key, headers: { "if-none-match": `"other", W/${etag}` } })).status, 304, "a list, weak comparison");
        assert.equal((await h.call("GET", path, { key, headers: { "if-none-match": '"other"' } })).status, 200);
        // A client that takes compressed answers gets the same validator, and its 304.
        const zipped = await h.call("GET", path, { key, headers: { "accept-encoding": "gzip, br", "if-none-match": etag } });
        assert.equal(zipped.status, 304);
        assert.equal(zipped.headers.etag, etag);
        const whole = await h.call("GET", path, { key, headers: { "accept-encoding": "gzip" } });
        assert.equal(whole.headers["content-encoding"], "gzip", "the answer is over the threshold");
        assert.equal(whole.headers.etag, etag);
        if (path === "/v1/me") {
          const id = ok(first).keyId as string;
          ok(await h.call("PATCH", `/v1/keys/${id}`, { key: h.owner.key, body: { name: "Renamed" } }));
          const changed = await h.call("GET", path, { key, headers: { "if-none-match": etag } });
          assert.equal(changed.status, 200);
          assert.notEqual(changed.headers.etag, etag);
          assert.equal(ok(changed).name, "Renamed");
        }
      });
    }

    it("issue 11: GET /v1/me answered from its kept answer (before the framework) is the route's answer: same status, headers and bytes, compressed and 304 alike, and counted", async () => {
      const fresh = (await makeKey(h, portalId, { scopes: ["crm"] })).raw;
      const url = `${h.url}/v1/me`;
      const volatile = new Set(["x-request-id", "date", "x-ratelimit-remaining", "ratelimit"]);
      const stable = (headers: IncomingHttpHeaders) => Object.fromEntries(Object.entries(headers).filter(([name]) => !volatile.has(name)));
      for (const encoding of [undefined, "gzip", "br", "gzip;q=0.5, br;q=0.1"]) {
        const headers: Record<string, string> = { "x-api-key": fresh, ...(encoding ? { "accept-encoding": encoding } : {}) };
        // The first after a change is worked out by the route; the next ones find it kept.
        ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
        const worked = await rawGet(url, headers);
        const kept = await rawGet(url, headers);
        assert.equal(worked.status, 200);
        assert.equal(kept.status, 200);
        assert.deepEqual(stable(kept.headers), stable(worked.headers), `headers, Accept-Encoding ${encoding}`);
        assert.deepEqual(kept.body, worked.body, `bytes, Accept-Encoding ${encoding}`);
        assert.match(String(kept.headers["x-request-id"]), /^req_/);
        assert.notEqual(kept.headers["x-request-id"], worked.headers["x-request-id"]);
        assert.equal(Number(kept.headers["x-ratelimit-remaining"]), Number(worked.headers["x-ratelimit-remaining"]) - 1, "both counted");
        assert.equal(kept.headers.vary, "Accept-Encoding");
        assert.equal(kept.headers["content-encoding"], encoding === undefined ? undefined : encoding.startsWith("gzip;") ? "gzip" : encoding);
        const body = kept.headers["content-encoding"] === "br" ? brotliDecompressSync(kept.body) : kept.headers["content-encoding"] === "gzip" ? gunzipSync(kept.body) : kept.body;
        assert.equal(JSON.parse(body.toString()).data.keyPrefix.slice(0, 9), fresh.slice(0, 9));
        const unchanged = await rawGet(url, { ...headers, "if-none-match": String(kept.headers.etag) });
        assert.equal(unchanged.status, 304);
        assert.equal(unchanged.body.length, 0);
        assert.equal(unchanged.headers.etag, kept.headers.etag);
      }
      const id = ok(await h.call("GET", "/v1/me", { key: fresh })).keyId as string;
      const usage = ok(await h.call("GET", `/v1/keys/${id}/usage`, { key: h.owner.key })) as { requests: { method: string; path?: string; target?: string; status: number }[] };
      const logged = usage.requests.filter((r) => r.method === "GET" && r.status !== 0);
      assert.equal(logged.length, 4 * 3 + 1, "every request is in the key's request log, those answered before the framework too");
    });

    it("issue 11.2: every 401 carries WWW-Authenticate", async () => {
      const none = await h.call("GET", "/v1/me");
      fails(none, 401, "MISSING_API_KEY");
      assert.equal(none.headers["www-authenticate"], 'ApiKey realm="keygate", Bearer realm="keygate"');
      const wrong = await h.call("GET", "/v1/me", { key: "vibe_api_wrong" });
      fails(wrong, 401, "INVALID_API_KEY");
      assert.equal(wrong.headers["www-authenticate"], 'ApiKey realm="keygate", error="invalid_key"');
      const bearer = await h.call("GET", "/v1/me", { bearer: "vibe_api_wrong" });
      fails(bearer, 401, "INVALID_API_KEY");
      assert.equal(bearer.headers["www-authenticate"], 'Bearer realm="keygate", error="invalid_token"');
      assert.equal((await h.call("GET", "/v1/me", { key })).headers["www-authenticate"], undefined);
    });

    it("issue 11.2: entity ids are numbers: DELETE /v1/deals/:id and a batch delete answer a number", async () => {
      const a = ok(await h.call("POST", "/v1/deals", { key, body: { title: "to delete" } }), 201);
      const b = ok(await h.call("POST", "/v1/deals", { key, body: { title: "to delete in a batch" } }), 201);
      assert.equal(typeof a.id, "number");
      assert.deepEqual(ok(await h.call("DELETE", `/v1/deals/${a.id}`, { key })), { id: a.id, deleted: true });
      const batch = ok(await h.call("POST", "/v1/batch", { key, body: { calls: [{ id: "del", entity: "deals", action: "delete", entityId: b.id }] } }));
      assert.deepEqual(batch.results.del, { id: b.id, deleted: true });
    });
  });

  describe(`issue 11.2: forwarded answers are never compressed by keygate [${kind}]`, () => {
    let h: Harness;
    let upstream: Server;
    let raw: string;
    const big = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ id: i, title: `article ${i}` })) });

    before(async () => {
      upstream = createServer((req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(big);
      });
      await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
      h = await startHarness(kind, { profile: "rogeriq", listen: true, allowUpstream: ["127.0.0.1"] });
      const actor = { user: h.owner.user, keyId: null, ip: null };
      const portal = await createPortal(h.kg, actor, { domain: "riq.example.com", upstream: { kind: "http", baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` } });
      raw = (await createKey(h.kg, actor, { portalId: portal.id, name: "reader", scopes: "kb:read" })).rawKey;
      await updatePortal(h.kg, actor, portal.id, { allowedOrigins: [APP] });
    });
    after(async () => {
      await h.close();
      await new Promise((resolve) => upstream.close(resolve));
    });

    it("issue 11.2: a forwarded answer over the threshold passes as the upstream sent it, on the fast path and the browser's path", async () => {
      for (const origin of [undefined, APP]) {
        const r = await rawGet(`${h.url}/v1/projects/p1/kb/articles`, { "x-api-key": raw, "accept-encoding": "gzip, br", ...(origin ? { origin } : {}) });
        assert.equal(r.status, 200);
        if (origin) assert.equal(r.headers["access-control-allow-origin"], origin);
        assert.equal(r.headers["content-encoding"], undefined);
        assert.equal(r.body.toString(), big);
        assert.equal(r.headers["cache-control"], "no-store");
      }
    });
  });
}
