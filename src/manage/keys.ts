import { randomUUID } from "node:crypto";
import { KeygateError } from "../core/errors.ts";
import { realDay } from "../core/time.ts";
import { generateKey, keyDigest, keyDisplay } from "../core/keys/format.ts";
import type { KeyScopes } from "../core/scopes/grants.ts";
import { normalizeIpList } from "../limits/ip.ts";
import { type AccessMode, type KeyPatch, type KeyRecord, type KeyStatus, type Notification, type Portal, StoreConflictError } from "../store/store.ts";
import { auditEvent } from "./audit.ts";
import type { Actor, Keygate } from "./context.ts";

/** Seed 003: after a reissue the old key keeps working for 24 hours. */
export const ROTATION_GRACE_MS = 24 * 60 * 60 * 1000;
const MAX_NAME = 200;
const MAX_RATE_LIMIT = 100_000;

export interface CreateKeyInput {
  portalId?: string | null;
  name?: string;
  scopes?: string[] | string;
  type?: string;
  accessMode?: AccessMode;
  expiresAt?: string | null;
  rateLimit?: number | null;
  tier?: string | null;
  ipWhitelist?: string[];
}

export interface UpdateKeyInput {
  name?: string;
  scopes?: string[] | string;
  status?: KeyStatus;
  accessMode?: AccessMode;
  ipWhitelist?: string[];
  rateLimit?: number | null;
  tier?: string | null;
  expiresAt?: string | null;
}

/** A key as the API shows it: never the secret, never its digest. */
export interface KeyView {
  id: string;
  name: string;
  type: string;
  keyPrefix: string;
  keySuffix: string;
  portalId: string | null;
  ownerId: string;
  scopes: string[];
  scopesInEffect: string[];
  scopesPendingReissue: string[];
  status: KeyStatus | "EXPIRED";
  accessMode: AccessMode;
  ipWhitelist: string[];
  rateLimit: number | null;
  tier: string | null;
  expiresAt: string | null;
  createdAt: string;
  updatedAt: string;
  lastUsedAt: string | null;
  rotatedFromId: string | null;
  rotatedToId: string | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function keyStatus(key: Pick<KeyRecord, "status" | "expiresAt">, now: number): KeyStatus | "EXPIRED" {
  if (key.status === "REVOKED") return "REVOKED";
  return key.expiresAt !== null && now >= key.expiresAt ? "EXPIRED" : "ACTIVE";
}

export function keyView(kg: Keygate, key: KeyRecord): KeyView {
  const scopes: KeyScopes = { scopes: key.scopes, issued: key.issuedScopes };
  return {
    id: key.id,
    name: key.name,
    type: key.type,
    keyPrefix: key.keyPrefix,
    keySuffix: key.keySuffix,
    portalId: key.portalId,
    ownerId: key.ownerId,
    scopes: key.scopes,
    scopesInEffect: kg.profile.effective(scopes),
    scopesPendingReissue: kg.profile.pending(scopes),
    status: keyStatus(key, kg.now()),
    accessMode: key.accessMode,
    ipWhitelist: key.ipWhitelist,
    rateLimit: key.rateLimit,
    tier: key.tier,
    expiresAt: iso(key.expiresAt),
    createdAt: iso(key.createdAt)!,
    updatedAt: iso(key.updatedAt)!,
    lastUsedAt: iso(key.lastUsedAt),
    rotatedFromId: key.rotatedFromId,
    rotatedToId: key.rotatedToId,
  };
}

/** The audit trail's picture of a key: everything but the digest. */
function auditView(key: KeyRecord): Omit<KeyRecord, "digest"> {
  const rest: Partial<KeyRecord> = { ...key };
  delete rest.digest;
  return rest as Omit<KeyRecord, "digest">;
}

function scopesOrFail(kg: Keygate, type: string, input: string[] | string): string[] {
  const list = kg.profile.normalizeForKey(type, input);
  if (list.errors.length > 0) {
    throw new KeygateError("INVALID_SCOPES", {
      message: `Invalid scopes: ${list.errors.map((e) => (e.scope ? `${e.scope} (${e.message})` : e.message)).join("; ")}`,
      param: "scopes",
      details: { errors: list.errors, warnings: list.warnings },
    });
  }
  return list.scopes;
}

function nameOrFail(name: string | undefined): string {
  const trimmed = (name ?? "").trim();
  if (trimmed === "" || trimmed.length > MAX_NAME) {
    throw new KeygateError("VALIDATION_ERROR", { message: `name is required: 1 to ${MAX_NAME} characters`, param: "name" });
  }
  return trimmed;
}

function expiryOrFail(kg: Keygate, value: string | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const date = /^(\d{4})-(\d{2})-(\d{2})/.exec(value);
  const ms = date && realDay(Number(date[1]), Number(date[2]), Number(date[3])) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) throw new KeygateError("VALIDATION_ERROR", { message: "expiresAt must be an ISO-8601 date or null", param: "expiresAt" });
  if (ms <= kg.now()) throw new KeygateError("VALIDATION_ERROR", { message: "expiresAt must be in the future", param: "expiresAt" });
  return ms;
}

