/**
 * Rate limits and request accounting over HTTP (seed 003 "Request limits", issue #4): the
 * platform limit per source (the key; without a valid key, the client IP), the headers on every
 * /v1 response, the per-key and per-portal limits, batch, failed authentication, what is not
 * counted, tiers (RogerIQ, Atender), the Redis backend shared by two nodes, and the request log
 * (GET /v1/keys/:id/usage). The algorithm itself is tested in test/limits; here every rule is
 * checked through the gateway, on the harness clock (no sleeps). Suites run on both stores.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { KeygateError } from "../../src/core/errors.ts";
import { keyDigest, keyDisplay } from "../../src/core/keys/format.ts";
import { RedisLimiter } from "../../src/limits/redis.ts";
import type { Actor } from "../../src/manage/context.ts";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal, updatePortal } from "../../src/manage/portals.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { freePort, probeRedis, redisUrl, requireService, startRedis } from "../support/services.ts";
import { type IssuedKey, MINUTE, addMember, badChecksum, fails, isoAt, limited, makeKey, makePortal, makeUser, ok, patchKey, rateHeaders, unknownKey } from "./_fixtures.ts";

const SECOND = 1000;
const DAY = 24 * 60 * MINUTE;
/** Passes verification, is not forwarded upstream (no portal budget): 200, the key's servers (docs/servers.md). */
const LOCAL = "/v1/infra/servers";
/** Forwarded upstream (spends the portal's budget); this harness does not listen, so the sandbox answers 503 SANDBOX_UNREACHABLE once past the limiter. */
const UPSTREAM = "/v1/deals";

/** The most requests admitted in any interval of `windowMs` (intervals ending at an admission suffice). */
function busiest(times: number[], windowMs: number): number {
  let most = 0;
  let first = 0;
  for (let i = 0; i < times.length; i++) {
    while (times[first]! <= times[i]! - windowMs) first++;
    most = Math.max(most, i - first + 1);
  }
  return most;
}

/** `n` requests evenly over `spanMs` on the harness clock (request k at ⌊k × spanMs / n⌋ from now); the times of those admitted. */
async function evenly(clock: Harness["clock"], n: number, spanMs: number, send: (i: number) => Promise<Reply>): Promise<number[]> {
  const start = clock.now;
  const admitted: number[] = [];
  for (let k = 0; k < n; k++) {
    clock.advance(start + Math.floor((k * spanMs) / n) - clock.now);
    const r = await send(k);
    if (r.status !== 429) admitted.push(clock.now);
  }
  return admitted;
}

/** Two windows on, at the start of a minute: every minute and second window the tests use starts empty. */
function fresh(h: Harness): void {
  h.clock.advance(2 * MINUTE + ((MINUTE - (h.clock.now % MINUTE)) % MINUTE));
}

/** `n` requests one after another (same clock time); returns the replies. */
async function repeat(n: number, send: (i: number) => Promise<Reply>): Promise<Reply[]> {
  const replies: Reply[] = [];
  for (let i = 0; i < n; i++) replies.push(await send(i));
  return replies;
}

/** Counts the store's key lookups by digest (both ways the key cache reads them) until restored. */
function countLookups(h: Harness): { count: number; restore(): void } {
  const store = h.store;
  const counter = { count: 0, restore: () => {} };
  const { getKeyByDigest, getKeyByDigestNow } = store;
  store.getKeyByDigest = (digest) => {
    counter.count++;
    return getKeyByDigest.call(store, digest);
  };
  if (getKeyByDigestNow) {
    store.getKeyByDigestNow = (digest) => {
      counter.count++;
      return getKeyByDigestNow.call(store, digest);
    };
  }
  counter.restore = () => {
    store.getKeyByDigest = getKeyByDigest;
    store.getKeyByDigestNow = getKeyByDigestNow;
  };
  return counter;
}

/** Sends until the first 429/502; returns how many passed before it, and the refusal. */
async function passesUntilRefused(send: () => Promise<Reply>, max = 10_000): Promise<{ passed: number; refusal: Reply }> {
  for (let passed = 0; passed <= max; passed++) {
    const r = await send();
    if (r.status === 429 || r.status === 502) return { passed, refusal: r };
    assert.ok(r.status < 400 || r.body?.error?.code === "SANDBOX_UNREACHABLE" || (r.status === 400 && r.body?.code === "PORTAL_NOT_LINKED"), `expected to pass, or a rate-limit refusal: ${show(r)}`);
  }
  assert.fail(`no refusal within ${max} requests`);
}

function show(r: Reply): string {
  return `${r.status} ${JSON.stringify(r.body)}`;
}

/**
 * The request passed verification and the limits: VibeCode's local routes (LOCAL) answer 200, its
 * forwarded routes 503 SANDBOX_UNREACHABLE (its sandbox portals are not listening here), other profiles' 400
 * PORTAL_NOT_LINKED (a sandbox is no HTTP upstream) — either way, past the limiter.
 */
function assertPassed(r: Reply, status?: number): void {
  if (status !== undefined) assert.equal(r.status, status, show(r));
  else assert.ok(r.status === 200 || r.body?.error?.code === "SANDBOX_UNREACHABLE" || (r.status === 400 && r.body?.code === "PORTAL_NOT_LINKED"), show(r));
}

const redisReady = await requireService("http: limits on Redis", `Redis at ${redisUrl()}`, () => probeRedis(redisUrl()));

