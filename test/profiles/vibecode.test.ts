/**
 * VibeCode profile against seeds 000 (scopes), 001 (management keys) and 003 (creating and
 * using keys). Each test names the seed and the sentence it checks.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadProfile } from "../../src/index.ts";
import { type Call, harness, samplePath, split } from "./_helpers.ts";

const p = loadProfile("vibecode");
const { scopes, errorCodes, key, route, assertAllowed, assertDenied, grants } = harness(p);

const PORTAL_KEY_TYPES = ["api", "app"] as const;
const ALL_KEY_TYPES = ["api", "app", "management"] as const;
const MGMT_ALL = "vibe:mgmt:keys,vibe:mgmt:portals,vibe:mgmt:feedback";

/** Seed 000, "Full table of Bitrix24 scopes", verbatim. */
const BITRIX24_TABLE: [string, string][] = [
  ["crm", "Deals, leads, contacts, companies, invoices, and other CRM entities"],
  ["task", "Tasks. To work with tasks, select together with tasks"],
  ["tasks", "Tasks, subtasks, checklists, comments, time tracking. To work with tasks, select together with task"],
  ["im", "Sending and reading chat messages"],
  ["imbot", "Registering and managing chatbots"],
  ["imopenlines", "Open Channels: customer inquiries"],
  ["imconnector", "Connectors for external messengers (Open Channels)"],
  ["call", "Managing calls and telephony"],
  ["telephony", "Integration with external telephony and call management"],
  ["bizproc", "Launching and managing business processes"],
  ["calendar", "Access to employee calendars and events"],
  ["timeman", "Time tracking and attendance control"],
  ["catalog", "Working with the commercial catalog and products"],
  ["sale", "Orders, payments, deliveries — the online store module"],
  ["lists", "Universal lists and list items"],
  ["disk", "Uploading, downloading, and managing files on Drive"],
  ["entity", "Application's custom data storage"],
  ["user", "User profiles — full set of fields"],
  ["user_basic", "User profiles — reduced set of fields"],
  ["user_brief", "User profiles — minimal set of fields"],
  ["user.userfield", "Custom user fields"],
  ["department", "Company structure and departments"],
  ["landing", "Managing sites and landing pages"],
  ["documentgenerator", "Generating documents from templates"],
  ["sign.b2e", "Electronic document signing between an employee and the company"],
  ["sonet_group", "Workgroups and social network projects"],
  ["log", "Activity Stream: posts, comments, reactions"],
  ["vote", "Working with polls and votes"],
  ["ai_admin", "Administering Bitrix24 AI services"],
  ["biconnector", "Business analytics and connecting external BI systems"],
  ["booking", "Managing bookings and schedules"],
  ["delivery", "Configuring and managing delivery services"],
  ["pay_system", "Configuring and managing payment systems"],
  ["main", "Basic portal service methods: settings, events"],
  ["placement", "Embedding interfaces in various places of Bitrix24"],
  ["userfieldtype", "Registering custom user field types"],
  ["humanresources", "Org structure: departments, teams, employees"],
  ["mail", "Mailboxes, emails, senders"],
  ["contact_center", "Contact Center: placing the application tile (Open Channel connectors). Required for the CONTACT_CENTER placement"],
];

/** Seed 000, "VibeCode platform scopes". */
const PLATFORM_TABLE: [string, string][] = [
  ["vibe:infra", "Managing servers, tunnels, and infrastructure"],
  ["vibe:ai", "Access to the platform's AI models"],
  ["vibe:feedback", "Sending feedback via the API"],
  ["vibe:search", "Web search across external sources via the platform"],
  ["vibe:storage", "Platform file storage: uploading and storing objects"],
];

/** Seed 000, "Reserved scopes". */
const RESERVED_TABLE: [string, string][] = [
  ["vibe:security", "Scanning servers and managing security"],
  ["vibe:analytics", "Access to API-call analytics and statistics"],
  ["vibe:airouter", "Managing AI providers, models, and credentials"],
];

const AUTO_GRANTED = ["vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"];
const MANAGEMENT_SCOPES = ["vibe:mgmt:keys", "vibe:mgmt:portals", "vibe:mgmt:feedback"];

/**
 * Seed 000, "How to choose scopes for a task". `calls` are the endpoints the row names or
 * that serve it in this profile, each with the recipe scopes it needs.
 */
const RECIPES: { task: string; scopes: string[]; calls: [Call, string[]][] }[] = [
  {
    task: "Dashboard over deals, contacts, companies",
    scopes: ["crm", "user"],
    calls: [
      ["GET /v1/deals", ["crm"]],
      ["GET /v1/contacts", ["crm"]],
      ["GET /v1/companies", ["crm"]],
      ["POST /v1/deals/aggregate", ["crm"]],
      ["GET /v1/users", ["user"]],
    ],
  },
  {
    task: "Sending messages and notifications to chat (POST /v1/notifications, POST /v1/chats/:dialogId/messages)",
    scopes: ["im"],
    calls: [
      ["POST /v1/notifications", ["im"]],
      ["POST /v1/chats/chat42/messages", ["im"]],
    ],
  },
  { task: "Posting to the Activity Stream (POST /v1/posts)", scopes: ["log"], calls: [["POST /v1/posts", ["log"]]] },
  { task: "Chatbot in the portal messenger", scopes: ["imbot", "im"], calls: [["GET /v1/bots", ["imbot"]], ["POST /v1/chats/chat42/messages", ["im"]]] },
  {
    task: "Managing tasks",
    scopes: ["task", "tasks", "user"],
    calls: [
      ["GET /v1/tasks", ["task", "tasks"]],
      ["POST /v1/tasks", ["task", "tasks"]],
      ["PATCH /v1/tasks/7", ["task", "tasks"]],
      ["GET /v1/users/1", ["user"]],
    ],
  },
  { task: "Workgroups and projects", scopes: ["sonet_group"], calls: [] },
  { task: "Working with files on Drive", scopes: ["disk"], calls: [] },
  { task: "Online store: orders and catalog", scopes: ["sale", "catalog"], calls: [] },
  { task: "Telephony and call log", scopes: ["telephony", "call"], calls: [] },
  { task: "Employee calendar and events", scopes: ["calendar", "user"], calls: [["GET /v1/users", ["user"]]] },
  { task: "Employee profiles and org structure", scopes: ["user", "department"], calls: [["GET /v1/users", ["user"]]] },
  { task: "Application's own data storage", scopes: ["entity"], calls: [] },
  { task: "Business processes and automation", scopes: ["bizproc"], calls: [] },
];

