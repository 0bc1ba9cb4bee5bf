/**
 * issue 13: the verifiers docs/upstreams.md gives upstreams ("Verifying it") are run as written,
 * against a real keygate's JWKS and a real assertion, so the documentation cannot drift from what
 * keygate signs. Only the example URLs are replaced by this test's. Python runs on Debian's
 * python3 with python3-jwt (.ci/run installs it when missing).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { type IncomingHttpHeaders, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import { type Harness, startHarness } from "../support/gateway.ts";

const DOC = readFileSync(new URL("../../docs/upstreams.md", import.meta.url), "utf8");
const PYTHON = "/usr/bin/python3";

/** The documented verifier in `language`: the fenced block after "**Verifying it.**" that mentions `marker`. */
function documented(language: string, marker: string): string {
  const section = DOC.slice(DOC.indexOf("**Verifying it.**"));
  const block = [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].find((m) => m[1] === language && m[2]!.includes(marker));
  assert.ok(block, `docs/upstreams.md shows a ${language} verifier using ${marker}`);
  return block[2]!;
}

describe("issue 13: the identity verifiers docs/upstreams.md shows", () => {
  let h: Harness;
  let upstream: ReturnType<typeof createServer>;
  let upstreamUrl: string;
  let token: string;
  let keyId: string;

  /** The example URLs of the docs, pointed at this test's keygate and upstream. */
  const localised = (code: string) => code.replaceAll("https://keygate.example.com", h.url!).replaceAll("https://api.example.com", upstreamUrl);

  before(async () => {
    let seen: IncomingHttpHeaders = {};
    upstream = createServer((req, res) => {
      seen = req.headers;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    upstream.listen(0, "127.0.0.1");
    await once(upstream, "listening");
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    // The verifiers check `exp` against the real clock.
    h = await startHarness("sqlite", { profile: "rogeriq", listen: true, allowUpstream: ["127.0.0.1"], startAt: Date.now() });
    const actor = { user: h.owner.user, keyId: null, ip: null };
    const portal = await createPortal(h.kg, actor, { domain: "riq.example.com", upstream: { kind: "http", baseUrl: upstreamUrl } });
    const created = await createKey(h.kg, actor, { portalId: portal.id, name: "kb reader", scopes: "kb:read" });
    keyId = created.key.id;
    const r = await fetch(`${h.url}/v1/projects/p1/kb/articles`, { headers: { "x-api-key": created.rawKey } });
    assert.equal(r.status, 200, await r.text());
    token = seen["x-keygate-identity"] as string;
    assert.equal(typeof token, "string");
  });
  after(async () => {
    await h.close();
    upstream.close();
  });

  it("the Node verifier (jose) accepts the assertion and reads its claims", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keygate-verifier-"));
    const file = join(dir, "verifier.mjs");
    writeFileSync(file, localised(documented("js", "jwtVerify")).replace('from "jose"', `from ${JSON.stringify(import.meta.resolve("jose"))}`));
    const { identity } = (await import(file)) as { identity(req: { headers: Record<string, string> }): Promise<Record<string, unknown>> };
    const claims = await identity({ headers: { "x-keygate-identity": token } });
    assert.equal(claims.sub, keyId);
    await assert.rejects(identity({ headers: { "x-keygate-identity": `${token.slice(0, -4)}AAAA` } }), "a forged signature is refused");
  });

  it("the Python verifier (PyJWT) accepts the assertion and refuses a forged one", async () => {
    const program = `${localised(documented("python", "PyJWKClient"))}
import json, sys
print(json.dumps(identity({"X-Keygate-Identity": sys.argv[1]})))
try:
    identity({"X-Keygate-Identity": sys.argv[1][:-4] + "AAAA"})
    print("forged: accepted")
except jwt.InvalidTokenError:
    print("forged: refused")
`;
    const { stdout } = await promisify(execFile)(PYTHON, ["-c", program, token]);
    const [claims, forged] = stdout.trim().split("\n");
    assert.equal((JSON.parse(claims!) as { sub: string }).sub, keyId);
    assert.equal(forged, "forged: refused");
  });
});
