/**
 * `keygate serve`'s configuration, in one place: every flag with its environment variable (a
 * flag given wins over its variable), read and checked here, so that a container or a process
 * manager configures keygate by environment alone and a bad value stops it at start with a usage
 * error naming the flag and the variable. `keygate serve --help` lists each variable beside its
 * flag (commander's Option.env).
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { Option } from "commander";
import { LOG_LEVELS, type LogLevel } from "../gateway/logging.ts";
import { DEPLOYMENT_ID } from "../limits/deployment.ts";
import { outboundPolicy } from "../upstream/outbound.ts";
import type { PlatformOptions } from "../platform/index.ts";
import { UsageError } from "./io.ts";

/** The flags as commander reads them (strings, before checking). */
export interface ServeFlags {
  port: string;
  host: string;
  dataDir?: string;
  database?: string;
  profile?: string;
  trustProxy?: string;
  publicUrl?: string;
  redis?: string;
  deploymentId?: string;
  allowUpstream: string[];
  tlsCert?: string;
  tlsKey?: string;
  sandboxPort?: string;
  ownerPasswordFile?: string;
  identityKeyGeneration?: string;
  logLevel: string;
  keyCacheSize?: string;
  limiterSize?: string;
  ipv6Prefix?: string;
  drainSeconds: string;
  aiBaseUrl?: string;
  aiApiKey?: string;
  aiDefaultModel?: string;
  aiTimeoutSeconds?: string;
  searchUrl?: string;
  smtpUrl?: string;
  smtpFrom?: string;
  storageMaxObjectBytes?: string;
  storeTimeoutSeconds?: string;
  appsPort?: string;
  appsDomain?: string;
  bitrix24TokenUrl?: string;
}

/** The configuration, checked. */
export interface ServeConfig {
  port: number;
  host: string;
  dataDir?: string;
  database?: string;
  profile?: string;
  trustProxy?: string[];
  publicUrl?: string;
  redis?: string;
  deploymentId?: string;
  allowUpstream: string[];
  tls?: { cert: Buffer; key: Buffer };
  sandboxPort?: number;
  /** First start: the file holding the owner's password (else KEYGATE_OWNER_PASSWORD, else a one-time link). */
  ownerPasswordFile?: string;
  /** The key generation identity assertions are signed with (docs/upstreams.md). */
  identityKeyGeneration?: number;
  logLevel: LogLevel;
  keyCacheSize?: number;
  limiterSize?: number;
  ipv6Prefix?: number;
  /** How long in-flight requests may finish after SIGTERM/SIGINT before their connections are cut. */
  drainSeconds: number;
  /** The providers of the platform sections (docs/sections.md). */
  platform: PlatformOptions;
  /** Bitrix24's OAuth token server (docs/oauth.md, "Real Bitrix24 portals"); default https://oauth.bitrix.info/oauth/token/. */
  bitrix24TokenUrl?: string;
  /** SMTP for the emails keygate sends (docs/feedback.md); none: in-app notifications only. */
  mail?: { url: string; from: string };
  /** The largest object PUT /v1/storage/objects/<key> stores (docs/storage.md). */
  storageMaxObjectBytes?: number;
  /** PostgreSQL: how long a query may take before the request answers 503 STORE_UNAVAILABLE (docs/operations.md). */
  storeTimeoutMs?: number;
  /** The app runtime's port (docs/apps.md); none: the runtime is off. */
  appsPort?: number;
  /** Apps are served at `<serverId>.<appsDomain>`; none: `<serverId>.localhost:<appsPort>`. */
  appsDomain?: string;
}

const option = (flags: string, description: string, env: string, defaultValue?: string) => {
  const o = new Option(flags, description).env(env);
  return defaultValue === undefined ? o : o.default(defaultValue);
};

