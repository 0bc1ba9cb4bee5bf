/**
 * The app runtime (issue 16 §2, docs/apps.md): keygate serving users' apps on origins of their
 * own, `<serverId>.<apps domain>` (or `<serverId>.localhost:<apps port>`), never on the dashboard's
 * and the API's — an app is someone else's JavaScript, and on keygate's origin it could call the
 * management API with the signed-in user's cookie.
 *
 * A request reaches the app's server only with a user. The browser arrives from the placement
 * handler with a one-time `__init` token, which the runtime spends once (on every node: the store
 * remembers spent ids) for an app session and an HttpOnly cookie of the app's host; the browser
 * never holds the session token. Every forwarded request loses the browser's `X-Vibe-*` headers
 * and keygate's own cookies and gains the user's: X-Vibe-User-Id, -Portal-Id, -User-Name(-Encoded),
 * -User-Role, -Request-Id and X-Vibe-Authorization: Bearer vibe_session_…, with which the app reads
 * its user from GET /v1/me. Bodies stream both ways through the HTTP upstream's client
 * (src/upstream/http/proxy.ts), WebSocket upgrades are piped, and an unreachable server answers 502.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { type IncomingHttpHeaders, type IncomingMessage, type Server as HttpServer, STATUS_CODES, type ServerResponse, createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { SESSION_COOKIE } from "../accounts/sessions.ts";
import { ERRORS, type ErrorCode } from "../core/errors.ts";
import type { Profile } from "../core/profile/profile.ts";
import { EXPIRED_GRANTS_KEPT_MS, EXPIRED_SESSIONS_KEPT_MS } from "../oauth/flow.ts";
import { newAppSession, secretDigest } from "../oauth/sessions.ts";
import { getRuntimeSession, openRuntimeSession, pruneSpentInits } from "../store/app-runtime.ts";
import { SecretBox } from "../store/credentials.ts";
import { type Server, getServer } from "../store/servers.ts";
import type { KeyRecord, MemberRole, Store } from "../store/store.ts";
import { ClientGone, ClientSignal, HttpUpstream, type HttpUpstreamOptions, UpstreamError, hasRequestBody, upstreamRequestHeaders } from "../upstream/http/proxy.ts";
import type { OutboundPolicy } from "../upstream/outbound.ts";
import { type InitIdentity, mintInitToken, readInitToken } from "./init-token.ts";

/** The runtime's cookie, host-only on the app's host (the name BlackHole uses). */
export const RUNTIME_COOKIE = "_vibe_gw";
/** Servers are read again after this long: a deleted server stops being served within it. */
const SERVER_TTL_MS = 5_000;
const MAX_CACHED = 100_000;
/** Spent `__init` ids past their expiry are deleted at most this often, by the node exchanging one. */
const PRUNE_EVERY_MS = 60_000;
/** App servers get longer than API upstreams to answer: apps render pages, run reports. */
export const APP_UPSTREAM_DEFAULTS: HttpUpstreamOptions = { headersTimeoutMs: 60_000, bodyTimeoutMs: 60_000 };

export interface AppRuntimeOptions {
  profile: Profile;
  store: Store;
  serverSecret: string;
  outbound: OutboundPolicy;
  now: () => number;
  /** The store's data generation (the key cache's): moves on whenever sessions were deleted, on any node. */
  generation: () => number;
  /** `--apps-domain`: apps are served at `<serverId>.<domain>`; none: `<serverId>.localhost:<port>`. */
  domain?: string;
  /** The port app URLs name without a domain (`--apps-port`); 0 or none: the one listened on. */
  port?: number;
  /** Apps' URLs and cookies are https (the public URL is https, or keygate serves TLS). */
  secure: boolean;
  tls?: { cert: string | Buffer; key: string | Buffer };
  upstream?: HttpUpstreamOptions;
  onError?: (e: unknown) => void;
}

/** Who is using the app, as the cookie's row says, for one data generation. */
interface Identity {
  serverId: string;
  token: string;
  keyId: string;
  userId: string;
  portalId: string;
  bitrixUserId: number;
  expiresAt: number;
  name: string;
  role: MemberRole;
  key: KeyRecord | undefined;
}

interface Refusal {
  status: number;
  code: string;
  title: string;
  text: string;
}

