/**
 * crm.item.* for the system CRM types: leads (entityTypeId 1), deals (2), contacts (3),
 * companies (4). Fields are camelCase as crm.item.fields lists them; an unknown or read-only
 * field in `fields` is ignored, a value of the wrong type is refused with
 * CRM_FIELD_ERROR_VALUE_NOT_VALID (Invalid value for field "<title>"). Answers:
 * list {items} + total/next, get/add/update {item}, delete [], fields {fields}.
 * Smart processes (other entityTypeIds) do not exist in the sandbox: NOT_FOUND, as Bitrix24
 * answers for an unknown one.
 */
import { ENTITY, type MethodContext, type MethodDef } from "./context.ts";
import { BitrixFault, missingParameter } from "./fault.ts";
import { type FieldKind, type ListField, type ListSchema, applyFilter, applyOrder, paginate, parseOrder } from "./lists.ts";
import { isRecord, isoDate, isoTime, toFlag, toInt, toList, toNumber, toText, toTime, upperSnake } from "./values.ts";
import type { SandboxItem } from "../../store/store.ts";

export type CrmType =
  | "integer"
  | "double"
  | "string"
  | "text"
  | "boolean"
  | "date"
  | "datetime"
  | "user"
  | "crm_status"
  | "crm_currency"
  | "crm_category"
  | "crm_company"
  | "crm_contact"
  | "crm_multifield";

export interface CrmField {
  name: string;
  type: CrmType;
  title: string;
  readOnly?: boolean;
  multiple?: boolean;
  statusType?: string;
  /** The value an added item gets when `fields` does not set it. */
  initial?: (ctx: MethodContext) => unknown;
}

const DAY = 86_400_000;

const f = (name: string, type: CrmType, title: string, extra: Partial<CrmField> = {}): CrmField => ({ name, type, title, ...extra });
const ro = { readOnly: true } as const;

const head = [f("id", "integer", "ID", ro)];
const owner = [
  f("assignedById", "user", "Assigned to", { initial: (ctx) => ctx.userId }),
  f("opened", "boolean", "Publicly available", { initial: () => "Y" }),
  f("comments", "text", "Comment"),
];
const tail = [
  f("createdBy", "user", "Created by", ro),
  f("createdTime", "datetime", "Created at", ro),
  f("updatedBy", "user", "Updated by", ro),
  f("updatedTime", "datetime", "Updated at", ro),
];
const communications = [f("fm", "crm_multifield", "Multifields", { multiple: true }), f("email", "string", "E-mail", ro), f("phone", "string", "Phone", ro)];
const money = [f("opportunity", "double", "Amount", { initial: () => 0 }), f("currencyId", "crm_currency", "Currency", { initial: () => "USD" })];
const source = f("sourceId", "crm_status", "Source", { statusType: "SOURCE", initial: () => "CALL" });
const person = [f("name", "string", "First name"), f("secondName", "string", "Second name"), f("lastName", "string", "Last name"), f("post", "string", "Position")];

