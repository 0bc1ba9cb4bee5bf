/**
 * What a Bitrix24 refusal or failure means to keygate. Bitrix24 answers an error as
 * {error, error_description} (sometimes with `argument`), with an HTTP status that depends on
 * the method (docs: apidocs.bitrix24.com, "Error Codes", and each method's page); a network
 * failure or a timeout gets no answer at all. UpstreamError carries one keygate code:
 *
 *   BITRIX_UNAVAILABLE   (502)  no answer, a timeout, 5xx, over the portal's limit (QUERY_LIMIT_EXCEEDED …)
 *   BITRIX_ACCESS_DENIED (403)  the webhook or its user lacks a scope or right (insufficient_scope, ACCESS_DENIED …)
 *   ENTITY_NOT_FOUND     (404)  no such record (NOT_FOUND …)
 *   VALIDATION_ERROR     (400)  bad input (INVALID_ARG_VALUE, ERROR_ARGUMENT, CRM_FIELD_ERROR_* …), with the field when Bitrix24 names one
 *   BITRIX_ERROR         (422)  anything else
 *
 * details always keep Bitrix24's own error and error_description (when it answered), never the
 * webhook's token. When no REST answer came (no connection, a timeout, an answer that is not
 * Bitrix24's), details say nothing more than that: the why is in `noAnswer`, for keygate's log,
 * because telling a closed port from an open one would make keygate a port scanner.
 */

export type UpstreamErrorCode = "BITRIX_UNAVAILABLE" | "BITRIX_ACCESS_DENIED" | "ENTITY_NOT_FOUND" | "VALIDATION_ERROR" | "BITRIX_ERROR";

/** The HTTP status keygate answers with for each code (the catalog's: core/errors.ts and the VibeCode profile's errorCodes). */
export const UPSTREAM_STATUS: Record<UpstreamErrorCode, number> = {
  BITRIX_UNAVAILABLE: 502,
  BITRIX_ACCESS_DENIED: 403,
  ENTITY_NOT_FOUND: 404,
  VALIDATION_ERROR: 400,
  BITRIX_ERROR: 422,
};

const MESSAGES: Record<UpstreamErrorCode, string> = {
  BITRIX_UNAVAILABLE: "Bitrix24 did not answer, or the portal's request limit is spent.",
  BITRIX_ACCESS_DENIED: "Bitrix24 refused: the portal's webhook or its user lacks the scope or the rights for this.",
  ENTITY_NOT_FOUND: "No such record in the portal.",
  VALIDATION_ERROR: "Bitrix24 refused the input.",
  BITRIX_ERROR: "Bitrix24 refused the request.",
};

/** Bitrix24's error body. */
export interface Bitrix24ErrorBody {
  error: string;
  error_description?: string;
  /** Some methods (ERROR_ARGUMENT) name the parameter at fault here. */
  argument?: string;
}

export interface UpstreamErrorDetails {
  /** The Bitrix24 method called (batch for a whole batch). */
  method: string;
  /** Bitrix24's error code and text, when it answered with one. */
  error?: string;
  error_description?: string;
  /** Bitrix24's HTTP status, when it answered with an error. */
  httpStatus?: number;
  /**
   * For BITRIX_UNAVAILABLE, why (docs/limits.md): "no_answer" (no REST answer came: the same for
   * every cause, see NoAnswer), "query_limit_exceeded" (Bitrix24 refused with
   * QUERY_LIMIT_EXCEEDED), "overloaded" (its other limits: OVERLOAD_LIMIT, OPERATION_TIME_LIMIT),
   * "server_error" (its own failure). keygate's own portal budget refusing is "portal_budget"
   * (gateway/limits.ts), with Retry-After.
   */
  reason?: UnavailableReason;
}

export type UnavailableReason = "portal_budget" | "no_answer" | "query_limit_exceeded" | "overloaded" | "server_error";

/** Why no REST answer came: for keygate's log only. */
export interface NoAnswer {
  /** The webhook URL without its token. */
  url: string;
  reason: "unreachable" | "timeout" | "not_rest";
  /** The network error's code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, EOUTBOUNDREFUSED, …). */
  code?: string;
  /** The status of an answer that was not a REST answer. */
  httpStatus?: number;
}

/** A Bitrix24 call that failed, as a keygate error code; the gateway answers it with the profile's envelope. */
export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  /** The HTTP status keygate answers with. */
  readonly status: number;
  /** The request field at fault, when Bitrix24 names it (its own name or title for it, e.g. "Amount", "PLACEMENT"). */
  readonly param: string | undefined;
  readonly details: UpstreamErrorDetails;
  /** Set when no REST answer came (code BITRIX_UNAVAILABLE): why, for the log, never for the caller. */
  readonly noAnswer: NoAnswer | undefined;
  constructor(code: UpstreamErrorCode, details: UpstreamErrorDetails, options: { message?: string; param?: string; noAnswer?: NoAnswer } = {}) {
    super(options.message ?? MESSAGES[code]);
    this.name = "UpstreamError";
    this.code = code;
    this.status = UPSTREAM_STATUS[code];
    this.param = options.param;
    // No answer says only that: why is for the log.
    this.details = options.noAnswer ? { ...details, reason: "no_answer" } : details;
    this.noAnswer = options.noAnswer;
  }
}

