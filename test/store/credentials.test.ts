/**
 * Issue 10.3 in the store: portals' upstream credentials sealed at rest (AES-256-GCM under a key
 * derived from the server secret), on both dialects; the SQLite files' modes. The raw rows are
 * read past the store, as someone holding a copy of the database would.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, afterEach, beforeEach, describe, test } from "node:test";
import pg from "pg";
import { type Portal, type Store, openPostgresStore, openSqliteStore } from "../../src/store/index.ts";
import { storeKinds } from "../support/gateway.ts";
import { postgresUrl } from "../support/services.ts";

const SECRET = randomBytes(32).toString("base64url");
const TOKEN = "w3bh00kT0kenSecret";
const PASSWORD = "pa55wordSecret";
const QUERY_TOKEN = "qu3ryT0kenSecret";
const WEBHOOK = `https://acme.bitrix24.ru/rest/1/${TOKEN}/`;
const BASE_URL = `https://svc:${PASSWORD}@api.example.com/v2/?token=${QUERY_TOKEN}`;
const APP_SECRET = "b24AppClientSecret";
const SECRETS = [TOKEN, PASSWORD, QUERY_TOKEN, APP_SECRET];

/** A store's data, opened through the store (with a secret) or raw; SQL with $1, $2 … placeholders. */
interface Data {
  open(secret?: string): Promise<Store>;
  rows(sql: string, ...params: (string | null)[]): Promise<Record<string, unknown>[]>;
  /** Every byte the database keeps on disk (SQLite: the file, its WAL); undefined for PostgreSQL. */
  bytes(): string | undefined;
  cleanup(): Promise<void>;
}

async function sqliteData(): Promise<Data & { dir: string }> {
  const dir = join(await mkdtemp(join(tmpdir(), "keygate-creds-")), "data");
  const file = join(dir, "keygate.db");
  return {
    dir,
    open: async (secret = SECRET) => {
      const store = await openSqliteStore(dir, { serverSecret: secret });
      await store.migrate();
      return store;
    },
    rows: async (sql, ...params) => {
      const db = new DatabaseSync(file);
      try {
        return db.prepare(sql.replace(/\$(\d+)/g, "?$1")).all(...params) as Record<string, unknown>[];
      } finally {
        db.close();
      }
    },
    bytes: () => [file, `${file}-wal`].map((f) => (existsSync(f) ? readFileSync(f, "latin1") : "")).join(""),
    cleanup: () => rm(join(dir, ".."), { recursive: true, force: true }),
  };
}

async function postgresData(): Promise<Data> {
  const schema = `kg_creds_${randomBytes(6).toString("hex")}`;
  const raw = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: postgresUrl() });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  return {
    open: async (secret = SECRET) => {
      const store = await openPostgresStore(postgresUrl(), { schema, max: 2, serverSecret: secret });
      await store.migrate();
      return store;
    },
    rows: (sql, ...params) =>
      raw(async (c) => {
        await c.query(`SET search_path TO ${schema}`);
        return (await c.query(sql, params)).rows as Record<string, unknown>[];
      }),
    bytes: () => undefined,
    cleanup: () => raw((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).then(() => {}),
  };
}

const T0 = 1_750_000_000_000;
let seq = 0;

function portal(createdBy: string, upstream: Portal["upstream"]): Portal {
  const id = `prt_${++seq}`;
  return { id, domain: `${id}.example.com`, name: id, status: "ACTIVE", defaultAccessMode: "READWRITE", upstream, requestLimit: null, createdBy, createdAt: T0, allowedOrigins: [] };
}

const stored = (value: unknown): string => (typeof value === "string" ? value : JSON.stringify(value));

