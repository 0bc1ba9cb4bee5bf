/**
 * The store: every record keygate keeps, behind one async interface with two
 * implementations (SQLite through node:sqlite, the embedded default; PostgreSQL through pg).
 *
 * Times are epoch milliseconds. Every mutating method takes its effects (the audit events that
 * describe it, notifications it causes) and writes them in the same transaction, so a change is
 * never stored without its audit trail, and an audit event never describes a change that did not
 * happen. A method that reports that nothing changed (undefined, false, "not_found",
 * "has_dependents") writes no effects either. Lists are in a fixed order, given per method.
 */

import type { ObservedUse } from "../core/scopes/advice.ts";
import type { Sql } from "./sql.ts";
import type { ObjectStore } from "./objects.ts";

export type UserRole = "owner" | "staff" | "user";
export type MemberRole = "ADMIN" | "MEMBER";
export type AccessMode = "READWRITE" | "READONLY";
export type KeyStatus = "ACTIVE" | "REVOKED";
export type PortalStatus = "ACTIVE" | "DISABLED";

export interface User {
  id: string;
  /** Unique regardless of case: stored, and read back, lower-cased. */
  email: string;
  name: string;
  role: UserRole;
  createdAt: number;
}

/**
 * Where a portal's data lives; JSON in the store (sealed, src/store/credentials.ts). A Bitrix24
 * portal linked for apps also carries its Bitrix24 application's credentials (both or neither):
 * keygate signs users in to that portal's Bitrix24 with them (docs/oauth.md).
 */
export type Upstream = { kind: "bitrix24"; webhookUrl: string; clientId?: string; clientSecret?: string } | { kind: "sandbox" } | { kind: "http"; baseUrl: string };

export interface Portal {
  id: string;
  domain: string;
  name: string;
  status: PortalStatus;
  /** The mode new keys get; READONLY forces it on members who are not admins. */
  defaultAccessMode: AccessMode;
  /** null: not linked (key creation answers PORTAL_NOT_LINKED). */
  upstream: Upstream | null;
  /** Shared requests per second for all keys of the portal; null = the default. */
  requestLimit: number | null;
  createdBy: string;
  createdAt: number;
  /** Browser origins (https://app.example.com) whose pages may send this portal's keys; empty: none (docs/api.md, "CORS"). */
  allowedOrigins: string[];
}

export interface Membership {
  portalId: string;
  userId: string;
  role: MemberRole;
  createdAt: number;
}

export interface KeyRecord {
  id: string;
  /** Key type id of the profile (vibecode: api, app, management). */
  type: string;
  name: string;
  ownerId: string;
  /** null for key types not bound to a portal (management keys). */
  portalId: string | null;
  /** SHA-256 of (server secret + key), base64url: the only trace of the secret. */
  digest: string;
  /** The type prefix and the first characters of the secret, e.g. vibe_live_abc123. */
  keyPrefix: string;
  /** The last four characters of the secret. */
  keySuffix: string;
  /** Scopes the key shows (normalised). */
  scopes: string[];
  /** Scopes of locked groups in effect since issue (see core/scopes/grants.ts). */
  issuedScopes: string[];
  status: KeyStatus;
  accessMode: AccessMode;
  /** Exact IP addresses, normalised; empty = no restriction. */
  ipWhitelist: string[];
  /** Requests per second for this key; null = only the platform and portal limits. */
  rateLimit: number | null;
  /** A named rate-limit tier of the profile (Atender, RogerIQ); null = the profile's default platform limit. */
  tier: string | null;
  expiresAt: number | null;
  createdAt: number;
  updatedAt: number;
  lastUsedAt: number | null;
  /** Rotation: the key this one replaced, and the key that replaced this one. */
  rotatedFromId: string | null;
  rotatedToId: string | null;
  /** Bumped on every change; caches compare it. */
  version: number;
}

export interface AuditEvent {
  id: string;
  at: number;
  /** e.g. key.create, key.update, key.rotate, key.delete, portal.create, portal.update, member.add, member.remove, user.create */
  action: string;
  actorUserId: string | null;
  actorKeyId: string | null;
  sourceIp: string | null;
  entityType: "key" | "portal" | "member" | "user" | "invitation";
  entityId: string;
  portalId: string | null;
  /** Any JSON value; undefined (absent) reads back as undefined, null as null. */
  before: unknown;
  after: unknown;
}

