import type { Profile } from "../core/profile/profile.ts";
import { ASSERTION_LIFETIME_S, type IdentitySigner, RENEW_BEFORE_S } from "../upstream/http/identity.ts";
import type { CachedKey, KeyCache } from "./key-cache.ts";

/** One key's assertion for one audience, replaced in place when it is due. */
interface Kept {
  token: string;
  /** Epoch ms from which a new one is signed. */
  renewAt: number;
}

export type IdentityAssertions = (key: CachedKey, aud: string) => string;

/**
 * The `X-Keygate-Identity` of a key for an audience (the proxy's upstream, forward-auth's origin):
 * signed once and kept with the key in the key cache like its other derived values, so it is
 * signed again only when it is due (RENEW_BEFORE_S before it expires) or when the key or the data
 * around it changed (the cache drops derived values then). A forwarded request pays a lookup.
 */
export function identityAssertions(profile: Profile, cache: KeyCache, signer: IdentitySigner, now: () => number): IdentityAssertions {
  const fresh = (): Kept => ({ token: "", renewAt: 0 });
  return (key, aud) => {
    const kept = cache.deriveNow(key, `identity\u0000${aud}`, fresh);
    const at = now();
    if (kept.renewAt <= at) {
      const record = key.record;
      const iat = Math.floor(at / 1000);
      kept.token = signer.sign(
        {
          aud,
          sub: record.id,
          key_type: record.type,
          portal: record.portalId,
          owner: record.ownerId,
          scopes: profile.effective({ scopes: record.scopes, issued: record.issuedScopes }),
          access_mode: record.accessMode,
        },
        iat,
      );
      kept.renewAt = (iat + ASSERTION_LIFETIME_S - RENEW_BEFORE_S) * 1000;
    }
    return kept.token;
  };
}
