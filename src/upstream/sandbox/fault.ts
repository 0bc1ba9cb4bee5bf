/**
 * The sandbox's refusals, as Bitrix24 sends them: {error, error_description} (plus `argument`
 * for ERROR_ARGUMENT) with Bitrix24's HTTP status. Codes and texts are the documented ones
 * (apidocs.bitrix24.com: "Error Codes" and each method's page) where the docs give one.
 */
export class BitrixFault extends Error {
  readonly status: number;
  readonly error: string;
  readonly description: string;
  readonly argument: string | undefined;
  constructor(status: number, error: string, description: string, argument?: string) {
    super(`${error}: ${description}`);
    this.name = "BitrixFault";
    this.status = status;
    this.error = error;
    this.description = description;
    this.argument = argument;
  }

  /** The answer's body. */
  body(): Record<string, string> {
    const body: Record<string, string> = { error: this.error, error_description: this.description };
    if (this.argument !== undefined) body["argument"] = this.argument;
    return body;
  }
}

/** No webhook with this portal, user id and token. */
export const invalidCredentials = () => new BitrixFault(401, "INVALID_CREDENTIALS", "Invalid request credentials");
/** The method needs a scope the webhook was not given. */
export const insufficientScope = () => new BitrixFault(401, "insufficient_scope", "The request requires higher privileges than provided by the webhook token");
export const methodNotFound = () => new BitrixFault(404, "ERROR_METHOD_NOT_FOUND", "Method not found!");
/** The portal's request limit (leaky bucket) is spent. */
export const queryLimitExceeded = () => new BitrixFault(503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
export const internalError = () => new BitrixFault(500, "INTERNAL_SERVER_ERROR", "Internal server error");
/** A required parameter is missing (the engine controllers' answer: tasks.task.*, crm.item.*). */
export const missingParameter = (name: string) => new BitrixFault(400, "100", `Could not find value for parameter {${name}}`);
/** A missing or wrong argument, named in `argument` (Main's ArgumentException: user.add, placement.bind, …). */
export const argumentError = (argument: string, description = `Argument '${argument}' is null or empty`, status = 400) =>
  new BitrixFault(status, "ERROR_ARGUMENT", description, argument);
