/**
 * The dashboard in Chromium, flow by flow as a person goes through it (issue 12, section 2; seeds
 * 001 and 003). One keygate and one browser for the file; the flows build on each other as a
 * person's afternoon does: the key created in one is switched, reissued and revoked in the next.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { type Dashboard, PASSWORD, type Reply, clipboard, codeOf, screenshot, startDashboard } from "./_dashboard.ts";

describe("the dashboard [VibeCode]", () => {
  let d: Dashboard;
  let owner: Page;
  /** The API key created step by step, as copied from the page. */
  let apiKey = "";
  let keyCardUrl = "";

  before(async () => {
    d = await startDashboard("vibecode");
  });
  after(() => d?.close());

  it("issue 12: every page path answers the page; other paths keep the JSON 404; assets are cached for a year", async () => {
    for (const path of ["/", "/sign-in", "/set-password", "/keys", "/keys/abc", "/authorization-keys", "/management-keys", "/portal", "/notifications"]) {
      const r = await fetch(new URL(path, d.url));
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-type")!, /^text\/html/);
      assert.equal(r.headers.get("cache-control"), "no-cache");
    }
    const html = await (await fetch(d.url)).text();
    const asset = /src="(\/assets\/[0-9a-f]+\/app\.js)"/.exec(html)![1]!;
    const js = await fetch(new URL(asset, d.url));
    assert.equal(js.status, 200);
    assert.equal(js.headers.get("cache-control"), "public, max-age=31536000, immutable");
    const again = await fetch(new URL(asset, d.url), { headers: { "if-none-match": js.headers.get("etag")! } });
    assert.equal(again.status, 304);
    const missing = await fetch(new URL("/nowhere", d.url));
    assert.equal(missing.status, 404);
    assert.equal(codeOf((await missing.json()) as Reply["body"]), "ROUTE_NOT_FOUND");
    assert.equal((await fetch(new URL("/assets/000000000000/app.js", d.url))).status, 404);
    // The page routes are not the API: absent from the OpenAPI document.
    const paths = Object.keys(((await d.api("GET", "/v1/openapi.json", "")).body as unknown as { paths?: object }).paths ?? {});
    assert.ok(!paths.includes("/keys") && !paths.includes("/"));
  });

  it("seed 003: sign in with Email and Password; a wrong password is refused without saying whether the email exists", async () => {
    const context = await d.newContext();
    const page = await context.newPage();
    await page.goto("/keys");
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.getByLabel("Email").fill("owner@example.com");
    await page.getByLabel("Password").fill("not the password at all");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "INVALID_CREDENTIALS" }).waitFor();
    await screenshot(page, "sign-in");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    // Back where they were going.
    await page.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();
    assert.equal(new URL(page.url()).pathname, "/keys");
    owner = await d.signedIn("owner@example.com");
  });

  it("seed 003: create an API key step by step — Name, Scopes in two tabs, Expiration, Request limit, Allowed IPs, Access mode, Save — and the key is shown once", async () => {
    await owner.getByRole("button", { name: "Create" }).click();
    const form = owner.getByRole("dialog");
    // Focus is in the dialog, on its first field.
    assert.equal(await form.getByLabel("Name").evaluate((el) => el === el.ownerDocument.activeElement), true);
    await form.getByLabel("Name").fill("CRM sync");
    // Saving without a scope is refused: at least one, and the auto-granted ones do not count.
    await form.getByRole("button", { name: "Save" }).click();
    await form.getByText("Select at least one scope.").waitFor();
    assert.deepEqual(await form.getByRole("tab").allInnerTexts(), ["Bitrix24", "VibeCode"]);
    await form.getByRole("tab", { name: "VibeCode" }).click();
    for (const scope of ["vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]) {
      const box = form.getByRole("checkbox", { name: scope, exact: true });
      assert.equal(await box.isChecked(), true, scope);
      assert.equal(await box.isDisabled(), true, scope);
    }
    for (const scope of ["vibe:security", "vibe:analytics", "vibe:airouter"]) {
      assert.equal(await form.getByRole("checkbox", { name: scope, exact: true }).isDisabled(), true, scope);
      assert.match(await form.getByRole("checkbox", { name: scope, exact: true }).getAttribute("aria-describedby").then((id) => owner.locator(`#${id}`).innerText()), /reserved/);
    }
    // Issue 17 §2: this keygate connects no AI provider nor search engine; the picker says so (vibe:infra is no section of keygate's).
    const description = (scope: string) => form.getByRole("checkbox", { name: scope, exact: true }).getAttribute("aria-describedby").then((id) => owner.locator(`#${id}`).innerText());
    for (const scope of ["vibe:ai", "vibe:search"]) assert.match(await description(scope), /not connected on this keygate/, scope);
    assert.doesNotMatch(await description("vibe:infra"), /not connected/);
    await screenshot(owner, "create-key-vibecode-tab");
    // A recipe of "How to choose scopes for a task" is one click.
    await form.getByRole("button", { name: "Dashboard over deals, contacts, companies" }).click();
    await form.getByRole("tab", { name: "Bitrix24" }).click();
    assert.equal(await form.getByRole("checkbox", { name: "crm", exact: true }).isChecked(), true);
    assert.equal(await form.getByRole("checkbox", { name: "user", exact: true }).isChecked(), true);
    assert.match(await owner.locator(`#${await form.getByRole("checkbox", { name: "crm", exact: true }).getAttribute("aria-describedby")}`).innerText(), /Deals, leads, contacts/);
    assert.deepEqual(await form.getByLabel("Expiration").locator("option").allInnerTexts(), ["No limit", "30 days", "90 days", "180 days", "365 days"]);
    await form.getByLabel("Expiration").selectOption({ label: "90 days" });
    await form.getByLabel("Request limit").fill("5");
    await form.getByText("Advanced settings").click();
    // Checked as typed: a bad line is named at once.
    await form.getByLabel("Allowed IPs").fill("127.0.0.1\n10.0.0.0/8");
    await form.getByText("Line 2: 10.0.0.0/8 is not an exact IPv4 or IPv6 address").waitFor();
    await form.getByLabel("Allowed IPs").fill("127.0.0.1\n::1");
    assert.equal(await form.getByText("Line 2:").count(), 0);
    assert.equal(await form.getByRole("radio", { name: "Read and write" }).isChecked(), true, "the portal's default policy");
    await screenshot(owner, "create-key");
    await form.getByRole("button", { name: "Save" }).click();
    await form.getByText("it is shown once and cannot be shown again").waitFor();
    await form.getByRole("button", { name: "Copy" }).click();
    await form.getByText("Copied").waitFor();
    apiKey = await clipboard(owner);
    assert.match(apiKey, /^vibe_api_/);
    assert.equal(await form.getByLabel("Your new key").inputValue(), apiKey);
    await screenshot(owner, "key-shown-once");
    await form.getByRole("link", { name: "Open the key card" }).click();
    await owner.getByRole("heading", { name: "CRM sync", level: 1 }).waitFor();
    keyCardUrl = owner.url();
  });

  it("seed 003: the copied key calls the API", async () => {
    const deals = await d.api("GET", "/v1/deals?limit=2", apiKey);
    assert.equal(deals.status, 200, JSON.stringify(deals.body));
    const me = await d.api("GET", "/v1/me", apiKey);
    assert.deepEqual((me.body.data as { rateLimit: { requestsPerSecond: number } }).rateLimit.requestsPerSecond, 5);
  });

  it("seed 003: the key card shows the key, its usage and audit trail; switched to Read-only, a write is refused", async () => {
    await owner.goto(keyCardUrl);
    await owner.getByRole("heading", { name: "CRM sync", level: 1 }).waitFor();
    await owner.getByRole("cell", { name: "GET /v1/deals", exact: true }).first().waitFor();
    assert.equal(await owner.getByRole("img", { name: /Requests per minute over the last hour: 2 in all/ }).count(), 1);
    await owner.getByRole("cell", { name: "127.0.0.1" }).first().waitFor();
    await owner.getByText("key.create").waitFor();
    const settings = owner.getByRole("region", { name: "Settings" });
    await settings.getByRole("radio", { name: "Read-only" }).check();
    await settings.getByRole("button", { name: "Save" }).click();
    await settings.getByText("Saved").waitFor();
    const write = await d.api("POST", "/v1/deals", apiKey, { title: "Blocked" });
    assert.equal(write.status, 403);
    assert.equal(codeOf(write.body), "WRITE_BLOCKED_READONLY_KEY");
    assert.equal((await d.api("GET", "/v1/deals?limit=1", apiKey)).status, 200, "reads still pass");
    await owner.reload();
    await owner.getByText("key.update").first().waitFor();
    await screenshot(owner, "key-card", { fullPage: true });
  });

  it("seed 003: Reissue states the 24-hour transition and shows the new key once; both work meanwhile", async () => {
    await owner.getByRole("button", { name: "Reissue" }).click();
    const dialog = owner.getByRole("dialog");
    await dialog.getByText("keeps working for 24 hours").waitFor();
    await dialog.getByRole("button", { name: "Reissue" }).click();
    const fresh = await dialog.getByLabel("The new key").inputValue();
    assert.match(fresh, /^vibe_api_/);
    assert.notEqual(fresh, apiKey);
    assert.equal((await d.api("GET", "/v1/me", fresh)).status, 200);
    assert.equal((await d.api("GET", "/v1/me", apiKey)).status, 200, "the old key works until the transition ends");
    await dialog.getByRole("button", { name: "Open the new key" }).click();
    await owner.getByRole("heading", { name: "CRM sync", level: 1 }).waitFor();
    apiKey = fresh;
  });

  it("seed 003: Revoke refuses the key at once; Delete explains the 409", async () => {
    await owner.getByRole("button", { name: "Revoke" }).click();
    await owner.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
    await owner.getByText("Revoked", { exact: true }).first().waitFor();
    const refused = await d.api("GET", "/v1/me", apiKey);
    assert.equal(refused.status, 401);
    assert.equal(codeOf(refused.body), "KEY_INACTIVE");
    await owner.getByRole("button", { name: "Delete" }).click();
    await owner.getByRole("dialog").getByText("409 KEY_HAS_ACTIVE_SERVERS").waitFor();
    // Escape closes the dialog and gives focus back to the button that opened it.
    await owner.keyboard.press("Escape");
    assert.equal(await owner.getByRole("dialog").count(), 0);
    assert.equal(await owner.getByRole("button", { name: "Delete" }).evaluate((el) => el === el.ownerDocument.activeElement), true);
  });

  it("seed 003: an administrator's Default portal policy binds members; the administrator changing a member's key mode tells its owner", async () => {
    await d.person("member@example.com", "MEMBER");
    await owner.goto("/keys");
    const policy = owner.getByRole("region", { name: "Default portal policy" });
    await policy.getByRole("radio", { name: "Read-only" }).check();
    await policy.getByRole("button", { name: "Save" }).click();
    await policy.getByText("Saved").waitFor();
    await screenshot(owner, "api-keys");

    const member = await d.signedIn("member@example.com");
    assert.equal(await member.getByRole("region", { name: "Default portal policy" }).count(), 0, "administrators only");
    assert.equal(await member.getByRole("link", { name: "Portal settings" }).count(), 0);
    await member.getByRole("button", { name: "Create" }).click();
    const form = member.getByRole("dialog");
    await form.getByLabel("Name").fill("Reports");
    await form.getByRole("checkbox", { name: "crm", exact: true }).check();
    assert.equal(await form.getByRole("radio", { name: "Read-only" }).isChecked(), true);
    assert.equal(await form.getByRole("radio", { name: "Read and write" }).isDisabled(), true);
    await form.getByRole("button", { name: "Save" }).click();
    await form.getByRole("button", { name: "Done" }).click();

    // The administrator sees every member's keys with their owner, and switches the member's key.
    await owner.reload();
    await owner.getByRole("cell", { name: "member@example.com" }).waitFor();
    await owner.getByRole("link", { name: "Reports" }).click();
    const settings = owner.getByRole("region", { name: "Settings" });
    await settings.getByRole("radio", { name: "Read and write" }).check();
    await settings.getByRole("button", { name: "Save" }).click();
    await settings.getByText("Saved").waitFor();

    await member.getByRole("link", { name: "Notifications" }).click();
    await member.getByText(/A portal administrator changed the mode of your key "Reports"/).waitFor();
    await screenshot(member, "notifications");
    // One user cannot open another's key through the dashboard.
    const ownersKeys = (await d.kg.store.listKeys({ ownerId: d.owner.id })).filter((k) => k.portalId !== null);
    await member.goto(`/keys/${ownersKeys[0]!.id}`);
    await member.getByRole("alert").filter({ hasText: "KEY_NOT_FOUND" }).waitFor();
  });

  it("seed 003: an authorization key has the shorter form, Name and Scopes, and is shown once", async () => {
    await owner.goto("/authorization-keys");
    await owner.getByRole("heading", { name: "Authorization Keys", level: 1 }).waitFor();
    await owner.getByRole("button", { name: "Create" }).click();
    const form = owner.getByRole("dialog");
    await form.getByLabel("Name").fill("CRM Dashboard app");
    await form.getByRole("checkbox", { name: "crm", exact: true }).check();
    assert.equal(await form.getByLabel("Expiration").count(), 0);
    assert.equal(await form.getByLabel("Request limit").count(), 0);
    assert.equal(await form.getByLabel("Allowed IPs").count(), 0);
    await screenshot(owner, "create-authorization-key");
    await form.getByRole("button", { name: "Save" }).click();
    const key = await form.getByLabel("Your new key").inputValue();
    assert.match(key, /^vibe_app_/);
    await form.getByRole("button", { name: "Done" }).click();
    await owner.getByRole("link", { name: "CRM Dashboard app" }).waitFor();
    await screenshot(owner, "authorization-keys");
    assert.equal((await d.api("GET", "/v1/me", key)).status, 200);
  });

  it("seed 001: any user creates a management key with the management scopes they pick; it manages keys and nothing else", async () => {
    await owner.getByRole("link", { name: "Management keys" }).click();
    await owner.getByRole("heading", { name: "Management keys", level: 1 }).waitFor();
    await owner.getByRole("button", { name: "Create" }).click();
    const form = owner.getByRole("dialog");
    await form.getByLabel("Name").fill("Key automation");
    await form.getByRole("checkbox", { name: "vibe:mgmt:keys", exact: true }).check();
    await form.getByRole("button", { name: "Save" }).click();
    const key = await form.getByLabel("Your new key").inputValue();
    assert.match(key, /^vibe_live_/);
    await form.getByRole("button", { name: "Done" }).click();
    await owner.getByRole("link", { name: "Key automation" }).waitFor();
    await screenshot(owner, "management-keys");
    assert.equal((await d.api("GET", `/v1/keys?portalId=${d.portal.id}`, key)).status, 200);
    const portals = await d.api("GET", "/v1/portals", key);
    assert.equal(portals.status, 403);
    assert.equal(codeOf(portals.body), "MANAGEMENT_SCOPE_REQUIRED");
  });

  it("issue 12: Portal settings — name, upstream, request limit, members: invite with a one-time link, change a role, remove", async () => {
    await owner.getByRole("link", { name: "Portal settings" }).click();
    await owner.getByRole("heading", { name: "Portal settings", level: 1 }).waitFor();
    await owner.getByLabel("Portal name").fill("Sandbox portal");
    await owner.getByLabel("Request limit").fill("20");
    await owner.getByRole("region", { name: "Portal", exact: true }).getByRole("button", { name: "Save" }).click();
    await owner.getByRole("region", { name: "Portal", exact: true }).getByText("Saved").waitFor();
    await owner.getByRole("button", { name: "Test connection" }).click();
    await owner.getByText("Connected: The built-in sandbox portal is part of this keygate.").waitFor();
    const portal = await d.kg.store.getPortal(d.portal.id);
    assert.equal(portal?.name, "Sandbox portal");
    assert.equal(portal?.requestLimit, 20);
    await owner.getByRole("button", { name: "Invite" }).click();
    const invite = owner.getByRole("dialog");
    await invite.getByLabel("Email").fill("newcomer@example.com");
    await invite.getByLabel("Role").selectOption({ label: "Member" });
    await invite.getByRole("button", { name: "Invite" }).click();
    const link = await invite.getByLabel("One-time link for newcomer@example.com").inputValue();
    assert.match(link, /\/set-password\?token=/);
    await invite.getByRole("button", { name: "Done" }).click();
    await owner.getByText("newcomer@example.com (Member)").waitFor();
    await owner.getByLabel("Role of member@example.com").selectOption({ label: "Administrator" });
    await owner.getByRole("button", { name: "Remove member@example.com" }).waitFor();
    await screenshot(owner, "portal-settings", { fullPage: true });

    // The invitee opens the link, sets a password and is a member.
    const context = await d.newContext();
    const page = await context.newPage();
    await page.goto(link);
    await page.getByLabel("Password").fill("a new long password");
    await page.getByRole("button", { name: "Set password" }).click();
    await page.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();
  });

  it("issue 12: readable on a narrow screen and usable with the keyboard alone", async () => {
    await owner.setViewportSize({ width: 360, height: 740 });
    await owner.goto("/keys");
    await owner.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();
    const overflow = await owner.locator("html").evaluate((html) => html.scrollWidth - html.clientWidth);
    assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
    await screenshot(owner, "api-keys-narrow", { fullPage: true });
    // Tab reaches Create; Enter opens the form with focus inside; Escape closes it.
    await owner.getByRole("button", { name: "Create" }).focus();
    await owner.keyboard.press("Enter");
    await owner.getByRole("dialog").waitFor();
    await owner.keyboard.type("Typed by keyboard");
    assert.equal(await owner.getByRole("dialog").getByLabel("Name").inputValue(), "Typed by keyboard");
    await owner.keyboard.press("Escape");
    assert.equal(await owner.getByRole("dialog").count(), 0);
  });
});