for (const kind of await storeKinds("http: limits")) {
  describe(`rate limits over HTTP [${kind}]`, () => {
    let h: Harness;
    let portalId: string;
    before(async () => {
      h = await startHarness(kind);
      portalId = await makePortal(h);
    });
    after(() => h.close());
    beforeEach(() => fresh(h));

    describe("platform limit (seed 003)", () => {
      it('seed 003: "Request limit | 300 requests per minute per source" — the source is the key: 300 pass, the 301st gets 429 RATE_LIMITED with error.retryAfter and Retry-After; the hint says to back off and to batch', async () => {
        const a = await makeKey(h, portalId);
        const b = await makeKey(h, portalId);
        const replies = await repeat(300, () => h.call("GET", LOCAL, { key: a.raw }));
        replies.forEach((r, i) => {
          assertPassed(r);
          assert.equal(rateHeaders(r).remaining, 299 - i);
        });
        const e = limited(await h.call("GET", LOCAL, { key: a.raw }));
        assert.match(e.hint, /retry/i, "the hint says to back off");
        assert.match(e.hint, /increasing pause|back ?off/i);
        assert.match(e.hint, /POST \/v1\/batch/, "the hint says to use batch");
        assert.equal(rateHeaders(await h.call("GET", LOCAL, { key: a.raw })).limit, 300);
        // Every route of the key is refused: the limit is the key's, not the route's.
        limited(await h.call("GET", "/v1/me", { key: a.raw }));
        // Other sources keep their own budgets: another key of the same owner and portal, and the address without a key.
        const other = await h.call("GET", LOCAL, { key: b.raw });
        assertPassed(other);
        assert.equal(rateHeaders(other).remaining, 299);
        const anonymous = await h.call("GET", "/v1/me");
        fails(anonymous, 401, "MISSING_API_KEY");
        assert.equal(rateHeaders(anonymous).remaining, 299);
      });

      it('seed 003: "per source" — without a valid key the source is the client IP: 300 requests, then 429 for that address only; a valid key from it is not affected', async () => {
        const ip = "198.51.100.21";
        const replies = await repeat(300, () => h.call("GET", "/v1/me", { ip }));
        replies.forEach((r, i) => {
          fails(r, 401, "MISSING_API_KEY");
          const hdr = rateHeaders(r);
          assert.equal(hdr.limit, 300);
          assert.equal(hdr.remaining, 299 - i);
        });
        limited(await h.call("GET", "/v1/me", { ip }));
        limited(await h.call("GET", "/v1/deals", { ip }));
        fails(await h.call("GET", "/v1/me", { ip: "198.51.100.22" }), 401, "MISSING_API_KEY");
        const k = await makeKey(h, portalId);
        const me = ok(await h.call("GET", "/v1/me", { key: k.raw, ip }));
        assert.equal(me.keyId, k.id);
      });

      it('seed 003: "Sliding 60-second window" — Retry-After is when the next request passes, and capacity returns as the requests of a minute ago leave the window, not all at once', async () => {
        const k = await makeKey(h, portalId);
        const send = () => h.call("GET", LOCAL, { key: k.raw });
        // 100 requests at 0 s, 20 s and 40 s fill the sliding minute.
        for (let step = 0; step < 3; step++) {
          if (step > 0) h.clock.advance(20 * SECOND);
          for (const r of await repeat(100, send)) assertPassed(r);
        }
        // The first 100 leave the window 60 s after they came: 20 s from now.
        const wait = limited(await send()).retryAfter;
        assert.equal(wait, 20);
        h.clock.advance((wait - 1) * SECOND);
        assert.equal(limited(await send()).retryAfter, 1, "one second early: still refused");
        h.clock.advance(SECOND);
        // Those 100 are back, not 300: the requests of 20 s and 40 s still count.
        const first = await passesUntilRefused(send);
        assert.equal(first.passed, 100);
        assert.equal(limited(first.refusal).retryAfter, 20);
        h.clock.advance(20 * SECOND);
        assert.equal((await passesUntilRefused(send)).passed, 100);
        // A minute after the last of them the whole budget is there again.
        h.clock.advance(2 * MINUTE);
        assert.equal((await passesUntilRefused(send)).passed, 300);
      });
    });

    describe("issue 11.3: rate limits that mean what they say", () => {
      it("issue 11.3: 900 requests evenly over 60 s against 300 a minute, starting mid-minute: at most 300 admitted in any 60 s, and the 300 it is owed", async () => {
        const k = await makeKey(h, portalId);
        // Half a minute in: where a fixed-window estimate admitted 415 of 900.
        h.clock.advance(30 * SECOND);
        const admitted = await evenly(h.clock, 900, MINUTE, () => h.call("GET", LOCAL, { key: k.raw }));
        assert.equal(admitted.length, 300);
        assert.ok(busiest(admitted, MINUTE) <= 300, `${busiest(admitted, MINUTE)} admitted in one minute`);
      });

      it("issue 11.3: a key with rateLimit 1 called every 1.11 s is never refused; with rateLimit 2 at 90 % of it, none of 14 is", async () => {
        const one = await makeKey(h, portalId, { rateLimit: 1 });
        assert.equal((await evenly(h.clock, 14, 14 * 1_110, () => h.call("GET", LOCAL, { key: one.raw }))).length, 14);
        const two = await makeKey(h, portalId, { rateLimit: 2 });
        // 2 a second at 90 %: 1.8 a second, one every 555 ms.
        assert.equal((await evenly(h.clock, 14, 14 * 555, () => h.call("GET", LOCAL, { key: two.raw }))).length, 14);
      });

      it("issue 11.3: X-RateLimit-Reset, RateLimit's t and Retry-After are exact — a client that waits what they say (whole seconds, rounded up) is admitted", async () => {
        const k = await makeKey(h, portalId, { rateLimit: 2 });
        const send = () => h.call("GET", LOCAL, { key: k.raw });
        assertPassed(await send());
        h.clock.advance(300);
        const spent = await send();
        assertPassed(spent);
        const hdr = rateHeaders(spent);
        assert.equal(hdr.remaining, 0);
        // The first request leaves the window 700 ms from now: 1 s, rounded up.
        assert.equal(hdr.reset, 1);
        assert.equal(hdr.rateLimit, '"key";r=0;t=1');
        const e = limited(await send());
        assert.equal(e.retryAfter, 1);
        // 1 s later both have left the window (the second is exactly 1 s old).
        h.clock.advance(hdr.reset * SECOND);
        assertPassed(await send());
        assertPassed(await send());
        // Spent again: refused, then admitted after exactly Retry-After.
        const again = limited(await send());
        h.clock.advance(again.retryAfter * SECOND);
        assertPassed(await send());
      });
    });

    describe("headers on every response", () => {
      it('seed 003: "X-RateLimit-Limit: 300 / X-RateLimit-Remaining: 245 / X-RateLimit-Reset: 25" — Remaining drops by one per request, Reset is the seconds until the oldest request counted leaves the sliding window (capacity starts to return); RateLimit and RateLimit-Policy say the same', async () => {
        const k = await makeKey(h, portalId);
        assert.deepEqual(rateHeaders(await h.call("GET", "/v1/me", { key: k.raw })), { limit: 300, remaining: 299, reset: 60, policy: '"platform";q=300;w=60', rateLimit: '"platform";r=299;t=60' });
        // 54 more, 35 s later: the first one leaves the window in 25 s.
        h.clock.advance(35 * SECOND);
        const replies = await repeat(54, () => h.call("GET", "/v1/me", { key: k.raw }));
        replies.forEach((r, i) => {
          ok(r);
          assert.deepEqual(rateHeaders(r), { limit: 300, remaining: 298 - i, reset: 25, policy: '"platform";q=300;w=60', rateLimit: `"platform";r=${298 - i};t=25` });
        });
        // The seed's example, exactly.
        const last = replies.at(-1)!;
        assert.equal(last.headers["x-ratelimit-limit"], "300");
        assert.equal(last.headers["x-ratelimit-remaining"], "245");
        assert.equal(last.headers["x-ratelimit-reset"], "25");
        // Reset counts down with the clock, rounded up (waiting it is never too early), and is never more than the window (60 s).
        h.clock.advance(10_500);
        assert.deepEqual(rateHeaders(await h.call("GET", "/v1/me", { key: k.raw })), { limit: 300, remaining: 244, reset: 15, policy: '"platform";q=300;w=60', rateLimit: '"platform";r=244;t=15' });
        h.clock.advance(14_500);
        const next = rateHeaders(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.equal(next.remaining, 300 - 55 - 1, "the first request left the window; the 54 of 35 s and the one of 45.5 s still count");
        assert.equal(next.reset, 35, "the oldest counted now is 25 s old");
      });

      it("issue: every response under /v1, success or error (200, 201, 400, 401, 403, 404, 429, 502, 503), carries X-RateLimit-Limit, -Remaining, -Reset, RateLimit and RateLimit-Policy", async () => {
        const crm = await makeKey(h, portalId, { scopes: ["crm"] });
        const fenced = await makeKey(h, portalId, { ipWhitelist: ["203.0.113.42"] });
        const revoked = await makeKey(h, portalId);
        await patchKey(h, revoked.id, { status: "REVOKED" });
        const slow = await makeKey(h, portalId, { rateLimit: 1 });
        const narrow = await makePortal(h);
        ok(await h.call("PATCH", `/v1/portals/${narrow}`, { key: h.owner.key, body: { requestLimit: 1 } }));
        const onNarrow = await makeKey(h, narrow);
        assertPassed(await h.call("GET", UPSTREAM, { key: onNarrow.raw }));

        const cases: [string, Reply, number, string | undefined][] = [
          ["GET /v1/me", await h.call("GET", "/v1/me", { key: crm.raw }), 200, undefined],
          ["POST /v1/keys", await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "x", scopes: ["crm"] } }), 201, undefined],
          ["POST /v1/keys, bad body", await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "x", scopes: ["crm"], rateLimit: 0 } }), 400, "VALIDATION_ERROR"],
          ["no key", await h.call("GET", "/v1/me"), 401, "MISSING_API_KEY"],
          ["unknown key", await h.call("GET", "/v1/me", { key: unknownKey() }), 401, "INVALID_API_KEY"],
          ["revoked key", await h.call("GET", "/v1/me", { key: revoked.raw }), 401, "KEY_INACTIVE"],
          ["missing scope", await h.call("GET", "/v1/tasks", { key: crm.raw }), 403, "SCOPE_DENIED"],
          ["outside the allowed IPs", await h.call("GET", "/v1/me", { key: fenced.raw, ip: "198.51.100.7" }), 403, "IP_NOT_ALLOWED"],
          ["management key on an entity", await h.call("GET", UPSTREAM, { key: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS"],
          ["unknown route, valid key", await h.call("GET", "/v1/no-such-thing", { key: crm.raw }), 404, "ROUTE_NOT_FOUND"],
          ["unknown key id", await h.call("GET", "/v1/keys/00000000-0000-4000-8000-000000000000", { key: h.owner.key }), 404, "KEY_NOT_FOUND"],
          ["per-key limit", await h.call("GET", "/v1/me", { key: slow.raw }).then(() => h.call("GET", "/v1/me", { key: slow.raw })), 429, "RATE_LIMITED"],
          ["entity route", await h.call("GET", UPSTREAM, { key: crm.raw }), 503, "SANDBOX_UNREACHABLE"],
          ["portal budget spent", await h.call("GET", UPSTREAM, { key: onNarrow.raw }), 502, "BITRIX_UNAVAILABLE"],
        ];
        for (const [what, r, status, code] of cases) {
          assert.equal(r.status, status, `${what}: ${show(r)}`);
          if (code !== undefined) assert.equal(r.body.error.code, code, `${what}: ${show(r)}`);
          const hdr = rateHeaders(r);
          assert.ok(hdr.limit > 0 && hdr.reset <= 60, `${what}: ${JSON.stringify(hdr)}`);
        }
      });
    });

    describe("per-key limit", () => {
      it('seed 003: "An optional per-key limit for this key … returned by GET /v1/me in the rateLimit.requestsPerSecond field": exceeding it → 429 RATE_LIMITED, and the headers then describe the per-second limit', async () => {
        const k = await makeKey(h, portalId, { rateLimit: 3 });
        const first = await h.call("GET", "/v1/me", { key: k.raw });
        assert.equal(ok(first).rateLimit.requestsPerSecond, 3);
        // The tightest limit is the key's: 2 left of 3 this second, not 299 of 300 this minute.
        assert.deepEqual(rateHeaders(first), { limit: 3, remaining: 2, reset: 1, policy: '"platform";q=300;w=60, "key";q=3;w=1', rateLimit: '"key";r=2;t=1' });
        assert.equal(rateHeaders(await h.call("GET", LOCAL, { key: k.raw })).remaining, 1);
        assert.equal(rateHeaders(await h.call("GET", LOCAL, { key: k.raw })).remaining, 0);
        const refused = await h.call("GET", LOCAL, { key: k.raw });
        const e = limited(refused);
        assert.deepEqual(rateHeaders(refused), { limit: 3, remaining: 0, reset: 1, policy: '"platform";q=300;w=60, "key";q=3;w=1', rateLimit: '"key";r=0;t=1' });
        // The per-second window slides too: the 3 requests leave it one second after they came.
        assert.equal(e.retryAfter, 1);
        h.clock.advance(e.retryAfter * SECOND);
        assertPassed(await h.call("GET", LOCAL, { key: k.raw }));
      });

      it("issue: the per-key limit changed by PATCH /v1/keys/:id applies from the next request and shows in GET /v1/me; null removes it (the portal's budget is then what /v1/me reports)", async () => {
        const k = await makeKey(h, portalId);
        const me = ok(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.equal(me.rateLimit.requestsPerSecond, 10, "no own limit: the portal's budget (10 by default)");
        for (const r of await repeat(20, () => h.call("GET", LOCAL, { key: k.raw }))) assertPassed(r);

        h.clock.advance(2 * SECOND);
        await patchKey(h, k.id, { rateLimit: 2 });
        const limitedMe = await h.call("GET", "/v1/me", { key: k.raw });
        assert.equal(ok(limitedMe).rateLimit.requestsPerSecond, 2);
        assert.equal(rateHeaders(limitedMe).limit, 2);
        assertPassed(await h.call("GET", LOCAL, { key: k.raw }));
        limited(await h.call("GET", LOCAL, { key: k.raw }));

        await patchKey(h, k.id, { rateLimit: null });
        const unlimited = await h.call("GET", "/v1/me", { key: k.raw });
        assert.equal(ok(unlimited).rateLimit.requestsPerSecond, 10);
        assert.equal(rateHeaders(unlimited).limit, 300, "only the platform limit is left");
        for (const r of await repeat(10, () => h.call("GET", LOCAL, { key: k.raw }))) assertPassed(r);
      });

      it("issue: when the platform limit refuses a key that also has a per-second limit, the headers describe the limit that refused (the platform one), in agreement with Retry-After", async () => {
        const k = await makeKey(h, portalId, { rateLimit: 100 });
        for (let second = 0; second < 3; second++) {
          for (const r of await repeat(100, () => h.call("GET", LOCAL, { key: k.raw }))) assertPassed(r);
          h.clock.advance(2 * SECOND);
        }
        // 300 this minute: the platform limit refuses; the per-second budget is untouched this second.
        const refused = await h.call("GET", LOCAL, { key: k.raw });
        const e = limited(refused);
        const hdr = rateHeaders(refused);
        assert.equal(hdr.limit, 300, `the platform limit refused: ${JSON.stringify(hdr)}`);
        assert.equal(hdr.rateLimit, `"platform";r=0;t=${hdr.reset}`);
        assert.ok(e.retryAfter >= hdr.reset, `Retry-After ${e.retryAfter} s, yet X-RateLimit-Reset says ${hdr.reset} s`);
      });
    });

    describe("portal limit", () => {
      it('seed 003: "The portal rate-limits requests (by default about 10 requests per second, the limit is shared among all of the portal\'s keys). On exceeding it, 502 BITRIX_UNAVAILABLE is returned" — with Retry-After; only for routes forwarded upstream', async () => {
        const portal = await makePortal(h);
        const a = await makeKey(h, portal);
        const b = await makeKey(h, portal);
        const elsewhere = await makeKey(h, await makePortal(h));
        // Two keys, one budget: 10 requests this second between them.
        const replies = await repeat(10, (i) => h.call("GET", UPSTREAM, { key: i % 2 ? b.raw : a.raw }));
        replies.forEach((r, i) => {
          assertPassed(r);
          assert.deepEqual(rateHeaders(r), { limit: 10, remaining: 9 - i, reset: 1, policy: '"platform";q=300;w=60, "portal";q=10;w=1', rateLimit: `"portal";r=${9 - i};t=1` });
        });
        const e = limited(await h.call("GET", UPSTREAM, { key: b.raw }), 502, "BITRIX_UNAVAILABLE");
        limited(await h.call("GET", "/v1/contacts", { key: a.raw }), 502, "BITRIX_UNAVAILABLE");
        // Local routes do not spend the portal's budget, and are not refused when it is spent.
        for (const r of await repeat(15, () => h.call("GET", "/v1/me", { key: a.raw }))) ok(r);
        // Another portal's keys have their own budget.
        assertPassed(await h.call("GET", UPSTREAM, { key: elsewhere.raw }));
        // Retry-After is when the budget admits again.
        h.clock.advance(e.retryAfter * SECOND);
        assertPassed(await h.call("GET", UPSTREAM, { key: a.raw }));
      });

      it("issue: PATCH /v1/portals/:id {requestLimit} sets the portal's shared budget; GET /v1/me reports it in rateLimit.requestsPerSecond; null restores the default", async () => {
        const portal = await makePortal(h);
        const k = await makeKey(h, portal);
        assertPassed(await h.call("GET", UPSTREAM, { key: k.raw }));
        ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { requestLimit: 3 } }));
        assert.equal(ok(await h.call("GET", "/v1/me", { key: k.raw })).rateLimit.requestsPerSecond, 3);
        h.clock.advance(2 * SECOND);
        const { passed, refusal } = await passesUntilRefused(() => h.call("GET", UPSTREAM, { key: k.raw }));
        assert.equal(passed, 3);
        limited(refusal, 502, "BITRIX_UNAVAILABLE");
        assert.equal(rateHeaders(refusal).limit, 3);

        ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { requestLimit: null } }));
        assert.equal(ok(await h.call("GET", "/v1/me", { key: k.raw })).rateLimit.requestsPerSecond, 10);
        h.clock.advance(2 * SECOND);
        assert.equal((await passesUntilRefused(() => h.call("GET", UPSTREAM, { key: k.raw }))).passed, 10);
      });

      it('seed 003: "One POST /v1/batch with 50 operations spends one unit" — of the platform limit and of the portal\'s budget', async () => {
        const k = await makeKey(h, portalId);
        const before = rateHeaders(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.equal(before.remaining, 299);
        const calls = Array.from({ length: 50 }, (_, i) => ({ id: `c${i}`, entity: "deals", action: "get", entityId: i + 1 }));
        const batch = await h.call("POST", "/v1/batch", { key: k.raw, body: { calls } });
        // This harness does not listen, so the sandbox cannot be reached: 503, after the limits were spent.
        fails(batch, 503, "SANDBOX_UNREACHABLE");
        // The batch is forwarded upstream: the portal's budget is the tightest, and one unit of it is gone.
        assert.deepEqual(rateHeaders(batch), { limit: 10, remaining: 9, reset: 1, policy: '"platform";q=300;w=60, "portal";q=10;w=1', rateLimit: '"portal";r=9;t=1' });
        assert.equal(rateHeaders(await h.call("GET", UPSTREAM, { key: k.raw })).remaining, 8);
        // One unit of the platform limit: 299 → 298 (batch) → 297 (deals) → 296 (this request).
        assert.equal(rateHeaders(await h.call("GET", "/v1/me", { key: k.raw })).remaining, 296);
      });
    });

    describe("failed authentication", () => {
      it("issue: failed authentication attempts are limited per client IP (20 a minute in VibeCode): then 429 instead of 401; a valid key from the same IP still works, another IP is unaffected, and the budget returns after the window", async () => {
        const ip = "198.51.100.40";
        const k = await makeKey(h, portalId);
        // Used once: the key is in the key cache (an uncached one is throttled too: issue 10.7 below).
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        const replies = await repeat(20, (i) => h.call("GET", "/v1/me", { key: i % 2 ? badChecksum(k.raw) : unknownKey(), ip }));
        replies.forEach((r, i) => {
          fails(r, 401, "INVALID_API_KEY");
          const hdr = rateHeaders(r);
          assert.deepEqual([hdr.limit, hdr.remaining], [20, 19 - i], "the tightest limit of a failed attempt is the failed-attempt budget");
          assert.match(hdr.policy, /"failed-auth";q=20;w=60/);
        });
        const e = limited(await h.call("GET", "/v1/me", { key: unknownKey(), ip }));
        // Never locked out: a valid key from the same address works.
        assert.equal(ok(await h.call("GET", "/v1/me", { key: k.raw, ip })).keyId, k.id);
        assertPassed(await h.call("GET", LOCAL, { key: k.raw, ip }));
        // Another address has its own budget.
        fails(await h.call("GET", "/v1/me", { key: unknownKey(), ip: "198.51.100.41" }), 401, "INVALID_API_KEY");
        // Knocking on does not extend the block: refused attempts are not counted.
        for (const r of await repeat(30, () => h.call("GET", "/v1/me", { key: unknownKey(), ip }))) limited(r);
        h.clock.advance(e.retryAfter * SECOND);
        fails(await h.call("GET", "/v1/me", { key: unknownKey(), ip }), 401, "INVALID_API_KEY");
        // Two windows on, the whole budget is back.
        h.clock.advance(2 * MINUTE);
        for (const r of await repeat(20, () => h.call("GET", "/v1/me", { key: unknownKey(), ip }))) fails(r, 401, "INVALID_API_KEY");
        limited(await h.call("GET", "/v1/me", { key: unknownKey(), ip }));
      });
    });

    describe("issue 10.7: guessing is cheap no more", () => {
      it("issue 10.7: once an address has spent its failed-authentication budget, further unknown keys get 429 without a store lookup; a cached valid key still passes, an uncached one gets the 429 too", async () => {
        const ip = "198.51.100.50";
        const cached = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: cached.raw }));
        const uncached = await makeKey(h, portalId);
        const lookups = countLookups(h);
        try {
          for (const r of await repeat(20, () => h.call("GET", "/v1/me", { key: unknownKey(), ip }))) fails(r, 401, "INVALID_API_KEY");
          assert.equal(lookups.count, 20, "each unknown key was looked up once");
          for (const r of await repeat(50, () => h.call("GET", "/v1/me", { key: unknownKey(), ip }))) {
            limited(r);
            assert.match(rateHeaders(r).policy, /"failed-auth";q=20;w=60/);
          }
          assert.equal(lookups.count, 20, "no lookup for the guesses past the budget");
          assert.equal(ok(await h.call("GET", "/v1/me", { key: cached.raw, ip })).keyId, cached.id, "a cached key is never throttled");
          const e = limited(await h.call("GET", "/v1/me", { key: uncached.raw, ip }));
          assert.equal(lookups.count, 20, "nor for a key the cache does not hold");
          // Once the budget has room again the key is looked up, and passes.
          h.clock.advance(e.retryAfter * SECOND);
          assert.equal(ok(await h.call("GET", "/v1/me", { key: uncached.raw, ip })).keyId, uncached.id);
          assert.equal(lookups.count, 21);
        } finally {
          lookups.restore();
        }
      });

      it("issue 10.7: verify mode looks up no key for an address out of failed attempts either: the decision is the 429", async () => {
        const ip = "198.51.100.51";
        const backend = await makeKey(h, portalId, { scopes: ["crm", "vibe:verify"] });
        const verify = (key: string) => h.call("POST", "/v1/verify", { key: backend.raw, ip, body: { key, method: "GET", path: "/v1/deals" } });
        ok(await h.call("GET", "/v1/me", { key: backend.raw }));
        const lookups = countLookups(h);
        try {
          for (let i = 0; i < 20; i++) assert.equal(ok(await verify(unknownKey())).code, "INVALID_API_KEY");
          assert.equal(lookups.count, 20, "each unknown key was looked up once");
          for (let i = 0; i < 10; i++) assert.equal(ok(await verify(unknownKey())).code, "RATE_LIMITED");
          assert.equal(lookups.count, 20, "no lookup for the guesses past the budget");
        } finally {
          lookups.restore();
        }
      });

      it("issue 10.7: an unknown key is remembered for a minute: the same key again costs no lookup (and still spends the failed-attempt budget)", async () => {
        const ip = "198.51.100.51";
        const guess = unknownKey();
        const lookups = countLookups(h);
        try {
          fails(await h.call("GET", "/v1/me", { key: guess, ip }), 401, "INVALID_API_KEY");
          fails(await h.call("GET", "/v1/me", { key: guess, ip }), 401, "INVALID_API_KEY");
          assert.equal(lookups.count, 1);
          assert.equal(rateHeaders(await h.call("GET", "/v1/me", { key: guess, ip })).remaining, 17, "every attempt counts");
          h.clock.advance(MINUTE + SECOND);
          fails(await h.call("GET", "/v1/me", { key: guess, ip }), 401, "INVALID_API_KEY");
          assert.equal(lookups.count, 2, "looked up again after a minute");
        } finally {
          lookups.restore();
        }
      });

      it("issue 10.7: a key stored after its digest was remembered as unknown works at once — creating a key reports it as changed, which drops the digest", async () => {
        const raw = unknownKey();
        fails(await h.call("GET", "/v1/me", { key: raw }), 401, "INVALID_API_KEY");
        // POST /v1/keys reports the new key (its digest) as a key change.
        const reported: string[] = [];
        const keyChanged = h.kg.keyChanged;
        h.kg.keyChanged = (key) => {
          reported.push(key.digest);
          keyChanged(key);
        };
        let created: IssuedKey;
        try {
          created = await makeKey(h, portalId);
        } finally {
          h.kg.keyChanged = keyChanged;
        }
        assert.deepEqual(reported, [keyDigest(h.kg.serverSecret, created.raw)]);
        // A key stored with the very digest that was remembered (as creating it would), and reported: found at once.
        const record = (await h.store.getKeyByDigest(reported[0]!))!;
        const stored = { ...record, id: randomUUID(), digest: keyDigest(h.kg.serverSecret, raw), ...keyDisplay("vibe_api_", raw) };
        await h.store.createKey(stored, { audit: [] });
        h.kg.keyChanged(stored);
        assert.equal(ok(await h.call("GET", "/v1/me", { key: raw })).keyId, stored.id);
      });
    });

    describe("what is not counted", () => {
      it("issue: requests refused by verification (403 SCOPE_DENIED, 403 IP_NOT_ALLOWED, 401 KEY_INACTIVE) with a valid key are not counted (remaining does not drop) but still carry the headers", async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm"], rateLimit: 2 });
        const first = rateHeaders(await h.call("GET", LOCAL, { key: k.raw }));
        assert.deepEqual([first.limit, first.remaining], [2, 1]);
        for (const r of await repeat(10, () => h.call("GET", "/v1/tasks", { key: k.raw }))) {
          fails(r, 403, "SCOPE_DENIED");
          const hdr = rateHeaders(r);
          assert.deepEqual([hdr.limit, hdr.remaining, hdr.rateLimit], [2, 1, '"key";r=1;t=1']);
        }
        // The per-second budget still holds one request: the ten refusals spent nothing.
        const second = await h.call("GET", LOCAL, { key: k.raw });
        assertPassed(second);
        assert.equal(rateHeaders(second).remaining, 0);
        h.clock.advance(2 * SECOND);

        const fenced = await makeKey(h, portalId, { ipWhitelist: ["203.0.113.42"] });
        assert.equal(rateHeaders(await h.call("GET", "/v1/me", { key: fenced.raw, ip: "203.0.113.42" })).remaining, 299);
        for (const r of await repeat(5, () => h.call("GET", "/v1/me", { key: fenced.raw, ip: "198.51.100.7" }))) {
          fails(r, 403, "IP_NOT_ALLOWED");
          assert.equal(rateHeaders(r).remaining, 299);
        }
        assert.equal(rateHeaders(await h.call("GET", "/v1/me", { key: fenced.raw, ip: "203.0.113.42" })).remaining, 298);

        await patchKey(h, fenced.id, { status: "REVOKED" });
        for (const r of await repeat(5, () => h.call("GET", "/v1/me", { key: fenced.raw, ip: "203.0.113.42" }))) {
          fails(r, 401, "KEY_INACTIVE");
          assert.equal(rateHeaders(r).remaining, 298);
        }
      });

      it("design: rate limits are the last step of verification — a request verification refuses gets its own code (403, 401), not 429, even when the key is over a limit that was just lowered", async () => {
        const k = await makeKey(h, portalId, { scopes: ["crm"], rateLimit: 10 });
        for (const r of await repeat(10, () => h.call("GET", LOCAL, { key: k.raw }))) assertPassed(r);
        await patchKey(h, k.id, { rateLimit: 2 });
        // 10 this second against a limit of 2 now: the key is over it.
        limited(await h.call("GET", LOCAL, { key: k.raw }));
        const denied = await h.call("GET", "/v1/tasks", { key: k.raw });
        fails(denied, 403, "SCOPE_DENIED");
        assert.deepEqual([rateHeaders(denied).limit, rateHeaders(denied).remaining], [2, 0]);
        await patchKey(h, k.id, { status: "REVOKED" });
        fails(await h.call("GET", "/v1/me", { key: k.raw }), 401, "KEY_INACTIVE");
      });
    });

    describe("tiers in VibeCode", () => {
      it("issue: POST/PATCH /v1/keys {tier}: VibeCode has no tiers — 400 VALIDATION_ERROR with param tier, nothing stored; tier null is accepted; GET /v1/me shows rateLimit.perMinute 300 and tier null", async () => {
        const e = fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "tiered", scopes: ["crm"], tier: "pro" } }), 400, "VALIDATION_ERROR");
        assert.equal(e.param, "tier");
        assert.match(e.message, /no rate-limit tiers/);
        assert.equal(fails(await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId, name: "tiered", scopes: ["crm"], tier: 5 } }), 400, "VALIDATION_ERROR").param, "tier");
        const listed = ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key }));
        assert.ok(!listed.some((k: { name: string }) => k.name === "tiered"), "nothing stored");

        const k = await makeKey(h, portalId, { tier: null });
        assert.equal(k.data.tier, null);
        assert.equal(fails(await h.call("PATCH", `/v1/keys/${k.id}`, { key: h.owner.key, body: { tier: "starter" } }), 400, "VALIDATION_ERROR").param, "tier");
        assert.equal((await patchKey(h, k.id, { tier: null })).tier, null);
        const me = ok(await h.call("GET", "/v1/me", { key: k.raw }));
        assert.deepEqual(me.rateLimit, { requestsPerSecond: 10, perMinute: 300, tier: null });
      });
    });

    describe("backend", () => {
      it('issue: GET /healthz reports limits "memory" with the default limiter', async () => {
        const r = await h.call("GET", "/healthz");
        assert.equal(r.status, 200);
        assert.equal(r.body.limits, "memory");
      });
    });

    describe("request accounting (GET /v1/keys/:id/usage)", () => {
      const usage = async (id: string, query = "", key = h.owner.key) => ok(await h.call("GET", `/v1/keys/${id}/usage${query}`, { key }));

      it('seed 003: "Check the request log for requests from unknown addresses" — the usage lists every address and request made with the key, refused ones included (403 IP_NOT_ALLOWED from outside the ipWhitelist, 429)', async () => {
        const k = await makeKey(h, portalId, { ipWhitelist: ["203.0.113.42"], rateLimit: 1 });
        const t0 = h.clock.now;
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "203.0.113.42" }));
        limited(await h.call("GET", "/v1/me", { key: k.raw, ip: "203.0.113.42" }));
        h.clock.advance(2 * SECOND);
        fails(await h.call("GET", "/v1/deals", { key: k.raw, ip: "198.51.100.7" }), 403, "IP_NOT_ALLOWED");
        h.clock.advance(SECOND);
        fails(await h.call("POST", "/v1/deals", { key: k.raw, ip: "198.51.100.7", body: { title: "x" } }), 403, "IP_NOT_ALLOWED");

        const u = await usage(k.id);
        assert.equal(u.keyId, k.id);
        assert.deepEqual(
          u.requests.map((r: { at: string; ip: string; method: string; path: string; status: number }) => [r.at, r.ip, r.method, r.path, r.status]),
          [
            [isoAt(t0 + 3 * SECOND), "198.51.100.7", "POST", "/v1/deals", 403],
            [isoAt(t0 + 2 * SECOND), "198.51.100.7", "GET", "/v1/deals", 403],
            [isoAt(t0), "203.0.113.42", "GET", "/v1/me", 429],
            [isoAt(t0), "203.0.113.42", "GET", "/v1/me", 200],
          ],
          "newest first; refused requests included",
        );
        assert.deepEqual(
          [...u.addresses].sort((a: { ip: string }, b: { ip: string }) => a.ip.localeCompare(b.ip)),
          [
            { ip: "198.51.100.7", requests: 2, lastSeen: isoAt(t0 + 3 * SECOND) },
            { ip: "203.0.113.42", requests: 2, lastSeen: isoAt(t0) },
          ],
        );
      });

      it("issue: usage shows lastUsedAt, requestsPerMinute over the last hour, and requests [{at, ip, method, path (without the query), status, latencyMs}] newest first", async () => {
        const k = await makeKey(h, portalId);
        assert.equal((await usage(k.id)).lastUsedAt, null, "never used");
        assert.deepEqual((await usage(k.id)).requests, []);
        const old = h.clock.now;
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        // Over an hour later: the first minute is out of requestsPerMinute, but still in the log.
        h.clock.advance(61 * MINUTE);
        const m1 = h.clock.now;
        for (const r of await repeat(3, () => h.call("GET", "/v1/me?x=1", { key: k.raw, ip: "203.0.113.9" }))) ok(r);
        h.clock.advance(MINUTE + 5 * SECOND);
        const m2 = h.clock.now;
        assertPassed(await h.call("GET", `${UPSTREAM}?limit=5&filter[title]=secret`, { key: k.raw }));
        fails(await h.call("GET", "/v1/tasks", { key: k.raw }), 403, "SCOPE_DENIED");

        const u = await usage(k.id);
        assert.equal(u.lastUsedAt, isoAt(m2), "the last request that passed verification");
        assert.deepEqual(u.requestsPerMinute, [
          { minute: isoAt(m1 - (m1 % MINUTE)), requests: 3 },
          { minute: isoAt(m2 - (m2 % MINUTE)), requests: 2 },
        ]);
        assert.equal(u.requests.length, 6);
        assert.deepEqual(
          u.requests.map((r: { at: string; path: string; status: number; method: string }) => [r.at, r.method, r.path, r.status]),
          [
            [isoAt(m2), "GET", "/v1/tasks", 403],
            [isoAt(m2), "GET", "/v1/deals", 503],
            [isoAt(m1), "GET", "/v1/me", 200],
            [isoAt(m1), "GET", "/v1/me", 200],
            [isoAt(m1), "GET", "/v1/me", 200],
            [isoAt(old), "GET", "/v1/me", 200],
          ],
        );
        for (const r of u.requests) {
          assert.deepEqual(Object.keys(r).sort(), ["at", "ip", "latencyMs", "method", "path", "status"]);
          assert.ok(typeof r.latencyMs === "number" && r.latencyMs >= 0, `latencyMs: ${r.latencyMs}`);
          assert.ok(!JSON.stringify(r).includes("secret"), "the query string is not logged");
        }
      });

      it("issue: usage filters — ip (only that address), limit (the newest n), before (strictly earlier); bad limit or before → 400 VALIDATION_ERROR with param", async () => {
        const k = await makeKey(h, portalId);
        const t0 = h.clock.now;
        for (let i = 0; i < 5; i++) {
          ok(await h.call("GET", "/v1/me", { key: k.raw, ip: i % 2 ? "203.0.113.1" : "203.0.113.2" }));
          h.clock.advance(SECOND);
        }
        const byIp = await usage(k.id, "?ip=203.0.113.1");
        assert.deepEqual(
          byIp.requests.map((r: { at: string; ip: string }) => [r.at, r.ip]),
          [
            [isoAt(t0 + 3 * SECOND), "203.0.113.1"],
            [isoAt(t0 + SECOND), "203.0.113.1"],
          ],
        );
        // issue 12: the addresses are the whole log's, whatever page of requests is asked for.
        assert.deepEqual(byIp.addresses, [
          { ip: "203.0.113.2", requests: 3, lastSeen: isoAt(t0 + 4 * SECOND) },
          { ip: "203.0.113.1", requests: 2, lastSeen: isoAt(t0 + 3 * SECOND) },
        ]);
        assert.deepEqual((await usage(k.id, "?ip=192.0.2.99")).requests, []);
        assert.deepEqual(
          (await usage(k.id, "?limit=2")).requests.map((r: { at: string }) => r.at),
          [isoAt(t0 + 4 * SECOND), isoAt(t0 + 3 * SECOND)],
        );
        assert.deepEqual(
          (await usage(k.id, `?before=${encodeURIComponent(isoAt(t0 + 2 * SECOND))}`)).requests.map((r: { at: string }) => r.at),
          [isoAt(t0 + SECOND), isoAt(t0)],
        );
        assert.equal((await usage(k.id, "?limit=1000")).requests.length, 5);
        assert.equal((await usage(k.id, "?limit=1&ip=203.0.113.2")).requests[0].at, isoAt(t0 + 4 * SECOND));

        for (const [query, param] of [
          ["?limit=0", "limit"],
          ["?limit=1001", "limit"],
          ["?limit=-1", "limit"],
          ["?limit=abc", "limit"],
          ["?limit=1.5", "limit"],
          ["?limit=", "limit"],
          ["?before=yesterday", "before"],
          ["?before=", "before"],
          // issue 12: garbage Date.parse would take (the year -5, a day that does not exist), and addresses that are none.
          ["?before=-5", "before"],
          ["?before=2026-02-30T00:00:00Z", "before"],
          ["?before=5", "before"],
          ["?ip=999.1.1.1", "ip"],
          ["?ip=garbage", "ip"],
          ["?ip=", "ip"],
          ["?ip=203.0.113.0/24", "ip"],
        ] as const) {
          const e = fails(await h.call("GET", `/v1/keys/${k.id}/usage${query}`, { key: h.owner.key }), 400, "VALIDATION_ERROR");
          assert.equal(e.param, param, `${query}: ${JSON.stringify(e)}`);
        }
      });

      it("issue 12: usage addresses sum the whole retained log, not the returned page (seed 003: the compromised-key procedure checks every address)", async () => {
        const k = await makeKey(h, portalId);
        const t0 = h.clock.now;
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "198.51.100.66" }));
        h.clock.advance(SECOND);
        for (let i = 0; i < 120; i++) ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "203.0.113.5" }));
        const page = await usage(k.id, "?limit=10");
        assert.equal(page.requests.length, 10);
        assert.deepEqual(page.addresses, [
          { ip: "203.0.113.5", requests: 120, lastSeen: isoAt(t0 + SECOND) },
          { ip: "198.51.100.66", requests: 1, lastSeen: isoAt(t0) },
        ]);
        assert.deepEqual((await usage(k.id, `?before=${encodeURIComponent(isoAt(t0 + SECOND))}`)).addresses, page.addresses);
      });

      it("issue: the usage ip filter takes an IPv6 address as it is usually written (2001:db8::1), like the allowed-IP list", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw, ip: "2001:db8::1" }));
        const all = await usage(k.id);
        assert.equal(all.requests.length, 1);
        for (const ip of ["2001:db8::1", "2001:0db8:0:0:0:0:0:1", all.requests[0].ip]) {
          assert.equal((await usage(k.id, `?ip=${encodeURIComponent(ip)}`)).requests.length, 1, `ip=${ip} (stored as ${all.requests[0].ip})`);
        }
      });

      it("issue: usage is for the key's owner and its portal's admins; a member who does not own the key, a stranger, or an unknown id gets 404 KEY_NOT_FOUND", async () => {
        const k = await makeKey(h, portalId);
        ok(await h.call("GET", "/v1/me", { key: k.raw }));
        const admin = await makeUser(h);
        const member = await makeUser(h);
        const stranger = await makeUser(h);
        await addMember(h, portalId, admin.user.email, "ADMIN");
        await addMember(h, portalId, member.user.email, "MEMBER");
        assert.equal((await usage(k.id)).requests.length, 1, "the owner");
        assert.equal((await usage(k.id, "", admin.key)).requests.length, 1, "an admin of the key's portal");
        fails(await h.call("GET", `/v1/keys/${k.id}/usage`, { key: member.key }), 404, "KEY_NOT_FOUND");
        fails(await h.call("GET", `/v1/keys/${k.id}/usage`, { key: stranger.key }), 404, "KEY_NOT_FOUND");
        fails(await h.call("GET", "/v1/keys/00000000-0000-4000-8000-000000000000/usage", { key: h.owner.key }), 404, "KEY_NOT_FOUND");
        // A member sees the usage of their own key.
        const own = await makeKey(h, portalId, {}, { by: member.key });
        ok(await h.call("GET", "/v1/me", { key: own.raw }));
        assert.equal((await usage(own.id, "", member.key)).requests.length, 1);
      });
    });
  });

  describe(`tiers: RogerIQ [${kind}]`, () => {
    let h: Harness;
    let actor: Actor;
    let portalId: string;
    const ROUTE = "/v1/projects/p1/kb/articles";
    before(async () => {
      h = await startHarness(kind, { profile: "rogeriq" });
      actor = { user: h.owner.user, keyId: null, ip: null };
      portalId = (await createPortal(h.kg, actor, { domain: "acme.example.com", upstream: { kind: "sandbox" } })).id;
      // The organisation's shared budget (10 per second by default) would cap every key far below its tier.
      await updatePortal(h.kg, actor, portalId, { requestLimit: 100_000 });
    });
    after(() => h.close());
    beforeEach(() => fresh(h));
    const key = async (input: { tier?: string | null; portalId?: string } = {}) => (await createKey(h.kg, actor, { portalId, name: "k", scopes: ["read"], ...input })).rawKey;

    /** The flat envelope of a 429 (RogerIQ): {error, code: "RATE_LIMITED", request_id, retryAfter} (and a hint), Retry-After. */
    function flatLimited(r: Reply, code = "RATE_LIMITED"): number {
      assert.equal(r.status, 429, show(r));
      assert.equal(r.body.code, code, show(r));
      assert.equal(typeof r.body.error, "string", show(r));
      assert.equal(r.body.request_id, r.headers["x-request-id"], show(r));
      assert.ok(Number.isInteger(r.body.retryAfter) && r.body.retryAfter >= 1, show(r));
      assert.equal(r.headers["retry-after"], String(r.body.retryAfter));
      assert.ok(!("success" in r.body), show(r));
      for (const field of Object.keys(r.body)) assert.ok(["error", "code", "request_id", "retryAfter", "hint"].includes(field), `unexpected field ${field}: ${show(r)}`);
      assert.equal(rateHeaders(r).remaining, 0);
      return r.body.retryAfter;
    }

    it('issue: a key\'s tier replaces the platform limit — RogerIQ starter (the default tier) 600 requests a minute; the 601st gets 429 in the flat envelope {error, code: "RATE_LIMITED", request_id, retryAfter}', async () => {
      const raw = await key();
      const replies = await repeat(600, () => h.call("GET", ROUTE, { key: raw }));
      replies.forEach((r, i) => {
        assertPassed(r);
        if (i === 0) assert.equal(rateHeaders(r).policy, '"tier-starter";q=600;w=60, "portal";q=100000;w=1');
        assert.deepEqual([rateHeaders(r).limit, rateHeaders(r).remaining], [600, 599 - i]);
      });
      flatLimited(await h.call("GET", ROUTE, { key: raw }));
      assert.equal(rateHeaders(await h.call("GET", ROUTE, { key: raw })).limit, 600);
    });

    it("issue: RogerIQ pro: 3,000 requests a minute, the 3,001st is refused; starter keys beside it keep 600", async () => {
      const pro = await key({ tier: "pro" });
      const starter = await key({ tier: "starter" });
      const first = await h.call("GET", ROUTE, { key: pro });
      assert.deepEqual([rateHeaders(first).limit, rateHeaders(first).remaining], [3000, 2999]);
      assert.match(rateHeaders(first).policy, /^"tier-pro";q=3000;w=60/);
      for (const r of await repeat(2999, () => h.call("GET", ROUTE, { key: pro }))) assertPassed(r);
      flatLimited(await h.call("GET", ROUTE, { key: pro }));
      assert.equal(rateHeaders(await h.call("GET", ROUTE, { key: starter })).limit, 600);
    });

    it("issue: RogerIQ requests without a key: 600 a minute per address", async () => {
      const ip = "198.51.100.60";
      const replies = await repeat(600, () => h.call("GET", ROUTE, { ip }));
      replies.forEach((r, i) => {
        assert.equal(r.status, 401, show(r));
        assert.equal(r.body.code, "MISSING_API_KEY");
        assert.deepEqual([rateHeaders(r).limit, rateHeaders(r).remaining], [600, 599 - i]);
      });
      flatLimited(await h.call("GET", ROUTE, { ip }));
      assert.equal((await h.call("GET", ROUTE, { ip: "198.51.100.61" })).status, 401);
    });

    it("issue: outside VibeCode a spent portal budget answers 429 RATE_LIMITED (the portal's requestLimit, shared by its keys; no budget unless one is set)", async () => {
      const other = (await createPortal(h.kg, actor, { domain: "other.example.com", upstream: { kind: "sandbox" } })).id;
      const unlimited = await key({ portalId: other });
      for (const r of await repeat(30, () => h.call("GET", ROUTE, { key: unlimited }))) assertPassed(r);
      h.clock.advance(2_000);
      await updatePortal(h.kg, actor, other, { requestLimit: 10 });
      const a = await key({ portalId: other });
      const b = await key({ portalId: other });
      for (const r of await repeat(10, (i) => h.call("GET", ROUTE, { key: i % 2 ? a : b }))) assertPassed(r);
      const refused = await h.call("GET", ROUTE, { key: a });
      flatLimited(refused);
      assert.match(rateHeaders(refused).rateLimit, /^"portal";r=0;/);
    });

    it("issue: an unknown tier is refused with VALIDATION_ERROR param tier (RogerIQ has no key management over HTTP: checked in the manage layer)", async () => {
      await assert.rejects(key({ tier: "gold" }), (e: unknown) => e instanceof KeygateError && e.code === "VALIDATION_ERROR" && e.param === "tier" && /starter, pro, scale, enterprise/.test(e.message));
    });

    it('issue: GET /v1/me shows rateLimit.perMinute and tier', async () => {
      const raw = await key({ tier: "pro" });
      const r = await h.call("GET", "/v1/me", { key: raw });
      assert.equal(r.status, 200, show(r));
      assert.equal(r.body.data.rateLimit.perMinute, 3000);
      assert.equal(r.body.data.rateLimit.tier, "pro");
    });
  });

  describe(`tiers: Atender [${kind}]`, () => {
    let h: Harness;
    let actor: Actor;
    let portalId: string;
    const ROUTE = "/api/v1/kb/articles";
    before(async () => {
      h = await startHarness(kind, { profile: "atender" });
      actor = { user: h.owner.user, keyId: null, ip: null };
      portalId = (await createPortal(h.kg, actor, { domain: "helpdesk.example.com", upstream: { kind: "sandbox" } })).id;
      await updatePortal(h.kg, actor, portalId, { requestLimit: 100_000 });
    });
    after(() => h.close());
    beforeEach(() => fresh(h));
    // Atender sends its keys as Authorization: Bearer.
    const key = async (tier?: string) => (await createKey(h.kg, actor, { portalId, name: "k", scopes: ["knowledge:read"], tier })).rawKey;
    const send = (raw: string) => h.call("GET", ROUTE, { bearer: raw });

    it("issue: Atender's per-second burst — starter (the default tier) 10 a second, professional 50", async () => {
      for (const [tier, burst] of [[undefined, 10], ["professional", 50]] as const) {
        const raw = await key(tier);
        const { passed, refusal } = await passesUntilRefused(() => send(raw));
        assert.equal(passed, burst, `${tier ?? "starter"}`);
        assert.equal(refusal.status, 429, show(refusal));
        assert.equal(refusal.body.code, "RATE_LIMITED");
        const hdr = rateHeaders(refusal);
        assert.equal(hdr.limit, burst);
        assert.match(hdr.rateLimit, /^"tier-(starter|professional)-burst";r=0;t=1$/);
      }
    });

    it("issue: Atender starter: 60 a minute, in bursts of at most 10", async () => {
      const raw = await key();
      for (let burst = 0; burst < 6; burst++) {
        for (const r of await repeat(10, () => send(raw))) assertPassed(r);
        h.clock.advance(2 * SECOND);
      }
      const refusal = await send(raw);
      assert.equal(refusal.status, 429, show(refusal));
      const hdr = rateHeaders(refusal);
      assert.equal(hdr.limit, 60);
      assert.equal(hdr.policy, '"tier-starter";q=60;w=60, "tier-starter-day";q=10000;w=86400, "tier-starter-burst";q=10;w=1, "portal";q=100000;w=1');
    });

    it("issue: Atender's per-day cap — starter 10,000 requests in a (sliding) day", async () => {
      const raw = await key();
      // Start of a day window, so the day holds the whole run (about six hours).
      h.clock.advance(DAY - (h.clock.now % DAY));
      let passed = 0;
      let refusal: Reply | undefined;
      while (refusal === undefined) {
        for (let burst = 0; burst < 6 && refusal === undefined; burst++) {
          for (let i = 0; i < 10 && refusal === undefined; i++) {
            const r = await send(raw);
            if (r.body?.error?.code === "SANDBOX_UNREACHABLE" || (r.status === 400 && r.body?.code === "PORTAL_NOT_LINKED")) passed++;
            else refusal = r;
          }
          h.clock.advance(2 * SECOND);
        }
        h.clock.advance(2 * MINUTE);
        assert.ok(passed <= 10_000, "the day cap holds");
      }
      assert.equal(passed, 10_000);
      assert.equal(refusal.status, 429, show(refusal));
      const hdr = rateHeaders(refusal);
      assert.equal(hdr.limit, 10_000);
      assert.match(hdr.rateLimit, /^"tier-starter-day";r=0;/);
    });
  });

  if (redisReady) {
    describe(`limits on Redis [${kind}]`, () => {
      let a: Harness;
      let b: Harness;
      let portalId: string;
      const deployment = `http-${randomBytes(4).toString("hex")}`;
      /** A RedisLimiter on the harness clock, in this suite's deployment. */
      const redisLimiter = async (now: () => number) => {
        const limiter = new RedisLimiter({ url: redisUrl(), deployment, now });
        await limiter.ready();
        return limiter;
      };
      before(async () => {
        a = await startHarness(kind, { limiter: redisLimiter });
        // A second node: the same store, secret and clock, its own server and its own RedisLimiter on the same Redis and deployment.
        b = await startHarness(kind, { alongside: a, limiter: redisLimiter });
        portalId = await makePortal(a);
      });
      after(async () => {
        await b.close();
        await a.close();
      });
      beforeEach(() => fresh(a));

      it("issue 11.3: 900 requests evenly over 60 s from one address, split across two nodes, against 300 a minute: at most 300 admitted in any 60 s", async () => {
        const ip = "198.51.100.77";
        a.clock.advance(30 * SECOND);
        const admitted = await evenly(a.clock, 900, MINUTE, (i) => (i % 2 ? b : a).call("GET", "/v1/me", { ip }));
        assert.equal(admitted.length, 300);
        assert.ok(busiest(admitted, MINUTE) <= 300, `${busiest(admitted, MINUTE)} admitted in one minute`);
      });

      it('issue: GET /healthz reports limits "redis" on every node', async () => {
        for (const node of [a, b]) assert.equal((await node.call("GET", "/healthz")).body.limits, "redis");
      });

      it("issue: two gateway nodes with RedisLimiters on one Redis share one budget — 300 requests split across both, the 301st is refused by either", async () => {
        const k = await makeKey(a, portalId);
        const replies = await repeat(300, (i) => (i % 2 ? b : a).call("GET", LOCAL, { key: k.raw }));
        replies.forEach((r, i) => {
          assertPassed(r);
          assert.equal(rateHeaders(r).remaining, 299 - i, "each node sees the other's requests");
        });
        limited(await a.call("GET", LOCAL, { key: k.raw }));
        const e = limited(await b.call("GET", LOCAL, { key: k.raw }));
        // The window slides on both alike: a minute after the 300 came, they leave it together, for either node.
        assert.equal(e.retryAfter, 60);
        a.clock.advance(e.retryAfter * SECOND - 1);
        limited(await a.call("GET", LOCAL, { key: k.raw }));
        a.clock.advance(1);
        let n = 0;
        const { passed, refusal } = await passesUntilRefused(() => (n++ % 2 ? a : b).call("GET", LOCAL, { key: k.raw }));
        assert.equal(passed, 300);
        limited(refusal);
      });

      it("issue: on Redis the portal's budget and the failed-authentication budget are shared by the nodes too", async () => {
        const portal = await makePortal(a);
        const x = await makeKey(a, portal);
        const y = await makeKey(b, portal);
        for (const r of await repeat(10, (i) => (i % 2 ? b : a).call("GET", UPSTREAM, { key: i % 3 ? x.raw : y.raw }))) assertPassed(r);
        limited(await a.call("GET", UPSTREAM, { key: y.raw }), 502, "BITRIX_UNAVAILABLE");
        limited(await b.call("GET", UPSTREAM, { key: x.raw }), 502, "BITRIX_UNAVAILABLE");

        const ip = "198.51.100.80";
        for (const r of await repeat(20, (i) => (i % 2 ? b : a).call("GET", "/v1/me", { key: unknownKey(), ip }))) fails(r, 401, "INVALID_API_KEY");
        limited(await a.call("GET", "/v1/me", { key: unknownKey(), ip }));
        limited(await b.call("GET", "/v1/me", { key: unknownKey(), ip }));
        ok(await b.call("GET", "/v1/me", { key: x.raw, ip }));
      });

      it("issue 10.7: on Redis too, an address past its failed-authentication budget gets 429 for unknown keys without a store lookup, on every node", async () => {
        const ip = "198.51.100.81";
        for (const r of await repeat(20, (i) => (i % 2 ? b : a).call("GET", "/v1/me", { key: unknownKey(), ip }))) fails(r, 401, "INVALID_API_KEY");
        const lookups = countLookups(a);
        try {
          for (const r of await repeat(10, (i) => (i % 2 ? b : a).call("GET", "/v1/me", { key: unknownKey(), ip }))) limited(r);
          assert.equal(lookups.count, 0);
        } finally {
          lookups.restore();
        }
      });

      describe("Redis going away", () => {
        let server: ChildProcess | undefined;
        afterEach(() => {
          server?.kill("SIGKILL");
        });

        it('issue: while Redis is unreachable GET /healthz reports "redis-degraded" and requests are still answered, limited locally, with the headers; "redis" again once it is back', async () => {
          const port = await freePort();
          server = await startRedis(port);
          let limiter: RedisLimiter | undefined;
          const node = await startHarness(kind, {
            limiter: async (now) => {
              limiter = new RedisLimiter({ url: `redis://127.0.0.1:${port}`, deployment, now });
              await limiter.ready();
              return limiter;
            },
          });
          try {
            assert.equal((await node.call("GET", "/healthz")).body.limits, "redis");
            const k = await makeKey(node, await makePortal(node), { rateLimit: 3 });
            assert.equal(rateHeaders(await node.call("GET", LOCAL, { key: k.raw })).remaining, 2);

            server.kill("SIGKILL");
            await once(server, "exit");
            // The local counters stand in: the per-key limit still holds (they start empty).
            const during = await repeat(4, () => node.call("GET", LOCAL, { key: k.raw }));
            during.slice(0, 3).forEach((r, i) => {
              assertPassed(r);
              assert.equal(rateHeaders(r).remaining, 2 - i);
            });
            limited(during[3]!);
            assert.equal((await node.call("GET", "/healthz")).body.limits, "redis-degraded");

            server = await startRedis(port);
            await limiter!.ready(10_000);
            assert.equal((await node.call("GET", "/healthz")).body.limits, "redis");
            node.clock.advance(2 * SECOND);
            assertPassed(await node.call("GET", LOCAL, { key: k.raw }));
          } finally {
            await node.close();
          }
        });
      });
    });
  }
}
