/**
 * What both store dialects share: the column lists (the same names in SQLite and PostgreSQL),
 * records turned into positional parameter lists and rows turned back into records, patches
 * merged into records, and the migration files of a dialect.
 *
 * Both drivers hand rows over in the same shape: numbers for every integer and real column (the
 * PostgreSQL pool parses int8 to number) and JSON as text (the pool leaves json/jsonb unparsed),
 * so one set of functions decodes both.
 */
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import type {
  AuditEvent,
  KeyDependent,
  KeyPatch,
  KeyRecord,
  MemberRole,
  Membership,
  Notification,
  OneTimeLink,
  Portal,
  PortalPatch,
  RequestLogEntry,
  RouteUse,
  Sandbox,
  SandboxItem,
  SandboxWebhook,
  Session,
  StoredChange,
  User,
} from "./store.ts";
import { StoreConflictError } from "./store.ts";
import type { UpstreamCipher } from "./credentials.ts";
import { redactUpstream } from "../upstream/redact.ts";

export type SqlValue = string | number | null;
export type Row = Record<string, unknown>;

export const USER_COLUMNS = ["id", "email", "name", "role", "created_at"] as const;
export const PORTAL_COLUMNS = [
  "id",
  "domain",
  "name",
  "status",
  "default_access_mode",
  "upstream",
  "request_limit",
  "created_by",
  "created_at",
  "allowed_origins",
] as const;
export const MEMBERSHIP_COLUMNS = ["portal_id", "user_id", "role", "created_at"] as const;
export const KEY_COLUMNS = [
  "id",
  "type",
  "name",
  "owner_id",
  "portal_id",
  "digest",
  "key_prefix",
  "key_suffix",
  "scopes",
  "issued_scopes",
  "status",
  "access_mode",
  "ip_whitelist",
  "rate_limit",
  "tier",
  "expires_at",
  "created_at",
  "updated_at",
  "last_used_at",
  "rotated_from_id",
  "rotated_to_id",
  "version",
] as const;
/** What updateKey and rotateKey rewrite (after "id", which is the first parameter of the UPDATE). */
export const KEY_MUTABLE_COLUMNS = [
  "name",
  "scopes",
  "issued_scopes",
  "status",
  "access_mode",
  "ip_whitelist",
  "rate_limit",
  "tier",
  "expires_at",
  "rotated_to_id",
  "updated_at",
  "version",
] as const;
/** What updatePortal rewrites (after "id"). */
export const PORTAL_MUTABLE_COLUMNS = ["name", "status", "default_access_mode", "upstream", "request_limit", "allowed_origins"] as const;
export const DEPENDENT_COLUMNS = ["key_id", "kind", "dependent_id", "created_at"] as const;
export const AUDIT_COLUMNS = [
  "id",
  "at",
  "action",
  "actor_user_id",
  "actor_key_id",
  "source_ip",
  "entity_type",
  "entity_id",
  "portal_id",
  "before_state",
  "after_state",
] as const;
export const NOTIFICATION_COLUMNS = ["id", "user_id", "at", "kind", "message", "data", "read_at"] as const;
/** request_log without its id (assigned by the database, in insertion order: the tie-break of equal times). */
export const REQUEST_COLUMNS = ["key_id", "at", "ip", "method", "path", "status", "latency_ms"] as const;
/** What appendRequests writes: the columns listRequests reads, and what the scope advisor reads. */
export const REQUEST_WRITE_COLUMNS = [...REQUEST_COLUMNS, "route", "missing_scope"] as const;

export const SESSION_COLUMNS = ["id", "user_id", "token_digest", "created_at", "last_seen_at", "expires_at"] as const;
export const LINK_COLUMNS = ["id", "purpose", "token_digest", "email", "user_id", "portal_id", "role", "created_by", "created_at", "expires_at"] as const;

export const SANDBOX_COLUMNS = ["portal_id", "request_burst", "requests_per_second", "created_at"] as const;
export const SANDBOX_WEBHOOK_COLUMNS = ["portal_id", "token_digest", "user_id", "scopes", "created_at"] as const;
export const SANDBOX_ITEM_COLUMNS = ["portal_id", "entity_type", "id", "fields", "created_at", "updated_at"] as const;

/** "a, b, c", each column prefixed with `alias.` when given. */
export function columnList(columns: readonly string[], alias?: string): string {
  return columns.map((c) => (alias === undefined ? c : `${alias}.${c}`)).join(", ");
}

/** Emails are unique regardless of case: the store keeps and looks them up lower-cased. */
export function normalizeEmail(email: string): string {
  return email.toLowerCase();
}

