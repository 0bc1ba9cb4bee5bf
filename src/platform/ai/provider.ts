import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { Agent, request } from "undici";

/** The OpenAI-compatible provider the operator connects (`serve --ai-base-url`, `--ai-api-key`, `--ai-default-model`). */
export interface AiOptions {
  /** Where its OpenAI API lives, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1: /chat/completions and /models are under it. */
  baseUrl: string;
  /** Sent as Authorization: Bearer; none for a local server that wants none. */
  apiKey?: string;
  /** The model of a request that names none (or "auto"). */
  defaultModel?: string;
  /** How long the provider may take to start its answer, and then between two pieces of it (default 300 s: a long completion that is not streamed arrives whole). */
  timeoutMs?: number;
}

export const AI_TIMEOUT_MS = 300_000;

/** The provider did not answer: unreachable (502) or too slow (504). */
export class ProviderError extends Error {
  readonly code: "UPSTREAM_UNAVAILABLE" | "UPSTREAM_TIMEOUT";
  constructor(code: "UPSTREAM_UNAVAILABLE" | "UPSTREAM_TIMEOUT", message: string) {
    super(message);
    this.code = code;
  }
}

const TIMEOUTS = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ETIMEDOUT"]);

export interface ProviderAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

/**
 * The provider's HTTP client: one keep-alive pool. The operator chose the address, so the
 * outbound rule for portals' upstreams (docs/upstreams.md) does not apply: a model server on
 * localhost is a normal setup. The client's own headers are never sent on: its keygate key stays here.
 */
export class AiProvider {
  readonly #base: string;
  readonly #apiKey: string | undefined;
  readonly #agent: Agent;
  readonly timeoutMs: number;

  constructor(options: AiOptions) {
    this.#base = options.baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.timeoutMs = options.timeoutMs ?? AI_TIMEOUT_MS;
    this.#agent = new Agent({ headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs, connectTimeout: Math.min(this.timeoutMs, 10_000) });
  }

  async send(method: "GET" | "POST", path: string, body?: string): Promise<ProviderAnswer> {
    const headers: Record<string, string> = { accept: "application/json, text/event-stream" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    try {
      const answer = await request(`${this.#base}${path}`, { method, headers, body, dispatcher: this.#agent });
      return { status: answer.statusCode, headers: answer.headers as IncomingHttpHeaders, body: answer.body };
    } catch (e) {
      const code = (e as { code?: string }).code ?? "";
      const timeout = TIMEOUTS.has(code);
      throw new ProviderError(timeout ? "UPSTREAM_TIMEOUT" : "UPSTREAM_UNAVAILABLE", `The AI provider ${timeout ? "did not answer in time" : "could not be reached"} (${code || (e as Error).message}).`);
    }
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
