/**
 * Object storage (vibe:storage, docs/storage.md): a portal's objects, each a key, its bytes, a
 * content type and the SHA-256 of its bytes. Two implementations behind one interface: files in
 * the data directory with their rows in SQLite (one box), and bytea chunks in PostgreSQL (several
 * nodes share them). Either way the bytes are written first, under a new blob id no row names
 * yet, and the row is pointed at them last: a reader sees the old object or the new one, never
 * half of one, and an upload that fails leaves nothing behind.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, open, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { DatabaseSync } from "node:sqlite";
import type { Pool } from "pg";

export interface StoredObject {
  key: string;
  size: number;
  contentType: string;
  /** Hex SHA-256 of the bytes (the ETag). */
  sha256: string;
  createdAt: number;
  updatedAt: number;
}

/** A byte range, both ends included. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface ObjectUpload {
  contentType: string;
  /** More bytes than this and the upload fails with ObjectTooLargeError, nothing stored. */
  maxBytes: number;
  now: number;
}

/** The upload went over its cap: nothing was stored. */
export class ObjectTooLargeError extends Error {
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`the object is larger than ${maxBytes} bytes`);
    this.name = "ObjectTooLargeError";
    this.maxBytes = maxBytes;
  }
}

export interface ObjectStore {
  /** Stores the bytes under the key (replacing an object there); `created` is false for a replacement. */
  put(portalId: string, key: string, body: AsyncIterable<Buffer>, upload: ObjectUpload): Promise<{ object: StoredObject; created: boolean }>;
  head(portalId: string, key: string): Promise<StoredObject | undefined>;
  /** The object and its bytes (only the range, when given; it must lie within the object). */
  read(portalId: string, key: string, range?: ByteRange): Promise<{ object: StoredObject; body: Readable } | undefined>;
  /** False when there was no such object. */
  delete(portalId: string, key: string): Promise<boolean>;
  /** Objects whose key starts with `prefix`, after the key `after`, in byte order of their keys, at most `limit`. */
  list(portalId: string, filter: { prefix: string; after?: string; limit: number }): Promise<StoredObject[]>;
  close(): Promise<void>;
}

/** Counts and hashes the bytes passing, and fails once more than maxBytes have come. */
async function* measured(body: AsyncIterable<Buffer>, maxBytes: number, tally: { size: number; hash: ReturnType<typeof createHash> }): AsyncGenerator<Buffer> {
  for await (const chunk of body) {
    tally.size += chunk.length;
    if (tally.size > maxBytes) throw new ObjectTooLargeError(maxBytes);
    tally.hash.update(chunk);
    yield chunk;
  }
}

type Row = Record<string, unknown>;
const objectFromRow = (r: Row): StoredObject => ({
  key: r["key"] as string,
  size: Number(r["size"]),
  contentType: r["content_type"] as string,
  sha256: r["sha256"] as string,
  createdAt: Number(r["created_at"]),
  updatedAt: Number(r["updated_at"]),
});
const COLUMNS = "key, size, content_type, sha256, created_at, updated_at";

/**
 * SQLite's objects: rows in the database, bytes in files `<dir>/<blob>`. A file's name is fresh
 * per upload, and a reader opens it before it answers: a replacement or delete unlinks the old
 * file, which a reader already holding it reads to its end.
 */
export class FileObjects implements ObjectStore {
  readonly #db: DatabaseSync;
  readonly #dir: string;
  /** A directory made for an in-memory database, removed on close. */
  readonly #throwaway: boolean;

  constructor(db: DatabaseSync, dir: string, throwaway: boolean) {
    this.#db = db;
    this.#dir = dir;
    this.#throwaway = throwaway;
  }

  /** `<dataDir>/objects` (made 0700 by the first upload), or for an in-memory database a temporary directory of its own. */
  static async open(db: DatabaseSync, dataDir: string): Promise<FileObjects> {
    if (dataDir === ":memory:") return new FileObjects(db, await mkdtemp(join(tmpdir(), "keygate-objects-")), true);
    return new FileObjects(db, join(dataDir, "objects"), false);
  }

