import { randomUUID } from "node:crypto";
import { KeygateError } from "../core/errors.ts";
import { auditEvent } from "../manage/audit.ts";
import type { Actor, Keygate } from "../manage/context.ts";
import { portalForActor } from "../manage/portals.ts";
import { emailOrFail } from "../manage/users.ts";
import { type AuditEvent, type MemberRole, type Membership, type OneTimeLink, type Redemption, StoreConflictError, type User } from "../store/store.ts";
import { checkPassword, hashPassword } from "./passwords.ts";
import { newToken, tokenDigest } from "./tokens.ts";

/**
 * One-time links (docs/accounts.md): a password link lets a user set their password (the owner
 * after keygate init, a user after keygate users create or reset-password); an invitation lets
 * whoever has its email join a portal. Each is a random token whose SHA-256 alone is stored,
 * used once, and ends: password links after 24 hours, invitations after 7 days.
 */
export const PASSWORD_LINK_MS = 24 * 3_600_000;
export const INVITATION_MS = 7 * 86_400_000;

/** The dashboard page that takes a link's token. */
export function linkUrl(baseUrl: string, token: string): string {
  return `${baseUrl.replace(/\/$/, "")}/set-password?token=${token}`;
}

export interface IssuedLink {
  link: OneTimeLink;
  /** Shown once (in the link's URL); never stored. */
  token: string;
}

/** A new password link for the user; the user's earlier ones stop working. */
export async function createPasswordLink(kg: Keygate, actor: Actor | null, user: User): Promise<IssuedLink> {
  const token = newToken();
  const now = kg.now();
  const link: OneTimeLink = { id: randomUUID(), purpose: "password", tokenDigest: tokenDigest(token), email: user.email, userId: user.id, portalId: null, role: null, createdBy: actor?.user.id ?? null, createdAt: now, expiresAt: now + PASSWORD_LINK_MS };
  await kg.store.createLink(link, { audit: [auditEvent(kg, actor, "user.password_link", { type: "user", id: user.id, portalId: null }, null, { expiresAt: link.expiresAt })] });
  return { link, token };
}

/** Sets a user's password directly (the operator's CLI): every session of theirs ends. */
export async function setPassword(kg: Keygate, actor: Actor | null, user: User, password: string): Promise<void> {
  checkPassword(password);
  const hash = await hashPassword(password);
  await kg.store.setPasswordHash(user.id, hash, { audit: [auditEvent(kg, actor, "user.password_set", { type: "user", id: user.id, portalId: null }, null, null)] });
}

/** The link a token names, if it is still good. */
async function liveLink(kg: Keygate, token: string): Promise<OneTimeLink> {
  const link = typeof token === "string" && token.length <= 100 ? await kg.store.getLinkByDigest(tokenDigest(token)) : undefined;
  if (!link || kg.now() >= link.expiresAt) throw new KeygateError("LINK_INVALID", { param: "token" });
  return link;
}

async function redeem(kg: Keygate, link: OneTimeLink, redemption: Redemption, audit: AuditEvent[]): Promise<void> {
  let used: boolean;
  try {
    used = await kg.store.redeemLink(link.id, redemption, { audit });
  } catch (e) {
    // The invitee's email was taken by someone who joined meanwhile: they sign in and accept.
    if (e instanceof StoreConflictError) throw new KeygateError("INVITATION_NEEDS_SIGN_IN");
    throw e;
  }
  if (!used) throw new KeygateError("LINK_INVALID", { param: "token" });
}

/** The membership an invitation gives, unless the user is a member already (their role stays). */
async function membershipFor(kg: Keygate, link: OneTimeLink, userId: string): Promise<Membership | undefined> {
  if (await kg.store.getMember(link.portalId!, userId)) return undefined;
  return { portalId: link.portalId!, userId, role: link.role!, createdAt: kg.now() };
}

/**
 * Uses a link to set a password (POST /v1/password): the link's user's, or for an invitation the
 * invitee's, who is created (or, having no password yet, completed) and joins the portal. An
 * invitation for an account that has a password is not a way to change it: that person signs in
 * and accepts it (INVITATION_NEEDS_SIGN_IN). Returns the user, whose other sessions have ended.
 */
