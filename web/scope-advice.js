/**
 * Scope advice on the key card (issue 18, docs/scope-advice.md): the narrowest scopes that cover
 * what the key was used for, what each covers, the scopes it never used, the requests refused for
 * a scope, and `Narrow to suggested scopes` — a PATCH with the advice's narrowTo, which only
 * removes (adding a scope stays a deliberate change in Settings).
 */
import { api } from "./api.js";
import { ErrorNote, html, useAction, useLoad, when } from "./ui.js";

const REASONS = { "auto-granted": "granted to every key of this type", companion: "works only together with the scope it accompanies" };

export function ScopeAdvice({ keyRecord, onNarrowed }) {
  const advice = useLoad(() => api.get(`/v1/keys/${keyRecord.id}/scope-advice`), [keyRecord.id, keyRecord.updatedAt]);
  const action = useAction();
  const a = advice.data;
  const narrow = async () => {
    const updated = await action.run(() => api.patch(`/v1/keys/${keyRecord.id}`, { scopes: a.narrowTo }));
    if (updated) onNarrowed(updated);
  };
  return html`<section class="panel" aria-labelledby="advice-title">
    <h2 id="advice-title">Scope advice</h2>
    <${ErrorNote} error=${advice.error} />
    ${a &&
    html`<p class="hint">From ${a.window.requests} logged request${a.window.requests === 1 ? "" : "s"}${a.window.from ? ` between ${when(a.window.from)} and ${when(a.window.to)}` : ""}.${a.confidence.note ? ` ${a.confidence.note}` : ""}</p>
      ${a.window.requests === 0
        ? html`<p>Not used yet: the advice comes from the key's requests.</p>`
        : a.suggestedScopes.length === 0
        ? html`<p>No request of this key needed a scope yet.</p>`
        : html`<h3>Suggested scopes</h3>
            <ul class="advice">${a.suggestedScopes.map(
              (s) => html`<li><code>${s.scope}</code> — ${s.reason === "covers" ? `covers ${s.covers.join(", ")}` : REASONS[s.reason]}${s.held ? "" : html` <span class="badge expired">not held</span>`}</li>`,
            )}</ul>`}
      ${a.window.requests > 0 &&
      a.unusedScopes.length > 0 &&
      html`<h3>Never used</h3>
        <ul class="chips unused">${a.unusedScopes.map((s) => html`<li class="mono">${s}</li>`)}</ul>`}
      ${a.neededNotHeld.length > 0 &&
      html`<h3>Refused for a missing scope</h3>
        <ul class="advice">${a.neededNotHeld.map((n) => html`<li><code>${n.method} ${n.route ?? "(no route)"}</code> needs ${n.missing.join(", ")} — ${n.count}×, last ${when(n.lastAt)}</li>`)}</ul>`}
      ${a.observedRoutes.length > 0 &&
      html`<details><summary>Routes called (${a.observedRoutes.length})</summary>
        <div class="table-wrap"><table><thead><tr><th scope="col">Request</th><th scope="col">Requests</th><th scope="col">Requires</th><th scope="col">Last</th></tr></thead>
          <tbody>${a.observedRoutes.map((r) => html`<tr><td class="mono">${r.method} ${r.route}</td><td>${r.count}</td><td class="mono">${r.requires === null ? "never allowed" : r.requires.join(", ") || "no scope"}</td><td>${when(r.lastAt)}</td></tr>`)}</tbody></table></div>
      </details>`}
      <${ErrorNote} error=${action.error} />
      ${a.narrowTo !== null &&
      html`<div class="row"><button type="button" onClick=${narrow} disabled=${action.busy}>Narrow to suggested scopes</button><span class="hint">The key keeps ${a.narrowTo.join(", ")}; nothing is added.</span></div>`}`}
  </section>`;
}

/** The scopes each used key never used, for the API Keys list (a key not used yet is not marked): null while unknown. */
export function useUnusedScopes(keys) {
  const active = keys.filter((k) => k.status === "ACTIVE");
  const advice = useLoad(() => Promise.all(active.map((k) => api.get(`/v1/keys/${k.id}/scope-advice`).then((a) => [k.id, a.window.requests > 0 ? a.unusedScopes : []], () => [k.id, []]))).then((pairs) => new Map(pairs)), [active.map((k) => `${k.id}@${k.updatedAt}`).join(",")]);
  return advice.data ?? null;
}
