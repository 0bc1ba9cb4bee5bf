/**
 * Route matching through Profile.match on small profiles: precedence (static, then :param,
 * then a trailing *), HEAD falling back to GET, query strings and trailing slashes, captured
 * parameters, and bad route tables reported as profile problems.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Profile, ProfileError, type RouteSpec, compileProfileData } from "../../src/index.ts";

function profileData(routes: RouteSpec[]) {
  return {
    id: "router-test",
    title: "Router test",
    description: "Routes only; no route needs a scope.",
    keyTypes: [{ id: "api", prefix: "rt_", label: "API key" }],
    groups: [{ id: "g", label: "G", resources: [{ id: "thing", description: "A thing" }] }],
    routes,
    errors: { insufficientScope: { default: "INSUFFICIENT_SCOPE" }, keyTypeNotAllowed: { default: "KEY_TYPE_NOT_ALLOWED" } },
  };
}

/** A profile whose routes are given as "METHOD /path"; each route's description is that line. */
function profileWith(...lines: string[]): Profile {
  return compileProfileData(profileData(lines.map((line) => route(line))), "router-test");
}

function route(line: string): RouteSpec {
  const [method, path] = line.split(" ") as [string, string];
  return { method, path, description: line, requires: null };
}

/** The route (by its description) a request matches, with its parameters; undefined when none. */
function hit(p: Profile, method: string, path: string): { route: string; params: Record<string, string> } | undefined {
  const m = p.match(method, path);
  return m && { route: m.value.description, params: m.params };
}

function problemsOf(routes: RouteSpec[]): string[] {
  try {
    compileProfileData(profileData(routes), "router-test");
  } catch (e) {
    assert.ok(e instanceof ProfileError);
    return e.problems;
  }
  assert.fail("the profile compiled");
}

describe("router precedence", () => {
  const p = profileWith("GET /v1/items/:id", "GET /v1/items/special", "GET /v1/items/*", "GET /v1/items/:id/parts", "GET /v1/items/special/parts/:part");

  test("a static segment beats :param", () => {
    assert.deepEqual(hit(p, "GET", "/v1/items/special"), { route: "GET /v1/items/special", params: {} });
    assert.deepEqual(hit(p, "GET", "/v1/items/42"), { route: "GET /v1/items/:id", params: { id: "42" } });
    assert.deepEqual(hit(p, "GET", "/v1/items/specials"), { route: "GET /v1/items/:id", params: { id: "specials" } });
  });

  test(":param beats a trailing *", () => {
    assert.deepEqual(hit(p, "GET", "/v1/items/42/parts"), { route: "GET /v1/items/:id/parts", params: { id: "42" } });
    assert.deepEqual(hit(p, "GET", "/v1/items/42/other"), { route: "GET /v1/items/*", params: { "*": "42/other" } });
  });

  test("a static branch that leads nowhere falls back to :param, then to *", () => {
    // "special" is static, but only /v1/items/special/parts/:part continues below it.
    assert.deepEqual(hit(p, "GET", "/v1/items/special/parts"), { route: "GET /v1/items/:id/parts", params: { id: "special" } });
    assert.deepEqual(hit(p, "GET", "/v1/items/special/parts/7"), { route: "GET /v1/items/special/parts/:part", params: { part: "7" } });
    // No parameter of an abandoned branch leaks into the match.
    assert.deepEqual(hit(p, "GET", "/v1/items/special/parts/7/x"), { route: "GET /v1/items/*", params: { "*": "special/parts/7/x" } });
    assert.deepEqual(hit(p, "GET", "/v1/items/9/parts/x"), { route: "GET /v1/items/*", params: { "*": "9/parts/x" } });
  });

  test("* matches the rest of the path, including nothing", () => {
    const q = profileWith("GET /files/*", "GET /files/readme");
    assert.deepEqual(hit(q, "GET", "/files/a/b/c.txt"), { route: "GET /files/*", params: { "*": "a/b/c.txt" } });
    assert.deepEqual(hit(q, "GET", "/files/x"), { route: "GET /files/*", params: { "*": "x" } });
    assert.deepEqual(hit(q, "GET", "/files"), { route: "GET /files/*", params: { "*": "" } });
    assert.deepEqual(hit(q, "GET", "/files/"), { route: "GET /files/*", params: { "*": "" } });
    assert.deepEqual(hit(q, "GET", "/files/readme"), { route: "GET /files/readme", params: {} });
    assert.deepEqual(hit(q, "GET", "/files/readme/more"), { route: "GET /files/*", params: { "*": "readme/more" } });
    assert.equal(hit(q, "GET", "/filesx"), undefined);
    assert.equal(hit(q, "GET", "/"), undefined);
  });

  test("a * at the root matches every path", () => {
    const q = profileWith("GET /*", "GET /health");
    assert.deepEqual(hit(q, "GET", "/"), { route: "GET /*", params: { "*": "" } });
    assert.deepEqual(hit(q, "GET", "/a/b"), { route: "GET /*", params: { "*": "a/b" } });
    assert.deepEqual(hit(q, "GET", "/health"), { route: "GET /health", params: {} });
  });
});

