/**
 * issue 14 §2: `keygate serve` as a container or a process manager runs it — configured by
 * environment alone, ready only when its store answers, and stopped gracefully: in-flight
 * requests drain until a deadline, a second signal exits at once.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { get as httpGet } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { keygate, keygateBin, repoRoot } from "./run.ts";

/** `keygate serve` with no flag at all, configured by these variables; resolves once it listens. */
async function serveByEnv(env: Record<string, string>) {
  const child = spawn(process.execPath, [keygateBin, "serve"], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let printed = "";
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (printed += chunk));
  }
  const exited = once(child, "exit");
  for (;;) {
    const m = /keygate listening on (https?:\/\/\S+) \(profile (\w+), data (.+)\)/.exec(printed);
    if (m) return { child, url: m[1]!, profile: m[2]!, dataDir: m[3]!, logs: () => printed, exited };
    if (child.exitCode !== null) throw new Error(`keygate serve exited without listening:\n${printed}`);
    await Promise.race([once(child.stdout, "data"), exited]);
  }
}

const VARIABLES = [
  "KEYGATE_PORT",
  "KEYGATE_HOST",
  "KEYGATE_DATA_DIR",
  "KEYGATE_DATABASE_URL",
  "KEYGATE_PROFILE",
  "KEYGATE_TRUST_PROXY",
  "KEYGATE_PUBLIC_URL",
  "KEYGATE_REDIS_URL",
  "KEYGATE_DEPLOYMENT_ID",
  "KEYGATE_ALLOW_UPSTREAM",
  "KEYGATE_TLS_CERT",
  "KEYGATE_TLS_KEY",
  "KEYGATE_SANDBOX_PORT",
  "KEYGATE_LOG_LEVEL",
  "KEYGATE_KEY_CACHE_SIZE",
  "KEYGATE_LIMITER_SIZE",
  "KEYGATE_IPV6_PREFIX",
  "KEYGATE_DRAIN_SECONDS",
  "KEYGATE_OWNER_PASSWORD_FILE",
  "KEYGATE_IDENTITY_KEY_GENERATION",
  "KEYGATE_AI_BASE_URL",
  "KEYGATE_AI_API_KEY",
  "KEYGATE_AI_DEFAULT_MODEL",
  "KEYGATE_AI_TIMEOUT_SECONDS",
  "KEYGATE_SEARCH_URL",
  "KEYGATE_SMTP_URL",
  "KEYGATE_SMTP_FROM",
  "KEYGATE_STORAGE_MAX_OBJECT_BYTES",
  "KEYGATE_STORE_TIMEOUT_SECONDS",
  "KEYGATE_APPS_PORT",
  "KEYGATE_APPS_DOMAIN",
  "KEYGATE_BITRIX24_TOKEN_URL",
];

