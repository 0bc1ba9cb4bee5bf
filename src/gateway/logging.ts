import type { FastifyServerOptions } from "fastify";

/** The log levels `serve --log-level` takes (pino's). */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const CENSOR = "[redacted]";

/**
 * Fields that carry a credential at the top of a log line, one level down, or in a `headers`
 * object at either: the key, bearer tokens, cookies, session and
 * webhook tokens. pino removes them as it writes (fast-redact), at no cost to lines without them.
 */
const SECRET_FIELDS = ["x-api-key", "authorization", "cookie", "set-cookie", "sessionToken", "session", "token", "webhookUrl", "password", "rawKey", "apiKey"];
const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => {
  const field = `[${JSON.stringify(f)}]`;
  return [field, `*${field}`, `headers${field}`, `*.headers${field}`];
});

/**
 * Strings shaped like a key of any profile (`<prefix>_` + 38 base62 characters: src/core/keys/format.ts)
 * and Bitrix24 webhook tokens (/rest/<user>/<token>/) are masked wherever they appear: in a
 * message, an error, any field.
 */
const KEY_SHAPED = /\b([a-z][a-z0-9]*_(?:[a-z0-9]+_)*)[0-9A-Za-z]{38}\b/g;
const WEBHOOK_TOKEN = /(\/rest\/\d+\/)[^/\s?#"']+/g;

/** The text with key-shaped strings and webhook tokens masked (the key's type prefix stays, to tell what leaked). */
export function redactSecrets(text: string): string {
  return text.replace(KEY_SHAPED, `$1${CENSOR}`).replace(WEBHOOK_TOKEN, `$1${CENSOR}`);
}

/** A value with every string of its plain objects and arrays passed through redactSecrets; errors become plain objects (type, message, stack, code). */
function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return redactSecrets(value);
  if (value === null || typeof value !== "object" || depth > 6) return value;
  if (value instanceof Error) {
    const e = value as Error & { code?: unknown };
    return { type: e.name, message: redactSecrets(e.message), stack: e.stack === undefined ? undefined : redactSecrets(e.stack), ...(e.code !== undefined && { code: e.code }), ...(e.cause !== undefined && { cause: scrub(e.cause, depth + 1) }) };
  }
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  // Plain objects only: requests, sockets and the like are pino's serializers' business.
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrub(v, depth + 1);
  return out;
}

/**
 * keygate's logger (pino through Fastify): JSON lines at `level`, credentials redacted by field
 * and by shape (docs/operations.md, "Logs"). Lines are rare (per-request logging is off), so
 * scrubbing each costs the hot path nothing.
 */
export function loggerOptions(level: LogLevel = "info", stream?: NodeJS.WritableStream): NonNullable<Exclude<FastifyServerOptions["logger"], boolean>> {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => scrub(a)) as Parameters<typeof method>);
      },
    },
    ...(stream !== undefined && { stream }),
  } as NonNullable<Exclude<FastifyServerOptions["logger"], boolean>>;
}
