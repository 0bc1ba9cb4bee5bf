import type { FastifyRequest } from "fastify";
import { KeygateError } from "../core/errors.ts";
import type { Portal } from "../dataplane/service.ts";
import { type Bitrix24Client, bitrix24Client } from "../upstream/bitrix24/index.ts";
import { INTERNAL } from "../upstream/outbound.ts";
import { bitrix24AppOf } from "../oauth/bitrix24-flow.ts";
import type { Bitrix24App } from "../oauth/bitrix24-tokens.ts";
import { sandboxMemberWebhookToken, sandboxWebhookToken, sandboxWebhookUrl } from "../upstream/sandbox/index.ts";
import { LimitRefusal, type rateLimiting } from "./limits.ts";
import type { GatewayContext } from "./server.ts";

/** How long a Bitrix24 call may take before keygate answers BITRIX_UNAVAILABLE. */
const UPSTREAM_TIMEOUT_MS = 15_000;

/**
 * The connection of a request to its key's portal — Bitrix24 through the portal's webhook (or, for
 * an app session on a portal with a Bitrix24 application, the session user's OAuth tokens), or the
 * built-in sandbox over HTTP at keygate's own address — for the routes answered from the portal
 * (the data plane, bots).
 */
export function portalConnection(ctx: GatewayContext, limits: ReturnType<typeof rateLimiting>, ownBaseUrl: () => string | undefined): (request: FastifyRequest) => Portal {
  /**
   * The Bitrix24 client of the key's portal, kept with the key until its portal changes; with an
   * app session, the client acting as the session's user (docs/oauth.md).
   */
  const clientFor = async (request: FastifyRequest): Promise<Bitrix24Client> => {
    const key = request.auth.key;
    const portalId = key.record.portalId;
    const session = request.auth.appSession;
    if (session !== undefined) {
      // The portal's Bitrix24 application, kept with the key until its portal changes; null: none (the sandbox, or a webhook only).
      const app = await ctx.cache.derive<Bitrix24App | null>(key, "bitrix24 app", async () => {
        const portal = portalId === null ? undefined : await ctx.kg.store.getPortal(portalId);
        return (portal && bitrix24AppOf(portal)) ?? null;
      });
      if (app !== null) return userClient(app, session.portalId, session.userId);
    }
    const user = session?.bitrixUserId;
    const name = user === undefined ? "bitrix24" : `bitrix24 user ${user}`;
    return (
      ctx.cache.peek<Bitrix24Client>(key, name) ??
      ctx.cache.derive(key, name, async () => {
        const portal = portalId === null ? undefined : await ctx.kg.store.getPortal(portalId);
        if (portal?.upstream?.kind === "sandbox") {
          const base = ownBaseUrl();
          if (base === undefined) throw new KeygateError("SANDBOX_UNREACHABLE");
          // With a session, the webhook of the session's own sandbox user; keygate's own listening address: internal, so the outbound rule does not apply.
          const token = user === undefined ? sandboxWebhookToken(ctx.kg.serverSecret, portal.id) : sandboxMemberWebhookToken(ctx.kg.serverSecret, portal.id, user);
          return bitrix24Client(sandboxWebhookUrl(base, portal.id, token, user), { timeoutMs: UPSTREAM_TIMEOUT_MS, outbound: INTERNAL });
        }
        if (user !== undefined) {
          throw new KeygateError("PORTAL_NOT_LINKED", { message: "The session's user can be acted for on sandbox portals and on Bitrix24 portals with an application (upstream.clientId, upstream.clientSecret) only: this portal is neither now (docs/oauth.md)." });
        }
        if (portal?.upstream?.kind === "bitrix24") return bitrix24Client(portal.upstream.webhookUrl, { timeoutMs: UPSTREAM_TIMEOUT_MS, outbound: ctx.kg.outbound });
        throw new KeygateError("PORTAL_NOT_LINKED", { message: "The key's portal is not linked to Bitrix24 (or the sandbox): there is no data to reach." });
      })
    );
  };
  /**
   * A real portal's client acting as the session's user (docs/oauth.md, "Real Bitrix24 portals"):
   * REST at the portal's client_endpoint with the user's access token, refreshed before it ends
   * and once more when Bitrix24 refuses it.
   */
  const userClient = async (app: Bitrix24App, portalId: string, userId: string): Promise<Bitrix24Client> => {
    const tokens = ctx.bitrix24Tokens;
    const { clientEndpoint } = await tokens.current(app, portalId, userId);
    return bitrix24Client(clientEndpoint, {
      timeoutMs: UPSTREAM_TIMEOUT_MS,
      outbound: tokens.outboundFor(clientEndpoint),
      auth: {
        token: async () => (await tokens.current(app, portalId, userId)).accessToken,
        renew: async (rejected) => (await tokens.renew(app, portalId, userId, rejected)).accessToken,
      },
    });
  };
  /**
   * The key's portal for one request, paid for on first use: the first call spends one unit of
   * the portal's budget (docs/limits.md) and later calls of the request (pages, a get after a
   * write) spend nothing more. Handlers check the request's content before they call it.
   */
  return (request: FastifyRequest): Portal => {
    let ready: Promise<Bitrix24Client> | undefined;
    const connect = () =>
      (ready ??= (async () => {
        const spent = await limits.spendPortal(request.verification!);
        request.rateLimit = [...(request.rateLimit ?? []), ...spent.states];
        if (!spent.admitted) throw new LimitRefusal(spent);
        return clientFor(request);
      })());
    /** The call to Bitrix24 itself, timed for /metrics (spending the budget is not). */
    const timed = async <T>(call: (b24: Bitrix24Client) => Promise<T>): Promise<T> => {
      const b24 = await connect();
      const portalId = request.auth.key.record.portalId ?? "none";
      const started = performance.now();
      try {
        const result = await call(b24);
        ctx.upstreamCalled?.(portalId, (performance.now() - started) / 1000);
        return result;
      } catch (e) {
        ctx.upstreamCalled?.(portalId, (performance.now() - started) / 1000, (e as { code?: string }).code ?? "error");
        throw e;
      }
    };
    return {
      call: (method, params) => timed((b24) => b24.call(method, params)),
      batch: (cmd, halt) => timed((b24) => b24.batch(cmd, halt)),
    };
  };
}
