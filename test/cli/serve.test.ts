import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { keyDigest } from "../../src/core/keys/format.ts";
import { openStore } from "../../src/store/index.ts";
import { probeRedis, redisUrl, requireService } from "../support/services.ts";
import { keygate, keygateBin, repoRoot } from "./run.ts";

/** Starts `keygate serve` on a free port and resolves with its base URL once it says it listens. */
async function startServe(...args: string[]) {
  const dataDir = args.includes("--data-dir") ? [] : ["--data-dir", mkdtempSync(join(tmpdir(), "keygate-serve-"))];
  const child = spawn(process.execPath, [keygateBin, "serve", "--port", "0", ...dataDir, ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8");
  for await (const chunk of child.stdout) {
    output += chunk as string;
    const m = /keygate listening on (http:\/\/\S+) \(profile (\w+),/.exec(output);
    if (m) return { child, url: m[1]!, profile: m[2]!, output };
  }
  throw new Error(`keygate serve exited without listening:\n${output}`);
}

const redisUp = await requireService("keygate serve --redis", `Redis at ${redisUrl()}`, () => probeRedis(redisUrl()));

describe("keygate serve", () => {
  it("answers GET /healthz with 200 and an X-Request-Id, then stops on SIGTERM", async () => {
    const { child, url, profile } = await startServe();
    try {
      assert.equal(profile, "vibecode");
      const res = await fetch(`${url}/healthz`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: "ok", profile: "vibecode", limits: "memory" });
      assert.match(res.headers.get("x-request-id") ?? "", /^req_[0-9a-f-]{36}$/);
    } finally {
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      assert.equal(code, 0);
    }
  });

  it("on an empty data directory, sets it up and prints the owner's management key and a curl line once", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "keygate-serve-"));
    const first = await startServe("--data-dir", dataDir);
    try {
      const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(first.output)?.[1];
      assert.ok(key, first.output);
      const curl = /Try it: curl -H "X-Api-Key: (\S+)" (\S+)/.exec(first.output);
      assert.equal(curl?.[1], key);
      const res = await fetch(curl![2]!, { headers: { "X-Api-Key": key } });
      assert.equal(res.status, 200);
      const me = (await res.json()) as { success: boolean; data: { type: string; scopes: string[] } };
      assert.equal(me.data.type, "management");
      assert.deepEqual(me.data.scopes, ["vibe:mgmt:keys", "vibe:mgmt:portals", "vibe:mgmt:feedback"]);
    } finally {
      first.child.kill("SIGTERM");
      await once(first.child, "exit");
    }
    const second = await startServe("--data-dir", dataDir);
    second.child.kill("SIGTERM");
    await once(second.child, "exit");
    assert.doesNotMatch(second.output, /vibe_live_|Try it/);
  });

  it("on SIGTERM writes what it has counted (last-used time, request log) before it closes its store", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "keygate-serve-"));
    const { child, url, output } = await startServe("--data-dir", dataDir);
    let logged = "";
    child.stderr.setEncoding("utf8");
    for (const stream of [child.stdout, child.stderr]) stream.on("data", (chunk: string) => (logged += chunk));
    const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(output)![1]!;
    assert.equal((await fetch(`${url}/v1/me`, { headers: { "X-Api-Key": key } })).status, 200);
    // At once: the usage is written every second, so only the shutdown can write this request.
    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 0);
    assert.doesNotMatch(logged, /write failed|not open/);
    const store = await openStore({ dataDir });
    try {
      const stored = await store.getKeyByDigest(keyDigest(readFileSync(join(dataDir, "secret"), "utf8").trim(), key));
      assert.ok(stored?.lastUsedAt, "the last-used time was written");
      assert.equal((await store.listRequests(stored.id, { limit: 10 })).length, 1, "the request log has the request");
    } finally {
      await store.close();
    }
  });

  it("with --redis, shares its rate limits through Redis and says so on /healthz", { skip: !redisUp }, async () => {
    const { child, url } = await startServe("--redis", redisUrl());
    try {
      assert.equal(((await (await fetch(`${url}/healthz`)).json()) as { limits: string }).limits, "redis");
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  });

  it("serves another built-in profile with --profile", async () => {
    const { child, profile } = await startServe("--profile", "rogeriq");
    child.kill("SIGTERM");
    await once(child, "exit");
    assert.equal(profile, "rogeriq");
  });

  it("refuses a bad port or profile with exit code 2 and says why", () => {
    const port = keygate("serve", "--port", "http");
    assert.equal(port.status, 2);
    assert.match(port.stderr, /--port must be a whole number/);
    const profile = keygate("serve", "--port", "0", "--profile", "nosuch");
    assert.equal(profile.status, 2);
    assert.match(profile.stderr, /no built-in profile "nosuch"/);
  });
});
