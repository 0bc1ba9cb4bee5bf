/**
 * The embedded store: SQLite through node:sqlite (no native addon), one database file
 * `<dataDir>/keygate.db` in WAL mode.
 *
 * node:sqlite is synchronous, so each method runs its whole transaction (BEGIN IMMEDIATE …
 * COMMIT) before it returns: nothing else can interleave with it in this process, and the write
 * lock taken at BEGIN keeps other processes out. Statements are prepared once, on first use after
 * the tables exist, and reused.
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { FileObjects } from "../objects.ts";
import {
  addressFromRow,
  AUDIT_COLUMNS,
  DEPENDENT_COLUMNS,
  KEY_COLUMNS,
  KEY_MUTABLE_COLUMNS,
  LINK_COLUMNS,
  MEMBERSHIP_COLUMNS,
  NOTIFICATION_COLUMNS,
  PORTAL_COLUMNS,
  PORTAL_MUTABLE_COLUMNS,
  REQUEST_COLUMNS,
  REQUEST_WRITE_COLUMNS,
  SANDBOX_COLUMNS,
  SANDBOX_ITEM_COLUMNS,
  SANDBOX_WEBHOOK_COLUMNS,
  SESSION_COLUMNS,
  type SqlValue,
  USER_COLUMNS,
  auditFromRow,
  auditValues,
  changeFromValues,
  checkApplied,
  columnList,
  conflictError,
  dependentValues,
  keyFromRow,
  keyFromValues,
  keyUpdateValues,
  keyValues,
  linkFromRow,
  linkValues,
  loadMigrations,
  membershipFromRow,
  membershipValues,
  minuteCountFromRow,
  normalizeEmail,
  notificationFromRow,
  notificationValues,
  patchKey,
  patchPortal,
  portalFromRow,
  portalUpdateValues,
  portalValues,
  portalWithRoleFromRow,
  redactedAuditState,
  requestFromRow,
  requestValues,
  routeUseFromRow,
  sandboxFromRow,
  sandboxItemFromRow,
  sandboxValues,
  sandboxWebhookFromRow,
  sandboxWebhookValues,
  sessionFromRow,
  sessionValues,
  encodeSandboxFields,
  mergeSandboxFields,
  sqlLimit,
  userFromRow,
  userValues,
} from "../rows.ts";
import { UpstreamCipher } from "../credentials.ts";
import { RolledBack, type Sql } from "../sql.ts";
import { StoreConflictError } from "../store.ts";
import { APP_SESSION_COLUMNS, GRANT_COLUMNS, appSessionFromRow, appSessionValues, grantFromRow, grantValues } from "../oauth-rows.ts";
import type {
  AppSession,
  AuditEvent,
  Effects,
  KeyDependent,
  KeyPatch,
  KeyRecord,
  MemberRole,
  Membership,
  Notification,
  OAuthGrant,
  OneTimeLink,
  Portal,
  PortalPatch,
  Redemption,
  RequestLogEntry,
  RouteUse,
  Sandbox,
  SandboxItem,
  SandboxWebhook,
  Session,
  Store,
  StoredChange,
  User,
} from "../store.ts";

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);
const BUSY_TIMEOUT_MS = 5000;

const placeholders = (n: number): string => Array.from({ length: n }, () => "?").join(", ");
const insertSql = (table: string, columns: readonly string[]): string =>
  `INSERT INTO ${table} (${columnList(columns)}) VALUES (${placeholders(columns.length)})`;
/** UPDATE … SET each column = ?2, ?3, … WHERE id = ?1. */
const updateByIdSql = (table: string, columns: readonly string[]): string =>
  `UPDATE ${table} SET ${columns.map((c, i) => `${c} = ?${i + 2}`).join(", ")} WHERE id = ?1`;

const KEYS = columnList(KEY_COLUMNS);
const MINUTE_MS = 60_000;

/** The statement with rows read as arrays of values (in the order of its columns). */
function arrays(statement: StatementSync): StatementSync {
  statement.setReturnArrays(true);
  return statement;
}

