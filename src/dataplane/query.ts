import { KeygateError } from "../core/errors.ts";

/**
 * List queries of the entity surface (GET /v1/<entity>, POST /v1/<entity>/search): limit,
 * offset, select, order and filter, read from a query string or a JSON body and checked, in
 * keygate's (camelCase) field names. Two filter syntaxes, as VibeCode documents them:
 * `{"amount": {"$gt": 5000}}` and the Bitrix24-native prefix form `{">=amount": 5000}`.
 */

export type Operator = "=" | "!=" | ">" | ">=" | "<" | "<=" | "%" | "in";

export interface Condition {
  field: string;
  op: Operator;
  value: unknown;
}

export interface ListQuery {
  limit: number;
  offset: number;
  select: string[] | null;
  order: { field: string; direction: "asc" | "desc" }[];
  filter: Condition[];
}

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 5000;

const DOLLAR: Record<string, Operator> = { $gt: ">", $gte: ">=", $lt: "<", $lte: "<=", $ne: "!=", $contains: "%", $in: "in", $eq: "=" };
/** Longest first, so ">=" is not read as ">". */
const PREFIXES: [string, Operator][] = [
  [">=", ">="],
  ["<=", "<="],
  ["!=", "!="],
  [">", ">"],
  ["<", "<"],
  ["!", "!="],
  ["%", "%"],
  ["=", "="],
];
const FIELD = /^[A-Za-z_][A-Za-z0-9_]*$/;

function fieldName(name: string, param: string): string {
  if (!FIELD.test(name)) throw new KeygateError("VALIDATION_ERROR", { message: `${param}: "${name}" is not a field name`, param });
  return name;
}

function integer(value: unknown, param: string, min: number, max: number, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const n = typeof value === "number" ? value : /^\d+$/.test(String(value)) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new KeygateError("VALIDATION_ERROR", { message: `${param} must be a whole number from ${min} to ${max}`, param });
  return n;
}

function conditions(filter: unknown): Condition[] {
  if (filter === undefined || filter === null) return [];
  if (typeof filter !== "object" || Array.isArray(filter)) throw new KeygateError("VALIDATION_ERROR", { message: "filter must be an object of field conditions", param: "filter" });
  const out: Condition[] = [];
  for (const [key, value] of Object.entries(filter as Record<string, unknown>)) {
    const prefix = PREFIXES.find(([p]) => key.startsWith(p) && FIELD.test(key.slice(p.length)));
    if (prefix) {
      out.push({ field: key.slice(prefix[0].length), op: prefix[1], value });
      continue;
    }
    const field = fieldName(key, `filter.${key}`);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [op, operand] of Object.entries(value as Record<string, unknown>)) {
        const mapped = Object.hasOwn(DOLLAR, op) ? DOLLAR[op] : undefined;
        if (!mapped) {
          throw new KeygateError("INVALID_FILTER_OPERATOR", { message: `filter.${key}: unknown operator "${op}" (use ${Object.keys(DOLLAR).join(", ")})`, param: `filter.${key}` });
        }
        if (mapped === "in" && !Array.isArray(operand)) throw new KeygateError("VALIDATION_ERROR", { message: `filter.${key}.$in takes a list`, param: `filter.${key}` });
        out.push({ field, op: mapped, value: operand });
      }
    } else {
      out.push({ field, op: Array.isArray(value) ? "in" : "=", value });
    }
  }
  return out;
}

function orderOf(order: unknown): ListQuery["order"] {
  if (order === undefined || order === null) return [];
  if (typeof order !== "object" || Array.isArray(order)) throw new KeygateError("VALIDATION_ERROR", { message: 'order must be an object such as {"createdAt": "desc"}', param: "order" });
  return Object.entries(order as Record<string, unknown>).map(([field, direction]) => {
    const d = String(direction).toLowerCase();
    if (d !== "asc" && d !== "desc") throw new KeygateError("VALIDATION_ERROR", { message: `order.${field} must be "asc" or "desc"`, param: `order.${field}` });
    return { field: fieldName(field, `order.${field}`), direction: d };
  });
}

function selectOf(select: unknown): string[] | null {
  if (select === undefined || select === null || select === "") return null;
  const list = typeof select === "string" ? select.split(",").map((s) => s.trim()).filter(Boolean) : select;
  if (!Array.isArray(list) || list.some((s) => typeof s !== "string")) throw new KeygateError("VALIDATION_ERROR", { message: "select is a list of field names", param: "select" });
  return list.map((s: string) => fieldName(s, "select"));
}

/** A search body: {filter, select, order, limit, offset}. */
export function queryFromBody(body: unknown): ListQuery {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b !== "object" || Array.isArray(b)) throw new KeygateError("VALIDATION_ERROR", { message: "the body is an object {filter, select, order, limit, offset}" });
  for (const key of Object.keys(b)) {
    if (!["filter", "select", "order", "limit", "offset"].includes(key)) throw new KeygateError("VALIDATION_ERROR", { message: `unknown field ${key}`, param: key });
  }
  return {
    limit: integer(b.limit, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT),
    offset: integer(b.offset, "offset", 0, Number.MAX_SAFE_INTEGER, 0),
    select: selectOf(b.select),
    order: orderOf(b.order),
    filter: conditions(b.filter),
  };
}

/**
 * A query string: limit, offset, select=a,b, order[field]=desc, filter[field]=v,
 * filter[field][$gt]=v, filter[>=field]=v. Values stay strings (the upstream compares them).
 */
export function queryFromSearchParams(params: URLSearchParams): ListQuery {
  // Field names come from the client: no prototype, so filter[__proto__] is a field like any other.
  const filter: Record<string, unknown> = Object.create(null);
  const order: Record<string, unknown> = Object.create(null);
  let limit: string | undefined;
  let offset: string | undefined;
  let select: string | undefined;
  for (const [rawKey, rawValue] of params) {
    // filter[>=amount]=5 written as it is: the query string splits at its first "=", into
    // "filter[>" and "amount]=5"; joined again, it is the prefix form it was meant as.
    const split = /^filter\[([<>!]?)$/.exec(rawKey) ? /^([A-Za-z_][A-Za-z0-9_]*)\]=(.*)$/s.exec(rawValue) : null;
    const key = split ? `${rawKey}=${split[1]}]` : rawKey;
    const value = split ? split[2]! : rawValue;
    const nested = /^(filter|order)\[([^\]]+)\](?:\[([^\]]+)\])?$/.exec(key);
    if (key === "limit") limit = value;
    else if (key === "offset") offset = value;
    else if (key === "select") select = value;
    else if (nested?.[1] === "order" && nested[3] === undefined) order[nested[2]!] = value;
    else if (nested?.[1] === "filter") {
      const field = nested[2]!;
      if (nested[3] === undefined) filter[field] = value;
      else filter[field] = { ...(filter[field] as object | undefined), [nested[3]]: nested[3] === "$in" ? value.split(",") : value };
    } else throw new KeygateError("VALIDATION_ERROR", { message: `unknown query parameter ${key} (limit, offset, select, order[field], filter[field])`, param: key });
  }
  return queryFromBody({ limit, offset, select, order, filter });
}
