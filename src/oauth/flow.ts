import { createHash, randomBytes, randomUUID } from "node:crypto";
import { KeygateError } from "../core/errors.ts";
import { keyDigest } from "../core/keys/format.ts";
import type { CachedKey, KeyCache } from "../gateway/key-cache.ts";
import type { Keygate } from "../manage/context.ts";
import type { OAuthGrant, Portal, User } from "../store/store.ts";
import { sandboxUserFor } from "../upstream/sandbox/index.ts";
import { bitrix24AppOf } from "./bitrix24-flow.ts";
import { SESSION_TTL_MS, newAppSession, secretDigest } from "./sessions.ts";

/**
 * keygate as the OAuth 2.0 authorization server of its authorization keys (docs/oauth.md):
 * RFC 6749's authorization-code grant for public clients, PKCE (RFC 7636, S256 only) and the
 * Security BCP (RFC 9700) where seed 003 is silent. The routes are in routes.ts; these are the
 * rules.
 */

/** A code lives at most this long (RFC 6749 §4.1.2 recommends at most 10 minutes; the issue asks 60 s). */
export const CODE_TTL_MS = 60_000;
export const STATE_MIN = 16;
export const STATE_MAX = 512;
/** RFC 7636 §4.1: 43 to 128 unreserved characters. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
/** A S256 challenge: the base64url SHA-256 of a verifier, 43 characters. */
const CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
/** Expired sessions keep answering TOKEN_EXPIRED this long before they are deleted; used and expired codes go after an hour. */
export const EXPIRED_SESSIONS_KEPT_MS = 7 * 86_400_000;
export const EXPIRED_GRANTS_KEPT_MS = 3_600_000;
/** How often a node deletes them, at most (on the next grant after that). */
const PRUNE_EVERY_MS = 60_000;
const lastPrune = new WeakMap<object, number>();
/** Redirect URIs an app registers at most, and their length. */
export const MAX_REDIRECT_URIS = 20;
const MAX_URI_LENGTH = 2_000;

/** The query of GET /v1/oauth/authorize (and the form of its POST), as sent. */
export interface AuthorizeParams {
  app_key?: string;
  /** app_key's OAuth name (RFC 6749 §4.1.1), as OAuth client libraries send it. */
  client_id?: string;
  /** RFC 6749 §4.1.1: `code`, the only response type; may be left out. */
  response_type?: string;
  state?: string;
  redirect_uri?: string;
  scope?: string;
  code_challenge?: string;
  code_challenge_method?: string;
}

/** An authorization request that passed every check that does not need the user. */
export interface AuthorizeRequest {
  key: CachedKey;
  portal: Portal;
  state: string;
  redirectUri: string | null;
  codeChallenge: string | null;
  /** What the app may do: its key's scopes (a session carries them all; `scope` may only name some of them). */
  scopes: string[];
}

const invalid = (param: string, message: string) => new KeygateError("INVALID_REQUEST", { message: `${param}: ${message}`, param });

/** Checks a state parameter (the client's CSRF token, RFC 6749 §10.12): present, 16 to 512 characters. */
export function checkState(state: string | undefined): string {
  if (state === undefined || state === "") throw invalid("state", "Required");
  if (state.length < STATE_MIN || state.length > STATE_MAX) throw invalid("state", `must be ${STATE_MIN} to ${STATE_MAX} characters (a random string you verify on return)`);
  return state;
}

/** The authorization key an app_key names, when it is one that may sign users in now; else undefined. */
export async function appKeyOf(kg: Keygate, cache: KeyCache, raw: string | undefined): Promise<CachedKey | undefined> {
  if (raw === undefined || raw.length > kg.format.maxLength) return undefined;
  const type = kg.format.parse(raw);
  if (type === undefined || kg.profile.keyType(type)?.sessionUser !== true) return undefined;
  const digest = keyDigest(kg.serverSecret, raw);
  const key = cache.get(digest) ?? (await cache.load(digest));
  if (key === undefined || key.record.status !== "ACTIVE") return undefined;
  if (key.record.expiresAt !== null && kg.now() >= key.record.expiresAt) return undefined;
  return key;
}

/**
 * The checks of an authorization request whose failure must not redirect (RFC 6749 §4.1.2.1):
 * state, the app key, the redirect URI (exact string match, RFC 9700 §4.1.3); then PKCE and scope.
 */
