/** Rows of migration 008 (OAuth grants and app sessions) as both dialects read and write them. */
import type { AppSession, OAuthGrant } from "./store.ts";

export const GRANT_COLUMNS = [
  "id",
  "code_digest",
  "key_id",
  "user_id",
  "portal_id",
  "bitrix_user_id",
  "redirect_uri",
  "state_digest",
  "code_challenge",
  "created_at",
  "expires_at",
  "used_at",
] as const;
export const APP_SESSION_COLUMNS = ["id", "token_digest", "key_id", "user_id", "portal_id", "bitrix_user_id", "grant_id", "created_at", "expires_at"] as const;

type Row = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const textOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

export function grantValues(g: OAuthGrant): (string | number | null)[] {
  return [g.id, g.codeDigest, g.keyId, g.userId, g.portalId, g.bitrixUserId, g.redirectUri, g.stateDigest, g.codeChallenge, g.createdAt, g.expiresAt, g.usedAt];
}

export function grantFromRow(r: Row): OAuthGrant {
  return {
    id: String(r["id"]),
    codeDigest: String(r["code_digest"]),
    keyId: String(r["key_id"]),
    userId: String(r["user_id"]),
    portalId: String(r["portal_id"]),
    bitrixUserId: num(r["bitrix_user_id"]),
    redirectUri: textOrNull(r["redirect_uri"]),
    stateDigest: String(r["state_digest"]),
    codeChallenge: textOrNull(r["code_challenge"]),
    createdAt: num(r["created_at"]),
    expiresAt: num(r["expires_at"]),
    usedAt: numOrNull(r["used_at"]),
  };
}

export function appSessionValues(s: AppSession): (string | number)[] {
  return [s.id, s.tokenDigest, s.keyId, s.userId, s.portalId, s.bitrixUserId, s.grantId, s.createdAt, s.expiresAt];
}

export function appSessionFromRow(r: Row): AppSession {
  return {
    id: String(r["id"]),
    tokenDigest: String(r["token_digest"]),
    keyId: String(r["key_id"]),
    userId: String(r["user_id"]),
    portalId: String(r["portal_id"]),
    bitrixUserId: num(r["bitrix_user_id"]),
    grantId: String(r["grant_id"]),
    createdAt: num(r["created_at"]),
    expiresAt: num(r["expires_at"]),
  };
}
