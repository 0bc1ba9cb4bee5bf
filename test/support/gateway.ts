/**
 * An HTTP test harness: a keygate server (Fastify inject: real routing, hooks and serialisation,
 * no socket) on a fresh store of either dialect, an owner with a management key, and a clock the
 * test moves.
 *
 *     for (const kind of await storeKinds("http: keys")) {
 *       describe(`keys [${kind}]`, () => {
 *         let h: Harness;
 *         before(async () => (h = await startHarness(kind)));
 *         after(() => h.close());
 *         it("…", async () => { const r = await h.call("GET", "/v1/me", { key: h.owner.key }); … });
 *       });
 *     }
 *
 * Options: another profile (one that names no management key type gets keygate's own), the
 * server's limiter (built on the harness clock), and `alongside`: a second server on another
 * harness's store, secret, clock and owner — two nodes of one deployment.
 */
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import { type ClientLimits, type ServerOptions, buildServer } from "../../src/gateway/server.ts";
import type { AppRuntime } from "../../src/apps/runtime.ts";
import type { Limiter } from "../../src/limits/limiter.ts";
import type { HttpUpstreamOptions } from "../../src/upstream/http/proxy.ts";
import type { PlatformOptions } from "../../src/platform/index.ts";
import type { Keygate } from "../../src/manage/context.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import { openPostgresStore, openSqliteStore } from "../../src/store/index.ts";
import type { Store, User } from "../../src/store/store.ts";
import { postgresUrl, probePostgres, redactUrl, requireService } from "./services.ts";

export type StoreKind = "sqlite" | "postgres";

/** The store kinds to run a suite against: PostgreSQL joins when it answers (else skip, or fail under CI). */
export async function storeKinds(suite: string): Promise<StoreKind[]> {
  const url = postgresUrl();
  const pgReady = await requireService(`${suite} [postgres]`, `PostgreSQL at ${redactUrl(url)}`, () => probePostgres(url));
  return pgReady ? ["sqlite", "postgres"] : ["sqlite"];
}

export interface Reply {
  status: number;
  // Tests read whatever the body holds.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  headers: Record<string, string | string[] | number | undefined>;
}

export interface CallOptions {
  key?: string;
  /** Send the key as Authorization: Bearer instead of X-Api-Key. */
  bearer?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** The client's socket address. */
  ip?: string;
}

export interface Harness {
  kind: StoreKind;
  store: Store;
  /** Management operations on the same store, secret and clock as the server (for setting up). */
  kg: Keygate;
  /** The owner, with a management key holding every management scope of the profile. */
  owner: { user: User; key: string };
  clock: { now: number; advance(ms: number): void };
  call(method: string, path: string, options?: CallOptions): Promise<Reply>;
  /** With `listen: true`: the server's own address (http://127.0.0.1:<port>), for clients with a real socket. */
  url?: string;
  /** With `listen: true`: the listening server (its connections can be counted). */
  server?: Server;
  /** With `apps`: the app runtime, listening on 127.0.0.1 (a random port). */
  appRuntime?: AppRuntime;
  /** A user with a management key holding the given scopes (default: every management scope of the profile). */
  user(email: string, scopes?: string | string[]): Promise<{ user: User; key: string }>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** A built-in profile (default vibecode; with `alongside`, that harness's profile). */
  profile?: string;
  trustProxy?: string[];
  /** The server's rate limiter, built on the harness clock (default: a MemoryLimiter on it). Closed with the harness. */
  limiter?: (now: () => number) => Limiter | Promise<Limiter>;
  /** Serve from this harness's store, secret, clock and owner (a second node); closing the new harness closes only its server. */
  alongside?: Harness;
  /** Timeouts of the HTTP upstream (short ones for timeout tests). */
  httpUpstream?: HttpUpstreamOptions;
  /** What upstream URLs may point to besides public addresses (`serve --allow-upstream`): fake upstreams on this machine need "127.0.0.1". */
  allowUpstream?: string[];
  /** Also listen on 127.0.0.1 (a random port): `url` is set. */
  listen?: boolean;
  /** The server's client limits (timeouts, connection cap), small ones for slow-client tests. */
  clientLimits?: Partial<ClientLimits>;
  /** The key generation identity assertions are signed with (`serve --identity-key-generation`). */
  identityKeyGeneration?: number;
  /** SMTP for the emails keygate sends (`serve --smtp-url --smtp-from`). */
  mail?: ServerOptions["mail"];
  /** The largest object the server stores (`serve --storage-max-object-bytes`). */
  storageMaxObjectBytes?: number;
  /** How often registered servers' reachability is checked (`ServerOptions.serverCheckIntervalMs`): short in reachability tests. */
  serverCheckIntervalMs?: number;
  /** Where the harness clock starts (default 2026-11-22T12:00:00Z): Date.now() for clients that check times against the real clock. */
  startAt?: number;
  /** The platform sections' providers (`serve --ai-base-url`, `--search-url`): fakes from test/support/platform.ts. */
  platform?: PlatformOptions;
  /** The app runtime (`serve --apps-port`, `--apps-domain`): listens on 127.0.0.1, a random port. */
  apps?: ServerOptions["apps"];
  /** Bitrix24's OAuth token server (`serve --bitrix24-token-url`): "/sandbox/oauth/token/" for the sandbox standing in for a real portal. */
  bitrix24TokenUrl?: string;
}

/**
 * A migrated store of the kind that lives as long as the test needs it: SQLite in memory, or a
 * PostgreSQL schema of its own (`<label>_<random>`) that `drop` removes; with a fresh server secret.
 */
export async function throwawayStore(kind: StoreKind, label: string): Promise<{ store: Store; serverSecret: string; drop(): Promise<void> }> {
  const serverSecret = randomBytes(32).toString("base64url");
  if (kind === "sqlite") {
    const store = await openSqliteStore(":memory:", { serverSecret });
    await store.migrate();
    return { store, serverSecret, drop: async () => {} };
  }
  const schema = `${label}_${randomBytes(6).toString("hex")}`;
  const store = await openPostgresStore(postgresUrl(), { schema, max: 4, serverSecret });
  await store.migrate();
  const drop = async () => {
    const client = new pg.Client({ connectionString: postgresUrl() });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => client.end());
  };
  return { store, serverSecret, drop };
}

