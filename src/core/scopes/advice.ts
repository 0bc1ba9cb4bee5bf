import type { Profile, Route } from "../profile/profile.ts";
import { type Bits, emptyBits, hasBit, intersects, orInto } from "./bits.ts";
import type { Atom, Catalog } from "./catalog.ts";
import { compileKeyScopes, type KeyScopes } from "./grants.ts";
import { maximalAtoms } from "./normalize.ts";

/**
 * The scope advisor (docs/scope-advice.md): from what a key was used for, the narrowest scopes
 * of its profile that would have allowed all of it. Pure: the request log arrives summed up by
 * route (Store.requestRoutes), and the answer is data.
 */

/** A key's logged requests of one route and one refusal for a missing scope (null: not refused for one). */
export interface ObservedUse {
  method: string;
  /** The route pattern; null for requests that matched no route. */
  route: string | null;
  missingScope: string | null;
  count: number;
  firstAt: number;
  lastAt: number;
}

export interface ObservedRoute {
  method: string;
  route: string;
  count: number;
  lastAt: number;
  /** What the route requires of this key type, one entry per clause (alternatives joined by `|`); empty: no scope; null: the key type may never call it. */
  requires: string[] | null;
}

export interface SuggestedScope {
  scope: string;
  /** covers: needed by observed requests; auto-granted: on every key of the type; companion: works only together with another suggested scope. */
  reason: "covers" | "auto-granted" | "companion";
  /** The observed requirements (clauses) it meets. */
  covers: string[];
  /** The key has it in effect now (through this scope or a broader one). */
  held: boolean;
}

export interface NeededNotHeld {
  method: string;
  /** null when the refused request matched no route of the profile (verify mode's ad-hoc requirement). */
  route: string | null;
  /** The unmet requirement, one entry per clause. */
  missing: string[];
  count: number;
  lastAt: number;
}

export interface ScopeAdvice {
  observedRoutes: ObservedRoute[];
  suggestedScopes: SuggestedScope[];
  /** Held scopes that met none of the observed requirements (auto-granted ones are not counted). */
  unusedScopes: string[];
  neededNotHeld: NeededNotHeld[];
  /** The scope list that keeps only what the suggestion needs of what the key holds: grants nothing new. null: nothing to narrow, or no traffic to narrow to. */
  narrowTo: string[] | null;
  window: { from: number | null; to: number | null; requests: number; unmatchedRequests: number; days: number };
  confidence: { level: "low" | "normal"; note: string | null };
}

/** Below either, the advice says it may miss what a key does rarely. */
export const CONFIDENT_REQUESTS = 100;
export const CONFIDENT_DAYS = 7;
const DAY = 86_400_000;
/** Beyond this many combinations of alternatives, the cover is built greedily (profiles have a handful). */
const MAX_SEARCH = 100_000;

interface Clause {
  text: string;
  bits: Bits;
}

