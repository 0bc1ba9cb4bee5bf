import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const keygateBin = fileURLToPath(new URL("../../bin/keygate.js", import.meta.url));

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the keygate command as a user would, on the Node running the tests. */
export function keygate(...args: string[]): Run {
  return keygateWithEnv({}, ...args);
}

/** The same, with these environment variables set over the test's own (KEYGATE_URL, KEYGATE_KEY). */
export function keygateWithEnv(env: Record<string, string>, ...args: string[]): Run {
  const r = spawnSync(process.execPath, [keygateBin, ...args], { cwd: repoRoot, encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function keygateJson(...args: string[]): Run & { json: Record<string, unknown> } {
  const r = keygate(...args, "--json");
  const lines = r.stdout.trim().split("\n");
  if (lines.length !== 1) throw new Error(`expected exactly one line of JSON, got:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return { ...r, json: JSON.parse(lines[0]!) as Record<string, unknown> };
}

/**
 * Starts `keygate serve` on a free port and resolves with its base URL once it says it listens;
 * `output` is what it printed until then, `logs()` everything it has printed so far (both streams).
 */
export async function startServe(...args: string[]) {
  const dataDir = args.includes("--data-dir") ? [] : ["--data-dir", mkdtempSync(join(tmpdir(), "keygate-serve-"))];
  const child = spawn(process.execPath, [keygateBin, "serve", "--port", "0", ...dataDir, ...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let printed = "";
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (printed += chunk));
  }
  const exited = once(child, "exit");
  for (;;) {
    const m = /keygate listening on (https?:\/\/\S+) \(profile (\w+),/.exec(printed);
    if (m) return { child, url: m[1]!, profile: m[2]!, output: printed, logs: () => printed };
    if (child.exitCode !== null) throw new Error(`keygate serve exited without listening:\n${printed}`);
    await Promise.race([once(child.stdout, "data"), exited]);
  }
}
