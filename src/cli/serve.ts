import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import type { Command } from "commander";
import type { FastifyInstance } from "fastify";
import type { RedisInvalidation } from "../gateway/invalidation.ts";
import { DEPLOYMENT_ID, deploymentId } from "../limits/deployment.ts";
import type { RedisLimiter } from "../limits/redis.ts";
import { outboundPolicy } from "../upstream/outbound.ts";
import { sandboxRootWebhookUrl, sandboxWebhookToken, sandboxWebhookUrl } from "../upstream/sandbox/setup.ts";
import { type Io, UsageError } from "./io.ts";
import { DEFAULT_OWNER_EMAIL, type Instance, SANDBOX_DOMAIN, initInstance, isInitialised, issueOwnerCredentials, openInstance, passwordFrom, pendingOwner } from "./setup.ts";

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
    .option("--tls-cert <file>", "serve HTTPS with this certificate chain (PEM), on every port; needs --tls-key")
    .option("--tls-key <file>", "the private key (PEM) of --tls-cert")
    .option("--owner-password-file <file>", "first start: the owner's password, read from this file (default: $KEYGATE_OWNER_PASSWORD; neither: a one-time sign-in link is printed)")
    .option("--sandbox-port <port>", "also serve the sandbox portal at a host root on this port, /rest/<user id>/<token>/<method> as Bitrix24 does (0 picks a free one; default: off)")
    .action(async (opts: { port: string; host: string; dataDir?: string; database?: string; profile?: string; trustProxy?: string; publicUrl?: string; redis?: string; deploymentId?: string; allowUpstream: string[]; tlsCert?: string; tlsKey?: string; sandboxPort?: string; ownerPasswordFile?: string }) => {
      const port = portOption("--port", opts.port);
      const sandboxPort = opts.sandboxPort === undefined ? undefined : portOption("--sandbox-port", opts.sandboxPort);
      const tls = tlsOptions(opts.tlsCert, opts.tlsKey);
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
      if (isInitialised(opts)) instance = await openInstance(opts);
      else {
        const ownerPassword = passwordFrom(opts.ownerPasswordFile, "--owner-password-file", "KEYGATE_OWNER_PASSWORD");
        instance = (await initInstance({ ...opts, ownerEmail: DEFAULT_OWNER_EMAIL, ownerPassword })).instance;
      }
      // Loaded here so that the other commands start without the HTTP stack.
      const { CLIENT_LIMITS, buildServer } = await import("../gateway/server.ts");
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
        trustProxy: opts.trustProxy?.split(",").map((s) => s.trim()).filter(Boolean),
        publicUrl: opts.publicUrl,
        allowUpstream,
        tls,
        sandboxUrl,
        ...shared,
      });
      log = (message) => app.log.warn(message);
      // The store closes after the servers: closing the server writes the usage it has collected.
      const close = () => Promise.all([app.close(), sandbox?.close()]).then(() => instance.close());
      try {
        await app.listen({ port, host: opts.host });
      } catch (e) {
        io.err(`keygate: cannot listen on ${opts.host}:${port}: ${(e as Error).message}`);
        await close();
        io.exit(1);
      }
      const url = baseUrl(app.server.address(), port);
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
          }
        }
      }
      if (sandboxUrl !== undefined) io.out(`the sandbox portal listening on ${sandboxUrl} (Bitrix24 REST at /rest/<user id>/<token>/<method>)`);
      // Last: scripts wait for this line, so everything above is ready when it comes.
      io.out(`keygate listening on ${url} (profile ${instance.kg.profile.id}, data ${instance.dataDir})`);
      const stop = () => void close().then(() => io.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}

function portOption(flag: string, value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `${flag} must be a whole number from 0 to 65535, not "${value}"` }]);
  return port;
}

/** The certificate and key, read and checked now: a wrong file is a usage error at start, not a failed handshake later. */
function tlsOptions(certFile: string | undefined, keyFile: string | undefined): { cert: Buffer; key: Buffer } | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  const usage = (message: string) => new UsageError("USAGE", [{ scope: "", code: "USAGE", message }]);
  if (certFile === undefined || keyFile === undefined) throw usage("--tls-cert and --tls-key go together: give both");
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw usage(`${flag}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  const tls = { cert: read("--tls-cert", certFile), key: read("--tls-key", keyFile) };
  try {
    createSecureContext(tls);
  } catch (e) {
    throw usage(`--tls-cert/--tls-key: not a PEM certificate and its private key: ${(e as Error).message}`);
  }
  return tls;
}
