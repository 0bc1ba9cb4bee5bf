/**
 * The sandbox portal's Bitrix24 OAuth 2.0 (issue 15 §2), as Bitrix24's "full OAuth protocol"
 * works (apidocs.bitrix24.com/settings/oauth): the user opens the portal's
 *
 *     GET /sandbox/<portal id>/oauth/authorize/?client_id=…&response_type=code&redirect_uri=…&state=…
 *
 * and is sent back to redirect_uri?code=…&state=…&domain=…&member_id=…&scope=…&server_domain=…;
 * the application's server redeems the code (valid 30 seconds, once) and later refreshes at the
 * sandbox's stand-in for https://oauth.bitrix.info/oauth/token/:
 *
 *     GET|POST /sandbox/oauth/token/?grant_type=authorization_code&client_id=…&client_secret=…&code=…
 *     GET|POST /sandbox/oauth/token/?grant_type=refresh_token&client_id=…&client_secret=…&refresh_token=…
 *
 * answering {access_token, expires, expires_in: 3600, scope, domain, server_endpoint, status,
 * client_endpoint, member_id, user_id, refresh_token}. An access token lives an hour, a refresh
 * token 28 days or until its first use, which also ends the access token issued with it. REST
 * calls then go to client_endpoint with auth=<access_token>: an expired one answers 401
 * expired_token, an unknown or ended one 401 invalid_token.
 *
 * Each sandbox portal has one local application, its credentials derived from the server secret
 * (sandboxApp). The user "signs in to the portal" by being signed in to keygate as a member of the
 * portal (the sandbox's users are keygate's members, src/upstream/sandbox/setup.ts sandboxUserFor).
 * Codes and tokens are kept in this process's memory: a restart, or another node, does not know
 * them (the user authorizes again).
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { BitrixFault } from "./fault.ts";

export const ACCESS_TTL_MS = 3_600_000;
export const REFRESH_TTL_MS = 28 * 86_400_000;
export const CODE_TTL_MS = 30_000;
/** Bitrix24's token server names itself so in every answer. */
export const SERVER_DOMAIN = "oauth.bitrix.info";

/** The sandbox portal's local application: client_id "local.…" and client_secret, derived from the server secret. */
export function sandboxApp(secret: string, portalId: string): { clientId: string; clientSecret: string } {
  const mac = (purpose: string) => createHmac("sha256", secret).update(`keygate sandbox app ${purpose}\u0000${portalId}`).digest();
  const id = mac("id").toString("hex");
  return { clientId: `local.${id.slice(0, 14)}.${id.slice(14, 22)}`, clientSecret: mac("secret").toString("base64url").slice(0, 50) };
}

/** The portal's member_id: 32 hex characters that name it whatever its domain. */
export function sandboxMemberId(portalId: string): string {
  return createHash("sha256").update(`keygate sandbox member\u0000${portalId}`).digest("hex").slice(0, 32);
}

const digest = (token: string) => createHash("sha256").update(token).digest("hex");
const newToken = () => randomBytes(32).toString("hex");

interface Code {
  portalId: string;
  userId: number;
  clientId: string;
  expiresAt: number;
}
interface Access {
  portalId: string;
  userId: number;
  expiresAt: number;
}
interface Refresh {
  portalId: string;
  userId: number;
  clientId: string;
  expiresAt: number;
  accessDigest: string;
}

/** Who an access token acts for. */
export interface OAuthCaller {
  portalId: string;
  userId: number;
}

export interface TokenAnswer {
  access_token: string;
  expires: number;
  expires_in: number;
  scope: string;
  domain: string;
  server_endpoint: string;
  status: "L";
  client_endpoint: string;
  member_id: string;
  user_id: number;
  refresh_token: string;
}

/** Bitrix24's token-server refusals: {error, error_description}. */
const tokenFault = (status: number, error: string, description: string) => new BitrixFault(status, error, description);

export class SandboxOAuth {
  readonly #codes = new Map<string, Code>();
  readonly #access = new Map<string, Access>();
  readonly #refresh = new Map<string, Refresh>();
  readonly #secret: string;
  readonly #now: () => number;

  constructor(secret: string, now: () => number) {
    this.#secret = secret;
    this.#now = now;
  }

