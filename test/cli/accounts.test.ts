/**
 * Issue 12, first run and accounts from the command line: `keygate init` gives the owner a
 * password (--owner-password-file, KEYGATE_OWNER_PASSWORD) or a one-time sign-in link;
 * `keygate users create` and `users reset-password` likewise; and setting up a data directory and
 * showing its credentials is one step: a first start that cannot listen leaves them to the next.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { openSqliteStore } from "../../src/store/index.ts";
import { keygate, keygateJson, startServe } from "./run.ts";

const freshDir = () => mkdtempSync(join(tmpdir(), "keygate-cli-"));
const passwordFile = (password: string) => {
  const file = join(freshDir(), "password");
  writeFileSync(file, `${password}\n`);
  return file;
};

async function signIn(url: string, email: string, password: string): Promise<Response> {
  return fetch(`${url}/v1/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }) });
}

describe("issue 12: keygate init and the owner's sign-in", () => {
  it("issue 12: without a password, init prints a one-time sign-in link at --public-url; with --owner-password-file, signInUrl is null", () => {
    const linked = keygateJson("init", "--data-dir", freshDir(), "--public-url", "https://keys.example.com/");
    assert.equal(linked.status, 0, linked.stderr);
    assert.match(linked.json.signInUrl as string, /^https:\/\/keys\.example\.com\/set-password\?token=[A-Za-z0-9_-]{43}$/);
    const withPassword = keygateJson("init", "--data-dir", freshDir(), "--owner-password-file", passwordFile("the owner's password"));
    assert.equal(withPassword.status, 0, withPassword.stderr);
    assert.equal(withPassword.json.signInUrl, null);
    assert.match(withPassword.json.managementKey as string, /^vibe_live_/);
    const human = keygate("init", "--data-dir", freshDir());
    assert.match(human.stdout, /one-time link, valid 24 hours\): http:\/\/127\.0\.0\.1:8080\/set-password\?token=/);
  });

  it("issue 12: a password too short (file or KEYGATE_OWNER_PASSWORD) is a usage error, and nothing is set up", () => {
    const dir = freshDir();
    const short = keygate("init", "--data-dir", dir, "--owner-password-file", passwordFile("short"));
    assert.equal(short.status, 2);
    assert.match(short.stderr, /--owner-password-file: the password must have at least 12 characters/);
    process.env.KEYGATE_OWNER_PASSWORD = "tiny";
    try {
      const env = keygate("init", "--data-dir", dir);
      assert.equal(env.status, 2);
      assert.match(env.stderr, /KEYGATE_OWNER_PASSWORD/);
    } finally {
      delete process.env.KEYGATE_OWNER_PASSWORD;
    }
    assert.equal(keygate("init", "--data-dir", dir).status, 0, "the refused runs set nothing up");
  });

  it("issue 12: the owner signs in with the password from KEYGATE_OWNER_PASSWORD on the first npm start", async () => {
    process.env.KEYGATE_OWNER_PASSWORD = "the environment's password";
    let started;
    try {
      started = await startServe();
    } finally {
      delete process.env.KEYGATE_OWNER_PASSWORD;
    }
    try {
      assert.doesNotMatch(started.output, /set-password/, "a password was given: no link");
      assert.match(started.output, /management key \(shown once/);
      const r = await signIn(started.url, "owner@keygate.local", "the environment's password");
      assert.equal(r.status, 201, await r.text());
      assert.match(r.headers.get("set-cookie") ?? "", /^keygate_session=/);
    } finally {
      started.child.kill("SIGTERM");
      await once(started.child, "exit");
    }
  });
});

describe("issue 12: keygate users", () => {
  it("issue 17: users create --role staff makes a member of the instance's team (docs/feedback.md); another role is refused and nothing stored", async () => {
    const dir = freshDir();
    assert.equal(keygate("init", "--data-dir", dir).status, 0);
    const bad = keygate("users", "create", "--data-dir", dir, "--email", "sam@example.com", "--role", "admin");
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--role must be user or staff/);
    const staff = keygateJson("users", "create", "--data-dir", dir, "--email", "sam@example.com", "--role", "staff");
    assert.equal(staff.status, 0, staff.stderr);
    const plain = keygateJson("users", "create", "--data-dir", dir, "--email", "pat@example.com");
    const store = await openSqliteStore(dir, { serverSecret: "unused: roles are not sealed" });
    try {
      assert.equal((await store.getUser(staff.json.userId as string))?.role, "staff");
      assert.equal((await store.getUser(plain.json.userId as string))?.role, "user");
    } finally {
      await store.close();
    }
  });

  it("issue 12: users create --password-file sets the password; without it a link is printed; reset-password prints a new link", async () => {
    const dir = freshDir();
    assert.equal(keygate("init", "--data-dir", dir).status, 0);
    const withPassword = keygateJson("users", "create", "--data-dir", dir, "--email", "ann@example.com", "--password-file", passwordFile("ann's long password"));
    assert.equal(withPassword.status, 0, withPassword.stderr);
    assert.equal(withPassword.json.signInUrl, null);
    const linked = keygateJson("users", "create", "--data-dir", dir, "--email", "bob@example.com", "--public-url", "http://localhost:9999");
    assert.match(linked.json.signInUrl as string, /^http:\/\/localhost:9999\/set-password\?token=/);
    const reset = keygateJson("users", "reset-password", "--data-dir", dir, "--email", "ANN@example.com");
    assert.equal(reset.status, 0, reset.stderr);
    assert.deepEqual(Object.keys(reset.json), ["userId", "signInUrl"]);
    assert.equal(reset.json.userId, withPassword.json.userId);
    const unknown = keygate("users", "reset-password", "--data-dir", dir, "--email", "nobody@example.com");
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /USER_NOT_FOUND/);
    const short = keygate("users", "create", "--data-dir", dir, "--email", "cy@example.com", "--password-file", passwordFile("short"));
    assert.equal(short.status, 2);
    assert.equal(keygate("users", "create", "--data-dir", dir, "--email", "cy@example.com").status, 0, "the refused command added no user");

    // Ann's password works, and the reset link (not used) has not changed it; the link sets a new one.
    const server = await startServe("--data-dir", dir);
    try {
      assert.equal((await signIn(server.url, "ann@example.com", "ann's long password")).status, 201);
      const token = new URL(reset.json.signInUrl as string).searchParams.get("token");
      const set = await fetch(`${server.url}/v1/password`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token, password: "ann's new password" }) });
      assert.equal(set.status, 201, await set.text());
      assert.equal((await signIn(server.url, "ann@example.com", "ann's long password")).status, 401);
      assert.equal((await signIn(server.url, "ann@example.com", "ann's new password")).status, 201);
    } finally {
      server.child.kill("SIGTERM");
      await once(server.child, "exit");
    }
  });
});

describe("issue 12: setting up and showing the credentials is one step", () => {
  it("issue 12: a first start that cannot listen (EADDRINUSE) shows nothing; the next start shows the owner's key and sign-in link, and they work; the one after shows nothing", async () => {
    const busy = createServer();
    busy.listen(0, "127.0.0.1");
    await once(busy, "listening");
    const port = String((busy.address() as { port: number }).port);
    const dir = freshDir();
    try {
      const failed = keygate("serve", "--data-dir", dir, "--port", port);
      assert.equal(failed.status, 1);
      assert.match(failed.stderr, /EADDRINUSE/);
      assert.doesNotMatch(failed.stdout, /vibe_live_|set-password/, "nothing shown that could not be used");
    } finally {
      busy.close();
    }
    const next = await startServe("--data-dir", dir);
    try {
      const key = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(next.output)?.[1] ?? "";
      assert.ok(key, next.output);
      const link = /one-time link \(valid 24 hours\): (\S+)/.exec(next.output)?.[1] ?? "";
      assert.ok(link?.startsWith(`${next.url}/set-password?token=`), next.output);
      assert.equal((await fetch(`${next.url}/v1/me`, { headers: { "x-api-key": key } })).status, 200);
      const token = new URL(link).searchParams.get("token");
      const set = await fetch(`${next.url}/v1/password`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token, password: "the owner's password" }) });
      assert.equal(set.status, 201, await set.text());
    } finally {
      next.child.kill("SIGTERM");
      await once(next.child, "exit");
    }
    const third = await startServe("--data-dir", dir);
    third.child.kill("SIGTERM");
    await once(third.child, "exit");
    assert.doesNotMatch(third.output, /vibe_live_|set-password/);
  });
});