export async function checkAuthorize(kg: Keygate, cache: KeyCache, q: AuthorizeParams): Promise<AuthorizeRequest> {
  const state = checkState(q.state);
  if (q.app_key !== undefined && q.client_id !== undefined && q.app_key !== q.client_id) throw invalid("client_id", "names another app than app_key");
  const appKey = q.app_key ?? q.client_id;
  if (appKey === undefined || appKey === "") throw invalid("app_key", "Required");
  if (q.response_type !== undefined && q.response_type !== "code") throw invalid("response_type", "must be code (the only response type)");
  const key = await appKeyOf(kg, cache, appKey);
  if (key === undefined) throw new KeygateError("INVALID_API_KEY", { message: "app_key is not an active authorization key (vibe_app_): unknown, revoked or expired." });
  const redirectUri = q.redirect_uri === undefined || q.redirect_uri === "" ? null : q.redirect_uri;
  if (redirectUri !== null && !(await kg.store.getRedirectUris(key.record.id)).includes(redirectUri)) {
    throw new KeygateError("INVALID_REDIRECT_URI", { param: "redirect_uri" });
  }
  let codeChallenge: string | null = null;
  if (q.code_challenge !== undefined && q.code_challenge !== "") {
    if ((q.code_challenge_method ?? "plain") !== "S256") throw invalid("code_challenge_method", "must be S256 (the plain method is not accepted)");
    if (!CHALLENGE.test(q.code_challenge)) throw invalid("code_challenge", "must be the base64url SHA-256 of the code verifier (43 characters)");
    codeChallenge = q.code_challenge;
  } else if (q.code_challenge_method !== undefined && q.code_challenge_method !== "") throw invalid("code_challenge", "Required with code_challenge_method");
  const scopes = key.record.scopes;
  if (q.scope !== undefined && q.scope !== "") {
    const outside = q.scope.split(/[\s,]+/).filter((s) => s !== "" && !scopes.includes(s));
    if (outside.length > 0) throw invalid("scope", `${outside.join(", ")} is not among the app's scopes (${scopes.join(", ")})`);
  }
  const portal = key.record.portalId === null ? undefined : await kg.store.getPortal(key.record.portalId);
  if (portal === undefined) throw new KeygateError("INVALID_API_KEY", { message: "The app's portal no longer exists." });
  return { key, portal, state, redirectUri, codeChallenge, scopes };
}

/**
 * What the signed-in user may do with the request: only members of the app's portal authorize
 * it, and only on a portal whose users keygate can act as: the sandbox, or a Bitrix24 portal whose
 * upstream carries the Bitrix24 application keygate signs its users in with (bitrix24-flow.ts).
 */
export async function checkUser(kg: Keygate, request: AuthorizeRequest, user: User): Promise<void> {
  if ((await kg.store.getMember(request.portal.id, user.id)) === undefined) {
    throw new KeygateError("NOT_PORTAL_MEMBER", { message: `Only members of ${request.portal.domain} can authorize this app: you are signed in as ${user.email}.` });
  }
  const upstream = request.portal.upstream;
  if (upstream?.kind === "sandbox" || (upstream?.kind === "bitrix24" && bitrix24AppOf(request.portal) !== undefined)) return;
  throw new KeygateError("PORTAL_NOT_LINKED", {
    message:
      upstream?.kind === "bitrix24"
        ? "Apps sign users in on this portal through its Bitrix24 application, and it has none: a portal admin sets upstream.clientId and upstream.clientSecret (PATCH /v1/portals/:id; docs/oauth.md)."
        : "Apps sign users in on sandbox portals and on Bitrix24 portals with an application (upstream.clientId, upstream.clientSecret) only (docs/oauth.md).",
  });
}

/** What a grant is issued for: the app's key, its portal, and the request's state, redirect URI and PKCE challenge. */
export interface GrantRequest {
  keyId: string;
  portalId: string;
  state: string;
  redirectUri: string | null;
  codeChallenge: string | null;
}

/** An authorization request as a grant's. */
export function grantRequestOf(request: AuthorizeRequest): GrantRequest {
  return { keyId: request.key.record.id, portalId: request.portal.id, state: request.state, redirectUri: request.redirectUri, codeChallenge: request.codeChallenge };
}

