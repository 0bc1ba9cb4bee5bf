/**
 * The limiter contract, run against every backend: exact admission within a window, refusals
 * not counted, all-or-nothing across limits, gradual return of capacity, concurrency.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { Limit, Limiter } from "../../src/limits/limiter.ts";

export interface Clock {
  now: number;
}

const limitOf = (bucket: string, limit: number, windowMs = 60_000): Limit => ({ kind: "platform", bucket, limit, windowMs, policy: "platform" });

export function limiterContract(name: string, open: (clock: Clock) => Promise<Limiter>): void {
  describe(`limiter contract: ${name}`, () => {
    const clock: Clock = { now: 0 };
    let limiter: Limiter;
    // Each test counts in buckets of its own.
    const bucket = () => `t:${randomBytes(6).toString("hex")}`;
    before(async () => {
      limiter = await open(clock);
    });
    after(() => limiter.close());
    const at = (ms: number) => {
      clock.now = ms;
    };

    it("admits exactly `limit` requests in a fresh window, then refuses", async () => {
      at(1_000_000 * 60_000);
      const l = limitOf(bucket(), 5);
      const admitted: boolean[] = [];
      for (let i = 0; i < 8; i++) admitted.push((await limiter.consume([l], 1)).admitted);
      assert.deepEqual(admitted, [true, true, true, true, true, false, false, false]);
    });

    it("reports remaining, reset and, when refused, when to retry", async () => {
      at(2_000_000 * 60_000 + 15_000);
      const l = limitOf(bucket(), 3);
      const first = await limiter.consume([l], 1);
      assert.equal(first.states[0]!.remaining, 2);
      assert.equal(first.states[0]!.resetMs, 45_000);
      await limiter.consume([l], 1);
      await limiter.consume([l], 1);
      const refused = await limiter.consume([l], 1);
      assert.equal(refused.admitted, false);
      assert.equal(refused.states[0]!.remaining, 0);
      assert.ok(refused.states[0]!.retryAfterMs > 0);
      // Retrying exactly when told works.
      at(clock.now + refused.states[0]!.retryAfterMs);
      assert.equal((await limiter.consume([l], 1)).admitted, true);
    });

    it("does not count refused requests", async () => {
      at(3_000_000 * 60_000);
      const l = limitOf(bucket(), 2);
      await limiter.consume([l], 1);
      await limiter.consume([l], 1);
      for (let i = 0; i < 50; i++) assert.equal((await limiter.consume([l], 1)).admitted, false);
      // Next window: the previous one counted only the 2 admitted requests, fading out.
      at(clock.now + 60_000 + 30_000);
      assert.equal((await limiter.consume([l], 1)).admitted, true, "2 × 0.5 + 1 ≤ 2");
    });

    it("counts a request in every limit or in none", async () => {
      at(4_000_000 * 60_000);
      const wide = limitOf(bucket(), 100);
      const narrow = limitOf(bucket(), 1);
      assert.equal((await limiter.consume([wide, narrow], 1)).admitted, true);
      const refused = await limiter.consume([wide, narrow], 1);
      assert.equal(refused.admitted, false);
      assert.equal(refused.states[0]!.remaining, 0, "remaining is 0 for every limit of a refused request");
      const alone = await limiter.consume([wide], 1);
      assert.equal(alone.states[0]!.remaining, 98, "the refused request was not counted in the wide limit");
    });

    it("a request of cost n spends n units (a batch spends one)", async () => {
      at(5_000_000 * 60_000);
      const l = limitOf(bucket(), 10);
      assert.equal((await limiter.consume([l], 7)).states[0]!.remaining, 3);
      assert.equal((await limiter.consume([l], 4)).admitted, false);
      assert.equal((await limiter.consume([l], 3)).admitted, true);
    });

    it("after the window passes, capacity returns gradually, not all at once", async () => {
      const start = 6_000_000 * 60_000;
      at(start);
      const l = limitOf(bucket(), 60);
      for (let i = 0; i < 60; i++) await limiter.consume([l], 1);
      assert.equal((await limiter.consume([l], 1)).admitted, false);
      // At the boundary almost nothing is back; a quarter into the next window, a quarter is.
      at(start + 60_000);
      const atBoundary = await limiter.consume([l], 1);
      assert.equal(atBoundary.admitted, false);
      at(start + 60_000 + 15_000);
      let admitted = 0;
      while ((await limiter.consume([l], 1)).admitted) admitted++;
      assert.equal(admitted, 15);
      // Two windows later the old requests are forgotten.
      at(start + 3 * 60_000);
      admitted = 0;
      while ((await limiter.consume([l], 1)).admitted) admitted++;
      assert.equal(admitted, 60);
    });

    it("many parallel requests are never admitted beyond the limit", async () => {
      at(7_000_000 * 60_000);
      const l = limitOf(bucket(), 25);
      const outcomes = await Promise.all(Array.from({ length: 200 }, () => limiter.consume([l], 1)));
      assert.equal(outcomes.filter((o) => o.admitted).length, 25);
    });

    it("issue 10.7: peek gives the decision consume would make, and counts nothing", async () => {
      at(9_000_000 * 60_000);
      const l = limitOf(bucket(), 2);
      for (let i = 0; i < 5; i++) assert.equal((await limiter.peek!([l], 1)).admitted, true);
      await limiter.consume([l], 1);
      assert.equal((await limiter.peek!([l], 1)).states[0]!.remaining, 0, "one left: this one would take it");
      await limiter.consume([l], 1);
      const refused = await limiter.peek!([l], 1);
      assert.equal(refused.admitted, false);
      assert.ok(refused.states[0]!.retryAfterMs > 0);
      if (limiter.peekNow) assert.deepEqual(limiter.peekNow([l], 1), refused, "peekNow answers as peek");
    });

    it("separate buckets do not share a budget", async () => {
      at(8_000_000 * 60_000);
      const a = limitOf(bucket(), 1);
      const b = limitOf(bucket(), 1);
      assert.equal((await limiter.consume([a], 1)).admitted, true);
      assert.equal((await limiter.consume([b], 1)).admitted, true);
    });
  });
}
