/**
 * The server store: PostgreSQL through pg. One pool; a transaction runs on one checked-out
 * client (BEGIN … COMMIT, ROLLBACK on error, always released). Read-modify-write methods lock
 * the row (SELECT … FOR UPDATE) first.
 *
 * The pool parses int8 (bigint: times, counts) to number and leaves json/jsonb as text, so rows
 * decode exactly as SQLite's do (see ../rows.ts); both are set on this pool only, not on pg's
 * global type table. Every query is a named prepared statement: prepared once per connection,
 * then only executed.
 */
import { type PoolClient, type QueryConfig, type QueryResultRow, Pool, types as pgTypes } from "pg";
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
  routeUseFromRow,
  sandboxFromRow,
  sandboxItemFromRow,
  sandboxValues,
  sandboxWebhookFromRow,
  sandboxWebhookValues,
  sessionFromRow,
  sessionValues,
  definedEntries,
  encodeSandboxFields,
  sqlLimit,
  userFromRow,
  userValues,
} from "../rows.ts";
import { UpstreamCipher } from "../credentials.ts";
import { RolledBack, type Sql, numberedPlaceholders } from "../sql.ts";
import { PostgresObjects } from "../objects.ts";
import { StoreConflictError } from "../store.ts";
import { isQueryTimeout } from "../unavailable.ts";
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

const INT8_OID = 20;
const JSON_OID = 114;
const JSONB_OID = 3802;

/** Type parsers of the store's pools: int8 as number (epoch ms and counts fit), json/jsonb as text. */
const typeParsers = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (oid === INT8_OID) return (value: string) => Number(value);
    if (oid === JSON_OID || oid === JSONB_OID) return (value: string) => value;
    return format === undefined ? pgTypes.getTypeParser(oid) : pgTypes.getTypeParser(oid, format);
  }) as typeof pgTypes.getTypeParser,
};

const placeholders = (n: number, from = 1): string => Array.from({ length: n }, (_, i) => `$${i + from}`).join(", ");
const insertSql = (table: string, columns: readonly string[]): string =>
  `INSERT INTO ${table} (${columnList(columns)}) VALUES (${placeholders(columns.length)})`;
/** UPDATE … SET each column = $2, $3, … WHERE id = $1. */
const updateByIdSql = (table: string, columns: readonly string[]): string =>
  `UPDATE ${table} SET ${columns.map((c, i) => `${c} = $${i + 2}`).join(", ")} WHERE id = $1`;

const KEYS = columnList(KEY_COLUMNS);
const MINUTE_MS = 60_000;

