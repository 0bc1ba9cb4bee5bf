/**
 * The user profile file format: the documented example (test/fixtures/profiles/example.json,
 * the fictional Acme Shop API) loads and behaves; structural errors come with JSON paths;
 * semantic errors are all reported at once; file and name problems are clear.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { BUILTIN_PROFILES, type Profile, ProfileError, type ProfileSpec, compileProfileData, loadProfile } from "../../src/index.ts";
import { apiRoutes } from "./_helpers.ts";

const EXAMPLE = join(import.meta.dirname, "../fixtures/profiles/example.json");

/** A fresh copy of the example document, to change. */
function exampleData(): ProfileSpec {
  return JSON.parse(readFileSync(EXAMPLE, "utf8")) as ProfileSpec;
}

/** The ProfileError a call throws. */
function profileError(fn: () => unknown): ProfileError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ProfileError, `expected a ProfileError, got ${String(e)}`);
    return e;
  }
  assert.fail("no ProfileError was thrown");
}

function problemsOf(data: unknown): string[] {
  return profileError(() => compileProfileData(data, "acme-test.json")).problems;
}

function assertHas(problems: string[], pattern: RegExp | string) {
  const found = problems.some((p) => (typeof pattern === "string" ? p === pattern : pattern.test(p)));
  assert.ok(found, `${pattern} not among:\n  ${problems.join("\n  ")}`);
}

/** A property the format does not have, set on any object of the document. */
function setUnknown(target: object, key: string, value: unknown) {
  (target as Record<string, unknown>)[key] = value;
}