export async function setPasswordWithLink(kg: Keygate, token: string, password: string, ip: string | null): Promise<User> {
  const link = await liveLink(kg, token);
  checkPassword(password);
  if (link.purpose === "password") {
    const user = link.userId === null ? undefined : await kg.store.getUser(link.userId);
    if (!user) throw new KeygateError("LINK_INVALID", { param: "token" });
    const hash = await hashPassword(password);
    await redeem(kg, link, { password: { userId: user.id, hash } }, [auditEvent(kg, { user, keyId: null, ip }, "user.password_set", { type: "user", id: user.id, portalId: null }, null, null)]);
    return user;
  }
  const existing = await kg.store.getUserByEmail(link.email);
  if (existing && (await kg.store.getPasswordHash(existing.id)) !== null) throw new KeygateError("INVITATION_NEEDS_SIGN_IN");
  const user: User = existing ?? { id: randomUUID(), email: link.email, name: link.email.split("@")[0]!, role: "user", createdAt: kg.now() };
  const actor: Actor = { user, keyId: null, ip };
  const member = await membershipFor(kg, link, user.id);
  const audit = [auditEvent(kg, actor, "user.password_set", { type: "user", id: user.id, portalId: null }, null, null)];
  if (!existing) audit.unshift(auditEvent(kg, actor, "user.create", { type: "user", id: user.id, portalId: null }, null, user));
  if (member) audit.push(auditEvent(kg, actor, "member.add", { type: "member", id: user.id, portalId: member.portalId }, null, member));
  const hash = await hashPassword(password);
  await redeem(kg, link, { newUser: existing ? undefined : user, password: { userId: user.id, hash }, member }, audit);
  return user;
}

/** A signed-in user (or their management key) accepts an invitation made for their email. */
export async function acceptInvitation(kg: Keygate, actor: Actor, token: string): Promise<{ portalId: string; role: MemberRole }> {
  const link = await liveLink(kg, token);
  if (link.purpose !== "invitation") throw new KeygateError("LINK_INVALID", { param: "token", message: "This is not an invitation." });
  if (link.email !== actor.user.email) throw new KeygateError("INVITATION_FOR_ANOTHER_USER", { param: "token" });
  const member = await membershipFor(kg, link, actor.user.id);
  await redeem(kg, link, { member }, member ? [auditEvent(kg, actor, "member.add", { type: "member", id: actor.user.id, portalId: member.portalId }, null, member)] : []);
  const role = member?.role ?? (await kg.store.getMember(link.portalId!, actor.user.id))!.role;
  return { portalId: link.portalId!, role };
}

/** What an invitation shows: never its token (the URL is shown once, to the admin who made it). */
export interface InvitationView {
  id: string;
  email: string;
  role: MemberRole;
  createdAt: number;
  expiresAt: number;
}

const view = (link: OneTimeLink): InvitationView => ({ id: link.id, email: link.email, role: link.role!, createdAt: link.createdAt, expiresAt: link.expiresAt });

/** A portal admin invites someone by email; the link (in the returned token) is shown to the admin once. */
export async function invite(kg: Keygate, actor: Actor, portalId: string, input: { email: string; role?: MemberRole }): Promise<{ invitation: InvitationView; token: string }> {
  await portalForActor(kg, actor, portalId, "ADMIN");
  const email = emailOrFail(input.email);
  const existing = await kg.store.getUserByEmail(email);
  if (existing && (await kg.store.getMember(portalId, existing.id))) throw new KeygateError("ALREADY_PORTAL_MEMBER", { param: "email" });
  const token = newToken();
  const now = kg.now();
  const link: OneTimeLink = { id: randomUUID(), purpose: "invitation", tokenDigest: tokenDigest(token), email, userId: null, portalId, role: input.role ?? "MEMBER", createdBy: actor.user.id, createdAt: now, expiresAt: now + INVITATION_MS };
  const invitation = view(link);
  await kg.store.createLink(link, { audit: [auditEvent(kg, actor, "invitation.create", { type: "invitation", id: link.id, portalId }, null, invitation)] });
  return { invitation, token };
}

/** The portal's invitations not used yet and not expired, oldest first (admins). */
export async function listInvitations(kg: Keygate, actor: Actor, portalId: string): Promise<InvitationView[]> {
  await portalForActor(kg, actor, portalId, "ADMIN");
  const now = kg.now();
  return (await kg.store.listInvitations(portalId)).filter((l) => now < l.expiresAt).map(view);
}

export async function withdrawInvitation(kg: Keygate, actor: Actor, portalId: string, id: string): Promise<void> {
  await portalForActor(kg, actor, portalId, "ADMIN");
  const link = (await kg.store.listInvitations(portalId)).find((l) => l.id === id);
  const withdrawn = link !== undefined && (await kg.store.deleteLink(link.id, { audit: [auditEvent(kg, actor, "invitation.withdraw", { type: "invitation", id: link.id, portalId }, view(link), null)] }));
  if (!withdrawn) throw new KeygateError("INVITATION_NOT_FOUND", { param: "id" });
}
