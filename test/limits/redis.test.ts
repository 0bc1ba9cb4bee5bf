import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { describe, it } from "node:test";
import type { Limit } from "../../src/limits/limiter.ts";
import { RedisLimiter } from "../../src/limits/redis.ts";
import { freePort, probeRedis, redisUrl, requireService, startRedis } from "../support/services.ts";
import { limiterContract } from "./contract.ts";
import { limiterProperties } from "./property.ts";

const url = redisUrl();

if (await requireService("limiter: redis", `Redis at ${url}`, () => probeRedis(url))) {
  limiterContract("redis", async (clock) => {
    const limiter = new RedisLimiter({ url, deployment: `test-${randomBytes(4).toString("hex")}`, now: () => clock.now });
    await limiter.ready();
    return limiter;
  });

  // A deployment id of the run's own: its keys share no budget with anyone else's on this Redis.
  limiterProperties("redis", async (clock) => {
    const limiter = new RedisLimiter({ url, deployment: `test-${randomBytes(4).toString("hex")}`, now: () => clock.now });
    await limiter.ready();
    return limiter;
  });

  describe("limiter: redis shared by nodes", () => {
    it("two limiters on one Redis share one budget", async () => {
      const deployment = `test-${randomBytes(4).toString("hex")}`;
      const a = new RedisLimiter({ url, deployment });
      const b = new RedisLimiter({ url, deployment });
      try {
        await Promise.all([a.ready(), b.ready()]);
        const l: Limit = { kind: "key", bucket: "shared", limit: 10, windowMs: 60_000, policy: "key" };
        const outcomes = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).consume([l], 1)));
        assert.equal(outcomes.filter((o) => o.admitted).length, 10);
        assert.equal(a.mode, "redis");
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe("limiter: redis outage", () => {
    it("keeps serving with local limits while Redis is down, says so, and shares again when it returns", async () => {
      const port = await freePort();
      let server = await startRedis(port);
      const modes: string[] = [];
      const limiter = new RedisLimiter({ url: `redis://127.0.0.1:${port}`, deployment: "outage", onModeChange: (mode) => modes.push(mode) });
      try {
        await limiter.ready();
        const l: Limit = { kind: "platform", bucket: "outage", limit: 3, windowMs: 60_000, policy: "platform" };
        assert.equal((await limiter.consume([l], 1)).admitted, true);
        assert.equal(limiter.mode, "redis");

        server.kill("SIGKILL");
        await once(server, "exit");
        // Requests keep being decided, now by the local fallback.
        const during = await Promise.all([limiter.consume([l], 1), limiter.consume([l], 1), limiter.consume([l], 1), limiter.consume([l], 1)]);
        assert.equal(limiter.mode, "redis-degraded");
        assert.equal(during.filter((o) => o.admitted).length, 3, "the local limit holds while degraded");

        server = await startRedis(port);
        await limiter.ready(10_000);
        assert.equal((await limiter.consume([l], 1)).admitted, true);
        assert.equal(limiter.mode, "redis");
        assert.deepEqual(modes.slice(-2), ["redis-degraded", "redis"]);
      } finally {
        await limiter.close();
        server.kill("SIGKILL");
      }
    });
  });
}