// ---- JSON ---------------------------------------------------------------------------------------

/** A value that may be absent: undefined is stored as SQL NULL, everything else as JSON (null as JSON null). */
function encodeOptionalJson(value: unknown): string | null {
  if (value === undefined) return null;
  return JSON.stringify(value) ?? null;
}

function decodeOptionalJson(value: unknown): unknown {
  return value === null || value === undefined ? undefined : JSON.parse(value as string);
}

function encodeStrings(values: readonly string[]): string {
  return JSON.stringify(values);
}

function decodeStrings(value: unknown): string[] {
  // The common empty list (e.g. no IP whitelist) without a trip through the JSON parser.
  return value === "[]" ? [] : (JSON.parse(value as string) as string[]);
}

// ---- rows -> records ----------------------------------------------------------------------------

const str = (row: Row, column: string): string => row[column] as string;
const num = (row: Row, column: string): number => row[column] as number;
const strOrNull = (row: Row, column: string): string | null => (row[column] ?? null) as string | null;
const numOrNull = (row: Row, column: string): number | null => (row[column] ?? null) as number | null;

export function userFromRow(row: Row): User {
  return {
    id: str(row, "id"),
    email: str(row, "email"),
    name: str(row, "name"),
    role: str(row, "role") as User["role"],
    createdAt: num(row, "created_at"),
  };
}

export function sessionFromRow(row: Row): Session {
  return {
    id: str(row, "id"),
    userId: str(row, "user_id"),
    tokenDigest: str(row, "token_digest"),
    createdAt: num(row, "created_at"),
    lastSeenAt: num(row, "last_seen_at"),
    expiresAt: num(row, "expires_at"),
  };
}

export function linkFromRow(row: Row): OneTimeLink {
  return {
    id: str(row, "id"),
    purpose: str(row, "purpose") as OneTimeLink["purpose"],
    tokenDigest: str(row, "token_digest"),
    email: str(row, "email"),
    userId: strOrNull(row, "user_id"),
    portalId: strOrNull(row, "portal_id"),
    role: strOrNull(row, "role") as OneTimeLink["role"],
    createdBy: strOrNull(row, "created_by"),
    createdAt: num(row, "created_at"),
    expiresAt: num(row, "expires_at"),
  };
}

/** A portal row, its upstream opened with the cipher (src/store/credentials.ts). */
export function portalFromRow(row: Row, cipher: UpstreamCipher): Portal {
  const upstream = row["upstream"];
  const id = str(row, "id");
  return {
    id,
    domain: str(row, "domain"),
    name: str(row, "name"),
    status: str(row, "status") as Portal["status"],
    defaultAccessMode: str(row, "default_access_mode") as Portal["defaultAccessMode"],
    upstream: upstream === null || upstream === undefined ? null : cipher.open(id, upstream as string),
    requestLimit: numOrNull(row, "request_limit"),
    createdBy: str(row, "created_by"),
    createdAt: num(row, "created_at"),
    allowedOrigins: decodeStrings(row["allowed_origins"]),
  };
}

/** A row of portals joined with memberships, the member's role as member_role. */
export function portalWithRoleFromRow(row: Row, cipher: UpstreamCipher): Portal & { role: MemberRole } {
  return { ...portalFromRow(row, cipher), role: str(row, "member_role") as MemberRole };
}

export function membershipFromRow(row: Row): Membership {
  return {
    portalId: str(row, "portal_id"),
    userId: str(row, "user_id"),
    role: str(row, "role") as MemberRole,
    createdAt: num(row, "created_at"),
  };
}

export function keyFromRow(row: Row): KeyRecord {
  return keyFromValues(KEY_COLUMNS.map((column) => row[column]));
}

/**
 * A key from its values in the order of KEY_COLUMNS: how SQLite's cache-miss lookup reads a row
 * (node:sqlite's setReturnArrays: no per-row object with 22 named properties to build and then
 * read back), and, through keyFromRow, every other read of a key.
 */
export function keyFromValues(v: readonly unknown[]): KeyRecord {
  return {
    id: v[0] as string,
    type: v[1] as string,
    name: v[2] as string,
    ownerId: v[3] as string,
    portalId: (v[4] ?? null) as string | null,
    digest: v[5] as string,
    keyPrefix: v[6] as string,
    keySuffix: v[7] as string,
    scopes: decodeStrings(v[8]),
    issuedScopes: decodeStrings(v[9]),
    status: v[10] as KeyRecord["status"],
    accessMode: v[11] as KeyRecord["accessMode"],
    ipWhitelist: decodeStrings(v[12]),
    rateLimit: (v[13] ?? null) as number | null,
    tier: (v[14] ?? null) as string | null,
    expiresAt: (v[15] ?? null) as number | null,
    createdAt: v[16] as number,
    updatedAt: v[17] as number,
    lastUsedAt: (v[18] ?? null) as number | null,
    rotatedFromId: (v[19] ?? null) as string | null,
    rotatedToId: (v[20] ?? null) as string | null,
    version: v[21] as number,
  };
}