function rateLimitOrFail(value: number | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  if (!Number.isInteger(value) || value < 1 || value > MAX_RATE_LIMIT) {
    throw new KeygateError("VALIDATION_ERROR", { message: `rateLimit is requests per second: a whole number from 1 to ${MAX_RATE_LIMIT}, or null`, param: "rateLimit" });
  }
  return value;
}

function tierOrFail(kg: Keygate, value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const tiers = (kg.profile.spec.limits?.tiers ?? []).map((t) => t.id);
  if (!tiers.includes(value)) {
    throw new KeygateError("VALIDATION_ERROR", { message: tiers.length ? `tier must be one of ${tiers.join(", ")}, or null` : `profile ${kg.profile.id} has no rate-limit tiers`, param: "tier" });
  }
  return value;
}

function ipListOrFail(value: string[] | undefined): string[] {
  const { ips, problems } = normalizeIpList(value ?? []);
  const first = problems[0];
  if (first) {
    throw new KeygateError("VALIDATION_ERROR", {
      message: problems.map((p) => `ipWhitelist[${p.index}]: ${p.message}`).join("; "),
      param: `ipWhitelist[${first.index}]`,
      details: { errors: problems },
    });
  }
  return ips;
}

/** The portal, and the actor's role on it; refuses non-members. */
async function portalForMember(kg: Keygate, actor: Actor, portalId: string | null | undefined): Promise<{ portal: Portal; admin: boolean }> {
  if (portalId === undefined || portalId === null || portalId === "") throw new KeygateError("MISSING_PORTAL_ID", { param: "portalId" });
  const portal = await kg.store.getPortal(portalId);
  if (!portal) throw new KeygateError("PORTAL_NOT_FOUND", { param: "portalId" });
  const member = await kg.store.getMember(portal.id, actor.user.id);
  if (!member) throw new KeygateError("NOT_PORTAL_MEMBER", { param: "portalId" });
  return { portal, admin: member.role === "ADMIN" };
}

/**
 * Creates a key and returns its secret, which is never stored and never shown again: a key on a
 * portal the actor is a member of, or a management key of the actor's own (seed 001: any user
 * creates their own management keys), never with a scope the management key they act with lacks.
 */
export async function createKey(kg: Keygate, actor: Actor, input: CreateKeyInput): Promise<{ key: KeyRecord; rawKey: string }> {
  const type = input.type ?? kg.profile.spec.keyTypes[0]!.id;
  const keyType = kg.profile.keyType(type);
  if (!keyType) {
    throw new KeygateError("VALIDATION_ERROR", { message: `type must be one of ${kg.profile.spec.keyTypes.map((k) => k.id).join(", ")}`, param: "type" });
  }
  let portalId: string | null = null;
  let accessMode: AccessMode = input.accessMode ?? "READWRITE";
  if (keyType.portalless) {
    if (input.portalId !== undefined && input.portalId !== null) {
      throw new KeygateError("VALIDATION_ERROR", { message: `${keyType.label}s are not bound to a portal: leave portalId out`, param: "portalId" });
    }
  } else {
    const { portal, admin } = await portalForMember(kg, actor, input.portalId);
    if (portal.upstream === null) throw new KeygateError("PORTAL_NOT_LINKED", { param: "portalId" });
    // The portal policy is the default mode of new keys; under READONLY only admins may ask for writes.
    if (portal.defaultAccessMode === "READONLY" && !admin && input.accessMode === "READWRITE") {
      throw new KeygateError("KEY_POLICY_READONLY_REQUIRED", { param: "accessMode" });
    }
    accessMode = input.accessMode ?? portal.defaultAccessMode;
    portalId = portal.id;
  }
  const name = nameOrFail(input.name);
  const scopes = scopesOrFail(kg, type, input.scopes ?? []);
  await assertWithinCaller(kg, actor, type, scopes, "scopes");
  const expiresAt = expiryOrFail(kg, input.expiresAt);
  const rateLimit = rateLimitOrFail(input.rateLimit);
  const tier = tierOrFail(kg, input.tier);
  const ipWhitelist = ipListOrFail(input.ipWhitelist);

  const rawKey = generateKey(keyType.prefix);
  const now = kg.now();
  const issued = kg.profile.issue(scopes);
  const key: KeyRecord = {
    id: randomUUID(),
    type,
    name,
    ownerId: actor.user.id,
    portalId,
    digest: keyDigest(kg.serverSecret, rawKey),
    ...keyDisplay(keyType.prefix, rawKey),
    scopes: issued.scopes,
    issuedScopes: issued.issued,
    status: "ACTIVE",
    accessMode,
    ipWhitelist,
    rateLimit,
    tier,
    expiresAt,
    createdAt: now,
    updatedAt: now,
    lastUsedAt: null,
    rotatedFromId: null,
    rotatedToId: null,
    version: 1,
  };
  await kg.store.createKey(key, { audit: [auditEvent(kg, actor, "key.create", { type: "key", id: key.id, portalId }, null, auditView(key))] });
  // A cache may remember its digest as unknown (a guess that came first): not any more.
  kg.keyChanged(key);
  return { key, rawKey };
}

