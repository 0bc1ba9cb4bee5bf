/**
 * Issue 11.3's property, checked with fast-check on a simulated clock, for every limiter and
 * several limit shapes: in any interval of length W at most N units are admitted (the bound of
 * logShape: N × 1.01 at most, N exactly up to EXACT_UP_TO), a client sending evenly at N per W is
 * never refused, and a client that waits what Retry-After or the reset says is admitted.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { type Limit, type Limiter, logShape } from "../../src/limits/limiter.ts";
import type { Clock } from "./contract.ts";

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;

interface Shape {
  name: string;
  limit: number;
  windowMs: number;
  /** fast-check runs per property: a large N costs many decisions a run. */
  runs: number;
}

const SHAPES: Shape[] = [
  { name: "1 per minute", limit: 1, windowMs: MINUTE, runs: 40 },
  { name: "2 per minute", limit: 2, windowMs: MINUTE, runs: 40 },
  { name: "10 per minute", limit: 10, windowMs: MINUTE, runs: 30 },
  { name: "300 per minute", limit: 300, windowMs: MINUTE, runs: 10 },
  { name: "1 per second", limit: 1, windowMs: SECOND, runs: 40 },
  { name: "2,000 per minute (grouped)", limit: 2_000, windowMs: MINUTE, runs: 3 },
  { name: "10,000 per day (Atender starter)", limit: 10_000, windowMs: DAY, runs: 2 },
];

/** The most units any interval of length W holds: intervals ending at an admission suffice. */
function busiestWindow(admitted: { at: number; cost: number }[], windowMs: number): number {
  let most = 0;
  let inWindow = 0;
  let first = 0;
  for (const a of admitted) {
    inWindow += a.cost;
    while (admitted[first]!.at <= a.at - windowMs) inWindow -= admitted[first++]!.cost;
    most = Math.max(most, inWindow);
  }
  return most;
}

