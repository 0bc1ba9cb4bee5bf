/**
 * Whether an error says the store could not be reached (as opposed to refusing a query): the
 * database refused or dropped the connection, did not answer in time, or is shutting down. The
 * gateway answers those with 503 STORE_UNAVAILABLE — a condition to retry on, or on another node —
 * rather than 500.
 */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
/**
 * PostgreSQL's connection-exception class (08…), the server going down (57P01–57P03), and a
 * statement cancelled by statement_timeout (57014: keygate cancels nothing else).
 */
const POSTGRES_CODES = /^(08[0-9A-Z]{3}|57P0[123]|57014)$/;
/** node-postgres's own words for a connection that ended, never came, or a query that got no answer in time (it gives them no code). */
const POOL_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout)/;

/** node-postgres gave up waiting for a query's answer (query_timeout): the connection is in an unknown state. */
export function isQueryTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === "Query read timeout";
}

export function isStoreUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && (NETWORK_CODES.has(code) || POSTGRES_CODES.test(code))) return true;
  return POOL_MESSAGES.test(error.message);
}
