/**
 * The app runtime on both stores (issue 16 §2 "The app runtime (BlackHole)", vibecode-public-facts
 * §2.3, docs/apps.md): apps on hosts of their own (`<serverId>.localhost:<apps port>`); a request
 * reaches the app's server only with a user, who comes from the placement handler with a one-time
 * `__init` token the runtime exchanges for an HttpOnly cookie; the browser's X-Vibe-* headers and
 * keygate's cookies never reach the app, keygate's X-Vibe-* identity does, and the app reads its
 * user with GET /v1/me. Refusals: no cookie, a forged, expired or replayed __init, a server of
 * another user, a revoked session mid-use, an unreachable or slow server. Streaming, uploads and
 * WebSocket upgrades pass through. The dashboard's cookie is no use to an app's page.
 *
 * Clients reach `<id>.localhost` through an undici dispatcher that resolves every name to
 * 127.0.0.1 (Chromium does so for *.localhost by itself; this machine's resolver does not).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import type { AddressInfo, LookupFunction } from "node:net";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { Agent, WebSocket, request } from "undici";
import { setPassword } from "../../src/accounts/links.ts";
import { mintInitToken } from "../../src/apps/init-token.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { sandboxUserFor } from "../../src/upstream/sandbox/setup.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { addMember, makeKey, makePortal, ok } from "./_fixtures.ts";

const PASSWORD = "correct horse battery staple";
const lookup: LookupFunction = (_host, options, callback) => {
  if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: "127.0.0.1", family: 4 }]);
  else callback(null, "127.0.0.1", 4);
};
const loopback = new Agent({ connect: { lookup } });

interface AppServer {
  url: string;
  server: Server;
  /** The headers of every request it got, in order. */
  seen: IncomingHttpHeaders[];
}

