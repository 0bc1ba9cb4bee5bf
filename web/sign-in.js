/** Sign in (POST /v1/session) and set a password from a one-time link (POST /v1/password). */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { ErrorNote, html, useAction } from "./ui.js";

export function SignInPage({ onSignedIn }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const session = await action.run(() => api.post("/v1/session", { email, password }));
    if (session) onSignedIn(session);
  };
  return html`<main class="narrow" id="main">
    <h1>Sign in</h1>
    <form onSubmit=${submit} class="stack">
      <label>Email <input type="email" name="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.currentTarget.value)} /></label>
      <label>Password <input type="password" name="password" autocomplete="current-password" required value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} /></label>
      <${ErrorNote} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Sign in</button>
    </form>
    <p class="hint">No password yet? Use the one-time link you were given (<code>keygate init</code>, <code>keygate users reset-password</code>, or an invitation).</p>
  </main>`;
}

/** The page of a one-time link: the owner's first password, a reset, or an invitation. */
export function SetPasswordPage({ onSignedIn }) {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [password, setPassword] = useState("");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const session = await action.run(() => api.post("/v1/password", { token, password }));
    if (session) onSignedIn(session);
  };
  return html`<main class="narrow" id="main">
    <h1>Set your password</h1>
    <form onSubmit=${submit} class="stack">
      <label>Password <input type="password" name="password" autocomplete="new-password" minlength="12" required value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} /></label>
      <p class="hint">At least 12 characters.</p>
      <${ErrorNote} error=${action.error} />
      <button type="submit" disabled=${action.busy || token === ""}>Set password</button>
    </form>
  </main>`;
}
