import { type TSchema, type TUnsafe, Type } from "@sinclair/typebox";
import { ERRORS, type ErrorDef } from "../core/errors.ts";
import type { Profile } from "../core/profile/profile.ts";

/** An error as the client sees it, before the profile's envelope is put around it. */
export interface ErrorBody {
  code: string;
  message: string;
  hint?: string;
  param?: string;
  details?: Record<string, unknown>;
  retryAfter?: number;
}

export interface Envelope {
  ok(data: unknown, meta?: Record<string, unknown>): unknown;
  error(error: ErrorBody, requestId: string): unknown;
  /** The status and default texts of a code, from the profile's catalog. */
  def(code: string): ErrorDef;
}

/** The profile's response envelope (docs/api.md). */
export function envelopeFor(profile: Profile): Envelope {
  const def = (code: string): ErrorDef => profile.errorCodes[code] ?? ERRORS.INTERNAL_ERROR;
  if (profile.spec.envelope === "flat") {
    return {
      def,
      ok: (data, meta) => (meta ? { data, meta } : { data }),
      error: ({ code, message, ...rest }, requestId) => ({ error: message, code, request_id: requestId, ...rest }),
    };
  }
  return {
    def,
    ok: (data, meta) => (meta ? { success: true, data, meta } : { success: true, data }),
    error: (error) => ({ success: false, error }),
  };
}

/** The body of an error with a catalog code: its message and hint unless given. */
export function errorBody(envelope: Envelope, code: string, extra: Partial<ErrorBody> = {}): ErrorBody {
  const d = envelope.def(code);
  const body: ErrorBody = { code, message: extra.message ?? d.message };
  const hint = extra.hint ?? d.hint;
  if (hint !== undefined) body.hint = hint;
  if (extra.param !== undefined) body.param = extra.param;
  if (extra.details !== undefined) body.details = extra.details;
  if (extra.retryAfter !== undefined) body.retryAfter = extra.retryAfter;
  return body;
}

/** How a route answers, for its response schemas: the success status and data, and the codes it can refuse with beyond every route's. */
export interface Answers {
  status?: number;
  data: TSchema;
  meta?: TSchema;
  description?: string;
  /** Examples of the data (the envelope is put around them). */
  examples?: unknown[];
  codes?: string[];
}

/**
 * The codes any /v1 route can answer before its handler runs — credentials, the key's state and
 * scopes, limits, a malformed request — and on a failure of keygate's own. A code the profile does
 * not declare is left out.
 */
export const VERIFICATION_CODES = [
  "VALIDATION_ERROR",
  "AMBIGUOUS_CREDENTIALS",
  "MISSING_API_KEY",
  "INVALID_API_KEY",
  "KEY_INACTIVE",
  "KEY_EXPIRED",
  "TOKEN_MISSING",
  "INVALID_SESSION",
  "SESSION_REQUIRED",
  "CSRF_TOKEN_INVALID",
  "ORIGIN_NOT_ALLOWED",
  "IP_NOT_ALLOWED",
  "WRITE_BLOCKED_READONLY_KEY",
  "RATE_LIMITED",
  "INTERNAL_ERROR",
];

/** The codes of a route with a JSON body: the body's own refusals. */
export const BODY_CODES = ["INVALID_JSON", "UNSUPPORTED_MEDIA_TYPE", "PAYLOAD_TOO_LARGE"];

/**
 * The response schemas of a route in the profile's envelope (the OpenAPI document's responses, and
 * Fastify's serialisers): the success, and one schema per error status whose `code` lists the
 * codes answered with it. Their static type is unknown: the envelope is the profile's, chosen at
 * run time.
 */
export function responsesFor(profile: Profile) {
  const flat = profile.spec.envelope === "flat";
  const scopeCodes = [
    profile.spec.errors.pendingReissue,
    ...Object.values(profile.spec.errors.insufficientScope),
    ...Object.values(profile.spec.errors.keyTypeNotAllowed),
    ...profile.routes.flatMap((r) => r.access.map((a) => a.denied?.code)),
  ];
  const errorFields = {
    hint: Type.Optional(Type.String()),
    param: Type.Optional(Type.String({ description: "The request field at fault" })),
    details: Type.Optional(Type.Object({}, { additionalProperties: true })),
    retryAfter: Type.Optional(Type.Integer({ description: "Seconds to wait (with Retry-After)" })),
  };
  const errorSchema = (codes: string[]) => {
    const code = Type.Unsafe<string>({ type: "string", enum: codes });
    return flat
      ? Type.Object({ error: Type.String({ description: "The message" }), code, request_id: Type.String(), ...errorFields })
      : Type.Object({ success: Type.Literal(false), error: Type.Object({ code, message: Type.String(), ...errorFields }) });
  };
  return (answers: Answers): Record<number, TUnsafe<unknown>> => {
    const { status = 200, data, meta, description, examples } = answers;
    const ok = Type.Object(flat ? { data, ...(meta ? { meta } : {}) } : { success: Type.Literal(true), data, ...(meta ? { meta } : {}) }, {
      description: description ?? "Success",
      ...(examples ? { examples: examples.map((e) => (flat ? { data: e } : { success: true, data: e })) } : {}),
    });
    const byStatus = new Map<number, Set<string>>();
    for (const code of [...VERIFICATION_CODES, ...scopeCodes, profile.spec.limits?.portalLimitCode, ...(answers.codes ?? [])]) {
      if (code === undefined || !(code in profile.errorCodes)) continue;
      const s = profile.errorCodes[code]!.status;
      byStatus.set(s, (byStatus.get(s) ?? new Set()).add(code));
    }
    const out: Record<number, TUnsafe<unknown>> = { [status]: Type.Unsafe<unknown>(ok) };
    for (const [s, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
      out[s] = Type.Unsafe<unknown>({ ...errorSchema([...codes].sort()), description: [...codes].sort().join(", ") });
    }
    return out;
  };
}