export const CATALOG: Record<number, { name: string; fields: CrmField[] }> = {
  1: {
    name: "Lead",
    fields: [
      ...head,
      f("title", "string", "Lead name"),
      ...person,
      f("companyTitle", "string", "Company name"),
      f("stageId", "crm_status", "Stage", { statusType: "STATUS", initial: () => "NEW" }),
      f("stageSemanticId", "string", "Stage group", ro),
      source,
      ...money,
      f("companyId", "crm_company", "Company", { initial: () => 0 }),
      f("contactId", "crm_contact", "Contact", { initial: () => 0 }),
      ...owner,
      ...communications,
      ...tail,
    ],
  },
  2: {
    name: "Deal",
    fields: [
      ...head,
      f("title", "string", "Name"),
      f("typeId", "crm_status", "Type", { statusType: "DEAL_TYPE", initial: () => "SALE" }),
      f("categoryId", "crm_category", "Pipeline", { initial: () => 0 }),
      f("stageId", "crm_status", "Stage", { statusType: "DEAL_STAGE", initial: () => "NEW" }),
      f("stageSemanticId", "string", "Stage group", ro),
      f("closed", "boolean", "Closed", ro),
      f("probability", "integer", "Probability"),
      ...money,
      f("companyId", "crm_company", "Company", { initial: () => 0 }),
      f("contactId", "crm_contact", "Contact", { initial: () => 0 }),
      f("contactIds", "crm_contact", "Contacts", { multiple: true, initial: () => [] }),
      f("begindate", "date", "Start date", { initial: (ctx) => isoDate(ctx.now) }),
      f("closedate", "date", "End date", { initial: (ctx) => isoDate(ctx.now + 7 * DAY) }),
      source,
      ...owner,
      ...tail,
    ],
  },
  3: {
    name: "Contact",
    fields: [
      ...head,
      ...person,
      f("typeId", "crm_status", "Contact type", { statusType: "CONTACT_TYPE", initial: () => "CLIENT" }),
      source,
      f("companyId", "crm_company", "Company", { initial: () => 0 }),
      f("birthdate", "date", "Date of birth"),
      ...owner,
      ...communications,
      ...tail,
    ],
  },
  4: {
    name: "Company",
    fields: [
      ...head,
      f("title", "string", "Company name"),
      f("companyType", "crm_status", "Company type", { statusType: "COMPANY_TYPE", initial: () => "CUSTOMER" }),
      f("industry", "crm_status", "Industry", { statusType: "INDUSTRY" }),
      f("employees", "crm_status", "Employees", { statusType: "EMPLOYEES" }),
      f("revenue", "double", "Annual revenue"),
      f("currencyId", "crm_currency", "Currency", { initial: () => "USD" }),
      ...owner,
      ...communications,
      ...tail,
    ],
  },
};

const BY_NAME: Record<number, Map<string, CrmField>> = Object.fromEntries(
  Object.entries(CATALOG).map(([id, c]) => [id, new Map(c.fields.map((x) => [x.name, x]))]),
);

const NUMERIC: ReadonlySet<CrmType> = new Set(["integer", "double", "user", "crm_category", "crm_company", "crm_contact"]);

export function kindOf(type: CrmType): FieldKind {
  if (NUMERIC.has(type)) return "number";
  if (type === "date" || type === "datetime") return "date";
  if (type === "boolean") return "flag";
  return "string";
}

const notValid = (field: CrmField) => new BitrixFault(400, "CRM_FIELD_ERROR_VALUE_NOT_VALID", `Invalid value for field "${field.title}"`);

/** The entityTypeId parameter: 1–4, else NOT_FOUND as for an unknown smart process. */
function entityTypeOf(params: Record<string, unknown>): number {
  if (params["entityTypeId"] === undefined || params["entityTypeId"] === "") throw missingParameter("entityTypeId");
  const id = toInt(params["entityTypeId"]);
  if (id === undefined || CATALOG[id] === undefined) throw new BitrixFault(400, "NOT_FOUND", "Smart process not found");
  return id;
}

function idOf(params: Record<string, unknown>): number {
  if (params["id"] === undefined || params["id"] === "") throw missingParameter("id");
  return toInt(params["id"]) ?? 0;
}

/** One value as stored, or a refusal. null and "" clear a field. */
function normalizeValue(field: CrmField, value: unknown): unknown {
  if (field.multiple) {
    const list = toList(value);
    if (field.type === "crm_multifield") return list.map((entry, i) => multifield(field, entry, i));
    return list.map((v) => normalizeValue({ ...field, multiple: false }, v));
  }
  if (value === null || value === "") return null;
  switch (field.type) {
    case "integer":
    case "user":
    case "crm_category":
    case "crm_company":
    case "crm_contact": {
      const n = toInt(value);
      if (n === undefined) throw notValid(field);
      return n;
    }
    case "double": {
      const n = toNumber(value);
      if (n === undefined) throw notValid(field);
      return n;
    }
    case "boolean": {
      const b = toFlag(value);
      if (b === undefined) throw notValid(field);
      return b ? "Y" : "N";
    }
    case "date":
    case "datetime": {
      const t = toTime(value);
      if (t === undefined) throw notValid(field);
      return field.type === "date" ? isoDate(t) : isoTime(t);
    }
    default: {
      const text = toText(value);
      if (text === undefined) throw notValid(field);
      return text;
    }
  }
}

