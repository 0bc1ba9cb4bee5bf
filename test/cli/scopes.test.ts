import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { keygate, keygateJson } from "./run.ts";

const DECISION_KEYS = ["allowed", "code", "coveredBy", "missing"];

describe("keygate scopes check", () => {
  it("prints exactly {allowed, code, missing, coveredBy} and exits 0 when allowed", () => {
    const r = keygateJson("scopes", "check", "--profile", "rogeriq", "--key-type", "api", "--granted", "kb:write,conversations:read", "--method", "PATCH", "--path", "/v1/projects/p1/kb/articles/a1");
    assert.equal(r.status, 0);
    assert.deepEqual(Object.keys(r.json).sort(), DECISION_KEYS);
    assert.deepEqual(r.json, { allowed: true, code: null, missing: [], coveredBy: ["kb:write"] });
  });

  it("exits 1 with the profile's code, the missing requirement and what would cover it when denied", () => {
    const r = keygateJson("scopes", "check", "--profile", "rogeriq", "--key-type", "api", "--granted", "read", "--method", "PATCH", "--path", "/v1/projects/p1/kb/articles/a1");
    assert.equal(r.status, 1);
    assert.deepEqual(r.json, { allowed: false, code: "INSUFFICIENT_SCOPE", missing: ["kb:write"], coveredBy: ["write", "admin", "kb:write", "kb:admin"] });
  });

  it("checks --required scopes without a route", () => {
    const allowed = keygateJson("scopes", "check", "--profile", "atender", "--key-type", "api", "--granted", "basic", "--required", "tags:read,contacts:read");
    assert.equal(allowed.status, 0);
    assert.deepEqual(allowed.json.coveredBy, ["contacts:read", "tags:read"]);
    const denied = keygateJson("scopes", "check", "--profile", "atender", "--key-type", "api", "--granted", "basic", "--required", "tags:write");
    assert.equal(denied.status, 1);
    assert.deepEqual(denied.json.missing, ["tags:write"]);
  });

  it("seed 000: a Bitrix24 scope added after issue is shown but answers BITRIX_ACCESS_DENIED until reissue (--issued)", () => {
    const r = keygateJson("scopes", "check", "--key-type", "api", "--issued", "crm", "--granted", "crm,task,tasks", "--method", "GET", "--path", "/v1/tasks");
    assert.equal(r.status, 1);
    assert.equal(r.json.code, "BITRIX_ACCESS_DENIED");
    const reissued = keygateJson("scopes", "check", "--key-type", "api", "--granted", "crm,task,tasks", "--method", "GET", "--path", "/v1/tasks");
    assert.equal(reissued.status, 0);
  });

  it("seed 001: a management key on an entity endpoint is denied MANAGEMENT_KEY_NO_ENTITY_ACCESS", () => {
    const r = keygateJson("scopes", "check", "--key-type", "management", "--granted", "vibe:mgmt:keys", "--method", "GET", "--path", "/v1/deals");
    assert.equal(r.status, 1);
    assert.equal(r.json.code, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
  });

  it("exits 2 naming every bad token on stderr and in JSON as errors", () => {
    const r = keygateJson("scopes", "check", "--key-type", "api", "--granted", "crm, CRN ,vibe:security,crm:read,vibe:mgmt:keys", "--required", "crm");
    assert.equal(r.status, 2);
    const errors = r.json.errors as { scope: string; code: string }[];
    assert.deepEqual(
      errors.map((e) => [e.scope, e.code]),
      [
        ["CRN", "UNKNOWN_SCOPE"],
        ["vibe:security", "RESERVED_SCOPE"],
        ["crm:read", "SCOPE_TAKES_NO_ACTION"],
        ["vibe:mgmt:keys", "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"],
      ],
    );
    for (const token of ["CRN", "vibe:security", "crm:read", "vibe:mgmt:keys"]) assert.match(r.stderr, new RegExp(`${token}: `));
    assert.match(r.stderr, /did you mean "crm"/);
  });

  it("exits 2 when a required scope is not a scope (coarse, bundle or unknown)", () => {
    const r = keygateJson("scopes", "check", "--profile", "rogeriq", "--key-type", "api", "--granted", "admin", "--required", "write,kb:delete");
    assert.equal(r.status, 2);
    assert.deepEqual((r.json.errors as { code: string }[]).map((e) => e.code), ["NOT_A_SCOPE", "UNKNOWN_ACTION"]);
  });

  it("exits 2 on usage errors: an unknown key type, profile, or route, and --required mixed with --path", () => {
    const cases: string[][] = [
      ["--key-type", "robot", "--granted", "crm", "--required", "crm"],
      ["--profile", "nosuch", "--key-type", "api", "--granted", "crm", "--required", "crm"],
      ["--key-type", "api", "--granted", "crm", "--method", "GET", "--path", "/v1/nowhere"],
      ["--key-type", "api", "--granted", "crm", "--required", "crm", "--method", "GET", "--path", "/v1/deals"],
      ["--key-type", "api", "--granted", "crm", "--method", "GET"],
      ["--key-type", "api", "--granted", "crm"],
      ["--key-type", "api", "--granted", "", "--required", "crm"],
    ];
    for (const args of cases) {
      const r = keygateJson("scopes", "check", ...args);
      assert.equal(r.status, 2, args.join(" "));
      assert.ok((r.json.errors as unknown[]).length > 0, args.join(" "));
      assert.notEqual(r.stderr, "", args.join(" "));
    }
    const unknownOption = keygate("scopes", "check", "--key-type", "api", "--granted", "crm", "--required", "crm", "--bogus");
    assert.equal(unknownOption.status, 2);
    assert.match(unknownOption.stderr, /unknown option '--bogus'/);
  });

  it("says in words what it decided without --json", () => {
    const r = keygate("scopes", "check", "--key-type", "api", "--granted", "crm", "--method", "POST", "--path", "/v1/notifications");
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^denied: SCOPE_DENIED \(HTTP 403\)/);
    assert.match(r.stdout, /missing: +im/);
  });
});

