import { adviseScopes } from "../core/scopes/advice.ts";
import type { Actor, Keygate } from "./context.ts";
import { keyForActor } from "./keys.ts";

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Issue 18: the narrowest scopes of the profile that cover what the key was used for, over the
 * whole retained request log (docs/scope-advice.md). For whoever may see the key: its owner, its
 * portal's admins. The log is summed up by the store; the advice is worked out here.
 */
export async function keyScopeAdvice(kg: Keygate, actor: Actor, id: string) {
  const { key } = await keyForActor(kg, actor, id);
  const uses = await kg.store.requestRoutes(id);
  const advice = adviseScopes(kg.profile, key.type, uses, { scopes: key.scopes, issued: key.issuedScopes });
  const { from, to, ...window } = advice.window;
  return {
    keyId: id,
    scopes: key.scopes,
    observedRoutes: advice.observedRoutes.map((r) => ({ ...r, lastAt: iso(r.lastAt) })),
    suggestedScopes: advice.suggestedScopes,
    unusedScopes: advice.unusedScopes,
    neededNotHeld: advice.neededNotHeld.map((n) => ({ ...n, lastAt: iso(n.lastAt) })),
    narrowTo: advice.narrowTo,
    window: { from: from === null ? null : iso(from), to: to === null ? null : iso(to), ...window },
    confidence: advice.confidence,
  };
}
