/**
 * List methods as Bitrix24 runs them: a filter whose keys carry an operator prefix, an order,
 * and pages of 50 from `start`, with `total` and `next` (the start of the next page, only when
 * there is one). The sandbox filters in memory: it is for development, not for millions of rows.
 *
 * Filter keys (crm.item.list, user.get; tasks.task.list takes the comparisons and !):
 *   field / =field   equal (an array: any of)       !field / !=field  not equal (an array: none of)
 *   >field >=field <field <=field  compare (numbers, dates, text)
 *   @field  in the array          !@field  not in the array
 *   %field  contains (no % in the value, any case)   !%field  does not contain
 *   =%field / %=field  LIKE with % and _ in the value   !=%field / !%=field  NOT LIKE
 * Nested filters: a numeric key holding an object is a sub-filter, `logic: "OR"` joins a
 * (sub-)filter's conditions with OR (AND by default).
 */
import type { BitrixFault } from "./fault.ts";
import { isRecord, toFlag, toNumber, toTime } from "./values.ts";

/** Bitrix24 pages are always 50 records. */
export const PAGE_SIZE = 50;

export type FieldKind = "number" | "date" | "string" | "flag";

/** A field as the list engine sees it: its name in the records, how it compares, whether it holds a list. */
export interface ListField {
  name: string;
  kind: FieldKind;
  multiple?: boolean;
}

export interface ListSchema {
  /** The field a filter or order key (without its operator) names; undefined when none. */
  field(key: string): ListField | undefined;
  /** A filter key that names no field: throw a refusal, or return to ignore the condition. */
  unknownFilterField(key: string): void;
  /** Equality with % in a text value means LIKE (tasks.task.list TITLE, user.get NAME). */
  likeOnEquality?: boolean;
}

type Record_ = Record<string, unknown>;

const OPERATORS = ["!@", "!=%", "!%=", "!%", "!=", "=%", "%=", ">=", "<=", "@", "%", "=", "!", ">", "<"] as const;
type Operator = (typeof OPERATORS)[number] | "";

/** "!=%title" → ["!=%", "title"]. */
export function splitFilterKey(key: string): [Operator, string] {
  for (const op of OPERATORS) if (key.startsWith(op) && key.length > op.length) return [op, key.slice(op.length)];
  return ["", key];
}

/** The records the filter lets through, in their order. */
export function applyFilter<T extends Record_>(records: T[], filter: unknown, schema: ListSchema): T[] {
  if (filter === undefined || filter === null || filter === "") return records;
  const test = compileFilter(filter, schema);
  return records.filter((r) => test(r));
}

type Test = (record: Record_) => boolean;

function compileFilter(filter: unknown, schema: ListSchema): Test {
  const entries: [string, unknown][] = Array.isArray(filter) ? filter.map((v, i) => [String(i), v]) : isRecord(filter) ? Object.entries(filter) : [];
  let or = false;
  const tests: Test[] = [];
  for (const [key, value] of entries) {
    if (key.toLowerCase() === "logic") {
      or = String(value).toUpperCase() === "OR";
      continue;
    }
    if (/^\d+$/.test(key) && (isRecord(value) || Array.isArray(value))) {
      tests.push(compileFilter(value, schema));
      continue;
    }
    const [op, name] = splitFilterKey(key);
    const field = schema.field(name);
    if (field === undefined) {
      schema.unknownFilterField(name);
      continue;
    }
    tests.push(compileCondition(op, field, value, schema));
  }
  if (tests.length === 0) return () => true;
  return or ? (r) => tests.some((t) => t(r)) : (r) => tests.every((t) => t(r));
}

function compileCondition(op: Operator, field: ListField, expected: unknown, schema: ListSchema): Test {
  const expectedList = Array.isArray(expected) ? expected : isRecord(expected) ? Object.values(expected) : [expected];
  const valuesOf = (record: Record_): unknown[] => {
    const actual = record[field.name];
    return field.multiple && Array.isArray(actual) ? actual : [actual];
  };
  // A positive condition holds when any of the record's values passes; its negation when none does.
  const any = (pass: (v: unknown) => boolean): Test => (r) => valuesOf(r).some(pass);
  const none = (pass: (v: unknown) => boolean): Test => (r) => !valuesOf(r).some(pass);
  const isIn = (v: unknown) => expectedList.some((e) => equal(v, e, field.kind));
  const text = typeof expected === "string" ? expected : String(expected ?? "");
  // A value that does not compare (empty, or text against a number) never passes.
  const compared = (pass: (sign: number) => boolean) => (v: unknown) => {
    const c = compare(v, expected, field.kind);
    return c !== undefined && pass(c);
  };
  switch (op) {
    case "":
    case "=":
      if (Array.isArray(expected) || isRecord(expected)) return any(isIn);
      if (schema.likeOnEquality && typeof expected === "string" && expected.includes("%")) return any((v) => like(v, expected));
      return any((v) => equal(v, expected, field.kind));
    case "!":
    case "!=":
      return none(isIn);
    case "@":
      return any(isIn);
    case "!@":
      return none(isIn);
    case ">":
      return any(compared((c) => c > 0));
    case ">=":
      return any(compared((c) => c >= 0));
    case "<":
      return any(compared((c) => c < 0));
    case "<=":
      return any(compared((c) => c <= 0));
    case "%":
      return any((v) => contains(v, text));
    case "!%":
      return none((v) => contains(v, text));
    case "=%":
    case "%=":
      return any((v) => like(v, text));
    case "!=%":
    case "!%=":
      return none((v) => like(v, text));
  }
}

