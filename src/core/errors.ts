/**
 * The error catalog: every code keygate answers with, its HTTP status, a message a person can
 * act on and, where one helps, a hint. Profiles name codes from here (or declare their own in
 * `errorCodes`). docs/errors.md lists them.
 */
export interface ErrorDef {
  status: number;
  message: string;
  hint?: string;
}

export const ERRORS = {
  MISSING_API_KEY: { status: 401, message: "No API key: send it in the X-Api-Key header.", hint: "X-Api-Key: <key>, or Authorization: Bearer <key> for API and management keys." },
  INVALID_API_KEY: { status: 401, message: "The API key is not valid: it is malformed, mistyped, or does not exist." },
  KEY_INACTIVE: { status: 401, message: "The key is revoked.", hint: "Re-activate it (PATCH /v1/keys/:id {\"status\":\"ACTIVE\"}) or create a new one." },
  KEY_EXPIRED: { status: 401, message: "The key has expired.", hint: "Create or rotate a key; set a later expiresAt ahead of time for server integrations." },
  TOKEN_MISSING: {
    status: 401,
    message: "This endpoint acts on behalf of a user: an authorization key (vibe_app_) needs a session token in Authorization: Bearer.",
    hint: "Go through the OAuth flow (GET /v1/oauth/authorize → POST /v1/oauth/token), or use a personal API key (vibe_api_) for background work.",
  },
  INVALID_SESSION: {
    status: 401,
    message: "The session token is not valid: unknown, or revoked.",
    hint: "Authorization keys (vibe_app_) go in X-Api-Key; Authorization: Bearer carries a session token from the OAuth flow.",
  },
  TOKEN_EXPIRED: {
    status: 401,
    message: "The session token has expired: sessions live 24 hours and are never refreshed.",
    hint: "Send the user through the OAuth flow again (GET /v1/oauth/authorize → POST /v1/oauth/token).",
  },
  SESSION_APP_MISMATCH: { status: 401, message: "The session token belongs to another app: send it with the authorization key it was issued to." },
  INVALID_REQUEST: { status: 400, message: "The OAuth request is missing a parameter or has one that is not valid." },
  INVALID_REDIRECT_URI: {
    status: 400,
    message: "redirect_uri is not one of the app's registered redirect URIs (compared as exact strings).",
    hint: "Register it: PATCH /v1/keys/:id {\"redirectUris\": [\"https://…/callback\"]}, or leave redirect_uri out to use keygate's /oauth/complete page.",
  },
  AMBIGUOUS_CREDENTIALS: { status: 400, message: "X-Api-Key and Authorization: Bearer carry two different keys: send one." },
  IP_NOT_ALLOWED: { status: 403, message: "The request comes from an address outside the key's allowed-IP list." },
  SCOPE_DENIED: { status: 403, message: "The key lacks a scope this endpoint requires." },
  INSUFFICIENT_SCOPE: { status: 403, message: "The key lacks a scope this endpoint requires." },
  BITRIX_ACCESS_DENIED: {
    status: 403,
    message: "The key was issued without this Bitrix24 scope: scopes added after issue take effect only when the key is reissued.",
    hint: "Rotate the key (POST /v1/keys/:id/rotate) to put the scopes it shows into effect.",
  },
  BITRIX_ERROR: {
    status: 422,
    message: "Bitrix24 refused the request.",
    hint: "details.error and details.error_description carry Bitrix24's own code and text.",
  },
  MANAGEMENT_SCOPE_REQUIRED: { status: 403, message: "The management key lacks the scope this endpoint requires." },
  MANAGEMENT_KEY_NO_ENTITY_ACCESS: { status: 403, message: "Management keys cannot call this endpoint: use an API key (vibe_api_) or an authorization key (vibe_app_)." },
  MANAGEMENT_KEY_REQUIRED: { status: 403, message: "This endpoint needs a management key (vibe_live_)." },
  KEY_TYPE_NOT_ALLOWED: { status: 403, message: "Keys of this type cannot call this endpoint." },
  WRITE_BLOCKED_READONLY_KEY: { status: 403, message: "Key is in read-only mode. Switch to read+write in /keys to enable writes." },
  ROUTE_NOT_FOUND: { status: 404, message: "No such endpoint.", hint: "GET /v1/me lists the endpoints this key can call." },
  METHOD_NOT_ALLOWED: { status: 405, message: "This endpoint does not take this method.", hint: "The Allow header (and details.allow) lists the methods it takes." },
  ORIGIN_NOT_ALLOWED: {
    status: 403,
    message: "The key's portal does not let pages of this origin send its keys.",
    hint: "A portal admin lists the origin: PATCH /v1/portals/:id {\"allowedOrigins\": [\"https://app.example.com\"]}. Keys are best kept on servers (docs/api.md, \"CORS\").",
  },
  ENTITY_NOT_FOUND: { status: 404, message: "No such record in the portal." },

  RATE_LIMITED: {
    status: 429,
    message: "Too many requests: the rate limit is spent.",
    hint: "Wait retryAfter seconds, then retry with an increasing pause (1 s → 2 s → 4 s); combine calls with POST /v1/batch (up to 50 calls spend one unit).",
  },
  VALIDATION_ERROR: { status: 400, message: "The request is not valid." },
  MISSING_ENTITY_ID: { status: 400, message: "A batch call that gets, updates or deletes a record needs entityId at the call level." },
  INVALID_FILTER_OPERATOR: { status: 400, message: "The filter uses an operator keygate does not know." },
  INVALID_JSON: { status: 400, message: "The request body is not valid JSON." },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: "Send the body as application/json." },
  INVALID_SCOPES: { status: 400, message: "Some scopes are not valid; nothing was changed.", hint: "GET /v1/guide, or keygate scopes list, shows the scopes." },
  MISSING_PORTAL_ID: { status: 400, message: "portalId is required." },
  PORTAL_NOT_FOUND: { status: 404, message: "No such portal." },
  NOT_PORTAL_MEMBER: { status: 403, message: "The key owner is not a member of the specified portal." },
  NOT_PORTAL_ADMIN: { status: 403, message: "Only an administrator of the portal can do this." },
  PORTAL_NOT_LINKED: { status: 400, message: "The portal is not linked to an upstream: keys cannot be created for it yet.", hint: "Link it: PATCH /v1/portals/:id {\"upstream\": …}." },
  PORTAL_DOMAIN_TAKEN: { status: 409, message: "A portal with this domain exists already." },
  LAST_PORTAL_ADMIN: { status: 409, message: "A portal keeps at least one administrator." },
  USER_NOT_FOUND: { status: 404, message: "No user with this email: invite them (POST /v1/portals/:id/invitations), or an operator adds them with keygate users create." },
  USER_EXISTS: { status: 409, message: "A user with this email exists already." },
  NOTIFICATION_NOT_FOUND: { status: 404, message: "No such notification." },
  KEY_NOT_FOUND: { status: 404, message: "No such key." },
  KEY_POLICY_READONLY_REQUIRED: {
    status: 403,
    message: "The portal's policy lets members create and keep read-only keys only: only an administrator makes a key read-write.",
    hint: "Use accessMode READONLY, or ask a portal administrator.",
  },
  KEY_SCOPE_EXCEEDS_CALLER: { status: 403, message: "A key cannot grant, rotate or remove management scopes it does not hold itself." },
  KEY_OWNER_ONLY: { status: 403, message: "Only the key's owner can rotate it: the new secret acts as its owner.", hint: "Revoke the key (PATCH {\"status\":\"REVOKED\"}) and ask its owner to rotate it." },
  KEY_HAS_ACTIVE_SERVERS: { status: 409, message: "The key has active servers: delete them first." },
  LAST_MANAGEMENT_KEY: {
    status: 409,
    message: "This is the user's last active management key: deleting or revoking it would leave them no way to manage their keys.",
    hint: "Create another management key first (POST /v1/keys {\"type\": \"management\", …}, keygate keys create NAME --type management), or rotate this one.",
  },
  KEY_NOT_ACTIVE: { status: 409, message: "Only an active key can be rotated." },
  KEY_ALREADY_ROTATED: { status: 409, message: "The key was rotated already: rotate its replacement." },
  INVALID_CREDENTIALS: { status: 401, message: "The email or the password is wrong." },
  SIGN_IN_THROTTLED: { status: 429, message: "Too many failed sign-ins for this account or from this address: wait, then try again.", hint: "Retry-After says how many seconds; a forgotten password is reset with a one-time link (keygate users reset-password)." },
  SESSION_REQUIRED: { status: 401, message: "Sign in first: there is no session, or it has ended (signed out, idle too long, or past its lifetime)." },
  CSRF_TOKEN_INVALID: {
    status: 403,
    message: "A change made with the session cookie needs the session's X-CSRF-Token header.",
    hint: "The csrfToken comes with the session (POST or GET /v1/session); send it as X-CSRF-Token.",
  },
  LINK_INVALID: { status: 400, message: "The link is not valid: it was used already, withdrawn, replaced by a newer one, or has expired.", hint: "Ask for a new one (an administrator's invitation, or keygate users reset-password)." },
  INVITATION_NEEDS_SIGN_IN: { status: 409, message: "This invitation is for an account that has a password: sign in, then accept it.", hint: "POST /v1/invitations/accept {\"token\"} while signed in." },
  INVITATION_FOR_ANOTHER_USER: { status: 403, message: "This invitation is for another email address than the signed-in user's." },
  INVITATION_NOT_FOUND: { status: 404, message: "No such invitation: it was used, withdrawn, or never made." },
  ALREADY_PORTAL_MEMBER: { status: 409, message: "This person is a member of the portal already." },
  TICKET_NOT_FOUND: { status: 404, message: "No such feedback ticket, or not one this key sees.", hint: "GET /v1/feedback lists the tickets this key sees." },
  INVALID_STATUS_TRANSITION: { status: 400, message: "The ticket cannot move to this status from the one it has.", hint: "docs/feedback.md lists the statuses and the changes each allows." },
  FEEDBACK_TEAM_ONLY: {
    status: 403,
    message: "Only the instance's team (users with the owner or staff role, through a management key or the dashboard) changes a ticket's status or resolution.",
    hint: "Reply with POST /v1/feedback/:id/comments {message}: a reply to an AWAITING_USER ticket moves it to NEEDS_REVIEW by itself.",
  },
  NOT_TICKET_AUTHOR: { status: 403, message: "Only the ticket's author and the instance's team write in its thread." },
  NOT_IMPLEMENTED: { status: 501, message: "This endpoint is in the profile's route table, but this keygate does not serve it yet." },
  SANDBOX_UNREACHABLE: {
    status: 503,
    message: "The key's portal is the built-in sandbox, which this keygate serves over HTTP, and this keygate is not listening (a library embedding without listen()).",
    hint: "Listen (keygate serve, or app.listen()) so the sandbox can be reached, or link the portal to Bitrix24.",
  },
  UPSTREAM_UNAVAILABLE: { status: 502, message: "The upstream could not be reached: the connection was refused or reset, or its address does not resolve.", hint: "Retry with an increasing pause; if it persists, the portal's upstream is down." },
  UPSTREAM_TIMEOUT: { status: 504, message: "The upstream did not answer in time.", hint: "Retry with an increasing pause; a write may or may not have been applied upstream." },
  SECTION_NOT_CONFIGURED: {
    status: 503,
    message: "This platform section is not connected to a provider on this keygate.",
    hint: "The operator connects it with the keygate serve flag in details.setting (or the variable in details.env); docs/sections.md.",
  },
  PAYLOAD_TOO_LARGE: { status: 413, message: "The request body is too large." },
  STORE_UNAVAILABLE: { status: 503, message: "keygate's database does not answer: nothing was changed.", hint: "Retry with an increasing pause (another node may answer); a key this node has seen keeps working meanwhile." },
  INTERNAL_ERROR: { status: 500, message: "Something went wrong inside keygate; the request id identifies it in the logs." },
  INVALID_OBJECT_KEY: { status: 400, message: "The object key is not valid.", hint: "1 to 1024 bytes of segments separated by /, none empty, . or .., no control characters." },
  OBJECT_NOT_FOUND: { status: 404, message: "No such object in the portal's storage." },
  OBJECT_TOO_LARGE: { status: 413, message: "The object is larger than this keygate stores.", hint: "details.maxBytes is the limit (serve --storage-max-object-bytes)." },
  BOT_NOT_FOUND: { status: 404, message: "No such chatbot in the portal." },
  BOT_ALREADY_EXISTS: { status: 409, message: "The portal has a chatbot with this code already.", hint: "details.botId is its id: use it, or choose another code." },
  PLACEMENT_ALREADY_BOUND: { status: 409, message: "The app is bound to this place with this handler already.", hint: "GET /v1/placements lists what is bound; POST /v1/placements/unbind removes it." },
  PLACEMENT_NOT_BOUND: { status: 404, message: "The app is not bound to this place (with this handler).", hint: "GET /v1/placements lists what is bound." },
  RANGE_NOT_SATISFIABLE: { status: 416, message: "The range is outside the object.", hint: "Content-Range: bytes */<size> gives the object's size." },
  UNAUTHENTICATED: {
    status: 401,
    message: "Creating infrastructure needs to know exactly who creates it: an authorization key (vibe_app_) needs a session token in Authorization: Bearer.",
    hint: "Go through the OAuth flow (GET /v1/oauth/authorize → POST /v1/oauth/token) and send X-Api-Key: vibe_app_… with Authorization: Bearer vibe_session_…, or use a personal API key (vibe_api_), which acts as its owner.",
  },
  SERVER_NOT_FOUND: { status: 404, message: "No such server, or not one this key sees.", hint: "GET /v1/infra/servers lists the servers this key sees." },
  BITRIX24_AUTHORIZATION_EXPIRED: {
    status: 401,
    message: "The user's Bitrix24 authorization of this app has ended (its refresh token is expired or revoked): the user must authorize the app again.",
    hint: "Send the user through the OAuth flow again (GET /v1/oauth/authorize): keygate then gets new Bitrix24 tokens for them.",
  },
  USER_AUTH_REQUIRED: {
    status: 401,
    message: "The placement handler needs the Bitrix24 authorization a portal posts when a user opens the app (AUTH_ID, member_id, DOMAIN): it was missing, or the app's portal did not accept it.",
    hint: "Open the app from its place in the portal (docs/placements.md); POST /v1/bitrix-handler is Bitrix24's to call.",
  },
  PLACEMENT_USER_UNKNOWN: {
    status: 403,
    message: "keygate does not know this Bitrix24 user as a member of the app's portal.",
    hint: "On a Bitrix24 portal the user authorizes the app once (the OAuth flow); on the sandbox, sign in to keygate as a member of the portal.",
  },
  APP_RUNTIME_DISABLED: { status: 503, message: "The app runtime is not enabled on this keygate: the app has no URL to open.", hint: "Start keygate serve with --apps-port (docs/placements.md)." },
  // The app runtime's pages (docs/apps.md): a browser reads them, the code is in X-Keygate-Error.
  APP_NOT_FOUND: { status: 404, message: "There is no app at this address: it was deleted, or the address is mistyped." },
  BH_LOGIN_REQUIRED: { status: 401, message: "This app is served only to the users it is opened for: open it from the Bitrix24 portal." },
  APP_SESSION_ENDED: { status: 401, message: "The session in this app ended (revoked or expired): open it again from the Bitrix24 portal." },
  INIT_INVALID: { status: 401, message: "The app's sign-in link (__init) is damaged or older than 5 minutes: open the app again from the Bitrix24 portal." },
  INIT_REPLAYED: { status: 401, message: "The app's sign-in link (__init) was used already: each opens the app once." },
  APP_ACCESS_DENIED: { status: 403, message: "This app does not sign this user in: it is another user's, its key was revoked, or the user left its portal." },
} as const satisfies Record<string, ErrorDef>;

export type ErrorCode = keyof typeof ERRORS;

/** A refusal with a stable code; the gateway turns it into the profile's error envelope. */
export class KeygateError extends Error {
  readonly code: ErrorCode;
  /** The request field at fault (Stripe's `param`). */
  readonly param: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, options: { message?: string; param?: string; details?: Record<string, unknown> } = {}) {
    super(options.message ?? ERRORS[code].message);
    this.name = "KeygateError";
    this.code = code;
    this.param = options.param;
    this.details = options.details;
  }
}
