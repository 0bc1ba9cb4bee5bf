/**
 * user.get, user.current, user.add, user.update, user.fields. Users are UPPER_CASE records (ID as a string,
 * ACTIVE as a boolean, UF_DEPARTMENT a list of department ids), as Bitrix24 answers them.
 *
 * user.get takes its filter as top-level parameters or in FILTER/filter (operator prefixes as in
 * lists.ts; NAME_SEARCH searches names, e-mail and position; a text value with % is a LIKE
 * pattern), SORT + ORDER (one field, ASC by default; ID when not given), and start; it answers a
 * list with total/next. user.current answers the webhook's user, user.add the new id, user.update true.
 */
import { ENTITY, type MethodContext, type MethodDef } from "./context.ts";
import { BitrixFault, argumentError } from "./fault.ts";
import { type FieldKind, type ListField, type ListSchema, applyFilter, applyOrder, paginate, splitFilterKey } from "./lists.ts";
import { isRecord, isoTime, toFlag, toInt, toList, toText } from "./values.ts";
import type { SandboxItem } from "../../store/store.ts";

/** user.fields: every standard field and its title (the writable ones are those not in READ_ONLY). */
const FIELDS: [string, string][] = [
  ["ID", "ID"],
  ["XML_ID", "External code"],
  ["ACTIVE", "Activity"],
  ["NAME", "First Name"],
  ["LAST_NAME", "Last Name"],
  ["SECOND_NAME", "Middle Name"],
  ["EMAIL", "E-Mail"],
  ["LAST_LOGIN", "Last Login"],
  ["DATE_REGISTER", "Registration Date"],
  ["TIME_ZONE", "TIME_ZONE"],
  ["IS_ONLINE", "IS_ONLINE"],
  ["PERSONAL_GENDER", "Gender"],
  ["PERSONAL_PROFESSION", "Profession"],
  ["PERSONAL_WWW", "Homepage"],
  ["PERSONAL_BIRTHDAY", "Birthday"],
  ["PERSONAL_PHONE", "Personal Phone"],
  ["PERSONAL_MOBILE", "Personal Mobile"],
  ["PERSONAL_CITY", "City of Residence"],
  ["WORK_PHONE", "Company Phone"],
  ["WORK_COMPANY", "Company"],
  ["WORK_POSITION", "Position"],
  ["WORK_DEPARTMENT", "Department"],
  ["UF_DEPARTMENT", "Departments"],
  ["UF_PHONE_INNER", "Internal Phone"],
  ["USER_TYPE", "USER_TYPE"],
];
const READ_ONLY = new Set(["ID", "LAST_LOGIN", "DATE_REGISTER", "IS_ONLINE", "USER_TYPE"]);
const KNOWN = new Set(FIELDS.map(([name]) => name));

function kindOf(name: string): FieldKind {
  if (name === "ID") return "number";
  if (name === "ACTIVE") return "flag";
  if (name === "UF_DEPARTMENT") return "number";
  if (name === "DATE_REGISTER" || name === "LAST_LOGIN" || name === "PERSONAL_BIRTHDAY") return "date";
  return "string";
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** The user as user.get answers it. */
export function presentUser(item: SandboxItem): Record<string, unknown> {
  const stored = item.fields;
  const out: Record<string, unknown> = {};
  for (const [name] of FIELDS) {
    switch (name) {
      case "ID":
        out["ID"] = String(item.id);
        break;
      case "ACTIVE":
        out["ACTIVE"] = stored["ACTIVE"] !== false;
        break;
      case "DATE_REGISTER":
        out["DATE_REGISTER"] = isoTime(item.createdAt);
        break;
      case "LAST_LOGIN":
        out["LAST_LOGIN"] = stored["LAST_LOGIN"] ?? null;
        break;
      case "IS_ONLINE":
        out["IS_ONLINE"] = "N";
        break;
      case "UF_DEPARTMENT":
        out["UF_DEPARTMENT"] = Array.isArray(stored["UF_DEPARTMENT"]) ? stored["UF_DEPARTMENT"] : [];
        break;
      case "USER_TYPE":
        out["USER_TYPE"] = stored["USER_TYPE"] ?? "employee";
        break;
      default:
        out[name] = stored[name] ?? "";
    }
  }
  return out;
}

/** The writable fields of a user.add/user.update call, as stored. */
function writable(params: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(params)) {
    if (!KNOWN.has(key) || READ_ONLY.has(key) || value === undefined) continue;
    if (key === "ACTIVE") out[key] = toFlag(value) ?? true;
    else if (key === "UF_DEPARTMENT") out[key] = toList(value).map(toInt).filter((x): x is number => x !== undefined);
    else out[key] = toText(value) ?? "";
  }
  return out;
}

async function emailTaken(ctx: MethodContext, email: string, exceptId?: number): Promise<boolean> {
  const users = await ctx.store.listSandboxItems(ctx.portalId, ENTITY.user);
  return users.some((u) => u.id !== exceptId && String(u.fields["EMAIL"] ?? "").toLowerCase() === email.toLowerCase());
}

