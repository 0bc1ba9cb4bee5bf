import { ERRORS, type ErrorDef } from "../errors.ts";
import { Router, type RouteMatch } from "../routes/router.ts";
import { KEYGATE_MANAGEMENT, withManagement } from "./management.ts";
import { hasBit, intersects } from "../scopes/bits.ts";
import { Catalog, ProfileError } from "../scopes/catalog.ts";
import { ALLOWED, type Decision, type Denied, type Requirement, type ScopeCodes, checkRequirement, compileRequirement, contributingScopes } from "../scopes/check.ts";
import { type CompiledScopes, type KeyScopes, amendScopes, compileKeyScopes, effectiveScopes, issueScopes, pendingScopes, reissueScopes } from "../scopes/grants.ts";
import { type ScopeList, type ScopeProblem, diagnose, normalizeScopes, tokenize } from "../scopes/normalize.ts";
import type { CodeByKeyType, KeyTypeSpec, ProfileSpec, RequirementSpec, RouteSpec } from "./spec.ts";

/** What one key type meets on one route: a refusal by type, or a requirement (null: none). */
export type RouteAccess = { denied: Denied } | { denied: undefined; requirement: Requirement | null; codes: ScopeCodes };

export interface Route {
  method: string;
  path: string;
  description: string;
  class: "read" | "write";
  userContext: boolean;
  /** What an app key without its session token gets here, when `userContext`. */
  sessionError: string;
  upstreamMethod: string | undefined;
  /** Forwarded upstream: spends the portal's budget. */
  upstream: boolean;
  /** Indexed by key type index. */
  access: RouteAccess[];
  spec: RouteSpec;
}

export interface ExplainedResource {
  resource: string;
  group: string;
  description: string;
  /** Granted actions; `null` for a flat scope (granted whole). */
  actions: string[] | null;
  /** Tokens of the request that grant it ("(auto)" for auto-granted). */
  via: string[];
}

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function codeFor(map: CodeByKeyType, keyType: string): string {
  return map[keyType] ?? map.default;
}

/** A compiled profile: the scope catalog, the route table and the error codes of one product. */
export class Profile {
  readonly spec: ProfileSpec;
  readonly id: string;
  readonly catalog: Catalog;
  readonly routes: Route[] = [];
  readonly errorCodes: Record<string, ErrorDef>;
  /** The management key type (the profile's portal-less one, or keygate's own) and every scope it may hold: what a user's management key, and the owner's, gets. */
  readonly management: { keyType: KeyTypeSpec; scopes: string[] };
  readonly #router = new Router<Route>();

  constructor(declared: ProfileSpec) {
    const problems: string[] = [];
    const taken = !declared.keyTypes.some((k) => k.portalless) && declared.keyTypes.some((k) => k.id === KEYGATE_MANAGEMENT.id || k.prefix === KEYGATE_MANAGEMENT.prefix);
    if (taken) problems.push(`key type ${KEYGATE_MANAGEMENT.id} (${KEYGATE_MANAGEMENT.prefix}) is keygate's own management key type: mark yours portalless to make it the management key type, or rename it`);
    const spec = taken ? declared : withManagement(declared);
    this.spec = spec;
    this.id = spec.id;
    const prefixes = new Set<string>();
    for (const kt of spec.keyTypes) {
      if (prefixes.has(kt.prefix)) problems.push(`key type ${kt.id}: prefix "${kt.prefix}" is used twice`);
      prefixes.add(kt.prefix);
    }
    this.catalog = new Catalog(spec, problems);
    this.errorCodes = { ...ERRORS, ...spec.errorCodes };
    const managementType = spec.keyTypes.find((k) => k.portalless) ?? spec.keyTypes[0]!;
    this.management = {
      keyType: managementType,
      scopes: this.catalog.atoms.filter((a) => a.resource.keyTypes.includes(managementType.id) && !a.resource.reserved).map((a) => a.scope),
    };
    const checkCode = (where: string, code: string | undefined) => {
      if (code !== undefined && !(code in this.errorCodes)) problems.push(`${where}: unknown error code "${code}" (declare it in errorCodes)`);
    };
    for (const map of [spec.errors.insufficientScope, spec.errors.keyTypeNotAllowed]) {
      for (const [kt, code] of Object.entries(map)) {
        if (kt !== "default" && !this.catalog.keyTypes.includes(kt)) problems.push(`errors: unknown key type "${kt}"`);
        checkCode("errors", code);
      }
    }
    checkCode("errors.pendingReissue", spec.errors.pendingReissue);
    for (const [method, action] of Object.entries(spec.methodDefaults ?? {})) {
      if (method !== method.toUpperCase()) problems.push(`methodDefaults: method "${method}" must be upper case`);
      if (!/^[a-z][a-z0-9_]*$/.test(action)) problems.push(`methodDefaults.${method}: bad action "${action}"`);
    }
    for (const route of spec.routes) {
      const compiled = this.#compileRoute(route, problems, checkCode);
      const problem = this.#router.add(compiled.method, compiled.path, compiled);
      if (problem) problems.push(`route ${route.method} ${route.path}: ${problem}`);
      this.routes.push(compiled);
    }
    const tierIds = (spec.limits?.tiers ?? []).map((t) => t.id);
    if (new Set(tierIds).size !== tierIds.length) problems.push("limits.tiers: a tier id is used twice");
    if (spec.limits?.defaultTier !== undefined && !tierIds.includes(spec.limits.defaultTier)) problems.push(`limits.defaultTier: no tier "${spec.limits.defaultTier}"`);
    checkCode("limits.portalLimitCode", spec.limits?.portalLimitCode);
    for (const recipe of spec.recipes ?? []) {
      for (const s of recipe.scopes) if (!this.catalog.tokens.has(s)) problems.push(`recipe "${recipe.task}": unknown scope "${s}"`);
    }
    // Problems found once per key type are reported once.
    if (problems.length > 0) throw new ProfileError(spec.id, [...new Set(problems)]);
  }

