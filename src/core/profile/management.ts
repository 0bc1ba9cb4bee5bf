import type { ProfileSpec, RouteSpec } from "./spec.ts";

/**
 * The management API (keys, portals, members, audit) is keygate's, the same under every profile:
 * a profile decides the scopes that guard it. A profile that names no management key type (no
 * `portalless` one: Atender, RogerIQ, most profile files) gets keygate's own, so that people can
 * issue keys under every profile (docs/profiles.md, "Management keys").
 */

/** The scopes guarding the management API's two halves. */
export interface ManagementScopes {
  keys: string;
  portals: string;
}

/** The management API's route table, with the profile's management key type and scopes. */
export function managementRoutes(keyType: string, scopes: ManagementScopes): RouteSpec[] {
  const route = (method: string, path: string, scope: string, description: string): RouteSpec => ({
    method,
    path,
    description,
    requires: scope,
    keyTypes: [keyType],
    keyTypeError: { default: "MANAGEMENT_KEY_REQUIRED" },
  });
  return [
    route("GET", "/v1/portals", scopes.portals, "List your portals"),
    route("GET", "/v1/portals/:id", scopes.portals, "One of your portals, with your role (its admins: a sandbox portal's webhook URL)"),
    route("POST", "/v1/portals", scopes.portals, "Create a portal (you become its admin)"),
    route("PATCH", "/v1/portals/:id", scopes.portals, "Change a portal: default access policy, name, upstream, request limit (admins)"),
    route("POST", "/v1/portals/:id/members", scopes.portals, "Add a member or change a role (admins)"),
    route("GET", "/v1/portals/:id/connection", scopes.portals, "Test the portal's upstream now (admins)"),
    route("GET", "/v1/portals/:id/members", scopes.portals, "The portal's members with their email and role (admins)"),
    route("DELETE", "/v1/portals/:id/members/:userId", scopes.portals, "Remove a member (admins)"),
    route("GET", "/v1/portals/:id/audit", scopes.portals, "The portal's audit trail (admins)"),
    route("POST", "/v1/portals/:id/invitations", scopes.portals, "Invite someone by email (admins); the one-time link is shown once"),
    route("GET", "/v1/portals/:id/invitations", scopes.portals, "Pending invitations (admins)"),
    route("DELETE", "/v1/portals/:id/invitations/:invitationId", scopes.portals, "Withdraw an invitation (admins)"),
    route("POST", "/v1/invitations/accept", scopes.portals, "Accept an invitation made for your email"),
    route("GET", "/v1/keys", scopes.keys, "List the keys of a portal (portalId query parameter), or your management keys (type=management)"),
    route("POST", "/v1/keys", scopes.keys, "Create a key: an API key on a portal, or a management key of your own"),
    route("GET", "/v1/keys/:id", scopes.keys, "One key, without its secret"),
    route("PATCH", "/v1/keys/:id", scopes.keys, "Update a key"),
    route("DELETE", "/v1/keys/:id", scopes.keys, "Delete a key"),
    route("POST", "/v1/keys/:id/rotate", scopes.keys, "Reissue a key; the old one works 24 more hours"),
    route("GET", "/v1/keys/:id/audit", scopes.keys, "A key's audit trail"),
    route("GET", "/v1/keys/:id/usage", scopes.keys, "A key's usage: requests per minute, addresses, the request log"),
    route("GET", "/v1/keys/:id/scope-advice", scopes.keys, "The narrowest scopes that cover what a key was used for (docs/scope-advice.md)"),
  ];
}

/** keygate's own management key type: its id, prefix and scopes. */
export const KEYGATE_MANAGEMENT = {
  id: "management",
  prefix: "kg_mgmt_",
  scopes: { keys: "keygate:keys", portals: "keygate:portals" } satisfies ManagementScopes,
} as const;

/** keygate's self-description and the owner's notifications: every key type may call them, management keys included. */
const SELF_PATHS = new Set(["/v1/me", "/v1/guide", "/v1/openapi.json", "/v1/me/notifications", "/v1/me/notifications/:id/read"]);

/**
 * The profile as keygate serves it: unchanged when it names a management key type; otherwise with
 * keygate's own added — the key type, a "management" scope group only it may hold, the
 * management routes, and error codes that name its prefix. The profile's own scopes and routes
 * stay its key types' (a management key holds no API scope and calls no API route), except
 * keygate's self-description.
 */
export function withManagement(spec: ProfileSpec): ProfileSpec {
  if (spec.keyTypes.some((k) => k.portalless)) return spec;
  const { id, prefix, scopes } = KEYGATE_MANAGEMENT;
  const own = spec.keyTypes.map((k) => k.id);
  const ownPrefixes = spec.keyTypes.map((k) => k.prefix).join(", ");
  return {
    ...spec,
    keyTypes: [
      ...spec.keyTypes,
      { id, prefix, label: "Management key", description: "keygate's management key: not bound to a portal; manages your keys and portals; calls no API route.", readOnlyByMethod: true, portalless: true },
    ],
    groups: [
      ...spec.groups.map((g) => ({ ...g, keyTypes: g.keyTypes ?? own })),
      {
        id: "management",
        label: "Management",
        description: `Scopes of keygate's management keys (${prefix}); management keys hold no other scope.`,
        keyTypes: [id],
        resources: [
          { id: scopes.keys, description: "/v1/keys (list, create, update, rotate, revoke, delete, usage)" },
          { id: scopes.portals, description: "/v1/portals (list, create, change, members, audit trail)" },
        ],
      },
    ],
    routes: [...spec.routes.map((r) => (r.keyTypes !== undefined || SELF_PATHS.has(r.path) ? r : { ...r, keyTypes: own })), ...managementRoutes(id, scopes)],
    errors: {
      ...spec.errors,
      insufficientScope: { [id]: "MANAGEMENT_SCOPE_REQUIRED", ...spec.errors.insufficientScope },
      keyTypeNotAllowed: { [id]: "MANAGEMENT_KEY_NO_ENTITY_ACCESS", ...spec.errors.keyTypeNotAllowed },
    },
    errorCodes: {
      MANAGEMENT_KEY_NO_ENTITY_ACCESS: { status: 403, message: `Management keys (${prefix}) cannot call this endpoint: use an API key (${ownPrefixes}).` },
      MANAGEMENT_KEY_REQUIRED: { status: 403, message: `This endpoint needs a management key (${prefix}).` },
      ...spec.errorCodes,
    },
  };
}
