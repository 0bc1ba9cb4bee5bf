import { spawnSync } from "node:child_process";
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
  const r = spawnSync(process.execPath, [keygateBin, ...args], { cwd: repoRoot, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function keygateJson(...args: string[]): Run & { json: Record<string, unknown> } {
  const r = keygate(...args, "--json");
  const lines = r.stdout.trim().split("\n");
  if (lines.length !== 1) throw new Error(`expected exactly one line of JSON, got:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return { ...r, json: JSON.parse(lines[0]!) as Record<string, unknown> };
}
