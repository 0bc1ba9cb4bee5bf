import { createHmac } from "node:crypto";
import { Type as T } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import type { Portal } from "../../dataplane/service.ts";
import { UpstreamError } from "../../upstream/bitrix24/index.ts";
import type { App, GatewayContext } from "../server.ts";

const CODES = ["PORTAL_NOT_LINKED", "BITRIX24_AUTHORIZATION_EXPIRED", "SANDBOX_UNREACHABLE", "BITRIX_ERROR", "BITRIX_ACCESS_DENIED", "BITRIX_UNAVAILABLE"];
/** Bitrix24's bot types (imbot.register TYPE) by keygate's names. */
const TYPES = { bot: "B", supervisor: "S", openline: "O" } as const;
type BotType = keyof typeof TYPES;

const Bot = T.Object({
  id: T.Integer(),
  code: T.String(),
  name: T.String(),
  openline: T.Boolean({ description: "Whether it serves Open Channels" }),
});
const BotId = T.Object({ id: T.String({ pattern: "^[1-9][0-9]{0,9}$", description: "The bot's id" }) });

/**
 * The CLIENT_ID keygate registers a portal's bots with. Bitrix24 wants one from bots made
 * through a webhook, and lets only that CLIENT_ID remove a bot or speak as it: derived from the
 * server secret and the portal, it is the same on every node and after every restart.
 */
export function botClientId(serverSecret: string, portalId: string): string {
  return createHmac("sha256", serverSecret).update(`keygate imbot client\u0000${portalId}`).digest("hex").slice(0, 32);
}

/** imbot.bot.list's answer (an object keyed by id, or a list) as bots. */
function botsOf(result: unknown): { id: number; code: string; name: string; openline: boolean }[] {
  const rows = Array.isArray(result) ? result : result !== null && typeof result === "object" ? Object.values(result) : [];
  return rows
    .filter((r): r is Record<string, unknown> => r !== null && typeof r === "object")
    .map((r) => ({ id: Number(r["ID"]), code: String(r["CODE"] ?? ""), name: String(r["NAME"] ?? ""), openline: r["OPENLINE"] === "Y" || r["OPENLINE"] === true }))
    .sort((a, b) => a.id - b.id);
}

/** Bitrix24's "no such bot" (BOT_ID_ERROR) as keygate's 404; anything else as it came. */
function botMissing(e: unknown, id: string): never {
  if (e instanceof UpstreamError && e.details.error === "BOT_ID_ERROR") throw new KeygateError("BOT_NOT_FOUND", { message: `No chatbot ${id} in the portal.`, param: "id" });
  throw e;
}

/**
 * Chatbots of the key's portal (scope imbot; docs/dataplane.md, "Chatbots"), through Bitrix24's
 * imbot.* methods on the portal's webhook (or the sandbox's). Verification has run: the scope,
 * the key type, the read-only block on writes.
 */
