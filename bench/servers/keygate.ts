/**
 * keygate for the limits benchmark: `keygate serve` with the rate limiter chosen on the command
 * line, so that limits on and off run the same code but for the limiter.
 *
 *     node bench/servers/keygate.ts --data-dir <dir> --profile <name or file> --limits off|memory|redis [--redis <url>]
 *
 * It does what src/cli/serve.ts does — sets up an empty data directory on first start
 * (initInstance, as `keygate init`), opens the store, builds the real server with buildServer,
 * logger on, on 127.0.0.1 and a free port — except for the limiter:
 *
 *  - memory: buildServer's default MemoryLimiter (what `serve` runs without --redis);
 *  - redis:  a RedisLimiter and a RedisInvalidation on <url>, built as `serve --redis <url>` builds
 *            them (under the deployment id derived from the secret); it refuses to start if Redis does
 *            not answer (a degraded limiter would measure the in-memory fallback);
 *  - off:    a Limiter that admits every request without counting anything, reading nothing and
 *            keeping no state: `consume` answers with one shared, already resolved promise of
 *            {admitted: true, states: []}. With no states, responses carry no rate-limit headers.
 *            What remains of rate limiting is the gateway's own step around the limiter (the
 *            key's limit set, kept with the cached key).
 *
 * Prints the same banner lines as `serve` ("Owner's management key (…): …", "keygate listening on
 * http://…"); SIGTERM closes it.
 */
import { parseArgs } from "node:util";
import { DEFAULT_OWNER_EMAIL, type Instance, initInstance, isInitialised, issueOwnerCredentials, openInstance } from "../../src/cli/setup.ts";
import { buildServer } from "../../src/gateway/server.ts";
import { RedisInvalidation } from "../../src/gateway/invalidation.ts";
import type { Limiter, Outcome } from "../../src/limits/limiter.ts";
import { deploymentId } from "../../src/limits/deployment.ts";
import { RedisLimiter } from "../../src/limits/redis.ts";

const { values } = parseArgs({
  options: { "data-dir": { type: "string" }, profile: { type: "string" }, limits: { type: "string" }, redis: { type: "string" } },
});
const dataDir = values["data-dir"];
const mode = values.limits;
if (!dataDir || (mode !== "off" && mode !== "memory" && mode !== "redis") || (mode === "redis" && !values.redis)) {
  console.error("usage: node bench/servers/keygate.ts --data-dir <dir> [--profile <name or file>] --limits off|memory|redis [--redis <url>]");
  process.exit(2);
}

/** Admits everything, counts nothing. */
const ADMITTED: Promise<Outcome> = Promise.resolve({ admitted: true, states: [] });
const admitAll: Limiter = { mode: "off", consume: () => ADMITTED, close: async () => {} };

const opts = { dataDir, profile: values.profile };
let instance: Instance;
let managementKey: string | null = null;
if (isInitialised(opts)) instance = await openInstance(opts);
else {
  const init = await initInstance({ ...opts, ownerEmail: DEFAULT_OWNER_EMAIL });
  instance = init.instance;
  managementKey = (await issueOwnerCredentials(instance, init.ownerId, "http://127.0.0.1")).managementKey;
}

let shared: { limiter: Limiter; invalidation?: RedisInvalidation } | undefined;
if (mode === "off") shared = { limiter: admitAll };
else if (mode === "redis") {
  // The deployment id serve derives: other keygates on the same Redis (other people's test runs)
  // neither share this one's counters nor empty its caches in the middle of a run.
  const deployment = deploymentId(instance.kg.serverSecret);
  const limiter = new RedisLimiter({
    url: values.redis!,
    deployment,
    onModeChange: (m, reason) => console.error(m === "redis" ? `Redis answers again: rate limits are shared (${reason})` : `Redis is unreachable (${reason}): serving with this node's own rate limits until it returns`),
  });
  await limiter.ready(3_000);
  shared = { limiter, invalidation: new RedisInvalidation(values.redis!, deployment) };
}

const app = buildServer({ profile: instance.kg.profile, store: instance.kg.store, serverSecret: instance.kg.serverSecret, logger: true, ...shared });
await app.listen({ port: 0, host: "127.0.0.1" });
const address = app.server.address();
const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
if (managementKey) console.log(`Owner's management key (shown once, store it now): ${managementKey}`);
console.log(`keygate listening on ${url} (profile ${instance.kg.profile.id}, data ${instance.dataDir}, limits ${mode})`);
// The store closes after the server, which writes the usage it has collected as it closes.
const stop = () => void app.close().then(() => instance.close()).then(() => process.exit(0));
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