/**
 * The key if the actor may see it: its owner while they are a member of its portal (a management
 * key: its owner), or an admin of its portal; otherwise KEY_NOT_FOUND, saying nothing about other
 * people's keys. Membership is checked on every action, so a member removed from a portal can
 * neither see nor re-activate, widen or rotate the keys the removal revoked. `admin`: the actor
 * administers the key's portal; `byAdmin`: and acts on someone else's key.
 */
export async function keyForActor(kg: Keygate, actor: Actor, id: string): Promise<{ key: KeyRecord; byAdmin: boolean; admin: boolean }> {
  const key = await kg.store.getKey(id);
  if (key) {
    if (key.portalId === null) {
      if (key.ownerId === actor.user.id) return { key, byAdmin: false, admin: false };
    } else {
      const member = await kg.store.getMember(key.portalId, actor.user.id);
      const admin = member?.role === "ADMIN";
      if (member && key.ownerId === actor.user.id) return { key, byAdmin: false, admin };
      if (admin) return { key, byAdmin: true, admin };
    }
  }
  throw new KeygateError("KEY_NOT_FOUND");
}

/**
 * A user keeps one active management key at least: without it nobody can act for them through
 * the API (a new one is created with a management key, or by the operator's CLI).
 */
async function assertNotLastManagementKey(kg: Keygate, key: KeyRecord): Promise<void> {
  if (!kg.profile.keyType(key.type)?.portalless || keyStatus(key, kg.now()) !== "ACTIVE") return;
  const others = (await kg.store.listKeys({ ownerId: key.ownerId, type: key.type })).filter((k) => k.id !== key.id && keyStatus(k, kg.now()) === "ACTIVE");
  if (others.length === 0) throw new KeygateError("LAST_MANAGEMENT_KEY");
}

/**
 * Acting through a management key, nobody reaches a management key stronger than the one they act
 * with: no key grants, rotates (and so learns the secret of) or removes scopes it does not hold.
 */
async function assertWithinCaller(kg: Keygate, actor: Actor, type: string, scopes: readonly string[], param: string): Promise<void> {
  if (actor.keyId === null || !kg.profile.keyType(type)?.portalless) return;
  const caller = await kg.store.getKey(actor.keyId);
  const held = new Set(caller ? kg.profile.effective({ scopes: caller.scopes, issued: caller.issuedScopes }) : []);
  const beyond = scopes.filter((s) => !held.has(s));
  if (beyond.length > 0) throw new KeygateError("KEY_SCOPE_EXCEEDS_CALLER", { param, details: { scopes: beyond } });
}

/** The key if the actor may change it: visible to them, and not stronger than the key they act with. */
async function keyForChange(kg: Keygate, actor: Actor, id: string): Promise<{ key: KeyRecord; byAdmin: boolean; admin: boolean }> {
  const found = await keyForActor(kg, actor, id);
  await assertWithinCaller(kg, actor, found.key.type, found.key.scopes, "id");
  return found;
}

