import { randomUUID } from "node:crypto";
import { Agent, request as httpRequest } from "undici";
import { bitrix24Client } from "../upstream/bitrix24/index.ts";
import { KeygateError } from "../core/errors.ts";
import { type AccessMode, type MemberRole, type Portal, type PortalPatch, StoreConflictError, type Upstream } from "../store/store.ts";
import type { OutboundPolicy } from "../upstream/outbound.ts";
import { redactUpstream } from "../upstream/redact.ts";
import { createSandbox, sandboxWebhookToken } from "../upstream/sandbox/index.ts";
import { auditEvent } from "./audit.ts";
import { updateKey } from "./keys.ts";
import type { Actor, Keygate } from "./context.ts";

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$|^localhost$/;
const MAX_REQUEST_LIMIT = 100_000;
const MAX_ALLOWED_ORIGINS = 100;

export interface UpstreamInput {
  kind?: string;
  webhookUrl?: string;
  baseUrl?: string;
  clientId?: string;
  clientSecret?: string;
}

function httpUrl(value: string | undefined, param: string): URL {
  let url: URL;
  try {
    url = new URL(value ?? "");
  } catch {
    throw new KeygateError("VALIDATION_ERROR", { message: `${param} must be an absolute http(s) URL`, param });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new KeygateError("VALIDATION_ERROR", { message: `${param} must be an http(s) URL`, param });
  return url;
}

/** The URL as stored, once the outbound policy allows keygate to call it (docs/upstreams.md, "Outbound requests"). */
async function callableOrFail(outbound: OutboundPolicy, url: URL, param: string): Promise<string> {
  const problem = await outbound.problem(url);
  if (problem !== undefined) throw new KeygateError("VALIDATION_ERROR", { message: `${param} ${problem}`, param });
  return url.toString();
}

/** The fields each upstream kind takes besides kind. */
const UPSTREAM_FIELDS: Record<Upstream["kind"], readonly string[]> = { bitrix24: ["webhookUrl", "clientId", "clientSecret"], sandbox: [], http: ["baseUrl"] };

export async function upstreamOrFail(outbound: OutboundPolicy, input: UpstreamInput | null | undefined): Promise<Upstream | null> {
  if (input === null || input === undefined) return null;
  const kind = input.kind;
  if (kind !== "bitrix24" && kind !== "sandbox" && kind !== "http") {
    throw new KeygateError("VALIDATION_ERROR", { message: 'upstream.kind must be "bitrix24", "sandbox" or "http"', param: "upstream.kind" });
  }
  const extra = Object.entries(input).find(([field, value]) => field !== "kind" && value !== undefined && !UPSTREAM_FIELDS[kind].includes(field))?.[0];
  if (extra !== undefined) throw new KeygateError("VALIDATION_ERROR", { message: `unknown field upstream.${extra} for kind "${kind}"`, param: `upstream.${extra}` });
  switch (kind) {
    case "sandbox":
      return { kind: "sandbox" };
    case "http":
      return { kind: "http", baseUrl: await callableOrFail(outbound, httpUrl(input.baseUrl, "upstream.baseUrl"), "upstream.baseUrl") };
    case "bitrix24": {
      const url = httpUrl(input.webhookUrl, "upstream.webhookUrl");
      if (!/\/rest\/\d+\/[^/]+\/?$/.test(url.pathname)) {
        throw new KeygateError("VALIDATION_ERROR", { message: "upstream.webhookUrl must be a Bitrix24 incoming webhook: https://<portal>/rest/<user id>/<token>/", param: "upstream.webhookUrl" });
      }
      const app = bitrix24AppOrFail(input);
      const webhookUrl = await callableOrFail(outbound, url, "upstream.webhookUrl");
      return { kind: "bitrix24", webhookUrl: webhookUrl.endsWith("/") ? webhookUrl : `${webhookUrl}/`, ...app };
    }
  }
}

/** A Bitrix24 application's client_id ("local.…" or "app.…") and client_secret: both or neither, printable, no spaces. */
const APP_CREDENTIAL = /^[\x21-\x7e]{1,200}$/;

function bitrix24AppOrFail(input: UpstreamInput): { clientId: string; clientSecret: string } | Record<string, never> {
  const { clientId, clientSecret } = input;
  if (clientId === undefined && clientSecret === undefined) return {};
  for (const [field, value] of [["clientId", clientId], ["clientSecret", clientSecret]] as const) {
    if (value === undefined) throw new KeygateError("VALIDATION_ERROR", { message: `upstream.${field}: Required with upstream.${field === "clientId" ? "clientSecret" : "clientId"} (the Bitrix24 application's credentials go together)`, param: `upstream.${field}` });
    if (!APP_CREDENTIAL.test(value)) throw new KeygateError("VALIDATION_ERROR", { message: `upstream.${field} must be 1 to 200 printable characters without spaces, as Bitrix24 issues it`, param: `upstream.${field}` });
  }
  return { clientId: clientId!, clientSecret: clientSecret! };
}

/** A portal as the audit trail keeps it: the upstream's credentials masked. */
function auditView(portal: Portal): Portal {
  return portal.upstream === null ? portal : { ...portal, upstream: redactUpstream(portal.upstream) };
}

function requestLimitOrFail(value: number | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  if (!Number.isInteger(value) || value < 1 || value > MAX_REQUEST_LIMIT) {
    throw new KeygateError("VALIDATION_ERROR", { message: `requestLimit is requests per second: a whole number from 1 to ${MAX_REQUEST_LIMIT}, or null`, param: "requestLimit" });
  }
  return value;
}

/**
 * Browser origins exactly as browsers send them in Origin: scheme, host and a port other than the
 * scheme's own, lower case, nothing after (https://app.example.com). "*" is refused: a key in any
 * page at all is what the empty default guards against.
 */
function allowedOriginsOrFail(value: unknown): string[] {
  if (!Array.isArray(value) || value.length > MAX_ALLOWED_ORIGINS) {
    throw new KeygateError("VALIDATION_ERROR", { message: `allowedOrigins is a list of at most ${MAX_ALLOWED_ORIGINS} origins such as "https://app.example.com"`, param: "allowedOrigins" });
  }
  const origins = new Set<string>();
  for (const [i, origin] of value.entries()) {
    const param = `allowedOrigins[${i}]`;
    let url: URL | undefined;
    try {
      url = typeof origin === "string" ? new URL(origin) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== "https:" && url.protocol !== "http:") || url.origin !== origin) {
      throw new KeygateError("VALIDATION_ERROR", { message: `${param} must be an origin as a browser sends it: scheme://host[:port], lower case, no path or trailing slash (e.g. "https://app.example.com")`, param });
    }
    origins.add(origin);
  }
  return [...origins];
}