export interface Notification {
  id: string;
  userId: string;
  at: number;
  kind: string;
  message: string;
  /** Any JSON value; undefined (absent) reads back as undefined, null as null. */
  data: unknown;
  readAt: number | null;
}

/** Something registered against a key that must go before the key may be deleted (VibeCode: servers). */
export interface KeyDependent {
  keyId: string;
  kind: string;
  dependentId: string;
  createdAt: number;
}

export type KeyPatch = Partial<
  Pick<KeyRecord, "name" | "scopes" | "issuedScopes" | "status" | "accessMode" | "ipWhitelist" | "rateLimit" | "tier" | "expiresAt" | "rotatedToId">
>;
export type PortalPatch = Partial<Pick<Portal, "name" | "status" | "defaultAccessMode" | "upstream" | "requestLimit" | "allowedOrigins">>;

/** One request made with a key, for the key's request log (GET /v1/keys/:id/usage). */
export interface RequestLogEntry {
  keyId: string;
  at: number;
  ip: string;
  method: string;
  path: string;
  status: number;
  latencyMs: number;
  /** Written, not read back by listRequests: the pattern of the profile's route it matched (none: null or absent). */
  route?: string | null;
  /** Written, not read back by listRequests: the unmet requirement of a request refused for a scope (docs/scope-advice.md). */
  missingScope?: string | null;
}

/** A key's logged requests of one route and one refusal for a missing scope: what the scope advisor reads. */
export type RouteUse = ObservedUse;

/**
 * A sandbox portal: keygate's built-in stand-in for a Bitrix24 portal (src/upstream/sandbox),
 * keyed by the keygate portal id it serves. Its data is the portal's, not keygate's own
 * records, so the sandbox methods below write no audit events.
 */
export interface Sandbox {
  portalId: string;
  /** The request limit, Bitrix24's leaky bucket: at most requestBurst requests queued... */
  requestBurst: number;
  /** ...draining at this many requests per second. */
  requestsPerSecond: number;
  createdAt: number;
}

/** An inbound webhook of a sandbox: /rest/<userId>/<token>/; only the token's SHA-256 (hex) is kept. */
export interface SandboxWebhook {
  portalId: string;
  tokenDigest: string;
  /** The sandbox user the webhook acts as. */
  userId: number;
  /** Bitrix24 scopes the webhook was granted (crm, task, user, im, …). */
  scopes: string[];
  createdAt: number;
}

/** A record of a sandbox: a CRM item, task, user, notification, message, post or placement binding. */
export interface SandboxItem {
  portalId: string;
  /** What kind of record, chosen by the sandbox (e.g. crm:2 for deals, task, user). */
  entityType: string;
  /** Numbered 1, 2, 3… per portal and entity type; never reused. */
  id: number;
  /** The record's fields: any JSON object. */
  fields: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

/** A signed-in browser (docs/accounts.md): only the SHA-256 of its token is kept. */
export interface Session {
  id: string;
  userId: string;
  /** SHA-256 of the session token, base64url. */
  tokenDigest: string;
  createdAt: number;
  /** The last use the store was told of (at most once a minute): the idle lifetime counts from it. */
  lastSeenAt: number;
  /** The end of the absolute lifetime. */
  expiresAt: number;
}

/**
 * A one-time link (docs/accounts.md): "password" sets a user's password (keygate init, users
 * create, users reset-password); "invitation" makes whoever has the email a member of a portal.
 * Only the SHA-256 of its token is kept; it is deleted when used.
 */
export interface OneTimeLink {
  id: string;
  purpose: "password" | "invitation";
  /** SHA-256 of the link's token, base64url. */
  tokenDigest: string;
  /** The user's (password) or the invitee's (invitation); stored, and read back, lower-cased. */
  email: string;
  /** Password links: the user; invitations: null. */
  userId: string | null;
  /** Invitations: the portal and the role the invitee gets; null for password links. */
  portalId: string | null;
  role: MemberRole | null;
  /** Who made it (an invitation's admin); null: the operator. */
  createdBy: string | null;
  createdAt: number;
  expiresAt: number;
}

/** What using a one-time link does, in one transaction with deleting it. */
export interface Redemption {
  /** A user to create first (an invitee new to keygate). */
  newUser?: User;
  /** Whose password is set (every session of theirs ends): the new user's or an existing one's. */
  password?: { userId: string; hash: string };
  /** The membership an invitation gives. */
  member?: Membership;
}

/**
 * A row of the change feed (migration 007): a key, portal, membership or user was written. The
 * database writes these itself (triggers), in the transaction of the change; nodes read them to
 * drop what changed from their caches when Redis cannot tell them (src/gateway/change-feed.ts).
 */
export interface StoredChange {
  /** Increasing, but on PostgreSQL not in commit order: a lower number may appear later, or never (a rolled-back change). */
  seq: number;
  kind: "key" | "portal" | "member" | "user" | "session";
  /** The key's, portal's or user's id; a membership's portal id. */
  entityId: string;
  /** A key's digest; null for the other kinds. */
  digest: string | null;
  /** The version the change brought a key to (a deleted key: one past its last), so a copy read since is known to be current; null for the other kinds. */
  version: number | null;
}

/** An authorization code of the OAuth flow of an authorization key (docs/oauth.md): only its SHA-256 is kept. */
export interface OAuthGrant {
  id: string;
  codeDigest: string;
  keyId: string;
  /** The keygate user who allowed the app. */
  userId: string;
  portalId: string;
  /** The Bitrix24 (sandbox) user the sessions it issues act as. */
  bitrixUserId: number;
  /** null: the zero-config flow, redeemed by GET /v1/oauth/poll. */
  redirectUri: string | null;
  stateDigest: string;
  /** The PKCE S256 challenge; null when none was sent. */
  codeChallenge: string | null;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
}

/** A user's session of an authorization key (vibe_session_…): only the SHA-256 of its token is kept. */
export interface AppSession {
  id: string;
  tokenDigest: string;
  keyId: string;
  userId: string;
  portalId: string;
  bitrixUserId: number;
  /** The grant (code) it was issued for. */
  grantId: string;
  createdAt: number;
  expiresAt: number;
}

/** What a change writes besides itself, in the same transaction. */
export interface Effects {
  audit: AuditEvent[];
  notifications?: Notification[];
}

export class StoreConflictError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = "StoreConflictError";
    this.field = field;
  }
}

