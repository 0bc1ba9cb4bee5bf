/**
 * Helpers shared by the HTTP suites (verify.test.ts, keys.test.ts): state is built through the
 * HTTP API (portals, members, keys), and every reply is checked for the VibeCode envelope and an
 * X-Request-Id.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { setPassword } from "../../src/accounts/links.ts";
import { generateKey } from "../../src/core/keys/format.ts";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import type { User } from "../../src/store/store.ts";
import type { CallOptions, Harness, Reply } from "../support/gateway.ts";

export const HOUR = 60 * 60 * 1000;
export const MINUTE = 60 * 1000;

function show(r: Reply): string {
  return `${r.status} ${JSON.stringify(r.body)}`;
}

/** Every response, success or error, carries an X-Request-Id. */
export function assertRequestId(r: Reply): void {
  assert.match(String(r.headers["x-request-id"] ?? ""), /^req_[0-9a-f-]{36}$/, `X-Request-Id missing on ${show(r)}`);
}

/** A success reply: the status, {"success":true,"data":…}, an X-Request-Id; returns data. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function ok(r: Reply, status = 200): any {
  assert.equal(r.status, status, show(r));
  assert.equal(r.body?.success, true, show(r));
  assert.ok("data" in r.body, show(r));
  assertRequestId(r);
  return r.body.data;
}

/**
 * An error reply: the status and code, the envelope {"success":false,"error":{code,message,hint?,details?,param?}}
 * with nothing else at the top level, an X-Request-Id; returns the error object.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function fails(r: Reply, status: number, code: string): any {
  assert.equal(r.body?.error?.code, code, show(r));
  assert.equal(r.status, status, show(r));
  assert.deepEqual(Object.keys(r.body).sort(), ["error", "success"], show(r));
  assert.equal(r.body.success, false, show(r));
  assert.equal(typeof r.body.error.message, "string", show(r));
  assert.ok(r.body.error.message.length > 0, show(r));
  for (const field of Object.keys(r.body.error)) assert.ok(["code", "message", "hint", "details", "param"].includes(field), `unexpected error field ${field}: ${show(r)}`);
  assertRequestId(r);
  return r.body.error;
}

/** Asserts a request got past verification: it succeeded, or reached the sandbox this harness does not serve unless it listens. */
export function passesVerification(r: Reply): void {
  assert.ok(r.status < 400 || r.body?.error?.code === "SANDBOX_UNREACHABLE", `expected to pass verification: ${show(r)}`);
  assertRequestId(r);
}

let portals = 0;

/** A portal created over HTTP by `by` (default the harness owner, who becomes its ADMIN); linked to the sandbox unless linked: false. */
export async function makePortal(h: Harness, options: { by?: string; linked?: boolean } = {}): Promise<string> {
  const domain = `p${++portals}-${randomBytes(3).toString("hex")}.bitrix24.ru`;
  const body = options.linked === false ? { domain } : { domain, upstream: { kind: "sandbox" } };
  return ok(await h.call("POST", "/v1/portals", { key: options.by ?? h.owner.key, body }), 201).id;
}

