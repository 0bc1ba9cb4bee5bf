import type { IncomingHttpHeaders } from "node:http";
import { type SessionLifetimes, SESSION_COOKIE, resumeSession } from "../accounts/sessions.ts";
import { csrfTokenOf, sameToken } from "../accounts/tokens.ts";
import { decide } from "../core/verify/decide.ts";
import type { Keygate } from "../manage/context.ts";
import type { Session, User } from "../store/store.ts";
import type { Arrival, Refusal, Verification } from "./auth.ts";
import type { CachedKey } from "./key-cache.ts";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const COOKIE = new RegExp(`(?:^|;\\s*)${SESSION_COOKIE}=([A-Za-z0-9_-]{1,100})(?:;|$)`);

/** The session token in a request's Cookie header, if any. */
export function sessionToken(headers: IncomingHttpHeaders): string | undefined {
  const cookie = headers.cookie;
  return cookie === undefined ? undefined : COOKIE.exec(cookie)?.[1];
}

/** Whether a request made with the session cookie carries its CSRF token (a safe method needs none). */
export function csrfPassed(serverSecret: string, method: string, headers: IncomingHttpHeaders, token: string): boolean {
  if (SAFE_METHODS.has(method)) return true;
  const sent = headers["x-csrf-token"];
  return typeof sent === "string" && sameToken(sent, csrfTokenOf(serverSecret, token));
}

/**
 * A signed-in session on the management API (docs/accounts.md): it acts exactly as a management
 * key of its user holding every management scope of the profile would — the same route table,
 * the same decision (src/core/verify/decide.ts), the same rules downstream — plus the CSRF rule
 * for changes. Asked only for requests that bring no key (a key header wins over the cookie).
 */
export function sessionAuthenticator(kg: Keygate, lifetimes: SessionLifetimes) {
  const { profile } = kg;
  const { keyType: type, scopes } = profile.management;
  const compiled = profile.compileKey(type.id, { scopes, issued: scopes });

  /** The stand-in key a session acts as: never stored, no secret, no limit of its own. */
  const keyOf = (user: User, session: Session): CachedKey => ({
    record: {
      id: `session:${session.id}`,
      type: type.id,
      name: "Signed-in session",
      ownerId: user.id,
      portalId: null,
      digest: session.tokenDigest,
      keyPrefix: "",
      keySuffix: "",
      scopes,
      issuedScopes: scopes,
      status: "ACTIVE",
      accessMode: "READWRITE",
      ipWhitelist: [],
      rateLimit: null,
      tier: null,
      expiresAt: session.expiresAt,
      createdAt: session.createdAt,
      updatedAt: session.createdAt,
      lastUsedAt: null,
      rotatedFromId: null,
      rotatedToId: null,
      version: 1,
    },
    verified: { id: `session:${session.id}`, name: "Signed-in session", status: "ACTIVE", expiresAt: session.expiresAt, accessMode: "READWRITE", keyType: type, ipAllow: null, scopes: compiled },
    derived: new Map(),
  });

  return async (arrival: Arrival, token: string): Promise<Verification> => {
    const clientIp = arrival.clientIp;
    const refuse = (refusal: Refusal, key?: CachedKey): Verification => ({ refusal, key, route: undefined, clientIp });
    const found = await resumeSession(kg, token, lifetimes);
    if (!found) return refuse({ code: "SESSION_REQUIRED" });
    const key = keyOf(found.user, found.session);
    const match = profile.match(arrival.method, arrival.url);
    if (!match) {
      const allow = profile.methodsAt(arrival.url);
      return refuse(allow.length === 0 ? { code: "ROUTE_NOT_FOUND" } : { code: "METHOD_NOT_ALLOWED", message: `${arrival.method} is not allowed here: ${allow.join(", ")}.`, details: { allow } }, key);
    }
    // GET /v1/me describes the key a request carries; a session has none (GET /v1/session describes it).
    if (match.value.path === "/v1/me") return refuse({ code: "MISSING_API_KEY", message: "GET /v1/me describes an API key; a signed-in session is described by GET /v1/session." }, key);
    if (!csrfPassed(kg.serverSecret, arrival.method, arrival.headers, token)) return refuse({ code: "CSRF_TOKEN_INVALID" }, key);
    const session = { id: found.session.id, userId: found.user.id };
    const denial = decide(profile, key.verified, { method: arrival.method, route: match.value, clientIp, hasSession: false, now: kg.now() });
    if (denial) return { refusal: denial, key, route: match.value, clientIp, session };
    return { refusal: undefined, key, route: match.value, params: match.params, clientIp, session };
  };
}
