/**
 * Servers over HTTP on both stores (issue 16 §1, seeds 001 and 003, docs/servers.md): the user's
 * own app servers keygate fronts — registering one under the outbound rules, who may and may not
 * (an authorization key needs its session to create, not to read), the background reachability
 * check (CONNECTED while keygate reaches the server, UNREACHABLE once it stops), a key that keeps
 * servers cannot be deleted, bad input refused with the field at fault and nothing stored.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { setPassword } from "../../src/accounts/links.ts";
import { createUser } from "../../src/manage/users.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { type IssuedKey, addMember, fails, makeKey, makePortal, makeUser, ok } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const CALLBACK = "https://app.example/callback";
const STATE = "aAbBcCdDeEfFgGhH";
/** The background check's interval in these tests (production: 30 s). */
const CHECK_MS = 40;
let people = 0;

/** A small app server on this machine (the outbound rules allow 127.0.0.1 here, as `serve --allow-upstream 127.0.0.1`); `hits` counts the requests it got. */
async function appServer(): Promise<{ url: string; server: Server; hits: () => number }> {
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.writeHead(404).end("no such page");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server, hits: () => hits };
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > end) assert.fail(`${what}: still ${JSON.stringify(value)} after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, CHECK_MS / 2));
  }
}

for (const kind of await storeKinds("http: servers")) {
  describe(`servers [${kind}]`, () => {
    let h: Harness;
    let app: { url: string; server: Server; hits: () => number };
    before(async () => {
      h = await startHarness(kind, { allowUpstream: ["127.0.0.1"], serverCheckIntervalMs: CHECK_MS });
      app = await appServer();
    });
    after(async () => {
      await h.close();
      app.server.close();
    });

    /** Each test on a portal of its own: the owner's servers on other portals are not listed there. */
    const ownPortal = () => makePortal(h);
    const create = (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => h.call("POST", "/v1/infra/servers", { key, body, headers });
    const list = async (key: string, headers: Record<string, string> = {}) => ok(await h.call("GET", "/v1/infra/servers", { key, headers })) as { id: string }[];

    /** An authorization key's session, through the OAuth flow (docs/oauth.md) as a portal member. */
    async function sessionFor(portalId: string, appKey: IssuedKey): Promise<string> {
      const email = `servers${++people}@example.com`;
      const user = await createUser(h.kg, null, { email, name: `Member Number${people}` });
      await setPassword(h.kg, null, user, PASSWORD);
      await addMember(h, portalId, email);
      const signIn = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
      ok(signIn, 201);
      const cookie = /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(signIn.headers["set-cookie"]))![1]!;
      const verifier = randomBytes(32).toString("base64url");
      const challenge = createHash("sha256").update(verifier).digest("base64url");
      const url = `/v1/oauth/authorize?${new URLSearchParams({ app_key: appKey.raw, state: STATE, redirect_uri: CALLBACK, code_challenge: challenge, code_challenge_method: "S256" })}`;
      const page = await h.call("GET", url, { headers: { cookie } });
      assert.equal(page.status, 200, JSON.stringify(page.body));
      const fields = Object.fromEntries([...String(page.body).matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)))]));
      const consent: Reply = await h.call("POST", "/v1/oauth/authorize", {
        headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ ...fields, decision: "allow" }).toString(),
      });
      assert.equal(consent.status, 302, JSON.stringify(consent.body));
      const code = new URL(String(consent.headers.location)).searchParams.get("code")!;
      const token = await h.call("POST", "/v1/oauth/token", { body: { grant_type: "authorization_code", app_key: appKey.raw, code, redirect_uri: CALLBACK, code_verifier: verifier } });
      assert.equal(token.status, 200, JSON.stringify(token.body));
      return token.body.access_token;
    }
    const appKey = (portalId: string) => makeKey(h, portalId, { type: "app", scopes: ["crm", "vibe:infra"], redirectUris: [CALLBACK] });

    it("issue 16 §1: an API key registers a server {name, url} → 201, owned by that key; appUrl is null without the app runtime (no --apps-port)", async () => {
      const p = await ownPortal();
      const k = await makeKey(h, p);
      const s = ok(await create(k.raw, { name: "  CRM dashboard ", url: app.url }), 201);
      assert.equal(s.name, "CRM dashboard");
      assert.equal(s.url, app.url);
      assert.equal(s.keyId, k.id);
      assert.equal(s.portalId, p);
      assert.equal(s.appUrl, null, "the app runtime (issue 16 §2) is off: no public URL is invented");
      assert.equal(s.status, "pending");
      assert.equal(s.blackholeStatus, "UNREACHABLE", "not CONNECTED before keygate has reached it");
      assert.equal(s.lastCheckedAt, null);
      assert.deepEqual((await list(k.raw)).map((x) => x.id), [s.id]);
      assert.deepEqual(ok(await h.call("GET", `/v1/infra/servers/${s.id}`, { key: k.raw })).id, s.id);
    });

    it('issue 16 §1: blackholeStatus is "CONNECTED" while keygate reaches the server (any HTTP answer), "UNREACHABLE" once it stops answering', async () => {
      const p = await ownPortal();
      const own = await appServer();
      const k = await makeKey(h, p);
      const { id } = ok(await create(k.raw, { name: "goes away", url: `${own.url}health` }), 201);
      const read = async () => ok(await h.call("GET", `/v1/infra/servers/${id}`, { key: k.raw }));
      const up = await until("the check reaches the server", read, (s) => s.blackholeStatus === "CONNECTED");
      assert.equal(up.status, "running");
      assert.equal(typeof up.lastCheckedAt, "string");
      own.server.closeAllConnections();
      await new Promise((resolve) => own.server.close(resolve));
      const down = await until("the check notices the server is gone", read, (s) => s.blackholeStatus === "UNREACHABLE");
      assert.equal(down.status, "error");
    });

    it("issue 16 §1: a new server is checked at once, not at the next round; a node's checks stop when it closes, while the store lives on", async () => {
      const own = await appServer();
      // A round every minute: only the check made at registration can connect it within the test.
      const slow = await startHarness(kind, { allowUpstream: ["127.0.0.1"], serverCheckIntervalMs: 60_000 });
      try {
        const k = await makeKey(slow, await makePortal(slow));
        const { id } = ok(await slow.call("POST", "/v1/infra/servers", { key: k.raw, body: { name: "at once", url: own.url } }), 201);
        await until("the check made at registration", async () => ok(await slow.call("GET", `/v1/infra/servers/${id}`, { key: k.raw })), (s) => s.blackholeStatus === "CONNECTED", 2_000);
        // A second node on the same store checks every CHECK_MS; closing it leaves the store open, so only its stopped timer ends its rounds.
        const fast = await startHarness(kind, { alongside: slow, allowUpstream: ["127.0.0.1"], serverCheckIntervalMs: CHECK_MS });
        const before = own.hits();
        await until("the second node's rounds", async () => own.hits(), (n) => n >= before + 3);
        await fast.close();
        const closed = own.hits();
        await sleep(CHECK_MS * 5);
        assert.equal(own.hits(), closed, "no check after the node closed");
        // A timer left running would go on recording (its connections closed, as UNREACHABLE) in the shared store.
        assert.equal(ok(await slow.call("GET", `/v1/infra/servers/${id}`, { key: k.raw })).blackholeStatus, "CONNECTED");
      } finally {
        await slow.close();
        own.server.close();
      }
    });

    it('seed 003: an authorization key without a session → 401 UNAUTHENTICATED, error.hint names the OAuth flow and a personal vibe_api_ key; nothing stored', async () => {
      const p = await ownPortal();
      const k = await appKey(p);
      const r = fails(await create(k.raw, { name: "needs a user", url: app.url }), 401, "UNAUTHENTICATED");
      assert.match(r.hint, /OAuth flow/);
      assert.match(r.hint, /vibe_api_/);
      assert.deepEqual(await list(k.raw), []);
      const me = ok(await h.call("GET", "/v1/me", { key: k.raw }));
      assert.deepEqual(me.capabilities.servers.create, { available: false, reason: "SESSION_REQUIRED" });
    });

    it('seed 003: "Reads (GET /v1/infra/servers, GET /v1/me) do not need a session"; with its session an authorization key creates, owned by the session\'s user', async () => {
      const p = await ownPortal();
      const k = await appKey(p);
      const session = await sessionFor(p, k);
      const bearer = { authorization: `Bearer ${session}` };
      assert.deepEqual(ok(await h.call("GET", "/v1/me", { key: k.raw, headers: bearer })).capabilities.servers.create, { available: true });
      const s = ok(await create(k.raw, { name: "embedded app", url: app.url }, bearer), 201);
      assert.deepEqual((await list(k.raw)).map((x) => x.id), [s.id], "listed without a session");
      const ownersOwn = await makeKey(h, p);
      assert.deepEqual(await list(ownersOwn.raw), [], "the server is the session user's, not the key owner's");
      ok(await h.call("GET", `/v1/infra/servers/${s.id}`, { key: k.raw }));
      ok(await h.call("DELETE", `/v1/infra/servers/${s.id}`, { key: k.raw }));
      assert.deepEqual(await list(k.raw), []);
    });

    it('seed 001: "If the key has active servers, 409 KEY_HAS_ACTIVE_SERVERS is returned — the servers must be deleted first"', async () => {
      const p = await ownPortal();
      const k = await makeKey(h, p);
      const a = ok(await create(k.raw, { name: "one", url: app.url }), 201);
      const b = ok(await create(k.raw, { name: "two", url: app.url }), 201);
      const refused = fails(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }), 409, "KEY_HAS_ACTIVE_SERVERS");
      assert.equal(refused.details.dependents, 2);
      ok(await h.call("DELETE", `/v1/infra/servers/${a.id}`, { key: k.raw }));
      fails(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }), 409, "KEY_HAS_ACTIVE_SERVERS");
      ok(await h.call("DELETE", `/v1/infra/servers/${b.id}`, { key: k.raw }));
      ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }));
    });

    it("a server of another user, or another portal, is 404 SERVER_NOT_FOUND (read and delete), and is not listed", async () => {
      const p = await ownPortal();
      const k = await makeKey(h, p);
      const s = ok(await create(k.raw, { name: "mine", url: app.url }), 201);
      const stranger = await makeUser(h);
      const theirPortal = await makePortal(h, { by: stranger.key });
      const theirs = await makeKey(h, theirPortal, {}, { by: stranger.key });
      fails(await h.call("GET", `/v1/infra/servers/${s.id}`, { key: theirs.raw }), 404, "SERVER_NOT_FOUND");
      fails(await h.call("DELETE", `/v1/infra/servers/${s.id}`, { key: theirs.raw }), 404, "SERVER_NOT_FOUND");
      assert.deepEqual(await list(theirs.raw), []);
      fails(await h.call("GET", "/v1/infra/servers/no-such-server", { key: k.raw }), 404, "SERVER_NOT_FOUND");
      ok(await h.call("GET", `/v1/infra/servers/${s.id}`, { key: k.raw }), 200);
      const sameUser = await makeKey(h, p);
      assert.ok((await list(sameUser.raw)).some((x) => x.id === s.id), "the key's user sees it through another of their keys on the portal");
    });

    it("keys that may not: a management key → 403 MANAGEMENT_KEY_NO_ENTITY_ACCESS; an authorization key without vibe:infra → 403 SCOPE_DENIED", async () => {
      const p = await ownPortal();
      fails(await h.call("GET", "/v1/infra/servers", { key: h.owner.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      fails(await create(h.owner.key, { name: "x", url: app.url }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      const noInfra = await makeKey(h, p, { type: "app", scopes: ["crm"], redirectUris: [CALLBACK] });
      fails(await h.call("GET", "/v1/infra/servers", { key: noInfra.raw }), 403, "SCOPE_DENIED");
    });

    it("bad input → 400 VALIDATION_ERROR with the field at fault, nothing stored", async () => {
      const p = await ownPortal();
      const k = await makeKey(h, p);
      const cases: [Record<string, unknown>, string][] = [
        [{ url: app.url }, "name"],
        [{ name: "   ", url: app.url }, "name"],
        [{ name: "x".repeat(101), url: app.url }, "name"],
        [{ name: 7, url: app.url }, "name"],
        [{ name: "n" }, "url"],
        [{ name: "n", url: "not a url" }, "url"],
        [{ name: "n", url: "ftp://example.com/" }, "url"],
        [{ name: "n", url: "https://example.com/#top" }, "url"],
        [{ name: "n", url: "https://user:secret@example.com/" }, "url"],
        // Issue 7's outbound rules: private and link-local (cloud metadata) addresses are refused.
        [{ name: "n", url: "http://10.0.0.5/" }, "url"],
        [{ name: "n", url: "http://169.254.169.254/latest/meta-data/" }, "url"],
        [{ name: "n", url: app.url, extra: true }, "extra"],
      ];
      for (const [body, param] of cases) {
        const r = fails(await create(k.raw, body), 400, "VALIDATION_ERROR");
        assert.equal(r.param, param, JSON.stringify(body));
      }
      assert.deepEqual(await list(k.raw), []);
      ok(await h.call("DELETE", `/v1/keys/${k.id}`, { key: h.owner.key }), 200);
    });
  });
}
