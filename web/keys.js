/**
 * The API Keys section (seed 003): the portal's keys — a member's own, an administrator's every
 * member's with their owner —, the Create form step by step, and the Default portal policy block
 * that only administrators see.
 */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { ScopePicker, catalogFor, chosenOnly } from "./scopes.js";
import { useUnusedScopes } from "./scope-advice.js";
import { Dialog, ErrorNote, html, Link, MODES, SecretOnce, STATUSES, day, shown, useAction, useDashboard, useLoad, when } from "./ui.js";

const EXPIRATIONS = [
  ["", "No limit"],
  ["30", "30 days"],
  ["90", "90 days"],
  ["180", "180 days"],
  ["365", "365 days"],
];

/** An exact IPv4 address (no CIDR, no leading zeros). */
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Exact IPv4 or IPv6, as keygate accepts in an allow-list; the URL parser knows IPv6's spellings. */
export function isIp(text) {
  if (IPV4.test(text)) return true;
  if (!text.includes(":") || text.includes("/") || text.includes("[") || text.includes("]")) return false;
  try {
    new URL(`http://[${text}]/`);
    return true;
  } catch {
    return false;
  }
}

/** Problems of an Allowed IPs text, one per line at fault ("line 2: …"). */
export function ipProblems(text) {
  return text
    .split("\n")
    .map((line, i) => [line.trim(), i + 1])
    .filter(([line]) => line !== "" && !isIp(line))
    .map(([line, n]) => `Line ${n}: ${line} is not an exact IPv4 or IPv6 address (CIDR ranges are not supported).`);
}

export const ipList = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);

