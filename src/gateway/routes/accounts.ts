import { Type as T } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { acceptInvitation, invite, linkUrl, listInvitations, setPasswordWithLink, withdrawInvitation } from "../../accounts/links.ts";
import { MAX_PASSWORD_LENGTH } from "../../accounts/passwords.ts";
import { SESSION_COOKIE, type SessionLifetimes, type SignedIn, idleExpiresAt, resumeSession, signIn, signOut, signOutEverywhere, startSession } from "../../accounts/sessions.ts";
import type { SignInThrottle } from "../../accounts/throttle.ts";
import { csrfTokenOf } from "../../accounts/tokens.ts";
import type { Session, User } from "../../store/store.ts";
import type { ClientFacts } from "../client.ts";
import { BODY_CODES } from "../envelope.ts";
import type { App, GatewayContext } from "../server.ts";
import { csrfPassed, sessionToken } from "../session.ts";
import { actorOf } from "./actor.ts";

/**
 * Accounts on the HTTP API (docs/accounts.md): signing in and out with the session cookie, and
 * setting a password with a one-time link, which need no key (these paths are not verified on
 * arrival: isAccountPath); and a portal's invitations, management routes of the profile that a
 * session or a management key calls alike.
 */
const ACCOUNT_PATHS = new Set(["/v1/session", "/v1/sessions", "/v1/password"]);

/** Whether a URL is one of the routes that read the session cookie themselves. */
export function isAccountPath(url: string): boolean {
  const q = url.indexOf("?");
  return ACCOUNT_PATHS.has(q < 0 ? url : url.slice(0, q));
}

const tags = ["accounts"];
const Time = T.String({ format: "date-time" });
const Role = T.Union([T.Literal("ADMIN"), T.Literal("MEMBER")]);
const SignedInView = T.Object({
  user: T.Object({ id: T.String(), email: T.String(), name: T.String(), role: T.String({ description: "owner, staff or user" }) }),
  csrfToken: T.String({ description: "Send it as X-CSRF-Token with every change made with the session cookie" }),
  expiresAt: T.String({ format: "date-time", description: "The end of the session's absolute lifetime" }),
  idleExpiresAt: T.String({ format: "date-time", description: "When the session ends unless it is used before (each use moves it on)" }),
});
const InvitationView = T.Object({ id: T.String(), email: T.String(), role: Role, createdAt: Time, expiresAt: Time });
const INVITATION_CODES = ["PORTAL_NOT_FOUND", "NOT_PORTAL_ADMIN"];
const ORIGIN_CODES = ["ORIGIN_NOT_ALLOWED"];

export interface AccountRouteOptions {
  lifetimes: SessionLifetimes;
  throttle: SignInThrottle;
  client: ClientFacts;
}

