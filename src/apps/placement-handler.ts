/**
 * keygate's placement handler (issue 16 §3; public facts §2.3 step 1; docs/placements.md):
 *
 *     POST /v1/bitrix-handler?app=<server id>      (application/x-www-form-urlencoded)
 *
 * is what a portal posts to when a user opens the app in a place it is bound to (a left-menu
 * item, a CRM card tab, a widget). Bitrix24 posts DOMAIN, PROTOCOL, LANG, APP_SID, AUTH_ID,
 * AUTH_EXPIRES, REFRESH_ID, member_id, status, PLACEMENT and PLACEMENT_OPTIONS
 * (apidocs.bitrix24.com/api-reference/widgets, "What the handler receives"). AUTH_ID is an OAuth
 * access token of the user who opened it; the handler trusts none of the fields until the app's
 * own portal accepts that token: member_id and DOMAIN must be the portal's, then user.current is
 * called with auth=AUTH_ID at the portal keygate knows (never at the posted DOMAIN), which answers
 * who the user is. The Bitrix24 user is mapped to the keygate member, a one-time `__init` token
 * (src/apps/init-token.ts) is minted for them and the browser is sent to
 *
 *     <app URL>/?placement=…&member_id=…[&placement_options=…]&__init=<token>
 *
 * where the app runtime exchanges the token for its cookie and the user's session. Bitrix24 opens
 * the handler with no keygate key: its path is not verified on arrival (isPlacementHandlerPath).
 * A refusal is a page for the person in the portal's frame, or the error envelope for a client
 * that does not accept text/html.
 */
import { Type as T } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { keyStatus } from "../manage/keys.ts";
import { getServer } from "../store/servers.ts";
import type { Portal } from "../store/store.ts";
import { UpstreamError, bitrix24Client } from "../upstream/bitrix24/index.ts";
import { INTERNAL } from "../upstream/outbound.ts";
import { keygateUserOf, sandboxMemberId } from "../upstream/sandbox/index.ts";
import type { App, GatewayContext } from "../gateway/server.ts";
import { portalBase } from "../oauth/bitrix24-flow.ts";
import { loadBitrix24Tokens, storeBitrix24Tokens, userOfBitrixUser } from "../oauth/bitrix24-tokens.ts";
import { appEntryUrl } from "./runtime.ts";

export const HANDLER_PATH = "/v1/bitrix-handler";

/** Whether a URL is the placement handler's: a portal posts to it with no key, so it is not verified on arrival. */
export function isPlacementHandlerPath(url: string): boolean {
  const q = url.indexOf("?");
  return (q < 0 ? url : url.slice(0, q)) === HANDLER_PATH;
}

/** keygate's placement handler for a server (the app), on a keygate at `base`: the default handler of POST /v1/placements/bind. */
export function placementHandlerUrl(base: string, serverId: string): string {
  return `${base.replace(/\/$/, "")}${HANDLER_PATH}?app=${encodeURIComponent(serverId)}`;
}

/** How long the portal may take to answer user.current. */
const PORTAL_TIMEOUT_MS = 15_000;

export interface PlacementHandlerOptions {
  /** keygate's own listening address: the sandbox portals' REST is served there. */
  ownBaseUrl: () => string | undefined;
}

/** A refusal of the handler: a code of the catalog (or the profile's) and what went wrong. */
class Refusal extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const Field = (description: string) => T.Optional(T.String({ maxLength: 4000, description }));
const Posted = T.Object(
  {
    AUTH_ID: Field("The OAuth access token of the user who opened the app"),
    AUTH_EXPIRES: Field("Seconds AUTH_ID lives"),
    REFRESH_ID: Field("The user's refresh token (not kept by keygate)"),
    member_id: Field("The portal's identifier"),
    status: Field("The application's type (L: local)"),
    DOMAIN: Field("The portal's domain"),
    PROTOCOL: Field("1: HTTPS, 0: HTTP"),
    LANG: Field("The user's interface language"),
    APP_SID: Field("The application's string identifier"),
    PLACEMENT: Field("The place opened (LEFT_MENU, CRM_DEAL_DETAIL_TAB, …); DEFAULT: the app's own page"),
    PLACEMENT_OPTIONS: Field("The place's JSON options, e.g. {\"ID\":\"42\"} for a CRM card"),
  },
  { additionalProperties: true },
);
type Posted = typeof Posted.static;

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The refusal as the person in the portal's frame sees it: framable (the portal frames it), nothing else loads. */
function refusalPage(code: string, message: string, hint: string | undefined): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>The app cannot open — keygate</title><style>body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1d2430}code{background:#eef0f3;padding:0 .3em;border-radius:3px}.hint{color:#5a6475}</style></head><body><h1>The app cannot open</h1><p id="message">${escape(message)}</p>${hint === undefined ? "" : `<p class="hint">${escape(hint)}</p>`}<p>Error code: <code id="code">${escape(code)}</code></p></body></html>`;
}

