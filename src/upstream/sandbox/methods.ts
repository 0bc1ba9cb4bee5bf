/**
 * Every method the sandbox serves, by lower-case name (Bitrix24 method names are not case-sensitive),
 * and the two that describe them: `scope` (the webhook's scopes; full: every scope of the portal)
 * and `methods` (what the webhook may call; full: every method; scope: that scope's).
 */
import type { MethodDef } from "./context.ts";
import { crmLegacyMethods } from "./crm-legacy.ts";
import { botMethods } from "./bots.ts";
import { crmMethods } from "./crm.ts";
import { miscMethods } from "./misc.ts";
import { taskMethods } from "./tasks.ts";
import { userMethods } from "./users.ts";
import { toFlag, toText } from "./values.ts";

const SERVED: Record<string, MethodDef> = { ...crmMethods, ...crmLegacyMethods, ...taskMethods, ...userMethods, ...miscMethods, ...botMethods };

/** Every scope some method of the sandbox needs. */
const ALL_SCOPES = [...new Set(Object.values(SERVED).flatMap((m) => m.scopes))].sort();

const discovery: Record<string, MethodDef> = {
  scope: {
    scopes: [],
    async run(ctx, params) {
      return { result: toFlag(params["full"]) === true ? ALL_SCOPES : [...ctx.scopes].sort() };
    },
  },
  methods: {
    scopes: [],
    async run(ctx, params) {
      const scope = toText(params["scope"])?.trim();
      const full = toFlag(params["full"]) === true;
      const callable = (def: MethodDef) => def.scopes.length === 0 || def.scopes.some((s) => ctx.scopes.has(s));
      const names = [...METHODS].filter(([, def]) => (scope ? def.scopes.includes(scope) : full || callable(def))).map(([name]) => name);
      return { result: names };
    },
  },
};

export const METHODS: ReadonlyMap<string, MethodDef> = new Map(Object.entries({ ...SERVED, ...discovery }).map(([name, def]) => [name.toLowerCase(), def]));