export interface Store {
  readonly dialect: "sqlite" | "postgres";
  /** The thin dialect for store modules that write their queries once (src/store/sql.ts). */
  readonly sql: Sql;
  /** Portals' stored objects (vibe:storage): files in the data directory with SQLite, chunks in the database with PostgreSQL (objects.ts). */
  readonly objects: ObjectStore;
  /** Applies pending migrations (idempotent); called at start. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /** Throws StoreConflictError("email") when the email is taken. */
  createUser(user: User, effects: Effects): Promise<void>;
  getUser(id: string): Promise<User | undefined>;
  getUserByEmail(email: string): Promise<User | undefined>;
  countUsers(): Promise<number>;
  /** The user's password hash; null when none is set (or there is no such user). */
  getPasswordHash(userId: string): Promise<string | null>;
  /** Sets (or with null clears) the user's password hash and ends every session of theirs; false when there is no such user. */
  setPasswordHash(userId: string, hash: string | null, effects: Effects): Promise<boolean>;

  createSession(session: Session): Promise<void>;
  getSessionByDigest(tokenDigest: string): Promise<Session | undefined>;
  /** Moves lastSeenAt forward (never back); ignores an unknown id. */
  touchSession(id: string, at: number): Promise<void>;
  /** False when there was no such session. */
  deleteSession(id: string): Promise<boolean>;
  /**
   * Deletes the user's sessions and returns how many: every one, or with `ended` only those whose
   * absolute lifetime ended (expiresAt <= now) or that were idle since (lastSeenAt <= idleSince).
   */
  deleteSessionsOf(userId: string, ended?: { now: number; idleSince: number }): Promise<number>;

  /** Stores the link; a password link replaces the user's earlier password links (deleted in the same transaction). */
  createLink(link: OneTimeLink, effects: Effects): Promise<void>;
  getLinkByDigest(tokenDigest: string): Promise<OneTimeLink | undefined>;
  /** A portal's invitations (expired ones too), oldest first. */
  listInvitations(portalId: string): Promise<OneTimeLink[]>;
  /** False, with no effects written, when there was no such link. */
  deleteLink(id: string, effects: Effects): Promise<boolean>;
  /**
   * Uses a link: deletes it and applies the redemption (creates the user, sets the password and
   * ends that user's sessions, puts the membership) with the effects, atomically. False, with
   * nothing written, when the link was gone (used already, or withdrawn). Throws
   * StoreConflictError("email") when newUser's email is taken.
   */
  redeemLink(id: string, redemption: Redemption, effects: Effects): Promise<boolean>;

