import { Type as T } from "@sinclair/typebox";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { type SessionLifetimes, resumeSession } from "../accounts/sessions.ts";
import { csrfTokenOf, sameToken } from "../accounts/tokens.ts";
import { KeygateError } from "../core/errors.ts";
import { keyDigest } from "../core/keys/format.ts";
import { BODY_CODES } from "../gateway/envelope.ts";
import type { App, GatewayContext } from "../gateway/server.ts";
import { sessionToken } from "../gateway/session.ts";
import type { User } from "../store/store.ts";
import { CALLBACK_PATH, bitrix24AppOf, openPending, portalAuthorizeUrl, portalBase } from "./bitrix24-flow.ts";
import { TokenServerRefusal } from "./bitrix24-tokens.ts";
import { type AuthorizeParams, type AuthorizeRequest, type TokenParams, STATE_MAX, STATE_MIN, TokenError, allow, appKeyOf, checkAuthorize, checkState, checkUser, exchangeCode, grantRequestOf, poll, redirectTarget, revoke } from "./flow.ts";
import { completePage, consentPage, pageHeaders } from "./pages.ts";

/**
 * The OAuth routes of authorization keys (docs/oauth.md). A browser opens the authorization
 * endpoint with no key header, and apps call the token and revocation endpoints with the app key
 * in the body: these paths are not verified on arrival (isOAuthPath) and check the app key
 * themselves. GET /v1/oauth/poll carries the key in X-Api-Key and is verified like any route.
 */
const OPEN_PATHS = new Set(["/v1/oauth/authorize", "/v1/oauth/token", "/v1/oauth/revoke", CALLBACK_PATH]);

/** Whether a URL is one of the OAuth routes that check the app key themselves (not on arrival). */
export function isOAuthPath(url: string): boolean {
  const q = url.indexOf("?");
  return OPEN_PATHS.has(q < 0 ? url : url.slice(0, q));
}

/** keygate's own page the zero-config flow ends on. */
export const COMPLETE_PATH = "/oauth/complete";

export interface OAuthRouteOptions {
  lifetimes: SessionLifetimes;
  /** Sessions were revoked: every node's caches must drop what they read of them. */
  revoked: () => void;
}

const tags = ["oauth"];
const Str = (description: string) => T.Optional(T.String({ description }));
const AuthorizeQuery = T.Object(
  {
    app_key: Str("The authorization key (vibe_app_…)"),
    client_id: Str("Same as app_key (its OAuth name, RFC 6749 §4.1.1)"),
    response_type: Str("code (the only response type; may be left out)"),
    state: Str(`${STATE_MIN}–${STATE_MAX} random characters the app checks on return (CSRF, RFC 6749 §10.12): required`),
    redirect_uri: Str("One of the app's registered redirectUris, exactly; without it the flow ends on keygate's /oauth/complete page (then poll)"),
    scope: Str("Scopes among the app's, space- or comma-separated; the session carries the app's scopes"),
    code_challenge: Str("PKCE (RFC 7636): base64url SHA-256 of the code verifier"),
    code_challenge_method: Str("S256 (plain is refused)"),
  },
  { additionalProperties: true },
);
const ConsentForm = T.Object(
  {
    app_key: Str("As in the query"),
    client_id: Str("As in the query"),
    response_type: Str("As in the query"),
    state: Str("As in the query"),
    redirect_uri: Str("As in the query"),
    scope: Str("As in the query"),
    code_challenge: Str("As in the query"),
    code_challenge_method: Str("As in the query"),
    csrf: Str("The signed-in session's CSRF token, from the consent page"),
    decision: T.Optional(T.Union([T.Literal("allow"), T.Literal("deny")])),
  },
  { additionalProperties: true },
);
const TokenBody = T.Object(
  {
    grant_type: Str("authorization_code (the only grant: no refresh_token)"),
    app_key: Str("The authorization key (vibe_app_…); client_id is accepted as its OAuth name"),
    client_id: Str("Same as app_key"),
    code: Str("The code from the redirect"),
    redirect_uri: Str("The redirect_uri the code was issued for"),
    code_verifier: Str("PKCE verifier, when the authorization request had a code_challenge"),
  },
  { additionalProperties: true },
);
const TokenAnswer = T.Object(
  {
    access_token: T.String({ description: "The session token: vibe_session_…" }),
    token_type: T.Literal("Bearer"),
    expires_in: T.Integer({ description: "Seconds: 86400 (24 hours); never refreshed" }),
  },
  { description: "A session (top level, as OAuth clients expect; no refresh_token)" },
);
const TokenErrorAnswer = T.Object(
  {
    error: T.Union([T.Literal("invalid_request"), T.Literal("invalid_client"), T.Literal("invalid_grant"), T.Literal("unsupported_grant_type")]),
    error_description: T.String(),
  },
  { description: "RFC 6749 §5.2" },
);
/** A page: text/html in the document (fast-json-stringify leaves strings sent with their own type alone). */
const Html = (description: string) => T.Unsafe<string>({ description, content: { "text/html": { schema: { type: "string" } } } });

