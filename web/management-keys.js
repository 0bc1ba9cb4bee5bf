/**
 * Management keys (seed 001, quickstart step 1): any user creates, lists and revokes their own
 * keys for administration automation, with the profile's management scopes.
 */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { KeyTable } from "./keys.js";
import { ScopePicker } from "./scopes.js";
import { Dialog, ErrorNote, html, Link, SecretOnce, useAction, useDashboard, useLoad } from "./ui.js";

function CreateManagementKey({ keyType, onClose, onCreated }) {
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState([]);
  const [created, setCreated] = useState(null);
  const [problem, setProblem] = useState("");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    if (scopes.length === 0) return setProblem("Select at least one scope.");
    setProblem("");
    const key = await action.run(() => api.post("/v1/keys", { type: keyType, name, scopes }));
    if (key) {
      setCreated(key);
      onCreated();
    }
  };
  if (created) {
    return html`<${Dialog} title=${`Management key “${created.name}” created`} onClose=${onClose}>
      <${SecretOnce} rawKey=${created.rawKey} />
      <p class="hint">Next: <code>GET /v1/portals</code> with it lists your portals, and <code>POST /v1/keys</code> creates API keys.</p>
      <div class="actions"><${Link} href=${`/keys/${created.id}`} class="button">Open the key card</${Link}><button type="button" onClick=${onClose}>Done</button></div>
    </${Dialog}>`;
  }
  return html`<${Dialog} title="Create a management key" onClose=${onClose} wide>
    <form onSubmit=${submit} class="stack">
      <label>Name <input required maxlength="200" value=${name} onInput=${(e) => setName(e.currentTarget.value)} /></label>
      <${ScopePicker} keyType=${keyType} value=${scopes} onChange=${setScopes} prefix="mgmt" />
      <p class="hint">Select only what the key needs: a key that only manages API keys does not need the others.</p>
      <p class="error" role="alert">${problem}</p>
      <${ErrorNote} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Save</button>
    </form>
  </${Dialog}>`;
}

export function ManagementKeysSection() {
  const { types } = useDashboard();
  const keyType = types.management[0];
  const keys = useLoad(() => api.get("/v1/keys", { type: keyType.id }), [keyType.id]);
  const [creating, setCreating] = useState(false);
  return html`<h1>Management keys</h1>
    <p class="lead">${keyType.description ?? ""} Prefix <code>${keyType.prefix}</code>. They act as you, on every portal you belong to.</p>
    <div class="actions"><button type="button" onClick=${() => setCreating(true)}>Create</button></div>
    <${ErrorNote} error=${keys.error} />
    ${keys.data && html`<${KeyTable} keys=${keys.data} caption="Management keys" />`}
    ${creating && html`<${CreateManagementKey} keyType=${keyType.id} onClose=${() => setCreating(false)} onCreated=${keys.reload} />`}`;
}
