import { managementRoutes } from "../core/profile/management.ts";
import type { ProfileSpec, RouteSpec } from "../core/profile/spec.ts";

/**
 * VibeCode: a gateway in front of Bitrix24 (seeds 000, 001, 003). Flat Bitrix24 module
 * scopes locked at issue, platform scopes (four auto-granted to personal keys, three
 * reserved), and management scopes that only management keys hold.
 */

const bitrix24: [string, string][] = [
  ["crm", "Deals, leads, contacts, companies, invoices, and other CRM entities"],
  ["task", "Tasks. To work with tasks, select together with tasks"],
  ["tasks", "Tasks, subtasks, checklists, comments, time tracking. To work with tasks, select together with task"],
  ["im", "Sending and reading chat messages"],
  ["imbot", "Registering and managing chatbots"],
  ["imopenlines", "Open Channels: customer inquiries"],
  ["imconnector", "Connectors for external messengers (Open Channels)"],
  ["call", "Managing calls and telephony"],
  ["telephony", "Integration with external telephony and call management"],
  ["bizproc", "Launching and managing business processes"],
  ["calendar", "Access to employee calendars and events"],
  ["timeman", "Time tracking and attendance control"],
  ["catalog", "Working with the commercial catalog and products"],
  ["sale", "Orders, payments, deliveries — the online store module"],
  ["lists", "Universal lists and list items"],
  ["disk", "Uploading, downloading, and managing files on Drive"],
  ["entity", "Application's custom data storage"],
  ["user", "User profiles — full set of fields"],
  ["user_basic", "User profiles — reduced set of fields"],
  ["user_brief", "User profiles — minimal set of fields"],
  ["user.userfield", "Custom user fields"],
  ["department", "Company structure and departments"],
  ["landing", "Managing sites and landing pages"],
  ["documentgenerator", "Generating documents from templates"],
  ["sign.b2e", "Electronic document signing between an employee and the company"],
  ["sonet_group", "Workgroups and social network projects"],
  ["log", "Activity Stream: posts, comments, reactions"],
  ["vote", "Working with polls and votes"],
  ["ai_admin", "Administering Bitrix24 AI services"],
  ["biconnector", "Business analytics and connecting external BI systems"],
  ["booking", "Managing bookings and schedules"],
  ["delivery", "Configuring and managing delivery services"],
  ["pay_system", "Configuring and managing payment systems"],
  ["main", "Basic portal service methods: settings, events"],
  ["placement", "Embedding interfaces in various places of Bitrix24"],
  ["userfieldtype", "Registering custom user field types"],
  ["humanresources", "Org structure: departments, teams, employees"],
  ["mail", "Mailboxes, emails, senders"],
  ["contact_center", "Contact Center: placing the application tile (Open Channel connectors). Required for the CONTACT_CENTER placement"],
];

const PORTAL_KEYS = ["api", "app"];
const AUTO = ["api"];

/** The entity surface: list, fields, get, create, update, delete (where Bitrix24 has one), search and aggregate. */
function entityRoutes(entity: string, requires: RouteSpec["requires"], writeRequires: RouteSpec["requires"], upstream: (op: string) => string, deletable = true): RouteSpec[] {
  const base = `/v1/${entity}`;
  const route = (method: string, path: string, op: string, description: string, extra: Partial<RouteSpec> = {}): RouteSpec => ({
    method,
    path,
    description,
    requires: method === "GET" || extra.class === "read" ? requires : writeRequires,
    keyTypes: PORTAL_KEYS,
    userContext: true,
    upstreamMethod: upstream(op),
    upstream: true,
    ...extra,
  });
  return [
    route("GET", base, "list", `List ${entity} (limit, offset, select, order, filter)`),
    route("GET", `${base}/fields`, "fields", `Field list of ${entity}`),
    route("GET", `${base}/:id`, "get", `One ${entity} record`),
    route("POST", base, "add", `Create a ${entity} record`),
    route("PATCH", `${base}/:id`, "update", `Update a ${entity} record`),
    ...(deletable ? [route("DELETE", `${base}/:id`, "delete", `Delete a ${entity} record`)] : []),
    route("POST", `${base}/search`, "list", `Search ${entity} (filter, select, order, limit in the body)`, { class: "read" }),
    route("POST", `${base}/aggregate`, "list", `Aggregate ${entity}: count, sum, avg, min, max, groupBy`, { class: "read" }),
  ];
}

