/**
 * The dashboard (issue 12): a page of ES modules under web/ (Preact + htm), served as they are —
 * no build step, so `npm start` on a fresh clone serves it. The browser resolves `preact`,
 * `preact/hooks` and `htm` through the page's import map to copies served from node_modules.
 *
 * Every asset's URL holds a hash of all of them (/assets/<version>/…), so assets are cached for a
 * year and a new keygate is a new URL; the page itself is revalidated (ETag) on every load. Page
 * paths answer the page, everything else keeps answering keygate's JSON 404. Nothing here runs
 * for /v1/ requests: the routes are in their own plugin, with no hooks.
 */
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** The dashboard's pages (web/app.js routes the same paths). */
export const DASHBOARD_PAGES = ["/", "/sign-in", "/set-password", "/keys", "/keys/:id", "/authorization-keys", "/management-keys", "/portal", "/notifications", "/feedback", "/feedback/:id"];

const WEB = new URL("../../web/", import.meta.url);
const TYPES: Record<string, string> = { ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8" };
/** The libraries the page imports by name, as the import map calls them, and the file served for each. */
const VENDOR: Record<string, string> = { preact: "vendor/preact.mjs", "preact/hooks": "vendor/hooks.mjs", htm: "vendor/htm.mjs" };

interface Encoded {
  body: Buffer;
  etag: string;
}

/** A file as served: as it is, and compressed once, at the highest levels (not per request). */
interface Asset {
  type: string;
  identity: Encoded;
  br?: Encoded;
  gzip?: Encoded;
}

interface Dashboard {
  version: string;
  assets: Map<string, Asset>;
  page: Asset;
  csp: string;
}

const etag = (body: Buffer | string) => `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
const typeOf = (name: string) => TYPES[name.slice(name.lastIndexOf("."))] ?? "application/octet-stream";
/** keygate compresses its answers over 1 KiB (docs/api.md); these are compressed ahead, so @fastify/compress leaves them be. */
const COMPRESS_OVER = 1024;

function asset(body: Buffer, type: string): Asset {
  const identity = { body, etag: etag(body) };
  if (body.length <= COMPRESS_OVER) return { type, identity };
  // One representation, one ETag: the encoding is part of it.
  const tagged = (encoded: Buffer, suffix: string) => ({ body: encoded, etag: `${identity.etag.slice(0, -1)}-${suffix}"` });
  return {
    type,
    identity,
    br: tagged(brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } }), "br"),
    gzip: tagged(gzipSync(body, { level: 9 }), "gz"),
  };
}

/** The encodings the client accepts (Accept-Encoding, q > 0). */
function accepted(header: string | undefined): Set<string> {
  const names = new Set<string>();
  for (const part of (header ?? "").split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    if (name && (q === undefined || Number(q.slice(2)) > 0)) names.add(name);
  }
  return names;
}

/** Reads web/ and the libraries once per process; the files do not change while keygate runs. */
let loaded: Dashboard | undefined;
function load(): Dashboard {
  if (loaded) return loaded;
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(WEB).sort()) if (name !== "index.html" && TYPES[name.slice(name.lastIndexOf("."))]) files.set(name, readFileSync(new URL(name, WEB)));
  // The source map comments point at files not served: dropped, so browsers do not ask for them.
  for (const [specifier, name] of Object.entries(VENDOR)) files.set(name, Buffer.from(readFileSync(fileURLToPath(import.meta.resolve(specifier)), "utf8").replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, "")));
  const hash = createHash("sha256");
  for (const [name, body] of files) hash.update(name).update(body);
  const version = hash.digest("hex").slice(0, 12);
  const base = `/assets/${version}`;
  const importMap = JSON.stringify({ imports: Object.fromEntries(Object.entries(VENDOR).map(([specifier, name]) => [specifier, `${base}/${name}`])) });
  // Every module is announced up front: the browser fetches them at once, not import by import.
  const preload = [...files.keys()].filter((name) => name.endsWith(".js") || name.endsWith(".mjs")).map((name) => `<link rel="modulepreload" href="${base}/${name}">`).join("\n");
  const html = readFileSync(new URL("index.html", WEB), "utf8").replaceAll("%ASSETS%", base).replace("%IMPORTMAP%", importMap).replace("%PRELOAD%", preload);
  // The import map is the page's only inline script: allowed by its hash, nothing else inline runs.
  const mapHash = createHash("sha256").update(importMap).digest("base64");
  const csp = [
    "default-src 'self'",
    `script-src 'self' 'sha256-${mapHash}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
  const assets = new Map<string, Asset>();
  for (const [name, body] of files) assets.set(name, asset(body, typeOf(name)));
  loaded = { version, assets, page: asset(Buffer.from(html), TYPES[".html"]!), csp };
  return loaded;
}

function send(request: FastifyRequest, reply: FastifyReply, asset: Asset, cacheControl: string): FastifyReply {
  const encodings = asset.br || asset.gzip ? accepted(request.headers["accept-encoding"]) : undefined;
  const encoding = encodings?.has("br") ? "br" : encodings?.has("gzip") ? "gzip" : undefined;
  const chosen = (encoding && asset[encoding]) ?? asset.identity;
  if (encodings) reply.header("vary", "Accept-Encoding");
  reply.header("etag", chosen.etag).header("cache-control", cacheControl).header("x-content-type-options", "nosniff");
  if (request.headers["if-none-match"] === chosen.etag) return reply.code(304).send();
  if (encoding) reply.header("content-encoding", encoding);
  return reply.type(asset.type).send(chosen.body);
}

/** Registers the page paths and /assets/<version>/*; hidden from the OpenAPI document (they are not the API). */
export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  const dashboard = load();
  const page = (request: FastifyRequest, reply: FastifyReply) => {
    // A one-time link's token is in the URL of /set-password: no Referer carries it anywhere.
    reply.header("content-security-policy", dashboard.csp).header("referrer-policy", "no-referrer").header("x-frame-options", "DENY");
    return send(request, reply, dashboard.page, "no-cache");
  };
  for (const path of DASHBOARD_PAGES) app.get(path, { schema: { hide: true } }, page);
  app.get<{ Params: { version: string; "*": string } }>("/assets/:version/*", { schema: { hide: true } }, (request, reply) => {
    const asset = request.params.version === dashboard.version ? dashboard.assets.get(request.params["*"]) : undefined;
    // An asset of another version (a page loaded before an upgrade) or none at all: the JSON 404 of any unknown path.
    if (asset === undefined) return reply.callNotFound();
    return send(request, reply, asset, "public, max-age=31536000, immutable");
  });
}
