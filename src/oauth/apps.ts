import { KeygateError } from "../core/errors.ts";
import { auditEvent } from "../manage/audit.ts";
import type { Actor, Keygate } from "../manage/context.ts";
import { keyForActor } from "../manage/keys.ts";
import type { KeyRecord } from "../store/store.ts";
import { checkRedirectUris } from "./flow.ts";

/**
 * The app an authorization key belongs to (docs/oauth.md): its registered redirect URIs, set with
 * POST /v1/keys and PATCH /v1/keys/:id {redirectUris}. Other key types have none.
 */

/** Refuses redirect URIs for a key type that does not sign users in, before anything is stored. */
export function redirectUrisAllowed(kg: Keygate, type: string | undefined, uris: string[] | undefined): string[] | undefined {
  if (uris === undefined) return undefined;
  const keyType = kg.profile.keyType(type ?? kg.profile.spec.keyTypes[0]!.id);
  if (keyType?.sessionUser !== true) {
    throw new KeygateError("VALIDATION_ERROR", { message: "redirectUris: only authorization keys (apps that sign users in) have redirect URIs", param: "redirectUris" });
  }
  return checkRedirectUris(uris);
}

/** Replaces the key's redirect URIs, as its owner or a portal admin may; audited as key.update. */
export async function setRedirectUris(kg: Keygate, actor: Actor, key: KeyRecord, uris: string[]): Promise<void> {
  await keyForActor(kg, actor, key.id);
  const before = await kg.store.getRedirectUris(key.id);
  const audit = auditEvent(kg, actor, "key.update", { type: "key", id: key.id, portalId: key.portalId }, { redirectUris: before }, { redirectUris: uris });
  await kg.store.setRedirectUris(key.id, uris, kg.now(), { audit: [audit] });
}

/** The redirectUris field of a key's view: authorization keys only. */
export async function redirectUrisView(kg: Keygate, key: KeyRecord): Promise<{ redirectUris?: string[] }> {
  return kg.profile.keyType(key.type)?.sessionUser === true ? { redirectUris: await kg.store.getRedirectUris(key.id) } : {};
}