export function adviseScopes(profile: Profile, keyType: string, observed: readonly ObservedUse[], held: KeyScopes): ScopeAdvice {
  const catalog = profile.catalog;
  const keyTypeIndex = catalog.keyTypes.indexOf(keyType);
  if (keyTypeIndex < 0) throw new Error(`unknown key type "${keyType}"`);
  const routes = new Map<string, Route>(profile.routes.map((r) => [`${r.method} ${r.path}`, r]));

  const byRoute = new Map<string, ObservedRoute>();
  const needed = new Map<string, NeededNotHeld>();
  let requests = 0;
  let unmatchedRequests = 0;
  let from: number | null = null;
  let to: number | null = null;
  for (const use of observed) {
    requests += use.count;
    from = from === null ? use.firstAt : Math.min(from, use.firstAt);
    to = to === null ? use.lastAt : Math.max(to, use.lastAt);
    if (use.missingScope !== null) {
      const id = `${use.method} ${use.route ?? ""} ${use.missingScope}`;
      const n = needed.get(id);
      if (n) {
        n.count += use.count;
        n.lastAt = Math.max(n.lastAt, use.lastAt);
      } else needed.set(id, { method: use.method, route: use.route, missing: use.missingScope.split(","), count: use.count, lastAt: use.lastAt });
    }
    const route = use.route === null ? undefined : routes.get(`${use.method} ${use.route}`);
    if (route === undefined) {
      // Matched no route, or a route the profile no longer has: nothing to derive a scope from.
      unmatchedRequests += use.count;
      continue;
    }
    const id = `${route.method} ${route.path}`;
    const seen = byRoute.get(id);
    if (seen) {
      seen.count += use.count;
      seen.lastAt = Math.max(seen.lastAt, use.lastAt);
      continue;
    }
    const access = route.access[keyTypeIndex]!;
    byRoute.set(id, {
      method: route.method,
      route: route.path,
      count: use.count,
      lastAt: use.lastAt,
      requires: access.denied ? null : (access.requirement?.text ?? []),
    });
  }

  // Every distinct clause the observed routes require of this key type.
  const clauses = new Map<string, Clause>();
  for (const seen of byRoute.values()) {
    const access = routes.get(`${seen.method} ${seen.route}`)!.access[keyTypeIndex]!;
    const requirement = access.denied ? null : access.requirement;
    requirement?.clauses.forEach((bits, i) => clauses.set(requirement.text[i]!, { text: requirement.text[i]!, bits }));
  }

  const auto = catalog.autoBits.get(keyType)!;
  const open = [...clauses.values()].filter((c) => !intersects(auto, c.bits));
  const chosen = narrowestCover(catalog, keyType, open);

  const suggested: SuggestedScope[] = [];
  const compiled = compileKeyScopes(catalog, keyType, held);
  const inEffect = (atom: Atom) => isWithin(catalog.closure[atom.index]!, compiled.granted);
  const meets = (atom: Atom) => [...clauses.values()].filter((c) => intersects(catalog.closure[atom.index]!, c.bits)).map((c) => c.text);
  for (const atom of chosen) suggested.push({ scope: atom.scope, reason: "covers", covers: meets(atom), held: inEffect(atom) });
  for (const resource of catalog.resources.values()) {
    if (!resource.autoGrant.includes(keyType)) continue;
    for (const scope of maximalAtoms(catalog, resource)) {
      const atom = tokenAtom(catalog, scope);
      suggested.push({ scope, reason: "auto-granted", covers: meets(atom), held: true });
    }
  }
  for (const companion of catalog.companions) {
    if (!companion.scopes.some((s) => suggested.some((x) => x.scope === s))) continue;
    for (const scope of companion.scopes) {
      if (suggested.some((x) => x.scope === scope)) continue;
      suggested.push({ scope, reason: "companion", covers: [], held: inEffect(tokenAtom(catalog, scope)) });
    }
  }
  suggested.sort((a, b) => catalog.order(a.scope) - catalog.order(b.scope));

  const allClauses = [...clauses.values()];
  const unusedScopes = held.scopes.filter((scope) => {
    const token = catalog.tokens.get(scope);
    if (token?.kind === "scope" && token.atom.resource.autoGrant.includes(keyType)) return false;
    const bits = catalog.bitsOf(scope);
    return bits === undefined || !allClauses.some((c) => intersects(bits, c.bits));
  });

  const days = from === null || to === null ? 0 : Math.round(((to - from) / DAY) * 10) / 10;
  const routed = requests - unmatchedRequests;
  const low = routed < CONFIDENT_REQUESTS || days < CONFIDENT_DAYS;
  const note = low
    ? `Based on ${routed} request${routed === 1 ? "" : "s"} over ${days} day${days === 1 ? "" : "s"}: a key used rarely may need more than its log shows (advice is confident from ${CONFIDENT_REQUESTS} requests over ${CONFIDENT_DAYS} days).`
    : null;

  return {
    observedRoutes: [...byRoute.values()].sort((a, b) => b.count - a.count || a.route.localeCompare(b.route) || a.method.localeCompare(b.method)),
    suggestedScopes: suggested,
    unusedScopes,
    neededNotHeld: [...needed.values()].sort((a, b) => b.lastAt - a.lastAt),
    narrowTo: open.length === 0 ? null : narrowing(catalog, held, compiled.granted, suggested),
    window: { from, to, requests, unmatchedRequests, days },
    confidence: { level: low ? "low" : "normal", note },
  };
}

function tokenAtom(catalog: Catalog, scope: string): Atom {
  const token = catalog.tokens.get(scope);
  if (token?.kind !== "scope") throw new Error(`"${scope}" is not a scope of the catalog`);
  return token.atom;
}

function isWithin(bits: Bits, outer: Bits): boolean {
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & ~outer[i]!) !== 0) return false;
  return true;
}

function countBits(bits: Bits): number {
  let n = 0;
  for (let word of bits) {
    while (word !== 0) {
      word &= word - 1;
      n++;
    }
  }
  return n;
}

/**
 * The scopes (atoms) that meet every clause while granting the fewest atoms (implications
 * counted), then with the fewest scopes: one granular scope beats a broader one, and never a
 * coarse scope or a bundle. A scope implied by another chosen one is left out.
 */
