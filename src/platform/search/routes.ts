import { Type as T } from "@sinclair/typebox";
import { BODY_CODES } from "../../gateway/envelope.ts";
import type { App, GatewayContext } from "../../gateway/server.ts";
import type { Sections } from "../sections.ts";
import { type SearchOptions, SearchProviderError, searchAdapter } from "./adapter.ts";

export const DEFAULT_SEARCH_LIMIT = 10;
export const MAX_SEARCH_LIMIT = 50;

const Result = T.Object({ title: T.String(), url: T.String(), snippet: T.String() });

/** `vibe:search` (docs/sections.md): POST /v1/search {query, limit?} through the operator's search engine, results as {title, url, snippet}. */
export function searchRoutes(app: App, ctx: GatewayContext, sections: Sections, options: SearchOptions | undefined): void {
  const adapter = options && searchAdapter(options);
  app.post(
    "/v1/search",
    {
      onRequest: sections.guard("search"),
      schema: {
        operationId: "search",
        tags: ["platform"],
        summary: "Web search through the operator's search engine: results as {title, url, snippet}, best first",
        body: T.Object(
          {
            query: T.String({ minLength: 1, maxLength: 2000, pattern: "\\S" }),
            limit: T.Optional(T.Integer({ minimum: 1, maximum: MAX_SEARCH_LIMIT, description: `Results at most (default ${DEFAULT_SEARCH_LIMIT})` })),
          },
          { additionalProperties: false },
        ),
        response: ctx.responses({
          data: T.Object({ query: T.String(), engine: T.String(), results: T.Array(Result) }),
          meta: T.Object({ count: T.Integer() }),
          codes: ["SECTION_NOT_CONFIGURED", "UPSTREAM_UNAVAILABLE", "UPSTREAM_TIMEOUT", ...BODY_CODES],
        }),
      },
    },
    async (request, reply) => {
      const query = request.body.query.trim();
      try {
        const results = await adapter!.search(query, request.body.limit ?? DEFAULT_SEARCH_LIMIT);
        return ctx.envelope.ok({ query, engine: adapter!.engine, results }, { count: results.length });
      } catch (e) {
        if (!(e instanceof SearchProviderError)) throw e;
        return ctx.send(reply, e.code, { message: e.message, hint: e.hint ?? "Retry with an increasing pause; if it persists, the operator's search engine is down." });
      }
    },
  );
}
