/**
 * The VibeCode data plane over HTTP (issue #5 section 2; seed 003 "Access mode" and "Request
 * limits"; reference sections 3 and 5): the entity API (deals, contacts, companies, leads, tasks,
 * users) on a portal linked to the built-in sandbox, which keygate reaches over real HTTP at its
 * own listening address; scopes and the issue-time lock on this surface; read-only keys blocked
 * before anything leaves keygate; management and app keys; Bitrix24's failures as keygate codes;
 * POST /v1/batch; notifications, chat messages and posts; unlinked portals. Demo data comes from
 * seedDemoData (6 deals, 4 contacts, 3 companies, 3 leads, 4 tasks, 4 users). The clock is the
 * harness's (no sleeps): moving it refills keygate's limits and drains the sandbox's bucket.
 * Every suite runs against both stores.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { createSandbox, sandboxWebhookToken, seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { MINUTE, fails, limited, makeKey, makePortal, ok, patchKey, rateHeaders } from "./_fixtures.ts";
import { freePort } from "../support/services.ts";

/** The seeded deals (seedDemoData), by id 1–6. */
const DEALS = [
  { title: "Northwind: annual supply contract", stageId: "NEW", amount: 120_000, assignedById: 2 },
  { title: "Northwind: spare parts", stageId: "PREPARATION", amount: 18_500, assignedById: 3 },
  { title: "Acme: warehouse automation", stageId: "PREPAYMENT_INVOICE", amount: 64_000, assignedById: 4 },
  { title: "Globex: store fit-out", stageId: "EXECUTING", amount: 230_000, assignedById: 2 },
  { title: "Acme: fleet tracking", stageId: "WON", amount: 42_000, assignedById: 3 },
  { title: "Globex: loyalty program", stageId: "LOSE", amount: 75_000, assignedById: 4 },
];
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
/** Every Bitrix24 scope the data plane uses. */
const ALL = ["crm", "task", "tasks", "user", "im", "log"];

function show(r: Reply): string {
  return `${r.status} ${JSON.stringify(r.body)}`;
}

/** Two minutes on: keygate's per-minute and per-second windows start empty, the sandbox's bucket (2/s) is drained. */
function fresh(h: Harness): void {
  h.clock.advance(2 * MINUTE);
}

/**
 * A portal linked to the sandbox (its webhook made by keygate), with the demo data unless
 * seed: false, and keygate's portal budget raised to 10000/s unless requestLimit says otherwise
 * (null: the VibeCode default, 10/s).
 */
async function sandboxPortal(h: Harness, options: { seed?: boolean; requestLimit?: number | null } = {}): Promise<string> {
  const portalId = await makePortal(h);
  if (options.seed !== false) await seedDemoData(h.store, portalId);
  const requestLimit = options.requestLimit === undefined ? 10_000 : options.requestLimit;
  if (requestLimit !== null) ok(await h.call("PATCH", `/v1/portals/${portalId}`, { key: h.owner.key, body: { requestLimit } }));
  return portalId;
}

