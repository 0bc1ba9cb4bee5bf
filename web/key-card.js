/**
 * The key card (seed 003): what the key is, the scopes in effect and those waiting for a reissue,
 * its settings (Access mode, Request limit, Allowed IPs, scopes updated in place), Reissue, Revoke,
 * Delete, its scope advice (scope-advice.js), and its usage — requests per minute, addresses,
 * recent requests — and audit trail.
 */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { AccessMode, ipList, ipProblems, usePeople } from "./keys.js";
import { ScopeAdvice } from "./scope-advice.js";
import { ScopePicker, catalogFor, chosenOnly } from "./scopes.js";
import { Dialog, ErrorNote, html, Link, MODES, navigate, SecretOnce, STATUSES, day, shown, useAction, useDashboard, useLoad, when } from "./ui.js";

/** Requests per minute over the last hour, as bars (an inline SVG: no chart library). */
function UsageChart({ perMinute }) {
  const now = Date.now();
  const start = Math.floor(now / 60_000) * 60_000 - 59 * 60_000;
  const counts = new Map(perMinute.map((m) => [Date.parse(m.minute), m.requests]));
  const bars = Array.from({ length: 60 }, (_, i) => counts.get(start + i * 60_000) ?? 0);
  const max = Math.max(1, ...bars);
  const total = bars.reduce((a, b) => a + b, 0);
  return html`<figure class="chart">
    <svg viewBox="0 0 600 120" role="img" aria-label=${`Requests per minute over the last hour: ${total} in all, at most ${max === 1 && total === 0 ? 0 : max} in a minute`}>
      <line x1="0" y1="110" x2="600" y2="110" class="axis" />
      ${bars.map((n, i) => (n ? html`<rect x=${i * 10 + 1} y=${110 - (n / max) * 100} width="8" height=${(n / max) * 100} class="bar"><title>${n} requests</title></rect>` : null))}
      <text x="0" y="10" class="label">${max}/min</text>
    </svg>
    <figcaption>Requests per minute, last hour (${total} requests)</figcaption>
  </figure>`;
}

function Usage({ id, person }) {
  const usage = useLoad(() => api.get(`/v1/keys/${id}/usage`, { limit: 20 }), [id]);
  const audit = useLoad(() => api.get(`/v1/keys/${id}/audit`), [id]);
  const u = usage.data;
  return html`<section class="panel" aria-labelledby="usage-title">
      <h2 id="usage-title">Usage</h2>
      <${ErrorNote} error=${usage.error} />
      ${u &&
      html`<${UsageChart} perMinute=${u.requestsPerMinute} />
        <h3>Addresses</h3>
        ${u.addresses.length === 0 ? html`<p>Not used yet.</p>` : html`<div class="table-wrap"><table><thead><tr><th scope="col">Address</th><th scope="col">Requests</th><th scope="col">Last seen</th></tr></thead>
          <tbody>${u.addresses.map((a) => html`<tr><td class="mono">${a.ip}</td><td>${a.requests}</td><td>${when(a.lastSeen)}</td></tr>`)}</tbody></table></div>`}
        <h3>Recent requests</h3>
        ${u.requests.length === 0 ? html`<p>None yet.</p>` : html`<div class="table-wrap"><table><thead><tr><th scope="col">Time</th><th scope="col">Address</th><th scope="col">Request</th><th scope="col">Status</th></tr></thead>
          <tbody>${u.requests.map((r) => html`<tr><td>${when(r.at)}</td><td class="mono">${r.ip}</td><td class="mono">${r.method} ${r.path}</td><td>${r.status}</td></tr>`)}</tbody></table></div>`}`}
    </section>
    <section class="panel" aria-labelledby="audit-title">
      <h2 id="audit-title">Audit trail</h2>
      <${ErrorNote} error=${audit.error} />
      ${audit.data &&
      (audit.data.length === 0
        ? html`<p>No changes recorded.</p>`
        : html`<ol class="audit">${audit.data.map((e) => html`<li><time datetime=${e.at}>${when(e.at)}</time> <code>${e.action}</code> by ${e.actorUserId ? person(e.actorUserId) : "the operator"}${e.sourceIp ? ` from ${e.sourceIp}` : ""}</li>`)}</ol>`)}
    </section>`;
}

