import { KeygateError } from "../core/errors.ts";

/**
 * POST /v1/<entity>/aggregate: count, sum, avg, min, max, optionally by up to 5 groupBy fields,
 * over the records a filter selects. Computed by keygate over the matching records (read page by
 * page from the upstream, at most MAX_LIMIT of them: more sets meta.truncated).
 */
export type AggregateFunction = "count" | "sum" | "avg" | "min" | "max";

export interface AggregateSpec {
  aggregate: { field: string; function: AggregateFunction }[];
  groupBy: string[];
}

const FUNCTIONS = new Set(["count", "sum", "avg", "min", "max"]);
const FIELD = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function aggregateSpec(body: Record<string, unknown>): AggregateSpec {
  const raw = body.aggregate ?? [{ field: "*", function: "count" }];
  if (!Array.isArray(raw) || raw.length === 0) throw new KeygateError("VALIDATION_ERROR", { message: 'aggregate is a list such as [{"field": "amount", "function": "sum"}]', param: "aggregate" });
  const aggregate = raw.map((a: unknown, i) => {
    const { field, function: fn } = (a ?? {}) as { field?: unknown; function?: unknown };
    if (typeof fn !== "string" || !FUNCTIONS.has(fn)) throw new KeygateError("VALIDATION_ERROR", { message: `aggregate[${i}].function must be count, sum, avg, min or max`, param: `aggregate[${i}].function` });
    if (typeof field !== "string" || (field !== "*" && !FIELD.test(field)) || (field === "*" && fn !== "count")) {
      throw new KeygateError("VALIDATION_ERROR", { message: `aggregate[${i}].field must be a field name ("*" only with count)`, param: `aggregate[${i}].field` });
    }
    return { field, function: fn as AggregateFunction };
  });
  const g = body.groupBy ?? [];
  const groupBy = typeof g === "string" ? [g] : g;
  if (!Array.isArray(groupBy) || groupBy.length > 5 || groupBy.some((f) => typeof f !== "string" || !FIELD.test(f))) {
    throw new KeygateError("VALIDATION_ERROR", { message: "groupBy is a field name or a list of at most 5", param: "groupBy" });
  }
  return { aggregate, groupBy: groupBy as string[] };
}

type Values = Record<string, Partial<Record<AggregateFunction, number | null>>>;

function compute(items: readonly Record<string, unknown>[], spec: AggregateSpec): Values {
  const out: Values = {};
  for (const { field, function: fn } of spec.aggregate) {
    if (fn === "count" && field === "*") continue;
    const numbers = items.map((i) => Number(i[field])).filter((n) => Number.isFinite(n));
    const present = items.filter((i) => i[field] !== undefined && i[field] !== null && i[field] !== "");
    let value: number | null;
    if (fn === "count") value = present.length;
    else if (numbers.length === 0) value = null;
    else if (fn === "sum") value = numbers.reduce((a, b) => a + b, 0);
    else if (fn === "avg") value = numbers.reduce((a, b) => a + b, 0) / numbers.length;
    else if (fn === "min") value = Math.min(...numbers);
    else value = Math.max(...numbers);
    (out[field] ??= {})[fn] = value;
  }
  return out;
}

export function aggregateItems(items: readonly Record<string, unknown>[], spec: AggregateSpec) {
  const result: { count: number; aggregates: Values; groups?: Record<string, unknown>[] } = { count: items.length, aggregates: compute(items, spec) };
  if (spec.groupBy.length > 0) {
    const groups = new Map<string, Record<string, unknown>[]>();
    for (const item of items) {
      const key = JSON.stringify(spec.groupBy.map((f) => item[f] ?? null));
      let list = groups.get(key);
      if (!list) groups.set(key, (list = []));
      list.push(item);
    }
    result.groups = [...groups.entries()].map(([key, list]) => {
      const values = JSON.parse(key) as unknown[];
      return { ...Object.fromEntries(spec.groupBy.map((f, i) => [f, values[i]])), count: list.length, aggregates: compute(list, spec) };
    });
  }
  return result;
}
