/**
 * Fake providers of the platform sections, real HTTP servers on 127.0.0.1 (port 0): an
 * OpenAI-compatible API (chat completions, streamed or not, and models) and a SearXNG instance's
 * JSON API. They record what keygate sent them.
 */
import { type IncomingMessage, type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface Fake {
  url: string;
  /** Requests received: method, URL, headers, body (parsed JSON where it was). */
  received: { method: string; url: string; headers: IncomingMessage["headers"]; body: unknown }[];
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function read(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString();
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text;
  }
}

function closer(server: Server) {
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

export const FAKE_AI_KEY = "sk-fake-provider-key";
/** The words a streamed answer is sent in, one event each. */
export const STREAM_WORDS = ["Hello", " from", " the", " fake", " model"];

/**
 * An OpenAI-compatible server. Wants `Authorization: Bearer FAKE_AI_KEY` (else 401, as OpenAI).
 * Models: "echo-1" answers "echo: <last message>" with usage {7, 3, 10}; "slow" never answers;
 * "no-usage" answers without usage; "cut" streams one event and drops the connection; any other → 404 model_not_found (OpenAI's error format).
 * `streamed` holds the exact bytes of each streamed answer once it has ended, to compare with what
 * the client got; `eventGapMs` is the pause between two events (default 5); `closedEarly` counts
 * streams whose client (keygate) went away before the end.
 */
export async function fakeOpenAi(): Promise<Fake & { streamed: Buffer[]; eventGapMs: number; closedEarly: number }> {
  const received: Fake["received"] = [];
  const streamed: Buffer[] = [];
  const fake = { eventGapMs: 5, closedEarly: 0 };
  const server = createServer(async (req, res) => {
    const body = (await read(req)) as { model?: string; messages?: { content?: unknown }[]; stream?: boolean; stream_options?: { include_usage?: boolean } } | undefined;
    received.push({ method: req.method!, url: req.url!, headers: req.headers, body });
    const json = (status: number, value: unknown) => res.writeHead(status, { "content-type": "application/json", "set-cookie": "provider=1" }).end(JSON.stringify(value));
    if (req.headers.authorization !== `Bearer ${FAKE_AI_KEY}`) return json(401, { error: { message: "Incorrect API key provided", type: "invalid_request_error", param: null, code: "invalid_api_key" } });
    if (req.method === "GET" && req.url === "/v1/models") {
      return json(200, { object: "list", data: ["echo-1", "no-usage"].map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: "fake" })) });
    }
    if (req.method !== "POST" || req.url !== "/v1/chat/completions") return json(404, { error: { message: "not found", type: "invalid_request_error" } });
    const model = body?.model;
    if (model === "slow") return;
    if (model === "cut") {
      // One event, then the connection drops: a provider failing mid-stream.
      res.writeHead(200, { "content-type": "text/event-stream" }).write('data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","choices":[]}\n\n');
      return setTimeout(() => res.destroy(), 20);
    }
    if (model !== "echo-1" && model !== "no-usage") return json(404, { error: { message: `The model \`${model}\` does not exist`, type: "invalid_request_error", param: "model", code: "model_not_found" } });
    const last = body?.messages?.at(-1)?.content;
    const usage = model === "echo-1" ? { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } : undefined;
    const base = { id: "chatcmpl-fake", created: 1_700_000_000, model };
    if (!body?.stream) {
      return json(200, { ...base, object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: `echo: ${String(last)}` }, finish_reason: "stop" }], ...(usage ? { usage } : {}) });
    }
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
    res.on("close", () => {
      if (!res.writableFinished) fake.closedEarly++;
    });
    const sent: Buffer[] = [];
    const send = async (text: string) => {
      if (res.destroyed) return;
      const b = Buffer.from(text);
      sent.push(b);
      res.write(b);
      // One event at a time, as a model produces them.
      await new Promise((r) => setTimeout(r, fake.eventGapMs));
    };
    const chunk = (delta: object, finish: string | null) => ({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finish }] });
    await send(`data: ${JSON.stringify(chunk({ role: "assistant", content: "" }, null))}\n\n`);
    for (const w of STREAM_WORDS) await send(`data: ${JSON.stringify(chunk({ content: w }, null))}\n\n`);
    await send(`data: ${JSON.stringify(chunk({}, "stop"))}\n\n`);
    if (usage && body.stream_options?.include_usage) await send(`data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [], usage })}\n\n`);
    await send("data: [DONE]\n\n");
    streamed.push(Buffer.concat(sent));
    res.end();
  });
  const url = await listen(server);
  return Object.assign(fake, { url: `${url}/v1`, received, streamed, close: closer(server) });
}

/**
 * A SearXNG instance's JSON API (GET /search?q=&format=json&pageno=): page 1 has three results
 * (one a javascript: URL, one repeated), page 2 two more, later pages none. Without format=json
 * it answers 403, as SearXNG does when JSON is off. The query "broken" answers HTML.
 */
export async function fakeSearxng(): Promise<Fake> {
  const received: Fake["received"] = [];
  const server = createServer((req, res) => {
    received.push({ method: req.method!, url: req.url!, headers: req.headers, body: undefined });
    const u = new URL(req.url!, "http://x");
    if (u.pathname !== "/search" || u.searchParams.get("format") !== "json") return res.writeHead(403).end("Forbidden");
    const q = u.searchParams.get("q") ?? "";
    if (q === "broken") return res.writeHead(200, { "content-type": "text/html" }).end("<html>");
    const page = Number(u.searchParams.get("pageno") ?? 1);
    const r = (n: number) => ({ url: `https://example.com/${encodeURIComponent(q)}/${n}`, title: `${q} ${n}`, content: `About ${q}, part ${n}`, engine: "fake", score: 1 });
    const results = page === 1 ? [r(1), { url: "javascript:alert(1)", title: "bad", content: "" }, r(2), r(1), { ...r(3), title: "" }] : page === 2 ? [r(4), r(5)] : [];
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ query: q, number_of_results: 5, results, answers: [], suggestions: [] }));
  });
  return listen(server).then((url) => ({ url, received, close: closer(server) }));
}
