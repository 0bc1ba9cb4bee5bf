/**
 * Choosing a key's scopes, from the profile's catalog (GET /v1/guide → catalog): one tab per scope
 * group (VibeCode: Bitrix24 and VibeCode), each scope with its description; auto-granted scopes
 * shown checked and fixed, reserved ones marked and fixed; the profile's recipes ("How to choose
 * scopes for a task") as one-click presets; bundles (Atender) and coarse scopes (RogerIQ) beside
 * the granular ones. A platform section's scope whose section is not connected on this keygate
 * (GET /v1/guide → sections) is marked so; it can still be chosen, for when it is connected.
 */
import { useState } from "preact/hooks";
import { html, useDashboard } from "./ui.js";

/** The catalog as one key type sees it: its groups with the scopes it may hold, its coarse scopes and bundles. */
export function catalogFor(catalog, keyType) {
  const groups = catalog.groups
    .map((g) => ({ ...g, scopes: g.scopes.filter((s) => s.keyTypes.includes(keyType)) }))
    .filter((g) => g.scopes.length > 0);
  const known = new Set(groups.flatMap((g) => g.scopes.filter((s) => !s.reserved).map((s) => s.scope)));
  const coarse = groups.some((g) => g.coarse) ? catalog.coarse : [];
  for (const c of coarse) known.add(c.scope);
  for (const b of catalog.bundles) known.add(b.id);
  const auto = new Set(groups.flatMap((g) => g.scopes.filter((s) => s.autoGrant.includes(keyType)).map((s) => s.scope)));
  const presets = catalog.recipes.filter((r) => r.scopes.every((s) => known.has(s)));
  return { groups, coarse, bundles: catalog.bundles, presets, auto };
}

/** The scopes chosen, without the auto-granted ones (they do not count toward "at least one"). */
export const chosenOnly = (scopes, auto) => scopes.filter((s) => !auto.has(s));

const uid = (prefix, scope) => `${prefix}-${scope.replace(/[^a-zA-Z0-9_-]/g, "_")}`;

/** One scope's checkbox, its name as the label and its description beside it. */
function ScopeBox({ prefix, scope, description, checked, fixed, mark, onToggle }) {
  const id = uid(prefix, scope);
  return html`<div class=${`scope${fixed ? " fixed" : ""}`}>
    <input type="checkbox" id=${id} checked=${checked} disabled=${fixed} aria-describedby=${`${id}-d`} onChange=${() => onToggle(scope)} />
    <label for=${id} class="mono">${scope}</label>
    <span id=${`${id}-d`} class="desc">${description}${mark ? html` <em class="mark">${mark}</em>` : null}</span>
  </div>`;
}

/** A leveled resource (kb → kb:read, kb:write, kb:admin) as one row with a box per action. */
function ResourceRow({ prefix, resource, atoms, selected, onToggle }) {
  return html`<tr>
    <th scope="row"><span class="mono">${resource}</span><br /><span class="desc">${atoms[0].description}</span></th>
    ${atoms.map((a) => {
      const id = uid(prefix, a.scope);
      return html`<td><input type="checkbox" id=${id} checked=${selected.has(a.scope)} onChange=${() => onToggle(a.scope)} /><label for=${id} class="mono">${a.scope}</label></td>`;
    })}
  </tr>`;
}

/** The scopes of platform sections not connected to a provider here (docs/sections.md). */
const unconnected = (guide) => new Set(Object.values(guide?.sections ?? {}).filter((s) => !s.available).map((s) => s.scope));

function GroupPanel({ prefix, group, keyType, selected, onToggle, offline }) {
  const leveled = group.scopes.some((s) => s.action !== null);
  if (leveled) {
    const resources = new Map();
    for (const s of group.scopes) resources.set(s.resource, [...(resources.get(s.resource) ?? []), s]);
    return html`<table class="levels"><caption class="visually-hidden">${group.label}: scopes by resource</caption>
      <tbody>${[...resources].map(([resource, atoms]) => html`<${ResourceRow} prefix=${prefix} resource=${resource} atoms=${atoms} selected=${selected} onToggle=${onToggle} />`)}</tbody>
    </table>`;
  }
  return html`<div class="scope-list">
    ${group.scopes.map((s) => {
      const auto = s.autoGrant.includes(keyType);
      return html`<${ScopeBox}
        prefix=${prefix}
        scope=${s.scope}
        description=${s.description}
        checked=${auto || selected.has(s.scope)}
        fixed=${auto || s.reserved}
        mark=${[auto ? "added automatically" : s.reserved ? "reserved: not available yet" : "", offline.has(s.scope) ? "not connected on this keygate" : ""].filter(Boolean).join("; ")}
        onToggle=${onToggle}
      />`;
    })}
  </div>`;
}

