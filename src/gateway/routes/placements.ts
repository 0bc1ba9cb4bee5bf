import { Type as T } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import type { Portal } from "../../dataplane/service.ts";
import { UpstreamError } from "../../upstream/bitrix24/index.ts";
import { placementHandlerUrl } from "../../apps/placement-handler.ts";
import { type Server, listServersFor } from "../../store/servers.ts";
import type { App, GatewayContext } from "../server.ts";

const CODES = ["PORTAL_NOT_LINKED", "BITRIX24_AUTHORIZATION_EXPIRED", "BITRIX_ERROR", "BITRIX_ACCESS_DENIED", "BITRIX_UNAVAILABLE"];

const PlacementCode = T.String({
  minLength: 1,
  maxLength: 100,
  pattern: "^[A-Za-z][A-Za-z0-9_]*$",
  description: "A place of the portal (GET /v1/placements/available), e.g. LEFT_MENU, CRM_DEAL_DETAIL_TAB; case does not matter",
});
const handlerUrl = (description: string) => T.String({ maxLength: 2000, pattern: "^https?://\\S+$", description });

const Binding = T.Object({
  placement: T.String(),
  handler: T.String(),
  title: T.String(),
  description: T.String(),
  userId: T.Integer({ description: "The one user it is shown to; 0: every user" }),
  options: T.Record(T.String(), T.Unknown(), { description: "The place's options given at binding" }),
});
type Binding = typeof Binding.static;

/** placement.get's answer as bindings; PHP sends an empty options object as []. */
function bindingsOf(result: unknown): Binding[] {
  const rows = Array.isArray(result) ? result : [];
  return rows
    .filter((r): r is Record<string, unknown> => r !== null && typeof r === "object")
    .map((r) => {
      const options = r["options"];
      return {
        placement: String(r["placement"] ?? ""),
        handler: String(r["handler"] ?? ""),
        title: String(r["title"] ?? ""),
        description: String(r["description"] ?? ""),
        userId: Number(r["userId"] ?? 0) || 0,
        options: options !== null && typeof options === "object" && !Array.isArray(options) ? (options as Record<string, unknown>) : {},
      };
    });
}

/** Bitrix24 naming PLACEMENT at fault (an unknown place) as keygate's 400 on the request's field. */
function placementRefused(e: unknown): never {
  if (e instanceof UpstreamError && e.code === "VALIDATION_ERROR" && e.param?.toUpperCase() === "PLACEMENT") {
    throw new KeygateError("VALIDATION_ERROR", { message: `placement: ${e.details.error_description ?? "not a place of this portal"}`, param: "placement", details: e.details as unknown as Record<string, unknown> });
  }
  throw e;
}

