/**
 * The sandbox portal over real HTTP (Fastify on 127.0.0.1:0), driven only through the Bitrix24
 * client: every method, lists (filters, select, order, pages of 50), errors, scopes, the request
 * limit, and batch. On both stores. Each test works on a portal of its own (fresh demo data).
 */
import assert from "node:assert/strict";
import Fastify, { type FastifyInstance } from "fastify";
import { after, before, describe, it } from "node:test";
import type { Store } from "../../src/store/store.ts";
import { type Bitrix24Client, UpstreamError, bitrix24Client, closeBitrix24Pools } from "../../src/upstream/bitrix24/index.ts";
import { INTERNAL } from "../../src/upstream/outbound.ts";
import { SANDBOX_SCOPES, createSandbox, sandboxRoutes, sandboxWebhookToken, sandboxWebhookUrl, seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { storeKinds, throwawayStore } from "../support/gateway.ts";

// Lists and records in tests are read field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const T0 = Date.parse("2026-11-22T12:00:00Z");
/** Generous: the request limit is tested on portals of its own. */
const ROOMY = { requestBurst: 100_000, requestsPerSecond: 1000 };

async function rejection(promise: Promise<unknown>, code: string, error?: string): Promise<UpstreamError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof UpstreamError, `expected UpstreamError, got ${String(e)}`);
    assert.equal(e.code, code, JSON.stringify({ message: e.message, details: e.details }));
    if (error !== undefined) assert.equal(e.details.error, error);
    return e;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