describe("router methods", () => {
  const p = profileWith("GET /a", "HEAD /b", "GET /b", "POST /a", "GET /c/*", "GET /d/:id");

  test("HEAD falls back to GET", () => {
    assert.deepEqual(hit(p, "HEAD", "/a"), { route: "GET /a", params: {} });
    assert.deepEqual(hit(p, "HEAD", "/c/x/y"), { route: "GET /c/*", params: { "*": "x/y" } });
    assert.deepEqual(hit(p, "HEAD", "/d/5"), { route: "GET /d/:id", params: { id: "5" } });
  });

  test("an explicit HEAD route beats the GET fallback", () => {
    assert.deepEqual(hit(p, "HEAD", "/b"), { route: "HEAD /b", params: {} });
    assert.deepEqual(hit(p, "GET", "/b"), { route: "GET /b", params: {} });
  });

  test("methods do not fall back otherwise", () => {
    assert.equal(hit(p, "PUT", "/a"), undefined);
    assert.equal(hit(p, "DELETE", "/d/5"), undefined);
    assert.equal(hit(p, "POST", "/b"), undefined);
    assert.equal(hit(p, "OPTIONS", "/a"), undefined);
    assert.deepEqual(hit(p, "POST", "/a"), { route: "POST /a", params: {} });
  });

  test("methods are case-insensitive, in the table and in requests", () => {
    const q = profileWith("get /lower");
    assert.equal(q.routes[0]!.method, "GET");
    assert.deepEqual(hit(q, "GET", "/lower"), { route: "get /lower", params: {} });
    assert.deepEqual(hit(q, "get", "/lower"), { route: "get /lower", params: {} });
    assert.deepEqual(hit(q, "head", "/lower"), { route: "get /lower", params: {} });
  });

  test("HEAD looks only at GET routes when it falls back, whatever other methods match", () => {
    const q = profileWith("GET /x/*", "POST /x/:id");
    assert.deepEqual(hit(q, "HEAD", "/x/1"), { route: "GET /x/*", params: { "*": "1" } });
  });
});

