/**
 * crm.deal.*, crm.contact.*, crm.company.*, crm.lead.* (list, get, add, update, delete, fields):
 * Bitrix24's older CRM methods, the ones most clients call first, on the same records as
 * crm.item.* (crm.ts). Their shapes (apidocs.bitrix24.com, "Deals", "Contacts", "Companies",
 * "Leads"): UPPER_CASE fields (TITLE, OPPORTUNITY, STAGE_ID; a lead's stage is STATUS_ID;
 * DATE_CREATE, DATE_MODIFY, CREATED_BY_ID, MODIFY_BY_ID), every value a string as PHP sends it
 * ("ID": "7", "OPPORTUNITY": "1500.00", flags "Y"/"N"), phones and e-mails as
 * PHONE/EMAIL/WEB/IM lists of {ID, VALUE_TYPE, VALUE, TYPE_ID}.
 *
 * list takes filter (operator prefixes as in lists.ts; an unknown field is ignored), order,
 * select (empty or "*": every field but the multi-fields; names: those, ID always) and start
 * (-1: no count, as fetchListMethod asks), and answers result: [...] with total and next;
 * get answers the record, add its id, update and delete true; fields describes every field.
 * A missing record is 400 {error: "", error_description: "Not found"}, as Bitrix24 answers.
 */
import { ENTITY, type MethodContext, type MethodDef } from "./context.ts";
import { CATALOG, type CrmField, kindOf, normalizeFields, presentCrmItem } from "./crm.ts";
import { BitrixFault } from "./fault.ts";
import { type ListSchema, applyFilter, applyOrder, paginate, parseOrder } from "./lists.ts";
import { isRecord, toInt, toList, toText, upperSnake } from "./values.ts";

/** The entity type of each method family. */
const FAMILIES = { lead: 1, deal: 2, contact: 3, company: 4 } as const;

const MULTIFIELDS = ["PHONE", "EMAIL", "WEB", "IM"] as const;

/** Names that are not the UPPER_SNAKE of crm.item's. */
const RENAMED: Record<string, string> = { createdBy: "CREATED_BY_ID", updatedBy: "MODIFY_BY_ID", createdTime: "DATE_CREATE", updatedTime: "DATE_MODIFY", email: "HAS_EMAIL", phone: "HAS_PHONE" };

interface LegacyField {
  name: string;
  field: CrmField;
}

/** The entity type's fields under their legacy names, in catalog order; fm stands for the multi-fields. */
function legacyFields(entityTypeId: number): LegacyField[] {
  return CATALOG[entityTypeId]!.fields.filter((field) => field.name !== "fm").map((field) => {
    let name = RENAMED[field.name] ?? upperSnake(field.name);
    if (entityTypeId === 1 && field.name === "stageId") name = "STATUS_ID";
    if (entityTypeId === 1 && field.name === "stageSemanticId") name = "STATUS_SEMANTIC_ID";
    return { name, field };
  });
}

const LEGACY: Record<number, { fields: LegacyField[]; byName: Map<string, LegacyField>; multi: boolean }> = Object.fromEntries(
  Object.values(FAMILIES).map((id) => {
    const fields = legacyFields(id);
    return [id, { fields, byName: new Map(fields.map((f) => [f.name, f])), multi: CATALOG[id]!.fields.some((f) => f.name === "fm") }];
  }),
);

/** One value as PHP sends it: numbers as strings (money with two decimals), lists of such. */
function legacyValue(field: CrmField, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map((v) => legacyValue({ ...field, multiple: false }, v));
  if (typeof value === "number") return field.type === "double" ? value.toFixed(2) : String(value);
  return value;
}