export function placementRoutes(app: App, ctx: GatewayContext, portalOf: (request: FastifyRequest) => Portal): void {
  const { envelope, responses } = ctx;
  /** keygate's base URL as Bitrix24 reaches it: the public URL, or where this request was sent. */
  const base = (request: FastifyRequest) => ctx.publicUrl ?? `${ctx.client.protocol(request.raw)}://${ctx.client.host(request.raw)}`;
  /** The server keygate's handler opens when bind names no handler: serverId, or the key's only one (docs/placements.md). */
  const defaultServer = async (request: FastifyRequest, serverId: string | undefined): Promise<Server> => {
    const record = request.auth.key.record;
    const own = (await listServersFor(ctx.kg.store, { keyId: record.id, userId: request.auth.appSession?.userId ?? record.ownerId, portalId: record.portalId! })).filter((s) => s.keyId === record.id);
    if (serverId !== undefined) {
      const named = own.find((s) => s.id === serverId);
      if (named === undefined) throw new KeygateError("SERVER_NOT_FOUND", { message: "serverId names no server registered with this key.", param: "serverId" });
      return named;
    }
    if (own.length === 1) return own[0]!;
    if (own.length === 0) {
      throw new KeygateError("VALIDATION_ERROR", { message: "handler: the key has no server for keygate's placement handler to open; register the app's server (POST /v1/infra/servers) or pass handler", param: "handler" });
    }
    throw new KeygateError("VALIDATION_ERROR", { message: `serverId: the key has ${own.length} servers; name the one to open (GET /v1/infra/servers)`, param: "serverId", details: { servers: own.map((s) => s.id) } });
  };
  const schema = { tags: ["placements"] };

  app.get(
    "/v1/placements/available",
    {
      schema: {
        ...schema,
        operationId: "listAvailablePlacements",
        summary: "The places of the portal the app can be embedded in (placement.list)",
        querystring: T.Object({ scope: T.Optional(T.String({ minLength: 1, maxLength: 50, pattern: "^[a-z_]+$", description: "Only the places of this Bitrix24 scope (e.g. crm)" })) }, { additionalProperties: false }),
        response: responses({ data: T.Array(T.String()), codes: CODES }),
      },
    },
    async (request) => {
      const { scope } = request.query;
      const r = await portalOf(request).call("placement.list", scope === undefined ? {} : { SCOPE: scope });
      return envelope.ok(Array.isArray(r.result) ? r.result.map(String) : []);
    },
  );

  app.get(
    "/v1/placements",
    { schema: { ...schema, operationId: "listPlacements", summary: "The places the app is bound to, with their handlers (placement.get)", response: responses({ data: T.Array(Binding), codes: CODES }) } },
    async (request) => envelope.ok(bindingsOf((await portalOf(request).call("placement.get", {})).result)),
  );

  app.post(
    "/v1/placements/bind",
    {
      schema: {
        ...schema,
        operationId: "bindPlacement",
        summary: "Embed the app in a place of the portal (placement.bind): {placement, title, handler?, serverId?, description?}; without handler, keygate's placement handler opens the app's server",
        body: T.Object(
          {
            placement: PlacementCode,
            title: T.String({ minLength: 1, maxLength: 255, pattern: "\\S", description: "Shown in the place (the menu item, the tab)" }),
            handler: T.Optional(handlerUrl("The URL Bitrix24 posts to when a user opens the app there; default: keygate's placement handler for the app's server (serverId), which opens the app on keygate's app runtime")),
            serverId: T.Optional(T.String({ minLength: 1, maxLength: 100, description: "Without handler: the server (app) keygate's handler opens, one registered with this key; default: the key's only server" })),
            description: T.Optional(T.String({ maxLength: 1000 })),
          },
          { additionalProperties: false },
        ),
        response: responses({ data: T.Object({ placement: T.String(), handler: T.String(), title: T.String() }), status: 201, codes: [...CODES, "PLACEMENT_ALREADY_BOUND", "SERVER_NOT_FOUND"] }),
      },
    },
    async (request, reply) => {
      const b = request.body;
      if (b.handler !== undefined && b.serverId !== undefined) throw new KeygateError("VALIDATION_ERROR", { message: "serverId: give handler or serverId, not both (serverId picks keygate's handler)", param: "serverId" });
      const placement = b.placement.toUpperCase();
      const handler = b.handler ?? placementHandlerUrl(base(request), (await defaultServer(request, b.serverId)).id);
      await portalOf(request)
        .call("placement.bind", { PLACEMENT: placement, HANDLER: handler, TITLE: b.title, ...(b.description === undefined ? {} : { DESCRIPTION: b.description }) })
        .catch((e: unknown) => {
          if (e instanceof UpstreamError && e.details.error === "ERROR_HANDLER_ALREADY_EXIST") {
            throw new KeygateError("PLACEMENT_ALREADY_BOUND", { message: `The app is bound to ${placement} with the handler ${handler} already.`, param: "placement" });
          }
          return placementRefused(e);
        });
      return reply.code(201).send(envelope.ok({ placement, handler, title: b.title }));
    },
  );

  app.post(
    "/v1/placements/unbind",
    {
      schema: {
        ...schema,
        operationId: "unbindPlacement",
        summary: "Remove the app from a place (placement.unbind): {placement, handler?}; without handler, every handler of the app there",
        body: T.Object({ placement: PlacementCode, handler: T.Optional(handlerUrl("Only this handler; default: every handler of the app in the place")) }, { additionalProperties: false }),
        response: responses({ data: T.Object({ placement: T.String(), unbound: T.Array(Binding, { description: "The bindings removed" }) }), codes: [...CODES, "PLACEMENT_NOT_BOUND"] }),
      },
    },
    async (request) => {
      const b = request.body;
      const placement = b.placement.toUpperCase();
      const portal = portalOf(request);
      // placement.unbind answers a count Bitrix24 makes up of finds and removals: what goes is read first.
      const bound = bindingsOf((await portal.call("placement.get", {})).result).filter((x) => x.placement === placement && (b.handler === undefined || x.handler === b.handler));
      if (bound.length === 0) throw new KeygateError("PLACEMENT_NOT_BOUND", { message: `The app is not bound to ${placement}${b.handler === undefined ? "" : ` with the handler ${b.handler}`}.`, param: "placement" });
      await portal.call("placement.unbind", { PLACEMENT: placement, ...(b.handler === undefined ? {} : { HANDLER: b.handler }) }).catch(placementRefused);
      return envelope.ok({ placement, unbound: bound });
    },
  );
}
