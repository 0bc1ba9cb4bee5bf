/**
 * issue 14 §3: memory is bounded. The key cache and the in-memory limiter hold at most a set
 * number of entries, the least recently used leaving first; per-address limits count an IPv6
 * client by its /64 (configurable), an IPv4 client by its address.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { generateKey } from "../../src/core/keys/format.ts";
import { type Verifier, createVerifier, keyFormat, loadProfile } from "../../src/index.ts";
import { clientSubject } from "../../src/limits/ip.ts";
import type { Limit } from "../../src/limits/limiter.ts";
import { MemoryLimiter } from "../../src/limits/memory.ts";
import type { Keygate } from "../../src/manage/context.ts";
import { createKey } from "../../src/manage/keys.ts";
import { createPortal } from "../../src/manage/portals.ts";
import { createUser } from "../../src/manage/users.ts";
import { type Store, openSqliteStore } from "../../src/store/index.ts";
import { outboundPolicy } from "../../src/upstream/outbound.ts";

describe("issue 14 §3: bounded memory", () => {
  const profile = loadProfile("vibecode");
  const serverSecret = randomBytes(32).toString("base64url");
  const clock = { now: Date.parse("2026-11-22T12:00:00Z") };
  let store: Store;
  let kg: Keygate;
  let portalId: string;
  let actor: { user: Awaited<ReturnType<typeof createUser>>; keyId: null; ip: null };
  const verifiers: Verifier[] = [];
  const verifier = (options: { cacheSize?: number; ipv6Prefix?: number } = {}) => {
    const v = createVerifier({ profile, store, serverSecret, now: () => clock.now, ...options });
    verifiers.push(v);
    return v;
  };

  before(async () => {
    store = await openSqliteStore(":memory:", { serverSecret });
    await store.migrate();
    kg = { profile, store, serverSecret, format: keyFormat(profile.spec.keyTypes), outbound: outboundPolicy(), now: () => clock.now, keyChanged: () => {}, portalChanged: () => {} };
    actor = { user: await createUser(kg, null, { email: "owner@example.com" }), keyId: null, ip: null };
    portalId = (await createPortal(kg, actor, { domain: "bounded.example.com", upstream: { kind: "sandbox" } })).id;
  });
  after(async () => {
    for (const v of verifiers) await v.close();
    await store.close();
  });

  it("issue 14: the key cache holds at most cacheSize keys; the one used least recently leaves, not the oldest", async () => {
    const v = verifier({ cacheSize: 3 });
    const keys = [];
    for (let i = 0; i < 4; i++) keys.push((await createKey(kg, actor, { portalId, name: `k${i}`, scopes: "crm" })).rawKey);
    const lookups = { count: 0 };
    const read = store.getKeyByDigestNow!.bind(store);
    store.getKeyByDigestNow = (digest) => (lookups.count++, read(digest));
    try {
      const verify = async (key: string) => assert.ok((await v.verify({ key, method: "GET", path: "/v1/deals", ip: "203.0.113.9" })).valid);
      for (const k of keys.slice(0, 3)) await verify(k);
      await verify(keys[0]!); // the first key is used again: the second is now the least recently used
      assert.equal(lookups.count, 3);
      await verify(keys[3]!);
      assert.equal(v.cachedKeys, 3, "the bound holds");
      assert.equal(lookups.count, 4);
      await verify(keys[0]!);
      await verify(keys[2]!);
      assert.equal(lookups.count, 4, "the first and third keys stayed");
      await verify(keys[1]!);
      assert.equal(lookups.count, 5, "the second key had left");
    } finally {
      store.getKeyByDigestNow = read;
    }
  });

  it("issue 14: the in-memory limiter holds at most maxLogs logs; the least recently used leaves, so a busy subject keeps its count", () => {
    const limiter = new MemoryLimiter({ now: () => clock.now, maxLogs: 2 });
    const limit = (subject: string): Limit[] => [{ kind: "platform", bucket: `platform:ip:${subject}`, limit: 1, windowMs: 60_000, policy: "platform" }];
    try {
      assert.equal(limiter.consumeNow(limit("busy"), 1).admitted, true);
      assert.equal(limiter.consumeNow(limit("idle"), 1).admitted, true);
      assert.equal(limiter.consumeNow(limit("busy"), 1).admitted, false, "busy is out of budget, and just used");
      assert.equal(limiter.consumeNow(limit("new"), 1).admitted, true);
      assert.equal(limiter.size, 2, "the bound holds");
      assert.equal(limiter.consumeNow(limit("busy"), 1).admitted, false, "busy kept its log");
      assert.equal(limiter.consumeNow(limit("idle"), 1).admitted, true, "idle's log had left: it starts again");
    } finally {
      void limiter.close();
    }
  });

  it("issue 14: an IPv6 client is counted by its /64, an IPv4 client by its address", () => {
    assert.equal(clientSubject("2001:db8:1:2:0:0:0:a"), "2001:db8:1:2::/64");
    assert.equal(clientSubject("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
    assert.equal(clientSubject("2001:db8:1:3:0:0:0:a"), "2001:db8:1:3::/64");
    assert.equal(clientSubject("203.0.113.7"), "203.0.113.7");
    assert.equal(clientSubject("2001:db8:1:2:0:0:0:a", 48), "2001:db8:1::/48");
    assert.equal(clientSubject("2001:db8:1:2:0:0:0:a", 56), "2001:db8:1::/56");
    assert.equal(clientSubject("2001:db8:1:2ff:0:0:0:a", 56), "2001:db8:1:200::/56");
    assert.equal(clientSubject("2001:db8:1:2:0:0:0:a", 128), "2001:db8:1:2:0:0:0:a");
  });

  it("issue 14: failed attempts from addresses of one IPv6 /64 spend one budget; another /64, or another IPv4 address, has its own; the prefix is configurable", async () => {
    const guess = (v: Verifier, ip: string) => v.verify({ key: generateKey("vibe_api_"), method: "GET", path: "/v1/deals", ip }).then((o) => (o.valid ? "valid" : o.code));
    const v = verifier();
    for (let i = 0; i < 20; i++) assert.equal(await guess(v, `2001:db8:1:2::${(i + 1).toString(16)}`), "INVALID_API_KEY");
    assert.equal(await guess(v, "2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "RATE_LIMITED", "the same /64: its budget is spent");
    assert.equal(await guess(v, "2001:db8:1:3::1"), "INVALID_API_KEY", "another /64");
    for (let i = 0; i < 20; i++) assert.equal(await guess(v, "198.51.100.10"), "INVALID_API_KEY");
    assert.equal(await guess(v, "198.51.100.10"), "RATE_LIMITED");
    assert.equal(await guess(v, "198.51.100.11"), "INVALID_API_KEY", "IPv4: each address its own");

    const exact = verifier({ ipv6Prefix: 128 });
    for (let i = 0; i < 20; i++) assert.equal(await guess(exact, "2001:db8:9:9::1"), "INVALID_API_KEY");
    assert.equal(await guess(exact, "2001:db8:9:9::1"), "RATE_LIMITED");
    assert.equal(await guess(exact, "2001:db8:9:9::2"), "INVALID_API_KEY", "--ipv6-prefix 128: each address its own");
  });
});