const MULTIFIELD_TYPES = new Set(["PHONE", "EMAIL", "WEB", "IM", "LINK"]);

function multifield(field: CrmField, entry: unknown, i: number): Record<string, unknown> {
  if (!isRecord(entry)) throw notValid(field);
  const typeId = toText(entry["typeId"])?.toUpperCase();
  const value = toText(entry["value"]);
  if (typeId === undefined || !MULTIFIELD_TYPES.has(typeId) || value === undefined || value === "") throw notValid(field);
  return { id: i + 1, valueType: toText(entry["valueType"])?.toUpperCase() || "WORK", value, typeId };
}

/** `fields` as stored: known writable fields, normalized; with `initial` values when adding. */
export function normalizeFields(entityTypeId: number, input: Record<string, unknown>, ctx: MethodContext, adding: boolean): Record<string, unknown> {
  const byName = BY_NAME[entityTypeId]!;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    const field = byName.get(key);
    if (field === undefined || field.readOnly || value === undefined) continue;
    out[key] = normalizeValue(field, value);
  }
  if (adding) for (const field of CATALOG[entityTypeId]!.fields) if (field.initial && out[field.name] === undefined) out[field.name] = field.initial(ctx);
  return out;
}

/** S (won), F (failed) or P (in progress) from a stage id (C1:WON counts as WON). */
function semantic(entityTypeId: number, stageId: unknown): string {
  const stage = String(stageId ?? "").replace(/^C\d+:/, "");
  if (entityTypeId === 1) return stage === "CONVERTED" ? "S" : stage === "JUNK" ? "F" : "P";
  return stage === "WON" ? "S" : stage === "LOSE" ? "F" : "P";
}

function firstOf(fm: unknown, typeId: string): string {
  if (!Array.isArray(fm)) return "";
  const hit = fm.find((e) => isRecord(e) && e["typeId"] === typeId) as Record<string, unknown> | undefined;
  return hit === undefined ? "" : String(hit["value"] ?? "");
}

/** The item as crm.item.* answers it: every field of the type in catalog order, then entityTypeId. */
export function presentCrmItem(entityTypeId: number, item: SandboxItem): Record<string, unknown> {
  const stored = item.fields;
  const out: Record<string, unknown> = {};
  for (const field of CATALOG[entityTypeId]!.fields) {
    switch (field.name) {
      case "id":
        out["id"] = item.id;
        break;
      case "createdTime":
        out["createdTime"] = isoTime(item.createdAt);
        break;
      case "updatedTime":
        out["updatedTime"] = isoTime(item.updatedAt);
        break;
      case "stageSemanticId":
        out["stageSemanticId"] = semantic(entityTypeId, stored["stageId"]);
        break;
      case "closed":
        out["closed"] = semantic(entityTypeId, stored["stageId"]) === "P" ? "N" : "Y";
        break;
      case "email":
      case "phone":
        out[field.name] = firstOf(stored["fm"], field.name.toUpperCase());
        break;
      case "title":
        // Bitrix24 names an untitled item after its type and id.
        out["title"] = stored["title"] ?? `${CATALOG[entityTypeId]!.name} #${item.id}`;
        break;
      default:
        out[field.name] = stored[field.name] ?? (field.multiple ? [] : null);
    }
  }
  out["entityTypeId"] = entityTypeId;
  return out;
}

/** Adds an item of the type, as crm.item.add does; the item as answered. */
export async function addCrmItem(ctx: MethodContext, entityTypeId: number, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
  const stored = normalizeFields(entityTypeId, fields, ctx, true);
  stored["createdBy"] = ctx.userId;
  stored["updatedBy"] = ctx.userId;
  const item = await ctx.store.addSandboxItem(ctx.portalId, ENTITY.crm(entityTypeId), stored, ctx.now);
  return presentCrmItem(entityTypeId, item);
}

function listSchema(entityTypeId: number): ListSchema {
  const byName = BY_NAME[entityTypeId]!;
  const field = (key: string): ListField | undefined => {
    const def = byName.get(key);
    if (def === undefined) return undefined;
    return { name: def.name, kind: kindOf(def.type), multiple: def.multiple === true && def.type !== "crm_multifield" };
  };
  return {
    field,
    unknownFilterField: (key) => {
      throw new BitrixFault(400, "INVALID_ARG_VALUE", `Invalid filter: field '${key}' is not allowed in filter`);
    },
  };
}