export interface IssuedKey {
  id: string;
  raw: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

/** A portal key created over HTTP (POST /v1/keys) with the owner's management key unless `by` is given. */
export async function makeKey(h: Harness, portalId: string, body: Record<string, unknown> = {}, options: { by?: string; ip?: string } = {}): Promise<IssuedKey> {
  const r = await h.call("POST", "/v1/keys", { key: options.by ?? h.owner.key, ip: options.ip, body: { portalId, name: "Test key", scopes: ["crm"], ...body } });
  const data = ok(r, 201);
  return { id: data.id, raw: data.rawKey, data };
}

/** PATCH /v1/keys/:id over HTTP; returns the key view. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function patchKey(h: Harness, id: string, body: Record<string, unknown>, by?: string): Promise<any> {
  return ok(await h.call("PATCH", `/v1/keys/${id}`, { key: by ?? h.owner.key, body }));
}

/** The id of the key that sends a request (GET /v1/me). */
export async function keyIdOf(h: Harness, raw: string, options: CallOptions = {}): Promise<string> {
  return ok(await h.call("GET", "/v1/me", { ...options, key: raw })).keyId;
}

let users = 0;

/**
 * A fresh user with a management key (only scopes given), plus a way to issue further management
 * keys to the same user as the operator does (keygate users create), whatever scopes they hold.
 */
export async function makeUser(h: Harness, scopes?: string): Promise<{ user: User; key: string; id: string; another(scopes: string): Promise<string> }> {
  const u = await h.user(`user${++users}-${randomBytes(3).toString("hex")}@example.com`, scopes);
  return {
    ...u,
    id: await keyIdOf(h, u.key),
    another: async (s: string) => (await issueManagementKey(h.kg, u.user, s)).rawKey,
  };
}

/** Adds a user to a portal over HTTP (as the owner, an admin of it). */
export async function addMember(h: Harness, portalId: string, email: string, role: "ADMIN" | "MEMBER" = "MEMBER"): Promise<void> {
  ok(await h.call("POST", `/v1/portals/${portalId}/members`, { key: h.owner.key, body: { email, role } }), 201);
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** The key with the character at `index` (default: one inside the random body) replaced by another base62 character. */
export function changeOneChar(raw: string, index = raw.length - 12): string {
  const c = raw[index]!;
  const other = BASE62[(BASE62.indexOf(c) + 1) % 62]!;
  return raw.slice(0, index) + other + raw.slice(index + 1);
}

/** Same prefix and body, a checksum that does not match. */
export function badChecksum(raw: string): string {
  return changeOneChar(raw, raw.length - 1);
}

/** A well-formed key (prefix, length, valid checksum) that no store holds. */
export function unknownKey(prefix = "vibe_api_"): string {
  return generateKey(prefix);
}

export function isoAt(ms: number): string {
  return new Date(ms).toISOString();
}

export interface RateHeaders {
  limit: number;
  remaining: number;
  reset: number;
  /** RateLimit-Policy: every limit that applies, e.g. `"platform";q=300;w=60, "key";q=5;w=1`. */
  policy: string;
  /** RateLimit: the tightest limit, e.g. `"platform";r=245;t=25`. */
  rateLimit: string;
}

/**
 * The rate-limit fields of a reply (seed 003: X-RateLimit-Limit, -Remaining, -Reset; the IETF
 * RateLimit and RateLimit-Policy); fails when one is missing or they disagree with each other.
 */
export function rateHeaders(r: Reply): RateHeaders {
  const field = (name: string) => {
    const v = r.headers[name];
    assert.ok(typeof v === "string" && v !== "", `${name} missing on ${show(r)}`);
    return v;
  };
  const int = (name: string) => {
    const v = field(name);
    assert.match(v, /^\d+$/, `${name}: ${v}`);
    return Number(v);
  };
  const h: RateHeaders = {
    limit: int("x-ratelimit-limit"),
    remaining: int("x-ratelimit-remaining"),
    reset: int("x-ratelimit-reset"),
    policy: field("ratelimit-policy"),
    rateLimit: field("ratelimit"),
  };
  assert.ok(h.remaining <= h.limit, `remaining ${h.remaining} > limit ${h.limit}`);
  const m = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(h.rateLimit);
  assert.ok(m, `RateLimit: ${h.rateLimit}`);
  assert.equal(Number(m[2]), h.remaining, "RateLimit r= is X-RateLimit-Remaining");
  assert.equal(Number(m[3]), h.reset, "RateLimit t= is X-RateLimit-Reset");
  const policies = new Map(
    h.policy.split(", ").map((item) => {
      const p = /^"([^"]+)";q=(\d+);w=(\d+)$/.exec(item);
      assert.ok(p, `RateLimit-Policy: ${h.policy}`);
      return [p[1]!, { q: Number(p[2]), w: Number(p[3]) }] as const;
    }),
  );
  const tight = policies.get(m[1]!);
  assert.ok(tight, `RateLimit names ${m[1]}, which RateLimit-Policy (${h.policy}) does not list`);
  assert.equal(tight.q, h.limit, "X-RateLimit-Limit is the quota of the policy RateLimit names");
  assert.ok(h.reset <= tight.w, `X-RateLimit-Reset ${h.reset} is beyond the window of ${tight.w} s`);
  return h;
}

