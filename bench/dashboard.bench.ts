/**
 * Dashboard benchmark (issue 12): a cold load of the dashboard in Chromium, to interactive, and
 * the bytes it transfers.
 *
 * Method: one keygate in this process (buildServer on an in-memory SQLite store, on 127.0.0.1,
 * compression on as served), its owner with a password and a linked sandbox portal holding 3 API
 * keys. Debian's Chromium (/usr/bin/chromium) driven by playwright-core with issue 12's flags. Per
 * trial, a new browser context (empty cache: cold) and, through the Chrome DevTools Protocol, every
 * response's bytes on the wire (Network.loadingFinished's encodedDataLength: headers and the
 * compressed body). Two pages are loaded:
 *
 * Requests count the responses that came over the network (not from the browser's cache).
 *
 *  - sign-in: /sign-in, no session; interactive = the Sign in button is in the page;
 *  - API Keys: /keys with a session cookie (signed in through the API before the clock starts):
 *    the page, its modules, then /v1/session, /v1/guide, /v1/portals and /v1/keys; interactive =
 *    the keys table and the Create button are in the page.
 *
 * The time is the page's own performance.now() (from navigation start) when a MutationObserver
 * first sees the element, so the test driver's round trips are not in it. Then the same page is
 * loaded again in the same context (warm: the assets are cached for a year, only the page and
 * the API answers travel). Figures: median and p90 over the trials.
 *
 * Environment: BENCH_DASHBOARD_TRIALS (15).
 */
import { chromium } from "playwright-core";
import { setPassword } from "../src/accounts/links.ts";
import { buildServer } from "../src/gateway/server.ts";
import { createKey } from "../src/manage/keys.ts";
import { createPortal } from "../src/manage/portals.ts";
import { createUser } from "../src/manage/users.ts";
import { loadProfile } from "../src/profiles/index.ts";
import { openSqliteStore } from "../src/store/index.ts";
import { seedDemoData } from "../src/upstream/sandbox/index.ts";
import { envNumber, median, round } from "./harness.ts";

const CHROMIUM = {
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};
const PASSWORD = "benchmark password, long enough";

export interface DashboardLoad {
  /** performance.now() when the page was interactive, ms from navigation start. */
  interactiveMs: number;
  /** Bytes received: headers and (compressed) bodies of every response. */
  bytes: number;
  requests: number;
}

export interface DashboardBenchResult {
  method: { trials: number; chromium: string; node: string };
  pages: { name: string; cold: DashboardLoad[]; warm: DashboardLoad[] }[];
}

/** The first moment the page holds `selector`, in the page's own clock. */
const WATCH = (selector: string) => `
  (() => {
    const seen = () => { if (!window.__interactive && document.querySelector(${JSON.stringify(selector)})) window.__interactive = performance.now(); };
    new MutationObserver(seen).observe(document, { childList: true, subtree: true });
  })();`;

export async function runDashboardBench(): Promise<DashboardBenchResult> {
  const trials = envNumber("BENCH_DASHBOARD_TRIALS", 15);
  const serverSecret = "dashboard-benchmark-secret-0123456789";
  const store = await openSqliteStore(":memory:", { serverSecret });
  await store.migrate();
  const app = buildServer({ profile: loadProfile("vibecode"), store, serverSecret });
  await app.ready();
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const kg = app.keygate;
  const owner = await createUser(kg, null, { email: "owner@example.com", role: "owner" });
  await setPassword(kg, null, owner, PASSWORD);
  const actor = { user: owner, keyId: null, ip: null };
  const portal = await createPortal(kg, actor, { domain: "sandbox.example.com", name: "Sandbox", upstream: { kind: "sandbox" } });
  await seedDemoData(store, portal.id);
  for (const name of ["CRM sync", "Reports", "Chat bot"]) await createKey(kg, actor, { portalId: portal.id, name, scopes: ["crm"] });
  const signIn = await fetch(new URL("/v1/session", url), { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: owner.email, password: PASSWORD }) });
  const cookie = /keygate_session=([^;]+)/.exec(signIn.headers.get("set-cookie") ?? "")?.[1];
  if (!cookie) throw new Error(`signing in failed: ${signIn.status}`);

  const browser = await chromium.launch(CHROMIUM);
  const pages = [
    { name: "sign-in", path: "/sign-in", ready: "main form button[type=submit]", signedIn: false },
    { name: "API Keys", path: "/keys", ready: "main table tbody tr", signedIn: true },
  ];
  const result: DashboardBenchResult = { method: { trials, chromium: browser.version(), node: process.version }, pages: [] };
  try {
    for (const p of pages) {
      const cold: DashboardLoad[] = [];
      const warm: DashboardLoad[] = [];
      for (let i = 0; i < trials; i++) {
        const context = await browser.newContext();
        if (p.signedIn) await context.addCookies([{ name: "keygate_session", value: cookie, url }]);
        await context.addInitScript(WATCH(p.ready));
        const page = await context.newPage();
        const cdp = await context.newCDPSession(page);
        await cdp.send("Network.enable");
        let bytes = 0;
        let requests = 0;
        // Answers from the browser's cache finish with 0 bytes: they are not requests over the network.
        cdp.on("Network.loadingFinished", (e: { encodedDataLength: number }) => {
          bytes += e.encodedDataLength;
          if (e.encodedDataLength > 0) requests++;
        });
        const load = async (): Promise<DashboardLoad> => {
          bytes = 0;
          requests = 0;
          await page.goto(new URL(p.path, url).toString());
          await page.waitForFunction(() => (globalThis as { __interactive?: number }).__interactive !== undefined);
          // The last API answers may finish after the element shows: wait for the network to settle before counting.
          await page.waitForLoadState("networkidle");
          const interactiveMs = await page.evaluate(() => (globalThis as unknown as { __interactive: number }).__interactive);
          return { interactiveMs: round(interactiveMs, 1), bytes, requests };
        };
        cold.push(await load());
        warm.push(await load());
        await context.close();
      }
      result.pages.push({ name: p.name, cold, warm });
    }
  } finally {
    await browser.close();
    await app.close();
    await store.close();
  }
  return result;
}

const p90 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil(values.length * 0.9) - 1)]!;

export function dashboardReport(r: DashboardBenchResult): string[] {
  const lines = [
    `Dashboard: ${r.method.trials} loads of each page in a new browser context (cold), then once more in it (warm); Chromium ${r.method.chromium}, 127.0.0.1, compressed as served`,
    "",
    "| page | load | to interactive, median ms | p90 ms | bytes transferred, median | requests |",
    "|---|---|---:|---:|---:|---:|",
  ];
  for (const p of r.pages) {
    for (const [label, loads] of [["cold", p.cold], ["warm", p.warm]] as const) {
      lines.push(`| ${p.name} | ${label} | ${round(median(loads.map((l) => l.interactiveMs)), 1)} | ${round(p90(loads.map((l) => l.interactiveMs)), 1)} | ${Math.round(median(loads.map((l) => l.bytes)))} | ${median(loads.map((l) => l.requests))} |`);
    }
  }
  return lines;
}
