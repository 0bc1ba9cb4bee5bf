import { randomUUID } from "node:crypto";
import type { AuditEvent } from "../store/store.ts";
import type { Actor, Keygate } from "./context.ts";

export function auditEvent(
  kg: Keygate,
  actor: Actor | null,
  action: string,
  entity: { type: AuditEvent["entityType"]; id: string; portalId: string | null },
  before: unknown,
  after: unknown,
): AuditEvent {
  return {
    id: randomUUID(),
    at: kg.now(),
    action,
    actorUserId: actor?.user.id ?? null,
    actorKeyId: actor?.keyId ?? null,
    sourceIp: actor?.ip ?? null,
    entityType: entity.type,
    entityId: entity.id,
    portalId: entity.portalId,
    before,
    after,
  };
}
