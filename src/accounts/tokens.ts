import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** A session or one-time link token: 256 random bits, base64url (43 characters). */
export function newToken(): string {
  return randomBytes(32).toString("base64url");
}

/** What the store keeps of a token: its SHA-256. Tokens are random, so no salt or slow hash is needed. */
export function tokenDigest(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

/**
 * The CSRF token of a session: an HMAC of its token under the server secret. Nothing is stored,
 * a page learns it only from a same-origin answer (POST or GET /v1/session), and another site,
 * which can make the browser send the cookie but cannot read it, cannot compute it.
 */
export function csrfTokenOf(serverSecret: string, sessionToken: string): string {
  return createHmac("sha256", serverSecret).update(`keygate csrf\u0000${sessionToken}`).digest("base64url");
}

/** Compares in constant time. */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
