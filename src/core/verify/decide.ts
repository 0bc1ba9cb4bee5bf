import type { Profile, Route } from "../profile/profile.ts";
import type { KeyTypeSpec } from "../profile/spec.ts";
import type { CompiledScopes } from "../scopes/grants.ts";

/**
 * The verification decision: a pure function of the key, the route, the request's facts and
 * the clock. Everything before it is lookup, everything after it is effect. The order of the
 * steps is part of the contract (docs/verification.md): it decides which error a request with
 * several faults gets.
 */

/** What the decision needs of a key, compiled once when the key enters the cache. */
export interface VerifiedKey {
  id: string;
  name: string;
  status: "ACTIVE" | "REVOKED";
  expiresAt: number | null;
  accessMode: "READWRITE" | "READONLY";
  keyType: KeyTypeSpec;
  /** Normalised allowed addresses; null = no restriction. */
  ipAllow: ReadonlySet<string> | null;
  scopes: CompiledScopes;
}

export interface RequestFacts {
  method: string;
  route: Route;
  /** The client address, normalised the same way as the allow-list entries. */
  clientIp: string;
  /** A session token came with the request (Authorization: Bearer next to an authorization key). */
  hasSession: boolean;
  now: number;
}

export interface Denial {
  code: string;
  details?: Record<string, unknown>;
}

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** Where the dashboard lets a user switch a key's mode (seed 003's `switchUrl`). */
export const SWITCH_URL = "/keys";

/** undefined = allowed (no allocation); otherwise the first failing step's code. */
export function decide(profile: Profile, key: VerifiedKey, req: RequestFacts): Denial | undefined {
  if (key.status === "REVOKED") return { code: "KEY_INACTIVE" };
  if (key.expiresAt !== null && req.now >= key.expiresAt) return { code: "KEY_EXPIRED", details: { expiresAt: new Date(key.expiresAt).toISOString() } };
  if (key.keyType.sessionUser && req.route.userContext && !req.hasSession) return { code: req.route.sessionError };
  if (key.ipAllow !== null && !key.ipAllow.has(req.clientIp)) return { code: "IP_NOT_ALLOWED", details: { ip: req.clientIp } };
  const access = req.route.access[key.scopes.keyTypeIndex]!;
  if (access.denied) return { code: access.denied.code };
  // Management keys are refused by endpoint (type, then scope) before their mode counts;
  // portal keys have a write blocked before anything else is said about it.
  if (key.keyType.readOnlyByMethod) return scopeDenial(profile, key, req.route) ?? modeDenial(key, req);
  return modeDenial(key, req) ?? scopeDenial(profile, key, req.route);
}

function modeDenial(key: VerifiedKey, req: RequestFacts): Denial | undefined {
  if (key.accessMode !== "READONLY") return undefined;
  const write = key.keyType.readOnlyByMethod ? WRITE_METHODS.has(req.method) : req.route.class === "write";
  if (!write) return undefined;
  const details: Record<string, unknown> = {};
  if (!key.keyType.readOnlyByMethod && req.route.upstreamMethod !== undefined) details.method = req.route.upstreamMethod;
  details.keyName = key.name;
  details.currentMode = key.accessMode;
  details.switchUrl = SWITCH_URL;
  return { code: "WRITE_BLOCKED_READONLY_KEY", details };
}

function scopeDenial(profile: Profile, key: VerifiedKey, route: Route): Denial | undefined {
  const decision = profile.checkRoute(key.scopes, route);
  if (decision.allowed) return undefined;
  return {
    code: decision.code,
    details: { requiredScope: decision.missing.join(","), missing: decision.missing, coveredBy: decision.coveredBy },
  };
}
