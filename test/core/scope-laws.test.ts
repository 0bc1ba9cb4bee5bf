/**
 * Laws of the scope engine, checked with random inputs on every built-in profile (and on a
 * small probe profile that has what the built-ins lack: a reserved resource inside a coarse
 * group next to a group coarse scopes must not reach).
 *
 * (a) adding a grant never removes an allowance
 * (b) x:write allows x:read for every leveled resource that has both
 * (c) coarse scopes cover exactly what they may reach; no grantable list satisfies a reserved scope
 * (d) normalising is idempotent and ignores case, padding and duplicates
 * (e) one invalid token rejects the whole list and is reported
 * (f) removing scopes with amend never adds an allowance; amend + reissue equals a fresh issue
 * (g) a denial's coveredBy lists exactly the grantable scopes that, held alone, meet a missing clause
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { type CompiledScopes, type KeyScopes, type Profile, type Requirement, compileProfileData, loadProfile } from "../../src/index.ts";

const RUNS = 300;

/** Coarse scopes reach group `api` (with a reserved resource and a flat one), not group `other`. */
const probe = compileProfileData(
  {
    id: "probe",
    title: "Probe",
    description: "Law probe: coarse and non-coarse groups, a reserved resource inside the coarse group, an auto-granted scope.",
    keyTypes: [
      { id: "full", prefix: "pf_", label: "Full key" },
      { id: "narrow", prefix: "pn_", label: "Narrow key" },
    ],
    actionGraphs: { rwa: { read: [], write: ["read"], admin: ["write"] } },
    groups: [
      {
        id: "api",
        label: "API",
        coarse: true,
        resources: [
          { id: "docs", description: "Docs", actions: "rwa" },
          { id: "teams", description: "Teams: manage is not above write", actions: { read: [], write: ["read"], manage: ["read"] } },
          { id: "vault", description: "Reserved, in a coarse group", actions: "rwa", reserved: true },
          { id: "ping", description: "Flat", keyTypes: ["full"] },
        ],
      },
      {
        id: "other",
        label: "Other",
        keyTypes: ["full"],
        resources: [
          { id: "billing", description: "Leveled, not coarse-reachable", actions: "rwa" },
          { id: "ai", description: "Auto-granted", autoGrant: ["full"] },
          { id: "root", description: "Reserved, not coarse-reachable", reserved: true },
        ],
      },
    ],
    coarse: [
      { id: "read", description: "Any *:read", action: "read" },
      { id: "write", description: "Any *:write", action: "write" },
      { id: "admin", description: "Everything coarse-reachable", action: "*" },
    ],
    bundles: [{ id: "starter", description: "Docs and billing", scopes: ["docs:write", "billing:read"] }],
    methodDefaults: { GET: "read", POST: "write", DELETE: "write" },
    routes: [
      { method: "GET", path: "/docs", resource: "docs" },
      { method: "POST", path: "/docs", resource: "docs" },
      { method: "DELETE", path: "/docs/:id", resource: "docs", requires: "docs:admin" },
      { method: "POST", path: "/teams", requires: "teams:manage" },
      { method: "GET", path: "/billing", resource: "billing", keyTypes: ["full"] },
      { method: "GET", path: "/mixed", requires: [{ anyOf: ["docs:write", "billing:admin"] }, "teams:read"] },
      { method: "GET", path: "/vault", requires: "vault:read" },
      { method: "GET", path: "/ping", requires: { anyOf: ["ping", "root"] }, keyTypes: ["full"] },
      { method: "GET", path: "/ai", requires: "ai", keyTypes: ["full"] },
      { method: "GET", path: "/me", requires: null },
    ],
    errors: { insufficientScope: { default: "INSUFFICIENT_SCOPE" }, keyTypeNotAllowed: { default: "KEY_TYPE_NOT_ALLOWED" } },
  },
  "probe",
);

const PROFILES: Profile[] = [loadProfile("vibecode"), loadProfile("atender"), loadProfile("rogeriq"), probe];

// ---------- helpers ----------

/** Every spelling (canonical, alias, coarse, bundle) a key type may request on its own. */
const grantableCache = new Map<string, string[]>();
function grantable(p: Profile, keyType: string): string[] {
  const cacheKey = `${p.id}/${keyType}`;
  let tokens = grantableCache.get(cacheKey);
  if (!tokens) grantableCache.set(cacheKey, (tokens = [...p.catalog.tokens.keys()].filter((t) => p.normalize(keyType, [t]).errors.length === 0)));
  return tokens;
}

