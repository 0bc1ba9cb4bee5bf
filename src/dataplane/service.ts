import { KeygateError } from "../core/errors.ts";
import { type Bitrix24Client, UpstreamError } from "../upstream/bitrix24/index.ts";
import { aggregateItems, aggregateSpec } from "./aggregate.ts";
import type { Command, Entity } from "./entities.ts";
import { type ListQuery, MAX_LIMIT, queryFromBody } from "./query.ts";

/** What the data plane calls: the key's portal (the gateway's spends the portal's budget on the first call of a request). */
export type Portal = Pick<Bitrix24Client, "call" | "batch">;

async function run(b24: Portal, command: Command) {
  return b24.call(command.method, command.params);
}

export interface Listed {
  items: Record<string, unknown>[];
  meta: { total: number; hasMore: boolean; truncated?: boolean };
}

/** Bitrix24 answers lists in pages of 50: a keygate list reads as many pages as its limit needs. */
export async function list(b24: Portal, entity: Entity, query: ListQuery): Promise<Listed> {
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
  return listed(entity, query, items, total);
}

/** The records read (from query.offset on) as the answer to a list: at most query.limit, the selected fields, total and hasMore. */
export function listed(entity: Entity, query: ListQuery, items: Record<string, unknown>[], total: number | undefined): Listed {
  let shown = items.slice(0, query.limit);
  if (entity.selectLocally && query.select !== null) {
    const keep = new Set(["id", ...query.select]);
    shown = shown.map((item) => Object.fromEntries(Object.entries(item).filter(([k]) => keep.has(k))));
  }
  const all = total ?? query.offset + items.length;
  return { items: shown, meta: { total: all, hasMore: query.offset + shown.length < all } };
}

export const notFound = (entity: Entity, id: string) => new KeygateError("ENTITY_NOT_FOUND", { message: `No ${entity.name} record ${id}.`, param: "id" });

export async function get(b24: Portal, entity: Entity, id: string): Promise<Record<string, unknown>> {
  const item = entity.readItem((await run(b24, entity.get(id))).result);
  if (!item) throw notFound(entity, id);
  return item;
}

export function fieldsOf(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new KeygateError("VALIDATION_ERROR", { message: "the body is an object of fields" });
  return body as Record<string, unknown>;
}

export async function create(b24: Portal, entity: Entity, body: unknown): Promise<Record<string, unknown>> {
  const command = entity.create(fieldsOf(body));
  const r = await run(b24, command);
  if (entity.refetchAfterWrite) return get(b24, entity, String(r.result));
  return entity.readItem(r.result) ?? unexpected(command);
}

/** Bitrix24 answered a write without the record it should hold. */
export function unexpected(command: Command): never {
  throw new UpstreamError("BITRIX_ERROR", { method: command.method, error: "UNEXPECTED_ANSWER", error_description: "no record in the answer" });
}

/** A refused write to a missing record is what GET /v1/<entity>/:id says of it: ENTITY_NOT_FOUND (entity.missingLooksForbidden). */
export const deniedAsMissing = (entity: Entity, e: unknown): boolean => entity.missingLooksForbidden && e instanceof UpstreamError && e.code === "BITRIX_ACCESS_DENIED";

/** On a refusal deniedAsMissing, a get tells whether the record is there. */
async function orNotFound<T>(b24: Portal, entity: Entity, id: string, write: Promise<T>): Promise<T> {
  try {
    return await write;
  } catch (e) {
    if (!deniedAsMissing(entity, e)) throw e;
    const missing = await get(b24, entity, id).then(
      () => false,
      (g: unknown) => g instanceof KeygateError && g.code === "ENTITY_NOT_FOUND",
    );
    if (missing) throw notFound(entity, id);
    throw e;
  }
}

export async function update(b24: Portal, entity: Entity, id: string, body: unknown): Promise<Record<string, unknown>> {
  const r = await orNotFound(b24, entity, id, run(b24, entity.update(id, fieldsOf(body))));
  if (entity.refetchAfterWrite) return get(b24, entity, id);
  return entity.readItem(r.result) ?? get(b24, entity, id);
}

export async function remove(b24: Portal, entity: Entity, id: string): Promise<{ id: number; deleted: true }> {
  if (!entity.remove) throw new KeygateError("ROUTE_NOT_FOUND");
  await orNotFound(b24, entity, id, run(b24, entity.remove(id)));
  // Ids are Bitrix24's numbers everywhere (entity.remove refused anything but digits).
  return { id: Number(id), deleted: true };
}

export async function fields(b24: Portal, entity: Entity): Promise<Record<string, unknown>> {
  return entity.readFields((await run(b24, entity.fields())).result);
}

/** Aggregates over every record the filter selects (at most MAX_LIMIT: more sets meta.truncated). */
export async function aggregate(b24: Portal, entity: Entity, body: unknown) {
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
