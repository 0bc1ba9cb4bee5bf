/**
 * Feedback (issue 17, docs/feedback.md): a user's tickets and their threads; for the instance's
 * team (owner and staff) the queue of every ticket, with filters, and the status changes. What
 * each may see and do is the API's (GET /v1/feedback answers what the session sees); the page
 * offers only what its user may do, and shows the API's refusal when a change is not possible.
 */
import { useState } from "preact/hooks";
import { api } from "./api.js";
import { Dialog, ErrorNote, html, Link, navigate, useAction, useDashboard, useLoad, when } from "./ui.js";

export const TICKET_STATUSES = ["NEW", "REVIEWING", "AWAITING_USER", "NEEDS_REVIEW", "RESOLVED", "ARCHIVED"];
export const CATEGORIES = ["BUG", "SUGGESTION", "DOCS", "CHAT", "BOTS", "OTHER"];
const LABELS = {
  NEW: "New",
  REVIEWING: "Reviewing",
  AWAITING_USER: "Awaiting the author",
  NEEDS_REVIEW: "Needs review",
  RESOLVED: "Resolved",
  ARCHIVED: "Archived",
};
/** The badge colour of a status: closed green, waiting on someone yellow. */
const STATUS_TONE = { RESOLVED: "active", ARCHIVED: "", AWAITING_USER: "expired", NEEDS_REVIEW: "expired" };
const PAGE_SIZE = 50;

/** The instance's team: the owner made by `keygate init` and users created with --role staff. */
export const isTeam = (user) => user.role === "owner" || user.role === "staff";

function SendFeedback({ onClose }) {
  const [category, setCategory] = useState("BUG");
  const [title, setTitle] = useState("");
  const [message, setMessage] = useState("");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const ticket = await action.run(() => api.post("/v1/feedback", { category, title, message }));
    if (ticket) navigate(`/feedback/${ticket.id}`);
  };
  return html`<${Dialog} title="Send feedback" onClose=${onClose} wide>
    <form onSubmit=${submit} class="stack">
      <label>Category <select value=${category} onChange=${(e) => setCategory(e.currentTarget.value)}>${CATEGORIES.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
      <label>Title <input required maxlength="200" value=${title} onInput=${(e) => setTitle(e.currentTarget.value)} /></label>
      <label>Message <textarea required maxlength="10000" rows="6" value=${message} onInput=${(e) => setMessage(e.currentTarget.value)}></textarea></label>
      <${ErrorNote} error=${action.error} />
      <button type="submit" disabled=${action.busy}>Send</button>
    </form>
  </${Dialog}>`;
}

export function FeedbackSection() {
  const { user, portals } = useDashboard();
  const team = isTeam(user);
  const [filters, setFilters] = useState({ status: "", category: "", portalId: "" });
  const [page, setPage] = useState(1);
  const [sending, setSending] = useState(false);
  const list = useLoad(() => api.getWithMeta("/v1/feedback", { ...filters, page, limit: PAGE_SIZE }), [filters.status, filters.category, filters.portalId, page]);
  const filter = (name) => (event) => {
    setPage(1);
    setFilters({ ...filters, [name]: event.currentTarget.value });
  };
  const meta = list.data?.meta;
  const pages = meta ? Math.max(1, Math.ceil(meta.total / meta.limit)) : 1;
  return html`<h1>Feedback</h1>
    <p class="lead">${team ? "The team's queue: every ticket of this keygate. Answer in a ticket's thread and move it on." : "Your tickets, and those sent from the portals you administer. The team answers in each ticket's thread."}</p>
    <div class="actions"><button type="button" onClick=${() => setSending(true)}>Send feedback</button></div>
    <form role="search" aria-label="Filter tickets" class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Status <select value=${filters.status} onChange=${filter("status")}><option value="">Any</option>${TICKET_STATUSES.map((s) => html`<option value=${s}>${LABELS[s]}</option>`)}</select></label>
      <label>Category <select value=${filters.category} onChange=${filter("category")}><option value="">Any</option>${CATEGORIES.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
      ${portals.length > 0 &&
      html`<label>Portal <select value=${filters.portalId} onChange=${filter("portalId")}><option value="">Any</option>${portals.map((p) => html`<option value=${p.id}>${p.name || p.domain}</option>`)}</select></label>`}
    </form>
    <${ErrorNote} error=${list.error} />
    ${list.data &&
    (list.data.data.length === 0
      ? html`<p>No tickets${filters.status || filters.category || filters.portalId ? " match these filters" : " yet"}.</p>`
      : html`<div class="table-wrap"><table>
          <caption>Tickets, newest first (${meta.total})</caption>
          <thead><tr><th scope="col">Title</th><th scope="col">Category</th><th scope="col">Status</th><th scope="col">Author</th><th scope="col">Updated</th></tr></thead>
          <tbody>${list.data.data.map(
            (t) => html`<tr>
              <td><${Link} href=${`/feedback/${t.id}`}>${t.title}</${Link}></td>
              <td>${t.category}</td>
              <td><span class=${`badge ${STATUS_TONE[t.status] ?? ""}`}>${LABELS[t.status]}</span></td>
              <td>${t.author.name}</td>
              <td><time datetime=${t.updatedAt}>${when(t.updatedAt)}</time></td>
            </tr>`,
          )}</tbody>
        </table></div>
        ${pages > 1 &&
        html`<nav aria-label="Pages" class="actions">
          <button type="button" class="quiet" disabled=${page <= 1} onClick=${() => setPage(page - 1)}>Previous</button>
          <span>Page ${meta.page} of ${pages}</span>
          <button type="button" class="quiet" disabled=${!meta.hasMore} onClick=${() => setPage(page + 1)}>Next</button>
        </nav>`}`)}
    ${sending && html`<${SendFeedback} onClose=${() => setSending(false)} />`}`;
}

