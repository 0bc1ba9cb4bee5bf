/**
 * The platform sections' routes (issue 17 §2; docs/sections.md), one plugin: each section
 * registers its routes when the profile's route table has them, whether or not its provider is
 * connected — a section not connected answers 503 SECTION_NOT_CONFIGURED from them.
 */
import type { Registry } from "prom-client";
import { Counter } from "prom-client";
import type { App, GatewayContext } from "../gateway/server.ts";
import { aiRoutes } from "./ai/routes.ts";
import type { AiUsage } from "./ai/usage.ts";
import { searchRoutes } from "./search/routes.ts";
import type { PlatformOptions, Sections } from "./sections.ts";

export { type PlatformOptions, SECTIONS, type SectionDef, type SectionState, Sections } from "./sections.ts";
export { AiUsage } from "./ai/usage.ts";

export function platformRoutes(app: App, ctx: GatewayContext, sections: Sections, options: PlatformOptions, aiUsage: AiUsage, registry: Registry | undefined): void {
  if (sections.has("ai")) aiRoutes(app, ctx, sections, options.ai, aiUsage);
  if (sections.has("search")) searchRoutes(app, ctx, sections, options.search);
  if (registry !== undefined && sections.available("ai")) aiMetrics(registry, aiUsage);
}

/** AI tokens over every key (per key they are in GET /v1/keys/:id/usage): labels never name a key. */
function aiMetrics(registry: Registry, usage: AiUsage): void {
  new Counter({
    name: "keygate_ai_tokens_total",
    help: "Tokens the AI provider reported in its answers, by kind (prompt, completion)",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ kind: "prompt" }, usage.totals.promptTokens);
      this.inc({ kind: "completion" }, usage.totals.completionTokens);
    },
  });
  new Counter({
    name: "keygate_ai_requests_total",
    help: "Chat completions the AI provider answered (with or without a usage report)",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(usage.totals.requests);
    },
  });
}