/** Canonical spellings only (no alias): what coveredBy may name. */
function canonicalGrantable(p: Profile, keyType: string): string[] {
  return [...p.catalog.tokens.entries()].filter(([name, t]) => t.kind !== "scope" || t.scope === name).map(([name]) => name).filter((name) => p.normalize(keyType, [name]).errors.length === 0);
}

/** Key types that may request at least one token. */
function usableKeyTypes(p: Profile): string[] {
  return p.catalog.keyTypes.filter((kt) => grantable(p, kt).length > 0);
}

function normalized(p: Profile, keyType: string, tokens: string | readonly string[]): string[] {
  const list = p.normalize(keyType, tokens);
  assert.deepEqual(list.errors, [], `${p.id}/${keyType}: ${JSON.stringify(tokens)} should be valid`);
  return list.scopes;
}

function keyOf(p: Profile, keyType: string, tokens: readonly string[]): CompiledScopes {
  return p.compileKey(keyType, p.issue(normalized(p, keyType, tokens)));
}

function atomRequirement(p: Profile, scopes: string[]): Requirement {
  const { requirement, problems } = p.requirement(scopes);
  assert.deepEqual(problems, []);
  return requirement;
}

/** One single-atom requirement per atom of the catalog. */
function atomRequirements(p: Profile): { scope: string; requirement: Requirement }[] {
  return p.catalog.atoms.map((a) => ({ scope: a.scope, requirement: atomRequirement(p, [a.scope]) }));
}

function routeAllowances(p: Profile, key: CompiledScopes): boolean[] {
  return p.routes.map((r) => p.checkRoute(key, r).allowed);
}

function atomAllowances(p: Profile, key: CompiledScopes, reqs: { requirement: Requirement }[]): boolean[] {
  return reqs.map((r) => p.check(key, r.requirement).allowed);
}

/** A random sub-list, with lengths clamped to the list. */
function sub<T>(items: T[], minLength: number, maxLength = items.length) {
  return fc.subarray(items, { minLength: Math.min(minLength, items.length), maxLength: Math.min(maxLength, items.length) });
}

/** a ⇒ b, element-wise; returns the first index where it fails. */
function firstViolation(a: boolean[], b: boolean[]): number {
  return a.findIndex((x, i) => x && !b[i]);
}

/** A key type, then a random list of valid tokens for it. */
function keyTypeAndTokens(p: Profile, maxLength = 8) {
  return fc.constantFrom(...usableKeyTypes(p)).chain((kt) => fc.record({ kt: fc.constant(kt), tokens: sub(grantable(p, kt), 1, maxLength) }));
}

/** A key with history: issued with one list, then amended to another (so it may have pending scopes). */
function keyWithHistory(p: Profile, kt: string) {
  const tokens = grantable(p, kt);
  return fc.record({ first: sub(tokens, 1, 6), then: sub(tokens, 1, 6), amended: fc.boolean() }).map(({ first, then, amended }): KeyScopes => {
    const issued = p.issue(normalized(p, kt, first));
    return amended ? p.amend(issued, normalized(p, kt, then)) : issued;
  });
}

/** Leveled resources that have both read and write. */
function readWriteResources(p: Profile) {
  return [...p.catalog.resources.values()].filter((r) => !r.flat && r.actions.includes("read") && r.actions.includes("write"));
}

const reservedAtoms = (p: Profile) => p.catalog.atoms.filter((a) => a.resource.reserved);

// ---------- laws ----------