/** Every endpoint seeds 000, 001 and 003 name, as sent, with the route pattern it must hit. */
const SEED_ENDPOINTS: [seed: string, call: Call, pattern: string][] = [
  ["000", "GET /v1/me", "/v1/me"],
  ["000", "POST /v1/notifications", "/v1/notifications"],
  ["000", "POST /v1/chats/chat42/messages", "/v1/chats/:dialogId/messages"],
  ["000", "POST /v1/posts", "/v1/posts"],
  ["000", "POST /v1/feedback", "/v1/feedback"],
  ["001", "GET /v1/guide", "/v1/guide"],
  ["001", "GET /v1/openapi.json", "/v1/openapi.json"],
  ["001", "GET /v1/portals", "/v1/portals"],
  ["001", "GET /v1/keys?portalId=portal-uuid", "/v1/keys"],
  ["001", "POST /v1/keys", "/v1/keys"],
  ["001", "GET /v1/keys/key-uuid", "/v1/keys/:id"],
  ["001", "PATCH /v1/keys/key-uuid", "/v1/keys/:id"],
  ["001", "DELETE /v1/keys/key-uuid", "/v1/keys/:id"],
  ["001", "POST /v1/keys/key-uuid/rotate", "/v1/keys/:id/rotate"],
  ["001", "GET /v1/feedback?status=NEW&category=BUG&portalId=p-1&page=1&limit=50", "/v1/feedback"],
  ["001", "GET /v1/feedback/ticket-1", "/v1/feedback/:id"],
  ["001", "PATCH /v1/feedback/ticket-1", "/v1/feedback/:id"],
  ["001", "POST /v1/feedback/ticket-1/comments", "/v1/feedback/:id/comments"],
  ["001", "GET /v1/deals", "/v1/deals"],
  ["001", "GET /v1/tasks", "/v1/tasks"],
  ["001", "POST /v1/batch", "/v1/batch"],
  ["003", "GET /v1/bots", "/v1/bots"],
  ["003", "POST /v1/placements/bind", "/v1/placements/bind"],
  ["003", "GET /v1/placements/available", "/v1/placements/available"],
  ["003", "GET /v1/oauth/authorize?app_key=vibe_app_x&state=aAbBcCdDeEfFgGhH", "/v1/oauth/authorize"],
  ["003", "POST /v1/oauth/token", "/v1/oauth/token"],
  ["003", "GET /v1/oauth/poll", "/v1/oauth/poll"],
  ["003", "POST /v1/oauth/revoke", "/v1/oauth/revoke"],
  ["003", "GET /v1/infra/servers", "/v1/infra/servers"],
  ["003", "POST /v1/infra/servers", "/v1/infra/servers"],
  ["003", "POST /v1/deals/aggregate", "/v1/deals/aggregate"],
  ["003", "POST /v1/leads", "/v1/leads"],
];

/** The Bitrix24 entity endpoints of the profile, and a sample of each operation. */
const ENTITIES = ["deals", "contacts", "companies", "leads", "tasks", "users"];
const entityCalls = (entity: string) => ({
  reads: [`GET /v1/${entity}`, `GET /v1/${entity}/fields`, `GET /v1/${entity}/7`, `POST /v1/${entity}/aggregate`] as Call[],
  // Bitrix24 has no user.delete: users have no DELETE route (they are deactivated with PATCH).
  writes: [`POST /v1/${entity}`, `PATCH /v1/${entity}/7`, ...(entity === "users" ? [] : [`DELETE /v1/${entity}/7`])] as Call[],
});

const resource = (id: string) => p.catalog.resources.get(id);
const groupOf = (id: string) => p.catalog.groups.find((g) => g.id === id);
const groupIds = (id: string) => (groupOf(id)?.resources ?? []).map((r) => r.id);