/** A refusal page: its status is the code's (src/core/errors.ts). */
const refusal = (code: ErrorCode, title: string, text: string): Refusal => ({ status: ERRORS[code].status, code, title, text });
const FROM_PORTAL = "Open the app again from your Bitrix24 portal: keygate lets you in from there.";
const LOGIN_REQUIRED = refusal("BH_LOGIN_REQUIRED", "Open this app from your portal", `This app is served only to the users it is opened for. ${FROM_PORTAL}`);
const SESSION_ENDED = refusal("APP_SESSION_ENDED", "Your session in this app ended", `It was revoked or expired. ${FROM_PORTAL}`);

/** A request's query parameters the exchange keeps when it redirects to the clean URL: all but __init. */
const INIT_PARAM = "__init";

export class AppRuntime {
  readonly server: HttpServer;
  readonly #o: AppRuntimeOptions;
  readonly #upstream: HttpUpstream;
  readonly #box: SecretBox;
  readonly #servers = new Map<string, { server: Server | undefined; at: number }>();
  readonly #identities = new Map<string, { identity: Identity | undefined; generation: number }>();
  /** Upgraded connections (WebSockets): the HTTP server no longer tracks them, closing ends them. */
  readonly #upgraded = new Set<Socket>();
  #lastPrune = -Infinity;
  #domain: string | undefined;

