/**
 * Opening the store: PostgreSQL when a database URL is given, else SQLite under the data
 * directory. See store.ts for the interface.
 */
import { openPostgresStore } from "./postgres/postgres-store.ts";
import { openSqliteStore } from "./sqlite/sqlite-store.ts";
import type { Store } from "./store.ts";

export * from "./store.ts";
export { DEFAULT_STORE_TIMEOUT_MS, PostgresStore, type PostgresStoreOptions, openPostgresStore } from "./postgres/postgres-store.ts";
export { SqliteStore, type SqliteStoreOptions, openSqliteStore } from "./sqlite/sqlite-store.ts";

export interface OpenStoreOptions {
  /** SQLite keeps `<dataDir>/keygate.db` (the directory is created when missing); ":memory:" for a throwaway database. */
  dataDir: string;
  /** postgres:// or postgresql:// URL; when given (and not empty), PostgreSQL is used instead of SQLite. */
  databaseUrl?: string;
  /** The server secret: portals' upstream credentials are sealed under a key derived from it (docs/operations.md). */
  serverSecret: string;
  /** PostgreSQL: how long a query may take, in ms (PostgresStoreOptions.timeoutMs). */
  timeoutMs?: number;
}

/** Opens the store and applies pending migrations. */
export async function openStore(options: OpenStoreOptions): Promise<Store> {
  const { databaseUrl } = options;
  let store: Store;
  if (databaseUrl !== undefined && databaseUrl !== "") {
    if (!/^postgres(ql)?:\/\//i.test(databaseUrl)) {
      throw new Error("databaseUrl must start with postgres:// or postgresql://");
    }
    store = await openPostgresStore(databaseUrl, { serverSecret: options.serverSecret, timeoutMs: options.timeoutMs });
  } else {
    store = await openSqliteStore(options.dataDir, { serverSecret: options.serverSecret });
  }
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}
