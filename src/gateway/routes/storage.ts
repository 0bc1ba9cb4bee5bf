import { Type as T } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import { type ByteRange, ObjectTooLargeError, type StoredObject } from "../../store/objects.ts";
import type { App, GatewayContext } from "../server.ts";

/** The largest object `PUT /v1/storage/objects/<key>` takes unless `serve --storage-max-object-bytes` says otherwise. */
export const DEFAULT_MAX_OBJECT_BYTES = 100 * 1024 * 1024;
/** An object key's longest UTF-8 encoding, as S3's. */
export const MAX_KEY_BYTES = 1024;
const MAX_LIST = 1000;
const DEFAULT_LIST = 100;
const MAX_CONTENT_TYPE = 255;
const PREFIX = "/v1/storage/objects/";

const ObjectInfo = T.Object({
  key: T.String(),
  size: T.Integer({ description: "Bytes" }),
  contentType: T.String(),
  etag: T.String({ description: "The quoted hex SHA-256 of the bytes, as the ETag header" }),
  createdAt: T.String({ format: "date-time" }),
  updatedAt: T.String({ format: "date-time" }),
});
const Bytes = T.Unsafe<unknown>({ type: "string", format: "binary", description: "The object's bytes, with its Content-Type, ETag and Content-Length" });
const KEY_PARAM = T.Object({ "*": T.String({ description: `The object key: 1 to ${MAX_KEY_BYTES} bytes of segments separated by /, none empty, . or ..` }) });

const info = (o: StoredObject) => ({
  key: o.key,
  size: o.size,
  contentType: o.contentType,
  etag: `"${o.sha256}"`,
  createdAt: new Date(o.createdAt).toISOString(),
  updatedAt: new Date(o.updatedAt).toISOString(),
});

