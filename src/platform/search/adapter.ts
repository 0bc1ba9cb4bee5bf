/**
 * `vibe:search`'s providers (docs/sections.md, "Search adapters"). An adapter turns a query into
 * results normalised to {title, url, snippet}; keygate does the rest (scopes, limits, the
 * envelope). To add an engine: write an adapter (searxng.ts is the model) and choose it in
 * `searchAdapter`.
 */
import { searxng } from "./searxng.ts";

/** One result, the same whatever the engine. */
export interface SearchResult {
  title: string;
  url: string;
  snippet: string;
}

export interface SearchAdapter {
  /** The engine's name, shown in answers. */
  readonly engine: string;
  /**
   * Up to `limit` results for `query`, best first. Throws SearchProviderError when the engine
   * cannot be reached (UPSTREAM_UNAVAILABLE) or is too slow (UPSTREAM_TIMEOUT).
   */
  search(query: string, limit: number): Promise<SearchResult[]>;
}

/** The search engine the operator connects (`serve --search-url`). */
export interface SearchOptions {
  /** The engine's base URL, e.g. http://127.0.0.1:8888 for SearXNG. */
  url: string;
  /** How long one request to the engine may take (default 10 s). */
  timeoutMs?: number;
}

export const SEARCH_TIMEOUT_MS = 10_000;

export class SearchProviderError extends Error {
  readonly code: "UPSTREAM_UNAVAILABLE" | "UPSTREAM_TIMEOUT";
  readonly hint: string | undefined;
  constructor(code: "UPSTREAM_UNAVAILABLE" | "UPSTREAM_TIMEOUT", message: string, hint?: string) {
    super(message);
    this.code = code;
    this.hint = hint;
  }
}

/** The adapter for the configured engine: SearXNG's JSON API, the one shipped. */
export function searchAdapter(options: SearchOptions): SearchAdapter {
  return searxng(options);
}
