/**
 * Setting a sandbox up: its webhook, its limits, and demo data.
 *
 *     const path = await createSandbox(store, portal.id, { token: sandboxWebhookToken(serverSecret, portal.id) });
 *     await seedDemoData(store, portal.id);
 *     const b24 = bitrix24Client(`${baseUrl}${path}`, { timeoutMs: 10_000 });   // = sandboxWebhookUrl(baseUrl, portal.id, token)
 */
import { createHmac, randomBytes } from "node:crypto";
import type { Profile } from "../../core/profile/profile.ts";
import { vibecode } from "../../profiles/vibecode.ts";
import type { Store } from "../../store/store.ts";
import { ENTITY, type MethodContext } from "./context.ts";
import { addCrmItem } from "./crm.ts";
import { tokenDigest } from "./routes.ts";
import { addTask } from "./tasks.ts";
import { addUser } from "./users.ts";
import { isoTime } from "./values.ts";

/** Bitrix24's own request limit (plans other than Enterprise): a burst of 50, draining 2 per second. */
export const DEFAULT_LIMIT = { requestBurst: 50, requestsPerSecond: 2 } as const;

/** Whether a profile's upstream routes are served from Bitrix24 (VibeCode's), by keygate's Bitrix24 adapters: only then is a sandbox portal of use. */
export function servedByBitrix24(profile: Profile): boolean {
  return profile.id === vibecode.id;
}

/** Every Bitrix24 scope of the VibeCode profile: what a sandbox webhook gets unless told otherwise. */
export const SANDBOX_SCOPES: readonly string[] = vibecode.groups.find((g) => g.id === "bitrix24")!.resources.map((r) => r.id);

export interface CreateSandboxOptions {
  /** The webhook's token (letters and digits); default: random. Derive it with sandboxWebhookToken to find it again without storing it. */
  token?: string;
  /** The sandbox user the webhook acts as (default 1, the first user; created as the portal's administrator on an empty sandbox). */
  userId?: number;
  /** The webhook's scopes (default SANDBOX_SCOPES). */
  scopes?: readonly string[];
  /** The portal's request limit (default DEFAULT_LIMIT); given, it replaces an existing sandbox's limit. */
  limit?: { requestBurst: number; requestsPerSecond: number };
  now?: () => number;
}

/**
 * A webhook token derived from a secret and the portal id (HMAC-SHA256, 32 hex characters):
 * the gateway can rebuild the sandbox's webhook URL at any time while the store keeps only a digest.
 */
export function sandboxWebhookToken(secret: string, portalId: string): string {
  return createHmac("sha256", secret).update(`keygate sandbox webhook\u0000${portalId}`).digest("hex").slice(0, 32);
}

/** The path of a sandbox webhook: /sandbox/<portal id>/rest/<user id>/<token>/. */
export function sandboxWebhookPath(portalId: string, token: string, userId = 1): string {
  return `/sandbox/${encodeURIComponent(portalId)}/rest/${userId}/${encodeURIComponent(token)}/`;
}

/** The full webhook URL on a keygate reachable at baseUrl (e.g. http://127.0.0.1:8080). */
export function sandboxWebhookUrl(baseUrl: string, portalId: string, token: string, userId = 1): string {
  return `${baseUrl.replace(/\/+$/, "")}${sandboxWebhookPath(portalId, token, userId)}`;
}

/** The webhook URL on the sandbox served at a host root (`keygate serve --sandbox-port`), e.g. https://sandbox.example:8443/rest/1/<token>/: the token names the portal. */
export function sandboxRootWebhookUrl(sandboxUrl: string, token: string, userId = 1): string {
  return `${sandboxUrl.replace(/\/+$/, "")}/rest/${userId}/${encodeURIComponent(token)}/`;
}

/** The sandbox of the portal, created with the default limit when missing. */
async function ensureSandbox(store: Store, portalId: string, now: number, limit?: { requestBurst: number; requestsPerSecond: number }): Promise<void> {
  const existing = await store.getSandbox(portalId);
  if (existing !== undefined && limit === undefined) return;
  const { requestBurst, requestsPerSecond } = limit ?? DEFAULT_LIMIT;
  if (!(Number.isInteger(requestBurst) && requestBurst >= 1 && Number.isFinite(requestsPerSecond) && requestsPerSecond > 0)) {
    throw new Error("a sandbox limit needs a whole requestBurst >= 1 and requestsPerSecond > 0");
  }
  await store.putSandbox({ portalId, requestBurst, requestsPerSecond, createdAt: existing?.createdAt ?? now });
}

const context = (store: Store, portalId: string, userId: number, now: number): MethodContext => ({ store, portalId, userId, now, scopes: new Set(SANDBOX_SCOPES) });

/** The portal's administrator, the first user: the author of what the demo data and default webhooks create. */
async function ensureAdmin(store: Store, portalId: string, now: number): Promise<void> {
  if ((await store.listSandboxItems(portalId, ENTITY.user)).length > 0) return;
  await addUser(context(store, portalId, 1, now), {
    NAME: "Anna",
    LAST_NAME: "Petrova",
    EMAIL: "anna.petrova@sandbox.example",
    WORK_POSITION: "Administrator",
    UF_DEPARTMENT: [1],
  });
}