/** The keys of a portal (its admins: everyone's; members: their own), of one type if given; or, for the management key type, the actor's own management keys. */
export async function listKeys(kg: Keygate, actor: Actor, filter: { portalId?: string; type?: string }): Promise<KeyRecord[]> {
  const keyType = filter.type === undefined ? undefined : kg.profile.keyType(filter.type);
  if (filter.type !== undefined && !keyType) {
    throw new KeygateError("VALIDATION_ERROR", { message: `type must be one of ${kg.profile.spec.keyTypes.map((k) => k.id).join(", ")}`, param: "type" });
  }
  if (keyType?.portalless) return kg.store.listKeys({ ownerId: actor.user.id, type: keyType.id });
  const { portal, admin } = await portalForMember(kg, actor, filter.portalId);
  return kg.store.listKeys({ portalId: portal.id, ...(admin ? {} : { ownerId: actor.user.id }), ...(keyType ? { type: keyType.id } : {}) });
}

export async function updateKey(kg: Keygate, actor: Actor, id: string, input: UpdateKeyInput): Promise<KeyRecord> {
  const { key, byAdmin, admin } = await keyForChange(kg, actor, id);
  const patch: KeyPatch = {};
  if (input.name !== undefined) patch.name = nameOrFail(input.name);
  if (input.scopes !== undefined) {
    const amended = kg.profile.amend({ scopes: key.scopes, issued: key.issuedScopes }, scopesOrFail(kg, key.type, input.scopes));
    await assertWithinCaller(kg, actor, key.type, amended.scopes, "scopes");
    patch.scopes = amended.scopes;
    patch.issuedScopes = amended.issued;
  }
  if (input.status !== undefined) {
    if (input.status === "REVOKED") await assertNotLastManagementKey(kg, key);
    patch.status = input.status;
  }
  if (input.accessMode !== undefined) {
    // Under a READONLY portal policy only an administrator makes a key read-write; keys that are read-write already stay so.
    if (input.accessMode === "READWRITE" && key.accessMode !== "READWRITE" && key.portalId !== null && !admin) {
      const portal = await kg.store.getPortal(key.portalId);
      if (portal?.defaultAccessMode === "READONLY") throw new KeygateError("KEY_POLICY_READONLY_REQUIRED", { param: "accessMode" });
    }
    patch.accessMode = input.accessMode;
  }
  if (input.ipWhitelist !== undefined) patch.ipWhitelist = ipListOrFail(input.ipWhitelist);
  if (input.rateLimit !== undefined) patch.rateLimit = rateLimitOrFail(input.rateLimit);
  if (input.tier !== undefined) patch.tier = tierOrFail(kg, input.tier);
  if (input.expiresAt !== undefined) {
    patch.expiresAt = expiryOrFail(kg, input.expiresAt);
    // A rotated key stops working when its grace period ends (seed 003): its expiry may come sooner, never later.
    if (key.rotatedToId !== null && key.expiresAt !== null && (patch.expiresAt === null || patch.expiresAt > key.expiresAt)) {
      throw new KeygateError("KEY_ALREADY_ROTATED", {
        message: `The key was rotated: it stops working at ${iso(key.expiresAt)}, the end of its transition period, and that cannot be moved later.`,
        param: "expiresAt",
        details: { rotatedToId: key.rotatedToId, expiresAt: iso(key.expiresAt) },
      });
    }
  }
  if (Object.keys(patch).length === 0) throw new KeygateError("VALIDATION_ERROR", { message: "give at least one field to change" });

  const now = kg.now();
  const notifications: Notification[] = [];
  if (byAdmin && patch.accessMode !== undefined && patch.accessMode !== key.accessMode) {
    notifications.push({
      id: randomUUID(),
      userId: key.ownerId,
      at: now,
      kind: "key.access_mode_changed",
      message: `A portal administrator changed the mode of your key "${key.name}" (${key.keyPrefix}…) from ${key.accessMode} to ${patch.accessMode}.`,
      data: { keyId: key.id, from: key.accessMode, to: patch.accessMode, by: actor.user.id },
      readAt: null,
    });
  }
  const after = { ...key, ...patch, updatedAt: now, version: key.version + 1 };
  const updated = await kg.store.updateKey(id, patch, now, {
    audit: [auditEvent(kg, actor, "key.update", { type: "key", id, portalId: key.portalId }, auditView(key), auditView(after))],
    notifications,
  });
  if (!updated) throw new KeygateError("KEY_NOT_FOUND");
  kg.keyChanged(updated);
  return updated;
}

/**
 * Reissues a key: a new secret with the same settings and the scopes it shows put into effect
 * (where the key type allows it). The old key works for 24 more hours, then expires.
 */
