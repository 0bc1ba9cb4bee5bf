/**
 * The one-time `__init` token (issue 16 §3): the placement handler, having checked who opened the
 * app in Bitrix24, sends the browser to `<appUrl>/?…&__init=<token>`, and the app runtime
 * exchanges the token for its HttpOnly cookie. A JWT (HS256, through jose) under a key derived
 * from the server secret, living 5 minutes, with a `jti` the runtime spends once (a replay is
 * refused on every node: the store remembers spent ids until they expire).
 */
import { randomUUID } from "node:crypto";
import { SignJWT, jwtVerify } from "jose";
import { derivedKey } from "../store/credentials.ts";

export const INIT_TTL_MS = 300_000;
const AUDIENCE = "keygate-app-runtime";

/** Who opened which app, as the handler established it. */
export interface InitIdentity {
  /** The server (app) the browser is sent to. */
  serverId: string;
  /** The app's authorization key. */
  keyId: string;
  /** The keygate user, a member of the portal. */
  userId: string;
  portalId: string;
  bitrixUserId: number;
}

export interface InitClaims extends InitIdentity {
  jti: string;
  /** When it stops being accepted, in ms since the epoch. */
  expiresAt: number;
}

const keyOf = (secret: string): Uint8Array => derivedKey(secret, "keygate app init token v1");

/** A token for `identity`, valid INIT_TTL_MS from `now`. */
export async function mintInitToken(secret: string, identity: InitIdentity, now: number): Promise<string> {
  return new SignJWT({ sid: identity.serverId, kid: identity.keyId, pid: identity.portalId, bid: identity.bitrixUserId })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(identity.userId)
    .setJti(randomUUID())
    .setAudience(AUDIENCE)
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(Math.floor((now + INIT_TTL_MS) / 1000))
    .sign(keyOf(secret));
}

/** The claims of a token signed under `secret` and not expired at `now`; undefined for anything else. Spending its jti is the caller's. */
export async function readInitToken(secret: string, token: string, now: number): Promise<InitClaims | undefined> {
  try {
    const { payload } = await jwtVerify(token, keyOf(secret), { algorithms: ["HS256"], audience: AUDIENCE, currentDate: new Date(now), clockTolerance: 0 });
    const { sid, kid, pid, bid, sub, jti, exp } = payload as Record<string, unknown>;
    if (typeof sid !== "string" || typeof kid !== "string" || typeof pid !== "string" || typeof bid !== "number" || typeof sub !== "string" || typeof jti !== "string" || typeof exp !== "number") return undefined;
    return { serverId: sid, keyId: kid, portalId: pid, bitrixUserId: bid, userId: sub, jti, expiresAt: exp * 1000 };
  } catch {
    return undefined;
  }
}
