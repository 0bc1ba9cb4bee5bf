import { type Bits, hasBit, intersects } from "./bits.ts";
import type { Catalog, Resource, Token } from "./catalog.ts";

/** One problem with one token of a requested scope list. */
export interface ScopeProblem {
  /** The token as the caller wrote it ("" for problems with the whole list). */
  scope: string;
  code: string;
  message: string;
}

export interface ScopeList {
  /** Canonical, deduplicated, in catalog order, bundles expanded, auto-granted scopes added. Empty when there are errors. */
  scopes: string[];
  errors: ScopeProblem[];
  warnings: ScopeProblem[];
  /** For each canonical scope: the tokens of the input that produced it ("(auto)" for auto-granted ones). */
  sources: Map<string, string[]>;
}

const TOKEN_CHARS = /^[a-z0-9_.:-]+$/;
export const AUTO_SOURCE = "(auto)";

/** Splits a comma-separated string; a list is taken token by token. Whitespace is only trimmed, never a separator. */
export function tokenize(input: string | readonly string[]): string[] {
  const raw = typeof input === "string" ? input.split(",") : input;
  return raw.map((t) => t.trim()).filter((t) => t !== "");
}

/**
 * Parses and normalises a requested scope list for a key type. Every bad token is
 * reported with its own reason, and nothing is accepted from a list that has errors.
 */
export function normalizeScopes(catalog: Catalog, keyType: string, input: string | readonly string[]): ScopeList {
  const errors: ScopeProblem[] = [];
  const warnings: ScopeProblem[] = [];
  const sources = new Map<string, string[]>();
  const allowed = catalog.allowedBits.get(keyType);
  if (!allowed) throw new Error(`unknown key type "${keyType}"`);
  const addSource = (scope: string, source: string) => {
    const list = sources.get(scope);
    if (!list) sources.set(scope, [source]);
    else if (!list.includes(source)) list.push(source);
  };

  const tokens = tokenize(input);
  for (const raw of tokens) {
    const t = raw.toLowerCase();
    const token = catalog.tokens.get(t);
    if (!token) {
      errors.push(diagnose(catalog, raw, t));
      continue;
    }
    const problem = tokenProblem(catalog, token, raw, keyType, allowed);
    if (problem) {
      errors.push(problem);
      continue;
    }
    if (token.kind === "bundle") {
      for (const member of token.members) addSource(catalog.tokens.get(member)!.scope, raw);
    } else {
      if (token.kind === "scope" && token.atom.resource.autoGrant.includes(keyType)) {
        warnings.push({ scope: raw, code: "SCOPE_AUTO_GRANTED", message: `${token.scope} is granted automatically to ${keyType} keys; listing it changes nothing` });
      }
      addSource(token.scope, raw);
    }
  }
  if (tokens.length === 0) {
    errors.push({ scope: "", code: "SCOPES_REQUIRED", message: "at least one scope is required" });
  }
  if (errors.length > 0) return { scopes: [], errors, warnings, sources: new Map() };

  for (const resource of catalog.resources.values()) {
    if (!resource.autoGrant.includes(keyType)) continue;
    for (const atom of maximalAtoms(catalog, resource)) addSource(atom, AUTO_SOURCE);
  }
  const scopes = [...sources.keys()].sort((a, b) => catalog.order(a) - catalog.order(b));
  for (const companion of catalog.companions) {
    const present = companion.scopes.filter((s) => sources.has(s));
    if (present.length > 0 && present.length < companion.scopes.length) {
      const absent = companion.scopes.filter((s) => !sources.has(s));
      warnings.push({ scope: present.join(","), code: "SCOPE_NEEDS_COMPANION", message: `${present.join(", ")} works only together with ${absent.join(", ")}: ${companion.note}` });
    }
  }
  return { scopes, errors, warnings, sources };
}

function tokenProblem(catalog: Catalog, token: Token, raw: string, keyType: string, allowed: Bits): ScopeProblem | undefined {
  if (token.kind === "scope") {
    const r = token.atom.resource;
    if (r.reserved) return { scope: raw, code: "RESERVED_SCOPE", message: `${token.scope} is reserved: it cannot be requested` };
    if (!r.keyTypes.includes(keyType)) {
      return { scope: raw, code: "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE", message: `${token.scope} cannot be held by ${keyType} keys (only ${r.keyTypes.join(", ")})` };
    }
    return undefined;
  }
  if (token.kind === "coarse") {
    if (!intersects(token.bits, allowed)) {
      return { scope: raw, code: "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE", message: `${token.scope} reaches no scope that ${keyType} keys may hold` };
    }
    return undefined;
  }
  const refused = token.members.filter((m) => {
    const t = catalog.tokens.get(m);
    return t?.kind === "scope" ? !t.atom.resource.keyTypes.includes(keyType) : !intersects(catalog.bitsOf(m)!, allowed);
  });
  if (refused.length > 0) {
    return { scope: raw, code: "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE", message: `bundle ${token.scope} contains scopes ${keyType} keys cannot hold: ${refused.join(", ")}` };
  }
  return undefined;
}

/** Explains why a (lower-cased) token is not a scope of this catalog. */
export function diagnose(catalog: Catalog, raw: string, t: string): ScopeProblem {
  if (!TOKEN_CHARS.test(t)) {
    return { scope: raw, code: "BAD_SCOPE_SYNTAX", message: `"${raw}" is not a scope: scopes are letters, digits, "_", ".", "-" and ":" with no spaces` };
  }
  const whole = resolveResource(catalog, t);
  if (whole && !whole.flat) {
    return { scope: raw, code: "SCOPE_ACTION_REQUIRED", message: `${whole.id} needs an action: one of ${whole.actions.map((a) => `${whole.id}:${a}`).join(", ")}` };
  }
  const colon = t.lastIndexOf(":");
  if (colon > 0) {
    const resource = resolveResource(catalog, t.slice(0, colon));
    const action = t.slice(colon + 1);
    if (resource?.flat) {
      return { scope: raw, code: "SCOPE_TAKES_NO_ACTION", message: `${resource.id} is a whole scope and takes no action: use "${resource.id}"` };
    }
    if (resource) {
      return { scope: raw, code: "UNKNOWN_ACTION", message: `${resource.id} has no action "${action}": use one of ${resource.actions.map((a) => `${resource.id}:${a}`).join(", ")}` };
    }
  }
  const suggestion = closest(t, [...catalog.tokens.keys()]);
  return { scope: raw, code: "UNKNOWN_SCOPE", message: `unknown scope "${raw}"${suggestion ? `; did you mean "${suggestion}"?` : ""}` };
}

function resolveResource(catalog: Catalog, id: string): Resource | undefined {
  const direct = catalog.resources.get(id);
  if (direct) return direct;
  for (const r of catalog.resources.values()) if (r.aliases.includes(id)) return r;
  return undefined;
}

/** Atoms of a resource that no other atom of it implies: what "all of it" is written as. */
export function maximalAtoms(catalog: Catalog, resource: Resource): string[] {
  return resource.atoms
    .filter((atom) => !resource.atoms.some((other) => other !== atom && hasBit(catalog.closure[other.index]!, atom.index)))
    .map((a) => a.scope);
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  // One typo per three characters at most, so short words do not "match" unrelated ones.
  let bestDistance = Math.min(3, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word, c, bestDistance);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap) return cap;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