export function requestFromRow(row: Row): RequestLogEntry {
  return {
    keyId: str(row, "key_id"),
    at: num(row, "at"),
    ip: str(row, "ip"),
    method: str(row, "method"),
    path: str(row, "path"),
    status: num(row, "status"),
    latencyMs: num(row, "latency_ms"),
  };
}

/** A row of requestsPerMinute: minute, and the count as n. */
export function minuteCountFromRow(row: Row): { minute: number; count: number } {
  return { minute: num(row, "minute"), count: num(row, "n") };
}

export function routeUseFromRow(row: Row): RouteUse {
  return {
    method: str(row, "method"),
    route: strOrNull(row, "route"),
    missingScope: strOrNull(row, "missing_scope"),
    count: num(row, "n"),
    firstAt: num(row, "first_at"),
    lastAt: num(row, "last_at"),
  };
}

export function addressFromRow(row: Row): { ip: string; count: number; lastSeen: number } {
  return { ip: str(row, "ip"), count: num(row, "n"), lastSeen: num(row, "last_seen") };
}

export function auditFromRow(row: Row): AuditEvent {
  return {
    id: str(row, "id"),
    at: num(row, "at"),
    action: str(row, "action"),
    actorUserId: strOrNull(row, "actor_user_id"),
    actorKeyId: strOrNull(row, "actor_key_id"),
    sourceIp: strOrNull(row, "source_ip"),
    entityType: str(row, "entity_type") as AuditEvent["entityType"],
    entityId: str(row, "entity_id"),
    portalId: strOrNull(row, "portal_id"),
    before: decodeOptionalJson(row["before_state"]),
    after: decodeOptionalJson(row["after_state"]),
  };
}

export function notificationFromRow(row: Row): Notification {
  return {
    id: str(row, "id"),
    userId: str(row, "user_id"),
    at: num(row, "at"),
    kind: str(row, "kind"),
    message: str(row, "message"),
    data: decodeOptionalJson(row["data"]),
    readAt: numOrNull(row, "read_at"),
  };
}

export function sandboxFromRow(row: Row): Sandbox {
  return {
    portalId: str(row, "portal_id"),
    requestBurst: num(row, "request_burst"),
    requestsPerSecond: num(row, "requests_per_second"),
    createdAt: num(row, "created_at"),
  };
}

export function sandboxWebhookFromRow(row: Row): SandboxWebhook {
  return {
    portalId: str(row, "portal_id"),
    tokenDigest: str(row, "token_digest"),
    userId: num(row, "user_id"),
    scopes: decodeStrings(row["scopes"]),
    createdAt: num(row, "created_at"),
  };
}

export function sandboxItemFromRow(row: Row): SandboxItem {
  return {
    portalId: str(row, "portal_id"),
    entityType: str(row, "entity_type"),
    id: num(row, "id"),
    fields: JSON.parse(row["fields"] as string) as Record<string, unknown>,
    createdAt: num(row, "created_at"),
    updatedAt: num(row, "updated_at"),
  };
}

// ---- records -> parameters (in the order of the column lists) ------------------------------------

export function sessionValues(x: Session): SqlValue[] {
  return [x.id, x.userId, x.tokenDigest, x.createdAt, x.lastSeenAt, x.expiresAt];
}

export function linkValues(l: OneTimeLink): SqlValue[] {
  return [l.id, l.purpose, l.tokenDigest, normalizeEmail(l.email), l.userId, l.portalId, l.role, l.createdBy, l.createdAt, l.expiresAt];
}

export function userValues(u: User): SqlValue[] {
  return [u.id, normalizeEmail(u.email), u.name, u.role, u.createdAt];
}

/** The upstream as stored: sealed (src/store/credentials.ts), or NULL when the portal is not linked. */
export function storedUpstream(p: Portal, cipher: UpstreamCipher): string | null {
  return p.upstream === null ? null : cipher.seal(p.id, p.upstream);
}

export function portalValues(p: Portal, cipher: UpstreamCipher): SqlValue[] {
  return [
    p.id,
    p.domain,
    p.name,
    p.status,
    p.defaultAccessMode,
    storedUpstream(p, cipher),
    p.requestLimit,
    p.createdBy,
    p.createdAt,
    encodeStrings(p.allowedOrigins),
  ];
}

