import type { Command } from "commander";
import type { FastifyInstance } from "fastify";
import type { RedisInvalidation } from "../gateway/invalidation.ts";
import { deploymentId } from "../limits/deployment.ts";
import type { RedisLimiter } from "../limits/redis.ts";
import { sandboxRootWebhookUrl, sandboxWebhookToken, sandboxWebhookUrl } from "../upstream/sandbox/setup.ts";
import type { Io } from "./io.ts";
import { type ServeFlags, serveConfig, serveOptions } from "./serve-options.ts";
import { DEFAULT_OWNER_EMAIL, type Instance, SANDBOX_DOMAIN, initInstance, isInitialised, issueOwnerCredentials, openInstance, passwordFrom, pendingOwner } from "./setup.ts";

export function registerServe(program: Command, io: Io): void {
  const serve = program.command("serve").description("start the keygate HTTP server (sets up an empty data directory first)");
  // Every flag with its environment variable, read and checked in one place (serve-options.ts).
  for (const o of serveOptions()) serve.addOption(o);
  serve
    .action(async (flags: ServeFlags) => {
      const opts = serveConfig(flags);
      const { port, sandboxPort, tls, allowUpstream, identityKeyGeneration } = opts;
      const configuredDeployment = opts.deploymentId;
      let instance: Instance;
      if (isInitialised(opts)) instance = await openInstance(opts);
      else {
        const ownerPassword = passwordFrom(opts.ownerPasswordFile, "--owner-password-file", "KEYGATE_OWNER_PASSWORD");
        instance = (await initInstance({ ...opts, ownerEmail: DEFAULT_OWNER_EMAIL, ownerPassword })).instance;
      }
      // Loaded here so that the other commands start without the HTTP stack.
      const { CLIENT_LIMITS, buildServer } = await import("../gateway/server.ts");
      const redisUrl = opts.redis;
      let log: (message: string) => void = (message) => io.err(message);
      let shared: { limiter: RedisLimiter; invalidation: RedisInvalidation } | undefined;
      if (redisUrl) {
        const { RedisLimiter } = await import("../limits/redis.ts");
        const { RedisInvalidation } = await import("../gateway/invalidation.ts");
        const deployment = configuredDeployment ?? deploymentId(instance.kg.serverSecret);
        const limiter = new RedisLimiter({
          url: redisUrl,
          deployment,
          maxLogs: opts.limiterSize,
          onModeChange: (mode, reason) =>
            log(mode === "redis" ? `Redis answers again: rate limits are shared (${reason})` : `Redis is unreachable (${reason}): serving with this node's own rate limits until it returns`),
        });
        shared = { limiter, invalidation: new RedisInvalidation(redisUrl, deployment) };
        await limiter.ready(3_000).catch(() => log(`Redis at ${redisUrl} does not answer yet: starting with this node's own rate limits`));
      }
      const baseUrl = (address: ReturnType<typeof app.server.address>, fallback: number) =>
        `${tls ? "https" : "http"}://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${typeof address === "object" && address ? address.port : fallback}`;
      // The sandbox listens first: the gateway shows webhook URLs on it.
      let sandbox: FastifyInstance | undefined;
      let sandboxUrl: string | undefined;
      if (sandboxPort !== undefined) {
        const { sandboxServer } = await import("../upstream/sandbox/server.ts");
        sandbox = sandboxServer({ store: instance.kg.store, tls, logger: true, clientLimits: CLIENT_LIMITS });
        try {
          await sandbox.listen({ port: sandboxPort, host: opts.host });
        } catch (e) {
          io.err(`keygate: cannot listen on ${opts.host}:${sandboxPort} (--sandbox-port): ${(e as Error).message}`);
          await sandbox.close();
          await instance.close();
          return io.exit(1);
        }
        sandboxUrl = baseUrl(sandbox.server.address(), sandboxPort);
      }
      const app = buildServer({
        profile: instance.kg.profile,
        store: instance.kg.store,
        serverSecret: instance.kg.serverSecret,
        logger: true,
        logLevel: opts.logLevel,
        trustProxy: opts.trustProxy,
        publicUrl: opts.publicUrl,
        cacheSize: opts.keyCacheSize,
        limiterSize: opts.limiterSize,
        ipv6Prefix: opts.ipv6Prefix,
        allowUpstream,
        tls,
        sandboxUrl,
        identityKeyGeneration,
        platform: opts.platform,
        mail: opts.mail,
        storageMaxObjectBytes: opts.storageMaxObjectBytes,
        apps: opts.appsPort === undefined ? undefined : { port: opts.appsPort, domain: opts.appsDomain },
        bitrix24TokenUrl: opts.bitrix24TokenUrl,
        ...shared,
      });
      log = (message) => app.log.warn(message);
      // The store closes after the servers: closing the server writes the usage it has collected.
      // Bitrix24's connection pools are shared by the process: closed once both servers are.
      const { closeBitrix24Pools } = await import("../upstream/bitrix24/index.ts");
      const close = () => Promise.all([app.close(), sandbox?.close()]).then(() => Promise.all([instance.close(), closeBitrix24Pools()]));
      try {
        await app.listen({ port, host: opts.host });
      } catch (e) {
        io.err(`keygate: cannot listen on ${opts.host}:${port}: ${(e as Error).message}`);
        await close();
        io.exit(1);
      }
      const url = baseUrl(app.server.address(), port);
      // The app runtime on its own port: users' apps never share keygate's origin (docs/apps.md).
      const runtime = app.appRuntime;
      let appsLine: string | undefined;
      if (runtime !== undefined && opts.appsPort !== undefined) {
        try {
          await new Promise<void>((resolve, reject) => runtime.server.once("error", reject).listen(opts.appsPort, opts.host, () => resolve()));
        } catch (e) {
          io.err(`keygate: cannot listen on ${opts.host}:${opts.appsPort} (--apps-port): ${(e as Error).message}`);
          await close();
          return io.exit(1);
        }
        appsLine = `the app runtime listening on ${baseUrl(runtime.server.address(), opts.appsPort)}: each app at ${runtime.appUrl("<serverId>")}`;
      }
      // The owner's once-shown credentials are made now that they can be shown: a first start that
      // could not listen left them to this one (docs/accounts.md, "First run").
      const pending = pendingOwner(instance);
      if (pending !== undefined) {
        const firstStart = await issueOwnerCredentials(instance, pending, opts.publicUrl ?? url);
        const owner = await instance.kg.store.getUser(pending);
        io.out(`keygate set up ${instance.dataDir} with an owner account (${owner?.email ?? DEFAULT_OWNER_EMAIL}).`);
        if (firstStart.signInUrl) io.out(`Sign in to the dashboard: set the owner's password at this one-time link (valid 24 hours): ${firstStart.signInUrl}`);
        if (firstStart.managementKey) {
          io.out(`Owner's management key (shown once, store it now): ${firstStart.managementKey}`);
          io.out(`Try it: curl -H "X-Api-Key: ${firstStart.managementKey}" ${url}/v1/me`);
          const portal = (await instance.kg.store.listPortalsForUser(pending)).find((p) => p.domain === SANDBOX_DOMAIN);
          if (portal) {
            io.out(`A sandbox portal with demo data (${SANDBOX_DOMAIN}) is linked: create an API key on it with POST ${url}/v1/keys.`);
            const token = sandboxWebhookToken(instance.kg.serverSecret, portal.id);
            const webhook = sandboxUrl === undefined ? sandboxWebhookUrl(url, portal.id, token) : sandboxRootWebhookUrl(sandboxUrl, token);
            // A secret like the management key: it reaches the sandbox's data as its administrator.
            io.out(`The sandbox's incoming webhook, for Bitrix24 clients (keep it secret): ${webhook}`);
            io.out(`Try it: curl ${tls ? "-k " : ""}"${webhook}crm.deal.list?select[]=ID&select[]=TITLE"`);
            io.out(`Apps embedded in it (POST /v1/placements/bind) open as Bitrix24 opens them from ${url}/sandbox/${portal.id}/placements, signed in to the dashboard (docs/placements.md).`);
          }
        }
      }
      // Before the line scripts wait for: a script that signals on seeing it must find the handler.
      // Stop accepting, let in-flight requests finish until the drain deadline (then cut their
      // connections), write the usage, close Redis, the upstream pools and the store, exit. A
      // second signal exits at once.
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          app.log.warn(`${signal} again: exiting now`);
          return io.exit(1);
        }
        stopping = true;
        app.log.info(`${signal}: draining for up to ${opts.drainSeconds} s`);
        const deadline = setTimeout(() => {
          app.log.warn("the drain deadline passed: closing the connections still open");
          app.server.closeAllConnections();
          sandbox?.server.closeAllConnections();
          app.appRuntime?.server.closeAllConnections();
        }, opts.drainSeconds * 1000);
        deadline.unref();
        void close().then(() => io.exit(0));
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      if (appsLine !== undefined) io.out(appsLine);
      if (sandboxUrl !== undefined) io.out(`the sandbox portal listening on ${sandboxUrl} (Bitrix24 REST at /rest/<user id>/<token>/<method>)`);
      // Last: scripts wait for this line, so everything above is ready when it comes.
      io.out(`keygate listening on ${url} (profile ${instance.kg.profile.id}, data ${instance.dataDir})`);
    });
}