/**
 * The picker. `value` is the list of scopes chosen (auto-granted ones may be in it: they are
 * shown fixed either way); onChange gets the new list.
 */
export function ScopePicker({ keyType, value, onChange, prefix = "scope" }) {
  const { catalog, guide } = useDashboard();
  const view = catalogFor(catalog, keyType);
  const offline = unconnected(guide);
  const [tab, setTab] = useState(view.groups[0]?.id);
  const selected = new Set(value);
  const toggle = (scope) => {
    const next = new Set(selected);
    if (next.has(scope)) next.delete(scope);
    else next.add(scope);
    onChange([...next]);
  };
  const tabs = view.groups.length > 1;
  const group = view.groups.find((g) => g.id === tab) ?? view.groups[0];
  const keyDown = (event) => {
    // Arrow keys move between tabs (WAI-ARIA tabs pattern).
    const i = view.groups.findIndex((g) => g.id === group.id);
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    const next = view.groups[(i + step + view.groups.length) % view.groups.length];
    setTab(next.id);
    event.currentTarget.parentElement.querySelector(`#${uid(prefix, `tab-${next.id}`)}`)?.focus();
  };
  return html`<fieldset class="scopes">
    <legend>Scopes</legend>
    <p class="hint">Select at least one.${view.auto.size ? ` ${[...view.auto].join(", ")} are added to the key automatically.` : ""}</p>
    ${view.presets.length > 0 &&
    html`<div class="presets" role="group" aria-label="Presets: how to choose scopes for a task">
      <span class="hint">Presets:</span>
      ${view.presets.map((r) => html`<button type="button" class="chip" title=${r.scopes.join(", ")} onClick=${() => onChange([...r.scopes])}>${r.task}</button>`)}
    </div>`}
    ${view.bundles.length > 0 &&
    html`<div class="bundles"><h3>Bundles</h3><p class="hint">A bundle is expanded into its scopes when the key is issued.</p>
      ${view.bundles.map((b) => html`<${ScopeBox} prefix=${prefix} scope=${b.id} description=${`${b.description}: ${b.scopes.join(", ")}`} checked=${selected.has(b.id)} onToggle=${toggle} />`)}
    </div>`}
    <div class=${view.coarse.length ? "side-by-side" : ""}>
      ${view.coarse.length > 0 &&
      html`<div class="coarse"><h3>Coarse</h3>
        ${view.coarse.map((c) => html`<${ScopeBox} prefix=${prefix} scope=${c.scope} description=${c.description} checked=${selected.has(c.scope)} onToggle=${toggle} />`)}
      </div>`}
      <div class="granular">
        ${view.coarse.length > 0 && html`<h3>Granular</h3>`}
        ${tabs &&
        html`<div role="tablist" aria-label="Scope groups">
          ${view.groups.map(
            (g) => html`<button type="button" role="tab" id=${uid(prefix, `tab-${g.id}`)} aria-selected=${g.id === group.id ? "true" : "false"} aria-controls=${uid(prefix, `panel-${g.id}`)} tabindex=${g.id === group.id ? 0 : -1} onClick=${() => setTab(g.id)} onKeyDown=${keyDown}>${g.label}</button>`,
          )}
        </div>`}
        ${group &&
        html`<div role=${tabs ? "tabpanel" : undefined} id=${uid(prefix, `panel-${group.id}`)} aria-labelledby=${tabs ? uid(prefix, `tab-${group.id}`) : undefined}>
          ${group.description && html`<p class="hint">${group.description}</p>`}
          <${GroupPanel} prefix=${prefix} group=${group} keyType=${keyType} selected=${selected} onToggle=${toggle} offline=${offline} />
        </div>`}
      </div>
    </div>
  </fieldset>`;
}
