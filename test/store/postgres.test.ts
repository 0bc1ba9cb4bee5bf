/**
 * The store contract on PostgreSQL: each test gets its own schema (kg_test_<random>); all are
 * dropped when the file's tests are done. Needs the database of postgresUrl(); skipped when it is unreachable, failing
 * instead under CI=true.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";
import pg from "pg";
import { type Store, openPostgresStore, openStore } from "../../src/store/index.ts";
import { loadMigrations } from "../../src/store/rows.ts";
import { postgresUrl, probePostgres, redactUrl, requireService } from "../support/services.ts";
import { migrationContract, storeContract } from "./contract.ts";

const url = postgresUrl();
const serverSecret = "store-test-secret";

async function dropSchemas(schemas: string[]): Promise<void> {
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // One schema a statement: dropping them all at once takes a lock per table of every schema in
    // one transaction, past max_locks_per_transaction once the store has its accounts tables.
    for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

const newSchema = () => `kg_test_${randomBytes(6).toString("hex")}`;

if (await requireService("store contract: postgres", `PostgreSQL at ${redactUrl(url)}`, () => probePostgres(url))) {
  // Migrating a fresh schema is most of a test's cost, so a few are kept migrated ahead, and the
  // schemas are dropped together at the end.
  const schemas: string[] = [];
  const openMigrated = async (schema: string): Promise<Store> => {
    const store = await openPostgresStore(url, { schema, max: 4, serverSecret });
    await store.migrate();
    return store;
  };
  const fresh = (): Promise<{ schema: string; store: Store }> => {
    const schema = newSchema();
    schemas.push(schema);
    const ready = openMigrated(schema).then((store) => ({ schema, store }));
    ready.catch(() => {}); // awaited by whoever takes it
    return ready;
  };
  const ahead = [fresh(), fresh(), fresh()];
  after(async () => {
    const left = await Promise.allSettled(ahead);
    for (const r of left) if (r.status === "fulfilled") await r.value.store.close();
    await dropSchemas(schemas);
  });

  storeContract("postgres", async () => {
    ahead.push(fresh());
    const { schema, store } = await ahead.shift()!;
    const stores: Store[] = [store];
    return {
      store,
      reopen: async () => {
        const again = await openMigrated(schema);
        stores.push(again);
        return again;
      },
      cleanup: async () => {
        for (const s of stores) await s.close();
      },
    };
  });

  migrationContract("postgres", async () => {
    const schema = newSchema();
    schemas.push(schema);
    const stores: Store[] = [];
    return {
      migrations: loadMigrations(new URL("../../src/store/postgres/migrations/", import.meta.url)),
      landed: { 1: "1e97d45c8fc9fe8fb0f33e3a0002ec85f35f2107f191be2abb1d416c1a051568" },
      exec: async (sql) => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}; ${sql}`);
        } finally {
          await client.end();
        }
      },
      open: async () => {
        const store = await openPostgresStore(url, { schema, max: 2, serverSecret });
        stores.push(store);
        return store;
      },
      cleanup: async () => {
        for (const s of stores) await s.close();
      },
    };
  });

  describe("opening the postgres store", () => {
    test("two stores migrating one schema at once both succeed", async () => {
      const schema = newSchema();
      const a = await openPostgresStore(url, { schema, serverSecret });
      const b = await openPostgresStore(url, { schema, serverSecret });
      try {
        await Promise.all([a.migrate(), b.migrate()]);
        assert.equal(await a.countUsers(), 0);
        assert.equal(await b.countUsers(), 0);
      } finally {
        await a.close();
        await b.close();
        await dropSchemas([schema]);
      }
    });

    test("a schema name that is not a plain identifier is refused", async () => {
      await assert.rejects(openPostgresStore(url, { schema: "x; DROP TABLE users", serverSecret }), /schema name/);
      await assert.rejects(openPostgresStore(url, { schema: "Upper", serverSecret }), /schema name/);
    });

    test("openStore picks PostgreSQL for a postgres:// URL", async () => {
      // Only the choice is checked: an unreachable port fails fast with a connection error, not a SQLite store.
      await assert.rejects(openStore({ dataDir: ":memory:", databaseUrl: "postgresql://postgres@127.0.0.1:1/none", serverSecret }), /ECONNREFUSED|connect/);
    });
  });
}
