import { hash, randomBytes, randomUUID } from "node:crypto";
import type { AppSession, Store } from "../store/store.ts";

/**
 * App sessions (docs/oauth.md): the `vibe_session_…` tokens an authorization key's users hold.
 * A token is the prefix and 32 base62 characters (190 random bits); the store keeps its SHA-256.
 * Sessions live 24 hours and are never refreshed.
 */
export const SESSION_PREFIX = "vibe_session_";
export const SESSION_TTL_MS = 86_400_000;
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const TOKEN_LENGTH = SESSION_PREFIX.length + 32;

/** 32 characters of base62 by rejection sampling (no modulo bias). */
function base62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

export function newSessionToken(): string {
  return SESSION_PREFIX + base62(32);
}

/** Who a session acts for: the app's key, the user, the portal, and the Bitrix24 user it acts as. */
export type SessionIdentity = Pick<AppSession, "keyId" | "userId" | "portalId" | "bitrixUserId">;

/**
 * A new session and its token, not yet stored: the one place sessions are made, for the OAuth
 * flow (grantId: the code's grant) and the app runtime (grantId: `init:<jti>`, the `__init` token
 * it was exchanged for; docs/apps.md).
 */
export function newAppSession(identity: SessionIdentity, grantId: string, now: number): { token: string; session: AppSession } {
  const token = newSessionToken();
  const { keyId, userId, portalId, bitrixUserId } = identity;
  return { token, session: { id: randomUUID(), tokenDigest: secretDigest(token), keyId, userId, portalId, bitrixUserId, grantId, createdAt: now, expiresAt: now + SESSION_TTL_MS } };
}

/** What the store keeps of a token or a code: its SHA-256 (base64url). They are random: no salt or slow hash is needed. */
export function secretDigest(secret: string): string {
  // The one-shot hash: on the hot path for every request with a session.
  return hash("sha256", secret, "base64url");
}

/** Why a session token does not let a request through, as the error codes say it. */
export type SessionRefusal = "INVALID_SESSION" | "TOKEN_EXPIRED" | "SESSION_APP_MISMATCH";
export type SessionCheck = { session: AppSession } | { refusal: SessionRefusal };

interface Entry {
  /** null: the store has no session with this digest (unknown, revoked, or pruned). */
  session: AppSession | null;
  /** The data generation it was read at, and the version of the key it was checked with. */
  generation: number;
  keyVersion: number;
}

/** Sessions held at most; the oldest read leaves first. */
const MAX_SESSIONS = 100_000;

/**
 * Sessions by token digest, so a request with a known session touches no database, like keys.
 * An entry is good while nothing was stored since it was read (the key cache's data generation:
 * every deleted session writes a change-feed row, which every node reads, and the node that
 * deletes one moves it on at once) and while its key's version is the one it was read with (a
 * key revoked and re-activated has lost its sessions).
 */
export class AppSessionCache {
  readonly #store: Store;
  readonly #generation: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(store: Store, generation: () => number) {
    this.#store = store;
    this.#generation = generation;
  }

  /** Checks a session token sent with a key: synchronous when cached (the hot path), a promise when it is read. */
  check(key: { id: string; version: number }, token: string, now: number): SessionCheck | Promise<SessionCheck> {
    if (token.length !== TOKEN_LENGTH || !token.startsWith(SESSION_PREFIX)) return { refusal: "INVALID_SESSION" };
    const digest = secretDigest(token);
    const generation = this.#generation();
    const entry = this.#entries.get(digest);
    if (entry !== undefined && entry.generation === generation && entry.keyVersion === key.version) return judge(entry.session, key.id, now);
    return this.#store.getAppSessionByDigest(digest).then((session) => {
      if (generation === this.#generation()) {
        this.#entries.delete(digest);
        if (this.#entries.size >= MAX_SESSIONS) this.#entries.delete(this.#entries.keys().next().value!);
        this.#entries.set(digest, { session: session ?? null, generation, keyVersion: key.version });
      }
      return judge(session ?? null, key.id, now);
    });
  }

  get size(): number {
    return this.#entries.size;
  }
}

function judge(session: AppSession | null, keyId: string, now: number): SessionCheck {
  if (session === null) return { refusal: "INVALID_SESSION" };
  if (session.keyId !== keyId) return { refusal: "SESSION_APP_MISMATCH" };
  if (now >= session.expiresAt) return { refusal: "TOKEN_EXPIRED" };
  return { session };
}
