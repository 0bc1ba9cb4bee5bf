/**
 * Feedback tickets over HTTP on both stores (seed 001, issue 17 §1, docs/feedback.md): each
 * endpoint with the keys that may and may not call it, who sees which tickets, the status
 * changes the statuses' meanings allow, the author being told, and bad input refused with the
 * field at fault and nothing stored. Each test builds its own users and portals.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { type CallOptions, type Harness, type Reply, startHarness, storeKinds } from "../support/gateway.ts";
import { fails, ok } from "./_fixtures.ts";

interface Who {
  email: string;
  key: string;
}

for (const kind of await storeKinds("http: feedback")) {
  describe(`feedback [${kind}]`, () => {
    let h: Harness;
    let seq = 0;
    before(async () => (h = await startHarness(kind)));
    after(() => h.close());

    const uniq = (label: string) => `${label}-${++seq}`;
    const as = (who: Who | string, method: string, path: string, options: Omit<CallOptions, "key"> = {}): Promise<Reply> =>
      h.call(method, path, { key: typeof who === "string" ? who : who.key, ...options });

    /** A user with a management key: role staff (the instance's team) or user. */
    async function person(label: string, role: "staff" | "user" = "user", scopes: string | string[] = h.kg.profile.management.scopes): Promise<Who> {
      const user = await createUser(h.kg, null, { email: `${uniq(label)}@example.com`, role });
      return { email: user.email, key: (await issueManagementKey(h.kg, user, scopes)).rawKey };
    }
    async function portal(admin: Who): Promise<string> {
      return ok(await as(admin, "POST", "/v1/portals", { body: { domain: `${uniq("portal")}.bitrix24.ru`, upstream: { kind: "sandbox" } } }), 201).id;
    }
    async function join(admin: Who, portalId: string, who: Who): Promise<void> {
      ok(await as(admin, "POST", `/v1/portals/${portalId}/members`, { body: { email: who.email } }), 201);
    }
    async function portalKey(who: Who, portalId: string, scopes = ["crm", "vibe:feedback"], type = "api"): Promise<string> {
      return ok(await as(who, "POST", "/v1/keys", { body: { portalId, name: uniq("key"), scopes, type } }), 201).rawKey;
    }
    async function send(key: string, body: Record<string, unknown> = {}) {
      return ok(await as(key, "POST", "/v1/feedback", { body: { category: "BUG", title: uniq("title"), message: "It breaks.", ...body } }), 201);
    }
    /** An admin of a portal with a member; both hold portal keys with vibe:feedback; a staff member; an outsider with a portal of their own. */
    async function world() {
      const admin = await person("admin");
      const member = await person("member");
      const staff = await person("staff", "staff");
      const outsider = await person("outsider");
      const p = await portal(admin);
      await join(admin, p, member);
      const other = await portal(outsider);
      return { admin, member, staff, outsider, p, other, adminKey: await portalKey(admin, p), memberKey: await portalKey(member, p), outsiderKey: await portalKey(outsider, other) };
    }
    const ids = (r: Reply): string[] => ok(r).map((t: { id: string }) => t.id);

    describe("POST /v1/feedback", () => {
      it('seed 001: a portal key holding vibe:feedback sends a ticket → 201, status NEW, with its author (user and key) and portal', async () => {
        const w = await world();
        const t = await send(w.memberKey, { category: "DOCS", title: "Guide typo", message: "Step 2 says POST.", context: { steps: ["GET /v1/guide"], env: { node: "24" } } });
        assert.equal(t.status, "NEW");
        assert.equal(t.category, "DOCS");
        assert.equal(t.title, "Guide typo");
        assert.deepEqual(t.context, { steps: ["GET /v1/guide"], env: { node: "24" } });
        assert.equal(t.portalId, w.p);
        assert.equal(t.resolution, null);
        assert.equal(t.author.keyId, ok(await as(w.memberKey, "GET", "/v1/me")).keyId);
        assert.equal(typeof t.createdAt, "string");
      });

      it("seed 000: without vibe:feedback a portal key gets the profile's scope error (SCOPE_DENIED), and nothing is stored", async () => {
        const w = await world();
        const before = ok(await as(w.staff, "GET", "/v1/feedback")).length;
        fails(await as(await portalKey(w.member, w.p, ["crm"]), "POST", "/v1/feedback", { body: { category: "BUG", title: "x", message: "y" } }), 403, "SCOPE_DENIED");
        const noFeedback = await person("nofeedback", "staff", "vibe:mgmt:keys");
        fails(await as(noFeedback, "GET", "/v1/feedback"), 403, "MANAGEMENT_SCOPE_REQUIRED");
        assert.equal((await as(w.staff, "GET", "/v1/feedback")).body.meta.total, before);
      });

      it("bad input → 400 VALIDATION_ERROR naming the field, and nothing stored", async () => {
        const w = await world();
        const good = { category: "BUG", title: "t", message: "m" };
        const cases: [Record<string, unknown>, string][] = [
          [{ title: "t", message: "m" }, "category"],
          [{ ...good, category: "FEATURE" }, "category"],
          [{ ...good, title: "" }, "title"],
          [{ ...good, title: "   " }, "title"],
          [{ ...good, title: "x".repeat(201) }, "title"],
          [{ ...good, message: undefined }, "message"],
          [{ ...good, message: 5 }, "message"],
          [{ ...good, context: ["not", "an", "object"] }, "context"],
          [{ ...good, context: { log: "x".repeat(17 * 1024) } }, "context"],
          [{ ...good, status: "RESOLVED" }, "status"],
        ];
        for (const [body, field] of cases) {
          const e = fails(await as(w.memberKey, "POST", "/v1/feedback", { body }), 400, "VALIDATION_ERROR");
          assert.equal(e.param, field, JSON.stringify(body));
        }
        assert.equal(ok(await as(w.memberKey, "GET", "/v1/feedback")).length, 0, "nothing was stored");
      });
    });

    describe("GET /v1/feedback: who sees what (seed 001, docs/feedback.md)", () => {
      it('seed 001: a portal key sees "own tickets only": its owner\'s, sent from its portal', async () => {
        const w = await world();
        const mine = await send(w.memberKey);
        const adminsTicket = await send(w.adminKey);
        // The same user's key on another portal: a key sees its own portal's tickets.
        await join(w.outsider, w.other, w.member);
        const elsewhere = await send(await portalKey(w.member, w.other));
        assert.deepEqual(ids(await as(w.memberKey, "GET", "/v1/feedback")), [mine.id]);
        fails(await as(w.memberKey, "GET", `/v1/feedback/${adminsTicket.id}`), 404, "TICKET_NOT_FOUND");
        fails(await as(w.memberKey, "GET", `/v1/feedback/${elsewhere.id}`), 404, "TICKET_NOT_FOUND");
        ok(await as(w.memberKey, "GET", `/v1/feedback/${mine.id}`));
      });

      it('seed 001: a management key of the instance\'s staff sees "all platform tickets"', async () => {
        const w = await world();
        const a = await send(w.memberKey);
        const b = await send(w.outsiderKey);
        const seen = ids(await as(w.staff, "GET", "/v1/feedback?limit=100"));
        assert.ok(seen.includes(a.id) && seen.includes(b.id));
        ok(await as(w.staff, "GET", `/v1/feedback/${b.id}`));
      });

      it("docs/feedback.md: another user's management key sees the tickets of the portals they administer plus their own, no others", async () => {
        const w = await world();
        const members = await send(w.memberKey);
        const outsiders = await send(w.outsiderKey);
        const own = await send(w.admin.key);
        const seen = ids(await as(w.admin, "GET", "/v1/feedback"));
        assert.deepEqual(seen.sort(), [members.id, own.id].sort());
        fails(await as(w.admin, "GET", `/v1/feedback/${outsiders.id}`), 404, "TICKET_NOT_FOUND");
        // A plain member administers nothing: their management key sees their own tickets only.
        assert.deepEqual(ids(await as(w.member, "GET", "/v1/feedback")), [members.id]);
      });

      it("seed 001: filters status, category, portalId; limit defaults to 50 and is capped at 100; meta gives total, page, limit, hasMore", async () => {
        const w = await world();
        const bug = await send(w.memberKey, { category: "BUG" });
        h.clock.advance(1000);
        const docs = await send(w.memberKey, { category: "DOCS" });
        const other = await send(w.outsiderKey, { category: "BUG" });
        ok(await as(w.staff, "PATCH", `/v1/feedback/${docs.id}`, { body: { status: "REVIEWING" } }));
        const mine = (q: string) => as(w.admin, "GET", `/v1/feedback${q}`);
        assert.deepEqual(ids(await mine("?category=DOCS")), [docs.id]);
        assert.deepEqual(ids(await mine("?status=NEW")), [bug.id]);
        assert.deepEqual(ids(await mine("?status=REVIEWING&category=DOCS")), [docs.id]);
        assert.deepEqual(ids(await as(w.staff, "GET", `/v1/feedback?portalId=${w.other}`)), [other.id]);
        // A filter cannot widen what a key sees.
        assert.deepEqual(ids(await mine(`?portalId=${w.other}`)), []);

        const r = await mine("");
        assert.deepEqual(r.body.meta, { total: 2, page: 1, limit: 50, hasMore: false });
        assert.equal((await mine("?limit=500")).body.meta.limit, 100);
        const first = await mine("?limit=1");
        assert.deepEqual(first.body.meta, { total: 2, page: 1, limit: 1, hasMore: true });
        assert.deepEqual(ids(first), [docs.id], "newest first");
        const second = await mine("?limit=1&page=2");
        assert.deepEqual(second.body.meta, { total: 2, page: 2, limit: 1, hasMore: false });
        assert.deepEqual(ids(second), [bug.id]);
      });

      it("bad filters → 400 VALIDATION_ERROR naming the parameter", async () => {
        const w = await world();
        for (const [q, field] of [["status=OPEN", "status"], ["category=bug", "category"], ["limit=0", "limit"], ["limit=ten", "limit"], ["page=0", "page"], ["sort=new", "sort"]]) {
          assert.equal(fails(await as(w.staff, "GET", `/v1/feedback?${q}`), 400, "VALIDATION_ERROR").param, field, q);
        }
      });
    });

    describe("GET /v1/feedback/:id", () => {
      it("seed 001: the ticket with its full comment thread, oldest first", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        ok(await as(w.staff, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "Which node?", status: "AWAITING_USER" } }), 201);
        h.clock.advance(1000);
        ok(await as(w.memberKey, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "node 24" } }), 201);
        const read = ok(await as(w.memberKey, "GET", `/v1/feedback/${t.id}`));
        assert.equal(read.title, t.title);
        assert.deepEqual(
          read.comments.map((c: { message: string; byTeam: boolean; statusChange: unknown }) => [c.message, c.byTeam, c.statusChange]),
          [
            ["Which node?", true, { from: "NEW", to: "AWAITING_USER" }],
            ["node 24", false, { from: "AWAITING_USER", to: "NEEDS_REVIEW" }],
          ],
        );
        fails(await as(w.staff, "GET", "/v1/feedback/no-such-ticket"), 404, "TICKET_NOT_FOUND");
      });

      it("comments written at the same clock instant come back in the order they were written", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        const written = Array.from({ length: 8 }, (_, i) => `reply ${i + 1}`);
        // The harness's clock does not move between them: created_at ties, the ids keep the order.
        for (const [i, message] of written.entries()) ok(await as(i % 2 ? w.memberKey : w.staff, "POST", `/v1/feedback/${t.id}/comments`, { body: { message } }), 201);
        const read = ok(await as(w.memberKey, "GET", `/v1/feedback/${t.id}`));
        assert.deepEqual(read.comments.map((c: { message: string }) => c.message), written);
        assert.equal(new Set(read.comments.map((c: { createdAt: string }) => c.createdAt)).size, 1, "all at one instant");
      });
    });

    describe("GET /v1/feedback, ties", () => {
      it("tickets sent at the same clock instant list newest first in the order they were sent", async () => {
        const w = await world();
        const sent = [];
        // The harness's clock does not move between them: created_at ties, the ids keep the order.
        for (let i = 0; i < 6; i++) sent.push((await send(w.memberKey)).id);
        const listed = ok(await as(w.memberKey, "GET", "/v1/feedback"));
        assert.deepEqual(listed.map((t: { id: string }) => t.id), sent.reverse());
      });
    });

    describe("POST /v1/feedback/:id/comments", () => {
      it("seed 001: the team replies and changes the status in one step; the author is told (in-app notification)", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        const after = ok(await as(w.staff, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "Can you send the request id?", status: "AWAITING_USER" } }), 201);
        assert.equal(after.status, "AWAITING_USER");
        const notes = ok(await as(w.memberKey, "GET", "/v1/me/notifications"));
        assert.equal(notes.length, 1);
        assert.equal(notes[0].kind, "feedback.awaiting_user");
        assert.match(notes[0].message, /Can you send the request id\?/);
        assert.deepEqual(notes[0].data, { ticketId: t.id, status: "AWAITING_USER" });
      });

      it("issue 17: the author's reply to an AWAITING_USER ticket moves it to NEEDS_REVIEW by itself; to other tickets it changes nothing", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        assert.equal(ok(await as(w.memberKey, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "More detail" } }), 201).status, "NEW");
        ok(await as(w.staff, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "Which version?", status: "AWAITING_USER" } }), 201);
        assert.equal(ok(await as(w.memberKey, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "1.2.3" } }), 201).status, "NEEDS_REVIEW");
      });

      it("the author cannot set a status (403 FEEDBACK_TEAM_ONLY); a portal admin who sees the ticket cannot write in it (403 NOT_TICKET_AUTHOR); nothing is stored", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        assert.equal(fails(await as(w.memberKey, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "done", status: "RESOLVED" } }), 403, "FEEDBACK_TEAM_ONLY").param, "status");
        fails(await as(w.admin, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "me too" } }), 403, "NOT_TICKET_AUTHOR");
        fails(await as(w.outsiderKey, "POST", `/v1/feedback/${t.id}/comments`, { body: { message: "hi" } }), 404, "TICKET_NOT_FOUND");
        const read = ok(await as(w.memberKey, "GET", `/v1/feedback/${t.id}`));
        assert.equal(read.status, "NEW");
        assert.equal(read.comments.length, 0);
      });

      it("seed 001 statuses: an impossible change → 400 INVALID_STATUS_TRANSITION naming status; bad bodies → 400 with the field; nothing stored", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        const comment = (body: unknown) => as(w.staff, "POST", `/v1/feedback/${t.id}/comments`, { body });
        // NEW is only a ticket just sent; NEEDS_REVIEW only the author's reply sets.
        for (const status of ["NEEDS_REVIEW"]) assert.equal(fails(await comment({ message: "x", status }), 400, "INVALID_STATUS_TRANSITION").param, "status");
        ok(await comment({ message: "Fixed in 1.3", status: "RESOLVED" }), 201);
        for (const status of ["NEW", "AWAITING_USER", "NEEDS_REVIEW", "ARCHIVED"]) {
          const e = fails(await comment({ message: "x", status }), 400, "INVALID_STATUS_TRANSITION");
          assert.equal(e.param, "status");
          assert.deepEqual(e.details, { from: "RESOLVED", to: status });
        }
        for (const [body, field] of [[{}, "message"], [{ message: "" }, "message"], [{ message: "  " }, "message"], [{ message: "x", status: "DONE" }, "status"], [{ message: "x", extra: 1 }, "extra"]] as const) {
          assert.equal(fails(await comment(body), 400, "VALIDATION_ERROR").param, field, JSON.stringify(body));
        }
        const read = ok(await as(w.staff, "GET", `/v1/feedback/${t.id}`));
        assert.equal(read.status, "RESOLVED");
        assert.equal(read.comments.length, 1, "only the accepted comment is stored");
        // Reopened by taking it into work again.
        assert.equal(ok(await comment({ message: "Regressed", status: "REVIEWING" }), 201).status, "REVIEWING");
      });
    });

    describe("PATCH /v1/feedback/:id", () => {
      it("seed 001: the team changes status and resolution; resolving tells the author", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        const done = ok(await as(w.staff, "PATCH", `/v1/feedback/${t.id}`, { body: { status: "RESOLVED", resolution: "Fixed in 1.3" } }));
        assert.equal(done.status, "RESOLVED");
        assert.equal(done.resolution, "Fixed in 1.3");
        const notes = ok(await as(w.memberKey, "GET", "/v1/me/notifications"));
        assert.deepEqual(notes.map((n: { kind: string }) => n.kind), ["feedback.resolved"]);
        assert.match(notes[0].message, /Fixed in 1\.3/);
        // The owner made by init is staff too (role owner): the harness owner is a plain user here.
        const owner = await createUser(h.kg, null, { email: `${uniq("owner")}@example.com`, role: "owner" });
        const ownerKey = (await issueManagementKey(h.kg, owner, "vibe:mgmt:feedback")).rawKey;
        assert.equal(ok(await as(ownerKey, "PATCH", `/v1/feedback/${t.id}`, { body: { status: "REVIEWING" } })).status, "REVIEWING");
      });

      it("staff-only: portal keys get MANAGEMENT_KEY_REQUIRED, a non-staff management key FEEDBACK_TEAM_ONLY; nothing changes", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        fails(await as(w.memberKey, "PATCH", `/v1/feedback/${t.id}`, { body: { status: "RESOLVED" } }), 403, "MANAGEMENT_KEY_REQUIRED");
        fails(await as(w.admin, "PATCH", `/v1/feedback/${t.id}`, { body: { status: "RESOLVED" } }), 403, "FEEDBACK_TEAM_ONLY");
        fails(await as(w.outsider, "PATCH", `/v1/feedback/${t.id}`, { body: { status: "RESOLVED" } }), 404, "TICKET_NOT_FOUND");
        assert.equal(ok(await as(w.staff, "GET", `/v1/feedback/${t.id}`)).status, "NEW");
      });

      it("bad input → 400 with the field (impossible change INVALID_STATUS_TRANSITION), nothing stored", async () => {
        const w = await world();
        const t = await send(w.memberKey);
        const patch = (body: unknown) => as(w.staff, "PATCH", `/v1/feedback/${t.id}`, { body });
        h.clock.advance(1000);
        const taken = ok(await patch({ status: "REVIEWING" }));
        h.clock.advance(1000);
        assert.equal(fails(await patch({ status: "NEW" }), 400, "INVALID_STATUS_TRANSITION").param, "status");
        assert.equal(fails(await patch({ status: "NEEDS_REVIEW" }), 400, "INVALID_STATUS_TRANSITION").param, "status");
        for (const [body, field] of [[{ status: "CLOSED" }, "status"], [{ resolution: 5 }, "resolution"], [{ resolution: "x".repeat(2001) }, "resolution"], [{ title: "x" }, "title"]] as const) {
          assert.equal(fails(await patch(body), 400, "VALIDATION_ERROR").param, field, JSON.stringify(body));
        }
        fails(await patch({}), 400, "VALIDATION_ERROR");
        fails(await as(w.staff, "PATCH", "/v1/feedback/nope", { body: { status: "REVIEWING" } }), 404, "TICKET_NOT_FOUND");
        const read = ok(await as(w.staff, "GET", `/v1/feedback/${t.id}`));
        assert.deepEqual([read.status, read.resolution, read.updatedAt], ["REVIEWING", null, taken.updatedAt]);
      });
    });

    describe("GET /v1/me: the feedback object (seed 001)", () => {
      it('seed 001: "The response also contains a feedback object with a reference of endpoints, statuses, and filters" — enough for an agent to work the queue', async () => {
        const staff = await person("me-staff", "staff", "vibe:mgmt:feedback");
        const f = ok(await as(staff, "GET", "/v1/me")).feedback;
        assert.equal(f.team, true);
        assert.deepEqual(Object.keys(f.endpoints).sort(), ["comment", "create", "get", "list", "update"]);
        assert.match(f.endpoints.list, /^GET http:\/\/localhost(:\d+)?\/v1\/feedback\?status=&category=&portalId=&page=&limit=/);
        assert.match(f.endpoints.update, /^PATCH .*\/v1\/feedback\/:id \{status\?, resolution\?\}/);
        assert.match(f.endpoints.comment, /\{message, status\?\}/);
        assert.deepEqual(f.statuses.map((s: { status: string }) => s.status), ["NEW", "REVIEWING", "AWAITING_USER", "NEEDS_REVIEW", "RESOLVED", "ARCHIVED"]);
        for (const s of f.statuses) assert.ok(s.meaning.length > 20, s.status);
        assert.deepEqual(f.statuses.find((s: { status: string }) => s.status === "RESOLVED").teamMovesTo, ["REVIEWING"]);
        assert.deepEqual(f.categories, ["BUG", "SUGGESTION", "DOCS", "CHAT", "BOTS", "OTHER"]);
        assert.deepEqual(Object.keys(f.filters).sort(), ["category", "example", "limit", "page", "portalId", "status"]);
        assert.match(f.filters.limit, /default 50, capped at 100/);
        assert.ok(f.workflow.length >= 3);
      });

      it("a management key outside the team gets its narrower view and no PATCH; a key without vibe:mgmt:feedback, and portal keys, get no feedback object", async () => {
        const user = await person("me-user", "user", "vibe:mgmt:feedback");
        const f = ok(await as(user, "GET", "/v1/me")).feedback;
        assert.equal(f.team, false);
        assert.match(f.sees, /portals you administer, plus your own/);
        assert.equal(f.endpoints.update, undefined);
        assert.equal(f.workflow, undefined);
        assert.equal(ok(await as(await person("me-keys", "staff", "vibe:mgmt:keys"), "GET", "/v1/me")).feedback, undefined);
        const w = await world();
        assert.equal(ok(await as(w.memberKey, "GET", "/v1/me")).feedback, undefined);
      });
    });

    it("issue 17: none of the five feedback endpoints answers 501, and /v1/guide lists them", async () => {
      const w = await world();
      const t = await send(w.memberKey);
      for (const [method, path, body] of [
        ["GET", "/v1/feedback", undefined],
        ["GET", `/v1/feedback/${t.id}`, undefined],
        ["POST", `/v1/feedback/${t.id}/comments`, { message: "ok" }],
        ["PATCH", `/v1/feedback/${t.id}`, { status: "REVIEWING" }],
      ] as const) {
        const r = await as(w.staff, method, path, { body });
        assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      }
      const lines = ok(await as(w.staff, "GET", "/v1/guide")).endpoints.map((e: { method: string; path: string }) => `${e.method} ${e.path}`);
      for (const line of ["GET /v1/feedback", "POST /v1/feedback", "GET /v1/feedback/:id", "PATCH /v1/feedback/:id", "POST /v1/feedback/:id/comments"]) assert.ok(lines.includes(line), line);
    });
  });
}