describe("keygate scopes list", () => {
  for (const profile of ["vibecode", "atender", "rogeriq"]) {
    it(`lists the ${profile} catalog as JSON, grouped, with descriptions and flags`, () => {
      const r = keygateJson("scopes", "list", "--profile", profile);
      assert.equal(r.status, 0);
      const groups = r.json.groups as { id: string; scopes: { scope: string; description: string }[] }[];
      assert.ok(groups.length > 0);
      for (const g of groups) for (const s of g.scopes) assert.ok(s.description.length > 0, s.scope);
    });
  }

  it("marks auto-granted, reserved and locked-at-issue scopes in the VibeCode catalog", () => {
    const r = keygateJson("scopes", "list");
    const groups = r.json.groups as { id: string; lockedAtIssue: boolean; scopes: { scope: string; autoGrant: string[]; reserved: boolean; keyTypes: string[] }[] }[];
    const scope = (id: string) => groups.flatMap((g) => g.scopes).find((s) => s.scope === id)!;
    assert.equal(groups.find((g) => g.id === "bitrix24")!.lockedAtIssue, true);
    assert.deepEqual(scope("vibe:ai").autoGrant, ["api"]);
    assert.equal(scope("vibe:security").reserved, true);
    assert.deepEqual(scope("vibe:mgmt:keys").keyTypes, ["management"]);
  });

  it("prints the catalog for people, with recipes", () => {
    const r = keygate("scopes", "list", "--profile", "rogeriq");
    assert.equal(r.status, 0);
    assert.match(r.stdout, /kb:admin +Knowledge Base.*implies kb:read, kb:write/);
    assert.match(r.stdout, /Coarse scopes:/);
    assert.match(r.stdout, /kb:write, conversations:read/);
  });
});

describe("keygate scopes explain", () => {
  it("expands coarse scopes resource by resource and says which token grants what", () => {
    const r = keygateJson("scopes", "explain", "--profile", "rogeriq", "--granted", "read,kb:admin");
    assert.equal(r.status, 0);
    const kb = (r.json.resources as { resource: string; actions: string[]; via: string[] }[]).find((x) => x.resource === "kb")!;
    assert.deepEqual(kb.actions, ["read", "write", "admin"]);
    assert.deepEqual(kb.via, ["read", "kb:admin"]);
  });

  it("expands bundles and adds auto-granted scopes", () => {
    const atender = keygateJson("scopes", "explain", "--profile", "atender", "--granted", "analytics_only");
    assert.deepEqual(atender.json.scopes, ["conversations:read", "analytics:read"]);
    const vibe = keygateJson("scopes", "explain", "--granted", "crm");
    const infra = (vibe.json.resources as { resource: string; via: string[] }[]).find((x) => x.resource === "vibe:infra")!;
    assert.deepEqual(infra.via, ["(auto)"]);
  });

  it("exits 2 on invalid scopes", () => {
    const r = keygateJson("scopes", "explain", "--granted", "crm,nope");
    assert.equal(r.status, 2);
  });
});

describe("keygate --help", () => {
  for (const args of [[], ["scopes"], ["scopes", "list"], ["scopes", "check"], ["scopes", "explain"], ["serve"]]) {
    it(`keygate ${[...args, "--help"].join(" ")} prints usage and exits 0`, () => {
      const r = keygate(...args, "--help");
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: keygate/);
    });
  }
});

describe("keygate with a user's profile file", () => {
  const example = "test/fixtures/profiles/example.json";

  it("lists and checks against the documented example profile", () => {
    const list = keygateJson("scopes", "list", "--profile", example);
    assert.equal(list.status, 0);
    assert.equal((list.json.profile as { id: string }).id, "acme");
    const denied = keygateJson("scopes", "check", "--profile", example, "--key-type", "publishable", "--granted", "products:read", "--method", "GET", "--path", "/v1/orders");
    assert.deepEqual(denied.json, { allowed: false, code: "SECRET_KEY_REQUIRED", missing: [], coveredBy: [] });
    assert.equal(denied.status, 1);
  });

  it("exits 2 naming every problem of an invalid profile file", () => {
    const r = keygateJson("scopes", "list", "--profile", "test/fixtures/does-not-exist.json");
    assert.equal(r.status, 2);
    assert.equal(r.json.code, "INVALID_PROFILE");
    assert.match(r.stderr, /cannot read the file/);
  });
});