/** id first, then PORTAL_MUTABLE_COLUMNS. */
export function portalUpdateValues(p: Portal, cipher: UpstreamCipher): SqlValue[] {
  return [p.id, p.name, p.status, p.defaultAccessMode, storedUpstream(p, cipher), p.requestLimit, encodeStrings(p.allowedOrigins)];
}

export function membershipValues(m: Membership): SqlValue[] {
  return [m.portalId, m.userId, m.role, m.createdAt];
}

export function keyValues(k: KeyRecord): SqlValue[] {
  return [
    k.id,
    k.type,
    k.name,
    k.ownerId,
    k.portalId,
    k.digest,
    k.keyPrefix,
    k.keySuffix,
    encodeStrings(k.scopes),
    encodeStrings(k.issuedScopes),
    k.status,
    k.accessMode,
    encodeStrings(k.ipWhitelist),
    k.rateLimit,
    k.tier,
    k.expiresAt,
    k.createdAt,
    k.updatedAt,
    k.lastUsedAt,
    k.rotatedFromId,
    k.rotatedToId,
    k.version,
  ];
}

/** id first, then KEY_MUTABLE_COLUMNS. */
export function keyUpdateValues(k: KeyRecord): SqlValue[] {
  return [
    k.id,
    k.name,
    encodeStrings(k.scopes),
    encodeStrings(k.issuedScopes),
    k.status,
    k.accessMode,
    encodeStrings(k.ipWhitelist),
    k.rateLimit,
    k.tier,
    k.expiresAt,
    k.rotatedToId,
    k.updatedAt,
    k.version,
  ];
}

export function dependentValues(d: KeyDependent): SqlValue[] {
  return [d.keyId, d.kind, d.dependentId, d.createdAt];
}

export function requestValues(r: RequestLogEntry): SqlValue[] {
  return [r.keyId, r.at, r.ip, r.method, r.path, r.status, r.latencyMs, r.route ?? null, r.missingScope ?? null];
}

export function auditValues(e: AuditEvent): SqlValue[] {
  return [
    e.id,
    e.at,
    e.action,
    e.actorUserId,
    e.actorKeyId,
    e.sourceIp,
    e.entityType,
    e.entityId,
    e.portalId,
    encodeOptionalJson(e.before),
    encodeOptionalJson(e.after),
  ];
}

export function notificationValues(n: Notification): SqlValue[] {
  return [n.id, n.userId, n.at, n.kind, n.message, encodeOptionalJson(n.data), n.readAt];
}

export function sandboxValues(x: Sandbox): SqlValue[] {
  return [x.portalId, x.requestBurst, x.requestsPerSecond, x.createdAt];
}

export function sandboxWebhookValues(w: SandboxWebhook): SqlValue[] {
  return [w.portalId, w.tokenDigest, w.userId, encodeStrings(w.scopes), w.createdAt];
}

/** A sandbox record's fields as stored: JSON text of the object (keys whose value is undefined left out). */
export function encodeSandboxFields(fields: Record<string, unknown>): string {
  return JSON.stringify(fields);
}

/**
 * A portal audit state (before_state / after_state JSON) with its upstream's credentials masked;
 * undefined when there is nothing to change. For the one-time clean-up of what a keygate before
 * issue 10.3 wrote in the clear.
 */
export function redactedAuditState(state: unknown): string | undefined {
  if (typeof state !== "string") return undefined;
  const value = JSON.parse(state) as { upstream?: Portal["upstream"] } | null;
  if (value === null || typeof value !== "object" || value.upstream === null || value.upstream === undefined) return undefined;
  const redacted = JSON.stringify({ ...value, upstream: redactUpstream(value.upstream) });
  return redacted === JSON.stringify(value) ? undefined : redacted;
}

// ---- patches ------------------------------------------------------------------------------------

/** The key with the patch applied (an undefined field leaves the value as it is), version + 1, updatedAt = now. */
export function patchKey(key: KeyRecord, patch: KeyPatch, now: number): KeyRecord {
  const next: KeyRecord = { ...key, updatedAt: now, version: key.version + 1 };
  if (patch.name !== undefined) next.name = patch.name;
  if (patch.scopes !== undefined) next.scopes = [...patch.scopes];
  if (patch.issuedScopes !== undefined) next.issuedScopes = [...patch.issuedScopes];
  if (patch.status !== undefined) next.status = patch.status;
  if (patch.accessMode !== undefined) next.accessMode = patch.accessMode;
  if (patch.ipWhitelist !== undefined) next.ipWhitelist = [...patch.ipWhitelist];
  if (patch.rateLimit !== undefined) next.rateLimit = patch.rateLimit;
  if (patch.tier !== undefined) next.tier = patch.tier;
  if (patch.expiresAt !== undefined) next.expiresAt = patch.expiresAt;
  if (patch.rotatedToId !== undefined) next.rotatedToId = patch.rotatedToId;
  return next;
}

