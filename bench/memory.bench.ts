/**
 * Memory benchmark (issue 14 §3): what a node holds per cached key and per client address, at
 * 10⁶ of each (BENCH_MEMORY_COUNT), and that the bounds hold past them.
 *
 * Method:
 *  - **Per key**: a KeyCache (the gateway's) of capacity N over a store that makes each key as it
 *    is asked for (VibeCode API keys of the scope benchmark's 10 scopes, in 4 distinct scope
 *    sets, with an IP allow-list of one address on every tenth, as a deployment's keys look), so
 *    that the store's own memory does not count. N keys are loaded; the heap (after two full
 *    garbage collections) before and after, over N. Then N/5 more keys: the cache must still
 *    hold N.
 *  - **Per address**: a MemoryLimiter (the in-memory rate limits) of capacity 2N logs. N
 *    distinct IPv4 addresses each make a failed attempt (the platform limit per source and the
 *    failed-authentication budget: two logs an address, the most an address costs); heap before
 *    and after, over N. Then N/5 more addresses: the limiter must hold at most 2N logs. Then N
 *    distinct IPv6 addresses of one /64: one client, two logs.
 *  - RSS after each step, for the operator's view. One process, gc exposed with
 *    v8.setFlagsFromString; the figures are of V8's heap, not pinned, not timed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";
import { KeyCache } from "../src/gateway/key-cache.ts";
import { clientSubject } from "../src/limits/ip.ts";
import { MemoryLimiter } from "../src/limits/memory.ts";
import { limitPolicy } from "../src/limits/policy.ts";
import { loadProfile } from "../src/profiles/index.ts";
import type { KeyRecord, Store } from "../src/store/store.ts";
import { envNumber, KEY_SCOPES, round } from "./harness.ts";

export interface MemoryBenchResult {
  count: number;
  key: { bytesPerKey: number; heldAfterMore: number; capacity: number; rssMiB: number };
  address: { bytesPerAddress: number; logsAfterMore: number; capacity: number; logsForOneV6Network: number; rssMiB: number };
}

const mib = (bytes: number) => round(bytes / 2 ** 20, 1);

export async function runMemoryBench(): Promise<MemoryBenchResult> {
  const count = envNumber("BENCH_MEMORY_COUNT", 1_000_000);
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const heap = async () => {
    await sleep(10);
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };

  // ---- keys ----
  const profile = loadProfile("vibecode");
  const scopeSets = [KEY_SCOPES, KEY_SCOPES.slice(0, 5), KEY_SCOPES.slice(3), ["crm", "task"]];
  const record = (digest: string): KeyRecord => {
    const n = Number(digest.slice(1));
    const scopes = [...scopeSets[n % scopeSets.length]!];
    return {
      id: `key_${n.toString(36).padStart(12, "0")}`,
      type: "api",
      name: `key ${n}`,
      ownerId: `usr_${(n % 1000).toString(36).padStart(12, "0")}`,
      portalId: `prt_${(n % 100).toString(36).padStart(12, "0")}`,
      digest,
      keyPrefix: `vibe_api_${n.toString(36).padStart(6, "0")}`,
      keySuffix: "wxyz",
      scopes,
      issuedScopes: [...scopes],
      status: "ACTIVE",
      accessMode: "READWRITE",
      ipWhitelist: n % 10 === 0 ? ["203.0.113.7"] : [],
      rateLimit: null,
      tier: null,
      expiresAt: null,
      createdAt: 1_750_000_000_000,
      updatedAt: 1_750_000_000_000,
      lastUsedAt: null,
      rotatedFromId: null,
      rotatedToId: null,
      version: 1,
    };
  };
  const store = { getKeyByDigestNow: record } as unknown as Store;
  // Digests as long as real ones (43 base64url characters).
  const digest = (n: number) => `d${String(n).padStart(42, "0")}`;
  const cache = new KeyCache(profile, store, { max: count });
  const keysBefore = await heap();
  for (let i = 0; i < count; i++) cache.load(digest(i));
  const keysAfter = await heap();
  const keyRss = process.memoryUsage().rss;
  for (let i = count; i < count + count / 5; i++) cache.load(digest(i));
  const held = cache.size;
  // Dropped before the addresses are counted: their heap is measured alone.
  cache.clear();

  // ---- addresses ----
  const policy = limitPolicy(profile.spec.limits);
  let limiter: MemoryLimiter | undefined = new MemoryLimiter({ maxLogs: 2 * count });
  const attempt = (ip: string) => {
    const limits = policy.forAddress(ip);
    limits.push(policy.failedAuth(ip));
    limiter!.consumeNow(limits, 1);
  };
  const v4 = (n: number) => `${10 + (n >>> 24)}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  const addressesBefore = await heap();
  for (let i = 0; i < count; i++) attempt(v4(i));
  const addressesAfter = await heap();
  const addressRss = process.memoryUsage().rss;
  for (let i = count; i < count + count / 5; i++) attempt(v4(i));
  const logsAfterMore = limiter.size;
  await limiter.close();
  limiter = new MemoryLimiter({ maxLogs: 2 * count });
  for (let i = 0; i < count; i++) attempt(`2001:db8:1:2:${(i >>> 16) & 0xffff}:${(i & 0xffff).toString(16)}:0:1`);
  const logsForOneV6Network = limiter.size;
  await limiter.close();
  if (clientSubject("2001:db8:1:2:0:1:0:1") !== "2001:db8:1:2::/64") throw new Error("an IPv6 client is not counted by its /64");

  return {
    count,
    key: { bytesPerKey: Math.round((keysAfter - keysBefore) / count), heldAfterMore: held, capacity: count, rssMiB: mib(keyRss) },
    address: { bytesPerAddress: Math.round((addressesAfter - addressesBefore) / count), logsAfterMore, capacity: 2 * count, logsForOneV6Network, rssMiB: mib(addressRss) },
  };
}

export function memoryReport(r: MemoryBenchResult): string[] {
  return [
    `| memory (issue 14 §3) | at | heap per entry | full (heap) | RSS then | held after ${r.count / 5} more | capacity |`,
    "|---|---:|---:|---:|---:|---:|---:|",
    `| key cache, per key | ${r.count} keys | ${r.key.bytesPerKey} B | ${mib(r.key.bytesPerKey * r.count)} MiB | ${r.key.rssMiB} MiB | ${r.key.heldAfterMore} keys | ${r.key.capacity} |`,
    `| in-memory limits, per address (2 logs) | ${r.count} addresses | ${r.address.bytesPerAddress} B | ${mib(r.address.bytesPerAddress * r.count)} MiB | ${r.address.rssMiB} MiB | ${r.address.logsAfterMore} logs | ${r.address.capacity} |`,
    "",
    `${r.count} IPv6 addresses of one /64 held ${r.address.logsForOneV6Network} logs (one client).`,
  ];
}
