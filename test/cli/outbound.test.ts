/**
 * Issue 10.2 through `keygate serve`: --allow-upstream (repeatable) and KEYGATE_ALLOW_UPSTREAM
 * decide which non-public upstream addresses a portal may use; the cause of a failed Bitrix24
 * call is in the log, not in the answer.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { keygate, startServe } from "./run.ts";
import { freePort } from "../support/services.ts";

/** Starts serve with KEYGATE_ALLOW_UPSTREAM set (or not) for the child only. */
async function serveWith(env: string | undefined, ...args: string[]) {
  const saved = process.env.KEYGATE_ALLOW_UPSTREAM;
  if (env === undefined) delete process.env.KEYGATE_ALLOW_UPSTREAM;
  else process.env.KEYGATE_ALLOW_UPSTREAM = env;
  try {
    const served = await startServe(...args);
    const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(served.output)![1]!;
    const call = async (method: string, path: string, body?: unknown, as = key) => {
      const res = await fetch(`${served.url}${path}`, { method, headers: { "x-api-key": as, ...(body === undefined ? {} : { "content-type": "application/json" }) }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { data?: { id: string; rawKey: string }; error?: { code: string; param?: string; details?: unknown } } };
    };
    return { ...served, call };
  } finally {
    if (saved === undefined) delete process.env.KEYGATE_ALLOW_UPSTREAM;
    else process.env.KEYGATE_ALLOW_UPSTREAM = saved;
  }
}

const webhook = (port: number) => ({ kind: "bitrix24", webhookUrl: `http://127.0.0.1:${port}/rest/1/s3cr3tt0k3n/` });

describe("keygate serve --allow-upstream", () => {
  it("issue 10.2: an entry that is not a host, an address or a CIDR range stops serve with a usage error", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "keygate-outbound-"));
    for (const bad of ["not a host!", "10.0.0.0/99"]) {
      const r = keygate("serve", "--port", "0", "--data-dir", dataDir, "--allow-upstream", "127.0.0.1", "--allow-upstream", bad);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /--allow-upstream/);
      assert.ok(r.stderr.includes(bad), r.stderr);
    }
  });

  it("issue 10.2: without an allowance a loopback webhook is refused; --allow-upstream (repeatable) allows it", async () => {
    const port = await freePort();
    const plain = await serveWith(undefined);
    try {
      const r = await plain.call("POST", "/v1/portals", { domain: "loop.example.com", upstream: webhook(port) });
      assert.equal(r.status, 400);
      assert.equal(r.body.error?.param, "upstream.webhookUrl");
    } finally {
      plain.child.kill("SIGTERM");
      await once(plain.child, "exit");
    }
    const allowed = await serveWith("192.0.2.1", "--allow-upstream", "10.0.0.0/8", "--allow-upstream", "127.0.0.1");
    try {
      assert.equal((await allowed.call("POST", "/v1/portals", { domain: "loop.example.com", upstream: webhook(port) })).status, 201);
      assert.equal((await allowed.call("POST", "/v1/portals", { domain: "ten.example.com", upstream: { kind: "http", baseUrl: "http://10.1.2.3/" } })).status, 201);
      // The flag replaces the variable.
      assert.equal((await allowed.call("POST", "/v1/portals", { domain: "env.example.com", upstream: { kind: "http", baseUrl: "http://192.0.2.1/" } })).status, 400);
    } finally {
      allowed.child.kill("SIGTERM");
      await once(allowed.child, "exit");
    }
  });

  it("issue 10.2: KEYGATE_ALLOW_UPSTREAM allows; a Bitrix24 call that fails answers 502 without its cause, which is logged", async () => {
    const port = await freePort();
    const served = await serveWith("10.0.0.0/8, 127.0.0.1");
    try {
      const portal = await served.call("POST", "/v1/portals", { domain: "down.example.com", upstream: webhook(port) });
      assert.equal(portal.status, 201);
      const key = await served.call("POST", "/v1/keys", { portalId: portal.body.data!.id, name: "reader", scopes: ["crm"] });
      assert.equal(key.status, 201);
      const r = await served.call("GET", "/v1/deals/1", undefined, key.body.data!.rawKey);
      assert.equal(r.status, 502);
      assert.equal(r.body.error?.code, "BITRIX_UNAVAILABLE");
      assert.doesNotMatch(JSON.stringify(r.body), /ECONNREFUSED|s3cr3tt0k3n/);
      // The log line is written as the answer goes out.
      for (let i = 0; i < 50 && !served.logs().includes("Bitrix24 gave no REST answer"); i++) await new Promise((done) => setTimeout(done, 20));
      const line = served.logs().split("\n").find((l) => l.includes("Bitrix24 gave no REST answer"));
      assert.ok(line, served.logs());
      assert.match(line, /ECONNREFUSED/);
      assert.doesNotMatch(line, /s3cr3tt0k3n/);
    } finally {
      served.child.kill("SIGTERM");
      await once(served.child, "exit");
    }
  });
});