export function oauthRoutes(app: App, ctx: GatewayContext, options: OAuthRouteOptions): void {
  const { kg, envelope, send, cache, client } = ctx;
  const { lifetimes, revoked } = options;

  // The consent form and the token endpoint take form bodies (RFC 6749 §4.1.3); this plugin only.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string" }, (_request, body, done) => {
    const fields: Record<string, string> = {};
    for (const [name, value] of new URLSearchParams(String(body))) fields[name] ??= value;
    done(null, fields);
  });

  const origin = (request: FastifyRequest) => (ctx.publicUrl ? new URL(ctx.publicUrl).origin : `${client.protocol(request.raw)}://${client.host(request.raw)}`);
  const completeUrl = (request: FastifyRequest) => `${origin(request)}${COMPLETE_PATH}`;

  /** The signed-in user and their session token, or undefined. */
  const signedIn = async (request: FastifyRequest): Promise<{ user: User; token: string } | undefined> => {
    const token = sessionToken(request.headers);
    const found = token === undefined ? undefined : await resumeSession(kg, token, lifetimes);
    return found && token !== undefined ? { user: found.user, token } : undefined;
  };

  const html = (reply: FastifyReply, status: number, body: string, redirectUri: string | null, portalOrigin?: string) =>
    reply
      .code(status)
      .headers(pageHeaders(redirectUri === null ? null : new URL(redirectUri).origin, portalOrigin))
      .send(body);

  const authorizeCodes = ["INVALID_REQUEST", "INVALID_API_KEY", "INVALID_REDIRECT_URI", "NOT_PORTAL_MEMBER", "PORTAL_NOT_LINKED"];

  app.get(
    "/v1/oauth/authorize",
    {
      schema: {
        operationId: "authorizeApp",
        tags,
        summary: "Opened by a browser (no key header): the user signs in, sees the consent page (Allow / Deny) and is sent to redirect_uri?code=…&state=… (or ?error=access_denied)",
        security: [],
        querystring: AuthorizeQuery,
        response: {
          ...ctx.responses({ data: T.Unknown(), codes: authorizeCodes }),
          200: Html("The consent page (text/html): the app, the portal, the scopes, Allow and Deny"),
          302: T.Unsafe<unknown>({ description: "Not signed in: to /sign-in?next=…, back here afterwards" }),
        },
      },
    },
    async (request, reply) => {
      const q = request.query as AuthorizeParams;
      const checked = await checkAuthorize(kg, cache, q);
      const who = await signedIn(request);
      if (who === undefined) return reply.header("cache-control", "no-store").redirect(`/sign-in?next=${encodeURIComponent(request.url)}`, 302);
      await checkUser(kg, checked, who.user);
      const fields: Record<string, string> = { csrf: csrfTokenOf(kg.serverSecret, who.token) };
      for (const name of ["app_key", "client_id", "response_type", "state", "redirect_uri", "scope", "code_challenge", "code_challenge_method"] as const) {
        const value = q[name];
        if (value !== undefined && value !== "") fields[name] = value;
      }
      const page = consentPage({
        appName: checked.key.record.name,
        portal: checked.portal.domain,
        scopes: checked.scopes,
        userEmail: who.user.email,
        fields,
        redirectHost: checked.redirectUri === null ? null : new URL(checked.redirectUri).host,
      });
      const upstream = checked.portal.upstream;
      const portalOrigin = upstream?.kind === "bitrix24" && bitrix24AppOf(checked.portal) !== undefined ? new URL(portalBase(upstream.webhookUrl)).origin : undefined;
      return html(reply, 200, page, checked.redirectUri, portalOrigin);
    },
  );

  app.post(
    "/v1/oauth/authorize",
    {
      schema: {
        operationId: "decideAuthorization",
        tags,
        summary: "The consent page's form (signed in, with its CSRF token): Allow sends the browser to redirect_uri?code=…&state=…, Deny to ?error=access_denied&state=…",
        security: [{ cookie: [] }],
        consumes: ["application/x-www-form-urlencoded"],
        body: ConsentForm,
        response: {
          ...ctx.responses({ data: T.Unknown(), codes: [...BODY_CODES, ...authorizeCodes, "SESSION_REQUIRED", "CSRF_TOKEN_INVALID", "ORIGIN_NOT_ALLOWED"] }),
          302: T.Unsafe<unknown>({ description: "To the redirect URI (or /oauth/complete) with code and state, or error=access_denied and state" }),
        },
      },
    },
    async (request, reply) => {
      const form = request.body as AuthorizeParams & { csrf?: string; decision?: string };
      const sentFrom = request.headers.origin;
      if (sentFrom !== undefined && sentFrom !== origin(request)) return send(reply, "ORIGIN_NOT_ALLOWED", { details: { origin: sentFrom } });
      const checked: AuthorizeRequest = await checkAuthorize(kg, cache, form);
      const who = await signedIn(request);
      if (who === undefined) return send(reply, "SESSION_REQUIRED");
      if (form.csrf === undefined || !sameToken(form.csrf, csrfTokenOf(kg.serverSecret, who.token))) return send(reply, "CSRF_TOKEN_INVALID");
      await checkUser(kg, checked, who.user);
      if (form.decision !== "allow" && form.decision !== "deny") throw new KeygateError("INVALID_REQUEST", { message: "decision: must be allow or deny", param: "decision" });
      reply.header("cache-control", "no-store");
      if (form.decision === "deny") return reply.redirect(redirectTarget(checked, { error: "access_denied" }, completeUrl(request)), 302);
      // A real Bitrix24 portal: the user authorizes keygate's Bitrix24 application on the portal first (bitrix24-flow.ts).
      const b24 = bitrix24AppOf(checked.portal);
      if (b24 !== undefined) {
        const pending = { ...grantRequestOf(checked), userId: who.user.id };
        return reply.redirect(await portalAuthorizeUrl(kg, checked.portal, b24, pending, `${origin(request)}${CALLBACK_PATH}`), 302);
      }
      return reply.redirect(redirectTarget(checked, { code: await allow(kg, grantRequestOf(checked), who.user, revoked) }, completeUrl(request)), 302);
    },
  );

  app.get(
    CALLBACK_PATH,
    {
      schema: {
        operationId: "bitrix24Callback",
        tags,
        summary:
          "Where a real Bitrix24 portal sends the browser back after the user authorized keygate's Bitrix24 application (docs/oauth.md, \"Real Bitrix24 portals\"): keygate exchanges the code for the user's Bitrix24 tokens, then sends the browser to the app's redirect_uri?code=…&state=… (or ?error=…)",
        security: [],
        querystring: T.Object(
          {
            code: Str("Bitrix24's authorization code"),
            state: Str("The state keygate sent to the portal"),
            domain: Str("The portal's domain"),
            member_id: Str("The portal's member_id"),
            scope: Str("The application's scopes"),
            server_domain: Str("Bitrix24's token server"),
            error: Str("Bitrix24's refusal"),
            error_description: Str("Bitrix24's refusal, in words"),
          },
          { additionalProperties: true },
        ),
        response: {
          ...ctx.responses({ data: T.Unknown(), codes: ["INVALID_REQUEST", "SESSION_REQUIRED", "NOT_PORTAL_MEMBER", "PORTAL_NOT_LINKED", "INVALID_API_KEY"] }),
          302: T.Unsafe<unknown>({ description: "To the app's redirect URI (or /oauth/complete) with code and state, or error (access_denied, temporarily_unavailable) and state" }),
        },
      },
    },
    async (request, reply) => {
      const q = request.query as { code?: string; state?: string; member_id?: string; error?: string };
      const pending = await openPending(kg, q.state);
      // The browser that allowed the app brings the answer back: a code got in another browser is not this user's to bind.
      const who = await signedIn(request);
      if (who === undefined || who.user.id !== pending.userId) {
        return send(reply, "SESSION_REQUIRED", { message: "Sign in to keygate as the user who allowed the app, in this browser, and authorize it again." });
      }
      reply.header("cache-control", "no-store");
      const back = (answer: Record<string, string>) => reply.redirect(redirectTarget(pending, answer, completeUrl(request)), 302);
      const portal = await kg.store.getPortal(pending.portalId);
      const b24 = portal === undefined ? undefined : bitrix24AppOf(portal);
      if (portal === undefined || b24 === undefined || portal.upstream?.kind !== "bitrix24") {
        throw new KeygateError("PORTAL_NOT_LINKED", { message: "The app's portal no longer has a Bitrix24 application (upstream.clientId, upstream.clientSecret): authorize the app again once it has." });
      }
      if ((await kg.store.getKey(pending.keyId)) === undefined) throw new KeygateError("INVALID_API_KEY", { message: "The app's key no longer exists." });
      if ((await kg.store.getMember(portal.id, who.user.id)) === undefined) throw new KeygateError("NOT_PORTAL_MEMBER", { message: `Only members of ${portal.domain} can authorize this app.` });
      if (q.error !== undefined || q.code === undefined || q.code === "") return back({ error: "access_denied", error_description: "The user did not authorize the app on the Bitrix24 portal." });
      let tokens;
      try {
        tokens = await ctx.bitrix24Tokens.grant(b24, { grant_type: "authorization_code", code: q.code });
      } catch (error) {
        if (error instanceof TokenServerRefusal) return back({ error: "access_denied", error_description: `Bitrix24 refused the authorization: ${error.error}.` });
        request.log.warn({ err: error }, "Bitrix24's token server did not answer a code exchange");
        return back({ error: "temporarily_unavailable", error_description: "Bitrix24's token server did not answer: try again." });
      }
      // The tokens must be of this portal: its REST endpoint, and the member_id the portal sent the browser back with.
      const ofPortal = tokens.clientEndpoint.startsWith(`${portalBase(portal.upstream.webhookUrl)}/rest/`) && (q.member_id === undefined || q.member_id === tokens.memberId);
      if (!ofPortal) return back({ error: "access_denied", error_description: "The Bitrix24 authorization is of another portal than the app's." });
      const now = kg.now();
      const stored = await ctx.bitrix24Tokens.save({
        portalId: portal.id,
        userId: who.user.id,
        bitrixUserId: tokens.userId,
        memberId: tokens.memberId,
        clientEndpoint: tokens.clientEndpoint,
        accessToken: tokens.accessToken,
        refreshToken: tokens.refreshToken,
        expiresAt: now + tokens.expiresIn * 1000,
      });
      return back({ code: await allow(kg, pending, who.user, revoked, stored.bitrixUserId) });
    },
  );

  app.get(
    COMPLETE_PATH,
    {
      schema: {
        operationId: "oauthComplete",
        tags,
        summary: "Where the zero-config flow (no redirect_uri) ends: tells the user the app may continue (it polls GET /v1/oauth/poll)",
        security: [],
        querystring: T.Object({ code: Str("Present when the user allowed"), error: Str("access_denied when they denied"), state: Str("The app's state") }, { additionalProperties: true }),
        response: { 200: Html("A page (text/html)") },
      },
    },
    async (request, reply) => {
      const q = request.query as { error?: string };
      return html(reply, 200, completePage(q.error === undefined ? "allowed" : "denied"), null);
    },
  );

  app.post(
    "/v1/oauth/token",
    {
      schema: {
        operationId: "exchangeCode",
        tags,
        summary: "Exchange a code for a session (JSON or application/x-www-form-urlencoded); answers at the top level, errors as RFC 6749 §5.2",
        security: [],
        consumes: ["application/json", "application/x-www-form-urlencoded"],
        body: TokenBody,
        response: { 200: TokenAnswer, 400: TokenErrorAnswer, 401: TokenErrorAnswer },
      },
      // Token errors are OAuth's, not the envelope (RFC 6749 §5.2), also for a body that is not valid.
      errorHandler: (error: FastifyError, _request, reply) => {
        if (error instanceof TokenError) return tokenError(reply, error);
        if (error.validation || error.statusCode === 400 || error.statusCode === 415 || error instanceof SyntaxError) return tokenError(reply, new TokenError("invalid_request", error.message));
        throw error;
      },
    },
    async (request, reply) => {
      const issued = await exchangeCode(kg, cache, request.body as TokenParams, revoked);
      return reply.code(200).header("cache-control", "no-store").header("pragma", "no-cache").send({ access_token: issued.accessToken, token_type: "Bearer", expires_in: issued.expiresIn });
    },
  );

  app.get(
    "/v1/oauth/poll",
    {
      schema: {
        operationId: "pollAuthorization",
        tags,
        summary: "The zero-config flow (X-Api-Key: the app key): pending until the user allowed, then once complete with the session",
        querystring: T.Object({ app_key: Str("The app key, as in X-Api-Key"), state: Str("The state of the authorization request") }, { additionalProperties: true }),
        response: {
          ...ctx.responses({ data: T.Unknown(), codes: ["INVALID_REQUEST"] }),
          200: T.Object(
            {
              success: T.Literal(true),
              status: T.Union([T.Literal("pending"), T.Literal("complete")]),
              access_token: T.Optional(T.String({ description: "Once, with status complete" })),
              token_type: T.Optional(T.Literal("Bearer")),
              expires_in: T.Optional(T.Integer()),
            },
            { description: "pending, or (once) complete with the session" },
          ),
        },
      },
    },
    async (request, reply) => {
      const q = request.query as { app_key?: string; state?: string };
      const key = request.auth.key;
      if (q.app_key !== undefined && q.app_key !== "" && keyDigest(kg.serverSecret, q.app_key) !== key.record.digest) {
        throw new KeygateError("INVALID_REQUEST", { message: "app_key: not the key sent in X-Api-Key", param: "app_key" });
      }
      const issued = await poll(kg, key, checkState(q.state), revoked);
      reply.header("cache-control", "no-store");
      return issued === undefined
        ? { success: true as const, status: "pending" as const }
        : { success: true as const, status: "complete" as const, access_token: issued.accessToken, token_type: "Bearer" as const, expires_in: issued.expiresIn };
    },
  );

  app.post(
    "/v1/oauth/revoke",
    {
      schema: {
        operationId: "revokeSession",
        tags,
        summary: "End a session (RFC 7009): the same answer whether or not the token was a live session",
        security: [],
        body: T.Object({ token: T.String({ description: "The session token (vibe_session_…)" }), token_type_hint: Str("access_token"), app_key: Str("The app key; given, only its sessions are ended"), client_id: Str("Same as app_key") }, { additionalProperties: true }),
        response: ctx.responses({ data: T.Object({}), codes: [...BODY_CODES, "INVALID_API_KEY"] }),
      },
    },
    async (request) => {
      const body = request.body as { token: string; app_key?: string; client_id?: string };
      const raw = body.app_key ?? body.client_id;
      const key = raw === undefined ? undefined : await appKeyOf(kg, cache, raw);
      if (raw !== undefined && key === undefined) throw new KeygateError("INVALID_API_KEY", { message: "app_key is not an active authorization key.", param: "app_key" });
      await revoke(kg, body.token, key, revoked);
      return envelope.ok({});
    },
  );
}

function tokenError(reply: FastifyReply, error: TokenError): FastifyReply {
  if (error.status === 401) reply.header("www-authenticate", 'Basic realm="keygate"');
  return reply.code(error.status).header("cache-control", "no-store").header("pragma", "no-cache").send({ error: error.error, error_description: error.message });
}
