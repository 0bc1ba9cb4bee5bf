/**
 * Issue 13, section 2: keygate beside nginx and Caddy, for real. The configurations shipped in
 * docs/forward-auth/ are started as they are (with this test's ports) in front of a small API;
 * requests go to the proxy, which asks keygate's /v1/forward-auth about each. Needs Debian's
 * `nginx` and `caddy` packages (.ci/run installs them): without a binary its suite is skipped with
 * the reason, and fails under CI.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { type IncomingHttpHeaders, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { Agent, request } from "undici";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import type { Portal } from "../../src/store/store.ts";
import { type Harness, startHarness } from "../support/gateway.ts";
import { type ProxyKind, type RunningProxy, documentedConfig, proxyBinary, startProxy } from "../support/proxies.ts";
import { requireService } from "../support/services.ts";

const FILES: Record<ProxyKind, string> = { nginx: "nginx.conf", caddy: "Caddyfile" };
const P = "/v1/projects/p1";

for (const kind of ["nginx", "caddy"] as const) {
  const suite = `issue 13: forward-auth behind ${kind} (docs/forward-auth/${FILES[kind]})`;
  const installed = await requireService(suite, `${kind} (Debian's package; .ci/run installs it: apt-get install -y ${kind})`, async () => {
    if (proxyBinary(kind) === undefined) throw new Error(`no ${kind} binary on PATH`);
  });
  if (!installed) continue;

  describe(suite, () => {
    let h: Harness;
    let api: { url: string; seen: { url: string; headers: IncomingHttpHeaders }[]; close(): Promise<void> };
    let proxy: RunningProxy;
    let portal: Portal;
    let reader: { id: string; raw: string };
    // One client connection to the proxy, kept alive, as a browser or an SDK would.
    const client = new Agent({ connections: 1 });
    const send = async (method: string, path: string, headers: Record<string, string> = {}) => {
      const r = await request(`${proxy.url}${path}`, { method: method as "GET", headers, dispatcher: client });
      const text = await r.body.text();
      return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) as Record<string, unknown> };
    };

    before(async () => {
      const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
      const server = createServer((req, res) => {
        seen.push({ url: req.url!, headers: req.headers });
        req.resume();
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ from: "api", url: req.url }));
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      api = {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        seen,
        close: async () => {
          server.closeAllConnections();
          server.close();
        },
      };
      h = await startHarness("sqlite", { profile: "rogeriq", listen: true, trustProxy: ["127.0.0.1"], allowUpstream: ["127.0.0.1"] });
      portal = await createPortal(h.kg, { user: h.owner.user, keyId: null, ip: null }, { domain: `${kind}.example.com`, upstream: { kind: "http", baseUrl: api.url } });
      const made = await createKey(h.kg, { user: h.owner.user, keyId: null, ip: null }, { portalId: portal.id, name: "reader", scopes: "kb:read" });
      reader = { id: made.key.id, raw: made.rawKey };
      const ports = { keygate: Number(new URL(h.url!).port), api: Number(new URL(api.url).port) };
      proxy = await startProxy(kind, (port) => documentedConfig(FILES[kind], { ...ports, proxy: port }));
    });
    after(async () => {
      await client.close();
      await proxy?.close();
      await h?.close();
      await api?.close();
    });
    beforeEach(() => {
      api.seen.length = 0;
    });

    it("issue 13: an admitted request reaches the API with keygate's assertion (verified with jose against the JWKS), never the key; the client gets keygate's request id and rate-limit headers", async () => {
      const r = await send("GET", `${P}/kb/articles?status=published`, { "x-api-key": reader.raw, "x-keygate-identity": "forged" });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json(), { from: "api", url: `${P}/kb/articles?status=published` });
      const seen = api.seen[0]!;
      assert.equal(seen.headers["x-api-key"], undefined, "the key stays with the proxy");
      assert.notEqual(seen.headers["x-keygate-identity"], "forged", "the client's own assertion is replaced");
      const { payload } = await jwtVerify(String(seen.headers["x-keygate-identity"]), createRemoteJWKSet(new URL(`${h.url}/.well-known/jwks.json`)), {
        issuer: "keygate",
        audience: proxy.url,
        currentDate: new Date(h.clock.now),
      });
      assert.equal(payload.sub, reader.id);
      assert.deepEqual(payload.scopes, ["kb:read"]);
      assert.match(String(r.headers["x-request-id"]), /^req_/);
      assert.equal(seen.headers["x-request-id"], r.headers["x-request-id"], "the API and the client see one request id");
      assert.equal(r.headers["x-ratelimit-limit"], "600");
      assert.ok(Number(r.headers["x-ratelimit-remaining"]) < 600);
    });

    it("issue 13: refusals reach the client as keygate made them: 401 with the envelope, 403 out of scope, and nothing reaches the API", async () => {
      const none = await send("GET", `${P}/kb/articles`);
      assert.equal(none.status, 401, none.text);
      assert.equal(none.json().code, "MISSING_API_KEY");
      assert.match(String(none.json().request_id), /^req_/, "RogerIQ's envelope");
      assert.match(String(none.headers["content-type"]), /application\/json/);
      const scope = await send("DELETE", "/v1/orgs/o1/projects/p1", { "x-api-key": reader.raw });
      assert.equal(scope.status, 403, scope.text);
      assert.equal(scope.json().code, "INSUFFICIENT_SCOPE");
      assert.equal(api.seen.length, 0);
    });

    it("issue 13: a 429 passes through with Retry-After, the rate-limit headers and the envelope", async () => {
      const limited = await createKey(h.kg, { user: h.owner.user, keyId: null, ip: null }, { portalId: portal.id, name: "limited", scopes: "kb:read", rateLimit: 2 });
      for (let i = 0; i < 2; i++) assert.equal((await send("GET", `${P}/kb/articles`, { "x-api-key": limited.rawKey })).status, 200);
      const r = await send("GET", `${P}/kb/articles`, { "x-api-key": limited.rawKey });
      assert.equal(r.status, 429, r.text);
      assert.equal(r.json().code, "RATE_LIMITED");
      assert.ok(Number(r.headers["retry-after"]) >= 1, JSON.stringify(r.headers));
      assert.equal(r.headers["x-ratelimit-limit"], "2");
      assert.equal(r.headers["x-ratelimit-remaining"], "0");
      assert.match(String(r.headers.ratelimit), /r=0/);
      assert.equal(api.seen.length, 2);
    });

    it("issue 13: the proxy keeps its connections to keygate alive: 30 checks, at most two connections", async () => {
      let opened = 0;
      const count = () => opened++;
      h.server!.on("connection", count);
      try {
        for (let i = 0; i < 30; i++) assert.equal((await send("GET", `${P}/kb/articles?i=${i}`, { "x-api-key": reader.raw })).status, 200);
      } finally {
        h.server!.off("connection", count);
      }
      assert.equal(api.seen.length, 30);
      assert.ok(opened <= 2, `${opened} connections to keygate for 30 checks`);
    });
  });
}
