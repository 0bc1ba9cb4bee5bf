/**
 * The OAuth flow of an authorization key in a real browser (issue 15, "Tests and measurements"):
 * Debian's Chromium opens the app's authorize URL, signs in on the dashboard's page, sees the
 * consent page, allows or denies, and lands on the app's callback (a small HTTP server here) or on
 * keygate's /oauth/complete page; the app then exchanges the code with PKCE, calls the API for the
 * user, polls, revokes. The consent page refuses to be framed (clickjacking).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { type Server, createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { issueManagementKey } from "../../src/manage/users.ts";
import { type Dashboard, PASSWORD, startDashboard } from "./_dashboard.ts";

describe("issue 15: OAuth sessions in a browser", () => {
  let d: Dashboard;
  let app: Server;
  let appUrl: string;
  let appKey: string;
  /** The queries the app's callback received, newest last. */
  const callbacks: URLSearchParams[] = [];

  before(async () => {
    d = await startDashboard();
    await d.person("member@example.com", "MEMBER");
    // The app's own server: its callback, and a page of its that tries to frame the consent page.
    app = createServer((req, res) => {
      const url = new URL(req.url!, "http://app");
      if (url.pathname === "/callback") {
        callbacks.push(url.searchParams);
        res.writeHead(200, { "content-type": "text/html" }).end("<h1>Back in the app</h1>");
      } else res.writeHead(200, { "content-type": "text/html" }).end(`<iframe id="consent" src="${url.searchParams.get("src")}"></iframe>`);
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    appUrl = `http://127.0.0.1:${(app.address() as { port: number }).port}`;
    const manage = (await issueManagementKey(d.kg, d.owner, d.kg.profile.management.scopes)).rawKey;
    const made = await d.api("POST", "/v1/keys", manage, { portalId: d.portal.id, type: "app", name: "CRM Dashboard", scopes: ["crm"], redirectUris: [`${appUrl}/callback`] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    appKey = (made.body.data as { rawKey: string }).rawKey;
  });
  after(async () => {
    await d.close();
    await new Promise((resolve) => app.close(resolve));
  });

  const authorize = (params: Record<string, string>) => `/v1/oauth/authorize?${new URLSearchParams({ app_key: appKey, ...params })}`;
  const signIn = async (page: Page, email: string) => {
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
  };
  const call = async (method: string, path: string, headers: Record<string, string>, body?: unknown) => {
    const r = await fetch(new URL(path, d.url), { method, headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> & { data?: Record<string, unknown> } };
  };

  it("the key card of an authorization key edits its redirect URIs (the dashboard's Authorization Keys section)", async () => {
    const page = await d.signedIn("owner@example.com");
    const keys = await page.evaluate(async (portalId) => (await (await fetch(`/v1/keys?portalId=${portalId}`)).json()) as { data: { id: string; name: string }[] }, d.portal.id);
    const id = keys.data.find((k) => k.name === "CRM Dashboard")!.id;
    await page.goto(`/keys/${id}`);
    const field = page.getByLabel("Redirect URIs");
    assert.equal(await field.inputValue(), `${appUrl}/callback`);
    await field.fill(`${appUrl}/callback\n${appUrl}/other`);
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("status").filter({ hasText: "Saved" }).waitFor();
    const manage = (await issueManagementKey(d.kg, d.owner, d.kg.profile.management.scopes)).rawKey;
    assert.deepEqual(((await d.api("GET", `/v1/keys/${id}`, manage)).body.data as { redirectUris: string[] }).redirectUris, [`${appUrl}/callback`, `${appUrl}/other`]);
  });

  it("sign-in, consent, Allow → the app's callback with code and state → token (PKCE) → a data call as the user → revoke", async () => {
    const state = randomBytes(16).toString("hex");
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    const page = await (await d.newContext()).newPage();
    await page.goto(authorize({ state, redirect_uri: `${appUrl}/callback`, code_challenge: challenge, code_challenge_method: "S256" }));
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await signIn(page, "member@example.com");
    await page.getByRole("heading", { name: "Authorize CRM Dashboard" }).waitFor();
    assert.match(await page.locator("#portal").innerText(), /sandbox\.example\.com/);
    assert.deepEqual(await page.locator("#scopes li").allInnerTexts(), ["crm"]);
    await page.getByRole("button", { name: "Allow" }).click();
    await page.getByRole("heading", { name: "Back in the app" }).waitFor();
    const back = callbacks.at(-1)!;
    assert.equal(back.get("state"), state);
    const code = back.get("code")!;

    const token = await call("POST", "/v1/oauth/token", {}, { grant_type: "authorization_code", app_key: appKey, code, redirect_uri: `${appUrl}/callback`, code_verifier: verifier });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    const session = token.body.access_token as string;
    const asUser = { "x-api-key": appKey, authorization: `Bearer ${session}` };
    const me = await call("GET", "/v1/me", asUser);
    assert.equal(typeof (me.body.data!.currentUser as { bitrixUserId: number }).bitrixUserId, "number");
    const deals = await call("GET", "/v1/deals", asUser);
    assert.equal(deals.status, 200, JSON.stringify(deals.body));
    assert.equal((deals.body.data as unknown as unknown[]).length, 6);

    assert.equal((await call("POST", "/v1/oauth/revoke", {}, { token: session })).status, 200);
    assert.equal(((await call("GET", "/v1/deals", asUser)).body.error as { code: string }).code, "INVALID_SESSION");
  });

  it("Deny → the callback gets error=access_denied and the state, and no code", async () => {
    const state = randomBytes(16).toString("hex");
    const page = await (await d.newContext()).newPage();
    await page.goto(authorize({ state, redirect_uri: `${appUrl}/callback` }));
    await signIn(page, "member@example.com");
    await page.getByRole("button", { name: "Deny" }).click();
    await page.getByRole("heading", { name: "Back in the app" }).waitFor();
    const back = callbacks.at(-1)!;
    assert.equal(back.get("error"), "access_denied");
    assert.equal(back.get("state"), state);
    assert.equal(back.get("code"), null);
  });

  it("the zero-config flow: no redirect_uri → keygate's /oauth/complete page, and the app's poll gets the session once", async () => {
    const state = randomBytes(16).toString("hex");
    const poll = () => call("GET", `/v1/oauth/poll?state=${state}`, { "x-api-key": appKey });
    assert.equal((await poll()).body.status, "pending");
    const page = await (await d.newContext()).newPage();
    await page.goto(authorize({ state }));
    await signIn(page, "member@example.com");
    await page.getByRole("button", { name: "Allow" }).click();
    await page.getByRole("heading", { name: "App authorized" }).waitFor();
    assert.match(await page.locator("main").innerText(), /may continue/);
    const done = await poll();
    assert.equal(done.body.status, "complete");
    assert.equal((await call("GET", "/v1/deals", { "x-api-key": appKey, authorization: `Bearer ${done.body.access_token as string}` })).status, 200);
    assert.equal((await poll()).status, 400, "retrieval is single-use");
  });

  it("clickjacking: another page cannot frame the consent page (frame-ancestors 'none')", async () => {
    const context = await d.newContext();
    const page = await context.newPage();
    await page.goto("/sign-in");
    await signIn(page, "member@example.com");
    await page.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();
    const consent = new URL(authorize({ state: randomBytes(16).toString("hex"), redirect_uri: `${appUrl}/callback` }), d.url).href;
    // Signed in, the consent page itself opens.
    const direct = await context.newPage();
    await direct.goto(consent);
    await direct.getByRole("button", { name: "Allow" }).waitFor();
    const framing = await context.newPage();
    await framing.goto(`${appUrl}/frame?src=${encodeURIComponent(consent)}`);
    await framing.waitForTimeout(1_000);
    const frame = framing.frames().find((f) => f !== framing.mainFrame());
    const text = frame === undefined ? "" : await frame.evaluate(() => (globalThis as unknown as { document: { body?: { innerText: string } } }).document.body?.innerText ?? "").catch(() => "");
    assert.doesNotMatch(text, /Allow/, "the consent page did not render inside the frame");
  });
});
