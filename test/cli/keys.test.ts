/**
 * Issue 12, section 3: `keygate keys …` and `keygate portals list` against a running keygate
 * (`keygate serve` in a child process), under every built-in profile, with the management key the
 * first start prints. Seed 004's `rogeriq keys create kb-bot --scopes kb:write,conversations:read`
 * is `keygate keys create kb-bot --scopes kb:write,conversations:read`.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { type Run, keygateWithEnv, startServe } from "./run.ts";

const PROFILES = [
  { profile: "vibecode", prefix: "vibe_api_", management: "vibe_live_", managementScope: "vibe:mgmt:keys", recipe: "crm,task,tasks", narrower: "crm", flat: false },
  { profile: "atender", prefix: "sa_live_", management: "kg_mgmt_", managementScope: "keygate:keys", recipe: "knowledge:read,knowledge:write", narrower: "knowledge:read", flat: true },
  { profile: "rogeriq", prefix: "riq_", management: "kg_mgmt_", managementScope: "keygate:keys", recipe: "kb:write,conversations:read", narrower: "kb:read", flat: true },
] as const;

/** The one line of JSON a --json command prints. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function json(r: Run): any {
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1, r.stdout);
  return JSON.parse(lines[0]!);
}

for (const p of PROFILES) {
  describe(`issue 12: keygate keys under ${p.profile}`, () => {
    let child: ChildProcess;
    let url: string;
    let managementKey: string;
    let env: Record<string, string>;
    const cli = (...args: string[]) => keygateWithEnv(env, ...args);
    /** The API's own answer, to compare the CLI's --json with. */
    const api = async (method: string, path: string, body?: unknown) => {
      // A connection of its own each time: the CLI runs take long enough between two of these for an idle one to be closed.
      const headers = { "x-api-key": managementKey, connection: "close", ...(body ? { "content-type": "application/json" } : {}) };
      const res = await fetch(`${url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as { data: unknown } };
    };

    before(async () => {
      const served = await startServe("--profile", p.profile, "--allow-upstream", "127.0.0.1");
      child = served.child;
      url = served.url;
      managementKey = /management key \(shown once, store it now\): (\S+)/.exec(served.output)![1]!;
      env = { KEYGATE_URL: url, KEYGATE_KEY: managementKey };
      // VibeCode's first start links a sandbox portal; the others start with none.
      if (p.profile !== "vibecode") assert.equal((await api("POST", "/v1/portals", { domain: `${p.profile}.example.com`, upstream: { kind: "http", baseUrl: "http://127.0.0.1:9" } })).status, 201);
    });
    after(async () => {
      child.kill("SIGTERM");
      await once(child, "exit");
    });

    it(`issue 12: the first start printed a ${p.management} management key`, () => {
      assert.ok(managementKey.startsWith(p.management), managementKey);
    });

    it(`seed 004: keys create NAME --scopes ${p.recipe} on your only portal prints the key once; --json is exactly the API's data`, async () => {
      const text = cli("keys", "create", "kb-bot", "--scopes", p.recipe);
      assert.equal(text.status, 0, text.stderr);
      const raw = /Key \(shown once, store it now\): (\S+)/.exec(text.stdout)?.[1];
      assert.ok(raw?.startsWith(p.prefix), text.stdout);

      const created = json(cli("keys", "create", "kb-bot-2", "--scopes", p.recipe, "--json"));
      assert.ok(created.rawKey.startsWith(p.prefix));
      for (const scope of p.recipe.split(",")) assert.ok(created.scopes.includes(scope), `${scope} in ${created.scopes}`);
      const { rawKey, ...view } = created;
      assert.ok(rawKey);
      const got = json(cli("keys", "get", created.id, "--json"));
      assert.deepEqual(got, view);
      assert.deepEqual(got, (await api("GET", `/v1/keys/${created.id}`)).body.data);
      // The key works.
      const me = await fetch(`${url}/v1/me`, { headers: { "x-api-key": created.rawKey } });
      assert.equal(me.status, 200);
    });

    it("issue 12: keys create takes --expires, --read-only, --ip (repeated) and --rate-limit", () => {
      const k = json(cli("keys", "create", "limited", "--scopes", p.narrower, "--expires", "30d", "--read-only", "--ip", "203.0.113.7", "--ip", "2001:db8::1", "--rate-limit", "5", "--json"));
      assert.equal(k.accessMode, "READONLY");
      assert.deepEqual(k.ipWhitelist, ["203.0.113.7", "2001:db8:0:0:0:0:0:1"]);
      assert.equal(k.rateLimit, 5);
      const days = (Date.parse(k.expiresAt) - Date.now()) / 86_400_000;
      assert.ok(days > 29.9 && days <= 30, k.expiresAt);
    });

    if (p.profile === "vibecode") {
      it("issue 15: keys create --type app --redirect-uri (repeated), keys update --redirect-uri / --no-redirect-uris (docs/oauth.md)", () => {
        const app = json(cli("keys", "create", "crm-app", "--type", "app", "--scopes", "crm", "--redirect-uri", "https://app.example/cb", "--redirect-uri", "http://localhost:5173/cb", "--json"));
        assert.deepEqual(app.redirectUris, ["https://app.example/cb", "http://localhost:5173/cb"]);
        assert.deepEqual(json(cli("keys", "update", app.id, "--redirect-uri", "https://app.example/other", "--json")).redirectUris, ["https://app.example/other"]);
        const text = cli("keys", "get", app.id);
        assert.match(text.stdout, /redirects: {3}https:\/\/app\.example\/other/);
        assert.deepEqual(json(cli("keys", "update", app.id, "--no-redirect-uris", "--json")).redirectUris, []);
        const refused = cli("keys", "update", app.id, "--redirect-uri", "http://app.example/cb");
        assert.equal(refused.status, 1);
        assert.match(refused.stderr, /VALIDATION_ERROR/);
      });
    }

    it("issue 12: keys list, update, rotate, revoke and delete; portals list", async () => {
      const k = json(cli("keys", "create", "lifecycle", "--scopes", p.narrower, "--json"));
      const listed = json(cli("keys", "list", "--json"));
      assert.ok(listed.some((x: { id: string }) => x.id === k.id));
      const portals = json(cli("portals", "list", "--json"));
      assert.deepEqual((await api("GET", "/v1/portals")).body.data, portals);
      assert.deepEqual(json(cli("keys", "list", "--portal", portals[0].id, "--json")), listed);

      const updated = json(cli("keys", "update", k.id, "--name", "renamed", "--scopes", p.recipe, "--read-only", "--json"));
      assert.equal(updated.name, "renamed");
      assert.equal(updated.accessMode, "READONLY");
      // RogerIQ and Atender: in effect at once (seed 004, "update scopes in place"); VibeCode's Bitrix24 scopes wait for a reissue.
      if (p.flat) assert.deepEqual(updated.scopesInEffect, updated.scopes);
      else assert.deepEqual(updated.scopesPendingReissue, ["task", "tasks"]);
      assert.equal(json(cli("keys", "update", k.id, "--read-write", "--any-ip", "--rate-limit", "none", "--expires", "never", "--json")).accessMode, "READWRITE");

      const rotated = json(cli("keys", "rotate", k.id, "--json"));
      assert.ok(rotated.rawKey.startsWith(p.prefix));
      assert.equal(rotated.previousKey.id, k.id);
      assert.deepEqual(rotated.scopesPendingReissue, [], "the reissue put every scope into effect");

      const revoked = cli("keys", "revoke", rotated.id);
      assert.equal(revoked.status, 0, revoked.stderr);
      assert.match(revoked.stdout, /Revoked renamed/);
      assert.equal(json(cli("keys", "get", rotated.id, "--json")).status, "REVOKED");
      assert.deepEqual(json(cli("keys", "delete", rotated.id, "--json")), { id: rotated.id, deleted: true });
      const gone = cli("keys", "get", rotated.id);
      assert.equal(gone.status, 1);
      assert.match(gone.stderr, /\[KEY_NOT_FOUND\]/);
    });

    it("seed 001 quickstart, step 1: keys create --type management, keys list --type management, keys revoke", () => {
      const k = json(cli("keys", "create", "ci", "--type", "management", "--scopes", p.managementScope, "--json"));
      assert.ok(k.rawKey.startsWith(p.management));
      assert.equal(k.portalId, null);
      // The new key works the CLI itself, with --url and --key instead of the environment.
      const mine = json(keygateWithEnv({ KEYGATE_URL: "", KEYGATE_KEY: "" }, "keys", "list", "--type", "management", "--url", url, "--key", k.rawKey, "--json"));
      assert.deepEqual(mine.map((x: { name: string }) => x.name).sort(), ["Owner's management key", "ci"]);
      assert.equal(cli("keys", "revoke", k.id).status, 0);
      assert.equal(json(cli("keys", "get", k.id, "--json")).status, "REVOKED");
    });

    it("issue 12: a refusal of the API exits 1 with its code on stderr, and prints nothing on stdout", () => {
      const bad = cli("keys", "create", "bad", "--scopes", `${p.narrower},nope:read`, "--json");
      assert.equal(bad.status, 1);
      assert.equal(bad.stdout, "");
      assert.match(bad.stderr, /nope:read.*\[UNKNOWN_SCOPE\]/);
      const denied = keygateWithEnv({ ...env, KEYGATE_KEY: json(cli("keys", "create", "api", "--scopes", p.narrower, "--json")).rawKey }, "keys", "list");
      assert.equal(denied.status, 1);
      assert.match(denied.stderr, /\[MANAGEMENT_KEY_REQUIRED\]/);
    });

    // The same under every profile: checked once.
    if (p.profile === "rogeriq") {
      it("issue 12: a usage error exits 2: no key, a bad --expires or --rate-limit, no change, a missing --scopes, two portals and no --portal", async () => {
        const cases: string[][] = [
          ["keys", "create", "x", "--scopes", "a", "--expires", "7d"],
          ["keys", "create", "x", "--scopes", "a", "--rate-limit", "fast"],
          ["keys", "create", "x"],
          ["keys", "create", "x", "--scopes", "a", "--read-only", "--read-write"],
          ["keys", "update", "some-id"],
          ["keys", "frobnicate"],
        ];
        for (const args of cases) assert.equal(cli(...args).status, 2, args.join(" "));
        const noKey = keygateWithEnv({ KEYGATE_URL: url, KEYGATE_KEY: "" }, "keys", "list");
        assert.equal(noKey.status, 2);
        assert.match(noKey.stderr, /KEYGATE_KEY/);

        assert.equal((await api("POST", "/v1/portals", { domain: `second-${p.profile}.example.com` })).status, 201);
        const which = cli("keys", "create", "x", "--scopes", p.narrower);
        assert.equal(which.status, 2);
        assert.match(which.stderr, /2 portals: give --portal/);
      });

      it("issue 12: an unreachable keygate exits 1", () => {
        const r = keygateWithEnv({ KEYGATE_URL: "http://127.0.0.1:9", KEYGATE_KEY: managementKey }, "portals", "list");
        assert.equal(r.status, 1);
        assert.match(r.stderr, /cannot reach http:\/\/127\.0\.0\.1:9.*\[UNREACHABLE\]/);
      });
    }
  });
}
