/**
 * The app runtime in a real browser (issue 16 §2, docs/apps.md): an app's page, opened the way the
 * placement handler sends the browser (`<appUrl>/?…&__init=…`, Chromium resolving
 * `<serverId>.localhost` by itself), cannot read keygate's cookies — neither the runtime's nor the
 * dashboard's — nor use the signed-in dashboard session against the management API: its
 * credentialed reads are blocked by CORS and its writes change nothing.
 */
import assert from "node:assert/strict";
import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { setPassword } from "../../src/accounts/links.ts";
import { sandboxUserFor } from "../../src/upstream/sandbox/setup.ts";
import { type Harness, startHarness } from "../support/gateway.ts";
import { makeKey, makePortal, ok } from "../http/_fixtures.ts";
import { CHROMIUM, PASSWORD } from "./_dashboard.ts";

/** The app's page: it tries what a hostile app would, and shows what it got. */
const page = (dashboard: string, portalId: string) => `<!doctype html><title>app</title><script>
(async () => {
  const out = { cookies: document.cookie };
  const attempt = async (name, init) => {
    try { out[name] = "status " + (await fetch(${JSON.stringify(`${dashboard}/v1/keys`)}, { credentials: "include", ...init })).status; }
    catch { out[name] = "blocked"; }
  };
  await attempt("read", {});
  await attempt("write", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ portalId: ${JSON.stringify(portalId)}, name: "from an app page", scopes: ["crm"] }) });
  await attempt("simpleWrite", { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ portalId: ${JSON.stringify(portalId)}, name: "from an app page", scopes: ["crm"] }) });
  window.result = out;
  document.title = "done";
})();
</script>`;

describe("app runtime in Chromium", () => {
  let h: Harness;
  let app: Server;
  let browser: Browser;
  const seen: IncomingHttpHeaders[] = [];
  let portalId: string;

  before(async () => {
    h = await startHarness("sqlite", { listen: true, allowUpstream: ["127.0.0.1"], apps: {}, startAt: Date.now() });
    portalId = await makePortal(h);
    app = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "set-cookie": "app_own=1; Path=/" }).end(page(h.url!, portalId));
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    browser = await chromium.launch(CHROMIUM);
  });
  after(async () => {
    await browser?.close();
    await h.close();
    app.closeAllConnections();
    app.close();
  });

  it("issue 16 §2: an app's page reads none of keygate's cookies, and the dashboard's session is no use to it against the management API", async () => {
    const owner = h.owner.user;
    await setPassword(h.kg, null, owner, PASSWORD);
    const apiKey = await makeKey(h, portalId, { scopes: ["crm", "vibe:infra"] });
    const appKey = await makeKey(h, portalId, { type: "app", scopes: ["crm"] });
    const server = ok(await h.call("POST", "/v1/infra/servers", { key: apiKey.raw, body: { name: "Hostile app", url: `http://127.0.0.1:${(app.address() as AddressInfo).port}/` } }), 201);
    const bitrixUserId = await sandboxUserFor(h.store, portalId, owner, h.kg.serverSecret, h.clock.now);
    const keysBefore = ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).length;

    // The owner is signed in to the dashboard in this browser.
    const context = await browser.newContext();
    const signIn = await fetch(`${h.url}/v1/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: owner.email, password: PASSWORD }) });
    assert.equal(signIn.status, 201);
    const [name, value] = signIn.headers.getSetCookie()[0]!.split(";")[0]!.split("=") as [string, string];
    await context.addCookies([{ name, value, url: h.url!, httpOnly: true, sameSite: "Lax" }]);

    const tab = await context.newPage();
    await tab.goto(await h.appRuntime!.entryUrl({ serverId: server.id, keyId: appKey.id, userId: owner.id, portalId, bitrixUserId }, { placement: "DEFAULT" }));
    await tab.waitForFunction("document.title === 'done'", undefined, { timeout: 30_000 });
    assert.equal(new URL(tab.url()).searchParams.get("__init"), null, "the token is gone from the address bar");
    const result = await tab.evaluate(() => (globalThis as unknown as { result: Record<string, string> }).result);
    assert.equal(result.cookies, "app_own=1", "the page sees only the app's own cookie");
    assert.equal(result.read, "blocked", "a credentialed read of the management API is blocked");
    assert.equal(result.write, "blocked", "a JSON write does not get past the preflight");
    assert.equal(result.simpleWrite, "blocked");
    assert.equal(ok(await h.call("GET", `/v1/keys?portalId=${portalId}`, { key: h.owner.key })).length, keysBefore, "no write went through");
    const fromBrowser = seen.filter((s) => s["x-vibe-user-id"] !== undefined);
    assert.ok(fromBrowser.length > 0);
    for (const s of fromBrowser) {
      assert.doesNotMatch(String(s.cookie), /keygate_session|_vibe_gw/, "keygate's cookies never reach the app server");
      assert.equal(s["x-vibe-user-id"], String(bitrixUserId));
    }
    await context.close();
  });
});
