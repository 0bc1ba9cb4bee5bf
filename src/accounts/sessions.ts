import { randomUUID } from "node:crypto";
import type { Keygate } from "../manage/context.ts";
import type { Session, User } from "../store/store.ts";
import { verifyPassword } from "./passwords.ts";
import { newToken, tokenDigest } from "./tokens.ts";

/**
 * Cookie sessions of people signed in to keygate (docs/accounts.md): an opaque random token in
 * the cookie, its SHA-256 in the store; an idle lifetime (refreshed on use) and an absolute one.
 */
export interface SessionLifetimes {
  idleMs: number;
  absoluteMs: number;
}

const DAY = 86_400_000;
export const SESSION_LIFETIMES: SessionLifetimes = { idleMs: 7 * DAY, absoluteMs: 30 * DAY };
/** A session's last use is written to the store at most this often: a busy dashboard is not a stream of writes. */
export const TOUCH_EVERY_MS = 60_000;
export const SESSION_COOKIE = "keygate_session";

export interface SignedIn {
  user: User;
  session: Session;
  /** The session token: it goes into the cookie and is never stored. */
  token: string;
}

/** When the session ends unless it is used again: the idle end, or the absolute end if sooner. */
export function idleExpiresAt(session: Session, lifetimes: SessionLifetimes): number {
  return Math.min(session.lastSeenAt + lifetimes.idleMs, session.expiresAt);
}

/** A new session for the user, with a new random token (never one the browser brought: no session fixation). */
export async function startSession(kg: Keygate, user: User, lifetimes: SessionLifetimes): Promise<SignedIn> {
  const now = kg.now();
  // The user's sessions that have ended go now, so they do not pile up.
  await kg.store.deleteSessionsOf(user.id, { now, idleSince: now - lifetimes.idleMs });
  const token = newToken();
  const session: Session = { id: randomUUID(), userId: user.id, tokenDigest: tokenDigest(token), createdAt: now, lastSeenAt: now, expiresAt: now + lifetimes.absoluteMs };
  await kg.store.createSession(session);
  return { user, session, token };
}

/**
 * Signs in with email and password; undefined when either is wrong. The password is checked
 * whether or not the email exists (against a stand-in hash), so the answer and its time are the same.
 */
export async function signIn(kg: Keygate, email: string, password: string, lifetimes: SessionLifetimes): Promise<SignedIn | undefined> {
  const user = await kg.store.getUserByEmail(email);
  const hash = user ? await kg.store.getPasswordHash(user.id) : null;
  if (!(await verifyPassword(password, hash)) || !user) return undefined;
  return startSession(kg, user, lifetimes);
}

/** The live session a token names, and its user; undefined when there is none or it has ended (an ended one is deleted). */
export async function resumeSession(kg: Keygate, token: string, lifetimes: SessionLifetimes): Promise<{ user: User; session: Session } | undefined> {
  const session = await kg.store.getSessionByDigest(tokenDigest(token));
  if (!session) return undefined;
  const now = kg.now();
  if (now >= idleExpiresAt(session, lifetimes)) {
    await kg.store.deleteSession(session.id);
    return undefined;
  }
  const user = await kg.store.getUser(session.userId);
  if (!user) return undefined;
  if (now - session.lastSeenAt >= TOUCH_EVERY_MS) {
    await kg.store.touchSession(session.id, now);
    session.lastSeenAt = now;
  }
  return { user, session };
}

export async function signOut(kg: Keygate, session: Session): Promise<void> {
  await kg.store.deleteSession(session.id);
}

/** Ends every session of the user, on every device; returns how many. */
export function signOutEverywhere(kg: Keygate, userId: string): Promise<number> {
  return kg.store.deleteSessionsOf(userId);
}