  /** Creates the portal and its creator's ADMIN membership. Throws StoreConflictError("domain") when the domain is taken. */
  createPortal(portal: Portal, creator: Membership, effects: Effects): Promise<void>;
  getPortal(id: string): Promise<Portal | undefined>;
  updatePortal(id: string, patch: PortalPatch, effects: Effects): Promise<Portal | undefined>;
  /** Portals the user is a member of, with the role; oldest portal first. */
  listPortalsForUser(userId: string): Promise<(Portal & { role: MemberRole })[]>;

  /** Adds a membership, or changes the role of an existing one (its createdAt stays). */
  putMember(member: Membership, effects: Effects): Promise<void>;
  getMember(portalId: string, userId: string): Promise<Membership | undefined>;
  /** Returns false when there was no such membership. */
  removeMember(portalId: string, userId: string, effects: Effects): Promise<boolean>;
  /** Oldest membership first. */
  listMembers(portalId: string): Promise<Membership[]>;

  /** Throws StoreConflictError("digest") when the digest is taken. */
  createKey(key: KeyRecord, effects: Effects): Promise<void>;
  getKey(id: string): Promise<KeyRecord | undefined>;
  /** The hot path's only store query, on a cache miss. */
  getKeyByDigest(digest: string): Promise<KeyRecord | undefined>;
  /**
   * The same lookup without a promise, from a store that reads synchronously (SQLite): a key-cache
   * miss then costs no asynchronous step. Stores that cannot (PostgreSQL) leave it out.
   */
  getKeyByDigestNow?(digest: string): KeyRecord | undefined;
  /** Applies the patch, bumps version and updatedAt; undefined when the key does not exist. */
  updateKey(id: string, patch: KeyPatch, now: number, effects: Effects): Promise<KeyRecord | undefined>;
  /**
   * Creates the new key and applies oldPatch to the old one (bumping its version, updatedAt =
   * now), atomically. Returns the old key as patched; undefined, with nothing written, when the
   * old key does not exist. Throws StoreConflictError("rotatedToId"), with nothing written, when
   * the old key was rotated already (checked inside the transaction).
   */
  rotateKey(oldId: string, oldPatch: KeyPatch, replacement: KeyRecord, now: number, effects: Effects): Promise<KeyRecord | undefined>;
  /** Deletes unless it has dependents: returns "deleted", "not_found" or "has_dependents". */
  deleteKey(id: string, effects: Effects): Promise<"deleted" | "not_found" | "has_dependents">;
  /** Keys of a portal; with ownerId, only that owner's. Newest first. */
  listKeys(filter: { portalId?: string; ownerId?: string; type?: string }): Promise<KeyRecord[]>;
  /** Number of keys (of any status) per portal of the given type (for /v1/me appKeyCount); every asked portal is in the map, 0 when it has none. */
  countKeysByPortal(portalIds: string[], type: string): Promise<Map<string, number>>;
  /** Batched last-used times, written off the hot path. Only moves lastUsedAt forward; leaves version and updatedAt alone; ignores unknown ids. */
  touchKeys(lastUsed: Map<string, number>): Promise<void>;

  /** Appends a batch of request-log entries (written off the hot path). Entries of unknown keys are dropped. */
  appendRequests(entries: RequestLogEntry[]): Promise<void>;
  /** A key's request log, newest first (of equal times, the later appended first); optionally only from one IP, and only entries strictly before a time. */
  listRequests(keyId: string, filter: { limit: number; before?: number; ip?: string }): Promise<RequestLogEntry[]>;
  /** Requests per minute of a key since a time (at >= since): one entry per minute that had requests, oldest first; `minute` is the minute's start. */
  requestsPerMinute(keyId: string, since: number): Promise<{ minute: number; count: number }[]>;
  /** Every address in a key's request log, with its number of requests and the time of its latest, most recent first (of equal times, by address). */
  requestAddresses(keyId: string): Promise<{ ip: string; count: number; lastSeen: number }[]>;
  /** A key's request log summed up by method, route and missing scope (the scope advisor's input), in no particular order. */
  requestRoutes(keyId: string): Promise<RouteUse[]>;
  /** Deletes request-log entries older than the time (at < olderThan); returns how many. */
  purgeRequests(olderThan: number): Promise<number>;