/** Adds a user as user.add does (without the invitation); the new id. */
export async function addUser(ctx: MethodContext, params: Record<string, unknown>): Promise<number> {
  const email = toText(params["EMAIL"]) ?? "";
  if (!EMAIL.test(email)) throw argumentError("", "wrong_email");
  if (await emailTaken(ctx, email)) throw argumentError("", "User with this email already exists");
  const extranet = toFlag(params["EXTRANET"]) === true;
  const fields = writable(params);
  if (extranet) {
    if (toList(params["SONET_GROUP_ID"]).length === 0) throw new BitrixFault(400, "ERROR_GROUPID", "Group code not specified");
    fields["USER_TYPE"] = "extranet";
  } else {
    if (toList(params["UF_DEPARTMENT"]).length === 0) throw argumentError("", "no_extranet_field");
    fields["USER_TYPE"] = "employee";
  }
  fields["ACTIVE"] = fields["ACTIVE"] ?? true;
  return (await ctx.store.addSandboxItem(ctx.portalId, ENTITY.user, fields, ctx.now)).id;
}

export async function userExists(ctx: MethodContext, id: number): Promise<boolean> {
  return (await ctx.store.getSandboxItem(ctx.portalId, ENTITY.user, id)) !== undefined;
}

const CONTROL = new Set(["sort", "order", "start", "filter", "admin_mode"]);

const schema: ListSchema = {
  field: (key) => {
    const name = key.toUpperCase();
    if (!KNOWN.has(name)) return undefined;
    const field: ListField = { name, kind: kindOf(name) };
    if (name === "UF_DEPARTMENT") field.multiple = true;
    return field;
  },
  // Bitrix24 passes the filter to the user list, which skips what it does not know.
  unknownFilterField: () => {},
  likeOnEquality: true,
};

/** The user.get filter: FILTER/filter and the top-level fields, NAME_SEARCH taken out. */
function userFilter(params: Record<string, unknown>): { filter: Record<string, unknown>; search: string | undefined } {
  const filter: Record<string, unknown> = {};
  let search: string | undefined;
  const take = (key: string, value: unknown) => {
    const [, name] = splitFilterKey(key);
    if (name.toUpperCase() === "NAME_SEARCH") search = toText(value);
    else filter[key] = value;
  };
  for (const [key, value] of Object.entries(params)) {
    if (CONTROL.has(key.toLowerCase())) continue;
    const [, name] = splitFilterKey(key);
    if (KNOWN.has(name.toUpperCase()) || name.toUpperCase() === "NAME_SEARCH") take(key, value);
  }
  const nested = params["FILTER"] ?? params["filter"];
  if (isRecord(nested)) for (const [key, value] of Object.entries(nested)) take(key, value);
  return { filter, search };
}

export const userMethods: Record<string, MethodDef> = {
  "user.current": {
    scopes: ["user", "user_basic", "user_brief"],
    async run(ctx) {
      const user = await ctx.store.getSandboxItem(ctx.portalId, ENTITY.user, ctx.userId);
      // The webhook's user always exists (createSandbox checks it); a record removed behind its back reads as none.
      if (user === undefined) throw new BitrixFault(401, "INVALID_CREDENTIALS", "Invalid request credentials");
      return { result: presentUser(user) };
    },
  },
  "user.get": {
    scopes: ["user", "user_basic", "user_brief"],
    async run(ctx, params) {
      const users = (await ctx.store.listSandboxItems(ctx.portalId, ENTITY.user)).map(presentUser);
      const { filter, search } = userFilter(params);
      let found = applyFilter(users, filter, schema);
      if (search !== undefined && search !== "") {
        const needle = search.toLowerCase();
        found = found.filter((u) => ["NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "WORK_POSITION"].some((k) => String(u[k] ?? "").toLowerCase().includes(needle)));
      }
      const sortBy = schema.field(toText(params["SORT"] ?? params["sort"]) ?? "ID") ?? schema.field("ID")!;
      const direction = String(toText(params["ORDER"] ?? params["order"]) ?? "ASC").toUpperCase() === "DESC" ? "DESC" : "ASC";
      const { page, total, next } = paginate(applyOrder(found, [[sortBy, direction]], "ID"), params["start"]);
      return { result: page, total, ...(next === undefined ? {} : { next }) };
    },
  },
  "user.add": {
    scopes: ["user"],
    async run(ctx, params) {
      return { result: await addUser(ctx, params) };
    },
  },
  "user.update": {
    scopes: ["user"],
    async run(ctx, params) {
      const id = toInt(params["ID"]);
      if (id === undefined || !(await userExists(ctx, id))) throw new BitrixFault(400, "ERROR_CORE", "access_denied");
      const fields = writable(params);
      if (fields["EMAIL"] !== undefined) {
        const email = String(fields["EMAIL"]);
        if (!EMAIL.test(email)) throw argumentError("", "wrong_email");
        if (await emailTaken(ctx, email, id)) throw argumentError("", "User with this email already exists");
      }
      await ctx.store.updateSandboxItem(ctx.portalId, ENTITY.user, id, fields, ctx.now);
      return { result: true };
    },
  },
  "user.fields": {
    scopes: ["user", "user_basic", "user_brief"],
    async run() {
      return { result: Object.fromEntries(FIELDS) };
    },
  },
};
