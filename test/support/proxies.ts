/**
 * Real reverse proxies for the forward-auth tests: nginx and Caddy (Debian's packages, which
 * .ci/run installs), started on a configuration from docs/forward-auth/ with the test's ports in
 * place of the documented ones (keygate 127.0.0.1:8080, the API 127.0.0.1:3000, the proxy 8000).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import os from "node:os";
import { join } from "node:path";
import { freePort } from "./services.ts";

export type ProxyKind = "nginx" | "caddy";

const CANDIDATES: Record<ProxyKind, string[]> = { nginx: ["nginx", "/usr/sbin/nginx"], caddy: ["caddy", "/usr/bin/caddy"] };

/** The binary of a proxy, or undefined when it is not installed. */
export function proxyBinary(kind: ProxyKind): string | undefined {
  return CANDIDATES[kind].find((path) => spawnSync(path, kind === "nginx" ? ["-v"] : ["version"], { stdio: "ignore" }).status === 0);
}

/** A documented configuration with the test's addresses. */
export function documentedConfig(file: string, ports: { keygate: number; api: number; proxy: number }): string {
  const text = readFileSync(new URL(`../../docs/forward-auth/${file}`, import.meta.url), "utf8");
  const replaced = text.replaceAll("127.0.0.1:8080", `127.0.0.1:${ports.keygate}`).replaceAll("127.0.0.1:3000", `127.0.0.1:${ports.api}`).replace("listen 8000;", `listen 127.0.0.1:${ports.proxy};`).replace(":8000 {", `http://127.0.0.1:${ports.proxy} {`);
  if (replaced === text) throw new Error(`${file}: none of the documented addresses found`);
  return replaced;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export interface RunningProxy {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts a proxy with a configuration (made by `config` for the proxy's port) in a directory of its
 * own; resolves once it accepts connections.
 */
export async function startProxy(kind: ProxyKind, config: (port: number) => string): Promise<RunningProxy> {
  const binary = proxyBinary(kind);
  if (binary === undefined) throw new Error(`${kind} is not installed`);
  const dir = mkdtempSync(join(os.tmpdir(), `keygate-${kind}-`));
  const port = await freePort();
  let child: ChildProcess;
  let output = "";
  if (kind === "nginx") {
    writeFileSync(join(dir, "nginx.conf"), config(port));
    child = spawn(binary, ["-p", `${dir}/`, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log"), "-g", `daemon off; pid ${dir}/nginx.pid;`], { stdio: ["ignore", "pipe", "pipe"] });
  } else {
    writeFileSync(join(dir, "Caddyfile"), config(port));
    child = spawn(binary, ["run", "--config", join(dir, "Caddyfile"), "--adapter", "caddyfile"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir } });
  }
  child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
  let exited = false;
  child.once("exit", () => (exited = true));
  while (!(await listening(port))) {
    if (exited) {
      const log = kind === "nginx" ? (() => { try { return readFileSync(join(dir, "error.log"), "utf8"); } catch { return ""; } })() : "";
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${kind} did not start:\n${output}${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      if (!exited) {
        child.kill("SIGTERM");
        await once(child, "exit");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
