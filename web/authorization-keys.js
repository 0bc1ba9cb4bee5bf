/**
 * Authorization Keys (seed 003): keys of an app that acts for the user who authorized it. The form
 * is the shorter one — Name and Scopes —; the key is shown once.
 */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { KeyTable } from "./keys.js";
import { ScopePicker, catalogFor, chosenOnly } from "./scopes.js";
import { Dialog, ErrorNote, html, Link, SecretOnce, useAction, useDashboard, useLoad } from "./ui.js";

function CreateAuthorizationKey({ keyType, onClose, onCreated }) {
  const { portal, catalog } = useDashboard();
  const auto = catalogFor(catalog, keyType).auto;
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState([]);
  const [created, setCreated] = useState(null);
  const [problem, setProblem] = useState("");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    if (chosenOnly(scopes, auto).length === 0) return setProblem("Select at least one scope.");
    setProblem("");
    const key = await action.run(() => api.post("/v1/keys", { portalId: portal.id, type: keyType, name, scopes: chosenOnly(scopes, auto) }));
    if (key) {
      setCreated(key);
      onCreated();
    }
  };
  if (created) {
    return html`<${Dialog} title=${`Authorization key “${created.name}” created`} onClose=${onClose}>
      <${SecretOnce} rawKey=${created.rawKey} />
      <p class="hint">Your app sends it as <code>X-Api-Key</code>, with the user's session token as <code>Authorization: Bearer</code>. It sends users to <code>${location.origin}/v1/oauth/authorize?app_key=…&state=…&redirect_uri=…</code>: the redirect URI is your app's callback.</p>
      <div class="actions"><${Link} href=${`/keys/${created.id}`} class="button">Open the key card</${Link}><button type="button" onClick=${onClose}>Done</button></div>
    </${Dialog}>`;
  }
  return html`<${Dialog} title="Create an authorization key" onClose=${onClose} wide>
    <form onSubmit=${submit} class="stack">
      <label>Name <input required maxlength="200" value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></label>
      <p class="hint">The app is listed under it.</p>
      <${ScopePicker} keyType=${keyType} value=${scopes} onChange=${setScopes} prefix="app" />
      <p class="error" role="alert">${problem}</p>
      <${ErrorNote} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Save</button>
    </form>
  </${Dialog}>`;
}

export function AuthorizationKeysSection() {
  const { portal, types } = useDashboard();
  const keyType = types.app[0];
  const keys = useLoad(() => api.get("/v1/keys", { portalId: portal.id }), [portal.id]);
  const [creating, setCreating] = useState(false);
  return html`<h1>Authorization Keys</h1>
    <p class="lead">${keyType.description ?? ""} Expiration, request limit and allowed IPs are not set in this form.</p>
    <div class="actions"><button type="button" onClick=${() => setCreating(true)} disabled=${!portal.linked}>Create</button></div>
    <${ErrorNote} error=${keys.error} />
    ${keys.data && html`<${KeyTable} keys=${keys.data.filter((k) => k.type === keyType.id)} caption="Authorization keys" />`}
    ${creating && html`<${CreateAuthorizationKey} keyType=${keyType.id} onClose=${() => setCreating(false)} onCreated=${keys.reload} />`}`;
}
