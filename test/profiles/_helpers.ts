/**
 * Small helpers shared by the profile tests: build keys from scope lists, find routes,
 * and assert on the scope decision. Everything goes through the public library interface.
 */
import assert from "node:assert/strict";
import type { CompiledScopes, Decision, Denied, Profile, Route } from "../../src/index.ts";

/** A route in a test: "GET /v1/deals/42". */
export type Call = `${string} /${string}`;

export function split(call: Call): [method: string, path: string] {
  const space = call.indexOf(" ");
  return [call.slice(0, space), call.slice(space + 1)];
}

export function harness(p: Profile) {
  /** Normalises a requested list for a key type; fails the test on any error. */
  function scopes(keyType: string, list: string | string[]): string[] {
    const result = p.normalize(keyType, list);
    assert.deepEqual(result.errors, [], `${keyType} key with ${JSON.stringify(list)} should normalise without errors`);
    return result.scopes;
  }

  /** The error codes a requested list gets, in token order. */
  function errorCodes(keyType: string, list: string | string[]): string[] {
    return p.normalize(keyType, list).errors.map((e) => e.code);
  }

  /** A freshly issued key of this type holding exactly what `list` normalises to. */
  function key(keyType: string, list: string | string[]): CompiledScopes {
    return p.compileKey(keyType, p.issue(scopes(keyType, list)));
  }

  function route(call: Call): Route {
    const [method, path] = split(call);
    const m = p.match(method, path);
    assert.ok(m, `${p.id}: no route matches ${call}`);
    return m.value;
  }

  function decide(k: CompiledScopes, call: Call): Decision {
    return p.checkRoute(k, route(call));
  }

  function assertAllowed(k: CompiledScopes, call: Call, label = k.keyType): void {
    const d = decide(k, call);
    assert.equal(d.allowed, true, `${label}: ${call} should be allowed, got ${JSON.stringify(d)}`);
  }

  function assertDenied(k: CompiledScopes, call: Call, code: string, label = k.keyType): Denied {
    const d = decide(k, call);
    if (d.allowed) assert.fail(`${label}: ${call} should be denied with ${code}, but it is allowed`);
    assert.equal(d.code, code, `${label}: ${call} denied with ${d.code}, expected ${code} (${JSON.stringify(d)})`);
    return d;
  }

  /** Whether a key meets an ad-hoc requirement of one scope. */
  function grants(k: CompiledScopes, scope: string): boolean {
    const { requirement, problems } = p.requirement([scope]);
    assert.deepEqual(problems, [], `requirement ${scope}`);
    return p.check(k, requirement).allowed;
  }

  return { scopes, errorCodes, key, route, decide, assertAllowed, assertDenied, grants };
}

/** A concrete path for a route pattern: `:id` -> `id-1`, a trailing `*` -> `x`. */
export function samplePath(pattern: string): string {
  return pattern.replace(/:([A-Za-z_]+)/g, "$1-1").replace(/\/\*$/, "/x");
}

/** The profile's own API routes: without keygate's management API (portals, keys), which only its management key type calls. */
export function apiRoutes(p: Profile): Route[] {
  const management = p.management.keyType.id;
  return p.routes.filter((r) => !(r.spec.keyTypes?.length === 1 && r.spec.keyTypes[0] === management));
}

/** The profile's own scopes: without the management scopes, which only its management key type holds. */
export function apiScopes(p: Profile): string[] {
  const management = p.management.keyType.id;
  return p.catalog.atoms.filter((a) => !a.resource.keyTypes.every((kt) => kt === management)).map((a) => a.scope);
}
