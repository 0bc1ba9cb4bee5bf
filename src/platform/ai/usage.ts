import { StringDecoder } from "node:string_decoder";

/** Tokens a provider reports in an answer's `usage` (OpenAI's names). */
export interface Tokens {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** The most of a JSON answer read for its `usage`: a larger answer passes on, uncounted. */
const MAX_JSON = 16 * 1024 * 1024;

const count = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);

function tokensOf(value: unknown): Tokens | undefined {
  const usage = (value as { usage?: unknown } | null)?.usage;
  if (usage === null || typeof usage !== "object") return undefined;
  const u = usage as Record<string, unknown>;
  const promptTokens = count(u.prompt_tokens);
  const completionTokens = count(u.completion_tokens);
  return { promptTokens, completionTokens, totalTokens: count(u.total_tokens) || promptTokens + completionTokens };
}

/**
 * Reads `usage` from a provider's answer as its bytes pass to the client, changing none of them:
 * a JSON body is parsed at its end; a server-sent event stream is read line by line, and the last
 * `data:` event carrying `usage` counts (OpenAI sends it in the final chunk when the request asks
 * `stream_options.include_usage`; some providers always do).
 */
export class UsageReader {
  readonly #stream: boolean;
  readonly #decoder = new StringDecoder("utf8");
  #text = "";
  #size = 0;
  #found: Tokens | undefined;

  constructor(contentType: string | undefined) {
    this.#stream = contentType?.startsWith("text/event-stream") ?? false;
  }

  push(chunk: Buffer): void {
    this.#size += chunk.length;
    if (!this.#stream) {
      if (this.#size <= MAX_JSON) this.#text += this.#decoder.write(chunk);
      return;
    }
    this.#text += this.#decoder.write(chunk);
    let end: number;
    while ((end = this.#text.indexOf("\n")) >= 0) {
      this.#line(this.#text.slice(0, end));
      this.#text = this.#text.slice(end + 1);
    }
  }

  /** The tokens the answer reported, once it has all passed; undefined when it reported none. */
  end(): Tokens | undefined {
    this.#text += this.#decoder.end();
    if (this.#stream) {
      this.#line(this.#text);
      return this.#found;
    }
    if (this.#size > MAX_JSON) return undefined;
    try {
      return tokensOf(JSON.parse(this.#text));
    } catch {
      return undefined;
    }
  }

  #line(line: string): void {
    if (!line.startsWith("data:") || !line.includes('"usage"')) return;
    try {
      this.#found = tokensOf(JSON.parse(line.slice(5))) ?? this.#found;
    } catch {
      // Not JSON (e.g. [DONE]): nothing to count.
    }
  }
}

/** A key's AI usage on this node since it started. */
export interface KeyTokens extends Tokens {
  requests: number;
}

/**
 * Tokens per key, counted in memory (the store has no place for them without a migration; the
 * request log keeps every request itself). Bounded: past `maxKeys` keys the one counted least
 * recently leaves. Totals over every key feed /metrics.
 */
export class AiUsage {
  readonly #keys = new Map<string, KeyTokens>();
  readonly #maxKeys: number;
  readonly totals: KeyTokens = { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 };

  constructor(maxKeys = 100_000) {
    this.#maxKeys = maxKeys;
  }

  /** An answered request of the key, with the tokens its answer reported (if any). */
  add(keyId: string, tokens: Tokens | undefined): void {
    const k = this.#keys.get(keyId) ?? { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 };
    this.#keys.delete(keyId);
    if (this.#keys.size >= this.#maxKeys) this.#keys.delete(this.#keys.keys().next().value!);
    this.#keys.set(keyId, k);
    for (const t of [k, this.totals]) {
      t.requests += 1;
      t.promptTokens += tokens?.promptTokens ?? 0;
      t.completionTokens += tokens?.completionTokens ?? 0;
      t.totalTokens += tokens?.totalTokens ?? 0;
    }
  }

  of(keyId: string): KeyTokens {
    return { ...(this.#keys.get(keyId) ?? { requests: 0, promptTokens: 0, completionTokens: 0, totalTokens: 0 }) };
  }
}