/**
 * The user allowed the app: a grant (code) bound to the app, the user, the redirect URI and the
 * PKCE challenge; returns the code. The user acts as `bitrixUserId` on the portal (from their
 * Bitrix24 tokens), or as their sandbox user. `revoked` is called when ended sessions were deleted meanwhile.
 */
export async function allow(kg: Keygate, request: GrantRequest, user: User, revoked: () => void, bitrixUserId?: number): Promise<string> {
  const now = kg.now();
  bitrixUserId ??= await sandboxUserFor(kg.store, request.portalId, user, kg.serverSecret, now);
  const code = randomBytes(32).toString("base64url");
  const grant: OAuthGrant = {
    id: randomUUID(),
    codeDigest: secretDigest(code),
    keyId: request.keyId,
    userId: user.id,
    portalId: request.portalId,
    bitrixUserId,
    redirectUri: request.redirectUri,
    stateDigest: secretDigest(request.state),
    codeChallenge: request.codeChallenge,
    createdAt: now,
    expiresAt: now + CODE_TTL_MS,
    usedAt: null,
  };
  await kg.store.createGrant(grant);
  // Ended grants and sessions do not pile up: deleted now and then, by whichever node issues a grant.
  if (now - (lastPrune.get(kg.store) ?? -Infinity) >= PRUNE_EVERY_MS) {
    lastPrune.set(kg.store, now);
    if ((await kg.store.pruneOAuth(now - EXPIRED_GRANTS_KEPT_MS, now - EXPIRED_SESSIONS_KEPT_MS)).sessions > 0) revoked();
  }
  return code;
}

/** Where the browser goes after the decision: the redirect URI with the answer's parameters added (its own query kept), or keygate's page. */
export function redirectTarget(request: { redirectUri: string | null; state: string }, answer: Record<string, string>, completeUrl: string): string {
  const url = new URL(request.redirectUri ?? completeUrl);
  for (const [name, value] of Object.entries({ ...answer, state: request.state })) url.searchParams.append(name, value);
  return request.redirectUri === null ? `${url.pathname}${url.search}` : url.href;
}

/** An RFC 6749 §5.2 token error. */
export class TokenError extends Error {
  readonly error: "invalid_request" | "invalid_client" | "invalid_grant" | "unsupported_grant_type";
  readonly status: number;
  constructor(error: TokenError["error"], description: string) {
    super(description);
    this.error = error;
    this.status = error === "invalid_client" ? 401 : 400;
  }
}

export interface IssuedSession {
  accessToken: string;
  expiresIn: number;
}

/**
 * Redeems a grant for a session. A grant already redeemed is refused and the session its first
 * redemption issued is revoked (RFC 6749 §4.1.2): `revoked` is then called, so caches drop it.
 */
async function redeem(kg: Keygate, grant: OAuthGrant, revoked: () => void): Promise<IssuedSession> {
  const now = kg.now();
  const { token, session } = newAppSession(grant, grant.id, now);
  if ((await kg.store.redeemGrant(grant.id, session, now)) === "replayed") {
    revoked();
    throw new TokenError("invalid_grant", "The code was used already: the session issued for it is revoked.");
  }
  return { accessToken: token, expiresIn: SESSION_TTL_MS / 1000 };
}

/** The body of POST /v1/oauth/token, as sent (JSON or a form); client_id is app_key's OAuth name. */
export interface TokenParams {
  grant_type?: string;
  app_key?: string;
  client_id?: string;
  code?: string;
  redirect_uri?: string;
  code_verifier?: string;
}