  #compileRoute(spec: RouteSpec, problems: string[], checkCode: (where: string, code: string | undefined) => void): Route {
    const where = `route ${spec.method} ${spec.path}`;
    const method = spec.method.toUpperCase();
    if (!/^[A-Z]+$/.test(method)) problems.push(`${where}: bad method`);
    const keyTypeErrors: CodeByKeyType = { ...this.spec.errors.keyTypeNotAllowed, ...spec.keyTypeError };
    for (const [kt, code] of Object.entries(spec.keyTypeError ?? {})) {
      if (kt !== "default" && !this.catalog.keyTypes.includes(kt)) problems.push(`${where}: keyTypeError names unknown key type "${kt}"`);
      checkCode(where, code);
    }
    checkCode(where, spec.sessionError);
    for (const kt of [...(spec.keyTypes ?? []), ...Object.keys(spec.requiresByKeyType ?? {})]) {
      if (!this.catalog.keyTypes.includes(kt)) problems.push(`${where}: unknown key type "${kt}"`);
    }
    const access = this.catalog.keyTypes.map((kt): RouteAccess => {
      if (spec.keyTypes && !spec.keyTypes.includes(kt)) {
        const denied: Denied = Object.freeze({
          allowed: false,
          code: codeFor(keyTypeErrors, kt),
          reason: "key_type",
          missing: [],
          coveredBy: [],
        });
        return { denied };
      }
      const requirementSpec = this.#requirementSpec(spec, method, kt, problems, where);
      const requirement = requirementSpec === null ? null : compileRequirement(this.catalog, requirementSpec, problems, where);
      const allowed = this.catalog.allowedBits.get(kt)!;
      requirement?.clauses.forEach((clause, i) => {
        if (!intersects(clause, allowed)) problems.push(`${where}: ${kt} keys can never hold ${requirement.text[i]}; exclude the key type from the route or change the requirement`);
      });
      const codes: ScopeCodes = { insufficient: codeFor(this.spec.errors.insufficientScope, kt), pending: this.spec.errors.pendingReissue };
      return { denied: undefined, requirement, codes };
    });
    return {
      method,
      path: spec.path,
      description: spec.description ?? "",
      class: spec.class ?? (READ_METHODS.has(method) ? "read" : "write"),
      userContext: spec.userContext ?? false,
      sessionError: spec.sessionError ?? "TOKEN_MISSING",
      upstreamMethod: spec.upstreamMethod,
      upstream: spec.upstream ?? false,
      access,
      spec,
    };
  }

  #requirementSpec(spec: RouteSpec, method: string, keyType: string, problems: string[], where: string): RequirementSpec | null {
    const byType = spec.requiresByKeyType?.[keyType];
    if (byType !== undefined) return byType;
    if (spec.requires !== undefined) return spec.requires;
    if (spec.resource === undefined) {
      problems.push(`${where}: give "requires" (null for none) or a "resource" with methodDefaults`);
      return null;
    }
    const resource = this.catalog.resources.get(spec.resource);
    if (!resource) {
      problems.push(`${where}: unknown resource "${spec.resource}"`);
      return null;
    }
    if (resource.flat) return resource.id;
    const action = this.spec.methodDefaults?.[method === "HEAD" ? "GET" : method];
    if (action === undefined) {
      problems.push(`${where}: methodDefaults has no action for ${method}`);
      return null;
    }
    return `${resource.id}:${action}`;
  }

  keyType(id: string): KeyTypeSpec | undefined {
    return this.spec.keyTypes.find((k) => k.id === id);
  }

  normalize(keyType: string, input: string | readonly string[]): ScopeList {
    return normalizeScopes(this.catalog, keyType, input);
  }

  /**
   * The scope list of a key of this type: normalised, and naming at least one scope besides the
   * type's auto-granted ones, which are on every key of the type and do not count (docs/scopes.md).
   */
  normalizeForKey(keyType: string, input: string | readonly string[]): ScopeList {
    const list = this.normalize(keyType, input);
    if (list.errors.length > 0 || !list.scopes.every((s) => this.catalog.resources.get(s)?.autoGrant.includes(keyType))) return list;
    const named = list.scopes.join(", ");
    const message = `${named} ${list.scopes.length === 1 ? "is" : "are"} granted to every ${keyType} key and do${list.scopes.length === 1 ? "es" : ""} not count: name at least one other scope`;
    return { scopes: [], errors: [{ scope: "", code: "SCOPES_REQUIRED", message }], warnings: list.warnings, sources: new Map() };
  }

  issue(scopes: string[]): KeyScopes {
    return issueScopes(this.catalog, scopes);
  }

  amend(current: KeyScopes, scopes: string[]): KeyScopes {
    return amendScopes(current, scopes);
  }

  /** The scopes of a reissued key of this type (a rotation): pending scopes take effect, where the key type allows it. */
  reissue(keyType: string, current: KeyScopes): KeyScopes {
    return this.keyType(keyType)?.reissueGrantsLocked === false ? current : reissueScopes(this.catalog, current);
  }

  /** Scopes shown on the key but not in effect until it is reissued. */
  pending(key: KeyScopes): string[] {
    return pendingScopes(this.catalog, key);
  }

  /** Scopes in effect (auto-granted ones are listed in `scopes` already). */
  effective(key: KeyScopes): string[] {
    return effectiveScopes(this.catalog, key);
  }

  compileKey(keyType: string, key: KeyScopes): CompiledScopes {
    return compileKeyScopes(this.catalog, keyType, key);
  }

  match(method: string, path: string): RouteMatch<Route> | undefined {
    return this.#router.match(method.toUpperCase(), path);
  }

  /** The methods the route table has for this path (HEAD with GET); none: no route at all. */
  methodsAt(path: string): string[] {
    return this.#router.methodsAt(path);
  }

  /** The scope decision for a key on a route. */
  checkRoute(key: CompiledScopes, route: Route): Decision {
    const access = route.access[key.keyTypeIndex]!;
    if (access.denied) return access.denied;
    if (access.requirement === null) return ALLOWED;
    return checkRequirement(this.catalog, key, access.requirement, access.codes);
  }

  /** Compiles an ad-hoc requirement: every listed scope is needed. Coarse scopes and bundles are grants, not requirements. */
  requirement(input: string | readonly string[]): { requirement: Requirement; problems: ScopeProblem[] } {
    const problems: ScopeProblem[] = [];
    const scopes: string[] = [];
    const tokens = tokenize(input);
    for (const raw of tokens) {
      const t = raw.toLowerCase();
      const token = this.catalog.tokens.get(t);
      if (!token) problems.push(diagnose(this.catalog, raw, t));
      else if (token.kind !== "scope") problems.push({ scope: raw, code: "NOT_A_SCOPE", message: `${t} is a ${token.kind} scope: a requirement names scopes such as ${this.catalog.atoms[0]!.scope}` });
      else scopes.push(token.scope);
    }
    if (tokens.length === 0) problems.push({ scope: "", code: "SCOPES_REQUIRED", message: "name at least one required scope" });
    return { requirement: compileRequirement(this.catalog, scopes, [], "required"), problems };
  }

  check(key: CompiledScopes, requirement: Requirement): Decision {
    return checkRequirement(this.catalog, key, requirement, {
      insufficient: codeFor(this.spec.errors.insufficientScope, key.keyType),
      pending: this.spec.errors.pendingReissue,
    });
  }

  /** The scopes of `scopes` that meet a requirement (to explain an allowed decision). */
  contributing(scopes: string[], requirement: Requirement): string[] {
    return contributingScopes(this.catalog, scopes, requirement);
  }

  /** What a requested list grants, resource by resource, after expanding bundles, coarse and auto-granted scopes. */
  explain(keyType: string, list: ScopeList): ExplainedResource[] {
    const key = this.compileKey(keyType, this.issue(list.scopes));
    const out: ExplainedResource[] = [];
    for (const group of this.catalog.groups) {
      for (const resource of group.resources) {
        const granted = resource.atoms.filter((a) => hasBit(key.granted, a.index));
        if (granted.length === 0) continue;
        const via = new Set<string>();
        for (const scope of list.scopes) {
          const bits = this.catalog.bitsOf(scope);
          if (bits && granted.some((a) => hasBit(bits, a.index))) for (const source of list.sources.get(scope) ?? [scope]) via.add(source);
        }
        out.push({
          resource: resource.id,
          group: group.id,
          description: resource.description,
          actions: resource.flat ? null : granted.map((a) => a.action!),
          via: [...via],
        });
      }
    }
    return out;
  }
}

export function compileProfile(spec: ProfileSpec): Profile {
  return new Profile(spec);
}