describe("the example profile (test/fixtures/profiles/example.json)", () => {
  const p: Profile = loadProfile(EXAMPLE);
  const key = (keyType: string, scopes: string) => {
    const list = p.normalize(keyType, scopes);
    assert.deepEqual(list.errors, [], scopes);
    return p.compileKey(keyType, p.issue(list.scopes));
  };
  const decide = (keyType: string, scopes: string, method: string, path: string) => {
    const m = p.match(method, path);
    assert.ok(m, `${method} ${path} matches no route`);
    return p.checkRoute(key(keyType, scopes), m.value);
  };
  const allowed = (keyType: string, scopes: string, method: string, path: string) => decide(keyType, scopes, method, path).allowed;

  test("loads from its path", () => {
    assert.equal(p.id, "acme");
    assert.equal(p.spec.title, "Acme Shop");
    // issue 12: naming no management key type, it gets keygate's own, with its two scopes.
    assert.deepEqual(p.catalog.keyTypes, ["secret", "publishable", "management"]);
    assert.deepEqual(
      p.catalog.atoms.map((a) => a.scope),
      ["products:read", "products:write", "products:admin", "orders:read", "orders:write", "orders:admin", "customers:read", "customers:write", "customers:admin", "events", "billing", "keygate:keys", "keygate:portals"],
    );
    assert.deepEqual(
      p.catalog.coarse.map((c) => c.scope),
      ["read", "write", "admin"],
    );
    assert.deepEqual(
      p.catalog.bundles.map((b) => b.scope),
      ["fulfilment"],
    );
    assert.equal(apiRoutes(p).length, 15);
    // The same document compiles the same way when given as data.
    assert.deepEqual(compileProfileData(exampleData(), "example").routes.map((r) => `${r.method} ${r.path}`), p.routes.map((r) => `${r.method} ${r.path}`));
  });

  test("normalises requested scopes: case, aliases, auto-granted scopes, bundles", () => {
    const list = p.normalize("secret", " Orders:Write , clients:read");
    assert.deepEqual(list.errors, []);
    assert.deepEqual(list.scopes, ["orders:write", "customers:read", "events"]);
    assert.deepEqual(list.sources.get("customers:read"), ["clients:read"]);
    assert.deepEqual(list.sources.get("events"), ["(auto)"]);
    assert.deepEqual(p.normalize("secret", "fulfilment").scopes, ["products:read", "orders:write", "customers:read", "events"]);
    assert.deepEqual(p.normalize("publishable", "read").scopes, ["read"]);
  });

  test("rejects what a key type may not request", () => {
    const codes = (keyType: string, scopes: string) => p.normalize(keyType, scopes).errors.map((e) => [e.scope, e.code]);
    assert.deepEqual(codes("secret", "billing"), [["billing", "RESERVED_SCOPE"]]);
    assert.deepEqual(codes("publishable", "orders:read"), [["orders:read", "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"]]);
    assert.deepEqual(codes("publishable", "fulfilment"), [["fulfilment", "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"]]);
    assert.deepEqual(codes("publishable", "events"), [["events", "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"]]);
    assert.deepEqual(codes("secret", "orders"), [["orders", "SCOPE_ACTION_REQUIRED"]]);
    assert.deepEqual(codes("secret", "orders:delete"), [["orders:delete", "UNKNOWN_ACTION"]]);
    assert.deepEqual(codes("secret", "events:read"), [["events:read", "SCOPE_TAKES_NO_ACTION"]]);
  });

  test("method defaults: GET and HEAD need read, other methods write; write implies read", () => {
    assert.equal(allowed("secret", "orders:read", "GET", "/v1/orders/42"), true);
    assert.equal(allowed("secret", "orders:read", "HEAD", "/v1/orders"), true);
    assert.equal(allowed("secret", "orders:write", "GET", "/v1/orders"), true);
    assert.equal(allowed("secret", "orders:write", "POST", "/v1/orders/42/refund"), true);
    assert.equal(allowed("secret", "customers:write", "PATCH", "/v1/customers/7"), true);
    assert.deepEqual(decide("secret", "orders:read", "POST", "/v1/orders"), {
      allowed: false,
      code: "INSUFFICIENT_SCOPE",
      reason: "scope",
      missing: ["orders:write"],
      coveredBy: ["write", "admin", "orders:write", "orders:admin", "fulfilment"],
    });
    assert.equal(allowed("secret", "orders:admin", "GET", "/v1/customers"), false);
  });

  test("the override: deleting a customer needs customers:admin", () => {
    assert.deepEqual(decide("secret", "customers:write", "DELETE", "/v1/customers/7"), {
      allowed: false,
      code: "INSUFFICIENT_SCOPE",
      reason: "scope",
      missing: ["customers:admin"],
      coveredBy: ["admin", "customers:admin"],
    });
    assert.equal(allowed("secret", "write", "DELETE", "/v1/customers/7"), false);
    assert.equal(allowed("secret", "customers:admin", "DELETE", "/v1/customers/7"), true);
    assert.equal(allowed("secret", "admin", "DELETE", "/v1/customers/7"), true);
  });

  test("coarse scopes reach the shop, not the platform", () => {
    for (const path of ["/v1/products", "/v1/orders/1", "/v1/customers"]) assert.equal(allowed("secret", "read", "GET", path), true, path);
    assert.equal(allowed("secret", "read", "POST", "/v1/orders"), false);
    assert.equal(allowed("secret", "write", "POST", "/v1/orders"), true);
    assert.equal(allowed("secret", "admin", "GET", "/v1/billing/invoices"), false);
    // billing is reserved: nothing a user may request covers it.
    assert.deepEqual(decide("secret", "admin", "GET", "/v1/billing/invoices"), { allowed: false, code: "INSUFFICIENT_SCOPE", reason: "scope", missing: ["billing"], coveredBy: [] });
  });

  test("auto-granted events: every secret key reads the event log", () => {
    assert.equal(allowed("secret", "products:read", "GET", "/v1/events"), true);
  });

  test("the bundle grants its members", () => {
    assert.equal(allowed("secret", "fulfilment", "POST", "/v1/orders/1/refund"), true);
    assert.equal(allowed("secret", "fulfilment", "GET", "/v1/customers/1"), true);
    assert.equal(allowed("secret", "fulfilment", "PATCH", "/v1/customers/1"), false);
    assert.equal(allowed("secret", "fulfilment", "PATCH", "/v1/products/1"), false);
  });

  test("publishable keys read products and get their own error code elsewhere", () => {
    assert.equal(allowed("publishable", "read", "GET", "/v1/products/9"), true);
    assert.equal(allowed("publishable", "products:admin", "GET", "/v1/products"), true);
    const denied = decide("publishable", "products:admin", "POST", "/v1/products");
    assert.deepEqual(denied, { allowed: false, code: "SECRET_KEY_REQUIRED", reason: "key_type", missing: [], coveredBy: [] });
    assert.deepEqual(p.errorCodes.SECRET_KEY_REQUIRED, { status: 403, message: "This endpoint needs a secret key (acme_sk_); publishable keys only read products." });
    assert.equal(decide("publishable", "read", "GET", "/v1/orders").code, "SECRET_KEY_REQUIRED");
    assert.equal(decide("secret", "read", "GET", "/v1/events").allowed, true);
  });

  test("no scope needed for /v1/me; unknown routes match nothing", () => {
    assert.equal(allowed("publishable", "products:read", "GET", "/v1/me"), true);
    assert.equal(p.match("GET", "/v1/shipments"), undefined);
    assert.equal(p.match("PUT", "/v1/orders/1"), undefined);
  });
});

