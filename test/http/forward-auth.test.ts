/**
 * Issue 13, section 2: forward-auth. A reverse proxy (nginx auth_request, Caddy forward_auth,
 * Traefik ForwardAuth) asks /v1/forward-auth about each request it received; keygate admits the
 * original request as it would admit it itself, under every profile, and answers 200 with
 * X-Keygate-Identity and the rate-limit headers, or the refusal in the envelope. Here in process
 * (Fastify inject) and on a socket; test/http/forward-auth-proxies.test.ts runs real nginx and Caddy.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type JSONWebKeySet, createLocalJWKSet, jwtVerify } from "jose";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import type { Portal } from "../../src/store/store.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";

const actorOf = (h: Harness) => ({ user: h.owner.user, keyId: null, ip: null });

async function keyFor(h: Harness, portal: Portal, scopes: string, extra: { rateLimit?: number; ipWhitelist?: string[] } = {}) {
  return (await createKey(h.kg, actorOf(h), { portalId: portal.id, name: `key ${scopes}`, scopes, ...extra })).rawKey;
}

/** What Caddy's forward_auth and Traefik's ForwardAuth send: the original request in X-Forwarded-*, the client's own headers beside. */
function caddyStyle(method: string, uri: string, headers: Record<string, string> = {}): Record<string, string> {
  return { "x-forwarded-method": method, "x-forwarded-uri": uri, "x-forwarded-host": "api.example.com", "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7", ...headers };
}

/** What the nginx configuration of docs/ sends with auth_request. */
function nginxStyle(method: string, uri: string, headers: Record<string, string> = {}): Record<string, string> {
  return { "x-original-method": method, "x-original-uri": uri, "x-forwarded-host": "api.example.com", "x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7", ...headers };
}

