/**
 * The profile format: plain data that describes one product's API keys and scopes.
 * Built-in profiles (src/profiles/*) and user profile files share this shape; it is
 * checked structurally by src/profiles/schema.ts and semantically by compileProfile.
 */

/** An action graph: action name -> the actions it directly implies. */
export type ActionGraph = Record<string, string[]>;

export interface KeyTypeSpec {
  id: string;
  /** Secret prefix, e.g. "vibe_api_". */
  prefix: string;
  label: string;
  description?: string;
  /** Read-only mode blocks by HTTP method instead of by the route's read/write class. */
  readOnlyByMethod?: boolean;
  /** What GET /v1/me calls this type (VibeCode: personal, oauth_app, management); default: the id. */
  selfType?: string;
  /** Acts for the user of a session token sent beside it; routes with `userContext` need one. */
  sessionUser?: boolean;
  /** Not bound to a portal (VibeCode management keys). */
  portalless?: boolean;
  /**
   * Whether reissuing a key of this type puts scopes added after issue into effect (default
   * true). VibeCode authorization keys: no, the app must be recreated and authorized again.
   */
  reissueGrantsLocked?: boolean;
}

export interface ResourceSpec {
  id: string;
  description: string;
  /**
   * Leveled resources name an action graph (a key of `actionGraphs`) or give one inline;
   * flat resources (Bitrix24's `crm`) omit it: the scope string is the id itself.
   */
  actions?: string | ActionGraph;
  aliases?: string[];
  /** Key types for which this scope is always in effect (VibeCode: vibe:ai for personal keys). */
  autoGrant?: string[];
  /** Shown in the catalog but never selectable by a user. */
  reserved?: boolean;
  /** Overrides the group's key types. */
  keyTypes?: string[];
}

export interface GroupSpec {
  id: string;
  label: string;
  description?: string;
  /** Scopes of this group added to an existing key are shown but take effect only on reissue. */
  lockedAtIssue?: boolean;
  /** Key types that may hold scopes of this group (default: every key type). */
  keyTypes?: string[];
  /** Whether coarse scopes (read/write/admin) reach this group's resources. */
  coarse?: boolean;
  resources: ResourceSpec[];
}

export interface CoarseSpec {
  id: string;
  description: string;
  /** The action granted on every coarse-reachable resource; "*" = the top of each resource's graph. */
  action: string;
}

export interface BundleSpec {
  id: string;
  description: string;
  scopes: string[];
}

/** A requirement: one scope, all of a list, or a nested all-of / any-of. */
export type RequirementSpec = string | RequirementSpec[] | { allOf: RequirementSpec[] } | { anyOf: RequirementSpec[] };

export interface RouteSpec {
  method: string;
  /** `/v1/deals/:id`; `*` as the last segment matches the rest of the path. */
  path: string;
  description?: string;
  /** The route's resource, used with `methodDefaults` when `requires` is absent. */
  resource?: string;
  /** Scopes required; `null` = none beyond being an allowed key type. */
  requires?: RequirementSpec | null;
  /** Per key type requirement, overriding `requires`. */
  requiresByKeyType?: Record<string, RequirementSpec | null>;
  /** Key types allowed on this route (default: all). */
  keyTypes?: string[];
  /** Error codes for key types not in `keyTypes`, over the profile's `keyTypeNotAllowed`. */
  keyTypeError?: Record<string, string>;
  /** Read or write, for read-only keys (default: GET/HEAD/OPTIONS read, anything else write). */
  class?: "read" | "write";
  /** The route acts on behalf of a user: an app key needs a session token. */
  userContext?: boolean;
  /** The code an app key without its session token gets on a `userContext` route (default TOKEN_MISSING). */
  sessionError?: string;
  /** Upstream method a write would call (reported when a read-only key is blocked). */
  upstreamMethod?: string;
  /** Forwarded to the portal's upstream: spends the portal's shared budget. */
  upstream?: boolean;
  /** The route's own limit per key, requests in a sliding minute, in place of the key's per-minute platform limit there (VibeCode: POST /v1/search 60, AI 600). */
  perMinute?: number;
}

/** A named rate-limit tier a key can carry (Atender, RogerIQ): it replaces the platform limit. */
export interface TierSpec {
  id: string;
  description: string;
  perMinute: number;
  /** A second, daily budget (sliding 24-hour window). */
  perDay?: number;
  /** A per-second ceiling on bursts. */
  perSecond?: number;
}

export interface LimitsSpec {
  /** Requests per minute per source (the key; the client IP without a valid key), sliding 60-second window. Default 300. */
  perMinute?: number;
  tiers?: TierSpec[];
  /** The tier of keys that carry none (default: none, the plain platform limit). */
  defaultTier?: string;
  /** A portal's shared budget in requests per second, when the portal sets none (default: none). */
  portalRequestsPerSecond?: number;
  /** The code when a portal's budget is spent (VibeCode: BITRIX_UNAVAILABLE). Default RATE_LIMITED. */
  portalLimitCode?: string;
  /** Failed authentication attempts per client IP per minute before it gets 429. Default 20. */
  failedAuthPerMinute?: number;
}

/** Error codes by key type; `default` applies to any key type not named. */
export type CodeByKeyType = { default: string } & Record<string, string>;

export interface ProfileSpec {
  id: string;
  title: string;
  description: string;
  keyTypes: KeyTypeSpec[];
  actionGraphs?: Record<string, ActionGraph>;
  groups: GroupSpec[];
  coarse?: CoarseSpec[];
  bundles?: BundleSpec[];
  /** Scopes that only work together (VibeCode: task with tasks); a list naming only part of a set gets a warning. */
  companions?: { scopes: string[]; note: string }[];
  /** Which scopes a typical task needs (shown by `keygate scopes list`). */
  recipes?: { task: string; scopes: string[]; note?: string }[];
  limits?: LimitsSpec;
  /** Action required by HTTP method for routes that name only a resource. */
  methodDefaults?: Record<string, string>;
  routes: RouteSpec[];
  errors: {
    insufficientScope: CodeByKeyType;
    /** Scope shown on the key but not in effect until reissue (issue-time lock). */
    pendingReissue?: string;
    keyTypeNotAllowed: CodeByKeyType;
  };
  /**
   * Response envelope: "vibecode" = {success, data} / {success: false, error: {code, message, …}};
   * "flat" = {data} / {error: message, code, request_id, …} (RogerIQ's shape). Default "vibecode".
   */
  envelope?: "vibecode" | "flat";
  /** Extra error codes this profile uses, with their HTTP status. */
  errorCodes?: Record<string, { status: number; message: string }>;
}
