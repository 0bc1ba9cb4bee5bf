import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { keyDigest } from "../../src/core/keys/format.ts";
import { openStore } from "../../src/store/index.ts";
import { probeRedis, redisUrl, requireService } from "../support/services.ts";
import { keygate, startServe } from "./run.ts";

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
    const { child, url, output, logs } = await startServe("--data-dir", dataDir);
    const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(output)![1]!;
    assert.equal((await fetch(`${url}/v1/me`, { headers: { "X-Api-Key": key } })).status, 200);
    // At once: the usage is written every second, so only the shutdown can write this request.
    child.kill("SIGTERM");
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 0);
    assert.doesNotMatch(logs(), /write failed|not open/);
    const serverSecret = readFileSync(join(dataDir, "secret"), "utf8").trim();
    const store = await openStore({ dataDir, serverSecret });
    try {
      const stored = await store.getKeyByDigest(keyDigest(serverSecret, key));
      assert.ok(stored?.lastUsedAt, "the last-used time was written");
      assert.equal((await store.listRequests(stored.id, { limit: 10 })).length, 1, "the request log has the request");
    } finally {
      await store.close();
    }
  });

  it("issue 10.9: a client going away mid-body is routine: logged at debug, not as an unhandled error", async () => {
    const { child, url, output, logs } = await startServe();
    try {
      const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(output)![1]!;
      const { hostname, port } = new URL(url);
      for (let i = 0; i < 5; i++) {
        const socket = connect(Number(port), hostname);
        await once(socket, "connect");
        socket.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"name":`);
        await new Promise((r) => setTimeout(r, 50));
        socket.destroy();
      }
      // Served after the five: their errors, if any, were logged before this answer.
      assert.equal((await fetch(`${url}/v1/me`, { headers: { "X-Api-Key": key } })).status, 200);
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
    assert.doesNotMatch(logs(), /unhandled error|"level":50/);
    assert.match(logs(), /keygate listening/, "the log is read to its end");
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

  it("issue 13: --identity-key-generation chooses the signing key: the JWKS publishes the generations beside it; a bad value is exit 2", async () => {
    const kids = async (...args: string[]) => {
      const { child, url } = await startServe(...args);
      try {
        const res = await fetch(`${url}/.well-known/jwks.json`);
        assert.equal(res.status, 200);
        return ((await res.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
      } finally {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
    };
    const dataDir = mkdtempSync(join(tmpdir(), "keygate-serve-"));
    const first = await kids("--data-dir", dataDir);
    const third = await kids("--data-dir", dataDir, "--identity-key-generation", "3");
    assert.equal(first.length, 2, "generation 1 publishes 1 and 2");
    assert.equal(third.length, 3, "generation 3 publishes 2, 3 and 4");
    assert.equal(third[0], first[1], "generation 2's key is the same for both: derived from the data directory's secret");
    const bad = keygate("serve", "--port", "0", "--identity-key-generation", "0");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--identity-key-generation must be a whole number from 1/);
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
