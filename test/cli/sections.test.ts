/**
 * Issue 17 §2 through `keygate serve`: the platform sections are connected by flags (or their
 * KEYGATE_* variables), checked at start; a real serve forwards an openai client's chat and a
 * search to the providers it was given.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import OpenAI from "openai";
import { FAKE_AI_KEY, fakeOpenAi, fakeSearxng } from "../support/platform.ts";
import { keygateBin, repoRoot, startServe } from "./run.ts";

describe("issue 17 §2: keygate serve connects the platform sections", () => {
  it("a bad section setting stops serve at start with a usage error naming the flag and the variable", async () => {
    const run = (env: Record<string, string>, ...args: string[]) => {
      const child = spawn(process.execPath, [keygateBin, "serve", "--data-dir", mkdtempSync(join(tmpdir(), "keygate-sections-")), ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
      return once(child, "exit").then(([code]) => ({ code: code as number, err }));
    };
    await Promise.all([
      run({ KEYGATE_AI_BASE_URL: "ftp://models.example" }).then((r) => {
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, /--ai-base-url must be an http:\/\/ or https:\/\/ URL, not "ftp:\/\/models.example" \(the flag, or KEYGATE_AI_BASE_URL\)/);
      }),
      run({}, "--ai-default-model", "gpt-4o").then((r) => assert.match(r.err, /configure the provider of --ai-base-url: give it too/)),
      run({ KEYGATE_AI_BASE_URL: "http://127.0.0.1:1/v1", KEYGATE_AI_TIMEOUT_SECONDS: "0" }).then((r) => assert.match(r.err, /--ai-timeout-seconds must be a whole number from 1 to 3600/)),
      run({ KEYGATE_SEARCH_URL: "searx.local" }).then((r) => assert.match(r.err, /--search-url must be an http:\/\/ or https:\/\/ URL, not "searx.local" \(the flag, or KEYGATE_SEARCH_URL\)/)),
    ]);
  });

  it("with --ai-base-url, --ai-api-key, --ai-default-model and --search-url, an API key chats (the openai client) and searches", async () => {
    const [ai, search] = await Promise.all([fakeOpenAi(), fakeSearxng()]);
    const serve = await startServe("--ai-base-url", ai.url, "--ai-api-key", FAKE_AI_KEY, "--ai-default-model", "echo-1", "--search-url", search.url);
    try {
      const owner = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(serve.output)![1]!;
      const call = async (method: string, path: string, key: string, body?: unknown) =>
        (await fetch(`${serve.url}${path}`, { method, headers: { "x-api-key": key, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined })).json() as Promise<{ data: Record<string, unknown> & { id: string; rawKey: string } }>;
      const portals = (await call("GET", "/v1/portals", owner)).data as unknown as { id: string }[];
      const key = (await call("POST", "/v1/keys", owner, { portalId: portals[0]!.id, name: "agent", scopes: ["crm"] })).data.rawKey;
      const me = (await call("GET", "/v1/me", key)).data;
      assert.deepEqual(me.sections, { ai: { scope: "vibe:ai", available: true }, search: { scope: "vibe:search", available: true } });
      const chat = await new OpenAI({ apiKey: key, baseURL: `${serve.url}/v1`, maxRetries: 0 }).chat.completions.create({ model: "auto", messages: [{ role: "user", content: "ping" }] });
      assert.equal(chat.choices[0]!.message.content, "echo: ping");
      const found = (await call("POST", "/v1/search", key, { query: "keygate", limit: 1 })).data as unknown as { results: { url: string }[] };
      assert.deepEqual(found.results.map((r) => r.url), ["https://example.com/keygate/1"]);
    } finally {
      serve.child.kill("SIGTERM");
      await once(serve.child, "exit");
      await Promise.all([ai.close(), search.close()]);
    }
  });
});
