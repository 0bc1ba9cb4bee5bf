/**
 * The store contract: what every Store implementation must do, run against each dialect by
 * sqlite.test.ts and postgres.test.ts. Only the public Store interface is used.
 *
 * Each test gets a fresh, migrated, empty store from `open`; `reopen` opens the same data again
 * (same SQLite file, same PostgreSQL schema); `cleanup` closes everything opened and removes
 * the data.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import {
  type AuditEvent,
  type Effects,
  type KeyPatch,
  type KeyRecord,
  type Membership,
  type Notification,
  type OneTimeLink,
  type Portal,
  type RequestLogEntry,
  type Sandbox,
  type SandboxWebhook,
  type Session,
  type Store,
  StoreConflictError,
  type User,
} from "../../src/store/index.ts";
import type { Migration } from "../../src/store/rows.ts";

export interface OpenedStore {
  store: Store;
  /** Opens (and migrates) the same data again; the harness closes it at cleanup. */
  reopen(): Promise<Store>;
  cleanup(): Promise<void>;
}

/** The largest time a JS Date can hold: well past 2^32 and 2^43, still a safe integer. */
const FAR_FUTURE = 8_640_000_000_000_000;
const T0 = 1_750_000_000_000;

let seq = 0;
const nextId = (prefix: string): string => `${prefix}_${(++seq).toString().padStart(4, "0")}`;

const NO_EFFECTS: Effects = { audit: [] };

function makeUser(over: Partial<User> = {}): User {
  const id = over.id ?? nextId("usr");
  return { id, email: `${id}@example.com`, name: `User ${id}`, role: "user", createdAt: T0, ...over };
}

function makePortal(createdBy: string, over: Partial<Portal> = {}): Portal {
  const id = over.id ?? nextId("prt");
  return {
    id,
    domain: `${id}.bitrix24.example`,
    name: `Portal ${id}`,
    status: "ACTIVE",
    defaultAccessMode: "READWRITE",
    upstream: { kind: "bitrix24", webhookUrl: `https://${id}.bitrix24.example/rest/1/abc/` },
    requestLimit: 5,
    createdBy,
    createdAt: T0,
    allowedOrigins: [],
    ...over,
  };
}

function admin(portal: Portal, userId = portal.createdBy): Membership {
  return { portalId: portal.id, userId, role: "ADMIN", createdAt: portal.createdAt };
}

function makeKey(ownerId: string, portalId: string | null, over: Partial<KeyRecord> = {}): KeyRecord {
  const id = over.id ?? nextId("key");
  return {
    id,
    type: "api",
    name: `Key ${id}`,
    ownerId,
    portalId,
    digest: `digest-${id}`,
    keyPrefix: "vibe_live_abc123",
    keySuffix: "wxyz",
    scopes: ["crm:read", "tasks:write"],
    issuedScopes: ["crm:read"],
    status: "ACTIVE",
    accessMode: "READWRITE",
    ipWhitelist: ["10.0.0.1", "2001:db8::1"],
    rateLimit: 10,
    tier: null,
    expiresAt: null,
    createdAt: T0,
    updatedAt: T0,
    lastUsedAt: null,
    rotatedFromId: null,
    rotatedToId: null,
    version: 1,
    ...over,
  };
}

function makeRequest(keyId: string, over: Partial<RequestLogEntry> = {}): RequestLogEntry {
  return { keyId, at: T0, ip: "192.0.2.10", method: "POST", path: "/rest/crm.deal.list", status: 200, latencyMs: 12, ...over };
}

const MINUTE = 60_000;
/** The start of T0's minute. */
const M0 = Math.floor(T0 / MINUTE) * MINUTE;

function makeAudit(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: over.id ?? nextId("aud"),
    at: T0,
    action: "key.update",
    actorUserId: null,
    actorKeyId: null,
    sourceIp: null,
    entityType: "key",
    entityId: "none",
    portalId: null,
    before: undefined,
    after: undefined,
    ...over,
  };
}

function makeNotification(userId: string, over: Partial<Notification> = {}): Notification {
  return { id: over.id ?? nextId("ntf"), userId, at: T0, kind: "key.expiring", message: "Your key expires soon", data: undefined, readAt: null, ...over };
}

/** The effects of one change: one audit event about entityId. */
function auditing(entityId: string, over: Partial<AuditEvent> = {}): Effects {
  return { audit: [makeAudit({ entityId, ...over })] };
}

function makeSession(userId: string, over: Partial<Session> = {}): Session {
  const id = over.id ?? nextId("ses");
  return { id, userId, tokenDigest: `digest-${id}`, createdAt: T0, lastSeenAt: T0, expiresAt: T0 + 30 * 86_400_000, ...over };
}

function makeLink(over: Partial<OneTimeLink> = {}): OneTimeLink {
  const id = over.id ?? nextId("lnk");
  return { id, purpose: "password", tokenDigest: `digest-${id}`, email: `${id}@example.com`, userId: null, portalId: null, role: null, createdBy: null, createdAt: T0, expiresAt: T0 + 86_400_000, ...over };
}

const isConflict = (field: string) => (error: unknown) => {
  assert.ok(error instanceof StoreConflictError, `expected StoreConflictError, got ${String(error)}`);
  assert.equal(error.field, field);
  return true;
};