/** The record as the legacy methods answer it; with `multi`, its PHONE/EMAIL/WEB/IM lists. */
function present(entityTypeId: number, item: Parameters<typeof presentCrmItem>[1], multi: boolean): Record<string, unknown> {
  const modern = presentCrmItem(entityTypeId, item);
  const out: Record<string, unknown> = {};
  for (const { name, field } of LEGACY[entityTypeId]!.fields) {
    const value = modern[field.name];
    out[name] = field.name === "email" || field.name === "phone" ? (value ? "Y" : "N") : legacyValue(field, value);
  }
  if (multi && LEGACY[entityTypeId]!.multi) {
    const fm = Array.isArray(item.fields["fm"]) ? (item.fields["fm"] as Record<string, unknown>[]) : [];
    for (const type of MULTIFIELDS) {
      const entries = fm.filter((e) => e["typeId"] === type).map((e) => ({ ID: String(e["id"]), VALUE_TYPE: e["valueType"], VALUE: e["value"], TYPE_ID: type }));
      if (entries.length > 0) out[type] = entries;
    }
  }
  return out;
}

/** Legacy `fields` as crm.item's: known writable names; PHONE/EMAIL/WEB/IM replace the record's entries of that type. */
function toModern(entityTypeId: number, input: Record<string, unknown>, stored: Record<string, unknown> | undefined): Record<string, unknown> {
  const legacy = LEGACY[entityTypeId]!;
  const out: Record<string, unknown> = {};
  let fm: Record<string, unknown>[] | undefined;
  for (const [key, value] of Object.entries(input)) {
    const name = key.toUpperCase();
    if (legacy.multi && (MULTIFIELDS as readonly string[]).includes(name)) {
      fm ??= Array.isArray(stored?.["fm"]) ? [...(stored["fm"] as Record<string, unknown>[])] : [];
      const entries = toList(value).filter(isRecord);
      fm = fm.filter((e) => e["typeId"] !== name);
      for (const e of entries) if (toText(e["VALUE"]) && e["DELETE"] !== "Y") fm.push({ typeId: name, value: e["VALUE"], valueType: e["VALUE_TYPE"] });
      continue;
    }
    const field = legacy.byName.get(name)?.field;
    if (field !== undefined) out[field.name] = value;
  }
  if (fm !== undefined) out["fm"] = fm;
  return out;
}

const notFound = () => new BitrixFault(400, "", "Not found");

function idOf(params: Record<string, unknown>): number {
  const id = toInt(params["id"] ?? params["ID"]);
  if (id === undefined || id <= 0) throw new BitrixFault(400, "", "ID is not defined or invalid.");
  return id;
}

function fieldsOf(params: Record<string, unknown>): Record<string, unknown> {
  const fields = params["fields"] ?? params["FIELDS"];
  if (isRecord(fields)) return fields;
  if (Array.isArray(fields) && fields.length === 0) return {};
  throw new BitrixFault(400, "", "Parameter 'fields' must be array.");
}

function listSchema(entityTypeId: number): ListSchema {
  const byName = LEGACY[entityTypeId]!.byName;
  return {
    field: (key) => {
      const hit = byName.get(key.toUpperCase());
      return hit === undefined ? undefined : { name: hit.name, kind: hit.field.name === "email" || hit.field.name === "phone" ? "flag" : kindOf(hit.field.type), multiple: hit.field.multiple === true };
    },
    // Bitrix24's older CRM methods leave out what they do not know.
    unknownFilterField: () => undefined,
  };
}

