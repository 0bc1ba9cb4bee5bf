/**
 * issue 14 §2: GET /metrics, Prometheus text: requests by method, route template and status
 * (the fast path of GET /v1/me too), verification outcomes by code, rate-limit refusals by kind of
 * limit, the key cache, the store, the process — and never a key, a key id or an address.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { generateKey } from "../../src/core/keys/format.ts";
import type { KeyCache } from "../../src/gateway/key-cache.ts";
import { Metrics, PORTAL_LABELS } from "../../src/gateway/metrics.ts";
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

  it("issue 14: store round trips by operation, upstream calls by portal (latency and errors)", async () => {
    const portal = (await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "metrics.example.com", upstream: { kind: "sandbox" } } })).body.data;
    const key = (await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId: portal.id, name: "m", scopes: ["crm"] } })).body.data;
    // Another address than the first test's, whose failed guesses throttle it.
    const get = (path: string) => h.call("GET", path, { key: key.rawKey, ip: "198.51.100.7" });
    assert.equal((await get("/v1/deals?limit=1")).status, 200);
    assert.equal((await get("/v1/deals/999999999")).status, 404, "an upstream error: the sandbox has no such deal");
    const text = await (await fetch(`${h.url}/metrics`)).text();
    assert.ok(metric(text, "keygate_upstream_seconds_count", `portal="${portal.id}"`)! >= 2, "both calls timed under the portal's id");
    assert.ok(metric(text, "keygate_upstream_errors_total", `portal="${portal.id}",code="ENTITY_NOT_FOUND"`)! >= 1);
    assert.ok(metric(text, "keygate_store_seconds_count", 'operation="createKey"')! >= 1, "the store's calls are timed by method");
    assert.ok(!text.includes(key.id) && !text.includes(key.rawKey), "no key id nor key as a label");
  });

  it(`issue 14: upstream series are bounded: the first ${PORTAL_LABELS} portals get a label of their own, later ones "other"`, async () => {
    const metrics = new Metrics({ hits: 0, misses: 0, size: 0 } as unknown as KeyCache);
    for (let i = 0; i < PORTAL_LABELS + 20; i++) metrics.upstream(`portal-${i}`, 0.01, i % 2 === 0 ? "UPSTREAM_TIMEOUT" : undefined);
    metrics.upstream("portal-0", 0.01);
    const text = await metrics.registry.metrics();
    const portals = new Set([...text.matchAll(/keygate_upstream_seconds_count\{portal="([^"]+)"\}/g)].map((m) => m[1]));
    assert.equal(portals.size, PORTAL_LABELS + 1);
    assert.ok(portals.has("other") && portals.has("portal-0") && !portals.has(`portal-${PORTAL_LABELS}`));
    assert.equal(metric(text, "keygate_upstream_seconds_count", 'portal="other"'), 20);
    assert.equal(metric(text, "keygate_upstream_seconds_count", 'portal="portal-0"'), 2, "a portal with a label keeps it");
    assert.equal(metric(text, "keygate_upstream_errors_total", 'portal="other",code="UPSTREAM_TIMEOUT"'), 10);
  });
});