describe("issue 14: keygate serve by environment, readiness, graceful shutdown", () => {
  it("issue 14: `keygate serve --help` lists the environment variable of every flag", () => {
    const help = keygate("serve", "--help").stdout.replace(/\s+/g, " ");
    const flags = [...help.matchAll(/ (--[a-z0-9-]+) </g)].map((m) => m[1]!);
    for (const v of VARIABLES) assert.ok(help.includes(`env: ${v})`), `${v} is not listed`);
    assert.equal(flags.length, VARIABLES.length, "one variable per flag");
  });

  it("issue 14: with only KEYGATE_* variables it starts where they say, at their log level, and answers /readyz once its store answers", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "keygate-env-"));
    const s = await serveByEnv({ KEYGATE_PORT: "0", KEYGATE_HOST: "127.0.0.1", KEYGATE_DATA_DIR: dataDir, KEYGATE_PROFILE: "vibecode", KEYGATE_LOG_LEVEL: "warn", KEYGATE_PUBLIC_URL: "https://keygate.example.com", KEYGATE_APPS_PORT: "0", KEYGATE_APPS_DOMAIN: "apps.example.com" });
    try {
      assert.equal(s.dataDir, dataDir);
      const ready = await fetch(`${s.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: "ready", store: "ok", redis: "not configured" });
      const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(s.logs())![1]!;
      const me = (await (await fetch(`${s.url}/v1/me`, { headers: { "x-api-key": key } })).json()) as { data: { docs: string } };
      assert.match(me.data.docs, /^https:\/\/keygate\.example\.com\//, "KEYGATE_PUBLIC_URL");
      assert.doesNotMatch(s.logs(), /"level":30/, "KEYGATE_LOG_LEVEL=warn: no info lines");
      // KEYGATE_APPS_PORT, KEYGATE_APPS_DOMAIN (issue 16 §2): the app runtime on a port of its own, apps on https hosts of the domain.
      const runtime = /the app runtime listening on (http:\/\/\S+): each app at (\S+)/.exec(s.logs());
      assert.ok(runtime, s.logs());
      assert.equal(runtime[2], "https://<serverId>.apps.example.com");
      const unknown = await new Promise<number>((resolve, reject) => {
        const { port } = new URL(runtime[1]!);
        httpGet({ host: "127.0.0.1", port, path: "/", headers: { host: "nothing.apps.example.com" } }, (r) => resolve(r.resume().statusCode!)).on("error", reject);
      });
      assert.equal(unknown, 404, "no server there: a page, not an error");
    } finally {
      s.child.kill("SIGTERM");
      await s.exited;
    }
  });

  it("issue 14: a bad variable stops it at start with a usage error naming the flag and the variable; a flag wins over its variable", async () => {
    const run = (env: Record<string, string>, ...args: string[]) => {
      const child = spawn(process.execPath, [keygateBin, "serve", ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
      return once(child, "exit").then(([code]) => ({ code: code as number, err }));
    };
    const dataDir = mkdtempSync(join(tmpdir(), "keygate-env-"));
    await Promise.all([
      run({ KEYGATE_PORT: "eighty", KEYGATE_DATA_DIR: dataDir }).then((r) => {
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, /--port must be a whole number from 0 to 65535, not "eighty" \(the flag, or KEYGATE_PORT\)/);
      }),
      run({ KEYGATE_LOG_LEVEL: "loud", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--log-level must be one of fatal, error, warn, info, debug, trace, silent, not "loud"/)),
      run({ KEYGATE_APPS_DOMAIN: "apps.example.com", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--apps-domain names where the app runtime is reached: give --apps-port too/)),
      run({ KEYGATE_APPS_PORT: "0", KEYGATE_APPS_DOMAIN: "https://apps.example.com", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--apps-domain must be a DNS name such as apps\.example\.com, not "https:\/\/apps\.example\.com" \(the flag, or KEYGATE_APPS_DOMAIN\)/)),
      run({ KEYGATE_IPV6_PREFIX: "129", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--ipv6-prefix must be a whole number from 1 to 128/)),
      run({ KEYGATE_STORE_TIMEOUT_SECONDS: "0", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--store-timeout-seconds must be a whole number from 1 to 3600, not "0" \(the flag, or KEYGATE_STORE_TIMEOUT_SECONDS\)/)),
      run({ KEYGATE_BITRIX24_TOKEN_URL: "oauth.bitrix.info/oauth/token/", KEYGATE_DATA_DIR: dataDir }).then((r) =>
        assert.match(r.err, /--bitrix24-token-url must be an http:\/\/ or https:\/\/ URL, or a path on this keygate, not "oauth\.bitrix\.info\/oauth\/token\/" \(the flag, or KEYGATE_BITRIX24_TOKEN_URL\)/),
      ),
      run({ KEYGATE_SMTP_URL: "smtp://127.0.0.1:25", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--smtp-url and --smtp-from go together/)),
      run({ KEYGATE_SMTP_URL: "http://mail.example.com", KEYGATE_SMTP_FROM: "k@example.com", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--smtp-url must be an smtp:\/\/ or smtps:\/\/ URL, not "http:\/\/mail\.example\.com" \(the flag, or KEYGATE_SMTP_URL\)/)),
      run({ KEYGATE_SMTP_URL: "smtp://127.0.0.1:25", KEYGATE_SMTP_FROM: "keygate", KEYGATE_DATA_DIR: dataDir }).then((r) => assert.match(r.err, /--smtp-from must be an email address, not "keygate"/)),
      run({ KEYGATE_PORT: "eighty", KEYGATE_DRAIN_SECONDS: "x", KEYGATE_DATA_DIR: dataDir }, "--port", "0", "--drain-seconds", "-1").then((r) => {
        assert.doesNotMatch(r.err, /--port/, "the flag wins over KEYGATE_PORT");
        assert.match(r.err, /--drain-seconds must be a whole number from 0 to 3600, not "-1"/);
      }),
    ]);
  });

  /** A request in flight: its headers never finish, so the server cannot close the connection as idle. */
  const inFlight = async (url: string) => {
    const { port } = new URL(url);
    const socket = connect(Number(port), "127.0.0.1");
    await once(socket, "connect");
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    socket.on("error", () => {});
    return socket;
  };

  it("issue 14: on SIGTERM it drains in-flight requests until the deadline, then cuts them and exits cleanly", async () => {
    const s = await serveByEnv({ KEYGATE_PORT: "0", KEYGATE_DATA_DIR: mkdtempSync(join(tmpdir(), "keygate-env-")), KEYGATE_DRAIN_SECONDS: "1" });
    const socket = await inFlight(s.url);
    s.child.kill("SIGTERM");
    const [code, signal] = (await s.exited) as [number | null, string | null];
    assert.equal(code, 0, `exit ${code} ${signal}\n${s.logs()}`);
    assert.match(s.logs(), /SIGTERM: draining for up to 1 s/);
    assert.match(s.logs(), /the drain deadline passed/);
    socket.destroy();
  });

  it("issue 14: a second signal while draining exits at once", async () => {
    const s = await serveByEnv({ KEYGATE_PORT: "0", KEYGATE_DATA_DIR: mkdtempSync(join(tmpdir(), "keygate-env-")), KEYGATE_DRAIN_SECONDS: "3600" });
    const socket = await inFlight(s.url);
    s.child.kill("SIGTERM");
    while (!/draining for up to 3600 s/.test(s.logs())) await once(s.child.stdout, "data");
    s.child.kill("SIGINT");
    const [code] = (await s.exited) as [number | null];
    assert.equal(code, 1);
    assert.match(s.logs(), /SIGINT again: exiting now/);
    socket.destroy();
  });
});
