import type { IncomingHttpHeaders } from "node:http";
import type { FastifyRequest } from "fastify";
import { type KeyFormat, keyDigest } from "../core/keys/format.ts";
import type { Profile, Route } from "../core/profile/profile.ts";
import { decide } from "../core/verify/decide.ts";
import { normalizeIp } from "../limits/ip.ts";
import type { CachedKey, KeyCache } from "./key-cache.ts";

/** What an authenticated request carries to its handler. */
export interface AuthContext {
  key: CachedKey;
  route: Route;
  params: Record<string, string>;
  clientIp: string;
}

declare module "fastify" {
  interface FastifyRequest {
    auth: AuthContext;
  }
}

export interface Refusal {
  code: string;
  message?: string;
  hint?: string;
  details?: Record<string, unknown>;
}

type Credential = { raw: string; viaBearer: boolean; session: string | undefined } | Refusal;

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * X-Api-Key carries the key; Authorization: Bearer carries the key for key types that do not
 * act for a session user, or the session token beside an X-Api-Key for those that do.
 */
export function extractCredential(headers: IncomingHttpHeaders, format: KeyFormat): Credential {
  const header = headers["x-api-key"];
  // Node joins repeated headers with ", "; keys never contain a comma.
  if (Array.isArray(header) || header?.includes(",")) return { code: "AMBIGUOUS_CREDENTIALS", message: "Send one X-Api-Key header." };
  const apiKey = header?.trim() || undefined;
  const bearer = BEARER.exec(headers.authorization ?? "")?.[1];
  if (apiKey !== undefined) {
    if (bearer !== undefined && bearer !== apiKey && format.parse(bearer) !== undefined) return { code: "AMBIGUOUS_CREDENTIALS" };
    return { raw: apiKey, viaBearer: false, session: bearer === apiKey ? undefined : bearer };
  }
  if (bearer !== undefined) return { raw: bearer, viaBearer: true, session: undefined };
  return { code: "MISSING_API_KEY" };
}

/** What verification found: the key (when one was recognised), the route, the address, and any refusal. */
export interface Verification {
  refusal: Refusal | undefined;
  key: CachedKey | undefined;
  route: Route | undefined;
  clientIp: string;
}

export interface Authenticator {
  /** Verifies a request; when it passes, request.auth is set. */
  authenticate(request: FastifyRequest): Promise<Verification>;
}

export function authenticator(options: { profile: Profile; format: KeyFormat; serverSecret: string; cache: KeyCache; now: () => number; touched: (keyId: string, at: number) => void }): Authenticator {
  const { profile, format, serverSecret, cache, now } = options;
  // Sockets keep their address; normalise it once per connection.
  const socketIps = new WeakMap<object, string>();
  const clientIp = (request: FastifyRequest): string => {
    if (request.ip !== request.socket.remoteAddress) return normalizeIp(request.ip) ?? request.ip;
    let ip = socketIps.get(request.socket);
    if (ip === undefined) {
      ip = normalizeIp(request.ip) ?? request.ip;
      socketIps.set(request.socket, ip);
    }
    return ip;
  };

  return {
    async authenticate(request) {
      const ip = clientIp(request);
      const refuse = (refusal: Refusal, key?: CachedKey, route?: Route): Verification => ({ refusal, key, route, clientIp: ip });
      const credential = extractCredential(request.headers, format);
      if ("code" in credential) return refuse(credential);
      const keyTypeId = format.parse(credential.raw);
      if (keyTypeId === undefined) return refuse({ code: "INVALID_API_KEY" });
      const keyType = profile.keyType(keyTypeId)!;
      if (keyType.sessionUser && credential.viaBearer) {
        return refuse({ code: "INVALID_API_KEY", message: `${keyType.label}s (${keyType.prefix}) go in X-Api-Key; Authorization: Bearer carries the session token.` });
      }
      const digest = keyDigest(serverSecret, credential.raw);
      const key = cache.get(digest) ?? (await cache.load(digest));
      if (!key) return refuse({ code: "INVALID_API_KEY" });
      const match = profile.match(request.method, request.url);
      if (!match) return refuse({ code: "ROUTE_NOT_FOUND" }, key);
      if (keyType.sessionUser && credential.session !== undefined) {
        // No session token is valid until keygate issues sessions (OAuth for authorization keys).
        return refuse({ code: "INVALID_SESSION" }, key, match.value);
      }
      const at = now();
      const denial = decide(profile, key.verified, { method: request.method, route: match.value, clientIp: ip, hasSession: false, now: at });
      if (denial) return refuse(denial, key, match.value);
      request.auth = { key, route: match.value, params: match.params, clientIp: ip };
      options.touched(key.record.id, at);
      return { refusal: undefined, key, route: match.value, clientIp: ip };
    },
  };
}