describe("VibeCode: the scope catalog (seed 000)", () => {
  it('seed 000: "Scopes are selected in the key creation form in two groups — "Bitrix24" and "VibeCode""', () => {
    assert.equal(groupOf("bitrix24")?.label, "Bitrix24");
    assert.equal(groupOf("platform")?.label, "VibeCode");
    for (const kt of PORTAL_KEY_TYPES) {
      const holdable = new Set([...p.catalog.resources.values()].filter((r) => r.keyTypes.includes(kt)).map((r) => r.group.label));
      assert.deepEqual([...holdable].sort(), ["Bitrix24", "VibeCode"], `${kt} keys choose from the two form groups`);
    }
  });

  it('seed 000: "Full table of Bitrix24 scopes" — every scope exists in the Bitrix24 group with exactly that id and description', () => {
    for (const [id, description] of BITRIX24_TABLE) {
      const r = resource(id);
      assert.ok(r, `Bitrix24 scope ${id} is missing`);
      assert.equal(r.group.id, "bitrix24", `${id} is in the Bitrix24 group`);
      assert.equal(r.description, description, `${id} description`);
      assert.equal(r.flat, true, `${id} is a whole (flat) scope`);
      assert.deepEqual(scopes("api", id).filter((s) => !AUTO_GRANTED.includes(s)), [id], `${id} can be requested as written`);
    }
  });

  it('seed 000: "The complete list of Bitrix24 scopes" — the Bitrix24 group has no scope outside the table', () => {
    assert.deepEqual(
      groupIds("bitrix24").sort(),
      BITRIX24_TABLE.map(([id]) => id).sort(),
    );
  });

  it('seed 000: "VibeCode platform scopes control access to sections of the platform itself" — the five platform scopes exist', () => {
    for (const [id, description] of PLATFORM_TABLE) {
      const r = resource(id);
      assert.ok(r, `platform scope ${id} is missing`);
      assert.equal(r.group.id, "platform");
      assert.equal(r.description, description);
      assert.equal(r.reserved, false, `${id} is selectable`);
    }
    // keygate adds vibe:verify (verify mode, docs/upstreams.md) beside the seed's five.
    const selectable = (groupOf("platform")?.resources ?? []).filter((r) => !r.reserved && r.id !== "vibe:verify").map((r) => r.id);
    assert.deepEqual(selectable.sort(), PLATFORM_TABLE.map(([id]) => id).sort());
  });

  it('seed 000: platform scopes "control access to sections of the platform itself, not to Bitrix24 data"', () => {
    const k = key("api", "vibe:feedback");
    for (const entity of ENTITIES) assertDenied(k, `GET /v1/${entity}`, "SCOPE_DENIED");
    assertAllowed(k, "POST /v1/feedback");
  });

  it('seed 000: "The "VibeCode" tab of the form has three more scopes — vibe:security, vibe:analytics, vibe:airouter" — listed and marked reserved', () => {
    for (const [id, description] of RESERVED_TABLE) {
      const r = resource(id);
      assert.ok(r, `reserved scope ${id} is listed`);
      assert.equal(r.group.label, "VibeCode");
      assert.equal(r.description, description);
      assert.equal(r.reserved, true);
    }
    const reserved = [...p.catalog.resources.values()].filter((r) => r.reserved).map((r) => r.id);
    assert.deepEqual(reserved.sort(), RESERVED_TABLE.map(([id]) => id).sort());
  });

  it('seed 000: reserved scopes "cannot be changed" — requesting one is RESERVED_SCOPE for every key type', () => {
    for (const [id] of RESERVED_TABLE) {
      for (const kt of PORTAL_KEY_TYPES) {
        const result = p.normalize(kt, `crm,${id}`);
        assert.deepEqual(result.errors.map((e) => [e.scope, e.code]), [[id, "RESERVED_SCOPE"]], `${kt} ${id}`);
        assert.deepEqual(result.scopes, []);
      }
      assert.deepEqual(errorCodes("management", id), ["RESERVED_SCOPE"]);
    }
  });

  it('seed 000: reserved scopes — "you do not need to select them separately" (never offered as a way to meet a requirement)', () => {
    const k = key("api", "crm");
    for (const r of p.routes) {
      const d = p.checkRoute(k, r);
      if (!d.allowed) for (const [id] of RESERVED_TABLE) assert.ok(!d.coveredBy.includes(id), `${r.method} ${r.path} suggests ${id}`);
    }
  });

  it('seed 000: "Four platform scopes are added to every personal key automatically" — vibe:infra, vibe:ai, vibe:search, vibe:storage', () => {
    const list = p.normalize("api", "crm");
    for (const s of AUTO_GRANTED) {
      assert.ok(list.scopes.includes(s), `${s} is on the key`);
      assert.deepEqual(list.sources.get(s), ["(auto)"]);
    }
    // In effect even when the stored list lacks them.
    const bare = p.compileKey("api", p.issue(["crm"]));
    for (const s of AUTO_GRANTED) assert.ok(grants(bare, s), `${s} is in effect`);
    assertAllowed(bare, "POST /v1/chat/completions");
    assertAllowed(bare, "GET /v1/infra/servers");
    assertAllowed(bare, "POST /v1/search");
    const explained = p.explain("api", list).filter((e) => AUTO_GRANTED.includes(e.resource));
    assert.deepEqual(explained.map((e) => [e.resource, e.via]), AUTO_GRANTED.map((s) => [s, ["(auto)"]]));
  });

  it('seed 000: auto-granted scopes — "you do not need to select them in the form" (selecting one is harmless)', () => {
    const list = p.normalize("api", "crm,vibe:ai");
    assert.deepEqual(list.errors, []);
    assert.deepEqual(list.warnings.map((w) => [w.scope, w.code]), [["vibe:ai", "SCOPE_AUTO_GRANTED"]]);
    assert.deepEqual(list.scopes, scopes("api", "crm"));
  });

  it('seed 000: "The vibe:feedback scope is not granted automatically — check it in the form if the key needs to send feedback"', () => {
    assert.ok(!scopes("api", "crm").includes("vibe:feedback"));
    const without = key("api", "crm");
    assert.equal(grants(without, "vibe:feedback"), false);
    const d = assertDenied(without, "POST /v1/feedback", "SCOPE_DENIED");
    assert.deepEqual(d.missing, ["vibe:feedback"]);
    assertAllowed(key("api", "crm,vibe:feedback"), "POST /v1/feedback");
  });

  it('seed 003: app-key /v1/me example shows "scopes": ["crm", "tasks"] — nothing is auto-granted to authorization keys', () => {
    assert.deepEqual(scopes("app", "crm,tasks"), ["crm", "tasks"]);
    const k = key("app", "crm,tasks");
    for (const s of AUTO_GRANTED) assert.equal(grants(k, s), false, `${s} not in effect for app keys`);
    assertDenied(k, "POST /v1/chat/completions", "SCOPE_DENIED");
  });

  it('seed 003: personal-key /v1/me example shows "scopes": ["crm", "tasks", "user", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]', () => {
    assert.deepEqual(scopes("api", "crm,tasks,user"), ["crm", "tasks", "user", "vibe:infra", "vibe:ai", "vibe:search", "vibe:storage"]);
  });

  it("seed 000/001: auto-granted platform scopes are not added to management keys", () => {
    assert.deepEqual(scopes("management", "vibe:mgmt:keys"), ["vibe:mgmt:keys"]);
    const k = key("management", MGMT_ALL);
    for (const s of AUTO_GRANTED) assert.equal(grants(k, s), false, s);
  });

  it('seed 000: "At least one scope is required"', () => {
    for (const kt of ALL_KEY_TYPES) {
      for (const empty of ["", " , ,", [] as string[], ["  "]]) {
        const result = p.normalize(kt, empty);
        assert.deepEqual(result.errors.map((e) => e.code), ["SCOPES_REQUIRED"], `${kt} ${JSON.stringify(empty)}`);
        assert.deepEqual(result.scopes, []);
      }
    }
  });

  it('seed 003: "Scopes — the same two groups, "Bitrix24" and "VibeCode", at least one" — a single platform scope is enough', () => {
    for (const kt of PORTAL_KEY_TYPES) assert.ok(scopes(kt, "vibe:storage").includes("vibe:storage"));
    assert.deepEqual(scopes("app", "vibe:feedback"), ["vibe:feedback"]);
  });

  it('seed 000: "task — Tasks. To work with tasks, select together with tasks" — one without the other gets SCOPE_NEEDS_COMPANION', () => {
    for (const [alone, other] of [["task", "tasks"], ["tasks", "task"]] as const) {
      const list = p.normalize("api", alone);
      assert.deepEqual(list.errors, []);
      const w = list.warnings.filter((x) => x.code === "SCOPE_NEEDS_COMPANION");
      assert.equal(w.length, 1, `${alone} alone warns`);
      assert.match(w[0]!.message, new RegExp(`\\b${other}\\b`));
    }
    assert.deepEqual(p.normalize("api", "task,tasks").warnings, []);
  });

  it('seed 000: "To work with tasks, select together with tasks" — task routes need both task and tasks', () => {
    const { reads, writes } = entityCalls("tasks");
    for (const call of [...reads, ...writes]) {
      assertAllowed(key("api", "task,tasks"), call);
      assert.deepEqual(assertDenied(key("api", "tasks"), call, "SCOPE_DENIED").missing, ["task"], call);
      assert.deepEqual(assertDenied(key("api", "task"), call, "SCOPE_DENIED").missing, ["tasks"], call);
    }
  });

  it('seed 000: "If several modules are involved in a scenario, specify several scopes"', () => {
    const k = key("api", "crm,im,log");
    assertAllowed(k, "GET /v1/deals");
    assertAllowed(k, "POST /v1/notifications");
    assertAllowed(k, "POST /v1/posts");
    assertDenied(k, "GET /v1/bots", "SCOPE_DENIED");
  });
});