/** The settings that change a live key in place (no reissue): name, scopes, mode, limit, addresses. */
function Settings({ keyRecord, onSaved }) {
  const { portals, user } = useDashboard();
  const portal = portals.find((p) => p.id === keyRecord.portalId);
  const [name, setName] = useState(keyRecord.name);
  const [scopes, setScopes] = useState(keyRecord.scopes);
  const [mode, setMode] = useState(keyRecord.accessMode);
  const [rateLimit, setRateLimit] = useState(keyRecord.rateLimit === null ? "" : String(keyRecord.rateLimit));
  const [ips, setIps] = useState(keyRecord.ipWhitelist.join("\n"));
  // Authorization keys only: the app's OAuth callbacks (docs/oauth.md), one a line.
  const [redirects, setRedirects] = useState((keyRecord.redirectUris ?? []).join("\n"));
  const [saved, setSaved] = useState(false);
  const action = useAction();
  const { catalog } = useDashboard();
  const auto = catalogFor(catalog, keyRecord.type).auto;
  const issues = ipProblems(ips);
  const admin = portal?.role === "ADMIN";
  const save = async (event) => {
    event.preventDefault();
    setSaved(false);
    const patch = {};
    if (name !== keyRecord.name) patch.name = name;
    const chosen = chosenOnly(scopes, auto);
    if (chosen.join(",") !== chosenOnly(keyRecord.scopes, auto).join(",")) patch.scopes = chosen;
    if (mode !== keyRecord.accessMode) patch.accessMode = mode;
    const limit = rateLimit === "" ? null : Number(rateLimit);
    if (limit !== keyRecord.rateLimit) patch.rateLimit = limit;
    const list = ipList(ips);
    if (list.join(",") !== keyRecord.ipWhitelist.join(",")) patch.ipWhitelist = list;
    const uris = redirects.split("\n").map((line) => line.trim()).filter(Boolean);
    if (keyRecord.redirectUris !== undefined && uris.join("\n") !== keyRecord.redirectUris.join("\n")) patch.redirectUris = uris;
    if (issues.length || Object.keys(patch).length === 0) return;
    const updated = await action.run(() => api.patch(`/v1/keys/${keyRecord.id}`, patch));
    if (updated) {
      setSaved(true);
      onSaved(updated);
    }
  };
  return html`<section class="panel" aria-labelledby="settings-title">
    <h2 id="settings-title">Settings</h2>
    <form onSubmit=${save} class="stack">
      <label>Name <input required maxlength="200" value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></label>
      <${ScopePicker} keyType=${keyRecord.type} value=${scopes} onChange=${setScopes} prefix="card" />
      <${AccessMode} value=${mode} onChange=${setMode} name="card-mode" locked=${portal?.defaultAccessMode === "READONLY" && !admin && keyRecord.accessMode !== "READWRITE"} />
      ${admin && keyRecord.ownerId !== user.id && html`<p class="hint">The key's owner is told when an administrator changes its mode.</p>`}
      <label>Request limit <input type="number" min="1" step="1" inputmode="numeric" value=${rateLimit} onInput=${(e) => setRateLimit(e.currentTarget.value)} /></label>
      <label>Allowed IPs <textarea rows="3" class="mono" aria-invalid=${issues.length ? "true" : "false"} value=${ips} onInput=${(e) => setIps(e.currentTarget.value)}></textarea></label>
      <div aria-live="polite">${issues.map((p) => html`<p class="error">${p}</p>`)}</div>
      ${keyRecord.redirectUris !== undefined &&
      html`<label>Redirect URIs <textarea rows="3" class="mono" value=${redirects} onInput=${(e) => setRedirects(e.currentTarget.value)}></textarea></label>
        <p class="hint">Where users return after authorizing the app, one a line, matched exactly: https, or http on localhost. Without one, the app polls (GET /v1/oauth/poll).</p>`}
      <${ErrorNote} error=${action.error} />
      <div class="row"><button type="submit" disabled=${action.busy}>Save</button><span role="status">${saved ? "Saved: in effect from the next request" : ""}</span></div>
    </form>
  </section>`;
}

function Reissue({ keyRecord, sessionUser, onClose, onDone }) {
  const action = useAction();
  const [result, setResult] = useState(null);
  const go = async () => {
    const r = await action.run(() => api.post(`/v1/keys/${keyRecord.id}/rotate`));
    if (r) {
      setResult(r);
      onDone();
    }
  };
  if (result) {
    return html`<${Dialog} title="Key reissued" onClose=${() => navigate(`/keys/${result.id}`)}>
      <${SecretOnce} rawKey=${result.rawKey} label="The new key" />
      <p>The old key keeps working until ${when(result.previousKey.validUntil)}: update your apps before then.</p>
      <div class="actions"><button type="button" onClick=${() => navigate(`/keys/${result.id}`)}>Open the new key</button></div>
    </${Dialog}>`;
  }
  return html`<${Dialog} title="Reissue this key?" onClose=${onClose}>
    <p>Reissuing creates a new key with the same settings${keyRecord.scopesPendingReissue.length && !sessionUser ? ", and puts the scopes waiting for a reissue into effect" : ""}. The old key keeps working for 24 hours — time to update it in your apps — and then stops.</p>
    ${sessionUser && html`<p class="hint">An authorization key's new scopes do not come with a reissue: the app is created again with them, and its users authorize it again.</p>`}
    <${ErrorNote} error=${action.error} />
    <div class="actions"><button type="button" onClick=${go} disabled=${action.busy}>Reissue</button><button type="button" class="quiet" onClick=${onClose}>Cancel</button></div>
  </${Dialog}>`;
}

function Confirm({ title, text, verb, onConfirm, onClose, danger }) {
  const action = useAction();
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <p>${text}</p>
    <${ErrorNote} error=${action.error} />
    ${action.error?.code === "KEY_HAS_ACTIVE_SERVERS" && html`<p class="hint">Servers still use this key: delete them first, or revoke the key instead — a revoked key answers nothing.</p>`}
    <div class="actions"><button type="button" class=${danger ? "danger" : ""} onClick=${() => action.run(onConfirm)} disabled=${action.busy}>${verb}</button><button type="button" class="quiet" onClick=${onClose}>Cancel</button></div>
  </${Dialog}>`;
}

