import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { keyFormat } from "../core/keys/format.ts";
import type { Profile } from "../core/profile/profile.ts";
import type { Keygate } from "../manage/context.ts";
import { createPortal } from "../manage/portals.ts";
import { createUser, issueManagementKey } from "../manage/users.ts";
import { createPasswordLink, linkUrl, setPassword } from "../accounts/links.ts";
import { checkPassword } from "../accounts/passwords.ts";
import { outboundPolicy } from "../upstream/outbound.ts";
import { seedDemoData, servedByBitrix24 } from "../upstream/sandbox/index.ts";
import { DEFAULT_PROFILE } from "../profiles/index.ts";
import { openStore } from "../store/index.ts";
import type { Store } from "../store/store.ts";
import { UsageError, openProfile } from "./io.ts";

/**
 * The data directory (0700): `secret` (the server secret, never in the database; the key that
 * seals upstream credentials derives from it), `keygate.json` (the profile it was set up with)
 * and, with the embedded store, `keygate.db` with its -wal and -shm files; every file 0600.
 */
export interface InstanceOptions {
  dataDir?: string;
  database?: string;
  profile?: string;
  /** PostgreSQL: how long a query may take, in ms (default 5 s). */
  storeTimeoutMs?: number;
}

export const DEFAULT_OWNER_EMAIL = "owner@keygate.local";
/** The portal `keygate init` links to the built-in sandbox. */
export const SANDBOX_DOMAIN = "sandbox.keygate.local";

export function dataDirOf(options: InstanceOptions): string {
  return resolve(options.dataDir ?? process.env.KEYGATE_DATA_DIR ?? "data");
}

function databaseOf(options: InstanceOptions): string | undefined {
  return options.database ?? process.env.KEYGATE_DATABASE_URL;
}

interface InstanceConfig {
  profile: string;
  createdAt: string;
  /** Set up, but the owner's once-shown credentials are not made yet (a first start that could not listen): the owner's id. */
  pendingOwnerCredentials?: string;
}

function readConfig(dataDir: string): InstanceConfig | undefined {
  const file = join(dataDir, "keygate.json");
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as InstanceConfig) : undefined;
}

/** The server secret: KEYGATE_SECRET (to share it between nodes) or the data directory's file. */
function readSecret(dataDir: string): string | undefined {
  if (process.env.KEYGATE_SECRET) return process.env.KEYGATE_SECRET;
  const file = join(dataDir, "secret");
  return existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
}

/** A built-in profile's name, or a profile file's absolute path: what the data directory remembers. */
function profileSource(nameOrPath: string): string {
  return nameOrPath.includes("/") || nameOrPath.endsWith(".json") ? resolve(nameOrPath) : nameOrPath;
}

function profileFor(options: InstanceOptions, config: InstanceConfig | undefined): Profile {
  const source = profileSource(options.profile ?? config?.profile ?? DEFAULT_PROFILE);
  if (config && options.profile !== undefined && source !== profileSource(config.profile)) {
    throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `this data directory was set up with profile ${config.profile}, not ${options.profile}` }]);
  }
  return openProfile(source);
}

export interface Instance {
  kg: Keygate;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * Creates the data directory 0700, or tightens it and keygate's files in it to 0700 / 0600 (the
 * store does keygate.db and its -wal and -shm): earlier keygates left them readable by others.
 * Only keygate's own files: the directory may be one the operator keeps other things in.
 */
function secureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  for (const name of ["secret", "keygate.json"]) if (existsSync(join(dataDir, name))) chmodSync(join(dataDir, name), 0o600);
}

async function open(options: InstanceOptions, profile: Profile, secret: string, dataDir: string): Promise<Instance> {
  secureDataDir(dataDir);
  let store: Store;
  try {
    store = await openStore({ dataDir, databaseUrl: databaseOf(options), serverSecret: secret, timeoutMs: options.storeTimeoutMs });
  } catch (e) {
    throw new UsageError("STORE_UNAVAILABLE", [{ scope: "", code: "STORE_UNAVAILABLE", message: `cannot open the store: ${(e as Error).message}` }]);
  }
  const kg: Keygate = { profile, store, serverSecret: secret, format: keyFormat(profile.spec.keyTypes), outbound: outboundPolicy(), now: Date.now, keyChanged: () => {}, portalChanged: () => {} };
  return { kg, dataDir, close: () => store.close() };
}

/** Opens a set-up instance; refuses one that `keygate init` has not set up. */
export async function openInstance(options: InstanceOptions): Promise<Instance> {
  const dataDir = dataDirOf(options);
  const config = readConfig(dataDir);
  const secret = readSecret(dataDir);
  if (!config || secret === undefined) {
    throw new UsageError("NOT_INITIALISED", [{ scope: "", code: "NOT_INITIALISED", message: `${dataDir} is not set up: run keygate init --data-dir ${dataDir}` }]);
  }
  return open(options, profileFor(options, config), secret, dataDir);
}

export function isInitialised(options: InstanceOptions): boolean {
  return readConfig(dataDirOf(options)) !== undefined;
}

/**
 * A password given on the command line's terms: the file's content (one trailing newline
 * dropped: what `echo … > file` adds), else the environment variable; undefined when neither is
 * given. Checked here, before anything is changed: a refused password is a usage error.
 */
