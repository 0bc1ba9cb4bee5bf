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
