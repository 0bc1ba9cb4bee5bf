import { type Command, Option } from "commander";
import { KeygateClientError, type KeygateClient, keygateClient, type operations, unwrap } from "../client/index.ts";
import { type Io, UsageError } from "./io.ts";

/**
 * `keygate keys …` and `keygate portals list`: a client of a running keygate's management API
 * (the typed client, with a management key), the same under every profile. Exit codes: 0 done,
 * 1 the API refused (its code on stderr) or could not be reached, 2 a usage error. With --json
 * the API's `data`, exactly, on one line.
 */

type CreateBody = operations["createKey"]["requestBody"]["content"]["application/json"];
type UpdateBody = operations["updateKey"]["requestBody"]["content"]["application/json"];
/** GET /v1/keys/:id/scope-advice (docs/scope-advice.md). */
type ScopeAdvice = operations["getKeyScopeAdvice"]["responses"][200]["content"]["application/json"]["data"];
/** A key as the API shows it (GET /v1/keys/:id). */
type KeyView = operations["getKey"]["responses"][200]["content"]["application/json"]["data"];

interface Connection {
  url?: string;
  key?: string;
  json?: boolean;
}

/** The dashboard's expiry choices (seed 003), as --expires takes them. */
const EXPIRY_DAYS = new Set([30, 90, 180, 365]);
const DAY_MS = 86_400_000;
/** The key type that is bound to no portal. */
const MANAGEMENT = "management";

const usage = (message: string, code = "USAGE") => new UsageError(code, [{ scope: "", code, message }]);

function connect(opts: Connection): KeygateClient {
  const key = opts.key ?? process.env.KEYGATE_KEY;
  if (!key) throw usage("no management key: give --key or set KEYGATE_KEY");
  const baseUrl = opts.url ?? process.env.KEYGATE_URL ?? "http://127.0.0.1:8080";
  if (!URL.canParse(baseUrl)) throw usage(`--url (or KEYGATE_URL) is not a URL: "${baseUrl}"`);
  return keygateClient({ baseUrl, key });
}

/** Calls the API; a refusal or an unreachable server ends the command with exit code 1. */
async function ask<T>(io: Io, opts: Connection, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof KeygateClientError) {
      const errors = (e.body as { error?: { details?: { errors?: unknown } }; details?: { errors?: unknown } })?.error?.details?.errors ?? (e.body as { details?: { errors?: unknown } })?.details?.errors;
      const lines = Array.isArray(errors) ? (errors as { scope?: string; message: string; code: string }[]) : [];
      if (lines.length > 0) for (const p of lines) io.err(`keygate: ${p.scope ? `${p.scope}: ` : ""}${p.message} [${p.code}]`);
      else io.err(`keygate: ${e.param ? `${e.param}: ` : ""}${e.message} [${e.code}]`);
      return io.exit(1);
    }
    if (e instanceof TypeError) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      io.err(`keygate: cannot reach ${opts.url ?? process.env.KEYGATE_URL ?? "http://127.0.0.1:8080"}: ${cause?.code ?? cause?.message ?? e.message} [UNREACHABLE]`);
      return io.exit(1);
    }
    throw e;
  }
}

/** --expires: 30d, 90d, 180d or 365d from now, or an ISO-8601 date (the API checks it); "never" on update. */
function expiresAt(value: string, allowNever: boolean): string | null {
  if (allowNever && value === "never") return null;
  const days = /^(\d+)d$/.exec(value);
  if (days) {
    if (!EXPIRY_DAYS.has(Number(days[1]))) throw usage(`--expires takes 30d, 90d, 180d or 365d, or an ISO-8601 date, not "${value}"`);
    return new Date(Date.now() + Number(days[1]) * DAY_MS).toISOString();
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(value)) throw usage(`--expires takes 30d, 90d, 180d or 365d, or an ISO-8601 date${allowNever ? ", or never" : ""}, not "${value}"`);
  return value;
}

function rateLimit(value: string, allowNone: boolean): number | null {
  if (allowNone && value === "none") return null;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw usage(`--rate-limit is requests per second, a whole number from 1${allowNone ? ', or "none"' : ""}, not "${value}"`);
  return Number(value);
}

const scopesOf = (value: string) =>
  value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

