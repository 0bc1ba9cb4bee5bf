/**
 * Chatbots over HTTP (issue 17 §2, scope imbot; docs/dataplane.md, "Chatbots"): GET /v1/bots,
 * POST /v1/bots, DELETE /v1/bots/:id and POST /v1/bots/:id/messages on a portal linked to the
 * built-in sandbox, which keygate reaches over real HTTP and which implements Bitrix24's
 * imbot.bot.list, imbot.register, imbot.unregister and imbot.message.add. What the sandbox keeps
 * is read back from the store: a refused request registers, removes and sends nothing. Both stores.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { botClientId } from "../../src/gateway/routes/bots.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { MINUTE, fails, makeKey, makePortal, makeUser, ok } from "./_fixtures.ts";

const HANDLER = "https://bots.example.com/events";

for (const kind of await storeKinds("http: bots")) {
  describe(`bots [${kind}]`, () => {
    let h: Harness;
    let portal: string;
    let key: string;
    const bots = () => h.store.listSandboxItems(portal, "imbot");
    const messages = () => h.store.listSandboxItems(portal, "imbot.message");
    const register = (body: unknown, as = key) => h.call("POST", "/v1/bots", { key: as, body });

    before(async () => {
      h = await startHarness(kind, { listen: true });
      portal = await makePortal(h);
      ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { requestLimit: 10_000 } }));
      key = (await makeKey(h, portal, { name: "Bots", scopes: ["imbot"] })).raw;
    });
    after(() => h.close());
    // The sandbox drains 2 requests a second, as Bitrix24 does: each test starts with its bucket empty.
    beforeEach(() => h.clock.advance(2 * MINUTE));

    it("POST /v1/bots registers a chatbot through imbot.register (201), with keygate's CLIENT_ID for the portal; GET /v1/bots lists it (imbot.bot.list)", async () => {
      const made = ok(await register({ code: "helpdesk", name: "Helpdesk", eventHandler: HANDLER, workPosition: "Answers questions" }), 201);
      assert.deepEqual({ ...made, id: undefined }, { id: undefined, code: "helpdesk", name: "Helpdesk", type: "bot" });
      assert.ok(Number.isInteger(made.id) && made.id > 0);
      const stored = (await bots()).find((b) => b.id === made.id)!;
      assert.equal(stored.fields["CODE"], "helpdesk");
      assert.equal(stored.fields["TYPE"], "B");
      assert.equal(stored.fields["EVENT_MESSAGE_ADD"], HANDLER);
      assert.equal(stored.fields["WORK_POSITION"], "Answers questions");
      assert.equal(stored.fields["CLIENT_ID"], botClientId(h.kg.serverSecret, portal));
      const listed = ok(await h.call("GET", "/v1/bots", { key }));
      assert.deepEqual(listed.find((b: { id: number }) => b.id === made.id), { id: made.id, code: "helpdesk", name: "Helpdesk", openline: false });

      const supervisor = ok(await register({ code: "watcher", name: "Watcher", eventHandler: HANDLER, type: "openline" }), 201);
      assert.equal((await bots()).find((b) => b.id === supervisor.id)!.fields["TYPE"], "O");
      assert.equal(ok(await h.call("GET", "/v1/bots", { key })).find((b: { id: number }) => b.id === supervisor.id).openline, true);
    });

    it("a code the portal has already is 409 BOT_ALREADY_EXISTS with details.botId; nothing new is registered", async () => {
      const first = ok(await register({ code: "dup", name: "First", eventHandler: HANDLER }), 201);
      const before = (await bots()).length;
      const again = fails(await register({ code: "dup", name: "Second", eventHandler: HANDLER }), 409, "BOT_ALREADY_EXISTS");
      assert.equal(again.details.botId, first.id);
      assert.equal(again.param, "code");
      assert.equal((await bots()).length, before);
    });

    it("POST /v1/bots/:id/messages sends as the bot (imbot.message.add), to a user or chat<id>: 201 with the message's id", async () => {
      const bot = ok(await register({ code: "talker", name: "Talker", eventHandler: HANDLER }), 201);
      const sent = ok(await h.call("POST", `/v1/bots/${bot.id}/messages`, { key, body: { dialogId: "1", message: "Hello from the bot" } }), 201);
      const toChat = ok(await h.call("POST", `/v1/bots/${bot.id}/messages`, { key, body: { dialogId: "chat7", message: "Hello, chat", system: true } }), 201);
      const stored = await messages();
      assert.deepEqual(
        stored.filter((m) => m.id === sent.id || m.id === toChat.id).map((m) => [m.fields["BOT_ID"], m.fields["DIALOG_ID"], m.fields["MESSAGE"], m.fields["SYSTEM"]]),
        [
          [bot.id, "1", "Hello from the bot", "N"],
          [bot.id, "chat7", "Hello, chat", "Y"],
        ],
      );
      ok(await h.call("POST", `/v1/bots/${bot.id}/messages`, { key, body: { dialogId: 3, message: "a number is a user id" } }), 201);
    });

    it("DELETE /v1/bots/:id unregisters it (imbot.unregister); then it is 404 BOT_NOT_FOUND to delete or speak as", async () => {
      const bot = ok(await register({ code: "shortlived", name: "Short-lived", eventHandler: HANDLER }), 201);
      assert.deepEqual(ok(await h.call("DELETE", `/v1/bots/${bot.id}`, { key })), { id: bot.id, deleted: true });
      assert.ok(!ok(await h.call("GET", "/v1/bots", { key })).some((b: { id: number }) => b.id === bot.id));
      assert.equal(fails(await h.call("DELETE", `/v1/bots/${bot.id}`, { key }), 404, "BOT_NOT_FOUND").param, "id");
      const count = (await messages()).length;
      fails(await h.call("POST", `/v1/bots/${bot.id}/messages`, { key, body: { dialogId: "1", message: "still there?" } }), 404, "BOT_NOT_FOUND");
      fails(await h.call("DELETE", "/v1/bots/999999", { key }), 404, "BOT_NOT_FOUND");
      assert.equal((await messages()).length, count);
    });

    it("a bot another application registered (another CLIENT_ID) cannot be removed through keygate: Bitrix24's APP_ID_ERROR, 422 BITRIX_ERROR", async () => {
      const foreign = await h.store.addSandboxItem(portal, "imbot", { CODE: "theirs", TYPE: "B", OPENLINE: "N", CLIENT_ID: "another-app", NAME: "Theirs", LAST_NAME: "" }, h.clock.now);
      assert.ok(ok(await h.call("GET", "/v1/bots", { key })).some((b: { id: number; code: string }) => b.id === foreign.id && b.code === "theirs"), "listed: the portal's bots");
      const refused = fails(await h.call("DELETE", `/v1/bots/${foreign.id}`, { key }), 422, "BITRIX_ERROR");
      assert.equal(refused.details.error, "APP_ID_ERROR");
      assert.ok((await bots()).some((b) => b.id === foreign.id), "still registered");
    });

    it("bad input is a 400 naming the field, and registers or sends nothing", async () => {
      const bot = ok(await register({ code: "strict", name: "Strict", eventHandler: HANDLER }), 201);
      const before = { bots: (await bots()).length, messages: (await messages()).length };
      for (const [body, param] of [
        [{ name: "No code", eventHandler: HANDLER }, "code"],
        [{ code: "", name: "Empty code", eventHandler: HANDLER }, "code"],
        [{ code: "has space", name: "x", eventHandler: HANDLER }, "code"],
        [{ code: "noname", eventHandler: HANDLER }, "name"],
        [{ code: "blank", name: "   ", eventHandler: HANDLER }, "name"],
        [{ code: "nohandler", name: "x" }, "eventHandler"],
        [{ code: "badhandler", name: "x", eventHandler: "ftp://bots.example.com" }, "eventHandler"],
        [{ code: "badtype", name: "x", eventHandler: HANDLER, type: "personal" }, "type"],
        [{ code: "extra", name: "x", eventHandler: HANDLER, extra: 1 }, "extra"],
      ] as const) {
        const r = fails(await register(body), 400, "VALIDATION_ERROR");
        assert.equal(r.param, param, JSON.stringify(body));
      }
      for (const [body, param] of [
        [{ message: "no dialog" }, "dialogId"],
        [{ dialogId: "someone", message: "x" }, "dialogId"],
        [{ dialogId: "1" }, "message"],
        [{ dialogId: "1", message: "" }, "message"],
        [{ dialogId: "1", message: "x", attach: [] }, "attach"],
      ] as const) {
        const r = fails(await h.call("POST", `/v1/bots/${bot.id}/messages`, { key, body }), 400, "VALIDATION_ERROR");
        assert.equal(r.param, param, JSON.stringify(body));
      }
      for (const id of ["abc", "0", "-1", "1.5"]) {
        assert.equal(fails(await h.call("DELETE", `/v1/bots/${id}`, { key }), 400, "VALIDATION_ERROR").param, "id", id);
      }
      fails(await h.call("POST", "/v1/bots", { key, body: "not json", headers: { "content-type": "application/json" } }), 400, "INVALID_JSON");
      assert.deepEqual({ bots: (await bots()).length, messages: (await messages()).length }, before);
    });

    it("the imbot scope: without it 403 SCOPE_DENIED; a read-only key lists but may not register, remove or send (WRITE_BLOCKED_READONLY_KEY, with the Bitrix24 method); management keys are refused", async () => {
      const bot = ok(await register({ code: "guarded", name: "Guarded", eventHandler: HANDLER }), 201);
      const before = { bots: (await bots()).length, messages: (await messages()).length };
      const crmOnly = (await makeKey(h, portal, { name: "CRM only", scopes: ["crm"] })).raw;
      assert.equal(fails(await h.call("GET", "/v1/bots", { key: crmOnly }), 403, "SCOPE_DENIED").details.requiredScope, "imbot");
      fails(await register({ code: "nope", name: "Nope", eventHandler: HANDLER }, crmOnly), 403, "SCOPE_DENIED");
      const readOnly = (await makeKey(h, portal, { name: "Read-only bots", scopes: ["imbot"], accessMode: "READONLY" })).raw;
      assert.ok(ok(await h.call("GET", "/v1/bots", { key: readOnly })).some((b: { id: number }) => b.id === bot.id));
      assert.equal(fails(await register({ code: "ro", name: "RO", eventHandler: HANDLER }, readOnly), 403, "WRITE_BLOCKED_READONLY_KEY").details.method, "imbot.register");
      assert.equal(fails(await h.call("DELETE", `/v1/bots/${bot.id}`, { key: readOnly }), 403, "WRITE_BLOCKED_READONLY_KEY").details.method, "imbot.unregister");
      assert.equal(fails(await h.call("POST", `/v1/bots/${bot.id}/messages`, { key: readOnly, body: { dialogId: "1", message: "x" } }), 403, "WRITE_BLOCKED_READONLY_KEY").details.method, "imbot.message.add");
      const manager = await makeUser(h);
      fails(await h.call("GET", "/v1/bots", { key: manager.key }), 403, "MANAGEMENT_KEY_NO_ENTITY_ACCESS");
      assert.deepEqual({ bots: (await bots()).length, messages: (await messages()).length }, before);
    });

    it("an authorization key (vibe_app_) with imbot manages bots without a session: a bot speaks as itself, not as a user", async () => {
      const app = (await makeKey(h, portal, { type: "app", name: "Bot app", scopes: ["imbot"] })).raw;
      const made = ok(await register({ code: "appbot", name: "App bot", eventHandler: HANDLER }, app), 201);
      ok(await h.call("POST", `/v1/bots/${made.id}/messages`, { key: app, body: { dialogId: "1", message: "from the app's bot" } }), 201);
      assert.ok(ok(await h.call("GET", "/v1/bots", { key: app })).some((b: { id: number }) => b.id === made.id));
    });

    it("/v1/guide lists the bot endpoints to a key holding imbot (GET /v1/bots no longer answers 501)", async () => {
      const lines = ok(await h.call("GET", "/v1/guide", { key })).endpoints.map((e: { method: string; path: string }) => `${e.method} ${e.path}`);
      for (const line of ["GET /v1/bots", "POST /v1/bots", "DELETE /v1/bots/:id", "POST /v1/bots/:id/messages"]) assert.ok(lines.includes(line), line);
    });
  });
}

describe("bots: a portal not linked to Bitrix24", () => {
  let h: Harness;
  before(async () => (h = await startHarness("sqlite", { listen: true })));
  after(() => h.close());

  it("a key whose portal was unlinked gets 400 PORTAL_NOT_LINKED", async () => {
    const portal = await makePortal(h);
    const key = (await makeKey(h, portal, { name: "Unlinked later", scopes: ["imbot"] })).raw;
    ok(await h.call("PATCH", `/v1/portals/${portal}`, { key: h.owner.key, body: { upstream: null } }));
    fails(await h.call("GET", "/v1/bots", { key }), 400, "PORTAL_NOT_LINKED");
  });
});