/** The team: the status and resolution, without a comment (PATCH). */
function ChangeStatus({ ticket, onChanged }) {
  const [status, setStatus] = useState(ticket.status);
  const [resolution, setResolution] = useState(ticket.resolution ?? "");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    if (await action.run(() => api.patch(`/v1/feedback/${ticket.id}`, { status, resolution: resolution.trim() || null }))) onChanged();
  };
  return html`<form onSubmit=${submit} class="stack" aria-labelledby="change-status">
    <h2 id="change-status">Status and resolution</h2>
    <label>New status <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>${TICKET_STATUSES.map((s) => html`<option value=${s}>${LABELS[s]}</option>`)}</select></label>
    <label>Resolution <textarea maxlength="2000" rows="3" value=${resolution} onInput=${(e) => setResolution(e.currentTarget.value)}></textarea></label>
    <${ErrorNote} error=${action.error} />
    <button type="submit" disabled=${action.busy}>Save status</button>
  </form>`;
}

/** A reply in the thread: the team may move the ticket with it; the author's reply to a question moves it to Needs review. */
function Reply({ ticket, team, onSent }) {
  const [message, setMessage] = useState("");
  const [status, setStatus] = useState("");
  const action = useAction();
  const submit = async (event) => {
    event.preventDefault();
    const body = team && status ? { message, status } : { message };
    if (await action.run(() => api.post(`/v1/feedback/${ticket.id}/comments`, body))) {
      setMessage("");
      setStatus("");
      onSent();
    }
  };
  return html`<form onSubmit=${submit} class="stack" aria-labelledby="reply">
    <h2 id="reply">Reply</h2>
    <label>Message <textarea required maxlength="10000" rows="4" value=${message} onInput=${(e) => setMessage(e.currentTarget.value)}></textarea></label>
    ${team &&
    html`<label>Then set the status <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
      <option value="">Keep ${LABELS[ticket.status]}</option>
      ${TICKET_STATUSES.filter((s) => s !== ticket.status).map((s) => html`<option value=${s}>${LABELS[s]}</option>`)}
    </select></label>`}
    ${!team && ticket.status === "AWAITING_USER" && html`<p class="hint">The team asked you a question: your reply sends the ticket back to them.</p>`}
    <${ErrorNote} error=${action.error} />
    <button type="submit" disabled=${action.busy}>Send reply</button>
  </form>`;
}

export function TicketPage({ id }) {
  const { user } = useDashboard();
  const team = isTeam(user);
  const ticket = useLoad(() => api.get(`/v1/feedback/${encodeURIComponent(id)}`), [id]);
  const t = ticket.data;
  return html`<p><${Link} href="/feedback">← Feedback</${Link}></p>
    <${ErrorNote} error=${ticket.error} />
    ${t &&
    html`<article class="ticket">
      <h1>${t.title}</h1>
      <dl class="facts">
        <dt>Status</dt><dd><span class=${`badge ${STATUS_TONE[t.status] ?? ""}`}>${LABELS[t.status]}</span></dd>
        <dt>Category</dt><dd>${t.category}</dd>
        <dt>Author</dt><dd>${t.author.name}</dd>
        <dt>Sent</dt><dd><time datetime=${t.createdAt}>${when(t.createdAt)}</time></dd>
        ${t.resolution && html`<dt>Resolution</dt><dd>${t.resolution}</dd>`}
      </dl>
      <p class="message">${t.message}</p>
      ${t.context && html`<details><summary>Context</summary><pre>${JSON.stringify(t.context, null, 2)}</pre></details>`}
      <h2>Thread</h2>
      ${t.comments.length === 0
        ? html`<p>No replies yet.</p>`
        : html`<ol class="thread">${t.comments.map(
            (c) => html`<li class=${c.byTeam ? "team" : "author"}>
              <p class="hint"><strong>${c.author.name}</strong>${c.byTeam ? " (team)" : ""} · <time datetime=${c.createdAt}>${when(c.createdAt)}</time>${c.statusChange ? ` · ${LABELS[c.statusChange.from]} → ${LABELS[c.statusChange.to]}` : ""}</p>
              <p class="message">${c.message}</p>
            </li>`,
          )}</ol>`}
      ${team || t.author.userId === user.id
        ? html`<${Reply} ticket=${t} team=${team} onSent=${ticket.reload} key=${`${t.updatedAt}`} />`
        : html`<p class="hint">Only the ticket's author and the team write in its thread.</p>`}
      ${team && html`<${ChangeStatus} ticket=${t} onChanged=${ticket.reload} key=${`status-${t.updatedAt}`} />`}
    </article>`}`;
}
