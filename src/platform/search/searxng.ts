import { SEARCH_TIMEOUT_MS, type SearchAdapter, SearchProviderError, type SearchOptions, type SearchResult } from "./adapter.ts";

/** Pages read at most for one query: SearXNG's page size depends on its engines (commonly 10 to 30 results). */
const MAX_PAGES = 5;

interface SearxngAnswer {
  results?: { url?: unknown; title?: unknown; content?: unknown }[];
}

const text = (v: unknown) => (typeof v === "string" ? v.trim() : "");

/**
 * SearXNG (https://docs.searxng.org/dev/search_api.html), self-hostable: GET /search?q=…&format=json.
 * Its settings.yml must list json under search.formats, or it answers 403. Results are read page
 * by page until `limit` are found or a page brings nothing new; only http(s) URLs are kept.
 */
export function searxng(options: SearchOptions): SearchAdapter {
  const base = options.url.replace(/\/+$/, "");
  const timeoutMs = options.timeoutMs ?? SEARCH_TIMEOUT_MS;

  const page = async (query: string, pageno: number): Promise<SearxngAnswer> => {
    const url = `${base}/search?${new URLSearchParams({ q: query, format: "json", pageno: String(pageno) })}`;
    let res: Response;
    try {
      res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      if ((e as Error).name === "TimeoutError") throw new SearchProviderError("UPSTREAM_TIMEOUT", `The search engine did not answer within ${timeoutMs} ms.`);
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new SearchProviderError("UPSTREAM_UNAVAILABLE", `The search engine could not be reached (${cause?.code ?? cause?.message ?? (e as Error).message}).`);
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new SearchProviderError(
        "UPSTREAM_UNAVAILABLE",
        `The search engine answered HTTP ${res.status}.`,
        res.status === 403 ? "SearXNG answers 403 when its JSON API is off: the operator adds json to search.formats in its settings.yml." : undefined,
      );
    }
    try {
      return (await res.json()) as SearxngAnswer;
    } catch {
      throw new SearchProviderError("UPSTREAM_UNAVAILABLE", "The search engine's answer is not JSON.");
    }
  };

  return {
    engine: "searxng",
    async search(query, limit) {
      const results: SearchResult[] = [];
      const seen = new Set<string>();
      for (let pageno = 1; pageno <= MAX_PAGES && results.length < limit; pageno++) {
        const answer = await page(query, pageno);
        const before = results.length;
        for (const r of Array.isArray(answer.results) ? answer.results : []) {
          const url = text(r?.url);
          if (!/^https?:\/\//i.test(url) || seen.has(url)) continue;
          seen.add(url);
          results.push({ title: text(r.title) || url, url, snippet: text(r.content) });
          if (results.length === limit) break;
        }
        if (results.length === before) break;
      }
      return results;
    },
  };
}
