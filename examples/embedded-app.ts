/**
 * A small embedded app, the kind keygate's app runtime fronts (docs/placements.md): it trusts the
 * X-Vibe-* headers keygate injects (its server is reachable only through keygate), reads its user
 * with one GET /v1/me (its app key plus the injected session) and shows that user's deals. The
 * page's own script then looks for a session token where a browser keeps things and finds none:
 * the browser holds only keygate's HttpOnly cookie.
 *
 *     node examples/embedded-app.ts --keygate http://127.0.0.1:8080 --key vibe_app_… [--port 4000]
 *
 * The end-to-end browser test (test/web/embedded-app.test.ts) runs this very app.
 */
import { type IncomingHttpHeaders, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";

export interface EmbeddedApp {
  /** Where keygate reaches it: http://127.0.0.1:<port>. */
  url: string;
  /** The headers of every request it received, oldest first. */
  seen: IncomingHttpHeaders[];
  close(): Promise<void>;
}

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const header = (headers: IncomingHttpHeaders, name: string) => {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** Starts the app on 127.0.0.1:`port` (0: any free port). */
export async function startEmbeddedApp(options: { keygate: string; appKey: string; port?: number }): Promise<EmbeddedApp> {
  const seen: IncomingHttpHeaders[] = [];
  const api = async (path: string, session: string) => {
    const response = await fetch(new URL(path, options.keygate), { headers: { "x-api-key": options.appKey, authorization: session } });
    return (await response.json()) as { success: boolean; data?: Record<string, unknown>; error?: { code: string; message: string } };
  };
  const server = createServer(async (request, response) => {
    seen.push(request.headers);
    const session = header(request.headers, "x-vibe-authorization");
    if (session === undefined) {
      response.writeHead(401, { "content-type": "text/plain; charset=utf-8" }).end("Open this app through keygate: it sends who the user is.");
      return;
    }
    const me = await api("/v1/me", session);
    const deals = await api("/v1/deals?limit=5", session);
    const user = (me.data?.currentUser ?? {}) as { bitrixUserId?: number };
    const items = ((deals.data as unknown as { title?: string }[] | undefined) ?? []).map((deal) => `<li>${escape(String(deal.title ?? ""))}</li>`);
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Embedded app</title></head><body>
<h1>Hello, ${escape(decodeURIComponent(header(request.headers, "x-vibe-user-name-encoded") ?? ""))}</h1>
<dl>
<dt>Bitrix24 user (X-Vibe-User-Id)</dt><dd id="header-user">${escape(header(request.headers, "x-vibe-user-id") ?? "")}</dd>
<dt>Bitrix24 user (GET /v1/me)</dt><dd id="me-user">${escape(String(user.bitrixUserId ?? me.error?.code ?? ""))}</dd>
<dt>Role</dt><dd id="role">${escape(header(request.headers, "x-vibe-user-role") ?? "")}</dd>
<dt>Portal</dt><dd id="portal">${escape(header(request.headers, "x-vibe-portal-id") ?? "")}</dd>
</dl>
<h2>Deals</h2><ul id="deals">${deals.success ? items.join("") : `<li>${escape(deals.error?.code ?? "error")}</li>`}</ul>
<p>Session token visible to this page: <output id="token-check"></output></p>
<script>
  // A frame of another site may be denied its storage altogether: then it holds nothing either.
  const stored = (name) => { try { return JSON.stringify({ ...window[name] }); } catch { return ""; } };
  const places = [document.cookie, stored("localStorage"), stored("sessionStorage"), location.href];
  document.getElementById("token-check").textContent = places.some((text) => text.includes("vibe_session_")) ? "found" : "none";
</script>
</body></html>`);
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keygate: { type: "string", default: "http://127.0.0.1:8080" }, key: { type: "string" }, port: { type: "string", default: "4000" } } });
  if (values.key === undefined) {
    console.error("usage: node examples/embedded-app.ts --keygate http://127.0.0.1:8080 --key vibe_app_… [--port 4000]");
    process.exit(2);
  }
  const app = await startEmbeddedApp({ keygate: values.keygate, appKey: values.key, port: Number(values.port) });
  console.log(`embedded app listening on ${app.url}: register it with POST /v1/infra/servers {"name": "…", "url": "${app.url}"}`);
}
