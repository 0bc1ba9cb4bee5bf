import { type Bits, andInto, emptyBits, orInto } from "./bits.ts";
import type { Catalog } from "./catalog.ts";

/**
 * The scopes of one key, as stored.
 * - `scopes`: what the key shows (GET /v1/me), canonical and normalised.
 * - `issued`: the scopes of groups locked at issue that were on the key when it was issued.
 *   It only ever shrinks until the key is reissued.
 * In effect: every unlocked scope of `scopes`, plus the locked ones that are also in `issued`.
 */
export interface KeyScopes {
  scopes: string[];
  issued: string[];
}

function isLocked(catalog: Catalog, scope: string): boolean {
  const t = catalog.tokens.get(scope);
  return t?.kind === "scope" && t.atom.resource.lockedAtIssue;
}

/** A new key (or a reissued one): every scope it shows is in effect. */
export function issueScopes(catalog: Catalog, scopes: string[]): KeyScopes {
  return { scopes, issued: scopes.filter((s) => isLocked(catalog, s)) };
}

/**
 * Changes the scopes of an existing key. Removals take effect at once; additions to a
 * locked group are shown but stay out of effect until the key is reissued.
 */
export function amendScopes(current: KeyScopes, scopes: string[]): KeyScopes {
  return { scopes, issued: current.issued.filter((s) => scopes.includes(s)) };
}

export function reissueScopes(catalog: Catalog, current: KeyScopes): KeyScopes {
  return issueScopes(catalog, current.scopes);
}

/** Scopes shown on the key but not in effect until reissue. */
export function pendingScopes(catalog: Catalog, key: KeyScopes): string[] {
  return key.scopes.filter((s) => isLocked(catalog, s) && !key.issued.includes(s));
}

export function effectiveScopes(catalog: Catalog, key: KeyScopes): string[] {
  const pending = pendingScopes(catalog, key);
  return key.scopes.filter((s) => !pending.includes(s));
}

/** A key's scopes compiled for checks: bit sets over the catalog's atoms. */
export interface CompiledScopes {
  keyType: string;
  keyTypeIndex: number;
  /** Atoms in effect (implications, coarse scopes and auto-grants expanded). */
  granted: Bits;
  /** Atoms shown on the key but waiting for a reissue. */
  pending: Bits;
  /** Stored scopes the catalog no longer knows: they grant nothing. */
  unrecognized: string[];
}

export function compileKeyScopes(catalog: Catalog, keyType: string, key: KeyScopes): CompiledScopes {
  const keyTypeIndex = catalog.keyTypes.indexOf(keyType);
  const allowed = catalog.allowedBits.get(keyType);
  if (keyTypeIndex < 0 || !allowed) throw new Error(`unknown key type "${keyType}"`);
  const granted = emptyBits(catalog.words);
  const pending = emptyBits(catalog.words);
  const unrecognized: string[] = [];
  const waiting = pendingScopes(catalog, key);
  for (const scope of key.scopes) {
    const bits = catalog.bitsOf(scope);
    if (!bits) unrecognized.push(scope);
    else orInto(waiting.includes(scope) ? pending : granted, bits);
  }
  orInto(granted, catalog.autoBits.get(keyType)!);
  andInto(granted, allowed);
  andInto(pending, allowed);
  return { keyType, keyTypeIndex, granted, pending, unrecognized };
}