/** POST /v1/oauth/token: the authorization-code grant, the only one (sessions are never refreshed). */
export async function exchangeCode(kg: Keygate, cache: KeyCache, p: TokenParams, revoked: () => void): Promise<IssuedSession> {
  if (p.grant_type === undefined || p.grant_type === "") throw new TokenError("invalid_request", "grant_type: Required");
  if (p.grant_type !== "authorization_code") throw new TokenError("unsupported_grant_type", "Only authorization_code is supported: sessions are never refreshed; send the user through the flow again.");
  if (p.app_key !== undefined && p.client_id !== undefined && p.app_key !== p.client_id) throw new TokenError("invalid_request", "app_key and client_id name different apps.");
  const appKey = p.app_key ?? p.client_id;
  if (appKey === undefined || appKey === "") throw new TokenError("invalid_request", "app_key: Required");
  if (p.code === undefined || p.code === "") throw new TokenError("invalid_request", "code: Required");
  const key = await appKeyOf(kg, cache, appKey);
  if (key === undefined) throw new TokenError("invalid_client", "app_key is not an active authorization key: unknown, revoked or expired.");
  const grant = await kg.store.getGrantByCode(secretDigest(p.code));
  // A code of another app is as good as no code to this one (RFC 6749 §4.1.3: it must have been issued to this client).
  if (grant === undefined || grant.keyId !== key.record.id || grant.redirectUri === null) throw new TokenError("invalid_grant", "The code is not valid for this app.");
  if (grant.usedAt !== null) return redeem(kg, grant, revoked);
  if (kg.now() >= grant.expiresAt) throw new TokenError("invalid_grant", "The code has expired (codes live 60 seconds).");
  if ((p.redirect_uri ?? "") !== grant.redirectUri) throw new TokenError("invalid_grant", "redirect_uri is not the one the code was issued for.");
  if (grant.codeChallenge !== null) {
    if (p.code_verifier === undefined || !VERIFIER.test(p.code_verifier)) throw new TokenError("invalid_grant", "code_verifier: Required, 43 to 128 unreserved characters (PKCE).");
    if (createHash("sha256").update(p.code_verifier).digest("base64url") !== grant.codeChallenge) throw new TokenError("invalid_grant", "code_verifier does not match the code_challenge (PKCE).");
  } else if (p.code_verifier !== undefined) {
    // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is a downgrade attempt.
    throw new TokenError("invalid_grant", "The code was issued without a code_challenge: a code_verifier cannot be checked.");
  }
  return redeem(kg, grant, revoked);
}

/** GET /v1/oauth/poll: the zero-config flow's session, once, after the user allowed the app; undefined while they have not. */
export async function poll(kg: Keygate, key: CachedKey, state: string, revoked: () => void): Promise<IssuedSession | undefined> {
  const grant = await kg.store.getGrantByState(key.record.id, secretDigest(state));
  if (grant === undefined || grant.redirectUri !== null) return undefined;
  if (grant.usedAt !== null) {
    throw new KeygateError("INVALID_REQUEST", { message: "state: this authorization's session was retrieved already (retrieval is single-use).", param: "state" });
  }
  if (kg.now() >= grant.expiresAt) throw new KeygateError("INVALID_REQUEST", { message: "state: the authorization expired before it was retrieved: start again.", param: "state" });
  try {
    return await redeem(kg, grant, revoked);
  } catch (error) {
    if (error instanceof TokenError) throw new KeygateError("INVALID_REQUEST", { message: "state: this authorization's session was retrieved already (retrieval is single-use).", param: "state" });
    throw error;
  }
}

/** POST /v1/oauth/revoke (RFC 7009): ends the session; the same answer whether or not there was one. */
export async function revoke(kg: Keygate, token: string, appKey: CachedKey | undefined, revoked: () => void): Promise<void> {
  const session = await kg.store.getAppSessionByDigest(secretDigest(token));
  if (session === undefined) return;
  // RFC 7009 §2.1: a client names itself: a session of another app is not this app's to end.
  if (appKey !== undefined && session.keyId !== appKey.record.id) return;
  if (await kg.store.deleteAppSession(session.id)) revoked();
}

/** Checks a list of redirect URIs for an app: absolute http(s) URLs without a fragment (RFC 6749 §3.1.2), https unless on the loopback. */
export function checkRedirectUris(uris: string[]): string[] {
  if (uris.length > MAX_REDIRECT_URIS) throw new KeygateError("VALIDATION_ERROR", { message: `redirectUris: at most ${MAX_REDIRECT_URIS}`, param: "redirectUris" });
  for (const [i, uri] of uris.entries()) {
    const param = `redirectUris[${i}]`;
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new KeygateError("VALIDATION_ERROR", { message: `${param}: not an absolute URL`, param });
    }
    const loopback = url.hostname === "localhost" || url.hostname === "127.0.0.1" || url.hostname === "[::1]";
    if (uri.length > MAX_URI_LENGTH || url.hash !== "" || uri.includes("#")) throw new KeygateError("VALIDATION_ERROR", { message: `${param}: must not have a fragment (#)`, param });
    if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) {
      throw new KeygateError("VALIDATION_ERROR", { message: `${param}: must be https (http only on localhost, 127.0.0.1 or [::1])`, param });
    }
  }
  return [...new Set(uris)];
}