for (const kind of await storeKinds("upstream: sandbox")) {
  describe(`sandbox portal [${kind}]`, () => {
    let store: Store;
    let app: FastifyInstance;
    let base: string;
    let dropSchema = async () => {};
    const clock = { now: T0 };
    let seq = 0;

    before(async () => {
      ({ store, drop: dropSchema } = await throwawayStore(kind, "kg_sbx"));
      app = Fastify();
      await app.register(sandboxRoutes, { store, now: () => clock.now });
      await app.listen({ host: "127.0.0.1", port: 0 });
      base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    });
    after(async () => {
      await closeBitrix24Pools();
      await app.close();
      await store.close();
      await dropSchema();
    });

    /** A new portal's sandbox with demo data, and a client on its webhook. */
    async function portal(options: { scopes?: string[]; limit?: { requestBurst: number; requestsPerSecond: number }; seed?: boolean } = {}) {
      const portalId = `prt_${kind}_${++seq}`;
      const token = sandboxWebhookToken("test-secret", portalId);
      const path = await createSandbox(store, portalId, { token, limit: options.limit ?? ROOMY, scopes: options.scopes, now: () => clock.now });
      if (options.seed !== false) await seedDemoData(store, portalId, { now: () => clock.now });
      const url = `${base}${path}`;
      assert.equal(url, sandboxWebhookUrl(base, portalId, token));
      return { portalId, token, url, b24: bitrix24Client(url, { timeoutMs: 5000, outbound: INTERNAL }) };
    }

    const deals = async (b24: Bitrix24Client, params: Record<string, unknown> = {}): Promise<Any[]> =>
      ((await b24.call<Any>("crm.item.list", { entityTypeId: 2, ...params })).result.items as Any[]);
    const titles = (items: Any[]) => items.map((d) => d.title);

    describe("crm.item.*", () => {
      it("crm.item.fields describes each CRM type; another entityTypeId is not found; a missing one is bad input", async () => {
        const { b24 } = await portal({ seed: false });
        for (const [id, field] of [[1, "companyTitle"], [2, "opportunity"], [3, "lastName"], [4, "revenue"]] as const) {
          const { result } = await b24.call<Any>("crm.item.fields", { entityTypeId: id });
          assert.equal(result.fields.id.isReadOnly, true);
          assert.ok(result.fields[field], `${field} of type ${id}`);
        }
        const { result } = await b24.call<Any>("crm.item.fields", { entityTypeId: 2 });
        assert.deepEqual(result.fields.assignedById, { type: "user", isRequired: false, isReadOnly: false, isImmutable: false, isMultiple: false, isDynamic: false, title: "Assigned to", upperName: "ASSIGNED_BY_ID" });
        const unknown = await rejection(b24.call("crm.item.fields", { entityTypeId: 31 }), "ENTITY_NOT_FOUND", "NOT_FOUND");
        assert.equal(unknown.details.httpStatus, 400);
        const missing = await rejection(b24.call("crm.item.list", {}), "VALIDATION_ERROR", "100");
        assert.equal(missing.param, "entityTypeId");
      });

      it("a deal is added with defaults, read, updated and deleted", async () => {
        const { b24 } = await portal({ seed: false });
        clock.now = T0 + 1000;
        const added = (await b24.call<Any>("crm.item.add", { entityTypeId: 2, fields: { opportunity: "1500.50", contactIds: [3, "4"], ignored: 1, id: 999, createdBy: 7 } })).result.item;
        assert.equal(added.id, 1);
        assert.equal(added.title, "Deal #1");
        assert.equal(added.stageId, "NEW");
        assert.equal(added.stageSemanticId, "P");
        assert.equal(added.closed, "N");
        assert.equal(added.opportunity, 1500.5);
        assert.equal(added.currencyId, "USD");
        assert.deepEqual(added.contactIds, [3, 4]);
        assert.equal(added.assignedById, 1);
        assert.equal(added.createdBy, 1);
        assert.equal(added.createdTime, "2026-11-22T12:00:01+00:00");
        assert.equal(added.entityTypeId, 2);
        assert.equal("ignored" in added, false);

        assert.deepEqual((await b24.call<Any>("crm.item.get", { entityTypeId: 2, id: 1 })).result.item, added);

        clock.now = T0 + 5000;
        const won = (await b24.call<Any>("crm.item.update", { entityTypeId: 2, id: 1, fields: { stageId: "WON", title: "Big one" } })).result.item;
        assert.equal(won.title, "Big one");
        assert.equal(won.stageSemanticId, "S");
        assert.equal(won.closed, "Y");
        assert.equal(won.opportunity, 1500.5);
        assert.equal(won.updatedTime, "2026-11-22T12:00:05+00:00");
        assert.equal(won.createdTime, added.createdTime);

        assert.deepEqual((await b24.call("crm.item.delete", { entityTypeId: 2, id: 1 })).result, []);
        const gone = await rejection(b24.call("crm.item.get", { entityTypeId: 2, id: 1 }), "ENTITY_NOT_FOUND", "NOT_FOUND");
        assert.equal(gone.status, 404);
        await rejection(b24.call("crm.item.delete", { entityTypeId: 2, id: 1 }), "ENTITY_NOT_FOUND", "NOT_FOUND");
        await rejection(b24.call("crm.item.update", { entityTypeId: 2, id: 1, fields: { title: "x" } }), "ENTITY_NOT_FOUND", "NOT_FOUND");
        assert.equal((await b24.call<Any>("crm.item.add", { entityTypeId: 2, fields: {} })).result.item.id, 2, "ids are not reused");
        clock.now = T0;
      });

      it("contacts, companies and leads: their own fields; multifields give email and phone", async () => {
        const { b24 } = await portal({ seed: false });
        const contact = (await b24.call<Any>("crm.item.add", {
          entityTypeId: 3,
          fields: { name: "Ada", lastName: "Lovelace", birthdate: "1815-12-10", fm: [{ typeId: "email", value: "ada@example.com" }, { typeId: "PHONE", valueType: "mobile", value: "+44 1" }] },
        })).result.item;
        assert.equal(contact.email, "ada@example.com");
        assert.equal(contact.phone, "+44 1");
        assert.equal(contact.birthdate, "1815-12-10T00:00:00+00:00");
        assert.equal(contact.typeId, "CLIENT");
        assert.deepEqual(contact.fm[1], { id: 2, valueType: "MOBILE", value: "+44 1", typeId: "PHONE" });
        const company = (await b24.call<Any>("crm.item.add", { entityTypeId: 4, fields: { revenue: 10, companyType: "PARTNER" } })).result.item;
        assert.equal(company.title, "Company #1");
        assert.equal(company.companyType, "PARTNER");
        const lead = (await b24.call<Any>("crm.item.add", { entityTypeId: 1, fields: { title: "Lead", stageId: "JUNK" } })).result.item;
        assert.equal(lead.stageSemanticId, "F");
        assert.equal(lead.sourceId, "CALL");
      });

      it("a value of the wrong type is bad input, named by the field's title", async () => {
        const { b24 } = await portal({ seed: false });
        const amount = await rejection(b24.call("crm.item.add", { entityTypeId: 2, fields: { opportunity: "lots" } }), "VALIDATION_ERROR", "CRM_FIELD_ERROR_VALUE_NOT_VALID");
        assert.equal(amount.param, "Amount");
        assert.equal(amount.details.error_description, 'Invalid value for field "Amount"');
        assert.equal((await rejection(b24.call("crm.item.add", { entityTypeId: 3, fields: { birthdate: "yesterday" } }), "VALIDATION_ERROR")).param, "Date of birth");
        assert.equal((await rejection(b24.call("crm.item.add", { entityTypeId: 2 }), "VALIDATION_ERROR", "100")).param, "fields");
        assert.equal((await deals(b24)).length, 0, "nothing was added");
      });
    });

    describe("lists", () => {
      it("pages of 50 from start, with total and next; every record once", async () => {
        const { b24 } = await portal({ seed: false });
        for (let from = 0; from < 123; from += 50) {
          const cmd: Record<string, { method: string; params: Record<string, unknown> }> = {};
          for (let i = from; i < Math.min(from + 50, 123); i++) cmd[`c${i}`] = { method: "crm.item.add", params: { entityTypeId: 1, fields: { title: `Lead ${i}`, opportunity: i } } };
          const batch = await b24.batch(cmd);
          assert.deepEqual(batch.result_error, {});
        }
        const first = await b24.call<Any>("crm.item.list", { entityTypeId: 1 });
        assert.equal(first.result.items.length, 50);
        assert.equal(first.total, 123);
        assert.equal(first.next, 50);
        const last = await b24.call<Any>("crm.item.list", { entityTypeId: 1, start: 100 });
        assert.equal(last.result.items.length, 23);
        assert.equal(last.total, 123);
        assert.equal(last.next, undefined);
        const seen: number[] = [];
        let start: number | undefined = 0;
        while (start !== undefined) {
          const page: Any = await b24.call<Any>("crm.item.list", { entityTypeId: 1, start, select: ["id"] });
          seen.push(...page.result.items.map((x: Any) => x.id));
          start = page.next;
        }
        assert.deepEqual(seen, Array.from({ length: 123 }, (_, i) => i + 1));
        const filtered = await b24.call<Any>("crm.item.list", { entityTypeId: 1, filter: { ">=opportunity": 100 } });
        assert.equal(filtered.total, 23);
        assert.equal(filtered.next, undefined);
        assert.equal((await b24.call<Any>("crm.item.list", { entityTypeId: 1, start: 500 })).result.items.length, 0);
      });

      it("filters: equality, the prefix operators, arrays, dates, nested OR", async () => {
        const { b24 } = await portal();
        assert.deepEqual(titles(await deals(b24, { filter: { stageId: "WON" } })), ["Acme: fleet tracking"]);
        assert.deepEqual(titles(await deals(b24, { filter: { ">opportunity": 100000 } })), ["Northwind: annual supply contract", "Globex: store fit-out"]);
        assert.equal((await deals(b24, { filter: { ">=opportunity": 120000 } })).length, 2);
        assert.equal((await deals(b24, { filter: { "<opportunity": 42000 } })).length, 1);
        assert.equal((await deals(b24, { filter: { "<=opportunity": "42000" } })).length, 2);
        assert.equal((await deals(b24, { filter: { "!stageId": "LOSE" } })).length, 5);
        assert.equal((await deals(b24, { filter: { "!=stageId": ["LOSE", "WON"] } })).length, 4);
        assert.deepEqual(titles(await deals(b24, { filter: { "%title": "GLOBEX" } })), ["Globex: store fit-out", "Globex: loyalty program"]);
        assert.equal((await deals(b24, { filter: { "!%title": "globex" } })).length, 4);
        assert.deepEqual(titles(await deals(b24, { filter: { "=%title": "Acme%" } })), ["Acme: warehouse automation", "Acme: fleet tracking"]);
        assert.equal((await deals(b24, { filter: { "%=title": "%parts" } })).length, 1);
        assert.equal((await deals(b24, { filter: { "!=%title": "Acme%" } })).length, 4);
        assert.deepEqual(titles(await deals(b24, { filter: { "@stageId": ["NEW", "WON"] } })), ["Northwind: annual supply contract", "Acme: fleet tracking"]);
        assert.equal((await deals(b24, { filter: { "!@stageId": ["NEW", "WON"] } })).length, 4);
        assert.equal((await deals(b24, { filter: { stageId: ["NEW", "WON"] } })).length, 2);
        assert.equal((await deals(b24, { filter: { contactIds: 3 } })).length, 2, "a list field matches when any of its values does");
        // closedate: a week apart from T0, deal by deal.
        assert.equal((await deals(b24, { filter: { "<closedate": "2026-12-07" } })).length, 2);
        assert.equal((await deals(b24, { filter: { ">=closedate": "2026-12-07T00:00:00+00:00", "<=closedate": "2026-12-13" } })).length, 1);
        const either = await deals(b24, { filter: { "0": { logic: "OR", "0": { stageId: "WON" }, "1": { stageId: "LOSE" } }, ">opportunity": 50000 } });
        assert.deepEqual(titles(either), ["Globex: loyalty program"]);
        const unknown = await rejection(deals(b24, { filter: { nope: 1 } }), "VALIDATION_ERROR", "INVALID_ARG_VALUE");
        assert.equal(unknown.param, "nope");
      });

      it("select and order", async () => {
        const { b24 } = await portal();
        const some = await deals(b24, { select: ["title", "opportunity"], order: { opportunity: "asc" } });
        assert.deepEqual(Object.keys(some[0]), ["id", "title", "opportunity"]);
        assert.deepEqual(some.map((d) => d.opportunity), [18500, 42000, 64000, 75000, 120000, 230000]);
        const byStage = await deals(b24, { order: { stageSemanticId: "DESC", opportunity: "DESC" }, select: ["id"] });
        assert.deepEqual(byStage.map((d) => d.id), [5, 4, 1, 3, 2, 6], "S, then P by amount, then F");
        assert.deepEqual((await deals(b24, { select: ["*"] }))[0].entityTypeId, 2);
        assert.deepEqual((await deals(b24)).map((d) => d.id), [1, 2, 3, 4, 5, 6], "by id when no order is given");
        const field = await rejection(deals(b24, { order: { nope: "ASC" } }), "VALIDATION_ERROR", "INVALID_ARG_VALUE");
        assert.equal(field.param, "nope");
        await rejection(deals(b24, { order: { title: "sideways" } }), "VALIDATION_ERROR", "INVALID_ARG_VALUE");
      });
    });

    describe("tasks.task.*", () => {
      it("add, get, update (completing closes), list with filter/select/order, delete", async () => {
        const { b24 } = await portal();
        const fields = (await b24.call<Any>("tasks.task.getFields")).result.fields;
        assert.deepEqual(fields.TITLE, { title: "Title", type: "string", required: true });
        assert.equal(fields.STATUS.values["5"], "Completed");

        const task = (await b24.call<Any>("tasks.task.add", { fields: { TITLE: "Ship it", RESPONSIBLE_ID: 2, DEADLINE: "2026-12-01T10:00:00", AUDITORS: [1, 3] } })).result.task;
        assert.equal(task.id, "5");
        assert.equal(task.title, "Ship it");
        assert.equal(task.responsibleId, "2");
        assert.equal(task.createdBy, "1");
        assert.equal(task.status, "2");
        assert.equal(task.priority, "1");
        assert.equal(task.deadline, "2026-12-01T10:00:00+00:00");
        assert.deepEqual(task.auditors, ["1", "3"]);
        assert.equal(task.closedDate, null);

        const got = (await b24.call<Any>("tasks.task.get", { taskId: 5, select: ["ID", "TITLE"] })).result.task;
        assert.deepEqual(got, { id: "5", title: "Ship it" });
        assert.deepEqual((await b24.call("tasks.task.get", { taskId: 999 })).result, [], "Bitrix24 answers an empty result for a task it cannot show");

        clock.now = T0 + 60_000;
        const done = (await b24.call<Any>("tasks.task.update", { taskId: 5, fields: { STATUS: 5 } })).result.task;
        assert.equal(done.status, "5");
        assert.equal(done.closedDate, "2026-11-22T12:01:00+00:00");
        assert.equal(done.closedBy, "1");
        clock.now = T0;

        const listed = await b24.call<Any>("tasks.task.list", { filter: { RESPONSIBLE_ID: 2, "!STATUS": 5 }, select: ["ID", "TITLE", "STATUS"], order: { ID: "asc" } });
        assert.equal(listed.total, 1);
        assert.deepEqual(listed.result.tasks, [{ id: "1", title: "Prepare the Northwind proposal", status: "2" }]);
        const all = await b24.call<Any>("tasks.task.list", { select: ["ID"] });
        assert.deepEqual(all.result.tasks.map((t: Any) => t.id), ["5", "4", "3", "2", "1"], "newest first by default");
        assert.equal((await b24.call<Any>("tasks.task.list", { filter: { TITLE: "%Acme%" } })).total, 1);
        assert.equal((await b24.call<Any>("tasks.task.list", { filter: { ">=DEADLINE": "2026-11-25" } })).total, 3);
        await rejection(b24.call("tasks.task.list", { order: { NOPE: "asc" } }), "VALIDATION_ERROR", "0");

        assert.deepEqual((await b24.call("tasks.task.delete", { taskId: 5 })).result, { task: true });
        await rejection(b24.call("tasks.task.delete", { taskId: 5 }), "BITRIX_ACCESS_DENIED", "1048582");
        await rejection(b24.call("tasks.task.update", { taskId: 5, fields: { TITLE: "x" } }), "BITRIX_ACCESS_DENIED", "0");
      });

      it("bad task input: title, assignee, status, missing fields", async () => {
        const { b24 } = await portal();
        const title = await rejection(b24.call("tasks.task.add", { fields: { RESPONSIBLE_ID: 1 } }), "VALIDATION_ERROR", "ERROR_CORE");
        assert.equal(title.details.error_description, "Task title not specified<br>");
        assert.equal(title.message.includes("<br>"), false);
        await rejection(b24.call("tasks.task.add", { fields: { TITLE: "x" } }), "VALIDATION_ERROR", "ERROR_CORE");
        const nobody = await rejection(b24.call("tasks.task.add", { fields: { TITLE: "x", RESPONSIBLE_ID: 99 } }), "VALIDATION_ERROR", "ERROR_CORE");
        assert.match(nobody.details.error_description!, /Assignee/);
        const status = await rejection(b24.call("tasks.task.add", { fields: { TITLE: "x", RESPONSIBLE_ID: 1, STATUS: 9 } }), "VALIDATION_ERROR", "ERROR_CORE");
        assert.equal(status.details.error_description, "Invalid status<br>");
        assert.equal((await rejection(b24.call("tasks.task.add", {}), "VALIDATION_ERROR", "100")).param, "fields");
        assert.equal((await rejection(b24.call("tasks.task.get", {}), "VALIDATION_ERROR", "100")).param, "taskId");
        assert.equal((await b24.call<Any>("tasks.task.list")).total, 4, "nothing was added");
      });
    });

    describe("user.*", () => {
      it("user.get: all, by id, FILTER, NAME_SEARCH, department, sort and order; user.fields", async () => {
        const { b24 } = await portal();
        const all = await b24.call<Any[]>("user.get");
        assert.equal(all.total, 4);
        assert.deepEqual(all.result.map((u) => u.ID), ["1", "2", "3", "4"]);
        assert.equal(all.result[0].ACTIVE, true);
        assert.equal(all.result[0].NAME, "Anna");
        assert.deepEqual(all.result[1].UF_DEPARTMENT, [2]);
        assert.deepEqual((await b24.call<Any[]>("user.get", { ID: 3 })).result.map((u) => u.NAME), ["Clara"]);
        assert.deepEqual((await b24.call<Any[]>("user.get", { FILTER: { ">ID": 2 } })).result.map((u) => u.ID), ["3", "4"]);
        assert.deepEqual((await b24.call<Any[]>("user.get", { filter: { NAME: "Bor%" } })).result.map((u) => u.ID), ["2"]);
        assert.deepEqual((await b24.call<Any[]>("user.get", { FILTER: { NAME_SEARCH: "manager" } })).result.map((u) => u.ID), ["2", "3", "4"]);
        assert.deepEqual((await b24.call<Any[]>("user.get", { UF_DEPARTMENT: 2 })).result.map((u) => u.ID), ["2", "3"]);
        assert.deepEqual((await b24.call<Any[]>("user.get", { SORT: "LAST_NAME", ORDER: "desc" })).result.map((u) => u.LAST_NAME), ["Volkov", "Smirnova", "Petrova", "Ivanov"]);
        const fields = (await b24.call<Any>("user.fields")).result;
        assert.equal(fields.EMAIL, "E-Mail");
        assert.equal(fields.UF_DEPARTMENT, "Departments");
      });

      it("user.add answers the new id; user.update true; bad input and unknown users are refused", async () => {
        const { b24 } = await portal();
        const id = (await b24.call<number>("user.add", { EMAIL: "new@example.com", NAME: "Newt", UF_DEPARTMENT: [1] })).result;
        assert.equal(id, 5);
        assert.equal((await b24.call("user.update", { ID: id, LAST_NAME: "Scamander", ACTIVE: "N" })).result, true);
        const [user] = (await b24.call<Any[]>("user.get", { ID: id })).result;
        assert.equal(user.LAST_NAME, "Scamander");
        assert.equal(user.ACTIVE, false);
        assert.equal(user.USER_TYPE, "employee");
        assert.deepEqual((await b24.call<Any[]>("user.get", { ACTIVE: true })).result.map((u) => u.ID), ["1", "2", "3", "4"]);

        const email = await rejection(b24.call("user.add", { EMAIL: "not-an-email", UF_DEPARTMENT: [1] }), "VALIDATION_ERROR", "ERROR_ARGUMENT");
        assert.equal(email.details.error_description, "wrong_email");
        await rejection(b24.call("user.add", { EMAIL: "NEW@example.com", UF_DEPARTMENT: [1] }), "VALIDATION_ERROR", "ERROR_ARGUMENT");
        await rejection(b24.call("user.add", { EMAIL: "other@example.com" }), "VALIDATION_ERROR", "ERROR_ARGUMENT");
        await rejection(b24.call("user.update", { ID: 99, NAME: "x" }), "BITRIX_ACCESS_DENIED", "ERROR_CORE");
      });
    });

    describe("messenger, Activity Stream, placements", () => {
      it("im.notify.system.add and im.message.add answer ids; empty ones are bad input, named", async () => {
        const { b24, portalId } = await portal({ seed: false });
        assert.equal((await b24.call("im.notify.system.add", { USER_ID: 1, MESSAGE: " Hello " })).result, 1);
        assert.equal((await b24.call("im.notify.system.add", { USER_ID: "1", MESSAGE: "Again" })).result, 2);
        assert.equal((await rejection(b24.call("im.notify.system.add", { MESSAGE: "x" }), "VALIDATION_ERROR", "USER_ID_EMPTY")).param, "USER_ID");
        assert.equal((await rejection(b24.call("im.notify.system.add", { USER_ID: 1 }), "VALIDATION_ERROR", "MESSAGE_EMPTY")).param, "MESSAGE");
        assert.equal((await b24.call("im.message.add", { DIALOG_ID: "chat7", MESSAGE: "Hi all" })).result, 1);
        assert.equal((await b24.call("im.message.add", { DIALOG_ID: 1, MESSAGE: "Hi you" })).result, 2);
        await rejection(b24.call("im.message.add", { MESSAGE: "x" }), "VALIDATION_ERROR", "USER_ID_EMPTY");
        await rejection(b24.call("im.message.add", { DIALOG_ID: "chat", MESSAGE: "x" }), "VALIDATION_ERROR", "CHAT_ID_EMPTY");
        const sent = await store.listSandboxItems(portalId, "im.notify");
        assert.deepEqual(sent.map((n) => n.fields["MESSAGE"]), ["Hello", "Again"]);
      });

      it("log.blogpost.add answers true; a post needs a message", async () => {
        const { b24 } = await portal({ seed: false });
        assert.equal((await b24.call("log.blogpost.add", { POST_TITLE: "News", POST_MESSAGE: "We shipped", DEST: ["UA"] })).result, true);
        const error = await rejection(b24.call("log.blogpost.add", { POST_TITLE: "News" }), "VALIDATION_ERROR", "ERROR_ARGUMENT");
        assert.equal(error.param, "POST_MESSAGE");
      });

      it("placement.list by the webhook's scopes, SCOPE or FULL; placement.bind once per handler", async () => {
        const { b24 } = await portal({ seed: false, scopes: ["placement", "crm"] });
        const mine = (await b24.call<string[]>("placement.list")).result;
        assert.ok(mine.includes("CRM_DEAL_DETAIL_TAB") && mine.includes("LEFT_MENU"));
        assert.ok(!mine.includes("TASK_VIEW_TAB"));
        assert.ok((await b24.call<string[]>("placement.list", { SCOPE: "task" })).result.every((p) => p.startsWith("TASK_")));
        assert.ok((await b24.call<string[]>("placement.list", { FULL: true })).result.includes("TASK_VIEW_TAB"));

        const bind = { PLACEMENT: "CRM_DEAL_DETAIL_TAB", HANDLER: "https://app.example/tab", TITLE: "Our tab" };
        assert.equal((await b24.call("placement.bind", bind)).result, true);
        await rejection(b24.call("placement.bind", bind), "BITRIX_ERROR", "ERROR_HANDLER_ALREADY_EXIST");
        const missing = await rejection(b24.call("placement.bind", { HANDLER: "https://app.example/x" }), "VALIDATION_ERROR", "ERROR_ARGUMENT");
        assert.equal(missing.param, "PLACEMENT");
        assert.equal(missing.details.httpStatus, 200, "Bitrix24 sends this error with status 200");
        await rejection(b24.call("placement.bind", { PLACEMENT: "NOWHERE", HANDLER: "https://app.example/x" }), "VALIDATION_ERROR", "ERROR_ARGUMENT");
      });

      it("placement.get lists the handlers bound in Bitrix24's shape; placement.unbind counts as Bitrix24 does (1 found + 1 removed per handler), all of a place without HANDLER", async () => {
        const { b24 } = await portal({ seed: false, scopes: ["placement", "crm"] });
        assert.deepEqual((await b24.call("placement.get")).result, []);
        await b24.call("placement.bind", { PLACEMENT: "CRM_DEAL_DETAIL_TAB", HANDLER: "https://app.example/a", TITLE: "A" });
        await b24.call("placement.bind", { PLACEMENT: "CRM_DEAL_DETAIL_TAB", HANDLER: "https://app.example/b", TITLE: "B", DESCRIPTION: "Bee", OPTIONS: { width: "200" } });
        await b24.call("placement.bind", { PLACEMENT: "LEFT_MENU", HANDLER: "https://app.example/menu", USER_ID: 3 });
        assert.deepEqual((await b24.call("placement.get")).result, [
          { placement: "CRM_DEAL_DETAIL_TAB", userId: 0, handler: "https://app.example/a", options: [], title: "A", description: "", langAll: {} },
          { placement: "CRM_DEAL_DETAIL_TAB", userId: 0, handler: "https://app.example/b", options: { width: "200" }, title: "B", description: "Bee", langAll: {} },
          { placement: "LEFT_MENU", userId: 3, handler: "https://app.example/menu", options: [], title: "", description: "", langAll: {} },
        ]);
        assert.deepEqual((await b24.call("placement.unbind", { PLACEMENT: "CRM_DEAL_DETAIL_TAB", HANDLER: "https://app.example/a" })).result, { count: 2 });
        assert.deepEqual((await b24.call("placement.unbind", { PLACEMENT: "CRM_DEAL_DETAIL_TAB", HANDLER: "https://app.example/a" })).result, { count: 0 });
        assert.deepEqual((await b24.call("placement.unbind", { PLACEMENT: "LEFT_MENU", USER_ID: 1 })).result, { count: 0 }, "USER_ID narrows to that user's handlers");
        assert.deepEqual((await b24.call("placement.unbind", { PLACEMENT: "CRM_DEAL_DETAIL_TAB" })).result, { count: 2 });
        assert.deepEqual((await b24.call<{ placement: string }[]>("placement.get")).result.map((p) => p.placement), ["LEFT_MENU"]);
        const missing = await rejection(b24.call("placement.unbind", {}), "VALIDATION_ERROR", "ERROR_ARGUMENT");
        assert.equal(missing.param, "PLACEMENT");
        assert.equal(missing.details.httpStatus, 400);
      });
    });

    describe("webhook, scopes, limits", () => {
      it("an unknown token, or the right token with another user id: invalid credentials (401); the token is in no error", async () => {
        const { url, token, portalId } = await portal({ seed: false });
        const wrongToken = url.replace(token, "a".repeat(32));
        const e1 = await rejection(bitrix24Client(wrongToken, { timeoutMs: 5000, outbound: INTERNAL }).call("user.get"), "BITRIX_ACCESS_DENIED", "INVALID_CREDENTIALS");
        assert.equal(e1.details.httpStatus, 401);
        await rejection(bitrix24Client(url.replace("/rest/1/", "/rest/2/"), { timeoutMs: 5000, outbound: INTERNAL }).call("user.get"), "BITRIX_ACCESS_DENIED", "INVALID_CREDENTIALS");
        await rejection(bitrix24Client(url.replace(portalId, "prt_elsewhere"), { timeoutMs: 5000, outbound: INTERNAL }).call("user.get"), "BITRIX_ACCESS_DENIED", "INVALID_CREDENTIALS");
        const e2 = await rejection(bitrix24Client(url, { timeoutMs: 5000, outbound: INTERNAL }).call("no.such.method"), "BITRIX_ERROR", "ERROR_METHOD_NOT_FOUND");
        assert.equal(e2.details.httpStatus, 404);
        for (const e of [e1, e2]) assert.ok(!JSON.stringify([e.message, e.details, e.param]).includes(token));
      });

      it("a method needing a scope the webhook lacks: insufficient_scope (401); any user scope reads users", async () => {
        const { b24 } = await portal({ scopes: ["crm", "user_brief"] });
        assert.equal((await deals(b24)).length, 6);
        const e = await rejection(b24.call("tasks.task.list"), "BITRIX_ACCESS_DENIED", "insufficient_scope");
        assert.equal(e.details.httpStatus, 401);
        await rejection(b24.call("im.notify.system.add", { USER_ID: 1, MESSAGE: "x" }), "BITRIX_ACCESS_DENIED", "insufficient_scope");
        assert.equal((await b24.call<Any[]>("user.get")).total, 4);
        await rejection(b24.call("user.add", { EMAIL: "x@example.com", UF_DEPARTMENT: [1] }), "BITRIX_ACCESS_DENIED", "insufficient_scope");
        assert.deepEqual([...SANDBOX_SCOPES].slice(0, 3), ["crm", "task", "tasks"], "the default: the profile's Bitrix24 scopes");
      });

      it("over the portal's limit under a burst: QUERY_LIMIT_EXCEEDED (503) → BITRIX_UNAVAILABLE; it drains with time", async () => {
        clock.now = T0;
        const { b24 } = await portal({ seed: false, limit: { requestBurst: 3, requestsPerSecond: 1 } });
        const burst = await Promise.allSettled(Array.from({ length: 6 }, () => b24.call("user.get")));
        assert.equal(burst.filter((r) => r.status === "fulfilled").length, 3);
        const refused = burst.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => r.reason as UpstreamError);
        assert.equal(refused.length, 3);
        for (const e of refused) {
          assert.equal(e.code, "BITRIX_UNAVAILABLE");
          assert.equal(e.status, 502);
          assert.equal(e.details.error, "QUERY_LIMIT_EXCEEDED");
          assert.equal(e.details.httpStatus, 503);
          assert.equal(e.details.reason, "query_limit_exceeded");
        }
        clock.now = T0 + 1000;
        await b24.call("user.get");
        await rejection(b24.call("user.get"), "BITRIX_UNAVAILABLE", "QUERY_LIMIT_EXCEEDED");
        clock.now = T0 + 3000;
        // A batch of many commands counts once.
        const batch = await b24.batch({ a: "user.get", b: "user.get", c: "user.get", d: "user.get" });
        assert.deepEqual(Object.keys(batch.result), ["a", "b", "c", "d"]);
        await b24.call("user.get");
        await rejection(b24.call("user.get"), "BITRIX_UNAVAILABLE", "QUERY_LIMIT_EXCEEDED");
        clock.now = T0;
      });
    });

    describe("batch", () => {
      it("runs commands in order, keeps going past per-command errors, with totals, nexts and $result references", async () => {
        const { b24 } = await portal({ scopes: ["crm", "user"] });
        const batch = await b24.batch({
          deal: "crm.item.get?entityTypeId=2&id=1",
          owner: "user.get?ID=$result[deal][item][assignedById]",
          missing: { method: "crm.item.get", params: { entityTypeId: 2, id: 99 } },
          tasks: "tasks.task.list",
          nothing: "no.such.method",
          list: { method: "crm.item.list", params: { entityTypeId: 2, filter: { "@stageId": ["WON", "LOSE"] }, select: ["id"] } },
          added: { method: "crm.item.add", params: { entityTypeId: 3, fields: { name: "Batch", lastName: "Contact" } } },
          nested: "batch?cmd[a]=user.get",
        });
        assert.deepEqual(Object.keys(batch.result), ["deal", "owner", "list", "added"]);
        assert.equal((batch.result["deal"] as Any).item.title, "Northwind: annual supply contract");
        assert.deepEqual((batch.result["owner"] as Any[]).map((u) => u.NAME), ["Boris"]);
        assert.deepEqual((batch.result["list"] as Any).items, [{ id: 5 }, { id: 6 }]);
        assert.equal((batch.result["added"] as Any).item.id, 5);
        assert.deepEqual(batch.result_total, { owner: 1, list: 2 });
        assert.deepEqual(batch.result_next, {});
        assert.deepEqual(Object.keys(batch.result_time), ["deal", "owner", "list", "added"]);
        assert.deepEqual(Object.keys(batch.result_error), ["missing", "tasks", "nothing", "nested"]);
        assert.deepEqual(batch.result_error["missing"], { error: "NOT_FOUND", error_description: "Element not found" });
        assert.equal(batch.result_error["tasks"]!.error, "insufficient_scope");
        assert.equal(batch.result_error["nothing"]!.error, "ERROR_METHOD_NOT_FOUND");
        assert.equal(batch.result_error["nested"]!.error, "ERROR_BATCH_METHOD_NOT_ALLOWED");
        assert.equal(batch.errors["missing"]!.code, "ENTITY_NOT_FOUND");
        assert.equal(batch.errors["missing"]!.details.method, "crm.item.get");
        assert.equal(batch.errors["tasks"]!.code, "BITRIX_ACCESS_DENIED");
        assert.equal(batch.errors["nothing"]!.code, "BITRIX_ERROR");
        assert.ok(batch.time !== undefined);
      });

      it("halt stops at the first failing command; list commands report next; more than 50 commands are refused", async () => {
        const { b24 } = await portal({ seed: false });
        const many: Record<string, string> = {};
        for (let i = 0; i < 60; i++) many[`a${i}`] = `crm.item.add?entityTypeId=4&fields[title]=Co${i}`;
        const tooMany = await rejection(b24.batch(many), "VALIDATION_ERROR", "ERROR_BATCH_LENGTH_EXCEEDED");
        assert.equal(tooMany.details.method, "batch");
        assert.equal((await b24.call<Any>("crm.item.list", { entityTypeId: 4 })).total, 0, "a refused batch runs nothing");

        const fifty = Object.fromEntries(Object.entries(many).slice(0, 50));
        assert.deepEqual((await b24.batch(fifty)).result_error, {});
        const halted = await b24.batch(
          {
            first: "crm.item.list?entityTypeId=4",
            bad: "crm.item.get?entityTypeId=4&id=999",
            after: "crm.item.add?entityTypeId=4&fields[title]=Never",
          },
          true,
        );
        assert.deepEqual(Object.keys(halted.result), ["first"]);
        assert.deepEqual(halted.result_total, { first: 50 });
        assert.deepEqual(halted.result_next, {});
        assert.deepEqual(Object.keys(halted.result_error), ["bad"]);
        assert.equal((await b24.call<Any>("crm.item.list", { entityTypeId: 4, filter: { title: "Never" } })).total, 0);

        await b24.call("crm.item.add", { entityTypeId: 4, fields: { title: "One more" } });
        const paged = await b24.batch({ page1: "crm.item.list?entityTypeId=4&select[]=id", page2: "crm.item.list?entityTypeId=4&start=50&select[]=id" });
        assert.deepEqual(paged.result_total, { page1: 51, page2: 51 });
        assert.deepEqual(paged.result_next, { page1: 50 });
        assert.deepEqual((paged.result["page2"] as Any).items, [{ id: 51 }]);
      });

      it("a batch of commands keyed 0, 1, 2 comes back keyed the same", async () => {
        const { b24 } = await portal();
        const batch = await b24.batch({ "0": "user.get?ID=1", "1": "user.get?ID=2" });
        assert.deepEqual(Object.keys(batch.result), ["0", "1"]);
        assert.deepEqual((batch.result["1"] as Any[]).map((u) => u.ID), ["2"]);
        assert.deepEqual(batch.result_error, {});
      });
    });

    describe("setup", () => {
      it("seedDemoData fills a fresh sandbox once; createSandbox again with the same token changes its scopes", async () => {
        const { b24, portalId, token } = await portal();
        assert.deepEqual(await seedDemoData(store, portalId), {}, "seeded already: nothing more");
        assert.equal((await b24.call<Any>("crm.item.list", { entityTypeId: 3 })).total, 4);
        assert.equal((await b24.call<Any>("crm.item.list", { entityTypeId: 4 })).total, 3);
        assert.equal((await b24.call<Any>("crm.item.list", { entityTypeId: 1 })).total, 3);
        await createSandbox(store, portalId, { token, scopes: ["user"] });
        await rejection(b24.call("crm.item.list", { entityTypeId: 2 }), "BITRIX_ACCESS_DENIED", "insufficient_scope");
        await assert.rejects(createSandbox(store, portalId, { token: "short" }), /letters and digits/);
        await assert.rejects(createSandbox(store, portalId, { userId: 42 }), /no user 42/);
      });
    });
  });
}
