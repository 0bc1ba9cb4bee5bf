/**
 * Portal settings (administrators): name, upstream link with a connection test, request limit,
 * and members — invite (a one-time link), change a role, remove.
 */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { Dialog, ErrorNote, html, SecretOnce, useAction, useDashboard, useLoad, when } from "./ui.js";

const KINDS = [
  ["bitrix24", "Bitrix24 webhook"],
  ["sandbox", "Sandbox portal"],
  ["http", "HTTP API"],
];

function General() {
  const { portal, reloadPortals } = useDashboard();
  const [name, setName] = useState(portal.name);
  const [kind, setKind] = useState(portal.upstream?.kind ?? "sandbox");
  const [url, setUrl] = useState("");
  const [limit, setLimit] = useState(portal.requestLimit === null ? "" : String(portal.requestLimit));
  const [saved, setSaved] = useState(false);
  const action = useAction();
  const test = useAction();
  const [tested, setTested] = useState(null);
  const runTest = async () => {
    setTested(null);
    setTested(await test.run(() => api.get(`/v1/portals/${portal.id}/connection`)));
  };
  const save = async (event) => {
    event.preventDefault();
    setSaved(false);
    const patch = {};
    if (name !== portal.name) patch.name = name;
    // The stored link is shown masked: it is sent only when changed (a new kind, or a new URL typed).
    if (kind !== portal.upstream?.kind || url !== "") patch.upstream = kind === "sandbox" ? { kind } : kind === "http" ? { kind, baseUrl: url } : { kind, webhookUrl: url };
    const requestLimit = limit === "" ? null : Number(limit);
    if (requestLimit !== portal.requestLimit) patch.requestLimit = requestLimit;
    if (Object.keys(patch).length === 0) return;
    if (await action.run(() => api.patch(`/v1/portals/${portal.id}`, patch))) {
      setSaved(true);
      setUrl("");
      reloadPortals();
    }
  };
  const current = portal.upstream?.webhookUrl ?? portal.upstream?.baseUrl;
  return html`<section class="panel" aria-labelledby="general-title">
    <h2 id="general-title">Portal</h2>
    <form onSubmit=${save} class="stack">
      <label>Portal name <input required value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></label>
      <label>Upstream <select value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>${KINDS.map(([v, label]) => html`<option value=${v}>${label}</option>`)}</select></label>
      ${kind !== "sandbox" &&
      html`<label>${kind === "http" ? "Base URL" : "Incoming webhook URL"} <input type="url" class="mono" placeholder=${current ?? (kind === "http" ? "https://api.example.com" : "https://<portal>/rest/<user id>/<token>/")} value=${url} onInput=${(e) => setUrl(e.currentTarget.value)} /></label>
        ${current && html`<p class="hint">Now: <span class="mono">${current}</span> (masked). Leave empty to keep it.</p>`}`}
      ${portal.upstream?.kind === "sandbox" &&
      html`<p class="hint">Apps embedded in this sandbox portal open as you from <a id="sandbox-placements" href=${`/sandbox/${encodeURIComponent(portal.id)}/placements`}>its placements page</a>, as Bitrix24 opens them.</p>`}
      <label>Request limit <input type="number" min="1" step="1" inputmode="numeric" value=${limit} onInput=${(e) => setLimit(e.currentTarget.value)} /></label>
      <p class="hint">Requests per second shared by all the portal's keys. Empty: the profile's default.</p>
      <${ErrorNote} error=${action.error} />
      <div class="row">
        <button type="submit" disabled=${action.busy}>Save</button>
        <button type="button" class="quiet" onClick=${runTest} disabled=${test.busy || !portal.linked}>Test connection</button>
        <span role="status">${saved ? "Saved." : ""}</span>
        <span role="status">${tested ? (tested.ok ? `Connected: ${tested.message} (${tested.latencyMs} ms)` : `Not connected: ${tested.message}`) : ""}</span>
      </div>
      <${ErrorNote} error=${test.error} />
    </form>
  </section>`;
}

