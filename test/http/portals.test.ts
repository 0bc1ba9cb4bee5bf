/**
 * Portals, members, the default portal policy, an administrator changing a member's key, and
 * the portal audit trail, over HTTP on both stores (seeds 001 and 003). Every test is named after
 * the seed sentence or rule it checks. State is built through the API; each test makes its own
 * users and portals, so tests do not depend on one another.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { normalizeIp } from "../../src/limits/ip.ts";
import { type CallOptions, type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";

type Who = Awaited<ReturnType<Harness["user"]>>;

/** The data of a successful reply with the given status. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function ok(r: Reply, status = 200): any {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.success, true, JSON.stringify(r.body));
  return r.body.data;
}

/** A refusal: the status, the code, a message a person can read and, when given, the field at fault. */
function refused(r: Reply, status: number, code: string, param?: string): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.success, false, JSON.stringify(r.body));
  assert.equal(r.body.error.code, code, JSON.stringify(r.body));
  assert.equal(typeof r.body.error.message, "string");
  assert.ok(r.body.error.message.length > 0, "an error says what went wrong");
  if (param !== undefined) assert.equal(r.body.error.param, param, JSON.stringify(r.body));
}

for (const kind of await storeKinds("http: portals")) {
  describe(`portals [${kind}]`, () => {
    let h: Harness;
    let seq = 0;
    before(async () => (h = await startHarness(kind)));
    after(() => h.close());

    /** A name no other test uses. */
    const uniq = (label: string) => `${label}-${++seq}`;
    const as = (who: Who, method: string, path: string, options: Omit<CallOptions, "key"> = {}) => h.call(method, path, { key: who.key, ...options });
    const newUser = (label: string, scopes?: string) => h.user(`${uniq(label)}@example.com`, scopes);

    async function createPortal(admin: Who, body: Record<string, unknown> = {}) {
      const domain = `${uniq("portal")}.bitrix24.ru`;
      return ok(await as(admin, "POST", "/v1/portals", { body: { domain, upstream: { kind: "sandbox" }, ...body } }), 201);
    }
    async function addMember(admin: Who, portalId: string, who: Who, role?: "ADMIN" | "MEMBER") {
      return ok(await as(admin, "POST", `/v1/portals/${portalId}/members`, { body: { email: who.user.email, ...(role ? { role } : {}) } }), 201);
    }
    async function createKey(who: Who, portalId: string, body: Record<string, unknown> = {}) {
      return ok(await as(who, "POST", "/v1/keys", { body: { portalId, name: uniq("key"), scopes: ["crm"], ...body } }), 201);
    }
    /** An admin with a linked portal, a member of it, and a user outside it. */
    async function team() {
      const admin = await newUser("admin");
      const member = await newUser("member");
      const outsider = await newUser("outsider");
      const portal = await createPortal(admin);
      await addMember(admin, portal.id, member);
      return { admin, member, outsider, portal };
    }
    const portalsOf = async (who: Who) => ok(await as(who, "GET", "/v1/portals"));
    const roleOn = async (who: Who, portalId: string) => (await portalsOf(who)).find((p: { id: string }) => p.id === portalId)?.role;
    const auditOf = async (admin: Who, portalId: string, query = "") => ok(await as(admin, "GET", `/v1/portals/${portalId}/audit${query}`));
    /** The id of a management key, as the key itself reports it. */
    const keyIdOf = async (who: Who) => ok(await as(who, "GET", "/v1/me")).keyId as string;

    describe("portals", () => {
      it("seed 001: GET /v1/portals returns the portals the user has access to, with the role on each portal", async () => {
        const { admin, member, outsider, portal } = await team();
        h.clock.advance(1000);
        const own = await createPortal(member);

        const adminList = await portalsOf(admin);
        assert.deepEqual(
          adminList.map((p: { id: string; role: string }) => [p.id, p.role]),
          [[portal.id, "ADMIN"]],
        );
        const memberList = await portalsOf(member);
        assert.deepEqual(
          memberList.map((p: { id: string; role: string }) => [p.id, p.role]),
          [
            [portal.id, "MEMBER"],
            [own.id, "ADMIN"],
          ],
        );
        const shown = memberList[0];
        assert.equal(shown.domain, portal.domain);
        assert.equal(shown.status, "ACTIVE");
        assert.deepEqual(await portalsOf(outsider), [], "a user in no portal sees none");
      });

      it("POST /v1/portals answers 201 and the creator becomes the portal's ADMIN", async () => {
        const admin = await newUser("creator");
        const created = ok(await as(admin, "POST", "/v1/portals", { body: { domain: "Creator-Co.Bitrix24.ru", name: "  Creator Co  ", upstream: { kind: "sandbox" } } }), 201);
        assert.equal(created.role, "ADMIN");
        assert.equal(created.domain, "creator-co.bitrix24.ru", "domains are stored lower-cased");
        assert.equal(created.name, "Creator Co");
        assert.equal(created.status, "ACTIVE");
        assert.equal(created.defaultAccessMode, "READWRITE", "seed 003: READWRITE is the default value for the portal");
        assert.equal(created.linked, true);
        assert.deepEqual(created.upstream, { kind: "sandbox" });
        assert.equal(await roleOn(admin, created.id), "ADMIN");
      });

      it("seed 001: without an upstream the portal is not linked, and key creation answers 400 PORTAL_NOT_LINKED", async () => {
        const admin = await newUser("unlinked");
        const portal = ok(await as(admin, "POST", "/v1/portals", { body: { domain: `${uniq("unlinked")}.bitrix24.ru` } }), 201);
        assert.equal(portal.linked, false);
        assert.equal(portal.upstream, null);
        assert.equal(portal.name, portal.domain, "without a name the portal is named after its domain");

        refused(await as(admin, "POST", "/v1/keys", { body: { portalId: portal.id, name: "K", scopes: ["crm"] } }), 400, "PORTAL_NOT_LINKED", "portalId");
        assert.deepEqual(ok(await as(admin, "GET", `/v1/keys?portalId=${portal.id}`)), [], "no key was created");

        const linked = ok(
          await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { upstream: { kind: "bitrix24", webhookUrl: "https://unlinked.bitrix24.ru/rest/1/abcdef123456" } } }),
        );
        assert.equal(linked.linked, true);
        assert.deepEqual(linked.upstream, { kind: "bitrix24", webhookUrl: "https://unlinked.bitrix24.ru/rest/1/***/" }, "the webhook secret is not shown back");
        await createKey(admin, portal.id);
      });

      it("a taken domain answers 409 PORTAL_DOMAIN_TAKEN, regardless of case and of who asks", async () => {
        const { admin, outsider, portal } = await team();
        refused(await as(admin, "POST", "/v1/portals", { body: { domain: portal.domain } }), 409, "PORTAL_DOMAIN_TAKEN", "domain");
        refused(await as(outsider, "POST", "/v1/portals", { body: { domain: ` ${portal.domain.toUpperCase()} ` } }), 409, "PORTAL_DOMAIN_TAKEN", "domain");
        assert.deepEqual(await portalsOf(outsider), [], "the refused creation left no portal behind");
      });

      it("a bad domain answers 400 VALIDATION_ERROR with param domain", async () => {
        const admin = await newUser("baddomain");
        for (const domain of ["", "   ", "no_underscores.ru", "https://acme.bitrix24.ru", "acme.bitrix24.ru/path", "a..b.ru", "-acme.ru", "acme", `${"a".repeat(64)}.ru`, `${"a.".repeat(130)}ru`]) {
          refused(await as(admin, "POST", "/v1/portals", { body: { domain } }), 400, "VALIDATION_ERROR", "domain");
        }
        refused(await as(admin, "POST", "/v1/portals", { body: {} }), 400, "VALIDATION_ERROR", "domain");
        assert.deepEqual(await portalsOf(admin), []);
      });

      it("a Bitrix24 upstream must be an incoming webhook /rest/<user id>/<token>/: otherwise 400 VALIDATION_ERROR, param upstream.webhookUrl", async () => {
        const admin = await newUser("badhook");
        for (const webhookUrl of [
          "https://acme.bitrix24.ru/",
          "https://acme.bitrix24.ru/rest/",
          "https://acme.bitrix24.ru/rest/abc/token/",
          "https://acme.bitrix24.ru/rest/1/",
          "https://acme.bitrix24.ru/api/1/token/",
          "ftp://acme.bitrix24.ru/rest/1/token/",
          "acme.bitrix24.ru/rest/1/token/",
          "not a url",
          "",
        ]) {
          const r = await as(admin, "POST", "/v1/portals", { body: { domain: `${uniq("hook")}.ru`, upstream: { kind: "bitrix24", webhookUrl } } });
          refused(r, 400, "VALIDATION_ERROR", "upstream.webhookUrl");
        }
        refused(await as(admin, "POST", "/v1/portals", { body: { domain: `${uniq("hook")}.ru`, upstream: { kind: "bitrix24" } } }), 400, "VALIDATION_ERROR", "upstream.webhookUrl");
        const good = await createPortal(admin, { upstream: { kind: "bitrix24", webhookUrl: "https://acme.bitrix24.ru/rest/1/abcdef123456/" } });
        assert.equal(good.linked, true);
        assert.equal((await portalsOf(admin)).length, 1, "only the valid portal was created");
      });

      it("an unknown upstream kind answers 400 VALIDATION_ERROR, param upstream.kind", async () => {
        const admin = await newUser("badkind");
        for (const upstream of [{ kind: "jira" }, { kind: "" }, { kind: 5 }, { webhookUrl: "https://acme.bitrix24.ru/rest/1/t/" }]) {
          refused(await as(admin, "POST", "/v1/portals", { body: { domain: `${uniq("kind")}.ru`, upstream } }), 400, "VALIDATION_ERROR", "upstream.kind");
        }
        assert.deepEqual(await portalsOf(admin), []);
      });

      it("unknown fields answer 400 VALIDATION_ERROR naming the field, at the top level and in the upstream", async () => {
        const admin = await newUser("unknownfield");
        const domain = () => `${uniq("field")}.ru`;
        refused(await as(admin, "POST", "/v1/portals", { body: { domain: domain(), owner: "me" } }), 400, "VALIDATION_ERROR", "owner");
        refused(await as(admin, "POST", "/v1/portals", { body: { domain: domain(), upstream: { kind: "sandbox", token: "x" } } }), 400, "VALIDATION_ERROR", "upstream.token");
        refused(
          await as(admin, "POST", "/v1/portals", { body: { domain: domain(), upstream: { kind: "sandbox", webhookUrl: "https://acme.bitrix24.ru/rest/1/t/" } } }),
          400,
          "VALIDATION_ERROR",
          "upstream.webhookUrl",
        );
        refused(
          await as(admin, "POST", "/v1/portals", { body: { domain: domain(), upstream: { kind: "bitrix24", webhookUrl: "https://acme.bitrix24.ru/rest/1/t/", baseUrl: "https://x.ru" } } }),
          400,
          "VALIDATION_ERROR",
          "upstream.baseUrl",
        );
        const portal = await createPortal(admin);
        refused(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { status: "DISABLED" } }), 400, "VALIDATION_ERROR", "status");
        assert.equal((await portalsOf(admin)).length, 1);
      });
    });

    describe("members", () => {
      it("POST /v1/portals/:id/members adds a user by email with a role; the member then sees the portal", async () => {
        const admin = await newUser("madmin");
        const newcomer = await newUser("newcomer");
        const portal = await createPortal(admin);
        const added = ok(await as(admin, "POST", `/v1/portals/${portal.id}/members`, { body: { email: newcomer.user.email.toUpperCase(), role: "MEMBER" } }), 201);
        assert.equal(added.userId, newcomer.user.id);
        assert.equal(added.role, "MEMBER");
        assert.equal(added.email, newcomer.user.email);
        assert.equal(await roleOn(newcomer, portal.id), "MEMBER");
        const another = await newUser("defaultrole");
        assert.equal((await addMember(admin, portal.id, another)).role, "MEMBER", "without a role a new member is a MEMBER");
      });

      it("only admins manage members: a MEMBER gets 403 NOT_PORTAL_ADMIN", async () => {
        const { admin, member, portal } = await team();
        const other = await newUser("other");
        refused(await as(member, "POST", `/v1/portals/${portal.id}/members`, { body: { email: other.user.email } }), 403, "NOT_PORTAL_ADMIN");
        refused(await as(member, "POST", `/v1/portals/${portal.id}/members`, { body: { email: member.user.email, role: "ADMIN" } }), 403, "NOT_PORTAL_ADMIN");
        refused(await as(member, "DELETE", `/v1/portals/${portal.id}/members/${admin.user.id}`), 403, "NOT_PORTAL_ADMIN");
        assert.equal(await roleOn(member, portal.id), "MEMBER", "the member did not promote themselves");
        assert.equal(await roleOn(admin, portal.id), "ADMIN");
        assert.deepEqual(await portalsOf(other), []);
      });

      it("an unknown email answers 404 USER_NOT_FOUND", async () => {
        const { admin, portal } = await team();
        refused(await as(admin, "POST", `/v1/portals/${portal.id}/members`, { body: { email: "nobody@example.com" } }), 404, "USER_NOT_FOUND", "email");
        refused(await as(admin, "POST", `/v1/portals/${portal.id}/members`, { body: { email: "" } }), 404, "USER_NOT_FOUND", "email");
      });

      it("posting a member again changes the role", async () => {
        const { admin, member, portal } = await team();
        const promoted = await addMember(admin, portal.id, member, "ADMIN");
        assert.equal(promoted.role, "ADMIN");
        assert.equal(await roleOn(member, portal.id), "ADMIN");
        const demoted = await addMember(admin, portal.id, member, "MEMBER");
        assert.equal(demoted.role, "MEMBER");
        assert.equal(await roleOn(member, portal.id), "MEMBER");
        assert.equal(demoted.createdAt, promoted.createdAt, "the membership is changed, not replaced");
      });

      it("DELETE /v1/portals/:id/members/:userId removes a member (admins): the portal is gone from their list and its endpoints answer 404", async () => {
        const { admin, member, portal } = await team();
        ok(await as(admin, "DELETE", `/v1/portals/${portal.id}/members/${member.user.id}`));
        assert.equal(await roleOn(member, portal.id), undefined);
        refused(await as(member, "PATCH", `/v1/portals/${portal.id}`, { body: { name: "mine now" } }), 404, "PORTAL_NOT_FOUND");
        refused(await as(admin, "DELETE", `/v1/portals/${portal.id}/members/${member.user.id}`), 404, "USER_NOT_FOUND", "userId");
        refused(await as(member, "POST", "/v1/keys", { body: { portalId: portal.id, name: "K", scopes: ["crm"] } }), 403, "NOT_PORTAL_MEMBER", "portalId");
      });

      it("a removed member's keys on the portal are revoked (the next request gets KEY_INACTIVE), each with an audit event; their other portals' keys keep working", async () => {
        const { admin, member, portal } = await team();
        const created = ok(await as(member, "POST", "/v1/keys", { body: { portalId: portal.id, name: "Member key", scopes: ["crm"] } }), 201);
        ok(await h.call("GET", "/v1/me", { key: created.rawKey }));
        const elsewhere = ok(await as(member, "POST", "/v1/portals", { body: { domain: `own-${created.id.slice(0, 8)}.example.com`, upstream: { kind: "sandbox" } } }), 201);
        const own = ok(await as(member, "POST", "/v1/keys", { body: { portalId: elsewhere.id, name: "Own key", scopes: ["crm"] } }), 201);
        ok(await as(admin, "DELETE", `/v1/portals/${portal.id}/members/${member.user.id}`));
        refused(await h.call("GET", "/v1/me", { key: created.rawKey }), 401, "KEY_INACTIVE");
        ok(await h.call("GET", "/v1/me", { key: own.rawKey }));
        const events = ok(await as(admin, "GET", `/v1/portals/${portal.id}/audit?keyId=${created.id}`)) as { action: string; after: { status: string } }[];
        // The harness clock stands still, so create and revoke share a time: find the revocation by its action.
        const revoked = events.find((e) => e.action === "key.update");
        assert.equal(revoked?.after.status, "REVOKED");
      });

      it("issue 10.1: offboarding is final — a removed member cannot read, re-activate, widen, rotate or delete the keys the removal revoked, nor reach the portal's data", async () => {
        const { admin, member, portal } = await team();
        const created = ok(await as(member, "POST", "/v1/keys", { body: { portalId: portal.id, name: "Member key", scopes: ["crm"] } }), 201);
        ok(await h.call("GET", "/v1/me", { key: created.rawKey }));
        ok(await as(admin, "DELETE", `/v1/portals/${portal.id}/members/${member.user.id}`));
        refused(await as(member, "PATCH", `/v1/keys/${created.id}`, { body: { status: "ACTIVE" } }), 404, "KEY_NOT_FOUND");
        refused(await as(member, "PATCH", `/v1/keys/${created.id}`, { body: { scopes: ["crm", "task", "tasks"] } }), 404, "KEY_NOT_FOUND");
        refused(await as(member, "POST", `/v1/keys/${created.id}/rotate`), 404, "KEY_NOT_FOUND");
        refused(await as(member, "GET", `/v1/keys/${created.id}`), 404, "KEY_NOT_FOUND");
        refused(await as(member, "GET", `/v1/keys/${created.id}/usage`), 404, "KEY_NOT_FOUND");
        refused(await as(member, "DELETE", `/v1/keys/${created.id}`), 404, "KEY_NOT_FOUND");
        refused(await h.call("GET", "/v1/me", { key: created.rawKey }), 401, "KEY_INACTIVE");
        const still = ok(await as(admin, "GET", `/v1/keys/${created.id}`));
        assert.equal(still.status, "REVOKED", "nothing the former member tried changed the key");
        assert.deepEqual(still.scopes, created.scopes);
        assert.equal(still.rotatedToId, null);

        // Re-adding the user makes them a member again, not their old keys active.
        await addMember(admin, portal.id, member);
        refused(await h.call("GET", "/v1/me", { key: created.rawKey }), 401, "KEY_INACTIVE");
      });

      it("issue 10.9: a user's last active management key cannot be deleted or revoked (409 LAST_MANAGEMENT_KEY); with another one it can", async () => {
        const who = await newUser("manager");
        const id = await keyIdOf(who);
        refused(await as(who, "DELETE", `/v1/keys/${id}`), 409, "LAST_MANAGEMENT_KEY");
        refused(await as(who, "PATCH", `/v1/keys/${id}`, { body: { status: "REVOKED" } }), 409, "LAST_MANAGEMENT_KEY");
        ok(await as(who, "GET", "/v1/me"));
        // Rotation leaves the replacement active: the old key may then go.
        const rotated = ok(await as(who, "POST", `/v1/keys/${id}/rotate`), 201);
        ok(await as(who, "DELETE", `/v1/keys/${id}`));
        refused(await h.call("DELETE", `/v1/keys/${rotated.id}`, { key: rotated.rawKey }), 409, "LAST_MANAGEMENT_KEY");
        ok(await h.call("GET", "/v1/me", { key: rotated.rawKey }));
      });

      it("a portal keeps at least one administrator: the last admin cannot be removed or demoted (409 LAST_PORTAL_ADMIN)", async () => {
        const { admin, member, portal } = await team();
        refused(await as(admin, "DELETE", `/v1/portals/${portal.id}/members/${admin.user.id}`), 409, "LAST_PORTAL_ADMIN");
        refused(await as(admin, "POST", `/v1/portals/${portal.id}/members`, { body: { email: admin.user.email, role: "MEMBER" } }), 409, "LAST_PORTAL_ADMIN");
        assert.equal(await roleOn(admin, portal.id), "ADMIN");

        // With a second admin, the first may step down; then the second is the last one.
        await addMember(admin, portal.id, member, "ADMIN");
        await addMember(admin, portal.id, admin, "MEMBER");
        assert.equal(await roleOn(admin, portal.id), "MEMBER");
        refused(await as(member, "DELETE", `/v1/portals/${portal.id}/members/${member.user.id}`), 409, "LAST_PORTAL_ADMIN");
        refused(await as(member, "POST", `/v1/portals/${portal.id}/members`, { body: { email: member.user.email, role: "MEMBER" } }), 409, "LAST_PORTAL_ADMIN");
        ok(await as(member, "DELETE", `/v1/portals/${portal.id}/members/${admin.user.id}`), 200);
        assert.deepEqual(
          (await portalsOf(member)).map((p: { id: string; role: string }) => [p.id, p.role]),
          [[portal.id, "ADMIN"]],
        );
      });

      it("a non-member gets 404 PORTAL_NOT_FOUND for the portal's endpoints, as for a portal that does not exist", async () => {
        const { admin, member, outsider, portal } = await team();
        for (const id of [portal.id, "00000000-0000-4000-8000-000000000000"]) {
          refused(await as(outsider, "PATCH", `/v1/portals/${id}`, { body: { name: "taken over" } }), 404, "PORTAL_NOT_FOUND");
          refused(await as(outsider, "PATCH", `/v1/portals/${id}`, { body: { defaultAccessMode: "READONLY" } }), 404, "PORTAL_NOT_FOUND");
          refused(await as(outsider, "POST", `/v1/portals/${id}/members`, { body: { email: outsider.user.email, role: "ADMIN" } }), 404, "PORTAL_NOT_FOUND");
          refused(await as(outsider, "DELETE", `/v1/portals/${id}/members/${member.user.id}`), 404, "PORTAL_NOT_FOUND");
          refused(await as(outsider, "GET", `/v1/portals/${id}/audit`), 404, "PORTAL_NOT_FOUND");
        }
        // seed 001: NOT_PORTAL_MEMBER — the key owner is not a member of the specified portal.
        refused(await as(outsider, "POST", "/v1/keys", { body: { portalId: portal.id, name: "K", scopes: ["crm"] } }), 403, "NOT_PORTAL_MEMBER", "portalId");
        refused(await as(outsider, "GET", `/v1/keys?portalId=${portal.id}`), 403, "NOT_PORTAL_MEMBER", "portalId");
        assert.deepEqual(await portalsOf(outsider), []);
        assert.equal(await roleOn(member, portal.id), "MEMBER");
        const current = (await portalsOf(admin))[0];
        assert.equal(current.name, portal.name);
        assert.equal(current.defaultAccessMode, "READWRITE");
      });
    });

    describe("default portal policy (seed 003)", () => {
      it("PATCH /v1/portals/:id {defaultAccessMode}: only administrators set the default portal policy", async () => {
        const { admin, member, portal } = await team();
        refused(await as(member, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READONLY" } }), 403, "NOT_PORTAL_ADMIN");
        assert.equal((await portalsOf(member))[0].defaultAccessMode, "READWRITE");
        const updated = ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READONLY" } }));
        assert.equal(updated.defaultAccessMode, "READONLY");
        assert.equal((await portalsOf(member))[0].defaultAccessMode, "READONLY");
      });

      it("Read-only (READONLY): an attempt by an ordinary member to issue a key with READWRITE mode is rejected with 403 KEY_POLICY_READONLY_REQUIRED", async () => {
        const { admin, member, portal } = await team();
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READONLY" } }));
        for (const type of ["api", "app"]) {
          refused(await as(member, "POST", "/v1/keys", { body: { portalId: portal.id, name: "RW", scopes: ["crm"], type, accessMode: "READWRITE" } }), 403, "KEY_POLICY_READONLY_REQUIRED", "accessMode");
        }
        assert.deepEqual(ok(await as(member, "GET", `/v1/keys?portalId=${portal.id}`)), [], "no key was created");
      });

      it("Read-only (READONLY): ordinary portal members can create only read-only keys — without accessMode they get a READONLY key", async () => {
        const { admin, member, portal } = await team();
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READONLY" } }));
        const implicit = await createKey(member, portal.id);
        assert.equal(implicit.accessMode, "READONLY");
        const explicit = await createKey(member, portal.id, { accessMode: "READONLY" });
        assert.equal(explicit.accessMode, "READONLY");
        const me = ok(await h.call("GET", "/v1/me", { key: implicit.rawKey }));
        assert.equal(me.accessMode, "READONLY");
        refused(await h.call("POST", "/v1/deals", { key: implicit.rawKey, body: { title: "x" } }), 403, "WRITE_BLOCKED_READONLY_KEY");
      });

      it("The portal administrator is not subject to this restriction and creates write keys", async () => {
        const { admin, portal } = await team();
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READONLY" } }));
        const rw = await createKey(admin, portal.id, { accessMode: "READWRITE" });
        assert.equal(rw.accessMode, "READWRITE");
        const app = await createKey(admin, portal.id, { type: "app", accessMode: "READWRITE" });
        assert.equal(app.accessMode, "READWRITE");
        // "The administrator sets the mode that applies to all new keys on the portal": asked for nothing, the admin gets the policy's mode.
        assert.equal((await createKey(admin, portal.id)).accessMode, "READONLY");
      });

      it("The portal policy does not affect existing keys — it applies only at the moment a new key is created", async () => {
        const { admin, member, portal } = await team();
        const before = await createKey(member, portal.id);
        assert.equal(before.accessMode, "READWRITE");
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READONLY" } }));
        assert.equal(ok(await as(member, "GET", `/v1/keys/${before.id}`)).accessMode, "READWRITE");
        assert.equal(ok(await h.call("GET", "/v1/me", { key: before.rawKey })).accessMode, "READWRITE");
        // The write passes verification (503: this harness does not listen, so the sandbox is unreachable), it is not blocked.
        refused(await h.call("POST", "/v1/deals", { key: before.rawKey, body: { title: "x" } }), 503, "SANDBOX_UNREACHABLE");

        const readonly = await createKey(member, portal.id);
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { defaultAccessMode: "READWRITE" } }));
        assert.equal(ok(await as(member, "GET", `/v1/keys/${readonly.id}`)).accessMode, "READONLY", "relaxing the policy leaves issued keys alone too");
      });

      it("Read and write (READWRITE) is the default value for the portal: any user creates keys with any mode at their discretion", async () => {
        const { member, portal } = await team();
        assert.equal(portal.defaultAccessMode, "READWRITE");
        assert.equal((await createKey(member, portal.id)).accessMode, "READWRITE", "READWRITE is the default value for new keys");
        assert.equal((await createKey(member, portal.id, { accessMode: "READWRITE" })).accessMode, "READWRITE");
        assert.equal((await createKey(member, portal.id, { accessMode: "READONLY" })).accessMode, "READONLY");
      });
    });

    describe("an administrator changes the mode of another user's key (seed 003)", () => {
      it("A portal administrator sees other users' keys in the shared list; a member sees only their own", async () => {
        const { admin, member, portal } = await team();
        const mine = await createKey(member, portal.id);
        const admins = await createKey(admin, portal.id);
        const adminList = ok(await as(admin, "GET", `/v1/keys?portalId=${portal.id}`)).map((k: { id: string }) => k.id);
        assert.deepEqual(new Set(adminList), new Set([mine.id, admins.id]));
        const memberList = ok(await as(member, "GET", `/v1/keys?portalId=${portal.id}`)).map((k: { id: string }) => k.id);
        assert.deepEqual(memberList, [mine.id]);
        refused(await as(member, "GET", `/v1/keys/${admins.id}`), 404, "KEY_NOT_FOUND");
        refused(await as(member, "PATCH", `/v1/keys/${admins.id}`, { body: { accessMode: "READONLY" } }), 404, "KEY_NOT_FOUND");
      });

      it("…can change the mode of any key on the portal. After saving, the owner receives a message that the mode of their key was changed by an administrator", async () => {
        const { admin, member, portal } = await team();
        const key = await createKey(member, portal.id, { name: "MCP key" });
        assert.deepEqual(ok(await as(member, "GET", "/v1/me/notifications")), []);

        const changed = ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        assert.equal(changed.accessMode, "READONLY");
        assert.equal(changed.ownerId, member.user.id, "the key stays the member's");

        const inbox = ok(await as(member, "GET", "/v1/me/notifications"));
        assert.equal(inbox.length, 1);
        const note = inbox[0];
        assert.equal(note.kind, "key.access_mode_changed");
        assert.equal(note.readAt, null);
        assert.equal(typeof note.at, "string");
        assert.match(note.message, /administrator/);
        assert.match(note.message, /MCP key/);
        assert.match(note.message, /READONLY/);
        assert.deepEqual(note.data, { keyId: key.id, from: "READWRITE", to: "READONLY", by: admin.user.id });
        assert.deepEqual(ok(await h.call("GET", "/v1/me/notifications", { key: key.rawKey })), inbox, "the owner's portal key reads the same inbox");
        assert.deepEqual(ok(await as(admin, "GET", "/v1/me/notifications")), [], "the administrator is not notified");

        // POST /v1/me/notifications/:id/read marks it read; nobody else can.
        refused(await as(admin, "POST", `/v1/me/notifications/${note.id}/read`), 404, "NOTIFICATION_NOT_FOUND");
        assert.equal(ok(await as(member, "GET", "/v1/me/notifications"))[0].readAt, null);
        assert.deepEqual(ok(await as(member, "POST", `/v1/me/notifications/${note.id}/read`)), { id: note.id, read: true });
        assert.equal(ok(await as(member, "GET", "/v1/me/notifications"))[0].readAt, new Date(h.clock.now).toISOString());

        // Setting the mode it already has is no change: no message.
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        assert.equal(ok(await as(member, "GET", "/v1/me/notifications")).length, 1);
      });

      it("the key owner changing their own key's mode gets no message", async () => {
        const { admin, member, portal } = await team();
        const key = await createKey(member, portal.id);
        ok(await as(member, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        ok(await as(member, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READWRITE" } }));
        assert.deepEqual(ok(await as(member, "GET", "/v1/me/notifications")), []);
        // Nor does an administrator changing the mode of their own key.
        const own = await createKey(admin, portal.id);
        ok(await as(admin, "PATCH", `/v1/keys/${own.id}`, { body: { accessMode: "READONLY" } }));
        assert.deepEqual(ok(await as(admin, "GET", "/v1/me/notifications")), []);
      });

      it("Save the changes — the mode applies to the next request (the next write with the key is blocked)", async () => {
        const { admin, member, portal } = await team();
        const key = await createKey(member, portal.id);
        refused(await h.call("POST", "/v1/deals", { key: key.rawKey, body: { title: "x" } }), 503, "SANDBOX_UNREACHABLE");
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        const blocked = await h.call("POST", "/v1/deals", { key: key.rawKey, body: { title: "x" } });
        refused(blocked, 403, "WRITE_BLOCKED_READONLY_KEY");
        assert.equal(blocked.body.error.details.currentMode, "READONLY");
        assert.equal(blocked.body.error.details.method, "crm.item.add");
        refused(await h.call("GET", "/v1/deals", { key: key.rawKey }), 503, "SANDBOX_UNREACHABLE", undefined);
        assert.equal(ok(await h.call("GET", "/v1/me", { key: key.rawKey })).accessMode, "READONLY");

        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READWRITE" } }));
        refused(await h.call("POST", "/v1/deals", { key: key.rawKey, body: { title: "x" } }), 503, "SANDBOX_UNREACHABLE");
      });
    });

    describe("audit", () => {
      it("GET /v1/portals/:id/audit is for administrators: a member gets 403 NOT_PORTAL_ADMIN", async () => {
        const { admin, member, portal } = await team();
        refused(await as(member, "GET", `/v1/portals/${portal.id}/audit`), 403, "NOT_PORTAL_ADMIN");
        assert.ok((await auditOf(admin, portal.id)).length > 0);
      });

      it("the audit trail shows portal.create, portal.update, member.add, member.update and member.remove with actor user, actor key, source IP, time and before/after", async () => {
        const admin = await newUser("auditor");
        const member = await newUser("audited");
        const adminKeyId = await keyIdOf(admin);
        const ip = "203.0.113.7";
        const step = async (method: string, path: string, body: unknown, from = ip) => {
          h.clock.advance(1000);
          return as(admin, method, path, { body, ip: from });
        };
        const created = ok(await step("POST", "/v1/portals", { domain: `${uniq("audit")}.bitrix24.ru` }), 201);
        const t0 = h.clock.now;
        const id = created.id;
        ok(await step("POST", `/v1/portals/${id}/members`, { email: member.user.email }), 201);
        ok(await step("POST", `/v1/portals/${id}/members`, { email: member.user.email, role: "ADMIN" }), 201);
        ok(await step("PATCH", `/v1/portals/${id}`, { defaultAccessMode: "READONLY" }, "2001:db8::1"));
        ok(await step("DELETE", `/v1/portals/${id}/members/${member.user.id}`, undefined));

        const events = await auditOf(admin, id);
        assert.deepEqual(
          events.map((e: { action: string }) => e.action),
          ["member.remove", "portal.update", "member.update", "member.add", "portal.create"],
          "newest first",
        );
        events.forEach((e: Record<string, unknown>, i: number) => {
          assert.equal(e.actorUserId, admin.user.id, `${e.action}: actor user`);
          assert.equal(e.actorKeyId, adminKeyId, `${e.action}: actor key`);
          assert.equal(e.portalId, id);
          assert.equal(e.at, new Date(t0 + (4 - i) * 1000).toISOString(), `${e.action}: time`);
          assert.equal(e.sourceIp, e.action === "portal.update" ? normalizeIp("2001:db8::1") : ip, `${e.action}: source IP`);
        });
        const [remove, update, promote, add, create] = events;
        assert.equal(create.entityId, id);
        assert.equal(create.before, null);
        assert.equal(create.after.domain, created.domain);
        assert.equal(create.after.defaultAccessMode, "READWRITE");
        assert.equal(add.entityId, member.user.id);
        assert.equal(add.before, null);
        assert.equal(add.after.role, "MEMBER");
        assert.equal(promote.before.role, "MEMBER");
        assert.equal(promote.after.role, "ADMIN");
        assert.equal(update.before.defaultAccessMode, "READWRITE");
        assert.equal(update.after.defaultAccessMode, "READONLY");
        assert.equal(remove.entityId, member.user.id);
        assert.equal(remove.before.role, "ADMIN");
        assert.equal(remove.after, null);
      });

      it("the audit trail filters: limit keeps the newest events, keyId keeps one key's events", async () => {
        const { admin, member, portal } = await team();
        h.clock.advance(1000);
        const key = await createKey(member, portal.id);
        h.clock.advance(1000);
        ok(await as(admin, "PATCH", `/v1/keys/${key.id}`, { body: { accessMode: "READONLY" } }));
        h.clock.advance(1000);
        await createKey(admin, portal.id);

        const all = await auditOf(admin, portal.id);
        assert.equal(all.length, 5, all.map((e: { action: string }) => e.action).join(", "));
        const two = await auditOf(admin, portal.id, "?limit=2");
        assert.deepEqual(two, all.slice(0, 2));
        const one = await auditOf(admin, portal.id, `?keyId=${key.id}`);
        assert.deepEqual(
          one.map((e: { action: string; entityId: string }) => [e.action, e.entityId]),
          [
            ["key.update", key.id],
            ["key.create", key.id],
          ],
        );
        assert.equal(one[0].actorUserId, admin.user.id, "the admin changed the member's key");
        assert.equal(one[1].actorUserId, member.user.id);
        assert.equal(one[0].before.accessMode, "READWRITE");
        assert.equal(one[0].after.accessMode, "READONLY");
        assert.ok(!JSON.stringify(one).includes(key.rawKey), "the audit trail never holds a key's secret");
        assert.ok(!JSON.stringify(one).includes('"digest"'), "nor its digest");
        assert.deepEqual(await auditOf(admin, portal.id, "?keyId=00000000-0000-4000-8000-000000000000"), []);
        refused(await as(admin, "GET", `/v1/portals/${portal.id}/audit?limit=ten`), 400, "VALIDATION_ERROR", "limit");
        refused(await as(admin, "GET", `/v1/portals/${portal.id}/audit?actor=me`), 400, "VALIDATION_ERROR", "actor");
      });

      it("the audit trail never shows a Bitrix24 webhook's secret token", async () => {
        const admin = await newUser("hooksecret");
        const token = "s3cr3tw3bh00kt0k3n";
        const portal = await createPortal(admin, { upstream: { kind: "bitrix24", webhookUrl: `https://acme.bitrix24.ru/rest/1/${token}/` } });
        h.clock.advance(1000);
        ok(await as(admin, "PATCH", `/v1/portals/${portal.id}`, { body: { upstream: { kind: "bitrix24", webhookUrl: `https://acme.bitrix24.ru/rest/7/${token}x/` } } }));
        const events = await auditOf(admin, portal.id);
        assert.deepEqual(
          events.map((e: { action: string }) => e.action),
          ["portal.update", "portal.create"],
        );
        assert.ok(!JSON.stringify(events).includes(token), JSON.stringify(events));
        assert.equal(events[0].before.upstream.kind, "bitrix24", "what changed is still visible");
        assert.notDeepEqual(events[0].before.upstream, events[0].after.upstream);
      });
    });

    describe("bad input never gives a 500", () => {
      const huge = "x".repeat(200_000);
      const nul = "acme\u0000.ru";

      it("wrong types, unknown fields, invalid JSON, empty bodies and huge strings sent to the portal and member endpoints answer 4xx with a code and a message, and change nothing", async () => {
        const { admin, member, portal } = await team();
        const key = await createKey(member, portal.id);
        const snapshot = async () => ({
          admin: await portalsOf(admin),
          member: await portalsOf(member),
          audit: await auditOf(admin, portal.id),
          key: ok(await as(admin, "GET", `/v1/keys/${key.id}`)),
        });
        const beforeAll = await snapshot();
        const id = portal.id;
        const raw = (body: string, contentType = "application/json") => ({ body, headers: { "content-type": contentType } });

        const cases: [string, string, Omit<CallOptions, "key">][] = [
          // POST /v1/portals
          ["POST", "/v1/portals", { body: { domain: 42 } }],
          ["POST", "/v1/portals", { body: { domain: ["a.ru"] } }],
          ["POST", "/v1/portals", { body: { domain: null } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", name: 7 } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", upstream: "sandbox" } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", upstream: [] } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", upstream: { kind: "http", baseUrl: 5 } } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", upstream: { kind: "http", baseUrl: "javascript:alert(1)" } } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", upstream: { kind: "http" } } }],
          ["POST", "/v1/portals", raw('{"domain": "ok.ru", "__proto__": {"role": "OWNER"}}')],
          ["POST", "/v1/portals", raw('{"domain": "ok.ru", "constructor": {"prototype": {"role": "OWNER"}}}')],
          ["POST", "/v1/portals", { body: { domain: huge } }],
          ["POST", "/v1/portals", { body: { domain: `${huge}.ru` } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", name: huge } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", upstream: { kind: "bitrix24", webhookUrl: `https://acme.bitrix24.ru/${huge}` } } }],
          ["POST", "/v1/portals", { body: { domain: nul } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", name: "a\u0000b" } }],
          ["POST", "/v1/portals", { body: { domain: "ok.ru", name: "x".repeat(2_000_000) } }],
          ["POST", "/v1/portals", raw("{")],
          ["POST", "/v1/portals", raw('{"domain": "ok.ru",}')],
          ["POST", "/v1/portals", raw("")],
          ["POST", "/v1/portals", raw("null")],
          ["POST", "/v1/portals", raw("[]")],
          ["POST", "/v1/portals", raw('"ok.ru"')],
          ["POST", "/v1/portals", raw("domain=ok.ru", "application/x-www-form-urlencoded")],
          ["POST", "/v1/portals", raw("ok.ru", "text/plain")],
          ["POST", "/v1/portals", {}],
          // PATCH /v1/portals/:id
          ["PATCH", `/v1/portals/${id}`, { body: {} }],
          ["PATCH", `/v1/portals/${id}`, { body: { name: "" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { name: "   " } }],
          ["PATCH", `/v1/portals/${id}`, { body: { name: huge } }],
          ["PATCH", `/v1/portals/${id}`, { body: { name: "a\u0000b" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { name: null } }],
          ["PATCH", `/v1/portals/${id}`, { body: { defaultAccessMode: "WRITE" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { defaultAccessMode: "readonly" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { defaultAccessMode: null } }],
          ["PATCH", `/v1/portals/${id}`, { body: { defaultAccessMode: true } }],
          ["PATCH", `/v1/portals/${id}`, { body: { requestLimit: "5" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { requestLimit: 0 } }],
          ["PATCH", `/v1/portals/${id}`, { body: { requestLimit: -1 } }],
          ["PATCH", `/v1/portals/${id}`, { body: { requestLimit: 1.5 } }],
          ["PATCH", `/v1/portals/${id}`, { body: { requestLimit: 1e300 } }],
          ["PATCH", `/v1/portals/${id}`, { body: { upstream: { kind: "jira" } } }],
          ["PATCH", `/v1/portals/${id}`, { body: { upstream: { kind: "bitrix24", webhookUrl: "https://a.ru/rest/x/" } } }],
          ["PATCH", `/v1/portals/${id}`, { body: { domain: "renamed.ru" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { status: "DISABLED" } }],
          ["PATCH", `/v1/portals/${id}`, { body: { id: "other" } }],
          ["PATCH", `/v1/portals/${id}`, raw("{")],
          ["PATCH", `/v1/portals/${id}`, raw("")],
          ["PATCH", `/v1/portals/${id}`, raw("[1,2]")],
          ["PATCH", `/v1/portals/${id}`, {}],
          ["PATCH", "/v1/portals/%00", { body: { name: "x" } }],
          ["PATCH", `/v1/portals/${"9".repeat(10_000)}`, { body: { name: "x" } }],
          ["PATCH", "/v1/portals/%E0%A4%A", { body: { name: "x" } }],
          // POST /v1/portals/:id/members
          ["POST", `/v1/portals/${id}/members`, { body: {} }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: 5 } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: null } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: [member.user.email] } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: member.user.email, role: "OWNER" } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: member.user.email, role: "admin" } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: member.user.email, role: 1 } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: member.user.email, role: "ADMIN", userId: member.user.id } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: huge } }],
          ["POST", `/v1/portals/${id}/members`, { body: { email: `${member.user.email}\u0000` } }],
          ["POST", `/v1/portals/${id}/members`, raw("{")],
          ["POST", `/v1/portals/${id}/members`, raw("")],
          ["POST", `/v1/portals/${id}/members`, raw("true")],
          ["POST", `/v1/portals/${id}/members`, {}],
          ["POST", "/v1/portals/%00/members", { body: { email: member.user.email, role: "ADMIN" } }],
          // DELETE /v1/portals/:id/members/:userId
          ["DELETE", `/v1/portals/${id}/members/nobody`, {}],
          ["DELETE", `/v1/portals/${id}/members/%00`, {}],
          ["DELETE", `/v1/portals/${id}/members/${huge}`, {}],
          ["DELETE", `/v1/portals/${id}/members/${encodeURIComponent("' OR 1=1 --")}`, {}],
          ["DELETE", "/v1/portals/%00/members/x", {}],
          // GET /v1/portals/:id/audit
          ["GET", `/v1/portals/${id}/audit?limit=-1`, {}],
          ["GET", `/v1/portals/${id}/audit?limit=1e3`, {}],
          ["GET", `/v1/portals/${id}/audit?keyId=%00`, {}],
          ["GET", `/v1/portals/%00/audit`, {}],
        ];
        for (const [method, path, options] of cases) {
          const r = await as(admin, method, path, options);
          const label = `${method} ${path.slice(0, 80)} ${JSON.stringify(options).slice(0, 120)} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`;
          assert.ok(r.status >= 400 && r.status < 500, label);
          assert.equal(r.body.success, false, label);
          assert.equal(typeof r.body.error.code, "string", label);
          assert.notEqual(r.body.error.code, "INTERNAL_ERROR", label);
          assert.ok(typeof r.body.error.message === "string" && r.body.error.message.length > 0, label);
          assert.match(String(r.headers["x-request-id"]), /^req_/, label);
        }
        assert.deepEqual(await snapshot(), beforeAll, "nothing stored changed");
      });
    });
  });
}