/** Named statements: the name is what pg prepares once per connection. */
const SQL = {
  insertUser: insertSql("users", USER_COLUMNS),
  userById: `SELECT ${columnList(USER_COLUMNS)} FROM users WHERE id = $1`,
  userByEmail: `SELECT ${columnList(USER_COLUMNS)} FROM users WHERE email = $1`,
  countUsers: "SELECT COUNT(*) AS n FROM users",
  passwordHash: "SELECT password_hash FROM users WHERE id = $1",
  setPasswordHash: "UPDATE users SET password_hash = $1 WHERE id = $2",

  insertSession: insertSql("sessions", SESSION_COLUMNS),
  sessionByDigest: `SELECT ${columnList(SESSION_COLUMNS)} FROM sessions WHERE token_digest = $1`,
  touchSession: "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1",
  deleteSession: "DELETE FROM sessions WHERE id = $1",
  deleteSessionsOf: "DELETE FROM sessions WHERE user_id = $1",
  deleteEndedSessionsOf: "DELETE FROM sessions WHERE user_id = $1 AND (expires_at <= $2 OR last_seen_at <= $3)",

  insertLink: insertSql("one_time_links", LINK_COLUMNS),
  deletePasswordLinksOf: "DELETE FROM one_time_links WHERE purpose = 'password' AND user_id = $1",
  linkByDigest: `SELECT ${columnList(LINK_COLUMNS)} FROM one_time_links WHERE token_digest = $1`,
  invitationsOf: `SELECT ${columnList(LINK_COLUMNS)} FROM one_time_links WHERE purpose = 'invitation' AND portal_id = $1 ORDER BY created_at, id`,
  deleteLink: "DELETE FROM one_time_links WHERE id = $1",

  insertPortal: insertSql("portals", PORTAL_COLUMNS),
  portalById: `SELECT ${columnList(PORTAL_COLUMNS)} FROM portals WHERE id = $1`,
  portalByIdForUpdate: `SELECT ${columnList(PORTAL_COLUMNS)} FROM portals WHERE id = $1 FOR UPDATE`,
  updatePortal: updateByIdSql("portals", PORTAL_MUTABLE_COLUMNS),
  portalsForUser: `SELECT ${columnList(PORTAL_COLUMNS, "p")}, m.role AS member_role FROM memberships m JOIN portals p ON p.id = m.portal_id
    WHERE m.user_id = $1 ORDER BY p.created_at, p.id`,

  putMember: `${insertSql("memberships", MEMBERSHIP_COLUMNS)} ON CONFLICT (portal_id, user_id) DO UPDATE SET role = excluded.role`,
  getMember: `SELECT ${columnList(MEMBERSHIP_COLUMNS)} FROM memberships WHERE portal_id = $1 AND user_id = $2`,
  deleteMember: "DELETE FROM memberships WHERE portal_id = $1 AND user_id = $2",
  membersOf: `SELECT ${columnList(MEMBERSHIP_COLUMNS)} FROM memberships WHERE portal_id = $1 ORDER BY created_at, user_id`,

  insertKey: insertSql("keys", KEY_COLUMNS),
  keyById: `SELECT ${KEYS} FROM keys WHERE id = $1`,
  keyByIdForUpdate: `SELECT ${KEYS} FROM keys WHERE id = $1 FOR UPDATE`,
  keyByDigest: `SELECT ${KEYS} FROM keys WHERE digest = $1`,
  updateKey: updateByIdSql("keys", KEY_MUTABLE_COLUMNS),
  deleteKey: "DELETE FROM keys WHERE id = $1",
  deleteKeyRequests: "DELETE FROM request_log WHERE key_id = $1",
  countKeysByPortal: "SELECT portal_id, COUNT(*) AS n FROM keys WHERE type = $1 AND portal_id = ANY($2::text[]) GROUP BY portal_id",
  touchKeys: `UPDATE keys AS k SET last_used_at = t.at
    FROM unnest($1::text[], $2::bigint[]) AS t(id, at)
    WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.at)`,

  // One statement per batch, the entries as parallel arrays. The join drops entries of unknown
  // keys. request_log has no foreign key (see migration 002); FOR KEY SHARE stands in for it: a
  // concurrent deleteKey waits for the batch (its FOR UPDATE conflicts) and then deletes what it
  // appended, and a key that a deleteKey committed first is skipped, so no entry outlives its key.
  // ORDER BY keeps the batch's order in the ids (the tie-break of equal times).
  appendRequests: `INSERT INTO request_log (${columnList(REQUEST_WRITE_COLUMNS)})
    SELECT e.key_id, e.at, e.ip, e.method, e.path, e.status, e.latency_ms, e.route, e.missing_scope
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::double precision[], $8::text[], $9::text[])
      WITH ORDINALITY AS e(key_id, at, ip, method, path, status, latency_ms, route, missing_scope, n)
    JOIN keys k ON k.id = e.key_id
    ORDER BY e.n
    FOR KEY SHARE OF k`,
  requestsPerMinute: `SELECT (at / ${MINUTE_MS}) * ${MINUTE_MS} AS minute, COUNT(*) AS n FROM request_log
    WHERE key_id = $1 AND at >= $2 GROUP BY 1 ORDER BY 1`,
  requestAddresses: "SELECT ip, COUNT(*) AS n, MAX(at) AS last_seen FROM request_log WHERE key_id = $1 GROUP BY ip ORDER BY last_seen DESC, ip",
  requestRoutes: `SELECT method, route, missing_scope, COUNT(*)::integer AS n, MIN(at) AS first_at, MAX(at) AS last_at FROM request_log
    WHERE key_id = $1 GROUP BY method, route, missing_scope`,
  purgeRequests: "DELETE FROM request_log WHERE at < $1",

  lastChange: "SELECT COALESCE(MAX(seq), 0) AS n FROM changes",
  changesSince: "SELECT seq, kind, entity_id, digest, version FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
  changesAmong: "SELECT seq, kind, entity_id, digest, version FROM changes WHERE seq > $1 AND seq = ANY($3::bigint[]) ORDER BY seq LIMIT $2",
  pruneChanges: "DELETE FROM changes WHERE at < (floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint - $1",

  insertDependent: `${insertSql("key_dependents", DEPENDENT_COLUMNS)} ON CONFLICT DO NOTHING`,
  deleteDependent: "DELETE FROM key_dependents WHERE key_id = $1 AND kind = $2 AND dependent_id = $3",
  countDependents: "SELECT COUNT(*) AS n FROM key_dependents WHERE key_id = $1",

  insertAudit: insertSql("audit_events", AUDIT_COLUMNS),
  insertNotification: insertSql("notifications", NOTIFICATION_COLUMNS),
  notificationsOf: `SELECT ${columnList(NOTIFICATION_COLUMNS)} FROM notifications WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2`,
  markRead: "UPDATE notifications SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND user_id = $3",

  putSandbox: `${insertSql("sandboxes", SANDBOX_COLUMNS)} ON CONFLICT (portal_id) DO UPDATE SET
    request_burst = excluded.request_burst, requests_per_second = excluded.requests_per_second`,
  sandboxById: `SELECT ${columnList(SANDBOX_COLUMNS)} FROM sandboxes WHERE portal_id = $1`,
  putSandboxWebhook: `${insertSql("sandbox_webhooks", SANDBOX_WEBHOOK_COLUMNS)} ON CONFLICT (portal_id, token_digest) DO UPDATE SET
    user_id = excluded.user_id, scopes = excluded.scopes`,
  sandboxWebhook: `SELECT ${columnList(SANDBOX_WEBHOOK_COLUMNS)} FROM sandbox_webhooks WHERE portal_id = $1 AND token_digest = $2`,
  sandboxWebhooksByToken: `SELECT ${columnList(SANDBOX_WEBHOOK_COLUMNS)} FROM sandbox_webhooks WHERE token_digest = $1 LIMIT 2`,
  // One statement: the sequence's row lock (taken by the upsert) orders concurrent adds.
  addSandboxItem: `WITH seq AS (
      INSERT INTO sandbox_sequences (portal_id, entity_type, last_id) VALUES ($1, $2, 1)
      ON CONFLICT (portal_id, entity_type) DO UPDATE SET last_id = sandbox_sequences.last_id + 1
      RETURNING last_id)
    INSERT INTO sandbox_items (${columnList(SANDBOX_ITEM_COLUMNS)})
    SELECT $1, $2, seq.last_id, $3::jsonb, $4, $4 FROM seq
    RETURNING ${columnList(SANDBOX_ITEM_COLUMNS)}`,
  sandboxItem: `SELECT ${columnList(SANDBOX_ITEM_COLUMNS)} FROM sandbox_items WHERE portal_id = $1 AND entity_type = $2 AND id = $3`,
  // jsonb || merges one level deep, as updateSandboxItem promises.
  updateSandboxItem: `UPDATE sandbox_items SET fields = fields || $4::jsonb, updated_at = $5
    WHERE portal_id = $1 AND entity_type = $2 AND id = $3 RETURNING ${columnList(SANDBOX_ITEM_COLUMNS)}`,
  deleteSandboxItem: "DELETE FROM sandbox_items WHERE portal_id = $1 AND entity_type = $2 AND id = $3",
  sandboxItems: `SELECT ${columnList(SANDBOX_ITEM_COLUMNS)} FROM sandbox_items WHERE portal_id = $1 AND entity_type = $2 ORDER BY id`,
} as const;

