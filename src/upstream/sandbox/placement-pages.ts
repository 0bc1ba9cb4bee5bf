/**
 * The sandbox portal's placement pages (issue 16 §3): what a portal's interface does with the
 * places an app is bound to (placement.bind), so an embedded app can be seen working end to end
 * with keygate alone.
 *
 *     GET /sandbox/<portal id>/placements                          the bindings, each with an Open link
 *     GET /sandbox/<portal id>/placements/<code>/open?handler=…&options=…&top=1
 *
 * Opening a place is what Bitrix24 does when a user clicks it: the page holds a frame and a form
 * that posts, as application/x-www-form-urlencoded, the fields Bitrix24 posts to the bound handler
 * (DOMAIN, PROTOCOL, LANG, APP_SID, AUTH_ID, AUTH_EXPIRES, REFRESH_ID, member_id, status,
 * PLACEMENT, PLACEMENT_OPTIONS; apidocs.bitrix24.com/api-reference/widgets, "What the handler
 * receives") into the frame, AUTH_ID and REFRESH_ID being fresh tokens of the portal's application
 * for the signed-in member's sandbox user. `top=1` posts the form in the page itself instead: an
 * app's cookie set inside a frame of another site is a third-party cookie, which some browsers
 * refuse.
 */
import { randomBytes } from "node:crypto";
import type { SandboxItem } from "../../store/store.ts";

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE = `body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#eef2f4;color:#1d2430}
header{background:#2fc6f6;color:#fff;padding:.6rem 1.2rem;font-weight:600}main{padding:1.2rem}
table{border-collapse:collapse;background:#fff}td,th{padding:.4rem .8rem;border-bottom:1px solid #dde2e6;text-align:left}
code{background:#eef0f3;padding:0 .3em;border-radius:3px}iframe{width:100%;height:calc(100vh - 7rem);border:1px solid #c9d0d6;background:#fff}.hint{color:#5a6475;font-size:.9rem}`;

/** The headers of both pages: the open page's form and frame go to the handler, and on to wherever it redirects (the app). */
export function placementPageHeaders(nonce: string | null): Record<string, string> {
  return {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": `default-src 'none'; style-src 'unsafe-inline'; ${nonce === null ? "" : `script-src 'nonce-${nonce}'; `}form-action http: https:; frame-src http: https:; base-uri 'none'; frame-ancestors 'self'`,
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
  };
}

function page(title: string, domain: string, body: string, script = ""): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)} — ${escape(domain)} (sandbox)</title><style>${STYLE}</style></head><body><header>${escape(domain)} — sandbox portal</header><main>${body}</main>${script}</body></html>`;
}

/** A binding's link to open it. */
export function openPath(portalId: string, binding: SandboxItem): string {
  return `/sandbox/${encodeURIComponent(portalId)}/placements/${encodeURIComponent(String(binding.fields["PLACEMENT"]))}/open?handler=${encodeURIComponent(String(binding.fields["HANDLER"]))}`;
}

export function bindingsPage(portalId: string, domain: string, bindings: SandboxItem[]): string {
  const rows = bindings
    .map((b) => `<tr><td><code>${escape(String(b.fields["PLACEMENT"]))}</code></td><td>${escape(String(b.fields["TITLE"] ?? ""))}</td><td><code>${escape(String(b.fields["HANDLER"]))}</code></td><td><a href="${escape(openPath(portalId, b))}">Open</a></td></tr>`)
    .join("");
  const body =
    bindings.length === 0
      ? `<p id="none">No app is bound to a place of this portal yet: bind one with POST /v1/placements/bind (docs/placements.md).</p>`
      : `<table id="bindings"><tr><th>Place</th><th>Title</th><th>Handler</th><th></th></tr>${rows}</table><p class="hint">Open posts to the handler what Bitrix24 posts when you open the app there, as your user of this portal.</p>`;
  return page("Placements", domain, `<h1>Apps embedded in this portal</h1>${body}`);
}

/** The fields Bitrix24 posts to a placement handler. */
export interface PostedFields {
  DOMAIN: string;
  PROTOCOL: string;
  LANG: string;
  APP_SID: string;
  AUTH_ID: string;
  AUTH_EXPIRES: string;
  REFRESH_ID: string;
  member_id: string;
  status: string;
  PLACEMENT: string;
  PLACEMENT_OPTIONS: string;
}

/** A new APP_SID: 32 hex characters, as Bitrix24's. */
export const appSid = () => randomBytes(16).toString("hex");

/** The page that opens the place: the form posts itself at once (a button does it without scripts). */
export function openPage(domain: string, title: string, handler: string, fields: PostedFields, top: boolean, nonce: string): string {
  const hidden = Object.entries(fields)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join("");
  const form = `<form id="placement" method="post" action="${escape(handler)}" target="${top ? "_self" : "app"}" enctype="application/x-www-form-urlencoded">${hidden}<noscript><button>Open ${escape(title)}</button></noscript></form>`;
  const frame = top ? "" : `<iframe name="app" title="${escape(title)}"></iframe>`;
  const script = `<script nonce="${nonce}">document.getElementById("placement").submit();</script>`;
  return page(title, domain, `<h1>${escape(title)} <span class="hint">(${escape(fields.PLACEMENT)})</span></h1>${form}${frame}`, script);
}