export function passwordFrom(file: string | undefined, flag: string, envVar?: string): string | undefined {
  let password: string | undefined;
  let source = flag;
  if (file !== undefined) {
    try {
      password = readFileSync(file, "utf8").replace(/\r?\n$/, "");
    } catch (e) {
      throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `${flag}: cannot read ${file}: ${(e as Error).message}` }]);
    }
  } else if (envVar !== undefined && process.env[envVar]) {
    password = process.env[envVar];
    source = envVar;
  }
  if (password === undefined) return undefined;
  try {
    checkPassword(password);
  } catch (e) {
    throw new UsageError("VALIDATION_ERROR", [{ scope: "", code: "VALIDATION_ERROR", message: `${source}: ${(e as Error).message}` }]);
  }
  return password;
}

/** Where one-time links point when no server says: $KEYGATE_PUBLIC_URL, else the default `keygate serve` address. */
export function defaultPublicUrl(): string {
  return process.env.KEYGATE_PUBLIC_URL ?? "http://127.0.0.1:8080";
}

/**
 * Sets up a data directory: the server secret, the owner account (with its password when one is
 * given), and (VibeCode) a sandbox portal with demo data. Refuses a set-up
 * directory. The owner's credentials that are shown once — a management key, a one-time sign-in
 * link — are not made here but by issueOwnerCredentials, when they can be shown: until then the
 * data directory records them as pending, so a start that set up the directory but could not
 * listen leaves them to the next start (docs/accounts.md, "First run").
 */
export async function initInstance(options: InstanceOptions & { ownerEmail?: string; ownerPassword?: string }): Promise<{ instance: Instance; ownerId: string }> {
  const dataDir = dataDirOf(options);
  if (readConfig(dataDir)) {
    throw new UsageError("ALREADY_INITIALISED", [{ scope: "", code: "ALREADY_INITIALISED", message: `${dataDir} is set up already; keygate init runs once per data directory` }]);
  }
  const profile = profileFor(options, undefined);
  secureDataDir(dataDir);
  // The secret is on disk before any digest is computed with it.
  let secret = readSecret(dataDir);
  if (secret === undefined) {
    secret = randomBytes(32).toString("base64url");
    writeFileSync(join(dataDir, "secret"), `${secret}\n`, { mode: 0o600 });
  }
  const instance = await open(options, profile, secret, dataDir);
  try {
    if ((await instance.kg.store.countUsers()) > 0) {
      throw new UsageError("ALREADY_INITIALISED", [{ scope: "", code: "ALREADY_INITIALISED", message: "the database has users already: it belongs to another keygate set-up" }]);
    }
    const owner = await createUser(instance.kg, null, { email: options.ownerEmail ?? DEFAULT_OWNER_EMAIL, name: "Owner", role: "owner" });
    if (options.ownerPassword !== undefined) await setPassword(instance.kg, null, owner, options.ownerPassword);
    // A portal on the built-in sandbox, with demo records, to try keys on before linking Bitrix24.
    if (servedByBitrix24(profile)) {
      const sandbox = await createPortal(instance.kg, { user: owner, keyId: null, ip: null }, { domain: SANDBOX_DOMAIN, name: "Sandbox (demo data)", upstream: { kind: "sandbox" } });
      await seedDemoData(instance.kg.store, sandbox.id);
    }
    writeConfig(dataDir, { profile: profileSource(options.profile ?? DEFAULT_PROFILE), createdAt: new Date().toISOString(), pendingOwnerCredentials: owner.id });
    return { instance, ownerId: owner.id };
  } catch (e) {
    await instance.close();
    throw e;
  }
}

function writeConfig(dataDir: string, config: InstanceConfig): void {
  writeFileSync(join(dataDir, "keygate.json"), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
}

/** The owner whose once-shown credentials are still to be made and shown, if any. */
export function pendingOwner(instance: Instance): string | undefined {
  return readConfig(instance.dataDir)?.pendingOwnerCredentials;
}

/**
 * Makes the owner's once-shown credentials, for the caller to show now: a management key with
 * every management scope and, when the owner has no password yet, a one-time sign-in link (24 hours) at `baseUrl`.
 * Then the data directory no longer records them as pending.
 */
export async function issueOwnerCredentials(instance: Instance, ownerId: string, baseUrl: string): Promise<{ ownerId: string; managementKey: string; signInUrl: string | null }> {
  const { kg } = instance;
  const owner = await kg.store.getUser(ownerId);
  if (!owner) throw new UsageError("NOT_INITIALISED", [{ scope: "", code: "NOT_INITIALISED", message: `the owner ${ownerId} is not in the database` }]);
  const managementKey = (await issueManagementKey(kg, owner, kg.profile.management.scopes, "Owner's management key")).rawKey;
  const signInUrl = (await kg.store.getPasswordHash(owner.id)) === null ? linkUrl(baseUrl, (await createPasswordLink(kg, null, owner)).token) : null;
  const config = readConfig(instance.dataDir);
  if (config) {
    delete config.pendingOwnerCredentials;
    writeConfig(instance.dataDir, config);
  }
  return { ownerId, managementKey, signInUrl };
}
