import type { Command } from "commander";
import type { RedisInvalidation } from "../gateway/invalidation.ts";
import { DEPLOYMENT_ID, deploymentId } from "../limits/deployment.ts";
import type { RedisLimiter } from "../limits/redis.ts";
import { outboundPolicy } from "../upstream/outbound.ts";
import { type Io, UsageError } from "./io.ts";
import { DEFAULT_OWNER_EMAIL, type Instance, SANDBOX_DOMAIN, initInstance, isInitialised, openInstance } from "./setup.ts";

export function registerServe(program: Command, io: Io): void {
  program
    .command("serve")
    .description("start the keygate HTTP server (sets up an empty data directory first)")
    .option("--port <port>", "TCP port (0 picks a free one)", "8080")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--data-dir <dir>", "data directory (default: $KEYGATE_DATA_DIR or ./data)")
    .option("--database <url>", "PostgreSQL URL instead of the embedded SQLite (default: $KEYGATE_DATABASE_URL)")
    .option("--profile <profile>", "built-in profile name or path to a profile JSON file (default: vibecode, or the data directory's)")
    .option("--trust-proxy <addresses>", "comma-separated proxy addresses whose X-Forwarded-For is believed")
    .option("--public-url <url>", "base URL clients use, for self-descriptions (default: from each request)")
    .option("--redis <url>", "Redis shared by every keygate node: rate-limit counters and cache invalidation (default: $KEYGATE_REDIS_URL; none = this process only)")
    .option("--deployment-id <id>", "this deployment's name in Redis, so deployments sharing one Redis share nothing (default: $KEYGATE_DEPLOYMENT_ID, else derived from the server secret)")
    .option(
      "--allow-upstream <host|CIDR>",
      "a host name, IP address or CIDR range upstream URLs may point to although it is not public, e.g. 10.0.0.0/8 (repeatable; default: $KEYGATE_ALLOW_UPSTREAM, comma-separated)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .action(async (opts: { port: string; host: string; dataDir?: string; database?: string; profile?: string; trustProxy?: string; publicUrl?: string; redis?: string; deploymentId?: string; allowUpstream: string[] }) => {
      const port = Number(opts.port);
      if (!/^\d+$/.test(opts.port) || port > 65535) {
        throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `--port must be a whole number from 0 to 65535, not "${opts.port}"` }]);
      }
      const configuredDeployment = opts.deploymentId ?? process.env.KEYGATE_DEPLOYMENT_ID;
      if (configuredDeployment !== undefined && !DEPLOYMENT_ID.test(configuredDeployment)) {
        throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `--deployment-id must be 1 to 64 letters, digits, "-" or "_", not "${configuredDeployment}"` }]);
      }
      const allowUpstream = opts.allowUpstream.length > 0 ? opts.allowUpstream : (process.env.KEYGATE_ALLOW_UPSTREAM ?? "").split(",").map((s) => s.trim()).filter(Boolean);
      try {
        outboundPolicy(allowUpstream);
      } catch (e) {
        throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `--allow-upstream: ${(e as Error).message}` }]);
      }
      let instance: Instance;
      let firstStart: { managementKey: string | null } | undefined;
      if (isInitialised(opts)) instance = await openInstance(opts);
      else {
        const init = await initInstance({ ...opts, ownerEmail: DEFAULT_OWNER_EMAIL });
        instance = init.instance;
        firstStart = { managementKey: init.managementKey };
      }
      // Loaded here so that the other commands start without the HTTP stack.
      const { buildServer } = await import("../gateway/server.ts");
      const redisUrl = opts.redis ?? process.env.KEYGATE_REDIS_URL;
      let log: (message: string) => void = (message) => io.err(message);
      let shared: { limiter: RedisLimiter; invalidation: RedisInvalidation } | undefined;
      if (redisUrl) {
        const { RedisLimiter } = await import("../limits/redis.ts");
        const { RedisInvalidation } = await import("../gateway/invalidation.ts");
        const deployment = configuredDeployment ?? deploymentId(instance.kg.serverSecret);
        const limiter = new RedisLimiter({
          url: redisUrl,
          deployment,
          onModeChange: (mode, reason) =>
            log(mode === "redis" ? `Redis answers again: rate limits are shared (${reason})` : `Redis is unreachable (${reason}): serving with this node's own rate limits until it returns`),
        });
        shared = { limiter, invalidation: new RedisInvalidation(redisUrl, deployment) };
        await limiter.ready(3_000).catch(() => log(`Redis at ${redisUrl} does not answer yet: starting with this node's own rate limits`));
      }
      const app = buildServer({
        profile: instance.kg.profile,
        store: instance.kg.store,
        serverSecret: instance.kg.serverSecret,
        logger: true,
        trustProxy: opts.trustProxy?.split(",").map((s) => s.trim()).filter(Boolean),
        publicUrl: opts.publicUrl,
        allowUpstream,
        ...shared,
      });
      log = (message) => app.log.warn(message);
      // The store closes after the server: closing the server writes the usage it has collected.
      const close = () => app.close().then(() => instance.close());
      try {
        await app.listen({ port, host: opts.host });
      } catch (e) {
        io.err(`keygate: cannot listen on ${opts.host}:${port}: ${(e as Error).message}`);
        await close();
        io.exit(1);
      }
      const address = app.server.address();
      const bound = typeof address === "object" && address ? address.port : port;
      const url = `http://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${bound}`;
      if (firstStart) {
        io.out(`keygate set up ${instance.dataDir} with an owner account (${DEFAULT_OWNER_EMAIL}).`);
        if (firstStart.managementKey) {
          io.out(`Owner's management key (shown once, store it now): ${firstStart.managementKey}`);
          io.out(`Try it: curl -H "X-Api-Key: ${firstStart.managementKey}" ${url}/v1/me`);
          io.out(`A sandbox portal with demo data (${SANDBOX_DOMAIN}) is linked: create an API key on it with POST ${url}/v1/keys.`);
        }
      }
      io.out(`keygate listening on ${url} (profile ${instance.kg.profile.id}, data ${instance.dataDir})`);
      const stop = () => void close().then(() => io.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