/** The Access mode toggle; `locked` disables Read and write (a member under a READONLY policy). */
export function AccessMode({ value, onChange, locked, name = "access-mode" }) {
  return html`<fieldset class="toggle">
    <legend>Access mode</legend>
    <label><input type="radio" name=${name} value="READONLY" checked=${value === "READONLY"} onChange=${() => onChange("READONLY")} /> Read-only</label>
    <label><input type="radio" name=${name} value="READWRITE" checked=${value === "READWRITE"} disabled=${locked && value !== "READWRITE"} onChange=${() => onChange("READWRITE")} /> Read and write</label>
    ${locked && html`<p class="hint">The portal's default policy is read-only: only an administrator issues keys that write.</p>`}
  </fieldset>`;
}

/** The Create form of seed 003, steps 1–6, then the key shown once. */
function CreateApiKey({ keyType, onClose, onCreated }) {
  const { portal, admin, catalog } = useDashboard();
  const auto = catalogFor(catalog, keyType).auto;
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState([]);
  const [expiration, setExpiration] = useState("");
  const [rateLimit, setRateLimit] = useState("");
  const [ips, setIps] = useState("");
  const [mode, setMode] = useState(portal.defaultAccessMode);
  const [created, setCreated] = useState(null);
  const [problem, setProblem] = useState("");
  const action = useAction();
  const ipIssues = ipProblems(ips);
  const submit = async (event) => {
    event.preventDefault();
    if (chosenOnly(scopes, auto).length === 0) return setProblem("Select at least one scope.");
    if (ipIssues.length) return setProblem("Correct the Allowed IPs first.");
    setProblem("");
    const body = { portalId: portal.id, type: keyType, name, scopes: chosenOnly(scopes, auto), accessMode: mode, ipWhitelist: ipList(ips) };
    if (expiration) body.expiresAt = new Date(Date.now() + Number(expiration) * 86_400_000).toISOString();
    if (rateLimit) body.rateLimit = Number(rateLimit);
    const key = await action.run(() => api.post("/v1/keys", body));
    if (key) {
      setCreated(key);
      onCreated();
    }
  };
  if (created) {
    return html`<${Dialog} title=${`Key “${created.name}” created`} onClose=${onClose}>
      <${SecretOnce} rawKey=${created.rawKey} />
      <div class="actions"><${Link} href=${`/keys/${created.id}`} class="button">Open the key card</${Link}><button type="button" onClick=${onClose}>Done</button></div>
    </${Dialog}>`;
  }
  return html`<${Dialog} title="Create an API key" onClose=${onClose} wide>
    <form onSubmit=${submit} class="stack steps">
      <section><h3>Step 1</h3>
        <label>Name <input name="name" required maxlength="200" value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></label>
        <p class="hint">For yourself: the key is listed by it. One key per service makes revoking one easy.</p>
      </section>
      <section><h3>Step 2</h3><${ScopePicker} keyType=${keyType} value=${scopes} onChange=${setScopes} prefix="new" /></section>
      <section><h3>Step 3</h3>
        <label>Expiration <select value=${expiration} onChange=${(e) => setExpiration(e.currentTarget.value)}>${EXPIRATIONS.map(([v, label]) => html`<option value=${v}>${label}</option>`)}</select></label>
      </section>
      <section><h3>Step 4</h3>
        <label>Request limit <input type="number" min="1" step="1" inputmode="numeric" value=${rateLimit} onInput=${(e) => setRateLimit(e.currentTarget.value)} /></label>
        <p class="hint">Optional, requests per second. Empty: the platform's and the portal's limits apply.</p>
      </section>
      <section><h3>Step 5</h3>
        <details><summary>Advanced settings</summary>
          <label>Allowed IPs <textarea rows="3" class="mono" aria-invalid=${ipIssues.length > 0 ? "true" : "false"} aria-describedby="ips-hint ips-problems" value=${ips} onInput=${(e) => setIps(e.currentTarget.value)}></textarea></label>
          <p class="hint" id="ips-hint">One exact IPv4 or IPv6 address per line. Empty: any address.</p>
          <div id="ips-problems" aria-live="polite">${ipIssues.map((p) => html`<p class="error">${p}</p>`)}</div>
        </details>
        <${AccessMode} value=${mode} onChange=${setMode} locked=${portal.defaultAccessMode === "READONLY" && !admin} />
      </section>
      <section><h3>Step 6</h3>
        <p class="error" role="alert">${problem}</p>
        <${ErrorNote} error=${action.error} />
        <button type="submit" disabled=${action.busy}>Save</button>
      </section>
    </form>
  </${Dialog}>`;
}

/** The portal's default mode for new keys (administrators only). */
function DefaultPolicy() {
  const { portal, reloadPortals } = useDashboard();
  const [mode, setMode] = useState(portal.defaultAccessMode);
  const action = useAction();
  const [saved, setSaved] = useState(false);
  const save = async (event) => {
    event.preventDefault();
    setSaved(false);
    if (await action.run(() => api.patch(`/v1/portals/${portal.id}`, { defaultAccessMode: mode }))) {
      setSaved(true);
      reloadPortals();
    }
  };
  return html`<section class="panel" aria-labelledby="policy-title">
    <h2 id="policy-title">Default portal policy</h2>
    <p class="hint">The mode of new keys on this portal. Under Read-only, members issue read-only keys only; existing keys keep their mode (change it in a key's card).</p>
    <form onSubmit=${save} class="row">
      <fieldset class="toggle"><legend class="visually-hidden">Mode of new keys</legend>
        <label><input type="radio" name="policy" checked=${mode === "READWRITE"} onChange=${() => setMode("READWRITE")} /> Read and write</label>
        <label><input type="radio" name="policy" checked=${mode === "READONLY"} onChange=${() => setMode("READONLY")} /> Read-only</label>
      </fieldset>
      <button type="submit" disabled=${action.busy}>Save</button>
      <span role="status">${saved ? "Saved" : ""}</span>
    </form>
    <${ErrorNote} error=${action.error} />
  </section>`;
}

/** People by user id, as an administrator sees the portal's members ("You" for the signed-in user). */
export function usePeople(portal) {
  const { user } = useDashboard();
  const admin = portal?.role === "ADMIN";
  const members = useLoad(() => (admin ? api.get(`/v1/portals/${portal.id}/members`) : Promise.resolve([])), [portal?.id, admin]);
  return (userId) => (userId === user.id ? "You" : (members.data?.find((m) => m.userId === userId)?.email ?? userId));
}

/** A table of keys; each name opens its card. `unused` (API Keys): per key id, the scopes it never used. */
export function KeyTable({ keys, owner, caption, unused }) {
  if (keys.length === 0) return html`<p>No keys yet.</p>`;
  return html`<div class="table-wrap"><table>
    <caption class="visually-hidden">${caption}</caption>
    <thead><tr><th scope="col">Name</th>${owner && html`<th scope="col">Owner</th>`}<th scope="col">Key</th><th scope="col">Status</th><th scope="col">Access mode</th><th scope="col">Expires</th><th scope="col">Last used</th></tr></thead>
    <tbody>${keys.map(
      (k) => html`<tr>
        <td><${Link} href=${`/keys/${k.id}`}>${k.name}</${Link}>${unused?.get(k.id)?.length > 0 && html` <span class="badge expired" title=${`Never used: ${unused.get(k.id).join(", ")}`}>Unused scopes</span>`}</td>
        ${owner && html`<td>${owner(k.ownerId)}</td>`}
        <td class="mono">${shown(k)}</td>
        <td><span class=${`badge ${k.status.toLowerCase()}`}>${STATUSES[k.status] ?? k.status}</span></td>
        <td>${MODES[k.accessMode]}</td>
        <td>${day(k.expiresAt)}</td>
        <td>${when(k.lastUsedAt)}</td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

export function ApiKeysSection() {
  const { portal, admin, types } = useDashboard();
  const keyType = types.api[0].id;
  const keys = useLoad(() => api.get("/v1/keys", { portalId: portal.id }), [portal.id]);
  const owner = usePeople(portal);
  const [creating, setCreating] = useState(false);
  const list = (keys.data ?? []).filter((k) => k.type === keyType);
  const unused = useUnusedScopes(list);
  return html`<h1>API Keys</h1>
    <p class="lead">${admin ? "Every member's keys on" : "Your keys on"} ${portal.name || portal.domain}. ${types.api[0].description ?? ""}</p>
    ${!portal.linked && html`<p class="error">This portal is not linked to its data yet: keys cannot be created until an administrator sets its upstream (Portal settings).</p>`}
    <div class="actions"><button type="button" onClick=${() => setCreating(true)} disabled=${!portal.linked}>Create</button></div>
    <${ErrorNote} error=${keys.error} />
    ${keys.data && html`<${KeyTable} keys=${list} owner=${admin ? owner : null} caption="API keys" unused=${unused} />`}
    ${admin && html`<${DefaultPolicy} />`}
    ${creating && html`<${CreateApiKey} keyType=${keyType} onClose=${() => setCreating(false)} onCreated=${keys.reload} />`}`;
}
