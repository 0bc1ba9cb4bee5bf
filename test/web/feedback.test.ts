/**
 * The dashboard's Feedback section in Chromium (issue 17 §1): a user sends a ticket and follows
 * its thread; the team (the owner made by init) works the queue with filters, asks, and resolves;
 * the author answers. One keygate and one browser for the file; the flows build on each other.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { type Dashboard, screenshot, startDashboard } from "./_dashboard.ts";

describe("the dashboard's Feedback section [VibeCode]", () => {
  let d: Dashboard;
  let member: Page;
  let owner: Page;
  let ticketPath = "";

  before(async () => {
    d = await startDashboard("vibecode");
    await d.person("ada@example.com", "MEMBER");
    await d.person("bob@example.com", "MEMBER");
  });
  after(() => d?.close());

  const openFeedback = async (page: Page) => {
    await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Feedback" }).click();
    await page.getByRole("heading", { name: "Feedback", level: 1 }).waitFor();
  };

  it("issue 17: /feedback and /feedback/:id are pages of the dashboard", async () => {
    for (const path of ["/feedback", "/feedback/abc"]) {
      const r = await fetch(new URL(path, d.url));
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get("content-type")!, /^text\/html/);
    }
  });

  it("issue 17: a user sends feedback from the dashboard and sees the ticket, status New, in their list", async () => {
    member = await d.signedIn("ada@example.com");
    await openFeedback(member);
    await member.getByText("No tickets yet.").waitFor();
    await member.getByRole("button", { name: "Send feedback" }).click();
    const dialog = member.getByRole("dialog", { name: "Send feedback" });
    await dialog.getByLabel("Category").selectOption("DOCS");
    await dialog.getByLabel("Title").fill("The guide's step 2 is wrong");
    await dialog.getByLabel("Message").fill("It says GET where POST is meant.");
    await dialog.getByRole("button", { name: "Send" }).click();
    await member.getByRole("heading", { name: "The guide's step 2 is wrong", level: 1 }).waitFor();
    ticketPath = new URL(member.url()).pathname;
    assert.match(ticketPath, /^\/feedback\/[0-9a-f-]{36}$/);
    await member.getByText("No replies yet.").waitFor();
    assert.equal(await member.locator(".facts").getByText("New").count(), 1);
    await member.getByRole("link", { name: "← Feedback" }).click();
    await member.getByRole("link", { name: "The guide's step 2 is wrong" }).waitFor();
  });

  it("issue 17: the team's queue has every ticket, with filters; the team replies and asks the author in one step", async () => {
    owner = await d.signedIn("owner@example.com");
    await openFeedback(owner);
    await owner.getByText("The team's queue").waitFor();
    await owner.getByRole("link", { name: "The guide's step 2 is wrong" }).waitFor();
    const filters = owner.getByRole("search", { name: "Filter tickets" });
    await filters.getByLabel("Status").selectOption("RESOLVED");
    await owner.getByText("No tickets match these filters.").waitFor();
    await filters.getByLabel("Status").selectOption("NEW");
    await filters.getByLabel("Category").selectOption("DOCS");
    await owner.getByRole("link", { name: "The guide's step 2 is wrong" }).click();

    await owner.getByRole("heading", { name: "The guide's step 2 is wrong", level: 1 }).waitFor();
    const reply = owner.getByRole("form", { name: "Reply" });
    await reply.getByLabel("Message").fill("Which step of which page?");
    await reply.getByLabel("Then set the status").selectOption("AWAITING_USER");
    await reply.getByRole("button", { name: "Send reply" }).click();
    const thread = owner.locator("ol.thread");
    await thread.getByText("Which step of which page?").waitFor();
    await thread.getByText("New → Awaiting the author").waitFor();
    await thread.getByText("(team)").waitFor();
    await screenshot(owner, "feedback-ticket", { fullPage: true });
  });

  it("seed 001 statuses: an impossible change is refused on the page with the API's code, and nothing changes", async () => {
    const form = owner.getByRole("form", { name: "Status and resolution" });
    await form.getByLabel("New status").selectOption("NEW");
    await form.getByRole("button", { name: "Save status" }).click();
    await form.getByRole("alert").filter({ hasText: "INVALID_STATUS_TRANSITION" }).waitFor();
    assert.equal(await owner.locator(".facts").getByText("Awaiting the author").count(), 1);
  });

  it("issue 17: the author is told, answers in the thread, and the ticket goes back to the team (Needs review)", async () => {
    await member.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Notifications" }).click();
    await member.getByText(/The team asks about your feedback "The guide's step 2 is wrong": Which step of which page\?/).waitFor();
    await member.goto(ticketPath);
    await member.getByText("The team asked you a question: your reply sends the ticket back to them.").waitFor();
    const reply = member.getByRole("form", { name: "Reply" });
    assert.equal(await reply.getByLabel("Then set the status").count(), 0, "the author sets no status");
    await reply.getByLabel("Message").fill("Quickstart, step 2.");
    await reply.getByRole("button", { name: "Send reply" }).click();
    await member.locator("ol.thread").getByText("Awaiting the author → Needs review").waitFor();
    assert.equal(await member.locator(".facts").getByText("Needs review").count(), 1);
  });

  it("issue 17: the team resolves it with a resolution the author sees; another member does not see the ticket", async () => {
    await owner.reload();
    const form = owner.getByRole("form", { name: "Status and resolution" });
    await form.getByLabel("New status").selectOption("RESOLVED");
    await form.getByLabel("Resolution").fill("Fixed in the guide.");
    await form.getByRole("button", { name: "Save status" }).click();
    await owner.locator(".facts").getByText("Resolved").waitFor();
    await member.reload();
    await member.locator(".facts").getByText("Fixed in the guide.").waitFor();

    const bob = await d.signedIn("bob@example.com");
    await bob.goto(ticketPath);
    await bob.getByRole("alert").filter({ hasText: "TICKET_NOT_FOUND" }).waitFor();
    await openFeedback(bob);
    await bob.getByText("No tickets yet.").waitFor();
  });
});