describe("VibeCode: scopes per task (seed 000 quick reference)", () => {
  it("seed 000: the profile's recipes are the quick-reference table, row for row", () => {
    assert.deepEqual(
      (p.spec.recipes ?? []).map((r) => [r.task, [...r.scopes].sort()]),
      RECIPES.map((r) => [r.task, [...r.scopes].sort()]),
    );
  });

  for (const recipe of RECIPES) {
    it(`seed 000: "${recipe.task}" — ${recipe.scopes.join(", ")}`, () => {
      for (const kt of PORTAL_KEY_TYPES) {
        const list = p.normalize(kt, recipe.scopes.join(","));
        assert.deepEqual(list.errors, [], kt);
        assert.deepEqual(list.warnings, [], `${kt}: the recipe is complete (no missing companion)`);
        for (const s of recipe.scopes) assert.ok(list.scopes.includes(s), `${kt}: ${s}`);
      }
      const k = key("api", recipe.scopes);
      for (const [call, needs] of recipe.calls) {
        assertAllowed(k, call, recipe.task);
        // Each scope the call needs is needed: without it (and with an unrelated scope so the list is not empty) it is denied.
        for (const s of needs) {
          const rest = [...recipe.scopes.filter((x) => x !== s), "disk"];
          const d = assertDenied(key("api", rest), call, "SCOPE_DENIED", `${recipe.task} without ${s}`);
          assert.ok(d.missing.some((m) => m.split("|").includes(s)), `${call} reports ${s} missing: ${d.missing.join(", ")}`);
        }
      }
      for (const s of recipe.scopes) assert.ok(grants(k, s), `${s} in effect`);
    });
  }
});

