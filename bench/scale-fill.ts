/**
 * Growing a store's keys table fast, for bench/scale.bench.ts: filler rows by bulk SQL in one
 * transaction per step, with the benchmark's real keys spread evenly among them (so that the
 * measured rows sit all over the table, as keys do after years of use, not in one cluster at its
 * end).
 *
 * Real rows are encoded by `keyValues` (src/store/rows.ts), the very function both stores use for
 * INSERT INTO keys. Filler rows are a real key's row with its own id, name, digest and times; the
 * digest is SHA-256 of a counter, base64url, so filler digests have the real ones' length,
 * alphabet and spread over the digest index. Filler ids count up (UUID-shaped) rather than being
 * random: nothing looks keys up by id on the hot path, and ordered ids keep the primary-key index
 * inserts cheap.
 */
import { hash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import pg from "pg";
import { KEY_COLUMNS, keyValues } from "../src/store/rows.ts";
import type { KeyRecord } from "../src/store/store.ts";

export interface Filler {
  /** Adds rows until the keys table holds `target`; `real` lands among them, evenly spread. */
  grow(target: number, real: KeyRecord[]): Promise<void>;
  /** Digests of `count` distinct filler rows of the last step, picked at random: rows nothing has read. */
  sample(count: number): string[];
  close(): Promise<void>;
}

type KeyColumn = (typeof KEY_COLUMNS)[number];
const column = (c: KeyColumn) => KEY_COLUMNS.indexOf(c);

const fillerId = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const fillerDigest = (n: number) => hash("sha256", `kg-filler-${n}`, "base64url");

/** Where, among `rows` new rows, the j-th of `count` real rows goes. */
const spot = (j: number, rows: number, count: number) => Math.floor(((j + 0.5) * rows) / count);

function checkRoom(added: number, real: number): void {
  if (added < real) throw new Error(`cannot place ${real} real keys among ${added} new rows`);
}

/** The rows a step added: filler row n is at position n - from; the real rows at `spot`s. */
class Step {
  from = 0;
  added = 0;
  real = 0;

  sample(count: number): string[] {
    const spots = new Set(Array.from({ length: this.real }, (_, j) => spot(j, this.added, this.real)));
    if (this.added - spots.size < count) throw new Error(`the last step added fewer than ${count} filler rows`);
    const picked = new Set<number>();
    while (picked.size < count) {
      const i = Math.floor(Math.random() * this.added);
      if (!spots.has(i)) picked.add(i);
    }
    return [...picked].map((i) => fillerDigest(this.from + i));
  }
}

/**
 * SQLite: one prepared INSERT in a loop between BEGIN and COMMIT, on a handle of its own to the
 * store's file (opened after the store ran its migrations), then a checkpoint so that the rows
 * are in the database file rather than in a WAL the store's reads would have to search.
 */
export function sqliteFiller(file: string, template: KeyRecord): Filler {
  const db = new DatabaseSync(file);
  db.exec("PRAGMA synchronous = OFF");
  // Random digests land all over the digest index: 256 MiB of page cache keeps those inserts in memory.
  db.exec("PRAGMA cache_size = -262144");
  db.exec("PRAGMA foreign_keys = ON");
  const insert = db.prepare(`INSERT INTO keys (${KEY_COLUMNS.join(", ")}) VALUES (${KEY_COLUMNS.map(() => "?").join(", ")})`);
  const base = keyValues(template);
  let rows = Number((db.prepare("SELECT count(*) AS n FROM keys").get() as { n: number }).n);
  const last = new Step();

  return {
    async grow(target, real) {
      const added = target - rows;
      checkRoom(added, real.length);
      Object.assign(last, { from: rows, added, real: real.length });
      const row = [...base];
      db.exec("BEGIN");
      try {
        for (let i = 0, j = 0; i < added; i++) {
          if (j < real.length && i === spot(j, added, real.length)) {
            insert.run(...keyValues(real[j++]!));
            continue;
          }
          const n = rows + i;
          row[column("id")] = fillerId(n);
          row[column("name")] = `filler ${n}`;
          row[column("digest")] = fillerDigest(n);
          row[column("created_at")] = row[column("updated_at")] = template.createdAt + n;
          insert.run(...row);
        }
        db.exec("COMMIT");
      } catch (error) {
        if (db.isTransaction) db.exec("ROLLBACK");
        throw error;
      }
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      rows = target;
    },
    sample: (count) => last.sample(count),
    async close() {
      db.close();
    },
  };
}

/** PostgreSQL types of the keys columns (src/store/postgres/migrations). */
const PG_TYPES: Record<KeyColumn, string> = {
  id: "text",
  type: "text",
  name: "text",
  owner_id: "text",
  portal_id: "text",
  digest: "text",
  key_prefix: "text",
  key_suffix: "text",
  scopes: "jsonb",
  issued_scopes: "jsonb",
  status: "text",
  access_mode: "text",
  ip_whitelist: "jsonb",
  rate_limit: "float8",
  tier: "text",
  expires_at: "int8",
  created_at: "int8",
  updated_at: "int8",
  last_used_at: "int8",
  rotated_from_id: "text",
  rotated_to_id: "text",
  version: "int4",
};

/**
 * PostgreSQL: one INSERT … SELECT over generate_series per step, filler values computed in SQL
 * (the digest as in JavaScript: SHA-256 of the counter, base64url), the real rows joined in at
 * their positions from a JSON parameter; then VACUUM ANALYZE, so that the measured reads neither
 * set hint bits on fresh tuples nor meet autovacuum.
 */
export async function postgresFiller(url: string, schema: string, template: KeyRecord): Promise<Filler> {
  const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
  await client.connect();
  // Foreign-key triggers off where allowed (a superuser): they were a third of the insert's time,
  // and every row references the one owner and portal, which exist.
  await client.query("SET session_replication_role = replica").catch(() => {});
  let rows = Number((await client.query<{ n: string }>("SELECT count(*) AS n FROM keys")).rows[0]!.n);
  const last = new Step();

  // $1, $2: the first and last row number of the step; $3: the real rows; then the template's values.
  const params: unknown[] = [];
  const perRow: Partial<Record<KeyColumn, string>> = {
    id: `'00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0')`,
    name: `'filler ' || g`,
    digest: `rtrim(translate(encode(sha256(convert_to('kg-filler-' || g, 'UTF8')), 'base64'), '+/', '-_'), '=')`,
    created_at: `${template.createdAt}::int8 + g`,
    updated_at: `${template.createdAt}::int8 + g`,
  };
  const base = keyValues(template);
  const select = KEY_COLUMNS.map((c, i) => {
    const type = PG_TYPES[c];
    let filler = perRow[c];
    if (filler === undefined) {
      params.push(base[i]);
      filler = `$${params.length + 3}::${type}`;
    }
    // JSON columns come in as JSON text, as the store sends them.
    return `CASE WHEN r.pos IS NULL THEN ${filler} ELSE r."${c}"${type === "jsonb" ? "::jsonb" : ""} END`;
  });
  const recordset = ["pos int8", ...KEY_COLUMNS.map((c) => `"${c}" ${PG_TYPES[c] === "jsonb" ? "text" : PG_TYPES[c]}`)].join(", ");
  const sql = `INSERT INTO keys (${KEY_COLUMNS.map((c) => `"${c}"`).join(", ")})
    SELECT ${select.join(",\n      ")}
    FROM generate_series($1::int8, $2::int8) AS g
    LEFT JOIN jsonb_to_recordset($3::jsonb) AS r(${recordset}) ON r.pos = g`;

  return {
    async grow(target, real) {
      const added = target - rows;
      checkRoom(added, real.length);
      Object.assign(last, { from: rows, added, real: real.length });
      const placed = real.map((k, j) => ({ pos: rows + spot(j, added, real.length), ...Object.fromEntries(keyValues(k).map((v, i) => [KEY_COLUMNS[i]!, v])) }));
      await client.query(sql, [rows, target - 1, JSON.stringify(placed), ...params]);
      await client.query("VACUUM ANALYZE keys");
      rows = target;
    },
    sample: (count) => last.sample(count),
    async close() {
      await client.end();
    },
  };
}
