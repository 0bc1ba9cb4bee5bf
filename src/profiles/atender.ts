import type { ProfileSpec, RouteSpec } from "../core/profile/spec.ts";

/**
 * Atender (seed 002): `surface:action` scopes, `:write` implies `:read`, and bundles that
 * are expanded when a key is issued. The contents of `integration` are not public: ours is
 * documented in docs/profiles.md.
 */

/** [surface, description, path under /api/v1] */
const surfaces: [string, string, string][] = [
  ["knowledge", "Knowledge Base: articles, categories, subcategories, tags, search", "kb"],
  ["conversations", "Conversations, messages, attachments; send messages, change status, assign", "conversations"],
  ["contacts", "Contacts and their custom field values", "contacts"],
  ["tags", "Tags and the tag tree; assign tags to conversations", "tags"],
  ["analytics", "Dashboards, breach rates, conversation volume, agent stats (write is rarely granted)", "analytics"],
  ["users", "Users", "users"],
  ["settings", "Settings", "settings"],
  ["search", "Search", "search"],
  ["bulk", "Bulk operations", "bulk"],
  ["webhooks", "Webhook subscriptions", "webhooks"],
  ["channels", "Channels", "channels"],
  ["automations", "Automations", "automations"],
  ["agents", "Agents", "agents"],
  ["snippets", "Snippets", "snippets"],
  ["sla", "SLA policies", "sla"],
  ["attachments", "Attachments", "attachments"],
  ["notifications", "Notifications", "notifications"],
  ["teams", "Teams", "teams"],
  ["csat", "Customer satisfaction surveys", "csat"],
  ["status", "Status", "status"],
];

const every = (action: string) => surfaces.map(([id]) => `${id}:${action}`);
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

export const atender: ProfileSpec = {
  id: "atender",
  title: "Atender",
  description: "Helpdesk API: surface:read / surface:write scopes (write implies read) and pre-built bundles.",
  keyTypes: [{ id: "api", prefix: "sa_live_", label: "API key", description: "A production key, sent as Authorization: Bearer." }],
  actionGraphs: { readWrite: { read: [], write: ["read"] } },
  groups: [
    {
      id: "api",
      label: "API",
      resources: surfaces.map(([id, description]) => ({ id, description, actions: "readWrite", ...(id === "knowledge" ? { aliases: ["kb"] } : {}) })),
    },
  ],
  bundles: [
    { id: "basic", description: "Read-only integrations, BI dashboards, audit tooling", scopes: ["contacts:read", "conversations:read", "tags:read"] },
    { id: "read_all", description: "Every :read scope — comprehensive monitoring or analytics integrations", scopes: every("read") },
    { id: "write_all", description: "Every :write scope — migration tools, comprehensive sync integrations", scopes: every("write") },
    { id: "full_access", description: "Every scope — power-user integrations, internal tooling", scopes: [...every("read"), ...every("write")] },
    { id: "analytics_only", description: "Reporting dashboards", scopes: ["analytics:read", "conversations:read"] },
    {
      id: "integration",
      description: "A balanced set for generic third-party (Zapier-style) integrations: work conversations, contacts and tags, subscribe to webhooks, read the rest they refer to",
      scopes: ["conversations:write", "contacts:write", "tags:write", "webhooks:write", "knowledge:read", "users:read", "teams:read", "channels:read", "attachments:read"],
    },
  ],
  recipes: [
    { task: "Sync KB articles from a markdown vault", scopes: ["knowledge:read", "knowledge:write"] },
    { task: "Read-only BI dashboard", scopes: ["analytics:read", "conversations:read"] },
    { task: "Customer onboarding tool that creates contacts", scopes: ["contacts:write"] },
    { task: "Internal admin tool that fully manages everything", scopes: ["full_access"], note: "only for trusted internal services" },
  ],
  methodDefaults: { GET: "read", POST: "write", PUT: "write", PATCH: "write", DELETE: "write" },
  routes: [
    // keygate's own self-description, for keys of every profile.
    { method: "GET", path: "/v1/me", description: "Key self-description", requires: null },
    { method: "GET", path: "/v1/guide", description: "The endpoints this key can call", requires: null },
    // Verify mode (docs/upstreams.md): no verify scope in this profile, so any key may ask, about keys of its own portal only.
    { method: "POST", path: "/v1/verify", description: "Verify mode: the decision for another key of the portal on a request, without forwarding it", requires: null, class: "read" },
    ...surfaces.flatMap(([id, , path]) =>
      METHODS.map((method): RouteSpec => ({ method, path: `/api/v1/${path}/*`, resource: id, description: `${method} on the ${id} surface`, upstream: true })),
    ),
  ],
  limits: {
    // Per key, by tier (Atender's rate-limits reference); the day cap is a sliding 24-hour window here.
    tiers: [
      { id: "starter", description: "60/min, 10,000/day, burst 10", perMinute: 60, perDay: 10_000, perSecond: 10 },
      { id: "professional", description: "300/min, 100,000/day, burst 50", perMinute: 300, perDay: 100_000, perSecond: 50 },
      { id: "enterprise", description: "1,000/min, 1,000,000/day, burst 200", perMinute: 1_000, perDay: 1_000_000, perSecond: 200 },
    ],
    defaultTier: "starter",
  },
  envelope: "flat",
  errors: {
    insufficientScope: { default: "INSUFFICIENT_SCOPE" },
    keyTypeNotAllowed: { default: "KEY_TYPE_NOT_ALLOWED" },
  },
};