function methodsOf(family: keyof typeof FAMILIES): Record<string, MethodDef> {
  const entityTypeId = FAMILIES[family];
  const type = ENTITY.crm(entityTypeId);
  const get = async (ctx: MethodContext, id: number) => {
    const item = await ctx.store.getSandboxItem(ctx.portalId, type, id);
    if (item === undefined) throw notFound();
    return item;
  };
  return {
    [`crm.${family}.list`]: {
      scopes: ["crm"],
      async run(ctx, params) {
        const schema = listSchema(entityTypeId);
        const requested = isRecord(params["order"]) ? Object.fromEntries(Object.entries(params["order"]).filter(([k]) => schema.field(k) !== undefined)) : undefined;
        const order = parseOrder(requested, schema, {
          field: () => notFound(),
          direction: (key, dir) => new BitrixFault(400, "", `Invalid sort direction '${dir}' for field '${key}'`),
        });
        const select = toList(params["select"]).map((s) => String(s).toUpperCase());
        const multi = select.some((s) => (MULTIFIELDS as readonly string[]).includes(s));
        const items = (await ctx.store.listSandboxItems(ctx.portalId, type)).map((i) => present(entityTypeId, i, multi));
        const { page, total, next } = paginate(applyOrder(applyFilter(items, params["filter"], schema), order, "ID"), params["start"]);
        const named = select.filter((s) => s !== "*" && !s.startsWith("UF_"));
        const shown = named.length === 0 && (select.length === 0 || select.includes("*")) ? page.map((r) => dropMulti(r)) : page.map((r) => pick(r, ["ID", ...named]));
        // start = -1: the page without counting, as fetchListMethod asks.
        if (toInt(params["start"]) === -1) return { result: shown };
        return { result: shown, total, ...(next === undefined ? {} : { next }) };
      },
    },
    [`crm.${family}.get`]: {
      scopes: ["crm"],
      async run(ctx, params) {
        return { result: present(entityTypeId, await get(ctx, idOf(params)), true) };
      },
    },
    [`crm.${family}.add`]: {
      scopes: ["crm"],
      async run(ctx, params) {
        const stored = normalizeFields(entityTypeId, toModern(entityTypeId, fieldsOf(params), undefined), ctx, true);
        stored["createdBy"] = ctx.userId;
        stored["updatedBy"] = ctx.userId;
        return { result: (await ctx.store.addSandboxItem(ctx.portalId, type, stored, ctx.now)).id };
      },
    },
    [`crm.${family}.update`]: {
      scopes: ["crm"],
      async run(ctx, params) {
        const id = idOf(params);
        const current = await get(ctx, id);
        const patch = normalizeFields(entityTypeId, toModern(entityTypeId, fieldsOf(params), current.fields), ctx, false);
        patch["updatedBy"] = ctx.userId;
        if ((await ctx.store.updateSandboxItem(ctx.portalId, type, id, patch, ctx.now)) === undefined) throw notFound();
        return { result: true };
      },
    },
    [`crm.${family}.delete`]: {
      scopes: ["crm"],
      async run(ctx, params) {
        if (!(await ctx.store.deleteSandboxItem(ctx.portalId, type, idOf(params)))) throw notFound();
        return { result: true };
      },
    },
    [`crm.${family}.fields`]: {
      scopes: ["crm"],
      async run() {
        const fields: Record<string, unknown> = {};
        const describe = (type: string, title: string, extra: { isReadOnly?: boolean; isMultiple?: boolean; statusType?: string } = {}) => ({
          type,
          isRequired: false,
          isReadOnly: extra.isReadOnly === true,
          isImmutable: false,
          isMultiple: extra.isMultiple === true,
          isDynamic: false,
          title,
          ...(extra.statusType === undefined ? {} : { statusType: extra.statusType }),
        });
        for (const { name, field } of LEGACY[entityTypeId]!.fields) {
          const flag = field.name === "email" || field.name === "phone";
          fields[name] = describe(flag ? "char" : field.type, field.title, { isReadOnly: field.readOnly, isMultiple: field.multiple, statusType: field.statusType });
        }
        if (LEGACY[entityTypeId]!.multi) for (const m of MULTIFIELDS) fields[m] = describe("crm_multifield", m === "IM" ? "Messenger" : m === "WEB" ? "Website" : m === "EMAIL" ? "E-mail" : "Phone", { isMultiple: true });
        return { result: fields };
      },
    },
  };
}

function dropMulti(record: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).filter(([k]) => !(MULTIFIELDS as readonly string[]).includes(k)));
}

function pick(record: Record<string, unknown>, names: string[]): Record<string, unknown> {
  return Object.fromEntries(names.filter((n) => n in record).map((n) => [n, record[n]]));
}

export const crmLegacyMethods: Record<string, MethodDef> = { ...methodsOf("deal"), ...methodsOf("contact"), ...methodsOf("company"), ...methodsOf("lead") };
