import { KeygateError } from "../core/errors.ts";
import type { Condition, ListQuery } from "./query.ts";

/**
 * The VibeCode entity surface mapped onto Bitrix24 REST methods. Each operation is a Bitrix24
 * command (method + params, so it also fits in a Bitrix24 `batch`) and a reader of its result.
 * Field names are camelCase in keygate; `names` renames the few that differ from Bitrix24's
 * (amount ↔ opportunity, …), and tasks and users are translated to Bitrix24's UPPER_CASE where
 * their methods take it. Fields keygate does not know pass through under their own names.
 */

export interface Command {
  method: string;
  params: Record<string, unknown>;
}

/** Inside a Bitrix24 batch, an earlier command's answer ($result[command]): Bitrix24 puts it in before it runs the command. */
export interface BatchResult {
  batchResult: string;
}

export interface Page {
  items: Record<string, unknown>[];
  total: number | undefined;
  next: number | undefined;
}

export interface Entity {
  name: string;
  list(query: ListQuery, start: number): Command;
  readPage(result: unknown, total: number | undefined, next: number | undefined): Page;
  get(id: string | BatchResult): Command;
  create(fields: Record<string, unknown>): Command;
  update(id: string, fields: Record<string, unknown>): Command;
  /** Absent where Bitrix24 has no delete (users are deactivated instead). */
  remove?(id: string): Command;
  fields(): Command;
  /** The record in a get/create/update result (undefined: not found). */
  readItem(result: unknown): Record<string, unknown> | undefined;
  readFields(result: unknown): Record<string, unknown>;
  /** A create or update that Bitrix24 answers with an id or `true` needs a get to show the record. */
  refetchAfterWrite: boolean;
  /** Bitrix24 refuses an update or delete of a missing record as not allowed (tasks, users): only a get tells the two apart. */
  missingLooksForbidden: boolean;
  /** The list method has no select (user.get): keygate keeps only the selected fields itself. */
  selectLocally?: boolean;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const upperSnake = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
/** UPPER_SNAKE → lowerCamel; names already in lowerCamel, and user fields (UF_…), stay as they are. */
const lowerCamel = (name: string) =>
  name.startsWith("UF_") || name !== name.toUpperCase() ? name : name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

const PREFIX: Record<Condition["op"], string> = { "=": "=", "!=": "!", ">": ">", ">=": ">=", "<": "<", "<=": "<=", "%": "%", in: "@" };

function numericId(id: string | BatchResult): number | string {
  if (typeof id !== "string") return `$result[${id.batchResult}]`;
  if (!/^\d+$/.test(id)) throw new KeygateError("VALIDATION_ERROR", { message: "the id is a whole number", param: "id" });
  return Number(id);
}

/** Renames keys both ways: keygate name ↔ upstream name, then a case convention for the upstream. */
function naming(names: Record<string, string>, toUpstreamCase: (n: string) => string, fromUpstreamCase: (n: string) => string) {
  const back = new Map(Object.entries(names).map(([k, v]) => [v, k]));
  const up = (name: string) => toUpstreamCase(Object.hasOwn(names, name) ? names[name]! : name);
  const down = (name: string) => {
    const plain = fromUpstreamCase(name);
    return back.get(plain) ?? plain;
  };
  return {
    up,
    down,
    item: (item: Record<string, unknown>) => Object.fromEntries(Object.entries(item).map(([k, v]) => [down(k), v])),
    fields: (fields: Record<string, unknown>) => Object.fromEntries(Object.entries(fields).map(([k, v]) => [up(k), v])),
    filter: (conditions: Condition[]) => Object.fromEntries(conditions.map((c) => [`${c.op === "=" ? "" : PREFIX[c.op]}${up(c.field)}`, c.value])),
    order: (query: ListQuery, fallback: string) =>
      query.order.length > 0 ? Object.fromEntries(query.order.map((o) => [up(o.field), o.direction.toUpperCase()])) : { [toUpstreamCase(fallback)]: "ASC" },
    select: (query: ListQuery) => (query.select === null ? undefined : [...new Set([toUpstreamCase("id"), ...query.select.map(up)])]),
  };
}

const identity = (n: string) => n;

function crm(name: string, entityTypeId: number, names: Record<string, string>): Entity {
  const n = naming(names, identity, identity);
  return {
    name,
    refetchAfterWrite: false,
    missingLooksForbidden: false,
    list: (query, start) => ({
      method: "crm.item.list",
      params: { entityTypeId, filter: n.filter(query.filter), order: n.order(query, "id"), start, ...(n.select(query) ? { select: n.select(query) } : {}) },
    }),
    readPage: (result, total, next) => ({ items: ((isRecord(result) && Array.isArray(result.items) ? result.items : []) as Record<string, unknown>[]).map(n.item), total, next }),
    get: (id) => ({ method: "crm.item.get", params: { entityTypeId, id: numericId(id) } }),
    create: (fields) => ({ method: "crm.item.add", params: { entityTypeId, fields: n.fields(fields) } }),
    update: (id, fields) => ({ method: "crm.item.update", params: { entityTypeId, id: numericId(id), fields: n.fields(fields) } }),
    remove: (id) => ({ method: "crm.item.delete", params: { entityTypeId, id: numericId(id) } }),
    fields: () => ({ method: "crm.item.fields", params: { entityTypeId } }),
    readItem: (result) => (isRecord(result) && isRecord(result.item) ? n.item(result.item) : undefined),
    readFields: (result) => (isRecord(result) && isRecord(result.fields) ? n.item(result.fields) : {}),
  };
}

/** tasks.task.*: UPPER_CASE in (fields, filter, select, order), lowerCamel out. */
function tasks(): Entity {
  const n = naming({ createdAt: "createdDate", closedAt: "closedDate", updatedAt: "changedDate" }, upperSnake, lowerCamel);
  return {
    name: "tasks",
    refetchAfterWrite: false,
    missingLooksForbidden: true,
    list: (query, start) => ({ method: "tasks.task.list", params: { filter: n.filter(query.filter), order: n.order(query, "id"), start, ...(n.select(query) ? { select: n.select(query) } : {}) } }),
    readPage: (result, total, next) => ({ items: ((isRecord(result) && Array.isArray(result.tasks) ? result.tasks : []) as Record<string, unknown>[]).map(n.item), total, next }),
    get: (id) => ({ method: "tasks.task.get", params: { taskId: numericId(id) } }),
    create: (fields) => ({ method: "tasks.task.add", params: { fields: n.fields(fields) } }),
    update: (id, fields) => ({ method: "tasks.task.update", params: { taskId: numericId(id), fields: n.fields(fields) } }),
    remove: (id) => ({ method: "tasks.task.delete", params: { taskId: numericId(id) } }),
    fields: () => ({ method: "tasks.task.getFields", params: {} }),
    // tasks.task.get of an unknown task answers an empty list (Bitrix24's own quirk).
    readItem: (result) => (isRecord(result) && isRecord(result.task) ? n.item(result.task) : undefined),
    readFields: (result) => (isRecord(result) && isRecord(result.fields) ? n.item(result.fields) : {}),
  };
}

/** user.*: UPPER_CASE both ways; user.add answers an id and user.update `true`. */
function users(): Entity {
  const n = naming({ position: "workPosition", departmentIds: "UF_DEPARTMENT" }, (name) => (name.startsWith("UF_") ? name : upperSnake(name)), lowerCamel);
  return {
    name: "users",
    refetchAfterWrite: true,
    missingLooksForbidden: true,
    selectLocally: true,
    list: (query, start) => {
      const order = query.order[0];
      return { method: "user.get", params: { FILTER: n.filter(query.filter), SORT: n.up(order?.field ?? "id"), ORDER: (order?.direction ?? "asc").toUpperCase(), start } };
    },
    readPage: (result, total, next) => ({ items: (Array.isArray(result) ? (result as Record<string, unknown>[]) : []).map(n.item), total, next }),
    get: (id) => ({ method: "user.get", params: { ID: numericId(id) } }),
    create: (fields) => ({ method: "user.add", params: n.fields(fields) }),
    update: (id, fields) => ({ method: "user.update", params: { ...n.fields(fields), ID: numericId(id) } }),
    fields: () => ({ method: "user.fields", params: {} }),
    readItem: (result) => (Array.isArray(result) && isRecord(result[0]) ? n.item(result[0]) : isRecord(result) ? n.item(result) : undefined),
    readFields: (result) => (isRecord(result) ? n.item(result) : {}),
  };
}

const money = { amount: "opportunity", currency: "currencyId", createdAt: "createdTime", updatedAt: "updatedTime" };
const times = { createdAt: "createdTime", updatedAt: "updatedTime" };

export const ENTITIES: Record<string, Entity> = {
  deals: crm("deals", 2, { ...money, closedAt: "closedate" }),
  contacts: crm("contacts", 3, times),
  companies: crm("companies", 4, times),
  leads: crm("leads", 1, money),
  tasks: tasks(),
  users: users(),
};