  /** The user allowed the application: a code for redirect_uri, or a fault when client_id is not the portal's application. */
  authorize(portalId: string, clientId: string | undefined, userId: number): string {
    if (clientId !== sandboxApp(this.#secret, portalId).clientId) throw tokenFault(400, "invalid_client", "Application not found");
    this.#prune();
    const code = newToken();
    this.#codes.set(digest(code), { portalId, userId, clientId, expiresAt: this.#now() + CODE_TTL_MS });
    return code;
  }

  /** The token endpoint: grant_type authorization_code or refresh_token, with the application's credentials. */
  token(params: Record<string, unknown>, endpoints: { clientEndpoint: (portalId: string) => string; serverEndpoint: string }): TokenAnswer {
    const text = (name: string) => (typeof params[name] === "string" ? (params[name] as string) : undefined);
    const grant = text("grant_type");
    const clientId = text("client_id");
    const checkClient = (portalId: string, expected: string) => {
      const app = sandboxApp(this.#secret, portalId);
      if (clientId !== expected || clientId !== app.clientId || text("client_secret") !== app.clientSecret) throw tokenFault(401, "invalid_client", "Invalid client credentials");
    };
    const now = this.#now();
    let owner: { portalId: string; userId: number };
    if (grant === "authorization_code") {
      const key = digest(text("code") ?? "");
      const code = this.#codes.get(key);
      if (code === undefined || now >= code.expiresAt) throw tokenFault(400, "invalid_grant", "Invalid authorization code");
      checkClient(code.portalId, code.clientId);
      this.#codes.delete(key);
      owner = code;
    } else if (grant === "refresh_token") {
      const key = digest(text("refresh_token") ?? "");
      const refresh = this.#refresh.get(key);
      if (refresh === undefined || now >= refresh.expiresAt) throw tokenFault(400, "invalid_grant", "Invalid refresh token");
      checkClient(refresh.portalId, refresh.clientId);
      // A refresh token serves once, and ends the access token issued with it.
      this.#refresh.delete(key);
      this.#access.delete(refresh.accessDigest);
      owner = refresh;
    } else {
      throw tokenFault(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token");
    }
    return this.#issue(owner, clientId!, endpoints);
  }

  /**
   * Tokens for the portal's user as Bitrix24 posts them to a placement handler when the user opens
   * the application (AUTH_ID, REFRESH_ID): the portal's page that opens a placement.
   */
  issue(portalId: string, userId: number, endpoints: { clientEndpoint: (portalId: string) => string; serverEndpoint: string }): TokenAnswer {
    this.#prune();
    return this.#issue({ portalId, userId }, sandboxApp(this.#secret, portalId).clientId, endpoints);
  }

  #issue(owner: { portalId: string; userId: number }, clientId: string, endpoints: { clientEndpoint: (portalId: string) => string; serverEndpoint: string }): TokenAnswer {
    const now = this.#now();
    const access = newToken();
    const refresh = newToken();
    this.#access.set(digest(access), { portalId: owner.portalId, userId: owner.userId, expiresAt: now + ACCESS_TTL_MS });
    this.#refresh.set(digest(refresh), { portalId: owner.portalId, userId: owner.userId, clientId, expiresAt: now + REFRESH_TTL_MS, accessDigest: digest(access) });
    return {
      access_token: access,
      expires: Math.floor((now + ACCESS_TTL_MS) / 1000),
      expires_in: ACCESS_TTL_MS / 1000,
      scope: "app",
      domain: SERVER_DOMAIN,
      server_endpoint: endpoints.serverEndpoint,
      status: "L",
      client_endpoint: endpoints.clientEndpoint(owner.portalId),
      member_id: sandboxMemberId(owner.portalId),
      user_id: owner.userId,
      refresh_token: refresh,
    };
  }

  /** The caller of a REST request with auth=<access_token>; 401 expired_token or invalid_token. */
  caller(accessToken: string): OAuthCaller {
    const access = this.#access.get(digest(accessToken));
    if (access === undefined) throw new BitrixFault(401, "invalid_token", "The access token provided is invalid.");
    if (this.#now() >= access.expiresAt) throw new BitrixFault(401, "expired_token", "The access token provided has expired.");
    return { portalId: access.portalId, userId: access.userId };
  }

  /** Drops what has expired, so memory holds live codes and tokens only; an access token a day after, so it still answers expired_token meanwhile. */
  #prune(): void {
    const now = this.#now();
    for (const [map, kept] of [[this.#codes, 0], [this.#access, 86_400_000], [this.#refresh, 0]] as [Map<string, { expiresAt: number }>, number][]) {
      for (const [key, value] of map) if (now >= value.expiresAt + kept) map.delete(key);
    }
  }
}
