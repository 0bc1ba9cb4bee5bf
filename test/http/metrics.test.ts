/**
 * issue 14 §2: GET /metrics, Prometheus text: requests by method, route template and status
 * (the fast path of GET /v1/me too), verification outcomes by code, rate-limit refusals by kind of
 * limit, the key cache, the store, the process — and never a key, a key id or an address.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { generateKey } from "../../src/core/keys/format.ts";
import { type Harness, startHarness } from "../support/gateway.ts";

describe("issue 14: GET /metrics", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite", { listen: true })));
  after(() => h.close());

  const metric = (text: string, name: string, labels: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`) || (labels === "" && l.startsWith(`${name} `)));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
  };

  it("issue 14: counts what was asked and answered, with bounded labels only", async () => {
    const get = (path: string, key?: string) => fetch(`${h.url}${path}`, { headers: key === undefined ? {} : { "x-api-key": key } });
    for (let i = 0; i < 3; i++) assert.equal((await get("/v1/me", h.owner.key)).status, 200);
    const guesses = [];
    for (let i = 0; i < 21; i++) guesses.push(generateKey("vibe_api_"));
    const statuses = [];
    for (const g of guesses) statuses.push((await get("/v1/me", g)).status);
    assert.deepEqual(statuses, [...Array(20).fill(401), 429]);
    assert.equal((await get("/nowhere/at/all")).status, 404);

    const res = await get("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.equal(metric(text, "keygate_http_requests_total", 'method="GET",route="/v1/me",status="200"'), 3, "answered before Fastify, counted all the same");
    assert.equal(metric(text, "keygate_http_requests_total", 'method="GET",route="/v1/me",status="401"'), 20);
    assert.equal(metric(text, "keygate_http_requests_total", 'method="GET",route="/v1/me",status="429"'), 1);
    assert.equal(metric(text, "keygate_http_requests_total", 'method="GET",route="unmatched",status="404"'), 1);
    assert.equal(metric(text, "keygate_verifications_total", 'code="ok"'), 3);
    assert.equal(metric(text, "keygate_verifications_total", 'code="INVALID_API_KEY"'), 20);
    assert.equal(metric(text, "keygate_verifications_total", 'code="RATE_LIMITED"'), 1, "the throttled guess: refused before any lookup");
    assert.equal(metric(text, "keygate_rate_limited_total", 'limit="auth"'), 1);
    assert.ok(metric(text, "keygate_key_cache_hits_total", "")! >= 2);
    assert.ok(metric(text, "keygate_key_cache_misses_total", "")! >= 20);
    assert.ok(metric(text, "keygate_key_cache_keys", "")! >= 1);
    assert.ok(metric(text, "keygate_store_seconds_count", 'operation="change_feed_read"')! >= 1, "the change feed was read at start");
    assert.ok(metric(text, "keygate_process_cpu_user_seconds_total", "")! > 0);
    // Nothing that names a key, a user or a client.
    for (const secret of [h.owner.key, ...guesses, h.owner.user.id, "127.0.0.1"]) assert.ok(!text.includes(secret), `${secret} appears in /metrics`);
  });
});