type StatementName = keyof typeof SQL;

const statement = (name: StatementName, values: unknown[]): QueryConfig => ({ name: `keygate_${name}`, text: SQL[name], values });

/** Something that runs queries: the pool or a checked-out client. */
interface Queryable {
  query<R extends QueryResultRow>(config: QueryConfig): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface PostgresStoreOptions {
  /** The server secret: portals' upstreams are sealed under a key derived from it (src/store/credentials.ts). */
  serverSecret: string;
  /** Schema for keygate's tables, created when missing and put on every connection's search_path. Default: the server's search_path (usually public). */
  schema?: string;
  /** Pool size (default 10). */
  max?: number;
  /**
   * How long a query, a connection, or a wait for a pooled one may take, in ms (default
   * DEFAULT_STORE_TIMEOUT_MS). Past it the caller gets an error (503 STORE_UNAVAILABLE over HTTP)
   * instead of waiting for a database that stopped answering without closing the connection.
   */
  timeoutMs?: number;
  /** Called with errors of idle pooled connections (the pool drops them and carries on). */
  onIdleError?: (error: Error) => void;
}

export class PostgresStore implements Store {
  readonly dialect = "postgres";
  readonly #pool: Pool;
  readonly #schema: string | undefined;
  readonly #cipher: UpstreamCipher;
  #closed = false;

  readonly objects: PostgresObjects;

  constructor(pool: Pool, schema: string | undefined, cipher: UpstreamCipher) {
    this.#pool = pool;
    this.objects = new PostgresObjects(pool);
    this.#schema = schema;
    this.#cipher = cipher;
  }

  /** The thin dialect (src/store/sql.ts). */
  readonly sql: Sql = {
    all: async (sql, params) => (await this.#pool.query(numberedPlaceholders(sql), params)).rows,
    atomically: async (statements) => {
      try {
        await this.#tx(async (client) => {
          for (const { sql, params, mustChange } of statements) {
            const { rowCount } = await client.query(numberedPlaceholders(sql), params);
            if (mustChange !== undefined && rowCount !== mustChange) throw new RolledBack();
          }
        });
        return true;
      } catch (error) {
        if (error instanceof RolledBack) return false;
        throw error;
      }
    },
  };