/** The portal with the patch applied (an undefined field leaves the value as it is). */
export function patchPortal(portal: Portal, patch: PortalPatch): Portal {
  const next: Portal = { ...portal };
  if (patch.name !== undefined) next.name = patch.name;
  if (patch.status !== undefined) next.status = patch.status;
  if (patch.defaultAccessMode !== undefined) next.defaultAccessMode = patch.defaultAccessMode;
  if (patch.upstream !== undefined) next.upstream = patch.upstream;
  if (patch.requestLimit !== undefined) next.requestLimit = patch.requestLimit;
  if (patch.allowedOrigins !== undefined) next.allowedOrigins = [...patch.allowedOrigins];
  return next;
}

/** The sandbox record's fields with the patch merged in one level deep: undefined values are left out, null is kept. */
export function mergeSandboxFields(fields: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  // Through a Map and fromEntries: a key like __proto__ stays a plain own field.
  const merged = new Map(Object.entries(fields));
  for (const [key, value] of Object.entries(patch)) if (value !== undefined) merged.set(key, value);
  return Object.fromEntries(merged);
}

/** The patch as stored by a one-level JSON merge: the keys whose value is undefined left out. */
export function definedEntries(patch: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined));
}

// ---- conflicts ----------------------------------------------------------------------------------

/**
 * The field a unique constraint guards, by the constraint's name in PostgreSQL or by the
 * "table.column" SQLite names in its message; undefined for constraints that are not conflicts
 * a caller can act on.
 */
const CONFLICT_FIELDS: Record<string, string> = {
  users_email_key: "email",
  "users.email": "email",
  portals_domain_key: "domain",
  "portals.domain": "domain",
  keys_digest_key: "digest",
  "keys.digest": "digest",
  sessions_token_digest_key: "tokenDigest",
  "sessions.token_digest": "tokenDigest",
  one_time_links_token_digest_key: "tokenDigest",
  "one_time_links.token_digest": "tokenDigest",
};

export function conflictError(constraint: string): StoreConflictError | undefined {
  const field = CONFLICT_FIELDS[constraint];
  if (field === undefined) return undefined;
  return new StoreConflictError(field, `${field} is already taken`);
}

/** A limit as SQL wants it: a whole number, at least 0. */
export function sqlLimit(limit: number): number {
  return Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : 0;
}

// ---- migrations ---------------------------------------------------------------------------------

export interface Migration {
  version: number;
  name: string;
  /** The file's name, NNN_name.sql. */
  file: string;
  sql: string;
  /** SHA-256 of the file (line endings normalised): a landed migration must never change. */
  checksum: string;
}

/** The NNN_name.sql files of a folder, in version order. */
/** A change-feed row, read as [seq, kind, entity_id, digest, version]. */
export function changeFromValues(values: unknown[]): StoredChange {
  const version = values[4] ?? null;
  return { seq: Number(values[0]), kind: values[1] as StoredChange["kind"], entityId: values[2] as string, digest: (values[3] as string | null) ?? null, version: version === null ? null : Number(version) };
}

export function loadMigrations(dir: URL): Migration[] {
  const migrations: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith(".sql")) continue;
    const match = /^(\d+)_([a-z0-9_]+)\.sql$/.exec(file);
    if (match === null) throw new Error(`migration file ${file} is not named NNN_name.sql`);
    const sql = readFileSync(new URL(file, dir), "utf8").replace(/\r\n/g, "\n");
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version)) throw new Error(`two migrations have version ${version}`);
    migrations.push({ version, name: match[2]!, file, sql, checksum: createHash("sha256").update(sql).digest("hex") });
  }
  return migrations.sort((a, b) => a.version - b.version);
}

/** Throws when a migration that was applied is missing or its file has changed since. */
export function checkApplied(
  migrations: Migration[],
  applied: { version: number; checksum: string }[],
  dialect: string,
): void {
  for (const a of applied) {
    const m = migrations.find((x) => x.version === a.version);
    // A version this keygate does not know comes from a newer one: migrations only add, so go on.
    if (m === undefined) continue;
    if (m.checksum !== a.checksum) {
      throw new Error(`${dialect} migration ${m.file} was changed after it was applied; add a new migration instead`);
    }
  }
}
