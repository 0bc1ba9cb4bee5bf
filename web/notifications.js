/** The signed-in user's notifications (an administrator changed your key's mode, …). */
import { api } from "./api.js";
import { ErrorNote, html, Link, useDashboard, useLoad, when } from "./ui.js";

export function NotificationsSection() {
  const { user } = useDashboard();
  const list = useLoad(() => api.get("/v1/me/notifications"), [user.id]);
  const read = async (id) => {
    await api.post(`/v1/me/notifications/${id}/read`);
    list.reload();
  };
  return html`<h1>Notifications</h1>
    <${ErrorNote} error=${list.error} />
    ${list.data &&
    (list.data.length === 0
      ? html`<p>Nothing new.</p>`
      : html`<ul class="notices">${list.data.map(
          (n) => html`<li class=${n.readAt ? "read" : "unread"}>
            <p>${n.message}</p>
            <p class="hint"><time datetime=${n.at}>${when(n.at)}</time>${n.data?.keyId ? html` · <${Link} href=${`/keys/${n.data.keyId}`}>Open the key</${Link}>` : null}</p>
            ${!n.readAt && html`<button type="button" class="quiet" onClick=${() => read(n.id)}>Mark as read</button>`}
          </li>`,
        )}</ul>`)}`;
}
