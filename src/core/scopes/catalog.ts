import type { ActionGraph, BundleSpec, CoarseSpec, ProfileSpec } from "../profile/spec.ts";
import { type Bits, emptyBits, hasBit, orInto, setBit } from "./bits.ts";

/** One (resource, action) pair: the unit a bit set counts. Flat resources have one atom, action null. */
export interface Atom {
  index: number;
  resource: Resource;
  action: string | null;
  /** Canonical scope string: `crm`, `kb:write`. */
  scope: string;
}

export interface Group {
  id: string;
  label: string;
  description: string;
  lockedAtIssue: boolean;
  coarse: boolean;
  resources: Resource[];
}

export interface Resource {
  id: string;
  description: string;
  group: Group;
  flat: boolean;
  aliases: string[];
  /** Actions in declaration order (empty for flat resources). */
  actions: string[];
  atoms: Atom[];
  keyTypes: string[];
  autoGrant: string[];
  reserved: boolean;
  lockedAtIssue: boolean;
  coarse: boolean;
}

/** What a scope string in a requested list stands for. */
export type Token =
  | { kind: "scope"; scope: string; atom: Atom; bits: Bits }
  | { kind: "coarse"; scope: string; def: CoarseSpec; bits: Bits; order: number }
  | { kind: "bundle"; scope: string; def: BundleSpec; members: string[] };

export class ProfileError extends Error {
  readonly problems: string[];
  constructor(profileId: string, problems: string[]) {
    super(`profile ${profileId} is invalid:\n  - ${problems.join("\n  - ")}`);
    this.name = "ProfileError";
    this.problems = problems;
  }
}

const SCOPE_ID = /^[a-z0-9_][a-z0-9_.-]*(:[a-z0-9_][a-z0-9_.-]*)*$/;

/**
 * The compiled scope catalog of a profile: every atom numbered, every action's implication
 * closure precomputed as a bit set, every accepted spelling mapped to a token.
 */
export class Catalog {
  readonly groups: Group[] = [];
  readonly resources = new Map<string, Resource>();
  readonly atoms: Atom[] = [];
  readonly tokens = new Map<string, Token>();
  readonly coarse: Extract<Token, { kind: "coarse" }>[] = [];
  readonly bundles: Extract<Token, { kind: "bundle" }>[] = [];
  readonly keyTypes: string[];
  readonly companions: { scopes: string[]; note: string }[];
  readonly words: number;
  /** Atoms in groups locked at issue. */
  readonly lockedBits: Bits;
  /** Per key type: atoms it may hold, and atoms it is always granted. */
  readonly allowedBits = new Map<string, Bits>();
  readonly autoBits = new Map<string, Bits>();
  /** Per atom: the bits of everything it implies (itself included). */
  readonly closure: Bits[] = [];