export async function createPortal(kg: Keygate, actor: Actor, input: { domain?: string; name?: string; upstream?: UpstreamInput | null }): Promise<Portal> {
  const domain = (input.domain ?? "").trim().toLowerCase();
  if (!DOMAIN.test(domain)) throw new KeygateError("VALIDATION_ERROR", { message: "domain must be a host name such as mycompany.bitrix24.ru", param: "domain" });
  const name = (input.name ?? "").trim() || domain;
  if (name.length > 200) throw new KeygateError("VALIDATION_ERROR", { message: "name is at most 200 characters", param: "name" });
  const now = kg.now();
  const portal: Portal = {
    id: randomUUID(),
    domain,
    name,
    status: "ACTIVE",
    defaultAccessMode: "READWRITE",
    upstream: await upstreamOrFail(kg.outbound, input.upstream),
    requestLimit: null,
    allowedOrigins: [],
    createdBy: actor.user.id,
    createdAt: now,
  };
  try {
    await kg.store.createPortal(portal, { portalId: portal.id, userId: actor.user.id, role: "ADMIN", createdAt: now }, {
      audit: [auditEvent(kg, actor, "portal.create", { type: "portal", id: portal.id, portalId: portal.id }, null, auditView(portal))],
    });
  } catch (e) {
    if (e instanceof StoreConflictError) throw new KeygateError("PORTAL_DOMAIN_TAKEN", { param: "domain" });
    throw e;
  }
  if (portal.upstream?.kind === "sandbox") await linkSandbox(kg, portal.id);
  return portal;
}