describe("VibeCode: the issue-time lock of Bitrix24 scopes (seeds 000, 003)", () => {
  const issued = (kt: string, list: string) => p.issue(scopes(kt, list));

  it('seed 000: "The set of Bitrix24 scopes is locked to the key at the moment of issue" — the Bitrix24 group is locked, the others are not', () => {
    assert.equal(groupOf("bitrix24")?.lockedAtIssue, true);
    assert.equal(groupOf("platform")?.lockedAtIssue, false);
    assert.equal(groupOf("management")?.lockedAtIssue, false);
  });

  it('seed 000: "If you add a Bitrix24 scope in the settings of an existing key, GET /v1/me shows it in the list"', () => {
    const amended = p.amend(issued("api", "crm"), scopes("api", "crm,im"));
    assert.ok(amended.scopes.includes("im"), "shown in the key's list");
    assert.deepEqual(p.pending(amended), ["im"]);
    assert.ok(!p.effective(amended).includes("im"));
  });

  it('seed 000: "requests that need the new scope return a BITRIX_ACCESS_DENIED error"', () => {
    for (const kt of PORTAL_KEY_TYPES) {
      const k = p.compileKey(kt, p.amend(issued(kt, "crm"), scopes(kt, "crm,im")));
      const d = assertDenied(k, "POST /v1/notifications", "BITRIX_ACCESS_DENIED", kt);
      assert.equal(d.reason, "pending_reissue");
      assert.deepEqual(d.missing, ["im"]);
      assert.equal(grants(k, "im"), false);
      assert.equal(p.check(k, p.requirement(["im"]).requirement).code, "BITRIX_ACCESS_DENIED");
    }
  });

  it('seed 000: "the key keeps accessing Bitrix24 data with its original set"', () => {
    const k = p.compileKey("api", p.amend(issued("api", "crm"), scopes("api", "crm,task,tasks")));
    assertAllowed(k, "GET /v1/deals");
    assertAllowed(k, "POST /v1/leads");
    assertDenied(k, "GET /v1/tasks", "BITRIX_ACCESS_DENIED");
  });

  it('seed 000: "You can obtain a new Bitrix24 scope only by re-issuing the API key"', () => {
    const amended = p.amend(issued("api", "crm"), scopes("api", "crm,im"));
    const reissued = p.reissue("api", amended);
    assert.deepEqual(p.pending(reissued), []);
    assert.deepEqual(reissued.scopes, amended.scopes);
    assertAllowed(p.compileKey("api", reissued), "POST /v1/notifications");
  });

  it('seed 003: "API key (vibe_api_) — reissue the key or create a new one with the scope selected"', () => {
    assertAllowed(key("api", "crm,im"), "POST /v1/notifications");
  });

  it('seed 003: "Authorization key (vibe_app_) — recreate the app … (reissuing the key does not grant a scope here)"', () => {
    const amended = p.amend(issued("app", "crm"), scopes("app", "crm,im"));
    const reissued = p.reissue("app", amended);
    assert.deepEqual(p.pending(reissued), ["im"]);
    assertDenied(p.compileKey("app", reissued), "POST /v1/notifications", "BITRIX_ACCESS_DENIED");
  });

  it('seed 003: "Authorization key (vibe_app_) — recreate the app with the required scope" — a newly issued app key has it in effect', () => {
    const locked = p.compileKey("app", p.amend(issued("app", "crm"), scopes("app", "crm,im")));
    assertDenied(locked, "POST /v1/notifications", "BITRIX_ACCESS_DENIED");
    assertAllowed(key("app", "crm,im"), "POST /v1/notifications");
  });

  it("seed 000: the lock applies to additions only — removing a Bitrix24 scope takes effect at once", () => {
    const removed = p.amend(issued("api", "crm,im"), scopes("api", "crm"));
    const k = p.compileKey("api", removed);
    const d = assertDenied(k, "POST /v1/notifications", "SCOPE_DENIED");
    assert.equal(d.reason, "scope");
    assertAllowed(k, "GET /v1/deals");
    // Adding it back later is an addition like any other: it waits for a reissue.
    const readded = p.amend(removed, scopes("api", "crm,im"));
    assertDenied(p.compileKey("api", readded), "POST /v1/notifications", "BITRIX_ACCESS_DENIED");
  });

  it('seed 000: "The set of Bitrix24 scopes is locked" — platform scopes added later take effect at once', () => {
    const amended = p.amend(issued("api", "crm"), scopes("api", "crm,vibe:feedback"));
    assert.deepEqual(p.pending(amended), []);
    const k = p.compileKey("api", amended);
    assertAllowed(k, "POST /v1/feedback");
    const appAmended = p.amend(issued("app", "crm"), scopes("app", "crm,vibe:ai"));
    assertAllowed(p.compileKey("app", appAmended), "POST /v1/chat/completions");
  });

  it("seed 001: management scopes added to an existing management key take effect at once (they are not Bitrix24 scopes)", () => {
    const amended = p.amend(issued("management", "vibe:mgmt:keys"), scopes("management", "vibe:mgmt:keys,vibe:mgmt:portals"));
    assert.deepEqual(p.pending(amended), []);
    assertAllowed(p.compileKey("management", amended), "GET /v1/portals");
  });
});

describe("VibeCode: key types (seeds 001, 003)", () => {
  it('seed 003: key types — "API key | vibe_api_", "Authorization key | vibe_app_", "Management key | vibe_live_"', () => {
    assert.deepEqual(
      p.spec.keyTypes.map((k) => [k.id, k.prefix, k.label]),
      [
        ["api", "vibe_api_", "API key"],
        ["app", "vibe_app_", "Authorization key"],
        ["management", "vibe_live_", "Management key"],
      ],
    );
  });

  it('seed 001: "Management keys (vibe_live_) are not tied to a single portal"; API and authorization keys are bound to one portal', () => {
    assert.equal(p.keyType("management")?.portalless, true);
    for (const kt of PORTAL_KEY_TYPES) assert.ok(!p.keyType(kt)?.portalless, kt);
  });

  it('seed 003: "Management keys (vibe_live_) — blocking is by HTTP method"; portal keys are blocked by the route\'s write class', () => {
    assert.equal(p.keyType("management")?.readOnlyByMethod, true);
    for (const kt of PORTAL_KEY_TYPES) assert.ok(!p.keyType(kt)?.readOnlyByMethod, kt);
  });
});

