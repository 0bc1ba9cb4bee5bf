/**
 * The limiter contract, run against every backend: exact admission within a window, refusals
 * not counted, all-or-nothing across limits, capacity returning as requests leave the window,
 * concurrency; and the property of issue 11.3 (property.ts).
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
      assert.equal(first.states[0]!.resetMs, 60_000, "the oldest request counted (this one) leaves the window in 60 s");
      at(clock.now + 10_000);
      await limiter.consume([l], 1);
      const third = await limiter.consume([l], 1);
      assert.equal(third.states[0]!.remaining, 0);
      assert.equal(third.states[0]!.resetMs, 50_000, "reset counts down from the oldest request");
      const refused = await limiter.consume([l], 1);
      assert.equal(refused.admitted, false);
      assert.equal(refused.states[0]!.remaining, 0);
      assert.equal(refused.states[0]!.retryAfterMs, 50_000, "exactly when the oldest request leaves the window");
      // A millisecond early is still refused; retrying exactly when told works.
      at(clock.now + refused.states[0]!.retryAfterMs - 1);
      assert.equal((await limiter.consume([l], 1)).admitted, false);
      at(clock.now + 1);
      assert.equal((await limiter.consume([l], 1)).admitted, true);
    });

    it("does not count refused requests", async () => {
      at(3_000_000 * 60_000);
      const l = limitOf(bucket(), 2);
      await limiter.consume([l], 1);
      await limiter.consume([l], 1);
      for (let i = 0; i < 50; i++) assert.equal((await limiter.consume([l], 1)).admitted, false);
      // A minute later only the 2 admitted requests have left the window: the 50 refused ones never entered it.
      at(clock.now + 60_000);
      assert.equal((await limiter.consume([l], 1)).admitted, true);
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

    it("issue 11.3: capacity returns as each request leaves the sliding window, not all at once at a boundary", async () => {
      const start = 6_000_000 * 60_000 + 12_345;
      at(start);
      const l = limitOf(bucket(), 60);
      for (let i = 0; i < 30; i++) await limiter.consume([l], 1);
      at(start + 30_000);
      for (let i = 0; i < 30; i++) await limiter.consume([l], 1);
      assert.equal((await limiter.consume([l], 1)).admitted, false);
      // A millisecond before the first 30 are a minute old nothing is back; then exactly those 30 are.
      at(start + 59_999);
      assert.equal((await limiter.consume([l], 1)).admitted, false);
      at(start + 60_000);
      let admitted = 0;
      while ((await limiter.consume([l], 1)).admitted) admitted++;
      assert.equal(admitted, 30);
      // A minute after the last requests the whole budget is back.
      at(start + 150_000);
      admitted = 0;
      while ((await limiter.consume([l], 1)).admitted) admitted++;
      assert.equal(admitted, 60);
    });

    it("issue 11.3: a limit lowered or raised keeps the requests already counted", async () => {
      at(10_000_000 * 60_000);
      const b = bucket();
      for (let i = 0; i < 5; i++) assert.equal((await limiter.consume([limitOf(b, 2_000)], 1)).admitted, true);
      assert.equal((await limiter.consume([limitOf(b, 5)], 1)).admitted, false, "5 already counted under the old limit");
      assert.equal((await limiter.consume([limitOf(b, 2_000)], 1)).states[0]!.remaining, 1_994);
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