  #q<R extends QueryResultRow = QueryResultRow>(name: StatementName, values: unknown[], on: Queryable = this.#pool) {
    return on.query<R>(statement(name, values));
  }

  /** Runs fn on one client between BEGIN and COMMIT; rolls back and rethrows (unique violations as StoreConflictError) on error. */
  async #tx<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      // After a query timeout node-postgres leaves the connection in an unknown state (the query
      // may still be running, its answer still to come): destroy it rather than wait a second
      // bound on a ROLLBACK; the server rolls back a transaction whose connection closed.
      if (isQueryTimeout(error)) {
        broken = error as Error;
        throw error;
      }
      try {
        await client.query("ROLLBACK");
      } catch (rollbackError) {
        // The connection is unusable: destroy it instead of returning it to the pool.
        broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
      }
      throw mapError(error);
    } finally {
      client.release(broken);
    }
  }

  async #writeEffects(client: PoolClient, effects: Effects): Promise<void> {
    for (const event of effects.audit) await this.#q("insertAudit", auditValues(event), client);
    for (const n of effects.notifications ?? []) await this.#q("insertNotification", notificationValues(n), client);
  }

  async migrate(): Promise<void> {
    const migrations = loadMigrations(MIGRATIONS_DIR);
    await this.#tx(async (client) => {
      // Waiting for another node's migration, or building an index on a large table, may take
      // longer than a request's bound: the migration's slow statements get MIGRATION_TIMEOUT_MS.
      const slow = (text: string, values?: unknown[]) => client.query({ text, values, query_timeout: MIGRATION_TIMEOUT_MS } as QueryConfig);
      await slow(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
      // One migrator per schema at a time; the lock ends with the transaction.
      await slow("SELECT pg_advisory_xact_lock(hashtext($1))", [`keygate.migrate.${this.#schema ?? "(search_path)"}`]);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer NOT NULL PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at bigint NOT NULL)`);
      const applied = (await client.query<{ version: number; checksum: string }>("SELECT version, checksum FROM schema_migrations")).rows;
      checkApplied(migrations, applied, "postgres");
      for (const m of migrations) {
        if (applied.some((a) => a.version === m.version)) continue;
        await slow(m.sql);
        await client.query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)", [
          m.version,
          m.name,
          m.checksum,
          Date.now(),
        ]);
      }
      await this.#sealPlainUpstreams(client);
    });
  }

  /**
   * Seals the upstreams an earlier keygate stored in the clear and masks the credentials in the
   * portal audit trail it wrote then (under the migration lock).
   */
  async #sealPlainUpstreams(client: PoolClient): Promise<void> {
    const plain = (await client.query<{ id: string; upstream: string }>("SELECT id, upstream FROM portals WHERE upstream IS NOT NULL AND upstream->>'ct' IS NULL")).rows;
    if (plain.length === 0) return;
    for (const { id, upstream } of plain) {
      await client.query("UPDATE portals SET upstream = $2 WHERE id = $1", [id, this.#cipher.seal(id, this.#cipher.open(id, upstream))]);
    }
    const events = await client.query<{ id: string; before_state: string | null; after_state: string | null }>(
      "SELECT id, before_state, after_state FROM audit_events WHERE entity_type = 'portal'",
    );
    for (const e of events.rows) {
      const before = redactedAuditState(e.before_state);
      const after = redactedAuditState(e.after_state);
      if (before === undefined && after === undefined) continue;
      await client.query("UPDATE audit_events SET before_state = COALESCE($2, before_state), after_state = COALESCE($3, after_state) WHERE id = $1", [
        e.id,
        before ?? null,
        after ?? null,
      ]);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  // ---- users ----

  async createUser(user: User, effects: Effects): Promise<void> {
    await this.#tx(async (c) => {
      await this.#q("insertUser", userValues(user), c);
      await this.#writeEffects(c, effects);
    });
  }

  async getUser(id: string): Promise<User | undefined> {
    const row = (await this.#q("userById", [id])).rows[0];
    return row && userFromRow(row);
  }

  async getUserByEmail(email: string): Promise<User | undefined> {
    const row = (await this.#q("userByEmail", [normalizeEmail(email)])).rows[0];
    return row && userFromRow(row);
  }

  async countUsers(): Promise<number> {
    return (await this.#q<{ n: number }>("countUsers", [])).rows[0]!.n;
  }

  async getPasswordHash(userId: string): Promise<string | null> {
    return (await this.#q<{ password_hash: string | null }>("passwordHash", [userId])).rows[0]?.password_hash ?? null;
  }

  async setPasswordHash(userId: string, hash: string | null, effects: Effects): Promise<boolean> {
    return this.#tx(async (c) => {
      if (((await this.#q("setPasswordHash", [hash, userId], c)).rowCount ?? 0) === 0) return false;
      await this.#q("deleteSessionsOf", [userId], c);
      await this.#writeEffects(c, effects);
      return true;
    });
  }

  // ---- sessions and one-time links ----

  async createSession(session: Session): Promise<void> {
    try {
      await this.#q("insertSession", sessionValues(session));
    } catch (error) {
      throw mapError(error);
    }
  }

  async getSessionByDigest(tokenDigest: string): Promise<Session | undefined> {
    const row = (await this.#q("sessionByDigest", [tokenDigest])).rows[0];
    return row && sessionFromRow(row);
  }

  async touchSession(id: string, at: number): Promise<void> {
    await this.#q("touchSession", [at, id]);
  }

  async deleteSession(id: string): Promise<boolean> {
    return ((await this.#q("deleteSession", [id])).rowCount ?? 0) > 0;
  }

  async deleteSessionsOf(userId: string, ended?: { now: number; idleSince: number }): Promise<number> {
    const result = ended ? await this.#q("deleteEndedSessionsOf", [userId, ended.now, ended.idleSince]) : await this.#q("deleteSessionsOf", [userId]);
    return result.rowCount ?? 0;
  }

  async createLink(link: OneTimeLink, effects: Effects): Promise<void> {
    await this.#tx(async (c) => {
      if (link.purpose === "password" && link.userId !== null) await this.#q("deletePasswordLinksOf", [link.userId], c);
      await this.#q("insertLink", linkValues(link), c);
      await this.#writeEffects(c, effects);
    });
  }

  async getLinkByDigest(tokenDigest: string): Promise<OneTimeLink | undefined> {
    const row = (await this.#q("linkByDigest", [tokenDigest])).rows[0];
    return row && linkFromRow(row);
  }

  async listInvitations(portalId: string): Promise<OneTimeLink[]> {
    return (await this.#q("invitationsOf", [portalId])).rows.map(linkFromRow);
  }

  async deleteLink(id: string, effects: Effects): Promise<boolean> {
    return this.#tx(async (c) => {
      if (((await this.#q("deleteLink", [id], c)).rowCount ?? 0) === 0) return false;
      await this.#writeEffects(c, effects);
      return true;
    });
  }

  async redeemLink(id: string, redemption: Redemption, effects: Effects): Promise<boolean> {
    return this.#tx(async (c) => {
      // The delete takes the row's lock: a second redemption waits for this one, then finds nothing.
      if (((await this.#q("deleteLink", [id], c)).rowCount ?? 0) === 0) return false;
      if (redemption.newUser) await this.#q("insertUser", userValues(redemption.newUser), c);
      if (redemption.password) {
        const { userId, hash } = redemption.password;
        if (((await this.#q("setPasswordHash", [hash, userId], c)).rowCount ?? 0) === 0) throw new Error(`no user ${userId}`);
        await this.#q("deleteSessionsOf", [userId], c);
      }
      if (redemption.member) await this.#q("putMember", membershipValues(redemption.member), c);
      await this.#writeEffects(c, effects);
      return true;
    });
  }

  // ---- portals ----

  async createPortal(portal: Portal, creator: Membership, effects: Effects): Promise<void> {
    if (creator.portalId !== portal.id) throw new Error(`creator membership is for portal ${creator.portalId}, not ${portal.id}`);
    await this.#tx(async (c) => {
      await this.#q("insertPortal", portalValues(portal, this.#cipher), c);
      await this.#q("putMember", membershipValues(creator), c);
      await this.#writeEffects(c, effects);
    });
  }

  async getPortal(id: string): Promise<Portal | undefined> {
    const row = (await this.#q("portalById", [id])).rows[0];
    return row && portalFromRow(row, this.#cipher);
  }

  async updatePortal(id: string, patch: PortalPatch, effects: Effects): Promise<Portal | undefined> {
    return this.#tx(async (c) => {
      const row = (await this.#q("portalByIdForUpdate", [id], c)).rows[0];
      if (row === undefined) return undefined;
      const next = patchPortal(portalFromRow(row, this.#cipher), patch);
      await this.#q("updatePortal", portalUpdateValues(next, this.#cipher), c);
      await this.#writeEffects(c, effects);
      return next;
    });
  }

  async listPortalsForUser(userId: string): Promise<(Portal & { role: MemberRole })[]> {
    return (await this.#q("portalsForUser", [userId])).rows.map((row) => portalWithRoleFromRow(row, this.#cipher));
  }

  // ---- members ----

  async putMember(member: Membership, effects: Effects): Promise<void> {
    await this.#tx(async (c) => {
      await this.#q("putMember", membershipValues(member), c);
      await this.#writeEffects(c, effects);
    });
  }

  async getMember(portalId: string, userId: string): Promise<Membership | undefined> {
    const row = (await this.#q("getMember", [portalId, userId])).rows[0];
    return row && membershipFromRow(row);
  }

  async removeMember(portalId: string, userId: string, effects: Effects): Promise<boolean> {
    return this.#tx(async (c) => {
      if (((await this.#q("deleteMember", [portalId, userId], c)).rowCount ?? 0) === 0) return false;
      await this.#writeEffects(c, effects);
      return true;
    });
  }

  async listMembers(portalId: string): Promise<Membership[]> {
    return (await this.#q("membersOf", [portalId])).rows.map(membershipFromRow);
  }

  // ---- keys ----

  async createKey(key: KeyRecord, effects: Effects): Promise<void> {
    await this.#tx(async (c) => {
      await this.#q("insertKey", keyValues(key), c);
      await this.#writeEffects(c, effects);
    });
  }

  async getKey(id: string): Promise<KeyRecord | undefined> {
    const row = (await this.#q("keyById", [id])).rows[0];
    return row && keyFromRow(row);
  }

  async getKeyByDigest(digest: string): Promise<KeyRecord | undefined> {
    const row = (await this.#q("keyByDigest", [digest])).rows[0];
    return row && keyFromRow(row);
  }

  async updateKey(id: string, patch: KeyPatch, now: number, effects: Effects): Promise<KeyRecord | undefined> {
    return this.#tx(async (c) => {
      const row = (await this.#q("keyByIdForUpdate", [id], c)).rows[0];
      if (row === undefined) return undefined;
      const next = patchKey(keyFromRow(row), patch, now);
      await this.#q("updateKey", keyUpdateValues(next), c);
      await this.#writeEffects(c, effects);
      return next;
    });
  }

  async rotateKey(oldId: string, oldPatch: KeyPatch, replacement: KeyRecord, now: number, effects: Effects): Promise<KeyRecord | undefined> {
    return this.#tx(async (c) => {
      const row = (await this.#q("keyByIdForUpdate", [oldId], c)).rows[0];
      if (row === undefined) return undefined;
      // Checked under the transaction's lock: of two concurrent rotations, one wins.
      if (keyFromRow(row).rotatedToId !== null) throw new StoreConflictError("rotatedToId", "the key was rotated already");
      await this.#q("insertKey", keyValues(replacement), c);
      const old = patchKey(keyFromRow(row), oldPatch, now);
      await this.#q("updateKey", keyUpdateValues(old), c);
      await this.#writeEffects(c, effects);
      return old;
    });
  }

  async deleteKey(id: string, effects: Effects): Promise<"deleted" | "not_found" | "has_dependents"> {
    return this.#tx(async (c) => {
      // The row lock holds off addDependent (its foreign key check needs a share lock on the key).
      if ((await this.#q("keyByIdForUpdate", [id], c)).rows.length === 0) return "not_found";
      if ((await this.#q<{ n: number }>("countDependents", [id], c)).rows[0]!.n > 0) return "has_dependents";
      // The key's request log (no foreign key, see migration 002); the key's row lock holds off appendRequests.
      await this.#q("deleteKeyRequests", [id], c);
      await this.#q("deleteKey", [id], c);
      await this.#writeEffects(c, effects);
      return "deleted";
    });
  }

  async listKeys(filter: { portalId?: string; ownerId?: string; type?: string }): Promise<KeyRecord[]> {
    const { name, text, values } = filtered("keygate_listKeys", [
      ["portal_id", filter.portalId],
      ["owner_id", filter.ownerId],
      ["type", filter.type],
    ]);
    const sql = `SELECT ${KEYS} FROM keys${text} ORDER BY created_at DESC, id DESC`;
    return (await this.#pool.query({ name, text: sql, values })).rows.map(keyFromRow);
  }

  async countKeysByPortal(portalIds: string[], type: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>(portalIds.map((id) => [id, 0]));
    if (portalIds.length === 0) return counts;
    for (const row of (await this.#q<{ portal_id: string; n: number }>("countKeysByPortal", [type, portalIds])).rows) {
      counts.set(row.portal_id, row.n);
    }
    return counts;
  }

  async touchKeys(lastUsed: Map<string, number>): Promise<void> {
    if (lastUsed.size === 0) return;
    // Sorted ids: concurrent batches lock shared rows in the same order.
    const ids = [...lastUsed.keys()].sort();
    await this.#q("touchKeys", [ids, ids.map((id) => lastUsed.get(id)!)]);
  }

  // ---- request log ----

  async appendRequests(entries: RequestLogEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const columns: unknown[][] = [[], [], [], [], [], [], [], [], []];
    for (const e of entries) {
      columns[0]!.push(e.keyId);
      columns[1]!.push(e.at);
      columns[2]!.push(e.ip);
      columns[3]!.push(e.method);
      columns[4]!.push(e.path);
      columns[5]!.push(e.status);
      columns[6]!.push(e.latencyMs);
      columns[7]!.push(e.route ?? null);
      columns[8]!.push(e.missingScope ?? null);
    }
    await this.#q("appendRequests", columns);
  }

  async listRequests(keyId: string, filter: { limit: number; before?: number; ip?: string }): Promise<RequestLogEntry[]> {
    const limit = sqlLimit(filter.limit);
    if (limit === 0) return [];
    const { name, text, values } = filtered("keygate_listRequests", [
      ["key_id", keyId],
      ["ip", filter.ip],
      ["at", filter.before, "<"],
    ]);
    const sql = `SELECT ${columnList(REQUEST_COLUMNS)} FROM request_log${text} ORDER BY at DESC, id DESC LIMIT $${values.length + 1}`;
    return (await this.#pool.query({ name, text: sql, values: [...values, limit] })).rows.map(requestFromRow);
  }

  async requestsPerMinute(keyId: string, since: number): Promise<{ minute: number; count: number }[]> {
    return (await this.#q("requestsPerMinute", [keyId, since])).rows.map(minuteCountFromRow);
  }

  async requestAddresses(keyId: string): Promise<{ ip: string; count: number; lastSeen: number }[]> {
    return (await this.#q("requestAddresses", [keyId])).rows.map(addressFromRow);
  }

  async requestRoutes(keyId: string): Promise<RouteUse[]> {
    return (await this.#q("requestRoutes", [keyId])).rows.map(routeUseFromRow);
  }

  async purgeRequests(olderThan: number): Promise<number> {
    return (await this.#q("purgeRequests", [olderThan])).rowCount ?? 0;
  }

  // ---- the change feed ----

  async lastChange(): Promise<number> {
    return (await this.#q<{ n: number }>("lastChange", [])).rows[0]!.n;
  }

  async changesSince(after: number, limit: number, among?: readonly number[]): Promise<StoredChange[]> {
    const rows = among === undefined ? await this.#q("changesSince", [after, limit]) : await this.#q("changesAmong", [after, limit, among]);
    return rows.rows.map((r) => changeFromValues([r["seq"], r["kind"], r["entity_id"], r["digest"], r["version"]]));
  }

  async pruneChanges(keepMs: number): Promise<number> {
    return (await this.#q("pruneChanges", [keepMs])).rowCount ?? 0;
  }

  // ---- dependents ----

  async addDependent(dependent: KeyDependent): Promise<void> {
    await this.#q("insertDependent", dependentValues(dependent));
  }

  async removeDependent(keyId: string, kind: string, dependentId: string): Promise<void> {
    await this.#q("deleteDependent", [keyId, kind, dependentId]);
  }

  async countDependents(keyId: string): Promise<number> {
    return (await this.#q<{ n: number }>("countDependents", [keyId])).rows[0]!.n;
  }

  // ---- audit, notifications ----

  async listAudit(filter: { portalId?: string; entityId?: string; limit: number; before?: number }): Promise<AuditEvent[]> {
    const limit = sqlLimit(filter.limit);
    if (limit === 0) return [];
    const { name, text, values } = filtered("keygate_listAudit", [
      ["portal_id", filter.portalId],
      ["entity_id", filter.entityId],
      ["at", filter.before, "<"],
    ]);
    const sql = `SELECT ${columnList(AUDIT_COLUMNS)} FROM audit_events${text} ORDER BY at DESC, id DESC LIMIT $${values.length + 1}`;
    return (await this.#pool.query({ name, text: sql, values: [...values, limit] })).rows.map(auditFromRow);
  }

  async listNotifications(userId: string, limit: number): Promise<Notification[]> {
    const n = sqlLimit(limit);
    if (n === 0) return [];
    return (await this.#q("notificationsOf", [userId, n])).rows.map(notificationFromRow);
  }

  async markNotificationRead(userId: string, id: string, now: number): Promise<boolean> {
    return ((await this.#q("markRead", [now, id, userId])).rowCount ?? 0) > 0;
  }

  // ---- sandbox ----

  async putSandbox(sandbox: Sandbox): Promise<void> {
    await this.#q("putSandbox", sandboxValues(sandbox));
  }

  async getSandbox(portalId: string): Promise<Sandbox | undefined> {
    const row = (await this.#q("sandboxById", [portalId])).rows[0];
    return row && sandboxFromRow(row);
  }

  async putSandboxWebhook(webhook: SandboxWebhook): Promise<void> {
    await this.#q("putSandboxWebhook", sandboxWebhookValues(webhook));
  }

  async getSandboxWebhook(portalId: string, tokenDigest: string): Promise<SandboxWebhook | undefined> {
    const row = (await this.#q("sandboxWebhook", [portalId, tokenDigest])).rows[0];
    return row && sandboxWebhookFromRow(row);
  }

  async sandboxWebhooksByToken(tokenDigest: string): Promise<SandboxWebhook[]> {
    return (await this.#q("sandboxWebhooksByToken", [tokenDigest])).rows.map(sandboxWebhookFromRow);
  }

  async addSandboxItem(portalId: string, entityType: string, fields: Record<string, unknown>, now: number): Promise<SandboxItem> {
    return sandboxItemFromRow((await this.#q("addSandboxItem", [portalId, entityType, encodeSandboxFields(fields), now])).rows[0]!);
  }

  async getSandboxItem(portalId: string, entityType: string, id: number): Promise<SandboxItem | undefined> {
    const row = (await this.#q("sandboxItem", [portalId, entityType, id])).rows[0];
    return row && sandboxItemFromRow(row);
  }

  async updateSandboxItem(portalId: string, entityType: string, id: number, patch: Record<string, unknown>, now: number): Promise<SandboxItem | undefined> {
    const row = (await this.#q("updateSandboxItem", [portalId, entityType, id, encodeSandboxFields(definedEntries(patch)), now])).rows[0];
    return row && sandboxItemFromRow(row);
  }

  async deleteSandboxItem(portalId: string, entityType: string, id: number): Promise<boolean> {
    return ((await this.#q("deleteSandboxItem", [portalId, entityType, id])).rowCount ?? 0) > 0;
  }

  async listSandboxItems(portalId: string, entityType: string): Promise<SandboxItem[]> {
    return (await this.#q("sandboxItems", [portalId, entityType])).rows.map(sandboxItemFromRow);
  }

  // ---- OAuth of authorization keys (migration 008) ----

  async getRedirectUris(keyId: string): Promise<string[]> {
    const row = (await this.#pool.query<{ redirect_uris: string }>("SELECT redirect_uris FROM app_redirect_uris WHERE key_id = $1", [keyId])).rows[0];
    return row ? (JSON.parse(row.redirect_uris) as string[]) : [];
  }

  async setRedirectUris(keyId: string, uris: string[], now: number, effects: Effects): Promise<void> {
    await this.#tx(async (c) => {
      await c.query(
        "INSERT INTO app_redirect_uris (key_id, redirect_uris, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO UPDATE SET redirect_uris = $2, updated_at = $3",
        [keyId, JSON.stringify(uris), now],
      );
      await this.#writeEffects(c, effects);
    });
  }

  async createGrant(grant: OAuthGrant): Promise<void> {
    await this.#pool.query(`INSERT INTO oauth_grants (${GRANT_COLUMNS.join(", ")}) VALUES (${GRANT_COLUMNS.map((_, i) => `$${i + 1}`).join(", ")})`, grantValues(grant));
  }

  async getGrantByCode(codeDigest: string): Promise<OAuthGrant | undefined> {
    const row = (await this.#pool.query(`SELECT ${GRANT_COLUMNS.join(", ")} FROM oauth_grants WHERE code_digest = $1`, [codeDigest])).rows[0];
    return row && grantFromRow(row);
  }

  async getGrantByState(keyId: string, stateDigest: string): Promise<OAuthGrant | undefined> {
    const sql = `SELECT ${GRANT_COLUMNS.join(", ")} FROM oauth_grants WHERE key_id = $1 AND state_digest = $2 ORDER BY created_at DESC, id DESC LIMIT 1`;
    const row = (await this.#pool.query(sql, [keyId, stateDigest])).rows[0];
    return row && grantFromRow(row);
  }

  async redeemGrant(grantId: string, session: AppSession, now: number): Promise<"issued" | "replayed"> {
    return this.#tx(async (c) => {
      if (((await c.query("UPDATE oauth_grants SET used_at = $1 WHERE id = $2 AND used_at IS NULL", [now, grantId])).rowCount ?? 0) === 0) {
        await c.query("DELETE FROM app_sessions WHERE grant_id = $1", [grantId]);
        return "replayed";
      }
      await c.query(`INSERT INTO app_sessions (${APP_SESSION_COLUMNS.join(", ")}) VALUES (${APP_SESSION_COLUMNS.map((_, i) => `$${i + 1}`).join(", ")})`, appSessionValues(session));
      return "issued";
    });
  }

  async getAppSessionByDigest(tokenDigest: string): Promise<AppSession | undefined> {
    const row = (await this.#pool.query(`SELECT ${APP_SESSION_COLUMNS.join(", ")} FROM app_sessions WHERE token_digest = $1`, [tokenDigest])).rows[0];
    return row && appSessionFromRow(row);
  }

  async deleteAppSession(id: string): Promise<boolean> {
    return ((await this.#pool.query("DELETE FROM app_sessions WHERE id = $1", [id])).rowCount ?? 0) > 0;
  }

  async pruneOAuth(grantsBefore: number, sessionsBefore: number): Promise<{ grants: number; sessions: number }> {
    return this.#tx(async (c) => ({
      grants: (await c.query("DELETE FROM oauth_grants WHERE expires_at < $1", [grantsBefore])).rowCount ?? 0,
      sessions: (await c.query("DELETE FROM app_sessions WHERE expires_at < $1", [sessionsBefore])).rowCount ?? 0,
    }));
  }
}

/**
 * The WHERE clause for the conditions that are set, its values, and a statement name that is
 * the same for the same combination (so each combination is prepared once per connection).
 */
function filtered(base: string, conditions: [string, SqlValue | undefined, string?][]): { name: string; text: string; values: SqlValue[] } {
  let mask = 0;
  const clauses: string[] = [];
  const values: SqlValue[] = [];
  conditions.forEach(([column, value, op = "="], i) => {
    if (value === undefined) return;
    mask |= 1 << i;
    values.push(value);
    clauses.push(`${column} ${op} $${values.length}`);
  });
  return { name: `${base}_${mask}`, text: clauses.length === 0 ? "" : ` WHERE ${clauses.join(" AND ")}`, values };
}

/** A unique violation (23505) of a guarded constraint as StoreConflictError; anything else as it is. */
function mapError(error: unknown): unknown {
  const e = error as { code?: unknown; constraint?: unknown };
  if (e !== null && typeof e === "object" && e.code === "23505" && typeof e.constraint === "string") {
    return conflictError(e.constraint) ?? error;
  }
  return error;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The bound on a store query when none is configured: long enough for any query keygate makes, short enough that a client is told rather than kept waiting. */
export const DEFAULT_STORE_TIMEOUT_MS = 5_000;
/** The bound on a migration's slow statements (the lock, the migrations themselves): an hour, for building indexes on large tables at start. */
const MIGRATION_TIMEOUT_MS = 3_600_000;

/**
 * Opens a pool on `url` (postgres:// or postgresql://). With `schema`, creates it when missing
 * and puts it on every connection's search_path. Does not migrate: call migrate() (openStore does).
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions): Promise<PostgresStore> {
  const { schema } = options;
  const cipher = new UpstreamCipher(options.serverSecret);
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
    throw new Error(`schema name ${JSON.stringify(schema)} must be lower-case letters, digits and _ (not starting with a digit)`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
  const pool = new Pool({
    connectionString: url,
    max: options.max ?? 10,
    // A database that drops packets instead of closing the connection would leave a query waiting
    // forever: each of these bounds one way of waiting. statement_timeout makes the server itself
    // give up (and roll back) a statement that outlives the client's wait.
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    statement_timeout: timeoutMs,
    types: typeParsers,
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  });
  // An idle client that fails (server restart, network) is dropped by the pool; without a
  // listener the error event would end the process.
  pool.on("error", options.onIdleError ?? (() => {}));
  if (schema !== undefined) {
    try {
      await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    } catch (error) {
      // Two processes creating the schema at once: the loser sees a duplicate, which is fine.
      const code = (error as { code?: unknown }).code;
      if (code !== "23505" && code !== "42P06") {
        await pool.end();
        throw error;
      }
    }
  }
  return new PostgresStore(pool, schema, cipher);
}