function isEmpty(value: unknown): boolean {
  return value === undefined || value === null || value === "";
}

function equal(actual: unknown, expected: unknown, kind: FieldKind): boolean {
  if (isEmpty(actual) || isEmpty(expected)) {
    // "" and null both mean "not set"; a flag that is not set is N.
    if (kind === "flag") return toFlag(actual ?? "") === toFlag(expected ?? "");
    return isEmpty(actual) && isEmpty(expected);
  }
  switch (kind) {
    case "number": {
      const a = toNumber(actual);
      const b = toNumber(expected);
      return a !== undefined && a === b;
    }
    case "date": {
      const a = toTime(actual);
      const b = toTime(expected);
      return a !== undefined && a === b;
    }
    case "flag":
      return toFlag(actual) !== undefined && toFlag(actual) === toFlag(expected);
    case "string":
      return String(actual) === String(expected);
  }
}

/** actual − expected as a sign; undefined when they do not compare (an empty value, a number against text). */
function compare(actual: unknown, expected: unknown, kind: FieldKind): number | undefined {
  if (isEmpty(actual) || isEmpty(expected)) return undefined;
  switch (kind) {
    case "number": {
      const a = toNumber(actual);
      const b = toNumber(expected);
      return a === undefined || b === undefined ? undefined : Math.sign(a - b);
    }
    case "date": {
      const a = toTime(actual);
      const b = toTime(expected);
      return a === undefined || b === undefined ? undefined : Math.sign(a - b);
    }
    default: {
      const a = String(actual);
      const b = String(expected);
      return a < b ? -1 : a > b ? 1 : 0;
    }
  }
}

function contains(actual: unknown, needle: string): boolean {
  if (isEmpty(actual) || typeof actual === "object") return false;
  return String(actual).toLowerCase().includes(needle.toLowerCase());
}

/** SQL LIKE: % any run, _ one character; any case. */
function like(actual: unknown, pattern: string): boolean {
  if (isEmpty(actual) || typeof actual === "object") return false;
  const source = pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/%/g, "[\\s\\S]*").replace(/_/g, "[\\s\\S]");
  return new RegExp(`^${source}$`, "iu").test(String(actual));
}

/** One key of an order: the field and the direction. */
export type OrderBy = [ListField, "ASC" | "DESC"];

/** Sorted copies: by each key in turn (empty values first when ascending, as MySQL does), then by id ascending. */
export function applyOrder<T extends Record_>(records: T[], order: OrderBy[], idField = "id"): T[] {
  const cmp = (a: unknown, b: unknown, kind: FieldKind): number => {
    const ea = isEmpty(a);
    const eb = isEmpty(b);
    if (ea || eb) return ea && eb ? 0 : ea ? -1 : 1;
    return compare(a, b, kind) ?? 0;
  };
  return [...records].sort((x, y) => {
    for (const [field, dir] of order) {
      const c = cmp(x[field.name], y[field.name], field.kind);
      if (c !== 0) return dir === "DESC" ? -c : c;
    }
    return cmp(x[idField], y[idField], "number");
  });
}

/**
 * The order parameter ({field: "ASC" | "DESC"}, any case) as keys; an unknown field or a
 * direction other than ASC/DESC is refused with the schema's faults.
 */
export function parseOrder(order: unknown, schema: { field(key: string): ListField | undefined }, faults: { field(key: string): BitrixFault; direction(key: string, dir: string): BitrixFault }): OrderBy[] {
  if (order === undefined || order === null || order === "") return [];
  if (!isRecord(order)) return [];
  const keys: OrderBy[] = [];
  for (const [key, value] of Object.entries(order)) {
    const field = schema.field(key);
    if (field === undefined) throw faults.field(key);
    const dir = String(value).toUpperCase();
    if (dir !== "ASC" && dir !== "DESC") throw faults.direction(key, String(value));
    keys.push([field, dir]);
  }
  return keys;
}

/** The page of 50 at `start` (0 when missing or not a number), with total and next. */
export function paginate<T>(records: T[], start: unknown): { page: T[]; total: number; next?: number } {
  const from = Math.max(0, Math.floor(toNumber(start) ?? 0));
  const page = records.slice(from, from + PAGE_SIZE);
  const result: { page: T[]; total: number; next?: number } = { page, total: records.length };
  if (from + PAGE_SIZE < records.length) result.next = from + PAGE_SIZE;
  return result;
}
