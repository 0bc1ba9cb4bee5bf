/**
 * Browser tests of the dashboard (issue 12): a keygate listening on 127.0.0.1 (a fresh SQLite
 * store, the real clock), people with passwords, and Debian's Chromium driven by playwright-core
 * with exactly the launch options of issue 12. Tests find controls by label and role, as people do.
 */
import { mkdirSync } from "node:fs";
import { type BrowserContext, type Page, chromium } from "playwright-core";
import { setPassword } from "../../src/accounts/links.ts";
import { buildServer } from "../../src/gateway/server.ts";
import type { Keygate } from "../../src/manage/context.ts";
import { addMember, createPortal } from "../../src/manage/portals.ts";
import { createUser } from "../../src/manage/users.ts";
import { loadProfile } from "../../src/profiles/index.ts";
import type { Portal, User } from "../../src/store/store.ts";
import { seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { throwawayStore } from "../support/gateway.ts";

export const CHROMIUM = {
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

export const PASSWORD = "correct horse battery staple";
const SCREENSHOTS = new URL("../../docs/screenshots/", import.meta.url);

/** An answer of keygate's in either envelope. */
export interface Reply {
  status: number;
  body: { success?: boolean; data?: unknown; error?: { code: string } | string; code?: string };
}

export interface Dashboard {
  url: string;
  kg: Keygate;
  owner: User;
  portal: Portal;
  /** Someone who can sign in with PASSWORD; a member of the portal with `role`, if given. */
  person(email: string, role?: "ADMIN" | "MEMBER"): Promise<User>;
  /** A new browser profile: its own cookies and cache. */
  newContext(): Promise<BrowserContext>;
  /** A new browser profile, signed in as `email`, on the API Keys section. */
  signedIn(email: string): Promise<Page>;
  /** Calls keygate's API with a key, as a script would. */
  api(method: string, path: string, key: string, body?: unknown): Promise<Reply>;
  close(): Promise<void>;
}

/** A keygate under `profile` (its Bitrix24 token server: `options.bitrix24TokenUrl`) with an owner (a password, every management scope) administering one linked portal. */
export async function startDashboard(profileId = "vibecode", options: { bitrix24TokenUrl?: string } = {}): Promise<Dashboard> {
  const { store, serverSecret } = await throwawayStore("sqlite", "kg_web");
  const profile = loadProfile(profileId);
  // Portals of profiles other than VibeCode forward to an HTTP API; none answers here, and none is called.
  const app = buildServer({ profile, store, serverSecret, allowUpstream: ["127.0.0.1"], bitrix24TokenUrl: options.bitrix24TokenUrl });
  await app.ready();
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const kg = app.keygate;
  const person = async (email: string, role?: "ADMIN" | "MEMBER") => {
    const user = await createUser(kg, null, { email });
    await setPassword(kg, null, user, PASSWORD);
    if (role) await addMember(kg, { user: owner, keyId: null, ip: null }, portal.id, { email, role });
    return user;
  };
  const owner = await createUser(kg, null, { email: "owner@example.com", role: "owner" });
  await setPassword(kg, null, owner, PASSWORD);
  const sandbox = profileId === "vibecode";
  const portal = await createPortal(kg, { user: owner, keyId: null, ip: null }, sandbox ? { domain: "sandbox.example.com", name: "Sandbox", upstream: { kind: "sandbox" } } : { domain: "acme.example.com", name: "Acme", upstream: { kind: "http", baseUrl: "http://127.0.0.1:9/" } });
  if (sandbox) await seedDemoData(store, portal.id);
  const browser = await chromium.launch(CHROMIUM);
  const contexts: BrowserContext[] = [];
  const newContext = async () => {
    const context = await browser.newContext({ baseURL: url, permissions: ["clipboard-read", "clipboard-write"] });
    // A bound on each wait, generous: on a machine busy with other tests a step can take seconds.
    context.setDefaultTimeout(90_000);
    contexts.push(context);
    return context;
  };
  return {
    url,
    kg,
    owner,
    portal,
    person,
    newContext,
    async signedIn(email) {
      const page = await (await newContext()).newPage();
      await page.goto("/sign-in");
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { name: "API Keys", level: 1 }).waitFor();
      return page;
    },
    async api(method, path, key, body) {
      const response = await fetch(new URL(path, url), { method, headers: { "x-api-key": key, ...(body === undefined ? {} : { "content-type": "application/json" }) }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: response.status, body: (await response.json()) as Reply["body"] };
    },
    async close() {
      for (const context of contexts) await context.close();
      await browser.close();
      await app.close();
      await store.close();
    },
  };
}

/** Writes docs/screenshots/<name>.png, shown in the README and docs/dashboard.md. */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // Animations and the text caret would make every run's picture differ.
  await page.screenshot({ path: new URL(`${name}.png`, SCREENSHOTS).pathname, animations: "disabled", caret: "hide", fullPage: options.fullPage ?? false });
}

/** The error code of an answer in either envelope. */
export const codeOf = (body: { error?: { code: string } | string; code?: string }): string | undefined => (typeof body.error === "object" ? body.error.code : body.code);

/** What the page copied (the context has the clipboard permissions). */
export const clipboard = (page: Page): Promise<string> =>
  page.evaluate(() => (globalThis as unknown as { navigator: { clipboard: { readText(): Promise<string> } } }).navigator.clipboard.readText());
