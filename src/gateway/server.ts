import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, LogController } from "fastify";
import type { Profile } from "../core/profile/profile.ts";

export interface ServerOptions {
  profile: Profile;
  /** Structured logs (pino) to stdout; off in tests. */
  logger?: boolean;
}

/** The keygate HTTP server. Every response carries X-Request-Id. */
export function buildServer(options: ServerOptions): FastifyInstance {
  const app = Fastify({
    logger: options.logger ?? false,
    // Per-request log lines would cost the hot path; request accounting records requests instead.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => `req_${randomUUID()}`,
  });
  app.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
  app.get("/healthz", async () => ({ status: "ok", profile: options.profile.id }));
  return app;
}
