/**
 * Servers (migration 012, docs/servers.md): the user's own app servers keygate fronts. The
 * queries are written once, for both dialects, through the store's thin dialect (src/store/sql.ts).
 *
 * A server and its key's dependent row (key_dependents, kind "server") are written and removed in
 * one transaction: while a key has servers, deleting it answers 409 KEY_HAS_ACTIVE_SERVERS.
 */
import { type Row, type SqlValue, columnList } from "./rows.ts";
import type { Store } from "./store.ts";

export const BLACKHOLE_STATUSES = ["CONNECTED", "UNREACHABLE"] as const;
export type BlackholeStatus = (typeof BLACKHOLE_STATUSES)[number];
/** The kind of a server's row in key_dependents. */
export const SERVER_DEPENDENT = "server";

export interface Server {
  id: string;
  name: string;
  url: string;
  /** The key that registered it. */
  keyId: string;
  /** The user it belongs to: the key's owner, or the session's user for an authorization key. */
  userId: string;
  portalId: string;
  blackholeStatus: BlackholeStatus;
  /** When the background check last ran for it; null: not yet. */
  checkedAt: number | null;
  createdAt: number;
}

const COLUMNS = ["id", "name", "url", "key_id", "user_id", "portal_id", "blackhole_status", "checked_at", "created_at"] as const;

function serverFromRow(row: Row): Server {
  return {
    id: row["id"] as string,
    name: row["name"] as string,
    url: row["url"] as string,
    keyId: row["key_id"] as string,
    userId: row["user_id"] as string,
    portalId: row["portal_id"] as string,
    blackholeStatus: row["blackhole_status"] as BlackholeStatus,
    checkedAt: row["checked_at"] === null || row["checked_at"] === undefined ? null : Number(row["checked_at"]),
    createdAt: Number(row["created_at"]),
  };
}

export async function createServer(store: Store, s: Server): Promise<void> {
  const values: SqlValue[] = [s.id, s.name, s.url, s.keyId, s.userId, s.portalId, s.blackholeStatus, s.checkedAt, s.createdAt];
  await store.sql.atomically([
    { sql: `INSERT INTO servers (${columnList(COLUMNS)}) VALUES (${COLUMNS.map(() => "?").join(", ")})`, params: values },
    { sql: "INSERT INTO key_dependents (key_id, kind, dependent_id, created_at) VALUES (?, ?, ?, ?)", params: [s.keyId, SERVER_DEPENDENT, s.id, s.createdAt] },
  ]);
}

export async function getServer(store: Store, id: string): Promise<Server | undefined> {
  const [row] = await store.sql.all(`SELECT ${columnList(COLUMNS)} FROM servers WHERE id = ?`, [id]);
  return row && serverFromRow(row);
}

/** The servers a key sees (registered with it, or belonging to its user on its portal), oldest first. */
export async function listServersFor(store: Store, who: { keyId: string; userId: string; portalId: string }): Promise<Server[]> {
  const rows = await store.sql.all(`SELECT ${columnList(COLUMNS)} FROM servers WHERE key_id = ? OR (user_id = ? AND portal_id = ?) ORDER BY created_at, id`, [who.keyId, who.userId, who.portalId]);
  return rows.map(serverFromRow);
}

/** Every server, for the background check. */
export async function listAllServers(store: Store): Promise<Server[]> {
  return (await store.sql.all(`SELECT ${columnList(COLUMNS)} FROM servers ORDER BY id`, [])).map(serverFromRow);
}

/** False when there was no such server. */
export async function deleteServer(store: Store, server: Server): Promise<boolean> {
  return store.sql.atomically([
    { sql: "DELETE FROM servers WHERE id = ?", params: [server.id], mustChange: 1 },
    { sql: "DELETE FROM key_dependents WHERE key_id = ? AND kind = ? AND dependent_id = ?", params: [server.keyId, SERVER_DEPENDENT, server.id] },
  ]);
}

/** Records what a check found; a server deleted meanwhile is left deleted. */
export async function recordCheck(store: Store, id: string, status: BlackholeStatus, at: number): Promise<void> {
  await store.sql.atomically([{ sql: "UPDATE servers SET blackhole_status = ?, checked_at = ? WHERE id = ?", params: [status, at, id] }]);
}