describe("VibeCode: management keys (seed 001)", () => {
  it('seed 000/001: "A management key uses a separate set of scopes (vibe:mgmt:keys, vibe:mgmt:portals, vibe:mgmt:feedback)"', () => {
    assert.deepEqual(groupIds("management").sort(), [...MANAGEMENT_SCOPES].sort());
    for (const s of MANAGEMENT_SCOPES) assert.deepEqual(resource(s)?.keyTypes, ["management"], s);
    assert.deepEqual(scopes("management", MGMT_ALL), MANAGEMENT_SCOPES);
  });

  it("seed 000/001: management scopes can only be requested for management keys", () => {
    for (const s of MANAGEMENT_SCOPES) {
      for (const kt of PORTAL_KEY_TYPES) assert.deepEqual(errorCodes(kt, `crm,${s}`), ["SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"], `${kt} ${s}`);
    }
  });

  it('seed 000: a management key "has no access to Bitrix24 data" — it cannot hold any Bitrix24 scope', () => {
    for (const [id] of BITRIX24_TABLE) {
      const result = p.normalize("management", `vibe:mgmt:keys,${id}`);
      assert.deepEqual(result.errors.map((e) => [e.scope, e.code]), [[id, "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"]]);
      assert.deepEqual(result.scopes, []);
    }
    // Nor any platform scope: its set is separate.
    for (const [id] of PLATFORM_TABLE) assert.deepEqual(errorCodes("management", id), ["SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"], id);
    // A Bitrix24 scope stored on a management key anyway grants nothing.
    const forced = p.compileKey("management", p.issue(["crm", "vibe:mgmt:keys"]));
    assert.equal(grants(forced, "crm"), false);
  });

  it('seed 001: "Each management key is created with one or more scopes"', () => {
    assert.deepEqual(errorCodes("management", ""), ["SCOPES_REQUIRED"]);
    for (const s of MANAGEMENT_SCOPES) assert.deepEqual(scopes("management", s), [s]);
  });

  it('seed 001: "When calling Bitrix24 entity endpoints, 403 MANAGEMENT_KEY_NO_ENTITY_ACCESS is returned" (/v1/deals, /v1/tasks, and others)', () => {
    const k = key("management", MGMT_ALL);
    for (const entity of ENTITIES) {
      const { reads, writes } = entityCalls(entity);
      for (const call of [...reads, ...writes]) {
        const d = assertDenied(k, call, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
        assert.equal(d.reason, "key_type");
      }
    }
    assert.equal(p.errorCodes.MANAGEMENT_KEY_NO_ENTITY_ACCESS?.status, 403);
  });

  it('seed 001: "An attempt to call an unsupported endpoint returns 403 MANAGEMENT_KEY_NO_ENTITY_ACCESS"', () => {
    const k = key("management", MGMT_ALL);
    const unsupported = p.routes.filter((r) => r.spec.keyTypes && !r.spec.keyTypes.includes("management"));
    assert.ok(unsupported.length > 0);
    for (const r of unsupported) {
      const d = p.checkRoute(k, r);
      assert.equal(d.code, "MANAGEMENT_KEY_NO_ENTITY_ACCESS", `${r.method} ${r.path}`);
    }
  });

  it('seed 001: "Without the required scope, a specific endpoint returns 403 MANAGEMENT_SCOPE_REQUIRED"', () => {
    const byScope: [string, Call[]][] = [
      ["vibe:mgmt:keys", ["GET /v1/keys?portalId=p-1", "POST /v1/keys", "GET /v1/keys/k-1", "PATCH /v1/keys/k-1", "DELETE /v1/keys/k-1", "POST /v1/keys/k-1/rotate"]],
      ["vibe:mgmt:portals", ["GET /v1/portals"]],
      ["vibe:mgmt:feedback", ["GET /v1/feedback", "GET /v1/feedback/t-1", "PATCH /v1/feedback/t-1", "POST /v1/feedback/t-1/comments"]],
    ];
    for (const [scope, calls] of byScope) {
      const others = key("management", MANAGEMENT_SCOPES.filter((s) => s !== scope));
      for (const call of calls) {
        const d = assertDenied(others, call, "MANAGEMENT_SCOPE_REQUIRED");
        assert.deepEqual(d.missing, [scope], call);
        assert.deepEqual(d.coveredBy, [scope], call);
      }
    }
    assert.equal(p.errorCodes.MANAGEMENT_SCOPE_REQUIRED?.status, 403);
  });

  it('seed 001: "vibe:mgmt:keys — /v1/keys (list, create, update, delete, rotate)"', () => {
    const k = key("management", "vibe:mgmt:keys");
    for (const call of ["GET /v1/keys?portalId=p-1", "POST /v1/keys", "GET /v1/keys/k-1", "PATCH /v1/keys/k-1", "DELETE /v1/keys/k-1", "POST /v1/keys/k-1/rotate"] as Call[]) {
      assertAllowed(k, call);
    }
  });

  it('seed 001: "vibe:mgmt:portals — /v1/portals"', () => {
    assertAllowed(key("management", "vibe:mgmt:portals"), "GET /v1/portals");
  });

  it('seed 001: "vibe:mgmt:feedback — /v1/feedback (ticket list, read, update, comments)"', () => {
    const k = key("management", "vibe:mgmt:feedback");
    for (const call of ["GET /v1/feedback?status=NEW", "GET /v1/feedback/t-1", "PATCH /v1/feedback/t-1", "POST /v1/feedback/t-1/comments"] as Call[]) {
      assertAllowed(k, call);
    }
  });

  it('seed 003: "a management key in read-only mode cannot create new keys, change a portal, or submit feedback" — with vibe:mgmt:feedback it can submit feedback', () => {
    assertAllowed(key("management", "vibe:mgmt:feedback"), "POST /v1/feedback");
    assertDenied(key("management", "vibe:mgmt:keys"), "POST /v1/feedback", "MANAGEMENT_SCOPE_REQUIRED");
  });

  it('seed 001: "if the key is intended only for managing API keys, it does not need the vibe:mgmt:feedback scope"', () => {
    const k = key("management", "vibe:mgmt:keys");
    assertAllowed(k, "POST /v1/keys");
    assertDenied(k, "GET /v1/feedback", "MANAGEMENT_SCOPE_REQUIRED");
  });

  it('seed 001: "The endpoints /v1/me, /v1/guide, and /v1/openapi.json are available to any management key without a separate scope"', () => {
    for (const s of MANAGEMENT_SCOPES) {
      const k = key("management", s);
      for (const call of ["GET /v1/me", "GET /v1/guide", "GET /v1/openapi.json"] as Call[]) assertAllowed(k, call, s);
    }
  });

  it("seed 001/003: /v1/me, /v1/guide and /v1/openapi.json need no scope for any key type", () => {
    for (const call of ["GET /v1/me", "GET /v1/guide", "GET /v1/openapi.json"] as Call[]) {
      for (const kt of PORTAL_KEY_TYPES) assertAllowed(key(kt, "vibe:storage"), call, kt);
      assertAllowed(key("management", "vibe:mgmt:portals"), call);
    }
  });

  it('seed 001: "Managing API keys: No" and "Viewing the portal list: No" for API and authorization keys — MANAGEMENT_KEY_REQUIRED', () => {
    const calls: Call[] = ["GET /v1/keys", "POST /v1/keys", "GET /v1/keys/k-1", "PATCH /v1/keys/k-1", "DELETE /v1/keys/k-1", "POST /v1/keys/k-1/rotate", "GET /v1/portals"];
    for (const kt of PORTAL_KEY_TYPES) {
      const k = key(kt, "crm,vibe:feedback");
      for (const call of calls) assert.equal(assertDenied(k, call, "MANAGEMENT_KEY_REQUIRED", kt).reason, "key_type");
    }
  });

  it('seed 001: "Working with feedback: Own tickets only" for API and authorization keys — with vibe:feedback they reach the ticket endpoints', () => {
    for (const kt of PORTAL_KEY_TYPES) {
      const k = key(kt, "vibe:feedback");
      for (const call of ["GET /v1/feedback", "POST /v1/feedback", "GET /v1/feedback/t-1", "POST /v1/feedback/t-1/comments"] as Call[]) assertAllowed(k, call, kt);
    }
  });

  it('seed 001: "Access to Bitrix24 entities (deals, tasks, etc.): Yes" for API and authorization keys', () => {
    for (const kt of PORTAL_KEY_TYPES) {
      const k = key(kt, "crm,task,tasks,user");
      for (const entity of ENTITIES) {
        const { reads, writes } = entityCalls(entity);
        for (const call of [...reads, ...writes]) assertAllowed(k, call, kt);
      }
    }
  });
});

describe("VibeCode: portal keys on routes (seeds 000, 003)", () => {
  it("seed 000/003: a portal key without the scope an endpoint needs gets 403 SCOPE_DENIED, naming what is missing", () => {
    const k = key("api", "im");
    const d = assertDenied(k, "GET /v1/deals", "SCOPE_DENIED");
    assert.equal(d.reason, "scope");
    assert.deepEqual(d.missing, ["crm"]);
    assert.deepEqual(d.coveredBy, ["crm"]);
    assert.equal(p.errorCodes.SCOPE_DENIED?.status, 403);
    const users = assertDenied(key("app", "im"), "GET /v1/users", "SCOPE_DENIED");
    assert.deepEqual(users.missing, ["user|user_basic|user_brief"]);
  });

  it('seed 003: "The API key (vibe_api_) does not support embedding in the portal interface" — placements need an authorization key', () => {
    for (const call of ["POST /v1/placements/bind", "GET /v1/placements/available"] as Call[]) {
      const d = assertDenied(key("api", "placement"), call, "OAUTH_REQUIRED");
      assert.equal(d.reason, "key_type");
      assertAllowed(key("app", "placement"), call);
      assert.equal(route(call).userContext, true, `${call} runs for the user of the session`);
    }
    assert.equal(p.errorCodes.OAUTH_REQUIRED?.status, 403);
  });

  it('seed 003: "endpoints that need user context return 401 TOKEN_MISSING" — entity and infrastructure-creation routes are marked userContext', () => {
    for (const entity of ENTITIES) {
      const { reads, writes } = entityCalls(entity);
      for (const call of [...reads, ...writes]) assert.equal(route(call).userContext, true, call);
    }
    assert.equal(route("POST /v1/infra/servers").userContext, true);
  });

  it('seed 003: "The /v1/me and /v1/oauth/* endpoints work without Bearer"; "Reads (GET /v1/infra/servers, GET /v1/me) do not need a session"', () => {
    const noSession: Call[] = ["GET /v1/me", "GET /v1/oauth/authorize", "POST /v1/oauth/token", "GET /v1/oauth/poll", "POST /v1/oauth/revoke", "GET /v1/infra/servers"];
    for (const call of noSession) assert.equal(route(call).userContext, false, call);
  });

  it("seed 003: the OAuth flow of an authorization key needs no scope", () => {
    const k = key("app", "crm");
    for (const call of ["GET /v1/oauth/authorize", "POST /v1/oauth/token", "GET /v1/oauth/poll", "POST /v1/oauth/revoke"] as Call[]) assertAllowed(k, call);
  });
});

describe("VibeCode: the route table (seeds 000, 001, 003)", () => {
  for (const [seed, call, pattern] of SEED_ENDPOINTS) {
    it(`seed ${seed}: names ${call} — a route matches it`, () => {
      const [method] = split(call);
      const r = route(call);
      assert.equal(r.method, method);
      assert.equal(r.path, pattern);
    });
  }

  it("seed 000: POST /v1/chats/:dialogId/messages captures the dialog id", () => {
    assert.deepEqual(p.match("POST", "/v1/chats/chat42/messages")?.params, { dialogId: "chat42" });
  });

  it("every route of the profile matches its own sample path (no route is shadowed)", () => {
    for (const r of p.routes) assert.equal(route(`${r.method} ${samplePath(r.path)}` as Call), r, `${r.method} ${r.path}`);
  });

  it("an endpoint no seed names matches no route (it is denied, not guessed)", () => {
    assert.equal(p.match("GET", "/v1/nonexistent"), undefined);
    assert.equal(p.match("PUT", "/v1/deals/1"), undefined);
  });
});

describe("VibeCode: access mode data (seed 003)", () => {
  it('seed 003: "GET requests and aggregation operations (POST /v1/<entity>/aggregate) run without restrictions" — class read', () => {
    for (const entity of ENTITIES) for (const call of entityCalls(entity).reads) assert.equal(route(call).class, "read", call);
  });

  it('seed 003: "any request proxied to Bitrix24 as a write operation is blocked: create, update, delete" — class write', () => {
    for (const entity of ENTITIES) for (const call of entityCalls(entity).writes) assert.equal(route(call).class, "write", call);
    for (const call of ["POST /v1/notifications", "POST /v1/chats/c-1/messages", "POST /v1/posts", "POST /v1/placements/bind"] as Call[]) {
      assert.equal(route(call).class, "write", call);
      assert.ok(route(call).upstreamMethod, `${call} names the Bitrix24 method it proxies to`);
    }
  });

  it('seed 003: WRITE_BLOCKED_READONLY_KEY example — POST /v1/leads has "details.method": "crm.item.add"', () => {
    assert.equal(route("POST /v1/leads").upstreamMethod, "crm.item.add");
  });

  it('seed 003: "details.method ... contains the name of the method that would have been called on a successful write" — every entity write names one', () => {
    for (const entity of ENTITIES) {
      for (const call of entityCalls(entity).writes) assert.match(route(call).upstreamMethod ?? "", /^[a-z_]+\.[a-z_.]+$/i, call);
    }
    assert.equal(route("PATCH /v1/deals/1").upstreamMethod, "crm.item.update");
    assert.equal(route("DELETE /v1/deals/1").upstreamMethod, "crm.item.delete");
  });

  it('seed 003: "For management keys, details.method is not returned" — management routes name no upstream method', () => {
    for (const r of p.routes.filter((x) => x.spec.keyTypes?.includes("management"))) assert.equal(r.upstreamMethod, undefined, `${r.method} ${r.path}`);
  });

  it('seed 003: management keys: "POST, PATCH, PUT, DELETE are rejected, GET and HEAD pass" — their routes are classed by method', () => {
    for (const r of p.routes.filter((x) => x.spec.keyTypes?.includes("management"))) {
      assert.equal(r.class, r.method === "GET" || r.method === "HEAD" ? "read" : "write", `${r.method} ${r.path}`);
    }
    // HEAD is served by the GET route, so it is a read too.
    for (const path of ["/v1/keys", "/v1/portals", "/v1/feedback/t-1"]) assert.equal(route(`HEAD ${path}` as Call).class, "read", path);
  });
});

describe("VibeCode: normalising a requested list (scope-model 5.2, 5.5)", () => {
  it("trims every token and drops empty ones", () => {
    assert.deepEqual(scopes("app", "  crm ,, im ,"), ["crm", "im"]);
    assert.deepEqual(scopes("app", [" crm", "im  ", ""]), ["crm", "im"]);
  });

  it("lower-cases tokens (scope ids are case-insensitive) and remembers how they were written", () => {
    const list = p.normalize("app", "CRM,Im");
    assert.deepEqual(list.scopes, ["crm", "im"]);
    assert.deepEqual(list.sources.get("crm"), ["CRM"]);
  });

  it("dedupes: the same scope written twice is held once", () => {
    assert.deepEqual(scopes("app", "crm,crm, CRM"), ["crm"]);
  });

  it("returns canonical scopes in catalog order, whatever the input order", () => {
    assert.deepEqual(scopes("app", "vibe:feedback,im,crm"), ["crm", "im", "vibe:feedback"]);
  });

  it("reports every bad token at once, each with its own code", () => {
    const result = p.normalize("api", "crm:read, foo bar ,crn,vibe:security,vibe:mgmt:keys,im");
    assert.deepEqual(
      result.errors.map((e) => [e.scope, e.code]),
      [
        ["crm:read", "SCOPE_TAKES_NO_ACTION"],
        ["foo bar", "BAD_SCOPE_SYNTAX"],
        ["crn", "UNKNOWN_SCOPE"],
        ["vibe:security", "RESERVED_SCOPE"],
        ["vibe:mgmt:keys", "SCOPE_NOT_ALLOWED_FOR_KEY_TYPE"],
      ],
    );
    assert.match(result.errors[2]!.message, /crm/, "a near miss suggests the scope meant");
  });

  it("accepts nothing from a list with errors (no auto-granted scopes either)", () => {
    const result = p.normalize("api", "crm,im,bogus");
    assert.equal(result.errors.length, 1);
    assert.deepEqual(result.scopes, []);
    assert.equal(result.sources.size, 0);
  });
});