export function storeContract(name: string, open: () => Promise<OpenedStore>): void {
  describe(`store contract: ${name}`, () => {
    let opened: OpenedStore;
    let store: Store;

    beforeEach(async () => {
      opened = await open();
      store = opened.store;
    });
    afterEach(async () => {
      await opened.cleanup();
    });

    /** A user, created with no effects. */
    async function aUser(over: Partial<User> = {}): Promise<User> {
      const u = makeUser(over);
      await store.createUser(u, NO_EFFECTS);
      return u;
    }

    /** A portal (with its creator, created when not given), created with no effects. */
    async function aPortal(over: Partial<Portal> = {}, creator?: User): Promise<Portal> {
      const owner = creator ?? (await aUser());
      const p = makePortal(owner.id, over);
      await store.createPortal(p, admin(p), NO_EFFECTS);
      return p;
    }

    async function aKey(ownerId: string, portalId: string | null, over: Partial<KeyRecord> = {}): Promise<KeyRecord> {
      const k = makeKey(ownerId, portalId, over);
      await store.createKey(k, NO_EFFECTS);
      return k;
    }

    const auditOf = (entityId: string) => store.listAudit({ entityId, limit: 100 });

    describe("users", () => {
      test("round trip; the email is kept lower-cased and found in any case", async () => {
        assert.equal(await store.countUsers(), 0);
        const u = makeUser({ email: "Alice.Smith@Example.COM", name: "Алиса Smith", role: "owner", createdAt: FAR_FUTURE });
        await store.createUser(u, NO_EFFECTS);
        const expected = { ...u, email: "alice.smith@example.com" };
        assert.deepEqual(await store.getUser(u.id), expected);
        assert.deepEqual(await store.getUserByEmail("alice.smith@example.com"), expected);
        assert.deepEqual(await store.getUserByEmail("ALICE.SMITH@EXAMPLE.COM"), expected);
        assert.equal(await store.countUsers(), 1);
        await aUser({ role: "staff" });
        assert.equal(await store.countUsers(), 2);
      });

      test("unknown id or email: undefined", async () => {
        assert.equal(await store.getUser("nobody"), undefined);
        assert.equal(await store.getUserByEmail("nobody@example.com"), undefined);
      });

      test("the audit event and notification are written with the user", async () => {
        const u = makeUser();
        const event = makeAudit({ action: "user.create", entityType: "user", entityId: u.id, actorUserId: u.id, sourceIp: "192.0.2.1", after: { email: u.email } });
        const welcome = makeNotification(u.id, { kind: "welcome", data: { first: true } });
        await store.createUser(u, { audit: [event], notifications: [welcome] });
        assert.deepEqual(await auditOf(u.id), [event]);
        assert.deepEqual(await store.listNotifications(u.id, 10), [welcome]);
      });

      test("a taken email (in any case) is a conflict on email, and nothing of the attempt is stored", async () => {
        const first = await aUser({ email: "bob@example.com" });
        const second = makeUser({ email: "BOB@example.com" });
        await assert.rejects(
          store.createUser(second, {
            audit: [makeAudit({ action: "user.create", entityType: "user", entityId: second.id })],
            notifications: [makeNotification(first.id)],
          }),
          isConflict("email"),
        );
        assert.equal(await store.getUser(second.id), undefined);
        assert.equal(await store.countUsers(), 1);
        assert.deepEqual(await auditOf(second.id), []);
        assert.deepEqual(await store.listNotifications(first.id, 10), []);
        assert.equal((await store.getUserByEmail("bob@example.com"))?.id, first.id);
      });

      test("a failing effect rolls the user back", async () => {
        const existing = makeAudit();
        await store.createUser(makeUser(), { audit: [existing] });
        const u = makeUser();
        await assert.rejects(store.createUser(u, { audit: [makeAudit({ id: existing.id, entityId: u.id })] }));
        assert.equal(await store.getUser(u.id), undefined);
        assert.equal(await store.countUsers(), 1);
      });
    });

    describe("portals", () => {
      test("round trip of every field, and the creator becomes a member", async () => {
        const owner = await aUser();
        const variants: Partial<Portal>[] = [
          { upstream: { kind: "bitrix24", webhookUrl: "https://x.bitrix24.example/rest/1/secret/" }, requestLimit: 2.5 },
          { upstream: { kind: "sandbox" }, status: "DISABLED", defaultAccessMode: "READONLY" },
          { upstream: { kind: "http", baseUrl: "http://127.0.0.1:9000/api" }, createdAt: FAR_FUTURE },
          { upstream: null, requestLimit: null, name: "Не связан ✓" },
          { allowedOrigins: ["https://app.example.com", "http://localhost:5173"] },
        ];
        for (const over of variants) {
          const p = makePortal(owner.id, over);
          await store.createPortal(p, admin(p), NO_EFFECTS);
          assert.deepEqual(await store.getPortal(p.id), p);
          assert.deepEqual(await store.getMember(p.id, owner.id), admin(p));
        }
        assert.equal(await store.getPortal("nope"), undefined);
      });

      test("the audit event is written with the portal", async () => {
        const owner = await aUser();
        const p = makePortal(owner.id);
        const effects = auditing(p.id, { action: "portal.create", entityType: "portal", portalId: p.id, after: p });
        await store.createPortal(p, admin(p), effects);
        assert.deepEqual(await auditOf(p.id), effects.audit);
      });

      test("a taken domain is a conflict on domain; neither portal, membership nor audit is stored", async () => {
        const taken = await aPortal({ domain: "shop.bitrix24.example" });
        const other = await aUser();
        const p = makePortal(other.id, { domain: "shop.bitrix24.example" });
        await assert.rejects(
          store.createPortal(p, admin(p), auditing(p.id, { action: "portal.create", entityType: "portal", portalId: p.id })),
          isConflict("domain"),
        );
        assert.equal(await store.getPortal(p.id), undefined);
        assert.equal(await store.getMember(p.id, other.id), undefined);
        assert.deepEqual(await store.listPortalsForUser(other.id), []);
        assert.deepEqual(await auditOf(p.id), []);
        assert.equal((await store.getPortal(taken.id))?.domain, "shop.bitrix24.example");
      });

      test("updatePortal applies the patch, keeps the rest, writes its audit; unknown id: undefined and no audit", async () => {
        const p = await aPortal();
        const patched = await store.updatePortal(
          p.id,
          { name: "Renamed", status: "DISABLED", defaultAccessMode: "READONLY", upstream: { kind: "sandbox" }, requestLimit: null },
          auditing(p.id, { action: "portal.update", entityType: "portal" }),
        );
        const expected: Portal = { ...p, name: "Renamed", status: "DISABLED", defaultAccessMode: "READONLY", upstream: { kind: "sandbox" }, requestLimit: null };
        assert.deepEqual(patched, expected);
        assert.deepEqual(await store.getPortal(p.id), expected);
        assert.equal((await auditOf(p.id)).length, 1);

        const unlinked = await store.updatePortal(p.id, { upstream: null }, NO_EFFECTS);
        assert.deepEqual(unlinked, { ...expected, upstream: null });
        assert.deepEqual(await store.updatePortal(p.id, {}, NO_EFFECTS), { ...expected, upstream: null });

        assert.equal(await store.updatePortal("nope", { name: "x" }, auditing("nope")), undefined);
        assert.deepEqual(await auditOf("nope"), []);
      });

      test("issue 11.2: updatePortal sets and clears allowedOrigins (empty by default)", async () => {
        const p = await aPortal();
        assert.deepEqual((await store.getPortal(p.id))?.allowedOrigins, []);
        const origins = ["https://app.example.com", "http://localhost:5173"];
        assert.deepEqual((await store.updatePortal(p.id, { allowedOrigins: origins }, NO_EFFECTS))?.allowedOrigins, origins);
        assert.deepEqual((await store.getPortal(p.id))?.allowedOrigins, origins);
        assert.deepEqual((await store.updatePortal(p.id, { name: "Kept" }, NO_EFFECTS))?.allowedOrigins, origins);
        assert.deepEqual((await store.updatePortal(p.id, { allowedOrigins: [] }, NO_EFFECTS))?.allowedOrigins, []);
      });

      test("listPortalsForUser: the user's portals with their role, oldest first", async () => {
        const u = await aUser();
        const stranger = await aUser();
        const own = await aPortal({ createdAt: T0 + 2 }, u);
        const joined = await aPortal({ createdAt: T0 + 1 });
        await aPortal({ createdAt: T0 });
        await store.putMember({ portalId: joined.id, userId: u.id, role: "MEMBER", createdAt: T0 + 5 }, NO_EFFECTS);
        assert.deepEqual(await store.listPortalsForUser(u.id), [
          { ...joined, role: "MEMBER" },
          { ...own, role: "ADMIN" },
        ]);
        assert.deepEqual(await store.listPortalsForUser(stranger.id), []);
      });
    });

    describe("members", () => {
      test("put adds, put again changes the role (keeping createdAt), remove removes once", async () => {
        const p = await aPortal();
        const u = await aUser();
        const m: Membership = { portalId: p.id, userId: u.id, role: "MEMBER", createdAt: T0 + 10 };
        await store.putMember(m, auditing(u.id, { action: "member.add", entityType: "member", portalId: p.id }));
        assert.deepEqual(await store.getMember(p.id, u.id), m);
        assert.deepEqual(await store.listMembers(p.id), [admin(p), m]);

        await store.putMember({ ...m, role: "ADMIN", createdAt: T0 + 99 }, auditing(u.id, { action: "member.update", entityType: "member" }));
        assert.deepEqual(await store.getMember(p.id, u.id), { ...m, role: "ADMIN" });
        assert.deepEqual(
          (await store.listPortalsForUser(u.id)).map((x) => [x.id, x.role]),
          [[p.id, "ADMIN"]],
        );

        assert.equal(await store.removeMember(p.id, u.id, auditing(u.id, { action: "member.remove", entityType: "member" })), true);
        assert.equal(await store.getMember(p.id, u.id), undefined);
        assert.deepEqual(await store.listMembers(p.id), [admin(p)]);
        assert.deepEqual(await store.listPortalsForUser(u.id), []);
        assert.deepEqual((await auditOf(u.id)).map((e) => e.action).sort(), ["member.add", "member.remove", "member.update"]);

        assert.equal(await store.removeMember(p.id, u.id, auditing(u.id, { action: "member.remove.again" })), false);
        assert.equal((await auditOf(u.id)).length, 3, "no audit for a removal that did not happen");
        assert.equal(await store.getMember("nope", u.id), undefined);
        assert.deepEqual(await store.listMembers("nope"), []);
      });
    });

    describe("keys", () => {
      test("round trip of every field, by id and by digest", async () => {
        const u = await aUser();
        const p = await aPortal();
        const full = makeKey(u.id, p.id, {
          scopes: ["crm:read", "crm:write", "user:admin"],
          issuedScopes: [],
          ipWhitelist: [],
          accessMode: "READONLY",
          status: "REVOKED",
          rateLimit: 0.5,
          tier: "atender-pro «x»",
          expiresAt: FAR_FUTURE,
          createdAt: FAR_FUTURE - 2,
          updatedAt: FAR_FUTURE - 1,
          lastUsedAt: FAR_FUTURE,
          rotatedFromId: "key_gone",
          rotatedToId: "key_next",
          version: 7,
          name: "Ключ «prod» \"quoted\" 'single'",
        });
        const bare = makeKey(u.id, null, { type: "management", scopes: [], issuedScopes: [], ipWhitelist: [], rateLimit: null, tier: null, expiresAt: null });
        for (const k of [full, bare]) {
          await store.createKey(k, NO_EFFECTS);
          assert.deepEqual(await store.getKey(k.id), k);
          assert.deepEqual(await store.getKeyByDigest(k.digest), k);
          // A store that can read without a promise (SQLite) answers the same there.
          if (store.getKeyByDigestNow) assert.deepEqual(store.getKeyByDigestNow(k.digest), k);
        }
        assert.equal(await store.getKey("nope"), undefined);
        assert.equal(await store.getKeyByDigest("nope"), undefined);
        assert.equal(store.getKeyByDigestNow?.("nope"), undefined);
      });

      test("the audit event and notification are written with the key", async () => {
        const u = await aUser();
        const k = makeKey(u.id, null);
        const effects: Effects = { ...auditing(k.id, { action: "key.create", after: { name: k.name } }), notifications: [makeNotification(u.id, { data: { keyId: k.id } })] };
        await store.createKey(k, effects);
        assert.deepEqual(await auditOf(k.id), effects.audit);
        assert.deepEqual(await store.listNotifications(u.id, 10), effects.notifications);
      });

      test("a taken digest is a conflict on digest; unknown owner or portal is refused; nothing partial is stored", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const dup = makeKey(u.id, null, { digest: k.digest });
        await assert.rejects(store.createKey(dup, auditing(dup.id)), isConflict("digest"));
        assert.equal(await store.getKey(dup.id), undefined);
        assert.deepEqual(await auditOf(dup.id), []);

        const orphan = makeKey("no-such-user", null);
        await assert.rejects(store.createKey(orphan, auditing(orphan.id)));
        const homeless = makeKey(u.id, "no-such-portal");
        await assert.rejects(store.createKey(homeless, auditing(homeless.id)));
        assert.equal(await store.getKey(orphan.id), undefined);
        assert.equal(await store.getKey(homeless.id), undefined);
        assert.deepEqual(await auditOf(orphan.id), []);
        assert.deepEqual(await auditOf(homeless.id), []);
      });

      test("updateKey applies the patch, bumps version and updatedAt, writes its audit", async () => {
        const u = await aUser();
        const p = await aPortal();
        const k = await aKey(u.id, p.id, { expiresAt: T0 + 1000, version: 3 });
        const patch: KeyPatch = {
          name: "renamed",
          scopes: ["tasks:read"],
          issuedScopes: ["tasks:read", "crm:read"],
          status: "REVOKED",
          accessMode: "READONLY",
          ipWhitelist: ["127.0.0.1"],
          rateLimit: null,
          tier: "rogeriq-burst",
          expiresAt: null,
          rotatedToId: "key_x",
        };
        const updated = await store.updateKey(k.id, patch, FAR_FUTURE, auditing(k.id, { action: "key.update" }));
        const expected: KeyRecord = { ...k, ...patch, updatedAt: FAR_FUTURE, version: 4 };
        assert.deepEqual(updated, expected);
        assert.deepEqual(await store.getKey(k.id), expected);
        assert.deepEqual(await store.getKeyByDigest(k.digest), expected);
        assert.equal((await auditOf(k.id)).length, 1);

        const again = await store.updateKey(k.id, { rateLimit: 3, expiresAt: T0 + 5 }, FAR_FUTURE + 1, NO_EFFECTS);
        assert.deepEqual(again, { ...expected, rateLimit: 3, expiresAt: T0 + 5, updatedAt: FAR_FUTURE + 1, version: 5 });
        const empty = await store.updateKey(k.id, {}, T0 + 7, NO_EFFECTS);
        assert.deepEqual(empty, { ...expected, rateLimit: 3, expiresAt: T0 + 5, updatedAt: T0 + 7, version: 6 });
      });

      test("tier round-trips, is patched on its own, kept by other patches, and cleared with null", async () => {
        const u = await aUser();
        const p = await aPortal();
        const k = await aKey(u.id, p.id, { tier: "gold" });
        assert.deepEqual(await store.getKey(k.id), k);
        assert.deepEqual(await store.getKeyByDigest(k.digest), k);
        assert.deepEqual(await store.listKeys({ portalId: p.id }), [k]);

        const platinum = await store.updateKey(k.id, { tier: "platinum" }, T0 + 1, NO_EFFECTS);
        assert.deepEqual(platinum, { ...k, tier: "platinum", updatedAt: T0 + 1, version: 2 });
        const renamed = await store.updateKey(k.id, { name: "renamed" }, T0 + 2, NO_EFFECTS);
        assert.deepEqual(renamed, { ...k, tier: "platinum", name: "renamed", updatedAt: T0 + 2, version: 3 });
        const cleared = await store.updateKey(k.id, { tier: null }, T0 + 3, NO_EFFECTS);
        assert.deepEqual(cleared, { ...k, tier: null, name: "renamed", updatedAt: T0 + 3, version: 4 });
        assert.deepEqual(await store.getKey(k.id), cleared);

        // A rotation carries the tier over when the replacement has it, and may patch the old key's.
        const next = makeKey(u.id, p.id, { tier: "silver", rotatedFromId: k.id });
        const old = await store.rotateKey(k.id, { rotatedToId: next.id, tier: "bronze" }, next, T0 + 4, NO_EFFECTS);
        assert.equal(old?.tier, "bronze");
        assert.equal((await store.getKey(k.id))?.tier, "bronze");
        assert.deepEqual(await store.getKey(next.id), next);
      });

      test("updateKey of an unknown id: undefined, and no audit", async () => {
        assert.equal(await store.updateKey("nope", { name: "x" }, T0, auditing("nope")), undefined);
        assert.deepEqual(await auditOf("nope"), []);
      });

      test("updateKey whose effects fail leaves the key as it was", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const existing = makeAudit();
        await store.updateKey(k.id, { name: "one" }, T0 + 1, { audit: [existing] });
        await assert.rejects(store.updateKey(k.id, { name: "two" }, T0 + 2, { audit: [makeAudit({ id: existing.id })] }));
        assert.deepEqual(await store.getKey(k.id), { ...k, name: "one", updatedAt: T0 + 1, version: 2 });
      });

      test("rotateKey creates the replacement and patches the old key together", async () => {
        const u = await aUser();
        const p = await aPortal();
        const old = await aKey(u.id, p.id, { lastUsedAt: T0 + 3 });
        const next = makeKey(u.id, p.id, { rotatedFromId: old.id, createdAt: T0 + 10, updatedAt: T0 + 10 });
        const effects = auditing(old.id, { action: "key.rotate", after: { rotatedToId: next.id } });
        const result = await store.rotateKey(old.id, { status: "REVOKED", rotatedToId: next.id }, next, T0 + 10, effects);
        const oldAfter: KeyRecord = { ...old, status: "REVOKED", rotatedToId: next.id, updatedAt: T0 + 10, version: old.version + 1 };
        assert.deepEqual(result, oldAfter);
        assert.deepEqual(await store.getKey(old.id), oldAfter);
        assert.deepEqual(await store.getKey(next.id), next);
        assert.deepEqual(await store.getKeyByDigest(next.digest), next);
        assert.deepEqual(await auditOf(old.id), effects.audit);
      });

      test("rotateKey refuses a key rotated already, even when two rotations race", async () => {
        const u = await aUser();
        const old = await aKey(u.id, null);
        const a = makeKey(u.id, null, { rotatedFromId: old.id });
        const b = makeKey(u.id, null, { rotatedFromId: old.id });
        const results = await Promise.allSettled([
          store.rotateKey(old.id, { rotatedToId: a.id }, a, T0 + 1, auditing(old.id)),
          store.rotateKey(old.id, { rotatedToId: b.id }, b, T0 + 1, auditing(old.id)),
        ]);
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
        const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
        assert.ok(isConflict("rotatedToId")(lost.reason));
        const winner = (await store.getKey(old.id))!.rotatedToId;
        const loser = winner === a.id ? b : a;
        assert.equal(await store.getKey(loser.id), undefined);
        assert.equal((await auditOf(old.id)).length, 1);
      });

      test("rotateKey is all or nothing", async () => {
        const u = await aUser();
        const old = await aKey(u.id, null);
        const other = await aKey(u.id, null);

        // The replacement cannot be stored (taken digest): the old key is not patched.
        const clash = makeKey(u.id, null, { digest: other.digest, rotatedFromId: old.id });
        await assert.rejects(store.rotateKey(old.id, { status: "REVOKED", rotatedToId: clash.id }, clash, T0 + 1, auditing(old.id)), isConflict("digest"));
        // The effects cannot be stored: neither the replacement nor the patch is.
        const existing = makeAudit();
        await store.createUser(makeUser(), { audit: [existing] });
        const next = makeKey(u.id, null, { rotatedFromId: old.id });
        await assert.rejects(store.rotateKey(old.id, { status: "REVOKED", rotatedToId: next.id }, next, T0 + 2, { audit: [makeAudit({ id: existing.id })] }));
        // The old key does not exist: undefined, nothing is created.
        const lost = makeKey(u.id, null, { rotatedFromId: "nope" });
        assert.equal(await store.rotateKey("nope", { status: "REVOKED" }, lost, T0 + 3, auditing("nope")), undefined);

        assert.deepEqual(await store.getKey(old.id), old);
        assert.equal(await store.getKey(clash.id), undefined);
        assert.equal(await store.getKey(next.id), undefined);
        assert.equal(await store.getKey(lost.id), undefined);
        assert.deepEqual(await auditOf(old.id), []);
        assert.deepEqual(await auditOf("nope"), []);
        assert.deepEqual(
          (await store.listKeys({ ownerId: u.id })).map((k) => k.id).sort(),
          [old.id, other.id].sort(),
        );
      });

      test("deleteKey: has_dependents while any remain, then deleted, then not_found", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        await store.addDependent({ keyId: k.id, kind: "server", dependentId: "srv-1", createdAt: T0 });
        await store.addDependent({ keyId: k.id, kind: "server", dependentId: "srv-2", createdAt: T0 });
        await store.addDependent({ keyId: k.id, kind: "server", dependentId: "srv-2", createdAt: T0 + 1 }); // again: no-op
        await store.addDependent({ keyId: k.id, kind: "webhook", dependentId: "srv-1", createdAt: T0 });
        assert.equal(await store.countDependents(k.id), 3);

        assert.equal(await store.deleteKey(k.id, auditing(k.id, { action: "key.delete" })), "has_dependents");
        assert.deepEqual(await store.getKey(k.id), k);
        assert.deepEqual(await auditOf(k.id), [], "no audit for a delete that did not happen");

        await store.removeDependent(k.id, "server", "srv-1");
        await store.removeDependent(k.id, "server", "srv-2");
        await store.removeDependent(k.id, "server", "srv-404"); // unknown: no-op
        assert.equal(await store.countDependents(k.id), 1);
        assert.equal(await store.deleteKey(k.id, auditing(k.id, { action: "key.delete" })), "has_dependents");
        await store.removeDependent(k.id, "webhook", "srv-1");
        assert.equal(await store.countDependents(k.id), 0);

        const effects = auditing(k.id, { action: "key.delete", before: { name: k.name } });
        assert.equal(await store.deleteKey(k.id, effects), "deleted");
        assert.equal(await store.getKey(k.id), undefined);
        assert.equal(await store.getKeyByDigest(k.digest), undefined);
        assert.deepEqual(await auditOf(k.id), effects.audit);

        assert.equal(await store.deleteKey(k.id, auditing(k.id)), "not_found");
        assert.equal((await auditOf(k.id)).length, 1);
      });

      test("a dependent needs an existing key", async () => {
        await assert.rejects(store.addDependent({ keyId: "nope", kind: "server", dependentId: "s", createdAt: T0 }));
        assert.equal(await store.countDependents("nope"), 0);
      });

      test("a deleted key's rotation partner keeps naming it", async () => {
        const u = await aUser();
        const old = await aKey(u.id, null);
        const next = makeKey(u.id, null, { rotatedFromId: old.id });
        await store.rotateKey(old.id, { status: "REVOKED", rotatedToId: next.id }, next, T0 + 1, NO_EFFECTS);
        assert.equal(await store.deleteKey(old.id, NO_EFFECTS), "deleted");
        assert.deepEqual(await store.getKey(next.id), next);
      });

      test("listKeys filters by portal, owner and type, newest first", async () => {
        const a = await aUser();
        const b = await aUser();
        const p = await aPortal();
        const q = await aPortal();
        const k1 = await aKey(a.id, p.id, { createdAt: T0 + 1 });
        const k2 = await aKey(b.id, p.id, { createdAt: T0 + 3 });
        const k3 = await aKey(a.id, p.id, { createdAt: T0 + 2, type: "app" });
        const k4 = await aKey(a.id, q.id, { createdAt: T0 + 5 });
        const k5 = await aKey(a.id, null, { createdAt: T0 + 4, type: "management" });
        const ids = async (filter: Parameters<Store["listKeys"]>[0]) => (await store.listKeys(filter)).map((k) => k.id);

        assert.deepEqual(await ids({}), [k4.id, k5.id, k2.id, k3.id, k1.id]);
        assert.deepEqual(await ids({ portalId: p.id }), [k2.id, k3.id, k1.id]);
        assert.deepEqual(await ids({ portalId: p.id, ownerId: a.id }), [k3.id, k1.id]);
        assert.deepEqual(await ids({ portalId: p.id, type: "api" }), [k2.id, k1.id]);
        assert.deepEqual(await ids({ portalId: p.id, ownerId: a.id, type: "app" }), [k3.id]);
        assert.deepEqual(await ids({ ownerId: a.id }), [k4.id, k5.id, k3.id, k1.id]);
        assert.deepEqual(await ids({ ownerId: a.id, type: "management" }), [k5.id]);
        assert.deepEqual(await ids({ type: "api" }), [k4.id, k2.id, k1.id]);
        assert.deepEqual(await ids({ portalId: "nope" }), []);
        assert.deepEqual((await store.listKeys({ portalId: q.id }))[0], k4);
      });

      test("countKeysByPortal counts keys of one type per portal, 0 for portals without", async () => {
        const u = await aUser();
        const p = await aPortal();
        const q = await aPortal();
        const r = await aPortal();
        await aKey(u.id, p.id, { type: "app" });
        await aKey(u.id, p.id, { type: "app", status: "REVOKED" });
        await aKey(u.id, p.id, { type: "api" });
        await aKey(u.id, q.id, { type: "app" });
        await aKey(u.id, null, { type: "app" });
        assert.deepEqual(
          await store.countKeysByPortal([p.id, q.id, r.id, "nope"], "app"),
          new Map([
            [p.id, 2],
            [q.id, 1],
            [r.id, 0],
            ["nope", 0],
          ]),
        );
        assert.deepEqual(await store.countKeysByPortal([p.id], "api"), new Map([[p.id, 1]]));
        assert.deepEqual(await store.countKeysByPortal([], "app"), new Map());
      });

      test("touchKeys sets last-used times, never moves them back, leaves version alone", async () => {
        const u = await aUser();
        const k1 = await aKey(u.id, null);
        const k2 = await aKey(u.id, null, { lastUsedAt: T0 + 100 });
        await store.touchKeys(new Map());
        await store.touchKeys(
          new Map([
            [k1.id, FAR_FUTURE],
            [k2.id, T0 + 50],
            ["nope", T0],
          ]),
        );
        assert.deepEqual(await store.getKey(k1.id), { ...k1, lastUsedAt: FAR_FUTURE });
        assert.deepEqual(await store.getKey(k2.id), k2);
        await store.touchKeys(new Map([[k2.id, T0 + 200]]));
        assert.deepEqual(await store.getKeyByDigest(k2.digest), { ...k2, lastUsedAt: T0 + 200 });
      });
    });

    describe("request log", () => {
      const ats = (list: RequestLogEntry[]) => list.map((r) => r.at - T0);

      test("every field round-trips, including large times and fractional latencies", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const entries = [
          makeRequest(k.id, { at: FAR_FUTURE, ip: "2001:db8::1", method: "DELETE", path: "/rest/crm.deal.delete?id=5&x=ü «q»", status: 599, latencyMs: 12.75 }),
          makeRequest(k.id, { at: T0, ip: "10.0.0.1", method: "GET", path: "/", status: 101, latencyMs: 0 }),
        ];
        await store.appendRequests(entries);
        assert.deepEqual(await store.listRequests(k.id, { limit: 10 }), entries);
      });

      test("listRequests: the key's entries, newest first (ties: later appended first), limited, before a time, by ip", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const other = await aKey(u.id, null);
        const a = "192.0.2.1";
        const b = "192.0.2.2";
        await store.appendRequests([
          makeRequest(k.id, { at: T0 + 3, ip: a, path: "/3" }),
          makeRequest(k.id, { at: T0 + 1, ip: b, path: "/1" }),
          makeRequest(other.id, { at: T0 + 4, ip: a }),
          makeRequest(k.id, { at: T0 + 5, ip: a, path: "/5" }),
          makeRequest(k.id, { at: T0 + 3, ip: b, path: "/3-later" }),
        ]);
        await store.appendRequests([makeRequest(k.id, { at: T0 + 2, ip: a, path: "/2" })]);

        const all = await store.listRequests(k.id, { limit: 100 });
        assert.deepEqual(ats(all), [5, 3, 3, 2, 1]);
        assert.deepEqual(
          all.map((r) => r.path),
          ["/5", "/3-later", "/3", "/2", "/1"],
        );
        assert.ok(all.every((r) => r.keyId === k.id));
        assert.deepEqual(await store.listRequests(k.id, { limit: 2 }), all.slice(0, 2));
        assert.deepEqual(ats(await store.listRequests(k.id, { limit: 100, before: T0 + 3 })), [2, 1]);
        assert.deepEqual(ats(await store.listRequests(k.id, { limit: 1, before: T0 + 5 })), [3]);
        assert.deepEqual(ats(await store.listRequests(k.id, { limit: 100, before: T0 + 1 })), []);
        assert.deepEqual(
          (await store.listRequests(k.id, { limit: 100, ip: a })).map((r) => r.path),
          ["/5", "/3", "/2"],
        );
        assert.deepEqual(
          (await store.listRequests(k.id, { limit: 100, ip: b })).map((r) => r.path),
          ["/3-later", "/1"],
        );
        assert.deepEqual(
          (await store.listRequests(k.id, { limit: 1, ip: a, before: T0 + 5 })).map((r) => r.path),
          ["/3"],
        );
        assert.deepEqual(await store.listRequests(k.id, { limit: 100, ip: "203.0.113.9" }), []);
        assert.deepEqual(await store.listRequests(k.id, { limit: 0 }), []);
        assert.deepEqual(ats(await store.listRequests(other.id, { limit: 100 })), [4]);
        assert.deepEqual(await store.listRequests("nope", { limit: 100 }), []);
      });

      test("appendRequests drops entries of unknown keys and keeps the rest of the batch; an empty batch is a no-op", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        await store.appendRequests([]);
        await store.appendRequests([
          makeRequest("nope", { at: T0 + 1 }),
          makeRequest(k.id, { at: T0 + 2 }),
          makeRequest("also-nope", { at: T0 + 3 }),
          makeRequest(k.id, { at: T0 + 4 }),
        ]);
        await store.appendRequests([makeRequest("nope", { at: T0 + 5 })]);
        assert.deepEqual(ats(await store.listRequests(k.id, { limit: 100 })), [4, 2]);
        assert.deepEqual(await store.listRequests("nope", { limit: 100 }), []);
        assert.deepEqual(await store.requestsPerMinute("nope", 0), []);
        assert.equal(await store.purgeRequests(FAR_FUTURE), 2, "nothing of the unknown keys was stored");
      });

      test("appendRequests takes a batch of thousands", async () => {
        const u = await aUser();
        const k1 = await aKey(u.id, null);
        const k2 = await aKey(u.id, null);
        const batch: RequestLogEntry[] = [];
        for (let i = 0; i < 5000; i++) {
          const keyId = i % 10 === 9 ? "gone" : i % 2 === 0 ? k1.id : k2.id;
          batch.push(makeRequest(keyId, { at: M0 + i * 100, path: `/r/${i}`, latencyMs: i / 4 }));
        }
        await store.appendRequests(batch);
        const kept = batch.filter((e) => e.keyId !== "gone");
        const mine = kept.filter((e) => e.keyId === k1.id);
        assert.deepEqual(await store.listRequests(k1.id, { limit: 3 }), mine.slice(-3).reverse());
        const perMinute = await store.requestsPerMinute(k1.id, 0);
        assert.equal(perMinute.reduce((n, m) => n + m.count, 0), mine.length);
        assert.equal(perMinute.length, 9); // 500 s of requests from the start of a minute
        assert.equal(await store.purgeRequests(FAR_FUTURE), kept.length);
      });

      test("requestsPerMinute: counts per minute that had requests since a time (inclusive), oldest first", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const other = await aKey(u.id, null);
        await store.appendRequests([
          makeRequest(k.id, { at: M0 + 3 * MINUTE + 5 }),
          makeRequest(k.id, { at: M0 - 1 }), // the minute before
          makeRequest(k.id, { at: M0 }),
          makeRequest(k.id, { at: M0 + MINUTE - 1 }),
          makeRequest(k.id, { at: M0 + MINUTE }),
          makeRequest(k.id, { at: M0 + 3 * MINUTE + 59_999, status: 500 }),
          makeRequest(other.id, { at: M0 + 10 }),
          makeRequest(k.id, { at: FAR_FUTURE - 1 }),
        ]);
        assert.deepEqual(await store.requestsPerMinute(k.id, M0), [
          { minute: M0, count: 2 },
          { minute: M0 + MINUTE, count: 1 },
          { minute: M0 + 3 * MINUTE, count: 2 },
          { minute: FAR_FUTURE - MINUTE, count: 1 },
        ]);
        assert.deepEqual(await store.requestsPerMinute(k.id, M0 + 1), [
          { minute: M0, count: 1 },
          { minute: M0 + MINUTE, count: 1 },
          { minute: M0 + 3 * MINUTE, count: 2 },
          { minute: FAR_FUTURE - MINUTE, count: 1 },
        ]);
        assert.deepEqual((await store.requestsPerMinute(k.id, 0))[0], { minute: M0 - MINUTE, count: 1 });
        assert.deepEqual(await store.requestsPerMinute(other.id, M0), [{ minute: M0, count: 1 }]);
        assert.deepEqual(await store.requestsPerMinute(k.id, FAR_FUTURE), []);
      });

      test("issue 12: requestAddresses counts every address over the whole log, not a page; most recent first", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const other = await aKey(u.id, null);
        const batch: RequestLogEntry[] = [];
        for (let i = 0; i < 300; i++) batch.push(makeRequest(k.id, { at: T0 + i, ip: i % 3 === 0 ? "203.0.113.7" : "198.51.100.2" }));
        batch.push(makeRequest(k.id, { at: T0 - 10, ip: "2001:db8::1" }), makeRequest(other.id, { at: T0 + 500, ip: "192.0.2.1" }));
        await store.appendRequests(batch);
        assert.deepEqual(await store.requestAddresses(k.id), [
          { ip: "198.51.100.2", count: 200, lastSeen: T0 + 299 },
          { ip: "203.0.113.7", count: 100, lastSeen: T0 + 297 },
          { ip: "2001:db8::1", count: 1, lastSeen: T0 - 10 },
        ]);
        assert.deepEqual(await store.requestAddresses("nope"), []);
        await store.purgeRequests(T0);
        assert.deepEqual((await store.requestAddresses(k.id)).map((a) => a.ip), ["198.51.100.2", "203.0.113.7"], "purged entries are not counted");
      });

      test("issue 18: requestRoutes sums a key's log by method, route pattern and missing scope; entries without a route count under null", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const other = await aKey(u.id, null);
        const batch: RequestLogEntry[] = [];
        for (let i = 0; i < 5; i++) batch.push(makeRequest(k.id, { at: T0 + i, method: "GET", path: `/v1/kb/articles?page=${i}`, route: "/v1/kb/articles" }));
        batch.push(
          makeRequest(k.id, { at: T0 + 10, method: "POST", path: "/v1/kb/articles", route: "/v1/kb/articles", missingScope: "kb:write", status: 403 }),
          makeRequest(k.id, { at: T0 - 3, method: "GET", path: "/old" }),
          makeRequest(other.id, { at: T0, method: "GET", route: "/v1/kb/articles" }),
        );
        await store.appendRequests(batch);
        const byRoute = (await store.requestRoutes(k.id)).sort((a, b) => a.firstAt - b.firstAt);
        assert.deepEqual(byRoute, [
          { method: "GET", route: null, missingScope: null, count: 1, firstAt: T0 - 3, lastAt: T0 - 3 },
          { method: "GET", route: "/v1/kb/articles", missingScope: null, count: 5, firstAt: T0, lastAt: T0 + 4 },
          { method: "POST", route: "/v1/kb/articles", missingScope: "kb:write", count: 1, firstAt: T0 + 10, lastAt: T0 + 10 },
        ]);
        assert.deepEqual(await store.requestRoutes("nope"), []);
        assert.deepEqual(Object.keys((await store.listRequests(k.id, { limit: 1 }))[0]!).sort(), ["at", "ip", "keyId", "latencyMs", "method", "path", "status"], "the page of the log is as before");
      });

      test("purgeRequests deletes entries strictly older than the time, of every key, and says how many", async () => {
        const u = await aUser();
        const k1 = await aKey(u.id, null);
        const k2 = await aKey(u.id, null);
        await store.appendRequests([
          makeRequest(k1.id, { at: T0 }),
          makeRequest(k2.id, { at: T0 + 1 }),
          makeRequest(k1.id, { at: T0 + 2 }),
          makeRequest(k2.id, { at: T0 + 3 }),
        ]);
        assert.equal(await store.purgeRequests(T0), 0);
        assert.equal(await store.purgeRequests(T0 + 2), 2);
        assert.deepEqual(ats(await store.listRequests(k1.id, { limit: 10 })), [2]);
        assert.deepEqual(ats(await store.listRequests(k2.id, { limit: 10 })), [3]);
        assert.equal(await store.purgeRequests(T0 + 2), 0);
        assert.equal(await store.purgeRequests(FAR_FUTURE), 2);
        assert.deepEqual(await store.listRequests(k1.id, { limit: 10 }), []);
      });

      test("deleting a key deletes its log, and later entries of it are dropped", async () => {
        const u = await aUser();
        const k = await aKey(u.id, null);
        const kept = await aKey(u.id, null);
        await store.appendRequests([makeRequest(k.id, { at: T0 }), makeRequest(kept.id, { at: T0 + 1 }), makeRequest(k.id, { at: T0 + 2 })]);
        await store.addDependent({ keyId: k.id, kind: "server", dependentId: "s1", createdAt: T0 });
        assert.equal(await store.deleteKey(k.id, NO_EFFECTS), "has_dependents");
        assert.equal((await store.listRequests(k.id, { limit: 10 })).length, 2, "a refused delete keeps the log");
        await store.removeDependent(k.id, "server", "s1");

        assert.equal(await store.deleteKey(k.id, auditing(k.id, { action: "key.delete" })), "deleted");
        assert.deepEqual(await store.listRequests(k.id, { limit: 10 }), []);
        assert.deepEqual(await store.requestsPerMinute(k.id, 0), []);
        await store.appendRequests([makeRequest(k.id, { at: T0 + 3 }), makeRequest(kept.id, { at: T0 + 4 })]);
        assert.deepEqual(await store.listRequests(k.id, { limit: 10 }), []);
        assert.deepEqual(ats(await store.listRequests(kept.id, { limit: 10 })), [4, 1]);
        assert.equal(await store.purgeRequests(FAR_FUTURE), 2, "only the kept key's entries were left");
      });

      test("a batch racing a deleteKey leaves no entry of the deleted key, whichever goes first", async () => {
        const u = await aUser();
        const kept = await aKey(u.id, null);
        for (let round = 0; round < 5; round++) {
          const k = await aKey(u.id, null);
          const batch = Array.from({ length: 500 }, (_, i) => makeRequest(i % 2 === 0 ? k.id : kept.id, { at: T0 + i }));
          const [, deleted] = await Promise.all([store.appendRequests(batch), store.deleteKey(k.id, NO_EFFECTS), store.appendRequests(batch)]);
          assert.equal(deleted, "deleted");
          assert.deepEqual(await store.listRequests(k.id, { limit: 10 }), []);
        }
        assert.equal(await store.purgeRequests(FAR_FUTURE), 5 * 2 * 250, "every entry left is the kept key's");
      });
    });

    describe("audit", () => {
      test("before and after round-trip any JSON, and absence", async () => {
        const values: unknown[] = [undefined, null, 0, -1.5, "text", true, [], [1, "two", null], { nested: { list: [{ a: 1 }], empty: {} }, s: "ü\n\"" }];
        const events = values.map((v, i) => makeAudit({ entityId: "json", at: T0 + i, before: v, after: values[values.length - 1 - i] }));
        await store.createUser(makeUser(), { audit: events });
        assert.deepEqual(await auditOf("json"), [...events].reverse());
      });

      test("every field round-trips, including large times", async () => {
        const event = makeAudit({
          at: FAR_FUTURE,
          action: "portal.update",
          actorUserId: "usr_actor",
          actorKeyId: "key_actor",
          sourceIp: "2001:db8::7",
          entityType: "portal",
          entityId: "prt_e",
          portalId: "prt_e",
          before: { name: "a" },
          after: { name: "b" },
        });
        await store.createUser(makeUser(), { audit: [event] });
        assert.deepEqual(await store.listAudit({ limit: 1 }), [event]);
      });

      test("listAudit: newest first, by portal, by entity, before a time, limited", async () => {
        const events = [
          makeAudit({ at: T0 + 1, portalId: "p1", entityId: "k1" }),
          makeAudit({ at: T0 + 2, portalId: "p1", entityId: "k2" }),
          makeAudit({ at: T0 + 3, portalId: "p2", entityId: "k1" }),
          makeAudit({ at: T0 + 4, portalId: null, entityId: "u1", entityType: "user" }),
          makeAudit({ at: T0 + 5, portalId: "p1", entityId: "k1" }),
        ];
        await store.createUser(makeUser(), { audit: [events[2]!, events[0]!, events[4]!, events[1]!, events[3]!] });
        const at = (list: AuditEvent[]) => list.map((e) => e.at - T0);

        assert.deepEqual(at(await store.listAudit({ limit: 100 })), [5, 4, 3, 2, 1]);
        assert.deepEqual(at(await store.listAudit({ limit: 2 })), [5, 4]);
        assert.deepEqual(at(await store.listAudit({ limit: 2, before: T0 + 4 })), [3, 2]);
        assert.deepEqual(at(await store.listAudit({ limit: 100, portalId: "p1" })), [5, 2, 1]);
        assert.deepEqual(at(await store.listAudit({ limit: 100, entityId: "k1" })), [5, 3, 1]);
        assert.deepEqual(at(await store.listAudit({ limit: 100, portalId: "p1", entityId: "k1" })), [5, 1]);
        assert.deepEqual(at(await store.listAudit({ limit: 1, portalId: "p1", entityId: "k1", before: T0 + 5 })), [1]);
        assert.deepEqual(at(await store.listAudit({ limit: 100, entityId: "k1", before: T0 + 3 })), [1]);
        assert.deepEqual(at(await store.listAudit({ limit: 100, portalId: "p1", before: T0 + 1 })), []);
        assert.deepEqual(await store.listAudit({ limit: 0 }), []);
        assert.deepEqual(await store.listAudit({ limit: 100, portalId: "nope" }), []);
      });
    });

    describe("notifications", () => {
      test("listNotifications: the user's, newest first, limited, data round-trips", async () => {
        const u = await aUser();
        const other = await aUser();
        const mine = [
          makeNotification(u.id, { at: T0 + 1, data: { keyId: "k1", days: [7, 1] } }),
          makeNotification(u.id, { at: T0 + 3, data: null }),
          makeNotification(u.id, { at: FAR_FUTURE, kind: "portal.disabled", message: "Портал отключён", data: "text" }),
          makeNotification(u.id, { at: T0 + 2, readAt: T0 + 9 }),
        ];
        await store.createUser(makeUser(), { audit: [], notifications: [...mine, makeNotification(other.id, { at: T0 + 5 })] });
        assert.deepEqual(await store.listNotifications(u.id, 10), [mine[2], mine[1], mine[3], mine[0]]);
        assert.deepEqual(await store.listNotifications(u.id, 2), [mine[2], mine[1]]);
        assert.deepEqual(await store.listNotifications(u.id, 0), []);
        assert.equal((await store.listNotifications(other.id, 10)).length, 1);
        assert.deepEqual(await store.listNotifications("nobody", 10), []);
      });

      test("a notification for an unknown user is refused with its change", async () => {
        const u = makeUser();
        await assert.rejects(store.createUser(u, { audit: [], notifications: [makeNotification("nobody")] }));
        assert.equal(await store.getUser(u.id), undefined);
      });

      test("markNotificationRead marks only the owner's, once", async () => {
        const u = await aUser();
        const other = await aUser();
        const n = makeNotification(u.id);
        await store.createUser(makeUser(), { audit: [], notifications: [n] });
        assert.equal(await store.markNotificationRead(other.id, n.id, T0 + 1), false);
        assert.equal(await store.markNotificationRead(u.id, "nope", T0 + 1), false);
        assert.deepEqual(await store.listNotifications(u.id, 10), [n]);

        assert.equal(await store.markNotificationRead(u.id, n.id, T0 + 2), true);
        assert.deepEqual(await store.listNotifications(u.id, 10), [{ ...n, readAt: T0 + 2 }]);
        assert.equal(await store.markNotificationRead(u.id, n.id, T0 + 3), true);
        assert.deepEqual(await store.listNotifications(u.id, 10), [{ ...n, readAt: T0 + 2 }], "the first read time stays");
      });
    });

    describe("sandbox", () => {
      /** A sandbox (default limits), created. */
      async function aSandbox(over: Partial<Sandbox> = {}): Promise<Sandbox> {
        const sandbox: Sandbox = { portalId: over.portalId ?? nextId("prt"), requestBurst: 50, requestsPerSecond: 2, createdAt: T0, ...over };
        await store.putSandbox(sandbox);
        return sandbox;
      }

      test("putSandbox creates, and again changes the limits keeping createdAt; unknown: undefined", async () => {
        const sb = await aSandbox({ requestBurst: 3, requestsPerSecond: 0.5, createdAt: FAR_FUTURE });
        assert.deepEqual(await store.getSandbox(sb.portalId), sb);
        await store.putSandbox({ ...sb, requestBurst: 250, requestsPerSecond: 5, createdAt: T0 + 1 });
        assert.deepEqual(await store.getSandbox(sb.portalId), { ...sb, requestBurst: 250, requestsPerSecond: 5 });
        assert.equal(await store.getSandbox("nope"), undefined);
      });

      test("webhooks: found by portal and digest; put again changes user and scopes; the sandbox must exist", async () => {
        const sb = await aSandbox();
        const other = await aSandbox();
        const hook: SandboxWebhook = { portalId: sb.portalId, tokenDigest: "d".repeat(64), userId: 1, scopes: ["crm", "task", "user.userfield"], createdAt: T0 };
        await store.putSandboxWebhook(hook);
        assert.deepEqual(await store.getSandboxWebhook(sb.portalId, hook.tokenDigest), hook);
        assert.equal(await store.getSandboxWebhook(other.portalId, hook.tokenDigest), undefined);
        assert.equal(await store.getSandboxWebhook(sb.portalId, "e".repeat(64)), undefined);

        await store.putSandboxWebhook({ ...hook, userId: 7, scopes: [], createdAt: T0 + 5 });
        assert.deepEqual(await store.getSandboxWebhook(sb.portalId, hook.tokenDigest), { ...hook, userId: 7, scopes: [] });

        await assert.rejects(store.putSandboxWebhook({ ...hook, portalId: "no-such-sandbox" }));
        assert.equal(await store.getSandboxWebhook("no-such-sandbox", hook.tokenDigest), undefined);
      });

      test("issue 11.4: webhooks are found by their digest alone, at most two (a token shared by portals names none)", async () => {
        const sb = await aSandbox();
        const other = await aSandbox();
        const digest = nextId("digest").padEnd(64, "0");
        assert.deepEqual(await store.sandboxWebhooksByToken(digest), []);
        const hook: SandboxWebhook = { portalId: sb.portalId, tokenDigest: digest, userId: 1, scopes: ["crm"], createdAt: T0 };
        await store.putSandboxWebhook(hook);
        assert.deepEqual(await store.sandboxWebhooksByToken(digest), [hook]);
        await store.putSandboxWebhook({ ...hook, portalId: other.portalId });
        await store.putSandboxWebhook({ ...hook, portalId: (await aSandbox()).portalId });
        assert.equal((await store.sandboxWebhooksByToken(digest)).length, 2);
      });

      test("items: ids count 1, 2, 3 per portal and entity type; any JSON object round-trips", async () => {
        const sb = await aSandbox();
        const other = await aSandbox();
        const fields = { title: "Сделка «1»", opportunity: 1500.5, contactIds: [1, 2], nested: { a: [null, true, "x"] }, empty: null, "": 0 };
        const first = await store.addSandboxItem(sb.portalId, "crm:2", fields, T0);
        assert.deepEqual(first, { portalId: sb.portalId, entityType: "crm:2", id: 1, fields, createdAt: T0, updatedAt: T0 });
        assert.equal((await store.addSandboxItem(sb.portalId, "crm:2", {}, T0 + 1)).id, 2);
        assert.equal((await store.addSandboxItem(sb.portalId, "task", {}, T0)).id, 1);
        assert.equal((await store.addSandboxItem(other.portalId, "crm:2", {}, T0)).id, 1);
        assert.deepEqual(await store.getSandboxItem(sb.portalId, "crm:2", 1), first);
        assert.equal(await store.getSandboxItem(sb.portalId, "crm:2", 3), undefined);
        assert.equal(await store.getSandboxItem(sb.portalId, "crm:3", 1), undefined);
        assert.equal(await store.getSandboxItem(other.portalId, "task", 1), undefined);
      });

      test("updateSandboxItem merges one level deep (undefined left out, null kept) and bumps updatedAt; unknown: undefined", async () => {
        const sb = await aSandbox();
        const item = await store.addSandboxItem(sb.portalId, "task", { title: "a", status: "2", tags: ["x"], meta: { k: 1, j: 2 } }, T0);
        const updated = await store.updateSandboxItem(sb.portalId, "task", item.id, { status: "5", tags: [], meta: { k: 3 }, title: undefined, closedDate: null }, T0 + 9);
        const expected = { ...item, fields: { title: "a", status: "5", tags: [], meta: { k: 3 }, closedDate: null }, updatedAt: T0 + 9 };
        assert.deepEqual(updated, expected);
        assert.deepEqual(await store.getSandboxItem(sb.portalId, "task", item.id), expected);
        assert.equal(await store.updateSandboxItem(sb.portalId, "task", 99, { title: "b" }, T0), undefined);
        assert.equal(await store.updateSandboxItem(sb.portalId, "user", item.id, { title: "b" }, T0), undefined);
      });

      test("deleteSandboxItem deletes once; ids are not reused; lists are by id, of one portal and type", async () => {
        const sb = await aSandbox();
        const other = await aSandbox();
        for (let i = 0; i < 3; i++) await store.addSandboxItem(sb.portalId, "user", { n: i }, T0 + i);
        await store.addSandboxItem(sb.portalId, "crm:1", { n: 9 }, T0);
        await store.addSandboxItem(other.portalId, "user", { n: 9 }, T0);
        assert.equal(await store.deleteSandboxItem(sb.portalId, "user", 3), true);
        assert.equal(await store.deleteSandboxItem(sb.portalId, "user", 3), false);
        assert.equal(await store.deleteSandboxItem(sb.portalId, "crm:2", 1), false);
        assert.equal((await store.addSandboxItem(sb.portalId, "user", { n: 3 }, T0 + 3)).id, 4);
        assert.deepEqual(
          (await store.listSandboxItems(sb.portalId, "user")).map((x) => [x.id, x.fields["n"], x.createdAt]),
          [
            [1, 0, T0],
            [2, 1, T0 + 1],
            [4, 3, T0 + 3],
          ],
        );
        assert.deepEqual(await store.listSandboxItems(sb.portalId, "task"), []);
        assert.deepEqual(await store.listSandboxItems("nope", "user"), []);
      });

      test("concurrent adds get distinct ids; an item needs an existing sandbox", async () => {
        const sb = await aSandbox();
        const added = await Promise.all(Array.from({ length: 20 }, (_, i) => store.addSandboxItem(sb.portalId, "crm:3", { i }, T0)));
        assert.deepEqual(
          added.map((x) => x.id).sort((a, b) => a - b),
          Array.from({ length: 20 }, (_, i) => i + 1),
        );
        assert.equal((await store.listSandboxItems(sb.portalId, "crm:3")).length, 20);
        await assert.rejects(store.addSandboxItem("no-such-sandbox", "crm:3", {}, T0));
        assert.deepEqual(await store.listSandboxItems("no-such-sandbox", "crm:3"), []);
      });

      test("sandbox data survives close and reopen", async () => {
        const sb = await aSandbox({ requestBurst: 5 });
        const hook: SandboxWebhook = { portalId: sb.portalId, tokenDigest: "f".repeat(64), userId: 1, scopes: ["crm"], createdAt: T0 };
        await store.putSandboxWebhook(hook);
        const item = await store.addSandboxItem(sb.portalId, "crm:4", { title: "Acme" }, T0);
        await store.close();
        const again = await opened.reopen();
        assert.deepEqual(await again.getSandbox(sb.portalId), sb);
        assert.deepEqual(await again.getSandboxWebhook(sb.portalId, hook.tokenDigest), hook);
        assert.deepEqual(await again.listSandboxItems(sb.portalId, "crm:4"), [item]);
        assert.equal((await again.addSandboxItem(sb.portalId, "crm:4", {}, T0)).id, 2);
      });
    });

    describe("accounts: passwords, sessions, one-time links", () => {
      test("issue 12: a password hash is set, read back, and cleared; setting it ends every session of the user", async () => {
        const u = await aUser();
        const other = await aUser();
        assert.equal(await store.getPasswordHash(u.id), null);
        await store.createSession(makeSession(u.id));
        const kept = makeSession(other.id);
        await store.createSession(kept);
        const event = makeAudit({ action: "user.password", entityType: "user", entityId: u.id });
        assert.equal(await store.setPasswordHash(u.id, "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA", { audit: [event] }), true);
        assert.equal(await store.getPasswordHash(u.id), "$scrypt$ln=15,r=8,p=1$c2FsdA$aGFzaA");
        assert.deepEqual(await auditOf(u.id), [event]);
        assert.equal(await store.deleteSessionsOf(u.id), 0, "the password change ended the user's session");
        assert.deepEqual(await store.getSessionByDigest(kept.tokenDigest), kept, "another user's session stays");
        assert.equal(await store.setPasswordHash(u.id, null, NO_EFFECTS), true);
        assert.equal(await store.getPasswordHash(u.id), null);
        assert.equal(await store.setPasswordHash("nobody", "x", auditing("nobody")), false);
        assert.deepEqual(await auditOf("nobody"), []);
        assert.equal(await store.getPasswordHash("nobody"), null);
      });

      test("issue 12: sessions round trip by token digest; touching only moves forward; a taken digest is a conflict", async () => {
        const u = await aUser();
        const s = makeSession(u.id, { createdAt: T0, lastSeenAt: T0, expiresAt: FAR_FUTURE });
        await store.createSession(s);
        assert.deepEqual(await store.getSessionByDigest(s.tokenDigest), s);
        assert.equal(await store.getSessionByDigest("nope"), undefined);
        await store.touchSession(s.id, T0 + 5);
        await store.touchSession(s.id, T0 + 2);
        await store.touchSession("nobody", T0 + 9);
        assert.equal((await store.getSessionByDigest(s.tokenDigest))?.lastSeenAt, T0 + 5);
        await assert.rejects(store.createSession(makeSession(u.id, { tokenDigest: s.tokenDigest })), isConflict("tokenDigest"));
        assert.equal(await store.deleteSession(s.id), true);
        assert.equal(await store.deleteSession(s.id), false);
        assert.equal(await store.getSessionByDigest(s.tokenDigest), undefined);
      });

      test("issue 12: deleteSessionsOf ends every session of one user, or only the ended ones", async () => {
        const u = await aUser();
        const v = await aUser();
        const live = makeSession(u.id, { lastSeenAt: T0 + 100, expiresAt: T0 + 1000 });
        const idle = makeSession(u.id, { lastSeenAt: T0, expiresAt: T0 + 1000 });
        const over = makeSession(u.id, { lastSeenAt: T0 + 100, expiresAt: T0 + 50 });
        const others = makeSession(v.id, { lastSeenAt: T0, expiresAt: T0 });
        for (const x of [live, idle, over, others]) await store.createSession(x);
        assert.equal(await store.deleteSessionsOf(u.id, { now: T0 + 50, idleSince: T0 + 10 }), 2);
        assert.deepEqual(await store.getSessionByDigest(live.tokenDigest), live);
        assert.deepEqual(await store.getSessionByDigest(others.tokenDigest), others);
        assert.equal(await store.deleteSessionsOf(u.id), 1);
        assert.equal(await store.getSessionByDigest(live.tokenDigest), undefined);
        assert.deepEqual(await store.getSessionByDigest(others.tokenDigest), others);
      });

      test("issue 12: one-time links round trip (email lower-cased); a new password link replaces the user's earlier ones", async () => {
        const u = await aUser();
        const first = makeLink({ userId: u.id, email: "Ann@Example.com" });
        const event = makeAudit({ action: "user.link", entityType: "user", entityId: first.id });
        await store.createLink(first, { audit: [event] });
        assert.deepEqual(await store.getLinkByDigest(first.tokenDigest), { ...first, email: "ann@example.com" });
        assert.deepEqual(await auditOf(first.id), [event]);
        const second = makeLink({ userId: u.id });
        await store.createLink(second, NO_EFFECTS);
        assert.equal(await store.getLinkByDigest(first.tokenDigest), undefined);
        assert.deepEqual(await store.getLinkByDigest(second.tokenDigest), second);
        await assert.rejects(store.createLink(makeLink({ tokenDigest: second.tokenDigest }), NO_EFFECTS), isConflict("tokenDigest"));
      });

      test("issue 12: a portal's invitations are listed oldest first and withdrawn one by one", async () => {
        const p = await aPortal();
        const q = await aPortal();
        const a = makeLink({ purpose: "invitation", portalId: p.id, role: "MEMBER", createdBy: p.createdBy, createdAt: T0 + 2 });
        const b = makeLink({ purpose: "invitation", portalId: p.id, role: "ADMIN", createdBy: p.createdBy, createdAt: T0 + 1 });
        const elsewhere = makeLink({ purpose: "invitation", portalId: q.id, role: "MEMBER" });
        for (const x of [a, b, elsewhere]) await store.createLink(x, NO_EFFECTS);
        assert.deepEqual(await store.listInvitations(p.id), [b, a]);
        assert.equal(await store.deleteLink(a.id, auditing(a.id)), true);
        assert.equal(await store.deleteLink(a.id, auditing("again")), false);
        assert.deepEqual(await auditOf("again"), []);
        assert.deepEqual(await store.listInvitations(p.id), [b]);
      });

      test("issue 12: redeeming a link is atomic and works once: new user, password, membership, effects", async () => {
        const p = await aPortal();
        const invite = makeLink({ purpose: "invitation", portalId: p.id, role: "MEMBER", email: "new@example.com" });
        await store.createLink(invite, NO_EFFECTS);
        const newcomer = makeUser({ email: "new@example.com" });
        const member: Membership = { portalId: p.id, userId: newcomer.id, role: "MEMBER", createdAt: T0 };
        const event = makeAudit({ action: "member.add", entityType: "member", entityId: newcomer.id });
        const redemption = { newUser: newcomer, password: { userId: newcomer.id, hash: "h1" }, member };
        assert.equal(await store.redeemLink(invite.id, redemption, { audit: [event] }), true);
        assert.deepEqual(await store.getUser(newcomer.id), newcomer);
        assert.equal(await store.getPasswordHash(newcomer.id), "h1");
        assert.deepEqual(await store.getMember(p.id, newcomer.id), member);
        assert.deepEqual(await auditOf(newcomer.id), [event]);
        assert.equal(await store.getLinkByDigest(invite.tokenDigest), undefined);
        assert.equal(await store.redeemLink(invite.id, { password: { userId: newcomer.id, hash: "h2" } }, auditing("twice")), false);
        assert.equal(await store.getPasswordHash(newcomer.id), "h1");
        assert.deepEqual(await auditOf("twice"), []);
      });

      test("issue 12: a redemption that fails (the new user's email is taken) writes nothing and keeps the link", async () => {
        const taken = await aUser({ email: "taken@example.com" });
        await store.createSession(makeSession(taken.id));
        const link = makeLink({ userId: taken.id });
        await store.createLink(link, NO_EFFECTS);
        const clash = makeUser({ email: "TAKEN@example.com" });
        await assert.rejects(store.redeemLink(link.id, { newUser: clash, password: { userId: taken.id, hash: "h" } }, auditing(clash.id)), isConflict("email"));
        assert.deepEqual(await store.getLinkByDigest(link.tokenDigest), link);
        assert.equal(await store.getPasswordHash(taken.id), null);
        assert.deepEqual(await auditOf(clash.id), []);
        assert.equal(await store.redeemLink(link.id, { password: { userId: taken.id, hash: "h" } }, NO_EFFECTS), true);
        assert.equal(await store.getPasswordHash(taken.id), "h");
        assert.equal(await store.deleteSessionsOf(taken.id), 0, "setting the password ended the user's sessions");
      });
    });

    describe("change feed", () => {
      const feedAfter = async (after: number) => (await store.changesSince(after, 1_000)).map(({ seq: _, ...c }) => c);

      test("issue 14: every write of a key, portal, membership or user is in the feed, in order, whoever wrote it; last-used times and other tables are not", async () => {
        const owner = await aUser();
        const start = await store.lastChange();
        const p = await aPortal({}, owner);
        const k = await aKey(owner.id, p.id);
        await store.touchKeys(new Map([[k.id, T0 + 1]]));
        await store.appendRequests([{ keyId: k.id, at: T0 + 1, ip: "198.51.100.1", method: "GET", path: "/v1/me", status: 200, latencyMs: 1 }]);
        await store.updateKey(k.id, { status: "REVOKED" }, T0 + 2, NO_EFFECTS);
        const other = await aUser();
        await store.putMember({ portalId: p.id, userId: other.id, role: "MEMBER", createdAt: T0 }, NO_EFFECTS);
        await store.removeMember(p.id, other.id, NO_EFFECTS);
        await store.updatePortal(p.id, { name: "renamed" }, NO_EFFECTS);
        assert.equal(await store.deleteKey(k.id, NO_EFFECTS), "deleted");
        assert.deepEqual(await feedAfter(start), [
          { kind: "portal", entityId: p.id, digest: null, version: null },
          { kind: "member", entityId: p.id, digest: null, version: null },
          { kind: "key", entityId: k.id, digest: k.digest, version: k.version },
          { kind: "key", entityId: k.id, digest: k.digest, version: k.version + 1 },
          { kind: "member", entityId: p.id, digest: null, version: null },
          { kind: "member", entityId: p.id, digest: null, version: null },
          { kind: "portal", entityId: p.id, digest: null, version: null },
          { kind: "key", entityId: k.id, digest: k.digest, version: k.version + 2 },
        ]);
        const all = await store.changesSince(start, 1_000);
        assert.ok(all.every((c, i) => i === 0 || c.seq > all[i - 1]!.seq), "numbers increase");
        assert.equal(await store.lastChange(), all.at(-1)!.seq);
      });

      test("issue 14: a read takes at most `limit` rows after a number, or only the listed numbers; a rolled-back change leaves no row", async () => {
        const owner = await aUser();
        const start = await store.lastChange();
        const p = await aPortal({}, owner);
        const twin = makePortal(owner.id, { domain: p.domain });
        await assert.rejects(store.createPortal(twin, admin(twin), NO_EFFECTS), StoreConflictError);
        const keys = [await aKey(owner.id, p.id), await aKey(owner.id, p.id), await aKey(owner.id, p.id)];
        const rows = await store.changesSince(start, 100);
        assert.deepEqual(rows.map((c) => c.entityId), [p.id, p.id, ...keys.map((k) => k.id)], "the refused portal wrote nothing");
        assert.deepEqual((await store.changesSince(start, 2)).map((c) => c.seq), rows.slice(0, 2).map((c) => c.seq));
        const picked = [rows[4]!.seq, rows[2]!.seq, 1e12];
        assert.deepEqual((await store.changesSince(0, 10, picked)).map((c) => c.entityId), [keys[0]!.id, keys[2]!.id]);
        assert.deepEqual(await store.changesSince(rows.at(-1)!.seq, 100), []);
      });

      test("issue 14: pruning keeps what is younger than asked, by the database's clock", async () => {
        await aPortal();
        const before = await store.lastChange();
        assert.equal(await store.pruneChanges(3_600_000), 0, "rows of a moment ago stay");
        assert.equal(await store.lastChange(), before);
        await new Promise((r) => setTimeout(r, 5));
        assert.ok((await store.pruneChanges(0)) >= 2);
        assert.deepEqual(await store.changesSince(0, 100), []);
      });
    });

    describe("lifecycle", () => {
      test("migrate() again changes nothing", async () => {
        const u = await aUser();
        await store.migrate();
        await store.migrate();
        assert.deepEqual(await store.getUser(u.id), u);
        assert.equal(await store.countUsers(), 1);
      });

      test("data survives close and reopen", async () => {
        const u = await aUser();
        const p = await aPortal({}, u);
        const k = await aKey(u.id, p.id, { expiresAt: FAR_FUTURE, tier: "gold" });
        await store.addDependent({ keyId: k.id, kind: "server", dependentId: "s1", createdAt: T0 });
        const request = makeRequest(k.id, { at: T0 + 5 });
        await store.appendRequests([request]);
        const event = makeAudit({ entityId: k.id, after: { x: [1] } });
        const n = makeNotification(u.id, { data: { y: 2 } });
        await store.updateKey(k.id, { name: "kept" }, T0 + 1, { audit: [event], notifications: [n] });
        await store.close();
        await store.close(); // twice is fine

        const again = await opened.reopen();
        assert.equal(again.dialect, store.dialect);
        assert.deepEqual(await again.getUser(u.id), u);
        assert.deepEqual(await again.getPortal(p.id), p);
        assert.deepEqual(await again.listMembers(p.id), [admin(p)]);
        assert.deepEqual(await again.getKeyByDigest(k.digest), { ...k, name: "kept", updatedAt: T0 + 1, version: 2 });
        assert.equal(await again.countDependents(k.id), 1);
        assert.deepEqual(await again.listRequests(k.id, { limit: 10 }), [request]);
        assert.deepEqual(await again.listAudit({ limit: 10 }), [event]);
        assert.deepEqual(await again.listNotifications(u.id, 10), [n]);
      });
    });
  });
}