/** The user's app server: echoes what it got; /stream answers in two pieces, /upload counts bytes, /slow never answers; WebSocket echo. */
async function appServer(): Promise<AppServer> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    if (req.url === "/slow") return;
    if (req.url === "/stream") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first\n");
      setTimeout(() => res.end("second\n"), 400);
      return;
    }
    if (req.url === "/upload") {
      let bytes = 0;
      req.on("data", (c: Buffer) => (bytes += c.length));
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ bytes })));
      return;
    }
    res.writeHead(200, { "content-type": "application/json", "set-cookie": "app_own=1; Path=/" }).end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  // A WebSocket echo in a few lines (no ws library here): the handshake, then each short text frame back, signed with the user id keygate sent.
  server.on("upgrade", (req, socket) => {
    seen.push(req.headers);
    const accept = createHash("sha1").update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    socket.on("data", (frame: Buffer) => {
      if ((frame[0]! & 0x0f) !== 1) return void socket.end();
      const length = frame[1]! & 0x7f;
      const mask = frame.subarray(2, 6);
      const text = Buffer.from(frame.subarray(6, 6 + length).map((b, i) => b ^ mask[i % 4]!)).toString();
      const reply = Buffer.from(`${text} from ${req.headers["x-vibe-user-id"]}`);
      socket.write(Buffer.concat([Buffer.from([0x81, reply.length]), reply]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server, seen };
}

interface Got {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function get(url: string, options: { cookie?: string; headers?: Record<string, string>; method?: string; body?: Readable } = {}): Promise<Got> {
  const r = await request(url, {
    dispatcher: loopback,
    method: (options.method ?? "GET") as "GET",
    headers: { ...options.headers, ...(options.cookie !== undefined && { cookie: options.cookie }) },
    body: options.body,
  });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

/** The cookie a Set-Cookie header sets, as a Cookie header sends it back. */
const cookieOf = (r: Got) => String(r.headers["set-cookie"]).split(";")[0]!;

let people = 0;

for (const kind of await storeKinds("http: app runtime")) {
  describe(`app runtime [${kind}]`, () => {
    let h: Harness;
    let app: AppServer;
    let portalId: string;
    /** A member with an app (an authorization key) and a server for it, as issue 16 §1 registers it. */
    interface Member {
      userId: string;
      email: string;
      /** The API key that registered the server. */
      apiKey: string;
      appKey: { id: string; raw: string };
      serverId: string;
      appUrl: string;
      bitrixUserId: number;
    }
    let alice: Member;
    let bob: Member;

    async function member(name: string, serverUrl = app.url): Promise<Member> {
      const email = `runtime${++people}@example.com`;
      const user = await createUser(h.kg, null, { email, name });
      const managementKey = (await issueManagementKey(h.kg, user, h.kg.profile.management.scopes)).rawKey;
      await addMember(h, portalId, email);
      const apiKey = await makeKey(h, portalId, { scopes: ["crm", "vibe:infra"] }, { by: managementKey });
      const appKey = await makeKey(h, portalId, { type: "app", scopes: ["crm", "vibe:infra"] }, { by: managementKey });
      const server = ok(await h.call("POST", "/v1/infra/servers", { key: apiKey.raw, body: { name: `${name}'s app`, url: serverUrl } }), 201);
      const bitrixUserId = await sandboxUserFor(h.store, portalId, user, h.kg.serverSecret, h.clock.now);
      return { userId: user.id, email, apiKey: apiKey.raw, appKey, serverId: server.id, appUrl: server.appUrl, bitrixUserId };
    }

    /** What the placement handler sends the browser to. */
    const entry = (m: Member, params: Record<string, string> = { placement: "DEFAULT", member_id: "abc123" }) =>
      h.appRuntime!.entryUrl({ serverId: m.serverId, keyId: m.appKey.id, userId: m.userId, portalId, bitrixUserId: m.bitrixUserId }, params);

    /** Opens the app as the placement handler would: the exchange, then the cookie. */
    async function signIn(m: Member): Promise<string> {
      const r = await get(await entry(m));
      assert.equal(r.status, 302, r.text);
      return cookieOf(r);
    }

    before(async () => {
      h = await startHarness(kind, { allowUpstream: ["127.0.0.1"], apps: { upstream: { headersTimeoutMs: 500 } } });
      app = await appServer();
      portalId = await makePortal(h);
      alice = await member("Алиса O'Hara");
      bob = await member("Bob");
    });
    after(async () => {
      await h.close();
      app.server.closeAllConnections();
      app.server.close();
    });

    it("issue 16 §2: each server's record carries its appUrl, a host of its own on the apps port (<serverId>.localhost:<port>), never keygate's", async () => {
      const port = (h.appRuntime!.server.address() as AddressInfo).port;
      assert.equal(alice.appUrl, `http://${alice.serverId}.localhost:${port}`);
      const listed = ok(await h.call("GET", "/v1/infra/servers", { key: alice.apiKey }));
      assert.ok(listed.every((s: { id: string; appUrl: string }) => s.appUrl === `http://${s.id}.localhost:${port}`));
    });

    it("issue 16 §2: without a cookie or __init, the app answers 401 with a page saying to open it from the portal; an unknown host 404; the app server sees neither", async () => {
      const before = app.seen.length;
      const r = await get(`${alice.appUrl}/`);
      assert.equal(r.status, 401);
      assert.match(String(r.headers["content-type"]), /^text\/html/);
      assert.match(r.text, /from your Bitrix24 portal/);
      assert.equal(r.headers["x-keygate-error"], "BH_LOGIN_REQUIRED");
      const unknown = await get(`${alice.appUrl.replace(alice.serverId, "00000000-0000-4000-8000-000000000000")}/`);
      assert.equal(unknown.status, 404);
      // The background reachability check (issue 16 §1) may call meanwhile; no request of a browser arrives.
      assert.ok(app.seen.slice(before).every((seen) => seen["x-vibe-request-id"] === undefined));
    });

    it("issue 16 §2: __init is exchanged for an HttpOnly; Path=/ cookie of the app's host, kept in the portal's frame (SameSite=None; Secure; Partitioned on *.localhost), and a redirect to the same URL without it (placement, member_id, placement_options kept)", async () => {
      const url = await entry(alice, { placement: "CRM_DEAL_DETAIL_TAB", member_id: "m1", placement_options: '{"ID":"7"}' });
      const r = await get(url);
      assert.equal(r.status, 302, r.text);
      const location = new URL(String(r.headers.location), alice.appUrl);
      assert.equal(location.origin, alice.appUrl);
      assert.deepEqual(Object.fromEntries(location.searchParams), { placement: "CRM_DEAL_DETAIL_TAB", member_id: "m1", placement_options: '{"ID":"7"}' });
      const setCookie = String(r.headers["set-cookie"]);
      assert.match(setCookie, /^_vibe_gw=[A-Za-z0-9_-]{43}; /);
      for (const attribute of ["HttpOnly", "SameSite=None", "Secure", "Partitioned", "Path=/"]) assert.ok(setCookie.split("; ").includes(attribute), setCookie);
      assert.doesNotMatch(setCookie, /Domain=/i, "host-only: no other host gets it");
      assert.doesNotMatch(setCookie, /vibe_session_/, "the browser never holds the session token");
      // A target of "//elsewhere" (or "/\\elsewhere") stays on the app's host.
      const odd = await get(`${alice.appUrl}//elsewhere.example/x?__init=${new URL(await entry(alice)).searchParams.get("__init")}`);
      assert.equal(odd.status, 302);
      assert.equal(odd.headers.location, "/elsewhere.example/x");
      const page = await get(location.href, { cookie: cookieOf(r) });
      assert.equal(page.status, 200, page.text);
      assert.equal(JSON.parse(page.text).url, `${location.pathname}${location.search}`);
    });

    it("issue 16 §2, §2.3: the app gets keygate's X-Vibe-* identity, never the browser's (spoofed ones are stripped), nor keygate's cookies; its own cookies and headers pass", async () => {
      const cookie = await signIn(alice);
      const r = await get(`${alice.appUrl}/page?x=1`, {
        cookie: `app_own=1; ${cookie}; keygate_session=dashboardcookie`,
        headers: { "x-vibe-user-id": "1", "x-vibe-authorization": "Bearer vibe_session_forged", "x-vibe-user-role": "ADMIN", "x-vibe-anything": "spoofed", "x-custom": "kept" },
      });
      assert.equal(r.status, 200, r.text);
      const got = JSON.parse(r.text).headers as Record<string, string>;
      assert.equal(got["x-vibe-user-id"], String(alice.bitrixUserId));
      assert.equal(got["x-vibe-portal-id"], portalId);
      assert.equal(got["x-vibe-user-role"], "MEMBER");
      assert.equal(got["x-vibe-user-name-encoded"], encodeURIComponent("Алиса O'Hara"));
      assert.equal(Buffer.from(got["x-vibe-user-name"]!, "latin1").toString("utf8"), "Алиса O'Hara", "the name's UTF-8 bytes as they are");
      assert.match(got["x-vibe-request-id"]!, /^req_[0-9a-f-]{36}$/);
      assert.equal(r.headers["x-request-id"], got["x-vibe-request-id"]);
      assert.match(got["x-vibe-authorization"]!, /^Bearer vibe_session_[0-9A-Za-z]{32}$/);
      assert.equal(got["x-vibe-anything"], undefined, "every X-Vibe-* header of the browser is stripped");
      assert.equal(got.cookie, "app_own=1", "keygate's runtime and dashboard cookies never reach the app");
      assert.equal(got["x-custom"], "kept");
      assert.equal(r.headers["set-cookie"], "app_own=1; Path=/");
    });

    it("issue 16 §2: the app server reads its user with one GET /v1/me (its app key + the Bearer it got): currentUser.bitrixUserId and portal", async () => {
      const cookie = await signIn(alice);
      const r = await get(`${alice.appUrl}/`, { cookie });
      const bearer = (JSON.parse(r.text).headers as Record<string, string>)["x-vibe-authorization"]!;
      const me = ok(await h.call("GET", "/v1/me", { key: alice.appKey.raw, headers: { authorization: bearer } }));
      assert.equal(me.currentUser.bitrixUserId, alice.bitrixUserId);
      assert.equal(typeof me.portal, "string");
    });

    it("issue 16 §2 refusal: a replayed __init → 401 page (each token opens the app once, on every node)", async () => {
      const url = await entry(alice);
      assert.equal((await get(url)).status, 302);
      const again = await get(url);
      assert.equal(again.status, 401);
      assert.equal(again.headers["x-keygate-error"], "INIT_REPLAYED");
      assert.equal(again.headers["set-cookie"], undefined);
    });

    it("issue 16 §2: two nodes — an __init spent on one is refused on the other; the cookie works on both; a session revoked on one ends on the other (change feed)", async () => {
      const b = await startHarness(kind, { alongside: h, allowUpstream: ["127.0.0.1"], apps: {} });
      try {
        const onB = (url: string) => url.replace(/:\d+\//, `:${(b.appRuntime!.server.address() as AddressInfo).port}/`);
        const url = await entry(alice);
        const r = await get(url);
        assert.equal(r.status, 302);
        const replay = await get(onB(url));
        assert.equal(replay.status, 401);
        assert.equal(replay.headers["x-keygate-error"], "INIT_REPLAYED");
        const cookie = cookieOf(r);
        const page = await get(onB(`${alice.appUrl}/`), { cookie });
        assert.equal(page.status, 200, page.text);
        const token = (JSON.parse(page.text).headers as Record<string, string>)["x-vibe-authorization"]!.slice("Bearer ".length);
        assert.equal((await h.call("POST", "/v1/oauth/revoke", { body: { token } })).status, 200);
        const end = Date.now() + 5_000;
        let status = 200;
        while (status === 200 && Date.now() < end) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          status = (await get(onB(`${alice.appUrl}/`), { cookie })).status;
        }
        assert.equal(status, 401, "the other node reads the revocation from the change feed");
      } finally {
        await b.close();
      }
    });

    it("issue 16 §2 refusal: a forged __init (another secret, altered, or expired) → 401 page, no cookie", async () => {
      const identity = { serverId: alice.serverId, keyId: alice.appKey.id, userId: alice.userId, portalId, bitrixUserId: alice.bitrixUserId };
      const forged = await mintInitToken("not the server secret", identity, h.clock.now);
      const good = new URL(await entry(alice));
      const token = good.searchParams.get("__init")!;
      const altered = token.slice(0, -3) + (token.endsWith("AAA") ? "BBB" : "AAA");
      for (const t of [forged, altered, "garbage"]) {
        const r = await get(`${alice.appUrl}/?__init=${encodeURIComponent(t)}`);
        assert.equal(r.status, 401, t);
        assert.equal(r.headers["x-keygate-error"], "INIT_INVALID");
        assert.equal(r.headers["set-cookie"], undefined);
      }
      h.clock.advance(5 * 60_000 + 1);
      const late = await get(good.href);
      assert.equal(late.status, 401, "5 minutes and it is no longer accepted");
    });

    it("issue 16 §2 refusal: a server of another user — alice's token on bob's host is refused (403), her cookie opens nothing there; a member who does not own the server opens it as themselves", async () => {
      const alicesToken = new URL(await entry(alice)).searchParams.get("__init")!;
      const onBobs = await get(`${bob.appUrl}/?__init=${alicesToken}`);
      assert.equal(onBobs.status, 403);
      // Alice's cookie sent to bob's host (a browser never does: it is host-only) opens nothing there.
      const cookie = await signIn(alice);
      assert.equal((await get(`${bob.appUrl}/`, { cookie })).status, 401);
      // The server's users are its portal's people: bob, opening alice's app from the portal, is bob there.
      const asBob = await get(await h.appRuntime!.entryUrl({ serverId: alice.serverId, keyId: alice.appKey.id, userId: bob.userId, portalId, bitrixUserId: bob.bitrixUserId }, {}));
      assert.equal(asBob.status, 302, asBob.text);
      const seen = JSON.parse((await get(`${alice.appUrl}/`, { cookie: cookieOf(asBob) })).text).headers as Record<string, string>;
      assert.equal(seen["x-vibe-user-id"], String(bob.bitrixUserId));
    });

    it("issue 16 §2 refusal: a session revoked mid-use → the next request through the runtime answers 401", async () => {
      const cookie = await signIn(alice);
      const r = await get(`${alice.appUrl}/`, { cookie });
      assert.equal(r.status, 200);
      const token = (JSON.parse(r.text).headers as Record<string, string>)["x-vibe-authorization"]!.slice("Bearer ".length);
      assert.equal((await h.call("POST", "/v1/oauth/revoke", { body: { token } })).status, 200);
      const after = await get(`${alice.appUrl}/`, { cookie });
      assert.equal(after.status, 401);
      assert.equal(after.headers["x-keygate-error"], "APP_SESSION_ENDED");
      assert.match(after.text, /revoked or expired/);
    });

    it("issue 16 §2 refusal: the app's key revoked, or its user removed from the portal, mid-use → 401 (the sessions go, the change feed tells the runtime)", async () => {
      const dave = await member("Dave");
      const erin = await member("Erin");
      const daveCookie = await signIn(dave);
      const erinCookie = await signIn(erin);
      assert.equal((await get(`${dave.appUrl}/`, { cookie: daveCookie })).status, 200);
      assert.equal((await get(`${erin.appUrl}/`, { cookie: erinCookie })).status, 200);
      ok(await h.call("PATCH", `/v1/keys/${dave.appKey.id}`, { key: h.owner.key, body: { status: "REVOKED" } }));
      ok(await h.call("DELETE", `/v1/portals/${portalId}/members/${erin.userId}`, { key: h.owner.key }));
      const refusedSoon = async (url: string, cookie: string) => {
        const end = Date.now() + 5_000;
        let r = await get(url, { cookie });
        while (r.status === 200 && Date.now() < end) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          r = await get(url, { cookie });
        }
        return r;
      };
      const d = await refusedSoon(`${dave.appUrl}/`, daveCookie);
      assert.equal(d.status, 401);
      assert.equal(d.headers["x-keygate-error"], "APP_SESSION_ENDED");
      assert.equal((await refusedSoon(`${erin.appUrl}/`, erinCookie)).status, 401);
    });

    it("issue 16 §2 refusal: an unreachable server → 502 with a clear message; one that does not answer in time → 504", async () => {
      const gone = await appServer();
      await new Promise((resolve) => gone.server.close(resolve));
      const carol = await member("Carol", gone.url);
      const cookie = await signIn(carol);
      const r = await get(`${carol.appUrl}/`, { cookie });
      assert.equal(r.status, 502);
      assert.equal(r.headers["x-keygate-error"], "UPSTREAM_UNAVAILABLE");
      assert.match(r.text, /could not reach this app&#39;s server/);
      const slow = await get(`${alice.appUrl}/slow`, { cookie: await signIn(alice) });
      assert.equal(slow.status, 504);
      assert.equal(slow.headers["x-keygate-error"], "UPSTREAM_TIMEOUT");
    });

    it("issue 16 §2: a streamed answer passes through as it comes (the first piece before the app ends it)", async () => {
      const cookie = await signIn(alice);
      const r = await request(`${alice.appUrl}/stream`, { dispatcher: loopback, headers: { cookie } });
      assert.equal(r.statusCode, 200);
      const pieces: { text: string; at: number }[] = [];
      const start = Date.now();
      for await (const chunk of r.body) pieces.push({ text: String(chunk), at: Date.now() - start });
      assert.equal(pieces.map((p) => p.text).join(""), "first\nsecond\n");
      assert.equal(pieces[0]!.text, "first\n");
      assert.ok(pieces.at(-1)!.at - pieces[0]!.at >= 250, `the first piece came ${pieces.at(-1)!.at - pieces[0]!.at} ms before the last`);
    });

    it("issue 16 §2: a large upload (64 MiB) streams to the app server", async () => {
      const cookie = await signIn(alice);
      const chunk = Buffer.alloc(1 << 20, 0x61);
      const body = Readable.from((function* () {
        for (let i = 0; i < 64; i++) yield chunk;
      })());
      const r = await get(`${alice.appUrl}/upload`, { cookie, method: "POST", body, headers: { "content-type": "application/octet-stream" } });
      assert.equal(r.status, 200, r.text);
      assert.equal(JSON.parse(r.text).bytes, 64 << 20);
    });

    it("issue 16 §2: a WebSocket upgrade reaches the app server with the user's identity; without the cookie it is refused", async () => {
      const cookie = await signIn(alice);
      const wsUrl = `${alice.appUrl.replace(/^http/, "ws")}/socket`;
      const ws = new WebSocket(wsUrl, { dispatcher: loopback, headers: { cookie, "x-vibe-user-id": "1" } } as never);
      const reply = await new Promise<string>((resolve, reject) => {
        ws.addEventListener("open", () => ws.send("hello"));
        ws.addEventListener("message", (e) => resolve(String(e.data)));
        ws.addEventListener("error", () => reject(new Error("the WebSocket failed")));
      });
      ws.close();
      assert.equal(reply, `hello from ${alice.bitrixUserId}`);
      const refused = new WebSocket(wsUrl, { dispatcher: loopback } as never);
      const outcome = await new Promise<string>((resolve) => {
        refused.addEventListener("open", () => resolve("open"));
        refused.addEventListener("error", () => resolve("error"));
      });
      assert.equal(outcome, "error");
    });

    it("issue 16 §2: a page of an app cannot use the dashboard's cookie against the management API: no credentialed read is allowed its origin, a write without the CSRF token is refused", async () => {
      const email = `dashboard${++people}@example.com`;
      const user = await createUser(h.kg, null, { email, name: "Dana" });
      await setPassword(h.kg, null, user, PASSWORD);
      const session = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
      ok(session, 201);
      const dashboard = /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(session.headers["set-cookie"]))![1]!;
      const origin = alice.appUrl;
      const read = await h.call("GET", "/v1/keys", { headers: { cookie: dashboard, origin } });
      assert.notEqual(read.headers["access-control-allow-credentials"], "true", "a credentialed cross-origin read stays unreadable to the page");
      const preflight = await h.call("OPTIONS", "/v1/keys", { headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" } });
      assert.notEqual(preflight.headers["access-control-allow-credentials"], "true");
      const body = { portalId, name: "from an app page", scopes: ["crm"] };
      const write = await h.call("POST", "/v1/keys", { headers: { cookie: dashboard, origin }, body });
      assert.equal(write.status, 403, JSON.stringify(write.body));
      assert.equal(write.body.error.code, "ORIGIN_NOT_ALLOWED", "a write from another origin is refused by its Origin");
      // And without Origin (no browser omits it on a cross-origin POST), by the CSRF token the page cannot know.
      const noOrigin = await h.call("POST", "/v1/keys", { headers: { cookie: dashboard }, body });
      assert.equal(noOrigin.status, 403, JSON.stringify(noOrigin.body));
      assert.equal(noOrigin.body.error.code, "CSRF_TOKEN_INVALID");
    });
  });
}
