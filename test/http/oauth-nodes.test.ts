/**
 * Issue 15: "Sessions are checked on the hot path from a cache like keys, and their revocation is
 * seen by the next request on every node." Two keygate nodes on one store: a session cached by
 * node b and revoked through node a is refused by b one Redis round trip later; with no Redis,
 * within one read of the store's change feed.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { setPassword } from "../../src/accounts/links.ts";
import { RedisInvalidation } from "../../src/gateway/invalidation.ts";
import { buildServer } from "../../src/gateway/server.ts";
import { deploymentId } from "../../src/limits/deployment.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { probeRedis, redisUrl, requireService } from "../support/services.ts";

const CALLBACK = "https://app.example/callback";
const PASSWORD = "correct horse battery staple";

/** Two nodes on one store (and, with `redis`, one Redis), an app key, and a way to get a session through node a. */
async function cluster(redis: string | undefined, changePollMs: number) {
  const profile = loadProfile("vibecode");
  const serverSecret = randomBytes(32).toString("base64url");
  const store: Store = await openSqliteStore(":memory:", { serverSecret });
  await store.migrate();
  const node = () => buildServer({ profile, store, serverSecret, changePollMs, invalidation: redis === undefined ? undefined : new RedisInvalidation(redis, deploymentId(serverSecret)) });
  const [a, b] = [node(), node()];
  await Promise.all([a.ready(), b.ready()]);
  const owner = await createUser(a.keygate, null, { email: "owner@example.com" });
  await setPassword(a.keygate, null, owner, PASSWORD);
  const manage = { "x-api-key": (await issueManagementKey(a.keygate, owner, profile.management.scopes)).rawKey, "content-type": "application/json" };
  const portal = (await a.inject({ method: "POST", url: "/v1/portals", headers: manage, payload: JSON.stringify({ domain: "nodes.bitrix24.ru", upstream: { kind: "sandbox" } }) })).json().data;
  const appKey: string = (await a.inject({ method: "POST", url: "/v1/keys", headers: manage, payload: JSON.stringify({ portalId: portal.id, type: "app", name: "App", scopes: ["crm"], redirectUris: [CALLBACK] }) })).json().data.rawKey;
  const signIn = await a.inject({ method: "POST", url: "/v1/session", headers: { "content-type": "application/json" }, payload: JSON.stringify({ email: owner.email, password: PASSWORD }) });
  const cookie = String(signIn.headers["set-cookie"]).split(";")[0]!;

  const session = async (): Promise<string> => {
    const verifier = randomBytes(32).toString("base64url");
    const query = new URLSearchParams({ app_key: appKey, state: randomBytes(12).toString("hex"), redirect_uri: CALLBACK, code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256" });
    const page = (await a.inject({ method: "GET", url: `/v1/oauth/authorize?${query}`, headers: { cookie } })).body;
    const fields = Object.fromEntries([...page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, m[2]!.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)))]));
    const consent = await a.inject({ method: "POST", url: "/v1/oauth/authorize", headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, payload: new URLSearchParams({ ...fields, decision: "allow" }).toString() });
    const code = new URL(String(consent.headers.location)).searchParams.get("code")!;
    const token = await a.inject({ method: "POST", url: "/v1/oauth/token", headers: { "content-type": "application/json" }, payload: JSON.stringify({ grant_type: "authorization_code", app_key: appKey, code, redirect_uri: CALLBACK, code_verifier: verifier }) });
    return token.json().access_token;
  };
  const me = (node: FastifyInstance, token: string) => node.inject({ method: "GET", url: "/v1/me", headers: { "x-api-key": appKey, authorization: `Bearer ${token}` } });
  const revoke = (token: string) => a.inject({ method: "POST", url: "/v1/oauth/revoke", headers: { "content-type": "application/json" }, payload: JSON.stringify({ token }) });
  /** Asks node b until it refuses the session (or gives up); how long it took. */
  const refusedBy = async (node: FastifyInstance, token: string, withinMs: number): Promise<{ code: string | undefined; ms: number }> => {
    const t0 = performance.now();
    let r = await me(node, token);
    while (r.statusCode === 200 && performance.now() - t0 < withinMs) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      r = await me(node, token);
    }
    return { code: r.statusCode === 200 ? undefined : r.json().error.code, ms: performance.now() - t0 };
  };
  return {
    a,
    b,
    session,
    me,
    revoke,
    refusedBy,
    async close() {
      await a.close();
      await b.close();
      await store.close();
    },
  };
}

const url = redisUrl();
const redisUp = await requireService("oauth sessions on nodes sharing Redis", `Redis at ${url}`, () => probeRedis(url));

describe("issue 15: a revoked session on every node", () => {
  describe("no Redis: the store's change feed", () => {
    let c: Awaited<ReturnType<typeof cluster>>;
    before(async () => (c = await cluster(undefined, 50)));
    after(() => c.close());

    it("node b, which cached the session, refuses it within one read of the change feed (50 ms here); node a at once", async () => {
      const token = await c.session();
      assert.equal((await c.me(c.b, token)).statusCode, 200, "node b caches the session");
      assert.equal((await c.revoke(token)).statusCode, 200);
      assert.equal((await c.me(c.a, token)).json().error.code, "INVALID_SESSION", "the node that revoked it: the very next request");
      const seen = await c.refusedBy(c.b, token, 2_000);
      assert.equal(seen.code, "INVALID_SESSION");
    });
  });

  if (redisUp) {
    describe("Redis: pub/sub", () => {
      let c: Awaited<ReturnType<typeof cluster>>;
      // The change feed read once a minute: only Redis can tell node b in time.
      before(async () => (c = await cluster(url, 60_000)));
      after(() => c.close());

      it("node b refuses a session revoked through node a one Redis round trip later", async () => {
        const token = await c.session();
        assert.equal((await c.me(c.b, token)).statusCode, 200);
        assert.equal((await c.revoke(token)).statusCode, 200);
        const seen = await c.refusedBy(c.b, token, 2_000);
        assert.equal(seen.code, "INVALID_SESSION");
        assert.ok(seen.ms < 2_000, `${seen.ms} ms`);
      });
    });
  }
});