/** The portal if the actor is a member, with their role; optionally only for admins. */
export async function portalForActor(kg: Keygate, actor: Actor, id: string, need: MemberRole = "MEMBER"): Promise<{ portal: Portal; role: MemberRole }> {
  const portal = await kg.store.getPortal(id);
  const member = portal && (await kg.store.getMember(portal.id, actor.user.id));
  if (!portal || !member) throw new KeygateError("PORTAL_NOT_FOUND");
  if (need === "ADMIN" && member.role !== "ADMIN") throw new KeygateError("NOT_PORTAL_ADMIN");
  return { portal, role: member.role };
}

export async function updatePortal(
  kg: Keygate,
  actor: Actor,
  id: string,
  input: { name?: string; defaultAccessMode?: AccessMode; upstream?: UpstreamInput | null; requestLimit?: number | null; allowedOrigins?: string[] },
): Promise<Portal> {
  const { portal } = await portalForActor(kg, actor, id, "ADMIN");
  const patch: PortalPatch = {};
  if (input.name !== undefined) {
    const name = input.name.trim();
    if (name === "" || name.length > 200) throw new KeygateError("VALIDATION_ERROR", { message: "name is 1 to 200 characters", param: "name" });
    patch.name = name;
  }
  if (input.defaultAccessMode !== undefined) patch.defaultAccessMode = input.defaultAccessMode;
  if (input.upstream !== undefined) patch.upstream = await upstreamOrFail(kg.outbound, input.upstream);
  if (input.requestLimit !== undefined) patch.requestLimit = requestLimitOrFail(input.requestLimit);
  if (input.allowedOrigins !== undefined) patch.allowedOrigins = allowedOriginsOrFail(input.allowedOrigins);
  if (Object.keys(patch).length === 0) throw new KeygateError("VALIDATION_ERROR", { message: "give at least one field to change" });
  const updated = await kg.store.updatePortal(id, patch, {
    audit: [auditEvent(kg, actor, "portal.update", { type: "portal", id, portalId: id }, auditView(portal), auditView({ ...portal, ...patch }))],
  });
  if (!updated) throw new KeygateError("PORTAL_NOT_FOUND");
  if (updated.upstream?.kind === "sandbox" && portal.upstream?.kind !== "sandbox") await linkSandbox(kg, updated.id);
  kg.portalChanged(updated);
  return updated;
}

/** A portal linked to the built-in sandbox gets its sandbox webhook (its token derives from the server secret: nothing secret is stored). */
async function linkSandbox(kg: Keygate, portalId: string): Promise<void> {
  await createSandbox(kg.store, portalId, { token: sandboxWebhookToken(kg.serverSecret, portalId), now: kg.now });
}

export async function addMember(kg: Keygate, actor: Actor, portalId: string, input: { email?: string; role?: MemberRole }) {
  await portalForActor(kg, actor, portalId, "ADMIN");
  const user = await kg.store.getUserByEmail((input.email ?? "").trim().toLowerCase());
  if (!user) throw new KeygateError("USER_NOT_FOUND", { param: "email" });
  const before = (await kg.store.getMember(portalId, user.id)) ?? null;
  // Without a role, an existing member keeps theirs; a new one is a MEMBER.
  const role = input.role ?? before?.role ?? "MEMBER";
  if (before && before.role === "ADMIN" && role !== "ADMIN") await assertAnotherAdmin(kg, portalId, user.id);
  const member = { portalId, userId: user.id, role, createdAt: before?.createdAt ?? kg.now() };
  await kg.store.putMember(member, { audit: [auditEvent(kg, actor, before ? "member.update" : "member.add", { type: "member", id: user.id, portalId }, before, member)] });
  return { ...member, email: user.email, name: user.name };
}