  #row(portalId: string, key: string): Row | undefined {
    return this.#db.prepare(`SELECT ${COLUMNS}, blob FROM storage_objects WHERE portal_id = ? AND key = ?`).get(portalId, key) as Row | undefined;
  }

  async put(portalId: string, key: string, body: AsyncIterable<Buffer>, upload: ObjectUpload): Promise<{ object: StoredObject; created: boolean }> {
    const blob = randomUUID();
    const path = join(this.#dir, blob);
    const tally = { size: 0, hash: createHash("sha256") };
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    try {
      await pipeline(Readable.from(measured(body, upload.maxBytes, tally)), createWriteStream(path, { mode: 0o600 }));
    } catch (e) {
      await unlink(path).catch(() => {});
      throw e;
    }
    const sha256 = tally.hash.digest("hex");
    const db = this.#db;
    // Synchronous between BEGIN and COMMIT: nothing else in this process interleaves, and the write lock keeps other processes out.
    db.exec("BEGIN IMMEDIATE");
    let old: Row | undefined;
    try {
      old = this.#row(portalId, key);
      db.prepare(
        `INSERT INTO storage_objects (portal_id, key, blob, size, content_type, sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (portal_id, key) DO UPDATE SET blob = excluded.blob, size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256, updated_at = excluded.updated_at`,
      ).run(portalId, key, blob, tally.size, upload.contentType, sha256, upload.now, upload.now);
      db.exec("COMMIT");
    } catch (e) {
      if (db.isTransaction) db.exec("ROLLBACK");
      await unlink(path).catch(() => {});
      throw e;
    }
    if (old !== undefined) await unlink(join(this.#dir, old["blob"] as string)).catch(() => {});
    const createdAt = old === undefined ? upload.now : Number(old["created_at"]);
    return { object: { key, size: tally.size, contentType: upload.contentType, sha256, createdAt, updatedAt: upload.now }, created: old === undefined };
  }

  async head(portalId: string, key: string): Promise<StoredObject | undefined> {
    const row = this.#row(portalId, key);
    return row === undefined ? undefined : objectFromRow(row);
  }

  async read(portalId: string, key: string, range?: ByteRange): Promise<{ object: StoredObject; body: Readable } | undefined> {
    // A replacement may unlink the file between reading the row and opening it: read the row again.
    for (;;) {
      const row = this.#row(portalId, key);
      if (row === undefined) return undefined;
      const file = await open(join(this.#dir, row["blob"] as string)).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return undefined;
        throw e;
      });
      if (file === undefined) continue;
      // The stream owns the file now, and closes it at its end.
      return { object: objectFromRow(row), body: file.createReadStream(range ? { start: range.start, end: range.end } : {}) };
    }
  }

  async delete(portalId: string, key: string): Promise<boolean> {
    const row = this.#db.prepare("DELETE FROM storage_objects WHERE portal_id = ? AND key = ? RETURNING blob").get(portalId, key) as Row | undefined;
    if (row === undefined) return false;
    await unlink(join(this.#dir, row["blob"] as string)).catch(() => {});
    return true;
  }

  async list(portalId: string, filter: { prefix: string; after?: string; limit: number }): Promise<StoredObject[]> {
    const rows = this.#db
      .prepare(`SELECT ${COLUMNS} FROM storage_objects WHERE portal_id = ? AND substr(key, 1, length(?)) = ? AND key > ? ORDER BY key LIMIT ?`)
      .all(portalId, filter.prefix, filter.prefix, filter.after ?? "", filter.limit) as Row[];
    return rows.map(objectFromRow);
  }

  async close(): Promise<void> {
    if (this.#throwaway) await rm(this.#dir, { recursive: true, force: true });
  }
}

/** Chunks of PostgreSQL objects: big enough to keep the rows few, small enough to stream. */
const CHUNK_BYTES = 256 * 1024;

/** PostgreSQL's objects: rows and bytea chunks, on the store's pool (and its schema). */
export class PostgresObjects implements ObjectStore {
  readonly #pool: Pool;

  constructor(pool: Pool) {
    this.#pool = pool;
  }

  async put(portalId: string, key: string, body: AsyncIterable<Buffer>, upload: ObjectUpload): Promise<{ object: StoredObject; created: boolean }> {
    const blob = randomUUID();
    const tally = { size: 0, hash: createHash("sha256") };
    const insert = (start: number, data: Buffer) => this.#pool.query("INSERT INTO storage_chunks (blob, start, data) VALUES ($1, $2, $3)", [blob, start, data]);
    try {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      let written = 0;
      for await (const chunk of measured(body, upload.maxBytes, tally)) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        while (pendingBytes >= CHUNK_BYTES) {
          const all = Buffer.concat(pending);
          await insert(written, all.subarray(0, CHUNK_BYTES));
          written += CHUNK_BYTES;
          pending = [all.subarray(CHUNK_BYTES)];
          pendingBytes = all.length - CHUNK_BYTES;
        }
      }
      if (pendingBytes > 0) await insert(written, Buffer.concat(pending));
    } catch (e) {
      await this.#pool.query("DELETE FROM storage_chunks WHERE blob = $1", [blob]).catch(() => {});
      throw e;
    }
    const sha256 = tally.hash.digest("hex");
    const client = await this.#pool.connect();
    try {
      await client.query("BEGIN");
      // One writer per key at a time, so the blob it replaces is the one it read.
      await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`keygate.storage.${portalId}/${key}`]);
      const old = (await client.query("SELECT blob, created_at FROM storage_objects WHERE portal_id = $1 AND key = $2", [portalId, key])).rows[0] as Row | undefined;
      await client.query(
        `INSERT INTO storage_objects (portal_id, key, blob, size, content_type, sha256, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (portal_id, key) DO UPDATE SET blob = excluded.blob, size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256, updated_at = excluded.updated_at`,
        [portalId, key, blob, tally.size, upload.contentType, sha256, upload.now],
      );
      if (old !== undefined) await client.query("DELETE FROM storage_chunks WHERE blob = $1", [old["blob"]]);
      await client.query("COMMIT");
      const createdAt = old === undefined ? upload.now : Number(old["created_at"]);
      return { object: { key, size: tally.size, contentType: upload.contentType, sha256, createdAt, updatedAt: upload.now }, created: old === undefined };
    } catch (e) {
      await client.query("ROLLBACK").catch(() => {});
      await this.#pool.query("DELETE FROM storage_chunks WHERE blob = $1", [blob]).catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async #row(portalId: string, key: string): Promise<Row | undefined> {
    return (await this.#pool.query(`SELECT ${COLUMNS}, blob FROM storage_objects WHERE portal_id = $1 AND key = $2`, [portalId, key])).rows[0] as Row | undefined;
  }

  async head(portalId: string, key: string): Promise<StoredObject | undefined> {
    const row = await this.#row(portalId, key);
    return row === undefined ? undefined : objectFromRow(row);
  }

  async read(portalId: string, key: string, range?: ByteRange): Promise<{ object: StoredObject; body: Readable } | undefined> {
    const row = await this.#row(portalId, key);
    if (row === undefined) return undefined;
    const object = objectFromRow(row);
    const blob = row["blob"] as string;
    const first = range?.start ?? 0;
    const last = range?.end ?? object.size - 1;
    const pool = this.#pool;
    // One chunk per query, as the client reads: memory stays at a chunk whatever the object's size.
    async function* chunks(): AsyncGenerator<Buffer> {
      let at = first;
      while (at <= last) {
        const r = (await pool.query("SELECT start, data FROM storage_chunks WHERE blob = $1 AND start <= $2 ORDER BY start DESC LIMIT 1", [blob, at])).rows[0] as { start: string | number; data: Buffer } | undefined;
        // Replaced or deleted while being read: the answer ends short, as the connection is cut.
        if (r === undefined || Number(r.start) + r.data.length <= at) throw new Error("the object changed while it was being read");
        const from = at - Number(r.start);
        const piece = r.data.subarray(from, Math.min(r.data.length, from + (last - at + 1)));
        at += piece.length;
        yield piece;
      }
    }
    return { object, body: Readable.from(chunks(), { objectMode: false }) };
  }

  async delete(portalId: string, key: string): Promise<boolean> {
    const client = await this.#pool.connect();
    try {
      await client.query("BEGIN");
      const row = (await client.query("DELETE FROM storage_objects WHERE portal_id = $1 AND key = $2 RETURNING blob", [portalId, key])).rows[0] as Row | undefined;
      if (row !== undefined) await client.query("DELETE FROM storage_chunks WHERE blob = $1", [row["blob"]]);
      await client.query("COMMIT");
      return row !== undefined;
    } catch (e) {
      await client.query("ROLLBACK").catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async list(portalId: string, filter: { prefix: string; after?: string; limit: number }): Promise<StoredObject[]> {
    const rows = (
      await this.#pool.query(`SELECT ${COLUMNS} FROM storage_objects WHERE portal_id = $1 AND starts_with(key, $2) AND key > $3 ORDER BY key LIMIT $4`, [portalId, filter.prefix, filter.after ?? "", filter.limit])
    ).rows as Row[];
    return rows.map(objectFromRow);
  }

  async close(): Promise<void> {}
}