/** Every fixed statement, prepared together once the tables exist. */
function prepareStatements(db: DatabaseSync) {
  const p = (sql: string): StatementSync => db.prepare(sql);
  return {
    insertUser: p(insertSql("users", USER_COLUMNS)),
    userById: p(`SELECT ${columnList(USER_COLUMNS)} FROM users WHERE id = ?`),
    userByEmail: p(`SELECT ${columnList(USER_COLUMNS)} FROM users WHERE email = ?`),
    countUsers: p("SELECT COUNT(*) AS n FROM users"),
    passwordHash: p("SELECT password_hash FROM users WHERE id = ?"),
    setPasswordHash: p("UPDATE users SET password_hash = ? WHERE id = ?"),

    insertSession: p(insertSql("sessions", SESSION_COLUMNS)),
    sessionByDigest: p(`SELECT ${columnList(SESSION_COLUMNS)} FROM sessions WHERE token_digest = ?`),
    touchSession: p("UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2 AND last_seen_at < ?1"),
    deleteSession: p("DELETE FROM sessions WHERE id = ?"),
    deleteSessionsOf: p("DELETE FROM sessions WHERE user_id = ?"),
    deleteEndedSessionsOf: p("DELETE FROM sessions WHERE user_id = ? AND (expires_at <= ? OR last_seen_at <= ?)"),

    insertLink: p(insertSql("one_time_links", LINK_COLUMNS)),
    deletePasswordLinksOf: p("DELETE FROM one_time_links WHERE purpose = 'password' AND user_id = ?"),
    linkByDigest: p(`SELECT ${columnList(LINK_COLUMNS)} FROM one_time_links WHERE token_digest = ?`),
    invitationsOf: p(`SELECT ${columnList(LINK_COLUMNS)} FROM one_time_links WHERE purpose = 'invitation' AND portal_id = ? ORDER BY created_at, id`),
    deleteLink: p("DELETE FROM one_time_links WHERE id = ?"),

    insertPortal: p(insertSql("portals", PORTAL_COLUMNS)),
    portalById: p(`SELECT ${columnList(PORTAL_COLUMNS)} FROM portals WHERE id = ?`),
    updatePortal: p(updateByIdSql("portals", PORTAL_MUTABLE_COLUMNS)),
    portalsForUser: p(
      `SELECT ${columnList(PORTAL_COLUMNS, "p")}, m.role AS member_role FROM memberships m JOIN portals p ON p.id = m.portal_id
       WHERE m.user_id = ? ORDER BY p.created_at, p.id`,
    ),

    putMember: p(`${insertSql("memberships", MEMBERSHIP_COLUMNS)} ON CONFLICT (portal_id, user_id) DO UPDATE SET role = excluded.role`),
    getMember: p(`SELECT ${columnList(MEMBERSHIP_COLUMNS)} FROM memberships WHERE portal_id = ? AND user_id = ?`),
    deleteMember: p("DELETE FROM memberships WHERE portal_id = ? AND user_id = ?"),
    membersOf: p(`SELECT ${columnList(MEMBERSHIP_COLUMNS)} FROM memberships WHERE portal_id = ? ORDER BY created_at, user_id`),

    insertKey: p(insertSql("keys", KEY_COLUMNS)),
    keyById: p(`SELECT ${KEYS} FROM keys WHERE id = ?`),
    // The cache-miss lookup of every verification: rows as arrays, decoded by keyFromValues.
    keyByDigest: arrays(p(`SELECT ${KEYS} FROM keys WHERE digest = ?`)),
    updateKey: p(updateByIdSql("keys", KEY_MUTABLE_COLUMNS)),
    deleteKey: p("DELETE FROM keys WHERE id = ?"),
    countKeysByPortal: p(
      "SELECT portal_id, COUNT(*) AS n FROM keys WHERE type = ? AND portal_id IN (SELECT value FROM json_each(?)) GROUP BY portal_id",
    ),
    touchKey: p("UPDATE keys SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)"),

    // An entry of an unknown (or deleted) key selects no row: dropped, not a foreign key error.
    appendRequest: p(
      `INSERT INTO request_log (${columnList(REQUEST_WRITE_COLUMNS)})
       SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM keys WHERE id = ?1)`,
    ),
    requestsPerMinute: p(
      `SELECT (at / ${MINUTE_MS}) * ${MINUTE_MS} AS minute, COUNT(*) AS n FROM request_log
       WHERE key_id = ? AND at >= ? GROUP BY minute ORDER BY minute`,
    ),
    requestAddresses: p("SELECT ip, COUNT(*) AS n, MAX(at) AS last_seen FROM request_log WHERE key_id = ? GROUP BY ip ORDER BY last_seen DESC, ip"),
    requestRoutes: p(
      `SELECT method, route, missing_scope, COUNT(*) AS n, MIN(at) AS first_at, MAX(at) AS last_at FROM request_log
       WHERE key_id = ? GROUP BY method, route, missing_scope`,
    ),
    purgeRequests: p("DELETE FROM request_log WHERE at < ?"),

    lastChange: p("SELECT COALESCE(MAX(seq), 0) AS n FROM changes"),
    changesSince: arrays(p("SELECT seq, kind, entity_id, digest, version FROM changes WHERE seq > ? ORDER BY seq LIMIT ?")),
    changesAmong: arrays(p("SELECT seq, kind, entity_id, digest, version FROM changes WHERE seq > ? AND seq IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ?")),
    pruneChanges: p("DELETE FROM changes WHERE at < CAST(unixepoch('subsec') * 1000 AS INTEGER) - ?"),

    insertDependent: p(`${insertSql("key_dependents", DEPENDENT_COLUMNS)} ON CONFLICT DO NOTHING`),
    deleteDependent: p("DELETE FROM key_dependents WHERE key_id = ? AND kind = ? AND dependent_id = ?"),
    countDependents: p("SELECT COUNT(*) AS n FROM key_dependents WHERE key_id = ?"),

    insertAudit: p(insertSql("audit_events", AUDIT_COLUMNS)),
    insertNotification: p(insertSql("notifications", NOTIFICATION_COLUMNS)),
    notificationsOf: p(
      `SELECT ${columnList(NOTIFICATION_COLUMNS)} FROM notifications WHERE user_id = ? ORDER BY at DESC, id DESC LIMIT ?`,
    ),
    markRead: p("UPDATE notifications SET read_at = COALESCE(read_at, ?) WHERE id = ? AND user_id = ?"),

    putSandbox: p(
      `${insertSql("sandboxes", SANDBOX_COLUMNS)} ON CONFLICT (portal_id) DO UPDATE SET
       request_burst = excluded.request_burst, requests_per_second = excluded.requests_per_second`,
    ),
    sandboxById: p(`SELECT ${columnList(SANDBOX_COLUMNS)} FROM sandboxes WHERE portal_id = ?`),
    putSandboxWebhook: p(
      `${insertSql("sandbox_webhooks", SANDBOX_WEBHOOK_COLUMNS)} ON CONFLICT (portal_id, token_digest) DO UPDATE SET
       user_id = excluded.user_id, scopes = excluded.scopes`,
    ),
    sandboxWebhook: p(`SELECT ${columnList(SANDBOX_WEBHOOK_COLUMNS)} FROM sandbox_webhooks WHERE portal_id = ? AND token_digest = ?`),
    sandboxWebhooksByToken: p(`SELECT ${columnList(SANDBOX_WEBHOOK_COLUMNS)} FROM sandbox_webhooks WHERE token_digest = ? LIMIT 2`),
    nextSandboxId: p(
      `INSERT INTO sandbox_sequences (portal_id, entity_type, last_id) VALUES (?, ?, 1)
       ON CONFLICT (portal_id, entity_type) DO UPDATE SET last_id = last_id + 1 RETURNING last_id`,
    ),
    insertSandboxItem: p(insertSql("sandbox_items", SANDBOX_ITEM_COLUMNS)),
    sandboxItem: p(`SELECT ${columnList(SANDBOX_ITEM_COLUMNS)} FROM sandbox_items WHERE portal_id = ? AND entity_type = ? AND id = ?`),
    updateSandboxItem: p("UPDATE sandbox_items SET fields = ?, updated_at = ? WHERE portal_id = ? AND entity_type = ? AND id = ?"),
    deleteSandboxItem: p("DELETE FROM sandbox_items WHERE portal_id = ? AND entity_type = ? AND id = ?"),
    sandboxItems: p(`SELECT ${columnList(SANDBOX_ITEM_COLUMNS)} FROM sandbox_items WHERE portal_id = ? AND entity_type = ? ORDER BY id`),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

export class SqliteStore implements Store {
  readonly dialect = "sqlite";
  readonly #db: DatabaseSync;
  readonly #cipher: UpstreamCipher;
  #statements: Statements | undefined;
  /** listKeys / listAudit / listRequests statements by which filters are set (bit mask), prepared on first use. */
  readonly #listKeys = new Map<number, StatementSync>();
  readonly #listAudit = new Map<number, StatementSync>();
  readonly #listRequests = new Map<number, StatementSync>();

  readonly objects: FileObjects;

  constructor(db: DatabaseSync, cipher: UpstreamCipher, objects: FileObjects) {
    this.#db = db;
    this.#cipher = cipher;
    this.objects = objects;
  }

  get #s(): Statements {
    return (this.#statements ??= prepareStatements(this.#db));
  }

  /** The thin dialect (src/store/sql.ts): statements prepared on every call, for the modules that share their queries. */
  readonly sql: Sql = {
    all: async (sql, params) => this.#db.prepare(sql).all(...params),
    atomically: async (statements) => {
      try {
        this.#tx(() => {
          for (const { sql, params, mustChange } of statements) {
            const { changes } = this.#db.prepare(sql).run(...params);
            if (mustChange !== undefined && Number(changes) !== mustChange) throw new RolledBack();
          }
        });
        return true;
      } catch (error) {
        if (error instanceof RolledBack) return false;
        throw error;
      }
    },
  };

  /** Runs fn in BEGIN IMMEDIATE … COMMIT; rolls back and rethrows (unique violations as StoreConflictError) on error. */
  #tx<T>(fn: () => T): T {
    const db = this.#db;
    db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      db.exec("COMMIT");
      return result;
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw mapError(error);
    }
  }

  #writeEffects(effects: Effects): void {
    const s = this.#s;
    for (const event of effects.audit) s.insertAudit.run(...auditValues(event));
    for (const n of effects.notifications ?? []) s.insertNotification.run(...notificationValues(n));
  }

  async migrate(): Promise<void> {
    const db = this.#db;
    const migrations = loadMigrations(MIGRATIONS_DIR);
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`);
    this.#tx(() => {
      // Read inside the write lock: another process may have migrated in the meantime.
      const applied = db.prepare("SELECT version, checksum FROM schema_migrations").all() as { version: number; checksum: string }[];
      checkApplied(migrations, applied, "sqlite");
      const record = db.prepare("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)");
      for (const m of migrations) {
        if (applied.some((a) => a.version === m.version)) continue;
        db.exec(m.sql);
        record.run(m.version, m.name, m.checksum, Date.now());
      }
    });
    if (this.#sealPlainUpstreams()) {
      // The clear text is overwritten in the database (secure_delete); drop the WAL frames that still hold it.
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    }
    // Tables may have changed under statements prepared earlier.
    this.#statements = undefined;
    this.#listKeys.clear();
    this.#listAudit.clear();
    this.#listRequests.clear();
  }

  /**
   * Seals the upstreams an earlier keygate stored in the clear and masks the credentials in the
   * portal audit trail it wrote then; true when there were any.
   */
  #sealPlainUpstreams(): boolean {
    const db = this.#db;
    return this.#tx(() => {
      const plain = db.prepare("SELECT id, upstream FROM portals WHERE upstream IS NOT NULL AND json_extract(upstream, '$.ct') IS NULL").all() as { id: string; upstream: string }[];
      if (plain.length === 0) return false;
      const sealPortal = db.prepare("UPDATE portals SET upstream = ? WHERE id = ?");
      for (const { id, upstream } of plain) sealPortal.run(this.#cipher.seal(id, this.#cipher.open(id, upstream)), id);
      const maskAudit = db.prepare("UPDATE audit_events SET before_state = COALESCE(?, before_state), after_state = COALESCE(?, after_state) WHERE id = ?");
      for (const e of db.prepare("SELECT id, before_state, after_state FROM audit_events WHERE entity_type = 'portal'").all()) {
        const before = redactedAuditState(e["before_state"]);
        const after = redactedAuditState(e["after_state"]);
        if (before !== undefined || after !== undefined) maskAudit.run(before ?? null, after ?? null, e["id"] as string);
      }
      return true;
    });
  }

  async close(): Promise<void> {
    await this.objects.close();
    if (this.#db.isOpen) this.#db.close();
  }

  // ---- users ----

  async createUser(user: User, effects: Effects): Promise<void> {
    this.#tx(() => {
      this.#s.insertUser.run(...userValues(user));
      this.#writeEffects(effects);
    });
  }

  async getUser(id: string): Promise<User | undefined> {
    const row = this.#s.userById.get(id);
    return row && userFromRow(row);
  }

  async getUserByEmail(email: string): Promise<User | undefined> {
    const row = this.#s.userByEmail.get(normalizeEmail(email));
    return row && userFromRow(row);
  }

  async countUsers(): Promise<number> {
    return (this.#s.countUsers.get() as { n: number }).n;
  }

  async getPasswordHash(userId: string): Promise<string | null> {
    return ((this.#s.passwordHash.get(userId) as { password_hash: string | null } | undefined)?.password_hash ?? null);
  }

  async setPasswordHash(userId: string, hash: string | null, effects: Effects): Promise<boolean> {
    return this.#tx(() => {
      if (Number(this.#s.setPasswordHash.run(hash, userId).changes) === 0) return false;
      this.#s.deleteSessionsOf.run(userId);
      this.#writeEffects(effects);
      return true;
    });
  }

  // ---- sessions and one-time links ----

  async createSession(session: Session): Promise<void> {
    this.#tx(() => this.#s.insertSession.run(...sessionValues(session)));
  }

  async getSessionByDigest(tokenDigest: string): Promise<Session | undefined> {
    const row = this.#s.sessionByDigest.get(tokenDigest);
    return row && sessionFromRow(row);
  }

  async touchSession(id: string, at: number): Promise<void> {
    this.#s.touchSession.run(at, id);
  }

  async deleteSession(id: string): Promise<boolean> {
    return Number(this.#s.deleteSession.run(id).changes) > 0;
  }

  async deleteSessionsOf(userId: string, ended?: { now: number; idleSince: number }): Promise<number> {
    const result = ended ? this.#s.deleteEndedSessionsOf.run(userId, ended.now, ended.idleSince) : this.#s.deleteSessionsOf.run(userId);
    return Number(result.changes);
  }

  async createLink(link: OneTimeLink, effects: Effects): Promise<void> {
    this.#tx(() => {
      if (link.purpose === "password" && link.userId !== null) this.#s.deletePasswordLinksOf.run(link.userId);
      this.#s.insertLink.run(...linkValues(link));
      this.#writeEffects(effects);
    });
  }

  async getLinkByDigest(tokenDigest: string): Promise<OneTimeLink | undefined> {
    const row = this.#s.linkByDigest.get(tokenDigest);
    return row && linkFromRow(row);
  }

  async listInvitations(portalId: string): Promise<OneTimeLink[]> {
    return this.#s.invitationsOf.all(portalId).map(linkFromRow);
  }

  async deleteLink(id: string, effects: Effects): Promise<boolean> {
    return this.#tx(() => {
      if (Number(this.#s.deleteLink.run(id).changes) === 0) return false;
      this.#writeEffects(effects);
      return true;
    });
  }

  async redeemLink(id: string, redemption: Redemption, effects: Effects): Promise<boolean> {
    const s = this.#s;
    return this.#tx(() => {
      if (Number(s.deleteLink.run(id).changes) === 0) return false;
      if (redemption.newUser) s.insertUser.run(...userValues(redemption.newUser));
      if (redemption.password) {
        if (Number(s.setPasswordHash.run(redemption.password.hash, redemption.password.userId).changes) === 0) throw new Error(`no user ${redemption.password.userId}`);
        s.deleteSessionsOf.run(redemption.password.userId);
      }
      if (redemption.member) s.putMember.run(...membershipValues(redemption.member));
      this.#writeEffects(effects);
      return true;
    });
  }

  // ---- portals ----

  async createPortal(portal: Portal, creator: Membership, effects: Effects): Promise<void> {
    checkCreator(portal, creator);
    this.#tx(() => {
      this.#s.insertPortal.run(...portalValues(portal, this.#cipher));
      this.#s.putMember.run(...membershipValues(creator));
      this.#writeEffects(effects);
    });
  }

  async getPortal(id: string): Promise<Portal | undefined> {
    const row = this.#s.portalById.get(id);
    return row && portalFromRow(row, this.#cipher);
  }

  async updatePortal(id: string, patch: PortalPatch, effects: Effects): Promise<Portal | undefined> {
    return this.#tx(() => {
      const row = this.#s.portalById.get(id);
      if (row === undefined) return undefined;
      const next = patchPortal(portalFromRow(row, this.#cipher), patch);
      this.#s.updatePortal.run(...portalUpdateValues(next, this.#cipher));
      this.#writeEffects(effects);
      return next;
    });
  }

  async listPortalsForUser(userId: string): Promise<(Portal & { role: MemberRole })[]> {
    return this.#s.portalsForUser.all(userId).map((row) => portalWithRoleFromRow(row, this.#cipher));
  }

  // ---- members ----

  async putMember(member: Membership, effects: Effects): Promise<void> {
    this.#tx(() => {
      this.#s.putMember.run(...membershipValues(member));
      this.#writeEffects(effects);
    });
  }

  async getMember(portalId: string, userId: string): Promise<Membership | undefined> {
    const row = this.#s.getMember.get(portalId, userId);
    return row && membershipFromRow(row);
  }

  async removeMember(portalId: string, userId: string, effects: Effects): Promise<boolean> {
    return this.#tx(() => {
      if (Number(this.#s.deleteMember.run(portalId, userId).changes) === 0) return false;
      this.#writeEffects(effects);
      return true;
    });
  }

  async listMembers(portalId: string): Promise<Membership[]> {
    return this.#s.membersOf.all(portalId).map(membershipFromRow);
  }

  // ---- keys ----

  async createKey(key: KeyRecord, effects: Effects): Promise<void> {
    this.#tx(() => {
      this.#s.insertKey.run(...keyValues(key));
      this.#writeEffects(effects);
    });
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const row = this.#s.keyById.get(id);
    return row && keyFromRow(row);
  }

  async getKeyByDigest(digest: string): Promise<KeyRecord | undefined> {
    return this.getKeyByDigestNow(digest);
  }

  getKeyByDigestNow(digest: string): KeyRecord | undefined {
    const values = this.#s.keyByDigest.get(digest) as unknown as unknown[] | undefined;
    return values && keyFromValues(values);
  }

  async updateKey(id: string, patch: KeyPatch, now: number, effects: Effects): Promise<KeyRecord | undefined> {
    return this.#tx(() => {
      const row = this.#s.keyById.get(id);
      if (row === undefined) return undefined;
      const next = patchKey(keyFromRow(row), patch, now);
      this.#s.updateKey.run(...keyUpdateValues(next));
      this.#writeEffects(effects);
      return next;
    });
  }

  async rotateKey(oldId: string, oldPatch: KeyPatch, replacement: KeyRecord, now: number, effects: Effects): Promise<KeyRecord | undefined> {
    return this.#tx(() => {
      const row = this.#s.keyById.get(oldId);
      if (row === undefined) return undefined;
      // Checked under the transaction's lock: of two concurrent rotations, one wins.
      if (keyFromRow(row).rotatedToId !== null) throw new StoreConflictError("rotatedToId", "the key was rotated already");
      this.#s.insertKey.run(...keyValues(replacement));
      const old = patchKey(keyFromRow(row), oldPatch, now);
      this.#s.updateKey.run(...keyUpdateValues(old));
      this.#writeEffects(effects);
      return old;
    });
  }

  async deleteKey(id: string, effects: Effects): Promise<"deleted" | "not_found" | "has_dependents"> {
    return this.#tx(() => {
      if (this.#s.keyById.get(id) === undefined) return "not_found";
      if ((this.#s.countDependents.get(id) as { n: number }).n > 0) return "has_dependents";
      this.#s.deleteKey.run(id);
      this.#writeEffects(effects);
      return "deleted";
    });
  }

  async listKeys(filter: { portalId?: string; ownerId?: string; type?: string }): Promise<KeyRecord[]> {
    const conditions: [string, string | undefined][] = [
      ["portal_id", filter.portalId],
      ["owner_id", filter.ownerId],
      ["type", filter.type],
    ];
    const { statement, values } = this.#filtered(this.#listKeys, conditions, (where) =>
      `SELECT ${KEYS} FROM keys${where} ORDER BY created_at DESC, id DESC`,
    );
    return statement.all(...values).map(keyFromRow);
  }

  async countKeysByPortal(portalIds: string[], type: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>(portalIds.map((id) => [id, 0]));
    if (portalIds.length === 0) return counts;
    for (const row of this.#s.countKeysByPortal.all(type, JSON.stringify(portalIds)) as { portal_id: string; n: number }[]) {
      counts.set(row.portal_id, row.n);
    }
    return counts;
  }

  async touchKeys(lastUsed: Map<string, number>): Promise<void> {
    if (lastUsed.size === 0) return;
    this.#tx(() => {
      for (const [id, at] of lastUsed) this.#s.touchKey.run(at, id);
    });
  }

  // ---- request log ----

  async appendRequests(entries: RequestLogEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#tx(() => {
      const insert = this.#s.appendRequest;
      for (const entry of entries) insert.run(...requestValues(entry));
    });
  }

  async listRequests(keyId: string, filter: { limit: number; before?: number; ip?: string }): Promise<RequestLogEntry[]> {
    const limit = sqlLimit(filter.limit);
    if (limit === 0) return [];
    const conditions: [string, SqlValue | undefined][] = [
      ["key_id = ?", keyId],
      ["ip = ?", filter.ip],
      ["at < ?", filter.before],
    ];
    const { statement, values } = this.#filtered(
      this.#listRequests,
      conditions,
      (where) => `SELECT ${columnList(REQUEST_COLUMNS)} FROM request_log${where} ORDER BY at DESC, id DESC LIMIT ?`,
      true,
    );
    return statement.all(...values, limit).map(requestFromRow);
  }

  async requestsPerMinute(keyId: string, since: number): Promise<{ minute: number; count: number }[]> {
    return this.#s.requestsPerMinute.all(keyId, since).map(minuteCountFromRow);
  }

  async requestAddresses(keyId: string): Promise<{ ip: string; count: number; lastSeen: number }[]> {
    return this.#s.requestAddresses.all(keyId).map(addressFromRow);
  }

  async requestRoutes(keyId: string): Promise<RouteUse[]> {
    return this.#s.requestRoutes.all(keyId).map(routeUseFromRow);
  }

  async purgeRequests(olderThan: number): Promise<number> {
    return Number(this.#s.purgeRequests.run(olderThan).changes);
  }

  // ---- the change feed ----

  async lastChange(): Promise<number> {
    return (this.#s.lastChange.get() as { n: number }).n;
  }

  async changesSince(after: number, limit: number, among?: readonly number[]): Promise<StoredChange[]> {
    const rows = among === undefined ? this.#s.changesSince.all(after, limit) : this.#s.changesAmong.all(after, JSON.stringify(among), limit);
    return (rows as unknown as unknown[][]).map(changeFromValues);
  }

  async pruneChanges(keepMs: number): Promise<number> {
    return Number(this.#s.pruneChanges.run(keepMs).changes);
  }

  // ---- dependents ----

  async addDependent(dependent: KeyDependent): Promise<void> {
    try {
      this.#s.insertDependent.run(...dependentValues(dependent));
    } catch (error) {
      throw mapError(error);
    }
  }

  async removeDependent(keyId: string, kind: string, dependentId: string): Promise<void> {
    this.#s.deleteDependent.run(keyId, kind, dependentId);
  }

  async countDependents(keyId: string): Promise<number> {
    return (this.#s.countDependents.get(keyId) as { n: number }).n;
  }

  // ---- audit, notifications ----

  async listAudit(filter: { portalId?: string; entityId?: string; limit: number; before?: number }): Promise<AuditEvent[]> {
    const limit = sqlLimit(filter.limit);
    if (limit === 0) return [];
    const conditions: [string, string | number | undefined][] = [
      ["portal_id = ?", filter.portalId],
      ["entity_id = ?", filter.entityId],
      ["at < ?", filter.before],
    ];
    const { statement, values } = this.#filtered(
      this.#listAudit,
      conditions,
      (where) => `SELECT ${columnList(AUDIT_COLUMNS)} FROM audit_events${where} ORDER BY at DESC, id DESC LIMIT ?`,
      true,
    );
    return statement.all(...values, limit).map(auditFromRow);
  }

  async listNotifications(userId: string, limit: number): Promise<Notification[]> {
    const n = sqlLimit(limit);
    if (n === 0) return [];
    return this.#s.notificationsOf.all(userId, n).map(notificationFromRow);
  }

  async markNotificationRead(userId: string, id: string, now: number): Promise<boolean> {
    return Number(this.#s.markRead.run(now, id, userId).changes) > 0;
  }

  // ---- sandbox ----

  async putSandbox(sandbox: Sandbox): Promise<void> {
    this.#s.putSandbox.run(...sandboxValues(sandbox));
  }

  async getSandbox(portalId: string): Promise<Sandbox | undefined> {
    const row = this.#s.sandboxById.get(portalId);
    return row && sandboxFromRow(row);
  }

  async putSandboxWebhook(webhook: SandboxWebhook): Promise<void> {
    this.#s.putSandboxWebhook.run(...sandboxWebhookValues(webhook));
  }

  async getSandboxWebhook(portalId: string, tokenDigest: string): Promise<SandboxWebhook | undefined> {
    const row = this.#s.sandboxWebhook.get(portalId, tokenDigest);
    return row && sandboxWebhookFromRow(row);
  }

  async sandboxWebhooksByToken(tokenDigest: string): Promise<SandboxWebhook[]> {
    return this.#s.sandboxWebhooksByToken.all(tokenDigest).map(sandboxWebhookFromRow);
  }

  async addSandboxItem(portalId: string, entityType: string, fields: Record<string, unknown>, now: number): Promise<SandboxItem> {
    return this.#tx(() => {
      const { last_id: id } = this.#s.nextSandboxId.get(portalId, entityType) as { last_id: number };
      const item: SandboxItem = { portalId, entityType, id, fields: JSON.parse(encodeSandboxFields(fields)) as Record<string, unknown>, createdAt: now, updatedAt: now };
      this.#s.insertSandboxItem.run(portalId, entityType, id, encodeSandboxFields(fields), now, now);
      return item;
    });
  }

  async getSandboxItem(portalId: string, entityType: string, id: number): Promise<SandboxItem | undefined> {
    const row = this.#s.sandboxItem.get(portalId, entityType, id);
    return row && sandboxItemFromRow(row);
  }

  async updateSandboxItem(portalId: string, entityType: string, id: number, patch: Record<string, unknown>, now: number): Promise<SandboxItem | undefined> {
    return this.#tx(() => {
      const row = this.#s.sandboxItem.get(portalId, entityType, id);
      if (row === undefined) return undefined;
      const item = sandboxItemFromRow(row);
      const fields = JSON.parse(encodeSandboxFields(mergeSandboxFields(item.fields, patch))) as Record<string, unknown>;
      this.#s.updateSandboxItem.run(encodeSandboxFields(fields), now, portalId, entityType, id);
      return { ...item, fields, updatedAt: now };
    });
  }

  async deleteSandboxItem(portalId: string, entityType: string, id: number): Promise<boolean> {
    return Number(this.#s.deleteSandboxItem.run(portalId, entityType, id).changes) > 0;
  }

  async listSandboxItems(portalId: string, entityType: string): Promise<SandboxItem[]> {
    return this.#s.sandboxItems.all(portalId, entityType).map(sandboxItemFromRow);
  }

  // ---- OAuth of authorization keys (migration 008) ----

  readonly #oauth = new Map<string, StatementSync>();
  /** A statement of the OAuth tables, prepared on first use. */
  #o(sql: string): StatementSync {
    let statement = this.#oauth.get(sql);
    if (statement === undefined) this.#oauth.set(sql, (statement = this.#db.prepare(sql)));
    return statement;
  }

  async getRedirectUris(keyId: string): Promise<string[]> {
    const row = this.#o("SELECT redirect_uris FROM app_redirect_uris WHERE key_id = ?").get(keyId) as { redirect_uris: string } | undefined;
    return row ? (JSON.parse(row.redirect_uris) as string[]) : [];
  }

  async setRedirectUris(keyId: string, uris: string[], now: number, effects: Effects): Promise<void> {
    this.#tx(() => {
      this.#o(
        "INSERT INTO app_redirect_uris (key_id, redirect_uris, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (key_id) DO UPDATE SET redirect_uris = ?2, updated_at = ?3",
      ).run(keyId, JSON.stringify(uris), now);
      this.#writeEffects(effects);
    });
  }

  async createGrant(grant: OAuthGrant): Promise<void> {
    this.#tx(() => this.#o(`INSERT INTO oauth_grants (${GRANT_COLUMNS.join(", ")}) VALUES (${placeholders(GRANT_COLUMNS.length)})`).run(...grantValues(grant)));
  }

  async getGrantByCode(codeDigest: string): Promise<OAuthGrant | undefined> {
    const row = this.#o(`SELECT ${GRANT_COLUMNS.join(", ")} FROM oauth_grants WHERE code_digest = ?`).get(codeDigest);
    return row && grantFromRow(row);
  }

  async getGrantByState(keyId: string, stateDigest: string): Promise<OAuthGrant | undefined> {
    const row = this.#o(`SELECT ${GRANT_COLUMNS.join(", ")} FROM oauth_grants WHERE key_id = ? AND state_digest = ? ORDER BY created_at DESC, id DESC LIMIT 1`).get(keyId, stateDigest);
    return row && grantFromRow(row);
  }

  async redeemGrant(grantId: string, session: AppSession, now: number): Promise<"issued" | "replayed"> {
    return this.#tx(() => {
      if (Number(this.#o("UPDATE oauth_grants SET used_at = ? WHERE id = ? AND used_at IS NULL").run(now, grantId).changes) === 0) {
        this.#o("DELETE FROM app_sessions WHERE grant_id = ?").run(grantId);
        return "replayed";
      }
      this.#o(`INSERT INTO app_sessions (${APP_SESSION_COLUMNS.join(", ")}) VALUES (${placeholders(APP_SESSION_COLUMNS.length)})`).run(...appSessionValues(session));
      return "issued";
    });
  }

  async getAppSessionByDigest(tokenDigest: string): Promise<AppSession | undefined> {
    const row = this.#o(`SELECT ${APP_SESSION_COLUMNS.join(", ")} FROM app_sessions WHERE token_digest = ?`).get(tokenDigest);
    return row && appSessionFromRow(row);
  }

  async deleteAppSession(id: string): Promise<boolean> {
    return this.#tx(() => Number(this.#o("DELETE FROM app_sessions WHERE id = ?").run(id).changes) > 0);
  }

  async pruneOAuth(grantsBefore: number, sessionsBefore: number): Promise<{ grants: number; sessions: number }> {
    return this.#tx(() => ({
      grants: Number(this.#o("DELETE FROM oauth_grants WHERE expires_at < ?").run(grantsBefore).changes),
      sessions: Number(this.#o("DELETE FROM app_sessions WHERE expires_at < ?").run(sessionsBefore).changes),
    }));
  }

  /**
   * The statement for the filters that are set, from cache (one per combination) and the values
   * to bind. A condition is "column" (meaning column = ?) or, with `raw`, an expression with ?.
   */
  #filtered(
    cache: Map<number, StatementSync>,
    conditions: [string, SqlValue | undefined][],
    sql: (where: string) => string,
    raw = false,
  ): { statement: StatementSync; values: SqlValue[] } {
    let mask = 0;
    const clauses: string[] = [];
    const values: SqlValue[] = [];
    conditions.forEach(([condition, value], i) => {
      if (value === undefined) return;
      mask |= 1 << i;
      clauses.push(raw ? condition : `${condition} = ?`);
      values.push(value);
    });
    let statement = cache.get(mask);
    if (statement === undefined) {
      statement = this.#db.prepare(sql(clauses.length === 0 ? "" : ` WHERE ${clauses.join(" AND ")}`));
      cache.set(mask, statement);
    }
    return { statement, values };
  }
}

function checkCreator(portal: Portal, creator: Membership): void {
  if (creator.portalId !== portal.id) throw new Error(`creator membership is for portal ${creator.portalId}, not ${portal.id}`);
}

/** A UNIQUE violation on a guarded column as StoreConflictError; anything else as it is. */
function mapError(error: unknown): unknown {
  if (error instanceof Error && (error as { errcode?: number }).errcode === 2067) {
    // SQLITE_CONSTRAINT_UNIQUE: "UNIQUE constraint failed: users.email"
    const column = /UNIQUE constraint failed: (\S+)/.exec(error.message)?.[1];
    const conflict = column === undefined ? undefined : conflictError(column);
    if (conflict !== undefined) return conflict;
  }
  return error;
}

export interface SqliteStoreOptions {
  /** The server secret: portals' upstreams are sealed under a key derived from it (src/store/credentials.ts). */
  serverSecret: string;
}

/**
 * Opens (creating when missing) `<dataDir>/keygate.db`; ":memory:" opens a private in-memory
 * database instead. Does not migrate: call migrate() (openStore does).
 *
 * A missing data directory is created 0700; the database and its -wal and -shm files are 0600
 * (SQLite gives the -wal and -shm files the database file's mode), also when an earlier keygate
 * left them readable by others.
 */
export async function openSqliteStore(dataDir: string, options: SqliteStoreOptions): Promise<SqliteStore> {
  const cipher = new UpstreamCipher(options.serverSecret);
  let path = ":memory:";
  if (dataDir !== ":memory:") {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    path = join(dataDir, "keygate.db");
    // An empty file is a new database to SQLite: created here, it never exists with another mode.
    writeFileSync(path, "", { flag: "a", mode: 0o600 });
    for (const file of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(file)) chmodSync(file, 0o600);
  }
  const db = new DatabaseSync(path);
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // A row's old content (an upstream rewritten or deleted) is zeroed in the pages written anyway: no extra I/O.
    db.exec("PRAGMA secure_delete = FAST");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
  } catch (error) {
    db.close();
    throw error;
  }
  return new SqliteStore(db, cipher, await FileObjects.open(db, dataDir));
}
