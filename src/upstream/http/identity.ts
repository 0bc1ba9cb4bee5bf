import { createHmac, timingSafeEqual, createSecretKey, type KeyObject } from "node:crypto";

/**
 * The caller's identity as an HTTP upstream receives it: headers keygate adds to every forwarded
 * request, signed with HMAC-SHA256 so the upstream can tell they come from keygate and were made
 * for this very request (docs/upstreams.md, "HTTP upstream").
 *
 * This file has no dependency besides node:crypto: an upstream written in Node can copy it and
 * call `verifyIdentity` on each request.
 */

/** Who made a forwarded request, as keygate verified it. */
export interface Identity {
  keyId: string;
  /** The key type id of the profile (`api`). */
  keyType: string;
  /** The key's portal; "" for a key bound to none. */
  portalId: string;
  ownerId: string;
  /** Scopes in effect, normalised, comma-separated. */
  scopes: string;
  accessMode: string;
  /** The client address keygate saw (after --trust-proxy). */
  clientIp: string;
}

/** What the signature binds besides the identity. */
export interface SignedRequest {
  method: string;
  /** The request target as sent upstream: path and query string. */
  target: string;
  requestId: string;
  /** Epoch seconds. */
  timestamp: number;
}

export const IDENTITY_HEADERS = {
  keyId: "x-keygate-key-id",
  keyType: "x-keygate-key-type",
  portalId: "x-keygate-portal-id",
  ownerId: "x-keygate-owner-id",
  scopes: "x-keygate-scopes",
  accessMode: "x-keygate-access-mode",
  clientIp: "x-keygate-client-ip",
  timestamp: "x-keygate-timestamp",
  signature: "x-keygate-signature",
  requestId: "x-request-id",
} as const;

const SCHEME = "v1";
/** Signatures older or newer than this are refused by default (clock skew plus transit). */
export const DEFAULT_TOLERANCE_MS = 5 * 60 * 1000;

/**
 * The per-portal signing secret: HMAC-SHA256 of the portal id under the server secret, base64url.
 * Only a holder of the server secret can compute it; a portal's upstream that learns its own
 * secret cannot forge identities for other portals.
 */
export function identitySecret(serverSecret: string, portalId: string): string {
  return createHmac("sha256", serverSecret).update(`keygate/upstream-identity/v1\u0000${portalId}`).digest("base64url");
}

/**
 * The string that is signed: one field a line, in this order. No field can hold a line break
 * (header values cannot), so the lines cannot be shifted into one another.
 */
export function canonicalString(identity: Identity, request: SignedRequest): string {
  return [
    "keygate-identity-v1",
    String(request.timestamp),
    request.method.toUpperCase(),
    request.target,
    request.requestId,
    identity.keyId,
    identity.keyType,
    identity.portalId,
    identity.ownerId,
    identity.scopes,
    identity.accessMode,
    identity.clientIp,
  ].join("\n");
}

/** Prepared HMAC keys by secret: preparing a key from a string costs more than the HMAC itself. */
const prepared = new Map<string, KeyObject>();

function keyFor(secret: string): KeyObject {
  let key = prepared.get(secret);
  if (!key) {
    if (prepared.size >= 10_000) prepared.clear();
    key = createSecretKey(Buffer.from(secret, "utf8"));
    prepared.set(secret, key);
  }
  return key;
}

export function sign(secret: string, identity: Identity, request: SignedRequest): string {
  return `${SCHEME}=${createHmac("sha256", keyFor(secret)).update(canonicalString(identity, request)).digest("hex")}`;
}

/** The headers keygate adds to a forwarded request (lower-case names). */
export function identityHeaders(secret: string, identity: Identity, request: SignedRequest): Record<string, string> {
  return {
    [IDENTITY_HEADERS.keyId]: identity.keyId,
    [IDENTITY_HEADERS.keyType]: identity.keyType,
    [IDENTITY_HEADERS.portalId]: identity.portalId,
    [IDENTITY_HEADERS.ownerId]: identity.ownerId,
    [IDENTITY_HEADERS.scopes]: identity.scopes,
    [IDENTITY_HEADERS.accessMode]: identity.accessMode,
    [IDENTITY_HEADERS.clientIp]: identity.clientIp,
    [IDENTITY_HEADERS.timestamp]: String(request.timestamp),
    [IDENTITY_HEADERS.requestId]: request.requestId,
    [IDENTITY_HEADERS.signature]: sign(secret, identity, request),
  };
}

export type IdentityCheck =
  | { valid: true; identity: Identity & { scopeList: string[]; requestId: string; timestamp: number } }
  | { valid: false; reason: "missing" | "malformed" | "stale" | "signature" };

type HeaderBag = Record<string, string | string[] | undefined>;

/**
 * Checks the identity headers of a request an upstream received from keygate.
 *
 * @param headers the request's headers, names in lower case (Node's `req.headers`)
 * @param secret  the portal's signing secret (`identitySecret(serverSecret, portalId)`)
 * @param method  the request's method
 * @param path    the request target as received: path and query string (Node's `req.url`)
 * @param now     the upstream's clock, epoch milliseconds (`Date.now()`)
 *
 * Valid only when every header is present once, the signature matches, and the timestamp is
 * within `toleranceMs` (default 5 minutes) of `now`. Deduplicating replays inside that window
 * is up to the upstream: X-Request-Id is signed and unique per request.
 */
export function verifyIdentity(headers: HeaderBag, secret: string, method: string, path: string, now: number, options: { toleranceMs?: number } = {}): IdentityCheck {
  const values: Record<string, string> = {};
  for (const [field, name] of Object.entries(IDENTITY_HEADERS)) {
    const raw = headers[name];
    if (raw === undefined) return { valid: false, reason: "missing" };
    if (typeof raw !== "string") return { valid: false, reason: "malformed" };
    values[field] = raw;
  }
  const timestampText = values.timestamp!;
  if (!/^[0-9]{1,12}$/.test(timestampText)) return { valid: false, reason: "malformed" };
  const signature = values.signature!;
  const match = /^v1=([0-9a-f]{64})$/.exec(signature);
  if (!match) return { valid: false, reason: "malformed" };
  const identity: Identity = {
    keyId: values.keyId!,
    keyType: values.keyType!,
    portalId: values.portalId!,
    ownerId: values.ownerId!,
    scopes: values.scopes!,
    accessMode: values.accessMode!,
    clientIp: values.clientIp!,
  };
  const timestamp = Number(timestampText);
  const expected = createHmac("sha256", secret)
    .update(canonicalString(identity, { method, target: path, requestId: values.requestId!, timestamp }))
    .digest();
  // Compared in constant time before the clock is looked at: a stale request says nothing about the secret.
  if (!timingSafeEqual(expected, Buffer.from(match[1]!, "hex"))) return { valid: false, reason: "signature" };
  if (Math.abs(now - timestamp * 1000) > (options.toleranceMs ?? DEFAULT_TOLERANCE_MS)) return { valid: false, reason: "stale" };
  return {
    valid: true,
    identity: { ...identity, scopeList: identity.scopes === "" ? [] : identity.scopes.split(","), requestId: values.requestId!, timestamp },
  };
}