/** An empty database of one dialect, reached without the store, for migration tests. */
export interface RawDatabase {
  /** The dialect's migration files (loadMigrations of its folder). */
  migrations: Migration[];
  /** SHA-256 of each landed migration (by version), pinned: a landed file must never change. */
  landed: Record<number, string>;
  /** Runs SQL (one or more statements, no parameters) on the database, in the store's schema. */
  exec(sql: string): Promise<void>;
  /** Opens the store on the database, without migrating; closed by cleanup. */
  open(): Promise<Store>;
  cleanup(): Promise<void>;
}

/** What every dialect's migrations must do to a database of an earlier version. */
export function migrationContract(name: string, fresh: () => Promise<RawDatabase>): void {
  describe(`store migrations: ${name}`, () => {
    let db: RawDatabase;

    beforeEach(async () => {
      db = await fresh();
    });
    afterEach(async () => {
      await db.cleanup();
    });

    /** Applies migrations up to `version` as migrate() would have, recording them with their checksums. */
    async function migrateTo(version: number, checksum?: (m: Migration) => string): Promise<void> {
      // The store's own table (it creates it IF NOT EXISTS); these types work in both dialects.
      await db.exec(`CREATE TABLE schema_migrations (
        version integer NOT NULL PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at bigint NOT NULL)`);
      for (const m of db.migrations.filter((x) => x.version <= version)) {
        await db.exec(m.sql);
        await db.exec(`INSERT INTO schema_migrations (version, name, checksum, applied_at)
          VALUES (${m.version}, '${m.name}', '${checksum?.(m) ?? m.checksum}', ${T0})`);
      }
    }

    test("landed migrations are unchanged", () => {
      for (const [version, sha] of Object.entries(db.landed)) {
        const m = db.migrations.find((x) => x.version === Number(version));
        assert.ok(m, `migration ${version} is missing`);
        assert.equal(m.checksum, sha, `migration ${m.file} was edited after landing; add a new migration instead`);
      }
    });

    test("a database of schema 1 keeps its keys, with tier null, and gains the request log", async () => {
      await migrateTo(1);
      await db.exec(`
        INSERT INTO users (id, email, name, role, created_at) VALUES ('usr_legacy', 'legacy@example.com', 'Legacy', 'user', ${T0});
        INSERT INTO keys (id, type, name, owner_id, portal_id, digest, key_prefix, key_suffix, scopes, issued_scopes, status,
          access_mode, ip_whitelist, rate_limit, expires_at, created_at, updated_at, last_used_at, rotated_from_id, rotated_to_id, version)
        VALUES ('key_legacy', 'api', 'Legacy key', 'usr_legacy', NULL, 'digest-legacy', 'vibe_live_abc123', 'wxyz', '["crm:read"]', '[]',
          'ACTIVE', 'READWRITE', '["10.0.0.1"]', 2.5, ${FAR_FUTURE}, ${T0}, ${T0 + 1}, NULL, NULL, NULL, 3);
      `);
      const legacy: KeyRecord = {
        id: "key_legacy",
        type: "api",
        name: "Legacy key",
        ownerId: "usr_legacy",
        portalId: null,
        digest: "digest-legacy",
        keyPrefix: "vibe_live_abc123",
        keySuffix: "wxyz",
        scopes: ["crm:read"],
        issuedScopes: [],
        status: "ACTIVE",
        accessMode: "READWRITE",
        ipWhitelist: ["10.0.0.1"],
        rateLimit: 2.5,
        tier: null,
        expiresAt: FAR_FUTURE,
        createdAt: T0,
        updatedAt: T0 + 1,
        lastUsedAt: null,
        rotatedFromId: null,
        rotatedToId: null,
        version: 3,
      };

      const store = await db.open();
      await store.migrate();
      assert.deepEqual(await store.getKey("key_legacy"), legacy);
      assert.deepEqual(await store.getKeyByDigest("digest-legacy"), legacy);
      await store.migrate(); // again: nothing to do

      assert.deepEqual(await store.updateKey("key_legacy", { tier: "gold" }, T0 + 2, NO_EFFECTS), { ...legacy, tier: "gold", updatedAt: T0 + 2, version: 4 });
      const entry = makeRequest("key_legacy", { at: T0 + 3 });
      await store.appendRequests([entry, makeRequest("nope")]);
      assert.deepEqual(await store.listRequests("key_legacy", { limit: 10 }), [entry]);
      assert.equal(await store.deleteKey("key_legacy", NO_EFFECTS), "deleted");
      assert.deepEqual(await store.listRequests("key_legacy", { limit: 10 }), []);
    });

    test("a database of schema 2 gains the sandbox tables, its keys untouched", async () => {
      await migrateTo(2);
      await db.exec(`INSERT INTO users (id, email, name, role, created_at) VALUES ('usr_two', 'two@example.com', 'Two', 'user', ${T0});`);
      const store = await db.open();
      await store.migrate();
      assert.equal((await store.getUser("usr_two"))?.email, "two@example.com");
      await store.putSandbox({ portalId: "prt_two", requestBurst: 50, requestsPerSecond: 2, createdAt: T0 });
      assert.equal((await store.addSandboxItem("prt_two", "crm:2", { title: "x" }, T0)).id, 1);
      await store.migrate(); // again: nothing to do
      assert.deepEqual((await store.listSandboxItems("prt_two", "crm:2")).map((x) => x.fields), [{ title: "x" }]);
    });

    test("a landed migration whose file changed since it was applied is refused", async () => {
      await migrateTo(1, () => "0".repeat(64));
      const store = await db.open();
      await assert.rejects(store.migrate(), /001_initial\.sql was changed after it was applied/);
    });
  });
}
