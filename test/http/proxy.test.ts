/**
 * The HTTP upstream (docs/upstreams.md, "HTTP upstream"): RogerIQ and Atender requests that pass
 * verification are forwarded to the portal's `{kind: "http", baseUrl}`, with the caller's identity
 * in one signed assertion (issue 13: X-Keygate-Identity, a JWS the upstream verifies with `jose`
 * against keygate's /.well-known/jwks.json); everything refused is refused before anything reaches
 * the upstream.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse, createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import { createKey, updateKey } from "../../src/manage/keys.ts";
import { createPortal, updatePortal } from "../../src/manage/portals.ts";
import type { Portal } from "../../src/store/store.ts";
import { type JSONWebKeySet, type JWTPayload, createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { freePort } from "../support/services.ts";

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** A small upstream: records every request it gets, answers with `handler` or an echo. */
async function startUpstream(handler?: Handler): Promise<{ url: string; seen: Seen[]; server: Server; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    if (handler) return handler(req, res, body);
    res.writeHead(200, {
      "content-type": "application/json",
      "x-upstream": "rogeriq",
      "set-cookie": ["a=1", "b=2"],
      connection: "keep-alive, x-hop",
      "x-hop": "for the next hop only",
      "keep-alive": "timeout=5",
    });
    res.end(JSON.stringify({ method: req.method, url: req.url, body }));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    server,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

/** A request over a real socket, with the path exactly as given (no URL normalisation on the way). */
function rawRequest(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode!, body: parsed, headers: res.headers as Reply["headers"] });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A flat-envelope error (RogerIQ, Atender): status, code, request_id; returns the body. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function refused(r: Reply, status: number, code: string): any {
  assert.equal(r.status, status, `${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body?.code, code, JSON.stringify(r.body));
  assert.match(String(r.body.request_id), /^req_/);
  return r.body;
}

const actorOf = (h: Harness) => ({ user: h.owner.user, keyId: null, ip: null });

async function portalFor(h: Harness, domain: string, upstream: { kind: string; baseUrl?: string }): Promise<Portal> {
  return createPortal(h.kg, actorOf(h), { domain, upstream });
}

async function keyFor(h: Harness, portal: Portal, scopes: string, extra: { accessMode?: "READONLY" | "READWRITE"; ipWhitelist?: string[] } = {}): Promise<string> {
  return (await createKey(h.kg, actorOf(h), { portalId: portal.id, name: `key ${scopes}`, scopes, ...extra })).rawKey;
}

const P = "/v1/projects/p1";

/**
 * What an upstream does with X-Keygate-Identity (docs/upstreams.md): verifies it with `jose`
 * against keygate's JWKS, fetched over HTTP, for its own audience, on the harness clock.
 */
async function verifyAssertion(h: Harness, headers: IncomingHttpHeaders, audience: string, options: { at?: number; jwksUrl?: string } = {}): Promise<JWTPayload> {
  const token = headers["x-keygate-identity"];
  assert.equal(typeof token, "string", "one X-Keygate-Identity header");
  const jwks = createRemoteJWKSet(new URL(options.jwksUrl ?? `${h.url}/.well-known/jwks.json`));
  const { payload } = await jwtVerify(token as string, jwks, { issuer: "keygate", audience, algorithms: ["EdDSA"], currentDate: new Date(options.at ?? h.clock.now) });
  return payload;
}

for (const kind of await storeKinds("http: proxy")) {
  describe(`HTTP upstream: RogerIQ [${kind}]`, () => {
    let h: Harness;
    let up: Awaited<ReturnType<typeof startUpstream>>;
    let portal: Portal;
    let kbRead: string;
    let kbWrite: string;

    before(async () => {
      up = await startUpstream();
      h = await startHarness(kind, { profile: "rogeriq", listen: true, allowUpstream: ["127.0.0.1"] });
      portal = await portalFor(h, "riq.example.com", { kind: "http", baseUrl: up.url });
      kbRead = await keyFor(h, portal, "kb:read");
      kbWrite = await keyFor(h, portal, "kb:write");
    });
    after(async () => {
      await h.close();
      await up.close();
    });
    beforeEach(() => {
      up.seen.length = 0;
    });

    it("GET …/kb/articles with kb:read is forwarded with its query string; the upstream's status, body and headers come back", async () => {
      const r = await h.call("GET", `${P}/kb/articles?status=published&q=a%20b&tag=x&tag=y`, { key: kbRead });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { method: "GET", url: `${P}/kb/articles?status=published&q=a%20b&tag=x&tag=y`, body: "" });
      assert.equal(up.seen.length, 1);
      assert.equal(up.seen[0]!.url, `${P}/kb/articles?status=published&q=a%20b&tag=x&tag=y`);
      assert.equal(r.headers["x-upstream"], "rogeriq");
      assert.deepEqual(r.headers["set-cookie"], ["a=1", "b=2"]);
      assert.equal(r.headers["content-type"], "application/json");
      // keygate's own headers: its request id and the key's rate-limit state.
      assert.match(String(r.headers["x-request-id"]), /^req_/);
      assert.equal(r.headers["x-ratelimit-limit"], "600");
      assert.equal(r.headers["x-ratelimit-remaining"], "599");
    });

    it("the upstream never sees the keygate key or other credentials; it sees X-Request-Id and one signed assertion of the key (issue 13)", async () => {
      const r = await h.call("GET", `${P}/kb/articles`, {
        key: kbRead,
        bearer: kbRead,
        headers: { cookie: "session=s3cret", "x-keygate-key-id": "forged", "x-keygate-scopes": "admin", "x-request-id": "mine", "x-custom": "kept" },
      });
      assert.equal(r.status, 200);
      const seen = up.seen[0]!;
      for (const name of ["x-api-key", "authorization", "cookie"]) assert.equal(seen.headers[name], undefined, name);
      assert.ok(!JSON.stringify(seen.headers).includes(kbRead), "the key appears nowhere in what the upstream got");
      assert.equal(seen.headers["x-custom"], "kept");
      assert.equal(seen.headers["x-request-id"], r.headers["x-request-id"], "keygate's request id, not the client's");
      assert.equal(seen.headers["x-forwarded-for"], "127.0.0.1");
      assert.equal(seen.headers.host, new URL(up.url).host, "the upstream's own Host");

      for (const name of Object.keys(seen.headers)) assert.ok(!name.startsWith("x-keygate-") || name === "x-keygate-identity", `${name}: only keygate's assertion`);
      const claims = await verifyAssertion(h, seen.headers, up.url);
      const key = (await h.store.listKeys({ portalId: portal.id })).find((k) => k.scopes.includes("kb:read") && k.scopes.length === 1)!;
      assert.deepEqual(
        { ...claims },
        {
          iss: "keygate",
          aud: up.url,
          sub: key.id,
          key_type: "api",
          portal: portal.id,
          owner: h.owner.user.id,
          scopes: ["kb:read"],
          access_mode: "READWRITE",
          iat: Math.floor(h.clock.now / 1000),
          exp: Math.floor(h.clock.now / 1000) + 300,
        },
      );
      assert.equal(decodeProtectedHeader(seen.headers["x-keygate-identity"] as string).alg, "EdDSA");
    });

    it("a request through a socket (verified and forwarded as it arrives, before Fastify) and one through app.inject are forwarded alike", async () => {
      const viaSocket = await rawRequest(h.url!, "GET", `${P}/kb/articles?x=1`, { "x-api-key": kbRead });
      const viaInject = await h.call("GET", `${P}/kb/articles?x=1`, { key: kbRead });
      assert.equal(up.seen.length, 2);
      for (const [i, r] of [viaSocket, viaInject].entries()) {
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, { method: "GET", url: `${P}/kb/articles?x=1`, body: "" });
        assert.match(String(r.headers["x-request-id"]), /^req_/);
        assert.equal(r.headers["x-ratelimit-limit"], "600");
        assert.equal(r.headers["x-hop"], undefined, "hop-by-hop headers are dropped");
        const seen = up.seen[i]!;
        assert.equal(seen.headers["x-request-id"], r.headers["x-request-id"]);
        assert.deepEqual((await verifyAssertion(h, seen.headers, up.url)).scopes, ["kb:read"]);
      }
      assert.equal(Number(viaInject.headers["x-ratelimit-remaining"]), Number(viaSocket.headers["x-ratelimit-remaining"]) - 1, "both counted in the key's limits");
      // A refusal found as the request arrives is answered by Fastify, in the profile's envelope.
      const refused = await rawRequest(h.url!, "DELETE", `${P}/kb/articles/a1`, { "x-api-key": kbRead });
      assert.equal(refused.status, 403);
      assert.equal((refused.body as { code: string }).code, "INSUFFICIENT_SCOPE");
      assert.match(String(refused.headers["x-request-id"]), /^req_/);
      assert.equal(up.seen.length, 2, "nothing forwarded");
    });

    it("a client that goes away before the upstream answers: the upstream request is stopped, not left to run", async () => {
      let upstreamClosed: () => void = () => {};
      const closed = new Promise<void>((resolve) => (upstreamClosed = resolve));
      const waiting = await startUpstream((req, res) => {
        res.on("close", () => upstreamClosed());
        setTimeout(() => res.destroyed || res.end("too late"), 5_000).unref();
      });
      try {
        const p = await portalFor(h, "riq-gone.example.com", { kind: "http", baseUrl: waiting.url });
        const key = await keyFor(h, p, "kb:read");
        const { hostname, port } = new URL(h.url!);
        const req = httpRequest({ host: hostname, port, path: `${P}/kb/articles`, headers: { "x-api-key": key }, agent: false });
        req.on("error", () => {});
        req.end();
        await new Promise((resolve) => setTimeout(resolve, 200));
        assert.equal(waiting.seen.length, 1, "the request reached the upstream");
        const gone = Date.now();
        req.destroy();
        await closed;
        // The upstream would answer in 5 s, the headers timeout is 30 s: only the client's going can close it now.
        assert.ok(Date.now() - gone < 2_000, "the upstream's request closed when the client went, not at its own time");
      } finally {
        await waiting.close();
      }
    });

    it("issue 13: one assertion per key, reused: signed once, sent on every request until a minute before it expires, then renewed", async () => {
      const key = await keyFor(h, portal, "kb:read,kb:write");
      for (let i = 0; i < 3; i++) await h.call("GET", `${P}/kb/articles?n=${i}`, { key });
      const sent = up.seen.map((s) => s.headers["x-keygate-identity"]);
      assert.equal(new Set(sent).size, 1, "the same assertion on every request");
      assert.notEqual(up.seen[0]!.headers["x-request-id"], up.seen[1]!.headers["x-request-id"], "X-Request-Id stays per request, beside it");
      const first = await verifyAssertion(h, up.seen[0]!.headers, up.url);
      h.clock.advance(239_000);
      await h.call("GET", `${P}/kb/articles`, { key });
      assert.equal(up.seen[3]!.headers["x-keygate-identity"], sent[0], "still kept 4 minutes in");
      h.clock.advance(1_000);
      await h.call("GET", `${P}/kb/articles`, { key });
      const renewed = up.seen[4]!.headers["x-keygate-identity"];
      assert.notEqual(renewed, sent[0], "renewed a minute before it expires");
      const second = await verifyAssertion(h, up.seen[4]!.headers, up.url);
      assert.equal(second.iat, first.iat! + 240);
      assert.equal(second.exp! - second.iat!, 300);
    });

    it("issue 13: a change of the key is in the next request's assertion, not the kept one", async () => {
      const key = await keyFor(h, portal, "kb:read");
      await h.call("GET", `${P}/kb/articles`, { key });
      assert.equal((await verifyAssertion(h, up.seen[0]!.headers, up.url)).access_mode, "READWRITE");
      const stored = (await h.store.listKeys({ portalId: portal.id })).find((k) => k.name === "key kb:read" && k.accessMode === "READWRITE" && k.scopes.length === 1)!;
      await updateKey(h.kg, actorOf(h), stored.id, { accessMode: "READONLY" });
      await h.call("GET", `${P}/kb/articles`, { key });
      assert.equal((await verifyAssertion(h, up.seen[1]!.headers, up.url)).access_mode, "READONLY");
    });

    it("issue 13: tampering, another audience, another server secret, or a stale assertion fails the upstream's check", async () => {
      await h.call("GET", `${P}/kb/articles?x=1`, { key: kbRead });
      const seen = up.seen[0]!;
      const token = seen.headers["x-keygate-identity"] as string;
      await verifyAssertion(h, seen.headers, up.url);
      const [head, body, signature] = token.split(".");
      const claims = JSON.parse(Buffer.from(body!, "base64url").toString());
      const forged = `${head}.${Buffer.from(JSON.stringify({ ...claims, scopes: ["admin"] })).toString("base64url")}.${signature}`;
      await assert.rejects(verifyAssertion(h, { "x-keygate-identity": forged }, up.url), { code: "ERR_JWS_SIGNATURE_VERIFICATION_FAILED" });
      await assert.rejects(verifyAssertion(h, seen.headers, "https://another-upstream.example.com"), { code: "ERR_JWT_CLAIM_VALIDATION_FAILED", claim: "aud" });
      await assert.rejects(verifyAssertion(h, seen.headers, up.url, { at: h.clock.now + 301_000 }), { code: "ERR_JWT_EXPIRED" });
      // Another deployment (another server secret) publishes other keys: its JWKS does not know this kid.
      const other = await startHarness("sqlite", { profile: "rogeriq", listen: true });
      try {
        await assert.rejects(verifyAssertion(h, seen.headers, up.url, { jwksUrl: `${other.url}/.well-known/jwks.json` }), { code: "ERR_JWKS_NO_MATCHING_KEY" });
      } finally {
        await other.close();
      }
    });

    it("issue 13: rotation: nodes one key generation apart each publish the other's key, so an assertion from either verifies against either's JWKS", async () => {
      const next = await startHarness(kind, { alongside: h, profile: "rogeriq", allowUpstream: ["127.0.0.1"], identityKeyGeneration: 2 });
      try {
        const jwks = async (node: Harness) => {
          const r = await node.call("GET", "/.well-known/jwks.json");
          assert.equal(r.status, 200);
          assert.match(String(r.headers["cache-control"]), /max-age=/);
          return r.body as JSONWebKeySet;
        };
        const [old, fresh] = [await jwks(h), await jwks(next)];
        assert.equal(old.keys.length, 2, "generation 1 publishes 1 and 2");
        assert.equal(fresh.keys.length, 3, "generation 2 publishes 1, 2 and 3");
        for (const k of [...old.keys, ...fresh.keys]) assert.deepEqual(Object.keys(k).sort(), ["alg", "crv", "kid", "kty", "use", "x"], "public keys only");
        await h.call("GET", `${P}/kb/articles`, { key: kbRead });
        await next.call("GET", `${P}/kb/articles`, { key: kbRead });
        const [a, b] = up.seen.map((s) => s.headers["x-keygate-identity"] as string);
        assert.notEqual(decodeProtectedHeader(a!).kid, decodeProtectedHeader(b!).kid, "the new generation signs with its own key");
        for (const token of [a!, b!]) {
          for (const set of [old, fresh]) {
            const { payload } = await jwtVerify(token, createLocalJWKSet(set), { issuer: "keygate", audience: up.url, currentDate: new Date(h.clock.now) });
            assert.deepEqual(payload.scopes, ["kb:read"]);
          }
        }
      } finally {
        await next.close();
      }
    });

    it("hop-by-hop headers are stripped both ways, with the ones Connection names", async () => {
      const r = await rawRequest(h.url!, "GET", `${P}/kb/articles`, {
        "x-api-key": kbRead,
        connection: "keep-alive, x-private-hop",
        "x-private-hop": "secret",
        "keep-alive": "timeout=5",
        te: "trailers",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "proxy-connection": "keep-alive",
        upgrade: "h2c",
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const seen = up.seen[0]!.headers;
      for (const name of ["x-private-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection", "upgrade"]) assert.equal(seen[name], undefined, name);
      assert.equal(seen.connection, "keep-alive", "keygate's own connection to the upstream");
      // The upstream's answer listed x-hop in Connection and sent Keep-Alive.
      assert.equal(r.headers["x-hop"], undefined);
      assert.notEqual(r.headers["keep-alive"], "timeout=5", "keygate's own Keep-Alive, not the upstream's");
      assert.equal(r.headers["x-upstream"], "rogeriq");
    });

    it("PATCH …/kb/articles/:id needs kb:write: refused for kb:read before the upstream; forwarded with its body unchanged for kb:write", async () => {
      const body = '{"title": "Hello",   "body": "kept byte for byte"}';
      refused(await h.call("PATCH", `${P}/kb/articles/a1`, { key: kbRead, body }), 403, "INSUFFICIENT_SCOPE");
      assert.equal(up.seen.length, 0, "nothing reached the upstream");
      const r = await h.call("PATCH", `${P}/kb/articles/a1`, { key: kbWrite, body });
      assert.equal(r.status, 200);
      assert.equal(up.seen[0]!.method, "PATCH");
      assert.equal(up.seen[0]!.body, body);
      assert.equal(up.seen[0]!.headers["content-type"], "application/json");
    });

    it("bodies keygate could not parse pass through too: invalid JSON, other media types", async () => {
      const r = await h.call("POST", `${P}/kb/articles`, { key: kbWrite, body: '{"not json', headers: { "content-type": "application/json" } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(up.seen[0]!.body, '{"not json');
      const md = await rawRequest(h.url!, "POST", `${P}/kb/articles`, { "x-api-key": kbWrite, "content-type": "text/markdown" }, "# Title\n\nbody");
      assert.equal(md.status, 200);
      assert.equal(up.seen[1]!.body, "# Title\n\nbody");
      assert.equal(up.seen[1]!.headers["content-type"], "text/markdown");
    });

    it("DELETE /v1/orgs/:orgId/projects/:projectId needs projects:admin: write and kb:write are refused before the upstream", async () => {
      const write = await keyFor(h, portal, "write");
      for (const key of [write, kbWrite]) refused(await h.call("DELETE", "/v1/orgs/o1/projects/p1", { key }), 403, "INSUFFICIENT_SCOPE");
      assert.equal(up.seen.length, 0);
      const admin = await keyFor(h, portal, "projects:admin");
      const r = await h.call("DELETE", "/v1/orgs/o1/projects/p1", { key: admin });
      assert.equal(r.status, 200);
      assert.deepEqual(up.seen.map((s) => `${s.method} ${s.url}`), ["DELETE /v1/orgs/o1/projects/p1"]);
    });

    it("a read-only key reads, and its writes are blocked before the upstream", async () => {
      const ro = await keyFor(h, portal, "kb:write", { accessMode: "READONLY" });
      assert.equal((await h.call("GET", `${P}/kb/articles/a1`, { key: ro })).status, 200);
      for (const method of ["POST", "PATCH", "DELETE"]) {
        const path = method === "POST" ? `${P}/kb/articles` : `${P}/kb/articles/a1`;
        refused(await h.call(method, path, { key: ro, body: "{}" }), 403, "WRITE_BLOCKED_READONLY_KEY");
      }
      assert.equal(up.seen.length, 1);
      assert.equal((await verifyAssertion(h, up.seen[0]!.headers, up.url)).access_mode, "READONLY");
    });

    it("no key, a wrong key, an IP outside the allow-list: refused before the upstream", async () => {
      refused(await h.call("GET", `${P}/kb/articles`), 401, "MISSING_API_KEY");
      refused(await h.call("GET", `${P}/kb/articles`, { key: "riq_" + "a".repeat(38) }), 401, "INVALID_API_KEY");
      const pinned = await keyFor(h, portal, "kb:read", { ipWhitelist: ["203.0.113.7"] });
      refused(await h.call("GET", `${P}/kb/articles`, { key: pinned }), 403, "IP_NOT_ALLOWED");
      assert.equal((await h.call("GET", `${P}/kb/articles`, { key: pinned, ip: "203.0.113.7" })).status, 200);
      assert.equal(up.seen.length, 1);
    });

    it("an encoded or dotted path cannot skip verification or reach another route upstream", async () => {
      // kb:write may delete articles, not projects: every spelling that would reach the project is refused.
      const attempts: [string, string, number, string][] = [
        ["DELETE", `${P}/kb/articles/x%2F..%2F..%2F..%2Forgs%2Fo1%2Fprojects%2Fp1`, 400, "VALIDATION_ERROR"],
        ["DELETE", `${P}/kb/articles/x%2f..%2f..%2f..%2forgs%2fo1%2fprojects%2fp1`, 400, "VALIDATION_ERROR"],
        ["DELETE", `${P}/kb/articles/..`, 400, "VALIDATION_ERROR"],
        ["DELETE", `${P}/kb/articles/%2e%2e`, 400, "VALIDATION_ERROR"],
        ["DELETE", `${P}/kb/articles/.%2E;x`, 400, "VALIDATION_ERROR"],
        ["DELETE", `${P}/kb/articles/x%5C..%5Corgs`, 400, "VALIDATION_ERROR"],
        ["DELETE", `${P}/kb/articles//x`, 400, "VALIDATION_ERROR"],
        ["DELETE", "/v1/%6Frgs/o1/projects/p1", 404, "ROUTE_NOT_FOUND"],
        ["DELETE", "/v1/orgs/o1/%70rojects/p1", 404, "ROUTE_NOT_FOUND"],
        ["DELETE", "/V1/orgs/o1/projects/p1", 404, "ROUTE_NOT_FOUND"],
        ["GET", `${P}/kb/%61rticles`, 404, "ROUTE_NOT_FOUND"],
        ["GET", `/v1/projects/p1/kb/articles/a1/../../../../orgs/o1/projects`, 404, "ROUTE_NOT_FOUND"],
        ["GET", `${P}/kb/articles/a1%00`, 400, "VALIDATION_ERROR"],
        ["GET", `${P}/kb/articles/%zz`, 400, "VALIDATION_ERROR"],
      ];
      for (const [method, path, status, code] of attempts) {
        const r = await rawRequest(h.url!, method, path, { "x-api-key": kbWrite });
        assert.equal(r.status, status, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
        if (typeof r.body === "object") assert.equal((r.body as { code: string }).code, code, `${method} ${path}`);
        // Under /v1/ a request is counted as it arrives, even one the router then refuses (%zz).
        if (path.startsWith("/v1/")) assert.ok(r.headers["x-ratelimit-limit"] !== undefined && r.headers["x-request-id"] !== undefined, `${method} ${path}: counted, and says so`);
        const anon = await rawRequest(h.url!, method, path);
        assert.ok(anon.status === 401 || anon.status === 404 || anon.status === 400, `${method} ${path} without a key: ${anon.status}`);
      }
      assert.equal(up.seen.length, 0, "nothing reached the upstream");
      // Percent-encoding in a parameter that keeps the route is forwarded as sent.
      const ok = await rawRequest(h.url!, "GET", `${P}/kb/articles/caf%C3%A9`, { "x-api-key": kbWrite });
      assert.equal(ok.status, 200);
      assert.equal(up.seen[0]!.url, `${P}/kb/articles/caf%C3%A9`);
    });

    it("a portal whose upstream is not HTTP: 400 PORTAL_NOT_LINKED, nothing forwarded", async () => {
      const sandbox = await portalFor(h, "riq-sandbox.example.com", { kind: "sandbox" });
      const key = await keyFor(h, sandbox, "kb:read");
      const body = refused(await h.call("GET", `${P}/kb/articles`, { key }), 400, "PORTAL_NOT_LINKED");
      assert.match(body.error, /HTTP upstream/);
      assert.equal(up.seen.length, 0);
    });

    it("a change of the portal's upstream takes effect on the next request", async () => {
      const other = await startUpstream((_req, res) => res.end("other"));
      try {
        const p = await portalFor(h, "riq-moving.example.com", { kind: "http", baseUrl: up.url });
        const key = await keyFor(h, p, "kb:read");
        assert.equal((await h.call("GET", `${P}/kb/articles`, { key })).status, 200);
        assert.equal(up.seen.length, 1);
        await updatePortal(h.kg, actorOf(h), p.id, { upstream: { kind: "http", baseUrl: `${other.url}/base/` } });
        const r = await h.call("GET", `${P}/kb/articles?x=1`, { key });
        assert.equal(r.body, "other");
        assert.equal(up.seen.length, 1);
        // The base URL's path is a prefix; the assertion's audience is the base URL.
        const seen = other.seen[0]!;
        assert.equal(seen.url, `/base${P}/kb/articles?x=1`);
        assert.equal((await verifyAssertion(h, seen.headers, `${other.url}/base`)).portal, p.id);
        await updatePortal(h.kg, actorOf(h), p.id, { upstream: { kind: "sandbox" } });
        refused(await h.call("GET", `${P}/kb/articles`, { key }), 400, "PORTAL_NOT_LINKED");
      } finally {
        await other.close();
      }
    });

    it("the upstream's statuses and error bodies pass through as they are", async () => {
      const teapot = await startUpstream((_req, res) => {
        res.writeHead(418, { "content-type": "text/plain", "x-why": "short and stout" });
        res.end("I'm a teapot");
      });
      try {
        const p = await portalFor(h, "riq-teapot.example.com", { kind: "http", baseUrl: teapot.url });
        const r = await h.call("POST", `${P}/kb/articles`, { key: await keyFor(h, p, "kb:write"), body: "{}" });
        assert.equal(r.status, 418);
        assert.equal(r.body, "I'm a teapot");
        assert.equal(r.headers["x-why"], "short and stout");
        assert.equal(r.headers["content-type"], "text/plain");
      } finally {
        await teapot.close();
      }
    });

    it("an upstream that is down: 502 UPSTREAM_UNAVAILABLE", async () => {
      const p = await portalFor(h, "riq-down.example.com", { kind: "http", baseUrl: `http://127.0.0.1:${await freePort()}` });
      const key = await keyFor(h, p, "kb:write");
      refused(await h.call("GET", `${P}/kb/articles`, { key }), 502, "UPSTREAM_UNAVAILABLE");
      // With a body the client is still answered (the client's stream survives the failure).
      refused(await rawRequest(h.url!, "POST", `${P}/kb/articles`, { "x-api-key": key, "content-type": "application/json" }, '{"a":1}'), 502, "UPSTREAM_UNAVAILABLE");
    });

    it("bodies stream both ways: the upstream reads the start of a body before the client has sent the rest", async () => {
      let firstChunk!: () => void;
      const gotFirst = new Promise<void>((resolve) => (firstChunk = resolve));
      const streaming = createServer((req, res) => {
        let total = 0;
        req.on("data", (c: Buffer) => {
          total += c.length;
          firstChunk();
        });
        req.on("end", () => {
          res.writeHead(200, { "content-type": "text/plain" });
          res.write("part one;");
          // The second part only after the client confirmed the first arrived.
          setTimeout(() => res.end(`received ${total}`), 50);
        });
      });
      streaming.listen(0, "127.0.0.1");
      await once(streaming, "listening");
      try {
        const p = await portalFor(h, "riq-stream.example.com", { kind: "http", baseUrl: `http://127.0.0.1:${(streaming.address() as AddressInfo).port}` });
        const key = await keyFor(h, p, "kb:write");
        const { hostname, port } = new URL(h.url!);
        const chunk = Buffer.alloc(256 * 1024, 120);
        const result = await new Promise<{ status: number; parts: string[] }>((resolve, reject) => {
          const req = httpRequest({ host: hostname, port, method: "POST", path: `${P}/kb/articles`, headers: { "x-api-key": key, "content-type": "application/octet-stream" }, agent: false }, (res) => {
            const parts: string[] = [];
            res.on("data", (c: Buffer) => parts.push(c.toString()));
            res.on("end", () => resolve({ status: res.statusCode!, parts }));
          });
          req.on("error", reject);
          req.write(chunk);
          // If keygate buffered the body, the upstream would see nothing until the end: this would time out.
          const timer = setTimeout(() => reject(new Error("the upstream saw nothing of a body still being sent")), 5_000);
          void gotFirst.then(() => {
            clearTimeout(timer);
            req.end(chunk);
          });
        });
        assert.equal(result.status, 200);
        assert.equal(result.parts.join(""), `part one;received ${2 * chunk.length}`);
        assert.ok(result.parts.length >= 2, "the response arrived in parts");
      } finally {
        streaming.closeAllConnections();
        streaming.close();
      }
    });
  });

  describe(`HTTP upstream: timeouts [${kind}]`, () => {
    let h: Harness;
    let slow: Awaited<ReturnType<typeof startUpstream>>;
    before(async () => {
      slow = await startUpstream((req, res) => {
        const delay = req.url!.includes("slow-body") ? 0 : 3_000;
        setTimeout(() => {
          if (res.destroyed) return;
          res.writeHead(200);
          res.write("start;");
          if (req.url!.includes("slow-body")) setTimeout(() => res.end("late"), 3_000);
          else res.end("late");
        }, delay).unref();
      });
      h = await startHarness(kind, { profile: "rogeriq", listen: true, allowUpstream: ["127.0.0.1"], httpUpstream: { headersTimeoutMs: 300, bodyTimeoutMs: 300 } });
    });
    after(async () => {
      await h.close();
      await slow.close();
    });

    it("an upstream slower than the headers timeout: 504 UPSTREAM_TIMEOUT", async () => {
      const p = await portalFor(h, "riq-slow.example.com", { kind: "http", baseUrl: slow.url });
      const key = await keyFor(h, p, "kb:read");
      const started = Date.now();
      refused(await h.call("GET", `${P}/kb/articles`, { key }), 504, "UPSTREAM_TIMEOUT");
      assert.ok(Date.now() - started < 2_500, "answered at the timeout, not when the upstream would have");
    });

    it("a body that stalls after the response began: the response is cut short (the status was sent already)", async () => {
      const p = await portalFor(h, "riq-stall.example.com", { kind: "http", baseUrl: slow.url });
      const key = await keyFor(h, p, "kb:read");
      const { hostname, port } = new URL(h.url!);
      const outcome = await new Promise<string>((resolve) => {
        const req = httpRequest({ host: hostname, port, path: `${P}/kb/search?q=slow-body`, headers: { "x-api-key": key }, agent: false }, (res) => {
          let text = "";
          res.on("data", (c: Buffer) => (text += c.toString()));
          res.on("end", () => resolve(`ended ${res.statusCode} ${text}`));
          res.on("error", () => resolve(`cut ${res.statusCode} ${text}`));
          res.on("aborted", () => resolve(`cut ${res.statusCode} ${text}`));
        });
        req.on("error", () => resolve("cut"));
        req.end();
      });
      assert.match(outcome, /^cut 200 start;$/);
    });
  });

  describe(`HTTP upstream: Atender [${kind}]`, () => {
    let h: Harness;
    let up: Awaited<ReturnType<typeof startUpstream>>;
    let portal: Portal;
    before(async () => {
      up = await startUpstream();
      h = await startHarness(kind, { profile: "atender", listen: true, allowUpstream: ["127.0.0.1"] });
      portal = await portalFor(h, "atender.example.com", { kind: "http", baseUrl: up.url });
    });
    after(async () => {
      await h.close();
      await up.close();
    });
    beforeEach(() => {
      up.seen.length = 0;
    });

    it("GET /api/v1/kb/articles with knowledge:read is verified (outside /v1/) and forwarded", async () => {
      const key = await keyFor(h, portal, "knowledge:read");
      const r = await h.call("GET", "/api/v1/kb/articles?page=2", { bearer: key });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(up.seen[0]!.url, "/api/v1/kb/articles?page=2");
      assert.equal(up.seen[0]!.headers.authorization, undefined);
      assert.deepEqual((await verifyAssertion(h, up.seen[0]!.headers, up.url)).scopes, ["knowledge:read"]);
      // Under /api/, no key is no entry.
      refused(await h.call("GET", "/api/v1/kb/articles"), 401, "MISSING_API_KEY");
      refused(await h.call("GET", "/api/v1/nothing-here/x", { bearer: key }), 404, "ROUTE_NOT_FOUND");
      assert.equal(up.seen.length, 1);
    });

    it("POST /api/v1/kb/articles needs knowledge:write: refused for knowledge:read, forwarded for knowledge:write", async () => {
      const reader = await keyFor(h, portal, "knowledge:read");
      refused(await h.call("POST", "/api/v1/kb/articles", { bearer: reader, body: { title: "x" } }), 403, "INSUFFICIENT_SCOPE");
      assert.equal(up.seen.length, 0);
      const writer = await keyFor(h, portal, "knowledge:write");
      const r = await h.call("POST", "/api/v1/kb/articles", { bearer: writer, body: { title: "x" } });
      assert.equal(r.status, 200);
      assert.equal(up.seen[0]!.body, '{"title":"x"}');
    });

    it("another surface needs its own scope: knowledge:write does not reach /api/v1/settings, however the path is spelled", async () => {
      const writer = await keyFor(h, portal, "knowledge:write");
      refused(await h.call("GET", "/api/v1/settings/general", { bearer: writer }), 403, "INSUFFICIENT_SCOPE");
      const attempts: [string, number][] = [
        ["/api/v1/kb/../settings/general", 400],
        ["/api/v1/kb/%2e%2e/settings/general", 400],
        ["/api/v1/kb/..%2Fsettings%2Fgeneral", 400],
        ["/api/v1/kb/..;/settings/general", 400],
        ["/api/v1/kb/x/../../settings/general", 400],
        ["//api/v1/kb/articles", 400],
        ["/%61pi/v1/settings/general", 404],
        ["/%61pi/v1/kb/articles", 404],
        ["/API/v1/kb/articles", 404],
        ["/api/V1/kb/articles", 404],
      ];
      for (const [path, status] of attempts) {
        const r = await rawRequest(h.url!, "GET", path, { authorization: `Bearer ${writer}` });
        assert.equal(r.status, status, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
      }
      assert.deepEqual(up.seen, [], "nothing reached the upstream");
    });
  });
}