export function accountRoutes(app: App, ctx: GatewayContext, options: AccountRouteOptions): void {
  const { kg, envelope, responses, send } = ctx;
  const { lifetimes, throttle, client } = options;

  const baseUrl = (request: FastifyRequest) => (ctx.publicUrl ?? `${client.protocol(request.raw)}://${client.host(request.raw)}`).replace(/\/$/, "");
  /** Secure when the browser talks HTTPS: the request came over it, or the public URL says so (TLS ends at a proxy). */
  const secure = (request: FastifyRequest) => client.protocol(request.raw) === "https" || (ctx.publicUrl?.startsWith("https:") ?? false);
  const cookie = (request: FastifyRequest, value: string, maxAgeSeconds: number) =>
    `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Lax${secure(request) ? "; Secure" : ""}`;

  const view = (user: User, session: Session, token: string) => ({
    user: { id: user.id, email: user.email, name: user.name, role: user.role },
    csrfToken: csrfTokenOf(kg.serverSecret, token),
    expiresAt: new Date(session.expiresAt).toISOString(),
    idleExpiresAt: new Date(idleExpiresAt(session, lifetimes)).toISOString(),
  });
  const signedInReply = (request: FastifyRequest, reply: FastifyReply, signedIn: SignedIn) => {
    reply.header("set-cookie", cookie(request, signedIn.token, Math.floor((signedIn.session.expiresAt - kg.now()) / 1000)));
    return reply.code(201).send(envelope.ok(view(signedIn.user, signedIn.session, signedIn.token)));
  };
  const noStore = (reply: FastifyReply) => reply.header("cache-control", "no-store");

  // These routes serve the dashboard's own pages only: a page of another origin cannot sign a
  // browser in (to an account of the attacker's) or out.
  app.addHook("onRequest", async (request, reply) => {
    if (!isAccountPath(request.url)) return;
    noStore(reply);
    const origin = request.headers.origin;
    if (origin !== undefined && origin !== new URL(baseUrl(request)).origin) return send(reply, "ORIGIN_NOT_ALLOWED", { details: { origin } });
  });

  /** The session the cookie names; with `change`, also its CSRF token. Answers the refusal itself when there is none. */
  const current = async (request: FastifyRequest, reply: FastifyReply, change: boolean) => {
    const token = sessionToken(request.headers);
    const found = token === undefined ? undefined : await resumeSession(kg, token, lifetimes);
    if (!found || token === undefined) {
      if (token !== undefined) reply.header("set-cookie", cookie(request, "", 0));
      send(reply, "SESSION_REQUIRED");
      return undefined;
    }
    if (change && !csrfPassed(kg.serverSecret, request.method, request.headers, token)) {
      send(reply, "CSRF_TOKEN_INVALID");
      return undefined;
    }
    return { ...found, token };
  };

  app.post(
    "/v1/session",
    {
      schema: {
        operationId: "signIn",
        tags,
        summary: "Sign in with email and password: sets the session cookie (a new token every time) and returns the CSRF token",
        security: [],
        body: T.Object({ email: T.String({ maxLength: 320 }), password: T.String({ maxLength: MAX_PASSWORD_LENGTH * 4 }) }, { additionalProperties: false }),
        response: responses({ status: 201, data: SignedInView, codes: [...BODY_CODES, ...ORIGIN_CODES, "INVALID_CREDENTIALS", "SIGN_IN_THROTTLED"] }),
      },
    },
    async (request, reply) => {
      // Whatever cookie came with the request is ignored: a fresh session replaces it (no fixation).
      const email = request.body.email.trim().toLowerCase();
      const ip = client.ip(request.raw);
      const wait = await throttle.refused(email, ip);
      if (wait !== undefined) {
        reply.header("retry-after", String(wait));
        return send(reply, "SIGN_IN_THROTTLED", { retryAfter: wait });
      }
      const signedIn = await signIn(kg, email, request.body.password, lifetimes);
      if (!signedIn) {
        await throttle.failed(email, ip);
        return send(reply, "INVALID_CREDENTIALS");
      }
      return signedInReply(request, reply, signedIn);
    },
  );

  app.get(
    "/v1/session",
    {
      schema: {
        operationId: "getSession",
        tags,
        summary: "The signed-in session (cookie): its user, CSRF token and when it ends",
        security: [{ cookie: [] }],
        response: responses({ data: SignedInView, codes: [...ORIGIN_CODES, "SESSION_REQUIRED"] }),
      },
    },
    async (request, reply) => {
      const found = await current(request, reply, false);
      if (found) return envelope.ok(view(found.user, found.session, found.token));
    },
  );

  app.delete(
    "/v1/session",
    {
      schema: {
        operationId: "signOut",
        tags,
        summary: "Sign out: ends this session and clears the cookie (needs X-CSRF-Token)",
        security: [{ cookie: [] }],
        response: responses({ data: T.Object({ signedOut: T.Integer({ description: "Sessions ended" }) }), codes: [...ORIGIN_CODES, "SESSION_REQUIRED", "CSRF_TOKEN_INVALID"] }),
      },
    },
    async (request, reply) => {
      const found = await current(request, reply, true);
      if (!found) return;
      await signOut(kg, found.session);
      reply.header("set-cookie", cookie(request, "", 0));
      return envelope.ok({ signedOut: 1 });
    },
  );

  app.delete(
    "/v1/sessions",
    {
      schema: {
        operationId: "signOutEverywhere",
        tags,
        summary: "Sign out everywhere: ends every session of the signed-in user and clears the cookie (needs X-CSRF-Token)",
        security: [{ cookie: [] }],
        response: responses({ data: T.Object({ signedOut: T.Integer({ description: "Sessions ended" }) }), codes: [...ORIGIN_CODES, "SESSION_REQUIRED", "CSRF_TOKEN_INVALID"] }),
      },
    },
    async (request, reply) => {
      const found = await current(request, reply, true);
      if (!found) return;
      const signedOut = await signOutEverywhere(kg, found.user.id);
      reply.header("set-cookie", cookie(request, "", 0));
      return envelope.ok({ signedOut });
    },
  );

  app.post(
    "/v1/password",
    {
      schema: {
        operationId: "setPassword",
        tags,
        summary: "Set a password with a one-time link's token (keygate init, users create, users reset-password, an invitation); signs in",
        security: [],
        body: T.Object({ token: T.String({ maxLength: 100 }), password: T.String({ maxLength: MAX_PASSWORD_LENGTH * 4 }) }, { additionalProperties: false }),
        response: responses({ status: 201, data: SignedInView, codes: [...BODY_CODES, ...ORIGIN_CODES, "LINK_INVALID", "INVITATION_NEEDS_SIGN_IN"] }),
      },
    },
    async (request, reply) => {
      const user = await setPasswordWithLink(kg, request.body.token, request.body.password, client.ip(request.raw));
      return signedInReply(request, reply, await startSession(kg, user, lifetimes));
    },
  );

  const PortalId = T.Object({ id: T.String() });
  app.post(
    "/v1/portals/:id/invitations",
    {
      schema: {
        operationId: "createInvitation",
        tags,
        summary: "Invite someone to the portal by email (admins): the one-time link is in the answer, once",
        params: PortalId,
        body: T.Object({ email: T.String({ maxLength: 320 }), role: T.Optional(Role) }, { additionalProperties: false }),
        response: responses({
          status: 201,
          data: T.Object({ id: T.String(), email: T.String(), role: Role, url: T.String({ description: "The one-time link: <public URL>/set-password?token=…" }), createdAt: Time, expiresAt: Time }),
          codes: [...BODY_CODES, ...INVITATION_CODES, "ALREADY_PORTAL_MEMBER", "SESSION_REQUIRED", "CSRF_TOKEN_INVALID"],
        }),
      },
    },
    async (request, reply) => {
      const { invitation, token } = await invite(kg, await actorOf(kg, request), request.params.id, request.body);
      return reply.code(201).send(envelope.ok({ ...invitationView(invitation), url: linkUrl(baseUrl(request), token) }));
    },
  );

  app.get(
    "/v1/portals/:id/invitations",
    {
      schema: {
        operationId: "listInvitations",
        tags,
        summary: "The portal's pending invitations (admins), without their links",
        params: PortalId,
        response: responses({ data: T.Array(InvitationView), codes: [...INVITATION_CODES, "SESSION_REQUIRED"] }),
      },
    },
    async (request) => envelope.ok((await listInvitations(kg, await actorOf(kg, request), request.params.id)).map(invitationView)),
  );

  app.delete(
    "/v1/portals/:id/invitations/:invitationId",
    {
      schema: {
        operationId: "withdrawInvitation",
        tags,
        summary: "Withdraw an invitation (admins): its link stops working",
        params: T.Object({ id: T.String(), invitationId: T.String() }),
        response: responses({ data: T.Object({ id: T.String(), withdrawn: T.Literal(true) }), codes: [...INVITATION_CODES, "INVITATION_NOT_FOUND", "SESSION_REQUIRED", "CSRF_TOKEN_INVALID"] }),
      },
    },
    async (request) => {
      await withdrawInvitation(kg, await actorOf(kg, request), request.params.id, request.params.invitationId);
      return envelope.ok({ id: request.params.invitationId, withdrawn: true });
    },
  );

  app.post(
    "/v1/invitations/accept",
    {
      schema: {
        operationId: "acceptInvitation",
        tags,
        summary: "Accept an invitation made for your email (signed in, or with your management key): you join the portal",
        body: T.Object({ token: T.String({ maxLength: 100 }) }, { additionalProperties: false }),
        response: responses({ data: T.Object({ portalId: T.String(), role: Role }), codes: [...BODY_CODES, "LINK_INVALID", "INVITATION_FOR_ANOTHER_USER", "SESSION_REQUIRED", "CSRF_TOKEN_INVALID"] }),
      },
    },
    async (request) => envelope.ok(await acceptInvitation(kg, await actorOf(kg, request), request.body.token)),
  );
}

function invitationView(i: { id: string; email: string; role: "ADMIN" | "MEMBER"; createdAt: number; expiresAt: number }) {
  return { id: i.id, email: i.email, role: i.role, createdAt: new Date(i.createdAt).toISOString(), expiresAt: new Date(i.expiresAt).toISOString() };
}
