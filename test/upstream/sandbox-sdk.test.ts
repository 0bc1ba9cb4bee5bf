/**
 * issue 11.4: the sandbox at a host root, over HTTPS, driven by the official Bitrix24 SDK
 * (@bitrix24/b24jssdk) through its incoming webhook, as a user would: B24Hook.fromWebhookUrl
 * (which insists on https:// and /rest/ at the root), CRUD on deals, paging with the list helper
 * over more than 50 records, a batch with halt, and the SDK's retry on QUERY_LIMIT_EXCEEDED. The
 * certificate is self-signed, made for the run, and trusted by this SDK instance only.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Agent } from "node:https";
import { Agent as UndiciAgent, fetch } from "undici";
import { after, before, describe, it } from "node:test";
import { ApiVersion, B24Hook } from "@bitrix24/b24jssdk";
import type { FastifyInstance } from "fastify";
import type { Store } from "../../src/store/store.ts";
import { createSandbox, sandboxRootWebhookUrl, sandboxServer, sandboxWebhookToken, seedDemoData } from "../../src/upstream/sandbox/index.ts";
import { storeKinds, throwawayStore } from "../support/gateway.ts";
import { selfSignedCertificate } from "../support/tls.ts";

// Records are read field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const { cert, key } = await selfSignedCertificate();
/** The SDK's own pacing (Bitrix24's 50 + 2/s) would slow the test down; the sandbox's limit is what is tested. */
const ROOMY_SDK = { rateLimit: { burstLimit: 100_000, drainRate: 1000, adaptiveEnabled: false }, adaptiveConfig: { enabled: false, thresholdPercent: 100, coefficient: 0, maxDelay: 0 } };

