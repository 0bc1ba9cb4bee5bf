/**
 * What keygate's AI relay costs (docs/sections.md): one client sends chat completions in turn to
 * a fake OpenAI-compatible provider directly, and through keygate with an API key (verification,
 * limits, request log, usage reading). Reports the median and p99 of a whole JSON answer and of
 * a streamed answer's first event, after 50 of each to warm up. Knob: SECTIONS_REQUESTS
 * (default 500 per case).
 */
import { performance } from "node:perf_hooks";
import { startHarness } from "../test/support/gateway.ts";
import { FAKE_AI_KEY, fakeOpenAi } from "../test/support/platform.ts";

export interface SectionsBenchResult {
  requests: number;
  cases: { name: string; medianMs: number; p99Ms: number }[];
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

export async function runSectionsBench(requests = Number(process.env.SECTIONS_REQUESTS ?? 500)): Promise<SectionsBenchResult> {
  const fake = await fakeOpenAi();
  fake.eventGapMs = 0;
  const h = await startHarness("sqlite", { listen: true, platform: { ai: { baseUrl: fake.url, apiKey: FAKE_AI_KEY } } });
  try {
    const portal = (await h.call("POST", "/v1/portals", { key: h.owner.key, body: { domain: "bench.bitrix24.ru", upstream: { kind: "sandbox" } } })).body.data.id;
    const key = (await h.call("POST", "/v1/keys", { key: h.owner.key, body: { portalId: portal, name: "bench", scopes: ["crm"] } })).body.data.rawKey as string;
    const body = (stream: boolean) => JSON.stringify({ model: "echo-1", messages: [{ role: "user", content: "hello" }], stream });
    const time = async (url: string, headers: Record<string, string>, stream: boolean) => {
      const started = performance.now();
      const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: body(stream) });
      const reader = r.body!.getReader();
      await reader.read();
      const first = performance.now() - started;
      while (!(await reader.read()).done);
      return stream ? first : performance.now() - started;
    };
    const cases: SectionsBenchResult["cases"] = [];
    const targets = [
      ["direct", `${fake.url}/chat/completions`, { authorization: `Bearer ${FAKE_AI_KEY}` }],
      ["through keygate", `${h.url}/v1/chat/completions`, { authorization: `Bearer ${key}` }],
    ] as const;
    for (const stream of [false, true]) {
      const ms: number[][] = targets.map(() => []);
      // In turn, one of each: a machine whose load drifts weighs on both alike.
      for (let i = -50; i < requests; i++) {
        // Within the key's 300 requests a minute: the harness clock stands still, so it is moved on.
        if ((i + 50) % 250 === 0) h.clock.advance(61_000);
        for (const [t, [, url, headers]] of targets.entries()) {
          const took = await time(url, headers, stream);
          if (i >= 0) ms[t]!.push(took);
        }
      }
      for (const [t, [name]] of targets.entries()) {
        const sorted = ms[t]!.sort((a, b) => a - b);
        cases.push({ name: `${stream ? "stream, first event" : "JSON answer"}: ${name}`, medianMs: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99) });
      }
    }
    return { requests, cases };
  } finally {
    await h.close();
    await fake.close();
  }
}

export function sectionsReport(r: SectionsBenchResult): string[] {
  return ["AI relay (POST /v1/chat/completions), one client, requests in turn:", "", `| case (${r.requests} requests) | median ms | p99 ms |`, "|---|---|---|", ...r.cases.map((c) => `| ${c.name} | ${c.medianMs.toFixed(2)} | ${c.p99Ms.toFixed(2)} |`)];
}
