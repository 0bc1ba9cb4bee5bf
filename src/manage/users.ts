import { randomUUID } from "node:crypto";
import { KeygateError } from "../core/errors.ts";
import { StoreConflictError, type KeyRecord, type User, type UserRole } from "../store/store.ts";
import { auditEvent } from "./audit.ts";
import type { Actor, Keygate } from "./context.ts";
import { createKey } from "./keys.ts";

const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** The email trimmed and lower-cased (as the store keeps it); VALIDATION_ERROR when it is not one. */
export function emailOrFail(input: string, param = "email"): string {
  const email = input.trim().toLowerCase();
  if (!EMAIL.test(email)) throw new KeygateError("VALIDATION_ERROR", { message: `"${input}" is not an email address`, param });
  return email;
}

export async function createUser(kg: Keygate, actor: Actor | null, input: { email: string; name?: string; role?: UserRole }): Promise<User> {
  const email = emailOrFail(input.email);
  const user: User = { id: randomUUID(), email, name: input.name?.trim() || email.split("@")[0]!, role: input.role ?? "user", createdAt: kg.now() };
  try {
    await kg.store.createUser(user, { audit: [auditEvent(kg, actor, "user.create", { type: "user", id: user.id, portalId: null }, null, user)] });
  } catch (e) {
    if (e instanceof StoreConflictError) throw new KeygateError("USER_EXISTS", { param: "email" });
    throw e;
  }
  return user;
}

/** A management key (the profile's, or keygate's own) for a user, acting as that user: the operator's way in. */
export async function issueManagementKey(kg: Keygate, user: User, scopes: string[] | string, name = "Management key"): Promise<{ key: KeyRecord; rawKey: string }> {
  return createKey(kg, { user, keyId: null, ip: null }, { type: kg.profile.management.keyType.id, name, scopes });
}
