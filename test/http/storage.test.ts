/**
 * Object storage over HTTP (issue 17 §2, vibe:storage; docs/storage.md): PUT streams an object
 * in under a size cap with its content type, GET streams it out with its ETag and byte ranges,
 * HEAD, DELETE, and the listing by prefix and cursor; objects belong to the key's portal; keys
 * without the scope, read-only keys and management keys are refused; bad keys and bad input are
 * 400s that store nothing. Requests go over a real socket (node:http, paths sent as written), on
 * both stores: files in the data directory with SQLite, bytea chunks in PostgreSQL.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { openPostgresStore, openSqliteStore } from "../../src/store/index.ts";
import { ObjectTooLargeError, type ObjectStore } from "../../src/store/objects.ts";
import type { Store } from "../../src/store/store.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { postgresUrl } from "../support/services.ts";
import { makeKey, makePortal, makeUser } from "./_fixtures.ts";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

/** One request over a socket, the path sent exactly as written (no URL normalisation). */
function send(base: string, method: string, path: string, o: { key?: string; headers?: Record<string, string>; body?: Buffer | string | Readable } = {}): Promise<Answer> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers: { ...(o.key ? { "x-api-key": o.key } : {}), ...o.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(body.toString("utf8"));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, body, json });
      });
      res.on("error", reject);
    });
    // The server may answer (413) and close before the whole body is sent.
    req.on("error", (e: NodeJS.ErrnoException) => (e.code === "EPIPE" || e.code === "ECONNRESET" ? undefined : reject(e)));
    if (o.body instanceof Readable) o.body.pipe(req);
    else req.end(o.body);
  });
}

const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const show = (a: Answer) => `${a.status} ${a.body.toString("utf8").slice(0, 300)}`;
function refused(a: Answer, status: number, code: string): void {
  assert.equal(a.status, status, show(a));
  assert.equal(a.json?.error?.code, code, show(a));
}

/** A body of `size` bytes sent in `pieces` chunks, chunked (no Content-Length). */
function streamed(size: number, pieces = 8): Readable {
  const piece = Math.ceil(size / pieces);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return this.push(null);
      const n = Math.min(piece, size - sent);
      sent += n;
      this.push(Buffer.alloc(n, 0x61));
    },
  });
}

const MAX = 1024 * 1024;