export function limiterProperties(name: string, open: (clock: Clock) => Promise<Limiter>): void {
  describe(`limiter property (issue 11.3): ${name}`, () => {
    const clock: Clock = { now: 0 };
    let limiter: Limiter;
    // Each run starts on a fresh bucket, at a time of its own, after the previous run's.
    let epoch = 1_000 * DAY;
    const fresh = (shape: Shape): Limit => {
      epoch += 10 * DAY;
      clock.now = epoch;
      return { kind: "platform", bucket: `p:${randomBytes(6).toString("hex")}`, limit: shape.limit, windowMs: shape.windowMs, policy: "platform" };
    };
    before(async () => {
      limiter = await open(clock);
    });
    after(() => limiter.close());

    /** Requests at the gaps given (cost 1 mostly, some larger), until `total` units were offered. */
    const traffic = (shape: Shape) => {
      const mean = shape.windowMs / shape.limit;
      const maxCost = Math.max(1, Math.floor(shape.limit / 8));
      const request = fc.record({
        gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: Math.ceil(mean * 2) }), fc.integer({ min: 0, max: shape.windowMs })),
        cost: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: maxCost }) }),
      });
      return fc.array(request, { minLength: 1, maxLength: Math.min(400, shape.limit * 4 + 20), size: "max" });
    };

    for (const shape of SHAPES) {
      const { bound } = logShape(shape.limit);

      it(`${shape.name}: any interval of ${shape.windowMs / SECOND} s admits at most ${bound} units${bound > shape.limit ? ` (${shape.limit} + ${(((bound - shape.limit) / shape.limit) * 100).toFixed(2)} %)` : ""}, whatever the traffic`, async () => {
        await fc.assert(
          fc.asyncProperty(traffic(shape), async (requests) => {
            const l = fresh(shape);
            const admitted: { at: number; cost: number }[] = [];
            for (const r of requests) {
              clock.now += r.gap;
              if ((await limiter.consume([l], r.cost)).admitted) admitted.push({ at: clock.now, cost: r.cost });
            }
            assert.ok(busiestWindow(admitted, shape.windowMs) <= bound);
          }),
          { numRuns: shape.runs },
        );
      });

      it(`${shape.name}: a client sending faster than ${shape.limit} per ${shape.windowMs / SECOND} s, at random, gets at most ${bound} in any ${shape.windowMs / SECOND} s, and at least ${shape.limit} in its first`, async () => {
        // Thousands of decisions a run: up to 2,000 units (the day shape is left to the traffic above).
        if (shape.limit > 2_000) return;
        await fc.assert(
          fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 2 }), fc.integer({ min: 110, max: 300 }), async (seed, speed) => {
            const l = fresh(shape);
            const start = clock.now;
            const mean = (shape.windowMs * 100) / (shape.limit * speed);
            // A Park–Miller generator from the seed: gaps uniform in [0, 2 × mean].
            let x = seed;
            let sentFirst = 0;
            const admitted: { at: number; cost: number }[] = [];
            for (let k = 0; k < Math.ceil((shape.limit * speed * 2.5) / 100); k++) {
              x = (x * 48_271) % 2_147_483_647;
              clock.now += Math.floor((x / 2_147_483_647) * 2 * mean);
              if (clock.now < start + shape.windowMs) sentFirst++;
              if ((await limiter.consume([l], 1)).admitted) admitted.push({ at: clock.now, cost: 1 });
            }
            assert.ok(busiestWindow(admitted, shape.windowMs) <= bound);
            // Nothing is refused before the limit is reached.
            assert.equal(admitted.filter((a) => a.at < start + shape.windowMs).length, Math.min(shape.limit, sentFirst));
          }),
          { numRuns: Math.min(shape.runs, shape.limit > 1_000 ? 2 : 5) },
        );
      });

      it(`${shape.name}: a client sending evenly at ${shape.limit} per ${shape.windowMs / SECOND} s, or slower, is never refused`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.integer({ min: 0, max: shape.windowMs }), fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 100 })), async (phase, slower) => {
            const l = fresh(shape);
            clock.now += phase;
            const start = clock.now;
            // Request k at ⌊k × W × (1 + slower %) / N⌋: evenly, as integer milliseconds; over more than a window.
            const period = (shape.windowMs * (1 + slower / 100)) / shape.limit;
            const requests = Math.ceil(shape.limit * (shape.limit > 1_000 ? 1.1 : 2.5));
            for (let k = 0; k < requests; k++) {
              clock.now = start + Math.floor(k * period);
              const outcome = await limiter.consume([l], 1);
              assert.ok(outcome.admitted, `request ${k} at +${clock.now - start} ms refused`);
            }
          }),
          // Above EXACT_UP_TO one run is thousands of decisions.
          { numRuns: shape.limit > 1_000 ? 1 : shape.runs },
        );
      });

      it(`${shape.name}: waiting Retry-After (in milliseconds, or in whole seconds rounded up) or the reset of a spent limit admits; a millisecond less does not`, async () => {
        await fc.assert(
          fc.asyncProperty(traffic(shape), fc.integer({ min: Math.max(1, Math.floor(shape.limit / 200)), max: Math.max(1, Math.floor(shape.limit / 4)) }), fc.boolean(), async (requests, cost, wholeSeconds) => {
            const l = fresh(shape);
            for (const r of requests) {
              clock.now += r.gap;
              await limiter.consume([l], r.cost);
            }
            // Spend what is left, then ask once more: refused, and told when to come back.
            let outcome = await limiter.consume([l], cost);
            while (outcome.admitted) outcome = await limiter.consume([l], cost);
            const { retryAfterMs, resetMs } = outcome.states[0]!;
            assert.ok(retryAfterMs > 0 && retryAfterMs <= shape.windowMs, `retryAfterMs ${retryAfterMs}`);
            assert.ok(resetMs > 0 && resetMs <= retryAfterMs, `resetMs ${resetMs}, retryAfterMs ${retryAfterMs}`);
            const waitFor = wholeSeconds ? Math.ceil(retryAfterMs / SECOND) * SECOND : retryAfterMs;
            const back = clock.now;
            clock.now = back + retryAfterMs - 1;
            assert.equal((await limiter.peek!([l], cost)).admitted, false, "a millisecond before Retry-After");
            // The reset says when capacity starts to return: by then a request of cost 1 fits.
            clock.now = back + resetMs;
            assert.equal((await limiter.peek!([l], 1)).admitted, true, "a request of cost 1 after the reset");
            clock.now = back + waitFor;
            assert.equal((await limiter.consume([l], cost)).admitted, true, `after Retry-After (${waitFor} ms)`);
          }),
          { numRuns: shape.runs },
        );
      });
    }
  });
}