describe("structural errors name their JSON path", () => {
  test("missing fields, wrong types and unknown properties, all at once", () => {
    const data = exampleData();
    delete (data as Partial<ProfileSpec>).title;
    (data.keyTypes[0] as unknown as Record<string, unknown>).prefix = 7;
    setUnknown(data.groups[0]!.resources[0]!, "colour", "red");
    setUnknown(data, "version", 2);
    (data.routes[1] as unknown as Record<string, unknown>).requires = 5;
    (data.routes[2] as unknown as Record<string, unknown>).class = "delete";
    data.id = "Acme Shop";
    const problems = problemsOf(data);
    assertHas(problems, "/title: Expected required property");
    assertHas(problems, "/keyTypes/0/prefix: Expected string");
    assertHas(problems, "/groups/0/resources/0/colour: Unexpected property");
    assertHas(problems, "/version: Unexpected property");
    assertHas(problems, /^\/routes\/1\/requires: /);
    assertHas(problems, /^\/routes\/2\/class: /);
    assertHas(problems, /^\/id: Expected string to match /);
    for (const problem of problems) assert.match(problem, /^\/\S*: /, "every structural problem starts with its JSON path");
  });

  test("the message names the source", () => {
    const data = exampleData();
    delete (data as Partial<ProfileSpec>).routes;
    const e = profileError(() => compileProfileData(data, "acme-test.json"));
    assert.match(e.message, /acme-test\.json/);
    assert.match(e.message, /\/routes: Expected required property/);
  });

  test("a document that is not an object", () => {
    for (const doc of [null, 42, "acme", []]) {
      const problems = problemsOf(doc);
      assert.ok(problems.length > 0);
      for (const problem of problems) assert.match(problem, /^\/\S*: /);
    }
  });

  test("empty key type and group lists", () => {
    const data = exampleData();
    data.keyTypes = [];
    data.groups = [];
    const problems = problemsOf(data);
    assertHas(problems, /^\/keyTypes: /);
    assertHas(problems, /^\/groups: /);
  });
});

describe("semantic errors are all reported at once", () => {
  const shop = (d: ProfileSpec) => d.groups.find((g) => g.id === "shop")!;
  const platform = (d: ProfileSpec) => d.groups.find((g) => g.id === "platform")!;
  const cases: { name: string; change: (d: ProfileSpec) => void; expect: RegExp }[] = [
    {
      name: "unknown key type",
      change: (d) => shop(d).resources.push({ id: "gifts", description: "Gift cards", actions: "readWriteAdmin", keyTypes: ["robot"] }),
      expect: /resource gifts: unknown key type "robot"/,
    },
    {
      name: "unknown action graph",
      change: (d) => shop(d).resources.push({ id: "returns", description: "Returns", actions: "readWriteDelete" }),
      expect: /resource returns: unknown action graph "readWriteDelete"/,
    },
    {
      name: "cycle in an action graph",
      change: (d) => shop(d).resources.push({ id: "loops", description: "Loops", actions: { read: [], edit: ["review"], review: ["approve"], approve: ["edit"] } }),
      expect: /resource loops: actions imply each other in a cycle \(edit -> review -> approve -> edit\)/,
    },
    {
      name: "duplicate resource",
      change: (d) => platform(d).resources.push({ id: "orders", description: "Orders again" }),
      expect: /resource orders: defined twice/,
    },
    {
      name: "route requiring an unknown scope",
      change: (d) => d.routes.push({ method: "GET", path: "/v1/shipments", requires: "shipments:read", keyTypes: ["secret"] }),
      expect: /route GET \/v1\/shipments: .*"shipments:read" is not a scope/,
    },
    {
      name: "route requiring a coarse scope",
      change: (d) => d.routes.push({ method: "POST", path: "/v1/reindex", requires: "admin", keyTypes: ["secret"] }),
      expect: /route POST \/v1\/reindex: .*"admin".*coarse/,
    },
    {
      name: "route requiring a scope its key types can never hold",
      change: (d) => d.routes.push({ method: "GET", path: "/v1/orders/export", requires: "orders:read" }),
      expect: /route GET \/v1\/orders\/export: publishable keys can never hold orders:read/,
    },
    {
      name: "unknown error code",
      change: (d) => d.routes.push({ method: "GET", path: "/v1/stats", requires: "orders:read", keyTypes: ["secret"], keyTypeError: { publishable: "NO_SUCH_CODE" } }),
      expect: /route GET \/v1\/stats: unknown error code "NO_SUCH_CODE"/,
    },
    {
      name: "bundle with an unknown member",
      change: (d) => d.bundles!.push({ id: "shipping", description: "Shipping", scopes: ["orders:write", "shipments:write"] }),
      expect: /bundle shipping: "shipments:write" is not a scope/,
    },
    {
      name: "reserved scope auto-granted",
      change: (d) => {
        platform(d).resources.find((r) => r.id === "billing")!.autoGrant = ["secret"];
      },
      expect: /resource billing: a reserved scope cannot be auto-granted/,
    },
    {
      name: "group locked at issue and reached by coarse scopes",
      change: (d) => {
        shop(d).lockedAtIssue = true;
      },
      expect: /group shop: a group locked at issue cannot be reached by coarse scopes/,
    },
    {
      name: "route with a resource but no method default",
      change: (d) => d.routes.push({ method: "OPTIONS", path: "/v1/products", resource: "products" }),
      expect: /route OPTIONS \/v1\/products: methodDefaults has no action for OPTIONS/,
    },
    {
      name: "route with an unknown resource",
      change: (d) => d.routes.push({ method: "GET", path: "/v1/coupons", resource: "coupons", keyTypes: ["secret"] }),
      expect: /route GET \/v1\/coupons: unknown resource "coupons"/,
    },
    {
      name: "route naming an unknown key type",
      change: (d) => d.routes.push({ method: "GET", path: "/v1/robots", requires: null, keyTypes: ["robot"] }),
      expect: /route GET \/v1\/robots: unknown key type "robot"/,
    },
    {
      name: "two key types with one prefix",
      change: (d) => d.keyTypes.push({ id: "restricted", prefix: "acme_sk_", label: "Restricted key" }),
      expect: /key type restricted: prefix "acme_sk_" is used twice/,
    },
  ];

  test("the unchanged example has no problems", () => {
    assert.doesNotThrow(() => compileProfileData(exampleData(), "example"));
  });

  for (const c of cases) {
    test(`${c.name}, on its own`, () => {
      const data = exampleData();
      c.change(data);
      assertHas(problemsOf(data), c.expect);
    });
  }

  test("every one of them in one document, in one ProfileError", () => {
    const data = exampleData();
    for (const c of cases) c.change(data);
    const e = profileError(() => compileProfileData(data, "broken.json"));
    for (const c of cases) assertHas(e.problems, c.expect);
    assert.ok(e.problems.length >= cases.length);
    // Semantic problems, like structural ones, name the source the profile came from.
    assert.match(e.message, /profile broken\.json is invalid/);
    assert.equal(new Set(e.problems).size, e.problems.length, "each problem is listed once");
    for (const problem of e.problems) assert.ok(e.message.includes(problem), "the message lists every problem");
  });
});

