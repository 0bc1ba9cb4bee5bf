/**
 * Issue 10.3 through the CLI: the data directory is 0700 and every file in it 0600 after
 * `keygate init`, and a start tightens what an earlier keygate left looser.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { keygate } from "./run.ts";

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe("issue 10.3: the data directory's modes", () => {
  const root = mkdtempSync(join(tmpdir(), "keygate-modes-"));
  after(() => rmSync(root, { recursive: true, force: true }));

  function assertPrivate(dir: string): void {
    assert.equal(mode(dir), "700", "the data directory");
    const files = readdirSync(dir);
    for (const f of ["secret", "keygate.json", "keygate.db"]) assert.ok(files.includes(f), `${f} in ${files.join(", ")}`);
    for (const f of files) assert.equal(mode(join(dir, f)), "600", f);
  }

  it("issue 10.3: keygate init creates the directory 0700 and secret, keygate.json and keygate.db 0600", () => {
    const dir = join(root, "fresh");
    const r = keygate("init", "--data-dir", dir);
    assert.equal(r.status, 0, r.stderr);
    assertPrivate(dir);
  });

  it("issue 10.3: the next start tightens a directory and files an earlier keygate left readable by others", () => {
    const dir = join(root, "loose");
    assert.equal(keygate("init", "--data-dir", dir).status, 0);
    chmodSync(dir, 0o755);
    for (const f of ["secret", "keygate.json", "keygate.db"]) chmodSync(join(dir, f), 0o644);
    const r = keygate("users", "create", "--data-dir", dir, "--email", "ann@example.com");
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(dir, "keygate.db")));
    assertPrivate(dir);
  });
});