  constructor(spec: ProfileSpec, problems: string[]) {
    this.keyTypes = spec.keyTypes.map((k) => k.id);
    const keyTypeSet = new Set(this.keyTypes);
    const checkKeyTypes = (where: string, ids: string[] | undefined) => {
      for (const id of ids ?? []) if (!keyTypeSet.has(id)) problems.push(`${where}: unknown key type "${id}"`);
    };

    // Pass 1: number the atoms and resolve action graphs.
    const graphs = new Map<Resource, ActionGraph>();
    for (const g of spec.groups) {
      checkKeyTypes(`group ${g.id}`, g.keyTypes);
      const group: Group = {
        id: g.id,
        label: g.label,
        description: g.description ?? "",
        lockedAtIssue: g.lockedAtIssue ?? false,
        coarse: g.coarse ?? false,
        resources: [],
      };
      if (group.lockedAtIssue && group.coarse) problems.push(`group ${g.id}: a group locked at issue cannot be reached by coarse scopes`);
      this.groups.push(group);
      for (const r of g.resources) {
        const where = `resource ${r.id}`;
        if (!SCOPE_ID.test(r.id)) problems.push(`${where}: ids are lowercase letters, digits, "_", ".", "-" and ":"`);
        if (this.resources.has(r.id)) problems.push(`${where}: defined twice`);
        checkKeyTypes(where, r.keyTypes);
        checkKeyTypes(`${where} autoGrant`, r.autoGrant);
        let graph: ActionGraph | undefined;
        if (typeof r.actions === "string") {
          graph = spec.actionGraphs?.[r.actions];
          if (!graph) problems.push(`${where}: unknown action graph "${r.actions}"`);
        } else graph = r.actions;
        const resource: Resource = {
          id: r.id,
          description: r.description,
          group,
          flat: graph === undefined,
          aliases: r.aliases ?? [],
          actions: graph ? Object.keys(graph) : [],
          atoms: [],
          keyTypes: r.keyTypes ?? g.keyTypes ?? this.keyTypes,
          autoGrant: r.autoGrant ?? [],
          reserved: r.reserved ?? false,
          lockedAtIssue: group.lockedAtIssue,
          coarse: group.coarse,
        };
        if (resource.reserved && resource.autoGrant.length > 0) problems.push(`${where}: a reserved scope cannot be auto-granted`);
        for (const kt of resource.autoGrant) {
          if (!resource.keyTypes.includes(kt)) problems.push(`${where}: auto-granted to key type "${kt}" that may not hold it`);
        }
        for (const action of resource.actions) {
          if (!/^[a-z][a-z0-9_]*$/.test(action)) problems.push(`${where}: bad action name "${action}"`);
        }
        const names = resource.flat ? [null] : resource.actions;
        for (const action of names) {
          const atom: Atom = { index: this.atoms.length, resource, action, scope: action === null ? r.id : `${r.id}:${action}` };
          this.atoms.push(atom);
          resource.atoms.push(atom);
        }
        if (graph) graphs.set(resource, graph);
        this.resources.set(r.id, resource);
        group.resources.push(resource);
      }
    }
    this.words = Math.max(1, Math.ceil(this.atoms.length / 32));

    // Pass 2: implication closures (cycles are errors: they would make two actions equal).
    for (const atom of this.atoms) {
      const bits = emptyBits(this.words);
      setBit(bits, atom.index);
      this.closure.push(bits);
    }
    for (const [resource, graph] of graphs) {
      for (const action of resource.actions) {
        for (const implied of graph[action] ?? []) {
          if (!(implied in graph)) problems.push(`resource ${resource.id}: action "${action}" implies unknown action "${implied}"`);
        }
        const seen = new Set<string>();
        const visit = (a: string, path: string[]) => {
          for (const next of graph[a] ?? []) {
            if (next === action) {
              problems.push(`resource ${resource.id}: actions imply each other in a cycle (${[...path, next].join(" -> ")})`);
              continue;
            }
            if (seen.has(next) || !(next in graph)) continue;
            seen.add(next);
            visit(next, [...path, next]);
          }
        };
        visit(action, [action]);
        const bits = this.closure[this.atomOf(resource, action)!.index]!;
        for (const implied of seen) setBit(bits, this.atomOf(resource, implied)!.index);
      }
    }

    // Per key type: what it may hold and what it always gets.
    this.lockedBits = emptyBits(this.words);
    for (const kt of this.keyTypes) {
      this.allowedBits.set(kt, emptyBits(this.words));
      this.autoBits.set(kt, emptyBits(this.words));
    }
    for (const atom of this.atoms) {
      const r = atom.resource;
      if (r.lockedAtIssue) setBit(this.lockedBits, atom.index);
      for (const kt of r.keyTypes) if (this.allowedBits.has(kt)) setBit(this.allowedBits.get(kt)!, atom.index);
      for (const kt of r.autoGrant) if (this.autoBits.has(kt)) orInto(this.autoBits.get(kt)!, this.closure[atom.index]!);
    }

    // Tokens: canonical scope strings, alias spellings, coarse scopes, bundles.
    const addToken = (name: string, token: Token, where: string) => {
      if (this.tokens.has(name)) problems.push(`${where}: "${name}" is already a scope, alias, coarse scope or bundle`);
      else this.tokens.set(name, token);
    };
    for (const atom of this.atoms) {
      addToken(atom.scope, { kind: "scope", scope: atom.scope, atom, bits: this.closure[atom.index]! }, `resource ${atom.resource.id}`);
      for (const alias of atom.resource.aliases) {
        if (!SCOPE_ID.test(alias)) problems.push(`resource ${atom.resource.id}: bad alias "${alias}"`);
        const spelled = atom.action === null ? alias : `${alias}:${atom.action}`;
        addToken(spelled, { kind: "scope", scope: atom.scope, atom, bits: this.closure[atom.index]! }, `alias ${alias}`);
      }
    }
    (spec.coarse ?? []).forEach((def, order) => {
      const bits = emptyBits(this.words);
      let reaches = false;
      for (const r of this.resources.values()) {
        // Coarse scopes are requested by users; a reserved resource is never theirs to request.
        if (!r.coarse || r.reserved) continue;
        for (const atom of r.atoms) {
          if (def.action === "*" || atom.action === def.action) {
            orInto(bits, this.closure[atom.index]!);
            reaches = true;
          }
        }
      }
      if (!reaches) problems.push(`coarse scope ${def.id}: reaches no resource (no coarse group has action "${def.action}")`);
      const token = { kind: "coarse" as const, scope: def.id, def, bits, order };
      this.coarse.push(token);
      addToken(def.id, token, `coarse scope ${def.id}`);
    });
    for (const def of spec.bundles ?? []) {
      const token = { kind: "bundle" as const, scope: def.id, def, members: def.scopes };
      this.bundles.push(token);
      addToken(def.id, token, `bundle ${def.id}`);
    }
    for (const bundle of this.bundles) {
      for (const member of bundle.members) {
        const t = this.tokens.get(member);
        if (!t || t.kind === "bundle") problems.push(`bundle ${bundle.scope}: "${member}" is not a scope or coarse scope`);
        else if (t.kind === "scope" && t.atom.resource.reserved) problems.push(`bundle ${bundle.scope}: contains reserved scope "${member}"`);
      }
    }
    this.companions = spec.companions ?? [];
    for (const companion of this.companions) {
      for (const s of companion.scopes) {
        if (this.tokens.get(s)?.kind !== "scope" || this.tokens.get(s)?.scope !== s) problems.push(`companions: "${s}" is not a canonical scope`);
      }
    }
  }

  atomOf(resource: Resource, action: string | null): Atom | undefined {
    return resource.atoms.find((a) => a.action === action);
  }

  /** The other atoms an atom implies (its closure without itself). */
  implied(atom: Atom): Atom[] {
    return atom.resource.atoms.filter((o) => o !== atom && hasBit(this.closure[atom.index]!, o.index));
  }

  /** Bits of one canonical scope or coarse scope (bundles are expanded before this). */
  bitsOf(scope: string): Bits | undefined {
    const t = this.tokens.get(scope);
    return t && t.kind !== "bundle" ? t.bits : undefined;
  }

  /** Sort key that puts coarse scopes first, then resources in catalog order. */
  order(scope: string): number {
    const t = this.tokens.get(scope);
    if (!t || t.kind === "bundle") return Number.MAX_SAFE_INTEGER;
    return t.kind === "coarse" ? t.order : this.coarse.length + t.atom.index;
  }
}