/** Every option of `serve`, each with its variable. */
export function serveOptions(): Option[] {
  return [
    option("--port <port>", "TCP port (0 picks a free one)", "KEYGATE_PORT", "8080"),
    option("--host <host>", "address to listen on", "KEYGATE_HOST", "127.0.0.1"),
    option("--data-dir <dir>", "data directory (default: ./data)", "KEYGATE_DATA_DIR"),
    option("--database <url>", "PostgreSQL URL instead of the embedded SQLite", "KEYGATE_DATABASE_URL"),
    option("--profile <profile>", "built-in profile name or path to a profile JSON file (default: vibecode, or the data directory's)", "KEYGATE_PROFILE"),
    option("--trust-proxy <addresses>", "comma-separated proxy addresses whose X-Forwarded-For is believed", "KEYGATE_TRUST_PROXY"),
    option("--public-url <url>", "base URL clients use, for self-descriptions (default: from each request)", "KEYGATE_PUBLIC_URL"),
    option("--redis <url>", "Redis shared by every keygate node: rate-limit counters and cache invalidation (default: none, this process only)", "KEYGATE_REDIS_URL"),
    option("--deployment-id <id>", "this deployment's name in Redis, so deployments sharing one Redis share nothing (default: derived from the server secret)", "KEYGATE_DEPLOYMENT_ID"),
    new Option(
      "--allow-upstream <host|CIDR>",
      "a host name, IP address or CIDR range upstream URLs may point to although it is not public, e.g. 10.0.0.0/8 (repeatable; the variable: comma-separated)",
    )
      .env("KEYGATE_ALLOW_UPSTREAM")
      .argParser((value: string, previous: string[]) => [...previous, ...value.split(",").map((s) => s.trim()).filter(Boolean)])
      .default([] as string[]),
    option("--tls-cert <file>", "serve HTTPS with this certificate chain (PEM), on every port; needs --tls-key", "KEYGATE_TLS_CERT"),
    option("--tls-key <file>", "the private key (PEM) of --tls-cert", "KEYGATE_TLS_KEY"),
    option("--sandbox-port <port>", "also serve the sandbox portal at a host root on this port, /rest/<user id>/<token>/<method> as Bitrix24 does (0 picks a free one; default: off)", "KEYGATE_SANDBOX_PORT"),
    option("--owner-password-file <file>", "first start: the owner's password, read from this file (else $KEYGATE_OWNER_PASSWORD; neither: a one-time sign-in link is printed)", "KEYGATE_OWNER_PASSWORD_FILE"),
    option("--identity-key-generation <n>", "the key generation X-Keygate-Identity assertions are signed with; raise it on every node to rotate the keys (default: 1)", "KEYGATE_IDENTITY_KEY_GENERATION"),
    option("--log-level <level>", `log level: ${LOG_LEVELS.join(", ")}`, "KEYGATE_LOG_LEVEL", "info"),
    option("--key-cache-size <keys>", "keys the key cache holds at most, the least recently used leaving first (default: 100000)", "KEYGATE_KEY_CACHE_SIZE"),
    option("--limiter-size <logs>", "rate-limit logs kept in memory at most, one per limit and client or key (default: 250000)", "KEYGATE_LIMITER_SIZE"),
    option("--ipv6-prefix <bits>", "per-address limits count an IPv6 client by its network of this many bits (128: each address; default: 64)", "KEYGATE_IPV6_PREFIX"),
    option("--drain-seconds <seconds>", "on SIGTERM/SIGINT, how long in-flight requests may finish before connections are cut (a second signal exits at once)", "KEYGATE_DRAIN_SECONDS", "25"),
    option("--ai-base-url <url>", "vibe:ai: the OpenAI-compatible API requests are forwarded to, e.g. https://api.openai.com/v1 (default: none, the section answers 503)", "KEYGATE_AI_BASE_URL"),
    option("--ai-api-key <key>", "vibe:ai: the provider's API key, sent as Authorization: Bearer (prefer the variable: flags show in process lists)", "KEYGATE_AI_API_KEY"),
    option("--ai-default-model <model>", "vibe:ai: the model of a request that names none or \"auto\"", "KEYGATE_AI_DEFAULT_MODEL"),
    option("--ai-timeout-seconds <seconds>", "vibe:ai: how long the provider may take to start its answer, and between two pieces of it (default: 300)", "KEYGATE_AI_TIMEOUT_SECONDS"),
    option("--search-url <url>", "vibe:search: the SearXNG instance searches go to, its JSON API on (default: none, the section answers 503)", "KEYGATE_SEARCH_URL"),
    option("--smtp-url <url>", "SMTP server for the emails keygate sends (feedback tickets' authors): smtp://host:587 or smtps://user:password@host:465; needs --smtp-from (default: none, in-app notifications only)", "KEYGATE_SMTP_URL"),
    option("--smtp-from <address>", "the From address of those emails, e.g. \"keygate <keygate@example.com>\"", "KEYGATE_SMTP_FROM"),
    option("--storage-max-object-bytes <bytes>", "the largest object PUT /v1/storage/objects/<key> stores (default: 104857600, 100 MiB)", "KEYGATE_STORAGE_MAX_OBJECT_BYTES"),
    option("--apps-port <port>", "serve users' apps (the app runtime) on this port, each on a host of its own (0 picks a free one; default: off, servers' appUrl is null)", "KEYGATE_APPS_PORT"),
    option("--apps-domain <domain>", "serve each app at <server id>.<domain> (a wildcard DNS name for the apps port; https when --public-url is; default: <server id>.localhost:<apps port>, this machine only)", "KEYGATE_APPS_DOMAIN"),
    option("--bitrix24-token-url <url>", "Bitrix24's OAuth token server, where users' codes are exchanged and tokens refreshed (default: https://oauth.bitrix.info/oauth/token/; a path such as /sandbox/oauth/token/ is on this keygate)", "KEYGATE_BITRIX24_TOKEN_URL"),
    option("--store-timeout-seconds <seconds>", "PostgreSQL: how long a query, or getting a connection for it, may take before the request answers 503 STORE_UNAVAILABLE (default: 5)", "KEYGATE_STORE_TIMEOUT_SECONDS"),
  ];
}

