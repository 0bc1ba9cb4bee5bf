/**
 * Issue 17 §2, `vibe:ai`: POST /v1/chat/completions and GET /v1/models forwarded to the
 * operator's OpenAI-compatible provider (a fake one started here), driven through keygate with
 * the `openai` npm client as an AI agent would, streaming included; answered in OpenAI's format
 * (public facts: the AI router is not enveloped); the section unconfigured → 503.
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { type Harness, startHarness } from "../support/gateway.ts";
import { FAKE_AI_KEY, STREAM_WORDS, fakeOpenAi } from "../support/platform.ts";
import { fails, makeKey, makePortal, ok } from "./_fixtures.ts";

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("issue 17 §2: vibe:ai, the OpenAI-compatible AI section", () => {
  let h: Harness;
  let fake: Awaited<ReturnType<typeof fakeOpenAi>>;
  let portalId: string;
  let api: string;
  let client: OpenAI;
  before(async () => {
    fake = await fakeOpenAi();
    h = await startHarness("sqlite", { listen: true, platform: { ai: { baseUrl: fake.url, apiKey: FAKE_AI_KEY, defaultModel: "echo-1", timeoutMs: 500 } } });
    portalId = await makePortal(h);
    api = (await makeKey(h, portalId)).raw;
    client = new OpenAI({ apiKey: api, baseURL: `${h.url}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await h.close();
    await fake.close();
  });

  it("the openai client gets a chat completion in OpenAI's own format (not enveloped) with the key as Authorization: Bearer", async () => {
    const answer = await client.chat.completions.create({ model: "echo-1", messages: [{ role: "user", content: "hi" }] });
    assert.equal(answer.object, "chat.completion");
    assert.equal(answer.choices[0]!.message.content, "echo: hi");
    assert.deepEqual(answer.usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    assert.equal((answer as unknown as { success?: boolean }).success, undefined, "no envelope");
  });

  it("the provider gets the operator's credential, never the client's key, and none of the client's headers", async () => {
    fake.received.length = 0;
    const r = await fetch(`${h.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": api, cookie: "secret=1", "x-custom": "1" },
      body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "x" }], temperature: 0.2, tools: [] }),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("set-cookie"), null, "the provider's cookies stay behind");
    assert.match(r.headers.get("x-request-id") ?? "", /^req_/);
    assert.ok(r.headers.get("x-ratelimit-limit"), "keygate's rate-limit headers");
    const sent = fake.received[0]!;
    assert.equal(sent.headers.authorization, `Bearer ${FAKE_AI_KEY}`);
    for (const h of ["x-api-key", "cookie", "x-custom"]) assert.equal(sent.headers[h], undefined, h);
    assert.ok(!JSON.stringify(sent.headers).includes(api), "the keygate key never leaves keygate");
    assert.deepEqual(sent.body, { model: "echo-1", messages: [{ role: "user", content: "x" }], temperature: 0.2, tools: [] }, "every other field passed on as sent");
  });

  it("stream: true — the openai client reads the server-sent events as they come", async () => {
    const stream = await client.chat.completions.create({ model: "echo-1", messages: [{ role: "user", content: "hi" }], stream: true });
    const words: string[] = [];
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) words.push(chunk.choices[0].delta.content);
    assert.deepEqual(words, STREAM_WORDS);
  });

  it("stream: true — the event stream passes byte for byte, as text/event-stream, uncompressed", async () => {
    const r = await fetch(`${h.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${api}`, "accept-encoding": "gzip, br" },
      body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hi" }], stream: true, stream_options: { include_usage: true } }),
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type")!, /^text\/event-stream/);
    assert.equal(r.headers.get("content-encoding"), null);
    const got = Buffer.from(await r.arrayBuffer());
    assert.ok(got.equals(fake.streamed.at(-1)!), "the same bytes the provider sent");
  });

  it("stream: true — each event reaches the client as the provider sends it, not once the stream has ended", async () => {
    fake.eventGapMs = 100;
    try {
      const ended = fake.streamed.length;
      const r = await fetch(`${h.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": api },
        body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hi" }], stream: true }),
      });
      const reader = r.body!.getReader();
      const first = await reader.read();
      assert.match(Buffer.from(first.value!).toString(), /^data: \{/);
      assert.equal(fake.streamed.length, ended, "the provider is still sending (7 events, 100 ms apart)");
      while (!(await reader.read()).done);
      assert.equal(fake.streamed.length, ended + 1);
    } finally {
      fake.eventGapMs = 5;
    }
  });

  it("a client that leaves mid-stream closes the provider's request too", async () => {
    fake.eventGapMs = 100;
    try {
      const closed = fake.closedEarly;
      const controller = new AbortController();
      const r = await fetch(`${h.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": api },
        body: JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hi" }], stream: true }),
        signal: controller.signal,
      });
      await r.body!.getReader().read();
      controller.abort();
      for (let i = 0; i < 50 && fake.closedEarly === closed; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(fake.closedEarly, closed + 1, "the provider saw its client go");
    } finally {
      fake.eventGapMs = 5;
    }
  });

  it("a provider dropping the stream midway cuts the client's answer off: it errors, it does not hang or end as if complete", async () => {
    const stream = await client.chat.completions.create({ model: "cut", messages: [{ role: "user", content: "x" }], stream: true });
    await assert.rejects(async () => {
      for await (const _ of stream) void _;
    }, /terminated/, "the connection ends without the stream's end");
  });

  it("usage is counted per key where the provider reports it: JSON answers and streams that carry usage (GET /v1/keys/:id/usage, /metrics)", async () => {
    const k = await makeKey(h, portalId);
    const c = new OpenAI({ apiKey: k.raw, baseURL: `${h.url}/v1`, maxRetries: 0 });
    await c.chat.completions.create({ model: "echo-1", messages: [{ role: "user", content: "a" }] });
    for await (const _ of await c.chat.completions.create({ model: "echo-1", messages: [{ role: "user", content: "b" }], stream: true, stream_options: { include_usage: true } })) void _;
    // A stream that carries no usage, and a model that reports none: counted as requests, no tokens.
    for await (const _ of await c.chat.completions.create({ model: "echo-1", messages: [{ role: "user", content: "c" }], stream: true })) void _;
    await c.chat.completions.create({ model: "no-usage", messages: [{ role: "user", content: "d" }] });
    const usage = ok(await h.call("GET", `/v1/keys/${k.id}/usage`, { key: h.owner.key }));
    assert.deepEqual(usage.ai, { requests: 4, promptTokens: 14, completionTokens: 6, totalTokens: 20 });
    assert.ok(usage.requests.some((r: { path: string }) => r.path === "/v1/chat/completions"), "each request in the key's request log");
    const metrics = await (await fetch(`${h.url}/metrics`)).text();
    assert.match(metrics, /keygate_ai_tokens_total\{kind="prompt"\} \d+/);
  });

  it("GET /v1/models lists the provider's models (OpenAI's list format)", async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ["echo-1", "no-usage"]);
  });

  it("a request without a model (or with \"auto\") gets the operator's default model", async () => {
    fake.received.length = 0;
    const r = await h.call("POST", "/v1/chat/completions", { key: api, body: { messages: [{ role: "user", content: "x" }] } });
    assert.equal(r.status, 200);
    await h.call("POST", "/v1/chat/completions", { key: api, body: { model: "auto", messages: [{ role: "user", content: "x" }] } });
    assert.deepEqual(fake.received.map((x) => (x.body as { model: string }).model), ["echo-1", "echo-1"]);
  });

  it("the provider's own refusal passes in its OpenAI format and status (an unknown model: 404)", async () => {
    await assert.rejects(client.chat.completions.create({ model: "gpt-nonexistent", messages: [{ role: "user", content: "x" }] }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 404);
      assert.equal((e.error as { code: string }).code, "model_not_found");
      return true;
    });
  });

  it("seed 000: vibe:ai is added to every API key automatically; a key without it (an authorization key) → 403 SCOPE_DENIED; a management key → 403 MANAGEMENT_KEY_NO_ENTITY_ACCESS", async () => {
    const app = await makeKey(h, portalId, { type: "app", scopes: ["crm"] });
    fake.received.length = 0;
    const body = { model: "echo-1", messages: [{ role: "user", content: "x" }] };
    fails(await h.call("POST", "/v1/chat/completions", { key: app.raw, body }), 403, "SCOPE_DENIED");
    fails(await h.call("GET", "/v1/models", { key: app.raw }), 403, "SCOPE_DENIED");
    fails(await h.call("POST", "/v1/chat/completions", { key: h.owner.key, body }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
    fails(await h.call("POST", "/v1/chat/completions", { body }), 401, "MISSING_API_KEY");
    assert.equal(fake.received.length, 0, "nothing reached the provider");
    const granted = await makeKey(h, portalId, { type: "app", scopes: ["crm", "vibe:ai"] });
    assert.equal((await h.call("POST", "/v1/chat/completions", { key: granted.raw, body })).status, 200, "an authorization key given vibe:ai");
  });

  it("seed 003: read-only mode blocks writes proxied to Bitrix24, so a read-only API key may use the AI models", async () => {
    const ro = await makeKey(h, portalId, { accessMode: "READONLY" });
    const r = await h.call("POST", "/v1/chat/completions", { key: ro.raw, body: { model: "echo-1", messages: [{ role: "user", content: "x" }] } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.choices[0].message.content, "echo: x");
  });

  it("public facts §4: POST /v1/chat/completions is limited to 600 a minute per key, its own budget (not the platform's 300); the 601st → 429 RATE_LIMITED, nothing sent to the provider", async () => {
    const key = (await makeKey(h, portalId)).raw;
    const call = (body: unknown) => h.call("POST", "/v1/chat/completions", { key, body });
    // Requests refused for their content spend the limit as they arrive, and cost the provider nothing.
    for (let i = 1; i <= 600; i++) {
      const r = await call({ model: "echo-1" });
      assert.equal(r.status, 400, `request ${i}: ${JSON.stringify(r.body)}`);
      if (i === 1 || i === 600) {
        assert.equal(r.headers["x-ratelimit-limit"], "600");
        assert.equal(r.headers["x-ratelimit-remaining"], String(600 - i));
      }
    }
    fake.received.length = 0;
    const over = await call({ model: "echo-1", messages: [{ role: "user", content: "hi" }] });
    assert.equal(over.status, 429, JSON.stringify(over.body));
    assert.equal(over.body.error.code, "RATE_LIMITED");
    assert.equal(over.headers["retry-after"], String(over.body.error.retryAfter));
    assert.match(String(over.headers["ratelimit-policy"]), /"POST \/v1\/chat\/completions";q=600;w=60/);
    assert.equal(fake.received.length, 0);
    const models = await h.call("GET", "/v1/models", { key });
    assert.equal(models.status, 200);
    assert.equal(models.headers["x-ratelimit-limit"], "300", "the key's other requests keep the platform limit, unspent");
    assert.equal(models.headers["x-ratelimit-remaining"], "299");
    h.clock.advance(60_000);
    assert.equal((await call({ model: "echo-1", messages: [{ role: "user", content: "hi" }] })).status, 200, "a minute later the key may ask again");
  });

  it("bad input → 400 with the field, and nothing reaches the provider", async () => {
    fake.received.length = 0;
    const call = (body: unknown) => h.call("POST", "/v1/chat/completions", { key: api, body });
    assert.equal(fails(await call({ model: "echo-1" }), 400, "VALIDATION_ERROR").param, "messages");
    assert.equal(fails(await call({ model: "echo-1", messages: [] }), 400, "VALIDATION_ERROR").param, "messages");
    assert.equal(fails(await call({ model: "echo-1", messages: [{ content: "no role" }] }), 400, "VALIDATION_ERROR").param, "messages.0.role");
    assert.equal(fails(await call({ model: "echo-1", messages: [{ role: "user", content: "x" }], stream: "yes" }), 400, "VALIDATION_ERROR").param, "stream");
    assert.equal(fails(await call({ model: "", messages: [{ role: "user", content: "x" }] }), 400, "VALIDATION_ERROR").param, "model");
    fails(await call("{not json"), 400, "INVALID_JSON");
    fails(await call([1, 2]), 400, "VALIDATION_ERROR");
    fails(await h.call("POST", "/v1/chat/completions", { key: api, headers: { "content-type": "text/plain" }, body: "hello" }), 415, "UNSUPPORTED_MEDIA_TYPE");
    assert.equal(fake.received.length, 0);
  });

  it("a request body over 16 MiB → 413 PAYLOAD_TOO_LARGE; one just under passes", async () => {
    fake.received.length = 0;
    const big = (n: number) => JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "x".repeat(n) }] });
    const over = await fetch(`${h.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": api }, body: big(16 * 1024 * 1024) });
    assert.equal(over.status, 413);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, "PAYLOAD_TOO_LARGE");
    assert.equal(fake.received.length, 0);
    const under = await fetch(`${h.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": api }, body: big(15 * 1024 * 1024) });
    assert.equal(under.status, 200);
  });

  it("the provider too slow → 504 UPSTREAM_TIMEOUT (keygate's envelope)", async () => {
    const r = await h.call("POST", "/v1/chat/completions", { key: api, body: { model: "slow", messages: [{ role: "user", content: "x" }] } });
    fails(r, 504, "UPSTREAM_TIMEOUT");
    assert.match(r.body.error.message, /AI provider/);
  });

  it("the provider refusing keygate's own credential → 502 (the client's key is not at fault)", async () => {
    const wrong = await startHarness("sqlite", { platform: { ai: { baseUrl: fake.url, apiKey: "sk-wrong" } } });
    try {
      const k = (await makeKey(wrong, await makePortal(wrong))).raw;
      const r = await wrong.call("POST", "/v1/chat/completions", { key: k, body: { model: "echo-1", messages: [{ role: "user", content: "x" }] } });
      fails(r, 502, "UPSTREAM_UNAVAILABLE");
      assert.match(r.body.error.hint, /--ai-api-key/);
    } finally {
      await wrong.close();
    }
  });

  it("the provider unreachable → 502 UPSTREAM_UNAVAILABLE", async () => {
    const down = await startHarness("sqlite", { platform: { ai: { baseUrl: `http://127.0.0.1:${await closedPort()}/v1`, defaultModel: "m" } } });
    try {
      const k = (await makeKey(down, await makePortal(down))).raw;
      fails(await down.call("POST", "/v1/chat/completions", { key: k, body: { messages: [{ role: "user", content: "x" }] } }), 502, "UPSTREAM_UNAVAILABLE");
      fails(await down.call("GET", "/v1/models", { key: k }), 502, "UPSTREAM_UNAVAILABLE");
    } finally {
      await down.close();
    }
  });

  it("/v1/me and /v1/guide say the section is available and list its endpoints", async () => {
    const me = ok(await h.call("GET", "/v1/me", { key: api }));
    assert.deepEqual(me.sections.ai, { scope: "vibe:ai", available: true });
    assert.ok(me.api.endpoints.some((e: { path: string }) => e.path === "/v1/chat/completions"));
    const guide = ok(await h.call("GET", "/v1/guide", { key: api }));
    assert.deepEqual(guide.sections.ai, { scope: "vibe:ai", available: true });
    const lines = guide.endpoints.map((e: { method: string; path: string }) => `${e.method} ${e.path}`);
    assert.ok(lines.includes("POST /v1/chat/completions") && lines.includes("GET /v1/models"));
  });
});

describe("issue 17 §2: a section without a provider answers 503 SECTION_NOT_CONFIGURED, never 501", () => {
  let h: Harness;
  let api: string;
  before(async () => {
    h = await startHarness("sqlite");
    api = (await makeKey(h, await makePortal(h))).raw;
  });
  after(() => h.close());

  it("POST /v1/chat/completions and GET /v1/models → 503 with details.setting naming the flag (and details.env the variable)", async () => {
    for (const [method, path] of [["POST", "/v1/chat/completions"], ["GET", "/v1/models"]] as const) {
      // Not connected comes before the body is read: even a bad body gets the 503.
      const e = fails(await h.call(method, path, { key: api, body: method === "POST" ? {} : undefined }), 503, "SECTION_NOT_CONFIGURED");
      assert.deepEqual(e.details, { section: "ai", scope: "vibe:ai", setting: "--ai-base-url", env: "KEYGATE_AI_BASE_URL" });
      assert.match(e.hint, /details\.setting/);
    }
  });

  it("the openai client gets the 503 once, with the message: X-Should-Retry: false stops its retries (only the operator can mend it)", async () => {
    const server = await startHarness("sqlite", { listen: true });
    try {
      const key = (await makeKey(server, await makePortal(server))).raw;
      let calls = 0;
      const client = new OpenAI({ apiKey: key, baseURL: `${server.url}/v1`, fetch: (url, init) => (calls++, fetch(url, init)) });
      await assert.rejects(client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "x" }] }), (e: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(e.status, 503);
        assert.match(e.message, /not connected to a provider/);
        return true;
      });
      assert.equal(calls, 1, "not retried");
    } finally {
      await server.close();
    }
  });

  it("verification still comes first: no key → 401, a key without the scope → 403", async () => {
    fails(await h.call("GET", "/v1/models"), 401, "MISSING_API_KEY");
    fails(await h.call("GET", "/v1/models", { key: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
  });

  it("/v1/me and /v1/guide say it is not available, name the setting, and list none of its endpoints", async () => {
    const me = ok(await h.call("GET", "/v1/me", { key: api }));
    assert.deepEqual(me.sections.ai, { scope: "vibe:ai", available: false, setting: "--ai-base-url (KEYGATE_AI_BASE_URL)" });
    assert.ok(!me.api.endpoints.some((e: { path: string }) => e.path === "/v1/chat/completions"));
    const guide = ok(await h.call("GET", "/v1/guide", { key: api }));
    assert.equal(guide.sections.ai.available, false);
    const lines = guide.endpoints.map((e: { method: string; path: string }) => `${e.method} ${e.path}`);
    assert.ok(!lines.includes("POST /v1/chat/completions") && !lines.includes("GET /v1/models"));
    const full = ok(await h.call("GET", "/v1/guide", { key: h.owner.key }));
    assert.ok(!full.endpoints.some((e: { path: string }) => e.path === "/v1/models"), "a management key's full guide lists only what works too");
  });
});
