/**
 * The dashboard's one way to keygate: the public management API (/v1/…), as a management key
 * uses it, authenticated by the session cookie. A state-changing request carries the session's
 * CSRF token (docs/accounts.md). Both envelopes are read: VibeCode's {success, data | error:{…}}
 * and the flat one {data} / {error: message, code, …}.
 */

/** A refusal of keygate's: its HTTP status, stable code, message, and the field at fault. */
export class ApiError extends Error {
  constructor(status, body) {
    const nested = body && typeof body.error === "object" && body.error !== null ? body.error : undefined;
    super(nested ? nested.message : (body?.error ?? `keygate answered ${status}`));
    this.status = status;
    this.code = nested ? nested.code : (body?.code ?? "UNKNOWN");
    this.param = nested ? nested.param : body?.param;
    this.details = nested ? nested.details : body?.details;
    this.hint = nested ? nested.hint : body?.hint;
  }
}

let csrfToken = "";
/** Set from the session's answer (sign-in, or GET /v1/session after a reload). */
export function setCsrfToken(token) {
  csrfToken = token ?? "";
}

/** Called when a request finds the session gone (401): the app shows the sign-in page. */
let onSignedOut = () => {};
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

async function call(method, path, { query, body, withMeta } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const payload = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, payload);
    if (response.status === 401 && !path.startsWith("/v1/session") && path !== "/v1/password") onSignedOut();
    throw error;
  }
  return withMeta ? { data: payload?.data, meta: payload?.meta } : payload?.data;
}

export const api = {
  get: (path, query) => call("GET", path, { query }),
  /** A list with its meta (total, page, limit, hasMore): {data, meta}. */
  getWithMeta: (path, query) => call("GET", path, { query, withMeta: true }),
  post: (path, body) => call("POST", path, { body: body ?? {} }),
  patch: (path, body) => call("PATCH", path, { body }),
  delete: (path) => call("DELETE", path),
};
