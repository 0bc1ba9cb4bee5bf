/**
 * Issue 13, section 3: one verification path. The gateway, the library verifier, verify mode
 * (POST /v1/verify) and forward-auth admit through the same admission; so the same key on the same
 * request gets the same decision from all four, and a rule changed in one place — here a route's
 * requirement in a profile file — holds in all four at once.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { BUILTIN_PROFILES, createVerifier, loadProfile } from "../../src/index.ts";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import { type Harness, startHarness } from "../support/gateway.ts";

const ARTICLES = "/v1/projects/p1/kb/articles";
const ELSEWHERE = "198.51.100.1";

/** RogerIQ as a profile file, with listing articles needing `requires` (the built-in: kb:read). */
function profileFile(dir: string, name: string, requires?: string[]): string {
  const spec = JSON.parse(JSON.stringify(BUILTIN_PROFILES.rogeriq)) as { routes: { method: string; path: string; resource?: string; requires?: unknown }[] };
  if (requires) {
    const route = spec.routes.find((r) => r.method === "GET" && r.path.endsWith("/kb/articles"))!;
    delete route.resource;
    route.requires = requires;
  }
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(spec));
  return file;
}

interface Ask {
  method: string;
  path: string;
  /** The client's address (default 127.0.0.1). */
  ip?: string;
}

/** The four ways in, each reduced to its decision: "allowed" or the refusal's code. */
async function decisions(h: Harness, profile: string, asker: string, key: string, ask: Ask): Promise<Record<string, string>> {
  const ip = ask.ip ?? "127.0.0.1";
  const gateway = await h.call(ask.method, ask.path, { key, ip, body: ask.method === "GET" ? undefined : {} });
  const verifier = createVerifier({ profile: loadProfile(profile), store: h.store, serverSecret: h.kg.serverSecret, now: () => h.clock.now });
  const library = await verifier.verify({ key, method: ask.method, path: ask.path, ip });
  await verifier.close();
  const verify = await h.call("POST", "/v1/verify", { key: asker, body: { key, method: ask.method, path: ask.path, ip } });
  assert.equal(verify.status, 200, JSON.stringify(verify.body));
  const forward = await h.call("GET", "/v1/forward-auth", { headers: { "x-forwarded-method": ask.method, "x-forwarded-uri": ask.path, "x-forwarded-for": ip, "x-api-key": key } });
  return {
    gateway: gateway.status === 200 ? "allowed" : gateway.body.code,
    library: library.valid ? "allowed" : library.code,
    "verify mode": verify.body.data.valid ? "allowed" : verify.body.data.code,
    "forward-auth": forward.status === 200 ? "allowed" : forward.body.code,
  };
}

const all = (decision: string) => ({ gateway: decision, library: decision, "verify mode": decision, "forward-auth": decision });

describe("issue 13: one verification path for the gateway, the library verifier, verify mode and forward-auth", () => {
  let dir: string;
  let upstream: Server;
  let baseUrl: string;
  before(async () => {
    dir = mkdtempSync(join(os.tmpdir(), "keygate-one-path-"));
    upstream = createServer((req, res) => req.resume().on("end", () => res.end("{}")));
    upstream.listen(0, "127.0.0.1");
    await once(upstream, "listening");
    baseUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  });
  after(() => {
    upstream.closeAllConnections();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A deployment of a profile file, with a portal in front of the upstream, its keys, and a key that asks in verify mode. */
  async function deployment(profile: string) {
    const h = await startHarness("sqlite", { profile, trustProxy: ["127.0.0.1"], allowUpstream: ["127.0.0.1"] });
    const actor = { user: h.owner.user, keyId: null, ip: null };
    const portal = await createPortal(h.kg, actor, { domain: "one-path.example.com", upstream: { kind: "http", baseUrl } });
    const key = async (scopes: string, extra: { accessMode?: "READONLY"; ipWhitelist?: string[] } = {}) => (await createKey(h.kg, actor, { portalId: portal.id, name: scopes, scopes, ...extra })).rawKey;
    return { h, key, asker: await key("read") };
  }

  it("issue 13: a key's faults get the same code from all four, in the same order", async () => {
    const profile = profileFile(dir, "rogeriq");
    const { h, key, asker } = await deployment(profile);
    try {
      const reader = await key("kb:read");
      const readOnly = await key("kb:write", { accessMode: "READONLY" });
      const pinned = await key("kb:read", { ipWhitelist: ["127.0.0.1"] });
      assert.deepEqual(await decisions(h, profile, asker, reader, { method: "GET", path: ARTICLES }), all("allowed"));
      assert.deepEqual(await decisions(h, profile, asker, reader, { method: "POST", path: ARTICLES }), all("INSUFFICIENT_SCOPE"));
      assert.deepEqual(await decisions(h, profile, asker, readOnly, { method: "POST", path: ARTICLES }), all("WRITE_BLOCKED_READONLY_KEY"));
      assert.deepEqual(await decisions(h, profile, asker, pinned, { method: "GET", path: ARTICLES, ip: ELSEWHERE }), all("IP_NOT_ALLOWED"));
      // The IP step comes before the scope step, wherever the request comes in.
      assert.deepEqual(await decisions(h, profile, asker, pinned, { method: "POST", path: ARTICLES, ip: ELSEWHERE }), all("IP_NOT_ALLOWED"));
      assert.deepEqual(await decisions(h, profile, asker, `riq_${"a".repeat(38)}`, { method: "GET", path: ARTICLES }), all("INVALID_API_KEY"));
    } finally {
      await h.close();
    }
  });

  it("issue 13: a rule changed in one place (the route's requirement in the profile file) holds in all four at once", async () => {
    const before = profileFile(dir, "kb-read");
    const changed = profileFile(dir, "kb-write", ["kb:write"]);
    for (const [profile, expected] of [
      [before, "allowed"],
      [changed, "INSUFFICIENT_SCOPE"],
    ] as const) {
      const { h, key, asker } = await deployment(profile);
      try {
        assert.deepEqual(await decisions(h, profile, asker, await key("kb:read"), { method: "GET", path: ARTICLES }), all(expected), profile);
        assert.deepEqual(await decisions(h, profile, asker, await key("kb:write"), { method: "GET", path: ARTICLES }), all("allowed"), profile);
      } finally {
        await h.close();
      }
    }
  });
});
