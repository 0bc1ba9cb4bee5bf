import { KeygateError } from "../core/errors.ts";
import type { Bitrix24Client } from "../upstream/bitrix24/index.ts";
import { UpstreamError } from "../upstream/bitrix24/index.ts";
import { aggregateItems, aggregateSpec } from "./aggregate.ts";
import type { Command, Entity } from "./entities.ts";
import { type ListQuery, MAX_LIMIT, queryFromBody } from "./query.ts";

async function run(b24: Bitrix24Client, command: Command) {
  return b24.call(command.method, command.params);
}

export interface Listed {
  items: Record<string, unknown>[];
  meta: { total: number; hasMore: boolean; truncated?: boolean };
}

/** Bitrix24 answers lists in pages of 50: a keygate list reads as many pages as its limit needs. */
export async function list(b24: Bitrix24Client, entity: Entity, query: ListQuery): Promise<Listed> {
  const items: Record<string, unknown>[] = [];
  let start = query.offset;
  let total: number | undefined;
  for (;;) {
    const r = await run(b24, entity.list(query, start));
    const page = entity.readPage(r.result, r.total, r.next);
    total ??= page.total;
    items.push(...page.items);
    if (items.length >= query.limit || page.next === undefined || page.items.length === 0) break;
    start = page.next;
  }
  let shown = items.slice(0, query.limit);
  if (entity.selectLocally && query.select !== null) {
    const keep = new Set(["id", ...query.select]);
    shown = shown.map((item) => Object.fromEntries(Object.entries(item).filter(([k]) => keep.has(k))));
  }
  const all = total ?? query.offset + items.length;
  return { items: shown, meta: { total: all, hasMore: query.offset + shown.length < all } };
}

export async function get(b24: Bitrix24Client, entity: Entity, id: string): Promise<Record<string, unknown>> {
  const item = entity.readItem((await run(b24, entity.get(id))).result);
  if (!item) throw new KeygateError("ENTITY_NOT_FOUND", { message: `No ${entity.name} record ${id}.`, param: "id" });
  return item;
}

function fieldsOf(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new KeygateError("VALIDATION_ERROR", { message: "the body is an object of fields" });
  return body as Record<string, unknown>;
}

export async function create(b24: Bitrix24Client, entity: Entity, body: unknown): Promise<Record<string, unknown>> {
  const r = await run(b24, entity.create(fieldsOf(body)));
  if (entity.refetchAfterWrite) return get(b24, entity, String(r.result));
  const item = entity.readItem(r.result);
  if (!item) throw new UpstreamError("BITRIX_ERROR", { method: entity.create({}).method, error: "UNEXPECTED_ANSWER", error_description: "no record in the answer" });
  return item;
}

/**
 * Bitrix24 refuses an update or delete of a task or user that does not exist as not allowed
 * (it does not tell missing from forbidden): on such a refusal a get tells whether the record is
 * there, and a missing one is ENTITY_NOT_FOUND, as GET /v1/<entity>/:id answers it.
 */
async function orNotFound<T>(b24: Bitrix24Client, entity: Entity, id: string, write: Promise<T>): Promise<T> {
  try {
    return await write;
  } catch (e) {
    if (!(e instanceof UpstreamError) || e.code !== "BITRIX_ACCESS_DENIED") throw e;
    const missing = await get(b24, entity, id).then(
      () => false,
      (g: unknown) => g instanceof KeygateError && g.code === "ENTITY_NOT_FOUND",
    );
    if (missing) throw new KeygateError("ENTITY_NOT_FOUND", { message: `No ${entity.name} record ${id}.`, param: "id" });
    throw e;
  }
}

export async function update(b24: Bitrix24Client, entity: Entity, id: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await orNotFound(b24, entity, id, run(b24, entity.update(id, fieldsOf(body))));
  if (entity.refetchAfterWrite) return get(b24, entity, id);
  return entity.readItem(r.result) ?? get(b24, entity, id);
}

export async function remove(b24: Bitrix24Client, entity: Entity, id: string): Promise<{ id: string; deleted: true }> {
  if (!entity.remove) throw new KeygateError("ROUTE_NOT_FOUND");
  await orNotFound(b24, entity, id, run(b24, entity.remove(id)));
  return { id, deleted: true };
}

export async function fields(b24: Bitrix24Client, entity: Entity): Promise<Record<string, unknown>> {
  return entity.readFields((await run(b24, entity.fields())).result);
}

/** Aggregates over every record the filter selects (at most MAX_LIMIT: more sets meta.truncated). */
export async function aggregate(b24: Bitrix24Client, entity: Entity, body: unknown) {
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b !== "object" || Array.isArray(b)) throw new KeygateError("VALIDATION_ERROR", { message: "the body is {aggregate, filter, groupBy}" });
  for (const key of Object.keys(b)) {
    if (!["aggregate", "filter", "groupBy"].includes(key)) throw new KeygateError("VALIDATION_ERROR", { message: `unknown field ${key}`, param: key });
  }
  const spec = aggregateSpec(b);
  const query = queryFromBody({ filter: b.filter, limit: MAX_LIMIT });
  const [known, { items, meta }] = await Promise.all([fields(b24, entity), list(b24, entity, query)]);
  // reference 5.2: a field the entity does not have is refused, not aggregated as empty.
  const unknown = (field: string) => field !== "*" && !Object.hasOwn(known, field);
  const bad = spec.aggregate.findIndex((a) => unknown(a.field));
  if (bad >= 0) throw new KeygateError("VALIDATION_ERROR", { message: `aggregate[${bad}].field: ${entity.name} have no field ${spec.aggregate[bad]!.field} (GET /v1/${entity.name}/fields lists them)`, param: `aggregate[${bad}].field` });
  const badGroup = spec.groupBy.find(unknown);
  if (badGroup !== undefined) throw new KeygateError("VALIDATION_ERROR", { message: `groupBy: ${entity.name} have no field ${badGroup} (GET /v1/${entity.name}/fields lists them)`, param: "groupBy" });
  return { data: aggregateItems(items, spec), meta: { total: meta.total, truncated: meta.total > items.length } };
}