for (const kind of await storeKinds("store: upstream credentials")) {
  describe(`issue 10.3: upstream credentials at rest [${kind}]`, () => {
    let data: Data;
    const opened: Store[] = [];
    const open = async (secret?: string) => {
      const store = await data.open(secret);
      opened.push(store);
      return store;
    };
    /** A store with a user and two portals: a Bitrix24 webhook with its application's credentials (issue 15 §2) and an HTTP upstream with user:password and ?token=. */
    const setUp = async () => {
      const store = await open();
      const userId = `usr_${++seq}`;
      await store.createUser({ id: userId, email: `${userId}@example.com`, name: "U", role: "user", createdAt: T0 }, { audit: [] });
      const bitrix = portal(userId, { kind: "bitrix24", webhookUrl: WEBHOOK, clientId: "local.6667fc928a50a9.70414732", clientSecret: APP_SECRET });
      const http = portal(userId, { kind: "http", baseUrl: BASE_URL });
      for (const p of [bitrix, http]) await store.createPortal(p, { portalId: p.id, userId, role: "ADMIN", createdAt: T0 }, { audit: [] });
      return { store, userId, bitrix, http };
    };

    beforeEach(async () => {
      data = await (kind === "sqlite" ? sqliteData() : postgresData());
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await data.cleanup();
    });

    test("issue 10.3: the portals row holds neither token nor password; the store reads the upstream back", async () => {
      const { store, bitrix, http } = await setUp();
      for (const row of await data.rows("SELECT upstream FROM portals")) {
        const value = stored(row["upstream"]);
        assert.match(value, /"ct"/);
        for (const secret of [...SECRETS, "acme.bitrix24.ru", "api.example.com"]) assert.ok(!value.includes(secret), `${secret} in ${value}`);
      }
      assert.deepEqual((await store.getPortal(bitrix.id))?.upstream, bitrix.upstream);
      assert.deepEqual((await store.getPortal(http.id))?.upstream, http.upstream);
      assert.deepEqual((await store.listPortalsForUser(bitrix.createdBy)).map((p) => p.upstream), [bitrix.upstream, http.upstream]);
      // Rewritten by an update (a fresh IV), still sealed.
      await store.updatePortal(http.id, { name: "renamed" }, { audit: [] });
      assert.deepEqual((await store.getPortal(http.id))?.upstream, http.upstream);
      await store.close();
      const bytes = data.bytes();
      if (bytes !== undefined) for (const secret of SECRETS) assert.ok(!bytes.includes(secret), `${secret} is in the database files`);
    });

    test("issue 10.3: a sealed upstream copied onto another portal's row is refused, not used", async () => {
      const { store, bitrix, http } = await setUp();
      const [row] = await data.rows("SELECT upstream FROM portals WHERE id = $1", bitrix.id);
      await data.rows("UPDATE portals SET upstream = $2 WHERE id = $1", http.id, stored(row!["upstream"]));
      await assert.rejects(store.getPortal(http.id), /do not decrypt/);
      assert.deepEqual((await store.getPortal(bitrix.id))?.upstream, bitrix.upstream);
    });

    test("issue 10.3: another server secret does not open the upstreams", async () => {
      const { store, bitrix } = await setUp();
      await store.close();
      const other = await open(randomBytes(32).toString("base64url"));
      await assert.rejects(other.getPortal(bitrix.id), /do not decrypt/);
    });

    test("issue 10.3: a plaintext upstream from an earlier keygate is sealed on open, and its audit trail masked", async () => {
      const { store, userId, http } = await setUp();
      await store.close();
      // What a keygate before issue 10.3 wrote: the upstream and the audit entry in the clear.
      await data.rows("UPDATE portals SET upstream = $2 WHERE id = $1", http.id, JSON.stringify(http.upstream));
      const state = JSON.stringify({ ...http, upstream: http.upstream });
      await data.rows(
        `INSERT INTO audit_events (id, at, action, actor_user_id, entity_type, entity_id, portal_id, before_state, after_state)
         VALUES ('aud_old', ${T0}, 'portal.update', $1, 'portal', $2, $2, $3, $3)`,
        userId,
        http.id,
        state,
      );
      const again = await open();
      const [row] = await data.rows("SELECT upstream FROM portals WHERE id = $1", http.id);
      assert.match(stored(row!["upstream"]), /"ct"/);
      assert.ok(!stored(row!["upstream"]).includes(PASSWORD));
      assert.deepEqual((await again.getPortal(http.id))?.upstream, http.upstream);
      const [event] = await again.listAudit({ portalId: http.id, limit: 10 });
      const masked = { kind: "http", baseUrl: "https://***:***@api.example.com/v2/?token=***" };
      assert.deepEqual((event?.before as Portal).upstream, masked);
      assert.deepEqual((event?.after as Portal).upstream, masked);
      await again.close();
      const bytes = data.bytes();
      if (bytes !== undefined) for (const secret of SECRETS) assert.ok(!bytes.includes(secret), `${secret} is left in the database files`);
    });
  });
}

describe("issue 10.3: the SQLite store's file modes", () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

  test("issue 10.3: a new data directory is 0700 and keygate.db, -wal and -shm are 0600", async () => {
    const data = await sqliteData();
    dirs.push(join(data.dir, ".."));
    const store = await data.open();
    await store.createUser({ id: "usr_m", email: "m@example.com", name: "M", role: "user", createdAt: T0 }, { audit: [] });
    assert.equal(mode(data.dir), "700");
    for (const f of ["keygate.db", "keygate.db-wal", "keygate.db-shm"]) assert.equal(mode(join(data.dir, f)), "600", f);
    await store.close();
  });

  test("issue 10.3: a database an earlier keygate left 0644 is tightened to 0600 on open", async () => {
    const data = await sqliteData();
    dirs.push(join(data.dir, ".."));
    await (await data.open()).close();
    chmodSync(join(data.dir, "keygate.db"), 0o644);
    const store = await data.open();
    await store.createUser({ id: "usr_t", email: "t@example.com", name: "T", role: "user", createdAt: T0 }, { audit: [] });
    for (const f of ["keygate.db", "keygate.db-wal", "keygate.db-shm"]) assert.equal(mode(join(data.dir, f)), "600", f);
    await store.close();
  });
});