for (const p of PROFILES) {
  describe(`scope laws: ${p.id}`, () => {
    const atoms = atomRequirements(p);
    const atomScopes = p.catalog.atoms.map((a) => a.scope);

    test("(a) adding a grant never removes an allowance", () => {
      let antecedents = 0;
      const arb = keyTypeAndTokens(p, 10).chain(({ kt, tokens }) =>
        fc.record({
          kt: fc.constant(kt),
          T: fc.constant(tokens),
          S: sub(tokens, 1),
          req: sub(atomScopes, 1, 3),
        }),
      );
      fc.assert(
        fc.property(arb, ({ kt, S, T, req }) => {
          const small = keyOf(p, kt, S);
          const big = keyOf(p, kt, T);
          const a = atomAllowances(p, small, atoms);
          const b = atomAllowances(p, big, atoms);
          const i = firstViolation(a, b);
          assert.equal(i, -1, `${S} allows ${atoms[i]?.scope} but ${T} does not`);
          const ra = routeAllowances(p, small);
          const rb = routeAllowances(p, big);
          const j = firstViolation(ra, rb);
          assert.equal(j, -1, `${S} is allowed on ${p.routes[j]?.method} ${p.routes[j]?.path} but ${T} is not`);
          const requirement = atomRequirement(p, req);
          if (p.check(small, requirement).allowed) {
            antecedents++;
            assert.ok(p.check(big, requirement).allowed, `${S} meets ${req} but ${T} does not`);
          }
          if (a.some(Boolean)) antecedents++;
        }),
        { numRuns: RUNS },
      );
      assert.ok(antecedents > 0, "the law was never exercised");
    });

    const rw = readWriteResources(p);
    test("(b) x:write allows x:read", { skip: rw.length === 0 ? "no leveled resource with read and write" : false }, () => {
      let checked = 0;
      for (const r of rw) {
        for (const kt of p.catalog.keyTypes) {
          if (r.reserved || !r.keyTypes.includes(kt)) continue;
          const spellings = [r.id, ...r.aliases].map((id) => `${id}:write`);
          for (const s of spellings) {
            const key = keyOf(p, kt, [s]);
            assert.ok(p.check(key, atomRequirement(p, [`${r.id}:read`])).allowed, `${kt} key with ${s} cannot read ${r.id}`);
            checked++;
          }
        }
      }
      assert.ok(checked > 0);
      // With anything else on the key as well.
      fc.assert(
        fc.property(
          keyTypeAndTokens(p).chain(({ kt, tokens }) => {
            const holdable = rw.filter((r) => !r.reserved && r.keyTypes.includes(kt));
            return fc.record({ kt: fc.constant(kt), tokens: fc.constant(tokens), r: holdable.length > 0 ? fc.constantFrom(...holdable.map((x) => x.id)) : fc.constant(undefined) });
          }),
          ({ kt, tokens, r }) => {
            if (r === undefined) return;
            const key = keyOf(p, kt, [...tokens, `${r}:write`]);
            assert.ok(p.check(key, atomRequirement(p, [`${r}:read`])).allowed);
          },
        ),
        { numRuns: RUNS },
      );
    });

    test("(c) each coarse scope covers exactly what it may reach, never a reserved or non-coarse scope", { skip: p.catalog.coarse.length === 0 ? "no coarse scopes" : false }, () => {
      let covered = 0;
      for (const c of p.catalog.coarse) {
        for (const kt of p.catalog.keyTypes) {
          if (p.normalize(kt, [c.scope]).errors.length > 0) continue;
          const key = keyOf(p, kt, [c.scope]);
          const autoOnly = p.compileKey(kt, p.issue([]));
          for (const a of p.catalog.atoms) {
            const r = a.resource;
            const reachable = r.coarse && !r.reserved && r.keyTypes.includes(kt);
            let expected: boolean;
            if (!reachable) expected = false;
            else if (c.def.action === "*") expected = true;
            else if (r.actions.includes(c.def.action)) expected = p.check(keyOf(p, kt, [`${r.id}:${c.def.action}`]), atomRequirement(p, [a.scope])).allowed;
            else expected = false;
            expected ||= p.check(autoOnly, atomRequirement(p, [a.scope])).allowed;
            const got = p.check(key, atomRequirement(p, [a.scope])).allowed;
            assert.equal(got, expected, `${kt} key with coarse ${c.scope}: ${a.scope} should be ${expected ? "allowed" : "denied"}`);
            if (got && r.coarse) covered++;
          }
        }
      }
      assert.ok(covered > 0);
      // "admin"-like coarse scopes (action "*") reach every atom of every coarse resource a key type may hold.
      for (const c of p.catalog.coarse.filter((x) => x.def.action === "*")) {
        for (const kt of p.catalog.keyTypes) {
          if (p.normalize(kt, [c.scope]).errors.length > 0) continue;
          const key = keyOf(p, kt, [c.scope]);
          for (const a of p.catalog.atoms.filter((x) => x.resource.coarse && !x.resource.reserved && x.resource.keyTypes.includes(kt))) {
            assert.ok(p.check(key, atomRequirement(p, [a.scope])).allowed, `${c.scope} does not reach ${a.scope}`);
          }
        }
      }
    });

    test("(c) no grantable list, not even everything a key type may request, satisfies a reserved scope", { skip: reservedAtoms(p).length === 0 ? "no reserved scopes" : false }, () => {
      const reserved = reservedAtoms(p);
      for (const kt of usableKeyTypes(p)) {
        const everything = grantable(p, kt);
        // Every non-reserved scope the key type may hold is grantable on its own...
        for (const a of p.catalog.atoms) {
          if (a.resource.reserved || !a.resource.keyTypes.includes(kt)) continue;
          assert.ok(everything.includes(a.scope), `${kt} keys cannot request ${a.scope}`);
        }
        // ...and requesting a reserved one is an error.
        for (const a of reserved) {
          assert.ok(
            p.normalize(kt, [a.scope]).errors.some((e) => e.scope === a.scope),
            `${kt} keys may request reserved ${a.scope}`,
          );
        }
        const all = keyOf(p, kt, everything);
        for (const a of reserved) {
          assert.equal(p.check(all, atomRequirement(p, [a.scope])).allowed, false, `${kt} key with every grantable token holds reserved ${a.scope}`);
        }
        // The same key through amend and reissue.
        const reissued = p.compileKey(kt, p.reissue(kt, p.amend(p.issue(normalized(p, kt, [everything[0]!])), normalized(p, kt, everything))));
        for (const a of reserved) assert.equal(p.check(reissued, atomRequirement(p, [a.scope])).allowed, false);
      }
      fc.assert(
        fc.property(keyTypeAndTokens(p, 20), ({ kt, tokens }) => {
          const key = keyOf(p, kt, tokens);
          for (const a of reserved) assert.equal(p.check(key, atomRequirement(p, [a.scope])).allowed, false, `${tokens} holds reserved ${a.scope}`);
        }),
        { numRuns: RUNS },
      );
    });

    test("(d) normalising twice changes nothing; case, padding and duplicates do not matter", () => {
      const pad = fc.constantFrom("", " ", "  ", "\t", "\n", " \t ");
      const noisy = (token: string) =>
        fc.record({ mask: fc.nat(), left: pad, right: pad }).map(({ mask, left, right }) => {
          const cased = [...token].map((ch, i) => ((mask >>> i % 31) & 1 ? ch.toUpperCase() : ch)).join("");
          return `${left}${cased}${right}`;
        });
      const arb = keyTypeAndTokens(p).chain(({ kt, tokens }) =>
        fc.record({
          kt: fc.constant(kt),
          tokens: fc.constant(tokens),
          // every token, some twice, each with its own noise, in any order
          noisy: fc.tuple(...tokens.map((t) => fc.array(noisy(t), { minLength: 1, maxLength: 3 }))).chain((groups) => fc.shuffledSubarray(groups.flat(), { minLength: groups.flat().length })),
          asString: fc.boolean(),
          emptyTokens: fc.nat({ max: 2 }),
        }),
      );
      fc.assert(
        fc.property(arb, ({ kt, tokens, noisy: spelled, asString, emptyTokens }) => {
          const input = asString ? [...spelled, ...Array.from({ length: emptyTokens }, () => " ")].join(",") : spelled;
          const once = p.normalize(kt, input);
          assert.deepEqual(once.errors, [], `errors for ${JSON.stringify(input)}`);
          const twice = p.normalize(kt, once.scopes);
          assert.deepEqual(twice.errors, []);
          assert.deepEqual(twice.scopes, once.scopes);
          assert.deepEqual(p.normalize(kt, tokens).scopes, once.scopes, "noise changed the result");
          assert.deepEqual(new Set(once.scopes).size, once.scopes.length, "duplicates in the result");
          for (const s of once.scopes) assert.equal(s, s.toLowerCase());
        }),
        { numRuns: RUNS },
      );
    });

    test("(e) a list with any invalid token yields no scopes and reports that token", () => {
      const names = [...p.catalog.tokens.keys()];
      const isToken = (s: string) => p.catalog.tokens.has(s.trim().toLowerCase());
      const mutated = fc
        .tuple(fc.constantFrom(...names), fc.constantFrom(":read", ":write", ":admin", ":nope", "x", " x", "s", ":", "."), fc.boolean())
        .map(([t, suffix, strip]) => (strip && t.includes(":") ? t.slice(0, t.lastIndexOf(":")) : `${t}${suffix}`));
      const inside = fc.constantFrom(...names).map((t) => (t.length > 1 ? `${t.slice(0, 1)} ${t.slice(1)}` : `${t} ${t}`));
      const arbitrary = fc.string({ minLength: 1, maxLength: 12 });
      const candidate = fc.oneof(mutated, inside, arbitrary);
      const arb = fc.constantFrom(...usableKeyTypes(p)).chain((kt) => {
        const valid = grantable(p, kt);
        // Tokens of the catalog this key type may not request (reserved, other key types).
        const refused = names.filter((t) => !valid.includes(t));
        const bad = (refused.length > 0 ? fc.oneof(candidate, fc.constantFrom(...refused)) : candidate).filter(
          // "*", "x:*" and "*:read" are spelled out by the scope model; leave them out of "invalid".
          (s) => s.trim() !== "" && !s.includes("*") && (!isToken(s) || p.normalize(kt, [s]).errors.length > 0),
        );
        return fc.record({
          kt: fc.constant(kt),
          valid: sub(valid, 0, 6),
          bad: fc.array(bad, { minLength: 1, maxLength: 3 }),
          seed: fc.nat(),
        });
      });
      fc.assert(
        fc.property(arb, ({ kt, valid, bad, seed }) => {
          const input = [...valid];
          bad.forEach((b, i) => input.splice((seed + i * 7) % (input.length + 1), 0, b));
          const list = p.normalize(kt, input);
          assert.deepEqual(list.scopes, [], `${JSON.stringify(input)} was accepted`);
          assert.equal(list.sources.size, 0);
          const reported = new Set(list.errors.map((e) => e.scope));
          for (const b of bad) assert.ok(reported.has(b.trim()), `${JSON.stringify(b)} is not reported: ${JSON.stringify(list.errors)}`);
          const badSet = new Set(bad.map((b) => b.trim()));
          for (const e of list.errors) assert.ok(badSet.has(e.scope), `valid token ${e.scope} reported: ${e.code}`);
          for (const e of list.errors) assert.ok(e.code.length > 0 && e.message.length > 0);
        }),
        { numRuns: RUNS },
      );
    });

    test("(f) removing scopes with amend never adds an allowance", () => {
      let removals = 0;
      const arb = fc.constantFrom(...usableKeyTypes(p)).chain((kt) =>
        keyWithHistory(p, kt).chain((key) => fc.record({ kt: fc.constant(kt), key: fc.constant(key), keep: sub(key.scopes, 1) })),
      );
      fc.assert(
        fc.property(arb, ({ kt, key, keep }) => {
          const narrowed = p.amend(key, normalized(p, kt, keep));
          if (narrowed.scopes.length < key.scopes.length) removals++;
          const before = p.compileKey(kt, key);
          const after = p.compileKey(kt, narrowed);
          const i = firstViolation(atomAllowances(p, after, atoms), atomAllowances(p, before, atoms));
          assert.equal(i, -1, `removing scopes from ${key.scopes} to ${keep} added ${atoms[i]?.scope}`);
          const j = firstViolation(routeAllowances(p, after), routeAllowances(p, before));
          assert.equal(j, -1, `removing scopes added ${p.routes[j]?.method} ${p.routes[j]?.path}`);
          for (const s of p.effective(narrowed)) assert.ok(p.effective(key).includes(s), `${s} became effective by removing scopes`);
        }),
        { numRuns: RUNS },
      );
      assert.ok(removals > 0);
    });

    test("(f) amend then reissue equals issuing the list fresh (where reissuing activates locked scopes)", () => {
      const arb = fc.constantFrom(...usableKeyTypes(p)).chain((kt) =>
        fc.record({ kt: fc.constant(kt), key: keyWithHistory(p, kt), list: sub(grantable(p, kt), 1, 8) }),
      );
      let applied = 0;
      fc.assert(
        fc.property(arb, ({ kt, key, list }) => {
          const scopes = normalized(p, kt, list);
          const amended = p.amend(key, scopes);
          const reissued = p.reissue(kt, amended);
          if (p.keyType(kt)?.reissueGrantsLocked === false) {
            // Such keys must be recreated: reissuing changes nothing, pending scopes stay pending.
            assert.deepEqual(reissued, amended);
            return;
          }
          applied++;
          const fresh = p.issue(scopes);
          assert.deepEqual(p.pending(reissued), []);
          assert.deepEqual(p.effective(reissued), p.effective(fresh));
          assert.deepEqual(p.effective(fresh), scopes);
          const a = p.compileKey(kt, reissued);
          const b = p.compileKey(kt, fresh);
          for (const r of p.routes) assert.deepEqual(p.checkRoute(a, r), p.checkRoute(b, r), `${r.method} ${r.path}`);
          assert.deepEqual(atomAllowances(p, a, atoms), atomAllowances(p, b, atoms));
        }),
        { numRuns: RUNS },
      );
      assert.ok(applied > 0);
    });

    test("(f) after any amends, a locked scope is in effect only if it was issued and never removed since", () => {
      const locked = (s: string) => {
        const t = p.catalog.tokens.get(s);
        return t?.kind === "scope" && t.atom.resource.lockedAtIssue;
      };
      const arb = fc.constantFrom(...usableKeyTypes(p)).chain((kt) =>
        fc.record({ kt: fc.constant(kt), first: sub(grantable(p, kt), 1, 6), amends: fc.array(sub(grantable(p, kt), 1, 6), { minLength: 1, maxLength: 4 }) }),
      );
      fc.assert(
        fc.property(arb, ({ kt, first, amends }) => {
          let key = p.issue(normalized(p, kt, first));
          let survivors = new Set(key.scopes.filter(locked));
          for (const list of amends) {
            const scopes = normalized(p, kt, list);
            key = p.amend(key, scopes);
            survivors = new Set([...survivors].filter((s) => scopes.includes(s)));
          }
          const expected = key.scopes.filter((s) => !locked(s) || survivors.has(s));
          assert.deepEqual(p.effective(key), expected);
          assert.deepEqual(p.pending(key), key.scopes.filter((s) => !expected.includes(s)));
          // Pending scopes grant nothing: the key allows exactly what a key of its effective scopes allows.
          const compiled = p.compileKey(kt, key);
          const plain = p.compileKey(kt, p.issue(p.effective(key)));
          assert.deepEqual(routeAllowances(p, compiled), routeAllowances(p, plain));
          assert.deepEqual(atomAllowances(p, compiled, atoms), atomAllowances(p, plain, atoms));
        }),
        { numRuns: RUNS },
      );
    });

    /** For one denied decision: coveredBy names exactly the canonical grantable tokens that alone meet a missing clause. */
    function checkCoveredBy(kt: string, routeIndex: number, missing: readonly string[], coveredBy: readonly string[], canonical: string[]) {
      const route = p.routes[routeIndex]!;
      const where = `${kt} on ${route.method} ${route.path}`;
      const meetsAMissingClause = (token: string) => {
        const d = p.checkRoute(keyOf(p, kt, [token]), route);
        return d.allowed || missing.some((clause) => !d.missing.includes(clause));
      };
      assert.equal(new Set(coveredBy).size, coveredBy.length, `${where}: duplicates in coveredBy`);
      for (const c of coveredBy) {
        assert.ok(canonical.includes(c), `${where}: coveredBy names ${c}, which ${kt} keys cannot request`);
        assert.ok(meetsAMissingClause(c), `${where}: ${c} is in coveredBy but meets none of ${missing}`);
      }
      for (const c of canonical) {
        if (!coveredBy.includes(c)) assert.ok(!meetsAMissingClause(c), `${where}: ${c} meets a missing clause of ${missing} but is not in coveredBy ${coveredBy}`);
      }
    }

    test("(g) coveredBy of a denial: exactly the tokens that, held alone, meet a missing clause (every route, bare key)", () => {
      let denials = 0;
      for (const kt of p.catalog.keyTypes) {
        const canonical = canonicalGrantable(p, kt);
        const bare = p.compileKey(kt, p.issue([]));
        p.routes.forEach((route, i) => {
          const d = p.checkRoute(bare, route);
          if (d.allowed || d.reason === "key_type") return;
          denials++;
          assert.ok(d.missing.length > 0);
          checkCoveredBy(kt, i, d.missing, d.coveredBy, canonical);
        });
      }
      assert.ok(denials > 0);
    });

    test("(g) coveredBy of a denial: random keys and routes", () => {
      const arb = fc.constantFrom(...usableKeyTypes(p)).chain((kt) => fc.record({ kt: fc.constant(kt), key: keyWithHistory(p, kt), route: fc.nat({ max: p.routes.length - 1 }) }));
      const canonical = new Map(p.catalog.keyTypes.map((kt) => [kt, canonicalGrantable(p, kt)]));
      fc.assert(
        fc.property(arb, ({ kt, key, route }) => {
          const d = p.checkRoute(p.compileKey(kt, key), p.routes[route]!);
          if (d.allowed || d.reason === "key_type") return;
          checkCoveredBy(kt, route, d.missing, d.coveredBy, canonical.get(kt)!);
        }),
        { numRuns: RUNS },
      );
    });
  });
}
