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

/**
 * The page of a one-time link: the owner's first password, a reset, or an invitation. Someone who
 * already has a password signs in and accepts the invitation here.
 */
export function SetPasswordPage({ session, onSignedIn }) {
  const token = new URLSearchParams(location.search).get("token") ?? "";
  const [password, setPassword] = useState("");
  const [joined, setJoined] = useState(null);
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const signedIn = await action.run(() => api.post("/v1/password", { token, password }));
    if (signedIn) onSignedIn(signedIn);
  };
  const accept = async () => {
    const membership = await action.run(() => api.post("/v1/invitations/accept", { token }));
    if (membership) setJoined(membership);
  };
  const here = `/set-password?token=${encodeURIComponent(token)}`;
  if (session) {
    return html`<main class="narrow" id="main">
      <h1>Join the portal</h1>
      ${joined
        ? html`<p role="status">You are now a ${joined.role === "ADMIN" ? "administrator" : "member"} of the portal. <a href="/keys">Open API Keys</a></p>`
        : html`<p>You are signed in as ${session.user.email}. Accept the invitation to join the portal.</p>
            <${ErrorNote} error=${action.error} />
            <button type="button" onClick=${accept} disabled=${action.busy || token === ""}>Accept the invitation</button>`}
    </main>`;
  }
  return html`<main class="narrow" id="main">
    <h1>Set your password</h1>
    <form onSubmit=${submit} class="stack">
      <label>Password <input type="password" name="password" autocomplete="new-password" minlength="12" required value=${password} onInput=${(e) => setPassword(e.currentTarget.value)} /></label>
      <p class="hint">At least 12 characters.</p>
      <${ErrorNote} error=${action.error} />
      ${action.error?.code === "INVITATION_NEEDS_SIGN_IN" && html`<p><a href=${`/sign-in?next=${encodeURIComponent(here)}`}>Sign in</a> to accept the invitation with your account.</p>`}
      <button type="submit" disabled=${action.busy || token === ""}>Set password</button>
    </form>
  </main>`;
}