/**
 * Creates the portal's sandbox (when missing) and a webhook into it; returns the webhook's
 * path, /sandbox/<portal id>/rest/<user id>/<token>/ (it holds the token: the only time it is
 * shown, unless the token was derived with sandboxWebhookToken). Creating it again with the same
 * token changes its user and scopes.
 */
export async function createSandbox(store: Store, portalId: string, options: CreateSandboxOptions = {}): Promise<string> {
  const now = (options.now ?? Date.now)();
  const token = options.token ?? randomBytes(16).toString("hex");
  if (!/^[A-Za-z0-9]{8,64}$/.test(token)) throw new Error("a sandbox webhook token is 8 to 64 letters and digits");
  const userId = options.userId ?? 1;
  await ensureSandbox(store, portalId, now, options.limit);
  if (userId === 1) await ensureAdmin(store, portalId, now);
  if ((await store.getSandboxItem(portalId, ENTITY.user, userId)) === undefined) throw new Error(`the sandbox of portal ${portalId} has no user ${userId}`);
  await store.putSandboxWebhook({ portalId, tokenDigest: tokenDigest(token), userId, scopes: [...(options.scopes ?? SANDBOX_SCOPES)], createdAt: now });
  return sandboxWebhookPath(portalId, token, userId);
}

const DAY = 86_400_000;

/**
 * Demo records for a fresh sandbox: 4 users, 3 companies, 4 contacts, 6 deals across the
 * pipeline (NEW … WON, LOSE) with amounts, 3 leads, 4 tasks. Creates the sandbox when missing.
 * Does nothing when the sandbox has deals already; says how many records of each it added.
 */
export async function seedDemoData(store: Store, portalId: string, options: { now?: () => number } = {}): Promise<Record<string, number>> {
  const now = (options.now ?? Date.now)();
  await ensureSandbox(store, portalId, now);
  if ((await store.listSandboxItems(portalId, ENTITY.crm(2))).length > 0) return {};
  await ensureAdmin(store, portalId, now);
  const ctx = context(store, portalId, 1, now);
  const added: Record<string, number> = { users: 0, companies: 0, contacts: 0, deals: 0, leads: 0, tasks: 0 };

  const people = [
    { NAME: "Boris", LAST_NAME: "Ivanov", EMAIL: "boris.ivanov@sandbox.example", WORK_POSITION: "Sales manager", UF_DEPARTMENT: [2] },
    { NAME: "Clara", LAST_NAME: "Smirnova", EMAIL: "clara.smirnova@sandbox.example", WORK_POSITION: "Sales manager", UF_DEPARTMENT: [2] },
    { NAME: "Dmitry", LAST_NAME: "Volkov", EMAIL: "dmitry.volkov@sandbox.example", WORK_POSITION: "Project manager", UF_DEPARTMENT: [3] },
  ];
  const existingEmails = new Set((await store.listSandboxItems(portalId, ENTITY.user)).map((u) => String(u.fields["EMAIL"] ?? "")));
  for (const person of people) {
    if (existingEmails.has(person.EMAIL)) continue;
    await addUser(ctx, person);
    added["users"]!++;
  }
  const users = (await store.listSandboxItems(portalId, ENTITY.user)).map((u) => u.id);
  // Records are spread over the users other than the administrator.
  const staff = users.length > 1 ? users.slice(1) : users;
  const manager = (i: number) => staff[i % staff.length] ?? 1;

  const companies = [
    { title: "Northwind Trading", industry: "MANUFACTURING", revenue: 1_200_000, fm: [{ typeId: "EMAIL", value: "office@northwind.example" }] },
    { title: "Acme Logistics", industry: "DELIVERY", revenue: 450_000, fm: [{ typeId: "PHONE", value: "+1 555 0100" }] },
    { title: "Globex Retail", industry: "OTHER", revenue: 3_800_000 },
  ];
  const companyIds: number[] = [];
  for (const [i, c] of companies.entries()) {
    companyIds.push((await addCrmItem(ctx, 4, { ...c, assignedById: manager(i) }))["id"] as number);
    added["companies"]!++;
  }

  const contacts = [
    { name: "Olga", lastName: "Kuznetsova", post: "Purchasing manager", companyId: companyIds[0], fm: [{ typeId: "EMAIL", value: "olga@northwind.example" }] },
    { name: "Pavel", lastName: "Sokolov", post: "CEO", companyId: companyIds[0], fm: [{ typeId: "PHONE", value: "+1 555 0101" }] },
    { name: "Maria", lastName: "Lebedeva", post: "Logistics lead", companyId: companyIds[1], fm: [{ typeId: "EMAIL", value: "maria@acme.example" }] },
    { name: "Ivan", lastName: "Morozov", post: "Store director", companyId: companyIds[2] },
  ];
  const contactIds: number[] = [];
  for (const [i, c] of contacts.entries()) {
    contactIds.push((await addCrmItem(ctx, 3, { ...c, assignedById: manager(i) }))["id"] as number);
    added["contacts"]!++;
  }

  const deals = [
    { title: "Northwind: annual supply contract", stageId: "NEW", opportunity: 120_000, c: 0, k: 0 },
    { title: "Northwind: spare parts", stageId: "PREPARATION", opportunity: 18_500, c: 0, k: 1 },
    { title: "Acme: warehouse automation", stageId: "PREPAYMENT_INVOICE", opportunity: 64_000, c: 1, k: 2 },
    { title: "Globex: store fit-out", stageId: "EXECUTING", opportunity: 230_000, c: 2, k: 3 },
    { title: "Acme: fleet tracking", stageId: "WON", opportunity: 42_000, c: 1, k: 2 },
    { title: "Globex: loyalty program", stageId: "LOSE", opportunity: 75_000, c: 2, k: 3 },
  ];
  for (const [i, d] of deals.entries()) {
    await addCrmItem(ctx, 2, {
      title: d.title,
      stageId: d.stageId,
      opportunity: d.opportunity,
      currencyId: "USD",
      companyId: companyIds[d.c],
      contactId: contactIds[d.k],
      contactIds: [contactIds[d.k]],
      probability: [10, 30, 50, 80, 100, 0][i],
      closedate: isoTime(now + (i + 1) * 7 * DAY),
      assignedById: manager(i),
    });
    added["deals"]!++;
  }

  const leads = [
    { title: "Website inquiry: bulk order", name: "Sergey", lastName: "Orlov", stageId: "NEW", sourceId: "WEB", opportunity: 9_000 },
    { title: "Trade show contact", name: "Elena", lastName: "Fedorova", companyTitle: "Initech", stageId: "IN_PROCESS", sourceId: "TRADE_SHOW", opportunity: 25_000 },
    { title: "Cold call follow-up", name: "Nikolai", lastName: "Popov", stageId: "JUNK", sourceId: "CALL", opportunity: 0 },
  ];
  for (const [i, l] of leads.entries()) {
    await addCrmItem(ctx, 1, { ...l, assignedById: manager(i), fm: [{ typeId: "EMAIL", value: `${l.name.toLowerCase()}@lead.example` }] });
    added["leads"]!++;
  }

  const tasks = [
    { TITLE: "Prepare the Northwind proposal", STATUS: 2, PRIORITY: 2, DEADLINE: isoTime(now + 3 * DAY) },
    { TITLE: "Call Acme about the invoice", STATUS: 3, PRIORITY: 1, DEADLINE: isoTime(now + DAY) },
    { TITLE: "Send the Globex fit-out plan", STATUS: 4, PRIORITY: 1, DEADLINE: isoTime(now + 5 * DAY) },
    { TITLE: "Update the price list", STATUS: 5, PRIORITY: 0 },
  ];
  for (const [i, t] of tasks.entries()) {
    await addTask(ctx, { ...t, RESPONSIBLE_ID: manager(i), AUDITORS: [1], DESCRIPTION: "Demo task of the sandbox portal." });
    added["tasks"]!++;
  }
  return added;
}

