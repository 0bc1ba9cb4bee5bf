/**
 * External services that some tests need (PostgreSQL), and what a suite does when one is not
 * there: under CI (CI=true) it fails, saying what is missing; elsewhere it is skipped, with the
 * reason both in the test report and on stdout.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { test } from "node:test";
import pg from "pg";

/** The PostgreSQL database tests may use: KEYGATE_TEST_DATABASE_URL, else the local default. */
export function postgresUrl(): string {
  return process.env["KEYGATE_TEST_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test";
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/** Resolves when PostgreSQL at url answers SELECT 1 within timeoutMs; rejects otherwise. */
export async function probePostgres(url: string, timeoutMs = 2000): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
  } finally {
    await client.end().catch(() => {});
  }
}

function isCI(): boolean {
  const ci = process.env["CI"];
  return ci === "true" || ci === "1";
}

/**
 * Whether the service answers. When it does not, registers what stands in for the suite: under
 * CI a failing test named after the suite, elsewhere a skipped suite (reason printed too).
 *
 *     if (await requireService("store: postgres", "PostgreSQL at " + redactUrl(url), () => probePostgres(url))) {
 *       describe("store: postgres", () => { … });
 *     }
 */
export async function requireService(suite: string, service: string, probe: () => Promise<void>): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (error) {
    const why = error instanceof Error ? error.message || error.name : String(error);
    const reason = `${service} is not reachable (${why})`;
    if (isCI()) {
      test(suite, () => {
        throw new Error(`${reason}; CI=true, so this fails instead of skipping. Start the service or set its URL.`);
      });
    } else {
      console.log(`# skipping ${suite}: ${reason}`);
      test(suite, { skip: reason }, () => {});
    }
    return false;
  }
}

/** The Redis tests may use: KEYGATE_TEST_REDIS_URL, else the local default. */
export function redisUrl(): string {
  return process.env["KEYGATE_TEST_REDIS_URL"] ?? "redis://127.0.0.1:6379";
}

/** Resolves when Redis at url answers PING within timeoutMs; rejects otherwise. */
export async function probeRedis(url: string, timeoutMs = 2000): Promise<void> {
  const { Redis } = await import("ioredis");
  const client = new Redis(url, { lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.ping();
  } finally {
    client.disconnect();
  }
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      s.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** A throwaway redis-server on a spare port (to stop and restart in outage tests), ready when it says so. */
export async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: ["ignore", "pipe", "ignore"] });
  child.stdout!.setEncoding("utf8");
  let seen = "";
  for await (const chunk of child.stdout!) {
    seen += chunk as string;
    if (seen.includes("Ready to accept connections")) return child;
  }
  throw new Error(`redis-server on ${port} did not start:\n${seen}`);
}