/** Whether a key is one keygate stores: the reason it is not, else undefined. */
export function keyProblem(key: string): string | undefined {
  if (key === "") return "the object key is empty";
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `the object key is longer than ${MAX_KEY_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return "the object key holds a control character";
  for (const segment of key.split("/")) {
    if (segment === "") return "the object key has an empty segment (a leading, trailing or doubled /)";
    if (segment === "." || segment === "..") return `the object key has a "${segment}" segment`;
  }
  return undefined;
}

/** The key named by the request's path: everything after /v1/storage/objects/, percent-decoded. */
function keyOfPath(request: FastifyRequest): string {
  const url = request.url;
  const q = url.indexOf("?");
  const raw = (q < 0 ? url : url.slice(0, q)).slice(PREFIX.length);
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new KeygateError("INVALID_OBJECT_KEY", { message: "the object key is not valid percent-encoding", param: "key" });
  }
  const problem = keyProblem(key);
  if (problem !== undefined) throw new KeygateError("INVALID_OBJECT_KEY", { message: problem, param: "key" });
  return key;
}

/**
 * The one range of a `Range: bytes=…` header within an object of `size` bytes; undefined to send
 * the whole object (no header, or one keygate does not serve: several ranges, another unit, a
 * malformed one — RFC 9110 lets a server ignore those); null when no byte of it exists (416).
 */
export function byteRange(header: string | undefined, size: number): ByteRange | null | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    // The last n bytes.
    const n = Number(m[2]);
    if (n === 0 || size === 0) return null;
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== "" && Number(m[2]) < start) return undefined;
  if (start >= size) return null;
  return { start, end };
}

/**
 * Object storage of the key's portal (vibe:storage; docs/storage.md): put, get (ranges, ETag),
 * head, delete and list. Verification has run before any handler here: the scope, the key type
 * (portal keys), and the read-only block on PUT and DELETE.
 */
export function storageRoutes(app: App, ctx: GatewayContext, options: { maxObjectBytes: number }): void {
  const { kg, envelope, responses } = ctx;
  const objects = kg.store.objects;
  const maxBytes = options.maxObjectBytes;
  const portalOf = (request: FastifyRequest) => request.auth.key.record.portalId!;
  // Bytes, not JSON: neither parsed nor capped by Fastify (the handler streams and caps them), and sent as stored, uncompressed, so ranges and ETags are of the stored bytes.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, done) => done(null, undefined));
  const schema = { tags: ["storage"] };
  // The key is judged once verification has passed and before anything else looks at the path (a NUL in it is INVALID_OBJECT_KEY too).
  const keys = new WeakMap<FastifyRequest, string>();
  const onRequest = async (request: FastifyRequest) => {
    keys.set(request, keyOfPath(request));
  };
  const objectKey = (request: FastifyRequest) => keys.get(request)!;
  const uncompressed = { compress: false as const };

  /** The object's headers, for GET and HEAD. */
  const describe = (reply: FastifyReply, o: StoredObject) =>
    reply
      .header("content-type", o.contentType)
      .header("etag", `"${o.sha256}"`)
      .header("last-modified", new Date(o.updatedAt).toUTCString())
      .header("accept-ranges", "bytes");
  const notFound = (key: string) => new KeygateError("OBJECT_NOT_FOUND", { message: `No object with the key ${JSON.stringify(key)} in the portal's storage.`, param: "key" });
  const unchanged = (request: FastifyRequest, o: StoredObject) => {
    const tags = request.headers["if-none-match"];
    return tags !== undefined && (tags.trim() === "*" || tags.split(",").some((t) => t.trim().replace(/^W\//, "") === `"${o.sha256}"`));
  };

  app.put(
    "/v1/storage/objects/*",
    {
      ...uncompressed,
      onRequest,
      schema: {
        ...schema,
        operationId: "putObject",
        summary: `Store an object (the body, streamed; at most ${maxBytes} bytes) under the key, with the request's Content-Type`,
        params: KEY_PARAM,
        response: responses({ data: ObjectInfo, status: 201, description: "Stored (200 when it replaced an object)", codes: ["INVALID_OBJECT_KEY", "OBJECT_TOO_LARGE"] }),
      },
    },
    async (request, reply) => {
      const key = objectKey(request);
      const contentType = request.headers["content-type"] ?? "application/octet-stream";
      // eslint-disable-next-line no-control-regex
      if (contentType.length > MAX_CONTENT_TYPE || /[\u0000-\u001f\u007f]/.test(contentType)) {
        throw new KeygateError("VALIDATION_ERROR", { message: `the Content-Type header is at most ${MAX_CONTENT_TYPE} characters without control characters`, param: "content-type" });
      }
      const tooLarge = () => {
        // The rest of the body is not read: the connection closes after the answer.
        reply.header("connection", "close");
        return new KeygateError("OBJECT_TOO_LARGE", { message: `The object is larger than ${maxBytes} bytes, the largest this keygate stores.`, details: { maxBytes } });
      };
      const declared = Number(request.headers["content-length"] ?? 0);
      if (declared > maxBytes) throw tooLarge();
      let stored: Awaited<ReturnType<typeof objects.put>>;
      try {
        stored = await objects.put(portalOf(request), key, request.raw, { contentType, maxBytes, now: kg.now() });
      } catch (e) {
        if (e instanceof ObjectTooLargeError) throw tooLarge();
        throw e;
      }
      return reply.code(stored.created ? 201 : 200).send(envelope.ok(info(stored.object)));
    },
  );

  app.head(
    "/v1/storage/objects/*",
    { ...uncompressed, onRequest, schema: { ...schema, operationId: "headObject", summary: "An object's headers (Content-Type, Content-Length, ETag), without its bytes", params: KEY_PARAM } },
    async (request, reply) => {
      const key = objectKey(request);
      const o = await objects.head(portalOf(request), key);
      if (o === undefined) throw notFound(key);
      describe(reply, o);
      if (unchanged(request, o)) return reply.code(304).send();
      return reply.header("content-length", String(o.size)).send();
    },
  );

  app.get(
    "/v1/storage/objects/*",
    {
      ...uncompressed,
      onRequest,
      schema: {
        ...schema,
        operationId: "getObject",
        summary: "An object's bytes, as stored: ETag and If-None-Match (304), one byte range (Range: bytes=a-b → 206, or 416)",
        params: KEY_PARAM,
        response: { ...responses({ data: ObjectInfo, codes: ["INVALID_OBJECT_KEY", "OBJECT_NOT_FOUND", "RANGE_NOT_SATISFIABLE"] }), 200: Bytes, 206: Bytes },
      },
    },
    async (request, reply) => {
      const key = objectKey(request);
      const portalId = portalOf(request);
      const found = await objects.head(portalId, key);
      if (found === undefined) throw notFound(key);
      if (unchanged(request, found)) return describe(reply, found).code(304).send();
      const range = byteRange(request.headers.range, found.size);
      if (range === null) {
        reply.header("content-range", `bytes */${found.size}`);
        throw new KeygateError("RANGE_NOT_SATISFIABLE", { message: `The range is outside the object's ${found.size} bytes.`, details: { size: found.size } });
      }
      const read = await objects.read(portalId, key, range);
      if (read === undefined) throw notFound(key);
      const o = read.object;
      // Replaced between the two reads: the range was worked out for other bytes; send the new object whole.
      if (o.sha256 !== found.sha256 && range !== undefined) {
        read.body.destroy();
        const whole = await objects.read(portalId, key);
        if (whole === undefined) throw notFound(key);
        return describe(reply, whole.object).header("content-length", String(whole.object.size)).send(whole.body);
      }
      describe(reply, o);
      if (range === undefined) return reply.header("content-length", String(o.size)).send(read.body);
      return reply
        .code(206)
        .header("content-range", `bytes ${range.start}-${range.end}/${o.size}`)
        .header("content-length", String(range.end - range.start + 1))
        .send(read.body);
    },
  );

  app.delete(
    "/v1/storage/objects/*",
    {
      onRequest,
      schema: {
        ...schema,
        operationId: "deleteObject",
        summary: "Delete an object",
        params: KEY_PARAM,
        response: responses({ data: T.Object({ key: T.String(), deleted: T.Literal(true) }), codes: ["INVALID_OBJECT_KEY", "OBJECT_NOT_FOUND"] }),
      },
    },
    async (request) => {
      const key = objectKey(request);
      if (!(await objects.delete(portalOf(request), key))) throw notFound(key);
      return envelope.ok({ key, deleted: true });
    },
  );

  app.get(
    "/v1/storage/objects",
    {
      schema: {
        ...schema,
        operationId: "listObjects",
        summary: `The portal's objects in key order: prefix, cursor (meta.nextCursor of the page before), limit (1 to ${MAX_LIST}, default ${DEFAULT_LIST})`,
        querystring: T.Object(
          {
            prefix: T.Optional(T.String({ maxLength: MAX_KEY_BYTES, description: "Only keys starting with this" })),
            cursor: T.Optional(T.String({ description: "meta.nextCursor of the page before" })),
            limit: T.Optional(T.String({ pattern: "^[0-9]{1,4}$", description: `1 to ${MAX_LIST} (default ${DEFAULT_LIST})` })),
          },
          { additionalProperties: false },
        ),
        response: responses({
          data: T.Array(ObjectInfo),
          meta: T.Object({ hasMore: T.Boolean(), nextCursor: T.Union([T.String(), T.Null()], { description: "Send as cursor for the next page; null on the last" }) }),
          codes: ["INVALID_OBJECT_KEY"],
        }),
      },
    },
    async (request) => {
      const q = request.query;
      const limit = q.limit === undefined ? DEFAULT_LIST : Number(q.limit);
      if (limit < 1 || limit > MAX_LIST) throw new KeygateError("VALIDATION_ERROR", { message: `query limit: 1 to ${MAX_LIST}`, param: "limit" });
      let after: string | undefined;
      if (q.cursor !== undefined) {
        after = Buffer.from(q.cursor, "base64url").toString("utf8");
        if (!/^[A-Za-z0-9_-]+$/.test(q.cursor) || keyProblem(after) !== undefined) throw new KeygateError("VALIDATION_ERROR", { message: "query cursor: not a cursor this listing gave", param: "cursor" });
      }
      const page = await objects.list(portalOf(request), { prefix: q.prefix ?? "", after, limit: limit + 1 });
      const hasMore = page.length > limit;
      const items = page.slice(0, limit);
      const last = items.at(-1);
      return envelope.ok(items.map(info), { hasMore, nextCursor: hasMore && last ? Buffer.from(last.key).toString("base64url") : null });
    },
  );
}
