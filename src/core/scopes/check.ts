import type { RequirementSpec } from "../profile/spec.ts";
import { type Bits, andInto, emptyBits, intersects, orInto, setBit } from "./bits.ts";
import type { Catalog } from "./catalog.ts";
import type { CompiledScopes } from "./grants.ts";

/**
 * A requirement in conjunctive normal form: every clause must share an atom with the
 * key's grants. `allOf` concatenates clauses, `anyOf` distributes.
 */
export interface Requirement {
  clauses: Bits[];
  /** Each clause as text: `kb:write`, or alternatives joined by `|`. */
  text: string[];
}

const MAX_CLAUSES = 64;

export function compileRequirement(catalog: Catalog, spec: RequirementSpec, problems: string[], where: string): Requirement {
  const cnf = toClauses(catalog, spec, problems, where);
  const clauses = cnf.map((atoms) => {
    const bits = emptyBits(catalog.words);
    for (const index of atoms) setBit(bits, index);
    return bits;
  });
  return { clauses, text: cnf.map((atoms) => atoms.map((i) => catalog.atoms[i]!.scope).join("|")) };
}

function toClauses(catalog: Catalog, spec: RequirementSpec, problems: string[], where: string): number[][] {
  if (typeof spec === "string") {
    const token = catalog.tokens.get(spec);
    if (token?.kind !== "scope") {
      problems.push(`${where}: "${spec}" is not a scope of the catalog${token ? ` (it is a ${token.kind} scope; requirements name scopes)` : ""}`);
      return [];
    }
    return [[token.atom.index]];
  }
  if (Array.isArray(spec)) return spec.flatMap((s) => toClauses(catalog, s, problems, where));
  if ("allOf" in spec) return spec.allOf.flatMap((s) => toClauses(catalog, s, problems, where));
  let product: number[][] = [[]];
  for (const alternative of spec.anyOf) {
    const next: number[][] = [];
    for (const clause of toClauses(catalog, alternative, problems, where)) {
      for (const partial of product) next.push([...new Set([...partial, ...clause])].sort((a, b) => a - b));
    }
    product = next;
    if (product.length > MAX_CLAUSES) {
      problems.push(`${where}: requirement expands to more than ${MAX_CLAUSES} clauses`);
      return [];
    }
  }
  return product;
}

export interface Allowed {
  readonly allowed: true;
  readonly code: null;
}

export interface Denied {
  readonly allowed: false;
  readonly code: string;
  readonly reason: "key_type" | "scope" | "pending_reissue";
  /** Unmet requirements, one entry per clause (alternatives joined by `|`). */
  readonly missing: string[];
  /** Scopes, coarse scopes and bundles the key type may hold that would meet a missing requirement. */
  readonly coveredBy: string[];
}

export type Decision = Allowed | Denied;

export const ALLOWED: Allowed = Object.freeze({ allowed: true, code: null });

/** True when every clause shares an atom with `bits`. The hot path: no allocation. */
export function satisfies(bits: Bits, requirement: Requirement): boolean {
  const clauses = requirement.clauses;
  for (let c = 0; c < clauses.length; c++) {
    const clause = clauses[c]!;
    let met = false;
    for (let w = 0; w < clause.length; w++) {
      if ((bits[w]! & clause[w]!) !== 0) {
        met = true;
        break;
      }
    }
    if (!met) return false;
  }
  return true;
}

export interface ScopeCodes {
  insufficient: string;
  pending: string | undefined;
}

/** Checks a key against a requirement; on denial, says what is missing and what would cover it. */
export function checkRequirement(catalog: Catalog, key: CompiledScopes, requirement: Requirement, codes: ScopeCodes): Decision {
  if (satisfies(key.granted, requirement)) return ALLOWED;
  const unmet = requirement.clauses.map((clause, i) => ({ clause, text: requirement.text[i]! })).filter(({ clause }) => !intersects(key.granted, clause));
  const withPending = key.granted.slice();
  orInto(withPending, key.pending);
  const pending = codes.pending !== undefined && satisfies(withPending, requirement);
  return {
    allowed: false,
    code: pending ? codes.pending! : codes.insufficient,
    reason: pending ? "pending_reissue" : "scope",
    missing: unmet.map((u) => u.text),
    coveredBy: coveringTokens(catalog, key.keyType, unmet.map((u) => u.clause)),
  };
}

/** Every token a key of this type could hold that meets at least one of the clauses: coarse, scopes, bundles. */
export function coveringTokens(catalog: Catalog, keyType: string, clauses: Bits[]): string[] {
  const allowed = catalog.allowedBits.get(keyType)!;
  const meetsAny = (bits: Bits) => clauses.some((clause) => intersects(bits, clause));
  const out: string[] = [];
  for (const token of catalog.coarse) {
    const reach = token.bits.slice();
    andInto(reach, allowed);
    if (meetsAny(reach)) out.push(token.scope);
  }
  for (const atom of catalog.atoms) {
    if (atom.resource.reserved || !atom.resource.keyTypes.includes(keyType)) continue;
    if (meetsAny(catalog.closure[atom.index]!)) out.push(atom.scope);
  }
  for (const bundle of catalog.bundles) {
    const members = bundle.members.map((m) => catalog.bitsOf(m)!);
    if (members.some((bits) => !intersects(bits, allowed))) continue;
    const bits = emptyBits(catalog.words);
    for (const m of members) orInto(bits, m);
    if (meetsAny(bits)) out.push(bundle.scope);
  }
  return out;
}

/** Scopes of `scopes` whose bits help meet the requirement (for explaining an allowed decision). */
export function contributingScopes(catalog: Catalog, scopes: string[], requirement: Requirement): string[] {
  return scopes.filter((s) => {
    const bits = catalog.bitsOf(s);
    return bits !== undefined && requirement.clauses.some((clause) => intersects(bits, clause));
  });
}