for (const kind of await storeKinds("http: data plane")) {
  describe(`data plane [${kind}]`, () => {
    let h: Harness;
    /** A seeded portal nothing writes to: the reads check the demo data exactly. */
    let readPortal: string;
    /** A key with every data-plane scope on readPortal. */
    let reader: string;
    /** A seeded portal the write tests change, and its key with every data-plane scope. */
    let writePortal: string;
    let writer: string;

    before(async () => {
      h = await startHarness(kind, { listen: true, allowUpstream: ["127.0.0.1"] });
      readPortal = await sandboxPortal(h);
      reader = (await makeKey(h, readPortal, { name: "Reader", scopes: ALL })).raw;
      writePortal = await sandboxPortal(h);
      writer = (await makeKey(h, writePortal, { name: "Writer", scopes: ALL })).raw;
    });
    after(() => h.close());
    beforeEach(() => fresh(h));

    const get = (path: string, key = reader) => h.call("GET", path, { key });
    const post = (path: string, body: unknown, key = writer) => h.call("POST", path, { key, body });
    /** A list reply: its items and meta. */
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const listed = (r: Reply): { items: any[]; meta: any } => {
      const items = ok(r);
      assert.ok(Array.isArray(items), show(r));
      assert.equal(typeof r.body.meta, "object", `meta missing: ${show(r)}`);
      return { items, meta: r.body.meta };
    };
    const ids = (items: { id: unknown }[]) => items.map((i) => Number(i.id));

    describe("entities: lists (GET /v1/<entity>)", () => {
      it('reference 5: "GET /v1/{entity}" — deals: every seeded record, camelCase, amount ↔ opportunity, meta.total and meta.hasMore', async () => {
        const { items, meta } = listed(await get("/v1/deals"));
        assert.deepEqual(ids(items), [1, 2, 3, 4, 5, 6]);
        assert.deepEqual(meta, { total: 6, hasMore: false });
        for (const [i, d] of DEALS.entries()) {
          assert.equal(items[i].title, d.title);
          assert.equal(items[i].stageId, d.stageId);
          assert.equal(items[i].amount, d.amount, "amount is Bitrix24's opportunity");
          assert.equal(items[i].currency, "USD", "currency is Bitrix24's currencyId");
          assert.equal(items[i].assignedById, d.assignedById);
          assert.ok(!("opportunity" in items[i]) && !("currencyId" in items[i]), `Bitrix24's names are not shown: ${JSON.stringify(items[i])}`);
        }
      });

      it('reference 5: "limit (default 50, max 5000), offset" — a window of the list; meta.hasMore says whether records follow it', async () => {
        let r = listed(await get("/v1/deals?limit=2&offset=1"));
        assert.deepEqual(ids(r.items), [2, 3]);
        assert.deepEqual(r.meta, { total: 6, hasMore: true });
        r = listed(await get("/v1/deals?limit=2&offset=4"));
        assert.deepEqual(ids(r.items), [5, 6]);
        assert.deepEqual(r.meta, { total: 6, hasMore: false });
        r = listed(await get("/v1/deals?offset=6"));
        assert.deepEqual(r.items, []);
        assert.equal(r.meta.hasMore, false);
      });

      it('reference 5: "select (?select=id,title,amount)" — only the selected fields, and id', async () => {
        const { items } = listed(await get("/v1/deals?select=title,amount&limit=3"));
        assert.equal(items.length, 3);
        for (const [i, item] of items.entries()) assert.deepEqual(item, { id: i + 1, title: DEALS[i]!.title, amount: DEALS[i]!.amount });
      });

      it('reference 5: "order (?order[createdAt]=desc)" — order[field]=asc|desc, in keygate\'s field names', async () => {
        const desc = listed(await get("/v1/deals?order[amount]=desc")).items.map((d) => d.amount);
        assert.deepEqual(desc, DEALS.map((d) => d.amount).sort((a, b) => b - a));
        const asc = listed(await get("/v1/deals?order[amount]=asc")).items.map((d) => d.amount);
        assert.deepEqual(asc, DEALS.map((d) => d.amount).sort((a, b) => a - b));
        assert.deepEqual(ids(listed(await get("/v1/deals?order[id]=desc&limit=2")).items), [6, 5]);
      });

      it('reference 5.1: "exact match = plain value" — filter[field]=v', async () => {
        const { items, meta } = listed(await get("/v1/deals?filter[stageId]=WON"));
        assert.deepEqual(ids(items), [5]);
        assert.equal(meta.total, 1);
        assert.deepEqual(ids(listed(await get("/v1/deals?filter[assignedById]=2")).items), [1, 4]);
      });

      it('reference 5.1: "$gt $gte $lt $lte $ne $in" — filter[field][$gt]=v in the query string', async () => {
        const over = async (path: string) => ids(listed(await get(path)).items);
        assert.deepEqual(await over("/v1/deals?filter[amount][$gt]=64000"), [1, 4, 6]);
        assert.deepEqual(await over("/v1/deals?filter[amount][$gte]=64000"), [1, 3, 4, 6]);
        assert.deepEqual(await over("/v1/deals?filter[amount][$lt]=42000"), [2]);
        assert.deepEqual(await over("/v1/deals?filter[amount][$lte]=42000"), [2, 5]);
        assert.deepEqual(await over("/v1/deals?filter[stageId][$ne]=NEW"), [2, 3, 4, 5, 6]);
        assert.deepEqual(await over("/v1/deals?filter[stageId][$in]=WON,LOSE"), [5, 6]);
        assert.deepEqual(await over("/v1/deals?filter[amount][$gt]=40000&filter[amount][$lt]=100000"), [3, 5, 6], '"multiple conditions AND"');
        assert.deepEqual(await over("/v1/deals?filter[title][$contains]=acme"), [3, 5]);
      });

      it('reference 5.1: "Syntax 2 (prefix in key)" in the query string — filter[>=amount]=v as written, and percent-encoded', async () => {
        const over = async (path: string) => ids(listed(await get(path)).items);
        assert.deepEqual(await over("/v1/deals?filter[>=amount]=64000"), [1, 3, 4, 6]);
        assert.deepEqual(await over("/v1/deals?filter[%3E%3Damount]=64000"), [1, 3, 4, 6]);
        assert.deepEqual(await over("/v1/deals?filter[>amount]=64000"), [1, 4, 6]);
        assert.deepEqual(await over("/v1/deals?filter[<=amount]=42000"), [2, 5]);
        assert.deepEqual(await over("/v1/deals?filter[<amount]=42000"), [2]);
        assert.deepEqual(await over("/v1/deals?filter[!=stageId]=NEW"), [2, 3, 4, 5, 6]);
        assert.deepEqual(await over("/v1/deals?filter[!stageId]=NEW&filter[>=amount]=64000"), [3, 4, 6]);
        assert.deepEqual(await over("/v1/deals?filter[%25title]=northwind"), [1, 2]);
        assert.deepEqual(await over("/v1/deals?filter[=stageId]=WON"), [5]);
      });

      it("contacts, companies, leads: the seeded records, with their filters and order", async () => {
        const contacts = listed(await get("/v1/contacts?order[lastName]=asc"));
        assert.equal(contacts.meta.total, 4);
        assert.deepEqual(
          contacts.items.map((c) => c.lastName),
          ["Kuznetsova", "Lebedeva", "Morozov", "Sokolov"],
        );
        assert.deepEqual(ids(listed(await get("/v1/contacts?filter[companyId]=1")).items), [1, 2]);
        const companies = listed(await get("/v1/companies?select=title,revenue&order[revenue]=desc"));
        assert.deepEqual(companies.items, [
          { id: 3, title: "Globex Retail", revenue: 3_800_000 },
          { id: 1, title: "Northwind Trading", revenue: 1_200_000 },
          { id: 2, title: "Acme Logistics", revenue: 450_000 },
        ]);
        const leads = listed(await get("/v1/leads"));
        assert.deepEqual(leads.meta, { total: 3, hasMore: false });
        assert.deepEqual(
          leads.items.map((l) => [l.title, l.amount]),
          [
            ["Website inquiry: bulk order", 9_000],
            ["Trade show contact", 25_000],
            ["Cold call follow-up", 0],
          ],
        );
        assert.deepEqual(ids(listed(await get("/v1/leads?filter[sourceId]=WEB")).items), [1]);
      });

      it("tasks: camelCase in (filter, order, select) and out, as Bitrix24's UPPER_CASE task methods are mapped", async () => {
        const { items, meta } = listed(await get("/v1/tasks"));
        assert.deepEqual(meta, { total: 4, hasMore: false });
        assert.deepEqual(ids(items), [1, 2, 3, 4]);
        assert.equal(items[0].title, "Prepare the Northwind proposal");
        assert.equal(String(items[0].status), "2");
        assert.equal(String(items[0].responsibleId), "2");
        assert.ok(!("TITLE" in items[0]), JSON.stringify(items[0]));
        assert.deepEqual(listed(await get("/v1/tasks?filter[status]=5")).items.map((t) => t.title), ["Update the price list"]);
        assert.deepEqual(ids(listed(await get("/v1/tasks?order[title]=desc")).items), [4, 3, 1, 2]);
        const selected = listed(await get("/v1/tasks?select=title&limit=1&offset=1"));
        assert.equal(selected.items.length, 1);
        assert.deepEqual(Object.keys(selected.items[0]).sort(), ["id", "title"]);
        assert.equal(Number(selected.items[0].id), 2);
        assert.equal(selected.items[0].title, "Call Acme about the invoice");
        assert.deepEqual(selected.meta, { total: 4, hasMore: true });
      });

      it("users: the portal's users, camelCase (position ↔ WORK_POSITION, departmentIds ↔ UF_DEPARTMENT), with filter, order, limit and offset", async () => {
        const { items, meta } = listed(await get("/v1/users"));
        assert.deepEqual(meta, { total: 4, hasMore: false });
        assert.deepEqual(
          items.map((u) => [Number(u.id), u.name, u.lastName, u.position]),
          [
            [1, "Anna", "Petrova", "Administrator"],
            [2, "Boris", "Ivanov", "Sales manager"],
            [3, "Clara", "Smirnova", "Sales manager"],
            [4, "Dmitry", "Volkov", "Project manager"],
          ],
        );
        assert.deepEqual(items[1].departmentIds, [2]);
        assert.ok(!("NAME" in items[0]) && !("WORK_POSITION" in items[0]), JSON.stringify(items[0]));
        assert.deepEqual(ids(listed(await get("/v1/users?filter[name]=Clara")).items), [3]);
        assert.deepEqual(ids(listed(await get("/v1/users?order[name]=desc")).items), [4, 3, 2, 1]);
        const page = listed(await get("/v1/users?limit=2&offset=1"));
        assert.deepEqual(ids(page.items), [2, 3]);
        assert.deepEqual(page.meta, { total: 4, hasMore: true });
        // user.get has no select: keygate keeps only the selected fields (and id) itself.
        const selected = listed(await get("/v1/users?select=name,position&limit=2"));
        assert.deepEqual(
          selected.items.map((u) => ({ ...u, id: Number(u.id) })),
          [
            { id: 1, name: "Anna", position: "Administrator" },
            { id: 2, name: "Boris", position: "Sales manager" },
          ],
        );
      });
    });

    describe("entities: search, one record, fields", () => {
      it('reference 5.1: "Syntax 2 (prefix in key): {">=amount":50000,"!stageId":"LOST"}" — POST /v1/<entity>/search', async () => {
        const r = listed(await post("/v1/deals/search", { filter: { ">=amount": 50_000 } }, reader));
        assert.deepEqual(ids(r.items), [1, 3, 4, 6]);
        assert.deepEqual(r.meta, { total: 4, hasMore: false });
        assert.deepEqual(ids(listed(await post("/v1/deals/search", { filter: { ">=amount": 50_000, "!stageId": "LOSE" } }, reader)).items), [1, 3, 4]);
        assert.deepEqual(ids(listed(await post("/v1/deals/search", { filter: { "<amount": 42_000 } }, reader)).items), [2]);
        assert.deepEqual(ids(listed(await post("/v1/deals/search", { filter: { "%title": "globex" } }, reader)).items), [4, 6]);
      });

      it('reference 5: "POST /v1/{entity}/search body {filter, select, order, limit}" — $ operators, select, order, limit and offset in the body', async () => {
        const r = listed(await post("/v1/deals/search", { filter: { amount: { $gte: 64_000 } }, select: ["title", "amount"], order: { amount: "asc" }, limit: 2 }, reader));
        assert.deepEqual(r.items, [
          { id: 3, title: DEALS[2]!.title, amount: 64_000 },
          { id: 6, title: DEALS[5]!.title, amount: 75_000 },
        ]);
        assert.deepEqual(r.meta, { total: 4, hasMore: true });
        const next = listed(await post("/v1/deals/search", { filter: { amount: { $gte: 64_000 } }, order: { amount: "asc" }, limit: 2, offset: 2 }, reader));
        assert.deepEqual(ids(next.items), [1, 4]);
        assert.equal(next.meta.hasMore, false);
        assert.deepEqual(ids(listed(await post("/v1/deals/search", { filter: { stageId: ["WON", "LOSE"] } }, reader)).items), [5, 6], "a list is any of");
        assert.deepEqual(ids(listed(await post("/v1/tasks/search", { filter: { "!status": 5 }, order: { id: "desc" } }, reader)).items), [3, 2, 1]);
        assert.deepEqual(ids(listed(await post("/v1/contacts/search", {}, reader)).items), [1, 2, 3, 4], "an empty body lists everything");
      });

      it('reference 5: "GET /v1/{entity}/{id}" — {success, data: {id, …}} for every entity', async () => {
        const deal = ok(await get("/v1/deals/4"));
        assert.equal(deal.id, 4);
        assert.equal(deal.title, "Globex: store fit-out");
        assert.equal(deal.amount, 230_000);
        assert.equal(deal.currency, "USD");
        assert.equal(ok(await get("/v1/contacts/2")).lastName, "Sokolov");
        assert.equal(ok(await get("/v1/companies/3")).title, "Globex Retail");
        assert.equal(ok(await get("/v1/leads/2")).companyTitle, "Initech");
        const task = ok(await get("/v1/tasks/3"));
        assert.equal(Number(task.id), 3);
        assert.equal(task.title, "Send the Globex fit-out plan");
        const user = ok(await get("/v1/users/2"));
        assert.equal(Number(user.id), 2);
        assert.equal(user.email, "boris.ivanov@sandbox.example");
        assert.equal(user.position, "Sales manager");
      });

      it('reference 5: "GET /v1/{entity}/fields" — the field list, in keygate\'s names', async () => {
        const deal = ok(await get("/v1/deals/fields"));
        for (const f of ["id", "title", "amount", "currency", "stageId", "assignedById", "createdAt"]) assert.ok(f in deal, `deals/fields lacks ${f}: ${Object.keys(deal).join(",")}`);
        assert.ok(!("opportunity" in deal) && !("currencyId" in deal), Object.keys(deal).join(","));
        assert.equal(deal.amount.type, "double");
        for (const entity of ["contacts", "companies", "leads"]) assert.ok("id" in ok(await get(`/v1/${entity}/fields`)), entity);
        const task = ok(await get("/v1/tasks/fields"));
        for (const f of ["id", "title", "responsibleId", "status", "deadline", "createdAt"]) assert.ok(f in task, `tasks/fields lacks ${f}: ${Object.keys(task).join(",")}`);
        const user = ok(await get("/v1/users/fields"));
        for (const f of ["id", "name", "lastName", "email", "position", "departmentIds"]) assert.ok(f in user, `users/fields lacks ${f}: ${Object.keys(user).join(",")}`);
      });
    });

    describe("entities: aggregate (POST /v1/<entity>/aggregate)", () => {
      const aggregate = (entity: string, body: unknown) => post(`/v1/${entity}/aggregate`, body, reader);
      const amounts = DEALS.map((d) => d.amount);

      it('reference 5.2: "Functions: count, sum, avg, min, max" — over every seeded deal', async () => {
        const data = ok(
          await aggregate("deals", {
            aggregate: [
              { field: "*", function: "count" },
              { field: "amount", function: "sum" },
              { field: "amount", function: "avg" },
              { field: "amount", function: "min" },
              { field: "amount", function: "max" },
            ],
          }),
        );
        assert.equal(data.count, 6);
        assert.deepEqual(data.aggregates.amount, { sum: sum(amounts), avg: sum(amounts) / 6, min: 18_500, max: 230_000 });
      });

      it('reference 5.2: "without aggregate → count only"; a filter narrows what is counted', async () => {
        assert.equal(ok(await aggregate("deals", {})).count, 6);
        const open = ok(await aggregate("deals", { filter: { stageSemanticId: "P" }, aggregate: [{ field: "amount", function: "sum" }] }));
        assert.equal(open.count, 4);
        assert.equal(open.aggregates.amount.sum, 120_000 + 18_500 + 64_000 + 230_000);
        const big = ok(await aggregate("deals", { filter: { ">=amount": 64_000 } }));
        assert.equal(big.count, 4);
      });

      it('reference 5.2: "groupBy string|string[]" — data.groups: [{<field>, count, aggregates}]', async () => {
        const data = ok(await aggregate("deals", { aggregate: [{ field: "amount", function: "sum" }], groupBy: "assignedById" }));
        assert.equal(data.count, 6);
        const byManager = new Map(data.groups.map((g: { assignedById: number; count: number; aggregates: { amount: { sum: number } } }) => [g.assignedById, [g.count, g.aggregates.amount.sum]]));
        for (const manager of [2, 3, 4]) {
          const mine = DEALS.filter((d) => d.assignedById === manager);
          assert.deepEqual(byManager.get(manager), [mine.length, sum(mine.map((d) => d.amount))], `manager ${manager}`);
        }
        assert.equal(byManager.size, 3);
        const two = ok(await aggregate("deals", { groupBy: ["stageSemanticId", "currency"] }));
        assert.deepEqual(
          two.groups.map((g: Record<string, unknown>) => [g.stageSemanticId, g.currency, g.count]).sort(),
          [
            ["F", "USD", 1],
            ["P", "USD", 4],
            ["S", "USD", 1],
          ],
        );
      });

      it("aggregate over the other entities: companies' revenue, leads' amount by source, contacts by company, tasks by status and responsible, users by position", async () => {
        const companies = ok(await aggregate("companies", { aggregate: [{ field: "revenue", function: "sum" }, { field: "revenue", function: "max" }] }));
        assert.deepEqual([companies.count, companies.aggregates.revenue], [3, { sum: 5_450_000, max: 3_800_000 }]);
        const leads = ok(await aggregate("leads", { aggregate: [{ field: "amount", function: "sum" }], groupBy: "sourceId" }));
        assert.equal(leads.aggregates.amount.sum, 34_000);
        assert.deepEqual(leads.groups.map((g: Record<string, unknown>) => g.sourceId).sort(), ["CALL", "TRADE_SHOW", "WEB"]);
        const contacts = ok(await aggregate("contacts", { groupBy: "companyId" }));
        assert.deepEqual(contacts.groups.map((g: Record<string, unknown>) => [g.companyId, g.count]).sort(), [
          [1, 2],
          [2, 1],
          [3, 1],
        ]);
        const tasks = ok(await aggregate("tasks", { aggregate: [{ field: "priority", function: "sum" }], groupBy: "responsibleId" }));
        assert.equal(tasks.count, 4);
        assert.equal(tasks.aggregates.priority.sum, 2 + 1 + 1 + 0);
        assert.deepEqual(tasks.groups.map((g: Record<string, unknown>) => [String(g.responsibleId), g.count]).sort(), [
          ["2", 2],
          ["3", 1],
          ["4", 1],
        ]);
        const done = ok(await aggregate("tasks", { filter: { status: 5 } }));
        assert.equal(done.count, 1);
        const users = ok(await aggregate("users", { groupBy: "position" }));
        assert.deepEqual(users.groups.map((g: Record<string, unknown>) => [g.position, g.count]).sort(), [
          ["Administrator", 1],
          ["Project manager", 1],
          ["Sales manager", 2],
        ]);
      });

      it("aggregate input is checked: an unknown function, '*' with sum, more than 5 groupBy fields, an unknown body field, a field the entity does not have → 400 with the field", async () => {
        assert.equal(fails(await aggregate("deals", { aggregate: [{ field: "amount", function: "median" }] }), 400, "VALIDATION_ERROR").param, "aggregate[0].function");
        assert.equal(fails(await aggregate("deals", { aggregate: [{ field: "*", function: "sum" }] }), 400, "VALIDATION_ERROR").param, "aggregate[0].field");
        assert.equal(fails(await aggregate("deals", { groupBy: ["a", "b", "c", "d", "e", "f"] }), 400, "VALIDATION_ERROR").param, "groupBy");
        assert.equal(fails(await aggregate("deals", { having: 1 }), 400, "VALIDATION_ERROR").param, "having");
        // reference 5.2: "non-existent field → INVALID_PARAMS" (keygate's catalog: VALIDATION_ERROR with the field).
        assert.equal(fails(await aggregate("deals", { aggregate: [{ field: "amount", function: "sum" }, { field: "nope", function: "sum" }] }), 400, "VALIDATION_ERROR").param, "aggregate[1].field");
        assert.equal(fails(await aggregate("deals", { aggregate: [{ field: "opportunity", function: "sum" }] }), 400, "VALIDATION_ERROR").param, "aggregate[0].field", "Bitrix24's name is not keygate's");
        assert.equal(fails(await aggregate("tasks", { groupBy: ["status", "nope"] }), 400, "VALIDATION_ERROR").param, "groupBy");
        assert.equal(fails(await aggregate("users", { groupBy: "WORK_POSITION" }), 400, "VALIDATION_ERROR").param, "groupBy");
        assert.equal(fails(await aggregate("deals", { filter: { amount: { $between: [1, 2] } } }), 400, "INVALID_FILTER_OPERATOR").param, "filter.amount");
      });
    });

    describe("entities: create, update, delete", () => {
      const write = (method: string, path: string, body?: unknown) => h.call(method, path, { key: writer, body });

      it('reference 5: "POST /v1/{entity} body = camelCase fields; 201" — a deal created with amount reads back with amount (Bitrix24\'s opportunity)', async () => {
        const created = ok(await write("POST", "/v1/deals", { title: "Initech: pilot", amount: 15_500, currency: "EUR", stageId: "PREPARATION", assignedById: 3 }), 201);
        assert.equal(typeof created.id, "number");
        assert.equal(created.title, "Initech: pilot");
        assert.equal(created.amount, 15_500);
        assert.equal(created.currency, "EUR");
        assert.equal(created.stageId, "PREPARATION");
        assert.ok(!("opportunity" in created), JSON.stringify(created));
        const read = ok(await h.call("GET", `/v1/deals/${created.id}`, { key: writer }));
        assert.equal(read.amount, 15_500);
        assert.equal(read.currency, "EUR");
        const found = listed(await h.call("GET", `/v1/deals?filter[amount]=15500`, { key: writer }));
        assert.deepEqual(ids(found.items), [created.id]);
      });

      it('reference 5: "PATCH /v1/{entity}/{id} partial update" and "DELETE /v1/{entity}/{id}" — deals', async () => {
        const { id } = ok(await write("POST", "/v1/deals", { title: "To change", amount: 1_000 }), 201);
        const changed = ok(await write("PATCH", `/v1/deals/${id}`, { amount: 2_500, stageId: "WON" }));
        assert.equal(changed.amount, 2_500);
        assert.equal(changed.stageId, "WON");
        assert.equal(changed.title, "To change", "fields not in the body stay as they are");
        assert.equal(ok(await h.call("GET", `/v1/deals/${id}`, { key: writer })).amount, 2_500);
        assert.deepEqual(ok(await write("DELETE", `/v1/deals/${id}`)), { id, deleted: true });
        fails(await h.call("GET", `/v1/deals/${id}`, { key: writer }), 404, "ENTITY_NOT_FOUND");
      });

      it('reference 5: "order (?order[createdAt]=desc)" and "Dates as 2026-01-01T00:00:00" — createdAt (Bitrix24\'s createdTime) orders and filters', async () => {
        const t0 = h.clock.now;
        const older = ok(await write("POST", "/v1/deals", { title: "Timed: older" }), 201);
        h.clock.advance(60 * MINUTE);
        const newer = ok(await write("POST", "/v1/deals", { title: "Timed: newer" }), 201);
        assert.ok(Date.parse(newer.createdAt) > Date.parse(older.createdAt), `${older.createdAt} → ${newer.createdAt}`);
        const timed = (q: string) => h.call("GET", `/v1/deals?filter[title][$contains]=Timed&${q}`, { key: writer });
        assert.deepEqual(ids(listed(await timed("order[createdAt]=desc")).items), [newer.id, older.id]);
        assert.deepEqual(ids(listed(await timed("order[createdAt]=asc")).items), [older.id, newer.id]);
        const half = new Date(t0 + 30 * MINUTE).toISOString().slice(0, 19);
        assert.deepEqual(ids(listed(await timed(`filter[createdAt][$gte]=${half}`)).items), [newer.id]);
        assert.deepEqual(ids(listed(await post("/v1/deals/search", { filter: { "<createdAt": half, "%title": "Timed" } })).items), [older.id]);
      });

      it("contacts, companies, leads: create (201), update, delete", async () => {
        const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
          ["contacts", { name: "Vera", lastName: "Zaitseva", post: "Buyer", companyId: 2 }, { post: "Head of purchasing" }],
          ["companies", { title: "Umbrella Pharma", revenue: 900_000, industry: "OTHER" }, { revenue: 950_000 }],
          ["leads", { title: "Referral", name: "Yuri", amount: 12_000, sourceId: "WEB" }, { amount: 13_000 }],
        ];
        for (const [entity, fields, patch] of cases) {
          const created = ok(await write("POST", `/v1/${entity}`, fields), 201);
          for (const [k, v] of Object.entries(fields)) assert.equal(created[k], v, `${entity}.${k}`);
          const changed = ok(await write("PATCH", `/v1/${entity}/${created.id}`, patch));
          for (const [k, v] of Object.entries(patch)) assert.equal(changed[k], v, `${entity}.${k} after PATCH`);
          assert.equal(ok(await h.call("GET", `/v1/${entity}/${created.id}`, { key: writer }))[Object.keys(patch)[0]!], Object.values(patch)[0]);
          assert.equal(ok(await write("DELETE", `/v1/${entity}/${created.id}`)).deleted, true);
          fails(await h.call("GET", `/v1/${entity}/${created.id}`, { key: writer }), 404, "ENTITY_NOT_FOUND");
        }
      });

      it("tasks: create with camelCase fields (title, responsibleId, priority), complete with PATCH {status: 5}, delete", async () => {
        const created = ok(await write("POST", "/v1/tasks", { title: "Check the Initech pilot", responsibleId: 3, priority: 2, deadline: "2026-12-01T10:00:00" }), 201);
        assert.equal(created.title, "Check the Initech pilot");
        assert.equal(String(created.responsibleId), "3");
        assert.equal(String(created.priority), "2");
        assert.equal(String(created.status), "2");
        assert.match(String(created.deadline), /^2026-12-01T10:00:00/);
        const done = ok(await write("PATCH", `/v1/tasks/${created.id}`, { status: 5 }));
        assert.equal(String(done.status), "5");
        assert.ok(done.closedAt, `completing sets the closing date: ${JSON.stringify(done)}`);
        assert.equal(ok(await h.call("GET", `/v1/tasks/${created.id}`, { key: writer })).title, "Check the Initech pilot");
        assert.equal(ok(await write("DELETE", `/v1/tasks/${created.id}`)).deleted, true);
        fails(await h.call("GET", `/v1/tasks/${created.id}`, { key: writer }), 404, "ENTITY_NOT_FOUND");
      });

      it("users: create (201) and update; there is no DELETE /v1/users/:id (405 METHOD_NOT_ALLOWED since issue 11.2: Bitrix24 has no user.delete)", async () => {
        const created = ok(await write("POST", "/v1/users", { name: "Egor", lastName: "Belov", email: "egor.belov@sandbox.example", departmentIds: [2], position: "Intern" }), 201);
        assert.equal(created.name, "Egor");
        assert.equal(created.email, "egor.belov@sandbox.example");
        assert.equal(created.position, "Intern");
        const changed = ok(await write("PATCH", `/v1/users/${created.id}`, { position: "Sales manager" }));
        assert.equal(changed.position, "Sales manager");
        assert.equal(changed.name, "Egor");
        const before = listed(await h.call("GET", "/v1/users", { key: writer })).meta.total;
        fails(await write("DELETE", `/v1/users/${created.id}`), 405, "METHOD_NOT_ALLOWED");
        fails(await write("DELETE", "/v1/users/2"), 405, "METHOD_NOT_ALLOWED");
        assert.equal(listed(await h.call("GET", "/v1/users", { key: writer })).meta.total, before);
      });

      it('reference 5: "limit>50 → server-side auto-pagination in pages of 50" — with more than 50 deals, one list reads several Bitrix24 pages', async () => {
        const portal = await sandboxPortal(h);
        const key = (await makeKey(h, portal, { scopes: ["crm"] })).raw;
        // 50 more deals in one batch: 56 with the seeded ones.
        const calls = Array.from({ length: 50 }, (_, i) => ({ id: `d${i}`, entity: "deals", action: "create", params: { title: `Bulk ${i}`, amount: 1_000 + i } }));
        const batch = ok(await h.call("POST", "/v1/batch", { key, body: { calls } }));
        assert.deepEqual(batch.errors, {});
        assert.equal(Object.keys(batch.results).length, 50);
        fresh(h);
        const all = listed(await h.call("GET", "/v1/deals?limit=100", { key }));
        assert.equal(all.items.length, 56);
        assert.deepEqual(ids(all.items), Array.from({ length: 56 }, (_, i) => i + 1));
        assert.deepEqual(all.meta, { total: 56, hasMore: false });
        const first = listed(await h.call("GET", "/v1/deals", { key }));
        assert.equal(first.items.length, 50, "the default limit is 50");
        assert.deepEqual(first.meta, { total: 56, hasMore: true });
        const window = listed(await h.call("GET", "/v1/deals?limit=51&offset=2", { key }));
        assert.deepEqual(ids(window.items), Array.from({ length: 51 }, (_, i) => i + 3));
        assert.deepEqual(window.meta, { total: 56, hasMore: true });
        const desc = listed(await h.call("GET", "/v1/deals?limit=60&order[amount]=desc&select=amount", { key }));
        const got = desc.items.map((d) => d.amount);
        assert.equal(got.length, 56);
        assert.deepEqual(got, [...got].sort((a, b) => b - a), "one order across the pages");
        const searched = listed(await h.call("POST", "/v1/deals/search", { key, body: { filter: { "<amount": 2_000 }, limit: 5000 } }));
        assert.equal(searched.items.length, 50);
        assert.deepEqual(searched.meta, { total: 50, hasMore: false });
        const agg = ok(await h.call("POST", "/v1/deals/aggregate", { key, body: { aggregate: [{ field: "amount", function: "sum" }] } }));
        assert.equal(agg.count, 56);
        assert.equal(agg.aggregates.amount.sum, sum(DEALS.map((d) => d.amount)) + sum(Array.from({ length: 50 }, (_, i) => 1_000 + i)));
      });
    });

    describe("scopes on the data plane", () => {
      it('reference 5.4: "deals | crm" — a crm key reads and writes CRM entities; without crm → 403 SCOPE_DENIED', async () => {
        const crm = (await makeKey(h, readPortal, { scopes: ["crm"] })).raw;
        for (const entity of ["deals", "contacts", "companies", "leads"]) ok(await get(`/v1/${entity}`, crm));
        const im = (await makeKey(h, readPortal, { scopes: ["im"] })).raw;
        for (const entity of ["deals", "contacts", "companies", "leads"]) {
          const e = fails(await get(`/v1/${entity}`, im), 403, "SCOPE_DENIED");
          assert.equal(e.details.requiredScope, "crm");
        }
        fails(await post("/v1/deals", { title: "x" }, im), 403, "SCOPE_DENIED");
        fails(await post("/v1/deals/aggregate", {}, im), 403, "SCOPE_DENIED");
        fails(await get("/v1/tasks", crm), 403, "SCOPE_DENIED");
        fails(await get("/v1/users", crm), 403, "SCOPE_DENIED");
      });

      it('seed 000: "task — Tasks. To work with tasks, select together with tasks" — a key with only task (or only tasks) → 403 SCOPE_DENIED on /v1/tasks; with both it reads them', async () => {
        const onlyTask = (await makeKey(h, readPortal, { scopes: ["task"] })).raw;
        const e = fails(await get("/v1/tasks", onlyTask), 403, "SCOPE_DENIED");
        assert.ok(e.details.missing.includes("tasks"), JSON.stringify(e));
        fails(await get("/v1/tasks/1", onlyTask), 403, "SCOPE_DENIED");
        fails(await post("/v1/tasks/search", {}, onlyTask), 403, "SCOPE_DENIED");
        const onlyTasks = (await makeKey(h, readPortal, { scopes: ["tasks"] })).raw;
        fails(await get("/v1/tasks", onlyTasks), 403, "SCOPE_DENIED");
        const both = (await makeKey(h, readPortal, { scopes: ["task", "tasks"] })).raw;
        assert.equal(listed(await get("/v1/tasks", both)).meta.total, 4);
      });

      it("users are readable with user_basic (list, one, fields, search, aggregate); writing them needs user → 403 SCOPE_DENIED", async () => {
        const basic = (await makeKey(h, readPortal, { scopes: ["user_basic"] })).raw;
        assert.equal(listed(await get("/v1/users", basic)).meta.total, 4);
        assert.equal(ok(await get("/v1/users/1", basic)).name, "Anna");
        ok(await get("/v1/users/fields", basic));
        ok(await post("/v1/users/search", {}, basic));
        assert.equal(ok(await post("/v1/users/aggregate", {}, basic)).count, 4);
        fails(await h.call("PATCH", "/v1/users/2", { key: basic, body: { position: "x" } }), 403, "SCOPE_DENIED");
        fails(await post("/v1/users", { name: "x" }, basic), 403, "SCOPE_DENIED");
        fails(await get("/v1/deals", basic), 403, "SCOPE_DENIED");
      });

      it('seed 003: "If you add a Bitrix24 scope in the settings of an already-existing key … requests that need it will return BITRIX_ACCESS_DENIED" — until the key is reissued; the reissued key reads the data', async () => {
        const old = await makeKey(h, readPortal, { scopes: ["crm"] });
        const view = await patchKey(h, old.id, { scopes: ["crm", "task", "tasks"] });
        assert.deepEqual([...view.scopesPendingReissue].sort(), ["task", "tasks"]);
        const me = ok(await get("/v1/me", old.raw));
        assert.ok(me.scopes.includes("task") && me.scopes.includes("tasks"), "GET /v1/me will show it in the list");
        const denied = fails(await get("/v1/tasks", old.raw), 403, "BITRIX_ACCESS_DENIED");
        assert.ok(/task/.test(denied.details.requiredScope), JSON.stringify(denied));
        const inBatch = ok(await post("/v1/batch", { calls: [{ id: "t", entity: "tasks", action: "list" }] }, old.raw));
        assert.equal(inBatch.errors.t.code, "BITRIX_ACCESS_DENIED", "a batch call meets the same lock");
        ok(await get("/v1/deals", old.raw));
        const rotated = ok(await h.call("POST", `/v1/keys/${old.id}/rotate`, { key: h.owner.key }), 201);
        const { items, meta } = listed(await get("/v1/tasks", rotated.rawKey));
        assert.equal(meta.total, 4);
        assert.equal(items[0].title, "Prepare the Northwind proposal");
        fails(await get("/v1/tasks", old.raw), 403, "BITRIX_ACCESS_DENIED");
      });
    });

    describe("read-only keys (seed 003 Access mode)", () => {
      let ro: string;
      let roName: string;
      before(async () => {
        roName = "Read-only dashboard";
        ro = (await makeKey(h, writePortal, { name: roName, scopes: ALL, accessMode: "READONLY" })).raw;
      });

      /** What the sandbox of the write portal holds: every entity's records, and what was sent. */
      const snapshot = async () => {
        const out: Record<string, unknown> = {};
        for (const type of ["crm:1", "crm:2", "crm:3", "crm:4", "task", "user", "im.notify", "im.message", "log.blogpost"]) {
          out[type] = (await h.store.listSandboxItems(writePortal, type)).map((i) => [i.id, i.fields, i.updatedAt]);
        }
        return out;
      };

      it('seed 003: "any request proxied to Bitrix24 as a write operation is blocked: create, update, delete" — 403 WRITE_BLOCKED_READONLY_KEY with details {method, keyName, currentMode, switchUrl}, and nothing changes upstream', async () => {
        const before = await snapshot();
        const listedBefore = listed(await get("/v1/deals", writer)).items;
        const writes: [string, string, unknown, string][] = [
          ["POST", "/v1/deals", { title: "blocked", amount: 1 }, "crm.item.add"],
          ["PATCH", "/v1/deals/1", { amount: 1 }, "crm.item.update"],
          ["DELETE", "/v1/deals/1", undefined, "crm.item.delete"],
          ["POST", "/v1/leads", { title: "blocked" }, "crm.item.add"],
          ["PATCH", "/v1/contacts/1", { post: "x" }, "crm.item.update"],
          ["DELETE", "/v1/companies/1", undefined, "crm.item.delete"],
          ["POST", "/v1/tasks", { title: "blocked", responsibleId: 1 }, "tasks.task.add"],
          ["PATCH", "/v1/tasks/1", { status: 5 }, "tasks.task.update"],
          ["DELETE", "/v1/tasks/1", undefined, "tasks.task.delete"],
          ["POST", "/v1/users", { name: "x", email: "x@sandbox.example", departmentIds: [1] }, "user.add"],
          ["PATCH", "/v1/users/2", { position: "x" }, "user.update"],
          ["POST", "/v1/notifications", { userId: 2, message: "blocked" }, "im.notify.system.add"],
          ["POST", "/v1/chats/chat1/messages", { message: "blocked" }, "im.message.add"],
          ["POST", "/v1/posts", { message: "blocked" }, "log.blogpost.add"],
        ];
        for (const [method, path, body, upstreamMethod] of writes) {
          const e = fails(await h.call(method, path, { key: ro, body }), 403, "WRITE_BLOCKED_READONLY_KEY");
          assert.deepEqual(e.details, { method: upstreamMethod, keyName: roName, currentMode: "READONLY", switchUrl: "/keys" }, `${method} ${path}`);
        }
        assert.deepEqual(await snapshot(), before, "nothing changed in the sandbox");
        assert.deepEqual(listed(await get("/v1/deals", writer)).items, listedBefore);
      });

      it('seed 003: "GET requests and aggregation operations (POST /v1/<entity>/aggregate) run without restrictions" — and search', async () => {
        const before = await snapshot();
        assert.ok(listed(await get("/v1/deals", ro)).items.length > 0);
        ok(await get("/v1/deals/1", ro));
        ok(await get("/v1/deals/fields", ro));
        ok(await get("/v1/tasks", ro));
        ok(await get("/v1/users/1", ro));
        ok(await post("/v1/deals/search", { filter: { ">=amount": 50_000 } }, ro));
        ok(await post("/v1/tasks/search", {}, ro));
        assert.ok(ok(await post("/v1/deals/aggregate", { aggregate: [{ field: "amount", function: "sum" }] }, ro)).count > 0);
        ok(await post("/v1/users/aggregate", {}, ro));
        assert.deepEqual(await snapshot(), before);
      });

      it('seed 003: "The details.method field is present only in the response to a block when proxying to Bitrix24" — the mode applies to the next request: READWRITE writes again', async () => {
        const k = await makeKey(h, writePortal, { name: "Switching", scopes: ["crm"], accessMode: "READONLY" });
        fails(await post("/v1/deals", { title: "no" }, k.raw), 403, "WRITE_BLOCKED_READONLY_KEY");
        await patchKey(h, k.id, { accessMode: "READWRITE" });
        const created = ok(await post("/v1/deals", { title: "yes", amount: 3 }, k.raw), 201);
        assert.equal(created.amount, 3);
        await patchKey(h, k.id, { accessMode: "READONLY" });
        fails(await h.call("DELETE", `/v1/deals/${created.id}`, { key: k.raw }), 403, "WRITE_BLOCKED_READONLY_KEY");
        ok(await get(`/v1/deals/${created.id}`, writer));
      });
    });

    describe("key types", () => {
      it('seed 003: "Management key (vibe_live_) … It has no access to Bitrix24 entity data" → 403 MANAGEMENT_KEY_NO_ENTITY_ACCESS', async () => {
        const requests: [string, string, unknown][] = [
          ["GET", "/v1/deals", undefined],
          ["GET", "/v1/deals/1", undefined],
          ["GET", "/v1/tasks", undefined],
          ["GET", "/v1/users", undefined],
          ["POST", "/v1/deals", { title: "x" }],
          ["POST", "/v1/deals/search", {}],
          ["POST", "/v1/deals/aggregate", {}],
          ["POST", "/v1/batch", { calls: [{ entity: "deals", action: "list" }] }],
          ["POST", "/v1/notifications", { userId: 1, message: "x" }],
        ];
        for (const [method, path, body] of requests) fails(await h.call(method, path, { key: h.owner.key, body }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      });

      it('seed 003: "If Authorization: Bearer is not passed for a vibe_app_ key, endpoints that need user context return 401 TOKEN_MISSING"', async () => {
        const app = (await makeKey(h, readPortal, { type: "app", name: "CRM Dashboard", scopes: ALL })).raw;
        for (const [method, path, body] of [
          ["GET", "/v1/deals", undefined],
          ["GET", "/v1/users/1", undefined],
          ["POST", "/v1/tasks/search", {}],
          ["POST", "/v1/deals/aggregate", {}],
          ["POST", "/v1/batch", { calls: [{ entity: "deals", action: "list" }] }],
          ["POST", "/v1/posts", { message: "x" }],
        ] as const) {
          fails(await h.call(method, path, { key: app, body }), 401, "TOKEN_MISSING");
        }
        ok(await get("/v1/me", app), 200);
      });
    });

    describe("upstream failures", () => {
      it('issue: unknown record → 404 ENTITY_NOT_FOUND (get, update and delete of deals; get of tasks and users)', async () => {
        for (const path of ["/v1/deals/999", "/v1/contacts/999", "/v1/companies/999", "/v1/leads/999", "/v1/tasks/999", "/v1/users/999"]) {
          fails(await get(path), 404, "ENTITY_NOT_FOUND");
        }
        fails(await h.call("PATCH", "/v1/deals/999", { key: writer, body: { amount: 1 } }), 404, "ENTITY_NOT_FOUND");
        fails(await h.call("DELETE", "/v1/deals/999", { key: writer }), 404, "ENTITY_NOT_FOUND");
      });

      it("issue: bad input → 400 with the field: a non-numeric id, an unknown query parameter, a bad limit or order, an unknown filter operator, an unknown field, a value Bitrix24 refuses", async () => {
        assert.equal(fails(await get("/v1/deals/abc"), 400, "VALIDATION_ERROR").param, "id");
        assert.equal(fails(await get("/v1/tasks/1x"), 400, "VALIDATION_ERROR").param, "id");
        assert.equal(fails(await h.call("PATCH", "/v1/deals/abc", { key: writer, body: { amount: 1 } }), 400, "VALIDATION_ERROR").param, "id");
        assert.equal(fails(await h.call("DELETE", "/v1/deals/-1", { key: writer }), 400, "VALIDATION_ERROR").param, "id");
        assert.equal(fails(await get("/v1/deals?pageSize=5"), 400, "VALIDATION_ERROR").param, "pageSize");
        assert.equal(fails(await get("/v1/deals?limit=0"), 400, "VALIDATION_ERROR").param, "limit");
        assert.equal(fails(await get("/v1/deals?limit=5001"), 400, "VALIDATION_ERROR").param, "limit");
        assert.equal(fails(await get("/v1/deals?limit=ten"), 400, "VALIDATION_ERROR").param, "limit");
        assert.equal(fails(await get("/v1/deals?offset=-1"), 400, "VALIDATION_ERROR").param, "offset");
        assert.equal(fails(await get("/v1/deals?order[amount]=up"), 400, "VALIDATION_ERROR").param, "order.amount");
        assert.equal(fails(await get("/v1/deals?filter[amount][$from]=1"), 400, "INVALID_FILTER_OPERATOR").param, "filter.amount");
        assert.equal(fails(await post("/v1/deals/search", { filter: { createdAt: { from: "2026-01-01", to: "2026-02-01" } } }, reader), 400, "INVALID_FILTER_OPERATOR").param, "filter.createdAt");
        assert.equal(fails(await post("/v1/deals/search", { filters: {} }, reader), 400, "VALIDATION_ERROR").param, "filters");
        assert.equal(fails(await post("/v1/deals/search", { limit: "all" }, reader), 400, "VALIDATION_ERROR").param, "limit");
        // Refused by Bitrix24 (the sandbox): an unknown filter field, a value of the wrong type.
        assert.equal(fails(await get("/v1/deals?filter[nope]=1"), 400, "VALIDATION_ERROR").param, "nope");
        const bad = fails(await post("/v1/deals", { title: "x", amount: "lots" }), 400, "VALIDATION_ERROR");
        assert.equal(bad.details.error, "CRM_FIELD_ERROR_VALUE_NOT_VALID");
        assert.ok(bad.param, `the field is named: ${JSON.stringify(bad)}`);
        const noTitle = fails(await post("/v1/tasks", { responsibleId: 1 }), 400, "VALIDATION_ERROR");
        assert.equal(noTitle.details.method, "tasks.task.add");
      });

      it('seed 003: "The portal rate-limits requests … On exceeding it, 502 BITRIX_UNAVAILABLE" — Bitrix24\'s own limit (a burst of 50, then 2/s), with keygate\'s portal budget raised out of the way', async () => {
        const portal = await sandboxPortal(h, { requestLimit: 10_000 });
        const key = (await makeKey(h, portal, { scopes: ["crm"] })).raw;
        const replies = await Promise.all(Array.from({ length: 60 }, () => h.call("GET", "/v1/deals/1", { key })));
        const passed = replies.filter((r) => r.status === 200);
        const refused = replies.filter((r) => r.status !== 200);
        assert.equal(passed.length, 50, "the sandbox's burst");
        assert.equal(refused.length, 10);
        for (const r of refused) {
          const e = fails(r, 502, "BITRIX_UNAVAILABLE");
          assert.equal(e.details.error, "QUERY_LIMIT_EXCEEDED");
        }
        // The bucket drains 2 per second (the harness clock): one second on, two more pass.
        h.clock.advance(1_000);
        ok(await h.call("GET", "/v1/deals/1", { key }));
        ok(await h.call("GET", "/v1/deals/1", { key }));
        fails(await h.call("GET", "/v1/deals/1", { key }), 502, "BITRIX_UNAVAILABLE");
        // Another portal has its own bucket.
        ok(await get("/v1/deals/1"));
      });

      it('seed 003: "by default about 10 requests per second, the limit is shared among all of the portal\'s keys … 502 BITRIX_UNAVAILABLE" — keygate\'s portal budget answers before the sandbox', async () => {
        const portal = await sandboxPortal(h, { requestLimit: null });
        const a = (await makeKey(h, portal, { scopes: ["crm"] })).raw;
        const b = (await makeKey(h, portal, { scopes: ["crm"] })).raw;
        for (let i = 0; i < 5; i++) ok(await h.call("GET", "/v1/deals/1", { key: a }));
        for (let i = 0; i < 5; i++) ok(await h.call("GET", "/v1/deals/1", { key: b }));
        const e = limited(await h.call("GET", "/v1/deals/1", { key: a }), 502, "BITRIX_UNAVAILABLE");
        assert.deepEqual(e.details, { reason: "portal_budget" }, `keygate's refusal, not the sandbox's: ${JSON.stringify(e)}`);
        limited(await h.call("GET", "/v1/deals", { key: b }), 502, "BITRIX_UNAVAILABLE");
        limited(await h.call("POST", "/v1/batch", { key: b, body: { calls: [{ entity: "deals", action: "list" }] } }), 502, "BITRIX_UNAVAILABLE");
        ok(await h.call("GET", "/v1/me", { key: a }), 200);
        // A sliding one-second window: two seconds on, it is empty again.
        h.clock.advance(2_000);
        ok(await h.call("GET", "/v1/deals/1", { key: a }));
      });

      it("issue: a portal linked to an unreachable Bitrix24 webhook → 502 BITRIX_UNAVAILABLE, without the webhook's token", async () => {
        const portal = await sandboxPortal(h);
        const key = (await makeKey(h, portal, { scopes: ["crm", "im"] })).raw;
        ok(await h.call("GET", "/v1/deals/1", { key }));
        const token = "s3cr3tW3bh00kT0k3n";
        const port = await freePort();
        ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { upstream: { kind: "bitrix24", webhookUrl: `http://127.0.0.1:${port}/rest/1/${token}/` } } }));
        for (const r of [
          await h.call("GET", "/v1/deals", { key }),
          await h.call("GET", "/v1/deals/1", { key }),
          await h.call("POST", "/v1/deals", { key, body: { title: "x" } }),
          await h.call("POST", "/v1/notifications", { key, body: { userId: 1, message: "x" } }),
        ]) {
          fails(r, 502, "BITRIX_UNAVAILABLE");
          assert.ok(!/ECONNREFUSED|unreachable|cause/.test(JSON.stringify(r.body)), `the connection's low-level cause leaked: ${show(r)}`);
          assert.ok(!JSON.stringify(r.body).includes(token), `the token leaked: ${show(r)}`);
        }
        const batch = ok(await h.call("POST", "/v1/batch", { key, body: { calls: [{ id: "a", entity: "deals", action: "list" }] } }));
        assert.equal(batch.errors.a.code, "BITRIX_UNAVAILABLE");
        assert.ok(!JSON.stringify(batch).includes(token));
        // Linked back to the sandbox, the same key reads again.
        ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { upstream: { kind: "sandbox" } } }));
        assert.equal(ok(await h.call("GET", "/v1/deals/1", { key })).id, 1);
      });

      it("issue: unknown record → 404 ENTITY_NOT_FOUND also for tasks and users, which Bitrix24 refuses to update or delete as not allowed (it does not tell missing from forbidden)", async () => {
        for (const [method, path, body] of [
          ["PATCH", "/v1/tasks/999", { title: "x" }],
          ["DELETE", "/v1/tasks/999", undefined],
          ["PATCH", "/v1/users/999", { position: "x" }],
          ["PATCH", "/v1/contacts/999", { post: "x" }],
          ["DELETE", "/v1/leads/999", undefined],
        ] as const) {
          fails(await h.call(method, path, { key: writer, body }), 404, "ENTITY_NOT_FOUND");
        }
        const data = ok(await post("/v1/batch", { calls: [{ id: "t", entity: "tasks", action: "delete", entityId: 999 }] }));
        assert.equal(data.errors.t.code, "ENTITY_NOT_FOUND");
      });

      it("docs/upstreams.md: the portal's webhook lacks the scope (insufficient_scope) → 403 BITRIX_ACCESS_DENIED, in a batch call too", async () => {
        const portal = await sandboxPortal(h);
        const key = (await makeKey(h, portal, { scopes: ALL })).raw;
        // The sandbox webhook keygate uses, given only crm.
        await createSandbox(h.store, portal, { token: sandboxWebhookToken(h.kg.serverSecret, portal), scopes: ["crm"] });
        ok(await h.call("GET", "/v1/deals/1", { key }));
        const e = fails(await h.call("GET", "/v1/tasks", { key }), 403, "BITRIX_ACCESS_DENIED");
        assert.equal(e.details.error, "insufficient_scope");
        fails(await h.call("POST", "/v1/notifications", { key, body: { userId: 1, message: "x" } }), 403, "BITRIX_ACCESS_DENIED");
        const data = ok(await h.call("POST", "/v1/batch", { key, body: { calls: [{ id: "t", entity: "tasks", action: "get", entityId: 1 }, { id: "d", entity: "deals", action: "get", entityId: 1 }] } }));
        assert.equal(data.errors.t.code, "BITRIX_ACCESS_DENIED");
        assert.equal(data.results.d.id, 1);
      });

      it("a BITRIX_ACCESS_DENIED from Bitrix24 itself does not carry the issue-time-lock hint (\"Rotate the key …\"), which cannot help", async () => {
        const portal = await sandboxPortal(h);
        const key = (await makeKey(h, portal, { scopes: ALL })).raw;
        await createSandbox(h.store, portal, { token: sandboxWebhookToken(h.kg.serverSecret, portal), scopes: ["crm"] });
        const e = fails(await h.call("GET", "/v1/tasks", { key }), 403, "BITRIX_ACCESS_DENIED");
        assert.ok(!/rotate/i.test(e.hint ?? ""), `the hint tells to rotate the key, which changes nothing here: ${e.hint}`);
      });
    });

    describe("POST /v1/batch", () => {
      const batch = (calls: unknown, key = reader) => h.call("POST", "/v1/batch", { key, body: { calls } });

      it('reference 5.3: "1–50 calls" — 0 or 51 calls (or no list) → 400 VALIDATION_ERROR', async () => {
        assert.equal(fails(await batch([]), 400, "VALIDATION_ERROR").param, "calls");
        assert.equal(fails(await batch(Array.from({ length: 51 }, () => ({ entity: "deals", action: "list" }))), 400, "VALIDATION_ERROR").param, "calls");
        assert.equal(fails(await batch({ a: 1 }), 400, "VALIDATION_ERROR").param, "calls");
        assert.equal(fails(await h.call("POST", "/v1/batch", { key: reader, body: {} }), 400, "VALIDATION_ERROR").param, "calls");
        assert.equal(fails(await batch([{ entity: "deals", action: "explode" }]), 400, "VALIDATION_ERROR").param, "calls[0].action");
        assert.equal(fails(await batch([{ id: "x", entity: "deals", action: "list" }, { id: "x", entity: "deals", action: "list" }]), 400, "VALIDATION_ERROR").param, "calls[1].id");
        const fifty = ok(await batch(Array.from({ length: 50 }, (_, i) => ({ entity: "deals", action: "get", entityId: (i % 6) + 1 }))));
        assert.equal(Object.keys(fifty.results).length, 50);
        assert.equal(fifty.results["49"].id, (49 % 6) + 1, 'ids default to "0", "1", …');
      });

      it('reference 5.3: "entityId required for get/update/delete at call level (params.id → whole batch 400, MISSING_ENTITY_ID)"', async () => {
        const before = (await h.store.listSandboxItems(writePortal, "crm:3")).length;
        for (const action of ["get", "update", "delete"]) {
          const calls = [
            { id: "add", entity: "contacts", action: "create", params: { name: "Not created" } },
            { id: "x", entity: "deals", action, params: { id: 1 } },
          ];
          const e = fails(await batch(calls, writer), 400, "MISSING_ENTITY_ID");
          assert.equal(e.param, "calls[1].entityId");
        }
        fails(await batch([{ entity: "deals", action: "get", entityId: "" }]), 400, "MISSING_ENTITY_ID");
        fails(await batch([{ entity: "deals", action: "delete", entityId: null }], writer), 400, "MISSING_ENTITY_ID");
        assert.equal((await h.store.listSandboxItems(writePortal, "crm:3")).length, before, "no call of a refused batch ran");
      });

      it('reference 5.3: "Scope checked per entity" — a crm-only key\'s tasks call is answered in data.errors.<id> with SCOPE_DENIED; its deals calls in data.results.<id>, lists with data.meta.<id> (one Bitrix24 page, nextOffset when there is more)', async () => {
        const crm = (await makeKey(h, readPortal, { scopes: ["crm"] })).raw;
        const data = ok(
          await batch(
            [
              { id: "open", entity: "deals", action: "list", params: { filter: { stageSemanticId: "P" }, limit: 2 } },
              { id: "one", entity: "deals", action: "get", entityId: 4 },
              { id: "big", entity: "deals", action: "search", params: { filter: { ">=amount": 100_000 } } },
              { id: "fields", entity: "companies", action: "fields" },
              { id: "todo", entity: "tasks", action: "list" },
              { id: "people", entity: "users", action: "get", entityId: 1 },
            ],
            crm,
          ),
        );
        assert.deepEqual(ids(data.results.open), [1, 2]);
        assert.deepEqual(data.meta.open, { total: 4, hasMore: true, nextOffset: 2 });
        assert.equal(data.results.one.title, "Globex: store fit-out");
        assert.ok(!("one" in data.meta), "no meta for a single record");
        assert.deepEqual(ids(data.results.big), [1, 4]);
        assert.deepEqual(data.meta.big, { total: 2, hasMore: false });
        assert.ok("title" in data.results.fields);
        assert.equal(data.errors.todo.code, "SCOPE_DENIED");
        assert.equal(data.errors.people.code, "SCOPE_DENIED");
        assert.ok(!("todo" in data.results) && !("people" in data.results));
        assert.deepEqual(Object.keys(data.errors).sort(), ["people", "todo"]);
      });

      it('seed 003 + reference 5.3: a read-only key\'s create call is blocked in data.errors with WRITE_BLOCKED_READONLY_KEY (details.method crm.item.add) while its list call succeeds', async () => {
        const ro = await makeKey(h, writePortal, { name: "RO batch", scopes: ALL, accessMode: "READONLY" });
        const before = (await h.store.listSandboxItems(writePortal, "crm:2")).length;
        const data = ok(
          await batch(
            [
              { id: "add", entity: "deals", action: "create", params: { title: "blocked" } },
              { id: "upd", entity: "tasks", action: "update", entityId: 1, params: { status: 5 } },
              { id: "del", entity: "deals", action: "delete", entityId: 1 },
              { id: "list", entity: "deals", action: "list", params: { limit: 1 } },
            ],
            ro.raw,
          ),
        );
        assert.equal(data.errors.add.code, "WRITE_BLOCKED_READONLY_KEY");
        assert.deepEqual(data.errors.add.details, { method: "crm.item.add", keyName: "RO batch", currentMode: "READONLY", switchUrl: "/keys" });
        assert.equal(data.errors.upd.details.method, "tasks.task.update");
        assert.equal(data.errors.del.details.method, "crm.item.delete");
        assert.equal(data.results.list.length, 1);
        assert.equal(data.meta.list.total, before);
        assert.equal((await h.store.listSandboxItems(writePortal, "crm:2")).length, before);
        assert.equal(String(ok(await get("/v1/tasks/1", writer)).status), "2");
      });

      it('reference 5.3: "Calls independent (one failing call doesn\'t cancel others)" — an unknown id fails alone; creates, updates and deletes run (Bitrix24\'s halt 0)', async () => {
        const data = ok(
          await batch(
            [
              { id: "missing", entity: "deals", action: "get", entityId: 999 },
              { id: "new", entity: "contacts", action: "create", params: { name: "Batch", lastName: "Contact" } },
              { id: "upd", entity: "companies", action: "update", entityId: 2, params: { revenue: 500_000 } },
              { id: "one", entity: "deals", action: "get", entityId: 2 },
            ],
            writer,
          ),
        );
        assert.equal(data.errors.missing.code, "ENTITY_NOT_FOUND");
        assert.deepEqual(Object.keys(data.errors), ["missing"]);
        assert.equal(data.results.new.lastName, "Contact");
        assert.equal(data.results.upd.revenue, 500_000);
        assert.equal(data.results.one.id, 2);
        assert.equal(ok(await get(`/v1/contacts/${data.results.new.id}`, writer)).name, "Batch");
        const gone = ok(await batch([{ id: "d", entity: "contacts", action: "delete", entityId: data.results.new.id }], writer));
        assert.equal(gone.results.d.deleted, true);
        fails(await get(`/v1/contacts/${data.results.new.id}`, writer), 404, "ENTITY_NOT_FOUND");
      });

      it('seed 003: "One POST /v1/batch with 50 operations spends one unit" — X-RateLimit-Remaining drops by exactly one (the platform limit, and the portal budget)', async () => {
        const key = (await makeKey(h, readPortal, { scopes: ["crm"] })).raw;
        const calls = Array.from({ length: 20 }, () => ({ entity: "deals", action: "get", entityId: 1 }));
        const first = await batch(calls, key);
        ok(first);
        const second = await batch(calls, key);
        ok(second);
        const [a, b] = [rateHeaders(first), rateHeaders(second)];
        assert.match(a.rateLimit, /^"platform"/, a.rateLimit);
        assert.equal(a.remaining, 299);
        assert.equal(b.remaining, a.remaining - 1);
        // On a portal with VibeCode's default budget (10/s), that budget is the tightest: one unit a batch.
        const portal = await sandboxPortal(h, { requestLimit: null });
        const pk = (await makeKey(h, portal, { scopes: ["crm"] })).raw;
        ok(await batch(calls.slice(0, 10), pk));
        const p1 = rateHeaders(await batch(calls.slice(0, 10), pk));
        assert.match(p1.rateLimit, /^"portal"/, p1.rateLimit);
        assert.equal(p1.remaining, 8, "two batches of 10 calls: two units of 10");
        const p2 = rateHeaders(await batch(calls, pk));
        assert.equal(p2.remaining, 7);
        // A key's own limit (rateLimit: 3 per second) the same.
        const kk = (await makeKey(h, readPortal, { scopes: ["crm"], rateLimit: 3 })).raw;
        const k1 = rateHeaders(await batch(calls, kk));
        assert.match(k1.rateLimit, /^"key"/, k1.rateLimit);
        assert.equal(k1.remaining, 2);
        assert.equal(rateHeaders(await batch(calls, kk)).remaining, 1);
      });
    });

    describe("notifications, chat messages, posts", () => {
      it('reference 5.4: "notifications (POST /v1/notifications) | im.notify.*" — {userId, message} → 201 with the sandbox\'s id', async () => {
        const data = ok(await post("/v1/notifications", { userId: 2, message: "Your deal was won" }), 201);
        const sent = (await h.store.listSandboxItems(writePortal, "im.notify")).find((n) => n.id === data.id);
        assert.ok(sent, `no notification ${JSON.stringify(data)} in the sandbox`);
        assert.equal(sent.fields.USER_ID, 2);
        assert.equal(sent.fields.MESSAGE, "Your deal was won");
      });

      it('reference 5.4: "chats (POST /v1/chats/:dialogId/messages body field message) | im.*" → 201 with the sandbox\'s id', async () => {
        const data = ok(await post("/v1/chats/chat7/messages", { message: "Hello team" }), 201);
        const sent = (await h.store.listSandboxItems(writePortal, "im.message")).find((m) => m.id === data.id);
        assert.ok(sent, `no message ${JSON.stringify(data)} in the sandbox`);
        assert.equal(sent.fields.DIALOG_ID, "chat7");
        assert.equal(sent.fields.MESSAGE, "Hello team");
        const direct = ok(await post("/v1/chats/3/messages", { message: "Hi Clara" }), 201);
        assert.equal((await h.store.listSandboxItems(writePortal, "im.message")).find((m) => m.id === direct.id)?.fields.DIALOG_ID, "3");
      });

      it('reference 5.4: "posts (POST /v1/posts) | log.blogpost.*" — {message, title?} → 201; the post is in the sandbox', async () => {
        const n = (await h.store.listSandboxItems(writePortal, "log.blogpost")).length;
        ok(await post("/v1/posts", { message: "Quarter closed", title: "Sales news" }), 201);
        ok(await post("/v1/posts", { message: "No title" }), 201);
        const posts = await h.store.listSandboxItems(writePortal, "log.blogpost");
        assert.equal(posts.length, n + 2);
        assert.deepEqual(
          posts.slice(-2).map((p) => [p.fields.POST_TITLE, p.fields.POST_MESSAGE]),
          [
            ["Sales news", "Quarter closed"],
            ["", "No title"],
          ],
        );
      });

      it("issue: POST /v1/posts → 201 {posted: true} (Bitrix24's log.blogpost.add answers true, not an id), and the post is stored", async () => {
        const before = (await h.store.listSandboxItems(writePortal, "log.blogpost")).length;
        assert.deepEqual(ok(await post("/v1/posts", { message: "Posted?" }), 201), { posted: true });
        assert.equal((await h.store.listSandboxItems(writePortal, "log.blogpost")).length, before + 1);
      });

      it('seed 000: "im — chat and notifications", "log — Activity Stream" — the scope is enforced → 403 SCOPE_DENIED', async () => {
        const crm = (await makeKey(h, writePortal, { scopes: ["crm"] })).raw;
        assert.equal(fails(await post("/v1/notifications", { userId: 2, message: "x" }, crm), 403, "SCOPE_DENIED").details.requiredScope, "im");
        assert.equal(fails(await post("/v1/chats/chat1/messages", { message: "x" }, crm), 403, "SCOPE_DENIED").details.requiredScope, "im");
        assert.equal(fails(await post("/v1/posts", { message: "x" }, crm), 403, "SCOPE_DENIED").details.requiredScope, "log");
        const im = (await makeKey(h, writePortal, { scopes: ["im"] })).raw;
        ok(await post("/v1/notifications", { userId: 2, message: "im only" }, im), 201);
        fails(await post("/v1/posts", { message: "x" }, im), 403, "SCOPE_DENIED");
        const log = (await makeKey(h, writePortal, { scopes: ["log"] })).raw;
        ok(await post("/v1/posts", { message: "log only" }, log), 201);
        fails(await post("/v1/notifications", { userId: 2, message: "x" }, log), 403, "SCOPE_DENIED");
      });

      it("bad bodies → 400 VALIDATION_ERROR with the field, and nothing is sent", async () => {
        const before = [(await h.store.listSandboxItems(writePortal, "im.notify")).length, (await h.store.listSandboxItems(writePortal, "im.message")).length, (await h.store.listSandboxItems(writePortal, "log.blogpost")).length];
        const cases: [string, unknown, string | undefined][] = [
          ["/v1/notifications", {}, "userId"],
          ["/v1/notifications", { userId: 2 }, "message"],
          ["/v1/notifications", { userId: 2, message: "   " }, "message"],
          ["/v1/notifications", { message: "x" }, "userId"],
          ["/v1/notifications", { userId: 2, message: "x", urgent: true }, "urgent"],
          ["/v1/notifications", { userId: { id: 2 }, message: "x" }, "userId"],
          ["/v1/notifications", [], undefined],
          ["/v1/chats/chat1/messages", {}, "message"],
          ["/v1/chats/chat1/messages", { message: "" }, "message"],
          ["/v1/chats/chat1/messages", { message: "x", to: "y" }, "to"],
          ["/v1/posts", {}, "message"],
          ["/v1/posts", { title: "only a title" }, "message"],
          ["/v1/posts", { message: "x", dest: ["UA"] }, "dest"],
        ];
        for (const [path, body, param] of cases) {
          const e = fails(await post(path, body), 400, "VALIDATION_ERROR");
          assert.equal(e.param, param, `${path} ${JSON.stringify(body)}`);
        }
        // Refused by Bitrix24 (the sandbox): not a user id.
        fails(await post("/v1/notifications", { userId: "nobody", message: "x" }), 400, "VALIDATION_ERROR");
        fails(await post("/v1/notifications", { userId: 0, message: "x" }), 400, "VALIDATION_ERROR");
        assert.deepEqual(
          [(await h.store.listSandboxItems(writePortal, "im.notify")).length, (await h.store.listSandboxItems(writePortal, "im.message")).length, (await h.store.listSandboxItems(writePortal, "log.blogpost")).length],
          before,
        );
      });
    });

    describe("unlinked portals", () => {
      it('issue: a portal whose upstream is {kind:"http"} or none → 400 PORTAL_NOT_LINKED on entity routes', async () => {
        const portal = await sandboxPortal(h);
        const key = (await makeKey(h, portal, { scopes: ALL })).raw;
        ok(await h.call("GET", "/v1/deals", { key }));
        const requests: [string, string, unknown][] = [
          ["GET", "/v1/deals", undefined],
          ["GET", "/v1/deals/1", undefined],
          ["GET", "/v1/tasks/fields", undefined],
          ["POST", "/v1/contacts", { name: "x" }],
          ["PATCH", "/v1/leads/1", { title: "x" }],
          ["DELETE", "/v1/companies/1", undefined],
          ["POST", "/v1/users/search", {}],
          ["POST", "/v1/deals/aggregate", {}],
          ["POST", "/v1/batch", { calls: [{ entity: "deals", action: "list" }] }],
          ["POST", "/v1/notifications", { userId: 1, message: "x" }],
          ["POST", "/v1/posts", { message: "x" }],
        ];
        for (const upstream of [{ kind: "http", baseUrl: "http://127.0.0.1:9/" }, null]) {
          ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { upstream } }));
          for (const [method, path, body] of requests) {
            fails(await h.call(method, path, { key, body }), 400, "PORTAL_NOT_LINKED");
          }
        }
        ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { upstream: { kind: "sandbox" } } }));
        assert.equal(listed(await h.call("GET", "/v1/deals", { key })).meta.total, 6, "linked again: the same sandbox data");
      });
    });
  });
}