export function botRoutes(app: App, ctx: GatewayContext, portalOf: (request: FastifyRequest) => Portal): void {
  const { kg, envelope, responses } = ctx;
  const clientId = (request: FastifyRequest) => botClientId(kg.serverSecret, request.auth.key.record.portalId!);
  const schema = { tags: ["bots"] };

  app.get(
    "/v1/bots",
    { schema: { ...schema, operationId: "listBots", summary: "The portal's chatbots (imbot.bot.list)", response: responses({ data: T.Array(Bot), codes: CODES }) } },
    async (request) => envelope.ok(botsOf((await portalOf(request).call("imbot.bot.list", {})).result)),
  );

  app.post(
    "/v1/bots",
    {
      schema: {
        ...schema,
        operationId: "registerBot",
        summary: "Register a chatbot (imbot.register): {code, name, eventHandler, type?, workPosition?, color?}",
        body: T.Object(
          {
            code: T.String({ minLength: 1, maxLength: 50, pattern: "^[A-Za-z0-9_.-]+$", description: "Unique among the portal's bots: letters, digits, _ . -" }),
            name: T.String({ minLength: 1, maxLength: 100, pattern: "\\S" }),
            eventHandler: T.String({ maxLength: 2000, pattern: "^https?://\\S+$", description: "The URL Bitrix24 sends the bot's events to (messages, joins, removal)" }),
            type: T.Optional(T.Union([T.Literal("bot"), T.Literal("supervisor"), T.Literal("openline")], { description: "bot (default), supervisor (sees every message of its chats), openline (Open Channels)" })),
            workPosition: T.Optional(T.String({ maxLength: 100, description: "Shown as the bot's description" })),
            color: T.Optional(T.String({ maxLength: 20 })),
          },
          { additionalProperties: false },
        ),
        response: responses({ data: T.Object({ id: T.Integer(), code: T.String(), name: T.String(), type: T.String() }), status: 201, codes: [...CODES, "BOT_ALREADY_EXISTS"] }),
      },
    },
    async (request, reply) => {
      const b = request.body;
      const portal = portalOf(request);
      // Bitrix24 answers an existing code with that bot's id, as if it were new: keygate says so instead.
      const existing = botsOf((await portal.call("imbot.bot.list", {})).result).find((bot) => bot.code === b.code);
      if (existing !== undefined) throw new KeygateError("BOT_ALREADY_EXISTS", { message: `The portal has a chatbot with the code ${b.code} already.`, param: "code", details: { botId: existing.id } });
      const type: BotType = b.type ?? "bot";
      const r = await portal.call("imbot.register", {
        CODE: b.code,
        TYPE: TYPES[type],
        EVENT_HANDLER: b.eventHandler,
        CLIENT_ID: clientId(request),
        ...(type === "openline" ? { OPENLINE: "Y" } : {}),
        PROPERTIES: { NAME: b.name, ...(b.workPosition === undefined ? {} : { WORK_POSITION: b.workPosition }), ...(b.color === undefined ? {} : { COLOR: b.color }) },
      });
      return reply.code(201).send(envelope.ok({ id: Number(r.result), code: b.code, name: b.name, type }));
    },
  );

  app.delete(
    "/v1/bots/:id",
    {
      schema: {
        ...schema,
        operationId: "unregisterBot",
        summary: "Unregister a chatbot (imbot.unregister); its one-to-one chats go with it",
        params: BotId,
        response: responses({ data: T.Object({ id: T.Integer(), deleted: T.Literal(true) }), codes: [...CODES, "BOT_NOT_FOUND"] }),
      },
    },
    async (request) => {
      const { id } = request.params;
      await portalOf(request)
        .call("imbot.unregister", { BOT_ID: Number(id), CLIENT_ID: clientId(request) })
        .catch((e: unknown) => botMissing(e, id));
      return envelope.ok({ id: Number(id), deleted: true as const });
    },
  );

  app.post(
    "/v1/bots/:id/messages",
    {
      schema: {
        ...schema,
        operationId: "sendBotMessage",
        summary: "Send a message as the chatbot (imbot.message.add): {dialogId, message, system?}",
        params: BotId,
        body: T.Object(
          {
            dialogId: T.Union([T.String({ pattern: "^(chat)?[1-9][0-9]*$" }), T.Integer({ minimum: 1 })], { description: "A user's id, or chat<id> for a group chat" }),
            message: T.String({ minLength: 1, maxLength: 20_000, pattern: "\\S" }),
            system: T.Optional(T.Boolean({ description: "Shown as a system message" })),
          },
          { additionalProperties: false },
        ),
        response: responses({ data: T.Object({ id: T.Integer({ description: "The message's id" }) }), status: 201, codes: [...CODES, "BOT_NOT_FOUND"] }),
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const b = request.body;
      const r = await portalOf(request)
        .call("imbot.message.add", { BOT_ID: Number(id), DIALOG_ID: String(b.dialogId), MESSAGE: b.message, ...(b.system ? { SYSTEM: "Y" } : {}), CLIENT_ID: clientId(request) })
        .catch((e: unknown) => botMissing(e, id));
      return reply.code(201).send(envelope.ok({ id: Number(r.result) }));
    },
  );
}
