/**
 * The store contract on SQLite (a fresh temporary data directory per test), and what is
 * particular to opening it.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, test } from "node:test";
import { type Store, openSqliteStore, openStore } from "../../src/store/index.ts";
import { loadMigrations } from "../../src/store/rows.ts";
import { migrationContract, storeContract } from "./contract.ts";

const serverSecret = "store-test-secret";

storeContract("sqlite", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "keygate-store-"));
  const stores: Store[] = [];
  const openOne = async () => {
    const store = await openStore({ dataDir, serverSecret });
    stores.push(store);
    return store;
  };
  const store = await openOne();
  return {
    store,
    reopen: openOne,
    cleanup: async () => {
      for (const s of stores) await s.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
});

migrationContract("sqlite", async () => {
  const dataDir = await mkdtemp(join(tmpdir(), "keygate-store-"));
  const stores: Store[] = [];
  return {
    migrations: loadMigrations(new URL("../../src/store/sqlite/migrations/", import.meta.url)),
    landed: { 1: "aadb2e6477f6a45c2a5f83a801ebba3d38e27bb779207476d378f6b36df23dbc" },
    exec: async (sql) => {
      const db = new DatabaseSync(join(dataDir, "keygate.db"));
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    open: async () => {
      const store = await openSqliteStore(dataDir, { serverSecret });
      stores.push(store);
      return store;
    },
    cleanup: async () => {
      for (const s of stores) await s.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
});

describe("opening the sqlite store", () => {
  test("openStore creates a missing data directory and keeps keygate.db in it", async () => {
    const root = await mkdtemp(join(tmpdir(), "keygate-store-"));
    try {
      const dataDir = join(root, "a", "b");
      const store = await openStore({ dataDir, databaseUrl: "", serverSecret });
      assert.equal(store.dialect, "sqlite");
      assert.equal(await store.countUsers(), 0);
      await store.close();
      assert.ok(existsSync(join(dataDir, "keygate.db")));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  test("openSqliteStore(':memory:') is a private database, ready after migrate()", async () => {
    const store = await openSqliteStore(":memory:", { serverSecret });
    await store.migrate();
    assert.equal(await store.countUsers(), 0);
    await store.close();
  });

  test("openStore refuses a database URL that is not PostgreSQL", async () => {
    await assert.rejects(openStore({ dataDir: ":memory:", databaseUrl: "mysql://root@localhost/db", serverSecret }), /postgres:\/\//);
  });
});
