/** Pieces every section uses: the template tag, dialogs, errors, the secret shown once, formats. */
import { createContext, h } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

/** What every section needs: the user, the profile as /v1/guide describes it, the portals and the chosen one (app.js). */
export const Dashboard = createContext(null);
export const useDashboard = () => useContext(Dashboard);

/** A path of the dashboard: history navigation without a reload (app.js listens). */
export function navigate(path) {
  if (location.pathname + location.search === path) return;
  history.pushState(null, "", path);
  dispatchEvent(new PopStateEvent("popstate"));
}

/** A link inside the dashboard. */
export function Link({ href, children, ...rest }) {
  const click = (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(href);
  };
  return html`<a href=${href} onClick=${click} ...${rest}>${children}</a>`;
}

/** A refusal of the API, said in its words, with its code (people quote it when they ask for help). */
export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message}${error.code ? html` <code>${error.code}</code>` : null}</p>`;
}

/**
 * A modal dialog (the browser's own <dialog>: focus stays inside, Escape closes it). Focus goes to
 * its first field when it opens and back to what opened it when it closes.
 */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    const opener = document.activeElement;
    dialog.showModal();
    dialog.querySelector("input, select, textarea, button:not(.close)")?.focus();
    return () => {
      if (dialog.open) dialog.close();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    };
  }, []);
  const cancel = (event) => {
    event.preventDefault();
    onClose();
  };
  return html`<dialog ref=${ref} class=${wide ? "wide" : ""} aria-labelledby="dialog-title" onCancel=${cancel}>
    <header class="dialog-head"><h2 id="dialog-title">${title}</h2><button type="button" class="close" aria-label="Close" onClick=${onClose}>×</button></header>
    ${children}
  </dialog>`;
}

/** A new key's secret (or a one-time link): shown this once, with Copy and the warning that it cannot be shown again. */
export function SecretOnce({ rawKey, label = "Your new key", warning = "Copy the key now and keep it somewhere safe: it is shown once and cannot be shown again, only reissued." }) {
  const [copied, setCopied] = useState(false);
  const input = useRef(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(rawKey);
    } catch {
      // No clipboard permission (an http:// page that is not localhost): the key is selected for Ctrl+C.
      input.current.select();
      document.execCommand("copy");
    }
    setCopied(true);
  };
  return html`<div class="secret">
    <label>${label} <input ref=${input} readonly value=${rawKey} class="mono" onFocus=${(e) => e.currentTarget.select()} /></label>
    <button type="button" onClick=${copy}>Copy</button>
    <span role="status" class="copied">${copied ? "Copied" : ""}</span>
    <p class="warning">${warning}</p>
  </div>`;
}

export const when = (iso) => (iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "—");
export const day = (iso) => (iso ? new Date(iso).toLocaleDateString(undefined, { dateStyle: "medium" }) : "No limit");

/** A key as people recognise it: prefix and last four. */
export const shown = (key) => `${key.keyPrefix}…${key.keySuffix}`;

export const MODES = { READONLY: "Read-only", READWRITE: "Read and write" };
export const STATUSES = { ACTIVE: "Active", EXPIRED: "Expired", REVOKED: "Revoked" };

/** Runs an API call from a button or form, keeping its refusal for <ErrorNote> and a busy flag. */
export function useAction() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (work) => {
    setBusy(true);
    setError(null);
    try {
      return await work();
    } catch (e) {
      setError(e);
      return undefined;
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, run, setError };
}

/** Loads data from the API, again whenever `deps` change or reload() is called. */
export function useLoad(load, deps) {
  const [state, setState] = useState({ data: undefined, error: null });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (data) => live && setState({ data, error: null }),
      (error) => live && setState({ data: undefined, error }),
    );
    return () => {
      live = false;
    };
  }, [...deps, round]);
  return { ...state, reload: () => setRound((n) => n + 1) };
}
