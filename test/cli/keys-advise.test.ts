/**
 * Issue 18: `keygate keys advise ID [--json]` against a running keygate (`keygate serve` in a
 * child process), from real traffic sent here: RogerIQ's example, a key holding admin that only
 * ever listed KB articles, is advised kb:read.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { keygateWithEnv, startServe } from "./run.ts";

describe("issue 18: keygate keys advise", () => {
  let child: ChildProcess;
  let url: string;
  let env: Record<string, string>;
  let managementKey: string;
  const cli = (...args: string[]) => keygateWithEnv(env, ...args);
  const api = async (method: string, path: string, body?: unknown, key = managementKey) => {
    const headers = { "x-api-key": key, connection: "close", ...(body ? { "content-type": "application/json" } : {}) };
    const res = await fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as { data: { id: string; rawKey: string } } };
  };
  let keyId: string;

  before(async () => {
    const served = await startServe("--profile", "rogeriq", "--allow-upstream", "127.0.0.1");
    child = served.child;
    url = served.url;
    managementKey = /management key \(shown once, store it now\): (\S+)/.exec(served.output)![1]!;
    env = { KEYGATE_URL: url, KEYGATE_KEY: managementKey };
    // An upstream that is not there: the requests are still the key's, logged with their route.
    const portal = await api("POST", "/v1/portals", { domain: "advise.example.com", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } });
    assert.equal(portal.status, 201);
    const key = await api("POST", "/v1/keys", { portalId: portal.body.data.id, name: "kb lister", scopes: ["admin"] });
    assert.equal(key.status, 201);
    keyId = key.body.data.id;
    for (const page of [1, 2, 3]) await api("GET", `/v1/projects/p1/kb/articles?page=${page}`, undefined, key.body.data.rawKey);
  });
  after(async () => {
    child.kill("SIGTERM");
    await once(child, "exit");
  });

  it("issue 18: keys advise ID --json prints exactly the API's data: admin that only listed KB articles is advised kb:read", async () => {
    const r = cli("keys", "advise", keyId, "--json");
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1, r.stdout);
    const advice = JSON.parse(lines[0]!);
    assert.deepEqual((await api("GET", `/v1/keys/${keyId}/scope-advice`)).body.data, advice);
    assert.deepEqual(advice.suggestedScopes, [{ scope: "kb:read", reason: "covers", covers: ["kb:read"], held: true }]);
    assert.equal(advice.observedRoutes[0].count, 3);
    assert.deepEqual(advice.narrowTo, ["kb:read"]);
  });

  it("issue 18: keys advise ID explains in words: the suggestion, what it covers, the routes, and the command that narrows the key", () => {
    const r = cli("keys", "advise", keyId);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /over 3 logged requests/);
    assert.match(r.stdout, /note: Based on 3 requests/);
    assert.match(r.stdout, /holds: +admin/);
    assert.match(r.stdout, /kb:read {2}\(covers kb:read\)/);
    assert.match(r.stdout, /unused: +none/);
    assert.match(r.stdout, /3 {2}GET \/v1\/projects\/:projectId\/kb\/articles {2}\[kb:read\]/);
    assert.ok(r.stdout.includes(`To narrow the key: keygate keys update ${keyId} --scopes kb:read`), r.stdout);
  });

  it("an unknown key exits 1 with the API's code; no id is a usage error (exit 2)", () => {
    const unknown = cli("keys", "advise", "no-such-key");
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /\[KEY_NOT_FOUND\]/);
    const missing = cli("keys", "advise");
    assert.equal(missing.status, 2, missing.stderr);
  });
});
