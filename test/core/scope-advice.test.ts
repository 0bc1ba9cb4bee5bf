/**
 * The scope advisor's laws (issue 18, docs/scope-advice.md), with random traffic on every
 * built-in profile:
 * (a) the suggested scopes cover every observed request
 * (b) no strictly smaller set of the profile's scopes does: a brute force over every set of the
 *     scopes that could meet an observed requirement finds none granting fewer permissions
 * (c) the suggestion names granular scopes only (no coarse scope, no bundle), keeps the
 *     auto-granted ones and both halves of a companion pair
 * (d) narrowing to the suggestion never grants anything the key did not have
 * and the issue's examples, one per profile.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { type KeyScopes, type ObservedUse, type Profile, adviseScopes, loadProfile } from "../../src/index.ts";

const RUNS = 150;
const T0 = Date.UTC(2026, 10, 1);
const DAY = 86_400_000;

const PROFILES: Profile[] = [loadProfile("vibecode"), loadProfile("atender"), loadProfile("rogeriq")];

/** Canonical scopes a key type may request. */
function requestable(p: Profile, keyType: string): string[] {
  return p.catalog.atoms.filter((a) => !a.resource.reserved && a.resource.keyTypes.includes(keyType)).map((a) => a.scope);
}

function granted(p: Profile, keyType: string, scopes: string[]) {
  return p.compileKey(keyType, p.issue(scopes)).granted;
}

function countBits(bits: Uint32Array): number {
  let n = 0;
  for (const w of bits) for (let i = 0; i < 32; i++) if ((w >>> i) & 1) n++;
  return n;
}

function subsetOf(a: Uint32Array, b: Uint32Array): boolean {
  return a.every((w, i) => (w & ~b[i]!) === 0);
}

/** Routes a key type may call and that some requestable set allows (not key-type refused, not reserved-only). */
function callableRoutes(p: Profile, keyType: string) {
  const everything = p.compileKey(keyType, p.issue(requestable(p, keyType)));
  return p.routes.filter((r) => p.checkRoute(everything, r).allowed);
}

function uses(routes: { method: string; path: string }[], counts: number[]): ObservedUse[] {
  return routes.map((r, i) => ({ method: r.method, route: r.path, missingScope: null, count: counts[i] ?? 1, firstAt: T0, lastAt: T0 + i }));
}

const scenario = fc
  .constantFrom(...PROFILES)
  .chain((p) => fc.constantFrom(...p.catalog.keyTypes.filter((kt) => requestable(p, kt).length > 0)).map((kt) => [p, kt] as const))
  .chain(([p, kt]) => {
    const routes = callableRoutes(p, kt);
    const tokens = [...p.catalog.tokens.keys()].filter((t) => p.normalize(kt, [t]).errors.length === 0);
    return fc.record({
      profile: fc.constant(p),
      keyType: fc.constant(kt),
      routes: fc.subarray(routes, { minLength: 1, maxLength: Math.min(5, routes.length) }),
      held: fc.subarray(tokens, { minLength: 1, maxLength: Math.min(4, tokens.length) }),
      counts: fc.array(fc.integer({ min: 1, max: 1000 }), { minLength: 5, maxLength: 5 }),
    });
  });

function heldScopes(p: Profile, keyType: string, tokens: string[]): KeyScopes {
  const list = p.normalize(keyType, tokens);
  assert.deepEqual(list.errors, []);
  return p.issue(list.scopes);
}

