/**
 * keygate's typed client (`import { keygateClient } from "keygate/client"`): openapi-fetch over
 * types generated from keygate's OpenAPI document (schema.d.ts; `npm run client:generate`), for
 * the management API, verify mode and the VibeCode entities. Paths, parameters, bodies and
 * answers are checked by TypeScript:
 *
 *     const kg = keygateClient({ baseUrl: "http://127.0.0.1:8080", key: "vibe_live_…" });
 *     const key = unwrap(await kg.POST("/v1/keys", { body: { portalId, name: "CRM sync", scopes: ["crm"] } }));
 *     const deals = unwrap(await keygateClient({ baseUrl, key: key.rawKey }).GET("/v1/deals", { params: { query: { limit: "5" } } }));
 */
import createClient, { type Client } from "openapi-fetch";
import type { components, operations, paths } from "./schema.d.ts";

export type { components, operations, paths };

export interface KeygateClientOptions {
  /** keygate's base URL, without /v1 (http://127.0.0.1:8080). */
  baseUrl: string;
  /** The key every request carries. */
  key: string;
  /** Send the key as Authorization: Bearer instead of X-Api-Key (API and management keys). */
  bearer?: boolean;
  /** Another fetch (tests, proxies); default: the global one. */
  fetch?: typeof fetch;
}

export type KeygateClient = Client<paths>;

/** A client of one keygate, authenticated with one key. */
export function keygateClient(options: KeygateClientOptions): KeygateClient {
  const headers: Record<string, string> = options.bearer ? { authorization: `Bearer ${options.key}` } : { "x-api-key": options.key };
  return createClient<paths>({ baseUrl: options.baseUrl.replace(/\/$/, ""), headers, ...(options.fetch ? { fetch: options.fetch } : {}) });
}

/** The refusal in either envelope (docs/api.md, "Errors"): VibeCode's {success: false, error: {code, message, param}}, or the flat {error: message, code, param}. */
function refusalOf(body: unknown): { code?: string; message?: string; param?: string } {
  const b = body as { error?: unknown; code?: string; param?: string } | undefined;
  if (b !== undefined && b !== null && typeof b.error === "object" && b.error !== null) return b.error as { code?: string; message?: string; param?: string };
  return { code: b?.code, message: typeof b?.error === "string" ? b.error : undefined, param: b?.param };
}

/** A refusal of keygate's, with its code and the field at fault (docs/api.md, "Errors"), under any profile's envelope. */
export class KeygateClientError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | undefined;
  readonly body: unknown;
  constructor(status: number, body: unknown) {
    const error = refusalOf(body);
    super(error.message ?? `keygate answered ${status}`);
    this.name = "KeygateClientError";
    this.status = status;
    this.code = error.code ?? "UNKNOWN";
    this.param = error.param;
    this.body = body;
  }
}

/** The `data` of a successful answer; a refusal is thrown as a KeygateClientError. */
export function unwrap<D extends { data: unknown }>(answer: { data?: D; error?: unknown; response: Response }): D["data"] {
  if (answer.data === undefined) throw new KeygateClientError(answer.response.status, answer.error);
  return answer.data.data;
}
