/**
 * The platform sections (issue 17 §2; docs/sections.md): parts of the VibeCode platform that
 * keygate serves by handing requests to a provider the operator connects — an OpenAI-compatible
 * API for `vibe:ai`, a search engine for `vibe:search`. A section whose provider is not connected
 * answers 503 SECTION_NOT_CONFIGURED naming the setting that connects it; GET /v1/me, GET
 * /v1/guide and the dashboard say which sections are available.
 *
 * A section is one entry of SECTIONS: its name, the scope that opens it, the `serve` flag and
 * variable that connect it, its routes, and whether the options connect it.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { KeygateError } from "../core/errors.ts";
import type { Profile } from "../core/profile/profile.ts";
import type { AiOptions } from "./ai/provider.ts";
import type { SearchOptions } from "./search/adapter.ts";

/** What the operator connected (serve's flags, src/cli/serve-options.ts); a section left out is not available. */
export interface PlatformOptions {
  ai?: AiOptions;
  search?: SearchOptions;
}

export interface SectionDef {
  name: string;
  /** The scope a key needs for the section's routes. */
  scope: string;
  /** The `keygate serve` flag that connects it, and its environment variable. */
  setting: string;
  env: string;
  /** Its routes, "METHOD /path" as the profile's route table writes them. */
  routes: string[];
  configured(options: PlatformOptions): boolean;
}

export const SECTIONS: SectionDef[] = [
  {
    name: "ai",
    scope: "vibe:ai",
    setting: "--ai-base-url",
    env: "KEYGATE_AI_BASE_URL",
    routes: ["POST /v1/chat/completions", "GET /v1/models"],
    configured: (o) => o.ai !== undefined,
  },
  {
    name: "search",
    scope: "vibe:search",
    setting: "--search-url",
    env: "KEYGATE_SEARCH_URL",
    routes: ["POST /v1/search"],
    configured: (o) => o.search !== undefined,
  },
];

/** A section as GET /v1/me and /v1/guide show it. */
export interface SectionState {
  scope: string;
  available: boolean;
  /** Set when not available: the flag (and variable) that would connect it. */
  setting?: string;
}

/** The sections of a profile (those its route table has), each with whether it is available here. */
export class Sections {
  readonly #defs: SectionDef[];
  readonly #available: Set<string>;
  /** name → state, the same object every time (GET /v1/me keeps its answer). */
  readonly states: Record<string, SectionState>;

  constructor(profile: Profile, options: PlatformOptions) {
    const routes = new Set(profile.routes.map((r) => `${r.method} ${r.path}`));
    this.#defs = SECTIONS.filter((s) => s.routes.some((r) => routes.has(r)));
    this.#available = new Set(this.#defs.filter((s) => s.configured(options)).map((s) => s.name));
    this.states = Object.fromEntries(
      this.#defs.map((s) => [s.name, this.#available.has(s.name) ? { scope: s.scope, available: true } : { scope: s.scope, available: false, setting: `${s.setting} (${s.env})` }]),
    );
  }

  /** Whether the profile has this section and its provider is connected. */
  available(name: string): boolean {
    return this.#available.has(name);
  }

  /** Whether a route ("METHOD /path") belongs to a section that is not available: it answers 503, so lists of what works leave it out. */
  unavailableRoute(route: string): boolean {
    return this.#defs.some((s) => !this.#available.has(s.name) && s.routes.includes(route));
  }

  /** Whether the profile has the section (its route table has its routes): only then are they served. */
  has(name: string): boolean {
    return this.#defs.some((s) => s.name === name);
  }

  /**
   * A route hook refusing the section's requests while it is not connected. The refusal says
   * `X-Should-Retry: false`: OpenAI's clients retry a 503 otherwise, and only the operator changes this.
   */
  guard(name: string): (request: FastifyRequest, reply: FastifyReply, done: (e?: Error) => void) => void {
    if (this.available(name)) return (_request, _reply, done) => done();
    return (_request, reply, done) => {
      reply.header("x-should-retry", "false");
      done(this.notConfigured(name));
    };
  }

  /** The refusal of a request for a section that is not connected. */
  notConfigured(name: string): KeygateError {
    const s = this.#defs.find((d) => d.name === name)!;
    return new KeygateError("SECTION_NOT_CONFIGURED", {
      message: `The ${s.scope} section is not connected to a provider on this keygate.`,
      details: { section: s.name, scope: s.scope, setting: s.setting, env: s.env },
    });
  }
}