  constructor(options: AppRuntimeOptions) {
    this.#o = options;
    this.#domain = options.domain?.toLowerCase().replace(/^\.+|\.+$/g, "");
    this.#upstream = new HttpUpstream(options.outbound, { ...APP_UPSTREAM_DEFAULTS, ...options.upstream });
    this.#box = new SecretBox(options.serverSecret, "keygate app runtime sessions v1");
    // No limit on a whole request: uploads and long polls take what they take; the app server's own timeouts apply.
    const serverOptions = { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 5_000 };
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((e: unknown) => {
        options.onError?.(e);
        if (!res.headersSent) page(res, refusal("INTERNAL_ERROR", "Something went wrong", "keygate could not serve this request; try again."));
        else res.destroy();
      });
    };
    this.server = options.tls ? createHttpsServer({ ...serverOptions, ...options.tls }, handle) : createServer(serverOptions, handle);
    this.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.#upgrade(req, socket as Socket, head).catch((e: unknown) => {
        options.onError?.(e);
        socket.destroy();
      });
    });
  }

  /** The app's public URL (no trailing slash): `<scheme>://<serverId>.<domain>`, or `<scheme>://<serverId>.localhost:<port>`. */
  appUrl(serverId: string): string {
    const scheme = this.#o.secure ? "https" : "http";
    if (this.#domain !== undefined) return `${scheme}://${serverId}.${this.#domain}`;
    const address = this.server.address();
    const port = this.#o.port || (typeof address === "object" && address !== null ? address.port : 0);
    return `${scheme}://${serverId}.localhost:${port}`;
  }

  /**
   * Whether the cookie can live in the portal's frame: Bitrix24 opens an app inside its page, a
   * frame of another site, where a browser keeps only a `SameSite=None; Secure` cookie (and, as
   * browsers phase out third-party cookies, a `Partitioned` one). Secure needs https, or a
   * `*.localhost` host, which browsers treat as secure; an apps domain over plain http gets a
   * `SameSite=Lax` cookie, so its apps open in a tab of their own only (docs/apps.md).
   */
  #framedCookie(): boolean {
    return this.#o.secure || this.#domain === undefined;
  }

  /** Where the placement handler sends the browser (appEntryUrl on this runtime's app URL and clock). */
  entryUrl(identity: InitIdentity, params: Record<string, string | undefined>): Promise<string> {
    return appEntryUrl(this.appUrl(identity.serverId), this.#o.serverSecret, identity, params, this.#o.now());
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      for (const socket of this.#upgraded) socket.destroy();
    });
    await this.#upstream.close();
  }

  /** The server a Host header names, when it is one of this runtime's hosts and the server exists. */
  async #serverOf(host: string | undefined): Promise<Server | undefined> {
    if (host === undefined) return undefined;
    const name = host.toLowerCase().replace(/:\d+$/, "");
    const suffix = `.${this.#domain ?? "localhost"}`;
    if (!name.endsWith(suffix)) return undefined;
    const id = name.slice(0, -suffix.length);
    if (id === "" || id.includes(".") || id.length > 100) return undefined;
    const now = this.#o.now();
    const cached = this.#servers.get(id);
    if (cached !== undefined && now - cached.at < SERVER_TTL_MS) return cached.server;
    const server = await getServer(this.#o.store, id);
    if (this.#servers.size >= MAX_CACHED) this.#servers.clear();
    this.#servers.set(id, { server, at: now });
    return server;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const server = await this.#serverOf(req.headers.host);
    if (server === undefined) return page(res, refusal("APP_NOT_FOUND", "No app here", "There is no app at this address: it was deleted, or the address is mistyped."));
    const target = req.url ?? "/";
    if (!target.startsWith("/")) return page(res, refusal("VALIDATION_ERROR", "Bad request", "The request's target must be a path."));
    if (target.includes(`${INIT_PARAM}=`)) {
      const q = target.indexOf("?");
      const params = new URLSearchParams(q < 0 ? "" : target.slice(q + 1));
      const init = params.get(INIT_PARAM);
      if (init !== null) return this.#exchange(res, server, init, q < 0 ? target : target.slice(0, q), params);
    }
    const who = await this.#identify(req.headers, server);
    if ("status" in who) return page(res, who);
    const requestId = `req_${randomUUID()}`;
    const signal = new ClientSignal();
    const gone = () => {
      if (!res.writableFinished) signal.abort();
    };
    res.once("close", gone);
    const { origin, path } = this.#upstream.locate(server.url, target);
    try {
      await this.#upstream.forward(
        origin,
        { method: req.method ?? "GET", path, headers: appHeaders(req.headers), body: hasRequestBody(req.headers) ? req : null, added: this.#added(req, who, requestId), signal },
        (status, headers) => {
          res.writeHead(status, { ...headers, "x-request-id": requestId });
          return res;
        },
      );
    } catch (e) {
      if (e instanceof ClientGone) return;
      if (!(e instanceof UpstreamError)) throw e;
      if (e.started || res.headersSent) return void res.destroy();
      page(
        res,
        e.code === "UPSTREAM_TIMEOUT"
          ? refusal("UPSTREAM_TIMEOUT", "The app did not answer in time", "The app's server took too long to answer. Try again; if it keeps happening, tell the app's owner.")
          : refusal("UPSTREAM_UNAVAILABLE", "The app's server is unreachable", `keygate could not reach this app's server (${e.message}): it may be stopped or restarting. Try again shortly; if it keeps happening, tell the app's owner.`),
        requestId,
      );
    } finally {
      res.off("close", gone);
    }
  }

  /** The headers keygate adds: the user's identity, the session, and where the request came from. */
  #added(req: IncomingMessage, who: Identity, requestId: string): Record<string, string> {
    const added: Record<string, string> = {
      "x-vibe-request-id": requestId,
      "x-vibe-user-id": String(who.bitrixUserId),
      "x-vibe-portal-id": who.portalId,
      // The name's UTF-8 bytes as they are (Node reads them as Latin-1): apps wanting the text read the Encoded one.
      "x-vibe-user-name": Buffer.from(who.name.replace(/\p{Cc}/gu, ""), "utf8").toString("latin1"),
      "x-vibe-user-name-encoded": encodeURIComponent(who.name),
      "x-vibe-user-role": who.role,
      "x-vibe-authorization": `Bearer ${who.token}`,
      "x-forwarded-for": req.socket.remoteAddress ?? "",
      "x-forwarded-proto": this.#o.secure ? "https" : "http",
      "x-forwarded-host": req.headers.host ?? "",
    };
    // The app's own credentials and cookies are its business: they pass, keygate's are taken out.
    const cookie = appCookies(req.headers.cookie);
    if (cookie !== undefined) added.cookie = cookie;
    if (typeof req.headers.authorization === "string") added.authorization = req.headers.authorization;
    return added;
  }

  /** The user a request's cookie signs in on this server, or why it does not. */
  async #identify(headers: IncomingHttpHeaders, server: Server): Promise<Identity | Refusal> {
    const cookie = runtimeCookie(headers.cookie);
    if (cookie === undefined) return LOGIN_REQUIRED;
    const digest = secretDigest(cookie);
    const generation = this.#o.generation();
    let entry = this.#identities.get(digest);
    if (entry === undefined || entry.generation !== generation) {
      entry = { identity: await this.#load(digest), generation };
      if (generation === this.#o.generation()) {
        this.#identities.delete(digest);
        if (this.#identities.size >= MAX_CACHED) this.#identities.delete(this.#identities.keys().next().value!);
        this.#identities.set(digest, entry);
      }
    }
    const who = entry.identity;
    // A cookie another app's host set cannot arrive here through a browser (it is host-only): refused all the same.
    if (who === undefined || who.serverId !== server.id) return SESSION_ENDED;
    const now = this.#o.now();
    const key = who.key;
    if (now >= who.expiresAt || key === undefined || key.status !== "ACTIVE" || (key.expiresAt !== null && now >= key.expiresAt)) return SESSION_ENDED;
    return who;
  }

  /** The cookie's row and what the headers need of its user, read from the store. */
  async #load(digest: string): Promise<Identity | undefined> {
    const { store } = this.#o;
    const row = await getRuntimeSession(store, digest);
    if (row === undefined) return undefined;
    const s = row.session;
    const [user, member, key] = await Promise.all([store.getUser(s.userId), store.getMember(s.portalId, s.userId), store.getKey(s.keyId)]);
    if (user === undefined || member === undefined) return undefined;
    let token: string;
    try {
      token = this.#box.open(digest, row.sealedToken);
    } catch (e) {
      // Sealed under another server secret: the cookie signs no one in; the operator hears why.
      this.#o.onError?.(e);
      return undefined;
    }
    return { serverId: row.serverId, token, keyId: s.keyId, userId: s.userId, portalId: s.portalId, bitrixUserId: s.bitrixUserId, expiresAt: s.expiresAt, name: user.name, role: member.role, key };
  }

  /**
   * The `__init` exchange: a valid, unspent token for this server opens an app session, set
   * as the cookie, and the browser is sent to the same URL without the token.
   */
  async #exchange(res: ServerResponse, server: Server, init: string, path: string, params: URLSearchParams): Promise<void> {
    const { store, serverSecret, profile } = this.#o;
    const now = this.#o.now();
    const claims = await readInitToken(serverSecret, init, now);
    if (claims === undefined) return page(res, refusal("INIT_INVALID", "This link is not valid", `It is damaged, or older than 5 minutes. ${FROM_PORTAL}`));
    if (claims.serverId !== server.id) return page(res, refusal("APP_ACCESS_DENIED", "This link is for another app", FROM_PORTAL));
    // Any member of the app's portal opens it (seed 003: the user who opened the app in Bitrix24), not only the server's owner.
    if (claims.portalId !== server.portalId) {
      return page(res, refusal("APP_ACCESS_DENIED", "This link is for another app", FROM_PORTAL));
    }
    const [key, member, user] = await Promise.all([store.getKey(claims.keyId), store.getMember(claims.portalId, claims.userId), store.getUser(claims.userId)]);
    const keyUsable = key !== undefined && key.status === "ACTIVE" && (key.expiresAt === null || now < key.expiresAt) && key.portalId === claims.portalId && profile.keyType(key.type)?.sessionUser === true;
    if (!keyUsable || member === undefined || user === undefined) {
      return page(res, refusal("APP_ACCESS_DENIED", "This app cannot sign you in", "Its key was revoked, or you are no longer a member of its portal."));
    }
    const made = newAppSession(claims, `init:${claims.jti}`, now);
    const cookie = randomBytes(32).toString("base64url");
    const digest = secretDigest(cookie);
    const row = { cookieDigest: digest, serverId: server.id, sealedToken: this.#box.seal(digest, made.token), createdAt: now, session: made.session };
    if (!(await openRuntimeSession(store, { jti: claims.jti, expiresAt: claims.expiresAt }, row))) {
      return page(res, refusal("INIT_REPLAYED", "This link was used already", `Each link opens the app once. ${FROM_PORTAL}`));
    }
    if (now - this.#lastPrune >= PRUNE_EVERY_MS) {
      this.#lastPrune = now;
      await pruneSpentInits(store, now);
      // The sessions it opens end like the OAuth flow's, and go the same way (their cookies' rows with them).
      await store.pruneOAuth(now - EXPIRED_GRANTS_KEPT_MS, now - EXPIRED_SESSIONS_KEPT_MS);
    }
    params.delete(INIT_PARAM);
    const maxAge = Math.floor((made.session.expiresAt - now) / 1000);
    res.writeHead(302, {
      // The same path with one leading slash: "//host/…" (or "/\\host/…") would send the browser to another site.
      location: `/${path.replace(/^[/\\]+/, "")}${params.size > 0 ? `?${params}` : ""}`,
      "set-cookie": `${RUNTIME_COOKIE}=${cookie}; Path=/; HttpOnly; Max-Age=${maxAge}; ${this.#framedCookie() ? "SameSite=None; Secure; Partitioned" : "SameSite=Lax"}`,
      "cache-control": "no-store",
      // The token is in this URL: no page it leads to learns it.
      "referrer-policy": "no-referrer",
    });
    res.end();
  }

  /** A WebSocket (or any) upgrade: the same identity, then the two sockets piped together. */
  async #upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    socket.on("error", () => socket.destroy());
    const server = await this.#serverOf(req.headers.host);
    const refuse = (r: Refusal) => {
      socket.end(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status]}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\n${r.code}: ${r.text}\n`);
    };
    if (server === undefined) return refuse(refusal("APP_NOT_FOUND", "Not Found", "There is no app at this address."));
    const target = req.url ?? "/";
    if (!target.startsWith("/")) return refuse(refusal("VALIDATION_ERROR", "Bad Request", "The request's target must be a path."));
    const who = await this.#identify(req.headers, server);
    if ("status" in who) return refuse(who);
    const requestId = `req_${randomUUID()}`;
    const { origin, path } = this.#upstream.locate(server.url, target);
    const at = new URL(origin);
    const headers: Record<string, string | string[]> = {
      host: at.host,
      ...upstreamRequestHeaders(appHeaders(req.headers), this.#added(req, who, requestId), false),
      connection: "Upgrade",
      upgrade: String(req.headers.upgrade),
    };
    const connect = this.#o.outbound.connector({ timeout: this.#upstream.options.connectTimeoutMs });
    connect(
      { hostname: at.hostname, host: at.host, protocol: at.protocol, port: at.port || (at.protocol === "https:" ? "443" : "80"), servername: at.hostname },
      (error, upstream) => {
        if (error !== null || upstream === null) {
          return refuse(refusal("UPSTREAM_UNAVAILABLE", "Bad Gateway", `keygate could not reach this app's server (${(error as { code?: string } | null)?.code ?? error?.message ?? "no connection"}).`));
        }
        let lines = `${req.method ?? "GET"} ${path} HTTP/1.1\r\n`;
        for (const [name, value] of Object.entries(headers)) for (const v of Array.isArray(value) ? value : [value]) lines += `${name}: ${v}\r\n`;
        upstream.write(`${lines}\r\n`);
        if (head.length > 0) upstream.write(head);
        upstream.on("error", () => socket.destroy());
        this.#upgraded.add(socket);
        socket.on("close", () => {
          this.#upgraded.delete(socket);
          upstream.destroy();
        });
        upstream.on("close", () => socket.destroy());
        upstream.pipe(socket);
        socket.pipe(upstream);
      },
    );
  }
}

