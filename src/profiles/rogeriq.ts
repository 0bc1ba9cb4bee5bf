import type { ProfileSpec, RouteSpec } from "../core/profile/spec.ts";

/**
 * RogerIQ (seed 004): coarse `read` / `write` / `admin` plus `resource:read|write|admin`.
 * A route requires its resource's action by HTTP method (GET/HEAD read, else write);
 * overrides name a stronger one (project deletion needs projects:admin).
 */

const resources: [string, string][] = [
  ["conversations", "Conversations"],
  ["messages", "Messages: replies in conversations"],
  ["contacts", "Contacts"],
  ["kb", "Knowledge Base: articles, search, publishing"],
  ["agent", "Agent: status, configuration, respond, classify, suggest"],
  ["widget", "Widget"],
  ["integrations", "Integrations"],
  ["forms", "Forms"],
  ["beacons", "Beacons"],
  ["webhooks", "Webhooks: subscriptions, deliveries, secrets"],
  ["projects", "Projects"],
  ["analytics", "Analytics (dashboard-only)"],
  ["audit", "Audit (dashboard-only)"],
];

const P = "/v1/projects/:projectId";
const r = (method: string, path: string, resource: string, description: string, extra: Partial<RouteSpec> = {}): RouteSpec => ({
  method,
  path,
  resource,
  description,
  upstream: true,
  ...extra,
});
/** list, get, create, update, delete on a collection */
const crud = (path: string, resource: string, name: string): RouteSpec[] => [
  r("GET", path, resource, `List ${name}`),
  r("GET", `${path}/:id`, resource, `Get one of ${name}`),
  r("POST", path, resource, `Create in ${name}`),
  r("PATCH", `${path}/:id`, resource, `Update in ${name}`),
  r("DELETE", `${path}/:id`, resource, `Delete from ${name}`),
];

export const rogeriq: ProfileSpec = {
  id: "rogeriq",
  title: "RogerIQ",
  description: "Support platform API: coarse read/write/admin plus resource:read|write|admin, method defaults with per-route overrides.",
  keyTypes: [{ id: "api", prefix: "riq_", label: "API key", description: "Bound to one organization; X-API-Key or Authorization: Bearer." }],
  actionGraphs: { readWriteAdmin: { read: [], write: ["read"], admin: ["write"] } },
  groups: [
    {
      id: "api",
      label: "API",
      coarse: true,
      resources: resources.map(([id, description]) => ({ id, description, actions: "readWriteAdmin" })),
    },
  ],
  coarse: [
    { id: "read", description: "Any *:read", action: "read" },
    { id: "write", description: "Any *:read and *:write (not *:admin)", action: "write" },
    { id: "admin", description: "Everything", action: "*" },
  ],
  recipes: [
    { task: "Least-privilege key for an AI that drafts KB articles", scopes: ["kb:write", "conversations:read"] },
    { task: "Read-only metrics scraper", scopes: ["read"] },
    { task: "Read-only metrics scraper, fully granular", scopes: ["conversations:read", "contacts:read", "analytics:read"] },
    { task: "Full-access ops key (CI pipelines)", scopes: ["admin"], note: "use sparingly" },
  ],
  methodDefaults: { GET: "read", POST: "write", PUT: "write", PATCH: "write", DELETE: "write" },
  routes: [
    // keygate's own self-description, for keys of every profile.
    { method: "GET", path: "/v1/me", description: "Key self-description", requires: null },
    { method: "GET", path: "/v1/guide", description: "The endpoints this key can call", requires: null },
    // Verify mode (docs/upstreams.md): no verify scope in this profile, so any key may ask, about keys of its own portal only.
    { method: "POST", path: "/v1/verify", description: "Verify mode: the decision for another key of the portal on a request, without forwarding it", requires: null, class: "read" },
    r("GET", `${P}/kb/articles`, "kb", "List KB articles"),
    r("GET", `${P}/kb/articles/:id`, "kb", "Get a KB article"),
    r("GET", `${P}/kb/search`, "kb", "Search the KB"),
    r("POST", `${P}/kb/articles`, "kb", "Create a KB article"),
    r("PATCH", `${P}/kb/articles/:id`, "kb", "Update a KB article"),
    r("DELETE", `${P}/kb/articles/:id`, "kb", "Delete a KB article"),
    r("POST", `${P}/kb/articles/:id/publish`, "kb", "Publish a KB article"),

    r("GET", `${P}/conversations`, "conversations", "List conversations"),
    r("GET", `${P}/conversations/:id`, "conversations", "Get a conversation"),
    r("POST", `${P}/conversations`, "conversations", "Create a conversation"),
    r("PATCH", `${P}/conversations/:id`, "conversations", "Update a conversation (status, assignee)"),
    // Reading a conversation includes its messages ("read conversations to pull context").
    r("GET", `${P}/conversations/:id/messages`, "messages", "List the messages of a conversation", { requires: { anyOf: ["conversations:read", "messages:read"] } }),
    r("POST", `${P}/conversations/:id/messages`, "messages", "Send a message (reply)"),

    r("GET", `${P}/agent/status`, "agent", "Agent status"),
    r("GET", `${P}/agent/config`, "agent", "Agent configuration"),
    r("PATCH", `${P}/agent/config`, "agent", "Change the agent configuration"),
    r("POST", `${P}/agent/respond`, "agent", "Let the agent respond"),
    r("POST", `${P}/agent/classify`, "agent", "Classify a conversation"),
    r("POST", `${P}/agent/suggest`, "agent", "Suggest a reply"),

    ...crud(`${P}/webhooks`, "webhooks", "webhooks"),
    r("GET", `${P}/webhooks/:id/deliveries`, "webhooks", "Deliveries of a webhook"),
    r("POST", `${P}/webhooks/:id/test`, "webhooks", "Send a test event"),
    r("POST", `${P}/webhooks/:id/rotate-secret`, "webhooks", "Rotate a webhook's signing secret"),

    ...crud(`${P}/contacts`, "contacts", "contacts"),
    ...crud(`${P}/integrations`, "integrations", "integrations"),
    ...crud(`${P}/forms`, "forms", "forms"),
    ...crud(`${P}/beacons`, "beacons", "beacons"),
    r("GET", `${P}/widget`, "widget", "Widget settings"),
    r("PATCH", `${P}/widget`, "widget", "Change the widget"),

    r("GET", "/v1/orgs/:orgId/projects", "projects", "List projects"),
    r("GET", "/v1/orgs/:orgId/projects/:projectId", "projects", "Get a project"),
    r("POST", "/v1/orgs/:orgId/projects", "projects", "Create a project"),
    r("PATCH", "/v1/orgs/:orgId/projects/:projectId", "projects", "Update a project"),
    r("DELETE", "/v1/orgs/:orgId/projects/:projectId", "projects", "Delete a project: destructive and cascading", { requires: "projects:admin" }),
  ],
  limits: {
    // Per key by tier; requests without a key: 600/min per IP.
    perMinute: 600,
    tiers: [
      { id: "starter", description: "600 requests per minute", perMinute: 600 },
      { id: "pro", description: "3,000 requests per minute", perMinute: 3_000 },
      { id: "scale", description: "10,000 requests per minute", perMinute: 10_000 },
      { id: "enterprise", description: "30,000 requests per minute", perMinute: 30_000 },
    ],
    defaultTier: "starter",
  },
  envelope: "flat",
  errors: {
    insufficientScope: { default: "INSUFFICIENT_SCOPE" },
    keyTypeNotAllowed: { default: "KEY_TYPE_NOT_ALLOWED" },
  },
};