async function jwksOf(h: Harness): Promise<JSONWebKeySet> {
  return (await h.call("GET", "/.well-known/jwks.json")).body as JSONWebKeySet;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function refusedWith(r: Reply, status: number, code: string): any {
  assert.equal(r.status, status, JSON.stringify(r.body));
  const error = r.body.error?.code ?? r.body.code;
  assert.equal(error, code, JSON.stringify(r.body));
  assert.match(String(r.headers["x-request-id"]), /^req_/);
  return r.body;
}

for (const kind of await storeKinds("http: forward-auth")) {
  describe(`issue 13: forward-auth, VibeCode routes [${kind}]`, () => {
    let h: Harness;
    let portal: Portal;
    before(async () => {
      h = await startHarness(kind, { trustProxy: ["127.0.0.1"], listen: true });
      portal = await createPortal(h.kg, actorOf(h), { domain: "fa.bitrix24.ru", upstream: { kind: "sandbox" } });
    });
    after(() => h.close());

    it("issue 13: an allowed request: 200 with X-Keygate-Identity for the original origin, X-Request-Id and the key's rate-limit headers; any method asks", async () => {
      const key = await keyFor(h, portal, "crm");
      for (const asked of ["GET", "POST", "HEAD"]) {
        const r = await h.call(asked, "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals?limit=5", { "x-api-key": key }) });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.match(String(r.headers["x-request-id"]), /^req_/);
        assert.equal(r.headers["x-ratelimit-limit"], "300");
        assert.equal(r.headers["cache-control"], "no-store");
        const { payload } = await jwtVerify(String(r.headers["x-keygate-identity"]), createLocalJWKSet(await jwksOf(h)), { issuer: "keygate", audience: "https://api.example.com", currentDate: new Date(h.clock.now) });
        assert.equal(payload.portal, portal.id);
        assert.deepEqual((payload.scopes as string[]).slice(0, 1), ["crm"]);
        assert.equal(r.body, "", "no body: the proxy reads none");
      }
    });

    it("issue 13: a check is counted like the request itself: it and a direct request spend one budget", async () => {
      const key = await keyFor(h, portal, "crm");
      const a = await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/me", { "x-api-key": key }) });
      const direct = await h.call("GET", "/v1/me", { key });
      const b = await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/me", { "x-api-key": key }) });
      assert.deepEqual([a, direct, b].map((r) => r.headers["x-ratelimit-remaining"]), ["299", "298", "297"]);
    });

    it("issue 13: refusals are the gateway's: 401 without a key (WWW-Authenticate), 403 out of scope, 404 off the table, 405, 429 with Retry-After", async () => {
      const key = await keyFor(h, portal, "crm", { rateLimit: 1 });
      const none = refusedWith(await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals") }), 401, "MISSING_API_KEY");
      assert.equal(none.success, false, "the profile's envelope");
      assert.match(String((await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals") })).headers["www-authenticate"]), /ApiKey/);
      refusedWith(await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/tasks", { "x-api-key": key }) }), 403, "SCOPE_DENIED");
      refusedWith(await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/nothing", { "x-api-key": key }) }), 404, "ROUTE_NOT_FOUND");
      const m = await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("PUT", "/v1/deals", { "x-api-key": key }) });
      refusedWith(m, 405, "METHOD_NOT_ALLOWED");
      assert.match(String(m.headers.allow), /GET/);
      assert.equal((await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals", { "x-api-key": key }) })).status, 200);
      const limited = await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals", { "x-api-key": key }) });
      refusedWith(limited, 429, "RATE_LIMITED");
      assert.ok(Number(limited.headers["retry-after"]) >= 1);
      assert.equal(limited.headers["x-ratelimit-remaining"], "0");
      assert.equal(limited.headers["x-keygate-identity"], undefined, "no identity with a refusal");
    });

    it("issue 13: the original request must be described; a path keygate would not forward is refused", async () => {
      const key = await keyFor(h, portal, "crm");
      const body = refusedWith(await h.call("GET", "/v1/forward-auth", { key }), 400, "VALIDATION_ERROR");
      assert.match(body.error.message, /X-Original-Method or X-Forwarded-Method/);
      refusedWith(await h.call("GET", "/v1/forward-auth", { headers: { "x-forwarded-method": "GET", "x-api-key": key } }), 400, "VALIDATION_ERROR");
      refusedWith(await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals/..%2F..%2Fkeys", { "x-api-key": key }) }), 400, "VALIDATION_ERROR");
    });

    it("issue 13: nginx (X-Original-URI) gets a 429 as 403 with X-Keygate-Status and the envelope in X-Keygate-Error; a 401 as 401", async () => {
      const key = await keyFor(h, portal, "crm", { rateLimit: 1 });
      assert.equal((await h.call("GET", "/v1/forward-auth", { headers: nginxStyle("GET", "/v1/deals", { "x-api-key": key }) })).status, 200);
      const limited = await h.call("GET", "/v1/forward-auth", { headers: nginxStyle("GET", "/v1/deals", { "x-api-key": key }) });
      assert.equal(limited.status, 403);
      assert.equal(limited.headers["x-keygate-status"], "429");
      assert.equal(JSON.parse(String(limited.headers["x-keygate-error"])).error.code, "RATE_LIMITED");
      assert.ok(Number(limited.headers["retry-after"]) >= 1);
      const none = await h.call("GET", "/v1/forward-auth", { headers: nginxStyle("GET", "/v1/deals") });
      assert.equal(none.status, 401);
      assert.equal(none.headers["x-keygate-status"], "401", "nginx drops the body: the envelope travels in a header for every refusal");
      assert.equal(JSON.parse(String(none.headers["x-keygate-error"])).error.code, "MISSING_API_KEY");
    });

    it("issue 13: the client is the one X-Forwarded-For names when the proxy is trusted, for allow-lists too", async () => {
      const pinned = await keyFor(h, portal, "crm", { ipWhitelist: ["203.0.113.7"] });
      assert.equal((await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals", { "x-api-key": pinned }) })).status, 200);
      refusedWith(await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals", { "x-api-key": pinned, "x-forwarded-for": "198.51.100.1" }) }), 403, "IP_NOT_ALLOWED");
      // From an address not trusted as a proxy, X-Forwarded-For is the client's own claim: not believed.
      refusedWith(await h.call("GET", "/v1/forward-auth", { ip: "192.0.2.50", headers: caddyStyle("GET", "/v1/deals", { "x-api-key": pinned }) }), 403, "IP_NOT_ALLOWED");
    });

    it("issue 13: a browser's request: a CORS preflight passes uncounted and without an identity; a key used from an origin its portal does not list is refused", async () => {
      const key = await keyFor(h, portal, "crm");
      const preflight = await h.call("OPTIONS", "/v1/forward-auth", { headers: caddyStyle("OPTIONS", "/v1/deals", { origin: "https://app.example.com", "access-control-request-method": "GET" }) });
      assert.equal(preflight.status, 200);
      assert.equal(preflight.headers["x-keygate-identity"], undefined);
      assert.equal(preflight.headers["x-ratelimit-limit"], undefined, "not counted");
      const foreign = await h.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/deals", { "x-api-key": key, origin: "https://evil.example.com" }) });
      refusedWith(foreign, 403, "ORIGIN_NOT_ALLOWED");
    });

    it("issue 13: on a socket the check is answered as it arrives, alike", async () => {
      const key = await keyFor(h, portal, "crm");
      const r = await fetch(`${h.url}/v1/forward-auth`, { headers: caddyStyle("GET", "/v1/deals", { "x-api-key": key }) });
      assert.equal(r.status, 200);
      assert.ok(r.headers.get("x-keygate-identity"));
      assert.equal(r.headers.get("x-ratelimit-remaining"), "299");
      const refused = await fetch(`${h.url}/v1/forward-auth`, { method: "DELETE", headers: caddyStyle("DELETE", "/v1/tasks/1", { "x-api-key": key }) });
      assert.equal(refused.status, 403);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "SCOPE_DENIED", "tasks need task scopes");
      const nginx = await fetch(`${h.url}/v1/forward-auth`, { headers: nginxStyle("GET", "/v1/nothing", { "x-api-key": key }) });
      assert.deepEqual([nginx.status, nginx.headers.get("x-keygate-status"), await nginx.text()], [403, "404", ""], "to nginx: no body, the status and envelope in headers");
    });
  });

  describe(`issue 13: forward-auth, RogerIQ and Atender route tables in front of an HTTP API [${kind}]`, () => {
    it("issue 13: RogerIQ: kb:read reads articles and may not delete a project; Atender: a Bearer key under /api/", async () => {
      const riq = await startHarness(kind, { profile: "rogeriq", trustProxy: ["127.0.0.1"], allowUpstream: ["127.0.0.1"] });
      try {
        const portal = await createPortal(riq.kg, actorOf(riq), { domain: "riq.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } });
        const key = await keyFor(riq, portal, "kb:read");
        assert.equal((await riq.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/v1/projects/p1/kb/articles?status=published", { "x-api-key": key }) })).status, 200);
        const refused = await riq.call("GET", "/v1/forward-auth", { headers: caddyStyle("DELETE", "/v1/orgs/o1/projects/p1", { "x-api-key": key }) });
        refusedWith(refused, 403, "INSUFFICIENT_SCOPE");
        assert.match(String(refused.body.request_id), /^req_/, "RogerIQ's flat envelope");
      } finally {
        await riq.close();
      }
      const atender = await startHarness(kind, { profile: "atender", trustProxy: ["127.0.0.1"], allowUpstream: ["127.0.0.1"] });
      try {
        const portal = await createPortal(atender.kg, actorOf(atender), { domain: "atender.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } });
        const key = await keyFor(atender, portal, "knowledge:read");
        const ok = await atender.call("GET", "/v1/forward-auth", { headers: caddyStyle("GET", "/api/v1/kb/articles?page=2", { authorization: `Bearer ${key}` }) });
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        refusedWith(await atender.call("GET", "/v1/forward-auth", { headers: caddyStyle("POST", "/api/v1/kb/articles", { authorization: `Bearer ${key}` }) }), 403, "INSUFFICIENT_SCOPE");
      } finally {
        await atender.close();
      }
    });
  });
}