describe("router paths", () => {
  const p = profileWith("GET /v1/orgs/:orgId/projects/:projectId", "GET /v1/orgs", "GET /v1/tags/", "GET /");

  test("parameters are captured by name", () => {
    assert.deepEqual(hit(p, "GET", "/v1/orgs/acme/projects/p-1"), { route: "GET /v1/orgs/:orgId/projects/:projectId", params: { orgId: "acme", projectId: "p-1" } });
  });

  test("parameters are taken as sent, not decoded", () => {
    assert.deepEqual(hit(p, "GET", "/v1/orgs/a%2Fb/projects/%20"), { route: "GET /v1/orgs/:orgId/projects/:projectId", params: { orgId: "a%2Fb", projectId: "%20" } });
    // An encoded spelling of a static segment is not that segment.
    assert.equal(hit(p, "GET", "/v1/%6Frgs"), undefined);
  });

  test("query strings and fragments are ignored", () => {
    assert.deepEqual(hit(p, "GET", "/v1/orgs?limit=5"), { route: "GET /v1/orgs", params: {} });
    assert.deepEqual(hit(p, "GET", "/v1/orgs/acme/projects/p1?x=/y/z"), { route: "GET /v1/orgs/:orgId/projects/:projectId", params: { orgId: "acme", projectId: "p1" } });
    assert.deepEqual(hit(p, "GET", "/v1/orgs#top"), { route: "GET /v1/orgs", params: {} });
    assert.deepEqual(hit(p, "GET", "/v1/orgs/?"), { route: "GET /v1/orgs", params: {} });
    assert.deepEqual(hit(p, "GET", "/?a=1"), { route: "GET /", params: {} });
  });

  test("a trailing slash makes no difference, in the request or in the table", () => {
    assert.deepEqual(hit(p, "GET", "/v1/orgs/"), { route: "GET /v1/orgs", params: {} });
    assert.deepEqual(hit(p, "GET", "/v1/orgs/acme/projects/p1/"), { route: "GET /v1/orgs/:orgId/projects/:projectId", params: { orgId: "acme", projectId: "p1" } });
    assert.deepEqual(hit(p, "GET", "/v1/tags"), { route: "GET /v1/tags/", params: {} });
    assert.deepEqual(hit(p, "GET", "/v1/tags/"), { route: "GET /v1/tags/", params: {} });
  });

  test("the root route matches only the root", () => {
    assert.deepEqual(hit(p, "GET", "/"), { route: "GET /", params: {} });
    assert.equal(hit(p, "GET", "/v2"), undefined);
  });

  test("unmatched requests give undefined", () => {
    assert.equal(hit(p, "GET", "/v1/orgs/acme"), undefined, "fewer segments than the route");
    assert.equal(hit(p, "GET", "/v1/orgs/acme/projects"), undefined, "one segment short");
    assert.equal(hit(p, "GET", "/v1/orgs/acme/projects/p1/extra"), undefined, "more segments than the route, no *");
    assert.equal(hit(p, "GET", "/v1/ORGS"), undefined, "paths are case-sensitive");
    assert.equal(hit(p, "GET", "/nothing/here"), undefined);
    assert.equal(hit(profileWith("GET /only"), "GET", "/"), undefined);
  });

  test("a profile without routes matches nothing", () => {
    assert.equal(hit(compileProfileData(profileData([]), "empty"), "GET", "/"), undefined);
  });
});

describe("bad route tables are profile problems", () => {
  test("the same method and path twice", () => {
    const problems = problemsOf([route("GET /a/:id"), route("GET /a/:id")]);
    assert.ok(problems.some((p) => /GET \/a\/:id.*defined twice/.test(p)), problems.join("\n"));
  });

  test("duplicates after normalisation: method case, trailing slash, a wildcard twice", () => {
    assert.ok(problemsOf([route("GET /a"), route("get /a")]).some((p) => p.includes("defined twice")));
    assert.ok(problemsOf([route("GET /a"), route("GET /a/")]).some((p) => p.includes("defined twice")));
    assert.ok(problemsOf([route("GET /a/*"), route("GET /a/*")]).some((p) => p.includes("defined twice")));
  });

  test("the same path with other methods, or other parameter values, is not a duplicate", () => {
    const p = compileProfileData(profileData([route("GET /a/:id"), route("POST /a/:id"), route("GET /a/:id/b")]), "ok");
    // Besides keygate's management routes, which a profile without a management key type gets.
    assert.equal(p.routes.filter((r) => r.path.startsWith("/a/")).length, 3);
  });

  test("bad patterns", () => {
    const problems = problemsOf([route("GET /a/*/b"), route("GET /b/:"), route("GET /c/:1x"), route("GET /d/:id"), route("GET /d/:other/e"), route("GET /ok")]);
    const expect = [/route GET \/a\/\*\/b: .*"\*" may only be the last segment/, /route GET \/b\/:: .*bad parameter name/, /route GET \/c\/:1x: .*bad parameter name ":1x"/, /route GET \/d\/:other\/e: .*:other conflicts with :id/];
    for (const re of expect) assert.ok(problems.some((p) => re.test(p)), `${re} not in:\n${problems.join("\n")}`);
    assert.equal(problems.length, expect.length, problems.join("\n"));
  });

  test("every route problem is reported at once, with the structural ones caught by the schema", () => {
    const structural = problemsOf([route("GET relative/path"), route("G3T /x")]);
    assert.ok(structural.some((p) => p.startsWith("/routes/0/path")), structural.join("\n"));
    assert.ok(structural.some((p) => p.startsWith("/routes/1/method")), structural.join("\n"));
  });
});
