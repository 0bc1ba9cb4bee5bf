import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { keygate, keygateJson } from "./run.ts";

const freshDir = () => mkdtempSync(join(tmpdir(), "keygate-cli-"));

describe("keygate init", () => {
  it('issue 12: prints exactly {"ownerId", "managementKey", "signInUrl"} with --json, and refuses to run twice on the same data directory', () => {
    const dir = freshDir();
    const first = keygateJson("init", "--data-dir", dir, "--owner-email", "Boss@Example.com");
    assert.equal(first.status, 0, first.stderr);
    assert.deepEqual(Object.keys(first.json).sort(), ["managementKey", "ownerId", "signInUrl"]);
    assert.match(first.json.managementKey as string, /^vibe_live_[0-9A-Za-z]{38}$/);
    const again = keygate("init", "--data-dir", dir);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /set up already/);
  });
});

describe("keygate users create", () => {
  it("adds a user and prints a management key with the scopes asked for", () => {
    const dir = freshDir();
    assert.equal(keygate("init", "--data-dir", dir).status, 0);
    const plain = keygateJson("users", "create", "--data-dir", dir, "--email", "ann@example.com");
    assert.equal(plain.status, 0, plain.stderr);
    assert.deepEqual(Object.keys(plain.json), ["userId", "signInUrl"]);
    const withKey = keygateJson("users", "create", "--data-dir", dir, "--email", "bob@example.com", "--management-key-scopes", "vibe:mgmt:keys");
    assert.equal(withKey.status, 0, withKey.stderr);
    assert.deepEqual(Object.keys(withKey.json).sort(), ["managementKey", "signInUrl", "userId"]);
    assert.match(withKey.json.managementKey as string, /^vibe_live_/);
  });

  it("exits 2 on a taken email, a bad email, bad scopes, or a data directory that is not set up", () => {
    const dir = freshDir();
    assert.equal(keygate("init", "--data-dir", dir, "--owner-email", "ann@example.com").status, 0);
    const taken = keygate("users", "create", "--data-dir", dir, "--email", "ANN@example.com");
    assert.equal(taken.status, 2);
    assert.match(taken.stderr, /USER_EXISTS/);
    const bad = keygate("users", "create", "--data-dir", dir, "--email", "not-an-email");
    assert.equal(bad.status, 2);
    const scopes = keygate("users", "create", "--data-dir", dir, "--email", "cy@example.com", "--management-key-scopes", "crm,vibe:mgmt:nope");
    assert.equal(scopes.status, 2);
    assert.match(scopes.stderr, /crm/);
    assert.match(scopes.stderr, /vibe:mgmt:nope/);
    const retried = keygate("users", "create", "--data-dir", dir, "--email", "cy@example.com");
    assert.equal(retried.status, 0, "the refused command added no user");
    const fresh = keygate("users", "create", "--data-dir", freshDir(), "--email", "dee@example.com");
    assert.equal(fresh.status, 2);
    assert.match(fresh.stderr, /not set up/);
  });
});

describe("issue 12: keygate init under every profile", () => {
  for (const [profile, prefix] of [["vibecode", "vibe_live_"], ["atender", "kg_mgmt_"], ["rogeriq", "kg_mgmt_"]] as const) {
    it(`--profile ${profile} --json returns a non-null managementKey (${prefix}…)`, () => {
      const init = keygateJson("init", "--data-dir", freshDir(), "--profile", profile);
      assert.equal(init.status, 0, init.stderr);
      assert.match(init.json.managementKey as string, new RegExp(`^${prefix}[0-9A-Za-z]{38}$`));
    });
  }
});

describe("a data directory set up with a profile file", () => {
  it("keeps that file as its profile: later commands open it again without --profile", () => {
    const dir = freshDir();
    const init = keygateJson("init", "--data-dir", dir, "--profile", "test/fixtures/profiles/example.json");
    assert.equal(init.status, 0, init.stderr);
    assert.match(init.json.managementKey as string, /^kg_mgmt_/, "issue 12: the example profile names no management key type: it gets keygate's own");
    const user = keygate("users", "create", "--data-dir", dir, "--email", "x@example.com");
    assert.equal(user.status, 0, user.stderr);
  });
});
