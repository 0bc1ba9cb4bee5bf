/**
 * Chatbots (scope imbot), as Bitrix24's imbot.* methods of the first API: imbot.register (answers
 * the new bot's id), imbot.bot.list (the portal's bots, keyed by id: {ID, NAME, CODE, OPENLINE}),
 * imbot.unregister (true), imbot.message.add (the message's id). Bots and what they send are kept
 * in the store (entity types imbot, imbot.message), to be looked at, not delivered anywhere.
 *
 * Called through a webhook, Bitrix24 ties a bot to the CLIENT_ID it was registered with: another
 * CLIENT_ID may not unregister it nor speak as it (APP_ID_ERROR). Registering a code the same
 * CLIENT_ID registered already answers that bot's id.
 */
import { ENTITY, type MethodContext, type MethodDef } from "./context.ts";
import { BitrixFault } from "./fault.ts";
import { isRecord, isoTime, toFlag, toInt, toText } from "./values.ts";

const TYPES = new Set(["B", "O", "S", "H"]);
const botNotFound = () => new BitrixFault(400, "BOT_ID_ERROR", "Bot not found");
const clientOf = (params: Record<string, unknown>) => (toText(params["CLIENT_ID"]) ?? "").trim();

/** The bot the call names (BOT_ID; omitted: the CLIENT_ID's only bot), which must be that CLIENT_ID's. */
async function botOf(ctx: MethodContext, params: Record<string, unknown>) {
  const client = clientOf(params);
  const id = toInt(params["BOT_ID"]);
  if (id === undefined && (params["BOT_ID"] === undefined || params["BOT_ID"] === "")) {
    const own = (await ctx.store.listSandboxItems(ctx.portalId, ENTITY.bot)).filter((b) => b.fields["CLIENT_ID"] === client);
    if (own.length !== 1) throw botNotFound();
    return own[0]!;
  }
  const bot = id === undefined || id <= 0 ? undefined : await ctx.store.getSandboxItem(ctx.portalId, ENTITY.bot, id);
  if (bot === undefined) throw botNotFound();
  if (bot.fields["CLIENT_ID"] !== client) throw new BitrixFault(400, "APP_ID_ERROR", "Chat-bot does not belong to this application");
  return bot;
}

export const botMethods: Record<string, MethodDef> = {
  "imbot.register": {
    scopes: ["imbot"],
    async run(ctx, params) {
      const code = (toText(params["CODE"]) ?? "").trim();
      if (code === "") throw new BitrixFault(400, "CODE_ERROR", "Bot code isn't specified");
      const type = (toText(params["TYPE"]) ?? "B").trim().toUpperCase();
      if (!TYPES.has(type)) throw new BitrixFault(400, "TYPE_ERROR", "Bot type is not valid");
      const handler = (toText(params["EVENT_MESSAGE_ADD"]) ?? toText(params["EVENT_HANDLER"]) ?? "").trim();
      if (!/^https?:\/\/\S+$/i.test(handler)) throw new BitrixFault(400, "EVENT_MESSAGE_ADD_ERROR", "Handler for \"Message add\" event isn't specified");
      const properties = isRecord(params["PROPERTIES"]) ? params["PROPERTIES"] : {};
      const name = (toText(properties["NAME"]) ?? "").trim();
      const lastName = (toText(properties["LAST_NAME"]) ?? "").trim();
      if (name === "" && lastName === "") throw new BitrixFault(400, "NAME_ERROR", "Bot name isn't specified");
      const client = clientOf(params);
      const same = (await ctx.store.listSandboxItems(ctx.portalId, ENTITY.bot)).find((b) => b.fields["CODE"] === code && b.fields["CLIENT_ID"] === client);
      if (same !== undefined) return { result: same.id };
      const fields: Record<string, unknown> = {
        CODE: code,
        TYPE: type,
        OPENLINE: type === "O" || toFlag(params["OPENLINE"]) === true ? "Y" : "N",
        CLIENT_ID: client,
        EVENT_MESSAGE_ADD: handler,
        NAME: name,
        LAST_NAME: lastName,
        DATE_CREATE: isoTime(ctx.now),
      };
      for (const key of ["COLOR", "EMAIL", "WORK_POSITION", "PERSONAL_WWW", "PERSONAL_GENDER"]) if (toText(properties[key]) !== undefined) fields[key] = toText(properties[key]);
      return { result: (await ctx.store.addSandboxItem(ctx.portalId, ENTITY.bot, fields, ctx.now)).id };
    },
  },
  "imbot.bot.list": {
    scopes: ["imbot"],
    async run(ctx) {
      const bots = await ctx.store.listSandboxItems(ctx.portalId, ENTITY.bot);
      const name = (b: (typeof bots)[number]) => [b.fields["NAME"], b.fields["LAST_NAME"]].filter((s) => typeof s === "string" && s !== "").join(" ");
      return { result: Object.fromEntries(bots.map((b) => [String(b.id), { ID: b.id, NAME: name(b), CODE: b.fields["CODE"], OPENLINE: b.fields["OPENLINE"] }])) };
    },
  },
  "imbot.unregister": {
    scopes: ["imbot"],
    async run(ctx, params) {
      const bot = await botOf(ctx, params);
      await ctx.store.deleteSandboxItem(ctx.portalId, ENTITY.bot, bot.id);
      return { result: true };
    },
  },
  "imbot.message.add": {
    scopes: ["imbot"],
    async run(ctx, params) {
      const bot = await botOf(ctx, params);
      const dialog = (toText(params["DIALOG_ID"]) ?? "").trim();
      if (dialog === "" || dialog === "0") throw new BitrixFault(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty");
      const message = (toText(params["MESSAGE"]) ?? "").trim();
      if (message === "") throw new BitrixFault(400, "MESSAGE_EMPTY", "Message can't be empty");
      const fields: Record<string, unknown> = { BOT_ID: bot.id, DIALOG_ID: dialog, MESSAGE: message, SYSTEM: toFlag(params["SYSTEM"]) ? "Y" : "N", DATE: isoTime(ctx.now) };
      for (const key of ["ATTACH", "KEYBOARD", "MENU"]) if (params[key] !== undefined) fields[key] = params[key];
      return { result: (await ctx.store.addSandboxItem(ctx.portalId, ENTITY.botMessage, fields, ctx.now)).id };
    },
  },
};