const crmMethod = (op: string) => `crm.item.${op}`;
const feedback = (method: string, path: string, description: string, keyTypes = ["api", "app", "management"]): RouteSpec => ({
  method,
  path,
  description,
  requiresByKeyType: { api: "vibe:feedback", app: "vibe:feedback", management: "vibe:mgmt:feedback" },
  keyTypes,
});
const platform = (method: string, path: string, requires: string | null, description: string, extra: Partial<RouteSpec> = {}): RouteSpec => ({
  method,
  path,
  description,
  requires,
  keyTypes: PORTAL_KEYS,
  ...extra,
});

export const vibecode: ProfileSpec = {
  id: "vibecode",
  title: "VibeCode",
  description: "Bitrix24 gateway: flat Bitrix24 scopes locked at issue, VibeCode platform scopes, management keys.",
  keyTypes: [
    { id: "api", prefix: "vibe_api_", label: "API key", description: "Bound to one portal; acts as the key owner; no session token.", selfType: "personal" },
    {
      id: "app",
      prefix: "vibe_app_",
      label: "Authorization key",
      description: "Bound to one portal's app; acts for the user of a session token (Authorization: Bearer).",
      reissueGrantsLocked: false,
      sessionUser: true,
      selfType: "oauth_app",
    },
    {
      id: "management",
      prefix: "vibe_live_",
      label: "Management key",
      description: "Not bound to a portal; manages keys, portals and feedback; no Bitrix24 data.",
      readOnlyByMethod: true,
      portalless: true,
      selfType: "management",
    },
  ],
  groups: [
    {
      id: "bitrix24",
      label: "Bitrix24",
      description: "Bitrix24 data. Locked at issue: scopes added to an existing key take effect only after it is reissued.",
      lockedAtIssue: true,
      keyTypes: PORTAL_KEYS,
      resources: bitrix24.map(([id, description]) => ({ id, description })),
    },
    {
      id: "platform",
      label: "VibeCode",
      description: "Sections of the VibeCode platform itself, not Bitrix24 data.",
      keyTypes: PORTAL_KEYS,
      resources: [
        { id: "vibe:infra", description: "Managing servers, tunnels, and infrastructure", autoGrant: AUTO },
        { id: "vibe:ai", description: "Access to the platform's AI models", autoGrant: AUTO },
        { id: "vibe:feedback", description: "Sending feedback via the API" },
        { id: "vibe:search", description: "Web search across external sources via the platform", autoGrant: AUTO },
        { id: "vibe:storage", description: "Platform file storage: uploading and storing objects", autoGrant: AUTO },
        // keygate's own (not in seed 000): verify mode, a user's backend asks about the keys its clients send (docs/upstreams.md).
        { id: "vibe:verify", description: "Verifying other keys of the portal from your own backend (POST /v1/verify)", keyTypes: ["api"] },
        { id: "vibe:security", description: "Scanning servers and managing security", reserved: true },
        { id: "vibe:analytics", description: "Access to API-call analytics and statistics", reserved: true },
        { id: "vibe:airouter", description: "Managing AI providers, models, and credentials", reserved: true },
      ],
    },
    {
      id: "management",
      label: "Management",
      description: "Scopes of management keys (vibe_live_); management keys hold no other scope.",
      keyTypes: ["management"],
      resources: [
        { id: "vibe:mgmt:keys", description: "/v1/keys (list, create, update, delete, rotate)" },
        { id: "vibe:mgmt:portals", description: "/v1/portals" },
        { id: "vibe:mgmt:feedback", description: "/v1/feedback (ticket list, read, update, comments)" },
      ],
    },
  ],
  companions: [{ scopes: ["task", "tasks"], note: "Bitrix24 task methods need both" }],
  recipes: [
    { task: "Dashboard over deals, contacts, companies", scopes: ["crm", "user"] },
    { task: "Sending messages and notifications to chat (POST /v1/notifications, POST /v1/chats/:dialogId/messages)", scopes: ["im"] },
    { task: "Posting to the Activity Stream (POST /v1/posts)", scopes: ["log"] },
    { task: "Chatbot in the portal messenger", scopes: ["imbot", "im"] },
    { task: "Managing tasks", scopes: ["task", "tasks", "user"] },
    { task: "Workgroups and projects", scopes: ["sonet_group"] },
    { task: "Working with files on Drive", scopes: ["disk"] },
    { task: "Online store: orders and catalog", scopes: ["sale", "catalog"] },
    { task: "Telephony and call log", scopes: ["telephony", "call"] },
    { task: "Employee calendar and events", scopes: ["calendar", "user"] },
    { task: "Employee profiles and org structure", scopes: ["user", "department"] },
    { task: "Application's own data storage", scopes: ["entity"] },
    { task: "Business processes and automation", scopes: ["bizproc"] },
  ],
  routes: [
    { method: "GET", path: "/v1/me", description: "Key self-description", requires: null },
    { method: "GET", path: "/v1/guide", description: "API reference (filtered by scopes for portal keys, full for management keys)", requires: null },
    { method: "GET", path: "/v1/openapi.json", description: "OpenAPI 3.1 specification", requires: null },

    { method: "GET", path: "/v1/me/notifications", description: "Notifications for the key's owner", requires: null },
    // Acknowledging a message changes nothing upstream: a read-only key may do it.
    { method: "POST", path: "/v1/me/notifications/:id/read", description: "Mark a notification read", requires: null, class: "read" },

    ...managementRoutes("management", { keys: "vibe:mgmt:keys", portals: "vibe:mgmt:portals" }),

    feedback("GET", "/v1/feedback", "Feedback tickets (the team's management keys: all; other management keys: their portals' and own; portal keys: their own)"),
    feedback("POST", "/v1/feedback", "Send feedback"),
    feedback("GET", "/v1/feedback/:id", "One ticket with its comment thread"),
    { ...feedback("PATCH", "/v1/feedback/:id", "Update a ticket's status and resolution", ["management"]), keyTypeError: { default: "MANAGEMENT_KEY_REQUIRED" } },
    feedback("POST", "/v1/feedback/:id/comments", "Comment on a ticket"),

    ...entityRoutes("deals", "crm", "crm", crmMethod),
    ...entityRoutes("contacts", "crm", "crm", crmMethod),
    ...entityRoutes("companies", "crm", "crm", crmMethod),
    ...entityRoutes("leads", "crm", "crm", crmMethod),
    ...entityRoutes("tasks", { allOf: ["task", "tasks"] }, { allOf: ["task", "tasks"] }, (op) => `tasks.task.${op === "fields" ? "getFields" : op}`),
    // Bitrix24 has no user.delete: users are deactivated (PATCH {"active": false}).
    ...entityRoutes("users", { anyOf: ["user", "user_basic", "user_brief"] }, "user", (op) => `user.${op === "list" ? "get" : op}`, false),

    platform("POST", "/v1/batch", null, "Up to 50 calls in one request; each call is checked on its own", { userContext: true, class: "read", upstream: true }),
    platform("POST", "/v1/notifications", "im", "Send a notification", { userContext: true, upstreamMethod: "im.notify.system.add", upstream: true }),
    platform("POST", "/v1/chats/:dialogId/messages", "im", "Send a chat message", { userContext: true, upstreamMethod: "im.message.add", upstream: true }),
    platform("POST", "/v1/posts", "log", "Post to the Activity Stream", { userContext: true, upstreamMethod: "log.blogpost.add", upstream: true }),
    // A bot speaks as itself, not as a user: an authorization key needs no session (seen in VibeCode's clients).
    platform("GET", "/v1/bots", "imbot", "List the portal's chatbots", { upstreamMethod: "imbot.bot.list", upstream: true }),
    platform("POST", "/v1/bots", "imbot", "Register a chatbot", { upstreamMethod: "imbot.register", upstream: true }),
    platform("DELETE", "/v1/bots/:id", "imbot", "Unregister a chatbot", { upstreamMethod: "imbot.unregister", upstream: true }),
    platform("POST", "/v1/bots/:id/messages", "imbot", "Send a message as a chatbot", { upstreamMethod: "imbot.message.add", upstream: true }),
    platform("GET", "/v1/placements/available", "placement", "Places an app can be embedded in", {
      keyTypes: ["app"],
      keyTypeError: { api: "OAUTH_REQUIRED" },
      userContext: true,
      upstreamMethod: "placement.list",
      upstream: true,
    }),
    platform("POST", "/v1/placements/bind", "placement", "Embed the app in the portal", {
      keyTypes: ["app"],
      keyTypeError: { api: "OAUTH_REQUIRED" },
      userContext: true,
      upstreamMethod: "placement.bind",
      upstream: true,
    }),
    platform("POST", "/v1/placements/unbind", "placement", "Remove the app from a place of the portal", {
      keyTypes: ["app"],
      keyTypeError: { api: "OAUTH_REQUIRED" },
      userContext: true,
      upstreamMethod: "placement.unbind",
      upstream: true,
    }),
    platform("GET", "/v1/placements", "placement", "The places the app is embedded in", {
      keyTypes: ["app"],
      keyTypeError: { api: "OAUTH_REQUIRED" },
      userContext: true,
      upstreamMethod: "placement.get",
      upstream: true,
    }),
    platform("GET", "/v1/infra/servers", "vibe:infra", "List servers"),
    // Seed 003: creating infrastructure must know who creates it; its refusal is UNAUTHENTICATED, not TOKEN_MISSING.
    platform("POST", "/v1/infra/servers", "vibe:infra", "Create a server (needs a user: app keys need a session)", { userContext: true, sessionError: "UNAUTHENTICATED" }),
    platform("GET", "/v1/infra/servers/:id", "vibe:infra", "One server, with whether keygate reaches it"),
    platform("DELETE", "/v1/infra/servers/:id", "vibe:infra", "Delete a server"),
    // The platform's published per-key limits: AI Router 600/min, search 60/min (public facts §4).
    platform("POST", "/v1/chat/completions", "vibe:ai", "AI models (OpenAI-compatible)", { class: "read", perMinute: 600 }),
    platform("GET", "/v1/models", "vibe:ai", "The AI models offered (OpenAI-compatible)"),
    platform("POST", "/v1/search", "vibe:search", "Web search via the platform", { class: "read", perMinute: 60 }),
    platform("GET", "/v1/storage/objects", "vibe:storage", "List the portal's stored objects (prefix, cursor, limit)"),
    platform("GET", "/v1/storage/objects/*", "vibe:storage", "Read a stored object (ETag, byte ranges; HEAD for its headers)"),
    platform("PUT", "/v1/storage/objects/*", "vibe:storage", "Store an object under a key (streamed, size-capped)"),
    platform("DELETE", "/v1/storage/objects/*", "vibe:storage", "Delete a stored object"),
    platform("POST", "/v1/verify", "vibe:verify", "Verify mode: the decision for another key of the portal on a request, without forwarding it", { keyTypes: ["api"], class: "read" }),

    ...["GET /v1/oauth/authorize", "POST /v1/oauth/token", "GET /v1/oauth/poll", "POST /v1/oauth/revoke"].map((line): RouteSpec => {
      const [method, path] = line.split(" ") as [string, string];
      return { method, path, description: "OAuth flow of an authorization key (no session needed)", requires: null, keyTypes: ["app"], class: "read" };
    }),
  ],
  limits: {
    perMinute: 300,
    portalRequestsPerSecond: 10,
    portalLimitCode: "BITRIX_UNAVAILABLE",
    failedAuthPerMinute: 20,
  },
  errors: {
    insufficientScope: { default: "SCOPE_DENIED", management: "MANAGEMENT_SCOPE_REQUIRED" },
    pendingReissue: "BITRIX_ACCESS_DENIED",
    keyTypeNotAllowed: { default: "KEY_TYPE_NOT_ALLOWED", management: "MANAGEMENT_KEY_NO_ENTITY_ACCESS" },
  },
  errorCodes: {
    BITRIX_UNAVAILABLE: {
      status: 502,
      message: "Bitrix24 did not answer, or the portal's request limit (shared by all its keys) is spent.",
    },
    OAUTH_REQUIRED: { status: 403, message: "This endpoint needs an authorization key (vibe_app_) with a user session." },
  },
};