/** What the connection test found (Portal settings: "Test connection"). */
export interface ConnectionTest {
  ok: boolean;
  kind: Upstream["kind"];
  /** What happened, for people. */
  message: string;
  latencyMs: number;
  /** kind http: the status the base URL answered with. */
  status?: number;
}

const TEST_TIMEOUT_MS = 10_000;

/**
 * Tries the portal's upstream now (admins): a Bitrix24 webhook answers server.time, an HTTP API
 * answers anything at its base URL; the built-in sandbox is this keygate. Through the outbound
 * rule like every upstream call, and nothing is changed or spent.
 */
export async function testConnection(kg: Keygate, actor: Actor, portalId: string): Promise<ConnectionTest> {
  const { portal } = await portalForActor(kg, actor, portalId, "ADMIN");
  const upstream = portal.upstream;
  if (upstream === null) throw new KeygateError("PORTAL_NOT_LINKED", { param: "id" });
  const started = performance.now();
  const took = () => Math.round(performance.now() - started);
  switch (upstream.kind) {
    case "sandbox":
      return { ok: true, kind: upstream.kind, message: "The built-in sandbox portal is part of this keygate.", latencyMs: took() };
    case "bitrix24":
      try {
        await bitrix24Client(upstream.webhookUrl, { timeoutMs: TEST_TIMEOUT_MS, outbound: kg.outbound }).call("server.time");
        return { ok: true, kind: upstream.kind, message: "The incoming webhook answered.", latencyMs: took() };
      } catch (e) {
        return { ok: false, kind: upstream.kind, message: (e as Error).message, latencyMs: took() };
      }
    case "http": {
      const dispatcher = new Agent({ connect: kg.outbound.connector({ timeout: TEST_TIMEOUT_MS }), headersTimeout: TEST_TIMEOUT_MS, bodyTimeout: TEST_TIMEOUT_MS });
      try {
        const answer = await httpRequest(upstream.baseUrl, { method: "GET", dispatcher });
        await answer.body.dump();
        return { ok: true, kind: upstream.kind, message: `The base URL answered ${answer.statusCode}.`, latencyMs: took(), status: answer.statusCode };
      } catch (e) {
        // The URL stays masked: it may hold credentials.
        return { ok: false, kind: upstream.kind, message: `No answer from the base URL (${(e as { code?: string }).code ?? (e as Error).name}).`, latencyMs: took() };
      } finally {
        await dispatcher.close();
      }
    }
  }
}

/** The portal's members with their email and name, oldest first (admins). */
export async function listMembers(kg: Keygate, actor: Actor, portalId: string) {
  await portalForActor(kg, actor, portalId, "ADMIN");
  const members = await kg.store.listMembers(portalId);
  const users = await Promise.all(members.map((m) => kg.store.getUser(m.userId)));
  return members.map((m, i) => ({ ...m, email: users[i]?.email ?? "", name: users[i]?.name ?? "" }));
}

export async function removeMember(kg: Keygate, actor: Actor, portalId: string, userId: string): Promise<void> {
  await portalForActor(kg, actor, portalId, "ADMIN");
  const member = await kg.store.getMember(portalId, userId);
  if (!member) throw new KeygateError("USER_NOT_FOUND", { message: "That user is not a member of the portal.", param: "userId" });
  if (member.role === "ADMIN") await assertAnotherAdmin(kg, portalId, userId);
  await kg.store.removeMember(portalId, userId, { audit: [auditEvent(kg, actor, "member.remove", { type: "member", id: userId, portalId }, member, null)] });
  // A former member's keys on the portal stop working: revoked as an admin revokes a key, audit event included.
  for (const key of await kg.store.listKeys({ portalId, ownerId: userId })) {
    if (key.status !== "REVOKED") await updateKey(kg, actor, key.id, { status: "REVOKED" });
  }
}

async function assertAnotherAdmin(kg: Keygate, portalId: string, userId: string): Promise<void> {
  const admins = (await kg.store.listMembers(portalId)).filter((m) => m.role === "ADMIN" && m.userId !== userId);
  if (admins.length === 0) throw new KeygateError("LAST_PORTAL_ADMIN");
}