/**
 * Where the placement handler sends the browser: `<appUrl>/?<params>&__init=<token>`, the
 * parameters in the order given (placement, member_id, placement_options), the token fresh for
 * `identity` (5 minutes from `now`, spent once by the runtime).
 */
export async function appEntryUrl(appUrl: string, serverSecret: string, identity: InitIdentity, params: Record<string, string | undefined>, now: number): Promise<string> {
  const url = new URL(`${appUrl}/`);
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(name, value);
  url.searchParams.set(INIT_PARAM, await mintInitToken(serverSecret, identity, now));
  return url.href;
}

/** The value of the runtime's cookie in a Cookie header. */
function runtimeCookie(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === RUNTIME_COOKIE) {
      const value = part.slice(eq + 1).trim();
      return /^[A-Za-z0-9_-]{43}$/.test(value) ? value : undefined;
    }
  }
  return undefined;
}

/** The Cookie header the app gets: the browser's, without keygate's runtime and dashboard cookies. */
function appCookies(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const kept = header
    .split(";")
    .map((p) => p.trim())
    .filter((p) => {
      const name = p.slice(0, Math.max(0, p.indexOf("="))).trim();
      return p !== "" && name !== RUNTIME_COOKIE && name !== SESSION_COOKIE;
    });
  return kept.length === 0 ? undefined : kept.join("; ");
}

/** The browser's headers without any X-Vibe-* one: only keygate says who the user is. */
function appHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const name in headers) if (!name.startsWith("x-vibe-")) out[name] = headers[name];
  return out;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A refusal as a small page people read: the app is opened in a browser. */
function page(res: ServerResponse, r: Refusal, requestId?: string): void {
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(r.title)}</title></head><body><h1>${escapeHtml(r.title)}</h1><p>${escapeHtml(r.text)}</p><p><small>${r.code}</small></p></body></html>\n`;
  res.writeHead(r.status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
    "x-keygate-error": r.code,
    ...(requestId !== undefined && { "x-request-id": requestId }),
  });
  res.end(body);
}
