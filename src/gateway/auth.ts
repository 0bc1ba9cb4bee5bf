import type { IncomingHttpHeaders } from "node:http";
import { type KeyFormat, keyDigest } from "../core/keys/format.ts";
import type { Profile, Route } from "../core/profile/profile.ts";
import type { KeyTypeSpec } from "../core/profile/spec.ts";
import { decide } from "../core/verify/decide.ts";
import type { CachedKey, KeyCache } from "./key-cache.ts";
import type { Spent } from "./limits.ts";
import { sessionToken } from "./session.ts";
import type { AppSessionCache, SessionCheck } from "../oauth/sessions.ts";
import type { AppSession } from "../store/store.ts";

export interface Refusal {
  code: string;
  message?: string;
  hint?: string;
  /** The field at fault, for input errors. */
  param?: string;
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
  /** The route's path parameters (when it passed). */
  params?: Record<string, string>;
  /** The client's address, where its request is counted (Arrival.countedAt when given). */
  clientIp: string;
  /** Refused before its key was read: the address's failed-authentication budget is spent (docs/limits.md). */
  throttled?: Spent;
  /** Made by a signed-in session (the cookie), not a key: `key` is the stand-in it acts as (src/gateway/session.ts). */
  session?: { id: string; userId: string };
  /** The user session (vibe_session_…) an authorization key's request acts for (docs/oauth.md). */
  appSession?: AppSession;
}

/** What verification reads of a request: its method, URL (path and query, as sent), headers and the client's address. */
export interface Arrival {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Normalised (src/limits/ip.ts), behind trusted proxies the forwarded address; "" when unknown (an allow-listed key is then refused). */
  clientIp: string;
  /** The route to check instead of the one `url` matches in the profile's table (verify mode's ad-hoc requirement). */
  route?: Route;
  /** Which keys this request may be about; any other counts as unknown, INVALID_API_KEY (verify mode: keys of the caller's portal). */
  accepts?: (key: CachedKey) => boolean;
  /** The address whose budgets a request without a recognised key spends, when it is not clientIp (verify mode: the caller's, not the address it names). */
  countedAt?: string;
}

export interface Authenticator {
  /** Verifies a request: synchronous when its key is cached (the hot path), a promise when it is loaded. */
  authenticate(arrival: Arrival): Verification | Promise<Verification>;
}

export interface AuthenticatorOptions {
  profile: Profile;
  format: KeyFormat;
  serverSecret: string;
  cache: KeyCache;
  now: () => number;
  touched: (keyId: string, at: number) => void;
  /** Asked before a key the cache does not hold is read from the store: a refusal it gives stands, and the store is not asked. */
  throttled: (clientIp: string) => Spent | undefined | Promise<Spent | undefined>;
  /** Verifies a request that brings no key but a session cookie (src/gateway/session.ts); without it a cookie counts for nothing. */
  session?: (arrival: Arrival, token: string) => Promise<Verification>;
  /** Checks the session tokens sent with authorization keys (docs/oauth.md); without it every one is INVALID_SESSION. */
  appSessions?: AppSessionCache;
}

export function authenticator(options: AuthenticatorOptions): Authenticator {
  const { profile, format, serverSecret, cache, now } = options;

  const refuse = (clientIp: string, refusal: Refusal, key?: CachedKey, route?: Route): Verification => ({ refusal, key, route, clientIp });

  /** The steps after the key is known: route, session, then the decision of src/core/verify/decide.ts. */
  const decideFor = (arrival: Arrival, key: CachedKey | undefined, keyType: KeyTypeSpec, session: string | undefined): Verification | Promise<Verification> => {
    const ip = arrival.countedAt ?? arrival.clientIp;
    if (!key || (arrival.accepts !== undefined && !arrival.accepts(key))) return refuse(ip, { code: "INVALID_API_KEY" });
    const match = arrival.route !== undefined ? { value: arrival.route, params: {} } : profile.match(arrival.method, arrival.url);
    if (!match) {
      // Worked out only on this refusal: a path the table has under other methods is a 405 with Allow.
      const allow = profile.methodsAt(arrival.url);
      return refuse(ip, allow.length === 0 ? { code: "ROUTE_NOT_FOUND" } : { code: "METHOD_NOT_ALLOWED", message: `${arrival.method} is not allowed here: ${allow.join(", ")}.`, details: { allow } }, key);
    }
    const at = now();
    const finish = (appSession?: AppSession): Verification => {
      const denial = decide(profile, key.verified, { method: arrival.method, route: match.value, clientIp: arrival.clientIp, hasSession: appSession !== undefined, now: at });
      if (denial) return refuse(ip, denial, key, match.value);
      options.touched(key.record.id, at);
      return { refusal: undefined, key, route: match.value, params: match.params, clientIp: ip, appSession };
    };
    if (keyType.sessionUser !== true || session === undefined) return finish();
    // Step 5 (docs/verification.md): the session token, before the key's status.
    const checked = (check: SessionCheck): Verification => ("refusal" in check ? refuse(ip, { code: check.refusal }, key, match.value) : finish(check.session));
    const check = options.appSessions ? options.appSessions.check(key.record, session, at) : { refusal: "INVALID_SESSION" as const };
    return check instanceof Promise ? check.then(checked) : checked(check);
  };

  return {
    authenticate(arrival) {
      const countedAt = arrival.countedAt ?? arrival.clientIp;
      const credential = extractCredential(arrival.headers, format);
      if ("code" in credential) {
        // No key: a signed-in browser's cookie may stand in (a key header, when sent, wins).
        const token = credential.code === "MISSING_API_KEY" && options.session ? sessionToken(arrival.headers) : undefined;
        return token === undefined ? refuse(countedAt, credential) : options.session!(arrival, token);
      }
      const raw = credential.raw;
      // A key in the cache was well-formed when it was issued (the digest binds the exact string):
      // on a hit the format and checksum need no second look. Input longer than any key is not hashed.
      const digest = raw.length <= format.maxLength ? keyDigest(serverSecret, raw) : undefined;
      const cached = digest === undefined ? undefined : cache.get(digest);
      let keyType: KeyTypeSpec | undefined;
      if (cached) keyType = cached.verified.keyType;
      else {
        const keyTypeId = format.parse(raw);
        if (keyTypeId === undefined || digest === undefined) return refuse(countedAt, { code: "INVALID_API_KEY" });
        keyType = profile.keyType(keyTypeId)!;
      }
      if (keyType.sessionUser && credential.viaBearer) {
        return refuse(countedAt, { code: "INVALID_API_KEY", message: `${keyType.label}s (${keyType.prefix}) go in X-Api-Key; Authorization: Bearer carries the session token.` });
      }
      if (cached) return decideFor(arrival, cached, keyType, credential.session);
      // Not cached: a digest the store did not know a moment ago is still unknown; otherwise an
      // address that spent its failed-authentication budget gets its 429 before any lookup.
      if (cache.unknown(digest!)) return refuse(countedAt, { code: "INVALID_API_KEY" });
      const type = keyType;
      const lookup = (throttled: Spent | undefined): Verification | Promise<Verification> => {
        if (throttled) return { refusal: { code: throttled.code! }, key: undefined, route: undefined, clientIp: countedAt, throttled };
        const loaded = cache.load(digest!);
        return loaded instanceof Promise ? loaded.then((key) => decideFor(arrival, key, type, credential.session)) : decideFor(arrival, loaded, type, credential.session);
      };
      const throttled = options.throttled(countedAt);
      return throttled instanceof Promise ? throttled.then(lookup) : lookup(throttled);
    },
  };
}
