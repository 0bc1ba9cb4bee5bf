/**
 * The sandbox at a host root: a listener of its own (`keygate serve --sandbox-port`) serving every
 * sandbox portal's webhooks where Bitrix24 serves them, <scheme>://<host>:<port>/rest/<user id>/<token>/<method>,
 * the form official clients require (@bitrix24/b24jssdk's B24Hook.fromWebhookUrl wants https and
 * /rest/ at the root). HTTPS when given a certificate.
 *
 *     const sandbox = sandboxServer({ store, tls: { cert, key } });
 *     await sandbox.listen({ port: 8443 });
 */
import { createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import Fastify, { type FastifyInstance } from "fastify";
import type { ClientLimits } from "../../gateway/server.ts";
import type { Store } from "../../store/store.ts";
import { sandboxRoutes } from "./routes.ts";

export interface SandboxServerOptions {
  store: Store;
  /** Serve HTTPS with this certificate chain and private key (PEM); default: plain HTTP. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Structured logs (warn and above: the URLs hold webhook tokens). */
  logger?: boolean;
  /** Timeouts and connection cap, as the gateway's (CLIENT_LIMITS); default: Node's. */
  clientLimits?: ClientLimits;
  now?: () => number;
}

export function sandboxServer(options: SandboxServerOptions): FastifyInstance {
  const { tls, clientLimits: limits } = options;
  const app = Fastify({
    logger: options.logger ?? false,
    serverFactory: (handler) => {
      const timeouts = limits && { requestTimeout: limits.requestTimeoutMs, headersTimeout: limits.headersTimeoutMs, keepAliveTimeout: limits.keepAliveTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs };
      const server = tls ? createHttpsServer({ ...timeouts, ...tls }, handler) : createServer({ ...timeouts }, handler);
      if (limits) {
        server.maxConnections = limits.maxConnections;
        server.setTimeout(limits.idleTimeoutMs);
      }
      return server;
    },
  });
  app.register(sandboxRoutes, { store: options.store, now: options.now, root: true });
  return app;
}
