/** Every method the sandbox serves, by lower-case name (Bitrix24 method names are not case-sensitive). */
import type { MethodDef } from "./context.ts";
import { crmMethods } from "./crm.ts";
import { miscMethods } from "./misc.ts";
import { taskMethods } from "./tasks.ts";
import { userMethods } from "./users.ts";

export const METHODS: ReadonlyMap<string, MethodDef> = new Map(
  Object.entries({ ...crmMethods, ...taskMethods, ...userMethods, ...miscMethods }).map(([name, def]) => [name.toLowerCase(), def]),
);
