/**
 * The error catalog: every code keygate answers with, its HTTP status and a message a
 * person can act on. Profiles name codes from here (or declare their own in `errorCodes`).
 */
export interface ErrorDef {
  status: number;
  message: string;
}

export const ERRORS = {
  SCOPE_DENIED: { status: 403, message: "The key lacks a scope this endpoint requires." },
  INSUFFICIENT_SCOPE: { status: 403, message: "The key lacks a scope this endpoint requires." },
  BITRIX_ACCESS_DENIED: {
    status: 403,
    message: "The key was issued without this Bitrix24 scope. Scopes added after issue take effect only when the key is reissued.",
  },
  MANAGEMENT_SCOPE_REQUIRED: { status: 403, message: "The management key lacks the scope this endpoint requires." },
  MANAGEMENT_KEY_NO_ENTITY_ACCESS: { status: 403, message: "Management keys cannot call this endpoint: use an API key (vibe_api_) or an authorization key (vibe_app_)." },
  MANAGEMENT_KEY_REQUIRED: { status: 403, message: "This endpoint needs a management key (vibe_live_)." },
  KEY_TYPE_NOT_ALLOWED: { status: 403, message: "Keys of this type cannot call this endpoint." },
} as const satisfies Record<string, ErrorDef>;

export type ErrorCode = keyof typeof ERRORS;