describe("loading profile files and names", () => {
  const dir = mkdtempSync(join(tmpdir(), "keygate-profile-format-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a missing file", () => {
    const path = join(dir, "missing.json");
    const e = profileError(() => loadProfile(path));
    assert.equal(e.problems.length, 1);
    assert.match(e.problems[0]!, /^cannot read the file: .*(ENOENT|no such file)/);
    assert.match(e.message, /missing\.json/);
  });

  test("a directory instead of a file", () => {
    const e = profileError(() => loadProfile(`${dir}/`));
    assert.match(e.problems[0]!, /^cannot read the file/);
  });

  test("invalid JSON", () => {
    const path = join(dir, "broken.json");
    writeFileSync(path, '{ "id": "acme", ');
    const e = profileError(() => loadProfile(path));
    assert.equal(e.problems.length, 1);
    assert.match(e.problems[0]!, /^not valid JSON: /);
    assert.match(e.message, /broken\.json/);
  });

  test("a valid JSON file that is not a profile", () => {
    const path = join(dir, "list.json");
    writeFileSync(path, "[1, 2, 3]");
    const e = profileError(() => loadProfile(path));
    for (const problem of e.problems) assert.match(problem, /^\/\S*: /);
  });

  test("a copy of the example elsewhere loads", () => {
    const path = join(dir, "copy.json");
    writeFileSync(path, readFileSync(EXAMPLE, "utf8"));
    assert.equal(loadProfile(path).id, "acme");
  });

  test("an unknown built-in name lists the built-ins", () => {
    const e = profileError(() => loadProfile("acme"));
    assert.equal(e.problems.length, 1);
    assert.match(e.problems[0]!, /no built-in profile "acme"/);
    for (const name of Object.keys(BUILTIN_PROFILES)) assert.ok(e.problems[0]!.includes(name), `${name} is not listed`);
    assert.deepEqual(Object.keys(BUILTIN_PROFILES).sort(), ["atender", "rogeriq", "vibecode"]);
  });

  test("the built-ins load by name", () => {
    for (const name of Object.keys(BUILTIN_PROFILES)) assert.equal(loadProfile(name).id, name);
  });
});