export async function rotateKey(kg: Keygate, actor: Actor, id: string): Promise<{ key: KeyRecord; rawKey: string; old: KeyRecord }> {
  const { key: old, byAdmin } = await keyForChange(kg, actor, id);
  // The new secret acts as the key's owner: only the owner receives it.
  if (byAdmin) throw new KeygateError("KEY_OWNER_ONLY");
  const now = kg.now();
  if (keyStatus(old, now) !== "ACTIVE") throw new KeygateError("KEY_NOT_ACTIVE");
  if (old.rotatedToId !== null) throw new KeygateError("KEY_ALREADY_ROTATED", { details: { rotatedToId: old.rotatedToId } });
  const keyType = kg.profile.keyType(old.type);
  if (!keyType) throw new KeygateError("KEY_NOT_FOUND");
  const reissued = kg.profile.reissue(old.type, { scopes: old.scopes, issued: old.issuedScopes });
  const rawKey = generateKey(keyType.prefix);
  const key: KeyRecord = {
    ...old,
    id: randomUUID(),
    digest: keyDigest(kg.serverSecret, rawKey),
    ...keyDisplay(keyType.prefix, rawKey),
    scopes: reissued.scopes,
    issuedScopes: reissued.issued,
    createdAt: now,
    updatedAt: now,
    lastUsedAt: null,
    rotatedFromId: old.id,
    rotatedToId: null,
    version: 1,
  };
  const graceEnd = now + ROTATION_GRACE_MS;
  const oldPatch: KeyPatch = { rotatedToId: key.id, expiresAt: old.expiresAt === null ? graceEnd : Math.min(old.expiresAt, graceEnd) };
  const oldAfter = { ...old, ...oldPatch, updatedAt: now, version: old.version + 1 };
  const updatedOld = await kg.store
    .rotateKey(old.id, oldPatch, key, now, {
      audit: [
        auditEvent(kg, actor, "key.rotate", { type: "key", id: old.id, portalId: old.portalId }, auditView(old), auditView(oldAfter)),
        auditEvent(kg, actor, "key.create", { type: "key", id: key.id, portalId: key.portalId }, null, auditView(key)),
      ],
    })
    .catch((e: unknown) => {
      if (e instanceof StoreConflictError) throw new KeygateError("KEY_ALREADY_ROTATED");
      throw e;
    });
  if (!updatedOld) throw new KeygateError("KEY_NOT_FOUND");
  kg.keyChanged(updatedOld);
  kg.keyChanged(key);
  return { key, rawKey, old: updatedOld };
}

export async function deleteKey(kg: Keygate, actor: Actor, id: string): Promise<void> {
  const { key } = await keyForChange(kg, actor, id);
  await assertNotLastManagementKey(kg, key);
  const result = await kg.store.deleteKey(id, { audit: [auditEvent(kg, actor, "key.delete", { type: "key", id, portalId: key.portalId }, auditView(key), null)] });
  if (result === "has_dependents") throw new KeygateError("KEY_HAS_ACTIVE_SERVERS", { details: { dependents: await kg.store.countDependents(id) } });
  if (result === "not_found") throw new KeygateError("KEY_NOT_FOUND");
  kg.keyChanged(key);
}

/** The key's audit trail, newest first: for whoever may see the key (its owner, its portal's admins). */
export async function keyAudit(kg: Keygate, actor: Actor, id: string, limit: number) {
  await keyForActor(kg, actor, id);
  return kg.store.listAudit({ entityId: id, limit });
}

/**
 * Seed 003: "Check the request log for requests from unknown addresses". The addresses cover the
 * whole retained log; the requests are a page of it (newest first, optionally from one address,
 * before a time).
 */
export async function keyUsage(kg: Keygate, actor: Actor, id: string, query: { limit: number; ip?: string; before?: number }) {
  const { key } = await keyForActor(kg, actor, id);
  const now = kg.now();
  const [requests, perMinute, addresses] = await Promise.all([
    kg.store.listRequests(id, query),
    kg.store.requestsPerMinute(id, now - 60 * 60_000),
    kg.store.requestAddresses(id),
  ]);
  return {
    keyId: id,
    lastUsedAt: iso(key.lastUsedAt),
    requestsPerMinute: perMinute.map((m) => ({ minute: iso(m.minute), requests: m.count })),
    addresses: addresses.map((a) => ({ ip: a.ip, requests: a.count, lastSeen: iso(a.lastSeen) })),
    requests: requests.map((r) => ({ at: iso(r.at), ip: r.ip, method: r.method, path: r.path, status: r.status, latencyMs: Math.round(r.latencyMs * 100) / 100 })),
  };
}