function Members() {
  const { portal, user } = useDashboard();
  const members = useLoad(() => api.get(`/v1/portals/${portal.id}/members`), [portal.id]);
  const invitations = useLoad(() => api.get(`/v1/portals/${portal.id}/invitations`), [portal.id]);
  const [inviting, setInviting] = useState(false);
  const action = useAction();
  const setRole = (m, role) => action.run(async () => {
    await api.post(`/v1/portals/${portal.id}/members`, { email: m.email, role });
    members.reload();
  });
  const remove = (m) => action.run(async () => {
    await api.delete(`/v1/portals/${portal.id}/members/${m.userId}`);
    members.reload();
  });
  const withdraw = (i) => action.run(async () => {
    await api.delete(`/v1/portals/${portal.id}/invitations/${i.id}`);
    invitations.reload();
  });
  return html`<section class="panel" aria-labelledby="members-title">
    <h2 id="members-title">Members</h2>
    <div class="actions"><button type="button" onClick=${() => setInviting(true)}>Invite</button></div>
    <${ErrorNote} error=${members.error ?? action.error} />
    ${members.data &&
    html`<div class="table-wrap"><table><thead><tr><th scope="col">Email</th><th scope="col">Name</th><th scope="col">Role</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${members.data.map(
        (m) => html`<tr>
          <td>${m.email}${m.userId === user.id ? " (you)" : ""}</td><td>${m.name}</td>
          <td><label><span class="visually-hidden">Role of ${m.email}</span><select value=${m.role} onChange=${(e) => setRole(m, e.currentTarget.value)}><option value="MEMBER">Member</option><option value="ADMIN">Administrator</option></select></label></td>
          <td><button type="button" class="quiet" aria-label=${`Remove ${m.email}`} onClick=${() => remove(m)}>Remove</button></td>
        </tr>`,
      )}</tbody></table></div>`}
    ${invitations.data?.length > 0 &&
    html`<h3>Pending invitations</h3><ul>${invitations.data.map((i) => html`<li>${i.email} (${i.role === "ADMIN" ? "Administrator" : "Member"}), until ${when(i.expiresAt)} <button type="button" class="quiet" aria-label=${`Withdraw the invitation of ${i.email}`} onClick=${() => withdraw(i)}>Withdraw</button></li>`)}</ul>`}
    ${inviting && html`<${Invite} onClose=${() => setInviting(false)} onInvited=${invitations.reload} />`}
  </section>`;
}

function Invite({ onClose, onInvited }) {
  const { portal } = useDashboard();
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("MEMBER");
  const [invitation, setInvitation] = useState(null);
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const i = await action.run(() => api.post(`/v1/portals/${portal.id}/invitations`, { email, role }));
    if (i) {
      setInvitation(i);
      onInvited();
    }
  };
  if (invitation) {
    return html`<${Dialog} title="Invitation created" onClose=${onClose}>
      <${SecretOnce} rawKey=${invitation.url} label=${`One-time link for ${invitation.email}`} warning="Copy the link now: it is shown once and cannot be shown again (withdraw it and invite again if it is lost)." />
      <p class="hint">Send it to them: they set a password with it and join the portal. It works once, until ${when(invitation.expiresAt)}.</p>
      <div class="actions"><button type="button" onClick=${onClose}>Done</button></div>
    </${Dialog}>`;
  }
  return html`<${Dialog} title="Invite a member" onClose=${onClose}>
    <form onSubmit=${submit} class="stack">
      <label>Email <input type="email" required value=${email} onInput=${(e) => setEmail(e.currentTarget.value)} /></label>
      <label>Role <select value=${role} onChange=${(e) => setRole(e.currentTarget.value)}><option value="MEMBER">Member</option><option value="ADMIN">Administrator</option></select></label>
      <${ErrorNote} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Invite</button>
    </form>
  </${Dialog}>`;
}

export function PortalSettingsSection() {
  const { portal } = useDashboard();
  return html`<h1>Portal settings</h1>
    <p class="lead">${portal.domain}</p>
    <${General} key=${portal.id} />
    <${Members} key=${portal.id} />`;
}