// previous is undefined for an option without a default (keys update): its first value starts the list.
const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** --portal, or the caller's only portal; several: they must say which. */
async function portalOf(io: Io, opts: Connection & { portal?: string }, api: KeygateClient): Promise<string> {
  if (opts.portal !== undefined) return opts.portal;
  const portals = await ask(io, opts, async () => unwrap(await api.GET("/v1/portals")));
  if (portals.length === 1) return portals[0]!.id;
  if (portals.length === 0) throw usage("you are a member of no portal: create one first (POST /v1/portals)");
  throw usage(`you are a member of ${portals.length} portals: give --portal (${portals.map((p) => `${p.id} ${p.domain}`).join(", ")})`);
}

function keyLines(k: KeyView): string[] {
  const pending = k.scopesPendingReissue.length > 0 ? ` (waiting for a reissue: ${k.scopesPendingReissue.join(", ")})` : "";
  return [
    `${k.name} (${k.type} key ${k.keyPrefix}…${k.keySuffix})`,
    `  id:          ${k.id}`,
    `  portal:      ${k.portalId ?? "none (management key)"}`,
    `  status:      ${k.status}`,
    `  access mode: ${k.accessMode}`,
    `  scopes:      ${k.scopes.join(", ")}${pending}`,
    `  allowed IPs: ${k.ipWhitelist.length > 0 ? k.ipWhitelist.join(", ") : "any"}`,
    ...(k.redirectUris === undefined ? [] : [`  redirects:   ${k.redirectUris.length > 0 ? k.redirectUris.join(", ") : "none (the app polls)"}`]),
    `  rate limit:  ${k.rateLimit === null ? "none" : `${k.rateLimit}/s`}`,
    `  expires:     ${k.expiresAt ?? "never"}`,
    `  last used:   ${k.lastUsedAt ?? "never"}`,
  ];
}

function adviceLines(a: ScopeAdvice): string[] {
  const lines = [`Scope advice for key ${a.keyId}, over ${a.window.requests} logged request${a.window.requests === 1 ? "" : "s"}${a.window.from === null ? "" : ` from ${a.window.from} to ${a.window.to}`}`];
  if (a.confidence.note !== null) lines.push(`  note: ${a.confidence.note}`);
  lines.push(`  holds:     ${a.scopes.join(", ")}`);
  lines.push(a.suggestedScopes.length === 0 ? "  suggested: nothing (no request needed a scope)" : "  suggested:");
  for (const s of a.suggestedScopes) {
    const why = s.reason === "covers" ? `covers ${s.covers.join(", ")}` : s.reason;
    lines.push(`    ${s.scope}  (${why})${s.held ? "" : "  NOT HELD"}`);
  }
  lines.push(`  unused:    ${a.unusedScopes.length === 0 ? "none" : a.unusedScopes.join(", ")}`);
  for (const n of a.neededNotHeld) lines.push(`  refused:   ${n.method} ${n.route ?? "(no route)"} needs ${n.missing.join(", ")} (${n.count}×, last ${n.lastAt})`);
  if (a.observedRoutes.length > 0) lines.push("  routes:");
  for (const r of a.observedRoutes) lines.push(`    ${String(r.count).padStart(8)}  ${r.method} ${r.route}  [${r.requires === null ? "never allowed for this key type" : r.requires.join(", ") || "no scope"}]`);
  if (a.narrowTo !== null) lines.push(`To narrow the key: keygate keys update ${a.keyId} --scopes ${a.narrowTo.join(",")}`);
  return lines;
}

function connection(command: Command): Command {
  return command
    .option("--url <url>", "keygate's base URL (default: $KEYGATE_URL, else http://127.0.0.1:8080)")
    .option("--key <key>", "a management key (default: $KEYGATE_KEY)")
    .option("--json", "print exactly the API's data, as one line of JSON");
}

