/**
 * server.time (the portal's time, ISO 8601), app.info (what an application learns of itself; a
 * webhook is a local application: STATUS "L", installed, not expiring).
 *
 * Messenger, Activity Stream and placements: im.notify.system.add (answers the notification's
 * id), im.message.add (the message's id), log.blogpost.add (true), placement.list (the codes of
 * places an app can be embedded in), placement.bind (true), placement.get (the handlers bound:
 * placement, userId, handler, options, title, description, langAll), placement.unbind ({count},
 * counted as Bitrix24 counts: 1 per handler found and 1 more per handler removed). What they send or bind is kept in the
 * store (entity types im.notify, im.message, log.blogpost, placement), to be looked at, not
 * delivered anywhere.
 *
 * On a real portal, im.notify.system.add and the placement.* methods want an application's
 * token, not a webhook (WRONG_AUTH_TYPE); the sandbox stands in for the application and takes
 * its webhook.
 */
import { ENTITY, type MethodDef } from "./context.ts";
import { BitrixFault, argumentError } from "./fault.ts";
import { isRecord, isoTime, toFlag, toInt, toList, toText } from "./values.ts";

/** The places the sandbox offers, and the scope each belongs to ("" = global: every application). */
const PLACEMENTS: [string, string][] = [
  ["CRM_DEAL_LIST_TOOLBAR", "crm"],
  ["CRM_LEAD_LIST_TOOLBAR", "crm"],
  ["CRM_CONTACT_LIST_TOOLBAR", "crm"],
  ["CRM_COMPANY_LIST_TOOLBAR", "crm"],
  ["CRM_DEAL_DETAIL_TOOLBAR", "crm"],
  ["CRM_LEAD_DETAIL_TOOLBAR", "crm"],
  ["CRM_CONTACT_DETAIL_TOOLBAR", "crm"],
  ["CRM_COMPANY_DETAIL_TOOLBAR", "crm"],
  ["CRM_DEAL_DETAIL_TAB", "crm"],
  ["CRM_LEAD_DETAIL_TAB", "crm"],
  ["CRM_DEAL_ACTIVITY_TIMELINE_MENU", "crm"],
  ["CRM_LEAD_ACTIVITY_TIMELINE_MENU", "crm"],
  ["TASK_VIEW_TAB", "task"],
  ["TASK_VIEW_SIDEBAR", "task"],
  ["TASK_LIST_CONTEXT_MENU", "task"],
  ["IM_NAVIGATION", "im"],
  ["IM_TEXTAREA", "im"],
  ["IM_SIDEBAR", "im"],
  ["IM_CONTEXT_MENU", "im"],
  ["CALENDAR_GRIDVIEW", "calendar"],
  ["USER_PROFILE_MENU", "user"],
  ["CONTACT_CENTER", "contact_center"],
  ["LEFT_MENU", ""],
  ["PAGE_BACKGROUND_WORKER", ""],
];