/** The webhook token of a portal member's own sandbox user (docs/oauth.md): derived per user, like the portal's. */
export function sandboxMemberWebhookToken(secret: string, portalId: string, userId: number): string {
  return createHmac("sha256", secret).update(`keygate sandbox member webhook\u0000${portalId}\u0000${userId}`).digest("hex").slice(0, 32);
}

/**
 * The sandbox user a keygate user acts as on the portal (an app session's user, docs/oauth.md):
 * the one with their email, added as an employee when there is none; with a webhook of their own
 * (token: sandboxMemberWebhookToken), so what an app does for them is authored by them.
 */
export async function sandboxUserFor(store: Store, portalId: string, person: { email: string; name: string }, secret: string, now = Date.now()): Promise<number> {
  await ensureSandbox(store, portalId, now);
  await ensureAdmin(store, portalId, now);
  const users = await store.listSandboxItems(portalId, ENTITY.user);
  const email = person.email.toLowerCase();
  let userId = users.find((u) => String(u.fields["EMAIL"] ?? "").toLowerCase() === email)?.id;
  if (userId === undefined) {
    const [first, ...rest] = person.name.trim().split(/\s+/);
    userId = await addUser(context(store, portalId, 1, now), { NAME: first || email, LAST_NAME: rest.join(" "), EMAIL: email, UF_DEPARTMENT: [1] });
  }
  await createSandbox(store, portalId, { token: sandboxMemberWebhookToken(secret, portalId, userId), userId, now: () => now });
  return userId;
}

/**
 * The keygate user a sandbox user is (sandboxUserFor the other way round): the member of the
 * portal with the sandbox user's email; undefined for a sandbox user no member is (the demo users).
 */
export async function keygateUserOf(store: Store, portalId: string, sandboxUserId: number): Promise<string | undefined> {
  const email = String((await store.getSandboxItem(portalId, ENTITY.user, sandboxUserId))?.fields["EMAIL"] ?? "").toLowerCase();
  const user = email === "" ? undefined : await store.getUserByEmail(email);
  if (user === undefined || (await store.getMember(portalId, user.id)) === undefined) return undefined;
  return user.id;
}