const SECTION_OF = { app: ["/authorization-keys", "Authorization Keys"], management: ["/management-keys", "Management keys"] };

export function KeyCard({ id }) {
  const { guide, types, user, portals } = useDashboard();
  const loaded = useLoad(() => api.get(`/v1/keys/${id}`), [id]);
  const [record, setRecord] = useState(null);
  const [dialog, setDialog] = useState(null);
  // Narrowing changes the scopes under the Settings form: it starts again from the key's new ones.
  const [narrowings, setNarrowings] = useState(0);
  const key = record ?? loaded.data;
  const person = usePeople(portals.find((p) => p.id === key?.portalId));
  if (loaded.error) return html`<h1>Key</h1><${ErrorNote} error=${loaded.error} />`;
  if (!key) return html`<p class="loading">Loading…</p>`;
  const keyType = guide.keyTypes.find((t) => t.id === key.type);
  const kind = types.management.some((t) => t.id === key.type) ? "management" : types.app.some((t) => t.id === key.type) ? "app" : "api";
  const [back, backLabel] = SECTION_OF[kind] ?? ["/keys", "API Keys"];
  const locked = guide.catalog.groups.some((g) => g.lockedAtIssue);
  const active = key.status === "ACTIVE";
  const refresh = () => api.get(`/v1/keys/${id}`).then(setRecord);
  return html`<p><${Link} href=${back}>← ${backLabel}</${Link}></p>
    <h1>${key.name}</h1>
    <dl class="facts">
      <dt>Type</dt><dd>${keyType?.label ?? key.type}</dd>
      <dt>Key</dt><dd class="mono">${shown(key)}</dd>
      <dt>Status</dt><dd><span class=${`badge ${key.status.toLowerCase()}`}>${STATUSES[key.status] ?? key.status}</span>${key.rotatedToId ? html` — reissued: works until ${when(key.expiresAt)} (<${Link} href=${`/keys/${key.rotatedToId}`}>the new key</${Link}>)` : null}</dd>
      <dt>Expires</dt><dd>${day(key.expiresAt)}</dd>
      <dt>Access mode</dt><dd>${MODES[key.accessMode]}</dd>
      <dt>Request limit</dt><dd>${key.rateLimit === null ? "The portal's and the platform's limits" : `${key.rateLimit} requests per second`}</dd>
      <dt>Allowed IPs</dt><dd>${key.ipWhitelist.length ? key.ipWhitelist.join(", ") : "Any address"}</dd>
      ${key.redirectUris !== undefined && html`<dt>Redirect URIs</dt><dd class="mono">${key.redirectUris.length ? key.redirectUris.join(", ") : "None: the app polls"}</dd>`}
      ${key.ownerId !== user.id && html`<dt>Owner</dt><dd>${person(key.ownerId)}</dd>`}
      <dt>Created</dt><dd>${when(key.createdAt)}</dd>
      <dt>Last used</dt><dd>${when(key.lastUsedAt)}</dd>
    </dl>
    <section class="panel" aria-labelledby="scopes-title">
      <h2 id="scopes-title">Scopes in effect</h2>
      <ul class="chips">${key.scopesInEffect.map((s) => html`<li class="mono">${s}</li>`)}</ul>
      ${key.scopesPendingReissue.length > 0 &&
      html`<h3>Waiting for a reissue</h3>
        <ul class="chips pending">${key.scopesPendingReissue.map((s) => html`<li class="mono">${s}</li>`)}</ul>
        <p class="hint">${kind === "app" ? "Scopes are locked to an authorization key when it is issued, and a reissue does not change them: create the app again with these scopes, and its users authorize it again." : locked ? "Bitrix24 scopes are locked to the key when it is issued: these were added later and take effect once the key is reissued." : "These take effect once the key is reissued."}</p>`}
    </section>
    <div class="actions">
      <button type="button" onClick=${() => setDialog("reissue")} disabled=${!active || key.rotatedToId !== null}>Reissue</button>
      <button type="button" onClick=${() => setDialog("revoke")} disabled=${key.status === "REVOKED"}>Revoke</button>
      <button type="button" class="danger" onClick=${() => setDialog("delete")}>Delete</button>
    </div>
    ${active &&
    html`<${ScopeAdvice}
      keyRecord=${key}
      onNarrowed=${(updated) => {
        setRecord(updated);
        setNarrowings(narrowings + 1);
      }}
    />`}
    ${active && html`<${Settings} key=${`${key.id}-${narrowings}`} keyRecord=${key} onSaved=${setRecord} />`}
    <${Usage} id=${key.id} person=${person} />
    ${dialog === "reissue" && html`<${Reissue} keyRecord=${key} sessionUser=${kind === "app"} onClose=${() => setDialog(null)} onDone=${refresh} />`}
    ${dialog === "revoke" &&
    html`<${Confirm}
      title="Revoke this key?"
      text="A revoked key is refused at once (401 KEY_INACTIVE) everywhere it is used. It stays listed, with its history."
      verb="Revoke"
      onClose=${() => setDialog(null)}
      onConfirm=${async () => {
        setRecord(await api.patch(`/v1/keys/${key.id}`, { status: "REVOKED" }));
        setDialog(null);
      }}
    />`}
    ${dialog === "delete" &&
    html`<${Confirm}
      title="Delete this key?"
      text="The key is removed for good: it stops working and leaves the list (the audit trail keeps its history). A key that servers still use cannot be deleted: keygate answers 409 KEY_HAS_ACTIVE_SERVERS."
      verb="Delete"
      danger
      onClose=${() => setDialog(null)}
      onConfirm=${async () => {
        await api.delete(`/v1/keys/${key.id}`);
        navigate(back);
      }}
    />`}`;
}
