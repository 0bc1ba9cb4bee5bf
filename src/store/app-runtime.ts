/**
 * The app runtime's rows (migration 014, docs/apps.md): the `__init` token ids it spent, and the
 * browser cookies it maps to app sessions. Written once, for both dialects (src/store/sql.ts).
 */
import { APP_SESSION_COLUMNS, appSessionFromRow, appSessionValues } from "./oauth-rows.ts";
import { columnList } from "./rows.ts";
import type { AppSession, Store } from "./store.ts";

/** A cookie's row: the server whose host set it, the session, and the session's token sealed. */
export interface RuntimeSession {
  cookieDigest: string;
  serverId: string;
  sealedToken: string;
  createdAt: number;
  session: AppSession;
}

/**
 * Spends an `__init` token's id and, in the same transaction, stores the session made for it and
 * the cookie's row. False, with nothing written, when the id was spent already (a replay, on this
 * node or another).
 */
export async function openRuntimeSession(store: Store, spent: { jti: string; expiresAt: number }, row: RuntimeSession): Promise<boolean> {
  const s = row.session;
  return store.sql.atomically([
    { sql: "INSERT INTO app_init_spent (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING", params: [spent.jti, spent.expiresAt], mustChange: 1 },
    { sql: `INSERT INTO app_sessions (${columnList(APP_SESSION_COLUMNS)}) VALUES (${APP_SESSION_COLUMNS.map(() => "?").join(", ")})`, params: appSessionValues(s) },
    {
      sql: "INSERT INTO app_runtime_sessions (cookie_digest, session_id, server_id, sealed_token, created_at) VALUES (?, ?, ?, ?, ?)",
      params: [row.cookieDigest, s.id, row.serverId, row.sealedToken, row.createdAt],
    },
  ]);
}

/** The cookie's row and its session; undefined once the session or the server is gone. */
export async function getRuntimeSession(store: Store, cookieDigest: string): Promise<RuntimeSession | undefined> {
  const [row] = await store.sql.all(
    `SELECT r.cookie_digest, r.server_id, r.sealed_token, r.created_at AS runtime_created_at, ${columnList(APP_SESSION_COLUMNS, "s")}
       FROM app_runtime_sessions r JOIN app_sessions s ON s.id = r.session_id WHERE r.cookie_digest = ?`,
    [cookieDigest],
  );
  if (row === undefined) return undefined;
  return { cookieDigest, serverId: row["server_id"] as string, sealedToken: row["sealed_token"] as string, createdAt: Number(row["runtime_created_at"]), session: appSessionFromRow(row) };
}

/** Forgets spent ids whose tokens have expired: they can no longer be replayed. */
export async function pruneSpentInits(store: Store, now: number): Promise<void> {
  await store.sql.atomically([{ sql: "DELETE FROM app_init_spent WHERE expires_at < ?", params: [now] }]);
}