for (const kind of await storeKinds("upstream: sandbox with @bitrix24/b24jssdk")) {
  describe(`issue 11.4: the sandbox at a host root with @bitrix24/b24jssdk [${kind}]`, () => {
    let store: Store;
    let app: FastifyInstance;
    let base: string;
    let dropSchema = async () => {};
    let seq = 0;

    before(async () => {
      ({ store, drop: dropSchema } = await throwawayStore(kind, "kg_sdk"));
      app = sandboxServer({ store, tls: { cert, key } });
      await app.listen({ host: "127.0.0.1", port: 0 });
      base = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    });
    after(async () => {
      await app.close();
      await store.close();
      await dropSchema();
    });

    /** A new sandbox portal and an SDK client on its webhook, trusting the test's certificate. */
    async function portal(limit = { requestBurst: 100_000, requestsPerSecond: 1000 }, restrictionParams: object = ROOMY_SDK) {
      const portalId = `prt_sdk_${kind}_${++seq}`;
      const token = sandboxWebhookToken("sdk-secret", portalId);
      await createSandbox(store, portalId, { token, limit });
      await seedDemoData(store, portalId);
      const b24 = B24Hook.fromWebhookUrl(sandboxRootWebhookUrl(base, token), { restrictionParams });
      b24.getHttpClient(ApiVersion.v2).ajaxClient.defaults.httpsAgent = new Agent({ ca: cert });
      const call = async (method: string, params: Record<string, unknown> = {}): Promise<Any> => {
        const response = await b24.actions.v2.call.make({ method, params });
        assert.ok(response.isSuccess, `${method}: ${response.getErrorMessages().join("; ")}`);
        return response.getData()!.result;
      };
      return { portalId, b24, call };
    }

    it("B24Hook.fromWebhookUrl takes the sandbox's https webhook; a wrong token is 401 INVALID_CREDENTIALS", async () => {
      const { call } = await portal();
      const me = await call("user.current");
      assert.equal(me.ID, "1");
      assert.equal(me.WORK_POSITION, "Administrator");
      assert.match(await call("server.time"), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$/);
      const info = await call("app.info");
      assert.equal(info.STATUS, "L");
      assert.equal(info.INSTALLED, true);
      assert.ok((await call("scope")).includes("crm"));
      const methods = (await call("methods")) as string[];
      for (const m of ["crm.deal.list", "crm.contact.get", "crm.company.add", "crm.lead.fields", "user.current", "scope", "methods", "server.time", "app.info"]) assert.ok(methods.includes(m), m);

      const stranger = B24Hook.fromWebhookUrl(sandboxRootWebhookUrl(base, "wrongtoken1234"), { restrictionParams: { ...ROOMY_SDK, maxRetries: 1 } });
      stranger.getHttpClient(ApiVersion.v2).ajaxClient.defaults.httpsAgent = new Agent({ ca: cert });
      await assert.rejects(stranger.actions.v2.call.make({ method: "server.time", params: {} }), (e: Any) => e.status === 401 && e.code === "INVALID_CREDENTIALS");
    });

    it("CRUD on deals with Bitrix24's UPPER_CASE fields: add, get, update, list with filter/order/select, delete", async () => {
      const { call } = await portal();
      const id = await call("crm.deal.add", { fields: { TITLE: "SDK deal", OPPORTUNITY: 1500.5, STAGE_ID: "PREPARATION", CURRENCY_ID: "EUR", UNKNOWN_FIELD: 1 } });
      assert.equal(typeof id, "number");
      const deal = await call("crm.deal.get", { id });
      assert.equal(deal.ID, String(id));
      assert.equal(deal.TITLE, "SDK deal");
      assert.equal(deal.OPPORTUNITY, "1500.50");
      assert.equal(deal.STAGE_ID, "PREPARATION");
      assert.equal(deal.STAGE_SEMANTIC_ID, "P");
      assert.equal(deal.CLOSED, "N");
      assert.equal(deal.CREATED_BY_ID, "1");
      assert.match(deal.DATE_CREATE, /\+00:00$/);

      assert.equal(await call("crm.deal.update", { id, fields: { STAGE_ID: "WON", OPPORTUNITY: "2000" } }), true);
      const won = await call("crm.deal.get", { id });
      assert.equal(won.STAGE_ID, "WON");
      assert.equal(won.CLOSED, "Y");
      assert.equal(won.OPPORTUNITY, "2000.00");

      const listed = await call("crm.deal.list", { filter: { ">=OPPORTUNITY": 2000, STAGE_ID: "WON" }, order: { OPPORTUNITY: "DESC" }, select: ["ID", "TITLE", "OPPORTUNITY"] });
      assert.deepEqual(listed.map((d: Any) => d.TITLE), ["Acme: fleet tracking", "SDK deal"]);
      assert.deepEqual(Object.keys(listed[0]).sort(), ["ID", "OPPORTUNITY", "TITLE"]);

      const fields = await call("crm.deal.fields");
      assert.equal(fields.TITLE.type, "string");
      assert.equal(fields.ID.isReadOnly, true);
      assert.equal(fields.STAGE_ID.statusType, "DEAL_STAGE");

      assert.equal(await call("crm.deal.delete", { id }), true);
      const missing = await (await portal()).b24.actions.v2.call.make({ method: "crm.deal.get", params: { id: 999_999 } }).catch((e: Any) => e);
      assert.equal(missing.status, 400, "Bitrix24's answer to a missing record, not retried");
      assert.deepEqual(missing.originalError?.response?.data, { error: "", error_description: "Not found" });
    });

    it("contacts, companies and leads answer in their own shapes (a lead's stage is STATUS_ID; phones and e-mails as lists)", async () => {
      const { call } = await portal();
      const contact = await call("crm.contact.add", { fields: { NAME: "Ada", LAST_NAME: "Lovelace", PHONE: [{ VALUE: "+1 555 0199", VALUE_TYPE: "WORK" }] } });
      const read = await call("crm.contact.get", { ID: contact });
      assert.equal(read.NAME, "Ada");
      assert.equal(read.HAS_PHONE, "Y");
      assert.deepEqual(read.PHONE, [{ ID: "1", VALUE_TYPE: "WORK", VALUE: "+1 555 0199", TYPE_ID: "PHONE" }]);
      const companies = await call("crm.company.list", { filter: { "%TITLE": "acme" } });
      assert.deepEqual(companies.map((c: Any) => c.TITLE), ["Acme Logistics"]);
      const leads = await call("crm.lead.list", { filter: { STATUS_ID: "JUNK" }, select: ["TITLE", "STATUS_ID"] });
      assert.deepEqual(leads, [{ ID: leads[0].ID, TITLE: "Cold call follow-up", STATUS_ID: "JUNK" }]);
    });

    it("the list helper pages through more than 50 deals (start=-1, >ID cursor); batch adds them 50 at a time", async () => {
      const { b24, call } = await portal();
      for (let round = 0; round < 3; round++) {
        const calls = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`d${round}_${i}`, { method: "crm.deal.add", params: { fields: { TITLE: `Bulk ${round * 50 + i}` } } }]));
        const added = await b24.actions.v2.batch.make({ calls, options: { isHaltOnError: true } });
        assert.ok(added.isSuccess, added.getErrorMessages().join("; "));
      }
      const chunks: Any[][] = [];
      for await (const chunk of b24.actions.v2.fetchList.make({ method: "crm.deal.list", params: { select: ["ID", "TITLE"] }, idKey: "ID" })) chunks.push(chunk);
      const all = chunks.flat();
      assert.equal(all.length, 156, "6 demo deals and 150 added");
      assert.deepEqual(chunks.map((c) => c.length), [50, 50, 50, 6]);
      assert.equal(new Set(all.map((d) => d.ID)).size, 156, "no deal twice");
      const counted = await b24.actions.v2.call.make({ method: "crm.deal.list", params: { select: ["ID"] } });
      assert.equal(counted.getTotal(), 156);
      assert.ok(counted.isMore());
      const second = await counted.getNext(b24.getHttpClient(ApiVersion.v2));
      assert.ok(second !== false);
      assert.equal(Number((second.getData()!.result as Any[])[0].ID), Number((counted.getData()!.result as Any[])[49].ID) + 1, "the next page starts where the first ended");
      assert.equal((await call("crm.deal.list", { start: 150 })).length, 6);
    });

    it("a batch with halt stops at the first failing command, and says which", async () => {
      const { b24, call } = await portal();
      const response = await b24.actions.v2.batch.make({
        calls: {
          first: { method: "crm.deal.add", params: { fields: { TITLE: "Before the failure" } } },
          broken: { method: "crm.deal.nosuch", params: {} },
          after: { method: "crm.deal.add", params: { fields: { TITLE: "After the failure" } } },
        },
        options: { isHaltOnError: true },
      });
      assert.equal(response.isSuccess, false);
      assert.match(response.getErrorMessages().join("; "), /Method not found/);
      const titles = (await call("crm.deal.list", { select: ["TITLE"] })).map((d: Any) => d.TITLE);
      assert.ok(titles.includes("Before the failure"));
      assert.ok(!titles.includes("After the failure"), "halt: nothing after the failure ran");
    });

    it("the token names the portal at the root: one two sandboxes share names neither (401); the /sandbox/ path is not served here", async () => {
      const trusting = new UndiciAgent({ connect: { ca: cert } });
      const shared = `shared${kind}${randomBytes(4).toString("hex")}`;
      const first = `prt_shared_${kind}_a`;
      await createSandbox(store, first, { token: shared });
      const alone = await fetch(`${sandboxRootWebhookUrl(base, shared)}server.time`, { dispatcher: trusting });
      assert.equal(alone.status, 200, "the only sandbox with this token");
      await createSandbox(store, `prt_shared_${kind}_b`, { token: shared });
      const both = await fetch(`${sandboxRootWebhookUrl(base, shared)}server.time`, { dispatcher: trusting });
      assert.equal(both.status, 401);
      assert.equal(((await both.json()) as Any).error, "INVALID_CREDENTIALS");
      const portalPath = await fetch(`${base}/sandbox/${first}/rest/1/${shared}/server.time`, { dispatcher: trusting });
      assert.equal(portalPath.status, 404);
      await portalPath.body?.cancel();
    });

    it("the SDK retries on the sandbox's 503 QUERY_LIMIT_EXCEEDED and gets through once the bucket drains", async () => {
      // A bucket of one request draining 4 a second: the second call at once is refused, the retry admitted.
      const { b24 } = await portal({ requestBurst: 1, requestsPerSecond: 4 }, { ...ROOMY_SDK, maxRetries: 3 });
      const http = b24.getHttpClient(ApiVersion.v2);
      assert.ok((await b24.actions.v2.call.make({ method: "server.time", params: {} })).isSuccess);
      const second = await b24.actions.v2.call.make({ method: "crm.deal.list", params: { select: ["ID"] } });
      assert.ok(second.isSuccess, second.getErrorMessages().join("; "));
      const stats = http.getStats() as Any;
      assert.ok(stats.limitHits >= 1 && stats.retries >= 1, JSON.stringify({ limitHits: stats.limitHits, retries: stats.retries }));
    });
  });
}
