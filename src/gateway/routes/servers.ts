import { randomUUID } from "node:crypto";
import { Type as T } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import type { ServerChecks } from "../../infra/reachability.ts";
import { type Server, createServer, deleteServer, getServer, listServersFor } from "../../store/servers.ts";
import type { App, GatewayContext } from "../server.ts";

const ServerView = T.Object({
  id: T.String(),
  name: T.String(),
  url: T.String({ description: "The app server's own URL, where keygate reaches it" }),
  status: T.Union([T.Literal("pending"), T.Literal("running"), T.Literal("error")], {
    description: "pending: not checked yet; running: the last check reached it; error: the last check did not",
  }),
  blackholeStatus: T.Union([T.Literal("CONNECTED"), T.Literal("UNREACHABLE")], { description: "CONNECTED while keygate reaches it (checked in the background), UNREACHABLE otherwise" }),
  lastCheckedAt: T.Union([T.String(), T.Null()]),
  appUrl: T.Union([T.String(), T.Null()], { description: "The app's public URL on keygate's app runtime, on an origin of its own; null when the runtime is off (no serve --apps-port; docs/apps.md)" }),
  keyId: T.String({ description: "The key that registered it" }),
  portalId: T.String(),
  createdAt: T.String(),
});
const ServerId = T.Object({ id: T.String({ minLength: 1, maxLength: 100 }) });

const iso = (ms: number) => new Date(ms).toISOString();

function view(s: Server, appUrl: string | null) {
  return {
    id: s.id,
    name: s.name,
    url: s.url,
    status: s.checkedAt === null ? ("pending" as const) : s.blackholeStatus === "CONNECTED" ? ("running" as const) : ("error" as const),
    blackholeStatus: s.blackholeStatus,
    lastCheckedAt: s.checkedAt === null ? null : iso(s.checkedAt),
    appUrl,
    keyId: s.keyId,
    portalId: s.portalId,
    createdAt: iso(s.createdAt),
  };
}

/**
 * Servers (scope vibe:infra; docs/servers.md): the user's own app servers keygate fronts.
 * Verification has run: the scope, the key type, and, for POST, an authorization key's session
 * (401 UNAUTHENTICATED without one, seed 003). A server belongs to the key that registered it and
 * to that key's user: the session's user for an authorization key, else the key's owner.
 */
export function serverRoutes(app: App, ctx: GatewayContext, checks: ServerChecks): void {
  const { kg, envelope, responses } = ctx;
  const viewOf = (s: Server) => view(s, ctx.appUrl(s.id));
  const schema = { tags: ["servers"] };
  const who = (request: FastifyRequest) => {
    const record = request.auth.key.record;
    return { keyId: record.id, userId: request.auth.appSession?.userId ?? record.ownerId, portalId: record.portalId! };
  };
  /** The server, when this key sees it; otherwise 404, whether or not it exists. */
  const visible = async (request: FastifyRequest, id: string): Promise<Server> => {
    const w = who(request);
    const s = await getServer(kg.store, id);
    if (s === undefined || !(s.keyId === w.keyId || (s.userId === w.userId && s.portalId === w.portalId))) throw new KeygateError("SERVER_NOT_FOUND", { param: "id" });
    return s;
  };

  app.get(
    "/v1/infra/servers",
    { schema: { ...schema, operationId: "listServers", summary: "The servers this key sees: registered with it, or its user's on its portal", response: responses({ data: T.Array(ServerView) }) } },
    async (request) => envelope.ok((await listServersFor(kg.store, who(request))).map(viewOf)),
  );

  app.post(
    "/v1/infra/servers",
    {
      schema: {
        ...schema,
        operationId: "createServer",
        summary: "Register an app server keygate fronts: {name, url}; an authorization key needs its session",
        body: T.Object(
          {
            name: T.String({ minLength: 1, maxLength: 100, pattern: "\\S" }),
            url: T.String({ minLength: 1, maxLength: 2000, description: "An absolute http(s) URL under the outbound rules: a public address, or one the operator allows (serve --allow-upstream)" }),
          },
          { additionalProperties: false },
        ),
        response: responses({ data: ServerView, status: 201, codes: ["UNAUTHENTICATED"] }),
      },
    },
    async (request, reply) => {
      const { name, url } = request.body;
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new KeygateError("VALIDATION_ERROR", { message: "url must be an absolute http(s) URL", param: "url" });
      }
      if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new KeygateError("VALIDATION_ERROR", { message: "url must be an http(s) URL", param: "url" });
      if (parsed.hash !== "") throw new KeygateError("VALIDATION_ERROR", { message: "url must not carry a #fragment", param: "url" });
      const problem = await kg.outbound.problem(parsed);
      if (problem !== undefined) throw new KeygateError("VALIDATION_ERROR", { message: `url ${problem}`, param: "url" });
      const w = who(request);
      const server: Server = { id: randomUUID(), name: name.trim(), url: parsed.toString(), ...w, blackholeStatus: "UNREACHABLE", checkedAt: null, createdAt: kg.now() };
      await createServer(kg.store, server);
      checks.checkSoon(server);
      return reply.code(201).send(envelope.ok(viewOf(server)));
    },
  );

  app.get(
    "/v1/infra/servers/:id",
    {
      schema: { ...schema, operationId: "getServer", summary: "One server: status, and whether keygate reaches it (blackholeStatus)", params: ServerId, response: responses({ data: ServerView, codes: ["SERVER_NOT_FOUND"] }) },
    },
    async (request) => envelope.ok(viewOf(await visible(request, request.params.id))),
  );

  app.delete(
    "/v1/infra/servers/:id",
    {
      schema: {
        ...schema,
        operationId: "deleteServer",
        summary: "Delete a server: keygate stops fronting it (its key can be deleted once it has no servers)",
        params: ServerId,
        response: responses({ data: T.Object({ id: T.String(), deleted: T.Literal(true) }), codes: ["SERVER_NOT_FOUND"] }),
      },
    },
    async (request) => {
      const s = await visible(request, request.params.id);
      if (!(await deleteServer(kg.store, s))) throw new KeygateError("SERVER_NOT_FOUND", { param: "id" });
      return envelope.ok({ id: s.id, deleted: true as const });
    },
  );
}