describe("scope advice laws (issue 18)", () => {
  test("(a) the suggested scopes cover every observed request, on every profile", () => {
    fc.assert(
      fc.property(scenario, ({ profile: p, keyType, routes, held, counts }) => {
        const advice = adviseScopes(p, keyType, uses(routes, counts), heldScopes(p, keyType, held));
        const key = p.compileKey(keyType, p.issue(advice.suggestedScopes.map((s) => s.scope)));
        for (const route of routes) assert.ok(p.checkRoute(key, route).allowed, `${p.id}/${keyType}: ${route.method} ${route.path} not covered by ${advice.suggestedScopes.map((s) => s.scope)}`);
        assert.equal(advice.observedRoutes.reduce((n, r) => n + r.count, 0), counts.slice(0, routes.length).reduce((n, c) => n + c, 0));
      }),
      { numRuns: RUNS },
    );
  });

  test("(b) no strictly smaller set of the profile's scopes covers the observed requests (brute force)", () => {
    fc.assert(
      fc.property(scenario, ({ profile: p, keyType, routes, held }) => {
        const advice = adviseScopes(p, keyType, uses(routes, []), heldScopes(p, keyType, held));
        const suggestedCore = advice.suggestedScopes.filter((s) => s.reason !== "companion").map((s) => s.scope);
        const mine = granted(p, keyType, suggestedCore);
        // Only scopes that meet some observed requirement can help; any covering set's grants contain those of its helpful part.
        const requirements = routes.flatMap((r) => {
          const access = r.access[p.catalog.keyTypes.indexOf(keyType)]!;
          return access.denied || access.requirement === null ? [] : [access.requirement];
        });
        const helpful = requestable(p, keyType).filter((s) => {
          const bits = p.catalog.bitsOf(s)!;
          return requirements.some((req) => req.clauses.some((c) => c.some((w, i) => (w & bits[i]!) !== 0)));
        });
        fc.pre(helpful.length <= 14);
        const allows = (scopes: string[]) => {
          const key = p.compileKey(keyType, p.issue(scopes));
          return routes.every((r) => p.checkRoute(key, r).allowed);
        };
        for (let mask = 0; mask < 1 << helpful.length; mask++) {
          const set = helpful.filter((_, i) => (mask >>> i) & 1);
          if (!allows(set)) continue;
          const bits = granted(p, keyType, set);
          const strictlySmaller = subsetOf(bits, mine) && countBits(bits) < countBits(mine);
          assert.ok(!strictlySmaller, `${p.id}/${keyType}: ${set} covers with fewer permissions than ${suggestedCore}`);
          assert.ok(countBits(bits) >= countBits(mine), `${p.id}/${keyType}: ${set} grants fewer permissions than ${suggestedCore}`);
        }
      }),
      { numRuns: RUNS },
    );
  });

  test("(c) granular scopes only; auto-granted ones kept; companions together; each covering scope says what it covers", () => {
    fc.assert(
      fc.property(scenario, ({ profile: p, keyType, routes, held }) => {
        const advice = adviseScopes(p, keyType, uses(routes, []), heldScopes(p, keyType, held));
        const scopes = advice.suggestedScopes.map((s) => s.scope);
        for (const s of scopes) {
          const token = p.catalog.tokens.get(s);
          assert.equal(token?.kind, "scope", `${s} is a granular scope`);
          assert.equal(token.scope, s, `${s} is canonical`);
        }
        for (const r of p.catalog.resources.values()) {
          if (r.autoGrant.includes(keyType)) assert.ok(r.atoms.some((a) => scopes.includes(a.scope)), `auto-granted ${r.id} kept`);
        }
        for (const c of p.catalog.companions) {
          if (c.scopes.some((s) => scopes.includes(s))) assert.ok(c.scopes.every((s) => scopes.includes(s)), `companions ${c.scopes} together`);
        }
        for (const s of advice.suggestedScopes.filter((x) => x.reason === "covers")) assert.ok(s.covers.length > 0, `${s.scope} says what it covers`);
        assert.equal(new Set(scopes).size, scopes.length, "no scope twice");
      }),
      { numRuns: RUNS },
    );
  });

  test("(d) narrowing to the suggestion never grants anything new, and keeps every observed request the key could make", () => {
    fc.assert(
      fc.property(scenario, ({ profile: p, keyType, routes, held }) => {
        const key = heldScopes(p, keyType, held);
        const advice = adviseScopes(p, keyType, uses(routes, []), key);
        if (advice.narrowTo === null) return;
        const before = p.compileKey(keyType, key);
        const after = p.compileKey(keyType, p.amend(key, advice.narrowTo));
        assert.ok(subsetOf(after.granted, before.granted), `${p.id}/${keyType}: ${key.scopes} -> ${advice.narrowTo} adds permissions`);
        assert.ok(countBits(after.pending) === 0 || subsetOf(after.pending, before.pending), "nothing new waits for a reissue");
        for (const route of routes) {
          if (p.checkRoute(before, route).allowed) assert.ok(p.checkRoute(after, route).allowed, `${route.method} ${route.path} still allowed`);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe("scope advice examples (issue 18)", () => {
  test("RogerIQ: a key holding admin that only ever listed KB articles is advised kb:read; admin is over-broad, not unused", () => {
    const p = loadProfile("rogeriq");
    const advice = adviseScopes(p, "api", [{ method: "GET", route: "/v1/projects/:projectId/kb/articles", missingScope: null, count: 420, firstAt: T0, lastAt: T0 + 10 * DAY }], p.issue(["admin"]));
    assert.deepEqual(advice.suggestedScopes, [{ scope: "kb:read", reason: "covers", covers: ["kb:read"], held: true }]);
    assert.deepEqual(advice.narrowTo, ["kb:read"]);
    assert.deepEqual(advice.unusedScopes, []);
    assert.deepEqual(advice.confidence, { level: "normal", note: null });
    assert.deepEqual(advice.window, { from: T0, to: T0 + 10 * DAY, requests: 420, unmatchedRequests: 0, days: 10 });
  });

  test("RogerIQ: messages of a conversation (conversations:read or messages:read) take the scope the conversation list needs anyway", () => {
    const p = loadProfile("rogeriq");
    const P = "/v1/projects/:projectId";
    const advice = adviseScopes(p, "api", uses([{ method: "GET", path: `${P}/conversations` }, { method: "GET", path: `${P}/conversations/:id/messages` }], [3, 4]), p.issue(["read"]));
    assert.deepEqual(advice.suggestedScopes.map((s) => s.scope), ["conversations:read"]);
    assert.deepEqual(advice.suggestedScopes[0]!.covers, ["conversations:read", "conversations:read|messages:read"]);
  });

  test("Atender: reading and writing articles is one knowledge:write (write implies read), not the knowledge bundle or read_all; unused scopes are named", () => {
    const p = loadProfile("atender");
    const routes = p.routes.filter((r) => r.path === "/api/v1/kb/*" && (r.method === "GET" || r.method === "POST"));
    assert.ok(routes.length >= 2);
    const advice = adviseScopes(p, "api", uses(routes, []), heldScopes(p, "api", ["full_access"]));
    assert.deepEqual(advice.suggestedScopes.map((s) => s.scope), ["knowledge:write"]);
    assert.ok(advice.unusedScopes.includes("contacts:read") && !advice.unusedScopes.includes("knowledge:write"));
    assert.equal(advice.confidence.level, "low");
    assert.match(advice.confidence.note!, /Based on \d+ requests over 0 days/);
  });

  test("VibeCode: tasks need task + tasks; the auto-granted platform scopes are kept; a refusal is needed-but-not-held", () => {
    const p = loadProfile("vibecode");
    const list = p.routes.find((r) => r.method === "GET" && r.path === "/v1/tasks")!;
    const deals = p.routes.find((r) => r.method === "GET" && r.path === "/v1/deals")!;
    const held = heldScopes(p, "api", ["task", "tasks", "user", "disk"]);
    const advice = adviseScopes(
      p,
      "api",
      [...uses([list], [50]), { method: "GET", route: deals.path, missingScope: "crm", count: 2, firstAt: T0 + 5, lastAt: T0 + 6 }],
      held,
    );
    const byScope = new Map(advice.suggestedScopes.map((s) => [s.scope, s]));
    assert.equal(byScope.get("task")?.reason, "covers");
    assert.equal(byScope.get("tasks")?.reason, "covers");
    assert.equal(byScope.get("crm")?.held, false);
    assert.equal(byScope.get("vibe:ai")?.reason, "auto-granted");
    assert.deepEqual(advice.unusedScopes, ["disk", "user"]);
    assert.deepEqual(advice.neededNotHeld, [{ method: "GET", route: "/v1/deals", missing: ["crm"], count: 2, lastAt: T0 + 6 }]);
    // crm is not held: narrowing keeps what the key has and needs, and adds nothing.
    assert.ok(advice.narrowTo !== null && !advice.narrowTo.includes("crm") && advice.narrowTo.includes("task") && !advice.narrowTo.includes("disk"));
  });

  test("RogerIQ: a key holding read that reads forms and was refused a form update keeps forms:read when narrowed; forms:write stays a suggestion it does not hold", () => {
    const p = loadProfile("rogeriq");
    const observed = [
      { method: "GET", route: "/v1/projects/:projectId/integrations", missingScope: null, count: 3, firstAt: T0, lastAt: T0 },
      { method: "GET", route: "/v1/projects/:projectId/forms", missingScope: null, count: 2, firstAt: T0, lastAt: T0 },
      { method: "PATCH", route: "/v1/projects/:projectId/forms/:id", missingScope: "forms:write", count: 1, firstAt: T0, lastAt: T0 },
    ];
    const advice = adviseScopes(p, "api", observed, p.issue(["read"]));
    assert.deepEqual(advice.suggestedScopes.map((s) => [s.scope, s.held]), [["forms:write", false], ["integrations:read", true]].sort((a, b) => p.catalog.order(a[0] as string) - p.catalog.order(b[0] as string)));
    assert.deepEqual(new Set(advice.narrowTo), new Set(["integrations:read", "forms:read"]));
  });

  test("a key with no logged traffic gets no narrowing and a low-confidence note", () => {
    const p = loadProfile("rogeriq");
    const advice = adviseScopes(p, "api", [], p.issue(["admin"]));
    assert.deepEqual(advice.suggestedScopes, []);
    assert.equal(advice.narrowTo, null);
    assert.deepEqual(advice.unusedScopes, ["admin"]);
    assert.deepEqual(advice.window, { from: null, to: null, requests: 0, unmatchedRequests: 0, days: 0 });
    assert.equal(advice.confidence.level, "low");
  });
});