for (const kind of await storeKinds("http: storage")) {
  describe(`storage [${kind}]`, () => {
    let h: Harness;
    let base: string;
    let portal: string;
    /** An API key: vibe:storage is auto-granted to personal keys. */
    let api: string;
    const call = (method: string, path: string, o: Parameters<typeof send>[3] = {}) => send(base, method, path, { key: api, ...o });
    const put = (key: string, body: Buffer | string | Readable, o: { key?: string; type?: string; headers?: Record<string, string> } = {}) =>
      send(base, "PUT", `/v1/storage/objects/${key}`, { key: o.key ?? api, body, headers: { ...(o.type ? { "content-type": o.type } : {}), ...o.headers } });
    const listed = async (query = "", key = api) => {
      const r = await send(base, "GET", `/v1/storage/objects${query}`, { key });
      assert.equal(r.status, 200, show(r));
      return r.json as { data: { key: string; size: number; etag: string; contentType: string }[]; meta: { hasMore: boolean; nextCursor: string | null } };
    };

    before(async () => {
      h = await startHarness(kind, { listen: true, storageMaxObjectBytes: MAX });
      base = h.url!;
      portal = await makePortal(h);
      api = (await makeKey(h, portal, { name: "Storage", scopes: ["crm"] })).raw;
    });
    after(() => h.close());

    it("PUT stores the bytes with their content type (201), GET streams them back with ETag = SHA-256 and Content-Length; a second PUT replaces (200) and keeps createdAt", async () => {
      const first = Buffer.from("hello, storage");
      const created = await put("docs/hello.txt", first, { type: "text/plain; charset=utf-8" });
      assert.equal(created.status, 201, show(created));
      assert.deepEqual({ ...created.json.data, createdAt: undefined, updatedAt: undefined }, { key: "docs/hello.txt", size: first.length, contentType: "text/plain; charset=utf-8", etag: `"${sha(first)}"`, createdAt: undefined, updatedAt: undefined });
      const got = await call("GET", "/v1/storage/objects/docs/hello.txt");
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, first);
      assert.equal(got.headers["content-type"], "text/plain; charset=utf-8");
      assert.equal(got.headers.etag, `"${sha(first)}"`);
      assert.equal(got.headers["content-length"], String(first.length));
      assert.equal(got.headers["accept-ranges"], "bytes");

      h.clock.advance(60_000);
      const second = randomBytes(300_000); // more than one PostgreSQL chunk
      const replaced = await put("docs/hello.txt", second, { type: "application/octet-stream" });
      assert.equal(replaced.status, 200, show(replaced));
      assert.equal(replaced.json.data.createdAt, created.json.data.createdAt);
      assert.notEqual(replaced.json.data.updatedAt, created.json.data.updatedAt);
      const again = await call("GET", "/v1/storage/objects/docs/hello.txt");
      assert.ok(again.body.equals(second));
      assert.equal(again.headers.etag, `"${sha(second)}"`);
      assert.equal(again.headers["content-type"], "application/octet-stream");
    });

    it("a body without Content-Type is application/octet-stream; an empty body is an empty object; a chunked (streamed) upload is stored whole", async () => {
      const bare = await send(base, "PUT", "/v1/storage/objects/bare.bin", { key: api, body: Buffer.from([1, 2, 3]) });
      assert.equal(bare.status, 201, show(bare));
      assert.equal(bare.json.data.contentType, "application/octet-stream");
      const empty = await put("empty", "", { type: "text/plain" });
      assert.equal(empty.json.data.size, 0);
      assert.equal((await call("GET", "/v1/storage/objects/empty")).body.length, 0);
      const chunked = await put("chunked.bin", streamed(MAX, 16));
      assert.equal(chunked.status, 201, show(chunked));
      assert.equal(chunked.json.data.size, MAX);
      assert.equal(chunked.json.data.etag, `"${sha(Buffer.alloc(MAX, 0x61))}"`);
    });

    it("HEAD gives the headers without the bytes; If-None-Match with the ETag answers 304", async () => {
      await put("head/me.json", '{"a":1}', { type: "application/json" });
      const head = await call("HEAD", "/v1/storage/objects/head/me.json");
      assert.equal(head.status, 200);
      assert.equal(head.body.length, 0);
      assert.equal(head.headers["content-length"], "7");
      assert.equal(head.headers["content-type"], "application/json");
      assert.equal(head.headers.etag, `"${sha('{"a":1}')}"`);
      const cached = await call("GET", "/v1/storage/objects/head/me.json", { headers: { "if-none-match": head.headers.etag as string } });
      assert.equal(cached.status, 304);
      assert.equal(cached.body.length, 0);
      refused(await call("GET", "/v1/storage/objects/head/none.json"), 404, "OBJECT_NOT_FOUND");
      assert.equal((await call("HEAD", "/v1/storage/objects/head/none.json")).status, 404);
    });

    it("range requests: bytes=a-b, a- and -n answer 206 with Content-Range; a range past the end is 416 with bytes */size; several ranges get the whole object", async () => {
      const bytes = randomBytes(600_000);
      await put("ranges.bin", bytes);
      const range = async (spec: string) => call("GET", "/v1/storage/objects/ranges.bin", { headers: { range: spec } });
      for (const [spec, start, end] of [
        ["bytes=0-9", 0, 9],
        ["bytes=262140-262150", 262_140, 262_150], // across a PostgreSQL chunk boundary
        ["bytes=599990-", 599_990, 599_999],
        ["bytes=-5", 599_995, 599_999],
        ["bytes=599999-700000", 599_999, 599_999],
      ] as const) {
        const r = await range(spec);
        assert.equal(r.status, 206, `${spec}: ${show(r)}`);
        assert.equal(r.headers["content-range"], `bytes ${start}-${end}/600000`, spec);
        assert.equal(r.headers["content-length"], String(end - start + 1), spec);
        assert.ok(r.body.equals(bytes.subarray(start, end + 1)), spec);
      }
      const beyond = await range("bytes=600000-");
      refused(beyond, 416, "RANGE_NOT_SATISFIABLE");
      assert.equal(beyond.headers["content-range"], "bytes */600000");
      const several = await range("bytes=0-1,5-6");
      assert.equal(several.status, 200);
      assert.equal(several.body.length, 600_000);
    });

    it("DELETE removes the object (then 404 OBJECT_NOT_FOUND for GET and DELETE)", async () => {
      await put("gone.txt", "bye");
      const del = await call("DELETE", "/v1/storage/objects/gone.txt");
      assert.equal(del.status, 200, show(del));
      assert.deepEqual(del.json.data, { key: "gone.txt", deleted: true });
      refused(await call("GET", "/v1/storage/objects/gone.txt"), 404, "OBJECT_NOT_FOUND");
      refused(await call("DELETE", "/v1/storage/objects/gone.txt"), 404, "OBJECT_NOT_FOUND");
    });

    it("GET /v1/storage/objects lists by prefix in key order, a page at a time (limit, meta.nextCursor → cursor)", async () => {
      for (const k of ["list/b", "list/a/2", "list/a/1", "list/c", "listless"]) await put(k, k);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await listed(`?prefix=list/&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
        assert.ok(page.data.length <= 2);
        seen.push(...page.data.map((o) => o.key));
        assert.equal(page.meta.hasMore, page.meta.nextCursor !== null);
        cursor = page.meta.nextCursor;
      } while (cursor !== null);
      assert.deepEqual(seen, ["list/a/1", "list/a/2", "list/b", "list/c"]);
      const one = (await listed("?prefix=list/a/1")).data;
      assert.deepEqual(one.map((o) => [o.key, o.size, o.etag]), [["list/a/1", 8, `"${sha("list/a/1")}"`]]);
      assert.ok((await listed()).data.some((o) => o.key === "listless"), "no prefix: everything");
    });

    it("listing's bad input is a 400 naming the field: limit 0 or 1001, a cursor it never gave, an unknown parameter", async () => {
      for (const [query, param] of [
        ["?limit=0", "limit"],
        ["?limit=1001", "limit"],
        ["?limit=ten", "limit"],
        ["?cursor=!!", "cursor"],
        ["?cursor=", "cursor"],
        ["?sort=key", "sort"],
      ]) {
        const r = await call("GET", `/v1/storage/objects${query}`);
        refused(r, 400, "VALIDATION_ERROR");
        assert.equal(r.json.error.param, param, query);
      }
    });

    it("objects belong to the key's portal: another portal's key neither sees nor reads nor deletes them", async () => {
      await put("mine/secret.txt", "portal one");
      const other = (await makeKey(h, await makePortal(h), { name: "Other portal" })).raw;
      refused(await send(base, "GET", "/v1/storage/objects/mine/secret.txt", { key: other }), 404, "OBJECT_NOT_FOUND");
      refused(await send(base, "DELETE", "/v1/storage/objects/mine/secret.txt", { key: other }), 404, "OBJECT_NOT_FOUND");
      assert.deepEqual((await listed("", other)).data, []);
      // The same key in its own portal is another object.
      await put("mine/secret.txt", "portal two", { key: other });
      assert.equal((await call("GET", "/v1/storage/objects/mine/secret.txt")).body.toString(), "portal one");
    });

    it("the vibe:storage scope: an authorization key without it gets 403 SCOPE_DENIED, with it may store; a management key gets MANAGEMENT_KEY_NO_ENTITY_ACCESS", async () => {
      const without = (await makeKey(h, portal, { type: "app", name: "App without", scopes: ["crm"] })).raw;
      const withScope = (await makeKey(h, portal, { type: "app", name: "App with", scopes: ["vibe:storage"] })).raw;
      refused(await put("app/x", "x", { key: without }), 403, "SCOPE_DENIED");
      refused(await send(base, "GET", "/v1/storage/objects", { key: without }), 403, "SCOPE_DENIED");
      refused(await send(base, "GET", "/v1/storage/objects/docs/hello.txt", { key: without }), 403, "SCOPE_DENIED");
      assert.ok(!(await listed("?prefix=app/")).data.length, "nothing stored");
      assert.equal((await put("app/x", "x", { key: withScope })).status, 201);
      assert.equal((await send(base, "GET", "/v1/storage/objects/app/x", { key: withScope })).body.toString(), "x");
      const manager = await makeUser(h);
      refused(await send(base, "GET", "/v1/storage/objects", { key: manager.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      refused(await put("m", "m", { key: manager.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
    });

    it("a read-only key reads and lists, but PUT and DELETE are 403 WRITE_BLOCKED_READONLY_KEY and change nothing", async () => {
      await put("ro/kept.txt", "kept");
      const ro = (await makeKey(h, portal, { name: "Read-only", accessMode: "READONLY" })).raw;
      assert.equal((await send(base, "GET", "/v1/storage/objects/ro/kept.txt", { key: ro })).body.toString(), "kept");
      assert.equal((await send(base, "HEAD", "/v1/storage/objects/ro/kept.txt", { key: ro })).status, 200);
      assert.equal((await listed("?prefix=ro/", ro)).data.length, 1);
      refused(await put("ro/new.txt", "new", { key: ro }), 403, "WRITE_BLOCKED_READONLY_KEY");
      refused(await put("ro/kept.txt", "changed", { key: ro }), 403, "WRITE_BLOCKED_READONLY_KEY");
      refused(await send(base, "DELETE", "/v1/storage/objects/ro/kept.txt", { key: ro }), 403, "WRITE_BLOCKED_READONLY_KEY");
      assert.deepEqual((await listed("?prefix=ro/")).data.map((o) => o.key), ["ro/kept.txt"]);
      assert.equal((await call("GET", "/v1/storage/objects/ro/kept.txt")).body.toString(), "kept");
    });

    it("INVALID_OBJECT_KEY (400, param key) for empty, doubled, trailing and leading-slash segments, . and .., control characters and keys over 1024 bytes; nothing is stored", async () => {
      for (const key of ["a//b", "a/", "/a", "a/../b", "..", "./a", "a/.", "%2E%2E/x", "a%00b", "a%0Ab", "", "x".repeat(1025), `${"%C3%A9".repeat(512)}x`]) {
        const r = await put(key, "bad");
        assert.equal(r.json?.error?.code, "INVALID_OBJECT_KEY", `${key.slice(0, 20)}: ${show(r)}`);
        assert.equal(r.json.error.param, "key", key);
        // GET /v1/storage/objects/ is the listing's path misspelt: ROUTE_NOT_FOUND, as for any path with a trailing /.
        if (key === "") continue;
        const read = await call("GET", `/v1/storage/objects/${key}`);
        assert.equal(read.json?.error?.code, "INVALID_OBJECT_KEY", `GET ${key.slice(0, 20)}: ${show(read)}`);
      }
      const long = "k".repeat(1024);
      assert.equal((await put(long, "longest")).status, 201, "1024 bytes is allowed");
      assert.equal((await call("GET", `/v1/storage/objects/${long}`)).body.toString(), "longest");
      const spaced = await put("with%20space/%C3%A9t%C3%A9.txt", "encoded");
      assert.equal(spaced.json.data.key, "with space/été.txt");
      assert.equal((await listed("?prefix=with")).data.length, 1);
      assert.equal((await listed("?prefix=a")).data.filter((o) => o.key.startsWith("a/") || o.key === "a").length, 0);
    });

    it(`OBJECT_TOO_LARGE (413) past the cap (--storage-max-object-bytes, here ${MAX}): by Content-Length before reading, or while streaming; nothing is stored, an object under the key stays`, async () => {
      const exact = await put("cap/exact.bin", Buffer.alloc(MAX, 1));
      assert.equal(exact.status, 201, "exactly the cap is stored");
      const declared = await put("cap/declared.bin", Buffer.alloc(MAX + 1, 1));
      refused(declared, 413, "OBJECT_TOO_LARGE");
      assert.equal(declared.json.error.details.maxBytes, MAX);
      refused(await put("cap/streamed.bin", streamed(MAX * 3)), 413, "OBJECT_TOO_LARGE");
      refused(await put("cap/exact.bin", streamed(MAX + 1)), 413, "OBJECT_TOO_LARGE");
      assert.deepEqual((await listed("?prefix=cap/")).data.map((o) => [o.key, o.size]), [["cap/exact.bin", MAX]]);
      assert.ok((await call("GET", "/v1/storage/objects/cap/exact.bin")).body.equals(Buffer.alloc(MAX, 1)));
    });

    it("a client that goes away in the middle of its upload leaves nothing stored, and an object already under the key stays", async () => {
      await put("gone/midway.bin", "before");
      for (const key of ["gone/midway.bin", "gone/new.bin"]) {
        await new Promise<void>((resolve) => {
          const req = httpRequest({ host: new URL(base).hostname, port: new URL(base).port, method: "PUT", path: `/v1/storage/objects/${key}`, headers: { "x-api-key": api, "content-length": String(MAX) } });
          req.on("error", () => resolve());
          req.on("close", () => resolve());
          req.write(Buffer.alloc(MAX / 2, 9), () => setTimeout(() => req.destroy(), 50));
        });
      }
      // Time for the server to see the connection close and finish with the upload (a partial object would be stored by then).
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual((await listed("?prefix=gone/")).data.map((o) => [o.key, o.size]), [["gone/midway.bin", 6]]);
      assert.equal((await call("GET", "/v1/storage/objects/gone/midway.bin")).body.toString(), "before");
    });

    it("a Content-Type with control characters or over 255 characters is a 400 naming content-type", async () => {
      const r = await put("ct/long", "x", { type: `text/${"x".repeat(260)}` });
      refused(r, 400, "VALIDATION_ERROR");
      assert.equal(r.json.error.param, "content-type");
      assert.equal((await listed("?prefix=ct/")).data.length, 0);
    });

    it("/v1/guide lists the storage endpoints to a key holding vibe:storage, and /v1/openapi.json documents them (HEAD goes with GET)", async () => {
      const guide = await call("GET", "/v1/guide");
      const lines = (guide.json.data.endpoints as { method: string; path: string }[]).map((e) => `${e.method} ${e.path}`);
      for (const line of ["GET /v1/storage/objects", "GET /v1/storage/objects/*", "PUT /v1/storage/objects/*", "DELETE /v1/storage/objects/*"]) assert.ok(lines.includes(line), line);
      const doc = (await call("GET", "/v1/openapi.json")).json;
      assert.deepEqual(Object.keys(doc.paths["/v1/storage/objects/{*}"] ?? doc.paths["/v1/storage/objects/*"] ?? {}).sort(), ["delete", "get", "put"]);
    });
  });

  describe(`storage: nothing left behind by a failed upload [${kind}]`, () => {
    let objects: ObjectStore;
    /** What holds bytes: files in the data directory, or chunk rows. */
    let leftovers: () => Promise<number>;
    let close: () => Promise<void>;
    let portalId: string;

    before(async () => {
      const serverSecret = randomBytes(32).toString("base64url");
      if (kind === "sqlite") {
        const dir = await mkdtemp(join(tmpdir(), "kg-storage-"));
        const store = await openSqliteStore(dir, { serverSecret });
        await store.migrate();
        objects = store.objects;
        leftovers = async () => (await readdir(join(dir, "objects"))).length;
        close = async () => {
          await store.close();
          await rm(dir, { recursive: true, force: true });
        };
        portalId = await portalIn(store);
      } else {
        const schema = `kg_storage_${randomBytes(6).toString("hex")}`;
        const store = await openPostgresStore(postgresUrl(), { schema, max: 2, serverSecret });
        await store.migrate();
        objects = store.objects;
        const client = new pg.Client({ connectionString: postgresUrl() });
        await client.connect();
        leftovers = async () => Number((await client.query(`SELECT count(*) AS n FROM ${schema}.storage_chunks`)).rows[0].n);
        close = async () => {
          await store.close();
          await client.query(`DROP SCHEMA ${schema} CASCADE`);
          await client.end();
        };
        portalId = await portalIn(store);
      }
    });
    after(() => close());

    it("over the cap, or the body failing midway (a client gone): no bytes and no row remain; a replaced or deleted object's bytes go too", async () => {
      const upload = { contentType: "application/octet-stream", maxBytes: 600_000, now: 1 };
      await assert.rejects(objects.put(portalId, "big", Readable.from([Buffer.alloc(300_000), Buffer.alloc(300_000), Buffer.alloc(10)]), upload), ObjectTooLargeError);
      async function* broken() {
        yield Buffer.alloc(300_000);
        throw new Error("client went away");
      }
      await assert.rejects(objects.put(portalId, "broken", broken(), upload), /client went away/);
      assert.equal(await leftovers(), 0);
      assert.deepEqual(await objects.list(portalId, { prefix: "", limit: 10 }), []);
      await objects.put(portalId, "kept", Readable.from([Buffer.alloc(400_000)]), upload);
      const stored = await leftovers();
      assert.ok(stored > 0);
      await objects.put(portalId, "kept", Readable.from([Buffer.alloc(400_000)]), upload);
      assert.equal(await leftovers(), stored, "the replaced bytes are gone");
      assert.equal(await objects.delete(portalId, "kept"), true);
      assert.equal(await leftovers(), 0);
    });
  });
}

/** A portal row for the store-level checks (objects reference their portal). */
async function portalIn(store: Store): Promise<string> {
  const id = `prt_${randomBytes(6).toString("hex")}`;
  const userId = `usr_${randomBytes(6).toString("hex")}`;
  await store.createUser({ id: userId, email: `${userId}@example.com`, name: "U", role: "user", createdAt: 1 }, { audit: [] });
  await store.createPortal(
    { id, domain: `${id}.bitrix24.ru`, name: "P", status: "ACTIVE", defaultAccessMode: "READWRITE", upstream: null, requestLimit: null, createdBy: userId, createdAt: 1, allowedOrigins: [] },
    { portalId: id, userId, role: "ADMIN", createdAt: 1 },
    { audit: [] },
  );
  return id;
}