  /** The highest sequence number of the change feed (0 when it is empty). */
  lastChange(): Promise<number>;
  /** Changes with seq > after, lowest first, at most limit; with `among`, only those whose seq is listed (a reader's gaps). */
  changesSince(after: number, limit: number, among?: readonly number[]): Promise<StoredChange[]>;
  /** Deletes changes older than keepMs by the database's clock; returns how many. */
  pruneChanges(keepMs: number): Promise<number>;

  /** The key must exist; adding the same (keyId, kind, dependentId) again is a no-op. */
  addDependent(dependent: KeyDependent): Promise<void>;
  /** A no-op when there is no such dependent. */
  removeDependent(keyId: string, kind: string, dependentId: string): Promise<void>;
  countDependents(keyId: string): Promise<number>;

  /** Newest first; before: only events strictly earlier than that time. */
  listAudit(filter: { portalId?: string; entityId?: string; limit: number; before?: number }): Promise<AuditEvent[]>;

  /** Newest first. */
  listNotifications(userId: string, limit: number): Promise<Notification[]>;
  /** False when the user has no such notification; reading it again keeps the first readAt. */
  markNotificationRead(userId: string, id: string, now: number): Promise<boolean>;

  /** Creates the sandbox, or changes the limits of an existing one (its createdAt stays). */
  putSandbox(sandbox: Sandbox): Promise<void>;
  getSandbox(portalId: string): Promise<Sandbox | undefined>;
  /** Adds a webhook, or changes user and scopes of the one with this digest (its createdAt stays). The sandbox must exist (else it throws). */
  putSandboxWebhook(webhook: SandboxWebhook): Promise<void>;
  getSandboxWebhook(portalId: string, tokenDigest: string): Promise<SandboxWebhook | undefined>;
  /** The webhooks with this digest in any sandbox (at most 2: a token names its portal when it is the only one), for the sandbox served at a host root. */
  sandboxWebhooksByToken(tokenDigest: string): Promise<SandboxWebhook[]>;
  /**
   * Adds a record with the next id of its portal and entity type (1 for the first; ids are never
   * reused, also after a delete), createdAt = updatedAt = now; concurrent adds get distinct ids.
   * The sandbox must exist (else it throws).
   */
  addSandboxItem(portalId: string, entityType: string, fields: Record<string, unknown>, now: number): Promise<SandboxItem>;
  getSandboxItem(portalId: string, entityType: string, id: number): Promise<SandboxItem | undefined>;
  /**
   * Merges the patch into the record's fields, one level deep (a key of the patch replaces the
   * field; a key whose value is undefined is left out; null is kept as null), updatedAt = now.
   * Undefined when there is no such record.
   */
  updateSandboxItem(portalId: string, entityType: string, id: number, patch: Record<string, unknown>, now: number): Promise<SandboxItem | undefined>;
  /** False when there was no such record. */
  deleteSandboxItem(portalId: string, entityType: string, id: number): Promise<boolean>;
  /** Every record of the portal and entity type, by id ascending. */
  listSandboxItems(portalId: string, entityType: string): Promise<SandboxItem[]>;

  /** An authorization key's registered redirect URIs (empty when none were set). */
  getRedirectUris(keyId: string): Promise<string[]>;
  /** Replaces them, with the effects; the key must exist (else it throws). */
  setRedirectUris(keyId: string, uris: string[], now: number, effects: Effects): Promise<void>;
  createGrant(grant: OAuthGrant): Promise<void>;
  getGrantByCode(codeDigest: string): Promise<OAuthGrant | undefined>;
  /** The newest grant of the key with this state digest. */
  getGrantByState(keyId: string, stateDigest: string): Promise<OAuthGrant | undefined>;
  /**
   * Redeems a grant, atomically: its first redemption marks it used and stores the session
   * ("issued"); any later one stores nothing and deletes the sessions the first issued ("replayed").
   */
  redeemGrant(grantId: string, session: AppSession, now: number): Promise<"issued" | "replayed">;
  getAppSessionByDigest(tokenDigest: string): Promise<AppSession | undefined>;
  /** False when there was no such session. */
  deleteAppSession(id: string): Promise<boolean>;
  /** Deletes grants that expired before `grantsBefore` and sessions that expired before `sessionsBefore`; returns how many of each. */
  pruneOAuth(grantsBefore: number, sessionsBefore: number): Promise<{ grants: number; sessions: number }>;
}