/** Over the portal's limits, or the portal's own failure: try again later. */
const UNAVAILABLE = new Set(["QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"]);
/** The webhook (or application) and its user may not do this. */
const ACCESS = new Set([
  "insufficient_scope",
  "invalid_scope",
  "ACCESS_DENIED",
  "ACCESS_ERROR",
  "INVALID_CREDENTIALS",
  "NO_AUTH_FOUND",
  "expired_token",
  "invalid_token",
  "user_access_error",
  "WRONG_AUTH_TYPE",
  "allowed_only_intranet_user",
  "PORTAL_DELETED",
  "INVALID_REQUEST",
]);
const NOT_FOUND = new Set(["NOT_FOUND", "ERROR_NOT_FOUND", "ENTITY_NOT_FOUND", "ERROR_ENTITY_NOT_FOUND"]);
/** Bad input. Also: CRM_FIELD_ERROR_*, *_EMPTY (im: USER_ID_EMPTY, MESSAGE_EMPTY), and numeric codes (engine controllers: "100" missing parameter, "0" wrong id). */
const INVALID = new Set([
  "INVALID_ARG_VALUE",
  "ERROR_ARGUMENT",
  "ERROR_CORE",
  "INVALID_VALUE",
  "ERROR_VALIDATION",
  "ERROR_REQUIRED_PARAMETERS_MISSING",
  "ERROR_BATCH_LENGTH_EXCEEDED",
  "ATTACH_ERROR",
  "ATTACH_OVERSIZE",
  "KEYBOARD_ERROR",
  "KEYBOARD_OVERSIZE",
  "MENU_ERROR",
  "MENU_OVERSIZE",
  "PARAMS_ERROR",
]);
/** In generic codes (ERROR_CORE, numeric), these texts mean a refusal of rights: "access_denied", "Action on the task is not allowed", "No access to delete the task". */
const ACCESS_TEXT = /access[ _]denied|not allowed|no access|permission/i;

/** Bitrix24's error answer (or a batch command's entry in result_error) as an UpstreamError. */
export function upstreamErrorOf(method: string, body: Bitrix24ErrorBody, httpStatus?: number): UpstreamError {
  const error = String(body.error);
  const description = typeof body.error_description === "string" ? body.error_description : undefined;
  const details: UpstreamErrorDetails = { method, error, error_description: description ?? "" };
  if (httpStatus !== undefined) details.httpStatus = httpStatus;
  const text = description === undefined || description === "" ? undefined : plain(description);
  const message = (code: UpstreamErrorCode) => (text === undefined ? MESSAGES[code] : `${MESSAGES[code]} Bitrix24 says: ${text}`);
  const make = (code: UpstreamErrorCode, extra: Partial<UpstreamErrorDetails> = {}, param?: string) =>
    new UpstreamError(code, { ...details, ...extra }, { message: message(code), param });

  const generic = error === "ERROR_CORE" || /^\d+$/.test(error);
  if (UNAVAILABLE.has(error)) {
    const reason = error === "QUERY_LIMIT_EXCEEDED" ? "query_limit_exceeded" : error === "OVERLOAD_LIMIT" || error === "OPERATION_TIME_LIMIT" ? "overloaded" : "server_error";
    return make("BITRIX_UNAVAILABLE", { reason });
  }
  if (ACCESS.has(error) || (generic && description !== undefined && ACCESS_TEXT.test(description))) return make("BITRIX_ACCESS_DENIED");
  if (NOT_FOUND.has(error)) return make("ENTITY_NOT_FOUND");
  if (INVALID.has(error) || generic || error.startsWith("CRM_FIELD_ERROR") || /^[A-Z][A-Z0-9_]*_EMPTY$/.test(error)) {
    return make("VALIDATION_ERROR", {}, paramOf(error, body.argument, description));
  }
  if (httpStatus !== undefined && httpStatus >= 500) return make("BITRIX_UNAVAILABLE", { reason: "server_error" });
  if (httpStatus === 401 || httpStatus === 403) return make("BITRIX_ACCESS_DENIED");
  if (httpStatus === 404 && error !== "ERROR_METHOD_NOT_FOUND") return make("ENTITY_NOT_FOUND");
  return make("BITRIX_ERROR");
}

/** The parameter Bitrix24 names: `argument`, or in the text (field "Amount", Argument 'PLACEMENT', parameter {fields}, field 'stageId'), or the prefix of X_EMPTY. */
function paramOf(error: string, argument: unknown, description: string | undefined): string | undefined {
  if (typeof argument === "string" && argument !== "") return argument;
  if (description !== undefined) {
    const named =
      /\bfield ["'«]([^"'»]+)["'»]/i.exec(description) ??
      /\bargument ["']([^"']+)["']/i.exec(description) ??
      /\bparameter \{([^}]+)\}/i.exec(description) ??
      /\bfield ([A-Z][A-Z0-9_]+)\b/.exec(description);
    if (named) return named[1];
  }
  const empty = /^([A-Z][A-Z0-9_]*)_EMPTY$/.exec(error);
  return empty ? empty[1] : undefined;
}

/** Bitrix24's text without markup (task errors end in <br>). */
function plain(text: string): string {
  return text
    .replace(/<br\s*\/?>/gi, " ")
    .replace(/<[^>]*>/g, "")
    .trim();
}