export function registerKeys(program: Command, io: Io): void {
  const print = (json: boolean | undefined, data: unknown, text: () => string[]) => {
    if (json) io.out(JSON.stringify(data));
    else for (const line of text()) io.out(line);
  };
  const created = (k: KeyView & { rawKey: string }) => [...keyLines(k), `Key (shown once, store it now): ${k.rawKey}`];

  const keys = program.command("keys").description("manage API and management keys on a running keygate, with a management key");

  connection(
    keys
      .command("create")
      .description("create a key: an API key on a portal (your only one unless --portal), or with --type management a management key of your own")
      .argument("<name>", "the key's name")
      .requiredOption("--scopes <scopes>", "comma-separated scopes (keygate scopes list shows them)")
      .option("--portal <id>", "the portal (default: your only portal)")
      .option("--type <type>", "key type: api, app (VibeCode), management (default: the profile's first, an API key)")
      .option("--expires <when>", "30d, 90d, 180d, 365d, or an ISO-8601 date (default: never)")
      .addOption(new Option("--read-only", "read-only: writes are refused").conflicts("readWrite"))
      .addOption(new Option("--read-write", "read and write (default: the portal's policy)"))
      .addOption(new Option("--ip <address>", "an allowed IP address, exact IPv4 or IPv6 (repeat for more)").argParser(collect).default([] as string[], "any address"))
      .option("--rate-limit <n>", "requests per second for this key (default: the portal's)")
      .addOption(new Option("--redirect-uri <url>", "an authorization key's OAuth redirect URI, exact (repeat for more; docs/oauth.md)").argParser(collect).default([] as string[], "none")),
  ).action(async (name: string, opts: Connection & { scopes: string; portal?: string; type?: string; expires?: string; readOnly?: boolean; readWrite?: boolean; ip: string[]; rateLimit?: string; redirectUri: string[] }) => {
    const body: CreateBody = { name, scopes: scopesOf(opts.scopes) };
    if (opts.redirectUri.length > 0) body.redirectUris = opts.redirectUri;
    if (opts.type !== undefined) body.type = opts.type;
    if (opts.expires !== undefined) body.expiresAt = expiresAt(opts.expires, false);
    if (opts.readOnly) body.accessMode = "READONLY";
    if (opts.readWrite) body.accessMode = "READWRITE";
    if (opts.ip.length > 0) body.ipWhitelist = opts.ip;
    if (opts.rateLimit !== undefined) body.rateLimit = rateLimit(opts.rateLimit, false);
    const api = connect(opts);
    if (opts.type !== MANAGEMENT) body.portalId = await portalOf(io, opts, api);
    const key = await ask(io, opts, async () => unwrap(await api.POST("/v1/keys", { body })));
    print(opts.json, key, () => created(key));
  });

  connection(
    keys
      .command("list")
      .description("list the keys of a portal (admins: everyone's; members: their own), or with --type management your management keys")
      .option("--portal <id>", "the portal (default: your only portal)")
      .option("--type <type>", "only keys of this type; management: your management keys"),
  ).action(async (opts: Connection & { portal?: string; type?: string }) => {
    const api = connect(opts);
    const query: { portalId?: string; type?: string } = opts.type === undefined ? {} : { type: opts.type };
    if (opts.type !== MANAGEMENT) query.portalId = await portalOf(io, opts, api);
    const list = await ask(io, opts, async () => unwrap(await api.GET("/v1/keys", { params: { query } })));
    print(opts.json, list, () =>
      list.length === 0
        ? ["no keys"]
        : list.map((k) => `${k.id}  ${k.keyPrefix}…${k.keySuffix}  ${k.status}  ${k.accessMode}  ${k.name}  [${k.scopes.join(",")}]`),
    );
  });

  connection(keys.command("get").description("one key, without its secret").argument("<id>", "the key's id")).action(async (id: string, opts: Connection) => {
    const api = connect(opts);
    const key = await ask(io, opts, async () => unwrap(await api.GET("/v1/keys/{id}", { params: { path: { id } } })));
    print(opts.json, key, () => keyLines(key));
  });

  connection(
    keys
      .command("update")
      .description("change a key: name, scopes (RogerIQ, Atender: in effect at once; VibeCode's Bitrix24 scopes: after a rotate), mode, expiry, IPs, rate limit")
      .argument("<id>", "the key's id")
      .option("--name <name>", "a new name")
      .option("--scopes <scopes>", "the key's scopes from now on, comma-separated")
      .addOption(new Option("--read-only", "make it read-only").conflicts("readWrite"))
      .addOption(new Option("--read-write", "make it read and write"))
      .option("--expires <when>", "30d, 90d, 180d, 365d from now, an ISO-8601 date, or never")
      .addOption(new Option("--ip <address>", "the allowed IP addresses from now on (repeat for more)").argParser(collect).conflicts("anyIp"))
      .addOption(new Option("--any-ip", "allow every address (clear the list)"))
      .option("--rate-limit <n>", "requests per second, or none")
      .addOption(new Option("--redirect-uri <url>", "an authorization key's OAuth redirect URIs from now on (repeat for more)").argParser(collect).conflicts("redirectUris"))
      .addOption(new Option("--no-redirect-uris", "clear an authorization key's redirect URIs (its app polls)")),
  ).action(async (id: string, opts: Connection & { name?: string; scopes?: string; readOnly?: boolean; readWrite?: boolean; expires?: string; ip?: string[]; anyIp?: boolean; rateLimit?: string; redirectUri?: string[]; redirectUris?: boolean }) => {
    const body: UpdateBody = {};
    if (opts.name !== undefined) body.name = opts.name;
    if (opts.scopes !== undefined) body.scopes = scopesOf(opts.scopes);
    if (opts.readOnly) body.accessMode = "READONLY";
    if (opts.readWrite) body.accessMode = "READWRITE";
    if (opts.expires !== undefined) body.expiresAt = expiresAt(opts.expires, true);
    if (opts.ip !== undefined) body.ipWhitelist = opts.ip;
    if (opts.anyIp) body.ipWhitelist = [];
    if (opts.rateLimit !== undefined) body.rateLimit = rateLimit(opts.rateLimit, true);
    if (opts.redirectUri !== undefined) body.redirectUris = opts.redirectUri;
    if (opts.redirectUris === false) body.redirectUris = [];
    if (Object.keys(body).length === 0) throw usage("give at least one change: --name, --scopes, --read-only, --read-write, --expires, --ip, --any-ip, --rate-limit, --redirect-uri or --no-redirect-uris");
    const api = connect(opts);
    const key = await ask(io, opts, async () => unwrap(await api.PATCH("/v1/keys/{id}", { params: { path: { id } }, body })));
    print(opts.json, key, () => keyLines(key));
  });

  connection(keys.command("rotate").description("reissue a key: a new secret (shown once); the old one works 24 more hours").argument("<id>", "the key's id")).action(
    async (id: string, opts: Connection) => {
      const api = connect(opts);
      const key = await ask(io, opts, async () => unwrap(await api.POST("/v1/keys/{id}/rotate", { params: { path: { id } } })));
      print(opts.json, key, () => [...created(key), `The old key ${key.previousKey.id} works until ${key.previousKey.validUntil}.`]);
    },
  );

  connection(
    keys
      .command("advise")
      .description("the narrowest scopes that cover what the key was used for, its unused scopes and the requests refused for a scope (docs/scope-advice.md)")
      .argument("<id>", "the key's id"),
  ).action(async (id: string, opts: Connection) => {
    const api = connect(opts);
    const advice = await ask(io, opts, async () => unwrap(await api.GET("/v1/keys/{id}/scope-advice", { params: { path: { id } } })));
    print(opts.json, advice, () => adviceLines(advice));
  });

  connection(keys.command("revoke").description("revoke a key: its next request gets KEY_INACTIVE").argument("<id>", "the key's id")).action(async (id: string, opts: Connection) => {
    const api = connect(opts);
    const key = await ask(io, opts, async () => unwrap(await api.PATCH("/v1/keys/{id}", { params: { path: { id } }, body: { status: "REVOKED" } })));
    print(opts.json, key, () => [`Revoked ${key.name} (${key.keyPrefix}…${key.keySuffix}).`]);
  });

  connection(keys.command("delete").description("delete a key for good").argument("<id>", "the key's id")).action(async (id: string, opts: Connection) => {
    const api = connect(opts);
    const result = await ask(io, opts, async () => unwrap(await api.DELETE("/v1/keys/{id}", { params: { path: { id } } })));
    print(opts.json, result, () => [`Deleted ${id}.`]);
  });

  const portals = program.command("portals").description("the portals of a running keygate you are a member of, with a management key");
  connection(portals.command("list").description("your portals, with your role")).action(async (opts: Connection) => {
    const api = connect(opts);
    const list = await ask(io, opts, async () => unwrap(await api.GET("/v1/portals")));
    print(opts.json, list, () => (list.length === 0 ? ["no portals"] : list.map((p) => `${p.id}  ${p.domain}  ${p.role ?? ""}  ${p.name}${p.linked ? "" : "  (not linked)"}`)));
  });
}
