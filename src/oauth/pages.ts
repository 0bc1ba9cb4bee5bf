/**
 * The pages of the OAuth flow a browser sees (docs/oauth.md): the consent page and /oauth/complete.
 * Plain HTML, no script; the headers (pageHeaders) forbid framing (clickjacking, RFC 9700 §4.16)
 * and let the form post only to keygate, the app's redirect URI and (on a real Bitrix24 portal) the portal; the authorize URL (it holds
 * the app key) is not sent on as a referrer to other origins.
 */
const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2430}
main{max-width:32rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002}
h1{font-size:1.4rem;margin-top:0}ul{padding-left:1.2rem}code{background:#eef0f3;padding:0 .3em;border-radius:3px}
.actions{display:flex;gap:1rem;margin-top:1.5rem}button{font:inherit;padding:.5rem 1.4rem;border-radius:6px;border:1px solid #8a94a6;background:#fff;cursor:pointer}
button[value=allow]{background:#1f6feb;border-color:#1f6feb;color:#fff}.hint{color:#5a6475;font-size:.9rem}`;

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)} — keygate</title><style>${STYLE}</style></head><body><main>${body}</main></body></html>`;
}

/** The headers of these pages: no framing, no caching, no referrer; form posts only to keygate (and, for the redirect after it, the app's origin). */
export function pageHeaders(redirectOrigin: string | null, portalOrigin?: string): Record<string, string> {
  // The form's redirects count as its action: to the app, and on a real Bitrix24 portal to the portal's authorization.
  const formAction = ["'self'", redirectOrigin, portalOrigin].filter((o) => o !== null && o !== undefined).join(" ");
  return {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": `default-src 'none'; style-src 'unsafe-inline'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    "x-frame-options": "DENY",
    // same-origin, not no-referrer: with no-referrer Chromium sends the form post with Origin: null.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
}

export interface ConsentView {
  appName: string;
  portal: string;
  scopes: string[];
  userEmail: string;
  /** Hidden fields the form posts back: the request's parameters and the CSRF token. */
  fields: Record<string, string>;
  redirectHost: string | null;
}

export function consentPage(v: ConsentView): string {
  const hidden = Object.entries(v.fields)
    .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
    .join("");
  const where = v.redirectHost === null ? "You will return to the app after this step." : `You will be sent back to <code>${escape(v.redirectHost)}</code>.`;
  return page(
    `Authorize ${v.appName}`,
    `<h1>Authorize <span id="app">${escape(v.appName)}</span></h1>
<p>The app <strong>${escape(v.appName)}</strong> asks to act for you on the portal <strong id="portal">${escape(v.portal)}</strong> for 24 hours, with these scopes:</p>
<ul id="scopes">${v.scopes.map((s) => `<li><code>${escape(s)}</code></li>`).join("")}</ul>
<p class="hint">Signed in as ${escape(v.userEmail)}. ${where}</p>
<form method="post" action="/v1/oauth/authorize">${hidden}<div class="actions"><button type="submit" name="decision" value="allow">Allow</button><button type="submit" name="decision" value="deny">Deny</button></div></form>`,
  );
}

export function completePage(outcome: "allowed" | "denied"): string {
  return outcome === "allowed"
    ? page("App authorized", `<h1 id="outcome">App authorized</h1><p>You allowed the app. It may continue now: return to it; you can close this page.</p>`)
    : page("Authorization denied", `<h1 id="outcome">Authorization denied</h1><p>You denied the app access. You can close this page.</p>`);
}
