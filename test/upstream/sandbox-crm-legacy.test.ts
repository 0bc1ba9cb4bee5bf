/**
 * issue 11.4: the sandbox at a host root over plain HTTP, and the refusals of the methods real
 * clients call first (crm.deal.*, crm.contact.*, crm.company.*, crm.lead.*, scope, methods), as
 * Bitrix24 answers them. SQLite only: the SDK suite runs the same listener on both stores.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { openSqliteStore } from "../../src/store/index.ts";
import type { Store } from "../../src/store/store.ts";
import { createSandbox, sandboxRootWebhookUrl, sandboxServer, seedDemoData } from "../../src/upstream/sandbox/index.ts";

// Answers are read field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

describe("issue 11.4: the older CRM methods and discovery at a host root over HTTP", () => {
  let store: Store;
  let app: ReturnType<typeof sandboxServer>;
  let base: string;

  before(async () => {
    store = await openSqliteStore(":memory:", { serverSecret: "legacy-secret" });
    await store.migrate();
    await createSandbox(store, "prt_legacy", { token: "legacytoken123", limit: { requestBurst: 10_000, requestsPerSecond: 1000 } });
    await seedDemoData(store, "prt_legacy");
    await createSandbox(store, "prt_legacy", { token: "usersonly12345", scopes: ["user"] });
    app = sandboxServer({ store });
    await app.listen({ host: "127.0.0.1", port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  after(async () => {
    await app.close();
    await store.close();
  });

  const call = async (method: string, params: Record<string, unknown> = {}, token = "legacytoken123"): Promise<{ status: number; body: Any }> => {
    const res = await fetch(`${sandboxRootWebhookUrl(base, token)}${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(params) });
    return { status: res.status, body: await res.json() };
  };

  it("refuses as Bitrix24 does: no id, fields that are not an object, a value of the wrong type, a missing record", async () => {
    assert.deepEqual(await call("crm.deal.get"), { status: 400, body: { error: "", error_description: "ID is not defined or invalid." } });
    assert.deepEqual(await call("crm.contact.add", { fields: "x" }), { status: 400, body: { error: "", error_description: "Parameter 'fields' must be array." } });
    const wrong = await call("crm.deal.add", { fields: { OPPORTUNITY: "a lot" } });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, "CRM_FIELD_ERROR_VALUE_NOT_VALID");
    for (const family of ["deal", "contact", "company", "lead"]) {
      assert.deepEqual(await call(`crm.${family}.update`, { id: 9999, fields: { COMMENTS: "x" } }), { status: 400, body: { error: "", error_description: "Not found" } });
      assert.deepEqual(await call(`crm.${family}.delete`, { id: 9999 }), { status: 400, body: { error: "", error_description: "Not found" } });
    }
  });

  it("list: an unknown filter or order field is left out, select of a multi-field brings it, start=-1 answers without counting", async () => {
    const all = await call("crm.deal.list", { filter: { NO_SUCH_FIELD: 1 }, order: { NO_SUCH_FIELD: "ASC" } });
    assert.equal(all.status, 200);
    assert.equal(all.body.total, 6);
    const withEmail = await call("crm.contact.list", { filter: { HAS_EMAIL: "Y" }, select: ["NAME", "EMAIL"] });
    assert.deepEqual(
      withEmail.body.result.map((c: Any) => [c.NAME, c.EMAIL[0].VALUE]),
      [
        ["Olga", "olga@northwind.example"],
        ["Maria", "maria@acme.example"],
      ],
    );
    const uncounted = await call("crm.lead.list", { start: -1 });
    assert.equal(uncounted.body.result.length, 3);
    assert.equal(uncounted.body.total, undefined);
    assert.equal(uncounted.body.next, undefined);
  });

  it("update replaces a record's phones; fields describes the multi-fields; crm.item.* sees the same record", async () => {
    const id = (await call("crm.company.add", { fields: { TITLE: "Initech", PHONE: [{ VALUE: "+1 555 0001", VALUE_TYPE: "WORK" }], EMAIL: [{ VALUE: "hi@initech.example" }] } })).body.result;
    assert.equal((await call("crm.company.update", { id, fields: { PHONE: [{ VALUE: "+1 555 0002", VALUE_TYPE: "MOBILE" }] } })).body.result, true);
    const company = (await call("crm.company.get", { id })).body.result;
    assert.deepEqual(company.PHONE, [{ ID: "2", VALUE_TYPE: "MOBILE", VALUE: "+1 555 0002", TYPE_ID: "PHONE" }]);
    assert.equal(company.EMAIL[0].VALUE, "hi@initech.example", "e-mails are left as they were");
    assert.equal((await call("crm.company.fields")).body.result.PHONE.type, "crm_multifield");
    assert.equal((await call("crm.item.get", { entityTypeId: 4, id })).body.result.item.title, "Initech");
  });

  it("scope and methods describe the webhook; a webhook without crm gets 401 insufficient_scope from crm.deal.list", async () => {
    assert.deepEqual((await call("scope", {}, "usersonly12345")).body.result, ["user"]);
    assert.ok((await call("scope", { full: true }, "usersonly12345")).body.result.includes("crm"));
    const mine = (await call("methods", {}, "usersonly12345")).body.result as string[];
    assert.ok(mine.includes("user.current") && mine.includes("server.time"));
    assert.ok(!mine.includes("crm.deal.list"));
    assert.ok(((await call("methods", { scope: "crm" }, "usersonly12345")).body.result as string[]).includes("crm.deal.list"));
    assert.deepEqual(await call("crm.deal.list", {}, "usersonly12345"), {
      status: 401,
      body: { error: "insufficient_scope", error_description: "The request requires higher privileges than provided by the webhook token" },
    });
  });
});
