/**
 * The keygate dashboard: sign-in, then the sections of seeds 001 and 003 (issue 12). Every datum
 * comes from the public management API (api.js) as the signed-in user's session; what the
 * sections show — key types, scope groups, bundles, coarse scopes, recipes — comes from the
 * profile, as GET /v1/guide describes it.
 */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, setCsrfToken, whenSignedOut } from "./api.js";
import { Dashboard, html, Link, navigate } from "./ui.js";
import { SetPasswordPage, SignInPage } from "./sign-in.js";
import { ApiKeysSection } from "./keys.js";
import { KeyCard } from "./key-card.js";
import { AuthorizationKeysSection } from "./authorization-keys.js";
import { ManagementKeysSection } from "./management-keys.js";
import { PortalSettingsSection } from "./portal.js";
import { NotificationsSection } from "./notifications.js";
import { FeedbackSection, TicketPage } from "./feedback.js";

/** The key types of each section, as the profile names them. */
function keyTypesOf(guide) {
  const types = guide.keyTypes;
  return {
    api: types.filter((t) => !t.portalless && !t.sessionUser),
    app: types.filter((t) => t.sessionUser),
    management: types.filter((t) => t.portalless),
  };
}

const PORTAL = "keygate.portal";

function usePath() {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const changed = () => setPath(location.pathname);
    addEventListener("popstate", changed);
    return () => removeEventListener("popstate", changed);
  }, []);
  return path;
}

function App() {
  const path = usePath();
  const [session, setSession] = useState(undefined);
  useEffect(() => {
    whenSignedOut(() => setSession(null));
    api.get("/v1/session").then(
      (s) => {
        setCsrfToken(s.csrfToken);
        setSession(s);
      },
      () => setSession(null),
    );
  }, []);
  const signedIn = (s) => {
    setCsrfToken(s.csrfToken);
    setSession(s);
    const next = new URLSearchParams(location.search).get("next");
    // An app's authorization request (docs/oauth.md) is keygate's own page, not the dashboard's: loaded, not routed.
    if (next && next.startsWith("/v1/oauth/authorize?")) return location.assign(next);
    navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/keys");
  };
  if (session === undefined) return html`<p class="loading">Loading…</p>`;
  if (path === "/set-password") return html`<${SetPasswordPage} session=${session} onSignedIn=${signedIn} />`;
  if (session === null) {
    if (path !== "/sign-in") history.replaceState(null, "", `/sign-in${path === "/" ? "" : `?next=${encodeURIComponent(path)}`}`);
    return html`<${SignInPage} onSignedIn=${signedIn} />`;
  }
  if (path === "/" || path === "/sign-in") {
    history.replaceState(null, "", "/keys");
    return html`<${SignedIn} session=${session} path="/keys" onSignedOut=${() => setSession(null)} />`;
  }
  return html`<${SignedIn} session=${session} path=${path} onSignedOut=${() => setSession(null)} />`;
}

function SignedIn({ session, path, onSignedOut }) {
  const [guide, setGuide] = useState(undefined);
  const [portals, setPortals] = useState(undefined);
  const [portalId, setPortalId] = useState(localStorage.getItem(PORTAL) ?? "");
  const [failure, setFailure] = useState(null);
  const loadPortals = () => api.get("/v1/portals").then(setPortals, setFailure);
  useEffect(() => {
    api.get("/v1/guide").then(setGuide, setFailure);
    loadPortals();
  }, []);
  if (failure) return html`<main class="page"><p class="error" role="alert">${failure.message} <code>${failure.code}</code></p></main>`;
  if (!guide || !portals) return html`<p class="loading">Loading…</p>`;
  const portal = portals.find((p) => p.id === portalId) ?? portals[0];
  const choose = (id) => {
    localStorage.setItem(PORTAL, id);
    setPortalId(id);
  };
  const signOut = async (everywhere) => {
    await api.delete(everywhere ? "/v1/sessions" : "/v1/session").catch(() => undefined);
    setCsrfToken("");
    onSignedOut();
    navigate("/sign-in");
  };
  const types = keyTypesOf(guide);
  const ctx = { session, user: session.user, guide, catalog: guide.catalog, types, portals, portal, admin: portal?.role === "ADMIN", reloadPortals: loadPortals };
  const sections = [
    types.api.length && { path: "/keys", label: "API Keys" },
    types.app.length && { path: "/authorization-keys", label: "Authorization Keys" },
    types.management.length && { path: "/management-keys", label: "Management keys" },
    ctx.admin && { path: "/portal", label: "Portal settings" },
    { path: "/notifications", label: "Notifications" },
    { path: "/feedback", label: "Feedback" },
  ].filter(Boolean);
  const current = path.startsWith("/keys/") ? "/keys" : path.startsWith("/feedback/") ? "/feedback" : path;
  return html`<${Dashboard.Provider} value=${ctx}>
    <header class="top">
      <a class="skip" href="#main">Skip to the section</a>
      <span class="brand">keygate <small>${guide.profile.title}</small></span>
      ${portals.length > 0 &&
      html`<label class="portal-pick">Portal <select value=${portal?.id} onChange=${(e) => choose(e.currentTarget.value)}>
        ${portals.map((p) => html`<option value=${p.id}>${p.name || p.domain}${p.role === "ADMIN" ? " (admin)" : ""}</option>`)}
      </select></label>`}
      <span class="who">${session.user.email}</span>
      <button type="button" class="quiet" onClick=${() => signOut(false)}>Sign out</button>
      <button type="button" class="quiet" onClick=${() => signOut(true)}>Sign out everywhere</button>
    </header>
    <nav aria-label="Sections" class="sections">
      <ul>${sections.map((s) => html`<li><${Link} href=${s.path} aria-current=${current === s.path ? "page" : undefined}>${s.label}</${Link}></li>`)}</ul>
    </nav>
    <main id="main" class="page" tabindex="-1">${page(path, ctx)}</main>
  </${Dashboard.Provider}>`;
}

function page(path, ctx) {
  const card = /^\/keys\/([^/]+)$/.exec(path);
  if (card) return html`<${KeyCard} id=${decodeURIComponent(card[1])} key=${card[1]} />`;
  const ticket = /^\/feedback\/([^/]+)$/.exec(path);
  if (ticket) return html`<${TicketPage} id=${decodeURIComponent(ticket[1])} key=${ticket[1]} />`;
  if (path === "/feedback") return html`<${FeedbackSection} />`;
  if (!ctx.portal && path !== "/management-keys" && path !== "/notifications") {
    return html`<h1>No portal yet</h1><p>You are not a member of any portal. An administrator invites you to one; the operator creates portals (<code>POST /v1/portals</code>).</p>`;
  }
  switch (path) {
    case "/keys":
      return html`<${ApiKeysSection} key=${ctx.portal.id} />`;
    case "/authorization-keys":
      return html`<${AuthorizationKeysSection} key=${ctx.portal.id} />`;
    case "/management-keys":
      return html`<${ManagementKeysSection} />`;
    case "/portal":
      return ctx.admin ? html`<${PortalSettingsSection} key=${ctx.portal.id} />` : html`<h1>Portal settings</h1><p>Only the portal's administrators change its settings.</p>`;
    case "/notifications":
      return html`<${NotificationsSection} />`;
    default:
      return html`<h1>Not found</h1><p>The dashboard has no page at ${path}. <${Link} href="/keys">API Keys</${Link}></p>`;
  }
}

render(html`<${App} />`, document.getElementById("app"));
