/**
 * Issue 18 in the browser: the key card shows the scope advice from the key's real traffic and
 * `Narrow to suggested scopes` PATCHes the key down to it; the API Keys list marks keys holding
 * scopes they never used. RogerIQ: its portal forwards to an HTTP API that is not there, and
 * the requests are still the key's, logged with their route.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { createKey } from "../../src/manage/keys.ts";
import { type Dashboard, startDashboard } from "./_dashboard.ts";

describe("scope advice in the dashboard [RogerIQ]", () => {
  let d: Dashboard;
  let owner: Page;
  let broad: { id: string; raw: string };
  let spare: { id: string; raw: string };

  before(async () => {
    d = await startDashboard("rogeriq");
    const actor = { user: d.owner, keyId: null, ip: null };
    const make = async (name: string, scopes: string[]) => {
      const { key, rawKey } = await createKey(d.kg, actor, { portalId: d.portal.id, name, scopes });
      return { id: key.id, raw: rawKey };
    };
    broad = await make("KB lister", ["admin"]);
    spare = await make("Spare scopes", ["kb:read", "contacts:read"]);
    await make("Not used yet", ["contacts:read"]);
    for (const key of [broad, spare, broad]) await d.api("GET", "/v1/projects/p1/kb/articles", key.raw);
    owner = await d.signedIn("owner@example.com");
  });
  after(() => d?.close());

  it("issue 18: the API Keys list marks the used key holding a scope it never used, and only that one (a key not used yet is not marked)", async () => {
    const spareRow = owner.getByRole("row").filter({ hasText: "Spare scopes" });
    const mark = spareRow.getByText("Unused scopes");
    await mark.waitFor();
    assert.equal(await mark.getAttribute("title"), "Never used: contacts:read");
    assert.equal(await owner.getByRole("row").filter({ hasText: "KB lister" }).getByText("Unused scopes").count(), 0, "admin was used (broader than needed, but used)");
    assert.equal(await owner.getByRole("row").filter({ hasText: "Not used yet" }).getByText("Unused scopes").count(), 0);
  });

  it("issue 18: the key card shows the advice — kb:read covers what the admin key did — and Narrow to suggested scopes leaves only it", async () => {
    await owner.getByRole("link", { name: "KB lister" }).click();
    const panel = owner.getByRole("region", { name: "Scope advice" });
    await panel.getByText("kb:read — covers kb:read").waitFor();
    await panel.getByText(/From 2 logged requests/).waitFor();
    await panel.getByText(/Based on 2 requests/).waitFor();
    await panel.getByText("Routes called (1)").click();
    await panel.getByRole("cell", { name: "GET /v1/projects/:projectId/kb/articles" }).waitFor();
    await panel.getByRole("button", { name: "Narrow to suggested scopes" }).click();
    const inEffect = owner.getByRole("region", { name: "Scopes in effect" });
    await inEffect.getByText("kb:read", { exact: true }).waitFor();
    assert.deepEqual(await inEffect.getByRole("listitem").allInnerTexts(), ["kb:read"]);
    await panel.getByText("kb:read — covers kb:read").waitFor();
    assert.equal(await panel.getByRole("button", { name: "Narrow to suggested scopes" }).count(), 0, "nothing left to narrow");
    assert.deepEqual((await d.kg.store.getKey(broad.id))!.scopes, ["kb:read"]);
    // The key still does what it did.
    assert.notEqual((await d.api("GET", "/v1/projects/p1/kb/articles", broad.raw)).status, 403);
  });
});
