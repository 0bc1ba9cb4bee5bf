/**
 * An embedded app end to end in Chromium (issue 16, "Tests and measurements"; seed 003 "Embedding
 * an app in the portal"): a developer's authorization key registers its app server
 * (examples/embedded-app.ts, started here) and binds a place on the sandbox portal with keygate's
 * own handler; another member of the portal signs in, opens the place on the sandbox's page, which
 * posts to the handler what Bitrix24 posts, into a frame as Bitrix24 does; the handler checks the
 * portal's authorization and sends the frame to the app runtime with __init, which sets its cookie
 * and lets the app's page through. The app server sees keygate's identity headers, reads its user
 * with GET /v1/me and the user's deals with the injected session, and the page's own script finds
 * no session token anywhere.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Browser, type Frame, chromium } from "playwright-core";
import { type EmbeddedApp, startEmbeddedApp } from "../../examples/embedded-app.ts";
import { sandboxUserFor, seedDemoData } from "../../src/upstream/sandbox/setup.ts";
import { type Harness, startHarness } from "../support/gateway.ts";
import { OAUTH_CALLBACK, PASSWORD, makeKey, makePortal, member, ok, sessionOf } from "../http/_fixtures.ts";
import { CHROMIUM, screenshot } from "./_dashboard.ts";

describe("an embedded app in Chromium", () => {
  let h: Harness;
  let app: EmbeddedApp;
  let browser: Browser;
  let portalId: string;
  let server: { id: string; appUrl: string };
  let user: { id: string; email: string };

  before(async () => {
    h = await startHarness("sqlite", { listen: true, allowUpstream: ["127.0.0.1"], apps: {}, startAt: Date.now() });
    portalId = await makePortal(h);
    await seedDemoData(h.store, portalId);
    const appKey = await makeKey(h, portalId, { type: "app", name: "Deal helper", scopes: ["crm", "placement", "user", "vibe:infra"], redirectUris: [OAUTH_CALLBACK] });
    const developer = await member(h, portalId, "ADMIN", "Dev Eloper");
    const session = await sessionOf(h, appKey.raw, developer.cookie);
    app = await startEmbeddedApp({ keygate: h.url!, appKey: appKey.raw });
    server = ok(await h.call("POST", "/v1/infra/servers", { key: appKey.raw, bearer: session, body: { name: "Deal helper", url: app.url } }), 201);
    // Over the socket, as a developer's script calls it: the default handler is on the address the call came to.
    const bound = await fetch(`${h.url}/v1/placements/bind`, { method: "POST", headers: { "x-api-key": appKey.raw, authorization: `Bearer ${session}`, "content-type": "application/json" }, body: JSON.stringify({ placement: "CRM_DEAL_DETAIL_TAB", title: "Deal helper" }) });
    assert.equal(bound.status, 201, await bound.clone().text());
    assert.equal(((await bound.json()) as { data: { handler: string } }).data.handler, `${h.url}/v1/bitrix-handler?app=${server.id}`);
    user = await member(h, portalId, "MEMBER", "Zoë Member");
    browser = await chromium.launch(CHROMIUM);
  });
  after(async () => {
    await browser?.close();
    await app?.close();
    await h?.close();
  });

  it("issue 16: bind a place on the sandbox, open it as a member in the portal's frame, land in the app with the member's identity and deals; the page finds no token", async () => {
    const context = await browser.newContext({ baseURL: h.url });
    context.setDefaultTimeout(90_000);
    const page = await context.newPage();
    await page.goto("/sign-in");
    await page.getByLabel("Email").fill(user.email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();

    await page.goto(`/sandbox/${portalId}/placements`);
    await page.getByRole("row", { name: /CRM_DEAL_DETAIL_TAB/ }).getByRole("link", { name: "Open" }).click();
    const frame = page.frameLocator('iframe[title="Deal helper"]');
    await frame.getByRole("heading", { name: "Hello, Zoë Member" }).waitFor();

    const bitrixUserId = String(await sandboxUserFor(h.store, portalId, (await h.kg.store.getUser(user.id))!, h.kg.serverSecret, h.clock.now));
    assert.equal(await frame.locator("#header-user").textContent(), bitrixUserId, "X-Vibe-User-Id: the member who opened it, not the developer");
    assert.equal(await frame.locator("#me-user").textContent(), bitrixUserId, "GET /v1/me with the injected session: currentUser.bitrixUserId");
    assert.equal(await frame.locator("#role").textContent(), "MEMBER");
    assert.equal(await frame.locator("#portal").textContent(), portalId);
    assert.ok((await frame.locator("#deals li").count()) > 0, "the member's deals, read with the injected session");
    assert.equal(await frame.locator("#token-check").textContent(), "none", "no session token in cookies, storage or the URL");

    // The frame is the app's own origin: its script sees none of keygate's cookies (HttpOnly), and its URL no __init.
    const appFrame = page.frames().find((f: Frame) => f.url().startsWith(server.appUrl))!;
    assert.ok(appFrame, `a frame on ${server.appUrl}`);
    assert.equal(new URL(appFrame.url()).searchParams.get("__init"), null, "the __init token is gone from the address");
    assert.equal(new URL(appFrame.url()).searchParams.get("placement"), "CRM_DEAL_DETAIL_TAB");
    // (A frame of another site may be denied storage: then nothing is kept there either.)
    const visible = (await appFrame.evaluate(`(() => {
      const size = (name) => { try { return window[name].length; } catch { return 0; } };
      return { cookies: document.cookie, stored: size("localStorage") + size("sessionStorage") };
    })()`)) as { cookies: string; stored: number };
    assert.doesNotMatch(visible.cookies, /_vibe_gw|keygate_session|vibe_session_/);
    assert.equal(visible.stored, 0);

    // The app server saw keygate's identity, with the session the browser never held.
    const seen = app.seen.at(-1)!;
    assert.equal(seen["x-vibe-user-id"], bitrixUserId);
    assert.equal(seen["x-vibe-portal-id"], portalId);
    assert.equal(seen["x-vibe-user-role"], "MEMBER");
    assert.equal(decodeURIComponent(String(seen["x-vibe-user-name-encoded"])), "Zoë Member");
    assert.match(String(seen["x-vibe-authorization"]), /^Bearer vibe_session_/);
    assert.match(String(seen["x-vibe-request-id"]), /\S/);
    assert.doesNotMatch(String(seen.cookie ?? ""), /_vibe_gw|keygate_session/, "keygate's cookies never reach the app server");
    await screenshot(page, "embedded-app");
    await context.close();
  });
});