export async function startHarness(kind: StoreKind, options: HarnessOptions = {}): Promise<Harness> {
  if (options.alongside) return startNode(options.alongside, options);
  const { store, serverSecret, drop: dropSchema } = await throwawayStore(kind, "kg_http");
  const profile = loadProfile(options.profile ?? "vibecode");
  const clock = {
    now: options.startAt ?? Date.parse("2026-11-22T12:00:00Z"),
    advance(ms: number) {
      clock.now += ms;
    },
  };
  const now = () => clock.now;
  const limiter = await options.limiter?.(now);
  const app = buildServer({ profile, store, serverSecret, now, trustProxy: options.trustProxy, limiter, httpUpstream: options.httpUpstream, clientLimits: options.clientLimits, allowUpstream: options.allowUpstream, identityKeyGeneration: options.identityKeyGeneration, platform: options.platform, mail: options.mail, storageMaxObjectBytes: options.storageMaxObjectBytes, serverCheckIntervalMs: options.serverCheckIntervalMs, bitrix24TokenUrl: options.bitrix24TokenUrl, apps: options.apps });
  await app.ready();
  const url = options.listen ? await app.listen({ host: "127.0.0.1", port: 0 }) : undefined;
  const appRuntime = app.appRuntime;
  if (appRuntime) await new Promise<void>((resolve) => appRuntime.server.listen(0, "127.0.0.1", resolve));
  // The server's own management operations: changes made through them reach its caches.
  const kg: Keygate = app.keygate;

  const user = async (email: string, scopes: string | string[] = profile.management.scopes) => {
    const u = await createUser(kg, null, { email });
    return { user: u, key: (await issueManagementKey(kg, u, scopes)).rawKey };
  };
  const owner = await user("owner@example.com");

  return {
    kind,
    store,
    kg,
    owner,
    clock,
    user,
    call: caller(app),
    url,
    server: options.listen ? app.server : undefined,
    appRuntime,
    async close() {
      await app.close();
      await store.close();
      await dropSchema();
    },
  };
}

/** A second server on the store, secret, clock and owner of `base`. */
async function startNode(base: Harness, options: HarnessOptions): Promise<Harness> {
  const profile = options.profile === undefined ? base.kg.profile : loadProfile(options.profile);
  const now = () => base.clock.now;
  const limiter = await options.limiter?.(now);
  const app = buildServer({ profile, store: base.store, serverSecret: base.kg.serverSecret, now, trustProxy: options.trustProxy, limiter, allowUpstream: options.allowUpstream, identityKeyGeneration: options.identityKeyGeneration, serverCheckIntervalMs: options.serverCheckIntervalMs, bitrix24TokenUrl: options.bitrix24TokenUrl, apps: options.apps });
  await app.ready();
  const appRuntime = app.appRuntime;
  if (appRuntime) await new Promise<void>((resolve) => appRuntime.server.listen(0, "127.0.0.1", resolve));
  return {
    ...base,
    call: caller(app),
    appRuntime,
    async close() {
      await app.close();
    },
  };
}

function caller(app: FastifyInstance): Harness["call"] {
  return async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.key !== undefined) headers["x-api-key"] = o.key;
    if (o.bearer !== undefined) headers.authorization = `Bearer ${o.bearer}`;
    const res = await app.inject({
      method: method as "GET",
      url: path,
      headers,
      remoteAddress: o.ip ?? "127.0.0.1",
      ...(o.body === undefined ? {} : { payload: typeof o.body === "string" ? o.body : JSON.stringify(o.body), headers: { "content-type": "application/json", ...headers } }),
    });
    let body: unknown = res.body;
    try {
      body = res.json();
    } catch {
      // not JSON: the raw text
    }
    return { status: res.statusCode, body, headers: res.headers };
  };
}