/** Two labels or more of letters, digits and inner hyphens. */
const APPS_DOMAIN = /^(?=.{1,200}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

const usage = (message: string) => new UsageError("USAGE", [{ scope: "", code: "USAGE", message }]);

/** A whole number in [min, max], or a usage error naming the flag and its variable. */
function wholeNumber(flag: string, env: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw usage(`${flag} must be a whole number from ${min} to ${max}, not "${value}" (the flag, or ${env})`);
  return n;
}

/** Reads and checks the flags (and variables): a usage error for the first bad one. */
export function serveConfig(flags: ServeFlags): ServeConfig {
  const port = wholeNumber("--port", "KEYGATE_PORT", flags.port, 0, 65535);
  const sandboxPort = flags.sandboxPort === undefined ? undefined : wholeNumber("--sandbox-port", "KEYGATE_SANDBOX_PORT", flags.sandboxPort, 0, 65535);
  if (flags.deploymentId !== undefined && !DEPLOYMENT_ID.test(flags.deploymentId)) {
    throw usage(`--deployment-id must be 1 to 64 letters, digits, "-" or "_", not "${flags.deploymentId}" (the flag, or KEYGATE_DEPLOYMENT_ID)`);
  }
  try {
    outboundPolicy(flags.allowUpstream);
  } catch (e) {
    throw usage(`--allow-upstream: ${(e as Error).message} (the flag, or KEYGATE_ALLOW_UPSTREAM)`);
  }
  if (!(LOG_LEVELS as readonly string[]).includes(flags.logLevel)) throw usage(`--log-level must be one of ${LOG_LEVELS.join(", ")}, not "${flags.logLevel}" (the flag, or KEYGATE_LOG_LEVEL)`);
  if (flags.publicUrl !== undefined && !/^https?:\/\/[^/]/.test(flags.publicUrl)) throw usage(`--public-url must be an http:// or https:// URL, not "${flags.publicUrl}" (the flag, or KEYGATE_PUBLIC_URL)`);
  const appsPort = flags.appsPort === undefined ? undefined : wholeNumber("--apps-port", "KEYGATE_APPS_PORT", flags.appsPort, 0, 65535);
  const appsDomain = flags.appsDomain === undefined || flags.appsDomain === "" ? undefined : flags.appsDomain.toLowerCase();
  if (appsDomain !== undefined && !APPS_DOMAIN.test(appsDomain)) throw usage(`--apps-domain must be a DNS name such as apps.example.com, not "${flags.appsDomain}" (the flag, or KEYGATE_APPS_DOMAIN)`);
  if (appsDomain !== undefined && appsPort === undefined) throw usage("--apps-domain names where the app runtime is reached: give --apps-port too (the flags, or KEYGATE_APPS_PORT)");
  const trustProxy = flags.trustProxy?.split(",").map((s) => s.trim()).filter(Boolean);
  return {
    port,
    host: flags.host,
    dataDir: flags.dataDir,
    database: flags.database,
    profile: flags.profile,
    trustProxy,
    publicUrl: flags.publicUrl,
    redis: flags.redis === "" ? undefined : flags.redis,
    deploymentId: flags.deploymentId,
    allowUpstream: flags.allowUpstream,
    tls: tlsOptions(flags.tlsCert, flags.tlsKey),
    sandboxPort,
    ownerPasswordFile: flags.ownerPasswordFile,
    identityKeyGeneration: flags.identityKeyGeneration === undefined ? undefined : wholeNumber("--identity-key-generation", "KEYGATE_IDENTITY_KEY_GENERATION", flags.identityKeyGeneration, 1, 999_999_999),
    logLevel: flags.logLevel as LogLevel,
    keyCacheSize: flags.keyCacheSize === undefined ? undefined : wholeNumber("--key-cache-size", "KEYGATE_KEY_CACHE_SIZE", flags.keyCacheSize, 1, 100_000_000),
    limiterSize: flags.limiterSize === undefined ? undefined : wholeNumber("--limiter-size", "KEYGATE_LIMITER_SIZE", flags.limiterSize, 1, 100_000_000),
    ipv6Prefix: flags.ipv6Prefix === undefined ? undefined : wholeNumber("--ipv6-prefix", "KEYGATE_IPV6_PREFIX", flags.ipv6Prefix, 1, 128),
    drainSeconds: wholeNumber("--drain-seconds", "KEYGATE_DRAIN_SECONDS", flags.drainSeconds, 0, 3600),
    platform: platformOptions(flags),
    mail: mailOptions(flags.smtpUrl, flags.smtpFrom),
    storageMaxObjectBytes: flags.storageMaxObjectBytes === undefined ? undefined : wholeNumber("--storage-max-object-bytes", "KEYGATE_STORAGE_MAX_OBJECT_BYTES", flags.storageMaxObjectBytes, 0, Number.MAX_SAFE_INTEGER),
    appsPort,
    appsDomain,
    bitrix24TokenUrl: bitrix24TokenUrl(flags.bitrix24TokenUrl),
    storeTimeoutMs: flags.storeTimeoutSeconds === undefined ? undefined : wholeNumber("--store-timeout-seconds", "KEYGATE_STORE_TIMEOUT_SECONDS", flags.storeTimeoutSeconds, 1, 3600) * 1000,
  };
}

/** The platform sections' providers: each section the flags connect, checked (docs/sections.md). */
function platformOptions(flags: ServeFlags): PlatformOptions {
  const url = (flag: string, env: string, value: string) => {
    if (!/^https?:\/\/[^/]/.test(value) || !URL.canParse(value)) throw usage(`${flag} must be an http:// or https:// URL, not "${value}" (the flag, or ${env})`);
    return value;
  };
  const platform: PlatformOptions = {};
  if (flags.aiBaseUrl !== undefined && flags.aiBaseUrl !== "") {
    platform.ai = {
      baseUrl: url("--ai-base-url", "KEYGATE_AI_BASE_URL", flags.aiBaseUrl),
      apiKey: flags.aiApiKey || undefined,
      defaultModel: flags.aiDefaultModel || undefined,
      timeoutMs: flags.aiTimeoutSeconds === undefined ? undefined : wholeNumber("--ai-timeout-seconds", "KEYGATE_AI_TIMEOUT_SECONDS", flags.aiTimeoutSeconds, 1, 3600) * 1000,
    };
  } else if (flags.aiApiKey || flags.aiDefaultModel || flags.aiTimeoutSeconds) {
    throw usage("--ai-api-key, --ai-default-model and --ai-timeout-seconds configure the provider of --ai-base-url: give it too (the flag, or KEYGATE_AI_BASE_URL)");
  }
  if (flags.searchUrl !== undefined && flags.searchUrl !== "") platform.search = { url: url("--search-url", "KEYGATE_SEARCH_URL", flags.searchUrl) };
  return platform;
}

/** An http(s) URL, or a path on this keygate (its sandbox's token server). */
function bitrix24TokenUrl(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if ((/^https?:\/\/[^/]/.test(value) && URL.canParse(value)) || /^\/[^/]/.test(value)) return value;
  throw usage(`--bitrix24-token-url must be an http:// or https:// URL, or a path on this keygate, not "${value}" (the flag, or KEYGATE_BITRIX24_TOKEN_URL)`);
}

/** SMTP is configured with both flags or neither: a URL without a sender (or the reverse) stops keygate at start. */
function mailOptions(url: string | undefined, from: string | undefined): { url: string; from: string } | undefined {
  if (!url && !from) return undefined;
  if (!url || !from) throw usage("--smtp-url and --smtp-from go together: give both (the flags, or KEYGATE_SMTP_URL and KEYGATE_SMTP_FROM)");
  if (!/^smtps?:\/\/[^/]/.test(url)) throw usage(`--smtp-url must be an smtp:// or smtps:// URL, not "${url.replace(/\/\/[^@/]*@/, "//***@")}" (the flag, or KEYGATE_SMTP_URL)`);
  if (!/^[^\s@<>]+@[^\s@<>]+$|<[^\s@<>]+@[^\s@<>]+>$/.test(from)) throw usage(`--smtp-from must be an email address, not "${from}" (the flag, or KEYGATE_SMTP_FROM)`);
  return { url, from };
}

/** The certificate and key, read and checked now: a wrong file is a usage error at start, not a failed handshake later. */
function tlsOptions(certFile: string | undefined, keyFile: string | undefined): { cert: Buffer; key: Buffer } | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) throw usage("--tls-cert and --tls-key go together: give both");
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw usage(`${flag}: cannot read ${file}: ${(e as Error).message}`);
    }
  };
  const tls = { cert: read("--tls-cert", certFile), key: read("--tls-key", keyFile) };
  try {
    createSecureContext(tls);
  } catch (e) {
    throw usage(`--tls-cert/--tls-key: not a PEM certificate and its private key: ${(e as Error).message}`);
  }
  return tls;
}
