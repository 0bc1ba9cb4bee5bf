/**
 * Issue 15 §2 in a real browser: an app on a real Bitrix24 portal — here a portal of kind bitrix24
 * whose webhook and application are the sandbox portal's, with the sandbox's token server — is
 * authorized through keygate's consent page and then the portal's own Bitrix24 authorization:
 * Chromium follows every redirect (keygate → the portal → keygate's callback → the app), and the
 * app's session then reads the portal's data with the user's Bitrix24 access token.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { type Server, createServer } from "node:http";
import { after, before, describe, it } from "node:test";
import { addMember, createPortal } from "../../src/manage/portals.ts";
import { issueManagementKey } from "../../src/manage/users.ts";
import { loadBitrix24Tokens } from "../../src/oauth/bitrix24-tokens.ts";
import { sandboxApp, sandboxWebhookToken, sandboxWebhookUrl } from "../../src/upstream/sandbox/index.ts";
import { type Dashboard, PASSWORD, startDashboard } from "./_dashboard.ts";

describe("issue 15 §2: a real Bitrix24 portal's OAuth in a browser", () => {
  let d: Dashboard;
  let app: Server;
  let appUrl: string;
  let appKey: string;
  let portalId: string;
  const callbacks: URLSearchParams[] = [];

  before(async () => {
    d = await startDashboard("vibecode", { bitrix24TokenUrl: "/sandbox/oauth/token/" });
    const actor = { user: d.owner, keyId: null, ip: null };
    const webhookUrl = sandboxWebhookUrl(d.url, d.portal.id, sandboxWebhookToken(d.kg.serverSecret, d.portal.id));
    const portal = await createPortal(d.kg, actor, { domain: "acme.bitrix24.ru", name: "Acme", upstream: { kind: "bitrix24", webhookUrl, ...sandboxApp(d.kg.serverSecret, d.portal.id) } });
    portalId = portal.id;
    await d.person("member@example.com", "MEMBER");
    await addMember(d.kg, actor, portal.id, { email: "member@example.com", role: "MEMBER" });
    app = createServer((req, res) => {
      const url = new URL(req.url!, "http://app");
      if (url.pathname === "/callback") callbacks.push(url.searchParams);
      res.writeHead(200, { "content-type": "text/html" }).end("<h1>Back in the app</h1>");
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    appUrl = `http://127.0.0.1:${(app.address() as { port: number }).port}`;
    const manage = (await issueManagementKey(d.kg, d.owner, d.kg.profile.management.scopes)).rawKey;
    const made = await d.api("POST", "/v1/keys", manage, { portalId: portal.id, type: "app", name: "CRM Dashboard", scopes: ["crm"], redirectUris: [`${appUrl}/callback`] });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    appKey = (made.body.data as { rawKey: string }).rawKey;
  });
  after(async () => {
    await d.close();
    await new Promise((resolve) => app.close(resolve));
  });

  it("issue 15 §2: sign-in, consent, Allow → the portal's Bitrix24 authorize → keygate's callback → the app's callback → token (PKCE) → the portal's deals with the user's access token", async () => {
    const state = randomBytes(16).toString("hex");
    const verifier = randomBytes(32).toString("base64url");
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    const page = await (await d.newContext()).newPage();
    const portalVisits: string[] = [];
    page.on("request", (r) => {
      if (r.isNavigationRequest()) portalVisits.push(new URL(r.url()).pathname);
    });
    await page.goto(`/v1/oauth/authorize?${new URLSearchParams({ app_key: appKey, state, redirect_uri: `${appUrl}/callback`, code_challenge: challenge, code_challenge_method: "S256" })}`);
    await page.getByLabel("Email").fill("member@example.com");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Authorize CRM Dashboard" }).waitFor();
    assert.match(await page.locator("#portal").innerText(), /acme\.bitrix24\.ru/);
    await page.getByRole("button", { name: "Allow" }).click();
    await page.getByRole("heading", { name: "Back in the app" }).waitFor();
    assert.ok(portalVisits.includes(`/sandbox/${d.portal.id}/oauth/authorize/`), `the browser went through the portal's authorization: ${portalVisits.join(" → ")}`);
    assert.ok(portalVisits.includes("/v1/oauth/bitrix24/callback"));
    const back = callbacks.at(-1)!;
    assert.equal(back.get("state"), state);

    const r = await fetch(`${d.url}/v1/oauth/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ grant_type: "authorization_code", app_key: appKey, code: back.get("code")!, redirect_uri: `${appUrl}/callback`, code_verifier: verifier }) });
    const token = (await r.json()) as { access_token: string };
    assert.equal(r.status, 200, JSON.stringify(token));
    const deals = await fetch(`${d.url}/v1/deals`, { headers: { "x-api-key": appKey, authorization: `Bearer ${token.access_token}` } });
    const body = (await deals.json()) as { data: unknown[] };
    assert.equal(deals.status, 200, JSON.stringify(body));
    assert.equal(body.data.length, 6);
    const me = await d.kg.store.getUserByEmail("member@example.com");
    assert.equal((await loadBitrix24Tokens(d.kg, portalId, me!.id))?.memberId.length, 32, "the user's tokens are stored");
  });
});