function fieldsOf(params: Record<string, unknown>): Record<string, unknown> {
  const fields = params["fields"];
  if (!isRecord(fields)) {
    if (Array.isArray(fields) && fields.length === 0) return {};
    throw missingParameter("fields");
  }
  return fields;
}

export const crmMethods: Record<string, MethodDef> = {
  "crm.item.list": {
    scopes: ["crm"],
    async run(ctx, params) {
      const entityTypeId = entityTypeOf(params);
      const schema = listSchema(entityTypeId);
      const order = parseOrder(params["order"], schema, {
        field: (key) => new BitrixFault(400, "INVALID_ARG_VALUE", `Invalid order: field '${key}' is not allowed in order`),
        direction: (key, dir) => new BitrixFault(400, "INVALID_ARG_VALUE", `Invalid order: allowed sort directions are ASC, DESC. But got '${dir}' for field '${key}'`),
      });
      const items = (await ctx.store.listSandboxItems(ctx.portalId, ENTITY.crm(entityTypeId))).map((i) => presentCrmItem(entityTypeId, i));
      const { page, total, next } = paginate(applyOrder(applyFilter(items, params["filter"], schema), order), params["start"]);
      const select = toList(params["select"]).map(String);
      const all = select.length === 0 || select.includes("*");
      const shown = all ? page : page.map((item) => Object.fromEntries(Object.entries(item).filter(([k]) => k === "id" || select.includes(k))));
      return { result: { items: shown }, total, ...(next === undefined ? {} : { next }) };
    },
  },
  "crm.item.get": {
    scopes: ["crm"],
    async run(ctx, params) {
      const entityTypeId = entityTypeOf(params);
      const item = await ctx.store.getSandboxItem(ctx.portalId, ENTITY.crm(entityTypeId), idOf(params));
      if (item === undefined) throw new BitrixFault(400, "NOT_FOUND", "Element not found");
      return { result: { item: presentCrmItem(entityTypeId, item) } };
    },
  },
  "crm.item.add": {
    scopes: ["crm"],
    async run(ctx, params) {
      const entityTypeId = entityTypeOf(params);
      return { result: { item: await addCrmItem(ctx, entityTypeId, fieldsOf(params)) } };
    },
  },
  "crm.item.update": {
    scopes: ["crm"],
    async run(ctx, params) {
      const entityTypeId = entityTypeOf(params);
      const id = idOf(params);
      const patch = normalizeFields(entityTypeId, fieldsOf(params), ctx, false);
      patch["updatedBy"] = ctx.userId;
      const item = await ctx.store.updateSandboxItem(ctx.portalId, ENTITY.crm(entityTypeId), id, patch, ctx.now);
      if (item === undefined) throw new BitrixFault(400, "NOT_FOUND", "Item not found");
      return { result: { item: presentCrmItem(entityTypeId, item) } };
    },
  },
  "crm.item.delete": {
    scopes: ["crm"],
    async run(ctx, params) {
      const entityTypeId = entityTypeOf(params);
      if (!(await ctx.store.deleteSandboxItem(ctx.portalId, ENTITY.crm(entityTypeId), idOf(params)))) throw new BitrixFault(400, "NOT_FOUND", "Item not found");
      return { result: [] };
    },
  },
  "crm.item.fields": {
    scopes: ["crm"],
    async run(_ctx, params) {
      const entityTypeId = entityTypeOf(params);
      const fields: Record<string, unknown> = {};
      for (const x of CATALOG[entityTypeId]!.fields) {
        fields[x.name] = {
          type: x.type,
          isRequired: false,
          isReadOnly: x.readOnly === true,
          isImmutable: false,
          isMultiple: x.multiple === true,
          isDynamic: false,
          title: x.title,
          ...(x.statusType === undefined ? {} : { statusType: x.statusType }),
          upperName: upperSnake(x.name),
        };
      }
      return { result: { fields } };
    },
  },
};