export const miscMethods: Record<string, MethodDef> = {
  "server.time": {
    scopes: [],
    async run(ctx) {
      return { result: isoTime(ctx.now) };
    },
  },
  "app.info": {
    scopes: [],
    async run() {
      return {
        result: { ID: 1, CODE: "local.sandbox", VERSION: 1, STATUS: "L", INSTALLED: true, PAYMENT_EXPIRED: "N", DAYS: null, LANGUAGE_ID: "en", LICENSE: "en_project", LICENSE_TYPE: "project", LICENSE_FAMILY: "project" },
      };
    },
  },
  "im.notify.system.add": {
    scopes: ["im"],
    async run(ctx, params) {
      const userId = toInt(params["USER_ID"]);
      if (userId === undefined || userId <= 0) throw new BitrixFault(400, "USER_ID_EMPTY", "User ID can't be empty");
      const message = (toText(params["MESSAGE"]) ?? "").trim();
      if (message === "") throw new BitrixFault(400, "MESSAGE_EMPTY", "Message can't be empty");
      const fields: Record<string, unknown> = { USER_ID: userId, MESSAGE: message, AUTHOR_ID: ctx.userId, DATE: isoTime(ctx.now) };
      for (const key of ["MESSAGE_OUT", "TAG", "SUB_TAG"]) if (toText(params[key]) !== undefined) fields[key] = toText(params[key]);
      if (params["ATTACH"] !== undefined) fields["ATTACH"] = params["ATTACH"];
      return { result: (await ctx.store.addSandboxItem(ctx.portalId, ENTITY.notification, fields, ctx.now)).id };
    },
  },
  "im.message.add": {
    scopes: ["im"],
    async run(ctx, params) {
      const dialog = (toText(params["DIALOG_ID"]) ?? "").trim();
      if (dialog === "" || dialog === "0") throw new BitrixFault(400, "USER_ID_EMPTY", "Recipient identifier is not specified when sending a message in a one-on-one chat");
      if (/^chat\D*$/i.test(dialog)) throw new BitrixFault(400, "CHAT_ID_EMPTY", "Recipient chat identifier is not specified when sending a message in a chat");
      const message = (toText(params["MESSAGE"]) ?? "").trim();
      if (message === "") throw new BitrixFault(400, "MESSAGE_EMPTY", "Message text is not provided");
      const fields: Record<string, unknown> = { DIALOG_ID: dialog, MESSAGE: message, AUTHOR_ID: ctx.userId, SYSTEM: toFlag(params["SYSTEM"]) ? "Y" : "N", DATE: isoTime(ctx.now) };
      for (const key of ["ATTACH", "KEYBOARD", "MENU"]) if (params[key] !== undefined) fields[key] = params[key];
      return { result: (await ctx.store.addSandboxItem(ctx.portalId, ENTITY.message, fields, ctx.now)).id };
    },
  },
  "log.blogpost.add": {
    scopes: ["log"],
    async run(ctx, params) {
      const message = (toText(params["POST_MESSAGE"]) ?? "").trim();
      if (message === "") throw argumentError("POST_MESSAGE");
      const dest = toList(params["DEST"] ?? params["SPERM"]).map(String);
      await ctx.store.addSandboxItem(
        ctx.portalId,
        ENTITY.post,
        {
          USER_ID: ctx.userId,
          POST_TITLE: toText(params["POST_TITLE"]) ?? "",
          POST_MESSAGE: message,
          DEST: dest.length === 0 ? ["UA"] : dest,
          IMPORTANT: toFlag(params["IMPORTANT"]) ? "Y" : "N",
          DATE_PUBLISH: isoTime(ctx.now),
        },
        ctx.now,
      );
      return { result: true };
    },
  },
  "placement.list": {
    scopes: ["placement"],
    async run(ctx, params) {
      const scope = (toText(params["SCOPE"]) ?? "").trim();
      const full = toFlag(params["FULL"]) === true;
      const codes = PLACEMENTS.filter(([, s]) => (scope !== "" ? s === scope : full || s === "" || ctx.scopes.has(s))).map(([code]) => code);
      return { result: codes };
    },
  },
  "placement.bind": {
    scopes: ["placement"],
    async run(ctx, params) {
      const placement = (toText(params["PLACEMENT"]) ?? "").trim().toUpperCase();
      // The docs list ERROR_ARGUMENT for a missing field with HTTP status 200.
      if (placement === "") throw argumentError("PLACEMENT", undefined, 200);
      const handler = (toText(params["HANDLER"]) ?? "").trim();
      if (handler === "") throw argumentError("HANDLER", undefined, 200);
      if (!PLACEMENTS.some(([code]) => code === placement)) throw argumentError("PLACEMENT", `Placement ${placement} is not available on this portal`);
      const bound = await ctx.store.listSandboxItems(ctx.portalId, ENTITY.placement);
      if (bound.some((b) => b.fields["PLACEMENT"] === placement && b.fields["HANDLER"] === handler)) {
        throw new BitrixFault(400, "ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!");
      }
      const fields: Record<string, unknown> = { PLACEMENT: placement, HANDLER: handler, USER_ID: Math.max(0, toInt(params["USER_ID"]) ?? 0) };
      for (const key of ["TITLE", "DESCRIPTION", "GROUP_NAME"]) if (toText(params[key]) !== undefined) fields[key] = toText(params[key]);
      for (const key of ["OPTIONS", "LANG_ALL"]) if (isRecord(params[key])) fields[key] = params[key];
      await ctx.store.addSandboxItem(ctx.portalId, ENTITY.placement, fields, ctx.now);
      return { result: true };
    },
  },
  "placement.get": {
    scopes: ["placement"],
    async run(ctx) {
      const bound = await ctx.store.listSandboxItems(ctx.portalId, ENTITY.placement);
      return {
        result: bound.map((b) => ({
          placement: b.fields["PLACEMENT"],
          userId: b.fields["USER_ID"] ?? 0,
          handler: b.fields["HANDLER"],
          // PHP's empty array: a list when no options were given.
          options: b.fields["OPTIONS"] ?? [],
          title: b.fields["TITLE"] ?? "",
          description: b.fields["DESCRIPTION"] ?? "",
          langAll: b.fields["LANG_ALL"] ?? {},
        })),
      };
    },
  },
  "placement.unbind": {
    scopes: ["placement"],
    async run(ctx, params) {
      if (params["PLACEMENT"] !== undefined && typeof params["PLACEMENT"] !== "string") {
        throw argumentError("PLACEMENT", "The value of an argument 'PLACEMENT' must be of type string");
      }
      const placement = (toText(params["PLACEMENT"]) ?? "").trim().toUpperCase();
      if (placement === "") throw argumentError("PLACEMENT");
      // No HANDLER: every handler of the place goes; USER_ID narrows to one user's.
      const handler = (toText(params["HANDLER"]) ?? "").trim();
      const userId = toInt(params["USER_ID"]);
      const bound = await ctx.store.listSandboxItems(ctx.portalId, ENTITY.placement);
      let count = 0;
      for (const b of bound) {
        if (b.fields["PLACEMENT"] !== placement || (handler !== "" && b.fields["HANDLER"] !== handler)) continue;
        if (userId !== undefined && (b.fields["USER_ID"] ?? 0) !== userId) continue;
        count++;
        if (await ctx.store.deleteSandboxItem(ctx.portalId, ENTITY.placement, b.id)) count++;
      }
      return { result: { count } };
    },
  },
};