function narrowestCover(catalog: Catalog, keyType: string, clauses: Clause[]): Atom[] {
  const requestable = catalog.atoms.filter((a) => !a.resource.reserved && a.resource.keyTypes.includes(keyType));
  // Per clause, the atoms that meet it and imply no other that does (those grant strictly more).
  const options = clauses.map((clause) => {
    const meeting = requestable.filter((a) => intersects(catalog.closure[a.index]!, clause.bits));
    return meeting.filter((a) => !meeting.some((b) => b !== a && hasBit(catalog.closure[a.index]!, b.index) && !hasBit(catalog.closure[b.index]!, a.index)));
  });
  const order = clauses.map((_, i) => i).filter((i) => options[i]!.length > 0);
  order.sort((a, b) => options[a]!.length - options[b]!.length);
  const space = order.reduce((n, i) => n * options[i]!.length, 1);

  let best: { atoms: Atom[]; size: number } | undefined;
  const better = (atoms: Atom[], bits: Bits) => {
    const size = countBits(bits);
    return best === undefined || size < best.size || (size === best.size && atoms.length < best.atoms.length);
  };
  if (space <= MAX_SEARCH) {
    const visit = (k: number, atoms: Atom[], bits: Bits) => {
      if (best !== undefined && countBits(bits) > best.size) return;
      if (k === order.length) {
        if (better(atoms, bits)) best = { atoms: [...atoms], size: countBits(bits) };
        return;
      }
      const clause = clauses[order[k]!]!;
      if (intersects(bits, clause.bits)) return visit(k + 1, atoms, bits);
      for (const atom of options[order[k]!]!) {
        const next = bits.slice();
        orInto(next, catalog.closure[atom.index]!);
        atoms.push(atom);
        visit(k + 1, atoms, next);
        atoms.pop();
      }
    };
    visit(0, [], emptyBits(catalog.words));
  } else {
    // Greedy: each unmet clause takes the option that adds the fewest atoms.
    const atoms: Atom[] = [];
    const bits = emptyBits(catalog.words);
    for (const i of order) {
      if (intersects(bits, clauses[i]!.bits)) continue;
      let pick = options[i]![0]!;
      let added = Infinity;
      for (const atom of options[i]!) {
        const next = bits.slice();
        orInto(next, catalog.closure[atom.index]!);
        const n = countBits(next);
        if (n < added) [pick, added] = [atom, n];
      }
      orInto(bits, catalog.closure[pick.index]!);
      atoms.push(pick);
    }
    best = { atoms, size: countBits(bits) };
  }
  const atoms = [...new Set(best!.atoms)];
  return atoms
    .filter((a) => !atoms.some((b) => b !== a && hasBit(catalog.closure[b.index]!, a.index)))
    .sort((a, b) => a.index - b.index);
}

/** The broadest scopes implied by `atom` that the key has in effect: what of it a narrowing keeps. */
function heldPart(catalog: Catalog, atom: Atom, granted: Bits): Atom[] {
  const closure = catalog.closure[atom.index]!;
  const within = catalog.atoms.filter((b) => hasBit(closure, b.index) && isWithin(catalog.closure[b.index]!, granted));
  return within.filter((b) => !within.some((c) => c !== b && hasBit(catalog.closure[c.index]!, b.index)));
}

/**
 * The suggestion as a change that only removes: every suggested scope the key has in effect,
 * spelled so that nothing new is granted. A scope of a group locked at issue is kept as the key
 * holds it (spelled otherwise, it would wait for a reissue). null when it would change nothing.
 */
function narrowing(catalog: Catalog, held: KeyScopes, granted: Bits, suggested: SuggestedScope[]): string[] | null {
  const out = new Set<string>();
  for (const s of suggested) {
    if (s.reason === "auto-granted") {
      out.add(s.scope);
      continue;
    }
    const atom = tokenAtom(catalog, s.scope);
    if (!atom.resource.lockedAtIssue) {
      if (isWithin(catalog.closure[atom.index]!, granted)) out.add(s.scope);
      // Needed but not held (forms:write for a key holding read): keep what of it the key has (forms:read).
      else for (const part of heldPart(catalog, atom, granted)) out.add(part.scope);
      continue;
    }
    for (const scope of held.issued) {
      const bits = catalog.bitsOf(scope);
      if (bits !== undefined && hasBit(bits, atom.index)) out.add(scope);
    }
  }
  const list = [...out].sort((a, b) => catalog.order(a) - catalog.order(b));
  const same = list.length === held.scopes.length && list.every((s) => held.scopes.includes(s));
  const onlyAuto = list.every((s) => suggested.some((x) => x.scope === s && x.reason === "auto-granted"));
  return same || onlyAuto ? null : list;
}