export function placementHandlerRoutes(app: App, ctx: GatewayContext, options: PlacementHandlerOptions): void {
  const { kg } = ctx;

  // A portal posts a form; this plugin only.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => {
    const fields: Record<string, string> = {};
    for (const [name, value] of new URLSearchParams(String(body))) fields[name] ??= value;
    done(null, fields);
  });

  const refuse = (request: FastifyRequest, reply: FastifyReply, e: Refusal) => {
    if (!(request.headers.accept ?? "").includes("text/html")) return ctx.send(reply, e.code, { message: e.message });
    const def = ctx.envelope.def(e.code);
    return reply
      .code(def.status)
      .headers({
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
      })
      .send(refusalPage(e.code, e.message, def.hint));
  };

  /** The Bitrix24 user AUTH_ID belongs to, as the portal answers user.current with it; a refusal when the portal does not accept it. */
  const userOfToken = async (restUrl: string, outbound: typeof INTERNAL, authId: string): Promise<number> => {
    const client = bitrix24Client(restUrl, { timeoutMs: PORTAL_TIMEOUT_MS, outbound });
    let result: unknown;
    try {
      ({ result } = await client.call<unknown>("user.current", { auth: authId }));
    } catch (e) {
      // The portal refused the token (invalid, expired, another portal's); anything else (unreachable) is the gateway's error.
      if (e instanceof UpstreamError && e.code !== "BITRIX_UNAVAILABLE") throw new Refusal("USER_AUTH_REQUIRED", "The portal did not accept AUTH_ID: it is not a live token of one of its users.");
      throw e;
    }
    const id = Number((result as { ID?: unknown } | null)?.ID);
    if (!Number.isInteger(id) || id <= 0) throw new Refusal("USER_AUTH_REQUIRED", "The portal's user.current named no user for AUTH_ID.");
    return id;
  };

  /** Who opened the app, the portal having accepted the posted authorization: the Bitrix24 user and the keygate member. */
  const whoOpened = async (portal: Portal, posted: Posted): Promise<{ bitrixUserId: number; userId: string }> => {
    const authId = posted.AUTH_ID ?? "";
    const memberId = posted.member_id ?? "";
    const domain = (posted.DOMAIN ?? "").toLowerCase();
    if (authId === "" || memberId === "" || domain === "") throw new Refusal("USER_AUTH_REQUIRED", "The request has no Bitrix24 authorization: AUTH_ID, member_id and DOMAIN are required, as a portal posts them.");
    const upstream = portal.upstream;
    if (upstream?.kind === "sandbox") {
      if (memberId !== sandboxMemberId(portal.id) || domain !== portal.domain.toLowerCase()) throw new Refusal("USER_AUTH_REQUIRED", "member_id and DOMAIN are not those of the app's portal.");
      const base = options.ownBaseUrl();
      if (base === undefined) throw new Refusal("SANDBOX_UNREACHABLE", "The sandbox portal is served by this keygate over HTTP, and it is not listening.");
      const bitrixUserId = await userOfToken(`${base}/sandbox/${encodeURIComponent(portal.id)}/rest/`, INTERNAL, authId);
      const userId = await keygateUserOf(kg.store, portal.id, bitrixUserId);
      if (userId === undefined) throw new Refusal("PLACEMENT_USER_UNKNOWN", "This sandbox user is no keygate member of the portal: open the app signed in to keygate as a member.");
      return { bitrixUserId, userId };
    }
    if (upstream?.kind === "bitrix24") {
      // The portal keygate knows, by its webhook's address (never the posted DOMAIN, which only has to agree).
      const restUrl = `${portalBase(upstream.webhookUrl)}/rest/`;
      if (domain !== portal.domain.toLowerCase() && domain !== new URL(restUrl).hostname.toLowerCase()) throw new Refusal("USER_AUTH_REQUIRED", "DOMAIN is not the app's portal.");
      const bitrixUserId = await userOfToken(restUrl, kg.outbound, authId);
      const userId = await userOfBitrixUser(kg.store, portal.id, bitrixUserId);
      if (userId === undefined || (await kg.store.getMember(portal.id, userId)) === undefined) {
        throw new Refusal("PLACEMENT_USER_UNKNOWN", `keygate does not know Bitrix24 user ${bitrixUserId} of ${portal.domain}: the user authorizes the app once (the OAuth flow), then the app opens in the portal.`);
      }
      const held = await loadBitrix24Tokens(kg, portal.id, userId);
      if (held !== undefined && held.memberId !== memberId) throw new Refusal("USER_AUTH_REQUIRED", "member_id is not the app's portal's.");
      // The portal just gave this user a fresh pair for the app: kept, the user's calls go on with them (docs/oauth.md).
      const refreshId = posted.REFRESH_ID ?? "";
      if (refreshId !== "") {
        const lifetime = Number(posted.AUTH_EXPIRES);
        await storeBitrix24Tokens(kg, {
          portalId: portal.id,
          userId,
          bitrixUserId,
          memberId,
          clientEndpoint: held?.clientEndpoint ?? restUrl,
          accessToken: authId,
          refreshToken: refreshId,
          expiresAt: kg.now() + (Number.isInteger(lifetime) && lifetime > 0 ? lifetime : 3600) * 1000,
        });
      }
      return { bitrixUserId, userId };
    }
    throw new Refusal("PORTAL_NOT_LINKED", "The app's portal is not linked to Bitrix24 (or the sandbox): no user can open the app there.");
  };

  app.post(
    HANDLER_PATH,
    {
      schema: {
        operationId: "openPlacement",
        tags: ["placements"],
        summary: "keygate's placement handler, posted by the portal (no key) when a user opens the app: checks the Bitrix24 authorization against the app's portal and sends the browser to the app with a one-time __init token",
        security: [],
        consumes: ["application/x-www-form-urlencoded"],
        querystring: T.Object({ app: T.Optional(T.String({ maxLength: 100, description: "The server (app) to open: its id" })) }, { additionalProperties: true }),
        body: Posted,
        response: {
          ...ctx.responses({ data: T.Unknown(), codes: ["SERVER_NOT_FOUND", "KEY_INACTIVE", "OAUTH_REQUIRED", "USER_AUTH_REQUIRED", "PLACEMENT_USER_UNKNOWN", "PORTAL_NOT_LINKED", "APP_RUNTIME_DISABLED", "SANDBOX_UNREACHABLE", "BITRIX_UNAVAILABLE"] }),
          302: T.Unsafe<unknown>({ description: "To <app URL>/?placement=…&member_id=…[&placement_options=…]&__init=<one-time token, 5 minutes>" }),
        },
      },
    },
    async (request, reply) => {
      try {
        const serverId = request.query.app ?? "";
        const server = serverId === "" ? undefined : await getServer(kg.store, serverId);
        if (server === undefined) throw new Refusal("SERVER_NOT_FOUND", "No such app: the handler's ?app= names no server of this keygate.");
        const key = await kg.store.getKey(server.keyId);
        if (key === undefined || keyStatus(key, kg.now()) !== "ACTIVE") throw new Refusal("KEY_INACTIVE", "The app's authorization key is revoked, expired or deleted.");
        if (kg.profile.spec.keyTypes.find((t) => t.id === key.type)?.sessionUser !== true) throw new Refusal(kg.profile.errorCodes["OAUTH_REQUIRED"] ? "OAUTH_REQUIRED" : "KEY_TYPE_NOT_ALLOWED", "The server was registered with an API key: only an authorization key's app (vibe_app_) opens in the portal.");
        const portal = await kg.store.getPortal(server.portalId);
        if (portal === undefined) throw new Refusal("PORTAL_NOT_LINKED", "The app's portal no longer exists.");
        // Before the portal is called: with no runtime there is nothing to open.
        const appUrl = ctx.appUrl(server.id);
        if (appUrl === null) throw new Refusal("APP_RUNTIME_DISABLED", "The app runtime is not enabled on this keygate (keygate serve --apps-port): the app has no URL to open.");
        const posted = request.body ?? {};
        const { bitrixUserId, userId } = await whoOpened(portal, posted);
        const identity = { serverId: server.id, keyId: key.id, userId, portalId: portal.id, bitrixUserId };
        const entry = await appEntryUrl(appUrl, kg.serverSecret, identity, { placement: posted.PLACEMENT ?? "DEFAULT", member_id: posted.member_id, placement_options: posted.PLACEMENT_OPTIONS || undefined }, kg.now());
        // The URL carries the token: neither kept nor sent on as a referrer.
        return reply.code(302).headers({ location: entry, "cache-control": "no-store", "referrer-policy": "no-referrer" }).send();
      } catch (e) {
        if (e instanceof Refusal) return refuse(request, reply, e);
        throw e;
      }
    },
  );
}