/**
 * A refusal by a rate limit in the VibeCode envelope: the status and code, error.retryAfter (whole
 * seconds, at least 1) equal to the Retry-After header, the rate-limit headers with nothing
 * remaining; returns the error object.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function limited(r: Reply, status = 429, code = "RATE_LIMITED"): any {
  assert.equal(r.body?.error?.code, code, show(r));
  assert.equal(r.status, status, show(r));
  assert.deepEqual(Object.keys(r.body).sort(), ["error", "success"], show(r));
  assert.equal(r.body.success, false, show(r));
  const e = r.body.error;
  for (const field of Object.keys(e)) assert.ok(["code", "message", "hint", "details", "param", "retryAfter"].includes(field), `unexpected error field ${field}: ${show(r)}`);
  assert.ok(Number.isInteger(e.retryAfter) && e.retryAfter >= 1, `error.retryAfter: ${show(r)}`);
  assert.equal(r.headers["retry-after"], String(e.retryAfter), "Retry-After is error.retryAfter");
  assert.equal(rateHeaders(r).remaining, 0);
  assertRequestId(r);
  return e;
}

export const PASSWORD = "correct horse battery staple";
/** The redirect URI an app key registers for sessionOf. */
export const OAUTH_CALLBACK = "https://app.example/callback";
const OAUTH_STATE = "aAbBcCdDeEfFgGhH";
let members = 0;

/** A new person, a member of the portal with a password, signed in: their keygate id, email and session cookie. */
export async function member(h: Harness, portalId: string, role: "ADMIN" | "MEMBER", name = "Olga Member"): Promise<{ id: string; email: string; cookie: string }> {
  const email = `person${++members}-${randomBytes(3).toString("hex")}@example.com`;
  const user = await createUser(h.kg, null, { email, name });
  await setPassword(h.kg, null, user, PASSWORD);
  await addMember(h, portalId, email, role);
  const signIn = await h.call("POST", "/v1/session", { body: { email, password: PASSWORD } });
  assert.equal(signIn.status, 201, JSON.stringify(signIn.body));
  return { id: user.id, email, cookie: /^(keygate_session=[A-Za-z0-9_-]+);/.exec(String(signIn.headers["set-cookie"]))![1]! };
}

/** The signed-in member's session token for an app key that registered OAUTH_CALLBACK, through the OAuth flow (consent, code, token with PKCE). */
export async function sessionOf(h: Harness, appKey: string, cookie: string): Promise<string> {
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const query = new URLSearchParams({ app_key: appKey, state: OAUTH_STATE, redirect_uri: OAUTH_CALLBACK, code_challenge: challenge, code_challenge_method: "S256" });
  const page = await h.call("GET", `/v1/oauth/authorize?${query}`, { headers: { cookie } });
  assert.equal(page.status, 200, JSON.stringify(page.body));
  const consent = await h.call("POST", "/v1/oauth/authorize", { headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ ...hiddenFields(String(page.body)), decision: "allow" }).toString() });
  assert.equal(consent.status, 302, JSON.stringify(consent.body));
  const code = new URL(String(consent.headers.location)).searchParams.get("code")!;
  const token = await h.call("POST", "/v1/oauth/token", { body: { grant_type: "authorization_code", app_key: appKey, code, redirect_uri: OAUTH_CALLBACK, code_verifier: verifier } });
  assert.equal(token.status, 200, JSON.stringify(token.body));
  return token.body.access_token;
}

/** Undoes keygate's HTML escaping (&#NN;). */
export const unescapeHtml = (s: string) => s.replace(/&#(\d+);/g, (_, c: string) => String.fromCharCode(Number(c)));

/** The hidden fields of a page's form (the consent page's, the sandbox placement page's). */
export function hiddenFields(html: string): Record<string, string> {
  return Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1]!, unescapeHtml(m[2]!)]));
}

/** The sandbox page that opens a place, as the signed-in member: the form's target URL and the fields it posts (what Bitrix24 posts to a placement handler). */
export async function openPlace(h: Harness, portalId: string, cookie: string, placement: string, query = ""): Promise<{ action: URL; fields: Record<string, string>; html: string }> {
  const r = await h.call("GET", `/sandbox/${portalId}/placements/${placement}/open${query}`, { headers: { cookie } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const html = String(r.body);
  return { action: new URL(unescapeHtml(/<form id="placement" method="post" action="([^"]+)"/.exec(html)![1]!)), fields: hiddenFields(html), html };
}

/** Posts the fields to a placement handler as a portal does (a form); as an HTML-accepting browser when html. */
export const postToHandler = (h: Harness, action: URL, fields: Record<string, string>, html = false): Promise<Reply> =>
  h.call("POST", `${action.pathname}${action.search}`, { headers: { "content-type": "application/x-www-form-urlencoded", ...(html ? { accept: "text/html,application/xhtml+xml" } : {}) }, body: new URLSearchParams(fields).toString() });
