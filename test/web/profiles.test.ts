/**
 * The dashboard renders from the profile (issue 12, section 2; seeds 002 and 004): Atender's
 * bundles, RogerIQ's coarse and granular scopes side by side with a key's scopes updated in place,
 * and the management keys every profile has.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Dashboard, screenshot, startDashboard } from "./_dashboard.ts";

describe("the dashboard [RogerIQ]", () => {
  let d: Dashboard;
  before(async () => {
    d = await startDashboard("rogeriq");
  });
  after(() => d?.close());

  it("seed 004: coarse and granular scopes side by side; a recipe is one click; the key's scopes are updated in place", async () => {
    const page = await d.signedIn("owner@example.com");
    assert.equal(await page.getByRole("link", { name: "Authorization Keys" }).count(), 0, "RogerIQ has no authorization keys");
    await page.getByRole("button", { name: "Create" }).click();
    const form = page.getByRole("dialog");
    await form.getByLabel("Name").fill("kb-bot");
    for (const coarse of ["read", "write", "admin"]) await form.getByRole("checkbox", { name: coarse, exact: true }).waitFor();
    await form.getByRole("button", { name: "Least-privilege key for an AI that drafts KB articles" }).click();
    assert.equal(await form.getByRole("checkbox", { name: "kb:write", exact: true }).isChecked(), true);
    assert.equal(await form.getByRole("checkbox", { name: "conversations:read", exact: true }).isChecked(), true);
    assert.equal(await form.getByRole("checkbox", { name: "read", exact: true }).isChecked(), false);
    await screenshot(page, "create-key-rogeriq");
    await form.getByRole("button", { name: "Save" }).click();
    const key = await form.getByLabel("Your new key").inputValue();
    assert.match(key, /^riq_/);
    await form.getByRole("link", { name: "Open the key card" }).click();
    await page.getByRole("heading", { name: "kb-bot", level: 1 }).waitFor();

    const settings = page.getByRole("region", { name: "Settings" });
    await settings.getByRole("checkbox", { name: "analytics:read", exact: true }).check();
    await settings.getByRole("button", { name: "Save" }).click();
    await settings.getByText("Saved").waitFor();
    const inEffect = page.getByRole("region", { name: "Scopes in effect" });
    await inEffect.getByText("analytics:read", { exact: true }).waitFor();
    assert.equal(await inEffect.getByText("Waiting for a reissue").count(), 0, "RogerIQ locks nothing at issue");
    await screenshot(page, "key-card-rogeriq", { fullPage: true });
    // The same key, its new scope in effect at once: no reissue.
    const me = await d.api("GET", "/v1/me", key);
    assert.deepEqual([...(me.body.data as { scopesInEffect: string[] }).scopesInEffect].sort(), ["analytics:read", "conversations:read", "kb:write"]);
  });

  it("issue 12: a management key under RogerIQ, with keygate's own management scopes", async () => {
    const page = await d.signedIn("owner@example.com");
    await page.getByRole("link", { name: "Management keys" }).click();
    await page.getByRole("button", { name: "Create" }).click();
    const form = page.getByRole("dialog");
    await form.getByLabel("Name").fill("CI");
    await form.getByRole("checkbox", { name: "keygate:keys", exact: true }).check();
    await form.getByRole("button", { name: "Save" }).click();
    const key = await form.getByLabel("Your new key").inputValue();
    assert.match(key, /^kg_mgmt_/);
    assert.equal((await d.api("GET", `/v1/keys?portalId=${d.portal.id}`, key)).status, 200);
  });
});

describe("the dashboard [Atender]", () => {
  let d: Dashboard;
  before(async () => {
    d = await startDashboard("atender");
  });
  after(() => d?.close());

  it("seed 002: bundles are offered beside the scopes and expanded when the key is issued", async () => {
    const page = await d.signedIn("owner@example.com");
    await page.getByRole("button", { name: "Create" }).click();
    const form = page.getByRole("dialog");
    await form.getByLabel("Name").fill("BI dashboard");
    await form.getByRole("checkbox", { name: "basic", exact: true }).check();
    await screenshot(page, "create-key-atender");
    await form.getByRole("button", { name: "Save" }).click();
    await form.getByRole("link", { name: "Open the key card" }).click();
    const inEffect = page.getByRole("region", { name: "Scopes in effect" });
    for (const scope of ["contacts:read", "conversations:read", "tags:read"]) await inEffect.getByText(scope, { exact: true }).waitFor();
  });
});
